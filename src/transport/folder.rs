//! Local-folder transport: the SFTP semantics on a file system (a front-end processor's or a
//! shared folder). Files are written to `NAME.part`, synced, and linked to their final name
//! (a hard link never replaces an existing file), so a reader never sees half a file.

use super::{Link, PutOutcome, RemoteFile, TransportError, copy_chunks, glob_match};
use crate::config::{AfterDownload, Transport as TransportCfg};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

pub struct FolderLink {
    upload_dir: PathBuf,
    download_dir: PathBuf,
    patterns: Vec<String>,
    use_temp_name: bool,
    after: AfterDownload,
    archive_dir: Option<PathBuf>,
}

fn err(what: &Path, e: std::io::Error) -> TransportError {
    let what = what.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            TransportError::Permanent {
                what,
                detail: e.to_string(),
            }
        }
        _ => TransportError::Transient {
            what,
            detail: e.to_string(),
        },
    }
}

impl FolderLink {
    pub fn new(cfg: &TransportCfg, resolve: &dyn Fn(&Path) -> PathBuf) -> FolderLink {
        let dir = |d: &Option<String>| resolve(Path::new(d.as_deref().unwrap_or(".")));
        FolderLink {
            upload_dir: dir(&cfg.upload_dir),
            download_dir: dir(&cfg.download_dir),
            patterns: cfg.download_patterns.clone(),
            use_temp_name: cfg.use_temp_name,
            after: cfg.after_download,
            archive_dir: cfg.archive_dir.as_ref().map(|d| resolve(Path::new(d))),
        }
    }
}

impl Link for FolderLink {
    fn put(
        &mut self,
        local: &Path,
        name: &str,
        sha256: &str,
        allow_fresh: bool,
        fence: &dyn Fn() -> bool,
    ) -> Result<PutOutcome, TransportError> {
        let size = std::fs::metadata(local).map_err(|e| err(local, e))?.len();
        let final_path = self.upload_dir.join(name);
        if let Ok(m) = std::fs::metadata(&final_path) {
            return if m.len() == size {
                super::verify_file(local, sha256, super::ALREADY_THERE)?;
                Ok(PutOutcome::AlreadyThere { bytes: size })
            } else {
                Err(TransportError::Conflict(
                    final_path.display().to_string(),
                    format!("{} bytes, ours has {size}", m.len()),
                ))
            };
        }
        let part = self
            .upload_dir
            .join(super::part_name(name, super::content_id(sha256)));
        let target = if self.use_temp_name {
            &part
        } else {
            &final_path
        };
        let existing = std::fs::metadata(target).map(|m| m.len()).ok();
        if existing.is_none() && !allow_fresh {
            return Err(super::gone_after_complete(
                &self.upload_dir.display().to_string(),
                name,
            ));
        }
        let offset = existing.filter(|o| *o <= size).unwrap_or(0);
        if !self.use_temp_name {
            // Written under its final name: checked before a byte is written, since nothing
            // can be taken back once the bank may have seen it.
            super::verify_file(local, sha256, super::NOT_SENT)?;
        }
        // Hashed as it is read, with the part already there read back: committed only if the
        // whole matches the record.
        let mut sent: Box<dyn std::io::Read> = if offset > 0 {
            Box::new(std::fs::File::open(target).map_err(|e| err(target, e))?)
        } else {
            Box::new(std::io::empty())
        };
        let mut src = std::fs::File::open(local)
            .and_then(|f| super::Hashing::resume(f, offset, &mut sent))
            .map_err(|e| err(local, e))?;
        drop(sent);
        let mut dst = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(target)
            .map_err(|e| err(target, e))?;
        dst.seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| err(target, e))?;
        let what = target.display().to_string();
        copy_chunks(&mut src, &mut super::Fenced::new(&mut dst, fence))
            .map_err(|e| super::fenced_or(fence, &what, err(target, e)))?;
        dst.flush().map_err(|e| err(target, e))?;
        dst.sync_all().map_err(|e| err(target, e))?;
        drop(dst);
        if let Err(changed) = src.verify(local, sha256) {
            let _ = std::fs::remove_file(target);
            return Err(changed);
        }
        let interrupted = |p: &Path, e: std::io::Error| TransportError::Interrupted {
            what: p.display().to_string(),
            detail: e.to_string(),
        };
        if !fence() {
            return Err(TransportError::Fenced(what));
        }
        if self.use_temp_name {
            // The commit point: a hard link never replaces an existing file.
            std::fs::hard_link(&part, &final_path).map_err(|e| interrupted(&final_path, e))?;
            std::fs::remove_file(&part).map_err(|e| interrupted(&part, e))?;
        }
        if let Ok(d) = std::fs::File::open(&self.upload_dir) {
            let _ = d.sync_all();
        }
        match std::fs::metadata(&final_path) {
            Ok(m) if m.len() != size => Err(TransportError::Conflict(
                final_path.display().to_string(),
                format!("{} bytes after the copy, ours has {size}", m.len()),
            )),
            // Taken away at once by whoever watches the folder: delivered.
            _ => Ok(PutOutcome::Uploaded { bytes: size }),
        }
    }

    fn list(&mut self) -> Result<Vec<RemoteFile>, TransportError> {
        let rd = std::fs::read_dir(&self.download_dir).map_err(|e| err(&self.download_dir, e))?;
        let mut files = Vec::new();
        for entry in rd.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if meta.is_file()
                && !name.ends_with(".part")
                && self.patterns.iter().any(|p| glob_match(p, &name))
            {
                files.push(RemoteFile {
                    name,
                    size: meta.len(),
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    fn get(&mut self, name: &str, out: &mut dyn Write) -> Result<u64, TransportError> {
        let path = self.download_dir.join(name);
        let mut f = std::fs::File::open(&path).map_err(|e| err(&path, e))?;
        copy_chunks(&mut f, out).map_err(|e| err(&path, e))
    }

    fn dispose(&mut self, name: &str) -> Result<(), TransportError> {
        let path = self.download_dir.join(name);
        match (self.after, &self.archive_dir) {
            (AfterDownload::Keep, _) => Ok(()),
            (AfterDownload::Move, Some(dir)) => {
                std::fs::rename(&path, dir.join(name)).map_err(|e| err(&path, e))
            }
            _ => std::fs::remove_file(&path).map_err(|e| err(&path, e)),
        }
    }

    fn check(&mut self) -> Vec<(String, Result<(), String>)> {
        let probe = self.upload_dir.join(".paygate-check.part");
        let up =
            std::fs::write(&probe, b"paygate check\n").and_then(|_| std::fs::remove_file(&probe));
        let down = std::fs::read_dir(&self.download_dir).map(|_| ());
        vec![
            (
                format!("upload folder {} writable", self.upload_dir.display()),
                up.map_err(|e| e.to_string()),
            ),
            (
                format!("download folder {} readable", self.download_dir.display()),
                down.map_err(|e| e.to_string()),
            ),
        ]
    }
}
