//! Payment data at rest in the store: re-encryption under the current data key (after a
//! rotation, or of rows written before encryption existed), the move of the old plaintext
//! payee table to keyed hashes, and the register of archived files (`archived`).

use super::{PAYEE_COLUMNS, Store, StoreError, append_audit, payee_at, seal_payee, ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// A file kept for the audit, encrypted to the archive key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchivedFile {
    pub id: i64,
    pub batch_id: Option<i64>,
    pub bank: Option<String>,
    /// `source`, `rendered`, `sealed`, `return` or `result`.
    pub kind: String,
    pub name: String,
    pub path: String,
    /// SHA-256 of the plaintext.
    pub sha256: String,
    pub at: String,
}

/// How far a re-encryption got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reencrypted {
    pub rows: u64,
    pub payees: u64,
}

impl Store {
    /// The data key new values are encrypted under.
    pub fn data_key_current(&self) -> Result<i64, StoreError> {
        Ok(self.keys()?.current())
    }

    /// Payment rows not yet under the current data key (plaintext rows included).
    pub async fn rows_off_current_key(&self) -> Result<u64, StoreError> {
        let current = self.keys()?.current();
        Ok(
            sqlx::query("SELECT COUNT(*) FROM payments WHERE enc_key IS NULL OR enc_key <> $1")
                .bind(current)
                .fetch_one(&self.pool)
                .await?
                .get::<i64, _>(0) as u64,
        )
    }

