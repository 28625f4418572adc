//! The daemon (`paygate run`): watched folders to the bank and back. Owns the tasks — one
//! watcher per channel, the scheduler that moves approved batches through sealing and upload,
//! one return poller per bank, the control socket — and signals (SIGTERM/SIGINT drain and
//! exit, SIGHUP reloads the config) and systemd's notify protocol.
//!
//! Work is claimed in the store, never only in memory: every step starts from the state the
//! store holds and ends with one guarded transition (`Store::transition` and friends), so a
//! crash at any instant leaves each batch in its last durable state, and the next start
//! continues from there. Blocking work (calamine, sequoia, ssh2) runs in `spawn_blocking`.

pub mod control;
pub mod folders;
pub mod lease;
pub mod metrics;
pub mod pickup;
pub mod spool;
pub mod stages;
pub mod watch;

use crate::config::{Config, ConfigError, Encryption, TransportKind, WatchMode};
use crate::model::BatchState;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use folders::Folders;
use notify::Watcher;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Folder(#[from] folders::FolderError),
    #[error("{0}")]
    Socket(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("{0}")]
    Admin(String),
    #[error("{0}")]
    Mode(#[from] crate::vault::VaultError),
    #[error("{0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("instance {0} lost its lease on the store and stopped; start it again")]
    LeaseLost(String),
}

impl DaemonError {
    /// A problem an admin fixes in the config or the file system (exit 78) rather than a
    /// failure at run time.
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            DaemonError::Config(_)
                | DaemonError::Folder(_)
                | DaemonError::Socket(_)
                | DaemonError::DataDir(..)
                | DaemonError::Admin(_)
                | DaemonError::Mode(_)
                | DaemonError::Archive(_)
                | DaemonError::Store(
                    StoreError::Vault(_) | StoreError::KeyMissing(_) | StoreError::KeyMismatch(_)
                )
        )
    }
}

pub use crate::crash::{CRASH_POINTS, crash_point};

/// What a bank's poller last saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BankStatus {
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub next_poll: Option<String>,
    /// Failed polls since start.
    #[serde(skip)]
    pub failures_total: u64,
    /// The first failure of the current run of failures (polls and uploads).
    #[serde(skip)]
    pub failing_since: Option<DateTime<Utc>>,
}

/// What every task shares.
pub struct Ctx {
    cfg: RwLock<Arc<Config>>,
    pub config_path: PathBuf,
    pub store: Store,
    /// Bounds the files and batches worked on at once.
    pub work: Arc<Semaphore>,
    /// Keys of work in flight in this process (`file:PATH`, `batch:ID`).
    busy: Mutex<HashSet<String>>,
    /// Wakes the scheduler (a batch became approved, a file was picked up).
    pub kick: Notify,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    banks: Mutex<BTreeMap<String, BankStatus>>,
    /// The lock on the data folder (`durable::lock_dir`), held for the daemon's life.
    _lock: std::fs::File,
    /// Refused requests per user (the last hour's), for the repeated-refusals alert.
    pub refusals: Mutex<HashMap<String, Vec<Instant>>>,
    /// Failed batch steps: when to try again.
    retry: Mutex<HashMap<i64, (Instant, u32)>>,
    /// Cancels the watchers and pollers of the current config (replaced on reload).
    generation: Mutex<CancellationToken>,
    /// This instance in the store (`instances`): new at every start.
    pub instance: String,
    /// Its lease on the store (renewed by the heartbeat): once it may have run out, the
    /// daemon stops claiming and sending, and exits, so that its supervisor starts it again as
    /// a new instance.
    pub lease: lease::Lease,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Ctx {
    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks `key` busy; false when it already is.
    fn try_start(&self, key: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string())
    }

