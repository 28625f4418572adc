//! The Prometheus endpoint (`[metrics] listen`, loopback by default): `GET /metrics` in the
//! OpenMetrics text format (prometheus-client). Every value is computed at the scrape — from
//! the store (files, batches, payments and amounts sent, uploads, ages, round trips, the audit
//! chain, alerts), the banks' poll state and the keys — so that the numbers survive restarts
//! and agree with `paygate status`. Amounts are in currency units, for dashboards only: the
//! books are the store's integer minor units.

use super::Ctx;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn age(t: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0
        })
        .unwrap_or(0.0)
        .max(0.0)
}

/// The exposition text of one scrape.
pub async fn render(ctx: &Arc<Ctx>) -> Result<String, String> {
    let cfg = ctx.cfg();
    let s = ctx
        .store
        .metrics_snapshot()
        .await
        .map_err(|e| e.to_string())?;
    let mut reg = Registry::default();
    macro_rules! family {
        ($name:expr, $help:expr, $t:ty) => {{
            let f = Family::<Labels, $t>::default();
            reg.register($name, $help, f.clone());
            f
        }};
    }
    let received = family!(
        "paygate_files_received",
        "Files recorded per channel",
        Counter
    );
    for (c, n) in &s.files_received {
        received
            .get_or_create(&l(&[("channel", c)]))
            .inc_by(*n as u64);
    }
    let rejected = family!(
        "paygate_files_rejected",
        "Files rejected as invalid per channel",
        Counter
    );
    for c in cfg.channels.keys() {
        let _ = rejected.get_or_create(&l(&[("channel", c)]));
    }
    for (c, n) in &s.files_rejected {
        rejected
            .get_or_create(&l(&[("channel", c)]))
            .inc_by(*n as u64);
    }
    let batches = family!("paygate_batches", "Batches per state", Gauge);
    for st in crate::model::BatchState::ALL {
        let _ = batches.get_or_create(&l(&[("state", st.as_str())]));
    }
    for (st, n) in &s.batches {
        batches.get_or_create(&l(&[("state", st)])).set(*n);
    }
    let payments = family!(
        "paygate_payments_sent",
        "Payments sent to the bank per channel and currency",
        Counter
    );
    let amounts = family!(
        "paygate_payments_sent_amount",
        "Amount sent per channel and currency, in currency units (for dashboards; the store keeps exact minor units)",
        Counter<f64, AtomicU64>
    );
    for (ch, ccy, n, minor) in &s.sent {
        let labels = l(&[("channel", ch), ("currency", ccy)]);
        payments.get_or_create(&labels).inc_by(*n as u64);
        let units = ccy
            .parse::<crate::model::Currency>()
            .map_or(2, |c| c.minor_units());
        amounts
            .get_or_create(&labels)
            .inc_by(*minor as f64 / 10f64.powi(units as i32));
    }
    let uploads = family!(
        "paygate_uploads",
        "Upload attempts per bank and outcome (uploaded, already-there, failed)",
        Counter
    );
    for (bank, outcome, n) in &s.uploads {
        uploads
            .get_or_create(&l(&[("bank", bank), ("outcome", outcome)]))
            .inc_by(*n as u64);
    }
    let poll_failures = family!(
        "paygate_download_failures",
        "Failed polls of a bank's return files since start",
        Counter
    );
    let failing = family!(
        "paygate_bank_failing_seconds",
        "How long a bank has been failing (0 when it answers)",
        FloatGauge
    );
    {
        let banks = ctx.banks.lock().unwrap_or_else(|p| p.into_inner());
        for name in cfg.banks.keys() {
            let st = banks.get(name);
            poll_failures
                .get_or_create(&l(&[("bank", name)]))
                .inc_by(st.map_or(0, |s| s.failures_total));
            failing.get_or_create(&l(&[("bank", name)])).set(
                st.and_then(|s| s.failing_since).map_or(0.0, |t| {
                    (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0
                }),
            );
        }
    }
    let oldest = family!(
        "paygate_oldest_item_age_seconds",
        "Age of the oldest batch in each unfinished stage",
        FloatGauge
    );
    for (st, t) in &s.oldest {
        oldest.get_or_create(&l(&[("stage", st)])).set(age(t));
    }
    let waiting = family!(
        "paygate_approval_waiting_seconds",
        "How long the oldest batch has waited for approval",
        FloatGauge
    );
    waiting.get_or_create(&l(&[])).set(
        s.oldest
            .iter()
            .find(|(st, _)| st == "awaiting_approval")
            .map_or(0.0, |(_, t)| age(t)),
    );
    let rtt = family!(
        "paygate_bank_round_trip_seconds",
        "The latest sent batch per bank: seconds from upload to the bank's first status (to=\"first_status\") and to its final status (to=\"final_status\")",
        FloatGauge
    );
    for (bank, first, last) in &s.round_trips {
        if let Some(v) = first {
            rtt.get_or_create(&l(&[("bank", bank), ("to", "first_status")]))
                .set(*v);
        }
        if let Some(v) = last {
            rtt.get_or_create(&l(&[("bank", bank), ("to", "final_status")]))
                .set(*v);
        }
    }
    let quarantined = family!(
        "paygate_returns_quarantined",
        "Bank return files quarantined per bank",
        Counter
    );
    for (b, n) in &s.quarantined {
        quarantined
            .get_or_create(&l(&[("bank", b)]))
            .inc_by(*n as u64);
    }
    let audit = family!(
        "paygate_audit_chain_length",
        "Entries in the hash-chained audit trail",
        Gauge
    );
    audit.get_or_create(&l(&[])).set(s.audit_length);
    let alerts = family!("paygate_alerts_raised", "Alerts raised per kind", Counter);
    let open = family!(
        "paygate_alerts_open",
        "Alerts not acknowledged per kind",
        Gauge
    );
    for k in crate::alerts::kind::ALL {
        let _ = alerts.get_or_create(&l(&[("kind", k)]));
        let _ = open.get_or_create(&l(&[("kind", k)]));
    }
    for (k, raised, o) in &s.alerts {
        alerts
            .get_or_create(&l(&[("kind", k)]))
            .inc_by(*raised as u64);
        open.get_or_create(&l(&[("kind", k)])).set(*o);
    }
    let keys = family!(
        "paygate_key_expiry_seconds",
        "Seconds until a key expires (company, bank, archive)",
        FloatGauge
    );
    let (c2, banks): (_, Vec<String>) = (cfg.clone(), cfg.banks.keys().cloned().collect());
    let expiries = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for b in banks {
            // Fifty years ahead: every key with an expiry is reported.
            if let Ok(warnings) = crate::delivery::keyring_expiring(&c2, &b, 365 * 50) {
                for w in warnings {
                    out.push((w.fingerprint, w.expires));
                }
            }
        }
        if let Ok(k) = crate::archive::ArchiveKey::of(&c2)
            && let Some(t) = k.expires()
        {
            out.push((k.fingerprint().to_hex(), t));
        }
        out
    })
    .await
    .unwrap_or_default();
    for (fpr, t) in expiries {
        let secs = match t.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        keys.get_or_create(&l(&[("fingerprint", &fpr)])).set(secs);
    }
    let up = family!(
        "paygate_up_seconds",
        "Seconds since the daemon started",
        FloatGauge
    );
    up.get_or_create(&l(&[]))
        .set(ctx.started.elapsed().as_secs_f64());
    let mut out = String::new();
    encode(&mut out, &reg).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Serves `/metrics` until the token is cancelled. Each connection: one request, one answer.
