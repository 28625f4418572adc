//! Payment data at rest: the data keys that encrypt account numbers, payee names and
//! references in the store (AES-256-GCM), the keyed hash (HMAC-SHA-256) that equality lookups
//! use instead of the values, and the mode checks that keep secrets and private folders
//! private. A leaf: the store encrypts and decrypts through `DataKeys`; nothing here knows SQL.
//!
//! The key file lives outside the database (default `<data_dir>/keys/data.key`, or a systemd
//! credential), mode 0600:
//!
//! ```toml
//! lookup = "<64 hex>"          # HMAC key: never rotated (payee lookups are built on it)
//! current = 2                  # new values are encrypted under this key
//! [keys]
//! 1 = "<64 hex>"               # kept while a rotation is re-encrypting rows still under it
//! 2 = "<64 hex>"
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "a value in the store is encrypted under data key {0}, which the key file does not hold"
    )]
    UnknownKey(i64),
    #[error("a value in the store does not decrypt under its key ({0}): it was changed or moved")]
    Damaged(&'static str),
    #[error("{}: mode {mode:04o} is too open (at most {max:04o}): {why}; run `chmod {max:o} {}`", path.display(), path.display())]
    TooOpen {
        path: PathBuf,
        mode: u32,
        max: u32,
        why: &'static str,
    },
    #[error("{}: owned by uid {owner}, not by paygate's uid {me}", path.display())]
    NotMine { path: PathBuf, owner: u32, me: u32 },
}

/// The key file as written.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    lookup: String,
    current: i64,
    keys: BTreeMap<String, String>,
}

/// The data keys: the current one encrypts, every one held decrypts.
pub struct DataKeys {
    path: Option<PathBuf>,
    lookup: [u8; 32],
    /// HMAC-SHA-256 keyed with `lookup`, cloned for each value (the key's two blocks are
    /// hashed once).
    mac: Hmac<sha2::Sha256>,
    current: i64,
    keys: BTreeMap<i64, Aes256Gcm>,
    raw: BTreeMap<i64, [u8; 32]>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("path", &self.path)
            .field("current", &self.current)
            .field("held", &self.raw.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn random32() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::fill(&mut k);
    k
}

fn keyed(k: &[u8; 32]) -> Hmac<sha2::Sha256> {
    <Hmac<sha2::Sha256> as Mac>::new_from_slice(k).expect("HMAC takes a key of any length")
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s.trim()).ok()?.try_into().ok()
}

impl DataKeys {
    /// Fresh keys held in memory only (tests, and a first start before they are saved).
    pub fn generate() -> DataKeys {
        let k = random32();
        let lookup = random32();
        DataKeys {
            path: None,
            mac: keyed(&lookup),
            lookup,
            current: 1,
            keys: BTreeMap::from([(1, Aes256Gcm::new(&k.into()))]),
            raw: BTreeMap::from([(1, k)]),
        }
    }

    /// Reads the key file, refusing one that others may read or that another user owns.
    pub fn load(path: &Path) -> Result<DataKeys, VaultError> {
        check_private(
            path,
            0o600,
            "it holds the keys to the payment data in the store",
        )?;
        let bad = |reason: String| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let f: KeyFile =
            toml::from_str(&text).map_err(|e| bad(format!("not a data key file: {e}")))?;
        let lookup = unhex32(&f.lookup).ok_or_else(|| bad("lookup: not 64 hex digits".into()))?;
        let mut raw = BTreeMap::new();
        for (id, k) in &f.keys {
            let id: i64 = id
                .parse()
                .map_err(|_| bad(format!("keys.{id}: not a key number")))?;
            let k = unhex32(k).ok_or_else(|| bad(format!("keys.{id}: not 64 hex digits")))?;
            raw.insert(id, k);
        }
        if !raw.contains_key(&f.current) {
            return Err(bad(format!(
                "current = {}: no such key under [keys]",
                f.current
            )));
        }
        Ok(DataKeys {
            path: Some(path.to_path_buf()),
            mac: keyed(&lookup),
            lookup,
            current: f.current,
            keys: raw
                .iter()
                .map(|(id, k)| (*id, Aes256Gcm::new(k.into())))
                .collect(),
            raw,
        })
    }

