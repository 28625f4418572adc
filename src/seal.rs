//! OpenPGP with sequoia: sealing files for a bank (sign, then encrypt, in one pass) and opening
//! the bank's files (decrypt, then verify the bank's signature). Keys are files named in the
//! config, each pinned to its fingerprint. Synchronous: the daemon calls it in
//! `spawn_blocking`. Never touches the network or the store.

use crate::config::{BankPgp, CompanyPgp, Compression, normalize_fingerprint};
use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::policy::{Policy, StandardPolicy};
use openpgp::serialize::stream::{Armorer, Compressor, Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::{CompressionAlgorithm, RevocationStatus, SymmetricAlgorithm};
use openpgp::{Cert, Fingerprint, KeyHandle};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "key file {path} has fingerprint {found}, but the config pins {expected}: refusing it (was the file replaced?)"
    )]
    FingerprintMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("key {fingerprint} ({path}) expired on {at}: get a new key from its owner")]
    Expired {
        path: PathBuf,
        fingerprint: String,
        at: String,
    },
    #[error("key {fingerprint} ({path}) is revoked: {reason}")]
    Revoked {
        path: PathBuf,
        fingerprint: String,
        reason: String,
    },
    #[error("key {fingerprint} ({path}) has no usable {purpose} key")]
    NoUsableKey {
        path: PathBuf,
        fingerprint: String,
        purpose: &'static str,
    },
    #[error(
        "secret key file {path} is accessible by others (mode {mode:04o}); run: chmod 600 {path}"
    )]
    SecretKeyPermissions { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Refused(Refusal),
    #[error("OpenPGP: {0}")]
    Pgp(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a file from the bank is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an OpenPGP message at all, or damaged.
    Malformed(String),
    /// Plain or only signed: files from the bank must be encrypted to us.
    NotEncrypted,
    /// Encrypted, but not to any key of ours.
    NotForUs(Vec<String>),
    /// No signature, and the bank is not configured as unsigned.
    Unsigned,
    /// Signed by a key that is not one of the bank's pinned keys.
    UnknownSigner(Vec<String>),
    /// A signature that does not verify (tampered data or a bad key).
    BadSignature(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(e) => write!(
                f,
                "not a readable OpenPGP message (damaged or not encrypted at all): {e}"
            ),
            Refusal::NotEncrypted => write!(
                f,
                "the message is not encrypted: files from the bank must be encrypted to the company key"
            ),
            Refusal::NotForUs(ids) => write!(
                f,
                "the message is encrypted to {}, not to the company key",
                ids.join(", ")
            ),
            Refusal::Unsigned => write!(
                f,
                "the message is not signed: files from the bank must carry the bank's signature (pgp.require_signature)"
            ),
            Refusal::UnknownSigner(ids) => write!(
                f,
                "signed by {}, which is not one of the bank's pinned keys",
                ids.join(", ")
            ),
            Refusal::BadSignature(e) => write!(
                f,
                "the bank's signature does not verify (the file was changed, or the key is bad): {e}"
            ),
        }
    }
}

fn pgp(e: anyhow::Error) -> SealError {
    SealError::Pgp(format!("{e:#}"))
}

/// A key that will expire soon: said by `paygate check` and the daemon's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryWarning {
    pub path: PathBuf,
    pub fingerprint: String,
    pub expires: SystemTime,
}

fn date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d")
        .to_string()
}

/// Loads one certificate and checks it against its pin, its expiry and its revocation.
fn load_cert(
    path: &Path,
    pinned: &str,
    policy: &dyn Policy,
    now: SystemTime,
    warn_within: Duration,
    warnings: &mut Vec<ExpiryWarning>,
) -> Result<Cert, SealError> {
    let cert = Cert::from_file(path).map_err(|e| SealError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    })?;
    let found = cert.fingerprint().to_hex();
    if found != normalize_fingerprint(pinned) {
        return Err(SealError::FingerprintMismatch {
            path: path.to_path_buf(),
            expected: normalize_fingerprint(pinned),
            found,
        });
    }
    if let RevocationStatus::Revoked(sigs) = cert.revocation_status(policy, now) {
        let reason = sigs
            .first()
            .and_then(|s| s.reason_for_revocation())
            .map(|(code, text)| format!("{code} {}", String::from_utf8_lossy(text)))
            .unwrap_or_else(|| "no reason given".into());
        return Err(SealError::Revoked {
            path: path.to_path_buf(),
            fingerprint: found,
            reason,
        });
    }
    let valid = cert
        .with_policy(policy, now)
        .map_err(|e| SealError::KeyFile {
            path: path.to_path_buf(),
            reason: format!("not valid under the standard policy: {e:#}"),
        })?;
    let expiry = valid.primary_key().key_expiration_time();
    if valid.alive().is_err() || expiry.is_some_and(|t| t <= now) {
        return Err(SealError::Expired {
            path: path.to_path_buf(),
            fingerprint: found,
            at: expiry.map_or("an unknown date".into(), date),
        });
    }
    if let Some(t) = expiry
        && t <= now + warn_within
    {
        warnings.push(ExpiryWarning {
            path: path.to_path_buf(),
            fingerprint: found.clone(),
            expires: t,
        });
    }
    Ok(cert)
}

