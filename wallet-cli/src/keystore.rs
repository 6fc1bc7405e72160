//! The encrypted keystore: one JSON file holding many named secp256k1 keys.
//!
//! One password protects the file. A 32-byte key is derived from it with argon2id (salt and
//! parameters stored in the file, defaults m = 64 MiB, t = 3, p = 1 after RFC 9106's second
//! recommendation with a single lane) and each secret is sealed with XChaCha20-Poly1305 under a
//! random 24-byte nonce, the key's name and public key as associated data (so entries cannot be
//! swapped or renamed without detection). Names, public keys and addresses are stored in clear:
//! listing keys or reading balances needs no password. The file is written with mode 0600
//! (through a temporary file and a rename) and refused if group or others can read it.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use coffer_ledger::{Address, Keypair, PublicKey};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File format version.
pub const KEYSTORE_VERSION: u32 = 1;
/// Most keys in one file.
pub const MAX_KEYS: usize = 1000;
/// Longest key name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest keystore file read.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Associated-data prefix binding a ciphertext to this format.
const AAD_DOMAIN: &[u8] = b"coffer/keystore/v1";
/// Lightest parameters accepted (argon2's own floor is 8 KiB per lane); below, the file would
/// offer no protection worth the name. Tests use these.
pub const MIN_M_COST_KIB: u32 = 8;
/// Heaviest memory cost accepted when reading a file, so a crafted file cannot exhaust memory.
pub const MAX_M_COST_KIB: u32 = 4 << 20;
/// Most iterations accepted when reading a file.
pub const MAX_T_COST: u32 = 64;
/// Most lanes accepted when reading a file.
pub const MAX_P_COST: u32 = 16;

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// Reading or writing the file failed.
    #[error("keystore {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS's message.
        reason: String,
    },
    /// The file is not a keystore this version understands.
    #[error("keystore {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Group or others may read the file.
    #[error("keystore {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The password does not open the keystore.
    #[error("wrong password for keystore {0}")]
    WrongPassword(PathBuf),
    /// No key by that name.
    #[error("no key named {0:?} in the keystore")]
    UnknownKey(String),
    /// A key by that name already exists.
    #[error("a key named {0:?} already exists")]
    DuplicateName(String),
    /// The public key is already stored under another name.
    #[error("that key is already stored as {0:?}")]
    DuplicateKey(String),
    /// A name outside the allowed characters or length.
    #[error("bad key name {0:?}: want 1..=64 characters of [A-Za-z0-9_.-]")]
    BadName(String),
    /// Argon2 parameters out of range.
    #[error("bad key derivation parameters: {0}")]
    BadParams(String),
    /// The keystore is full.
    #[error("keystore holds {MAX_KEYS} keys already")]
    Full,
    /// No password could be read.
    #[error("cannot read password: {0}")]
    Password(String),
}

impl KeystoreError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            KeystoreError::Io { .. } => "keystore_io",
            KeystoreError::Malformed { .. } => "keystore_malformed",
            KeystoreError::InsecurePermissions { .. } => "keystore_insecure",
            KeystoreError::WrongPassword(_) => "wrong_password",
            KeystoreError::UnknownKey(_) => "unknown_key",
            KeystoreError::DuplicateName(_) => "duplicate_name",
            KeystoreError::DuplicateKey(_) => "duplicate_key",
            KeystoreError::BadName(_) => "bad_key_name",
            KeystoreError::BadParams(_) => "bad_kdf_params",
            KeystoreError::Full => "keystore_full",
            KeystoreError::Password(_) => "password_unavailable",
        }
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second on a laptop core.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    fn check(&self) -> Result<Params, KeystoreError> {
        let in_range = (MIN_M_COST_KIB..=MAX_M_COST_KIB).contains(&self.m_cost_kib)
            && (1..=MAX_T_COST).contains(&self.t_cost)
            && (1..=MAX_P_COST).contains(&self.p_cost);
        if !in_range {
            return Err(KeystoreError::BadParams(format!(
                "m={} KiB t={} p={}; want m in {MIN_M_COST_KIB}..={MAX_M_COST_KIB}, t in 1..={MAX_T_COST}, p in 1..={MAX_P_COST}",
                self.m_cost_kib, self.t_cost, self.p_cost
            )));
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| KeystoreError::BadParams(e.to_string()))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfDoc {
    algorithm: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

/// A stored key, as listed without the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// The name chosen by the user.
    pub name: String,
    /// x-only public key, hex.
    pub public_key: PublicKey,
    /// Its address.
    pub address: Address,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(flatten)]
    info: KeyInfo,
    nonce: String,
    ciphertext: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: u32,
    kdf: KdfDoc,
    cipher: String,
    keys: Vec<Entry>,
}

