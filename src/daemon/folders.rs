//! A channel's folders, what may be picked up from `inbound/`, the claim (an atomic rename into
//! `processing/`), and who dropped a file. Synchronous file-system work; never reads a file's
//! content and never follows a link.

use crate::config::{Channel, Config};
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The folder tree of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub root: PathBuf,
    /// People and the ERP drop files here.
    pub inbound: PathBuf,
    /// Claimed files, while they are read and until their batch is recorded.
    pub processing: PathBuf,
    /// Accepted source files, named with their batch id.
    pub archive: PathBuf,
    /// Refused files, each with `NAME.errors.txt` and `NAME.errors.csv` beside it.
    pub rejected: PathBuf,
    /// Result reports for the people who dropped the files.
    pub results: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct FolderError {
    pub path: PathBuf,
    pub reason: String,
}

impl Folders {
    pub fn of(cfg: &Config, ch: &Channel) -> Folders {
        let root = cfg.resolve(&ch.folder);
        Folders {
            inbound: root.join("inbound"),
            processing: root.join("processing"),
            archive: root.join("archive"),
            rejected: root.join("rejected"),
            results: root.join("results"),
            root,
        }
    }

    /// Creates missing folders (people may write `inbound/` and read `rejected/` and
    /// `results/` through the group; `processing/` and `archive/` are the daemon's alone) and
    /// checks that every folder is usable. Returns the folders it created.
    /// Removes the temporary files a crash left in the folders paygate writes whole files
    /// into (`results/`, `rejected/`, `archive/`): paygate's own, by their name. Only at
    /// start, when nothing writes.
    pub fn remove_stale(&self) -> usize {
        let mut n = 0;
        for dir in [&self.results, &self.rejected, &self.archive] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(crate::durable::TEMP_PREFIX)
                    && name.ends_with(crate::durable::TEMP_SUFFIX)
                    && e.file_type().is_ok_and(|t| t.is_file())
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    n += 1;
                }
            }
        }
        n
    }

    pub fn ensure(&self) -> Result<Vec<PathBuf>, FolderError> {
        let mut created = Vec::new();
        for (dir, mode) in [
            (&self.root, 0o750),
            (&self.inbound, 0o770),
            (&self.processing, 0o700),
            (&self.archive, 0o700),
            (&self.rejected, 0o750),
            (&self.results, 0o750),
        ] {
            match std::fs::symlink_metadata(dir) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(dir).map_err(|e| FolderError {
                        path: dir.clone(),
                        reason: format!("cannot be created: {e}"),
                    })?;
                    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
                    created.push(dir.clone());
                }
                Err(e) => {
                    return Err(FolderError {
                        path: dir.clone(),
                        reason: e.to_string(),
                    });
                }
            }
            let meta = std::fs::metadata(dir).map_err(|e| FolderError {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            if !meta.is_dir() {
                return Err(FolderError {
                    path: dir.clone(),
                    reason: "is not a folder".into(),
                });
            }
            if !writable(dir) {
                return Err(FolderError {
                    path: dir.clone(),
                    reason: "is not writable by this user: paygate renames and writes files here"
                        .into(),
                });
            }
        }
        // The claim is a rename: both folders must be on one file system.
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        for d in [&self.processing, &self.archive, &self.rejected] {
            if dev(&self.inbound) != dev(d) {
                return Err(FolderError {
                    path: d.clone(),
                    reason: format!(
                        "is on another file system than {}: files are moved between them by an atomic rename",
                        self.inbound.display()
                    ),
                });
            }
        }
        Ok(created)
    }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// What an entry of `inbound/` is to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A regular file to pick up (once complete).
    Candidate,
    /// Temporary, lock or hidden files: not ours to touch.
    Ignore,
    /// Never followed or opened: moved to `rejected/` with a note.
    Refuse(&'static str),
    /// A folder: left alone, logged once.
    Folder,
}

/// Classifies an entry by its name and its own metadata (`symlink_metadata`: a link is never
/// followed).
pub fn classify(name: &str, meta: &Metadata) -> Entry {
    let lower = name.to_ascii_lowercase();
    if name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with('~')
        || [
            ".tmp",
            ".part",
            ".crdownload",
            ".swp",
            ".partial",
            ".download",
        ]
        .iter()
        .any(|s| lower.ends_with(s))
        || name.ends_with(".errors.txt")
        || name.ends_with(".errors.csv")
    {
        return Entry::Ignore;
    }
    let t = meta.file_type();
    if t.is_symlink() {
        Entry::Refuse("is a symbolic link")
    } else if t.is_dir() {
        Entry::Folder
    } else if t.is_fifo() {
        Entry::Refuse("is a named pipe (FIFO)")
    } else if t.is_block_device() || t.is_char_device() {
        Entry::Refuse("is a device")
    } else if t.is_socket() {
        Entry::Refuse("is a socket")
    } else if t.is_file() {
        Entry::Candidate
    } else {
        Entry::Refuse("is not a regular file")
    }
}

static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// The separator between the claim prefix and the original name in `processing/`.
const SEP: &str = "--";

/// A unique name under `processing/` for `inbound/NAME`, keeping the original name.
pub fn claim_path(f: &Folders, name: &str) -> PathBuf {
    let n = CLAIMS.fetch_add(1, Ordering::Relaxed);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f");
    let owner = CLAIM_OWNER
        .get()
        .cloned()
        .unwrap_or_else(|| std::process::id().to_string());
    f.processing.join(format!("{stamp}.{n}.{owner}{SEP}{name}"))
}

/// The instance whose claims this process makes (`i` and 16 hex digits, set once at start):
/// part of every claim's name, so that instances sharing a `processing/` folder tell their
/// own claims from those of another (live or dead) instance.
static CLAIM_OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_claim_owner(instance: &str) {
    let _ = CLAIM_OWNER.set(instance.to_string());
}

