//! Alerts: what needs a person, told to them. Every alert goes to the log at once; it is
//! recorded in the store with a pending delivery per configured channel (webhooks, email),
//! and `deliver_due` sends those with retries and backoff until each channel took it — a
//! failure to deliver is logged and retried, never dropped. The same alert (kind and subject)
//! raised again within `alerts.repeat_after_mins` is counted, not sent again.

use crate::config::{Alerts as AlertsCfg, Config, SmtpTls, Webhook};
use crate::store::{DueDelivery, NewAlert, Store, StoreError, StoredAlert};
use chrono::Utc;
use std::time::Duration;

/// The kinds of alert, with what to do about each.
pub mod kind {
    pub const APPROVAL_WAITING: &str = "approval.waiting";
    pub const FILE_REJECTED: &str = "file.rejected";
    pub const BATCH_EXPIRED: &str = "batch.expired";
    pub const BATCH_DECLINED: &str = "batch.declined";
    pub const PAYMENTS_REJECTED: &str = "payments.rejected";
    pub const STATUS_OVERDUE: &str = "status.overdue";
    pub const BANK_UNREACHABLE: &str = "bank.unreachable";
    pub const KEY_REFUSED: &str = "key.refused";
    pub const RETURN_QUARANTINED: &str = "return.quarantined";
    pub const KEY_EXPIRING: &str = "key.expiring";
    pub const ACCESS_REFUSALS: &str = "access.refusals";
    pub const AUDIT_BROKEN: &str = "audit.broken";
    pub const DISK_LOW: &str = "disk.low";

    /// Every kind, for the docs, the metrics and the tests.
    pub const ALL: &[&str] = &[
        APPROVAL_WAITING,
        FILE_REJECTED,
        BATCH_EXPIRED,
        BATCH_DECLINED,
        PAYMENTS_REJECTED,
        STATUS_OVERDUE,
        BANK_UNREACHABLE,
        KEY_REFUSED,
        RETURN_QUARANTINED,
        KEY_EXPIRING,
        ACCESS_REFUSALS,
        AUDIT_BROKEN,
        DISK_LOW,
    ];
}

/// An alert to raise.
pub struct Alert {
    pub kind: &'static str,
    pub subject: String,
    pub batch: Option<i64>,
    pub critical: bool,
    pub summary: String,
    pub action: String,
    /// paygate users it is meant for (approvers, the submitter).
    pub recipients: Vec<String>,
}

impl Alert {
    pub fn new(
        kind: &'static str,
        subject: impl Into<String>,
        summary: impl Into<String>,
        action: impl Into<String>,
    ) -> Alert {
        Alert {
            kind,
            subject: subject.into(),
            batch: None,
            critical: false,
            summary: summary.into(),
            action: action.into(),
            recipients: Vec::new(),
        }
    }

    pub fn batch(mut self, b: i64) -> Alert {
        self.batch = Some(b);
        self
    }

    pub fn critical(mut self) -> Alert {
        self.critical = true;
        self
    }

    pub fn to(mut self, users: impl IntoIterator<Item = String>) -> Alert {
        self.recipients.extend(users);
        self.recipients.sort();
        self.recipients.dedup();
        self
    }
}

fn wants(kinds: &[String], kind: &str) -> bool {
    kinds.is_empty() || kinds.iter().any(|k| k == kind)
}

/// A webhook's name in the queue: `webhook:` and a hash of its URL, so that a reload that
/// reorders or removes webhooks never sends a queued alert to another one.
fn webhook_id(w: &Webhook) -> String {
    use sha2::Digest;
    format!(
        "webhook:{}",
        &hex::encode(sha2::Sha256::digest(w.url.as_bytes()))[..12]
    )
}

/// A URL as it may be shown: without its query (webhook tokens travel there) and user info.
pub fn redact(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or("");
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let q = if no_query.len() < url.len() {
                "?…"
            } else {
                ""
            };
            format!("{scheme}://{rest}{q}")
        }
        None => "(not a URL)".into(),
    }
}

/// The sinks an alert of `kind` goes to: `webhook:N` and `email`.
fn sinks(cfg: &AlertsCfg, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .webhooks
        .iter()
        .filter(|w| wants(&w.kinds, kind))
        .map(webhook_id)
        .collect();
    if let Some(e) = &cfg.email
        && wants(&e.kinds, kind)
    {
        out.push("email".into());
    }
    out
}

