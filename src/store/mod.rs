//! The store: every SQL statement of paygate lives in this module, nowhere else.
//!
//! SQLite (WAL, synchronous=FULL) is the embedded default. Other modules see only `Store` and
//! plain Rust values, so a PostgreSQL backend can be added behind the same methods.
//! State changes are applied with `WHERE state = <expected>` together with their history and
//! audit rows in one transaction: a change is either durable and audited, or not made.

use crate::model::{Account, BankId, BatchState, Event, IllegalTransition, Payment};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, Row};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database {0}: {1}")]
    Password(String, String),
    #[error(
        "batch {batch}: this instance no longer holds its claim (its lease ran out); another instance continues it, and nothing was changed"
    )]
    LeaseLost { batch: i64 },
    #[error(
        "the target database is not empty ({0} holds {1} rows): paygate copies a store only into an empty database"
    )]
    TargetNotEmpty(String, i64),
    #[error(transparent)]
    Broken(#[from] AuditBroken),
    #[error("the store URL must start with sqlite: or postgres:// (got `{0}`)")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error(
        "batch {batch} is no longer `{expected}` (another process changed it); nothing was changed"
    )]
    Conflict { batch: i64, expected: BatchState },
    #[error("no batch {0}")]
    NoSuchBatch(i64),
    #[error(
        "payment {payment} of batch {batch} changed meanwhile (another process reconciled it); nothing was changed"
    )]
    PaymentConflict { batch: i64, payment: i64 },
    #[error("the stored state `{0}` is not a known batch state")]
    BadState(String),
    #[error("audit anchor {0}: {1}")]
    Anchor(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("the store was opened without its data key: payment data cannot be read or written")]
    NoDataKey,
    #[error("{}: the data key file is missing, but the store holds payment data encrypted under it; restore the key file from its backup (paygate never makes a new key over encrypted data)", .0.display())]
    KeyMissing(std::path::PathBuf),
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(std::path::PathBuf, std::io::Error),
    #[error("{}: this data key file is not the one this store's payment data is encrypted under; restore the right key file (or the credential paygate-data-key)", .0.display())]
    KeyMismatch(std::path::PathBuf),
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: a small pool of its own for `COPY` (which the Any driver cannot speak).
    bulk: Option<sqlx::PgPool>,
    /// A file outside the database that receives every audit head (`seq hash`), so that
    /// entries removed from the end of the chain, or a rewritten chain, are noticed.
    anchor: Option<std::path::PathBuf>,
    /// The keys of the payment data at rest (`vault`); without them payments can be neither
    /// written nor read.
    keys: Option<std::sync::Arc<crate::vault::DataKeys>>,
}

/// A recorded input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: i64,
    /// False when the same content was already recorded for the channel: do not process it again.
    pub new: bool,
    pub first_name: String,
    pub first_seen: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub id: i64,
    pub file_id: i64,
    pub channel: String,
    pub bank: String,
    pub state: BatchState,
    pub msg_id: Option<String>,
    pub payment_count: i64,
    pub submitter: Option<String>,
    pub remote_name: Option<String>,
    pub sealed_path: Option<String>,
    pub sealed_sha256: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Distinct approvals the policy asked for when the batch came in; `None` until decided.
    pub approvals_required: Option<i64>,
    /// Why that many (tier, scrutiny), or why it was declined or approved automatically.
    pub approval_reasons: Vec<String>,
    /// The company account it pays from (daily limits per account).
    pub debtor_account: Option<String>,
    /// The file's owner on disk when the channel records a configured submitter.
    pub dropped_by: Option<String>,
}

/// One entry of the audit trail with its chain hashes, as `paygate audit export` writes it:
/// `hash = SHA-256(len‖prev_hash ‖ len‖seq ‖ len‖at ‖ len‖actor ‖ len‖action ‖ len‖batch ‖
/// len‖details)`, each part preceded by its byte length as a big-endian u64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub batch: Option<i64>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// One entry of the audit trail, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub batch_id: Option<i64>,
    pub details: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail is broken at entry {seq}: {why}")]
pub struct AuditBroken {
    pub seq: i64,
    pub why: String,
}

fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn audit_hash(
    prev: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    batch: Option<i64>,
    details: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        at,
        actor,
        action,
        &batch.map_or(String::new(), |b| b.to_string()),
        details,
    ] {
        // Length-prefixed, so that moving text between fields changes the hash.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

// `Backend` (which database a store URL names) and `redact_url` are the config's: it
// checks `store.url` with them. The dialect's differences are here.
pub use crate::config::{Backend, redact_url};

impl Backend {
    fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The larger of two values of a row (`MAX(a, b)` in SQLite, `GREATEST` in PostgreSQL).
    fn greatest(self) -> &'static str {
        match self {
            Backend::Sqlite => "MAX",
            Backend::Postgres => "GREATEST",
        }
    }

    /// The smaller of two values of a row.
    fn least(self) -> &'static str {
        match self {
            Backend::Sqlite => "MIN",
            Backend::Postgres => "LEAST",
        }
    }

    /// Seconds from RFC 3339 text `a` to `b`, as a double.
    fn seconds_between(self, a: &str, b: &str) -> String {
        match self {
            Backend::Sqlite => format!("((julianday({b}) - julianday({a})) * 86400.0)"),
            Backend::Postgres => format!(
                "CAST(EXTRACT(EPOCH FROM (CAST({b} AS TIMESTAMPTZ) - CAST({a} AS TIMESTAMPTZ))) AS DOUBLE PRECISION)"
            ),
        }
    }
}