    /// Writes the key file durably, mode 0600 (its folder 0700 when it creates it).
    pub fn save(&mut self, path: &Path) -> Result<(), VaultError> {
        let bad = |reason: String| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            crate::durable::create_private_dir(dir).map_err(|e| bad(e.to_string()))?;
        }
        let f = KeyFile {
            lookup: hex::encode(self.lookup),
            current: self.current,
            keys: self
                .raw
                .iter()
                .map(|(id, k)| (id.to_string(), hex::encode(k)))
                .collect(),
        };
        let text = format!(
            "# paygate data keys: they decrypt the account numbers, names and references in the store.\n# Keep this file 0600, and back it up apart from the database: without it those values are lost.\n{}",
            toml::to_string(&f).map_err(|e| bad(e.to_string()))?
        );
        crate::durable::write_bytes(path, text.as_bytes()).map_err(|e| bad(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| bad(e.to_string()))?;
        self.path = Some(path.to_path_buf());
        Ok(())
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The key new values are encrypted under.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The keys held, oldest first.
    pub fn held(&self) -> Vec<i64> {
        self.raw.keys().copied().collect()
    }

    /// Starts a rotation: a new key becomes current; the old ones stay until no row needs them.
    pub fn add_key(&mut self) -> i64 {
        let id = self.raw.keys().max().copied().unwrap_or(0) + 1;
        let k = random32();
        self.keys.insert(id, Aes256Gcm::new(&k.into()));
        self.raw.insert(id, k);
        self.current = id;
        id
    }

    /// Ends a rotation: every key but the current one is forgotten.
    pub fn retire_old_keys(&mut self) -> Vec<i64> {
        let old: Vec<i64> = self
            .raw
            .keys()
            .copied()
            .filter(|k| *k != self.current)
            .collect();
        for k in &old {
            self.raw.remove(k);
            self.keys.remove(k);
        }
        old
    }

    /// Encrypts `plain` under the current key: nonce ‖ ciphertext ‖ tag. `context` (table and
    /// the row's identity) is authenticated, so a value moved to another row does not decrypt.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let cipher = &self.keys[&self.current];
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory value cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what `seal` made under key `key` with the same `context`.
    pub fn open(&self, key: i64, context: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let cipher = self.keys.get(&key).ok_or(VaultError::UnknownKey(key))?;
        if sealed.len() < 12 + 16 {
            return Err(VaultError::Damaged("too short"));
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| VaultError::Damaged("too short"))?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Damaged("authentication failed"))
    }

    /// The keyed hash equality lookups use: HMAC-SHA-256 of the value as given, its first 16
    /// bytes (collisions at 2⁻⁶⁴ for a billion values); callers normalize first.
    pub fn lookup(&self, value: &str) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }
}

/// Where the data key file is: `paygate.data_key`, else a systemd credential named
/// `paygate-data-key` (`LoadCredential=`), else `<data_dir>/keys/data.key`.
pub fn key_path(configured: Option<&Path>, data_dir: &Path) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = Path::new(&dir).join("paygate-data-key");
        if p.is_file() {
            return p;
        }
    }
    data_dir.join("keys").join("data.key")
}

/// A file systemd handed over as a credential (`LoadCredential=`): private to the service
/// whatever its mode shows (newer systemd gives it to the service's user through an ACL).
pub fn is_credential(path: &Path) -> bool {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    dir.is_some_and(|d| path.starts_with(d)) || path.starts_with("/run/credentials/")
}

/// Refuses `path` when its mode grants more than `max` (as ssh refuses an open private key),
/// or when another user (not root) owns it. A missing path is not checked here.
pub fn check_private(path: &Path, max: u32, why: &'static str) -> Result<(), VaultError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = m.mode() & 0o7777;
    if mode & !max != 0 {
        return Err(VaultError::TooOpen {
            path: path.to_path_buf(),
            mode,
            max,
            why,
        });
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me && m.uid() != 0 && me != 0 {
        return Err(VaultError::NotMine {
            path: path.to_path_buf(),
            owner: m.uid(),
            me,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decrypt_only_in_their_context_and_under_a_held_key() {
        let mut k = DataKeys::generate();
        let plain = b"DE89370400440532013000";
        let s = k.seal("payments.account:1:2", plain);
        assert_ne!(s, k.seal("payments.account:1:2", plain));
        assert!(!s.windows(4).any(|w| w == b"DE89"));
        assert_eq!(k.open(1, "payments.account:1:2", &s).unwrap(), plain);
        assert!(matches!(
            k.open(1, "payments.account:1:3", &s),
            Err(VaultError::Damaged(_))
        ));
        assert!(matches!(k.open(7, "x", &s), Err(VaultError::UnknownKey(7))));
        let new = k.add_key();
        assert_eq!(new, 2);
        assert_eq!(k.open(1, "payments.account:1:2", &s).unwrap().len(), 22);
        assert_eq!(k.lookup("A").len(), 16);
        assert_eq!(k.retire_old_keys(), vec![1]);
        assert!(matches!(
            k.open(1, "payments.account:1:2", &s),
            Err(VaultError::UnknownKey(1))
        ));
        assert_eq!(k.lookup("A"), k.lookup("A"));
        assert_ne!(k.lookup("A"), DataKeys::generate().lookup("A"));
    }

    #[test]
    fn the_key_file_round_trips_and_an_open_mode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/data.key");
        let mut k = DataKeys::generate();
        k.add_key();
        k.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = DataKeys::load(&path).unwrap();
        assert_eq!(back.held(), vec![1, 2]);
        assert_eq!(back.current(), 2);
        assert_eq!(back.lookup("x"), k.lookup("x"));
        let s = k.seal("c", b"v");
        assert_eq!(back.open(2, "c", &s).unwrap(), b"v");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = DataKeys::load(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644 is too open (at most 0600)"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
    }
}
