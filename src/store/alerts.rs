//! Alerts in the store: raised (or counted, within the repeat interval), delivered through
//! each configured channel with retries, listed while open, acknowledged (audited).

use super::{Store, StoreError, append_audit, ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// An alert as raised.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewAlert {
    pub kind: String,
    pub subject: String,
    pub batch: Option<i64>,
    pub severity: String,
    pub summary: String,
    pub action: String,
    pub recipients: Vec<String>,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAlert {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub batch: Option<i64>,
    pub severity: String,
    pub summary: String,
    pub action: String,
    pub recipients: Vec<String>,
    pub raised_at: String,
    pub last_raised_at: String,
    pub times: i64,
    pub acked_at: Option<String>,
    pub acked_by: Option<String>,
    /// Deliveries still pending (channel: attempts, last error).
    pub pending: Vec<String>,
}

/// A delivery that is due.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub sink: String,
    pub attempts: i64,
    pub alert: StoredAlert,
}

const ALERT_COLUMNS: &str = "id, kind, subject, batch_id, severity, summary, action, recipients, raised_at, last_raised_at, times, acked_at, acked_by";

/// An alert from `ALERT_COLUMNS` starting at column `i`.
fn alert_row(r: &sqlx::any::AnyRow, i: usize) -> StoredAlert {
    StoredAlert {
        id: r.get(i),
        kind: r.get(i + 1),
        subject: r.get(i + 2),
        batch: r.get(i + 3),
        severity: r.get(i + 4),
        summary: r.get(i + 5),
        action: r.get(i + 6),
        recipients: serde_json::from_str(r.get::<&str, _>(i + 7)).unwrap_or_default(),
        raised_at: r.get(i + 8),
        last_raised_at: r.get(i + 9),
        times: r.get(i + 10),
        acked_at: r.get(i + 11),
        acked_by: r.get(i + 12),
        pending: Vec::new(),
    }
}

impl Store {
    /// Raises an alert: a new one (with a pending delivery per sink), or — when the same kind
    /// and subject was raised within `repeat_after` and is not acknowledged — the earlier one
    /// counted once more and nothing sent. Returns the new alert's id.
    pub async fn raise_alert(
        &self,
        a: &NewAlert,
        sinks: &[String],
        repeat_after: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let recent: Option<i64> = sqlx::query(
            "SELECT id FROM alerts WHERE kind = $1 AND subject = $2 AND acked_at IS NULL AND raised_at > $3
             ORDER BY id DESC LIMIT 1",
        )
        .bind(&a.kind)
        .bind(&a.subject)
        .bind(ts(at - repeat_after))
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get(0));
        if let Some(id) = recent {
            sqlx::query("UPDATE alerts SET times = times + 1, last_raised_at = $1 WHERE id = $2")
                .bind(ts(at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(None);
        }
        let id: i64 = sqlx::query(
            "INSERT INTO alerts (kind, subject, batch_id, severity, summary, action, recipients, raised_at, last_raised_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(&a.kind)
        .bind(&a.subject)
        .bind(a.batch)
        .bind(&a.severity)
        .bind(&a.summary)
        .bind(&a.action)
        .bind(serde_json::to_string(&a.recipients).unwrap_or_else(|_| "[]".into()))
        .bind(ts(at))
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        // An older open alert of the same kind and subject is superseded by this one.
        sqlx::query(
            "UPDATE alerts SET acked_at = $1, acked_by = $2 WHERE kind = $3 AND subject = $4 AND acked_at IS NULL AND id <> $5",
        )
        .bind(ts(at))
        .bind(format!("paygate (raised again as alert {id})"))
        .bind(&a.kind)
        .bind(&a.subject)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for s in sinks {
            sqlx::query(
                "INSERT INTO alert_deliveries (alert_id, sink, state, next_at) VALUES ($1, $2, 'pending', $3)",
            )
            .bind(id)
            .bind(s)
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Deliveries due at `at`, oldest first.
    pub async fn due_deliveries(
        &self,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.id, d.sink, d.attempts, {} FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE d.state = 'pending' AND d.next_at <= $1 ORDER BY d.id LIMIT $2",
            ALERT_COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(ts(at))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                // The alert's columns follow the delivery's three.
                let a = alert_row(r, 3);
                DueDelivery {
                    id: r.get(0),
                    sink: r.get(1),
                    attempts: r.get(2),
                    alert: a,
                }
            })
            .collect())
    }

    pub async fn delivery_done(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET state = 'delivered', attempts = attempts + 1, delivered_at = $1 WHERE id = $2",
        )
        .bind(ts(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A delivery whose channel is no longer configured: it leaves the queue (logged).
    pub async fn delivery_abandoned(&self, id: i64, why: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET state = 'abandoned', last_error = $1 WHERE id = $2",
        )
        .bind(why)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $1, next_at = $2 WHERE id = $3",
        )
        .bind(error)
        .bind(ts(next_at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Alerts not acknowledged yet, newest first, with their pending deliveries.
    pub async fn open_alerts(&self) -> Result<Vec<StoredAlert>, StoreError> {
        let mut out: Vec<StoredAlert> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE acked_at IS NULL ORDER BY id DESC LIMIT 200"
        )))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| alert_row(r, 0))
        .collect();
        for a in &mut out {
            a.pending = sqlx::query(
                "SELECT sink, attempts, last_error FROM alert_deliveries WHERE alert_id = $1 AND state = 'pending'",
            )
            .bind(a.id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let e: Option<String> = r.get(2);
                format!(
                    "{}: {} attempts{}",
                    r.get::<String, _>(0),
                    r.get::<i64, _>(1),
                    e.map_or(String::new(), |e| format!(", last: {e}"))
                )
            })
            .collect();
        }
        Ok(out)
    }

    /// Acknowledges an alert (audited). False when it does not exist or was acknowledged.
    pub async fn ack_alert(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND acked_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let a = alert_row(&row, 0);
        sqlx::query("UPDATE alerts SET acked_at = $1, acked_by = $2 WHERE id = $3")
            .bind(ts(at))
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &mut tx,
            at,
            by,
            "alert.acknowledged",
            a.batch,
            &format!(
                "alert {id} ({}: {}) raised {} times",
                a.kind, a.subject, a.times
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    /// Alerts raised per kind (for the metrics).
    pub async fn alert_counts(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        Ok(sqlx::query(
            "SELECT kind, COUNT(*), SUM(CASE WHEN acked_at IS NULL THEN 1 ELSE 0 END) FROM alerts GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
    }
}