impl Store {
    /// Opens (creating when missing) and migrates the database at `url` (`sqlite://PATH` or
    /// `postgres://…`).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with_password(url, None).await
    }

    /// `open`, with the PostgreSQL password read apart from the URL (a secret file or a
    /// systemd credential), so that it is never in the configuration file.
    pub async fn open_with_password(
        url: &str,
        password: Option<&str>,
    ) -> Result<Store, StoreError> {
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact_url(url)))?;
        sqlx::any::install_default_drivers();
        let open_err = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        let (pool, bulk) = match backend {
            Backend::Sqlite => (Store::sqlite_pool(url).await.map_err(open_err)?, None),
            Backend::Postgres => {
                let mut full = url.to_string();
                if let Some(pw) = password {
                    let mut u = url::Url::parse(url)
                        .map_err(|e| open_err(sqlx::Error::Configuration(e.into())))?;
                    u.set_password(Some(pw)).map_err(|()| {
                        open_err(sqlx::Error::Configuration(
                            "this URL cannot carry a password".into(),
                        ))
                    })?;
                    full = u.to_string();
                }
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&full)
                    .await
                    .map_err(open_err)?;
                let bulk = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&full)
                    .await
                    .map_err(open_err)?;
                (pool, Some(bulk))
            }
        };
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./src/store/migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./src/store/migrations/postgres"),
        };
        migrator.run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            bulk,
            anchor: None,
            keys: None,
        })
    }

    async fn sqlite_pool(url: &str) -> Result<AnyPool, sqlx::Error> {
        // A database paygate creates is its own alone (0600; SQLite gives its -wal and -shm
        // files the same mode).
        let file = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or("")
            .to_string();
        if !file.is_empty() && file != ":memory:" && !std::path::Path::new(&file).exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file);
        }
        // Checked here, where the error can name the URL: the Any driver parses it again.
        SqliteConnectOptions::from_str(url)?;
        AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // WAL with full sync: a committed transaction survives a power cut. Foreign keys
            // on; a writer waits up to 10 s for another (BEGIN IMMEDIATE).
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens the store a config names, with its data keys and its audit anchor. A missing key
    /// file is created (0600) only while no payment is stored encrypted; a key file that is not
    /// the one the store was first opened with is refused (`check_data_key`), so a second key
    /// can never take over.
    pub async fn open_configured(cfg: &crate::config::Config) -> Result<Store, StoreError> {
        let data = cfg.data_dir();
        if !data.exists() {
            crate::durable::create_private_dir(&data)
                .map_err(|e| StoreError::Io(data.clone(), e))?;
        }
        let url = cfg.database_url();
        let password = cfg
            .database_password()
            .map_err(|e| StoreError::Password(redact_url(&url), e))?;
        let store = Store::open_with_password(&url, password.as_deref())
            .await?
            .with_audit_anchor(data.join("audit.anchor"));
        let path = cfg.data_key_path();
        let keys = if path.exists() {
            crate::vault::DataKeys::load(&path)?
        } else {
            let encrypted: i64 =
                sqlx::query("SELECT COUNT(*) FROM payments WHERE enc_key IS NOT NULL")
                    .fetch_one(&store.pool)
                    .await?
                    .get(0);
            if encrypted > 0 {
                return Err(StoreError::KeyMissing(path));
            }
            let mut k = crate::vault::DataKeys::generate();
            k.save(&path)?;
            tracing::info!(path = %path.display(), "created the data key file: back it up apart from the database");
            k
        };
        store.check_data_key(&keys).await?;
        Ok(store.with_data_keys(std::sync::Arc::new(keys)))
    }

    /// The data keys payments are encrypted and read with.
    pub fn with_data_keys(mut self, keys: std::sync::Arc<crate::vault::DataKeys>) -> Store {
        self.keys = Some(keys);
        self
    }

    fn keys(&self) -> Result<&crate::vault::DataKeys, StoreError> {
        self.keys.as_deref().ok_or(StoreError::NoDataKey)
    }

    /// Anchors the audit chain in `path` (append-only, synced on every entry).
    pub fn with_audit_anchor(mut self, path: std::path::PathBuf) -> Store {
        self.anchor = Some(path);
        self
    }

    /// Commits a transaction that wrote audit entries, then records the chain's new head in
    /// the anchor file. The head is read inside the transaction, which holds the chain's write
    /// lock, so it is this instance's own append even when other instances share the database.
    /// A crash in between leaves the anchor one head behind: verification accepts an anchor
    /// behind the database, never one ahead of it or disagreeing with it.
    async fn commit(&self, mut tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
        let head = match &self.anchor {
            Some(_) => sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))),
            None => None,
        };
        tx.commit().await?;
        let (Some(path), Some((seq, hash))) = (&self.anchor, head) else {
            return Ok(());
        };
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Anchor(path.clone(), e))?;
        // One write of the whole line: `writeln!` on a file makes a syscall per piece, and
        // a SIGKILL between them left `359 ` glued to the next line.
        f.write_all(format!("{seq} {hash}\n").as_bytes())
            .map_err(|e| StoreError::Anchor(path.clone(), e))?;
        f.sync_data()
            .map_err(|e| StoreError::Anchor(path.clone(), e))?;
        Ok(())
    }

    /// A write transaction; write transactions run one at a time. In SQLite `BEGIN IMMEDIATE`
    /// takes the write lock at the start, so that a transaction that reads before it writes
    /// waits for another writer (busy_timeout) instead of failing when that writer commits
    /// first. In PostgreSQL the transaction first locks the audit chain's head row
    /// (`audit_head`): every instance's writers queue there, so each appends to the head the
    /// previous one committed and reads what it committed — one chain, whatever instance
    /// writes.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                self.pool
                    .begin_with(sqlx::AssertSqlSafe("BEGIN IMMEDIATE"))
                    .await
            }
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    pub async fn close(&self) {
        if let Some(b) = &self.bulk {
            b.close().await;
        }
        self.pool.close().await;
    }

    /// Records an input file by content. The same content seen again on the same channel is
    /// reported as not new, whatever its name: it is never processed twice.
    pub async fn record_file(
        &self,
        channel: &str,
        name: &str,
        sha256: &str,
        size: u64,
        at: DateTime<Utc>,
    ) -> Result<FileRecord, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO files (channel, name, sha256, size, received_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (channel, sha256, admission) DO NOTHING",
        )
        .bind(channel)
        .bind(name)
        .bind(sha256)
        .bind(size as i64)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT id, name, received_at FROM files WHERE channel = $1 AND sha256 = $2 AND admission = 0",
        )
        .bind(channel)
        .bind(sha256)
        .fetch_one(&mut *tx)
        .await?;
        let rec = FileRecord {
            id: row.get(0),
            new: inserted,
            first_name: row.get(1),
            first_seen: row.get(2),
        };
        if inserted {
            append_audit(
                &mut tx,
                at,
                "paygate",
                "file.received",
                None,
                &format!("channel={channel} name={name} sha256={sha256} size={size}"),
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(rec)
    }

    /// Creates the batch of a file, in state `received`, with its MsgId (unique, never changed
    /// afterwards) and all its payments, in one transaction. Payments without an end-to-end id
    /// get the one rendering gives them (`render::generated_end_to_end_id`), so that the bank's
    /// answers name what is stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_batch(
        &self,
        file_id: i64,
        channel: &str,
        bank: &str,
        msg_id: &str,
        payments: &[Payment],
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.create_batch_by(
            file_id, channel, bank, msg_id, payments, actor, None, None, at,
        )
        .await
    }

    /// `create_batch`, recording who submitted the file.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_batch_by(
        &self,
        file_id: i64,
        channel: &str,
        bank: &str,
        msg_id: &str,
        payments: &[Payment],
        actor: &str,
        submitter: Option<&str>,
        dropped_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let now = ts(at);
        let id: i64 = sqlx::query(
            "INSERT INTO batches (file_id, channel, bank, state, payment_count, created_at, updated_at, msg_id, submitter, dropped_by)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) RETURNING id",
        )
        .bind(file_id)
        .bind(channel)
        .bind(bank)
        .bind(BatchState::Received.as_str())
        .bind(payments.len() as i64)
        .bind(&now)
        .bind(msg_id)
        .bind(submitter)
        .bind(dropped_by)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        insert_payments(&mut tx, self.keys()?, id, msg_id, payments).await?;
        sqlx::query(
            "INSERT INTO state_history (batch_id, from_state, to_state, event, at) VALUES ($1, NULL, $2, 'created', $3)",
        )
        .bind(id)
        .bind(BatchState::Received.as_str())
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            actor,
            "batch.created",
            Some(id),
            &format!(
                "file_id={file_id} channel={channel} bank={bank} msg_id={msg_id} payments={} submitter={}",
                payments.len(),
                submitter.unwrap_or("-")
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(id)
    }

    /// Applies `event` to a batch that is in state `expected`, through `BatchState::on`, with a
    /// history row and an audit entry, all in one transaction. Fails without changing anything
    /// when the move is illegal or the batch is no longer in `expected`.
    pub async fn transition(
        &self,
        batch: i64,
        expected: BatchState,
        event: &Event,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<BatchState, StoreError> {
        let next = expected.on(event)?;
        let mut tx = self.begin().await?;
        move_batch(&mut tx, batch, expected, next, event.name(), None, at).await?;
        append_audit(
            &mut tx,
            at,
            actor,
            &format!("batch.{}", event.name()),
            Some(batch),
            &format!("{expected} -> {next}; {event:?}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(next)
    }

    pub async fn batch(&self, id: i64) -> Result<BatchRow, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NoSuchBatch(id))?;
        batch_row(&row)
    }

    /// Sum of a batch's payments per currency, in minor units, computed from the stored rows.
    pub async fn batch_totals(&self, id: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT currency, CAST(SUM(amount_minor) AS BIGINT), COUNT(*) FROM payments WHERE batch_id = $1 GROUP BY currency ORDER BY currency",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// States a batch went through, oldest first.
    pub async fn batch_history(
        &self,
        id: i64,
    ) -> Result<Vec<(Option<String>, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT from_state, to_state, event FROM state_history WHERE batch_id = $1 AND payment_id IS NULL ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    pub async fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, at, actor, action, batch_id, details FROM audit ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                batch_id: r.get(4),
                details: r.get(5),
            })
            .collect())
    }

    /// Recomputes the hash chain. Returns the number of entries, or where it breaks.
    pub async fn verify_audit(&self) -> Result<Result<u64, AuditBroken>, StoreError> {
        // The anchor first: a head is appended to it only after its entry committed, so every
        // head read now is in the database read next, however busy a running daemon is (read
        // the other way round, an entry committed in between looked removed).
        let anchor_text = self
            .anchor
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let rows = sqlx::query("SELECT seq, at, actor, action, batch_id, details, prev_hash, hash FROM audit ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut prev = GENESIS.to_string();
        for (expected_seq, r) in (1i64..).zip(rows.iter()) {
            let seq: i64 = r.get(0);
            let prev_hash: String = r.get(6);
            let hash: String = r.get(7);
            if seq != expected_seq {
                return Ok(Err(AuditBroken {
                    seq,
                    why: format!("entry {expected_seq} is missing"),
                }));
            }
            if prev_hash != prev {
                return Ok(Err(AuditBroken {
                    seq,
                    why: "it does not follow the previous entry".into(),
                }));
            }
            let want = audit_hash(&prev, seq, r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
            if want != hash {
                return Ok(Err(AuditBroken {
                    seq,
                    why: "its content was changed after it was written".into(),
                }));
            }
            prev = hash;
        }
        // Every head the anchor saw must still be in the chain, unchanged.
        if let (Some(path), Some(text)) = (&self.anchor, &anchor_text) {
            for line in text.lines() {
                // Only whole lines count: `SEQ HASH` with a 64-digit hex hash. A line cut short
                // by a crash while it was appended (older versions wrote it in pieces) says
                // nothing about the chain.
                let Some((seq, hash)) = line.split_once(' ') else {
                    continue;
                };
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let Ok(seq) = seq.parse::<i64>() else {
                    continue;
                };
                match rows
                    .get((seq - 1).max(0) as usize)
                    .map(|r| r.get::<String, _>(7))
                {
                    Some(h) if h == hash => {}
                    Some(_) => {
                        return Ok(Err(AuditBroken {
                            seq,
                            why: format!(
                                "it differs from the head recorded in {}: the chain was rewritten",
                                path.display()
                            ),
                        }));
                    }
                    None => {
                        return Ok(Err(AuditBroken {
                            seq,
                            why: format!(
                                "it was recorded in {} but is no longer in the database: entries were removed",
                                path.display()
                            ),
                        }));
                    }
                }
            }
        }
        Ok(Ok(rows.len() as u64))
    }
}

/// A file received from a bank, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnFile {
    pub id: i64,
    pub bank: String,
    pub remote_name: String,
    pub size: i64,
    pub sha256: String,
    pub spool_path: String,
    pub received_at: String,
    pub state: String,
    pub signer: Option<String>,
    pub reason: Option<String>,
    pub opened_path: Option<String>,
}

