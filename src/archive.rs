//! The archive: every file paygate keeps for the audit (source files, rendered bank files,
//! sealed files, the bank's return files, result-report copies) is stored only encrypted, to
//! the company's archive key with OpenPGP, so that an auditor holding that key opens any of
//! them with GnuPG — and a copy of the disk shows nothing. The daemon needs only the archive
//! key's certificate (public); `paygate export` decrypts with the secret key it is given.
//! Synchronous.

use crate::config::Config;
use openpgp::Cert;
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Compressor, Encryptor, LiteralWriter, Message};
use openpgp::types::{CompressionAlgorithm, CompressionLevel, SymmetricAlgorithm};
use openpgp::{Fingerprint, KeyHandle};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{key}: {reason}")]
    Key { key: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: cannot be decrypted with this key: {reason}", path.display())]
    Decrypt { path: PathBuf, reason: String },
}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: p.to_path_buf(),
        source,
    }
}

/// The archive key's certificate: what archived files are encrypted to.
#[derive(Clone)]
pub struct ArchiveKey {
    cert: Cert,
}

impl ArchiveKey {
    /// `[archive] cert` with its pinned `fingerprint`; without an `[archive]` section, the
    /// company's own key (its public part) — a separate key for auditors is better, and
    /// `check-config` says so.
    pub fn of(cfg: &Config) -> Result<ArchiveKey, ArchiveError> {
        let (key, path, pin) = match (&cfg.archive, &cfg.company.pgp) {
            (Some(a), _) => ("archive.cert", cfg.resolve(&a.cert), a.fingerprint.clone()),
            (None, Some(c)) => (
                "company.pgp.secret_key",
                cfg.resolve(&c.secret_key),
                c.fingerprint.clone(),
            ),
            (None, None) => {
                return Err(ArchiveError::Key {
                    key: "archive.cert".into(),
                    reason: "archived files are stored only encrypted: name the archive key's certificate ([archive] cert and fingerprint), or give the company an OpenPGP key ([company.pgp])".into(),
                });
            }
        };
        let bad = |reason: String| ArchiveError::Key {
            key: key.to_string(),
            reason: format!("{}: {reason}", path.display()),
        };
        let cert = Cert::from_file(&path).map_err(|e| bad(format!("{e:#}")))?;
        let found = cert.fingerprint().to_hex();
        if found != crate::config::normalize_fingerprint(&pin) {
            return Err(bad(format!(
                "its fingerprint is {found}, not the pinned {}",
                crate::config::normalize_fingerprint(&pin)
            )));
        }
        let k = ArchiveKey {
            cert: cert.strip_secret_key_material(),
        };
        if k.recipients().is_empty() {
            return Err(bad("has no valid encryption key".into()));
        }
        Ok(k)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    /// When the archive key stops being usable, if it expires.
    pub fn expires(&self) -> Option<SystemTime> {
        let p = StandardPolicy::new();
        self.cert
            .with_policy(&p, SystemTime::now())
            .ok()?
            .primary_key()
            .key_expiration_time()
    }

    fn recipients(&self) -> Vec<openpgp::serialize::stream::Recipient<'_>> {
        static POLICY: StandardPolicy<'static> = StandardPolicy::new();
        self.cert
            .keys()
            .with_policy(&POLICY, SystemTime::now())
            .supported()
            .alive()
            .revoked(false)
            .for_storage_encryption()
            .for_transport_encryption()
            .map(|ka| {
                // SEIPD v1 with MDC: what GnuPG 2.2 reads.
                openpgp::serialize::stream::Recipient::new(
                    openpgp::types::Features::empty().set_seipdv1(),
                    KeyHandle::from(ka.key().keyid()),
                    ka.key(),
                )
            })
            .collect()
    }

    /// Encrypts `input` to the archive key into `output`; returns the plaintext's SHA-256.
    pub fn encrypt(
        &self,
        input: &mut dyn Read,
        output: &mut (dyn Write + Send + Sync),
    ) -> io::Result<String> {
        let err = |e: anyhow::Error| io::Error::other(format!("{e:#}"));
        let message = Message::new(output);
        let message = Encryptor::for_recipients(message, self.recipients())
            .symmetric_algo(SymmetricAlgorithm::AES256)
            .build()
            .map_err(err)?;
        // Compressed at the fastest level: bank files and spreadsheets' XML shrink tenfold, and
        // writing and syncing a tenth costs less than the compression.
        let message = Compressor::new(message)
            .algo(CompressionAlgorithm::Zip)
            .level(CompressionLevel::fastest())
            .build()
            .map_err(err)?;
        let mut literal = LiteralWriter::new(message).build().map_err(err)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
            literal.write_all(&buf[..n])?;
        }
        literal.finalize().map_err(err)?;
        Ok(hex::encode(h.finalize()))
    }

    /// Stores `src` encrypted at `dst` (durably: temporary file, synced, renamed); returns the
    /// plaintext's SHA-256. `src` is left for the caller to remove.
    pub fn store(&self, src: &Path, dst: &Path) -> Result<String, ArchiveError> {
        let mut input = std::fs::File::open(src).map_err(io_at(src))?;
        self.store_reader(&mut input, dst)
    }

    /// As `store`, from a reader.
    pub fn store_reader(&self, input: &mut dyn Read, dst: &Path) -> Result<String, ArchiveError> {
        if let Some(dir) = dst.parent() {
            crate::durable::create_private_dir(dir).map_err(io_at(dir))?;
        }
        let mut sha = String::new();
        crate::durable::write(dst, |w| {
            let mut w = WriteSend(w);
            sha = self.encrypt(input, &mut w)?;
            Ok(())
        })
        .map_err(io_at(dst))?;
        Ok(sha)
    }
}

