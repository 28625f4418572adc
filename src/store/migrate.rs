//! `paygate store migrate-to`: an embedded SQLite store copied into an empty PostgreSQL
//! database, row for row with the same ids (sealed payment records are bound to their batch and
//! row, so they decrypt there with the same key file), the audit chain with its hashes, then
//! checked on the target: the same number of rows per table and a chain that verifies to the
//! same head. The source is only read.

use super::{Backend, Store, StoreError};
use sqlx::Row;

/// Every table of the store, parents before children (foreign keys).
const TABLES: &[&str] = &[
    "files",
    "batches",
    "payments",
    "state_history",
    "findings",
    "audit",
    "return_files",
    "uploads",
    "reports",
    "approvals",
    "readmissions",
    "users",
    "roles",
    "reviews",
    "payees",
    "payee_lookup",
    "archived",
    "meta",
    "alerts",
    "alert_deliveries",
];

/// What a copy moved and what the target then verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Rows per table, in `TABLES` order.
    pub rows: Vec<(&'static str, u64)>,
    /// Audit entries, verified on the target.
    pub audit_entries: u64,
    /// The chain's head hash, the same on both.
    pub head: String,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
    Real,
}

impl Store {
    /// Rows in any of the store's tables: a target must have none.
    async fn first_non_empty_table(&self) -> Result<Option<(&'static str, i64)>, StoreError> {
        for t in TABLES {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
                .fetch_one(&self.pool)
                .await?
                .get(0);
            if n > 0 {
                return Ok(Some((t, n)));
            }
        }
        Ok(None)
    }

    /// The columns of `table` and how to carry them, as the PostgreSQL target declares them.
    async fn columns(&self, table: &str) -> Result<Vec<(String, Kind)>, StoreError> {
        let rows = sqlx::query(
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let (name, ty): (String, String) = (r.get(0), r.get(1));
                let kind = match ty.as_str() {
                    "bigint" | "integer" | "smallint" => Kind::Int,
                    "text" | "character varying" => Kind::Text,
                    "bytea" => Kind::Bytes,
                    "double precision" | "real" => Kind::Real,
                    other => {
                        return Err(StoreError::BadState(format!(
                            "{table}.{name}: column type {other} cannot be copied"
                        )));
                    }
                };
                Ok((name, kind))
            })
            .collect()
    }

    /// Copies this (SQLite) store into `target` (PostgreSQL, migrated, empty), in one
    /// transaction on the target, then verifies the target. `progress` hears each table's rows
    /// as they are copied.
    pub async fn copy_to(
        &self,
        target: &Store,
        mut progress: impl FnMut(&str, u64),
    ) -> Result<Copied, StoreError> {
        if self.backend != Backend::Sqlite || target.backend != Backend::Postgres {
            return Err(StoreError::BadState(
                "a store is copied from SQLite into PostgreSQL".into(),
            ));
        }
        if let Some((t, n)) = target.first_non_empty_table().await? {
            return Err(StoreError::TargetNotEmpty(t.to_string(), n));
        }
        let source_head = self.verify_audit().await?.map_err(StoreError::Broken)?;
        let mut tx = target.begin().await?;
        let mut rows = Vec::new();
        for &table in TABLES {
            let cols = target.columns(table).await?;
            let names = cols
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            // Paged by the key where there is one: a million payments never sit in memory.
            let key = ["id", "seq"]
                .into_iter()
                .find(|k| cols.iter().any(|(n, _)| n == k));
            let per_statement = (60_000 / cols.len()).min(1000);
            let mut after = i64::MIN;
            let mut copied = 0u64;
            loop {
                let page =
                    match key {
                        Some(k) => sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {names} FROM {table} WHERE {k} > $1 ORDER BY {k} LIMIT 10000"
                        )))
                        .bind(after)
                        .fetch_all(&self.pool)
                        .await?,
                        None => {
                            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {names} FROM {table}")))
                                .fetch_all(&self.pool)
                                .await?
                        }
                    };
                if page.is_empty() {
                    break;
                }
                if let Some(k) = key {
                    let i = cols.iter().position(|(n, _)| n == k).unwrap_or(0);
                    after = page.last().map(|r| r.get::<i64, _>(i)).unwrap_or(after);
                }
                for chunk in page.chunks(per_statement) {
                    let mut sql = format!("INSERT INTO {table} ({names}) VALUES ");
                    let mut n = 0;
                    for (ri, _) in chunk.iter().enumerate() {
                        sql.push_str(if ri == 0 { "(" } else { ", (" });
                        for ci in 0..cols.len() {
                            n += 1;
                            sql.push_str(&format!("{}${n}", if ci == 0 { "" } else { ", " }));
                        }
                        sql.push(')');
                    }
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for r in chunk {
                        for (i, (_, kind)) in cols.iter().enumerate() {
                            q = match kind {
                                Kind::Int => q.bind(r.get::<Option<i64>, _>(i)),
                                Kind::Text => q.bind(r.get::<Option<String>, _>(i)),
                                Kind::Bytes => q.bind(r.get::<Option<Vec<u8>>, _>(i)),
                                Kind::Real => q.bind(r.get::<Option<f64>, _>(i)),
                            };
                        }
                    }
                    q.execute(&mut *tx).await?;
                }
                copied += page.len() as u64;
                progress(table, copied);
                if key.is_none() {
                    break;
                }
            }
            // New rows on the target continue after the copied ids.
            if cols.iter().any(|(n, _)| n == "id") && table != "audit" {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )))
                .fetch_one(&mut *tx)
                .await?;
            }
            rows.push((table, copied));
        }
        tx.commit().await?;
        // The target, read back: every table as many rows, the chain whole and at the same head.
        for (table, n) in &rows {
            let there: i64 =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&target.pool)
                    .await?
                    .get(0);
            if there != *n as i64 {
                return Err(StoreError::BadState(format!(
                    "{table}: {n} rows copied but {there} on the target"
                )));
            }
        }
        let target_entries = target.verify_audit().await?.map_err(StoreError::Broken)?;
        let head = |s: &Store| {
            let pool = s.pool.clone();
            async move {
                Ok::<_, StoreError>(
                    sqlx::query("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&pool)
                        .await?
                        .map(|r| r.get::<String, _>(0))
                        .unwrap_or_else(|| super::GENESIS.to_string()),
                )
            }
        };
        let (from, to) = (head(self).await?, head(target).await?);
        if target_entries != source_head || from != to {
            return Err(StoreError::BadState(format!(
                "the audit chain on the target ({target_entries} entries, head {to}) is not the source's ({source_head} entries, head {from})"
            )));
        }
        Ok(Copied {
            rows,
            audit_entries: target_entries,
            head: to,
        })
    }
}