/// Refuses a secret key file that group or others can access, as ssh does.
pub fn check_secret_file_mode(path: &Path) -> Result<(), SealError> {
    let meta = std::fs::metadata(path).map_err(|e| SealError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SealError::SecretKeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The keys and settings for exchanging files with one bank.
pub struct Keyring {
    policy: StandardPolicy<'static>,
    company: Cert,
    company_path: PathBuf,
    signer: KeyPair,
    banks: Vec<Cert>,
    armor: bool,
    compression: Compression,
    encrypt_to_self: bool,
    require_signature: bool,
}

impl Keyring {
    /// Loads and checks the company key and the bank's keys. Paths are as resolved by the
    /// caller. Returns the expiry warnings as well.
    pub fn load(
        company: &CompanyPgp,
        company_key: &Path,
        passphrase: Option<&str>,
        bank: &BankPgp,
        bank_keys: &[PathBuf],
        now: SystemTime,
    ) -> Result<(Keyring, Vec<ExpiryWarning>), SealError> {
        let policy = StandardPolicy::new();
        let warn = Duration::from_secs(86_400 * u64::from(bank.expiry_warning_days));
        let mut warnings = Vec::new();
        check_secret_file_mode(company_key)?;
        let company_cert = load_cert(
            company_key,
            &company.fingerprint,
            &policy,
            now,
            warn,
            &mut warnings,
        )?;
        let fp = company_cert.fingerprint().to_hex();
        if !company_cert.is_tsk() {
            return Err(SealError::KeyFile {
                path: company_key.to_path_buf(),
                reason: "holds only a public key; the company key file must contain the secret key"
                    .into(),
            });
        }
        let signer = company_cert
            .keys()
            .with_policy(&policy, now)
            .secret()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .ok_or_else(|| SealError::NoUsableKey {
                path: company_key.to_path_buf(),
                fingerprint: fp.clone(),
                purpose: "signing",
            })?;
        let mut key = signer.key().clone();
        if key.secret().is_encrypted() {
            let pass = passphrase.ok_or_else(|| SealError::KeyFile {
                path: company_key.to_path_buf(),
                reason:
                    "the secret key is protected by a passphrase; set company.pgp.passphrase_file"
                        .into(),
            })?;
            key = key
                .decrypt_secret(&pass.into())
                .map_err(|e| SealError::KeyFile {
                    path: company_key.to_path_buf(),
                    reason: format!("the passphrase does not unlock the secret key: {e}"),
                })?;
        }
        let signer = key.into_keypair().map_err(pgp)?;
        if bank_keys.is_empty() {
            return Err(SealError::KeyFile {
                path: PathBuf::from("(none)"),
                reason: "the bank has no keys: set pgp.keys and pgp.fingerprints".into(),
            });
        }
        let mut banks = Vec::new();
        for (path, pin) in bank_keys.iter().zip(&bank.fingerprints) {
            let cert = load_cert(path, pin, &policy, now, warn, &mut warnings)?;
            let has_enc = cert
                .keys()
                .with_policy(&policy, now)
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .next()
                .is_some();
            if !has_enc {
                return Err(SealError::NoUsableKey {
                    path: path.clone(),
                    fingerprint: cert.fingerprint().to_hex(),
                    purpose: "encryption",
                });
            }
            banks.push(cert);
        }
        Ok((
            Keyring {
                policy,
                company: company_cert,
                company_path: company_key.to_path_buf(),
                signer,
                banks,
                armor: bank.armor,
                compression: bank.compression,
                encrypt_to_self: bank.encrypt_to_self,
                require_signature: bank.require_signature,
            },
            warnings,
        ))
    }

    pub fn company_fingerprint(&self) -> Fingerprint {
        self.company.fingerprint()
    }

    pub fn company_key_path(&self) -> &Path {
        &self.company_path
    }

    pub fn require_signature(&self) -> bool {
        self.require_signature
    }

    /// Signs `input` with the company key and encrypts it to every bank key (and the company's
    /// own, when configured, so that the archived copy stays readable), in one pass:
    /// SEIPD v1 with MDC, which GnuPG 2.2 reads.
    pub fn seal(
        &self,
        input: &mut dyn Read,
        output: &mut (dyn Write + Send + Sync),
    ) -> Result<(), SealError> {
        let now = SystemTime::now();
        let mut recipients = Vec::new();
        let own = std::iter::once(&self.company).filter(|_| self.encrypt_to_self);
        for cert in self.banks.iter().chain(own) {
            for ka in cert
                .keys()
                .with_policy(&self.policy, now)
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
            {
                // SEIPD v1 with MDC whatever the recipient's key advertises: GnuPG 2.2 and
                // most banks' OpenPGP stacks read nothing newer (sequoia would otherwise
                // choose SEIPD v2 when every recipient key is one that sequoia made).
                recipients.push(openpgp::serialize::stream::Recipient::new(
                    openpgp::types::Features::empty().set_seipdv1(),
                    KeyHandle::from(ka.key().keyid()),
                    ka.key(),
                ));
            }
        }
        let mut message = Message::new(output);
        if self.armor {
            message = Armorer::new(message)
                .kind(openpgp::armor::Kind::Message)
                .build()
                .map_err(pgp)?;
        }
        let message = Encryptor::for_recipients(message, recipients)
            .symmetric_algo(SymmetricAlgorithm::AES256)
            .build()
            .map_err(pgp)?;
        let message = match self.compression {
            Compression::None => message,
            c => Compressor::new(message)
                .algo(match c {
                    Compression::Zlib => CompressionAlgorithm::Zlib,
                    _ => CompressionAlgorithm::Zip,
                })
                .build()
                .map_err(pgp)?,
        };
        let message = Signer::new(message, self.signer.clone())
            .map_err(pgp)?
            .build()
            .map_err(pgp)?;
        let mut literal = LiteralWriter::new(message).build().map_err(pgp)?;
        io::copy(input, &mut literal)?;
        literal.finalize().map_err(pgp)?;
        Ok(())
    }

    /// Decrypts a file from the bank and verifies the bank's signature. The plaintext goes to
    /// `output`, which the caller must discard unless this returns `Ok`: sequoia releases
    /// large messages before the signature at their end has been checked.
    pub fn open(
        &self,
        input: &mut (dyn Read + Send + Sync),
        output: &mut dyn Write,
    ) -> Result<Opened, SealError> {
        let state = Arc::new(Mutex::new(OpenState::default()));
        let helper = Helper {
            keyring: self,
            state: state.clone(),
        };
        let refusal = |state: &Arc<Mutex<OpenState>>, e: anyhow::Error| -> SealError {
            let st = state.lock().unwrap_or_else(|p| p.into_inner());
            SealError::Refused(
                st.refusal
                    .clone()
                    .unwrap_or_else(|| Refusal::Malformed(format!("{e:#}"))),
            )
        };
        let mut decryptor = DecryptorBuilder::from_reader(input)
            .map_err(|e| SealError::Refused(Refusal::Malformed(format!("{e:#}"))))?
            .with_policy(&self.policy, None, helper)
            .map_err(|e| refusal(&state, e))?;
        if let Err(e) = io::copy(&mut decryptor, output) {
            let inner = e
                .into_inner()
                .map(|b| anyhow::anyhow!("{b}"))
                .unwrap_or_else(|| anyhow::anyhow!("read error"));
            return Err(refusal(&state, inner));
        }
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &st.refusal {
            return Err(SealError::Refused(r.clone()));
        }
        if !st.checked {
            return Err(SealError::Refused(Refusal::Malformed(
                "the message ended before it was verified".into(),
            )));
        }
        Ok(st.opened.clone())
    }
}

/// What `open` found out about a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// The bank key that signed it; `None` only for a bank configured as unsigned.
    pub signer: Option<String>,
    pub signed_at: Option<SystemTime>,
}

#[derive(Default)]
struct OpenState {
    refusal: Option<Refusal>,
    checked: bool,
    opened: Opened,
}

struct Helper<'a> {
    keyring: &'a Keyring,
    state: Arc<Mutex<OpenState>>,
}

