//! One audit record, the event it is built from, and its canonical hash encoding.
//!
//! Invariant: [`AuditRecord::compute_hash`] covers every field except `hash`, in a
//! prefix-free binary encoding computed from the *parsed* values, so a verifier never
//! depends on how the JSON was spelled (key order, whitespace, escapes) and two different
//! records can never encode to the same bytes. Changing the encoding breaks every
//! existing chain: it is versioned by [`HASH_DOMAIN`].
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prevHash` of the first record: 64 ASCII zeros.
pub const GENESIS_PREV_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain-separation prefix of the hash input; bump the version if the encoding changes.
pub(crate) const HASH_DOMAIN: &[u8] = b"vault-audit-record-v1\n";

/// How an audited operation ended. `kind` is a short machine-readable error class
/// (e.g. `"wrong-password"`, `"bmc-unreachable"`), never a message that could echo input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written only by the log itself, for an intent whose process died before
    /// recording its outcome (see [`super::intent`]).
    Unfinished,
    Success,
    Failure {
        kind: String,
    },
}

/// What a caller reports about one operation. The log adds seq, time, account and hashes.
///
/// Never put secrets here: no passwords, tokens, key bytes or wrapped keys, not even in
/// `detail`. Identifiers (key id, archive id, host) and short explanations only.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// Dotted operation name, e.g. `"keys.create"`, `"backup.restore"`.
    pub operation: &'a str,
    pub key_id: Option<String>,
    pub archive_id: Option<String>,
    pub bmc_host: Option<String>,
    pub result: Outcome,
    /// Free text for people; must not contain secrets.
    pub detail: Option<String>,
}

impl<'a> AuditEvent<'a> {
    pub fn new(operation: &'a str, result: Outcome) -> Self {
        AuditEvent {
            operation,
            key_id: None,
            archive_id: None,
            bmc_host: None,
            result,
            detail: None,
        }
    }

    pub fn key_id(mut self, id: impl Into<String>) -> Self {
        self.key_id = Some(id.into());
        self
    }

    pub fn archive_id(mut self, id: impl Into<String>) -> Self {
        self.archive_id = Some(id.into());
        self
    }

    pub fn bmc_host(mut self, host: impl Into<String>) -> Self {
        self.bmc_host = Some(host.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// One line of `audit.log`. Field order here is the JSON order and the hash order.
///
/// Unknown fields are refused when parsing: a field the hash does not cover must not be
/// able to ride along in a line that still verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339, UTC (`Z`).
    pub time: String,
    /// OS account that ran the operation.
    pub account: String,
    pub operation: String,
    pub key_id: Option<String>,
    pub archive_id: Option<String>,
    pub bmc_host: Option<String>,
    /// `"success"` or `"failure"`.
    pub result: String,
    pub error_kind: Option<String>,
    pub detail: Option<String>,
    /// Lowercase hex SHA-256 of the previous record, or [`GENESIS_PREV_HASH`].
    pub prev_hash: String,
    /// Lowercase hex of [`AuditRecord::compute_hash`].
    pub hash: String,
}

impl AuditRecord {
    /// SHA-256 (lowercase hex) of the canonical encoding of every field but `hash`:
    ///
    /// `"vault-audit-record-v1\n" || u64be(seq) || str(time) || str(account) ||
    /// str(operation) || opt(keyId) || opt(archiveId) || opt(bmcHost) || str(result) ||
    /// opt(errorKind) || opt(detail) || str(prevHash)`
    ///
    /// where `str(s) = u64be(len(utf8(s))) || utf8(s)`, `opt(None) = 0x00`,
    /// `opt(Some(s)) = 0x01 || str(s)`. `prevHash` is hashed as its 64 ASCII hex chars.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(self.seq.to_be_bytes());
        put_str(&mut h, &self.time);
        put_str(&mut h, &self.account);
        put_str(&mut h, &self.operation);
        put_opt(&mut h, self.key_id.as_deref());
        put_opt(&mut h, self.archive_id.as_deref());
        put_opt(&mut h, self.bmc_host.as_deref());
        put_str(&mut h, &self.result);
        put_opt(&mut h, self.error_kind.as_deref());
        put_opt(&mut h, self.detail.as_deref());
        put_str(&mut h, &self.prev_hash);
        hex::encode(h.finalize())
    }

    pub fn is_success(&self) -> bool {
        self.result == "success"
    }
}