impl Store {
    /// Records a file downloaded from a bank. Returns its id, whether it is new, and its state:
    /// a file seen before is processed again only if it never got to `processed` or
    /// `quarantined` (a crash came in between).
    pub async fn record_return(
        &self,
        bank: &str,
        remote_name: &str,
        size: u64,
        sha256: &str,
        spool_path: &str,
        at: DateTime<Utc>,
    ) -> Result<(i64, bool, String), StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO return_files (bank, remote_name, size, sha256, spool_path, received_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, 'received') ON CONFLICT (bank, remote_name, sha256) DO NOTHING",
        )
        .bind(bank)
        .bind(remote_name)
        .bind(size as i64)
        .bind(sha256)
        .bind(spool_path)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT id, state FROM return_files WHERE bank = $1 AND remote_name = $2 AND sha256 = $3",
        )
        .bind(bank)
        .bind(remote_name)
        .bind(sha256)
        .fetch_one(&mut *tx)
        .await?;
        let (id, state): (i64, String) = (row.get(0), row.get(1));
        if inserted {
            append_audit(
                &mut tx,
                at,
                "paygate",
                "return.received",
                None,
                &format!("bank={bank} name={remote_name} size={size} sha256={sha256}"),
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok((id, inserted, state))
    }

    /// Marks a received file as opened (decrypted and verified) or quarantined, with why.
    pub async fn set_return_state(
        &self,
        id: i64,
        state: &str,
        signer: Option<&str>,
        reason: Option<&str>,
        opened_path: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE return_files SET state = $1, signer = $2, reason = $3, opened_path = $4 WHERE id = $5")
            .bind(state)
            .bind(signer)
            .bind(reason)
            .bind(opened_path)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &mut tx,
            at,
            "paygate",
            &format!("return.{state}"),
            None,
            &format!(
                "return_file={id} signer={} reason={}",
                signer.unwrap_or("-"),
                reason.unwrap_or("-")
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    pub async fn return_files(&self, bank: Option<&str>) -> Result<Vec<ReturnFile>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, bank, remote_name, size, sha256, spool_path, received_at, state, signer, reason, opened_path
             FROM return_files WHERE ($1 IS NULL OR bank = $1) ORDER BY id",
        )
        .bind(bank)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ReturnFile {
                id: r.get(0),
                bank: r.get(1),
                remote_name: r.get(2),
                size: r.get(3),
                sha256: r.get(4),
                spool_path: r.get(5),
                received_at: r.get(6),
                state: r.get(7),
                signer: r.get(8),
                reason: r.get(9),
                opened_path: r.get(10),
            })
            .collect())
    }

    /// Records an upload's outcome, with an audit entry naming who sent it.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_upload(
        &self,
        bank: &str,
        batch: Option<i64>,
        remote_name: &str,
        sha256: &str,
        size: u64,
        outcome: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO uploads (bank, batch_id, remote_name, sha256, size, outcome, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(bank)
        .bind(batch)
        .bind(remote_name)
        .bind(sha256)
        .bind(size as i64)
        .bind(outcome)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            actor,
            "upload",
            batch,
            &format!(
                "bank={bank} name={remote_name} sha256={sha256} size={size} outcome={outcome}"
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}

/// A stored payment with the bank's latest word on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredPayment {
    pub id: i64,
    pub row_no: i64,
    pub end_to_end_id: String,
    pub creditor_name: String,
    pub account: String,
    pub agent: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub execution_date: String,
    pub state: String,
    pub status_code: Option<String>,
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
    pub bank_reference: Option<String>,
    pub updated_at: Option<String>,
}

