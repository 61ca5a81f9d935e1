//! The JSON documents the CLI prints, as typed records (ripgrep's `jsont.rs`).
//!
//! Invariant: every document on stdout is one of these types (or a domain type that
//! derives `Serialize` with the same care), never a `json!` literal, so a field cannot
//! be renamed or dropped by accident and `docs/json.md` can list them all. One name per
//! concept, ksctl's where ksctl has one (docs/json.md, "Names", says which pairs are
//! kept and why).
use std::path::Path;

use serde::Serialize;
use uuid::Uuid;

use crate::envelope::{ArchiveHeader, Inspection, SlotInfo, Source};
use crate::keystore::kdf::KdfParams;
use crate::keystore::keyfile::KeyFileMeta;
use crate::keystore::{Dependencies, KeyInfo};
use crate::ops::backup::{Listed, Sealed, Signer};
use crate::ops::restore::Restored;
use crate::remote::{LockMode, PushOutcome, Remote, RemoteArchive, RemoteConfig};
use crate::scope::Scope;
use crate::store::ArchiveStatus;

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

/// One failed item of a batch: its id (when known), the message and the exit-code kind
/// (`errorKind`, as in fleet results, demo steps and audit records).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub id: Option<String>,
    pub error: String,
    pub error_kind: &'static str,
}

/// `backup rewrap`.
#[derive(Serialize)]
pub struct RewrapResult {
    pub total: usize,
    pub rewrapped: Vec<RewrapItem>,
    pub failed: Vec<Failed>,
}

/// An archive in ksctl's shape (`backup create/pull/get/upload`, each element of
/// `backup list` and of `backup list --remote`): what its header and trailer say.
/// Field order is the printed order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Archive<'a> {
    pub scope: Scope,
    pub account: &'a str,
    /// The archive format version, as a string (ksctl's `version`).
    pub version: String,
    pub id: Uuid,
    pub created_at: &'a str,
    /// `Completed`, or (`backup list/get`) `Unverified` / `IdMismatch`.
    pub status: &'static str,
    #[serde(rename = "tiedToHSM")]
    pub tied_to_hsm: bool,
    /// The key id the key slot claims (ksctl's `backupKey`).
    pub backup_key: String,
    pub product_version: &'a str,
    pub description: &'a str,
    /// Hex SHA-256 of the plaintext.
    pub checksum: String,
    /// Plaintext bytes.
    pub size: u64,
    #[serde(rename = "domainID", skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a Source>,
    /// `backup list/get`: what is lost with a passphrase or token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
    /// `backup list/get`: `true` when `backupKey` is only what an unauthenticated slot
    /// says: the slot is not signed by this home and no key of this home confirmed it
    /// (and always when the status is not `Completed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_key_claimed: Option<bool>,
    /// `backup upload`: authenticated before it was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// `backup pull --push-to`: the copy on the remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<Pushed<'a>>,
}

impl<'a> Archive<'a> {
    fn new(
        version: u16,
        h: &'a ArchiveHeader,
        key: Option<Uuid>,
        size: u64,
        sha256: &[u8; 32],
    ) -> Self {
        Archive {
            scope: h.scope,
            account: &h.creator_account,
            version: version.to_string(),
            id: h.id,
            created_at: &h.created_at,
            status: ArchiveStatus::Completed.as_str(),
            tied_to_hsm: false,
            backup_key: key.map(|k| k.to_string()).unwrap_or_default(),
            product_version: &h.product_version,
            description: &h.description,
            checksum: hex::encode(sha256),
            size,
            domain_id: h.domain_id.as_deref(),
            source: h.source.as_ref(),
            depends_on: None,
            backup_key_claimed: None,
            verified: None,
            pushed: None,
        }
    }

    /// A stored archive, keyless (its key id as its newest slot claims it).
    pub fn of(i: &'a Inspection) -> Self {
        let key = i.key_ids.first().map(|(k, _)| *k);
        Archive::new(i.version, &i.header, key, i.plaintext_size, &i.sha256)
    }

    /// An archive just sealed (`backup create/pull`), from what sealing produced.
    pub fn sealed(s: &'a Sealed) -> Self {
        Archive::new(
            s.version,
            &s.header,
            Some(s.key_id),
            s.plaintext_size,
            &s.sha256,
        )
    }

    /// `backup list/get`: with the store's status and what the key depends on.
    pub fn listed(l: &'a Listed, deps: &Dependencies) -> Self {
        let mut a = Archive::of(&l.inspection);
        if let Some((k, _)) = l.inspection.key_ids.first() {
            a.tied_to_hsm = deps.tied(k);
            a.depends_on = Some(deps.of(k));
        }
        a.status = l.status.as_str();
        if l.status != ArchiveStatus::Completed
            || (!l.key_confirmed && !l.inspection.key_ids.is_empty())
        {
            a.backup_key_claimed = Some(true);
        }
        a
    }
}

