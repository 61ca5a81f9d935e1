//! Backup keys: creation, scopes and defaults, rotation, deletion, export and import.
//!
//! Invariants:
//! - Key material never rests in plaintext: `keys.json` holds each key wrapped with
//!   AES-256-GCM under the home's root key, with *every* field of its entry (id, scope,
//!   domain, state, default flag, dates, description, account, HSM tie) as AAD. Every
//!   load unwraps every entry, so an entry edited by hand (a retired key made the default
//!   again) is refused with an error naming it, before anything uses it.
//! - Each scope (each domain, for domain keys) has at most one default key, and a default
//!   is always `active`. Rotation makes a new default and retires the old one: a retired
//!   key still decrypts but never encrypts.
//! - Deleting a key crypto-shreds it: the remaining keys are re-wrapped under a fresh root
//!   key (see `root.rs` for the crash-safe order), so an old copy of `keys.json` no longer
//!   unwraps under the live root key.
//! - A key id appears at most once; a store with a duplicate id is damaged.
//! - Keys are never copied anywhere automatically: `export`/`import` move them.
pub mod keyfile;
/// The root key file and its protection modes live with the home.
pub use crate::home::{root, token};
/// Argon2id with bounded parameters (a primitive the home uses too).
pub use crate::kdf;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::errors::{Classify, Kind};
use crate::fsutil;
pub use crate::home::{Home, HomeError, HomeLock};
use crate::secret::{Key32, Password};
use kdf::KdfParams;
use keyfile::KeyFileError;
pub use root::{Mode, RootInfo, Target};

/// The domain a domain-scoped key belongs to when none is named (CipherTrust's root domain).
pub const ROOT_DOMAIN: &str = "00000000-0000-0000-0000-000000000000";
/// The `version` field of key records: the key-file format they export to.
pub const KEY_VERSION: &str = "1";
const STORE_FORMAT: u32 = 2;
const WRAP_LABEL_V1: &[u8] = b"vault.home.v1 backup-key";
const WRAP_LABEL_V2: &[u8] = b"vault.home.v2 backup-key";
const HSM_LABEL: &[u8] = b"vault.home.v2 hsm-key";
const SECRET_LABEL: &[u8] = b"vault.home.v2 secret";
/// Secrets kept for other modules (the home's signing key) are small.
pub const MAX_SECRET_LEN: usize = 4096;

/// Scopes are shared with archives: a system archive needs a system key, a domain
/// archive a key of its domain.
pub use crate::scope::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    #[default]
    Active,
    /// Rotated out: still decrypts, never encrypts.
    Retired,
    /// Known or suspected to be exposed (KMIP's and CipherTrust's state): still decrypts,
    /// never encrypts, and its archives need re-encryption, not a plain rewrap.
    Compromised,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Compromised => "compromised",
        })
    }
}

/// A backup key's public description: what `vault keys get/list` print (ksctl's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub scope: Scope,
    pub account: String,
    #[serde(rename = "domainID", skip_serializing_if = "Option::is_none", default)]
    pub domain_id: Option<String>,
    pub version: String,
    pub id: Uuid,
    pub created_at: String,
    pub is_default: bool,
    pub state: KeyState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Wrapped directly by the PKCS#11 token's key (CipherTrust's `--tied-to-hsm`): its
    /// archives open only where that token is.
    #[serde(rename = "tiedToHSM", default)]
    pub tied_to_hsm: bool,
}

impl KeyInfo {
    /// Whether this key belongs to the given scope and (for domain keys) domain.
    pub fn in_scope(&self, scope: Scope, domain: Option<&str>) -> bool {
        self.scope == scope && self.domain_id.as_deref() == domain
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    #[serde(flatten)]
    info: KeyInfo,
    /// base64(nonce[12] ‖ ciphertext[32] ‖ tag[16]) under the root key, AAD = the entry.
    /// For a key tied to the HSM the plaintext is SHA-256 of `hsmWrapped`, which binds
    /// the token's blob to the entry without the root key ever wrapping the key itself.
    wrapped: String,
    /// base64(iv[12] ‖ ciphertext[32] ‖ tag[16]) made by the token's key (tied keys only).
    #[serde(
        rename = "hsmWrapped",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    hsm_wrapped: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoreFile {
    format_version: u32,
    /// The id of the root key the entries are wrapped under (absent before format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_id: Option<Uuid>,
    keys: Vec<StoredKey>,
    /// Other secrets of the home (e.g. its signing key): base64(nonce ‖ ct ‖ tag) under
    /// the root key, AAD = label ‖ name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    secrets: BTreeMap<String, String>,
}

/// A key's material as held in memory between load and save.
enum Material {
    Key(Key32),
    /// The token's blob; the key itself is only ever inside the token or transiently here.
    Hsm(Vec<u8>),
}

struct Entry {
    info: KeyInfo,
    material: Material,
}

/// The key store, every entry authenticated and unwrapped.
struct Loaded {
    root_id: Option<Uuid>,
    keys: Vec<Entry>,
    secrets: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl Loaded {
    fn pos(&self, id: &Uuid) -> Result<usize, KeyError> {
        self.keys
            .iter()
            .position(|k| &k.info.id == id)
            .ok_or_else(|| KeyError::NotFound(id.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("cannot read or write the key store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "key store {path} is damaged ({what}); restore the vault home from a backup or re-import the keys"
    )]
    Damaged { path: String, what: String },
    #[error(
        "key store {path}: the entry of key {id} was edited or damaged (its fields no longer authenticate under the root key); nothing was used. Restore keys.json from a backup of this vault home"
    )]
    EntryTampered { path: String, id: Uuid },
    #[error("key store {path} was written by a newer vault (store format {found}); upgrade vault")]
    StoreTooNew { path: String, found: u32 },
    #[error("no backup key with id {0}")]
    NotFound(String),
    #[error("no default {scope} key{domain}", domain = .domain.as_ref().map(|d| format!(" for domain {d}")).unwrap_or_default())]
    NoDefault {
        scope: Scope,
        domain: Option<String>,
    },
    #[error("key {0} is retired: it can decrypt but not encrypt")]
    Retired(Uuid),
    #[error("key {0} is compromised: it can decrypt but never encrypts")]
    Compromised(Uuid),
    #[error("a domain applies only to domain keys, not to system keys")]
    DomainWithSystemScope,
    #[error(
        "invalid domain id {0:?}: use letters, digits, '-', '_' or '.', at most 128 characters"
    )]
    BadDomain(String),
    #[error("the key file holds a {file} key, not a {flag} key")]
    ScopeMismatch { file: Scope, flag: Scope },
    #[error(
        "a different key with id {0} is already in this home; refusing to overwrite it (delete it first if you are sure)"
    )]
    IdClash(Uuid),
    #[error("key {id} protects {count} archive(s) in this home ({list})")]
    InUse {
        id: Uuid,
        count: usize,
        list: String,
    },
    #[error("key {0} is the default key of its scope")]
    IsDefault(Uuid),
    #[error(
        "only system keys can be tied to the HSM (as in CipherTrust): a domain key is always wrapped by the root key"
    )]
    TiedDomainKey,
    #[error(
        "a key tied to the HSM needs a vault home whose root key is in a PKCS#11 token (mode pkcs11); this home is in mode {0}"
    )]
    NoToken(Mode),
    #[error(
        "key {id} is tied to the HSM (PKCS#11 token {token:?}): its material never leaves the token, so it cannot be exported to a key file. Archives under it open only in a vault home that uses the same token"
    )]
    TiedNotExportable { id: Uuid, token: String },
    #[error(
        "keys tied to the HSM (PKCS#11 token {token:?}) would become unreadable: keep the root key in that token, or delete those keys first ({ids})"
    )]
    TiedKeysNeedToken { token: String, ids: String },
    #[error("secret {0:?} is larger than {MAX_SECRET_LEN} bytes")]
    SecretTooLarge(String),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

