//! The private spool at start: plaintext that a crash left behind is removed before anything
//! runs. What a step still needs is kept (a rendered file waiting for its approval or its seal,
//! a sealed file waiting to be sent); what the store can give again is removed (an opened
//! bank file is opened again from the encrypted download; a rendered file is rendered again
//! from the stored payments).

use crate::config::Config;
use crate::model::BatchState;
use crate::store::{Store, StoreError};
use std::path::Path;

fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp") || name.starts_with(crate::durable::TEMP_PREFIX)
}

fn remove_file(p: &Path, n: &mut usize) {
    if std::fs::remove_file(p).is_ok() {
        *n += 1;
    }
}

/// Removes leftover plaintext; returns how many files it removed.
pub async fn clean(cfg: &Config, store: &Store) -> Result<usize, StoreError> {
    let data = cfg.data_dir();
    let mut n = 0;
    let entries = |d: &Path| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    for dir in entries(&data.join("outbox")) {
        if !dir.is_dir() {
            continue;
        }
        let msg_id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for f in entries(&dir) {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
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
    for bank in entries(&data.join("spool")) {
        for f in entries(&bank.join("opened")) {
            remove_file(&f, &mut n);
        }
        for f in entries(&bank.join("incoming")) {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if is_temp(&name) {
                remove_file(&f, &mut n);
            }
        }
    }
    Ok(n)
}
