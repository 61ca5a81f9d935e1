//! Key operations: create, list, get, set-default, rotate, delete, export and import.
//!
//! Invariant: every operation that changes `keys.json` (or writes a key file) holds the
//! home lock for the change and appends its audit records through
//! [`Context::audited`]: the intent, naming the key (a new key's id is chosen first for
//! that), right before the write, and the outcome after it. Reading operations take no
//! lock and write no record.
use std::io::Read;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{Context, OpsError, PasswordSource, Subject};
use crate::keystore::kdf::{ImportLimit, KdfParams};
use crate::keystore::keyfile::{self, ParsedKeyFile};
use crate::keystore::{Imported, KeyError, KeyInfo, KeyStore, NewKeyInfo, Rotation};
use crate::scope::Scope;
use crate::store::ArchiveStore;

/// Which keys `list` returns.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub scope: Option<Scope>,
    pub domain: Option<String>,
}

/// A new key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub scope: Scope,
    pub domain: Option<String>,
    pub make_default: bool,
    pub description: String,
    /// Wrapped by the PKCS#11 token's key, never by the root key (system keys only).
    pub tied_to_hsm: bool,
}

/// A deleted key, and the archives of this home that were still sealed under it (only
/// possible with `force`).
pub struct Deleted {
    pub key: KeyInfo,
    pub still_used_by: Vec<String>,
    /// Archives that name the key in a slot that does not open with it (forged or
    /// edited): not held up by the deletion, and reported.
    pub claimed_only_by: Vec<String>,
}

/// An exported key file.
pub struct Exported {
    pub key: KeyInfo,
    pub file: PathBuf,
    pub params: KdfParams,
}

pub fn create(ctx: &Context, new: &NewKey) -> Result<KeyInfo, OpsError> {
    let id = Uuid::new_v4();
    ctx.audited("keys.create", Subject::default(), |s| {
        let lock = ctx.home().lock()?;
        let ks = KeyStore::new(ctx.home());
        let info = NewKeyInfo {
            id,
            scope: new.scope,
            domain: new.domain.clone(),
            description: &new.description,
            account: ctx.account(),
        };
        s.key_id = Some(id.to_string());
        s.intent()?;
        let k = if new.tied_to_hsm {
            ks.create_tied(&lock, info, new.make_default)?
        } else {
            ks.create_as(&lock, info, new.make_default)?
        };
        crate::signing::ensure(ctx.home(), &ks, &lock)?;
        Ok(k)
    })
}

pub fn list(ctx: &Context, filter: &KeyFilter) -> Result<Vec<KeyInfo>, OpsError> {
    Ok(KeyStore::new(ctx.home()).list(filter.scope, filter.domain.as_deref())?)
}

/// What `key` depends on: the home's root (`file`, `passphrase`, `pkcs11:<token>`) or,
/// for a key tied to the HSM, the token itself (`hsm:<token>`).
pub fn dependency(ctx: &Context, key: &KeyInfo) -> Result<String, OpsError> {
    Ok(KeyStore::new(ctx.home()).dependency(key)?)
}

/// One key by full id or unambiguous prefix.
pub fn get(ctx: &Context, id: &str) -> Result<KeyInfo, OpsError> {
    Ok(KeyStore::new(ctx.home()).find(id)?)
}

pub fn set_default(ctx: &Context, id: &str) -> Result<KeyInfo, OpsError> {
    ctx.audited("keys.set-default", subject_key(id), |s| {
        let ks = KeyStore::new(ctx.home());
        let lock = ctx.home().lock()?;
        let k = ks.find(id)?;
        s.key_id = Some(k.id.to_string());
        s.intent()?;
        Ok(ks.set_default(&lock, &k.id)?)
    })
}

/// Marks a key compromised (KMIP's state): it never seals again, still opens, and a
/// plain rewrap away from it is refused (its archives must be re-encrypted).
pub fn compromise(ctx: &Context, id: &str) -> Result<KeyInfo, OpsError> {
    ctx.audited("keys.compromise", subject_key(id), |_| {
        let ks = KeyStore::new(ctx.home());
        let lock = ctx.home().lock()?;
        let k = ks.find(id)?;
        Ok(ks.set_state(&lock, &k.id, crate::keystore::KeyState::Compromised)?)
    })
}

pub fn rotate(ctx: &Context, scope: Scope, domain: Option<String>) -> Result<Rotation, OpsError> {
    let id = Uuid::new_v4();
    ctx.audited("keys.rotate", Subject::default(), |s| {
        let lock = ctx.home().lock()?;
        let ks = KeyStore::new(ctx.home());
        // No default: fails here, before announcing a change that cannot happen.
        let old = ks
            .default_key(scope, domain.as_deref())?
            .ok_or_else(|| KeyError::NoDefault {
                scope,
                domain: domain.clone(),
            })?;
        s.detail = Some(format!("retiring {}", old.id));
        s.key_id = Some(id.to_string());
        s.intent()?;
        let new = NewKeyInfo {
            id,
            scope,
            domain,
            description: "",
            account: ctx.account(),
        };
        let r = ks.rotate_to(&lock, new)?;
        s.detail = Some(format!("retired {}", r.retired_key.id));
        Ok(r)
    })
}