impl Classify for KeyError {
    fn kind(&self) -> Kind {
        match self {
            KeyError::Home(e) => e.kind(),
            KeyError::Io { source, .. } => Classify::kind(source),
            KeyError::Damaged { .. } | KeyError::EntryTampered { .. } => Kind::Integrity,
            KeyError::StoreTooNew { .. } => Kind::Unsupported,
            KeyError::NotFound(_) => Kind::NotFound,
            KeyError::NoDefault { .. } => Kind::NotFound,
            KeyError::Retired(_)
            | KeyError::Compromised(_)
            | KeyError::ScopeMismatch { .. }
            | KeyError::IdClash(_)
            | KeyError::InUse { .. }
            | KeyError::IsDefault(_)
            | KeyError::TiedDomainKey
            | KeyError::NoToken(_)
            | KeyError::TiedNotExportable { .. }
            | KeyError::TiedKeysNeedToken { .. } => Kind::Refused,
            KeyError::DomainWithSystemScope | KeyError::BadDomain(_) => Kind::Usage,
            KeyError::SecretTooLarge(_) => Kind::Usage,
            KeyError::KeyFile(e) => e.kind(),
        }
    }
}

/// Resolves the (scope, domain) pair the user named: a domain key without `--domain`
/// belongs to the root domain; `--domain` with the system scope is a mistake.
pub fn resolve_domain(scope: Scope, domain: Option<&str>) -> Result<Option<String>, KeyError> {
    match (scope, domain) {
        (Scope::System, None) => Ok(None),
        (Scope::System, Some(_)) => Err(KeyError::DomainWithSystemScope),
        (Scope::Domain, None) => Ok(Some(ROOT_DOMAIN.to_string())),
        (Scope::Domain, Some(d)) => {
            let ok = !d.is_empty()
                && d.len() <= 128
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if ok {
                Ok(Some(d.to_string()))
            } else {
                Err(KeyError::BadDomain(d.to_string()))
            }
        }
    }
}

/// The result of `import`.
pub enum Imported {
    New(KeyInfo),
    /// The same key (same id, same material) was already present: nothing changed.
    AlreadyPresent(KeyInfo),
}

/// Outcome of a rotation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub new_key: KeyInfo,
    pub retired_key: KeyInfo,
}

/// Outcome of a root change (`home rotate-root`, `home protect`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootChange {
    pub previous: RootInfo,
    pub current: RootInfo,
    /// Key entries re-wrapped under the new root key.
    pub rewrapped_keys: usize,
    /// Keys tied to the HSM, which stay wrapped by the token's key.
    pub tied_keys: usize,
    pub rewrapped_secrets: usize,
}

/// What each key of a home depends on, read without unlocking anything: for keyless
/// views (`backup list/get`, `inspect`), which show what is lost if a passphrase or a
/// token is. The flags come from `keys.json` unauthenticated; every use of a key
/// authenticates its entry.
pub struct Dependencies {
    pub root: RootInfo,
    keys: std::collections::HashMap<Uuid, bool>,
}

impl Dependencies {
    /// Whether `key` is tied to the HSM (archives under it are HSM-backed).
    pub fn tied(&self, key: &Uuid) -> bool {
        self.keys.get(key).copied().unwrap_or(false)
    }

    /// `hsm:<token>` for a tied key, the root's dependency (`file`, `passphrase`,
    /// `pkcs11:<token>`) for another key of this home, `none` for a key not here.
    pub fn of(&self, key: &Uuid) -> String {
        match self.keys.get(key) {
            Some(true) => format!(
                "hsm:{}",
                self.root
                    .token
                    .as_ref()
                    .map(|t| t.token_label.as_str())
                    .unwrap_or("?")
            ),
            Some(false) => self.root.dependency(),
            None => "none".into(),
        }
    }
}

/// Access to the backup keys of one home.
pub struct KeyStore<'h> {
    home: &'h Home,
}

fn len_prefixed(aad: &mut Vec<u8>, field: &[u8]) {
    aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
    aad.extend_from_slice(field);
}

/// AAD of an entry in store format 1: id, scope and domain only.
fn wrap_aad_v1(info: &KeyInfo) -> Vec<u8> {
    let mut aad = WRAP_LABEL_V1.to_vec();
    aad.extend_from_slice(info.id.as_bytes());
    aad.extend_from_slice(info.scope.to_string().as_bytes());
    aad.push(0);
    aad.extend_from_slice(info.domain_id.as_deref().unwrap_or("").as_bytes());
    aad
}

/// AAD of an entry in store format 2: every field, each length-prefixed (u32 BE).
fn wrap_aad(info: &KeyInfo) -> Vec<u8> {
    let mut aad = WRAP_LABEL_V2.to_vec();
    len_prefixed(&mut aad, info.id.as_bytes());
    len_prefixed(&mut aad, info.scope.to_string().as_bytes());
    len_prefixed(&mut aad, info.domain_id.as_deref().unwrap_or("").as_bytes());
    len_prefixed(&mut aad, info.state.to_string().as_bytes());
    len_prefixed(&mut aad, if info.is_default { b"1" } else { b"0" });
    len_prefixed(&mut aad, info.created_at.as_bytes());
    len_prefixed(&mut aad, info.description.as_bytes());
    len_prefixed(&mut aad, info.account.as_bytes());
    len_prefixed(&mut aad, info.version.as_bytes());
    len_prefixed(&mut aad, if info.tied_to_hsm { b"1" } else { b"0" });
    aad
}

/// AAD of a tied key's blob inside the token: what never changes about the key.
fn hsm_aad(info: &KeyInfo) -> Vec<u8> {
    let mut aad = HSM_LABEL.to_vec();
    aad.extend_from_slice(info.id.as_bytes());
    aad.extend_from_slice(info.scope.to_string().as_bytes());
    aad
}

