//! Durable file writes: a temporary file beside the target, synced, renamed over it, the
//! folder synced. A leaf: every module that writes files for people or for the record uses it.
//! A crash can leave a temporary file behind; its name says it is paygate's, and the daemon
//! removes such leftovers at start (`daemon::folders::Folders::remove_stale`).

use std::io::Write;
use std::path::Path;

pub const TEMP_PREFIX: &str = ".paygate-";
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `path` through `f`, durably and atomically.
pub fn write(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    f(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path`, durably and atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write(path, |w| w.write_all(bytes))
}

/// Creates `dir` (and its parents) with mode 0700: a folder only paygate reads.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Takes an exclusive lock on `dir/paygate.lock` (created 0600), held while the returned file
/// is open: one daemon per data folder, and no key rotation beside it.
pub fn lock_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let path = dir.join("paygate.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    // SAFETY: `f` is an open file descriptor for the duration of the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(std::io::Error::other(format!(
                "{} is held by another paygate (the daemon, or a data-key rotation)",
                path.display()
            )));
        }
        return Err(e);
    }
    Ok(f)
}