impl StoredPayment {
    /// The reconciliation view; `None` for a row that cannot be read back (never written so).
    pub fn view(&self) -> Option<crate::reconcile::PaymentView> {
        Some(crate::reconcile::PaymentView {
            id: self.id,
            end_to_end_id: self.end_to_end_id.clone(),
            account: self.account.clone(),
            amount_minor: self.amount_minor,
            currency: self.currency.parse().ok()?,
            execution_date: self.execution_date.parse().ok()?,
            state: crate::reconcile::PaymentState::parse(&self.state)?,
        })
    }
}

/// One line of a batch's list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchSummary {
    pub id: i64,
    pub channel: String,
    pub bank: String,
    pub file_name: String,
    pub state: String,
    pub msg_id: Option<String>,
    pub payment_count: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Payments per payment state.
    pub by_state: Vec<(String, i64)>,
}

/// A report that matched no batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredReport {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub msg_id: Option<String>,
    pub original_msg_id: Option<String>,
    pub batch_id: Option<i64>,
    pub received_at: String,
    pub summary: String,
}

/// One entry of a payment's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PaymentEvent {
    pub payment_id: i64,
    pub from: Option<String>,
    pub to: String,
    pub event: String,
    pub at: String,
    pub source: Option<String>,
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
}

impl Store {
    pub async fn batch_by_msg_id(&self, msg_id: &str) -> Result<Option<BatchRow>, StoreError> {
        let id: Option<i64> = sqlx::query("SELECT id FROM batches WHERE msg_id = $1")
            .bind(msg_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0));
        match id {
            Some(id) => Ok(Some(self.batch(id).await?)),
            None => Ok(None),
        }
    }

    /// The batch a payment with this end-to-end id belongs to (the newest, if several).
    pub async fn batch_of_end_to_end_id(&self, e2e: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query(
            "SELECT batch_id FROM payments WHERE end_to_end_id = $1 ORDER BY batch_id DESC LIMIT 1",
        )
        .bind(e2e)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.get(0)))
    }

    pub async fn payments(&self, batch: i64) -> Result<Vec<StoredPayment>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, row_no, end_to_end_id, creditor_name, account, agent, amount_minor, currency, execution_date,
                    state, status_code, reason_code, reason_text, bank_reference, updated_at, {PAYEE_COLUMNS}
             FROM payments WHERE batch_id = $1 ORDER BY row_no"
        )))
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        let keys = self.keys()?;
        rows.iter()
            .map(|r| {
                let row_no: i64 = r.get(1);
                let payee = payee_at(keys, r, 15, batch, row_no)?;
                Ok(StoredPayment {
                    id: r.get(0),
                    row_no,
                    end_to_end_id: r.get(2),
                    creditor_name: payee.name,
                    account: payee.account,
                    agent: r.get(5),
                    amount_minor: r.get(6),
                    currency: r.get(7),
                    execution_date: r.get(8),
                    state: r.get(9),
                    status_code: r.get(10),
                    reason_code: r.get(11),
                    reason_text: r.get(12),
                    bank_reference: r.get(13),
                    updated_at: r.get(14),
                })
            })
            .collect()
    }

    /// Marks a batch's payments as sent (when its file is on the bank's server).
    pub async fn mark_payments_sent(
        &self,
        batch: i64,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE payments SET state = 'sent', updated_at = $1 WHERE batch_id = $2 AND state = 'pending'")
            .bind(ts(at))
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Records a bank report by content. Returns its id and whether it was already applied
    /// (then nothing is to be done; a report recorded but never applied is applied again).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_report(
        &self,
        source: &str,
        sha256: &str,
        kind: &str,
        msg_id: Option<&str>,
        original_msg_id: Option<&str>,
        batch: Option<i64>,
        summary: &str,
        at: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO reports (source, sha256, kind, msg_id, original_msg_id, batch_id, received_at, summary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(source)
        .bind(sha256)
        .bind(kind)
        .bind(msg_id)
        .bind(original_msg_id)
        .bind(batch)
        .bind(ts(at))
        .bind(summary)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query("SELECT id, applied_at FROM reports WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = row.get(0);
        let applied: Option<String> = row.get(1);
        if inserted {
            append_audit(
                &mut tx,
                at,
                "paygate",
                if batch.is_some() {
                    "report.received"
                } else {
                    "report.unmatched"
                },
                batch,
                &format!(
                    "source={source} kind={kind} msg_id={} original={}",
                    msg_id.unwrap_or("-"),
                    original_msg_id.unwrap_or("-")
                ),
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok((id, applied.is_some()))
    }

    /// Marks a report as fully applied (to every batch it answers, or to none).
    pub async fn mark_report_applied(
        &self,
        report: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE reports SET applied_at = $1 WHERE id = $2 AND applied_at IS NULL")
            .bind(ts(at))
            .bind(report)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies a reconciliation: every payment change with its history row, the batch's new
    /// outcome (guarded by its current state), and one audit entry — in one transaction.
    pub async fn apply_reconciliation(
        &self,
        batch: i64,
        report: i64,
        changes: &[crate::reconcile::Change],
        outcome: Option<crate::model::Outcome>,
        at: DateTime<Utc>,
    ) -> Result<BatchState, StoreError> {
        let mut tx = self.begin().await?;
        let now = ts(at);
        let source = format!("report {report}");
        for c in changes {
            let updated = sqlx::query(
                "UPDATE payments SET state = $1, status_code = $2, reason_code = $3, reason_text = $4,
                        bank_reference = COALESCE($5, bank_reference), updated_at = $6
                 WHERE id = $7 AND batch_id = $8 AND state = $9",
            )
            .bind(c.to.as_str())
            .bind(&c.status)
            .bind(&c.reason_code)
            .bind(&c.reason_text)
            .bind(&c.bank_reference)
            .bind(&now)
            .bind(c.payment_id)
            .bind(batch)
            .bind(c.from.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                return Err(StoreError::Conflict {
                    batch,
                    expected: BatchState::Sent,
                });
            }
            sqlx::query(
                "INSERT INTO state_history (batch_id, payment_id, from_state, to_state, event, at, source, reason_code, reason_text)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(batch)
            .bind(c.payment_id)
            .bind(c.from.as_str())
            .bind(c.to.as_str())
            .bind(format!("{} {}", c.level, c.status))
            .bind(&now)
            .bind(&source)
            .bind(&c.reason_code)
            .bind(&c.reason_text)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query("SELECT state FROM batches WHERE id = $1")
            .bind(batch)
            .fetch_one(&mut *tx)
            .await?;
        let current_s: String = row.get(0);
        let current = BatchState::parse(&current_s).ok_or(StoreError::BadState(current_s))?;
        let mut next = current;
        if let Some(o) = outcome {
            let proposed = current.on(&Event::Outcome(o))?;
            if proposed != current {
                move_batch(
                    &mut tx,
                    batch,
                    current,
                    proposed,
                    "outcome",
                    Some(&source),
                    at,
                )
                .await?;
                next = proposed;
            }
        }
        append_audit(
            &mut tx,
            at,
            "paygate",
            "batch.reconciled",
            Some(batch),
            &format!(
                "report={report} changes={} state {current} -> {next}",
                changes.len()
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(next)
    }

    pub async fn batches(
        &self,
        state: Option<BatchState>,
    ) -> Result<Vec<BatchSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT b.id, b.channel, b.bank, f.name, b.state, b.msg_id, b.payment_count, b.created_at, b.updated_at
             FROM batches b JOIN files f ON f.id = b.file_id
             WHERE ($1 IS NULL OR b.state = $1) ORDER BY b.id",
        )
        .bind(state.map(BatchState::as_str))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: i64 = r.get(0);
            let counts = sqlx::query("SELECT state, COUNT(*) FROM payments WHERE batch_id = $1 GROUP BY state ORDER BY state")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
            out.push(BatchSummary {
                id,
                channel: r.get(1),
                bank: r.get(2),
                file_name: r.get(3),
                state: r.get(4),
                msg_id: r.get(5),
                payment_count: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
                by_state: counts.iter().map(|c| (c.get(0), c.get(1))).collect(),
            });
        }
        Ok(out)
    }

    pub async fn reports(&self, unmatched_only: bool) -> Result<Vec<StoredReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, kind, msg_id, original_msg_id, batch_id, received_at, summary FROM reports
             WHERE ($1 = 0 OR batch_id IS NULL) ORDER BY id",
        )
        .bind(i64::from(unmatched_only))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredReport {
                id: r.get(0),
                source: r.get(1),
                kind: r.get(2),
                msg_id: r.get(3),
                original_msg_id: r.get(4),
                batch_id: r.get(5),
                received_at: r.get(6),
                summary: r.get(7),
            })
            .collect())
    }

    pub async fn payment_history(&self, batch: i64) -> Result<Vec<PaymentEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT payment_id, from_state, to_state, event, at, source, reason_code, reason_text FROM state_history
             WHERE batch_id = $1 AND payment_id IS NOT NULL ORDER BY id",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PaymentEvent {
                payment_id: r.get(0),
                from: r.get(1),
                to: r.get(2),
                event: r.get(3),
                at: r.get(4),
                source: r.get(5),
                reason_code: r.get(6),
                reason_text: r.get(7),
            })
            .collect())
    }

    /// The name of the file a batch came from.
    pub async fn file_name_of_batch(&self, batch: i64) -> Result<String, StoreError> {
        Ok(sqlx::query(
            "SELECT f.name FROM files f JOIN batches b ON b.file_id = f.id WHERE b.id = $1",
        )
        .bind(batch)
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }
}