fn secret_aad(name: &str) -> Vec<u8> {
    let mut aad = SECRET_LABEL.to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn hsm_digest(blob: &[u8]) -> Key32 {
    Key32::from_slice(&Sha256::digest(blob)).expect("32 bytes")
}

/// AES-256-GCM of a variable-length secret: nonce[12] ‖ ciphertext ‖ tag[16].
fn seal_secret(root: &Key32, aad: &[u8], secret: &[u8]) -> Vec<u8> {
    use rand::RngCore;
    let mut nonce = [0u8; crate::aead::NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut buf = Zeroizing::new(secret.to_vec());
    let tag = crate::aead::seal_in_place(&crate::aead::cipher(root), &nonce, aad, &mut buf)
        .expect("a small secret is within GCM's limit");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    out
}

fn open_secret(root: &Key32, aad: &[u8], blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let n = crate::aead::NONCE_LEN;
    let t = crate::aead::TAG_LEN;
    if blob.len() < n + t || blob.len() > n + t + MAX_SECRET_LEN {
        return None;
    }
    let nonce: [u8; 12] = blob[..n].try_into().ok()?;
    let tag: [u8; 16] = blob[blob.len() - t..].try_into().ok()?;
    let mut buf = Zeroizing::new(blob[n..blob.len() - t].to_vec());
    crate::aead::open_in_place(&crate::aead::cipher(root), &nonce, aad, &mut buf, &tag).ok()?;
    Some(buf)
}

impl<'h> KeyStore<'h> {
    pub fn new(home: &'h Home) -> Self {
        KeyStore { home }
    }

    fn path_str(&self) -> String {
        self.home.keys_path().display().to_string()
    }

    fn damaged(&self, what: impl Into<String>) -> KeyError {
        KeyError::Damaged {
            path: self.path_str(),
            what: what.into(),
        }
    }

    fn read_file(&self) -> Result<Option<StoreFile>, KeyError> {
        let path = self.home.keys_path();
        // keys.json is a secret file like root.key: refused when group or others may
        // read it, so a loosened mode is noticed instead of silently tolerated.
        let bytes = match fsutil::open_secret_file(&path).and_then(|mut f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
        }) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyError::Io {
                    path: self.path_str(),
                    source,
                });
            }
        };
        let store: StoreFile = serde_json::from_slice(&bytes)
            .map_err(|e| self.damaged(format!("not valid JSON: {e}")))?;
        if store.format_version > STORE_FORMAT {
            return Err(KeyError::StoreTooNew {
                path: self.path_str(),
                found: store.format_version,
            });
        }
        Ok(Some(store))
    }

    /// Reads the store and authenticates every entry under the root key it names.
    fn load(&self) -> Result<Loaded, KeyError> {
        let Some(file) = self.read_file()? else {
            return Ok(Loaded {
                root_id: None,
                keys: Vec::new(),
                secrets: BTreeMap::new(),
            });
        };
        let v1 = file.format_version < 2;
        self.home.with_root(file.root_id, |root| {
            let root = &root.key;
            let mut keys: Vec<Entry> = Vec::with_capacity(file.keys.len());
            for k in file.keys {
                if keys.iter().any(|e| e.info.id == k.info.id) {
                    return Err(self.damaged(format!(
                        "key id {} appears twice; remove the entry that is not the real one",
                        k.info.id
                    )));
                }
                let tampered = || KeyError::EntryTampered {
                    path: self.path_str(),
                    id: k.info.id,
                };
                let raw = B64.decode(&k.wrapped).map_err(|_| tampered())?;
                let aad = if v1 {
                    wrap_aad_v1(&k.info)
                } else {
                    wrap_aad(&k.info)
                };
                let inner = crate::aead::unwrap_key(root, &aad, &raw).ok_or_else(tampered)?;
                let material = match (&k.hsm_wrapped, k.info.tied_to_hsm) {
                    (Some(h), true) => {
                        let blob = B64.decode(h).map_err(|_| tampered())?;
                        if !inner.ct_eq(&hsm_digest(&blob)) {
                            return Err(tampered());
                        }
                        Material::Hsm(blob)
                    }
                    (None, false) => Material::Key(inner),
                    _ => return Err(tampered()),
                };
                keys.push(Entry {
                    info: k.info,
                    material,
                });
            }
            let mut secrets = BTreeMap::new();
            for (name, blob) in &file.secrets {
                let raw = B64
                    .decode(blob)
                    .map_err(|_| self.damaged(format!("secret {name:?} is not base64")))?;
                let s = open_secret(root, &secret_aad(name), &raw).ok_or_else(|| {
                    self.damaged(format!(
                        "secret {name:?} does not authenticate under the root key"
                    ))
                })?;
                secrets.insert(name.clone(), s);
            }
            Ok(Loaded {
                root_id: file.root_id,
                keys,
                secrets,
            })
        })?
    }

    fn store_file(&self, loaded: &Loaded, root: &Key32, root_id: Option<Uuid>) -> StoreFile {
        StoreFile {
            format_version: STORE_FORMAT,
            root_id,
            keys: loaded
                .keys
                .iter()
                .map(|e| {
                    let aad = wrap_aad(&e.info);
                    let (wrapped, hsm_wrapped) = match &e.material {
                        Material::Key(k) => (crate::aead::wrap_key(root, &aad, k), None),
                        Material::Hsm(blob) => (
                            crate::aead::wrap_key(root, &aad, &hsm_digest(blob)),
                            Some(B64.encode(blob)),
                        ),
                    };
                    StoredKey {
                        info: e.info.clone(),
                        wrapped: B64.encode(wrapped),
                        hsm_wrapped,
                    }
                })
                .collect(),
            secrets: loaded
                .secrets
                .iter()
                .map(|(n, s)| (n.clone(), B64.encode(seal_secret(root, &secret_aad(n), s))))
                .collect(),
        }
    }

    fn write(&self, file: &StoreFile) -> Result<(), KeyError> {
        let bytes = serde_json::to_vec_pretty(file).expect("store serializes");
        fsutil::write_atomic(&self.home.keys_path(), &bytes, 0o600).map_err(|source| KeyError::Io {
            path: self.path_str(),
            source,
        })
    }

    /// Writes the store back under the current root key (every entry wrapped afresh, so
    /// changed fields are authenticated again).
    fn save(&self, _lock: &HomeLock, loaded: &Loaded) -> Result<(), KeyError> {
        let file = self.home.with_root(loaded.root_id, |u| {
            self.store_file(loaded, &u.key, u.info.root_id)
        })?;
        self.write(&file)
    }

    /// Replaces the root key: a fresh one protected as `target`, every entry and secret
    /// re-wrapped under it, in the crash-safe order of `root.rs` (next root file, then the
    /// store naming it — the commit point —, then the rename).
    fn replace_root(
        &self,
        lock: &HomeLock,
        loaded: &Loaded,
        target: Target<'_>,
    ) -> Result<RootChange, KeyError> {
        // Unlocks the current root if it is not yet.
        let previous = self.home.with_root(loaded.root_id, |u| u.info.clone())?;
        let tied: Vec<&Entry> = loaded.keys.iter().filter(|e| e.info.tied_to_hsm).collect();
        let keeps_token = matches!(target, Target::SameToken);
        if !tied.is_empty() && !keeps_token {
            return Err(KeyError::TiedKeysNeedToken {
                token: previous
                    .token
                    .as_ref()
                    .map(|t| t.token_label.clone())
                    .unwrap_or_default(),
                ids: tied
                    .iter()
                    .map(|e| e.info.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let current = self.home.take_unlocked();
        let (next, bytes) = root::create(target, current).map_err(HomeError::from)?;
        self.home.write_next_root(lock, &bytes)?;
        let file = self.store_file(loaded, &next.key, next.info.root_id);
        if let Err(e) = self.write(&file) {
            self.home.discard_next_root();
            return Err(e);
        }
        // Committed: from here on the store names the new root; a failure of the rename
        // is completed by the next holder of the lock.
        let current = next.info.clone();
        self.home.set_unlocked(next);
        self.home.commit_next_root()?;
        Ok(RootChange {
            previous,
            current,
            rewrapped_keys: loaded.keys.len() - tied.len(),
            tied_keys: tied.len(),
            rewrapped_secrets: loaded.secrets.len(),
        })
    }

    /// `vault home rotate-root`: a fresh root key, protected the same way.
    pub fn rotate_root(&self, lock: &HomeLock) -> Result<RootChange, KeyError> {
        let loaded = self.load()?;
        let mode = self.home.with_root(loaded.root_id, |u| u.info.mode)?;
        let target = match mode {
            Mode::File => Target::File,
            Mode::Passphrase => Target::SamePassphrase,
            Mode::Pkcs11 => Target::SameToken,
        };
        self.replace_root(lock, &loaded, target)
    }

    /// `vault home protect`: a fresh root key protected as `target`.
    pub fn protect(&self, lock: &HomeLock, target: Target<'_>) -> Result<RootChange, KeyError> {
        let loaded = self.load()?;
        self.replace_root(lock, &loaded, target)
    }

    /// How the root key is protected, and what each key depends on.
    pub fn root_info(&self) -> Result<RootInfo, KeyError> {
        Ok(self.home.root_info()?)
    }

    /// What losing one thing would lose for `key`: `file`, `passphrase` or
    /// `pkcs11:<token>` for the home's root, `hsm:<token>` for a key tied to the token.
    pub fn dependency(&self, key: &KeyInfo) -> Result<String, KeyError> {
        let info = self.home.root_info()?;
        Ok(if key.tied_to_hsm {
            format!(
                "hsm:{}",
                info.token
                    .as_ref()
                    .map(|t| t.token_label.as_str())
                    .unwrap_or("?")
            )
        } else {
            info.dependency()
        })
    }

    /// Unlocks the root key and authenticates every entry (asking for a passphrase or
    /// PIN if the mode needs one), so that later lookups fail only for missing keys.
    pub fn unlock(&self) -> Result<(), KeyError> {
        self.load().map(|_| ())
    }

    /// What each key depends on, without unlocking the root (see [`Dependencies`]).
    pub fn dependencies(&self) -> Result<Dependencies, KeyError> {
        let root = self.home.root_info()?;
        let keys = self
            .read_file()?
            .map(|f| {
                f.keys
                    .iter()
                    .map(|k| (k.info.id, k.info.tied_to_hsm))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Dependencies { root, keys })
    }

    /// All keys, optionally filtered by scope and domain, oldest first.
    pub fn list(
        &self,
        scope: Option<Scope>,
        domain: Option<&str>,
    ) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self
            .load()?
            .keys
            .into_iter()
            .map(|k| k.info)
            .filter(|k| scope.is_none_or(|s| k.scope == s))
            .filter(|k| domain.is_none_or(|d| k.domain_id.as_deref() == Some(d)))
            .collect())
    }

    pub fn get(&self, id: &Uuid) -> Result<KeyInfo, KeyError> {
        self.load()?
            .keys
            .into_iter()
            .find(|k| &k.info.id == id)
            .map(|k| k.info)
            .ok_or_else(|| KeyError::NotFound(id.to_string()))
    }

    /// Finds a key by full id or unambiguous prefix.
    pub fn find(&self, id_or_prefix: &str) -> Result<KeyInfo, KeyError> {
        let needle = id_or_prefix.to_ascii_lowercase();
        let mut hits = self
            .load()?
            .keys
            .into_iter()
            .filter(|k| k.info.id.to_string().starts_with(&needle))
            .map(|k| k.info);
        match (hits.next(), hits.next()) {
            (Some(k), None) if !needle.is_empty() => Ok(k),
            _ => Err(KeyError::NotFound(id_or_prefix.to_string())),
        }
    }

    /// The default key of a scope/domain, if any.
    pub fn default_key(
        &self,
        scope: Scope,
        domain: Option<&str>,
    ) -> Result<Option<KeyInfo>, KeyError> {
        Ok(self
            .list(Some(scope), None)?
            .into_iter()
            .find(|k| k.is_default && k.in_scope(scope, domain)))
    }

    /// Creates a random 256-bit key. The first key of a scope/domain becomes its default.
    pub fn create(
        &self,
        lock: &HomeLock,
        scope: Scope,
        domain: Option<String>,
        make_default: bool,
        description: &str,
        account: &str,
    ) -> Result<KeyInfo, KeyError> {
        let new = NewKeyInfo {
            id: Uuid::new_v4(),
            scope,
            domain,
            description,
            account,
        };
        self.create_as(lock, new, make_default)
    }

    /// [`KeyStore::create`] under an id chosen by the caller (so that it can be recorded
    /// before the key exists); a clash with an existing id is refused.
    pub fn create_as(
        &self,
        lock: &HomeLock,
        new: NewKeyInfo<'_>,
        make_default: bool,
    ) -> Result<KeyInfo, KeyError> {
        let info = new.info();
        self.insert(lock, info, Material::Key(Key32::random()), make_default)
    }

    /// Creates a system key tied to the HSM (`keys create --tied-to-hsm`): its material
    /// is generated here and wrapped by the PKCS#11 token's key, never by the root key.
    pub fn create_tied(
        &self,
        lock: &HomeLock,
        new: NewKeyInfo<'_>,
        make_default: bool,
    ) -> Result<KeyInfo, KeyError> {
        if new.scope != Scope::System || new.domain.is_some() {
            return Err(KeyError::TiedDomainKey);
        }
        let loaded = self.load()?;
        let mut info = new.info();
        info.tied_to_hsm = true;
        let key = Key32::random();
        let blob = self.home.with_root(loaded.root_id, |u| match u.token() {
            Some(t) => t
                .encrypt(&hsm_aad(&info), key.expose())
                .map_err(|e| KeyError::Home(HomeError::Root(e.into()))),
            None => Err(KeyError::NoToken(u.info.mode)),
        })??;
        self.insert_into(lock, loaded, info, Material::Hsm(blob), make_default)
    }

    fn insert(
        &self,
        lock: &HomeLock,
        info: KeyInfo,
        material: Material,
        make_default: bool,
    ) -> Result<KeyInfo, KeyError> {
        let loaded = self.load()?;
        self.insert_into(lock, loaded, info, material, make_default)
    }

    fn insert_into(
        &self,
        lock: &HomeLock,
        mut loaded: Loaded,
        mut info: KeyInfo,
        material: Material,
        make_default: bool,
    ) -> Result<KeyInfo, KeyError> {
        if loaded.keys.iter().any(|k| k.info.id == info.id) {
            return Err(KeyError::IdClash(info.id));
        }
        let has_default = loaded
            .keys
            .iter()
            .any(|k| k.info.is_default && k.info.in_scope(info.scope, info.domain_id.as_deref()));
        let becomes_default = info.state == KeyState::Active && (make_default || !has_default);
        if becomes_default {
            for k in loaded.keys.iter_mut() {
                if k.info.in_scope(info.scope, info.domain_id.as_deref()) {
                    k.info.is_default = false;
                }
            }
        }
        info.is_default = becomes_default;
        loaded.keys.push(Entry {
            info: info.clone(),
            material,
        });
        self.save(lock, &loaded)?;
        Ok(info)
    }

    /// Makes `id` the default of its scope/domain. A retired key cannot be the default.
    pub fn set_default(&self, lock: &HomeLock, id: &Uuid) -> Result<KeyInfo, KeyError> {
        let mut loaded = self.load()?;
        let target = loaded.keys[loaded.pos(id)?].info.clone();
        match target.state {
            KeyState::Active => {}
            KeyState::Retired => return Err(KeyError::Retired(*id)),
            KeyState::Compromised => return Err(KeyError::Compromised(*id)),
        }
        for k in loaded.keys.iter_mut() {
            if k.info.in_scope(target.scope, target.domain_id.as_deref()) {
                k.info.is_default = &k.info.id == id;
            }
        }
        self.save(lock, &loaded)?;
        self.get(id)
    }

    /// Sets the state of a key (e.g. marks it compromised). A key that is no longer active
    /// stops being the default; the entry is re-authenticated with its new state.
    pub fn set_state(
        &self,
        lock: &HomeLock,
        id: &Uuid,
        state: KeyState,
    ) -> Result<KeyInfo, KeyError> {
        let mut loaded = self.load()?;
        let pos = loaded.pos(id)?;
        let k = &mut loaded.keys[pos].info;
        k.state = state;
        if state != KeyState::Active {
            k.is_default = false;
        }
        let info = k.clone();
        self.save(lock, &loaded)?;
        Ok(info)
    }

    /// New default for the scope/domain; the previous default is retired.
    pub fn rotate(
        &self,
        lock: &HomeLock,
        scope: Scope,
        domain: Option<String>,
        account: &str,
    ) -> Result<Rotation, KeyError> {
        let new = NewKeyInfo {
            id: Uuid::new_v4(),
            scope,
            domain,
            description: "",
            account,
        };
        self.rotate_to(lock, new)
    }

    /// [`KeyStore::rotate`] to a new key whose id the caller chose (see [`Self::create_as`]).
    pub fn rotate_to(&self, lock: &HomeLock, new: NewKeyInfo<'_>) -> Result<Rotation, KeyError> {
        let (scope, domain) = (new.scope, new.domain.clone());
        let old =
            self.default_key(scope, domain.as_deref())?
                .ok_or_else(|| KeyError::NoDefault {
                    scope,
                    domain: domain.clone(),
                })?;
        let mut loaded = self.load()?;
        if loaded.keys.iter().any(|k| k.info.id == new.id) {
            return Err(KeyError::IdClash(new.id));
        }
        let mut new_key = new.info();
        new_key.is_default = true;
        for k in loaded.keys.iter_mut() {
            if k.info.in_scope(scope, new_key.domain_id.as_deref()) {
                k.info.is_default = false;
            }
            if k.info.id == old.id {
                k.info.state = KeyState::Retired;
            }
        }
        loaded.keys.push(Entry {
            info: new_key.clone(),
            material: Material::Key(Key32::random()),
        });
        // One write: a kill leaves the old default or the new one, never two or none.
        self.save(lock, &loaded)?;
        Ok(Rotation {
            new_key,
            retired_key: self.get(&old.id)?,
        })
    }

    /// Removes a key and crypto-shreds it: the remaining keys are re-wrapped under a
    /// fresh root key, so an older copy of `keys.json` cannot revive it. `referenced_by`
    /// lists archives in the home sealed under it; unless `force`, a key in use or a
    /// default key is kept.
    pub fn delete(
        &self,
        lock: &HomeLock,
        id: &Uuid,
        force: bool,
        referenced_by: &[String],
    ) -> Result<KeyInfo, KeyError> {
        let mut loaded = self.load()?;
        let pos = loaded.pos(id)?;
        if !force && !referenced_by.is_empty() {
            let mut list = referenced_by
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if referenced_by.len() > 5 {
                list.push_str(", …");
            }
            return Err(KeyError::InUse {
                id: *id,
                count: referenced_by.len(),
                list,
            });
        }
        if !force && loaded.keys[pos].info.is_default {
            return Err(KeyError::IsDefault(*id));
        }
        let removed = loaded.keys.remove(pos);
        let mode = self.home.with_root(loaded.root_id, |u| u.info.mode)?;
        let target = match mode {
            Mode::File => Target::File,
            Mode::Passphrase => Target::SamePassphrase,
            Mode::Pkcs11 => Target::SameToken,
        };
        self.replace_root(lock, &loaded, target)?;
        Ok(removed.info)
    }

    /// The key material, for sealing (`for_encryption`: must be active) or opening.
    pub fn material(&self, id: &Uuid, for_encryption: bool) -> Result<(KeyInfo, Key32), KeyError> {
        let loaded = self.load()?;
        self.material_in(&loaded, id, for_encryption)
    }

    /// The default key of a scope/domain with its material, read from one snapshot of
    /// the store: a concurrent `keys rotate` either happened before (the new key is the
    /// default) or after (the old key was still active), never in between.
    pub fn default_material(
        &self,
        scope: Scope,
        domain: Option<&str>,
    ) -> Result<Option<(KeyInfo, Key32)>, KeyError> {
        let loaded = self.load()?;
        let Some(id) = loaded
            .keys
            .iter()
            .find(|k| k.info.is_default && k.info.in_scope(scope, domain))
            .map(|k| k.info.id)
        else {
            return Ok(None);
        };
        self.material_in(&loaded, &id, true).map(Some)
    }

    fn material_in(
        &self,
        loaded: &Loaded,
        id: &Uuid,
        for_encryption: bool,
    ) -> Result<(KeyInfo, Key32), KeyError> {
        let entry = &loaded.keys[loaded.pos(id)?];
        if for_encryption {
            match entry.info.state {
                KeyState::Active => {}
                KeyState::Retired => return Err(KeyError::Retired(*id)),
                KeyState::Compromised => return Err(KeyError::Compromised(*id)),
            }
        }
        let key = match &entry.material {
            Material::Key(k) => k.duplicate(),
            Material::Hsm(blob) => self.home.with_root(loaded.root_id, |u| match u.token() {
                Some(t) => {
                    let raw = t
                        .decrypt(&hsm_aad(&entry.info), blob)
                        .map_err(|e| KeyError::Home(HomeError::Root(e.into())))?;
                    Key32::from_slice(&raw).ok_or_else(|| KeyError::EntryTampered {
                        path: self.path_str(),
                        id: *id,
                    })
                }
                None => Err(KeyError::NoToken(u.info.mode)),
            })??,
        };
        Ok((entry.info.clone(), key))
    }

    /// Writes the key-file bytes for `id` under `password`. A key tied to the HSM is
    /// refused: its material must never exist outside the token but transiently.
    pub fn export(
        &self,
        id: &Uuid,
        password: &Password,
        params: KdfParams,
    ) -> Result<(KeyInfo, Vec<u8>), KeyError> {
        let info = self.get(id)?;
        if info.tied_to_hsm {
            let token = self
                .home
                .root_info()?
                .token
                .map(|t| t.token_label)
                .unwrap_or_default();
            return Err(KeyError::TiedNotExportable { id: *id, token });
        }
        let (info, key) = self.material(id, false)?;
        let meta = keyfile::ExportMeta {
            id: info.id,
            scope: info.scope,
            domain_id: info.domain_id.clone(),
            created_at: info.created_at.clone(),
            state: info.state,
            description: info.description.clone(),
        };
        let bytes = keyfile::export(&key, &meta, password, params)?;
        Ok((info, bytes))
    }

    /// Imports a key file. `scope_flag` must match the file's scope (ksctl semantics: a
    /// domain key file needs `--scope domain`). `limits` bounds the file's KDF cost.
    pub fn import(
        &self,
        lock: &HomeLock,
        bytes: &[u8],
        scope_flag: Scope,
        password: &Password,
        account: &str,
    ) -> Result<Imported, KeyError> {
        self.import_with(
            lock,
            bytes,
            scope_flag,
            password,
            account,
            kdf::ImportLimit::Default,
        )
    }

    /// [`KeyStore::import`] with an explicit KDF cost ceiling.
    pub fn import_with(
        &self,
        lock: &HomeLock,
        bytes: &[u8],
        scope_flag: Scope,
        password: &Password,
        account: &str,
        limit: kdf::ImportLimit,
    ) -> Result<Imported, KeyError> {
        let parsed = keyfile::parse(bytes)?;
        parsed
            .meta
            .kdf
            .params
            .check_import(limit)
            .map_err(KeyFileError::from)?;
        if parsed.meta.scope != scope_flag {
            return Err(KeyError::ScopeMismatch {
                file: parsed.meta.scope,
                flag: scope_flag,
            });
        }
        let domain = match parsed.meta.scope {
            Scope::System => None,
            Scope::Domain => resolve_domain(Scope::Domain, parsed.meta.domain_id.as_deref())?,
        };
        // Loaded (and so authenticated) before the KDF runs: a damaged store is reported
        // as such, and an id already present is never added a second time.
        let loaded = self.load()?;
        let key = parsed.open(password)?;
        if let Some(existing) = loaded.keys.iter().find(|k| k.info.id == parsed.meta.keyid) {
            let same = match &existing.material {
                Material::Key(m) => m.ct_eq(&key),
                Material::Hsm(_) => false,
            };
            return if same
                && existing.info.scope == parsed.meta.scope
                && existing.info.domain_id == domain
            {
                Ok(Imported::AlreadyPresent(existing.info.clone()))
            } else {
                Err(KeyError::IdClash(parsed.meta.keyid))
            };
        }
        let info = KeyInfo {
            scope: parsed.meta.scope,
            account: account.to_string(),
            domain_id: domain,
            version: KEY_VERSION.to_string(),
            id: parsed.meta.keyid,
            created_at: parsed.meta.created_at.clone(),
            is_default: false,
            state: parsed.meta.state,
            description: parsed.meta.description.clone(),
            tied_to_hsm: false,
        };
        // An imported key never takes over as default by itself (ksctl semantics), except
        // in a scope that has no default yet, where it would otherwise be unusable.
        self.insert_into(lock, loaded, info, Material::Key(key), false)
            .map(Imported::New)
    }

    /// Keeps a secret of the home (e.g. its Ed25519 signing key) wrapped under the root
    /// key, inside the key store, so root rotation and mode changes re-wrap it with the
    /// keys in the same atomic write.
    pub fn put_secret(&self, lock: &HomeLock, name: &str, secret: &[u8]) -> Result<(), KeyError> {
        if secret.len() > MAX_SECRET_LEN {
            return Err(KeyError::SecretTooLarge(name.to_string()));
        }
        let mut loaded = self.load()?;
        loaded
            .secrets
            .insert(name.to_string(), Zeroizing::new(secret.to_vec()));
        self.save(lock, &loaded)
    }

    /// A secret kept by [`KeyStore::put_secret`], unwrapped; `None` if there is none.
    pub fn secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
        Ok(self.load()?.secrets.remove(name))
    }
}

/// A key about to be created: its id (chosen first, so it can be recorded before the key
/// exists) and what describes it.
pub struct NewKeyInfo<'a> {
    pub id: Uuid,
    pub scope: Scope,
    pub domain: Option<String>,
    pub description: &'a str,
    pub account: &'a str,
}

