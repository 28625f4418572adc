//! Picking a file up: claim → record (SHA-256, submitter) → read, validate and render in one
//! pass → batch with its payments → `invalid` (source to `rejected/` with its report) or
//! `awaiting_approval` (auto-approved under the channel's limit; source to `archive/`).
//!
//! Every step is driven by what the store says, so a restart continues where a crash stopped:
//! a claim already recorded is recovered, a batch already created is finished, a report that
//! was half written is written again.

use super::Ctx;
use super::folders::{self, Folders};
use crate::approval::{self, Decision, HardLimits, Role};
use crate::config::{Channel, Config};
use crate::finding::{Finding, Findings, Severity};
use crate::model::{BatchState, Payment};
use crate::render::{self, BatchHeader, RenderError};
use crate::store::{BatchRow, Claim, FileRecord, IntakeQuery};
use crate::validate::{Rules, validate_table};
use chrono::Utc;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PickupError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("channel `{0}` is no longer configured: the file stays in processing/ until it is")]
    NoChannel(String),
    #[error("{0}")]
    Setup(String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> PickupError + '_ {
    move |e| PickupError::Io(p.to_path_buf(), e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The private folder of a batch's rendered and sealed files, by MsgId.
pub fn outbox(cfg: &Config, msg_id: &str) -> PathBuf {
    cfg.data_dir().join("outbox").join(msg_id)
}

/// The MsgId of a new batch: unique per recorded file (its id), readable (the day it was
/// received), and unlike any other company's (a piece of the content hash). Computed from the
/// store's record alone, so a restart computes the same id. At most 24 characters; the first
/// 16 name the file, so generated end-to-end ids are unique per batch too.
pub fn msg_id(rec: &FileRecord, sha256: &str) -> String {
    let day: String = rec
        .first_seen
        .get(2..10)
        .unwrap_or("000000")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("PG{:08}{day}{}", rec.id, &sha256[..8]).to_ascii_uppercase()
}

/// Picks up `inbound/NAME` of a channel: refuses what is not a regular file, else claims it
/// (to `to`, from `folders::claim_path`) and returns the claimed path for `process_claimed`.
pub async fn pick_up(
    ctx: Arc<Ctx>,
    channel: String,
    name: String,
    to: PathBuf,
) -> Result<Option<PathBuf>, PickupError> {
    let cfg = ctx.cfg();
    let ch = cfg
        .channel(&channel)
        .ok_or_else(|| PickupError::NoChannel(channel.clone()))?;
    let f = Folders::of(&cfg, ch);
    let meta = match std::fs::symlink_metadata(f.inbound.join(&name)) {
        Ok(m) => m,
        Err(_) => return Ok(None), // gone meanwhile
    };
    match folders::classify(&name, &meta) {
        folders::Entry::Candidate => {}
        folders::Entry::Ignore | folders::Entry::Folder => return Ok(None),
        folders::Entry::Refuse(why) => {
            refuse_entry(&ctx, &channel, &f, &name, why).await?;
            return Ok(None);
        }
    }
    let Some(claimed) = folders::claim_to(&f, &name, to).map_err(io(&f.inbound.join(&name)))?
    else {
        return Ok(None);
    };
    tracing::info!(channel, file = %name, stage = "pickup", "claimed {}", claimed.display());
    super::crash_point("claimed");
    Ok(Some(claimed))
}

/// A symlink, FIFO, device or socket in `inbound/`: never followed or opened; moved aside
/// with a note.
async fn refuse_entry(
    ctx: &Ctx,
    channel: &str,
    f: &Folders,
    name: &str,
    why: &str,
) -> Result<(), PickupError> {
    let from = f.inbound.join(name);
    let note = format!(
        "{name}: not processed — it {why}. paygate never follows links or opens pipes and devices.\n\
         Drop the payment file itself (a regular file) into inbound/.\n"
    );
    let to = move_aside(ctx, channel, f, &from, name, &note, "paygate", why).await?;
    tracing::warn!(channel, file = %name, stage = "pickup", error_code = "pickup.refused", "refused: it {why}; moved to {}", to.display());
    Ok(())
}

/// Processes a file in `processing/` (just claimed, or found there after a restart).
pub async fn process_claimed(
    ctx: Arc<Ctx>,
    channel: String,
    claimed: PathBuf,
) -> Result<(), PickupError> {
    let cfg = ctx.cfg();
    let ch = cfg
        .channel(&channel)
        .ok_or_else(|| PickupError::NoChannel(channel.clone()))?;
    let claim = claimed
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let name = folders::original_name(&claim).to_string();
    if !ctx.store.claim_recorded(&claim).await? {
        // A new file: its submitter must hold the channel's submitter role (and be the very
        // account that was added, not a later account of the same name).
        let (submitter, uid) = match &ch.submitter {
            Some(s) => (s.clone(), None),
            None => {
                use std::os::unix::fs::MetadataExt;
                let uid = std::fs::symlink_metadata(&claimed)
                    .map_err(io(&claimed))?
                    .uid();
                (folders::user_name(uid), Some(uid))
            }
        };
        let checked = match uid {
            Some(uid) => ctx
                .store
                .same_account(&submitter, uid)
                .await
                .map_err(PickupError::from),
            None => Ok(Ok(())),
        }?;
        if let Err(e) = match checked {
            Ok(()) => ctx
                .store
                .authorize(&submitter, Role::Submitter, &channel, "submit files")
                .await
                .map_err(|e| e.to_string()),
            Err(m) => Err(m),
        } {
            let f = Folders::of(&cfg, ch);
            return refuse_submitter(
                &ctx,
                &channel,
                &f,
                &claimed,
                &name,
                &submitter,
                &e.to_string(),
            )
            .await;
        }
        // A new file over the channel's size limit is refused before a byte of it is read
        // (not even hashed), and not recorded: a smaller file of the same name is taken as new.
        let size = std::fs::metadata(&claimed).map_err(io(&claimed))?.len();
        if let Err(e) = crate::intake::check_size(Path::new(&name), size, ch) {
            let f = Folders::of(&cfg, ch);
            let why = e.to_string();
            let note = format!(
                "{why}\nNothing from this file was recorded or sent.\n\n{name}：文件大小 {size} 字节，超过通道上限 {} 字节（limits.max_file_bytes）；请拆分文件后重新放入 inbound/。\n",
                ch.limits.max_file_bytes
            );
            let to =
                move_aside(&ctx, &channel, &f, &claimed, &name, &note, "paygate", &why).await?;
            tracing::warn!(channel, file = %name, stage = "pickup", error_code = "pickup.too_large", "refused: {why}; moved to {}", to.display());
            return Ok(());
        }
    }
    let p = claimed.clone();
    let (sha, size) = blocking(move || crate::delivery::sha256_file(&p))
        .await
        .map_err(io(&claimed))?;
    let claim_rec = ctx
        .store
        .record_claim(&channel, &name, &claim, &sha, size, Utc::now())
        .await?;
    let f = Folders::of(&cfg, ch);
    super::crash_point("recorded");
    match claim_rec {
        Claim::Duplicate { earlier, batch } => {
            reject_duplicate(&ctx, &channel, ch, &f, &claimed, &name, &earlier, batch).await
        }
        Claim::New(rec) | Claim::Recovered(rec, None) => {
            let owner = folders::owner_of(&claimed).map_err(io(&claimed))?;
            let (submitter, dropped_by) = match &ch.submitter {
                Some(s) => (s.clone(), Some(owner)),
                None => (owner, None),
            };
            let msg_id = msg_id(&rec, &sha);
            let id = ctx
                .store
                .create_batch_by(
                    rec.id,
                    &channel,
                    &ch.bank,
                    &msg_id,
                    &[],
                    "paygate",
                    Some(&submitter),
                    dropped_by.as_deref(),
                    Utc::now(),
                )
                .await?;
            tracing::info!(batch = id, channel, stage = "received", msg_id = %msg_id, submitter, file = %name, "batch {id}: reading {name}");
            super::crash_point("batch-created");
            let row = ctx.store.batch(id).await?;
            finish(&ctx, &cfg, &channel, ch, &f, row, &claimed, &name, None).await
        }
        Claim::Recovered(_, Some(batch)) => {
            let row = ctx.store.batch(batch).await?;
            finish(&ctx, &cfg, &channel, ch, &f, row, &claimed, &name, None).await
        }
    }
}

/// What reading a file (validation and rendering) gave.
pub struct Validated {
    pub payments: u64,
    pub findings: Findings,
    pub rows: u64,
}

/// Reads a batch's file: validation and rendering on a blocking thread, the valid payments
/// streamed into the store meanwhile (`store = true`; the two cores work at once and memory
/// stays flat), then the batch's validation recorded. With `store = false` only the findings
/// are wanted (to write a rejection report again after a restart).
async fn read_into_batch(
    ctx: &Ctx,
    cfg: &Arc<Config>,
    channel: &str,
    path: &Path,
    row: &BatchRow,
    store: bool,
) -> Result<Validated, PickupError> {
    let msg_id = row
        .msg_id
        .clone()
        .ok_or_else(|| PickupError::Setup(format!("batch {} has no MsgId", row.id)))?;
    if store {
        // What an interrupted reading stored is read again from the start.
        ctx.store.clear_payments(row.id).await?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Payment>>(4);
    let (cfg2, channel2, path2, msg2) = (
        cfg.clone(),
        channel.to_string(),
        path.to_path_buf(),
        msg_id.clone(),
    );
    let reading = tokio::task::spawn_blocking(move || {
        validate_sync(&cfg2, &channel2, &path2, msg2, store.then_some(tx))
    });
    let mut stored = Ok(());
    while let Some(chunk) = rx.recv().await {
        if stored.is_ok() {
            stored = ctx.store.add_payments(row.id, &msg_id, &chunk).await;
        }
    }
    let v = match reading.await {
        Ok(v) => v?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    stored?;
    if store {
        let next = ctx
            .store
            .finish_validation(row.id, v.payments, v.findings.errors() as usize, Utc::now())
            .await?;
        tracing::info!(
            batch = row.id,
            channel,
            stage = "validated",
            "batch {}: {} payments, {} errors, {} warnings: {next}",
            row.id,
            v.payments,
            v.findings.errors(),
            v.findings.warnings()
        );
        super::crash_point("validated");
    }
    Ok(v)
}

/// Reads, validates and renders in one pass (as `paygate convert` does). Valid payments go to
/// `sink` in chunks. The rendered file is kept in the batch's private outbox only when the
/// file has no errors.
fn validate_sync(
    cfg: &Config,
    channel: &str,
    path: &Path,
    msg_id: String,
    sink: Option<tokio::sync::mpsc::Sender<Vec<Payment>>>,
) -> Result<Validated, PickupError> {
    let ch = &cfg.channels[channel];
    let bank = cfg.bank_of(ch);
    let today = chrono::Local::now().date_naive();
    let created = chrono::Local::now().fixed_offset();
    let (Some(rules), Some(header)) = (
        Rules::new(cfg, channel, today),
        BatchHeader::new(cfg, channel, msg_id.clone(), created),
    ) else {
        return Err(PickupError::Setup(format!(
            "channel `{channel}` is not usable; run `paygate check-config`"
        )));
    };
    let format = bank
        .format
        .clone()
        .unwrap_or_else(|| "pain.001.001.09".into());
    let file = render::open(&format, &cfg.templates_dir(), header)
        .map_err(|e| PickupError::Setup(e.to_string()))?;
    // Rendered payments go on to the store in chunks (a closed channel means the store
    // failed; the caller reports that).
    let forward = sink.map(|s| {
        Box::new(move |chunk: Vec<Payment>| {
            let _ = s.blocking_send(chunk);
        }) as render::Forward
    });
    let mut renderer = render::Renderer::start(file, &msg_id, forward, 2);
    let result = crate::intake::open(path, ch)
        .and_then(|mut table| validate_table(&mut table, &rules, ch, |p| renderer.add(p)));
    let rendering = renderer.finish();
    let (mut findings, rows) = match result {
        Ok(r) => (r.findings, r.rows),
        // The whole file is unreadable: one finding says why.
        Err(e) => {
            let mut one = Findings::new();
            one.push(Finding::error("file.unreadable", e.to_string()));
            (one, 0)
        }
    };
    if let Some(e) = rendering.io_error {
        return Err(PickupError::Io(cfg.data_dir().join("outbox"), e));
    }
    findings.absorb(rendering.findings);
    let (file, count) = (rendering.file, rendering.count);
    if findings.errors() == 0 && count == 0 {
        findings.push(Finding::error(
            "file.no_payments",
            "the file holds no payments",
        ));
    }
    if findings.errors() == 0 {
        let dir = outbox(cfg, &msg_id);
        create_private_dir(&dir).map_err(io(&dir))?;
        let target = dir.join("render.out");
        let written = (|| -> Result<(), RenderError> {
            let tmp = tempfile::NamedTempFile::new_in(&dir)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
            file.finish(&mut w)?;
            let tmp = w.into_inner().map_err(|e| e.into_error())?;
            tmp.as_file().sync_all()?;
            tmp.persist(&target).map_err(|e| e.error)?;
            Ok(())
        })();
        match written {
            Ok(()) => folders::sync_dir(&dir),
            Err(RenderError::Io(e)) => return Err(PickupError::Io(target, e)),
            Err(e @ RenderError::Value { .. }) => {
                findings.push(Finding::error("layout.value", e.to_string()));
            }
        }
    }
    Ok(Validated {
        payments: count,
        findings,
        rows,
    })
}

pub use crate::durable::create_private_dir;

/// Takes a batch from wherever the store says it is to the end of pickup.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Ctx,
    cfg: &Arc<Config>,
    channel: &str,
    ch: &Channel,
    f: &Folders,
    row: BatchRow,
    claimed: &Path,
    name: &str,
    validated: Option<Validated>,
) -> Result<(), PickupError> {
    match row.state {
        BatchState::Received => {
            // New, or a crash came while the file was being read: read it (again).
            let v = read_into_batch(ctx, cfg, channel, claimed, &row, true).await?;
            let row = ctx.store.batch(row.id).await?;
            Box::pin(finish(
                ctx,
                cfg,
                channel,
                ch,
                f,
                row,
                claimed,
                name,
                Some(v),
            ))
            .await
        }
        BatchState::Invalid => {
            let v = match validated {
                Some(v) => v,
                None => read_into_batch(ctx, cfg, channel, claimed, &row, false).await?,
            };
            let to = folders::free_name(&f.rejected, name, &format!("batch{}", row.id));
            let to_name = to
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            write_rejection(&f.rejected, &to_name, name, row.id, channel, ch, &v)
                .map_err(io(&f.rejected))?;
            super::crash_point("rejection-written");
            std::fs::rename(claimed, &to).map_err(io(claimed))?;
            folders::sync_dir(&f.rejected);
            folders::sync_dir(&f.processing);
            tracing::warn!(batch = row.id, channel, stage = "rejected", error_code = "batch.invalid", file = %name, "{} errors: moved to {} with {to_name}.errors.txt and .errors.csv", v.findings.errors(), to.display());
            crate::alerts::raise(
                cfg,
                &ctx.store,
                crate::alerts::Alert::new(
                    crate::alerts::kind::FILE_REJECTED,
                    format!("batch {}", row.id),
                    format!("{name} on channel {channel} was rejected: {} errors, nothing was sent", v.findings.errors()),
                    format!("read rejected/{to_name}.errors.txt, fix the file and drop it into inbound/ again"),
                )
                .batch(row.id)
                .to(row.submitter.clone()),
            )
            .await;
            Ok(())
        }
        BatchState::AwaitingApproval if row.approvals_required.is_none() => {
            decide_approval(ctx, cfg, ch, &row).await?;
            super::crash_point("decided");
            let row = ctx.store.batch(row.id).await?;
            Box::pin(finish(
                ctx, cfg, channel, ch, f, row, claimed, name, validated,
            ))
            .await
        }
        BatchState::Declined => {
            // Declined by a hard limit at intake: the people who dropped it are told.
            let why = row.approval_reasons.join("; ");
            note_to_submitter(ctx, row.id, "declined", &why).await;
            archive(ctx, f, &row, claimed, name).await
        }
        BatchState::AwaitingApproval | BatchState::Approved => {
            archive(ctx, f, &row, claimed, name).await?;
            if row.state == BatchState::AwaitingApproval {
                let approvers = ctx.store.approvers_of(channel).await.unwrap_or_default();
                let need = row.approvals_required.unwrap_or(1);
                crate::alerts::raise(
                    cfg,
                    &ctx.store,
                    crate::alerts::Alert::new(
                        crate::alerts::kind::APPROVAL_WAITING,
                        format!("batch {}", row.id),
                        format!(
                            "batch {} ({name}, {} payments, channel {channel}) waits for {need} approval(s): {}",
                            row.id,
                            row.payment_count,
                            row.approval_reasons.join("; ")
                        ),
                        format!("review it (paygate batch show {}) and run paygate approve {} or paygate reject {}", row.id, row.id, row.id),
                    )
                    .batch(row.id)
                    .to(approvers),
                )
                .await;
            }
            ctx.kick.notify_one();
            Ok(())
        }
        _ => archive(ctx, f, &row, claimed, name).await,
    }
}

async fn archive(
    ctx: &Ctx,
    f: &Folders,
    row: &BatchRow,
    claimed: &Path,
    name: &str,
) -> Result<(), PickupError> {
    // Stored only encrypted to the archive key; the plaintext leaves `processing/` after.
    let to = f.archive.join(format!(
        "batch{}-{}.pgp",
        row.id,
        crate::transport::safe_local_name(name)
    ));
    let kept = crate::archive::Kept {
        batches: &[Some(row.id)],
        bank: None,
        kind: "source",
        name,
    };
    crate::archive::keep(&ctx.cfg(), &ctx.store, claimed, &to, kept)
        .await
        .map_err(|e| PickupError::Setup(e.to_string()))?;
    let path = to.display().to_string();
    ctx.store.set_archived_path(row.file_id, &path).await?;
    super::crash_point("source-archived");
    std::fs::remove_file(claimed).map_err(io(claimed))?;
    folders::sync_dir(&f.processing);
    Ok(())
}

/// The approval policy decides a validated batch: declined over a hard limit, approved at
/// once under `auto_below` with nothing for scrutiny, else waiting for as many distinct
/// approvers as the tiers and the scrutiny findings ask for (recorded with the reasons).
pub(super) async fn decide_approval(
    ctx: &Ctx,
    cfg: &Config,
    ch: &Channel,
    row: &BatchRow,
) -> Result<(), PickupError> {
    let now = Utc::now();
    let local_midnight = || {
        chrono::Local::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(chrono::Local).earliest())
            .map(|t| t.with_timezone(&Utc))
    };
    let account = cfg.company.accounts.get(&ch.debtor_account);
    let max_account = account.and_then(|a| {
        a.max_daily_total
            .and_then(|m| crate::model::Money::new(m, a.currency).ok())
    });
    let s = &ch.approval.scrutiny;
    let q = IntakeQuery {
        channel: row.channel.clone(),
        debtor_account: ch.debtor_account.clone(),
        channel_day: ch
            .limits
            .max_daily_total
            .as_ref()
            .and_then(|_| local_midnight()),
        account_day: max_account.as_ref().and_then(|_| local_midnight()),
        new_beneficiary: s.new_beneficiary,
        duplicates_since: (s.duplicate_days > 0)
            .then(|| now - chrono::Duration::days(i64::from(s.duplicate_days))),
        outlier_factor: (s.outlier_factor > rust_decimal::Decimal::ZERO)
            .then_some(s.outlier_factor),
    };
    let limits = HardLimits {
        max_batch_total: ch.limits.max_batch_total.clone(),
        max_daily_total: ch.limits.max_daily_total.clone(),
        max_daily_per_account: max_account,
        account: ch.debtor_account.clone(),
        channel_key: format!("channels.{}", row.channel),
    };
    let Some(decision) = ctx
        .store
        .decide_intake(
            row.id,
            &q,
            |facts| approval::decide(&ch.approval, &limits, facts),
            now,
        )
        .await?
    else {
        return Ok(());
    };
    match &decision {
        Decision::Approved { reason } => {
            tracing::info!(batch = row.id, channel = %row.channel, stage = "approved", "batch {} approved automatically: {reason}", row.id);
        }
        Decision::Awaiting { required, reasons } => {
            tracing::info!(batch = row.id, channel = %row.channel, stage = "awaiting_approval", "batch {} waits for {required} approval(s) ({}): paygate approve {}", row.id, reasons.join("; "), row.id);
        }
        Decision::Declined { limit, message } => {
            tracing::warn!(batch = row.id, channel = %row.channel, stage = "declined", error_code = "batch.over_limit", "batch {} declined: {message} ({limit})", row.id);
        }
    }
    Ok(())
}

/// A file whose submitter does not hold the submitter role on the channel: moved aside with
/// a note saying who may submit and how to get the role; nothing is recorded but the audit
/// entry, so the same file is taken once the role is granted and it is dropped again.
async fn refuse_submitter(
    ctx: &Ctx,
    channel: &str,
    f: &Folders,
    claimed: &Path,
    name: &str,
    submitter: &str,
    why: &str,
) -> Result<(), PickupError> {
    let note = format!(
        "{name}: not processed — files in channel `{channel}` are accepted only from users holding its submitter role, and this file came from {submitter}.\n\
         {why}\n\
         Nothing from this file was recorded or sent. Once the role is granted, drop the file into inbound/ again.\n\n\
         {name}：未处理——通道 `{channel}` 只接受具有提交人（submitter）角色的用户提交的文件，本文件来自 {submitter}。请管理员授予角色后重新放入 inbound/。\n"
    );
    let to = move_aside(ctx, channel, f, claimed, name, &note, submitter, why).await?;
    tracing::warn!(channel, file = %name, submitter, stage = "pickup", error_code = "pickup.not_a_submitter", "refused: {why}; moved to {}", to.display());
    Ok(())
}

/// Moves a file that is not processed into `rejected/` (under a free name) with
/// `NAME.errors.txt` holding `note` beside it, and records the refusal (by `actor`).
#[allow(clippy::too_many_arguments)]
async fn move_aside(
    ctx: &Ctx,
    channel: &str,
    f: &Folders,
    from: &Path,
    name: &str,
    note: &str,
    actor: &str,
    why: &str,
) -> Result<PathBuf, PickupError> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S").to_string();
    let to = folders::free_name(&f.rejected, name, &stamp);
    let to_name = to
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    write_text(&f.rejected.join(format!("{to_name}.errors.txt")), note).map_err(io(&f.rejected))?;
    std::fs::rename(from, &to).map_err(io(from))?;
    folders::sync_dir(&f.rejected);
    if let Some(dir) = from.parent() {
        folders::sync_dir(dir);
    }
    ctx.store
        .audit_event(
            actor,
            "file.refused",
            None,
            &format!("channel={channel} name={name} reason={why}"),
        )
        .await?;
    Ok(to)
}

#[allow(clippy::too_many_arguments)]
async fn reject_duplicate(
    ctx: &Ctx,
    channel: &str,
    ch: &Channel,
    f: &Folders,
    claimed: &Path,
    name: &str,
    earlier: &FileRecord,
    batch: Option<i64>,
) -> Result<(), PickupError> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S").to_string();
    let to = folders::free_name(&f.rejected, name, &stamp);
    let to_name = to
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let batch_s = batch.map_or("-".to_string(), |b| b.to_string());
    let text = match ch.report_language {
        crate::bank::reasons::Language::Zh => format!(
            "{name}：未处理——内容与 {first}（{seen} 收到，批次 {batch_s}）完全相同，为避免重复付款不再处理。\n\
             如确需再次付款（例如银行已拒绝前一批次），请管理员执行：paygate readmit {path}\n",
            first = earlier.first_name,
            seen = earlier.first_seen,
            path = to.display()
        ),
        crate::bank::reasons::Language::En => format!(
            "{name}: not processed — the same content was received before as {first} on {seen} (batch {batch_s}).\n\
             It is not processed again, so that nobody is paid twice.\n\
             If it must be paid again (e.g. the bank rejected the earlier batch), an admin re-admits it:\n  paygate readmit {path}\n",
            first = earlier.first_name,
            seen = earlier.first_seen,
            path = to.display()
        ),
    };
    write_text(&f.rejected.join(format!("{to_name}.errors.txt")), &text)
        .map_err(io(&f.rejected))?;
    std::fs::rename(claimed, &to).map_err(io(claimed))?;
    folders::sync_dir(&f.rejected);
    folders::sync_dir(&f.processing);
    tracing::warn!(channel, file = %name, stage = "rejected", error_code = "file.duplicate", "duplicate of {} (batch {batch_s}): moved to {}", earlier.first_name, to.display());
    ctx.store
        .audit_event(
            "paygate",
            "file.duplicate",
            batch,
            &format!(
                "channel={channel} name={name} earlier={} moved_to={}",
                earlier.first_name,
                to.display()
            ),
        )
        .await?;
    Ok(())
}

fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    crate::durable::write_bytes(path, text.as_bytes())
}

pub use crate::results::neutralize;

/// `NAME.errors.csv` (every finding) and `NAME.errors.txt` (a short note in the channel's
/// language) beside the refused file.
fn write_rejection(
    dir: &Path,
    to_name: &str,
    name: &str,
    batch: i64,
    channel: &str,
    ch: &Channel,
    v: &Validated,
) -> std::io::Result<()> {
    let zh = ch.report_language == crate::bank::reasons::Language::Zh;
    crate::results::write_findings_csv(
        &dir.join(format!("{to_name}.errors.csv")),
        &v.findings,
        ch.report_language,
    )?;
    let warnings = v.findings.warnings();
    let mut text = if zh {
        format!(
            "{name}：未处理——{} 个错误，{warnings} 个警告（批次 {batch}，通道 {channel}）。\n\
             请修改下列问题后，将更正后的文件重新放入 inbound/。全部问题见 {to_name}.errors.csv。\n\n",
            v.findings.errors()
        )
    } else {
        format!(
            "{name}: not processed — {} error(s), {warnings} warning(s) (batch {batch}, channel {channel}).\n\
             Fix the problems below and drop the corrected file into inbound/ again. Every problem is listed in {to_name}.errors.csv.\n\n",
            v.findings.errors()
        )
    };
    const SHOWN: usize = 50;
    for f in v
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .take(SHOWN)
    {
        let f = &f;
        let mut line = String::new();
        if let Some(r) = f.row {
            line.push_str(&if zh {
                format!("第 {r} 行")
            } else {
                format!("row {r}")
            });
        }
        if let Some(c) = &f.column {
            line.push_str(&format!(", {} ({})", c.letter, c.name));
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&f.message);
        if let Some(val) = &f.value {
            line.push_str(&format!(" ({val:?})"));
        }
        text.push_str(&line);
        text.push('\n');
    }
    let errors = v.findings.errors();
    if errors > SHOWN as u64 {
        text.push_str(&format!(
            "… {} more in {to_name}.errors.csv\n",
            errors - SHOWN as u64
        ));
    }
    write_text(&dir.join(format!("{to_name}.errors.txt")), &text)
}