/// The instance that made a claim, when its name says (claims of earlier versions do not).
pub fn claim_owner(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let (head, _) = name.split_once(SEP)?;
    let owner = head.rsplit('.').next()?;
    (owner.len() == 17
        && owner.starts_with('i')
        && owner[1..].bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(owner)
}

/// Claims `inbound/NAME` by renaming it into `processing/` under a unique name that keeps the
/// original. `None` when the file is gone (another worker or instance claimed it).
pub fn claim(f: &Folders, name: &str) -> io::Result<Option<PathBuf>> {
    claim_to(f, name, claim_path(f, name))
}

/// `claim`, to a name chosen beforehand with `claim_path`.
pub fn claim_to(f: &Folders, name: &str, to: PathBuf) -> io::Result<Option<PathBuf>> {
    match std::fs::rename(f.inbound.join(name), &to) {
        Ok(()) => {
            sync_dir(&f.processing);
            sync_dir(&f.inbound);
            Ok(Some(to))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The name the file had in `inbound/`, from its claim name.
pub fn original_name(claim: &str) -> &str {
    claim.split_once(SEP).map_or(claim, |(_, n)| n)
}

/// Moves `from` to `dir/name`, or to `dir/<prefix>-name` when `name` is taken; returns where.
pub fn move_into(from: &Path, dir: &Path, name: &str, prefix: &str) -> io::Result<PathBuf> {
    let mut to = dir.join(name);
    if std::fs::symlink_metadata(&to).is_ok() {
        to = dir.join(format!("{prefix}-{name}"));
    }
    std::fs::rename(from, &to)?;
    sync_dir(dir);
    if let Some(p) = from.parent() {
        sync_dir(p);
    }
    Ok(to)
}

/// The place a refused file will go: `dir/name`, or `dir/<prefix>-name` when `name` is taken.
pub fn free_name(dir: &Path, name: &str, prefix: &str) -> PathBuf {
    let to = dir.join(name);
    if std::fs::symlink_metadata(&to).is_ok() {
        dir.join(format!("{prefix}-{name}"))
    } else {
        to
    }
}

pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The user name of a uid (`uid:N` when the system does not know it).
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s strings.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() {
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    format!("uid:{uid}")
}

/// Who dropped a file: its owner on disk.
pub fn owner_of(path: &Path) -> io::Result<String> {
    Ok(user_name(std::fs::symlink_metadata(path)?.uid()))
}

/// The user running this process.
pub fn current_user() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    user_name(unsafe { libc::getuid() })
}

/// The uid of an OS account, if the account exists.
pub fn user_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `user_name`.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

/// The gid of a group name.
pub fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 8192];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_name`.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_temporary_files_are_ignored_links_and_pipes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let m = std::fs::symlink_metadata(&file).unwrap();
        for n in [
            "~$payroll.xlsx",
            ".~lock.payroll.xlsx#",
            "a.tmp",
            "a.PART",
            "a.crdownload",
            ".hidden.csv",
            "payroll.csv.errors.txt",
        ] {
            assert_eq!(classify(n, &m), Entry::Ignore, "{n}");
        }
        assert_eq!(classify("payroll.csv", &m), Entry::Candidate);
        std::os::unix::fs::symlink(&file, dir.path().join("l")).unwrap();
        let l = std::fs::symlink_metadata(dir.path().join("l")).unwrap();
        assert_eq!(classify("l.csv", &l), Entry::Refuse("is a symbolic link"));
        let d = std::fs::symlink_metadata(dir.path()).unwrap();
        assert_eq!(classify("sub", &d), Entry::Folder);
    }

    #[test]
    fn only_our_own_unfinished_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let f = Folders {
            root: root.into(),
            inbound: root.join("in"),
            processing: root.join("proc"),
            archive: root.join("a"),
            rejected: root.join("rej"),
            results: root.join("res"),
        };
        std::fs::create_dir_all(&f.results).unwrap();
        std::fs::create_dir_all(&f.rejected).unwrap();
        // A crash between the temporary file and its rename leaves one behind.
        let target = f.results.join("payroll.batch1.result.csv");
        let left = tempfile::Builder::new()
            .prefix(crate::durable::TEMP_PREFIX)
            .suffix(crate::durable::TEMP_SUFFIX)
            .tempfile_in(&f.results)
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        crate::durable::write_bytes(&target, b"done").unwrap();
        std::fs::write(f.rejected.join(".tmp-someone-elses"), b"x").unwrap();
        std::fs::write(f.rejected.join("x.csv.errors.txt"), b"x").unwrap();
        assert_eq!(f.remove_stale(), 1);
        assert!(!left.exists());
        assert!(target.exists());
        assert!(f.rejected.join(".tmp-someone-elses").exists());
        assert!(f.rejected.join("x.csv.errors.txt").exists());
    }

    #[test]
    fn claims_are_unique_and_keep_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let f = Folders {
            root: root.into(),
            inbound: root.join("in"),
            processing: root.join("proc"),
            archive: root.join("a"),
            rejected: root.join("r"),
            results: root.join("res"),
        };
        assert!(!f.ensure().unwrap().is_empty());
        std::fs::write(f.inbound.join("pay--roll.csv"), b"x").unwrap();
        let c = claim(&f, "pay--roll.csv").unwrap().unwrap();
        let claim_name = c.file_name().unwrap().to_str().unwrap();
        assert_eq!(original_name(claim_name), "pay--roll.csv");
        assert_eq!(claim(&f, "pay--roll.csv").unwrap(), None, "claimed twice");
        assert!(f.ensure().unwrap().is_empty());
    }
}