/// Deletes a key; refused while archives of this home use it or it is a default,
/// unless `force`.
pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<Deleted, OpsError> {
    let subject = Subject {
        detail: force.then(|| "forced".to_string()),
        ..subject_key(id)
    };
    ctx.audited("keys.delete", subject, |s| {
        let ks = KeyStore::new(ctx.home());
        let lock = ctx.home().lock()?;
        let k = ks.find(id)?;
        s.key_id = Some(k.id.to_string());
        // A slot's key id is only claimed until the key opens it: only archives the key
        // confirms hold up its deletion. Without its material (a token not present),
        // every claim counts.
        let store = ArchiveStore::new(ctx.home());
        let refs = match ks.material(&k.id, false) {
            Ok((_, m)) => store.referencing_confirmed(
                &k.id,
                &crate::envelope::OpeningKey::new(m, k.scope, k.domain_id.clone()),
            )?,
            Err(_) => crate::store::Referencing {
                confirmed: store.referencing(&k.id)?,
                claimed_only: Vec::new(),
            },
        };
        s.intent()?;
        let key = ks.delete(&lock, &k.id, force, &refs.confirmed)?;
        Ok(Deleted {
            key,
            still_used_by: refs.confirmed,
            claimed_only_by: refs.claimed_only,
        })
    })
}

/// Writes key `id` to the key file `file` (atomically, mode 0600) under a password
/// from `password`, asked only after the key and the KDF parameters were accepted.
pub fn export(
    ctx: &Context,
    id: &str,
    file: &Path,
    params: KdfParams,
    password: PasswordSource<'_>,
) -> Result<Exported, OpsError> {
    ctx.audited("keys.download", subject_key(id), |s| {
        let ks = KeyStore::new(ctx.home());
        let key = ks.find(id)?;
        s.key_id = Some(key.id.to_string());
        params.check().map_err(OpsError::KdfParams)?;
        let pw = password()?;
        let (_, bytes) = ks.export(&key.id, &pw, params)?;
        s.intent()?;
        crate::fsutil::write_atomic(file, &bytes, 0o600).map_err(|source| OpsError::Write {
            what: "key file",
            path: file.to_path_buf(),
            source,
        })?;
        Ok(Exported {
            key,
            file: file.to_path_buf(),
            params,
        })
    })
}

/// Reads and parses a key file: structure, checksum and KDF bounds, no password.
pub fn inspect_file(file: &Path) -> Result<ParsedKeyFile, OpsError> {
    let bytes = read_key_file(file)?;
    keyfile::parse(&bytes).map_err(|source| OpsError::KeyFile {
        path: file.to_path_buf(),
        source,
    })
}

/// Imports the key file `file` as a key of `scope` (which must be the file's), asking
/// `password` only once the file's structure and KDF bounds were checked.
/// The file's KDF cost is checked against `limit` and said (through the reporter)
/// before any memory is allocated for it.
pub fn import(
    ctx: &Context,
    file: &Path,
    scope: Scope,
    limit: ImportLimit,
    password: PasswordSource<'_>,
) -> Result<Imported, OpsError> {
    ctx.audited("keys.upload", Subject::default(), |s| {
        s.detail = Some(format!("file {}", file.display()));
        let bytes = read_key_file(file)?;
        let key_file_err = |source| OpsError::KeyFile {
            path: file.to_path_buf(),
            source,
        };
        let parsed = keyfile::parse(&bytes).map_err(key_file_err)?;
        s.key_id = Some(parsed.meta.keyid.to_string());
        let params = parsed.meta.kdf.params;
        params
            .check_import(limit)
            .map_err(|e| key_file_err(e.into()))?;
        ctx.warn(&format!(
            "{}: opening costs {} (about {} MiB of memory)",
            file.display(),
            params.describe(),
            params.memory_kib / 1024
        ));
        let pw = password()?;
        let lock = ctx.home().lock()?;
        s.intent()?;
        let ks = KeyStore::new(ctx.home());
        let imported = ks
            .import_with(&lock, &bytes, scope, &pw, ctx.account(), limit)
            .map_err(|source| OpsError::Import {
                path: file.to_path_buf(),
                source,
            })?;
        crate::signing::ensure(ctx.home(), &ks, &lock)?;
        let (Imported::New(k) | Imported::AlreadyPresent(k)) = &imported;
        s.key_id = Some(k.id.to_string());
        if matches!(imported, Imported::AlreadyPresent(_)) {
            s.detail = Some(format!("file {}; already present", file.display()));
        }
        Ok(imported)
    })
}

fn subject_key(id: &str) -> Subject {
    Subject {
        key_id: Some(id.to_string()),
        ..Subject::default()
    }
}

/// Reads a key file, bounded: a key file is a few hundred bytes.
fn read_key_file(path: &Path) -> Result<Vec<u8>, OpsError> {
    let f = std::fs::File::open(path).map_err(OpsError::file(path))?;
    let mut bytes = Vec::new();
    f.take(keyfile::MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| OpsError::Read {
            what: "key file",
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() > keyfile::MAX_FILE_LEN {
        return Err(OpsError::KeyFileTooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}