/// One key slot of `inspect`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// `empty`, `occupied` or `damaged`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Occupied slots: the key id is what the slot claims (nothing is verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed: Option<bool>,
}

impl From<&SlotInfo> for Slot {
    fn from(s: &SlotInfo) -> Self {
        let (state, key_id, generation) = match s {
            SlotInfo::Empty => ("empty", None, None),
            SlotInfo::Occupied { key_id, generation } => {
                ("occupied", Some(*key_id), Some(*generation))
            }
            SlotInfo::Damaged => ("damaged", None, None),
        };
        Slot {
            state,
            key_id,
            generation,
            claimed: key_id.map(|_| true),
        }
    }
}

/// One signature of `inspect`.
#[derive(Serialize)]
pub struct SignerRecord<'a> {
    pub part: &'a str,
    pub fingerprint: &'a str,
    pub valid: bool,
}

impl<'a> From<&'a Signer> for SignerRecord<'a> {
    fn from(s: &'a Signer) -> Self {
        SignerRecord {
            part: &s.part,
            fingerprint: &s.fingerprint,
            valid: s.valid,
        }
    }
}

/// `inspect` / `backup inspect`: an archive file's metadata without any key. Its own
/// names (`backupKeyId`, `creatorAccount`, `isHSMBacked`) are released and kept.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspected<'a> {
    pub version: u16,
    pub created_at: &'a str,
    pub scope: Scope,
    /// Empty for a system archive.
    #[serde(rename = "domainID")]
    pub domain_id: &'a str,
    /// Empty when no slot is occupied.
    pub backup_key_id: String,
    pub is_encrypted: bool,
    pub creator_account: &'a str,
    #[serde(rename = "isHSMBacked")]
    pub is_hsm_backed: bool,
    pub description: &'a str,
    pub checksum: String,
    pub product_version: &'a str,
    pub id: Uuid,
    pub size: u64,
    pub archive_size: u64,
    /// `{}` when the archive records no source.
    pub source: Source,
    pub key_slots: Vec<Slot>,
    pub length_consistent: bool,
    pub verified: bool,
    /// With a home whose key store knows the key: what is lost with a passphrase or token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    /// What breaks the keyless rule of the slot region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted_rewrap: Option<bool>,
    pub signers: Vec<SignerRecord<'a>>,
    /// With `--trust`: the provenance against the trusted keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// With `--trust`: `null` when the archive has no ciphertext digest (format 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphertext_matches: Option<Option<bool>>,
}

impl<'a> Inspected<'a> {
    pub fn new(i: &'a Inspection, signers: &'a [Signer]) -> Self {
        let h = &i.header;
        Inspected {
            version: i.version,
            created_at: &h.created_at,
            scope: h.scope,
            domain_id: h.domain_id.as_deref().unwrap_or_default(),
            backup_key_id: i
                .key_ids
                .first()
                .map(|(k, _)| k.to_string())
                .unwrap_or_default(),
            is_encrypted: true,
            creator_account: &h.creator_account,
            is_hsm_backed: false,
            description: &h.description,
            checksum: hex::encode(i.sha256),
            product_version: &h.product_version,
            id: h.id,
            size: i.plaintext_size,
            archive_size: i.file_len,
            source: h.source.clone().unwrap_or_default(),
            key_slots: i.slots.iter().map(Slot::from).collect(),
            length_consistent: i.length_consistent,
            verified: false,
            depends_on: None,
            warning: (!i.length_consistent).then_some(
                "the file length does not match the size in its trailer: it is truncated or damaged",
            ),
            slot_region: i.region.as_ref().err().map(String::as_str),
            interrupted_rewrap: (i.region.is_ok() && i.key_ids.len() == 2).then_some(true),
            signers: signers.iter().map(SignerRecord::from).collect(),
            signature: None,
            ciphertext_matches: None,
        }
    }
}

/// `backup restore`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredRecord<'a> {
    pub id: Uuid,
    pub bmc: &'a str,
    pub restored: bool,
    pub bytes: u64,
    pub file_name: &'a str,
    /// The serial number the BMC reports.
    pub serial_number: Option<&'a str>,
    /// The serial number recorded in the archive.
    pub archive_serial_number: Option<&'a str>,
    pub note: &'static str,
}

/// What restore prints after its record: the BMC resets.
pub const RESTORE_NOTE: &str = "iLO resets after a restore and is unreachable for a few minutes while it applies the configuration";

