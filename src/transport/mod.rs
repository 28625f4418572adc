//! Transport: the only module that opens sockets. Moves sealed files to the bank and the bank's
//! return files back, over SFTP (`sftp`) or through local folders (`folder`, for banks reached
//! through a front-end processor or a shared folder, and for the demo), with the same
//! semantics: uploads go to a temporary name and are renamed when complete, never over an
//! existing file; a resend after a crash finds the completed file or completes the `.part`.
//! Synchronous; every blocking call has a deadline.

pub mod folder;
pub mod sftp;

use crate::config::{Transport as TransportCfg, TransportKind};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "{host}:{port}: the server's host key is not pinned (not in {where_}).\n  It presents {key_type} {fingerprint}.\n  Verify this fingerprint with the bank out of band, then pin it, e.g. add to known_hosts:\n  {known_hosts_line}"
    )]
    HostKeyUnknown {
        host: String,
        port: u16,
        where_: String,
        key_type: String,
        fingerprint: String,
        known_hosts_line: String,
    },
    #[error(
        "{host}:{port}: THE SERVER'S HOST KEY HAS CHANGED: it presents {key_type} {fingerprint}, which does not match the pinned key. Refusing to connect: this may be an attack. If the bank announced a new key, verify it out of band and update the pin."
    )]
    HostKeyChanged {
        host: String,
        port: u16,
        key_type: String,
        fingerprint: String,
    },
    #[error("{host}:{port}: authentication as `{user}` with {identity} was refused by the server")]
    AuthFailed {
        host: String,
        port: u16,
        user: String,
        identity: String,
    },
    #[error(
        "{0}: a different file with this name is already on the server ({1}); refusing to overwrite it"
    )]
    Conflict(String, String),
    #[error("{what}: {detail}")]
    Transient { what: String, detail: String },
    /// Failed after every byte was written: the next attempt must not start a fresh upload
    /// if it finds nothing (the server may have taken the complete file away already).
    #[error("{what}: {detail}")]
    Interrupted { what: String, detail: String },
    #[error("{what}: {detail}")]
    Permanent { what: String, detail: String },
    /// The local file is not the one recorded (or a part on the server is not a prefix of it).
    #[error(
        "{path} is not the file that was recorded: its SHA-256 is {found}, the record says {expected}; {on_server}"
    )]
    Changed {
        path: String,
        expected: String,
        found: String,
        on_server: &'static str,
    },
    /// The sender's fence said stop (in the daemon: its lease on the store may run out, and
    /// another instance may take the upload over). Nothing was committed.
    #[error("{0}: stopped before it was complete, as the sender no longer holds it")]
    Fenced(String),
}

impl TransportError {
    /// Worth another attempt: network trouble, timeouts, a server that went away.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Transient { .. } | TransportError::Interrupted { .. }
        )
    }
}

/// What an upload found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The complete file was written and renamed to its final name.
    Uploaded { bytes: u64 },
    /// The final name already held exactly this many bytes: an earlier attempt had completed.
    AlreadyThere { bytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
}

/// A connection to the bank's file exchange.
pub trait Link {
    /// Uploads `local` as `name` in the upload folder (see the module doc for the semantics).
    /// `sha256` (hex) is what `local` was recorded as: its first 12 characters name the
    /// temporary file (`NAME.<content id>.part`), so that only a leftover of the very same
    /// bytes is ever continued, and the bytes are hashed as they are sent: the upload is
    /// committed only if they match it (else the part is removed and the error is `Changed`).
    /// With `allow_fresh` false (an earlier attempt had written every byte), finding neither
    /// the file nor its `.part` is an error: the file was most likely delivered and taken
    /// away, and must not be sent again.
    /// `fence` is asked before every piece written and before the commit: once it says no,
    /// the upload stops with `Fenced` and nothing is committed.
    fn put(
        &mut self,
        local: &Path,
        name: &str,
        sha256: &str,
        allow_fresh: bool,
        fence: &dyn Fn() -> bool,
    ) -> Result<PutOutcome, TransportError>;
    /// The files in the download folder that match the bank's patterns.
    fn list(&mut self) -> Result<Vec<RemoteFile>, TransportError>;
    /// Copies a file from the download folder to `out`; returns its size.
    fn get(&mut self, name: &str, out: &mut dyn Write) -> Result<u64, TransportError>;
    /// Removes a downloaded file, or moves it to the archive folder, as configured.
    fn dispose(&mut self, name: &str) -> Result<(), TransportError>;
    /// Checks that the folders are there, readable and writable: one line each.
    fn check(&mut self) -> Vec<(String, Result<(), String>)>;
}