const BATCH_COLUMNS: &str = "id, file_id, channel, bank, state, msg_id, payment_count, submitter, remote_name, sealed_path, sealed_sha256, created_at, updated_at, approvals_required, approval_reasons, debtor_account, dropped_by";

fn batch_row(row: &sqlx::any::AnyRow) -> Result<BatchRow, StoreError> {
    let state: String = row.get(4);
    Ok(BatchRow {
        id: row.get(0),
        file_id: row.get(1),
        channel: row.get(2),
        bank: row.get(3),
        state: BatchState::parse(&state).ok_or(StoreError::BadState(state))?,
        msg_id: row.get(5),
        payment_count: row.get(6),
        submitter: row.get(7),
        remote_name: row.get(8),
        sealed_path: row.get(9),
        sealed_sha256: row.get(10),
        created_at: row.get(11),
        updated_at: row.get(12),
        approvals_required: row.get(13),
        approval_reasons: row
            .get::<Option<String>, _>(14)
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        debtor_account: row.get(15),
        dropped_by: row.get(16),
    })
}

/// A payment as its `payments` row is written: the payee sealed, the plaintext columns empty.
struct PaymentRow {
    row_no: i64,
    end_to_end_id: String,
    account_type: &'static str,
    agent_type: Option<&'static str>,
    agent: Option<String>,
    bank_name: Option<String>,
    amount_minor: i64,
    currency: String,
    execution_date: String,
    enc_key: i64,
    sealed: Vec<u8>,
    account_hmac: Vec<u8>,
}

