//! Backup keys: creation, scopes and defaults, rotation, deletion, export and import.
//!
//! Invariants:
//! - Key material never rests in plaintext: `keys.json` holds each key wrapped with
//!   AES-256-GCM under the home's root key, with the key's id, scope and domain as AAD,
//!   so a swapped or edited entry fails to unwrap instead of silently changing meaning.
//! - Each scope (each domain, for domain keys) has at most one default key, and a default
//!   is always `active`. Rotation makes a new default and retires the old one: a retired
//!   key still decrypts but never encrypts.
//! - Keys are never copied anywhere automatically: `export`/`import` move them.
pub mod kdf;
pub mod keyfile;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::errors::{Classify, Kind};
use crate::fsutil;
pub use crate::home::{Home, HomeError, HomeLock};
use crate::secret::{Key32, Password};
use kdf::KdfParams;
use keyfile::KeyFileError;

/// The domain a domain-scoped key belongs to when none is named (CipherTrust's root domain).
pub const ROOT_DOMAIN: &str = "00000000-0000-0000-0000-000000000000";
/// The `version` field of key records: the key-file format they export to.
pub const KEY_VERSION: &str = "1";
const STORE_FORMAT: u32 = 1;
const WRAP_LABEL: &[u8] = b"vault.home.v1 backup-key";

/// Scopes are shared with archives: a system archive needs a system key, a domain
/// archive a key of its domain.
pub use crate::scope::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    #[default]
    Active,
    Retired,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyState::Active => "active",
            KeyState::Retired => "retired",
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
    /// base64(nonce[12] || ciphertext[32] || tag[16]) under the root key.
    wrapped: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoreFile {
    format_version: u32,
    keys: Vec<StoredKey>,
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
    #[error("key store {path} was written by a newer vault (store format {found}); upgrade vault")]
    StoreTooNew { path: String, found: u32 },
    #[error("no backup key with id {0}; run 'vault keys list' to see the keys in this home")]
    NotFound(String),
    #[error("no default {scope} key{domain}; create one with 'vault keys create --scope {scope}{flag} --default' or pick one with 'vault keys set-default --id ID'", domain = .domain.as_ref().map(|d| format!(" for domain {d}")).unwrap_or_default(), flag = .domain.as_ref().map(|d| format!(" --domain {d}")).unwrap_or_default())]
    NoDefault {
        scope: Scope,
        domain: Option<String>,
    },
    #[error(
        "key {0} is retired: it can decrypt but not encrypt; use --key with an active key or run 'vault keys rotate'"
    )]
    Retired(Uuid),
    #[error("--domain applies only to domain keys; add --scope domain or drop --domain")]
    DomainWithSystemScope,
    #[error(
        "invalid domain id {0:?}: use letters, digits, '-', '_' or '.', at most 128 characters"
    )]
    BadDomain(String),
    #[error(
        "the key file holds a {file} key but --scope is {flag}; pass --scope {file} to import it"
    )]
    ScopeMismatch { file: Scope, flag: Scope },
    #[error(
        "a different key with id {0} is already in this home; refusing to overwrite it (delete it first if you are sure)"
    )]
    IdClash(Uuid),
    #[error(
        "key {id} protects {count} archive(s) in this home ({list}); rewrap them with 'vault backup rewrap --all --from {id}' first, or pass --force to delete anyway (those archives become unreadable)"
    )]
    InUse {
        id: Uuid,
        count: usize,
        list: String,
    },
    #[error(
        "key {0} is the default key of its scope; make another key the default first, or pass --force"
    )]
    IsDefault(Uuid),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