impl Helper<'_> {
    fn refuse(&self, r: Refusal) -> anyhow::Error {
        let msg = r.to_string();
        self.state.lock().unwrap_or_else(|p| p.into_inner()).refusal = Some(r);
        anyhow::anyhow!(msg)
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        // Only the bank's pinned keys can vouch for a file; nothing else is looked up.
        Ok(self.keyring.banks.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut encrypted = false;
        let mut good: Option<(String, Option<SystemTime>)> = None;
        let mut unknown = Vec::new();
        let mut bad = None;
        let mut any_signature = false;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { .. } => encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    for r in results {
                        any_signature = true;
                        match r {
                            Ok(g) => {
                                good = Some((
                                    g.ka.cert().fingerprint().to_hex(),
                                    g.sig.signature_creation_time(),
                                ));
                            }
                            Err(openpgp::parse::stream::VerificationError::MissingKey { sig }) => {
                                unknown.extend(sig.issuers().map(|i| i.to_hex()));
                            }
                            Err(e) => bad = Some(e.to_string()),
                        }
                    }
                }
            }
        }
        if !encrypted {
            return Err(self.refuse(Refusal::NotEncrypted));
        }
        match good {
            Some((signer, at)) => {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.checked = true;
                st.opened = Opened {
                    signer: Some(signer),
                    signed_at: at,
                };
                Ok(())
            }
            None if !any_signature && !self.keyring.require_signature => {
                tracing::warn!(
                    error_code = "pgp.unsigned_accepted",
                    "accepting an UNSIGNED file from the bank because pgp.require_signature = false"
                );
                self.state.lock().unwrap_or_else(|p| p.into_inner()).checked = true;
                Ok(())
            }
            None if !any_signature => Err(self.refuse(Refusal::Unsigned)),
            None => match bad {
                Some(b) => Err(self.refuse(Refusal::BadSignature(b))),
                None => Err(self.refuse(Refusal::UnknownSigner(unknown))),
            },
        }
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let kr = self.keyring;
        let now = SystemTime::now();
        let keys: Vec<_> = kr
            .company
            .keys()
            .with_policy(&kr.policy, now)
            .secret()
            .for_transport_encryption()
            .collect();
        for pkesk in pkesks {
            for ka in &keys {
                let matches = pkesk
                    .recipient()
                    .is_none_or(|r| r.aliases(ka.key().key_handle()));
                if !matches || ka.key().secret().is_encrypted() {
                    continue;
                }
                let mut pair = ka.key().clone().into_keypair()?;
                if pkesk
                    .decrypt(&mut pair, sym_algo)
                    .is_some_and(|(algo, sk)| decrypt(algo, &sk))
                {
                    return Ok(Some(kr.company.clone()));
                }
            }
        }
        let ids = pkesks
            .iter()
            .filter_map(|p| p.recipient().map(|r| r.to_hex()))
            .collect();
        Err(self.refuse(Refusal::NotForUs(ids)))
    }
}