    fn done(&self, key: &str) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Options of `paygate run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this long (tests, benchmarks); `None`: until a signal.
    pub stop_after: Option<Duration>,
}

/// Everything `run` needs before it starts tasks: checked config, folders, store, socket.
pub struct Prepared {
    pub ctx: Arc<Ctx>,
    listener: tokio::net::UnixListener,
    metrics: Option<tokio::net::TcpListener>,
}

impl Prepared {
    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Loads and checks everything; creates missing folders. Any problem here is a setup problem
/// (exit 78): nothing has been picked up yet.
pub async fn prepare(config_path: &Path) -> Result<Prepared, DaemonError> {
    let cfg = Arc::new(Config::load(config_path)?);
    // One daemon per data folder, and no key rotation beside it: taken before anything is
    // cleaned up or opened.
    let data = cfg.data_dir();
    pickup::create_private_dir(&data).map_err(|e| DaemonError::DataDir(data.clone(), e))?;
    let lock =
        crate::durable::lock_dir(&data).map_err(|e| DaemonError::DataDir(data.clone(), e))?;
    check_folders(&cfg)?;
    for (name, ch) in &cfg.channels {
        let removed = Folders::of(&cfg, ch).remove_stale();
        if removed > 0 {
            tracing::info!(channel = %name, "removed {removed} unfinished temporary file(s) a crash left in results/, rejected/ or archive/");
        }
    }
    // Before the store is opened: SQLite gives the -wal and -shm files it creates the
    // database file's mode, so a widened file must stop the start before it is opened.
    check_modes(&cfg)?;
    let store = Store::open_configured(&cfg).await?;
    crate::archive::ArchiveKey::of(&cfg)?;
    if store.rows_off_current_key().await? > 0 {
        let at = Utc::now();
        let done = store.reencrypt(1000, |_| {}).await?;
        store
            .audit_at_rest(
                "paygate:daemon",
                "data.reencrypted",
                &format!(
                    "{} payment rows brought under data key {} at start, {} payees hashed",
                    done.rows,
                    store.data_key_current()?,
                    done.payees
                ),
                at,
            )
            .await?;
        tracing::info!(
            stage = "at_rest",
            "{} payment rows brought under the current data key",
            done.rows
        );
    }
    let removed = self::spool::clean(&cfg, &store).await?;
    if removed > 0 {
        tracing::info!(
            stage = "at_rest",
            "removed {removed} plaintext file(s) a crash left in the private spool"
        );
    }
    bootstrap_admin(&cfg, &store).await?;
    let listener = control::bind(&cfg.control_socket(), cfg.paygate.control_group.as_deref())
        .map_err(DaemonError::Socket)?;
    let metrics = match &cfg.metrics {
        Some(m) => Some(
            tokio::net::TcpListener::bind(&m.listen)
                .await
                .map_err(|e| DaemonError::Socket(format!("metrics.listen {}: {e}", m.listen)))?,
        ),
        None => None,
    };
    for (name, b) in &cfg.banks {
        if b.encryption == Encryption::None {
            tracing::warn!(bank = %name, error_code = "bank.unencrypted", "bank `{name}` has encryption = \"none\": its files are sent and read WITHOUT OpenPGP; the SFTP channel is their only protection");
        }
    }
    let instance = format!("i{:016x}", rand::random::<u64>());
    let lease_ms = cfg.lease_ms();
    let registered = Instant::now();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    store
        .register_instance(
            &instance,
            &host,
            env!("CARGO_PKG_VERSION"),
            lease_ms,
            Utc::now(),
        )
        .await?;
    folders::set_claim_owner(&instance);
    tracing::info!(instance = %instance, host = %host, "instance {instance} on {host}");
    let ctx = Arc::new(Ctx {
        instance,
        lease: lease::Lease::new(lease_ms, store.is_shared(), registered),
        work: Arc::new(Semaphore::new(cfg.paygate.workers.max(1))),
        cfg: RwLock::new(cfg),
        config_path: config_path.to_path_buf(),
        store,
        busy: Mutex::new(HashSet::new()),
        kick: Notify::new(),
        started: Instant::now(),
        started_at: Utc::now(),
        banks: Mutex::new(BTreeMap::new()),
        retry: Mutex::new(HashMap::new()),
        refusals: Mutex::new(HashMap::new()),
        _lock: lock,
        generation: Mutex::new(CancellationToken::new()),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    Ok(Prepared {
        ctx,
        listener,
        metrics,
    })
}

/// The config's bootstrap admin holds `admin` on every channel; without one nobody could
/// grant a role, so the daemon does not start.
async fn bootstrap_admin(cfg: &Config, store: &Store) -> Result<(), DaemonError> {
    let Some(admin) = cfg.paygate.admin.as_deref() else {
        return Err(DaemonError::Admin(
            "paygate.admin: name the OS user who administers paygate's users and roles (the bootstrap admin); every other role is granted with `paygate users grant`".into(),
        ));
    };
    let uid = folders::user_id(admin);
    if uid.is_none() {
        return Err(DaemonError::Admin(format!(
            "paygate.admin: there is no OS account `{admin}` on this machine"
        )));
    }
    if store.ensure_bootstrap_admin(admin, uid, Utc::now()).await? {
        tracing::info!(
            stage = "access",
            "{admin} holds admin on every channel (paygate.admin)"
        );
    }
    Ok(())
}

/// The narrowest modes that work, checked at start as ssh checks its keys: the database and
/// its journal files, the key files and the audit anchor 0600; the spool, outbox, archive and
/// key folders 0700; the data folder writable by paygate alone (it may be 0755, so that others
/// reach the control socket); the socket itself is made 0660 by `control::bind`.
fn check_modes(cfg: &Config) -> Result<(), crate::vault::VaultError> {
    use crate::vault::check_private;
    let data = cfg.data_dir();
    check_private(
        &data,
        0o755,
        "it holds the store, the spool and the archive: nobody else may write in it",
    )?;
    let db = cfg.database_url();
    if let Some(file) = db.strip_prefix("sqlite://").or(db.strip_prefix("sqlite:")) {
        let file = file.split('?').next().unwrap_or("");
        for suffix in ["", "-wal", "-shm"] {
            check_private(
                Path::new(&format!("{file}{suffix}")),
                0o600,
                "the store holds the payments and the audit trail",
            )?;
        }
    }
    for (dir, why) in [
        (
            data.join("spool"),
            "it holds files while a step needs them in plaintext",
        ),
        (
            data.join("outbox"),
            "it holds rendered bank files until they are sealed",
        ),
        (
            data.join("archive"),
            "it holds every file kept for the audit",
        ),
        (data.join("keys"), "it holds the data key"),
    ] {
        check_private(&dir, 0o700, why)?;
    }
    let key = cfg.data_key_path();
    check_private(
        &key,
        0o600,
        "it holds the keys to the payment data in the store",
    )?;
    check_private(
        &data.join("audit.anchor"),
        0o600,
        "it anchors the audit trail",
    )?;
    Ok(())
}

fn check_folders(cfg: &Config) -> Result<(), DaemonError> {
    for (name, ch) in &cfg.channels {
        let f = Folders::of(cfg, ch);
        for created in f.ensure()? {
            tracing::info!(channel = %name, "created missing folder {}", created.display());
        }
    }
    Ok(())
}

/// Runs the daemon until SIGTERM/SIGINT (or `stop_after`): the whole pipeline.
pub async fn run(config_path: &Path, opts: RunOptions) -> Result<(), DaemonError> {
    // Handlers first: a SIGHUP or SIGTERM that comes while starting must not kill the process
    // with the default action.
    let signals = Signals::install()?;
    let prepared = prepare(config_path).await?;
    let ctx = prepared.ctx.clone();
    start(prepared).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        "paygate is running: {} channel(s), {} bank(s)",
        ctx.cfg().channels.len(),
        ctx.cfg().banks.len()
    );
    wait_for_signals(&ctx, signals, opts.stop_after).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    stop(&ctx).await;
    if ctx.lease.is_lost() {
        return Err(DaemonError::LeaseLost(ctx.instance.clone()));
    }
    Ok(())
}

/// Starts every task (after recovering what an earlier run left in `processing/`).
pub async fn start(prepared: Prepared) {
    let Prepared {
        ctx,
        listener,
        metrics,
    } = prepared;
    if let Some(m) = metrics {
        if let Ok(a) = m.local_addr() {
            tracing::info!(stage = "metrics", "serving http://{a}/metrics");
        }
        ctx.tasks.spawn(self::metrics::serve(
            ctx.clone(),
            m,
            ctx.shutdown.child_token(),
        ));
    }
    ctx.tasks.spawn(control::serve(
        ctx.clone(),
        listener,
        ctx.shutdown.child_token(),
    ));
    let cfg = ctx.cfg();
    // Files claimed by an earlier run but not finished (another live instance's claims in a
    // shared processing/ are its own).
    for (name, ch) in &cfg.channels {
        for path in pickup::leftovers(&Folders::of(&cfg, ch)) {
            if held_elsewhere(&ctx, &path).await {
                continue;
            }
            tracing::info!(channel = %name, stage = "recovery", "continuing {}", path.display());
            spawn_claimed(&ctx, name.clone(), path);
        }
    }
    ctx.tasks
        .spawn(heartbeat(ctx.clone(), ctx.shutdown.child_token()));
    start_generation(&ctx);
    ctx.tasks
        .spawn(scheduler(ctx.clone(), ctx.shutdown.child_token()));
    ctx.tasks
        .spawn(watch::run(ctx.clone(), ctx.shutdown.child_token()));
}

/// Whether a claimed file in `processing/` belongs to another instance that is alive: it is
/// that instance's to finish (a claim of an instance that died is anyone's).
async fn held_elsewhere(ctx: &Ctx, path: &Path) -> bool {
    match folders::claim_owner(path) {
        Some(owner) if owner != ctx.instance => {
            ctx.store.instance_alive(owner).await.unwrap_or(true)
        }
        _ => false,
    }
}

/// Renews this instance's lease and every claim it holds, every third of the lease. A renewal
/// that finds the lease gone (the store was out of reach for longer than the lease, and other
/// instances may have taken over) stops the daemon: it exits with an error and its supervisor
/// starts it again as a new instance. A renewal that fails or does not answer within a period
/// is tried again; once the lease may have run out without one, the daemon stops the same way
/// (it stopped claiming and sending a margin before, see `Lease::holds`).
async fn heartbeat(ctx: Arc<Ctx>, token: CancellationToken) {
    let period = Duration::from_millis((ctx.lease.ms / 3).max(500) as u64);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let sent = Instant::now();
        let renewal =
            tokio::time::timeout(period, ctx.store.heartbeat(&ctx.instance, ctx.lease.ms));
        let failed = match renewal.await {
            Ok(Ok(true)) => {
                ctx.lease.renewed(sent);
                continue;
            }
            Ok(Ok(false)) => {
                lease_lost(&ctx, "the store says it ran out");
                return;
            }
            Ok(Err(e)) if !ctx.store.is_shared() => {
                // The embedded store's lock was held by a long write: nobody else can take
                // this instance's work, so nothing is fenced.
                tracing::debug!(instance = %ctx.instance, "heartbeat: {e}");
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the store did not answer within {period:?}"),
        };
        tracing::error!(instance = %ctx.instance, error_code = "instance.heartbeat", "heartbeat: {failed}; the lease has {:?} left", ctx.lease.left());
        if ctx.lease.expired() {
            lease_lost(&ctx, &format!("not renewed within the lease ({failed})"));
            return;
        }
    }
}

fn lease_lost(ctx: &Ctx, why: &str) {
    ctx.lease.lose();
    tracing::error!(instance = %ctx.instance, error_code = "instance.lease_lost", "this instance's lease on the store is gone ({why}): other instances may take over its work; it stops claiming and sending, and exits, to start again as a new instance");
    ctx.shutdown.cancel();
}

/// Whether this instance may take work: false once its lease may run out.
fn may_claim(ctx: &Ctx) -> bool {
    ctx.lease.holds()
}

/// Starts the watchers and pollers of the current config.
fn start_generation(ctx: &Arc<Ctx>) {
    let token = ctx.shutdown.child_token();
    *ctx.generation.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
    let cfg = ctx.cfg();
    for name in cfg.channels.keys() {
        ctx.tasks
            .spawn(watch_channel(ctx.clone(), name.clone(), token.clone()));
    }
    for (name, b) in &cfg.banks {
        if b.transport.is_some() {
            ctx.tasks
                .spawn(poll_bank(ctx.clone(), name.clone(), token.clone()));
        }
    }
}

/// SIGTERM/SIGINT: stop taking files, let steps in flight finish within the drain deadline.
pub async fn stop(ctx: &Arc<Ctx>) {
    tracing::info!("stopping: no new files are taken; waiting for steps in flight");
    ctx.shutdown.cancel();
    ctx.tasks.close();
    let mut drain = Duration::from_secs(ctx.cfg().paygate.drain_secs);
    if ctx.lease.is_lost() {
        // Steps in flight are fenced, and their records cannot reach the store.
        drain = drain.min(LOST_DRAIN);
    }
    if tokio::time::timeout(drain, ctx.tasks.wait()).await.is_err() {
        tracing::warn!(
            "steps still running after {drain:?}: stopping anyway; they continue from their last recorded state at the next start"
        );
    }
    let _ = std::fs::remove_file(ctx.cfg().control_socket());
    if !ctx.lease.is_lost()
        && let Err(e) = ctx.store.instance_stopped(&ctx.instance, Utc::now()).await
    {
        tracing::warn!(
            "could not record the stop of instance {}: {e}",
            ctx.instance
        );
    }
    if tokio::time::timeout(LOST_DRAIN, ctx.store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store's connections did not close within {LOST_DRAIN:?}");
    }
}

/// How long a stop waits for steps in flight, and for the store's connections to close, once
/// the store may be out of reach.
const LOST_DRAIN: Duration = Duration::from_secs(2);

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        let err = |e: std::io::Error| DaemonError::Socket(format!("cannot handle signals: {e}"));
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
            hup: signal(SignalKind::hangup()).map_err(err)?,
        })
    }
}

async fn wait_for_signals(ctx: &Arc<Ctx>, signals: Signals, stop_after: Option<Duration>) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let deadline = async {
        match stop_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); break }
            _ = int.recv() => { tracing::info!("SIGINT"); break }
            _ = &mut deadline => break,
            _ = ctx.shutdown.cancelled() => break,
            _ = hup.recv() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                match reload(ctx, "SIGHUP").await {
                    Ok(m) => tracing::info!("{m}"),
                    Err(m) => tracing::error!(error_code = "config.reload_refused", "{m}"),
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
    }
}

/// Loads the config again. An invalid one is refused with every problem, and the old one
/// stays; a valid one replaces it: watchers and pollers restart, steps in flight finish with
/// the config they started with.
pub async fn reload(ctx: &Arc<Ctx>, by: &str) -> Result<String, String> {
    let new = match Config::load(&ctx.config_path) {
        Ok(c) => c,
        Err(e) => {
            return Err(format!("config NOT reloaded (the running one stays): {e}"));
        }
    };
    if new.database_url() != ctx.cfg().database_url() {
        return Err(
            "config NOT reloaded: paygate.data_dir / the store ([store] url) cannot change while running; restart the service".into(),
        );
    }
    check_folders(&new).map_err(|e| format!("config NOT reloaded: {e}"))?;
    bootstrap_admin(&new, &ctx.store)
        .await
        .map_err(|e| format!("config NOT reloaded: {e}"))?;
    let old = ctx.cfg();
    let added: Vec<&String> = new
        .channels
        .keys()
        .filter(|k| !old.channels.contains_key(*k))
        .collect();
    let removed: Vec<&String> = old
        .channels
        .keys()
        .filter(|k| !new.channels.contains_key(*k))
        .collect();
    let summary = format!(
        "config reloaded by {by}: {} channel(s){}{}",
        new.channels.len(),
        if added.is_empty() {
            String::new()
        } else {
            format!(
                ", added {}",
                added
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        if removed.is_empty() {
            String::new()
        } else {
            format!(
                ", removed {}",
                removed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    );
    *ctx.cfg.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    ctx.generation
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .cancel();
    start_generation(ctx);
    let _ = ctx
        .store
        .audit_event(by, "config.reloaded", None, &summary)
        .await;
    ctx.kick.notify_one();
    Ok(summary)
}

fn spawn_claimed(ctx: &Arc<Ctx>, channel: String, path: PathBuf) {
    let key = format!("file:{}", path.display());
    if !ctx.try_start(&key) {
        return;
    }
    let ctx2 = ctx.clone();
    ctx.tasks.spawn(async move {
        let _permit = ctx2.work.clone().acquire_owned().await;
        if let Err(e) = pickup::process_claimed(ctx2.clone(), channel.clone(), path.clone()).await
        {
            tracing::error!(channel, file = %path.display(), stage = "pickup", error_code = "pickup.failed", "{e}; the file stays in processing/ and is tried again at the next start");
        }
        ctx2.done(&key);
    });
}

fn spawn_pickup(ctx: &Arc<Ctx>, channel: &str, name: String) {
    let key = format!("in:{channel}/{name}");
    if ctx.shutdown.is_cancelled() || !ctx.try_start(&key) {
        return;
    }
    let (ctx2, channel) = (ctx.clone(), channel.to_string());
    ctx.tasks.spawn(async move {
        let _permit = ctx2.work.clone().acquire_owned().await;
        // A file is claimed (renamed into processing/) only while the lease holds.
        if ctx2.shutdown.is_cancelled() || !may_claim(&ctx2) {
            ctx2.done(&key);
            return;
        }
        let cfg = ctx2.cfg();
        let Some(ch) = cfg.channel(&channel) else {
            ctx2.done(&key);
            return;
        };
        // The claimed path is marked busy before the rename, so that the sweep of
        // `processing/` never takes a file that is being picked up.
        let to = folders::claim_path(&Folders::of(&cfg, ch), &name);
        let file_key = format!("file:{}", to.display());
        ctx2.try_start(&file_key);
        match pickup::pick_up(ctx2.clone(), channel.clone(), name.clone(), to).await {
            Ok(Some(claimed)) => {
                if let Err(e) =
                    pickup::process_claimed(ctx2.clone(), channel.clone(), claimed.clone()).await
                {
                    tracing::error!(channel, file = %name, stage = "pickup", error_code = "pickup.failed", "{e}; the file stays in {} and is tried again", claimed.display());
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(channel, file = %name, stage = "pickup", error_code = "pickup.failed", "{e}")
            }
        }
        ctx2.done(&file_key);
        ctx2.done(&key);
    });
}

/// Watches a channel's `inbound/`: inotify events for files closed after writing or moved in,
/// plus a scan at start and every `scan_secs` that takes files whose size and modification
/// time stayed the same for `stable_secs` (the only way on network shares, `watch = "poll"`).
async fn watch_channel(ctx: Arc<Ctx>, channel: String, token: CancellationToken) {
    let cfg = ctx.cfg();
    let Some(ch) = cfg.channel(&channel) else {
        return;
    };
    let f = Folders::of(&cfg, ch);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let _watcher = match ch.watch {
        WatchMode::Inotify => {
            let tx = tx.clone();
            let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
                use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
                let Ok(ev) = ev else { return };
                let complete = matches!(
                    ev.kind,
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                );
                if complete {
                    for p in ev.paths {
                        if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                            let _ = tx.send(n.to_string());
                        }
                    }
                }
            })
            .and_then(|mut w| {
                w.watch(&f.inbound, notify::RecursiveMode::NonRecursive)
                    .map(|_| w)
            });
            match w {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(
                        channel,
                        error_code = "watch.inotify",
                        "cannot watch {} with inotify ({e}); scanning it every {} s instead",
                        f.inbound.display(),
                        ch.scan_secs
                    );
                    None
                }
            }
        }
        WatchMode::Poll => None,
    };
    let stable = Duration::from_secs(ch.stable_secs);
    let mut seen: HashMap<String, (u64, SystemTime)> = HashMap::new();
    let mut logged: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(ch.scan_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            Some(name) = rx.recv() => {
                if let Ok(m) = std::fs::symlink_metadata(f.inbound.join(&name)) {
                    match folders::classify(&name, &m) {
                        folders::Entry::Candidate | folders::Entry::Refuse(_) => spawn_pickup(&ctx, &channel, name),
                        _ => {}
                    }
                }
            }
            _ = tick.tick() => {
                let Ok(rd) = std::fs::read_dir(&f.inbound) else {
                    tracing::error!(channel, error_code = "watch.unreadable", "cannot read {}", f.inbound.display());
                    continue;
                };
                let mut present = HashSet::new();
                for e in rd.flatten() {
                    let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
                    let Ok(m) = e.metadata() else { continue };
                    present.insert(name.clone());
                    match folders::classify(&name, &m) {
                        folders::Entry::Ignore => {}
                        folders::Entry::Folder => {
                            if logged.insert(name.clone()) {
                                tracing::warn!(channel, file = %name, "{} is a folder: paygate does not look into folders in inbound/", f.inbound.join(&name).display());
                            }
                        }
                        folders::Entry::Refuse(_) => spawn_pickup(&ctx, &channel, name),
                        folders::Entry::Candidate => {
                            let now = (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                            let old_enough = now.1.elapsed().map(|d| d >= stable).unwrap_or(false);
                            // At start, files dropped while paygate was down are taken at
                            // once when they are old enough; later, a file must also look the
                            // same in two scans.
                            let unchanged = seen.get(&name) == Some(&now);
                            if old_enough && (unchanged || first) {
                                seen.remove(&name);
                                spawn_pickup(&ctx, &channel, name);
                            } else {
                                seen.insert(name, now);
                            }
                        }
                    }
                }
                seen.retain(|n, _| present.contains(n));
                logged.retain(|n| present.contains(n));
                first = false;
                // Files whose processing failed (the store was busy, a disk was full) are
                // tried again, at most every minute.
                if last_sweep.elapsed() >= Duration::from_secs(60) {
                    last_sweep = Instant::now();
                    for path in pickup::leftovers(&f) {
                        if !may_claim(&ctx) || held_elsewhere(&ctx, &path).await {
                            continue;
                        }
                        spawn_claimed(&ctx, channel.clone(), path);
                    }
                }
            }
        }
    }
}

/// Moves batches on: approved → sealed → uploading → sent; expires batches nobody approved.
/// Pings systemd's watchdog from here, so a stalled pipeline is restarted.
async fn scheduler(ctx: Arc<Ctx>, token: CancellationToken) {
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let period = if watchdog {
        Duration::from_micros(watchdog_usec / 3).min(Duration::from_secs(1))
    } else {
        Duration::from_secs(1)
    };
    loop {
        if watchdog {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
        match ctx
            .store
            .batches_in(&[
                BatchState::Approved,
                BatchState::Sealed,
                BatchState::Uploading,
                BatchState::AwaitingApproval,
            ])
            .await
        {
            Ok(rows) => {
                for row in rows {
                    if row.state == BatchState::AwaitingApproval {
                        if row.approvals_required.is_none() {
                            // Its decision failed or never ran (a store from before approval
                            // policies): decided here, from the first pass after start. A pickup
                            // deciding it at the same moment makes this one do nothing.
                            let cfg = ctx.cfg();
                            if let Some(ch) = cfg.channel(&row.channel)
                                && let Err(e) = pickup::decide_approval(&ctx, &cfg, ch, &row).await
                            {
                                tracing::error!(
                                    batch = row.id,
                                    stage = "approval",
                                    "the policy could not decide: {e}"
                                );
                            }
                            continue;
                        }
                        if let Err(e) = stages::expire(&ctx, &row).await {
                            tracing::error!(batch = row.id, "expiry: {e}");
                        }
                        continue;
                    }
                    spawn_step(&ctx, row);
                }
            }
            Err(e) => tracing::error!(error_code = "store.query", "scheduler: {e}"),
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ctx.kick.notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

fn spawn_step(ctx: &Arc<Ctx>, row: crate::store::BatchRow) {
    if let Some((at, _)) = ctx
        .retry
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&row.id)
        && Instant::now() < *at
    {
        return;
    }
    let key = format!("batch:{}", row.id);
    if ctx.shutdown.is_cancelled() || !ctx.try_start(&key) {
        return;
    }
    let ctx2 = ctx.clone();
    ctx.tasks.spawn(async move {
        let _permit = ctx2.work.clone().acquire_owned().await;
        // The state may have moved on while this task waited for a permit.
        let row = match ctx2.store.batch(row.id).await {
            Ok(r) => r,
            Err(_) => {
                ctx2.done(&key);
                return;
            }
        };
        // The step is claimed in the store (another instance may be on it) for a lease the
        // heartbeat renews while it runs.
        let claimed = may_claim(&ctx2)
            && matches!(
                ctx2.store
                    .claim_batch(row.id, row.state, &ctx2.instance, ctx2.lease.ms)
                    .await,
                Ok(true)
            );
        if !claimed {
            ctx2.done(&key);
            return;
        }
        let result = match row.state {
            BatchState::Approved => stages::seal(&ctx2, &row).await,
            BatchState::Sealed | BatchState::Uploading => stages::upload(&ctx2, &row).await,
            _ => Ok(()),
        };
        let failed = {
            let mut retry = ctx2.retry.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => {
                    retry.remove(&row.id);
                    None
                }
                Err(e) => {
                    let failures = retry.get(&row.id).map_or(0, |r| r.1) + 1;
                    let wait = stages::backoff(failures);
                    retry.insert(row.id, (Instant::now() + wait, failures));
                    tracing::error!(batch = row.id, channel = %row.channel, stage = %row.state, error_code = "step.failed", "batch {} ({}): {e}; trying again in {wait:?}", row.id, row.state);
                    Some(e)
                }
            }
        };
        let ok = failed.is_none();
        if let Some(e) = failed {
            step_failed(&ctx2, &row, &e).await;
        }
        if let Err(e) = ctx2.store.release_batch(row.id, &ctx2.instance).await {
            tracing::warn!(batch = row.id, "the claim stays until its lease runs out: {e}");
        }
        ctx2.done(&key);
        // The next step at once: the scheduler finds the batch free (claim released, key
        // done) instead of busy until its next round.
        if ok {
            ctx2.kick.notify_one();
        }
    });
}

/// A request refused to `user` (permission, segregation of duties, limits): after
/// `alerts.refusals_per_hour` within an hour, an alert.
pub async fn note_refusal(ctx: &Arc<Ctx>, user: &str, what: &str) {
    let n = {
        let mut r = ctx.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let v = r.entry(user.to_string()).or_default();
        v.retain(|t| t.elapsed() < Duration::from_secs(3600));
        v.push(Instant::now());
        v.len() as u64
    };
    let cfg = ctx.cfg();
    if n >= cfg.alerts.refusals_per_hour.max(1) {
        crate::alerts::raise(
            &cfg,
            &ctx.store,
            crate::alerts::Alert::new(
                crate::alerts::kind::ACCESS_REFUSALS,
                format!("user {user}"),
                format!("{user} was refused {n} times within an hour; the last: {what}"),
                format!("check with {user} what they are trying to do; paygate audit --user {user} shows the refusals that were audited"),
            )
            .critical(),
        )
        .await;
    }
}

/// A failed upload counts toward the bank being unreachable; a refused host key or bank key
/// is an alert of its own.
async fn step_failed(ctx: &Arc<Ctx>, row: &crate::store::BatchRow, e: &stages::StepError) {
    use crate::delivery::DeliveryError;
    use crate::transport::TransportError;
    let cfg = ctx.cfg();
    if let stages::StepError::Delivery(d) = e {
        let refused = match d {
            DeliveryError::Transport(t) => matches!(
                **t,
                TransportError::HostKeyChanged { .. } | TransportError::HostKeyUnknown { .. }
            ),
            DeliveryError::Seal(_) => true,
            _ => false,
        };
        if refused {
            crate::alerts::raise(
                &cfg,
                &ctx.store,
                crate::alerts::Alert::new(
                    crate::alerts::kind::KEY_REFUSED,
                    format!("bank {}", row.bank),
                    format!("batch {} is not sent to bank {}: {e}", row.id, row.bank),
                    "a changed host key or bank key is refused until it is confirmed with the bank over a second channel and pinned in the config (paygate check)",
                )
                .batch(row.id)
                .critical(),
            )
            .await;
        }
        if matches!(d, DeliveryError::Transport(_)) {
            let mut banks = ctx.banks.lock().unwrap_or_else(|p| p.into_inner());
            let st = banks.entry(row.bank.clone()).or_default();
            st.last_error = Some(format!("{}: {e}", Utc::now().to_rfc3339()));
            st.failing_since.get_or_insert(Utc::now());
        }
    }
}

/// Fetches a bank's return files every `poll_secs` (backing off while it is unreachable) and
/// applies them, so result reports appear without anyone running a command.
async fn poll_bank(ctx: Arc<Ctx>, bank: String, token: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let cfg = ctx.cfg();
        let Some(b) = cfg.banks.get(&bank) else {
            return;
        };
        let every = Duration::from_secs(b.poll_secs);
        // One poller per bank across the instances that share the store: a lease in the store,
        // renewed by the heartbeat. Another instance's poller is left alone, and taken over
        // once its lease runs out.
        let mine = may_claim(&ctx)
            && match ctx
                .store
                .take_poller(&bank, &ctx.instance, ctx.lease.ms)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(bank, error_code = "store.query", "poller lease: {e}");
                    false
                }
            };
        if !mine {
            let retry = every.min(Duration::from_millis((ctx.lease.ms / 2).max(500) as u64));
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(retry) => continue,
            }
        }
        let result = crate::delivery::fetch(&cfg, &ctx.store, &bank).await;
        let wait = match &result {
            Ok(files) => {
                failures = 0;
                for f in files {
                    tracing::info!(bank, stage = "returns", file = %f.remote_name, "{:?}", f.outcome);
                }
                every
            }
            Err(e) => {
                failures += 1;
                tracing::error!(
                    bank,
                    stage = "returns",
                    error_code = "bank.unreachable",
                    "fetching from bank {bank}: {e}"
                );
                if let crate::delivery::DeliveryError::Transport(t) = e
                    && matches!(
                        **t,
                        crate::transport::TransportError::HostKeyChanged { .. }
                            | crate::transport::TransportError::HostKeyUnknown { .. }
                    )
                {
                    crate::alerts::raise(
                        &cfg,
                        &ctx.store,
                        crate::alerts::Alert::new(
                            crate::alerts::kind::KEY_REFUSED,
                            format!("bank {bank}"),
                            format!("bank {bank}'s server is refused: {e}"),
                            "a changed host key is refused until it is confirmed with the bank over a second channel and pinned in the config (paygate check)",
                        )
                        .critical(),
                    )
                    .await;
                }
                (every * 2u32.saturating_pow(failures.min(6))).min(Duration::from_secs(900))
            }
        };
        {
            let mut banks = ctx.banks.lock().unwrap_or_else(|p| p.into_inner());
            let st = banks.entry(bank.clone()).or_default();
            let now = Utc::now();
            match &result {
                Ok(_) => {
                    st.last_success = Some(now.to_rfc3339());
                    st.failures = 0;
                    st.failing_since = None;
                }
                Err(e) => {
                    st.last_error = Some(format!("{}: {e}", now.to_rfc3339()));
                    st.failures = failures;
                    st.failures_total += 1;
                    st.failing_since.get_or_insert(now);
                }
            }
            st.next_poll =
                Some((now + chrono::Duration::from_std(wait).unwrap_or_default()).to_rfc3339());
        }
        if result.is_ok() {
            ctx.kick.notify_one();
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// `paygate status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_secs: u64,
    pub config: String,
    pub channels: Vec<ChannelStatus>,
    pub batches: BTreeMap<String, i64>,
    pub pending_approvals: Vec<PendingApproval>,
    pub banks: Vec<BankLine>,
    /// Alerts nobody acknowledged yet, newest first.
    #[serde(default)]
    pub alerts: Vec<crate::store::StoredAlert>,
    /// This instance's id.
    #[serde(default)]
    pub instance: String,
    /// Every instance on the store (live ones, and those of the last day).
    #[serde(default)]
    pub instances: Vec<crate::store::InstanceRow>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    pub bank: String,
    pub folder: String,
    pub watch: String,
    pub inbound: usize,
    pub processing: usize,
    pub rejected: usize,
}

