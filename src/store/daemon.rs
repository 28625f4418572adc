//! The daemon's part of the store: claimed input files (and re-admitted duplicates), approvals,
//! sealed files, and the queries the scheduler and `paygate status` need. Every change is one
//! transaction with its audit entry, guarded by the state it was computed from.

use super::{
    BATCH_COLUMNS, BatchRow, FileRecord, Store, StoreError, append_audit, batch_row,
    insert_payments, move_batch, ts,
};
use crate::model::{
    Account, Address, BankId, BatchState, Bic, Cnaps, Currency, DomesticAccount, Event, Iban,
    Money, Payment,
};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// What recording a claimed file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time this content is seen on the channel (or an admin re-admitted it).
    New(FileRecord),
    /// This very claim was recorded before: a restart continues it.
    Recovered(FileRecord, Option<i64>),
    /// The same content was processed before, as `earlier` (batch `batch`).
    Duplicate {
        earlier: FileRecord,
        batch: Option<i64>,
    },
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approved {
    pub batch: i64,
    pub state: BatchState,
    pub approvals: u32,
    pub required: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredApproval {
    pub approver: String,
    pub at: String,
    pub comment: Option<String>,
}

impl Store {
    /// Records a file the daemon claimed (renamed to `claim` under `processing/`). A claim seen
    /// before is recovered; content seen before on the channel is a duplicate, unless an admin
    /// re-admitted it (`readmit`), which this admission uses up.
    pub async fn record_claim(
        &self,
        channel: &str,
        name: &str,
        claim: &str,
        sha256: &str,
        size: u64,
        at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(r) = sqlx::query(
            "SELECT f.id, f.name, f.received_at, b.id FROM files f LEFT JOIN batches b ON b.file_id = f.id WHERE f.claim = $1",
        )
        .bind(claim)
        .fetch_optional(&mut *tx)
        .await?
        {
            let rec = FileRecord {
                id: r.get(0),
                new: false,
                first_name: r.get(1),
                first_seen: r.get(2),
            };
            return Ok(Claim::Recovered(rec, r.get(3)));
        }
        let earlier = sqlx::query(
            "SELECT f.id, f.name, f.received_at, b.id, f.admission FROM files f LEFT JOIN batches b ON b.file_id = f.id
             WHERE f.channel = $1 AND f.sha256 = $2 ORDER BY f.admission DESC LIMIT 1",
        )
        .bind(channel)
        .bind(sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let admission: i64 = match &earlier {
            None => 0,
            Some(r) => {
                let readmission: Option<i64> = sqlx::query(
                    "SELECT id FROM readmissions WHERE channel = $1 AND sha256 = $2 AND used_by IS NULL ORDER BY id LIMIT 1",
                )
                .bind(channel)
                .bind(sha256)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
                if readmission.is_none() {
                    return Ok(Claim::Duplicate {
                        earlier: FileRecord {
                            id: r.get(0),
                            new: false,
                            first_name: r.get(1),
                            first_seen: r.get(2),
                        },
                        batch: r.get(3),
                    });
                }
                r.get::<i64, _>(4) + 1
            }
        };
        let id: i64 = sqlx::query(
            "INSERT INTO files (channel, name, sha256, size, received_at, claim, admission)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(channel)
        .bind(name)
        .bind(sha256)
        .bind(size as i64)
        .bind(ts(at))
        .bind(claim)
        .bind(admission)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        if admission > 0 {
            sqlx::query(
                "UPDATE readmissions SET used_by = $1 WHERE id = (SELECT id FROM readmissions
                 WHERE channel = $2 AND sha256 = $3 AND used_by IS NULL ORDER BY id LIMIT 1)",
            )
            .bind(id)
            .bind(channel)
            .bind(sha256)
            .execute(&mut *tx)
            .await?;
        }
        append_audit(
            &mut tx,
            at,
            "paygate",
            "file.received",
            None,
            &format!(
                "channel={channel} name={name} sha256={sha256} size={size} claim={claim} admission={admission}"
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(Claim::New(FileRecord {
            id,
            new: true,
            first_name: name.to_string(),
            first_seen: ts(at),
        }))
    }

    /// A recorded file.
    pub async fn file_record(&self, file_id: i64) -> Result<FileRecord, StoreError> {
        let r = sqlx::query("SELECT id, name, received_at FROM files WHERE id = $1")
            .bind(file_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(FileRecord {
            id: r.get(0),
            new: false,
            first_name: r.get(1),
            first_seen: r.get(2),
        })
    }

    /// An admin allows one more admission of content seen before on a channel.
    pub async fn readmit(
        &self,
        channel: &str,
        sha256: &str,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO readmissions (channel, sha256, by_user, at, reason) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(channel)
        .bind(sha256)
        .bind(by)
        .bind(ts(at))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            by,
            "file.readmitted",
            None,
            &format!("channel={channel} sha256={sha256} reason={reason}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Whether this content was ever processed on the channel.
    pub async fn file_seen(&self, channel: &str, sha256: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM files WHERE channel = $1 AND sha256 = $2 LIMIT 1")
                .bind(channel)
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Records where an accepted source file was archived.
    pub async fn set_archived_path(&self, file_id: i64, path: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE files SET archived_path = $1 WHERE id = $2")
            .bind(path)
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The batch made from a file, if any.
    pub async fn batch_of_file(&self, file_id: i64) -> Result<Option<BatchRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE file_id = $1"
        )))
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch_row).transpose()
    }

    /// Batches in any of `states`, oldest first.
    pub async fn batches_in(&self, states: &[BatchState]) -> Result<Vec<BatchRow>, StoreError> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE state IN ({list}) ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_row).collect()
    }

    /// Number of batches per state.
    pub async fn batch_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM batches GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn approvals(&self, batch: i64) -> Result<Vec<StoredApproval>, StoreError> {
        let rows = sqlx::query(
            "SELECT approver, at, comment FROM approvals WHERE batch_id = $1 ORDER BY id",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredApproval {
                approver: r.get(0),
                at: r.get(1),
                comment: r.get(2),
            })
            .collect())
    }

    /// Moves an approved batch to `sealed`, recording the sealed file (archived, synced) and
    /// the remote name it will have: from here on every send uses exactly these bytes and this
    /// name.
    ///
    /// `bytes`: the sealed file itself, kept in the store (`sealed_files`) in the same
    /// transaction when several instances share it, so that any of them sends exactly these.
    #[allow(clippy::too_many_arguments)]
    pub async fn mark_sealed(
        &self,
        batch: i64,
        sealed_path: &str,
        sealed_sha256: &str,
        remote_name: &str,
        bytes: Option<&[u8]>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let Some(bytes) = bytes {
            sqlx::query(
                "INSERT INTO sealed_files (batch_id, bytes) VALUES ($1, $2)
                 ON CONFLICT (batch_id) DO UPDATE SET bytes = excluded.bytes",
            )
            .bind(batch)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        let next = BatchState::Approved.on(&Event::Sealed)?;
        move_batch(
            &mut tx,
            batch,
            BatchState::Approved,
            next,
            "sealed",
            None,
            at,
        )
        .await?;
        sqlx::query(
            "UPDATE batches SET sealed_path = $1, sealed_sha256 = $2, remote_name = $3 WHERE id = $4",
        )
        .bind(sealed_path)
        .bind(sealed_sha256)
        .bind(remote_name)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            "paygate",
            "batch.sealed",
            Some(batch),
            &format!("approved -> sealed; sha256={sealed_sha256} remote_name={remote_name}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Records that this instance starts (or resumes) sending a batch's sealed file: `sealed`
    /// → `uploading`, or an audited resume of a batch already `uploading`, by instance `me`.
    /// `fenced`: the instance's claim on the batch is checked in the same transaction: an instance
    /// whose lease ran out — cut off from the database, say — records nothing and must not
    /// send, since another may already be sending.
    pub async fn start_upload(
        &self,
        batch: i64,
        from: BatchState,
        me: &str,
        fenced: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if fenced {
            let now = self.backend.now_ms();
            let held = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT 1 FROM batches WHERE id = $1 AND claimed_by = $2 AND lease_until > {now}"
            )))
            .bind(batch)
            .bind(me)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !held {
                return Err(StoreError::LeaseLost { batch });
            }
        }
        if from == BatchState::Sealed {
            let next = BatchState::Sealed.on(&Event::UploadStarted)?;
            move_batch(
                &mut tx,
                batch,
                BatchState::Sealed,
                next,
                "upload_started",
                None,
                at,
            )
            .await?;
            append_audit(
                &mut tx,
                at,
                "paygate",
                "batch.upload_started",
                Some(batch),
                &format!("sealed -> uploading; instance={me}"),
            )
            .await?;
        } else {
            super::expect_state(&mut *tx, batch, BatchState::Uploading).await?;
            append_audit(
                &mut tx,
                at,
                "paygate",
                "batch.upload_resumed",
                Some(batch),
                &format!("uploading; the same sealed file sent again; instance={me}"),
            )
            .await?;
        }
        self.commit(tx).await
    }

    /// Marks the batch's file delivered: `uploading` → `sent`, its payments `sent`, and the
    /// upload recorded, in one transaction.
    pub async fn mark_sent(
        &self,
        batch: i64,
        bank: &str,
        outcome: &str,
        bytes: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let b = self.batch(batch).await?;
        let mut tx = self.begin().await?;
        let next = BatchState::Uploading.on(&Event::Uploaded)?;
        move_batch(
            &mut tx,
            batch,
            BatchState::Uploading,
            next,
            "uploaded",
            None,
            at,
        )
        .await?;
        sqlx::query(
            "UPDATE payments SET state = 'sent', updated_at = $1 WHERE batch_id = $2 AND state = 'pending'",
        )
        .bind(ts(at))
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        super::access::record_payees(&mut tx, batch, &b.channel, at).await?;
        let name = b.remote_name.clone().unwrap_or_default();
        let sha = b.sealed_sha256.clone().unwrap_or_default();
        sqlx::query(
            "INSERT INTO uploads (bank, batch_id, remote_name, sha256, size, outcome, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(bank)
        .bind(batch)
        .bind(&name)
        .bind(&sha)
        .bind(bytes as i64)
        .bind(outcome)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            "paygate",
            "batch.uploaded",
            Some(batch),
            &format!(
                "uploading -> sent; bank={bank} name={name} sha256={sha} size={bytes} outcome={outcome}"
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// A batch's payments as validated, to render its bank file from the store alone.
    pub async fn payments_to_render(&self, batch: i64) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT row_no, end_to_end_id, account_type, agent_type, agent, bank_name,
                    amount_minor, currency, execution_date, {}
             FROM payments WHERE batch_id = $1 ORDER BY row_no",
            super::PAYEE_COLUMNS
        )))
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        let keys = self.keys()?;
        let bad = |what: &str, v: &str| {
            StoreError::BadState(format!(
                "batch {batch}: stored {what} `{v}` cannot be read back"
            ))
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let row_no: i64 = r.get(0);
            let payee = super::payee_at(keys, r, 9, batch, row_no)?;
            let acct = payee.account;
            let account = match r.get::<String, _>(2).as_str() {
                "iban" => Account::Iban(
                    Iban::parse(&acct).map_err(|_| bad("IBAN", &crate::model::mask(&acct)))?,
                ),
                _ => Account::Domestic(
                    DomesticAccount::parse(&acct, 1, 34)
                        .map_err(|_| bad("account", &crate::model::mask(&acct)))?,
                ),
            };
            let agent: Option<String> = r.get(4);
            let creditor_agent = match (r.get::<Option<String>, _>(3).as_deref(), agent) {
                (Some("bic"), Some(a)) => {
                    Some(BankId::Bic(Bic::parse(&a).map_err(|_| bad("BIC", &a))?))
                }
                (Some("cnaps"), Some(a)) => Some(BankId::Cnaps(
                    Cnaps::parse(&a).map_err(|_| bad("CNAPS", &a))?,
                )),
                _ => None,
            };
            let ccy_s: String = r.get(7);
            let ccy: Currency = ccy_s.parse().map_err(|_| bad("currency", &ccy_s))?;
            let minor: i64 = r.get(6);
            let amount = Money::from_minor_units(minor, ccy);
            let date_s: String = r.get(8);
            let creditor_address: Option<Address> = match payee.address {
                Some(a) => Some(serde_json::from_str(&a).map_err(|_| bad("address", &a))?),
                None => None,
            };
            let e2e: String = r.get(1);
            out.push(Payment {
                row: row_no as u64,
                // The stored id is what the bank file carries (generated ids included).
                end_to_end_id: Some(e2e),
                creditor_name: payee.name,
                creditor_account: account,
                creditor_agent,
                creditor_bank_name: r.get(5),
                creditor_address,
                amount,
                remittance: payee.remittance,
                execution_date: date_s.parse().map_err(|_| bad("date", &date_s))?,
            });
        }
        Ok(out)
    }

    /// Batches waiting for approval since before `cutoff` expire: they are never sent.
    pub async fn expire_batch(
        &self,
        batch: i64,
        hours: f64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let next = BatchState::AwaitingApproval.on(&Event::Expired)?;
        move_batch(
            &mut tx,
            batch,
            BatchState::AwaitingApproval,
            next,
            "expired",
            None,
            at,
        )
        .await?;
        append_audit(
            &mut tx,
            at,
            "paygate",
            "batch.expired",
            Some(batch),
            &format!("no approval within {hours} hours; never sent"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// When the batch entered its current state.
    pub async fn state_since(&self, batch: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT at FROM state_history WHERE batch_id = $1 AND payment_id IS NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(batch)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.get(0)))
    }

    /// The most recent successful upload and processed return file per bank.
    pub async fn last_contact(&self, bank: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT MAX(at) FROM (SELECT at FROM uploads WHERE bank = $1 AND outcome != 'failed'
             UNION ALL SELECT received_at AS at FROM return_files WHERE bank = $1) AS contacts",
        )
        .bind(bank)
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }
}