/// A new company key: Ed25519 signing and Cv25519 encryption subkeys, valid for `years`.
/// Writes `DIR/NAME.sec.asc` (mode 0600, created exclusively) and `DIR/NAME.pub.asc`.
pub fn generate(
    userid: &str,
    dir: &Path,
    name: &str,
    years: u32,
) -> Result<(Fingerprint, PathBuf, PathBuf), SealError> {
    let (cert, _rev) = CertBuilder::new()
        .add_userid(userid)
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_validity_period(Duration::from_secs(u64::from(years) * 365 * 86_400))
        .add_signing_subkey()
        .add_transport_encryption_subkey()
        .generate()
        .map_err(pgp)?;
    let sec = dir.join(format!("{name}.sec.asc"));
    let public = dir.join(format!("{name}.pub.asc"));
    let mut armored = Vec::new();
    {
        use openpgp::serialize::Serialize;
        let mut w = openpgp::armor::Writer::new(&mut armored, openpgp::armor::Kind::SecretKey)?;
        cert.as_tsk().serialize(&mut w).map_err(pgp)?;
        w.finalize()?;
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&sec)
            .map_err(|e| SealError::KeyFile {
                path: sec.clone(),
                reason: e.to_string(),
            })?;
        f.write_all(&armored)?;
        f.sync_all()?;
    }
    let mut pubkey = Vec::new();
    {
        use openpgp::serialize::Serialize;
        let mut w = openpgp::armor::Writer::new(&mut pubkey, openpgp::armor::Kind::PublicKey)?;
        cert.serialize(&mut w).map_err(pgp)?;
        w.finalize()?;
    }
    std::fs::write(&public, pubkey)?;
    Ok((cert.fingerprint(), sec, public))
}

