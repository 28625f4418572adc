//! Delivery: the wire between the company and its bank, put together from `seal`, `transport`
//! and `store`. Sending an already sealed file; picking up the bank's return files into the
//! spool (each recorded before the remote copy is removed), then opening them (decrypt and
//! verify) into `opened/`, or moving them to `quarantine/` with the reason beside them.
//! Blocking work (SFTP, OpenPGP) runs in `spawn_blocking` with owned inputs.

use crate::config::{Config, Transport as TransportCfg};
use crate::seal::{ExpiryWarning, Keyring, Opened, SealError};
use crate::store::{Store, StoreError};
use crate::transport::{self, Link, PutOutcome, TransportError};
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no bank `{0}` in the config")]
    NoSuchBank(String),
    #[error("bank `{bank}` has no {what} configured ([banks.{bank}.{what}])")]
    NotConfigured { bank: String, what: &'static str },
    #[error(transparent)]
    Seal(Box<SealError>),
    #[error(transparent)]
    Transport(Box<TransportError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
}

impl From<SealError> for DeliveryError {
    fn from(e: SealError) -> Self {
        DeliveryError::Seal(Box::new(e))
    }
}

impl From<TransportError> for DeliveryError {
    fn from(e: TransportError) -> Self {
        DeliveryError::Transport(Box::new(e))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeliveryError + '_ {
    move |e| DeliveryError::Io(path.to_path_buf(), e)
}

/// Loads the company key and the bank's keys, checked against their pins.
pub fn keyring(
    cfg: &Config,
    bank: &str,
    now: SystemTime,
) -> Result<(Keyring, Vec<ExpiryWarning>), DeliveryError> {
    let b = cfg
        .banks
        .get(bank)
        .ok_or_else(|| DeliveryError::NoSuchBank(bank.into()))?;
    let bank_pgp = b.pgp.as_ref().ok_or_else(|| DeliveryError::NotConfigured {
        bank: bank.into(),
        what: "pgp",
    })?;
    let company = cfg
        .company
        .pgp
        .as_ref()
        .ok_or_else(|| DeliveryError::NotConfigured {
            bank: bank.into(),
            what: "pgp (company.pgp is missing)",
        })?;
    let passphrase = match &company.passphrase_file {
        Some(p) => {
            let p = cfg.resolve(p);
            crate::seal::check_secret_file_mode(&p)?;
            Some(
                std::fs::read_to_string(&p)
                    .map_err(io(&p))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            )
        }
        None => None,
    };
    let bank_keys: Vec<PathBuf> = bank_pgp.keys.iter().map(|k| cfg.resolve(k)).collect();
    Ok(Keyring::load(
        company,
        &cfg.resolve(&company.secret_key),
        passphrase.as_deref(),
        bank_pgp,
        &bank_keys,
        now,
    )?)
}

/// The company's and the bank's keys that expire within `days` (keys already expired or
/// refused make this an error, as they do for sending).
pub fn keyring_expiring(
    cfg: &Config,
    bank: &str,
    days: u32,
) -> Result<Vec<ExpiryWarning>, DeliveryError> {
    let mut c = cfg.clone();
    if let Some(p) = c.banks.get_mut(bank).and_then(|b| b.pgp.as_mut()) {
        p.expiry_warning_days = days;
    }
    keyring(&c, bank, SystemTime::now()).map(|(_, w)| w)
}

fn transport_of<'a>(cfg: &'a Config, bank: &str) -> Result<&'a TransportCfg, DeliveryError> {
    let b = cfg
        .banks
        .get(bank)
        .ok_or_else(|| DeliveryError::NoSuchBank(bank.into()))?;
    b.transport
        .as_ref()
        .ok_or_else(|| DeliveryError::NotConfigured {
            bank: bank.into(),
            what: "transport",
        })
}

/// Connects with retries (each attempt a fresh connection).
pub fn connect(cfg: &Config, bank: &str) -> Result<Box<dyn Link + Send>, DeliveryError> {
    let t = transport_of(cfg, bank)?.clone();
    let base = cfg.clone();
    let resolve = move |p: &Path| base.resolve(p);
    Ok(transport::with_retries(
        t.attempts,
        Duration::from_millis(t.backoff_ms),
        &format!("connect to bank `{bank}`"),
        |_| transport::connect(&t, &resolve),
    )?)
}

