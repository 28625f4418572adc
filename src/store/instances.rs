//! Several instances on one store: each instance's row and heartbeat, the leases on batch steps
//! and on each bank's return poller, and the sealed files any instance may have to send.
//! Nothing here is a consensus protocol: the database's transactions and row locks decide, and
//! every lease is timed by the database's clock (`Backend::now_ms`), never by a host's.

use super::{Backend, Store, StoreError, ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// An instance as `paygate status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub started_at: String,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// Its lease is current and it has not stopped.
    pub alive: bool,
    pub stopped_at: Option<String>,
    /// Batches whose step it holds.
    pub batches: Vec<i64>,
    /// Banks whose returns it polls.
    pub polls: Vec<String>,
}

impl Backend {
    /// The database's clock, in milliseconds since 1970.
    pub(super) fn now_ms(self) -> &'static str {
        match self {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

impl Store {
    /// Records this instance at its start.
    pub async fn register_instance(
        &self,
        id: &str,
        host: &str,
        version: &str,
        lease_ms: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = self.backend.now_ms();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO instances (id, host, pid, version, started_at, heartbeat_ms, lease_until)
             VALUES ($1, $2, $3, $4, $5, {now}, {now} + $6)"
        )))
        .bind(id)
        .bind(host)
        .bind(i64::from(std::process::id()))
        .bind(version)
        .bind(ts(at))
        .bind(lease_ms)
        .execute(&self.pool)
        .await?;
        // Instances gone for a month are forgotten (their audit entries stay).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM instances WHERE lease_until < {now} - 2592000000"
        )))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The heartbeat: renews this instance's lease and every lease it holds, in one
    /// transaction. False when the instance's row is gone or stopped, or — on a shared store —
    /// its lease had already run out (another instance may have taken its work): it must then
    /// stop working. An embedded store's one instance renews a lapsed lease (a long write, a
    /// million payments, may hold SQLite's lock past it; nobody else could have taken over).
    pub async fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<bool, StoreError> {
        let now = self.backend.now_ms();
        let lapsed = if self.is_shared() {
            format!(" AND lease_until > {now}")
        } else {
            String::new()
        };
        let mut tx = self.pool.begin().await?;
        let alive = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE instances SET heartbeat_ms = {now}, lease_until = {now} + $2
             WHERE id = $1 AND stopped_at IS NULL{lapsed}"
        )))
        .bind(id)
        .bind(lease_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if alive {
            for table in ["batches", "pollers"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET lease_until = {now} + $2 WHERE claimed_by = $1"
                )))
                .bind(id)
                .bind(lease_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(alive)
    }

    /// A clean stop: the instance is marked stopped and what it held is free at once.
    pub async fn instance_stopped(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE instances SET stopped_at = $2 WHERE id = $1")
            .bind(id)
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE batches SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pollers WHERE claimed_by = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every instance that ran in the last `days` days (and every live one), newest first.
    pub async fn instances(&self, days: i64) -> Result<Vec<InstanceRow>, StoreError> {
        let now = self.backend.now_ms();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, host, pid, version, started_at, {now} - heartbeat_ms,
                    CASE WHEN stopped_at IS NULL AND lease_until > {now} THEN 1 ELSE 0 END, stopped_at
             FROM instances WHERE heartbeat_ms > {now} - $1 * 86400000 OR (stopped_at IS NULL AND lease_until > {now})
             ORDER BY started_at DESC"
        )))
        .bind(days)
        .fetch_all(&self.pool)
        .await?;
        // What an instance holds: the rows of `table` it has a current lease on.
        let held = |column: &str, table: &str, id: &str| {
            let (pool, id) = (self.pool.clone(), id.to_string());
            let sql = format!(
                "SELECT {column} FROM {table} WHERE claimed_by = $1 AND lease_until > {now} ORDER BY {column}"
            );
            async move {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_all(&pool)
                    .await
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.get(0);
            let batches = held("id", "batches", &id).await?;
            let polls = held("bank", "pollers", &id).await?;
            out.push(InstanceRow {
                id,
                host: r.get(1),
                pid: r.get(2),
                version: r.get(3),
                started_at: r.get(4),
                heartbeat_age_ms: r.get(5),
                alive: r.get::<i64, _>(6) == 1,
                stopped_at: r.get(7),
                batches: batches.iter().map(|r| r.get(0)).collect(),
                polls: polls.iter().map(|r| r.get(0)).collect(),
            });
        }
        Ok(out)
    }

    /// Whether instance `id` is alive (its lease current, not stopped).
    pub async fn instance_alive(&self, id: &str) -> Result<bool, StoreError> {
        let now = self.backend.now_ms();
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM instances WHERE id = $1 AND stopped_at IS NULL AND lease_until > {now}"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Claims a batch's next step for `me`: only while the batch is still in `state` and
    /// nobody else holds a current lease on it. On PostgreSQL the row is picked with
    /// `FOR UPDATE SKIP LOCKED`, so that an instance claiming it at the same moment passes by
    /// instead of waiting.
    pub async fn claim_batch(
        &self,
        batch: i64,
        state: crate::model::BatchState,
        me: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = self.backend.now_ms();
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE batches SET claimed_by = $1, lease_until = {now} + $2
             WHERE id = (SELECT id FROM batches WHERE id = $3 AND state = $4
                 AND (claimed_by IS NULL OR claimed_by = $1 OR lease_until IS NULL OR lease_until <= {now}){lock})"
        )))
        .bind(me)
        .bind(lease_ms)
        .bind(batch)
        .bind(state.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Gives a batch's claim back after its step.
    pub async fn release_batch(&self, batch: i64, me: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batches SET claimed_by = NULL, lease_until = NULL WHERE id = $1 AND claimed_by = $2",
        )
        .bind(batch)
        .bind(me)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (or keeps) the poller lease of `bank`: true when `me` holds it now.
    pub async fn take_poller(
        &self,
        bank: &str,
        me: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = self.backend.now_ms();
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO pollers (bank, claimed_by, lease_until) VALUES ($1, $2, {now} + $3)
             ON CONFLICT (bank) DO UPDATE SET claimed_by = excluded.claimed_by, lease_until = excluded.lease_until
             WHERE pollers.claimed_by = excluded.claimed_by OR pollers.lease_until <= {now}"
        )))
        .bind(bank)
        .bind(me)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Keeps a sealed file's bytes in the store, for whichever instance sends the batch.
    pub async fn put_sealed_bytes(&self, batch: i64, bytes: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sealed_files (batch_id, bytes) VALUES ($1, $2) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch)
        .bind(bytes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A sealed file's bytes as kept in the store, if they are.
    pub async fn sealed_bytes(&self, batch: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query("SELECT bytes FROM sealed_files WHERE batch_id = $1")
                .bind(batch)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    /// Whether several instances may share this store (PostgreSQL): then sealed files are
    /// kept in it and a lease that ran out stops the instance. An embedded store has one
    /// instance (its data folder is locked), whose leases fence nobody.
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }
}