impl Store {
    /// Adds validated payments to a batch still `received` (in chunks while its file is read,
    /// so that a million payments never sit in memory at once).
    pub async fn add_payments(
        &self,
        batch: i64,
        msg_id: &str,
        payments: &[Payment],
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.bulk {
            return super::copy_payments(pg, self.keys()?, batch, msg_id, payments).await;
        }
        let mut tx = self.begin().await?;
        super::expect_state(&mut *tx, batch, BatchState::Received).await?;
        insert_payments(&mut tx, self.keys()?, batch, msg_id, payments).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes what an interrupted reading of a `received` batch's file stored, so that it can
    /// be read again from the start.
    pub async fn clear_payments(&self, batch: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM payments WHERE batch_id = $1
             AND (SELECT state FROM batches WHERE id = $1) = 'received'",
        )
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Ends the reading of a batch's file: with errors, its payments are removed and it is
    /// `invalid`; without, its payment count is recorded and it awaits approval — one
    /// transaction with the history row and the audit entry.
    pub async fn finish_validation(
        &self,
        batch: i64,
        payments: u64,
        errors: usize,
        at: DateTime<Utc>,
    ) -> Result<BatchState, StoreError> {
        let event = Event::Validated { errors };
        let next = BatchState::Received.on(&event)?;
        let mut tx = self.begin().await?;
        if errors > 0 {
            sqlx::query("DELETE FROM payments WHERE batch_id = $1")
                .bind(batch)
                .execute(&mut *tx)
                .await?;
        }
        let stored: i64 = sqlx::query("SELECT COUNT(*) FROM payments WHERE batch_id = $1")
            .bind(batch)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if errors == 0 && stored != payments as i64 {
            return Err(StoreError::BadState(format!(
                "batch {batch}: {stored} payments stored but {payments} read from the file"
            )));
        }
        sqlx::query("UPDATE batches SET payment_count = $1 WHERE id = $2")
            .bind(stored)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        move_batch(
            &mut tx,
            batch,
            BatchState::Received,
            next,
            event.name(),
            None,
            at,
        )
        .await?;
        append_audit(
            &mut tx,
            at,
            "paygate",
            "batch.validated",
            Some(batch),
            &format!("received -> {next}; payments={stored} errors={errors}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(next)
    }

    /// An audit entry for a decision that changes no batch (a refused or duplicate file, a
    /// re-admission, a reload).
    pub async fn audit_event(
        &self,
        actor: &str,
        action: &str,
        batch: Option<i64>,
        details: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_audit(&mut tx, Utc::now(), actor, action, batch, details).await?;
        self.commit(tx).await
    }
}