pub async fn serve(ctx: Arc<Ctx>, listener: tokio::net::TcpListener, token: CancellationToken) {
    // One scrape at a time: each reads the store, whose few connections the pipeline needs.
    let one = Arc::new(tokio::sync::Semaphore::new(1));
    loop {
        let (mut stream, _) = tokio::select! {
            _ = token.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error_code = "metrics.accept", "metrics endpoint: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let (ctx, one) = (ctx.clone(), one.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    let r = stream.read(&mut buf[n..]).await.ok()?;
                    if r == 0 {
                        break;
                    }
                    n += r;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Some(())
            })
            .await;
            if !matches!(head, Ok(Some(()))) {
                return;
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            let target = line.split_whitespace().take(2).collect::<Vec<_>>();
            let (status, ctype, body) = match target.as_slice() {
                ["GET", p] if *p == "/metrics" || p.starts_with("/metrics?") => {
                    match async {
                        let _turn = one.acquire().await.map_err(|e| e.to_string())?;
                        render(&ctx).await
                    }
                    .await
                    {
                        Ok(b) => (
                            "200 OK",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            b,
                        ),
                        Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
                    }
                }
                ["GET", _] => (
                    "404 Not Found",
                    "text/plain",
                    "paygate serves /metrics\n".into(),
                ),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "GET /metrics\n".into(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