/// What `paygate keys show` prints about a key file.
pub fn describe(path: &Path) -> Result<String, SealError> {
    let cert = Cert::from_file(path).map_err(|e| SealError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    })?;
    let policy = StandardPolicy::new();
    let now = SystemTime::now();
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(s, "{}", path.display());
    let _ = writeln!(s, "  fingerprint {}", cert.fingerprint().to_hex());
    let _ = writeln!(
        s,
        "  contains    {}",
        if cert.is_tsk() {
            "secret key"
        } else {
            "public key only"
        }
    );
    for uid in cert.userids() {
        let _ = writeln!(
            s,
            "  user id     {}",
            String::from_utf8_lossy(uid.userid().value())
        );
    }
    match cert.with_policy(&policy, now) {
        Err(e) => {
            let _ = writeln!(s, "  status      NOT VALID: {e:#}");
        }
        Ok(v) => {
            let status = match (v.revocation_status(), v.alive()) {
                (RevocationStatus::Revoked(_), _) => "REVOKED".to_string(),
                (_, Err(_)) => "EXPIRED".to_string(),
                _ => "valid".to_string(),
            };
            let _ = writeln!(s, "  status      {status}");
            let _ = writeln!(
                s,
                "  created     {}",
                date(v.primary_key().key().creation_time())
            );
            let _ = writeln!(
                s,
                "  expires     {}",
                v.primary_key()
                    .key_expiration_time()
                    .map_or("never".into(), date)
            );
            for ka in v.keys() {
                let mut uses = Vec::new();
                if ka.for_certification() {
                    uses.push("certify");
                }
                if ka.for_signing() {
                    uses.push("sign");
                }
                if ka.for_transport_encryption() || ka.for_storage_encryption() {
                    uses.push("encrypt");
                }
                let _ = writeln!(
                    s,
                    "  key         {} {:?} [{}] expires {}",
                    ka.key().fingerprint().to_hex(),
                    ka.key().pk_algo(),
                    uses.join(","),
                    ka.key_expiration_time().map_or("never".into(), date)
                );
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::serialize::Serialize;
    use std::os::unix::fs::PermissionsExt;

    fn write_cert(cert: &Cert, path: &Path, secret: bool) {
        let mut f = std::fs::File::create(path).unwrap();
        if secret {
            cert.as_tsk().serialize(&mut f).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        } else {
            cert.serialize(&mut f).unwrap();
        }
    }

    fn cert(
        uid: &str,
        created: SystemTime,
        validity: Option<Duration>,
    ) -> (Cert, openpgp::packet::Signature) {
        CertBuilder::new()
            .add_userid(uid)
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(created)
            .set_validity_period(validity)
            .add_signing_subkey()
            .add_transport_encryption_subkey()
            .generate()
            .unwrap()
    }

    fn settings(fprs: Vec<String>, n: usize) -> BankPgp {
        BankPgp {
            keys: (0..n)
                .map(|i| PathBuf::from(format!("bank{i}.pgp")))
                .collect(),
            fingerprints: fprs,
            armor: true,
            compression: Compression::Zip,
            encrypt_to_self: true,
            require_signature: true,
            expiry_warning_days: 30,
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        company: CompanyPgp,
        banks: Vec<Cert>,
    }

    fn setup(bank_validity: Vec<Option<Duration>>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now() - Duration::from_secs(60);
        let (company, _) = cert(
            "Acme <a@acme.example>",
            now,
            Some(Duration::from_secs(2 * 365 * 86_400)),
        );
        write_cert(&company, &dir.path().join("company.pgp"), true);
        let banks: Vec<Cert> = bank_validity
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let (c, _) = cert(&format!("Bank {i} <b@bank.example>"), now, v);
                write_cert(&c, &dir.path().join(format!("bank{i}.pgp")), false);
                c
            })
            .collect();
        Setup {
            company: CompanyPgp {
                secret_key: dir.path().join("company.pgp"),
                fingerprint: company.fingerprint().to_hex(),
                passphrase_file: None,
            },
            dir,
            banks,
        }
    }

    fn load(s: &Setup, pins: Vec<String>) -> Result<(Keyring, Vec<ExpiryWarning>), SealError> {
        let paths: Vec<PathBuf> = (0..pins.len())
            .map(|i| s.dir.path().join(format!("bank{i}.pgp")))
            .collect();
        Keyring::load(
            &s.company,
            &s.company.secret_key,
            None,
            &settings(pins.clone(), pins.len()),
            &paths,
            SystemTime::now(),
        )
    }

    /// A message from bank key `signer` to the company, as the bank would write it.
    fn from_bank(signer: &Cert, company: &Cert, plain: &[u8]) -> Vec<u8> {
        let p = StandardPolicy::new();
        let key = signer
            .keys()
            .with_policy(&p, None)
            .secret()
            .for_signing()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let recipients: Vec<_> = company
            .keys()
            .with_policy(&p, None)
            .for_transport_encryption()
            .collect();
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let m = Encryptor::for_recipients(m, recipients).build().unwrap();
        let m = Signer::new(m, key).unwrap().build().unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(plain).unwrap();
        w.finalize().unwrap();
        out
    }

    #[test]
    fn during_a_rotation_both_bank_keys_work() {
        let s = setup(vec![None, None]);
        let pins = s.banks.iter().map(|c| c.fingerprint().to_hex()).collect();
        let (kr, warnings) = load(&s, pins).unwrap();
        assert!(warnings.is_empty());
        let mut sealed = Vec::new();
        kr.seal(&mut &b"<Document/>"[..], &mut sealed).unwrap();
        assert!(sealed.starts_with(b"-----BEGIN PGP MESSAGE-----"));
        // Encrypted to both bank keys and to the company's own (for the archive).
        let mut plain = Vec::new();
        let opened = kr.open(&mut std::io::Cursor::new(&sealed), &mut plain);
        // Our own signature is not a bank's: an archived copy opens, but is not "from the bank".
        assert!(
            matches!(opened, Err(SealError::Refused(Refusal::UnknownSigner(_)))),
            "{opened:?}"
        );
        let company = Cert::from_file(&s.company.secret_key).unwrap();
        for bank in &s.banks {
            let msg = from_bank(bank, &company, b"status");
            let mut plain = Vec::new();
            let o = kr
                .open(&mut std::io::Cursor::new(&msg), &mut plain)
                .unwrap();
            assert_eq!(plain, b"status");
            assert_eq!(o.signer, Some(bank.fingerprint().to_hex()));
        }
    }

    #[test]
    fn expired_revoked_and_expiring_keys() {
        // Expired: created 10 days ago, valid for 5.
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let (expired, _) = cert("Old bank", old, Some(Duration::from_secs(5 * 86_400)));
        write_cert(&expired, &dir.path().join("bank0.pgp"), false);
        let s = setup(vec![]);
        std::fs::copy(dir.path().join("bank0.pgp"), s.dir.path().join("bank0.pgp")).unwrap();
        let e = load(&s, vec![expired.fingerprint().to_hex()])
            .err()
            .unwrap();
        assert!(matches!(e, SealError::Expired { .. }), "{e}");
        assert!(
            e.to_string().contains(&expired.fingerprint().to_hex())
                && e.to_string().contains("expired on"),
            "{e}"
        );
        // Revoked.
        let (c, rev) = cert(
            "Revoked bank",
            SystemTime::now() - Duration::from_secs(60),
            None,
        );
        let revoked = c
            .insert_packets(vec![openpgp::Packet::from(rev)])
            .unwrap()
            .0;
        write_cert(&revoked, &s.dir.path().join("bank0.pgp"), false);
        let e = load(&s, vec![revoked.fingerprint().to_hex()])
            .err()
            .unwrap();
        assert!(matches!(e, SealError::Revoked { .. }), "{e}");
        // Expiring in 10 days: works, with a warning.
        let (soon, _) = cert(
            "Soon bank",
            SystemTime::now() - Duration::from_secs(60),
            Some(Duration::from_secs(10 * 86_400)),
        );
        write_cert(&soon, &s.dir.path().join("bank0.pgp"), false);
        let (_, warnings) = load(&s, vec![soon.fingerprint().to_hex()]).unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].fingerprint, soon.fingerprint().to_hex());
    }

    #[test]
    fn fingerprints_are_compared_normalized() {
        assert_eq!(normalize_fingerprint("ab12 cd34\n"), "AB12CD34");
    }
}