/// The columns `PaymentRow` fills, in its order (the payee's plaintext columns included, empty).
const PAYMENT_INSERT_COLUMNS: &str = "batch_id, row_no, end_to_end_id, creditor_name, account_type, account, agent_type, agent, bank_name, amount_minor, currency, remittance, execution_date, creditor_address, enc_key, sealed, account_hmac";

/// Payments without an end-to-end id get the one rendering gives them.
fn payment_row(keys: &crate::vault::DataKeys, batch: i64, msg_id: &str, p: &Payment) -> PaymentRow {
    let (account_type, acct) = match &p.creditor_account {
        Account::Iban(i) => ("iban", i.as_str().to_string()),
        Account::Domestic(d) => ("domestic", d.as_str().to_string()),
    };
    let (agent_type, agent) = match &p.creditor_agent {
        Some(BankId::Bic(b)) => (Some("bic"), Some(b.as_str().to_string())),
        Some(BankId::Cnaps(c)) => (Some("cnaps"), Some(c.as_str().to_string())),
        None => (None, None),
    };
    let address = p
        .creditor_address
        .as_ref()
        .and_then(|a| serde_json::to_string(a).ok());
    let (sealed, account_hmac) = seal_payee(
        keys,
        batch,
        p.row as i64,
        &Payee {
            name: p.creditor_name.clone(),
            account: acct,
            remittance: p.remittance.clone(),
            address,
        },
    );
    PaymentRow {
        row_no: p.row as i64,
        end_to_end_id: p
            .end_to_end_id
            .clone()
            .unwrap_or_else(|| crate::render::generated_end_to_end_id(msg_id, p.row)),
        account_type,
        agent_type,
        agent,
        bank_name: p.creditor_bank_name.clone(),
        amount_minor: p.amount.minor_units(),
        currency: p.amount.currency().as_str().to_string(),
        execution_date: p.execution_date.to_string(),
        enc_key: keys.current(),
        sealed,
        account_hmac,
    }
}