/// Opens a link for a bank's transport (paths resolved by `resolve`).
pub fn connect(
    cfg: &TransportCfg,
    resolve: &dyn Fn(&Path) -> std::path::PathBuf,
) -> Result<Box<dyn Link + Send>, TransportError> {
    match cfg.kind {
        TransportKind::Sftp => Ok(Box::new(sftp::SftpLink::connect(cfg, resolve)?)),
        TransportKind::Folder => Ok(Box::new(folder::FolderLink::new(cfg, resolve))),
    }
}

/// Runs `op` up to `attempts` times while it fails transiently, waiting `backoff`, doubled each
/// time, with ±25 % jitter so that several instances do not retry in step.
pub fn with_retries<T>(
    attempts: u32,
    backoff: Duration,
    what: &str,
    mut op: impl FnMut(u32) -> Result<T, TransportError>,
) -> Result<T, TransportError> {
    let mut delay = backoff;
    let mut attempt = 1;
    loop {
        match op(attempt) {
            Err(e) if e.is_transient() && attempt < attempts => {
                let jitter = 0.75 + rand::random::<f64>() * 0.5;
                let wait = delay.mul_f64(jitter);
                tracing::warn!(
                    stage = "transport",
                    error_code = "transport.retry",
                    attempt,
                    "{what}: {e}; retrying in {wait:?}"
                );
                std::thread::sleep(wait);
                delay = delay.saturating_mul(2).min(Duration::from_secs(300));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The remote name of a batch's file: depends only on the batch, so a resend after a crash
/// looks for the very same name.
pub fn remote_name(
    pattern: &str,
    company: &str,
    msg_id: &str,
    channel: &str,
    date: &str,
    batch: &str,
) -> String {
    pattern
        .replace("{company}", company)
        .replace("{msgid}", msg_id)
        .replace("{channel}", channel)
        .replace("{date}", date)
        .replace("{batch}", batch)
}

/// Shell-style wildcard match: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A local file read for sending, hashed (SHA-256) as it is read, so that an upload is
/// checked against the digest recorded at sealing without reading the file twice.
pub(crate) struct Hashing {
    file: std::fs::File,
    hasher: sha2::Sha256,
}

impl Hashing {
    /// Reads `file` from byte `skip` on. The first `skip` bytes are already on the server (the
    /// part an interrupted attempt wrote): they are hashed from `part`, the server's own copy,
    /// so that what the final file will hold is what is checked.
    pub(crate) fn resume(
        mut file: std::fs::File,
        skip: u64,
        part: &mut dyn Read,
    ) -> std::io::Result<Hashing> {
        use sha2::Digest;
        use std::io::Seek;
        let mut hasher = sha2::Sha256::new();
        let copied = std::io::copy(&mut part.take(skip), &mut hasher)?;
        if copied != skip {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        file.seek(std::io::SeekFrom::Start(skip))?;
        Ok(Hashing { file, hasher })
    }

    /// Checks what was read (all of it) against `expected` (hex); `path` names the file.
    pub(crate) fn verify(self, path: &Path, expected: &str) -> Result<(), TransportError> {
        use sha2::Digest;
        let found = hex::encode(self.hasher.finalize());
        if found.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(TransportError::Changed {
                path: path.display().to_string(),
                expected: expected.to_string(),
                found,
                on_server: NOT_COMMITTED,
            })
        }
    }
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What `Changed` says about the server.
pub(crate) const NOT_COMMITTED: &str =
    "nothing was committed on the server (the partial upload was removed)";
pub(crate) const NOT_SENT: &str = "nothing was sent";
pub(crate) const ALREADY_THERE: &str = "a file of this name and size is on the server from an earlier attempt; it is not counted as delivered";

/// The SHA-256 of a whole local file against `expected`; `on_server` says, in the error, what
/// the server holds.
pub(crate) fn verify_file(
    path: &Path,
    expected: &str,
    on_server: &'static str,
) -> Result<(), TransportError> {
    let unreadable = |e: std::io::Error| TransportError::Permanent {
        what: path.display().to_string(),
        detail: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(unreadable)?;
    let mut h = Hashing::resume(f, 0, &mut std::io::empty()).map_err(unreadable)?;
    std::io::copy(&mut h, &mut std::io::sink()).map_err(unreadable)?;
    h.verify(path, expected).map_err(|e| match e {
        TransportError::Changed {
            path,
            expected,
            found,
            ..
        } => TransportError::Changed {
            path,
            expected,
            found,
            on_server,
        },
        other => other,
    })
}

/// The content id a `.part` is named by: the start of the file's SHA-256.
pub fn content_id(sha256: &str) -> &str {
    &sha256[..12.min(sha256.len())]
}

/// The temporary name of an upload in progress.
pub fn part_name(name: &str, content_id: &str) -> String {
    format!("{name}.{content_id}.part")
}

/// What a retry must do when neither the file nor its `.part` is on the server.
pub(crate) fn gone_after_complete(what: &str, name: &str) -> TransportError {
    TransportError::Permanent {
        what: what.to_string(),
        detail: format!(
            "{name} was complete on the server and is gone now: the bank most likely took it. NOT sending it again — check with the bank whether it arrived before any resend"
        ),
    }
}

/// A name from the server used as a local file name: no path separators, no dot files.
pub fn safe_local_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "_".to_string()
    } else {
        trimmed.to_string()
    }
}

/// A writer that asks a fence before every write, and writes at most `FENCED_PIECE` bytes at
/// a time: a sender stops within one piece of losing the right to send.
pub(crate) struct Fenced<'a, W: Write> {
    inner: W,
    fence: &'a dyn Fn() -> bool,
}

const FENCED_PIECE: usize = 32 * 1024;

impl<'a, W: Write> Fenced<'a, W> {
    pub(crate) fn new(inner: W, fence: &'a dyn Fn() -> bool) -> Self {
        Fenced { inner, fence }
    }
}

impl<W: Write> Write for Fenced<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !(self.fence)() {
            return Err(std::io::Error::other("fenced"));
        }
        self.inner.write(&buf[..buf.len().min(FENCED_PIECE)])
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `Fenced` unless the fence still holds (then the error was the transfer's own).
pub(crate) fn fenced_or(
    fence: &dyn Fn() -> bool,
    what: &str,
    other: TransportError,
) -> TransportError {
    if fence() {
        other
    } else {
        TransportError::Fenced(what.to_string())
    }
}

/// Copies in chunks so that long transfers can be interrupted between chunks.
pub(crate) fn copy_chunks(r: &mut dyn Read, w: &mut dyn Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 2 * 1024 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything.xml"));
        assert!(glob_match("*.pgp", "ACME_PAIN002_1.xml.pgp"));
        assert!(!glob_match("*.pgp", "ACME.xml"));
        assert!(glob_match("pain.002.??.xml", "pain.002.01.xml"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn remote_names_depend_only_on_the_batch() {
        assert_eq!(
            remote_name(
                "{company}_{msgid}.xml.pgp",
                "ACME",
                "PG123",
                "payroll",
                "20261130",
                "7"
            ),
            "ACME_PG123.xml.pgp"
        );
    }

    #[test]
    fn local_names_cannot_escape_the_spool() {
        assert_eq!(safe_local_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_local_name(".hidden"), "hidden");
        assert_eq!(safe_local_name("a\nb"), "a_b");
    }

    #[test]
    fn retries_only_transient_failures_and_stops_at_the_limit() {
        let calls = Cell::new(0);
        let r: Result<(), _> = with_retries(3, Duration::from_millis(1), "t", |_| {
            calls.set(calls.get() + 1);
            Err(TransportError::Transient {
                what: "x".into(),
                detail: "y".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(calls.get(), 3);
        calls.set(0);
        let r: Result<(), _> = with_retries(3, Duration::from_millis(1), "t", |_| {
            calls.set(calls.get() + 1);
            Err(TransportError::Permanent {
                what: "x".into(),
                detail: "y".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);
        let r = with_retries(3, Duration::from_millis(1), "t", |a| {
            if a < 2 {
                Err(TransportError::Transient {
                    what: "x".into(),
                    detail: "y".into(),
                })
            } else {
                Ok(a)
            }
        });
        assert_eq!(r.unwrap(), 2);
    }
}
