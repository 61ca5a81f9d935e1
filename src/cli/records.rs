//! The JSON documents the CLI prints, as typed records (ripgrep's `jsont.rs`).
//!
//! Invariant: every document on stdout is one of these types (or a domain type that
//! derives `Serialize` with the same care), never a `json!` literal, so a field cannot
//! be renamed or dropped by accident and `docs/json.md` can list them all. One name per
//! concept, ksctl's where ksctl has one; names already released are kept (see the
//! reference for the two historical spellings that remain).
use std::path::Path;

use serde::Serialize;
use uuid::Uuid;

use crate::keystore::KeyInfo;
use crate::keystore::kdf::KdfParams;
use crate::keystore::keyfile::KeyFileMeta;
use crate::scope::Scope;

/// A list in ksctl's shape: `skip`, `limit`, `total`, `resources`.
#[derive(Serialize)]
pub struct List<T> {
    pub skip: usize,
    pub limit: usize,
    pub total: usize,
    pub resources: Vec<T>,
}

impl<T> List<T> {
    pub fn of(resources: Vec<T>) -> Self {
        List {
            skip: 0,
            limit: resources.len(),
            total: resources.len(),
            resources,
        }
    }
}

/// `keys rotate`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotated<'a> {
    pub new_key_id: Uuid,
    pub retired_key_id: Uuid,
    pub new_key: &'a KeyInfo,
    pub retired_key: &'a KeyInfo,
}

/// `keys delete`, `backup delete`.
#[derive(Serialize)]
pub struct Deleted<'a, T: Serialize> {
    pub deleted: bool,
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a T>,
}

/// Argon2id parameters as `keys download` and `keys inspect` print them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kdf<'a> {
    pub algorithm: &'a str,
    #[serde(rename = "memoryKiB")]
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Kdf<'_> {
    pub fn argon2id(p: &KdfParams) -> Kdf<'static> {
        Kdf {
            algorithm: "argon2id",
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
        }
    }
}

/// `keys download`.
#[derive(Serialize)]
pub struct KeyExported<'a> {
    pub id: Uuid,
    pub file: String,
    pub kdf: Kdf<'a>,
}

impl KeyExported<'_> {
    pub fn new(id: Uuid, file: &Path, params: &KdfParams) -> KeyExported<'static> {
        KeyExported {
            id,
            file: file.display().to_string(),
            kdf: Kdf::argon2id(params),
        }
    }
}

/// `keys inspect`: a key file's clear metadata. `keyid` is the key file's own spelling.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyFileRecord<'a> {
    pub version: u16,
    pub keyid: Uuid,
    pub scope: Scope,
    pub created_at: &'a str,
    pub state: crate::keystore::KeyState,
    pub kdf: Kdf<'a>,
    #[serde(rename = "domainID", skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
}

impl<'a> From<&'a KeyFileMeta> for KeyFileRecord<'a> {
    fn from(m: &'a KeyFileMeta) -> Self {
        KeyFileRecord {
            version: m.version,
            keyid: m.keyid,
            scope: m.scope,
            created_at: &m.created_at,
            state: m.state,
            kdf: Kdf {
                algorithm: &m.kdf.algorithm,
                memory_kib: m.kdf.params.memory_kib,
                iterations: m.kdf.params.iterations,
                parallelism: m.kdf.params.parallelism,
            },
            domain_id: m.domain_id.as_deref(),
            description: &m.description,
        }
    }
}

/// `backup download`.
#[derive(Serialize)]
pub struct Downloaded {
    pub id: Uuid,
    pub file: String,
    pub bytes: u64,
}

/// `backup verify`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub id: Uuid,
    pub verified: bool,
    pub backup_key_id: Uuid,
    pub version: u16,
    pub size: u64,
    pub checksum: String,
}

/// `backup extract`.
#[derive(Serialize)]
pub struct Extracted {
    pub id: Uuid,
    pub out: String,
    pub size: u64,
    pub checksum: String,
}

/// One archive of `backup rewrap`.
#[derive(Serialize)]
pub struct RewrapItem {
    pub id: Uuid,
    pub from: Uuid,
    pub to: Uuid,
    pub changed: bool,
    pub reencrypted: bool,
}

/// One failed item of a batch: its id (when known), the message and the exit-code kind.
#[derive(Serialize)]
pub struct Failed {
    pub id: Option<String>,
    pub error: String,
    pub kind: &'static str,
}

/// `backup rewrap`.
#[derive(Serialize)]
pub struct RewrapResult {
    pub total: usize,
    pub rewrapped: Vec<RewrapItem>,
    pub failed: Vec<Failed>,
}