impl NewKeyInfo<'_> {
    fn info(self) -> KeyInfo {
        KeyInfo {
            scope: self.scope,
            account: self.account.to_string(),
            domain_id: self.domain,
            version: KEY_VERSION.to_string(),
            id: self.id,
            created_at: crate::clock::now_rfc3339(crate::clock::Precision::Nanos),
            is_default: false,
            state: KeyState::Active,
            description: self.description.to_string(),
            tied_to_hsm: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Home) {
        let t = tempfile::tempdir().unwrap();
        let h = Home::open(t.path()).unwrap();
        (t, h)
    }

    #[test]
    fn group_readable_key_store_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        ks.create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let p = home.keys_path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = ks.list(None, None).err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ks.list(None, None).unwrap().len(), 1);
    }

    #[test]
    fn first_key_of_scope_becomes_default_and_rotation_retires() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        assert!(a.is_default);
        let b = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        assert!(!b.is_default);
        let d = ks
            .create(
                &lock,
                Scope::Domain,
                Some(ROOT_DOMAIN.into()),
                false,
                "",
                "me",
            )
            .unwrap();
        assert!(d.is_default, "separate scope has its own default");
        let r = ks.rotate(&lock, Scope::System, None, "me").unwrap();
        assert_eq!(r.retired_key.id, a.id);
        assert_eq!(r.retired_key.state, KeyState::Retired);
        let sys = ks.list(Some(Scope::System), None).unwrap();
        assert_eq!(sys.iter().filter(|k| k.is_default).count(), 1);
        assert!(
            ks.material(&a.id, true).is_err(),
            "retired key must not encrypt"
        );
        assert!(
            ks.material(&a.id, false).is_ok(),
            "retired key still decrypts"
        );
        assert!(matches!(
            ks.set_default(&lock, &a.id),
            Err(KeyError::Retired(_))
        ));
    }

    #[test]
    fn keys_at_rest_are_not_plaintext_and_entries_cannot_be_swapped() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let (_, key) = ks.material(&a.id, false).unwrap();
        let text = std::fs::read_to_string(home.keys_path()).unwrap();
        assert!(!text.contains(&hex::encode(key.expose())));
        assert!(!text.contains(&B64.encode(key.expose())));
        // Moving a wrapped blob to another entry must not yield a usable key.
        let b = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let mut store: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(home.keys_path()).unwrap()).unwrap();
        let wa = store["keys"][0]["wrapped"].clone();
        store["keys"][1]["wrapped"] = wa;
        std::fs::write(home.keys_path(), serde_json::to_vec(&store).unwrap()).unwrap();
        match ks.material(&b.id, false) {
            Err(KeyError::EntryTampered { id, .. }) => assert_eq!(id, b.id),
            other => panic!("swapped blob accepted: {:?}", other.map(|r| r.0)),
        }
    }

    fn write600(p: &std::path::Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, bytes).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn edit_store(home: &Home, f: impl FnOnce(&mut serde_json::Value)) {
        let mut store: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.keys_path()).unwrap()).unwrap();
        f(&mut store);
        std::fs::write(home.keys_path(), serde_json::to_vec(&store).unwrap()).unwrap();
    }

    /// Issue 13.4: a retired key made the default again by editing keys.json.
    #[test]
    fn edited_state_or_default_is_refused_naming_the_key() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let old = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let r = ks.rotate(&lock, Scope::System, None, "me").unwrap();
        for field in ["state", "isDefault", "createdAt", "description", "scope"] {
            let before = std::fs::read(home.keys_path()).unwrap();
            edit_store(&home, |s| {
                let e = &mut s["keys"][0];
                match field {
                    "state" => e["state"] = "active".into(),
                    "isDefault" => e["isDefault"] = true.into(),
                    "createdAt" => e["createdAt"] = "2030-01-01T00:00:00Z".into(),
                    "description" => e["description"] = "mine now".into(),
                    _ => e["scope"] = "domain".into(),
                }
            });
            for res in [
                ks.list(None, None).map(|_| ()),
                ks.material(&old.id, false).map(|_| ()),
                ks.material(&r.new_key.id, true).map(|_| ()),
                ks.create(&lock, Scope::System, None, false, "", "me")
                    .map(|_| ()),
            ] {
                match res {
                    Err(KeyError::EntryTampered { id, .. }) => assert_eq!(id, old.id, "{field}"),
                    other => panic!("{field}: edited entry accepted: {:?}", other.err()),
                }
            }
            let err = ks.list(None, None).unwrap_err().to_string();
            assert!(
                err.contains(&old.id.to_string()) && err.contains("edited"),
                "{err}"
            );
            std::fs::write(home.keys_path(), before).unwrap();
        }
        assert_eq!(ks.list(None, None).unwrap().len(), 2);
    }

    #[test]
    fn compromised_key_decrypts_never_encrypts_and_the_state_is_authenticated() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let k = ks.set_state(&lock, &a.id, KeyState::Compromised).unwrap();
        assert_eq!(k.state, KeyState::Compromised);
        assert!(!k.is_default, "a compromised key is no default");
        assert!(matches!(
            ks.material(&a.id, true),
            Err(KeyError::Compromised(_))
        ));
        assert!(ks.material(&a.id, false).is_ok());
        assert!(matches!(
            ks.set_default(&lock, &a.id),
            Err(KeyError::Compromised(_))
        ));
        let text = std::fs::read_to_string(home.keys_path()).unwrap();
        assert!(text.contains("\"compromised\""), "{text}");
        edit_store(&home, |s| s["keys"][0]["state"] = "active".into());
        assert!(matches!(
            ks.material(&a.id, true),
            Err(KeyError::EntryTampered { .. })
        ));
    }

    /// Issue 13.10: an old copy of keys.json must not revive a deleted key.
    #[test]
    fn delete_crypto_shreds_with_a_fresh_root_key() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let keep = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let gone = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        ks.put_secret(&lock, "signing", b"ed25519 secret").unwrap();
        let root_before = home.root_info().unwrap().root_id;
        let old_store = std::fs::read(home.keys_path()).unwrap();
        ks.delete(&lock, &gone.id, false, &[]).unwrap();
        assert_ne!(home.root_info().unwrap().root_id, root_before);
        assert!(!home.dir().join("root.key.next").exists());
        let (_, k) = ks.material(&keep.id, true).unwrap();
        assert_eq!(
            ks.secret("signing").unwrap().unwrap().as_slice(),
            b"ed25519 secret"
        );
        // Put the old store back: it names the old root, which no longer exists.
        std::fs::write(home.keys_path(), &old_store).unwrap();
        let fresh = Home::open(home.dir()).unwrap();
        let err = KeyStore::new(&fresh)
            .material(&gone.id, false)
            .err()
            .unwrap();
        assert!(
            matches!(err, KeyError::Home(HomeError::RootMismatch { .. })),
            "{err}"
        );
        // …and pointing it at the new root id does not help: nothing unwraps.
        let new_id = fresh.root_info().unwrap().root_id.unwrap();
        edit_store(&fresh, |s| s["rootId"] = new_id.to_string().into());
        let fresh = Home::open(home.dir()).unwrap();
        assert!(matches!(
            KeyStore::new(&fresh).material(&gone.id, false),
            Err(KeyError::EntryTampered { .. })
        ));
        drop(k);
    }

    /// Issue 13.10: uploading next to a damaged entry added a second entry with its id.
    #[test]
    fn duplicate_ids_are_refused() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let pw = Password::new("a long password".into());
        let fast = KdfParams {
            memory_kib: kdf::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        };
        let (_, file) = ks.export(&a.id, &pw, fast).unwrap();
        let good = std::fs::read(home.keys_path()).unwrap();
        edit_store(&home, |s| s["keys"][0]["wrapped"] = "AAAA".into());
        let err = ks
            .import(&lock, &file, Scope::System, &pw, "me")
            .err()
            .unwrap();
        assert!(matches!(err, KeyError::EntryTampered { .. }), "{err}");
        let n =
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(home.keys_path()).unwrap())
                .unwrap()["keys"]
                .as_array()
                .unwrap()
                .len();
        assert_eq!(n, 1, "nothing was added");
        // A store that already has two entries with one id is damaged.
        write600(&home.keys_path(), &good);
        edit_store(&home, |s| {
            let e = s["keys"][0].clone();
            s["keys"].as_array_mut().unwrap().push(e);
        });
        let err = ks.list(None, None).err().unwrap();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    /// Homes written before this version (VAULTRK1 root, store format 1) keep opening and
    /// are upgraded on the next write.
    #[test]
    fn format_1_store_and_legacy_root_open_and_upgrade() {
        let (_t, home) = setup();
        let root = Key32::random();
        let mut legacy = root::MAGIC_LEGACY.to_vec();
        legacy.extend_from_slice(root.expose());
        write600(&home.dir().join("root.key"), &legacy);
        let info = NewKeyInfo {
            id: Uuid::new_v4(),
            scope: Scope::System,
            domain: None,
            description: "",
            account: "me",
        }
        .info();
        let key = Key32::random();
        let mut stored_info = info.clone();
        stored_info.is_default = true;
        let v1 = serde_json::json!({
            "formatVersion": 1,
            "keys": [{
                "scope": "system", "account": "me", "version": "1", "id": info.id,
                "createdAt": info.created_at, "isDefault": true, "state": "active",
                "wrapped": B64.encode(crate::aead::wrap_key(&root, &wrap_aad_v1(&stored_info), &key)),
            }]
        });
        write600(&home.keys_path(), &serde_json::to_vec(&v1).unwrap());
        let home = Home::open(home.dir()).unwrap();
        let ks = KeyStore::new(&home);
        let (got, m) = ks.material(&info.id, true).unwrap();
        assert!(m.ct_eq(&key) && got.is_default);
        let lock = home.lock().unwrap();
        ks.create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let text = std::fs::read_to_string(home.keys_path()).unwrap();
        assert!(text.contains("\"formatVersion\": 2"), "{text}");
        assert!(ks.material(&info.id, true).unwrap().1.ct_eq(&key));
        // Rotating the root gives a legacy home a root id.
        ks.rotate_root(&lock).unwrap();
        assert!(home.root_info().unwrap().root_id.is_some());
        assert!(ks.material(&info.id, true).unwrap().1.ct_eq(&key));
    }

    /// The three states a kill can leave a root change in, replayed by hand: each opens
    /// with exactly one usable root, and the next lock holder tidies up.
    #[test]
    fn interrupted_root_change_leaves_old_or_new_root() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let (_, key) = ks.material(&a.id, false).unwrap();
        let dir = home.dir().to_path_buf();
        let old_root = std::fs::read(dir.join("root.key")).unwrap();
        let old_store = std::fs::read(home.keys_path()).unwrap();
        ks.rotate_root(&lock).unwrap();
        drop(lock);
        let new_root = std::fs::read(dir.join("root.key")).unwrap();
        let new_store = std::fs::read(home.keys_path()).unwrap();
        let put = |root: &[u8], next: Option<&[u8]>, store: &[u8]| {
            write600(&dir.join("root.key"), root);
            match next {
                Some(n) => write600(&dir.join("root.key.next"), n),
                None => {
                    let _ = std::fs::remove_file(dir.join("root.key.next"));
                }
            }
            write600(&dir.join("keys.json"), store);
        };
        // Killed after writing root.key.next, before the store: the old root serves.
        put(&old_root, Some(&new_root), &old_store);
        let h = Home::open(&dir).unwrap();
        assert!(
            KeyStore::new(&h)
                .material(&a.id, false)
                .unwrap()
                .1
                .ct_eq(&key)
        );
        drop(h.lock().unwrap());
        assert!(
            !dir.join("root.key.next").exists(),
            "uncommitted next root removed"
        );
        assert_eq!(std::fs::read(dir.join("root.key")).unwrap(), old_root);
        // Killed after the store, before the rename: the new root serves from .next.
        put(&old_root, Some(&new_root), &new_store);
        let h = Home::open(&dir).unwrap();
        assert!(
            KeyStore::new(&h)
                .material(&a.id, false)
                .unwrap()
                .1
                .ct_eq(&key)
        );
        drop(h.lock().unwrap());
        assert!(!dir.join("root.key.next").exists());
        assert_eq!(std::fs::read(dir.join("root.key")).unwrap(), new_root);
        assert!(
            KeyStore::new(&h)
                .material(&a.id, false)
                .unwrap()
                .1
                .ct_eq(&key)
        );
    }

    #[test]
    fn passphrase_mode_protect_and_back() {
        struct Pw;
        impl root::Unlocker for Pw {
            fn passphrase(&self) -> Result<Password, root::RootError> {
                Ok(Password::new("root passphrase 1".into()))
            }
            fn pin(&self, _: &token::TokenConfig) -> Result<Password, root::RootError> {
                unreachable!()
            }
        }
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let (_, key) = ks.material(&a.id, false).unwrap();
        let pw = Password::new("root passphrase 1".into());
        let fast = KdfParams {
            memory_kib: kdf::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        };
        let ch = ks.protect(&lock, Target::Passphrase(&pw, fast)).unwrap();
        assert_eq!(
            (ch.previous.mode, ch.current.mode),
            (Mode::File, Mode::Passphrase)
        );
        assert_eq!(ch.rewrapped_keys, 1);
        drop(lock);
        // Without the passphrase nothing opens; with it, the same key.
        let locked = Home::open(home.dir()).unwrap();
        assert!(matches!(
            KeyStore::new(&locked).material(&a.id, false),
            Err(KeyError::Home(HomeError::Root(
                root::RootError::PassphraseNeeded
            )))
        ));
        let unlocked = Home::open(home.dir()).unwrap().with_unlocker(Box::new(Pw));
        let ks2 = KeyStore::new(&unlocked);
        assert!(ks2.material(&a.id, false).unwrap().1.ct_eq(&key));
        let lock = unlocked.lock().unwrap();
        ks2.rotate_root(&lock).unwrap();
        assert_eq!(unlocked.root_info().unwrap().mode, Mode::Passphrase);
        ks2.protect(&lock, Target::File).unwrap();
        assert_eq!(unlocked.root_info().unwrap().mode, Mode::File);
        assert!(ks2.material(&a.id, false).unwrap().1.ct_eq(&key));
    }

    #[test]
    fn export_import_round_trip_and_conflicts() {
        let (_t, home_a) = setup();
        let (_t2, home_b) = setup();
        let ka = KeyStore::new(&home_a);
        let kb = KeyStore::new(&home_b);
        let la = home_a.lock().unwrap();
        let lb = home_b.lock().unwrap();
        let k = ka
            .create(&la, Scope::Domain, Some("d1".into()), false, "x", "me")
            .unwrap();
        let pw = Password::new("a long password".into());
        let fast = KdfParams {
            memory_kib: kdf::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        };
        let (_, bytes) = ka.export(&k.id, &pw, fast).unwrap();
        assert!(matches!(
            kb.import(&lb, &bytes, Scope::System, &pw, "me"),
            Err(KeyError::ScopeMismatch { .. })
        ));
        let Imported::New(got) = kb.import(&lb, &bytes, Scope::Domain, &pw, "me").unwrap() else {
            panic!("expected a new key");
        };
        assert_eq!(got.id, k.id);
        assert_eq!(got.domain_id.as_deref(), Some("d1"));
        let (_, ma) = ka.material(&k.id, false).unwrap();
        let (_, mb) = kb.material(&k.id, false).unwrap();
        assert!(ma.ct_eq(&mb));
        assert!(matches!(
            kb.import(&lb, &bytes, Scope::Domain, &pw, "me").unwrap(),
            Imported::AlreadyPresent(_)
        ));
        // Same id, different material: refused.
        let other = keyfile::export(
            &Key32::random(),
            &keyfile::ExportMeta {
                id: k.id,
                scope: Scope::Domain,
                domain_id: Some("d1".into()),
                created_at: k.created_at.clone(),
                state: KeyState::Active,
                description: String::new(),
            },
            &pw,
            fast,
        )
        .unwrap();
        assert!(matches!(
            kb.import(&lb, &other, Scope::Domain, &pw, "me"),
            Err(KeyError::IdClash(_))
        ));
    }

    #[test]
    fn delete_refuses_in_use_and_default_without_force() {
        let (_t, home) = setup();
        let ks = KeyStore::new(&home);
        let lock = home.lock().unwrap();
        let a = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let b = ks
            .create(&lock, Scope::System, None, false, "", "me")
            .unwrap();
        let err = ks
            .delete(&lock, &b.id, false, &["arch-1".into()])
            .unwrap_err();
        assert!(err.to_string().contains("arch-1"), "{err}");
        assert!(matches!(
            ks.delete(&lock, &a.id, false, &[]),
            Err(KeyError::IsDefault(_))
        ));
        ks.delete(&lock, &b.id, false, &[]).unwrap();
        assert!(matches!(ks.get(&b.id), Err(KeyError::NotFound(_))));
    }

    #[test]
    fn domain_resolution() {
        assert_eq!(
            resolve_domain(Scope::Domain, None).unwrap().as_deref(),
            Some(ROOT_DOMAIN)
        );
        assert!(matches!(
            resolve_domain(Scope::System, Some("x")),
            Err(KeyError::DomainWithSystemScope)
        ));
        assert!(matches!(
            resolve_domain(Scope::Domain, Some("../etc")),
            Err(KeyError::BadDomain(_))
        ));
    }
}
