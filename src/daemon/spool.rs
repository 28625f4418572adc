//! The private spool at start: plaintext that a crash left behind is removed before anything
//! runs. What a step still needs is kept (a rendered file waiting for its approval or its seal,
//! a sealed file waiting to be sent); what the store can give again is removed (an opened
//! bank file is opened again from the encrypted download; a rendered file is rendered again
//! from the stored payments).

use crate::config::Config;
use crate::model::BatchState;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};

/// The entries of a folder (none when it cannot be read).
fn entries(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp") || name.starts_with(crate::durable::TEMP_PREFIX)
}

fn remove_file(p: &Path, n: &mut usize) {
    if std::fs::remove_file(p).is_ok() {
        *n += 1;
    }
}

/// Keeps a file an earlier version kept in plaintext (`archive::keep`), then removes the
/// plaintext. The file stays, logged, when archiving fails.
async fn archive_old(
    cfg: &Config,
    store: &Store,
    src: &Path,
    dst: &Path,
    what: crate::archive::Kept<'_>,
) -> Result<(), StoreError> {
    match crate::archive::keep(cfg, store, src, dst, what).await {
        Ok(_) => {
            let _ = std::fs::remove_file(src);
            tracing::info!(
                stage = "at_rest",
                "{} archived encrypted as {}",
                src.display(),
                dst.display()
            );
            Ok(())
        }
        Err(crate::archive::KeepError::Store(e)) => Err(e),
        Err(crate::archive::KeepError::Archive(e)) => {
            tracing::error!(
                error_code = "archive.failed",
                "{} kept in plaintext: {e}",
                src.display()
            );
            Ok(())
        }
    }
}

/// What an earlier version kept in plaintext for the audit — accepted source files in the
/// channels' `archive/`, sealed files in `outbox/`, opened bank files in `spool/` — is
/// encrypted into the archive before anything is cleaned, so that no copy is lost.
async fn upgrade_archive(cfg: &Config, store: &Store) -> Result<usize, StoreError> {
    if crate::archive::ArchiveKey::of(cfg).is_err() {
        return Ok(0);
    }
    let mut n = 0;
    for ch in cfg.channels.values() {
        let dir = cfg.resolve(&ch.folder).join("archive");
        for f in entries(&dir).into_iter().filter(|p| p.is_file()) {
            let name = name_of(&f);
            if name.ends_with(".pgp") || is_temp(&name) {
                continue;
            }
            // `batchN-NAME` (and a time stamp when the name was taken).
            let batch = name
                .strip_prefix("batch")
                .and_then(|r| r.split_once('-'))
                .and_then(|(b, _)| b.parse::<i64>().ok());
            let dst = dir.join(format!("{name}.pgp"));
            let what = crate::archive::Kept {
                batches: &[batch],
                bank: None,
                kind: "source",
                name: &name,
            };
            archive_old(cfg, store, &f, &dst, what).await?;
            n += 1;
        }
    }
    for dir in entries(&cfg.data_dir().join("outbox"))
        .into_iter()
        .filter(|p| p.is_dir())
    {
        let msg_id = name_of(&dir);
        let Some(b) = store.batch_by_msg_id(&msg_id).await? else {
            continue;
        };
        if matches!(
            b.state,
            BatchState::AwaitingApproval | BatchState::Approved | BatchState::Received
        ) {
            continue;
        }
        for f in entries(&dir).into_iter().filter(|p| p.is_file()) {
            let name = name_of(&f);
            if name == "render.out" || is_temp(&name) {
                continue;
            }
            let dst = crate::archive::path_for(cfg, Some(b.id), &b.bank, "sealed", &name);
            if store.is_archived(&dst.display().to_string()).await? {
                continue;
            }
            // The sealed file itself stays: it may still be sent; `clean` removes it once it is.
            let what = crate::archive::Kept {
                batches: &[Some(b.id)],
                bank: Some(&b.bank),
                kind: "sealed",
                name: &name,
            };
            match crate::archive::keep(cfg, store, &f, &dst, what).await {
                Ok(_) => n += 1,
                Err(crate::archive::KeepError::Store(e)) => return Err(e),
                Err(crate::archive::KeepError::Archive(e)) => {
                    tracing::error!(
                        error_code = "archive.failed",
                        "{} not archived: {e}",
                        f.display()
                    );
                }
            }
        }
    }
    for r in store.return_files(None).await? {
        let Some(opened) = r.opened_path.as_deref().map(Path::new) else {
            continue;
        };
        if r.state != "processed"
            || !opened.is_file()
            || opened.extension().is_some_and(|e| e == "pgp")
        {
            continue;
        }
        let name = name_of(opened);
        let sha = crate::delivery::sha256_file(opened)
            .map(|(s, _)| s)
            .unwrap_or_default();
        let batches: Vec<Option<i64>> = match store.batches_of_report(&sha).await? {
            b if b.is_empty() => vec![None],
            b => b.into_iter().map(Some).collect(),
        };
        let dst = crate::archive::path_for(cfg, batches[0], &r.bank, "return", &name);
        let what = crate::archive::Kept {
            batches: &batches,
            bank: Some(&r.bank),
            kind: "return",
            name: &r.remote_name,
        };
        archive_old(cfg, store, opened, &dst, what).await?;
        n += 1;
    }
    Ok(n)
}

/// Removes leftover plaintext; returns how many files it archived or removed.
pub async fn clean(cfg: &Config, store: &Store) -> Result<usize, StoreError> {
    let data = cfg.data_dir();
    let mut n = upgrade_archive(cfg, store).await?;
    for dir in entries(&data.join("outbox")) {
        if !dir.is_dir() {
            continue;
        }
        let msg_id = name_of(&dir);
        for f in entries(&dir) {
            let name = name_of(&f);
            if is_temp(&name) {
                remove_file(&f, &mut n);
            }
        }
        let Some(b) = store.batch_by_msg_id(&msg_id).await? else {
            continue;
        };
        match b.state {
            // Pickup or the seal still need the rendered file.
            BatchState::AwaitingApproval | BatchState::Approved => {}
            // Sealed and archived: only the sealed file is still needed.
            BatchState::Sealed | BatchState::Uploading => {
                remove_file(&dir.join("render.out"), &mut n);
            }
            // Read again at the next pickup, or nothing more to send.
            _ => {
                n += entries(&dir).len();
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let processed: Vec<_> = store
        .return_files(None)
        .await?
        .into_iter()
        .filter(|r| r.state == "processed")
        .map(|r| r.spool_path)
        .collect();
    for p in processed {
        remove_file(Path::new(&p), &mut n);
    }
    // An archived copy cut short by a crash (its temporary file; the step archives again).
    let mut dirs = vec![data.join("archive")];
    while let Some(d) = dirs.pop() {
        for p in entries(&d) {
            if p.is_dir() {
                dirs.push(p);
            } else if is_temp(&name_of(&p)) {
                remove_file(&p, &mut n);
            }
        }
    }
    for bank in entries(&data.join("spool")) {
        for f in entries(&bank.join("opened")) {
            remove_file(&f, &mut n);
        }
        for f in entries(&bank.join("incoming")) {
            let name = name_of(&f);
            if is_temp(&name) {
                remove_file(&f, &mut n);
            }
        }
    }
    Ok(n)
}