/// Raises an alert: logged now; recorded with its deliveries unless the same one was raised
/// within the repeat interval. A store failure is logged (the log line is the alert then).
pub async fn raise(cfg: &Config, store: &Store, a: Alert) -> Option<i64> {
    let severity = if a.critical { "critical" } else { "warning" };
    if a.critical {
        tracing::error!(error_code = a.kind, alert = a.kind, subject = %a.subject, batch = a.batch, "ALERT {}: {} — {}", a.kind, a.summary, a.action);
    } else {
        tracing::warn!(error_code = a.kind, alert = a.kind, subject = %a.subject, batch = a.batch, "ALERT {}: {} — {}", a.kind, a.summary, a.action);
    }
    let new = NewAlert {
        kind: a.kind.to_string(),
        subject: a.subject,
        batch: a.batch,
        severity: severity.into(),
        summary: a.summary,
        action: a.action,
        recipients: a.recipients,
    };
    let repeat = chrono::Duration::minutes(cfg.alerts.repeat_after_mins as i64);
    match store
        .raise_alert(&new, &sinks(&cfg.alerts, &new.kind), repeat, Utc::now())
        .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(
                error_code = "alert.unrecorded",
                "alert {} could not be recorded: {e}",
                new.kind
            );
            None
        }
    }
}

/// The wait before the next attempt: 15 s doubling, at most an hour.
pub fn backoff(attempts: i64) -> chrono::Duration {
    chrono::Duration::seconds((15i64 << attempts.clamp(0, 8)).min(3600))
}

/// Sends every delivery that is due; returns how many were delivered. Blocking network work
/// runs on the blocking pool.
pub async fn deliver_due(cfg: &std::sync::Arc<Config>, store: &Store) -> Result<usize, StoreError> {
    let mut n = 0;
    for d in store.due_deliveries(Utc::now(), 50).await? {
        let (c, d2) = (cfg.clone(), d.clone());
        let sent = tokio::task::spawn_blocking(move || send(&c, &d2))
            .await
            .unwrap_or_else(|e| Err(format!("the sending thread failed: {e}")));
        match sent {
            Ok(()) => {
                store.delivery_done(d.id, Utc::now()).await?;
                n += 1;
            }
            Err(e) if e.starts_with(GONE) => {
                tracing::error!(error_code = "alert.abandoned", alert = d.alert.id, sink = %d.sink, "alert {} ({}) not delivered through {}: {e}", d.alert.id, d.alert.kind, d.sink);
                store.delivery_abandoned(d.id, &e).await?;
            }
            Err(e) => {
                let next = Utc::now() + backoff(d.attempts);
                tracing::error!(error_code = "alert.undelivered", alert = d.alert.id, sink = %d.sink, attempts = d.attempts + 1, "alert {} ({}) not delivered through {}: {e}; trying again at {next}", d.alert.id, d.alert.kind, d.sink);
                store.delivery_failed(d.id, &e, next).await?;
            }
        }
    }
    Ok(n)
}

/// The start of the error of a delivery whose channel is gone from the config.
const GONE: &str = "no longer configured";

fn send(cfg: &Config, d: &DueDelivery) -> Result<(), String> {
    if d.sink.starts_with("webhook:") {
        let w = cfg
            .alerts
            .webhooks
            .iter()
            .find(|w| webhook_id(w) == d.sink)
            .ok_or_else(|| format!("{GONE}: no configured webhook is {}", d.sink))?;
        return post(w, &d.alert);
    }
    if d.sink == "email" {
        if cfg.alerts.email.is_none() {
            return Err(format!("{GONE}: alerts.email was removed"));
        }
        return email(cfg, &d.alert);
    }
    Err(format!("unknown sink {}", d.sink))
}

/// The alert as a person reads it.
pub fn text(a: &StoredAlert) -> String {
    let mut t = format!(
        "[paygate {}] {}\n{}\nWhat to do: {}",
        a.severity, a.kind, a.summary, a.action
    );
    if let Some(b) = a.batch {
        t.push_str(&format!("\nBatch: {b}"));
    }
    if !a.recipients.is_empty() {
        t.push_str(&format!("\nFor: {}", a.recipients.join(", ")));
    }
    t.push_str(&format!(
        "\nRaised {} (alert {}; acknowledge with `paygate alerts ack {}`)",
        a.raised_at, a.id, a.id
    ));
    t
}

