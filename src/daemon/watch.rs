//! The daemon's watch: delivers pending alerts (every few seconds) and looks for what nobody
//! would notice otherwise (every `alerts.check_secs`): batches with no final bank status after
//! their deadline, a bank unreachable for too long, keys about to expire, a broken audit
//! chain, a disk filling up. Each finding is an alert (`crate::alerts`), rate-limited there.

use super::Ctx;
use crate::alerts::{self, Alert, kind};
use crate::model::BatchState;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

pub async fn run(ctx: Arc<Ctx>, token: CancellationToken) {
    let mut last_check: Option<Instant> = None;
    let mut last_slow: Option<Instant> = None;
    loop {
        let cfg = ctx.cfg();
        let every = Duration::from_secs(cfg.alerts.check_secs.max(1));
        if last_check.is_none_or(|t| t.elapsed() >= every) {
            last_check = Some(Instant::now());
            check(&ctx).await;
            // Keys and the audit chain: at start, then hourly (or every check, if checks are
            // further apart).
            if last_slow.is_none_or(|t| t.elapsed() >= every.max(Duration::from_secs(3600))) {
                last_slow = Some(Instant::now());
                check_slow(&ctx).await;
            }
        }
        if let Err(e) = alerts::deliver_due(&cfg, &ctx.store).await {
            tracing::error!(error_code = "store.query", "alert delivery: {e}");
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn check(ctx: &Arc<Ctx>) {
    let cfg = ctx.cfg();
    let now = Utc::now();
    // Sent, and no final status from the bank after the deadline.
    let deadline = chrono::Duration::hours(cfg.alerts.status_deadline_hours as i64);
    if let Ok(rows) = ctx
        .store
        .batches_in(&[BatchState::Sent, BatchState::Accepted])
        .await
    {
        for r in rows {
            if parse(&r.updated_at).is_some_and(|t| now - t > deadline) {
                alerts::raise(
                    &cfg,
                    &ctx.store,
                    Alert::new(
                        kind::STATUS_OVERDUE,
                        format!("batch {}", r.id),
                        format!(
                            "batch {} (channel {}, bank {}) has had no final status from the bank since {} ({} hours and more)",
                            r.id, r.channel, r.bank, r.updated_at, cfg.alerts.status_deadline_hours
                        ),
                        format!("ask bank {} about MsgId {} before people call about their money; paygate batch show {}", r.bank, r.msg_id.as_deref().unwrap_or("-"), r.id),
                    )
                    .batch(r.id)
                    .critical(),
                )
                .await;
            }
        }
    }
    // A bank unreachable for longer than the threshold.
    let limit = chrono::Duration::minutes(cfg.alerts.bank_unreachable_mins as i64);
    let failing: Vec<(String, DateTime<Utc>, Option<String>)> = ctx
        .banks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|(b, s)| {
            s.failing_since
                .map(|t| (b.clone(), t, s.last_error.clone()))
        })
        .collect();
    for (bank, since, err) in failing {
        if now - since > limit {
            alerts::raise(
                &cfg,
                &ctx.store,
                Alert::new(
                    kind::BANK_UNREACHABLE,
                    format!("bank {bank}"),
                    format!("bank {bank} has been unreachable since {since}: {}", err.unwrap_or_default()),
                    format!("check the network and the bank's server (paygate check --bank {bank}); payments to it wait and are sent once it answers"),
                )
                .critical(),
            )
            .await;
        }
    }
    // Free space on the data and channel volumes.
    let min = cfg.alerts.disk_free_min_mb.saturating_mul(1 << 20);
    let mut places = vec![cfg.data_dir()];
    places.extend(cfg.channels.values().map(|c| cfg.resolve(&c.folder)));
    for p in places {
        if let Some(free) = alerts::free_bytes(&p)
            && free < min
        {
            alerts::raise(
                &cfg,
                &ctx.store,
                Alert::new(
                    kind::DISK_LOW,
                    p.display().to_string(),
                    format!(
                        "only {} MB free on the volume of {} (alerts.disk_free_min_mb = {})",
                        free >> 20,
                        p.display(),
                        cfg.alerts.disk_free_min_mb
                    ),
                    "free space or grow the volume: a full disk stops pickups and the store",
                )
                .critical(),
            )
            .await;
        }
    }
}

async fn check_slow(ctx: &Arc<Ctx>) {
    let cfg = ctx.cfg();
    match ctx.store.verify_audit().await {
        Ok(Err(broken)) => {
            alerts::raise(
                &cfg,
                &ctx.store,
                Alert::new(
                    kind::AUDIT_BROKEN,
                    format!("entry {}", broken.seq),
                    format!("the audit trail does not verify: {broken}"),
                    "treat it as a security incident: keep the database and the anchor file as they are, and compare with the backups (paygate audit verify)",
                )
                .critical(),
            )
            .await;
        }
        Ok(Ok(_)) => {}
        Err(e) => tracing::error!(error_code = "store.query", "audit verification: {e}"),
    }
    // Keys expiring soon: the company's and each bank's, and the archive key.
    let within = Duration::from_secs(86_400 * cfg.alerts.key_expiry_days);
    let soon = SystemTime::now() + within;
    let mut expiring: Vec<(String, SystemTime)> = Vec::new();
    for bank in cfg.banks.keys() {
        let (c, b) = (cfg.clone(), bank.clone());
        let days = cfg.alerts.key_expiry_days.min(u32::MAX as u64) as u32;
        let found =
            tokio::task::spawn_blocking(move || crate::delivery::keyring_expiring(&c, &b, days))
                .await;
        if let Ok(Ok(warnings)) = found {
            for w in warnings {
                if w.expires <= soon {
                    expiring.push((
                        format!("{} ({})", w.fingerprint, w.path.display()),
                        w.expires,
                    ));
                }
            }
        }
    }
    if let Ok(k) = crate::archive::ArchiveKey::of(&cfg)
        && let Some(t) = k.expires()
        && t <= soon
    {
        expiring.push((format!("archive key {}", k.fingerprint().to_hex()), t));
    }
    expiring.sort();
    expiring.dedup();
    for (what, at) in expiring {
        let at: DateTime<Utc> = at.into();
        alerts::raise(
            &cfg,
            &ctx.store,
            Alert::new(
                kind::KEY_EXPIRING,
                what.clone(),
                format!("key {what} expires on {}", at.format("%Y-%m-%d")),
                "renew it (extend its expiry or make a new key) and exchange it with the bank before that day: files sealed with an expired key are refused",
            ),
        )
        .await;
    }
}