fn put_str(h: &mut Sha256, s: &str) {
    // usize -> u64 is lossless on every supported target.
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn put_opt(h: &mut Sha256, s: Option<&str>) {
    match s {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            put_str(h, s);
        }
    }
}

/// True for exactly 64 lowercase hex digits (the only spelling the chain accepts, so one
/// hash has one spelling and string comparison is hash comparison).
pub(crate) fn is_hash_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecord {
        AuditRecord {
            seq: 1,
            time: "2025-01-02T03:04:05.678Z".into(),
            account: "alice".into(),
            operation: "keys.create".into(),
            key_id: Some("k1".into()),
            archive_id: None,
            bmc_host: None,
            result: "success".into(),
            error_kind: None,
            detail: None,
            prev_hash: GENESIS_PREV_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn json_field_names_are_camel_case_in_fixed_order() {
        let json = serde_json::to_string(&sample()).unwrap();
        let names = [
            "\"seq\"",
            "\"time\"",
            "\"account\"",
            "\"operation\"",
            "\"keyId\"",
            "\"archiveId\"",
            "\"bmcHost\"",
            "\"result\"",
            "\"errorKind\"",
            "\"detail\"",
            "\"prevHash\"",
            "\"hash\"",
        ];
        let mut at = 0;
        for n in names {
            let i = json[at..]
                .find(n)
                .unwrap_or_else(|| panic!("{n} in {json}"));
            at += i + n.len();
        }
    }

    #[test]
    fn hash_ignores_json_spelling_but_not_values() {
        let r = sample();
        let h = r.compute_hash();
        assert!(is_hash_hex(&h));
        // Same values, different JSON spelling: absent optional vs null, key order.
        let respelled = format!(
            r#"{{"time":"{}","seq":1,"account":"alice","operation":"keys.create","keyId":"k1","result":"success","prevHash":"{}","hash":""}}"#,
            r.time, GENESIS_PREV_HASH
        );
        let parsed: AuditRecord = serde_json::from_str(&respelled).unwrap();
        assert_eq!(parsed.compute_hash(), h);

        // None and Some("") differ; moving bytes between adjacent fields changes the hash.
        let mut empty_detail = r.clone();
        empty_detail.detail = Some(String::new());
        assert_ne!(empty_detail.compute_hash(), h);
        let mut shifted = r.clone();
        shifted.account = "alicekeys".into();
        shifted.operation = ".create".into();
        assert_ne!(shifted.compute_hash(), h);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["note"] = "smuggled".into();
        assert!(serde_json::from_value::<AuditRecord>(v).is_err());
    }

    #[test]
    fn known_answer() {
        // Pins the encoding: if this changes, every existing log stops verifying.
        let mut input = Vec::new();
        input.extend_from_slice(HASH_DOMAIN);
        input.extend_from_slice(&1u64.to_be_bytes());
        for s in ["2025-01-02T03:04:05.678Z", "alice", "keys.create"] {
            input.extend_from_slice(&(s.len() as u64).to_be_bytes());
            input.extend_from_slice(s.as_bytes());
        }
        input.push(1);
        input.extend_from_slice(&2u64.to_be_bytes());
        input.extend_from_slice(b"k1");
        input.extend_from_slice(&[0, 0]);
        input.extend_from_slice(&7u64.to_be_bytes());
        input.extend_from_slice(b"success");
        input.extend_from_slice(&[0, 0]);
        input.extend_from_slice(&64u64.to_be_bytes());
        input.extend_from_slice(GENESIS_PREV_HASH.as_bytes());
        assert_eq!(sample().compute_hash(), hex::encode(Sha256::digest(&input)));
        // Independently computed from SECURITY-audit.md with Python's hashlib.
        assert_eq!(
            sample().compute_hash(),
            "ce7b78ff62703dd2858a1637186316c804537c0fc806a0c6ebac1f5a05adf57c"
        );
    }
}