/// Where an archived file lives: `<data_dir>/archive/batch-<ID>/<kind>/<name>.pgp`, or
/// `<data_dir>/archive/<bank>/<kind>/…` for a bank file that answers no batch.
pub fn path_for(cfg: &Config, batch: Option<i64>, bank: &str, kind: &str, name: &str) -> PathBuf {
    let owner = batch.map_or_else(
        || crate::transport::safe_local_name(bank),
        |b| format!("batch-{b}"),
    );
    cfg.data_dir()
        .join("archive")
        .join(owner)
        .join(kind)
        .join(format!("{}.pgp", crate::transport::safe_local_name(name)))
}

#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What is being kept: registered under each of `batches` (a file answering no batch: `[None]`).
pub struct Kept<'a> {
    pub batches: &'a [Option<i64>],
    pub bank: Option<&'a str>,
    /// `source`, `rendered`, `sealed`, `return` or `result`.
    pub kind: &'a str,
    /// The name the file had.
    pub name: &'a str,
}

/// Keeps `src` for the audit: encrypted to the archive key at `dst` (on the blocking pool),
/// then registered in the store with its plaintext's SHA-256, which it returns. `src` is left
/// for the caller to remove — only after this returned.
pub async fn keep(
    cfg: &Config,
    store: &crate::store::Store,
    src: &Path,
    dst: &Path,
    what: Kept<'_>,
) -> Result<String, KeepError> {
    let (c, s, d) = (cfg.clone(), src.to_path_buf(), dst.to_path_buf());
    let sha = tokio::task::spawn_blocking(move || ArchiveKey::of(&c)?.store(&s, &d))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let path = dst.display().to_string();
    for b in what.batches {
        store
            .record_archived(
                *b,
                what.bank,
                what.kind,
                what.name,
                &path,
                &sha,
                chrono::Utc::now(),
            )
            .await?;
    }
    Ok(sha)
}

/// `durable::write` hands out a `&mut dyn Write`; sequoia's writer stack wants `Send + Sync`.
struct WriteSend<'a>(&'a mut dyn Write);
// SAFETY: the wrapped writer is used only on this thread, within `store_reader`'s call.
unsafe impl Send for WriteSend<'_> {}
// SAFETY: as above; it is never shared.
unsafe impl Sync for WriteSend<'_> {}
impl Write for WriteSend<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The archive key's secret half, for `paygate export`.
pub struct ArchiveSecret {
    cert: Cert,
}

impl ArchiveSecret {
    pub fn load(path: &Path) -> Result<ArchiveSecret, ArchiveError> {
        crate::seal::check_secret_file_mode(path).map_err(|e| ArchiveError::Key {
            key: "--key".into(),
            reason: e.to_string(),
        })?;
        let cert = Cert::from_file(path).map_err(|e| ArchiveError::Key {
            key: "--key".into(),
            reason: format!("{}: {e:#}", path.display()),
        })?;
        if !cert.is_tsk() {
            return Err(ArchiveError::Key {
                key: "--key".into(),
                reason: format!(
                    "{}: holds only a public key; export needs the archive key's secret key",
                    path.display()
                ),
            });
        }
        Ok(ArchiveSecret { cert })
    }

    /// Decrypts the archived file `src` into `dst` (durably); returns the plaintext's SHA-256.
    pub fn decrypt(&self, src: &Path, dst: &Path) -> Result<String, ArchiveError> {
        let p = StandardPolicy::new();
        let input = std::fs::File::open(src).map_err(io_at(src))?;
        let bad = |e: anyhow::Error| ArchiveError::Decrypt {
            path: src.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let mut d = DecryptorBuilder::from_reader(input)
            .map_err(bad)?
            .with_policy(&p, None, Secret(&self.cert))
            .map_err(bad)?;
        let mut sha = String::new();
        crate::durable::write(dst, |w| {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = d.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                w.write_all(&buf[..n])?;
            }
            sha = hex::encode(h.finalize());
            Ok(())
        })
        .map_err(|e| ArchiveError::Decrypt {
            path: src.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(sha)
    }
}

struct Secret<'a>(&'a Cert);

impl VerificationHelper for Secret<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        // Archived files are encrypted, not signed: their integrity is the MDC and the
        // SHA-256 recorded in the store, which `export` compares.
        Ok(())
    }
}

impl DecryptionHelper for Secret<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let p = StandardPolicy::new();
        for ka in self
            .0
            .keys()
            .with_policy(&p, None)
            .secret()
            .for_storage_encryption()
            .for_transport_encryption()
        {
            if ka.key().secret().is_encrypted() {
                continue;
            }
            let mut pair = ka.key().clone().into_keypair()?;
            for pkesk in pkesks {
                if pkesk
                    .decrypt(&mut pair, sym_algo)
                    .is_some_and(|(algo, sk)| decrypt(algo, &sk))
                {
                    return Ok(Some(self.0.clone()));
                }
            }
        }
        Err(anyhow::anyhow!(
            "not encrypted to this key (or its secret key is protected by a passphrase)"
        ))
    }
}