/// Uploads an already sealed file under `remote_name`, retrying transient failures; every
/// attempt is idempotent (see `transport`), so a retry never makes a second file. Returns the
/// outcome and the file's SHA-256 and size. `fence` is asked before every piece and before
/// the commit (see `Link::put`); once it says no, nothing more is sent or tried.
pub fn send(
    cfg: &Config,
    bank: &str,
    sealed: &Path,
    remote_name: &str,
    recorded_sha256: Option<&str>,
    fence: &dyn Fn() -> bool,
) -> Result<(PutOutcome, String, u64), DeliveryError> {
    let t = transport_of(cfg, bank)?.clone();
    // The SHA-256 recorded at sealing names the upload and is checked as the bytes are sent;
    // without one (an admin's `paygate send FILE`) the file is hashed first.
    let (sha, size) = match recorded_sha256 {
        Some(sha) => (
            sha.to_ascii_lowercase(),
            std::fs::metadata(sealed).map_err(io(sealed))?.len(),
        ),
        None => sha256_file(sealed).map_err(io(sealed))?,
    };
    let complete = std::cell::Cell::new(false);
    let outcome = transport::with_retries(
        t.attempts,
        Duration::from_millis(t.backoff_ms),
        &format!("upload {remote_name} to bank `{bank}`"),
        |_| {
            if !fence() {
                return Err(TransportError::Fenced(remote_name.to_string()));
            }
            let mut link = connect_once(cfg, bank)?;
            match link.put(sealed, remote_name, &sha, !complete.get(), fence) {
                Err(e @ TransportError::Interrupted { .. }) => {
                    complete.set(true);
                    Err(e)
                }
                other => other,
            }
        },
    )?;
    Ok((outcome, sha, size))
}

/// SHA-256 and size of a file, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok((hex::encode(h.finalize()), n));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

fn connect_once(cfg: &Config, bank: &str) -> Result<Box<dyn Link + Send>, TransportError> {
    let t = transport_of(cfg, bank).map_err(|e| TransportError::Permanent {
        what: bank.into(),
        detail: e.to_string(),
    })?;
    let base = cfg.clone();
    transport::connect(t, &move |p: &Path| base.resolve(p))
}

/// Where a bank's files live locally.
pub struct Spool {
    pub incoming: PathBuf,
    pub opened: PathBuf,
    pub quarantine: PathBuf,
}

impl Spool {
    pub fn of(cfg: &Config, bank: &str) -> Spool {
        let d = cfg.data_dir();
        Spool {
            incoming: d.join("spool").join(bank).join("incoming"),
            opened: d.join("spool").join(bank).join("opened"),
            quarantine: d.join("quarantine").join(bank),
        }
    }

    fn create(&self) -> Result<(), DeliveryError> {
        // Private (0700): the spool holds plaintext while a step needs it.
        for d in [&self.incoming, &self.opened, &self.quarantine] {
            crate::durable::create_private_dir(d).map_err(io(d))?;
        }
        Ok(())
    }
}

/// One file picked up from the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub remote_name: String,
    pub size: u64,
    pub sha256: String,
    pub outcome: FetchOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Decrypted and verified; the plaintext is at `path`, and was reconciled (or why not).
    Opened {
        path: PathBuf,
        signer: Option<String>,
        reconciled: Result<String, String>,
    },
    /// Refused: moved to `path` with `reason` written beside it.
    Quarantined { path: PathBuf, reason: String },
    /// Seen before (same name and content): not processed again.
    Duplicate,
    /// Changed while being downloaded: left for the next round.
    Incomplete,
}