impl<'a> From<&'a Restored> for RestoredRecord<'a> {
    fn from(x: &'a Restored) -> Self {
        RestoredRecord {
            id: x.archive_id,
            bmc: &x.host,
            restored: true,
            bytes: x.bytes,
            file_name: &x.file_name,
            serial_number: x.bmc_serial.as_deref(),
            archive_serial_number: x.archive_serial.as_deref(),
            note: RESTORE_NOTE,
        }
    }
}

/// One BMC of `backup pull --inventory`: `ok` with its archive, or `failed` with why.
/// Field order is the printed order; absent fields are left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetItem<'a> {
    /// `host[:port]`, never the URL as written.
    pub bmc: &'a str,
    /// `ok` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_key_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Present (possibly `null`) when `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<Pushed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_error: Option<String>,
}

/// `backup pull --inventory`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetReport<'a> {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub results: Vec<FleetItem<'a>>,
    /// With `--push-to`: archives stored but not pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_failed: Option<usize>,
}

/// `remote add` / `remote list`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRecord<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub endpoint: String,
    pub region: &'a str,
    pub path_style: bool,
    pub ca_cert: Option<String>,
    pub profile: Option<&'a str>,
    pub credentials_file: Option<String>,
}

impl<'a> From<&'a RemoteConfig> for RemoteRecord<'a> {
    fn from(r: &'a RemoteConfig) -> Self {
        RemoteRecord {
            name: &r.name,
            url: &r.url,
            endpoint: r.endpoint_url().map(|u| u.to_string()).unwrap_or_default(),
            region: &r.region,
            path_style: r.path_style,
            ca_cert: r.ca_cert.as_ref().map(|p| p.display().to_string()),
            profile: r.profile.as_deref(),
            credentials_file: r.credentials_file.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// `audit log`: the matching records, oldest first.
#[derive(Serialize)]
pub struct AuditRecords<'a> {
    pub total: usize,
    pub records: &'a [crate::audit::AuditRecord],
}

/// `audit verify`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerified<'a> {
    pub intact: bool,
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: &'a str,
    pub first_broken: &'a Option<crate::audit::Broken>,
    pub torn_tail: &'a Option<crate::audit::TornTail>,
    pub unfinished: &'a [crate::audit::IntentRecord],
    pub anchor: String,
    pub anchor_note: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_check: Option<AnchorChecked<'a>>,
}

/// `anchorCheck` of `audit verify --anchor`.
#[derive(Serialize)]
pub struct AnchorChecked<'a> {
    pub anchor: String,
    pub matches: bool,
    pub result: &'a crate::audit::AnchorCheck,
}

impl<'a> AuditVerified<'a> {
    pub fn new(v: &'a crate::ops::audit::Verification) -> Self {
        let r = &v.report;
        AuditVerified {
            intact: r.is_intact(),
            records: r.records,
            last_seq: r.records,
            last_hash: &r.last_hash,
            first_broken: &r.first_broken,
            torn_tail: &r.torn_tail,
            unfinished: &r.unfinished,
            anchor: v.next_anchor().to_string(),
            anchor_note: "record the anchor somewhere an attacker cannot write; 'vault audit verify --anchor SEQ:HASH' then detects a truncated or rewritten log",
            anchor_check: v.anchor.as_ref().map(|(a, check)| AnchorChecked {
                anchor: a.to_string(),
                matches: *check == crate::audit::AnchorCheck::Found,
                result: check,
            }),
        }
    }
}

/// One archive of `backup push` (and `pushed` of `backup pull --push-to`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed<'a> {
    pub id: Uuid,
    pub remote: &'a str,
    pub object: String,
    /// The object's bytes and SHA-256 (named as in `backup list --remote`: `size` and
    /// `checksum` are the plaintext's everywhere).
    pub object_size: u64,
    pub object_sha256: &'a str,
    /// False when the identical object was already on the remote.
    pub uploaded: bool,
    pub parts: usize,
    pub version_id: Option<&'a str>,
    pub lock_mode: Option<&'static str>,
    pub retain_until: Option<&'a str>,
}

impl<'a> Pushed<'a> {
    pub fn new(remote: &'a Remote, p: &'a PushOutcome) -> Self {
        Pushed {
            id: p.id,
            remote: &remote.config.name,
            object: format!("s3://{}/{}", remote.url.bucket, p.key),
            object_size: p.size,
            object_sha256: &p.sha256,
            uploaded: p.uploaded,
            parts: p.parts,
            version_id: p.version_id.as_deref(),
            lock_mode: p.lock.as_ref().map(|(m, _)| m.name()),
            retain_until: p.lock.as_ref().map(|(_, d)| d.as_str()),
        }
    }
}