/// Files left in `processing/` by an earlier run (claimed, not finished): processed again.
pub fn leftovers(f: &Folders) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(&f.processing)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Tells the people who dropped a batch's file that it will not be sent (declined by a
/// person or a hard limit, or expired): `rejected/NAME.batchN.WHAT.txt`, in English and
/// Chinese. A failure to write it is logged; the store already holds the decision.
pub async fn note_to_submitter(ctx: &Ctx, batch: i64, what: &str, why: &str) {
    let cfg = ctx.cfg();
    let Ok(row) = ctx.store.batch(batch).await else {
        return;
    };
    let kind = if what == "expired" {
        crate::alerts::kind::BATCH_EXPIRED
    } else {
        crate::alerts::kind::BATCH_DECLINED
    };
    crate::alerts::raise(
        &cfg,
        &ctx.store,
        crate::alerts::Alert::new(
            kind,
            format!("batch {batch}"),
            format!("batch {batch} on channel {} was {what}: {why}; nothing of it is sent", row.channel),
            "fix the file and drop it into inbound/ again, or ask an approver (see rejected/ for the note)",
        )
        .batch(batch)
        .to(row.submitter.clone()),
    )
    .await;
    let Some(ch) = cfg.channel(&row.channel) else {
        return;
    };
    let name = ctx
        .store
        .file_name_of_batch(batch)
        .await
        .unwrap_or_else(|_| format!("batch{batch}"));
    let f = Folders::of(&cfg, ch);
    let path = f.rejected.join(format!("{name}.batch{batch}.{what}.txt"));
    let zh = match what {
        "expired" => "已过期：未在规定时间内获得审批，不会发送给银行",
        _ => "已拒绝：不会发送给银行",
    };
    let text = format!(
        "{name} (batch {batch}): {what} — {why}.\nNothing from this file was sent to the bank. Fix what is said above and drop the file into inbound/ again (an admin re-admits an unchanged file: paygate readmit).\n\n{name}（批次 {batch}）：{zh}。原因：{why}。\n",
    );
    let p = path.clone();
    let written =
        tokio::task::spawn_blocking(move || crate::durable::write_bytes(&p, text.as_bytes())).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!(
            batch,
            stage = what,
            error_code = "note.unwritten",
            "could not write {}",
            path.display()
        );
    }
}