/// Writes through to `inner`, hashing (SHA-256) what it writes: a file's digest without
/// reading it back.
pub(crate) struct HashingWriter<W: Write> {
    pub(crate) inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hash: Sha256::new(),
        }
    }

    /// The writer and the hex SHA-256 of everything written.
    pub(crate) fn finish(self) -> (W, String) {
        (self.inner, hex::encode(self.hash.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Pulls the bank's waiting files once: download → spool (synced) → store → dispose remote →
/// open (decrypt + verify) → `opened/` or `quarantine/`.
pub async fn fetch(cfg: &Config, store: &Store, bank: &str) -> Result<Vec<Fetched>, DeliveryError> {
    let spool = Spool::of(cfg, bank);
    spool.create()?;
    let t = transport_of(cfg, bank)?.clone();
    let (cfg_c, bank_c) = (cfg.clone(), bank.to_string());
    let mut link = blocking(move || connect(&cfg_c, &bank_c)).await?;
    let (l, listed) = blocking(move || {
        let r = link.list();
        (link, r)
    })
    .await;
    link = l;
    let listed = listed?;
    let (cfg_k, bank_k) = (cfg.clone(), bank.to_string());
    let (keyring, warnings) = blocking(move || keyring(&cfg_k, &bank_k, SystemTime::now())).await?;
    for w in &warnings {
        tracing::warn!(
            error_code = "pgp.key_expiring",
            "key {} ({}) expires soon",
            w.fingerprint,
            w.path.display()
        );
    }
    let keyring = std::sync::Arc::new(keyring);
    let mut out = Vec::new();
    // Files recorded by an earlier run that did not get to the end (it crashed, or the
    // reconciliation failed): handle them first, from the spool.
    for r in store.return_files(Some(bank)).await? {
        let spooled = PathBuf::from(&r.spool_path);
        if matches!(r.state.as_str(), "received" | "opened") && spooled.is_file() {
            let outcome = process(
                cfg,
                store,
                &keyring,
                &spool,
                bank,
                r.id,
                &spooled,
                &r.remote_name,
            )
            .await?;
            out.push(Fetched {
                remote_name: r.remote_name,
                size: r.size as u64,
                sha256: r.sha256,
                outcome,
            });
        }
    }
    for file in listed {
        let tmp_path = spool.incoming.join(format!(
            ".{}.download",
            transport::safe_local_name(&file.name)
        ));
        let name = file.name.clone();
        let tp = tmp_path.clone();
        let attempts = t.attempts;
        let backoff = Duration::from_millis(t.backoff_ms);
        let (l, got) = blocking(move || {
            let r = transport::with_retries(attempts, backoff, &format!("download {name}"), |_| {
                let f = std::fs::File::create(&tp).map_err(|e| TransportError::Permanent {
                    what: tp.display().to_string(),
                    detail: e.to_string(),
                })?;
                let mut w = HashingWriter::new(f);
                let n = link.get(&name, &mut w)?;
                let (f, sha) = w.finish();
                f.sync_all().map_err(|e| TransportError::Transient {
                    what: tp.display().to_string(),
                    detail: e.to_string(),
                })?;
                Ok((n, sha))
            });
            (link, r)
        })
        .await;
        link = l;
        let (size, sha) = got?;
        if size != file.size {
            let _ = std::fs::remove_file(&tmp_path);
            out.push(Fetched {
                remote_name: file.name,
                size,
                sha256: sha,
                outcome: FetchOutcome::Incomplete,
            });
            continue;
        }
        let spooled = spool.incoming.join(format!(
            "{}_{}",
            &sha[..12],
            transport::safe_local_name(&file.name)
        ));
        std::fs::rename(&tmp_path, &spooled).map_err(io(&spooled))?;
        if let Ok(d) = std::fs::File::open(&spool.incoming) {
            let _ = d.sync_all();
        }
        let (id, new, state) = store
            .record_return(
                bank,
                &file.name,
                size,
                &sha,
                &spooled.display().to_string(),
                Utc::now(),
            )
            .await?;
        crate::crash::crash_point("return-recorded");
        // Only now, with the file durable and recorded, may the bank's copy go.
        let name = file.name.clone();
        let (l, disposed) = blocking(move || {
            let r = link.dispose(&name);
            (link, r)
        })
        .await;
        link = l;
        if let Err(e) = disposed {
            tracing::warn!(
                error_code = "transport.dispose",
                "could not remove {} from the server: {e}; it will be recognised and skipped next time",
                file.name
            );
        }
        // Seen before and handled: skip. Seen before but interrupted (a crash between recording
        // and handling): handle it now.
        if !new && !matches!(state.as_str(), "received" | "opened") {
            out.push(Fetched {
                remote_name: file.name,
                size,
                sha256: sha,
                outcome: FetchOutcome::Duplicate,
            });
            continue;
        }
        let outcome = process(cfg, store, &keyring, &spool, bank, id, &spooled, &file.name).await?;
        out.push(Fetched {
            remote_name: file.name,
            size,
            sha256: sha,
            outcome,
        });
    }
    Ok(out)
}

/// Opens a spooled file and hands it on: `opened` with the plaintext, then `processed` once
/// reconciled; or `quarantined` with the reason.
#[allow(clippy::too_many_arguments)]
async fn process(
    cfg: &Config,
    store: &Store,
    keyring: &std::sync::Arc<Keyring>,
    spool: &Spool,
    bank: &str,
    id: i64,
    spooled: &Path,
    remote_name: &str,
) -> Result<FetchOutcome, DeliveryError> {
    let mut outcome = open_spooled(keyring, spool, spooled, remote_name).await?;
    match &mut outcome {
        FetchOutcome::Opened {
            path,
            signer,
            reconciled,
        } => {
            store
                .set_return_state(
                    id,
                    "opened",
                    signer.as_deref(),
                    None,
                    Some(&path.display().to_string()),
                    Utc::now(),
                )
                .await?;
            crate::crash::crash_point("return-opened");
            // The verified file is the bank's word: apply it to its batch at once.
            let size = std::fs::metadata(&*path).map_err(io(path))?.len();
            let applied = if size > crate::bank::xml::MAX_BYTES as u64 {
                // Never read into memory: shown as unreadable, kept in the spool.
                Err(crate::inbound::InboundError::Parse(
                    crate::bank::ParseError::Xml(crate::bank::xml::XmlError::TooLarge(
                        usize::try_from(size).unwrap_or(usize::MAX),
                    )),
                ))
            } else {
                let bytes = std::fs::read(&*path).map_err(io(path))?;
                crate::inbound::apply(cfg, store, Some(bank), remote_name, &bytes).await
            };
            *reconciled = match applied {
                Ok(a) => {
                    // Kept for the audit only encrypted to the archive key, with each batch it
                    // answered; then the plaintext and the download leave the spool.
                    let name = path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    // The batches it answered; after a crash between applying it and
                    // archiving it, `apply` finds it applied and names none: the store does.
                    let mut batches: Vec<i64> = a.batches.iter().map(|b| b.batch).collect();
                    if batches.is_empty() && !a.new {
                        let (sha, _) = sha256_file(path).map_err(io(path))?;
                        batches = store.batches_of_report(&sha).await?;
                    }
                    let dst = crate::archive::path_for(
                        cfg,
                        batches.first().copied(),
                        bank,
                        "return",
                        &name,
                    );
                    let batches: Vec<Option<i64>> = if batches.is_empty() {
                        vec![None]
                    } else {
                        batches.into_iter().map(Some).collect()
                    };
                    let what = crate::archive::Kept {
                        batches: &batches,
                        bank: Some(bank),
                        kind: "return",
                        name: remote_name,
                    };
                    crate::archive::keep(cfg, store, path, &dst, what)
                        .await
                        .map_err(|e| match e {
                            crate::archive::KeepError::Archive(e) => DeliveryError::Archive(e),
                            crate::archive::KeepError::Store(e) => DeliveryError::Store(e),
                        })?;
                    let archived = dst.display().to_string();
                    store
                        .set_return_state(
                            id,
                            "processed",
                            signer.as_deref(),
                            None,
                            Some(&archived),
                            Utc::now(),
                        )
                        .await?;
                    let _ = std::fs::remove_file(&*path);
                    let _ = std::fs::remove_file(spooled);
                    *path = dst;
                    // Payments the bank rejected or returned: told at once, whatever the
                    // rest of the batch still waits for.
                    for b in &a.batches {
                        for (word, states) in [
                            ("rejected", [crate::reconcile::PaymentState::Rejected]),
                            ("returned", [crate::reconcile::PaymentState::Returned]),
                        ] {
                            let n = b.changes.iter().filter(|c| states.contains(&c.to)).count();
                            if n == 0 {
                                continue;
                            }
                            let submitter =
                                store.batch(b.batch).await.ok().and_then(|r| r.submitter);
                            crate::alerts::raise(
                                cfg,
                                store,
                                crate::alerts::Alert::new(
                                    crate::alerts::kind::PAYMENTS_REJECTED,
                                    format!("batch {} {word}", b.batch),
                                    format!(
                                        "bank {bank} {word} {n} payment(s) of batch {} (batch now {})",
                                        b.batch, b.state
                                    ),
                                    format!(
                                        "see which in paygate batch show {} (and the result report once the batch is final); correct the payees' details and pay them in a new file",
                                        b.batch
                                    ),
                                )
                                .batch(b.batch)
                                .to(submitter),
                            )
                            .await;
                        }
                    }
                    Ok(describe_applied(&a))
                }
                Err(e) => {
                    tracing::error!(error_code = "return.unreadable", bank, file = %remote_name, "verified, but not reconciled: {e}");
                    Err(e.to_string())
                }
            };
        }
        FetchOutcome::Quarantined { reason, .. } => {
            tracing::error!(error_code = "return.quarantined", bank, file = %remote_name, "quarantined: {reason}");
            crate::alerts::raise(
                cfg,
                store,
                crate::alerts::Alert::new(
                    crate::alerts::kind::RETURN_QUARANTINED,
                    format!("{bank}/{remote_name}"),
                    format!("a file from bank {bank} ({remote_name}) was quarantined: {reason}"),
                    "look at it (paygate status lists it; the file and its reason are in quarantine/), and ask the bank to send it again if it is theirs",
                )
                .critical(),
            )
            .await;
            store
                .set_return_state(id, "quarantined", None, Some(reason), None, Utc::now())
                .await?;
        }
        _ => {}
    }
    Ok(outcome)
}

fn describe_applied(a: &crate::inbound::Applied) -> String {
    if a.batches.is_empty() {
        return format!("{}: {}", a.kind, a.notes.join("; "));
    }
    a.batches
        .iter()
        .map(|b| {
            format!(
                "batch {} now {} ({} payment changes)",
                b.batch,
                b.state,
                b.changes.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Opens a spooled file: the plaintext to `opened/NAME` (only after verification succeeded),
/// or the file to `quarantine/NAME` with `NAME.reason.txt`.
async fn open_spooled(
    keyring: &std::sync::Arc<Keyring>,
    spool: &Spool,
    spooled: &Path,
    remote_name: &str,
) -> Result<FetchOutcome, DeliveryError> {
    // The spooled name carries the content's hash: a later file of the same name never
    // replaces this one's plaintext.
    let name = spooled.file_name().map_or_else(
        || transport::safe_local_name(remote_name),
        |n| n.to_string_lossy().into_owned(),
    );
    let plain_name = name
        .strip_suffix(".pgp")
        .or_else(|| name.strip_suffix(".gpg"))
        .or_else(|| name.strip_suffix(".asc"))
        .unwrap_or(&name)
        .to_string();
    let opened_path = spool.opened.join(&plain_name);
    let kr = keyring.clone();
    let (src, dst) = (spooled.to_path_buf(), opened_path.clone());
    let result: Result<Opened, SealError> = blocking(move || {
        let mut input = std::fs::File::open(&src)?;
        let dir = dst.parent().unwrap_or(Path::new("."));
        // A refused file's partial plaintext dies with the temporary file.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let opened = kr.open(&mut input, tmp.as_file_mut())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&dst).map_err(|e| e.error)?;
        Ok(opened)
    })
    .await;
    match result {
        Ok(o) => Ok(FetchOutcome::Opened {
            path: opened_path,
            signer: o.signer,
            reconciled: Err("not reconciled yet".into()),
        }),
        Err(e) => {
            let reason = e.to_string();
            let q = spool
                .quarantine
                .join(spooled.file_name().unwrap_or_default());
            std::fs::rename(spooled, &q).map_err(io(&q))?;
            let note = q.with_file_name(format!(
                "{}.reason.txt",
                q.file_name().unwrap_or_default().to_string_lossy()
            ));
            crate::durable::write(&note, |w| {
                writeln!(w, "{remote_name}: quarantined by paygate\n{reason}")
            })
            .map_err(io(&note))?;
            Ok(FetchOutcome::Quarantined { path: q, reason })
        }
    }
}