/// Inserts payments in statements of a few hundred rows each (one statement per row is an
/// order of magnitude slower for a million-row batch).
async fn insert_payments(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    keys: &crate::vault::DataKeys,
    batch: i64,
    msg_id: &str,
    payments: &[Payment],
) -> Result<(), StoreError> {
    const ROWS: usize = 500;
    const COLUMNS: usize = 17;
    // PostgreSQL reads `$N` parameters only; SQLite reads them too, but looks each one up by
    // name (`sqlite3_bind_parameter_name` over all 8,500 of a statement: 90 % of the time of
    // a million-row import), so it gets plain `?`, bound in order.
    let positional = Backend::of(tx) == Backend::Sqlite;
    let statement = |rows: usize| {
        let mut sql = format!("INSERT INTO payments ({PAYMENT_INSERT_COLUMNS}) VALUES ");
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..COLUMNS {
                if c > 0 {
                    sql.push_str(", ");
                }
                if positional {
                    sql.push('?');
                } else {
                    sql.push_str(&format!("${}", r * COLUMNS + c + 1));
                }
            }
            sql.push(')');
        }
        sql
    };
    let full = statement(ROWS.min(payments.len()));
    for chunk in payments.chunks(ROWS) {
        let sql = if chunk.len() == ROWS.min(payments.len()) {
            full.clone()
        } else {
            statement(chunk.len())
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            let r = payment_row(keys, batch, msg_id, p);
            q = q
                .bind(batch)
                .bind(r.row_no)
                .bind(r.end_to_end_id)
                .bind("")
                .bind(r.account_type)
                .bind("")
                .bind(r.agent_type)
                .bind(r.agent)
                .bind(r.bank_name)
                .bind(r.amount_minor)
                .bind(r.currency)
                .bind(None::<String>)
                .bind(r.execution_date)
                .bind(None::<String>)
                .bind(r.enc_key)
                .bind(r.sealed)
                .bind(r.account_hmac);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// PostgreSQL: payments added to a `received` batch with `COPY … FROM STDIN` (text format),
/// in one transaction that, like every write transaction, first takes the chain head's lock.
async fn copy_payments(
    pg: &sqlx::PgPool,
    keys: &crate::vault::DataKeys,
    batch: i64,
    msg_id: &str,
    payments: &[Payment],
) -> Result<(), StoreError> {
    use std::fmt::Write;
    fn text(out: &mut String, v: &str) {
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }
    fn opt(out: &mut String, v: Option<&str>) {
        match v {
            Some(v) => text(out, v),
            None => out.push_str("\\N"),
        }
    }
    let mut tx = pg.begin().await?;
    sqlx::query("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    expect_state(&mut *tx, batch, BatchState::Received).await?;
    let mut data = String::with_capacity(payments.len() * 400);
    for p in payments {
        let r = payment_row(keys, batch, msg_id, p);
        let _ = write!(data, "{batch}\t{}\t", r.row_no);
        text(&mut data, &r.end_to_end_id);
        let _ = write!(data, "\t\t{}\t\t", r.account_type);
        opt(&mut data, r.agent_type);
        data.push('\t');
        opt(&mut data, r.agent.as_deref());
        data.push('\t');
        opt(&mut data, r.bank_name.as_deref());
        let _ = write!(data, "\t{}\t{}\t\\N\t", r.amount_minor, r.currency);
        text(&mut data, &r.execution_date);
        let _ = writeln!(
            data,
            "\t\\N\t{}\t\\\\x{}\t\\\\x{}",
            r.enc_key,
            hex::encode(&r.sealed),
            hex::encode(&r.account_hmac)
        );
    }
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY payments ({PAYMENT_INSERT_COLUMNS}) FROM STDIN"
        ))
        .await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await?;
    tx.commit().await?;
    Ok(())
}

/// A payment's payee data: what the store keeps encrypted, in one sealed record per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Payee {
    pub name: String,
    pub account: String,
    pub remittance: Option<String>,
    pub address: Option<String>,
}