/// `backup fetch`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchedRecord<'a> {
    pub id: Uuid,
    pub remote: &'a str,
    pub verified: bool,
    pub added: bool,
    pub backup_key_id: Uuid,
    pub size: u64,
    pub checksum: String,
}

/// One archive of `backup list --remote`: the keyless archive view (absent when the
/// object could not be read as one, with `error` saying why) plus the object's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteArchiveRecord<'a> {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Archive<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub object: String,
    pub object_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<&'a str>,
    /// Known when the store reports Object Lock with a GET (Ceph RGW only on HEAD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<&'a str>,
}

impl<'a> RemoteArchiveRecord<'a> {
    /// `key_confirmed`: this home confirms the key id shown (else `backupKeyClaimed`).
    pub fn new(remote: &Remote, a: &'a RemoteArchive, key_confirmed: bool) -> Self {
        let (archive, error) = match &a.inspection {
            Ok(i) => {
                let mut archive = Archive::of(i);
                if !key_confirmed && !i.key_ids.is_empty() {
                    archive.backup_key_claimed = Some(true);
                }
                (Some(archive), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        let head = a.head.as_ref();
        RemoteArchiveRecord {
            archive,
            error,
            object: format!("s3://{}/{}", remote.url.bucket, a.key),
            object_size: a.size,
            object_sha256: head.and_then(|h| h.sha256.as_deref()),
            version_id: head.and_then(|h| h.version_id.as_deref()),
            lock_mode: head.and_then(|h| h.lock_mode).map(LockMode::name),
            retain_until: head.and_then(|h| h.retain_until.as_deref()),
        }
    }
}

/// One step of `vault demo`: `ok` with what it showed, or failed with why.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoStep {
    pub step: usize,
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
}

/// `vault demo`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoReport<'a> {
    pub ok: bool,
    pub steps: Vec<DemoStep>,
    /// Wall-clock seconds, two decimals.
    pub seconds: f64,
    /// The simulator's URL, once it started (`bmc` elsewhere is a `host[:port]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bmc_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoredRecord<'a>>,
    /// With `--keep`: where the homes and files are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_in: Option<String>,
}

/// `vault manpages`: the directory and the pages written there.
#[derive(Serialize)]
pub struct ManPages {
    pub dir: String,
    pub pages: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn fleet_items_print_the_fields_of_their_status_in_order() {
        let id = Uuid::nil();
        let ok = FleetItem {
            bmc: "10.0.0.5:8443",
            status: "ok",
            archive_id: Some(id),
            backup_key_id: Some(id),
            size: Some(7),
            serial_number: Some(None),
            error: None,
            error_kind: None,
            attempts: 1,
            pushed: None,
            push_error: None,
        };
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(
            keys(&v),
            [
                "bmc",
                "status",
                "archiveId",
                "backupKeyId",
                "size",
                "serialNumber",
                "attempts"
            ]
        );
        assert!(v["serialNumber"].is_null());
        let failed = FleetItem {
            status: "failed",
            archive_id: None,
            backup_key_id: None,
            size: None,
            serial_number: None,
            error: Some("refused".into()),
            error_kind: Some("bmc"),
            attempts: 3,
            ..ok
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            keys(&v),
            ["bmc", "status", "error", "errorKind", "attempts"]
        );
    }

    #[test]
    fn key_slots_say_their_key_ids_are_claimed() {
        let id = Uuid::nil();
        let occupied = serde_json::to_value(Slot::from(&SlotInfo::Occupied {
            key_id: id,
            generation: 2,
        }))
        .unwrap();
        assert_eq!(keys(&occupied), ["state", "keyId", "generation", "claimed"]);
        assert_eq!(occupied["claimed"], true);
        let empty = serde_json::to_value(Slot::from(&SlotInfo::Empty)).unwrap();
        assert_eq!(keys(&empty), ["state"]);
        assert_eq!(
            serde_json::to_value(Slot::from(&SlotInfo::Damaged)).unwrap()["state"],
            "damaged"
        );
    }

    #[test]
    fn a_failed_demo_step_names_its_error_kind() {
        let s = DemoStep {
            step: 3,
            name: "x",
            ok: false,
            detail: None,
            error: Some("no".into()),
            error_kind: Some("io"),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(keys(&v), ["step", "name", "ok", "error", "errorKind"]);
    }

    /// One name per concept: a failed rewrap's error class is `errorKind` too.
    #[test]
    fn a_failed_rewrap_names_its_error_kind() {
        let f = Failed {
            id: None,
            error: "no".into(),
            error_kind: "integrity",
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(keys(&v), ["id", "error", "errorKind"]);
    }
}