impl Classify for KeyError {
    fn kind(&self) -> Kind {
        match self {
            KeyError::Home(e) => e.kind(),
            KeyError::Io { source, .. } => Classify::kind(source),
            KeyError::Damaged { .. } => Kind::Integrity,
            KeyError::StoreTooNew { .. } => Kind::Unsupported,
            KeyError::NotFound(_) => Kind::NotFound,
            KeyError::NoDefault { .. } => Kind::NotFound,
            KeyError::Retired(_)
            | KeyError::ScopeMismatch { .. }
            | KeyError::IdClash(_)
            | KeyError::InUse { .. }
            | KeyError::IsDefault(_) => Kind::Refused,
            KeyError::DomainWithSystemScope | KeyError::BadDomain(_) => Kind::Usage,
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

/// Access to the backup keys of one home.
pub struct KeyStore<'h> {
    home: &'h Home,
}

impl<'h> KeyStore<'h> {
    pub fn new(home: &'h Home) -> Self {
        KeyStore { home }
    }

    fn path_str(&self) -> String {
        self.home.keys_path().display().to_string()
    }

    fn load(&self) -> Result<StoreFile, KeyError> {
        let path = self.home.keys_path();
        // keys.json is a secret file like root.key: refused when group or others may
        // read it, so a loosened mode is noticed instead of silently tolerated.
        let bytes = match fsutil::open_secret_file(&path).and_then(|mut f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
        }) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoreFile {
                    format_version: STORE_FORMAT,
                    keys: Vec::new(),
                });
            }
            Err(source) => {
                return Err(KeyError::Io {
                    path: self.path_str(),
                    source,
                });
            }
        };
        let store: StoreFile = serde_json::from_slice(&bytes).map_err(|e| KeyError::Damaged {
            path: self.path_str(),
            what: format!("not valid JSON: {e}"),
        })?;
        if store.format_version > STORE_FORMAT {
            return Err(KeyError::StoreTooNew {
                path: self.path_str(),
                found: store.format_version,
            });
        }
        Ok(store)
    }

    fn save(&self, _lock: &HomeLock, store: &StoreFile) -> Result<(), KeyError> {
        let bytes = serde_json::to_vec_pretty(store).expect("store serializes");
        fsutil::write_atomic(&self.home.keys_path(), &bytes, 0o600).map_err(|source| KeyError::Io {
            path: self.path_str(),
            source,
        })
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
        let key = Key32::random();
        let info = KeyInfo {
            scope,
            account: account.to_string(),
            domain_id: domain,
            version: KEY_VERSION.to_string(),
            id: Uuid::new_v4(),
            created_at: crate::clock::now_rfc3339(crate::clock::Precision::Nanos),
            is_default: false,
            state: KeyState::Active,
            description: description.to_string(),
        };
        self.insert(lock, info, &key, make_default)
    }

    fn insert(
        &self,
        lock: &HomeLock,
        mut info: KeyInfo,
        key: &Key32,
        make_default: bool,
    ) -> Result<KeyInfo, KeyError> {
        let root = self.home.root_key()?;
        let mut store = self.load()?;
        let has_default = store
            .keys
            .iter()
            .any(|k| k.info.is_default && k.info.in_scope(info.scope, info.domain_id.as_deref()));
        let becomes_default = info.state == KeyState::Active && (make_default || !has_default);
        if becomes_default {
            for k in store.keys.iter_mut() {
                if k.info.in_scope(info.scope, info.domain_id.as_deref()) {
                    k.info.is_default = false;
                }
            }
        }
        info.is_default = becomes_default;
        let wrapped = wrap(&root, &info, key);
        store.keys.push(StoredKey {
            info: info.clone(),
            wrapped,
        });
        store.format_version = STORE_FORMAT;
        self.save(lock, &store)?;
        Ok(info)
    }

    /// Makes `id` the default of its scope/domain. A retired key cannot be the default.
    pub fn set_default(&self, lock: &HomeLock, id: &Uuid) -> Result<KeyInfo, KeyError> {
        let mut store = self.load()?;
        let target = store
            .keys
            .iter()
            .find(|k| &k.info.id == id)
            .map(|k| k.info.clone())
            .ok_or_else(|| KeyError::NotFound(id.to_string()))?;
        if target.state == KeyState::Retired {
            return Err(KeyError::Retired(*id));
        }
        for k in store.keys.iter_mut() {
            if k.info.in_scope(target.scope, target.domain_id.as_deref()) {
                k.info.is_default = &k.info.id == id;
            }
        }
        self.save(lock, &store)?;
        self.get(id)
    }

    /// New default for the scope/domain; the previous default is retired.
    pub fn rotate(
        &self,
        lock: &HomeLock,
        scope: Scope,
        domain: Option<String>,
        account: &str,
    ) -> Result<Rotation, KeyError> {
        let old =
            self.default_key(scope, domain.as_deref())?
                .ok_or_else(|| KeyError::NoDefault {
                    scope,
                    domain: domain.clone(),
                })?;
        let new_key = self.create(lock, scope, domain, true, "", account)?;
        let mut store = self.load()?;
        for k in store.keys.iter_mut() {
            if k.info.id == old.id {
                k.info.state = KeyState::Retired;
                k.info.is_default = false;
            }
        }
        self.save(lock, &store)?;
        Ok(Rotation {
            new_key,
            retired_key: self.get(&old.id)?,
        })
    }

    /// Removes a key. `referenced_by` lists archives in the home sealed under it; unless
    /// `force`, a key in use or a default key is kept.
    pub fn delete(
        &self,
        lock: &HomeLock,
        id: &Uuid,
        force: bool,
        referenced_by: &[String],
    ) -> Result<KeyInfo, KeyError> {
        let mut store = self.load()?;
        let pos = store
            .keys
            .iter()
            .position(|k| &k.info.id == id)
            .ok_or_else(|| KeyError::NotFound(id.to_string()))?;
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
        if !force && store.keys[pos].info.is_default {
            return Err(KeyError::IsDefault(*id));
        }
        let removed = store.keys.remove(pos);
        self.save(lock, &store)?;
        Ok(removed.info)
    }

    /// The key material, for sealing (`for_encryption`: must be active) or opening.
    pub fn material(&self, id: &Uuid, for_encryption: bool) -> Result<(KeyInfo, Key32), KeyError> {
        let store = self.load()?;
        let stored = store
            .keys
            .iter()
            .find(|k| &k.info.id == id)
            .ok_or_else(|| KeyError::NotFound(id.to_string()))?;
        if for_encryption && stored.info.state == KeyState::Retired {
            return Err(KeyError::Retired(*id));
        }
        let root = self.home.root_key()?;
        let key =
            unwrap(&root, &stored.info, &stored.wrapped).ok_or_else(|| KeyError::Damaged {
                path: self.path_str(),
                what: format!("key {id} does not authenticate under the root key"),
            })?;
        Ok((stored.info.clone(), key))
    }

    /// Writes the key-file bytes for `id` under `password`.
    pub fn export(
        &self,
        id: &Uuid,
        password: &Password,
        params: KdfParams,
    ) -> Result<(KeyInfo, Vec<u8>), KeyError> {
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
    /// domain key file needs `--scope domain`).
    pub fn import(
        &self,
        lock: &HomeLock,
        bytes: &[u8],
        scope_flag: Scope,
        password: &Password,
        account: &str,
    ) -> Result<Imported, KeyError> {
        let parsed = keyfile::parse(bytes)?;
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
        let key = parsed.open(password)?;
        if let Ok((existing, material)) = self.material(&parsed.meta.keyid, false) {
            return if material.ct_eq(&key)
                && existing.scope == parsed.meta.scope
                && existing.domain_id == domain
            {
                Ok(Imported::AlreadyPresent(existing))
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
        };
        // An imported key never takes over as default by itself (ksctl semantics), except
        // in a scope that has no default yet, where it would otherwise be unusable.
        self.insert(lock, info, &key, false).map(Imported::New)
    }
}

fn wrap_aad(info: &KeyInfo) -> Vec<u8> {
    let mut aad = WRAP_LABEL.to_vec();
    aad.extend_from_slice(info.id.as_bytes());
    aad.extend_from_slice(info.scope.to_string().as_bytes());
    aad.push(0);
    aad.extend_from_slice(info.domain_id.as_deref().unwrap_or("").as_bytes());
    aad
}

fn wrap(root: &Key32, info: &KeyInfo, key: &Key32) -> String {
    B64.encode(crate::aead::wrap_key(root, &wrap_aad(info), key))
}

fn unwrap(root: &Key32, info: &KeyInfo, wrapped: &str) -> Option<Key32> {
    let raw = Zeroizing::new(B64.decode(wrapped).ok()?);
    crate::aead::unwrap_key(root, &wrap_aad(info), &raw)
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
        assert!(matches!(
            ks.material(&b.id, false),
            Err(KeyError::Damaged { .. })
        ));
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
