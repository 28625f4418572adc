//! Applying a return file: parse it (`bank`), find the batch(es) it answers, reconcile
//! (`reconcile`), store the changes with their history (`store`), and write the result report
//! when a batch is settled or rejected in full — or changes again afterwards (`results`).
//! Reports that match nothing are stored and shown, never dropped.

use crate::bank::{self, Message, ParseError};
use crate::config::Config;
use crate::reconcile::{self, PaymentState};
use crate::store::{Store, StoreError};
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    Layout(#[from] bank::layout::LayoutError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the result report in {0}: {1}")]
    Results(PathBuf, std::io::Error),
    #[error("archiving the result report: {0}")]
    Archive(String),
}

/// What applying one report did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Applied {
    pub report_id: i64,
    /// False when the same report was applied before (nothing changed).
    pub new: bool,
    pub kind: String,
    pub batches: Vec<BatchApplied>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchApplied {
    pub batch: i64,
    pub msg_id: String,
    pub changes: Vec<reconcile::Change>,
    pub state: String,
    pub results: Vec<PathBuf>,
}

/// Parses a return file: ISO 20022, else the bank's template-defined result layout.
pub fn parse(
    cfg: &Config,
    bank: Option<&str>,
    name: &str,
    bytes: &[u8],
) -> Result<Message, InboundError> {
    match bank::parse(bytes) {
        Ok(m) => Ok(m),
        Err(e) => {
            let layout = bank
                .and_then(|b| cfg.banks.get(b))
                .and_then(|b| b.format.as_deref())
                .and_then(|f| crate::render::template::Template::load(&cfg.templates_dir(), f).ok())
                .and_then(|t| t.returns);
            match layout {
                Some(l) if !bytes.trim_ascii_start().starts_with(b"<") => {
                    Ok(Message::StatusReport(l.parse(name, bytes)?))
                }
                _ => Err(e.into()),
            }
        }
    }
}

fn summary_of(m: &Message) -> (String, Option<String>, Option<String>) {
    match m {
        Message::StatusReport(r) => (
            r.version.clone(),
            r.msg_id.clone(),
            r.original_msg_id.clone(),
        ),
        Message::Statement(s) => (s.version.clone(), s.msg_id.clone(), None),
    }
}