/// A batch waiting for approval: what it needs, why, and who may give it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PendingApproval {
    pub batch: i64,
    pub channel: String,
    pub file: String,
    pub submitter: Option<String>,
    pub payments: i64,
    pub totals: Vec<String>,
    pub approvals: Vec<String>,
    pub required: u32,
    pub still_needed: u32,
    /// Why that many approvals: the tier, and each scrutiny finding.
    pub reasons: Vec<String>,
    /// Active users whose approval would count now (role, limit, not the submitter, not yet).
    pub who_may_approve: Vec<String>,
    /// Whether the user asking may approve it.
    #[serde(default)]
    pub you_may_approve: Option<bool>,
    pub waiting_since: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BankLine {
    pub name: String,
    pub transport: String,
    pub encryption: String,
    pub last_contact: Option<String>,
    pub last_error: Option<String>,
    pub next_poll: Option<String>,
    pub key_warnings: Vec<String>,
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    !n.starts_with('.')
                        && !n.ends_with(".errors.txt")
                        && !n.ends_with(".errors.csv")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Batches waiting for approval; with `asking`, whether that user may approve each.
pub async fn pending_approvals(
    ctx: &Arc<Ctx>,
    asking: Option<&str>,
) -> Result<Vec<PendingApproval>, StoreError> {
    let cfg = ctx.cfg();
    let people = ctx.store.people().await?;
    let mut out = Vec::new();
    for p in ctx.store.pending().await? {
        let facts = crate::approval::BatchFacts {
            id: p.batch,
            channel: p.channel.clone(),
            submitter: p.submitter.clone(),
            dropped_by: p.dropped_by.clone(),
            totals: p.totals.clone(),
            approved_by: p.approved_by.clone(),
        };
        let may = |who: &crate::approval::Person| crate::approval::may_approve(who, &facts).is_ok();
        let expires_at = cfg.channel(&p.channel).and_then(|ch| {
            DateTime::parse_from_rfc3339(&p.waiting_since)
                .ok()
                .map(|t| {
                    crate::approval::expires_at(t.with_timezone(&Utc), &ch.approval).to_rfc3339()
                })
        });
        out.push(PendingApproval {
            who_may_approve: people
                .iter()
                .filter(|x| may(x))
                .map(|x| x.name.clone())
                .collect(),
            you_may_approve: asking.map(|a| people.iter().any(|x| x.name == a && may(x))),
            still_needed: p.required.saturating_sub(p.approved_by.len() as u32),
            batch: p.batch,
            channel: p.channel,
            file: p.file,
            submitter: p.submitter,
            payments: p.payments,
            totals: p.totals.iter().map(|m| m.to_string()).collect(),
            approvals: p.approved_by,
            required: p.required,
            reasons: p.reasons,
            waiting_since: p.waiting_since,
            expires_at,
        });
    }
    Ok(out)
}

pub async fn status(ctx: &Arc<Ctx>) -> Result<Status, StoreError> {
    let cfg = ctx.cfg();
    let mut channels = Vec::new();
    for (name, ch) in &cfg.channels {
        let f = Folders::of(&cfg, ch);
        channels.push(ChannelStatus {
            name: name.clone(),
            bank: ch.bank.clone(),
            folder: f.root.display().to_string(),
            watch: format!("{:?}", ch.watch).to_lowercase(),
            inbound: count_files(&f.inbound),
            processing: count_files(&f.processing),
            rejected: count_files(&f.rejected),
        });
    }
    let batches = ctx.store.batch_counts().await?.into_iter().collect();
    let pending = pending_approvals(ctx, None).await?;
    let polled = ctx.banks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut banks = Vec::new();
    for (name, b) in &cfg.banks {
        let st = polled.get(name).cloned().unwrap_or_default();
        let mut key_warnings = Vec::new();
        if b.pgp.is_some() {
            let (c, n) = (cfg.clone(), name.clone());
            match tokio::task::spawn_blocking(move || {
                crate::delivery::keyring(&c, &n, SystemTime::now())
            })
            .await
            {
                Ok(Ok((_, warnings))) => {
                    for w in warnings {
                        let days = w
                            .expires
                            .duration_since(SystemTime::now())
                            .unwrap_or_default()
                            .as_secs()
                            / 86_400;
                        key_warnings.push(format!(
                            "key {} ({}) expires in {days} days",
                            w.fingerprint,
                            w.path.display()
                        ));
                    }
                }
                Ok(Err(e)) => key_warnings.push(e.to_string()),
                Err(_) => {}
            }
        }
        banks.push(BankLine {
            name: name.clone(),
            transport: match b.transport.as_ref().map(|t| t.kind) {
                Some(TransportKind::Sftp) => "sftp".into(),
                Some(TransportKind::Folder) => "folder".into(),
                None => "none".into(),
            },
            encryption: match b.encryption {
                Encryption::Openpgp => "openpgp".into(),
                Encryption::None => "NONE".into(),
            },
            last_contact: ctx.store.last_contact(name).await?.or(st.last_success),
            last_error: st.last_error,
            next_poll: st.next_poll,
            key_warnings,
        });
    }
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: ctx.started_at.to_rfc3339(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        config: ctx.config_path.display().to_string(),
        alerts: ctx.store.open_alerts().await?,
        instance: ctx.instance.clone(),
        instances: ctx.store.instances(1).await?,
        channels,
        batches,
        pending_approvals: pending,
        banks,
    })
}
