//! The steps after approval: seal (render if needed, sign and encrypt, archive the sealed
//! bytes, record them), upload (record `uploading` first, then send exactly the archived bytes
//! under the recorded name), and expiry of batches nobody approved. Each step starts from the
//! state the store holds and ends with one guarded transition, so a crash anywhere repeats at
//! most the step in flight — and a repeated upload sends the very same bytes under the very
//! same name.

use super::Ctx;
use super::pickup::{create_private_dir, outbox};
use crate::config::{Config, Encryption};
use crate::model::BatchState;
use crate::render::{self, BatchHeader};
use crate::store::BatchRow;
use crate::transport::{self, PutOutcome};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Setup(String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> StepError + '_ {
    move |e| StepError::Io(p.to_path_buf(), e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Renders (unless pickup already did), seals and archives an approved batch's bank file,
/// then records it: `approved` → `sealed`.
pub async fn seal(ctx: &Arc<Ctx>, row: &BatchRow) -> Result<(), StepError> {
    let cfg = ctx.cfg();
    let msg_id = row
        .msg_id
        .clone()
        .ok_or_else(|| StepError::Setup(format!("batch {} has no MsgId", row.id)))?;
    let bank = cfg
        .banks
        .get(&row.bank)
        .ok_or_else(|| StepError::Setup(format!("bank `{}` is no longer configured", row.bank)))?;
    let dir = outbox(&cfg, &msg_id);
    create_private_dir(&dir).map_err(io(&dir))?;
    let rendered = dir.join("render.out");
    if !rendered.is_file() {
        // The rendered file did not survive (a crash, a cleaned spool): render it again from
        // the stored payments, under the same MsgId and creation time.
        let payments = ctx.store.payments_to_render(row.id).await?;
        let created = DateTime::parse_from_rfc3339(&row.created_at)
            .map(|t| t.with_timezone(&chrono::Local).fixed_offset())
            .unwrap_or_else(|_| chrono::Local::now().fixed_offset());
        let header = BatchHeader::new(&cfg, &row.channel, msg_id.clone(), created)
            .ok_or_else(|| StepError::Setup(format!("channel `{}` is not usable", row.channel)))?;
        let format = bank
            .format
            .clone()
            .unwrap_or_else(|| "pain.001.001.09".into());
        let (templates, target) = (cfg.templates_dir(), rendered.clone());
        blocking(move || -> Result<(), StepError> {
            let mut file = render::open(&format, &templates, header)
                .map_err(|e| StepError::Setup(e.to_string()))?;
            for p in &payments {
                let e2e = p.end_to_end_id.clone().unwrap_or_default();
                file.add(p, &e2e)
                    .map_err(|e| StepError::Setup(format!("re-rendering: {e}")))?;
            }
            let dir = target.parent().unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
            file.finish(&mut w)
                .map_err(|e| StepError::Setup(format!("re-rendering: {e}")))?;
            let tmp = w
                .into_inner()
                .map_err(|e| StepError::Io(target.clone(), e.into_error()))?;
            tmp.as_file().sync_all().map_err(io(&target))?;
            tmp.persist(&target)
                .map_err(|e| StepError::Io(target.clone(), e.error))?;
            Ok(())
        })
        .await?;
    }
    let created = DateTime::parse_from_rfc3339(&row.created_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let remote = remote_name_of(&cfg, row, &msg_id, created);
    let sealed = dir.join(transport::safe_local_name(&remote));
    let encryption = bank.encryption;
    let (cfg_b, bank_name, src, dst) = (
        cfg.clone(),
        row.bank.clone(),
        rendered.clone(),
        sealed.clone(),
    );
    // The rendered file is archived (encrypted to the archive key) on one core while it is
    // sealed for the bank on the other.
    let plain_name = remote
        .strip_suffix(".pgp")
        .or_else(|| remote.strip_suffix(".gpg"))
        .unwrap_or(&remote)
        .to_string();
    let keep = |kind: &'static str, name: String, src: PathBuf| {
        let (cfg, store, bank, batch) = (cfg.clone(), ctx.store.clone(), row.bank.clone(), row.id);
        async move {
            let dst = crate::archive::path_for(&cfg, Some(batch), &bank, kind, &name);
            let what = crate::archive::Kept {
                batches: &[Some(batch)],
                bank: Some(&bank),
                kind,
                name: &name,
            };
            crate::archive::keep(&cfg, &store, &src, &dst, what)
                .await
                .map_err(|e| StepError::Setup(e.to_string()))
        }
    };
    let (archived, sealing) = tokio::join!(
        keep("rendered", plain_name, rendered.clone()),
        blocking(move || seal_file(&cfg_b, &bank_name, encryption, &src, &dst))
    );
    let sha = sealing?;
    archived?;
    super::crash_point("sealed-file-written");
    // Both kept for the audit, encrypted to the archive key, before the seal is recorded: a
    // crash before `sealed` seals (and archives) again under the same names.
    keep("sealed", remote.clone(), sealed.clone()).await?;
    // Several instances share the store: the sealed file goes into it with the seal, so that
    // whichever instance sends the batch sends exactly these bytes.
    let bytes = if ctx.store.is_shared() {
        let p = sealed.clone();
        Some(
            blocking(move || std::fs::read(&p))
                .await
                .map_err(|e| StepError::Io(sealed.clone(), e))?,
        )
    } else {
        None
    };
    ctx.store
        .mark_sealed(
            row.id,
            &sealed.display().to_string(),
            &sha,
            &remote,
            bytes.as_deref(),
            Utc::now(),
        )
        .await?;
    super::crash_point("sealed");
    // The plaintext is not needed any more: it is archived, encrypted to the archive key.
    if encryption == Encryption::Openpgp {
        let _ = std::fs::remove_file(&rendered);
    }
    tracing::info!(batch = row.id, channel = %row.channel, stage = "sealed", remote_name = %remote, "batch {} sealed ({})", row.id, sealed.display());
    Ok(())
}

/// Puts the sealed file of `batch` kept in the store at `local` (written beside, synced,
/// renamed), unless a file with the recorded SHA-256 is already there.
async fn fetch_sealed(
    ctx: &Arc<Ctx>,
    batch: i64,
    local: &Path,
    sha: &str,
) -> Result<(), StepError> {
    let p = local.to_path_buf();
    if let Ok((found, _)) = blocking(move || crate::delivery::sha256_file(&p)).await
        && found == sha
    {
        return Ok(());
    }
    let bytes = ctx.store.sealed_bytes(batch).await?.ok_or_else(|| {
        StepError::Setup(format!(
            "batch {batch}: its sealed file is neither in this instance's outbox nor in the store (sealed before the store was shared); send it from the instance that sealed it"
        ))
    })?;
    let got = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    if got != sha {
        return Err(StepError::Setup(format!(
            "batch {batch}: the sealed file kept in the store is not the one recorded (SHA-256 {got}, recorded {sha}); it is not sent"
        )));
    }
    let p = local.to_path_buf();
    blocking(move || {
        let dir = p.parent().unwrap_or(Path::new("."));
        crate::durable::create_private_dir(dir)?;
        crate::durable::write_bytes(&p, &bytes)
    })
    .await
    .map_err(|e| StepError::Io(local.to_path_buf(), e))
}

fn remote_name_of(cfg: &Config, row: &BatchRow, msg_id: &str, created: DateTime<Utc>) -> String {
    let pattern = cfg
        .banks
        .get(&row.bank)
        .and_then(|b| b.transport.as_ref())
        .map_or_else(
            || "{company}_{msgid}.pgp".to_string(),
            |t| t.remote_name.clone(),
        );
    transport::remote_name(
        &pattern,
        &cfg.company_short_name(),
        msg_id,
        &row.channel,
        &created.format("%Y%m%d").to_string(),
        &row.id.to_string(),
    )
}

/// Signs and encrypts `src` into `dst` (temporary file, synced, renamed); returns the sealed
/// file's SHA-256. With `encryption = "none"` the rendered file is the sealed file.
fn seal_file(
    cfg: &Config,
    bank: &str,
    encryption: Encryption,
    src: &Path,
    dst: &Path,
) -> Result<String, StepError> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    let sha = match encryption {
        Encryption::None => {
            std::fs::copy(src, dst).map_err(io(dst))?;
            std::fs::File::open(dst)
                .and_then(|f| f.sync_all())
                .map_err(io(dst))?;
            crate::delivery::sha256_file(dst).map_err(io(dst))?.0
        }
        Encryption::Openpgp => {
            let (kr, _) = crate::delivery::keyring(cfg, bank, SystemTime::now())?;
            let mut input = std::fs::File::open(src).map_err(io(src))?;
            let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
            // Hashed as it is written: the digest recorded with `sealed`.
            let mut w = std::io::BufWriter::with_capacity(
                1 << 20,
                crate::delivery::HashingWriter::new(tmp),
            );
            kr.seal(&mut input, &mut w)
                .map_err(crate::delivery::DeliveryError::from)?;
            let (tmp, sha) = w
                .into_inner()
                .map_err(|e| StepError::Io(dst.to_path_buf(), e.into_error()))?
                .finish();
            tmp.as_file().sync_all().map_err(io(dst))?;
            tmp.persist(dst)
                .map_err(|e| StepError::Io(dst.to_path_buf(), e.error))?;
            sha
        }
    };
    super::folders::sync_dir(dir);
    Ok(sha)
}

/// Sends a sealed batch: `sealed` → `uploading` (durable before the first byte leaves), then
/// the archived bytes under the recorded name, then `sent`. A batch found `uploading` after a
/// restart is sent again exactly so: the transport finds a completed file and stops, continues
/// a `.part` of the same bytes, or (when the bank took the file away) sends the same bytes
/// again, which the bank recognises by the MsgId.
pub async fn upload(ctx: &Arc<Ctx>, row: &BatchRow) -> Result<(), StepError> {
    let cfg = ctx.cfg();
    let bank = cfg
        .banks
        .get(&row.bank)
        .ok_or_else(|| StepError::Setup(format!("bank `{}` is no longer configured", row.bank)))?;
    if bank.transport.is_none() {
        return Err(StepError::Setup(format!(
            "bank `{}` has no transport: the sealed file {} waits to be sent",
            row.bank,
            row.sealed_path.as_deref().unwrap_or("-")
        )));
    }
    let (Some(path), Some(name), Some(sha)) =
        (&row.sealed_path, &row.remote_name, &row.sealed_sha256)
    else {
        return Err(StepError::Setup(format!(
            "batch {} has no sealed file recorded",
            row.id
        )));
    };
    // With a shared store the batch may have been sealed by another instance: its bytes come
    // from the store into this instance's outbox (checked against the recorded SHA-256).
    let local;
    let path = if ctx.store.is_shared() {
        local = outbox(&cfg, row.msg_id.as_deref().unwrap_or("batch"))
            .join(transport::safe_local_name(name));
        fetch_sealed(ctx, row.id, &local, sha).await?;
        local.display().to_string()
    } else {
        path.clone()
    };
    let path = &path;
    if !ctx.lease.holds() {
        return Err(StepError::Delivery(
            crate::transport::TransportError::Fenced(name.clone()).into(),
        ));
    }
    // Recorded before a byte is sent; on a shared store fenced by this instance's claim on
    // the batch (an embedded store has no other instance to fence off).
    ctx.store
        .start_upload(
            row.id,
            row.state,
            &ctx.instance,
            ctx.store.is_shared(),
            Utc::now(),
        )
        .await?;
    if row.state == BatchState::Uploading {
        tracing::warn!(batch = row.id, channel = %row.channel, stage = "uploading", "batch {} was being uploaded when paygate (or another instance) stopped: sending the same sealed file as {name} again", row.id);
    }
    super::crash_point("upload-started");
    // After a failed attempt the archive is checked before reconnecting: a sealed file that
    // no longer matches its record stops here at each retry, instead of being uploaded to a
    // part that the check then removes.
    let failed_before = ctx
        .retry
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(&row.id);
    if failed_before {
        let archived = PathBuf::from(path);
        let found = blocking(move || crate::delivery::sha256_file(&archived)).await;
        match found {
            Ok((found, _)) if &found != sha => {
                return Err(StepError::Setup(format!(
                    "batch {}: the archived sealed file {path} is not the one recorded at sealing (SHA-256 {found}, recorded {sha}); it is not sent. Restore it from a backup of {path}",
                    row.id
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(StepError::Io(PathBuf::from(path), e)),
        }
    }
    let (c, b, p, n, h) = (
        cfg.clone(),
        row.bank.clone(),
        PathBuf::from(path),
        name.clone(),
        sha.clone(),
    );
    // The bytes are checked against the SHA-256 recorded at sealing as they are sent; the
    // upload is committed (renamed) only if they match, and only while this instance's lease
    // holds: cut off from a shared store, it stops before another instance may take over.
    let held = ctx.clone();
    let sent =
        blocking(move || crate::delivery::send(&c, &b, &p, &n, Some(&h), &|| held.lease.holds()))
            .await;
    super::crash_point("uploaded");
    match sent {
        Ok((outcome, got_sha, size)) => {
            if &got_sha != sha {
                // Unreachable while `send` checks the recorded SHA-256; kept as the last word.
                return Err(StepError::Setup(format!(
                    "batch {}: the archived sealed file {path} changed since it was sealed (SHA-256 {got_sha}, recorded {sha})",
                    row.id
                )));
            }
            let word = match outcome {
                PutOutcome::Uploaded { .. } => "uploaded",
                PutOutcome::AlreadyThere { .. } => "already-there",
            };
            ctx.store
                .mark_sent(row.id, &row.bank, word, size, Utc::now())
                .await?;
            super::crash_point("sent");
            // Sent: the batch's outbox (its sealed file; with encryption = "none" that is the
            // plaintext) is not needed any more; the archive keeps both, encrypted.
            if let Some(msg_id) = &row.msg_id {
                let _ = std::fs::remove_dir_all(super::pickup::outbox(&cfg, msg_id));
            }
            tracing::info!(batch = row.id, channel = %row.channel, stage = "sent", "batch {} sent to bank {} as {name} ({size} bytes, {word})", row.id, row.bank);
            Ok(())
        }
        Err(e) => {
            let _ = ctx
                .store
                .record_upload(
                    &row.bank,
                    Some(row.id),
                    name,
                    sha,
                    0,
                    "failed",
                    "paygate",
                    Utc::now(),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Expires batches that waited for approval longer than their channel allows.
pub async fn expire(ctx: &Arc<Ctx>, row: &BatchRow) -> Result<bool, StepError> {
    let cfg = ctx.cfg();
    let Some(ch) = cfg.channel(&row.channel) else {
        return Ok(false);
    };
    let since = ctx.store.state_since(row.id).await?.unwrap_or_default();
    let Ok(since) = DateTime::parse_from_rfc3339(&since) else {
        return Ok(false);
    };
    let now = Utc::now();
    if !crate::approval::expired(since.with_timezone(&Utc), now, &ch.approval) {
        return Ok(false);
    }
    let hours = ch.approval.expire_hours;
    ctx.store.expire_batch(row.id, hours, now).await?;
    tracing::warn!(batch = row.id, channel = %row.channel, stage = "expired", error_code = "batch.expired", "batch {} expired: nobody approved it within {hours} hours; it will not be sent", row.id);
    super::pickup::note_to_submitter(
        ctx,
        row.id,
        "expired",
        &format!(
            "it was not approved within {hours} hours (channels.{}.approval.expire_hours)",
            row.channel
        ),
    )
    .await;
    Ok(true)
}

/// How long to wait before trying a failed step of a batch again: 5 s doubling to 10 min.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(7)).min(600))
}