/// A keystore file, loaded. Changes are written by [`Keystore::save`].
#[derive(Debug)]
pub struct Keystore {
    path: PathBuf,
    doc: FileDoc,
}

fn check_name(name: &str) -> Result<(), KeystoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::BadName(name.to_owned()))
    }
}

fn aad(info: &KeyInfo) -> Vec<u8> {
    let mut aad = AAD_DOMAIN.to_vec();
    aad.push(u8::try_from(info.name.len()).unwrap_or(u8::MAX));
    aad.extend_from_slice(info.name.as_bytes());
    aad.extend_from_slice(&info.public_key.to_bytes());
    aad
}

impl Keystore {
    /// An empty keystore at `path` (nothing is written until [`Keystore::save`]) whose key will
    /// be derived with `params`.
    pub fn create(path: &Path, params: KdfParams) -> Result<Keystore, KeystoreError> {
        params.check()?;
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Ok(Keystore {
            path: path.to_owned(),
            doc: FileDoc {
                version: KEYSTORE_VERSION,
                kdf: KdfDoc {
                    algorithm: "argon2id".into(),
                    params,
                    salt: hex::encode(salt),
                },
                cipher: "xchacha20poly1305".into(),
                keys: Vec::new(),
            },
        })
    }

    /// Runs `change` on the keystore at `path` (an empty one with `params` if there is none)
    /// and saves the result, holding an exclusive lock on `<path>.lock` from reading to
    /// saving: two commands adding keys at once each add theirs (without the lock, the later
    /// save dropped the other's key after both had printed it).
    pub fn update<T, E>(
        path: &Path,
        params: KdfParams,
        change: impl FnOnce(&mut Keystore) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<KeystoreError>,
    {
        let io = |e: std::io::Error| KeystoreError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        create_private_dir(parent_dir(path)).map_err(io)?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options.open(&lock_path).map_err(io)?;
        lock.lock().map_err(io)?;
        let mut keystore = Keystore::open_or_create(path, params)?;
        let out = change(&mut keystore)?;
        keystore.save()?;
        // Released when `lock` closes.
        Ok(out)
    }

    /// Loads `path`, or returns an empty keystore there (with `params`) if it does not exist.
    pub fn open_or_create(path: &Path, params: KdfParams) -> Result<Keystore, KeystoreError> {
        if path.exists() {
            Keystore::open(path)
        } else {
            Keystore::create(path, params)
        }
    }

    /// Loads an existing keystore; refuses files readable by group or others.
    pub fn open(path: &Path) -> Result<Keystore, KeystoreError> {
        let io = |e: std::io::Error| KeystoreError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let malformed = |reason: String| KeystoreError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeystoreError::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(malformed(format!(
                "{} bytes, above {MAX_FILE_BYTES}",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let doc: FileDoc = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        if doc.version != KEYSTORE_VERSION
            || doc.kdf.algorithm != "argon2id"
            || doc.cipher != "xchacha20poly1305"
        {
            return Err(malformed(format!(
                "version {} with {} / {}; this wallet reads version {KEYSTORE_VERSION} argon2id / xchacha20poly1305",
                doc.version, doc.kdf.algorithm, doc.cipher
            )));
        }
        doc.kdf.params.check()?;
        if hex::decode(&doc.kdf.salt).map_or(true, |s| s.len() < 16) {
            return Err(malformed("salt is not 16+ bytes of hex".into()));
        }
        if doc.keys.len() > MAX_KEYS {
            return Err(malformed(format!(
                "{} keys, above {MAX_KEYS}",
                doc.keys.len()
            )));
        }
        for e in &doc.keys {
            check_name(&e.info.name)?;
            if e.info.public_key.address() != e.info.address {
                return Err(malformed(format!(
                    "key {:?}: address does not match its public key",
                    e.info.name
                )));
            }
        }
        Ok(Keystore {
            path: path.to_owned(),
            doc,
        })
    }

    /// The file this keystore lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key derivation parameters.
    pub fn params(&self) -> KdfParams {
        self.doc.kdf.params
    }

    /// Every key's public information, in insertion order.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.doc.keys.iter().map(|e| e.info.clone()).collect()
    }

    /// Public information of the key named `name`.
    pub fn info(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        self.entry(name).map(|e| e.info.clone())
    }

    fn entry(&self, name: &str) -> Result<&Entry, KeystoreError> {
        self.doc
            .keys
            .iter()
            .find(|e| e.info.name == name)
            .ok_or_else(|| KeystoreError::UnknownKey(name.to_owned()))
    }

    fn derive(&self, password: &str) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let params = self.doc.kdf.params.check()?;
        let salt = hex::decode(&self.doc.kdf.salt).map_err(|e| KeystoreError::Malformed {
            path: self.path.clone(),
            reason: format!("salt: {e}"),
        })?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password.as_bytes(), &salt, key.as_mut())
            .map_err(|e| KeystoreError::BadParams(e.to_string()))?;
        Ok(key)
    }

    fn open_entry(&self, entry: &Entry, key: &[u8; 32]) -> Result<Keypair, KeystoreError> {
        let malformed = |reason: String| KeystoreError::Malformed {
            path: self.path.clone(),
            reason,
        };
        let nonce = hex::decode(&entry.nonce).map_err(|e| malformed(format!("nonce: {e}")))?;
        if nonce.len() != 24 {
            return Err(malformed(format!(
                "nonce of {} bytes, want 24",
                nonce.len()
            )));
        }
        let ciphertext =
            hex::decode(&entry.ciphertext).map_err(|e| malformed(format!("ciphertext: {e}")))?;
        let cipher = XChaCha20Poly1305::new(key.into());
        let aad = aad(&entry.info);
        let secret = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::WrongPassword(self.path.clone()))?,
        );
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
            secret
                .as_slice()
                .try_into()
                .map_err(|_| malformed(format!("secret of {} bytes", secret.len())))?,
        );
        let keypair = Keypair::from_secret_bytes(*secret)
            .map_err(|e| malformed(format!("secret key: {e}")))?;
        if keypair.public_key() != entry.info.public_key {
            return Err(malformed(format!(
                "key {:?} does not match its public key",
                entry.info.name
            )));
        }
        Ok(keypair)
    }

    /// Decrypts the key named `name`.
    pub fn unlock(&self, name: &str, password: &str) -> Result<Keypair, KeystoreError> {
        let entry = self.entry(name)?;
        let key = self.derive(password)?;
        self.open_entry(entry, &key)
    }

    /// Adds `keypair` under `name`, sealed with the keystore's password. When the keystore
    /// already holds keys, `password` must open them: one file, one password.
    pub fn add(
        &mut self,
        name: &str,
        keypair: &Keypair,
        password: &str,
    ) -> Result<KeyInfo, KeystoreError> {
        check_name(name)?;
        if self.doc.keys.iter().any(|e| e.info.name == name) {
            return Err(KeystoreError::DuplicateName(name.to_owned()));
        }
        if let Some(e) = self
            .doc
            .keys
            .iter()
            .find(|e| e.info.public_key == keypair.public_key())
        {
            return Err(KeystoreError::DuplicateKey(e.info.name.clone()));
        }
        if self.doc.keys.len() >= MAX_KEYS {
            return Err(KeystoreError::Full);
        }
        let key = self.derive(password)?;
        if let Some(first) = self.doc.keys.first() {
            self.open_entry(first, &key)?;
        }
        let info = KeyInfo {
            name: name.to_owned(),
            public_key: keypair.public_key(),
            address: keypair.address(),
        };
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let secret = Zeroizing::new(keypair.secret_bytes());
        let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_ref(),
                    aad: &aad(&info),
                },
            )
            .map_err(|_| KeystoreError::BadParams("encryption failed".into()))?;
        self.doc.keys.push(Entry {
            info: info.clone(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        });
        Ok(info)
    }

    /// Writes the keystore: a 0600 temporary file in the same directory, synced, then renamed
    /// over the old one, so a crash leaves either the old or the new file.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let io = |e: std::io::Error| KeystoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let dir = parent_dir(&self.path);
        create_private_dir(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(&self.doc).map_err(|e| KeystoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keystore".into());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        // The rename itself is durable only once the directory is synced.
        #[cfg(unix)]
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` (and its parents) readable by its owner only, if it does not exist.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIGHT: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn bad_names_and_params_are_refused() {
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(KeystoreError::BadName(_))),
                "{bad}"
            );
        }
        let too_light = KdfParams {
            m_cost_kib: 4,
            ..LIGHT
        };
        assert!(matches!(
            Keystore::create(Path::new("/nonexistent/k.json"), too_light),
            Err(KeystoreError::BadParams(_))
        ));
    }

    #[test]
    fn entries_cannot_be_renamed() {
        let mut ks = Keystore::create(Path::new("/nonexistent/k.json"), LIGHT).expect("create");
        let key = Keypair::generate();
        ks.add("alice", &key, "pw").expect("add");
        assert_eq!(
            ks.unlock("alice", "pw").expect("unlock").public_key(),
            key.public_key()
        );
        ks.doc.keys[0].info.name = "mallory".into();
        assert!(matches!(
            ks.unlock("mallory", "pw"),
            Err(KeystoreError::WrongPassword(_))
        ));
    }
}