/// Applies a return file to the store.
pub async fn apply(
    cfg: &Config,
    store: &Store,
    bank: Option<&str>,
    source: &str,
    bytes: &[u8],
) -> Result<Applied, InboundError> {
    let message = parse(cfg, bank, source, bytes)?;
    let sha = hex::encode(Sha256::digest(bytes));
    let (kind, msg_id, original) = summary_of(&message);
    // Which batches does it answer?
    let mut batch_ids: BTreeSet<i64> = BTreeSet::new();
    match &message {
        Message::StatusReport(r) => {
            if let Some(b) = match &r.original_msg_id {
                Some(m) => store.batch_by_msg_id(m).await?.map(|b| b.id),
                None => None,
            } {
                batch_ids.insert(b);
            } else if r.original_msg_id.is_none() {
                // Result files without the batch's id: find it by the payments' references.
                for t in r.payment_infos.iter().flat_map(|p| &p.transactions) {
                    if let Some(e) = &t.original_end_to_end_id
                        && let Some(b) = store.batch_of_end_to_end_id(e).await?
                    {
                        batch_ids.insert(b);
                    }
                }
            }
        }
        Message::Statement(s) => {
            for d in s
                .reports
                .iter()
                .flat_map(|r| &r.entries)
                .flat_map(|e| &e.details)
            {
                let by_msg = match &d.msg_id {
                    Some(m) => store.batch_by_msg_id(m).await?.map(|b| b.id),
                    None => None,
                };
                let by_e2e = match (&by_msg, &d.end_to_end_id) {
                    (None, Some(e)) => store.batch_of_end_to_end_id(e).await?,
                    _ => None,
                };
                // A block id paygate gave is `MSGID-N`.
                let by_block = match (
                    &by_msg,
                    &by_e2e,
                    d.pmt_inf_id.as_deref().and_then(|p| p.rsplit_once('-')),
                ) {
                    (None, None, Some((m, n))) if n.bytes().all(|b| b.is_ascii_digit()) => {
                        store.batch_by_msg_id(m).await?.map(|b| b.id)
                    }
                    _ => None,
                };
                if let Some(b) = by_msg.or(by_e2e).or(by_block) {
                    batch_ids.insert(b);
                }
            }
        }
    }
    let text = bank::describe::describe(&message, bank::reasons::Language::En);
    let first = batch_ids.iter().next().copied();
    let (report_id, applied_before) = store
        .record_report(
            source,
            &sha,
            &kind,
            msg_id.as_deref(),
            original.as_deref(),
            first,
            text.trim_end(),
            Utc::now(),
        )
        .await?;
    let mut applied = Applied {
        report_id,
        new: !applied_before,
        kind,
        ..Applied::default()
    };
    if applied_before {
        applied
            .notes
            .push("this report was applied before: nothing changed".into());
        return Ok(applied);
    }
    if batch_ids.is_empty() {
        applied.notes.push(format!(
            "matches no batch (original message {}): kept as an unmatched report, shown by `paygate batches`",
            original.as_deref().unwrap_or("-")
        ));
        store.mark_report_applied(report_id, Utc::now()).await?;
        return Ok(applied);
    }
    for batch in batch_ids {
        let row = store.batch(batch).await?;
        let stored = store.payments(batch).await?;
        let views: Vec<_> = stored.iter().filter_map(|p| p.view()).collect();
        let msg = row.msg_id.clone().unwrap_or_default();
        let rec = match &message {
            Message::StatusReport(r) => reconcile::status_report(r, &msg, &views),
            Message::Statement(s) => reconcile::statement(s, &msg, &views),
        };
        let mut states: Vec<PaymentState> = views.iter().map(|v| v.state).collect();
        for c in &rec.changes {
            if let Some(i) = views.iter().position(|v| v.id == c.payment_id) {
                states[i] = c.to;
            }
        }
        let outcome = reconcile::outcome(&states);
        let state = store
            .apply_reconciliation(batch, report_id, &rec.changes, outcome, Utc::now())
            .await?;
        applied
            .notes
            .extend(rec.notes.iter().map(|n| format!("batch {batch}: {n}")));
        let mut results = vec![];
        // Written whenever the batch is final: applying a report again (after a crash) writes
        // the same report again.
        let all_final = states.iter().all(|s| s.is_final());
        if all_final {
            if let Some(ch) = cfg.channel(&row.channel) {
                let after = store.payments(batch).await?;
                let file = store.file_name_of_batch(batch).await?;
                let dir = cfg.resolve(&ch.folder).join("results");
                results = crate::results::write(&dir, &file, batch, ch, &after)
                    .map_err(|e| InboundError::Results(dir.clone(), e))?;
                // A copy of each report is kept for the audit, encrypted to the archive key.
                for r in &results {
                    let name = r
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    let dst = crate::archive::path_for(cfg, Some(batch), "", "result", &name);
                    let what = crate::archive::Kept {
                        batches: &[Some(batch)],
                        bank: None,
                        kind: "result",
                        name: &name,
                    };
                    crate::archive::keep(cfg, store, r, &dst, what)
                        .await
                        .map_err(|e| InboundError::Archive(e.to_string()))?;
                }
            } else {
                applied.notes.push(format!(
                    "batch {batch}: channel `{}` is no longer configured: no result report written",
                    row.channel
                ));
            }
        }
        applied.batches.push(BatchApplied {
            batch,
            msg_id: msg,
            changes: rec.changes,
            state: state.as_str().to_string(),
            results,
        });
    }
    // Applied to every batch it answers: only now does it count as handled.
    store.mark_report_applied(report_id, Utc::now()).await?;
    Ok(applied)
}