impl Payee {
    /// Each field as a big-endian u32 length (`u32::MAX`: none) and its UTF-8 bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.name.len()
                + self.account.len()
                + self.remittance.as_ref().map_or(0, String::len)
                + self.address.as_ref().map_or(0, String::len),
        );
        for f in [
            Some(self.name.as_str()),
            Some(self.account.as_str()),
            self.remittance.as_deref(),
            self.address.as_deref(),
        ] {
            match f {
                Some(v) => {
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v.as_bytes());
                }
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
        }
        out
    }

    fn decode(mut b: &[u8]) -> Option<Payee> {
        let mut field = || -> Option<Option<String>> {
            let (len, rest) = b.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len);
            if len == u32::MAX {
                b = rest;
                return Some(None);
            }
            let (v, rest) = rest.split_at_checked(len as usize)?;
            b = rest;
            Some(Some(String::from_utf8(v.to_vec()).ok()?))
        };
        Some(Payee {
            name: field()??,
            account: field()??,
            remittance: field()?,
            address: field()?,
        })
    }
}

/// What a payment's sealed record is bound to: its batch and row, so that a record copied
/// into another row does not decrypt.
pub(super) fn payee_context(batch: i64, row_no: i64) -> String {
    format!("payments:{batch}:{row_no}")
}

/// The columns a payee is read from, in this order (at the end of a SELECT, for `payee_at`).
pub(super) const PAYEE_COLUMNS: &str =
    "enc_key, sealed, creditor_name, account, remittance, creditor_address";

/// Reads the payee of a row whose `PAYEE_COLUMNS` start at column `i`: decrypted under its
/// data key, or as written before encryption (`enc_key` NULL; the store encrypts such rows
/// when it opens with its key).
pub(super) fn payee_at(
    keys: &crate::vault::DataKeys,
    r: &sqlx::any::AnyRow,
    i: usize,
    batch: i64,
    row_no: i64,
) -> Result<Payee, StoreError> {
    match r.get::<Option<i64>, _>(i) {
        None => Ok(Payee {
            name: r.get(i + 2),
            account: r.get(i + 3),
            remittance: r.get(i + 4),
            address: r.get(i + 5),
        }),
        Some(key) => {
            let blob: Vec<u8> = r.get(i + 1);
            let plain = keys.open(key, &payee_context(batch, row_no), &blob)?;
            Payee::decode(&plain)
                .ok_or(crate::vault::VaultError::Damaged("not a payee record"))
                .map_err(StoreError::from)
        }
    }
}

/// The sealed record and the account's lookup hash of a payee, under the current key.
pub(super) fn seal_payee(
    keys: &crate::vault::DataKeys,
    batch: i64,
    row_no: i64,
    p: &Payee,
) -> (Vec<u8>, Vec<u8>) {
    (
        keys.seal(&payee_context(batch, row_no), &p.encode()),
        keys.lookup(&p.account),
    )
}

/// Fails with `Conflict`, inside the caller's transaction, unless the batch is in `expected`
/// (on either connection type: the shared driver's, or PostgreSQL's own for `COPY`).
async fn expect_state<'c, DB: sqlx::Database>(
    conn: impl sqlx::Executor<'c, Database = DB>,
    batch: i64,
    expected: BatchState,
) -> Result<(), StoreError>
where
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let (state,): (String,) = sqlx::query_as("SELECT state FROM batches WHERE id = $1")
        .bind(batch)
        .fetch_one(conn)
        .await?;
    if state != expected.as_str() {
        return Err(StoreError::Conflict { batch, expected });
    }
    Ok(())
}

/// Moves a batch from `from` to `to` with its history row, inside the caller's transaction:
/// guarded by `from`, so a concurrent change makes it fail without effect.
async fn move_batch(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    batch: i64,
    from: BatchState,
    to: BatchState,
    event: &str,
    source: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = ts(at);
    let changed =
        sqlx::query("UPDATE batches SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(to.as_str())
            .bind(&now)
            .bind(batch)
            .bind(from.as_str())
            .execute(&mut **tx)
            .await?
            .rows_affected();
    if changed != 1 {
        return Err(StoreError::Conflict {
            batch,
            expected: from,
        });
    }
    sqlx::query("INSERT INTO state_history (batch_id, from_state, to_state, event, at, source) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(batch)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(event)
        .bind(&now)
        .bind(source)
        .execute(&mut **tx)
        .await?;
    // What an open alert asked for is done: the batch was decided, or its bank answered.
    let resolved = match (from, to.is_final()) {
        (BatchState::AwaitingApproval, _) => Some("approval.waiting"),
        (_, true) => Some("status.overdue"),
        _ => None,
    };
    if let Some(kind) = resolved {
        sqlx::query(
            "UPDATE alerts SET acked_at = $1, acked_by = $2 WHERE kind = $3 AND batch_id = $4 AND acked_at IS NULL",
        )
        .bind(&now)
        .bind(format!("paygate (batch {})", to.as_str()))
        .bind(kind)
        .bind(batch)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn append_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    batch: Option<i64>,
    details: &str,
) -> Result<(), StoreError> {
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let (prev_seq, prev_hash): (i64, String) = match last {
        Some(r) => (r.get(0), r.get(1)),
        None => (0, GENESIS.to_string()),
    };
    let seq = prev_seq + 1;
    let at = ts(at);
    let hash = audit_hash(&prev_hash, seq, &at, actor, action, batch, details);
    sqlx::query(
        "INSERT INTO audit (seq, at, actor, action, batch_id, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(batch)
    .bind(details)
    .bind(prev_hash)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

mod access;
mod alerts;
mod at_rest;
mod daemon;
mod instances;
mod metrics;
mod migrate;
pub mod scratch;
pub use access::{AccessError, IntakeQuery, Pending, RoleRow, UserRow};
pub use alerts::{DueDelivery, NewAlert, StoredAlert};
pub use at_rest::{ArchivedFile, Reencrypted};
pub use daemon::{Approved, Claim, StoredApproval};
pub use instances::InstanceRow;
pub use metrics::MetricsSnapshot;
pub use migrate::Copied;

#[cfg(test)]
mod tests;