    /// The data keys the stored rows are under (NULL, plaintext, as 0).
    pub async fn keys_in_use(&self) -> Result<Vec<(i64, u64)>, StoreError> {
        Ok(sqlx::query(
            "SELECT COALESCE(enc_key, 0), COUNT(*) FROM payments GROUP BY COALESCE(enc_key, 0) ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<i64, _>(1) as u64))
        .collect())
    }

    /// Re-encrypts every payment row not under the current key, `chunk` rows a transaction,
    /// so that an interruption (a kill, a power cut) leaves each row under one key the key
    /// file holds, and running it again continues where it stopped. Rows written before
    /// encryption existed are encrypted, and the old plaintext payee table moved to hashes.
    /// `progress` is called after each committed chunk.
    pub async fn reencrypt(
        &self,
        chunk: usize,
        mut progress: impl FnMut(u64),
    ) -> Result<Reencrypted, StoreError> {
        let keys = self.keys()?;
        let current = keys.current();
        let mut done = Reencrypted::default();
        loop {
            let mut tx = self.begin().await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, batch_id, row_no, {PAYEE_COLUMNS}
                 FROM payments WHERE enc_key IS NULL OR enc_key <> $1 ORDER BY id LIMIT $2"
            )))
            .bind(current)
            .bind(chunk as i64)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let (id, batch, row_no): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
                let payee = payee_at(keys, r, 3, batch, row_no)?;
                let (sealed, hmac) = seal_payee(keys, batch, row_no, &payee);
                sqlx::query(
                    "UPDATE payments SET creditor_name = '', account = '', remittance = NULL, creditor_address = NULL,
                         sealed = $1, enc_key = $2, account_hmac = $3 WHERE id = $4",
                )
                .bind(sealed)
                .bind(current)
                .bind(hmac)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            done.rows += rows.len() as u64;
            progress(done.rows);
            crate::crash::crash_point("reencrypt-chunk");
        }
        // The payee table of before: its account numbers become keyed hashes.
        let mut tx = self.begin().await?;
        let old = sqlx::query(
            "SELECT channel, account, currency, max_amount_minor, first_batch, first_paid_at, last_paid_at FROM payees",
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in &old {
            let (max, min) = (self.backend.greatest(), self.backend.least());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO payee_lookup (channel, account_hmac, currency, max_amount_minor, first_batch, first_paid_at, last_paid_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (channel, account_hmac, currency) DO UPDATE SET
                     max_amount_minor = {max}(payee_lookup.max_amount_minor, excluded.max_amount_minor),
                     first_paid_at = {min}(payee_lookup.first_paid_at, excluded.first_paid_at),
                     last_paid_at = {max}(payee_lookup.last_paid_at, excluded.last_paid_at)"
            )))
            .bind(r.get::<String, _>(0))
            .bind(keys.lookup(r.get::<&str, _>(1)))
            .bind(r.get::<String, _>(2))
            .bind(r.get::<i64, _>(3))
            .bind(r.get::<i64, _>(4))
            .bind(r.get::<String, _>(5))
            .bind(r.get::<String, _>(6))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM payees").execute(&mut *tx).await?;
        tx.commit().await?;
        done.payees = old.len() as u64;
        Ok(done)
    }

    /// An audit entry of the data-at-rest operations (`data_key.rotation_started`, …).
    pub async fn audit_at_rest(
        &self,
        actor: &str,
        action: &str,
        details: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_audit(&mut tx, at, actor, action, None, details).await?;
        self.commit(tx).await
    }

    /// An audit entry about one batch (an export).
    pub async fn audit_batch(
        &self,
        actor: &str,
        action: &str,
        batch: i64,
        details: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_audit(&mut tx, at, actor, action, Some(batch), details).await?;
        self.commit(tx).await
    }

    /// Registers a file stored encrypted to the archive key.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_archived(
        &self,
        batch: Option<i64>,
        bank: Option<&str>,
        kind: &str,
        name: &str,
        path: &str,
        sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // One row per path and batch: the same file archived again (a step repeated after a
        // crash) replaces its row.
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM archived WHERE path = $1 AND batch_id IS NOT DISTINCT FROM $2")
            .bind(path)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO archived (batch_id, bank, kind, name, path, sha256, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(batch)
        .bind(bank)
        .bind(kind)
        .bind(name)
        .bind(path)
        .bind(sha256)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a file is registered in the archive.
    pub async fn is_archived(&self, path: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM archived WHERE path = $1 LIMIT 1")
                .bind(path)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// The batches a bank report (by the SHA-256 of its plaintext) was applied to.
    pub async fn batches_of_report(&self, sha256: &str) -> Result<Vec<i64>, StoreError> {
        let mut ids: Vec<i64> =
            sqlx::query("SELECT batch_id FROM reports WHERE sha256 = $1 AND batch_id IS NOT NULL")
                .bind(sha256)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Ties the store to its data key: the first key seen is recorded (as a keyed hash of a
    /// constant); another key file is refused.
    pub(super) async fn check_data_key(
        &self,
        keys: &crate::vault::DataKeys,
    ) -> Result<(), StoreError> {
        let check = hex::encode(keys.lookup("paygate:data-key-check"));
        let found: Option<String> =
            sqlx::query("SELECT value FROM meta WHERE name = 'data_key_check'")
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0));
        match found {
            Some(v) if v == check => Ok(()),
            Some(_) => Err(StoreError::KeyMismatch(
                keys.path().map(|p| p.to_path_buf()).unwrap_or_default(),
            )),
            None => {
                sqlx::query(
                    "INSERT INTO meta (name, value) VALUES ('data_key_check', $1) ON CONFLICT (name) DO NOTHING",
                )
                .bind(check)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    }

    /// Everything archived for a batch: its source, rendered and sealed files, the bank's
    /// return files that were applied to it, and its result reports.
    pub async fn archived_of(&self, batch: i64) -> Result<Vec<ArchivedFile>, StoreError> {
        Ok(sqlx::query(
            "SELECT id, batch_id, bank, kind, name, path, sha256, at FROM archived WHERE batch_id = $1 ORDER BY id",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| ArchivedFile {
            id: r.get(0),
            batch_id: r.get(1),
            bank: r.get(2),
            kind: r.get(3),
            name: r.get(4),
            path: r.get(5),
            sha256: r.get(6),
            at: r.get(7),
        })
        .collect())
    }
}
