//! SFTP with ssh2 (libssh2): key authentication, the server's host key pinned and checked on
//! every connection (fail closed, never trust on first use), a timeout on every blocking call.

use super::{Link, PutOutcome, RemoteFile, TransportError, copy_chunks, glob_match};
use crate::config::{AfterDownload, Transport as TransportCfg};
use base64::Engine;
use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, MethodType, Session, Sftp};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct SftpLink {
    // The session must outlive the SFTP channel.
    sftp: Sftp,
    _session: Session,
    upload_dir: PathBuf,
    download_dir: PathBuf,
    patterns: Vec<String>,
    use_temp_name: bool,
    after: AfterDownload,
    archive_dir: Option<PathBuf>,
    what: String,
}

fn transient(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Transient {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

fn permanent(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Permanent {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// SFTP status codes that no retry will change (no such file, permission denied …).
fn classify(what: &str, e: ssh2::Error) -> TransportError {
    match e.code() {
        ssh2::ErrorCode::SFTP(2) | ssh2::ErrorCode::SFTP(3) | ssh2::ErrorCode::SFTP(4) => {
            permanent(what, e)
        }
        _ => transient(what, e),
    }
}

pub fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The host as known_hosts writes it: `host`, or `[host]:port` for another port.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl SftpLink {
    pub fn connect(
        cfg: &TransportCfg,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<SftpLink, TransportError> {
        let host = cfg.host.clone().unwrap_or_default();
        let port = cfg.port;
        let user = cfg.user.clone().unwrap_or_default();
        let what = format!("sftp {user}@{host}:{port}");
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| transient(&what, format!("cannot resolve the host: {e}")))?
            .next()
            .ok_or_else(|| permanent(&what, "the host name has no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| transient(&what, format!("cannot connect: {e}")))?;
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| transient(&what, e))?;
        tcp.set_write_timeout(Some(timeout))
            .map_err(|e| transient(&what, e))?;
        let mut session = Session::new().map_err(|e| permanent(&what, e))?;
        // libssh2 waits forever unless told otherwise.
        session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        session
            .method_pref(
                MethodType::HostKey,
                "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
            )
            .map_err(|e| permanent(&what, e))?;
        session.set_tcp_stream(tcp);
        session
            .handshake()
            .map_err(|e| transient(&what, format!("SSH handshake failed: {e}")))?;
        verify_host_key(&session, cfg, &host, port, resolve)?;
        let identity = cfg.identity.as_deref().map(resolve);
        if let Some(identity) = &identity {
            check_private_mode(identity, "SSH key")?;
            // A refused key is reported below as AuthFailed; the library's own words go to the log.
            if let Err(e) = session.userauth_pubkey_file(&user, None, identity, None) {
                tracing::debug!("public key authentication: {e}");
            }
        }
        let password_file = cfg.password_file.as_deref().map(resolve);
        if !session.authenticated()
            && let Some(pw_file) = &password_file
        {
            // A systemd credential is private to the service whatever its mode shows (newer
            // systemd gives it to the service's user through an ACL, mode 0440).
            if !crate::vault::is_credential(pw_file) {
                check_private_mode(pw_file, "SFTP password file")?;
            }
            let password = std::fs::read_to_string(pw_file)
                .map_err(|e| permanent(&format!("SFTP password file {}", pw_file.display()), e))?;
            let password = password.trim_end_matches(['\n', '\r']);
            // The password is never logged, not even the library's message about it.
            if session.userauth_password(&user, password).is_err() {
                tracing::debug!("password authentication refused");
            }
        }
        if !session.authenticated() {
            return Err(TransportError::AuthFailed {
                host,
                port,
                user,
                identity: match (&identity, &password_file) {
                    (Some(i), None) => format!("key {}", i.display()),
                    (None, Some(p)) => format!("password from {}", p.display()),
                    (Some(i), Some(p)) => {
                        format!("key {} or the password from {}", i.display(), p.display())
                    }
                    (None, None) => "no key or password configured".into(),
                },
            });
        }
        let sftp = session
            .sftp()
            .map_err(|e| transient(&what, format!("cannot start SFTP: {e}")))?;
        Ok(SftpLink {
            sftp,
            _session: session,
            upload_dir: PathBuf::from(cfg.upload_dir.clone().unwrap_or_default()),
            download_dir: PathBuf::from(cfg.download_dir.clone().unwrap_or_default()),
            patterns: cfg.download_patterns.clone(),
            use_temp_name: cfg.use_temp_name,
            after: cfg.after_download,
            archive_dir: cfg.archive_dir.as_ref().map(PathBuf::from),
            what,
        })
    }

    fn size_of(&self, path: &Path) -> Result<Option<u64>, TransportError> {
        match self.sftp.stat(path) {
            Ok(st) => Ok(Some(st.size.unwrap_or(0))),
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(2) => Ok(None),
            Err(e) => Err(classify(&self.what, e)),
        }
    }
}

/// The server's key must match the pin (a known_hosts file, or fingerprints in the config).
fn verify_host_key(
    session: &Session,
    cfg: &TransportCfg,
    host: &str,
    port: u16,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<(), TransportError> {
    let what = format!("sftp {host}:{port}");
    let (key, ktype) = session
        .host_key()
        .ok_or_else(|| permanent(&what, "the server presented no host key"))?;
    let hash = session
        .host_key_hash(HashType::Sha256)
        .ok_or_else(|| permanent(&what, "cannot hash the host key"))?;
    let fingerprint = format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
    );
    let key_type = key_type_name(ktype).to_string();
    if cfg
        .host_key_fingerprints
        .iter()
        .any(|f| f.trim() == fingerprint)
    {
        return Ok(());
    }
    let mut where_ = String::from("host_key_fingerprints");
    if let Some(kh_path) = &cfg.known_hosts {
        let kh_path = resolve(kh_path);
        where_ = kh_path.display().to_string();
        let mut kh = session.known_hosts().map_err(|e| permanent(&what, e))?;
        if kh_path.exists() {
            kh.read_file(&kh_path, KnownHostFileKind::OpenSSH)
                .map_err(|e| permanent(&what, format!("cannot read {}: {e}", kh_path.display())))?;
        }
        match kh.check_port(host, port, key) {
            CheckResult::Match => return Ok(()),
            CheckResult::Mismatch => {
                return Err(TransportError::HostKeyChanged {
                    host: host.to_string(),
                    port,
                    key_type,
                    fingerprint,
                });
            }
            CheckResult::NotFound | CheckResult::Failure => {}
        }
    } else if !cfg.host_key_fingerprints.is_empty() {
        return Err(TransportError::HostKeyChanged {
            host: host.to_string(),
            port,
            key_type,
            fingerprint,
        });
    }
    Err(TransportError::HostKeyUnknown {
        host: host.to_string(),
        port,
        where_,
        known_hosts_line: format!(
            "{} {key_type} {}",
            known_hosts_name(host, port),
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
        key_type,
        fingerprint,
    })
}

impl Link for SftpLink {
    fn put(
        &mut self,
        local: &Path,
        name: &str,
        sha256: &str,
        allow_fresh: bool,
        fence: &dyn Fn() -> bool,
    ) -> Result<PutOutcome, TransportError> {
        let w = self.what.clone();
        let size = std::fs::metadata(local)
            .map_err(|e| permanent(&local.display().to_string(), e))?
            .len();
        let final_path = self.upload_dir.join(name);
        if let Some(existing) = self.size_of(&final_path)? {
            return if existing == size {
                super::verify_file(local, sha256, super::ALREADY_THERE)?;
                Ok(PutOutcome::AlreadyThere { bytes: size })
            } else {
                Err(TransportError::Conflict(
                    final_path.display().to_string(),
                    format!("{existing} bytes, ours has {size}"),
                ))
            };
        }
        let target = if self.use_temp_name {
            self.upload_dir
                .join(super::part_name(name, super::content_id(sha256)))
        } else {
            final_path.clone()
        };
        // A leftover of an interrupted attempt: the same content (it carries the content id),
        // so its bytes are a prefix of ours; continue after them.
        let mut offset = self.size_of(&target)?;
        if offset.is_none() && !allow_fresh {
            return Err(super::gone_after_complete(&w, name));
        }
        if offset.is_some_and(|o| o > size) {
            self.sftp.unlink(&target).map_err(|e| classify(&w, e))?;
            offset = None;
        }
        let offset = offset.unwrap_or(0);
        if !self.use_temp_name {
            // Written under its final name: checked before a byte is written, since nothing
            // can be taken back once the bank may have seen it.
            super::verify_file(local, sha256, super::NOT_SENT)?;
        }
        // What is sent is hashed as it is read, with the part already on the server read back
        // from there: the upload is committed only if the whole is what was recorded.
        let local_file =
            std::fs::File::open(local).map_err(|e| permanent(&local.display().to_string(), e))?;
        let mut src = if offset > 0 {
            let mut part = self.sftp.open(&target).map_err(|e| classify(&w, e))?;
            super::Hashing::resume(local_file, offset, &mut part).map_err(|e| {
                transient(
                    &w,
                    format!("reading back the part {}: {e}", target.display()),
                )
            })?
        } else {
            super::Hashing::resume(local_file, 0, &mut std::io::empty())
                .map_err(|e| permanent(&local.display().to_string(), e))?
        };
        let flags = if offset > 0 {
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::APPEND
        } else {
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE
        };
        let mut remote = self
            .sftp
            .open_mode(&target, flags, 0o600, ssh2::OpenType::File)
            .map_err(|e| classify(&w, e))?;
        copy_chunks(&mut src, &mut super::Fenced::new(&mut remote, fence)).map_err(|e| {
            super::fenced_or(
                fence,
                &w,
                transient(&w, format!("upload of {name} interrupted: {e}")),
            )
        })?;
        // fsync@openssh.com where the server has it; not every server does.
        if let Err(e) = remote.fsync() {
            tracing::debug!("the server does not sync files on request: {e}");
        }
        drop(remote);
        if let Err(changed) = src.verify(local, sha256) {
            if self.sftp.unlink(&target).is_err() {
                tracing::warn!(
                    "could not remove {} after a refused upload",
                    target.display()
                );
            }
            return Err(changed);
        }
        let interrupted = |detail: String| TransportError::Interrupted {
            what: w.clone(),
            detail,
        };
        // Every byte is there before the file gets its final name.
        match self.size_of(&target) {
            Ok(Some(s)) if s == size => {}
            Ok(other) => {
                return Err(transient(
                    &w,
                    format!(
                        "{} holds {other:?} bytes after the upload, expected {size}",
                        target.display()
                    ),
                ));
            }
            Err(e) => return Err(interrupted(e.to_string())),
        }
        if !fence() {
            return Err(TransportError::Fenced(w));
        }
        if self.use_temp_name {
            // The commit point: once renamed, the file is the bank's.
            self.sftp.rename(&target, &final_path, None).map_err(|e| {
                interrupted(format!("renaming {} to {name}: {e}", target.display()))
            })?;
        }
        match self.size_of(&final_path) {
            Ok(Some(s)) if s == size => Ok(PutOutcome::Uploaded { bytes: size }),
            // Some servers take a file away the moment it appears.
            Ok(None) => Ok(PutOutcome::Uploaded { bytes: size }),
            Ok(Some(s)) => Err(TransportError::Conflict(
                final_path.display().to_string(),
                format!("{s} bytes after our rename, ours has {size}"),
            )),
            Err(_) => Ok(PutOutcome::Uploaded { bytes: size }),
        }
    }

    fn list(&mut self) -> Result<Vec<RemoteFile>, TransportError> {
        let entries = self
            .sftp
            .readdir(&self.download_dir)
            .map_err(|e| classify(&self.what, e))?;
        let mut files: Vec<RemoteFile> = entries
            .into_iter()
            .filter(|(_, st)| st.is_file())
            .filter_map(|(p, st)| {
                let name = p.file_name()?.to_str()?.to_string();
                let matched = !name.ends_with(".part")
                    && self.patterns.iter().any(|pat| glob_match(pat, &name));
                matched.then_some(RemoteFile {
                    name,
                    size: st.size.unwrap_or(0),
                })
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    fn get(&mut self, name: &str, out: &mut dyn Write) -> Result<u64, TransportError> {
        let path = self.download_dir.join(name);
        let mut f = self.sftp.open(&path).map_err(|e| classify(&self.what, e))?;
        copy_chunks(&mut f, out)
            .map_err(|e| transient(&self.what, format!("download of {name} interrupted: {e}")))
    }

    fn dispose(&mut self, name: &str) -> Result<(), TransportError> {
        let path = self.download_dir.join(name);
        match (self.after, &self.archive_dir) {
            (AfterDownload::Keep, _) => Ok(()),
            (AfterDownload::Move, Some(dir)) => self
                .sftp
                .rename(&path, &dir.join(name), None)
                .map_err(|e| classify(&self.what, e)),
            _ => self.sftp.unlink(&path).map_err(|e| classify(&self.what, e)),
        }
    }

    fn check(&mut self) -> Vec<(String, Result<(), String>)> {
        let mut out = vec![];
        let probe = self.upload_dir.join(".paygate-check.part");
        let up = self
            .sftp
            .create(&probe)
            .map_err(|e| e.to_string())
            .and_then(|mut f| f.write_all(b"paygate check\n").map_err(|e| e.to_string()))
            .and_then(|_| self.sftp.unlink(&probe).map_err(|e| e.to_string()));
        out.push((
            format!("upload folder {} writable", self.upload_dir.display()),
            up,
        ));
        let down = self.sftp.readdir(&self.download_dir).map(|_| ());
        out.push((
            format!("download folder {} readable", self.download_dir.display()),
            down.map_err(|e| e.to_string()),
        ));
        out
    }
}

/// A secret file (key, password) must be readable by its owner only, as ssh insists.
fn check_private_mode(path: &Path, what: &str) -> Result<(), TransportError> {
    use std::os::unix::fs::PermissionsExt;
    let what = format!("{what} {}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| permanent(&what, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(permanent(
            &what,
            format!(
                "is accessible by others (mode {mode:04o}); run: chmod 600 {}",
                path.display()
            ),
        ));
    }
    Ok(())
}