/// The JSON body: `text` as Slack reads it, `msgtype`/`markdown` as WeCom and DingTalk read
/// it, and the alert's fields for anything else.
pub fn payload(a: &StoredAlert) -> serde_json::Value {
    let t = text(a);
    serde_json::json!({
        "text": t,
        "msgtype": "markdown",
        "markdown": { "title": format!("paygate: {}", a.kind), "content": t, "text": t },
        "alert": a,
    })
}

fn post(w: &Webhook, a: &StoredAlert) -> Result<(), String> {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .build(),
            )
            .build(),
    );
    let body = serde_json::to_vec(&payload(a)).map_err(|e| e.to_string())?;
    let shown = redact(&w.url);
    let resp = agent
        .post(&w.url)
        .header("content-type", "application/json")
        .send(&body[..])
        .map_err(|e| format!("{shown}: {}", e.to_string().replace(&w.url, &shown)))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{shown} answered HTTP {status}"))
    }
}

fn email(cfg: &Config, a: &StoredAlert) -> Result<(), String> {
    use lettre::message::Mailbox;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};
    let e = cfg
        .alerts
        .email
        .as_ref()
        .ok_or("email is no longer configured")?;
    let mut to: Vec<String> = e.to.clone();
    for r in &a.recipients {
        if let Some(addr) = e.addresses.get(r) {
            to.push(addr.clone());
        }
    }
    to.sort();
    to.dedup();
    if to.is_empty() {
        return Err("no recipient has an address (alerts.email.to, alerts.email.addresses)".into());
    }
    let from: Mailbox = e
        .from
        .parse()
        .map_err(|x| format!("alerts.email.from: {x}"))?;
    let mut m = Message::builder().from(from).subject(format!(
        "[paygate {}] {}: {}",
        a.severity,
        a.kind,
        a.summary.chars().take(120).collect::<String>()
    ));
    for t in &to {
        m = m.to(t.parse().map_err(|x| format!("{t}: {x}"))?);
    }
    let msg = m.body(text(a)).map_err(|x| x.to_string())?;
    let tls = |host: &str| -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(ca) = &e.ca_file {
            let pem =
                std::fs::read(cfg.resolve(ca)).map_err(|x| format!("{}: {x}", ca.display()))?;
            b = b.add_root_certificate(
                lettre::transport::smtp::client::Certificate::from_pem(&pem)
                    .map_err(|x| format!("{}: {x}", ca.display()))?,
            );
        }
        b.build().map_err(|x| x.to_string())
    };
    let mut t = SmtpTransport::builder_dangerous(&e.host)
        .port(e.port)
        .timeout(Some(Duration::from_secs(20)));
    t = match e.tls {
        SmtpTls::Starttls => t.tls(Tls::Required(tls(&e.host)?)),
        SmtpTls::Tls => t.tls(Tls::Wrapper(tls(&e.host)?)),
        SmtpTls::None => t.tls(Tls::None),
    };
    if let (Some(u), Some(p)) = (&e.username, &e.password_file) {
        let pass =
            std::fs::read_to_string(cfg.resolve(p)).map_err(|x| format!("{}: {x}", p.display()))?;
        t = t.credentials(Credentials::new(u.clone(), pass.trim_end().to_string()));
    }
    t.build().send(&msg).map(|_| ()).map_err(|x| x.to_string())
}

/// Free space of the file system holding `path`, in bytes.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path; `s` is a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_in_webhook_urls_are_never_shown() {
        assert_eq!(
            super::redact("https://oapi.dingtalk.com/robot/send?access_token=SECRET"),
            "https://oapi.dingtalk.com/robot/send?…"
        );
        assert_eq!(
            super::redact("https://user:pw@hooks.example/x"),
            "https://hooks.example/x"
        );
        assert_eq!(super::backoff(0), chrono::Duration::seconds(15));
        assert_eq!(super::backoff(20), chrono::Duration::seconds(3600));
    }
}
