//! What the Prometheus endpoint reads: counts and ages computed from the store at each scrape,
//! so that they survive restarts and agree with `paygate status` and `paygate batches`.

use super::{Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// (channel, files recorded)
    pub files_received: Vec<(String, i64)>,
    /// (channel, files rejected as invalid)
    pub files_rejected: Vec<(String, i64)>,
    /// (state, batches)
    pub batches: Vec<(String, i64)>,
    /// (channel, currency, payments sent, amount sent in minor units)
    pub sent: Vec<(String, String, i64, i64)>,
    /// (bank, outcome, uploads)
    pub uploads: Vec<(String, String, i64)>,
    /// (state, oldest batch's `updated_at`)
    pub oldest: Vec<(String, String)>,
    /// (bank, seconds from upload to the first bank status, to the final status)
    pub round_trips: Vec<(String, Option<f64>, Option<f64>)>,
    /// Entries in the audit chain.
    pub audit_length: i64,
    /// (kind, raised, open)
    pub alerts: Vec<(String, i64, i64)>,
    /// (bank, return files quarantined)
    pub quarantined: Vec<(String, i64)>,
}

impl Store {
    pub async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, StoreError> {
        let p = &self.pool;
        let pairs = |rows: Vec<sqlx::any::AnyRow>| -> Vec<(String, i64)> {
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        };
        let mut s = MetricsSnapshot {
            files_received: pairs(
                sqlx::query("SELECT channel, COUNT(*) FROM files GROUP BY channel ORDER BY 1")
                    .fetch_all(p)
                    .await?,
            ),
            files_rejected: pairs(
                sqlx::query(
                    "SELECT channel, COUNT(*) FROM batches WHERE state = 'invalid' GROUP BY channel ORDER BY 1",
                )
                .fetch_all(p)
                .await?,
            ),
            batches: self.batch_counts().await?,
            ..Default::default()
        };
        s.sent = sqlx::query(
            "SELECT b.channel, p.currency, COUNT(*), CAST(SUM(p.amount_minor) AS BIGINT) FROM payments p JOIN batches b ON b.id = p.batch_id
             WHERE b.state IN ('sent', 'accepted', 'completed', 'partially_rejected', 'rejected')
             GROUP BY b.channel, p.currency ORDER BY 1, 2",
        )
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
        s.uploads = sqlx::query(
            "SELECT bank, outcome, COUNT(*) FROM uploads GROUP BY bank, outcome ORDER BY 1, 2",
        )
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        s.oldest = sqlx::query(
            "SELECT state, MIN(updated_at) FROM batches
             WHERE state IN ('received', 'awaiting_approval', 'approved', 'sealed', 'uploading', 'sent', 'accepted')
             GROUP BY state ORDER BY 1",
        )
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        // Per bank, the latest batch's upload → first status and → final status.
        let first_status = self.backend.seconds_between(
            "u.at",
            "(SELECT MIN(h.at) FROM state_history h WHERE h.batch_id = b.id AND h.from_state = 'sent')",
        );
        let final_status = self.backend.seconds_between("u.at", "b.updated_at");
        s.round_trips = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT b.bank, {first_status},
                    CASE WHEN b.state IN ('completed', 'partially_rejected', 'rejected')
                         THEN {final_status} END
             FROM batches b JOIN state_history u ON u.batch_id = b.id AND u.to_state = 'sent' AND u.payment_id IS NULL
             WHERE b.id = (SELECT MAX(b2.id) FROM batches b2 JOIN state_history u2 ON u2.batch_id = b2.id AND u2.to_state = 'sent' WHERE b2.bank = b.bank)
             ORDER BY 1"
        )))
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        s.audit_length = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM audit")
            .fetch_one(p)
            .await?
            .get(0);
        s.alerts = self.alert_counts().await?;
        s.quarantined = pairs(
            sqlx::query(
                "SELECT bank, COUNT(*) FROM return_files WHERE state = 'quarantined' GROUP BY bank ORDER BY 1",
            )
            .fetch_all(p)
            .await?,
        );
        Ok(s)
    }
}
