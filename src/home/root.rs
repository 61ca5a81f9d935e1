//! The root key file (`root.key`) and the three ways it is protected at rest.
//!
//! Layouts (all written atomically, mode 0600):
//! - `"VAULTRK1"` ‖ key[32]: mode `file`, as written by vault before root ids existed.
//!   Read forever; never written again.
//! - `"VAULTRK2"` ‖ root id[16] ‖ key[32]: mode `file`.
//! - `"VAULTRKW"` ‖ JSON [`WrappedDoc`]: modes `passphrase` and `pkcs11`. No secret is in
//!   clear: the root key is AES-256-GCM-wrapped under a key derived from the passphrase
//!   (Argon2id, bounded like key files) or by a non-extractable AES key inside a PKCS#11
//!   token, with AAD = label ‖ root id ‖ mode, so a document moved between homes or
//!   edited to claim another mode fails to unwrap.
//!
//! Invariant: a root key has an id (a UUID) and the key store names the id its entries
//! are wrapped under. Replacing the root (rotation, mode change, a delete that must
//! crypto-shred) writes the new root to `root.key.next` first, then the key store naming
//! the new id (the commit point), then renames `root.key.next` over `root.key`. Whoever
//! reads takes the file whose id the key store names, so a SIGKILL at any instant leaves
//! the old root with the old store or the new root with the new store, never neither.
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::token::{Token, TokenConfig, TokenError};
use crate::kdf::{self, KdfError, KdfParams};
use crate::secret::{Key32, Password};

pub const MAGIC_LEGACY: &[u8; 8] = b"VAULTRK1";
pub const MAGIC_FILE: &[u8; 8] = b"VAULTRK2";
pub const MAGIC_WRAPPED: &[u8; 8] = b"VAULTRKW";
/// A wrapped root document is a few hundred bytes.
pub const MAX_ROOT_FILE: u64 = 8 * 1024;
const WRAP_LABEL: &[u8] = b"vault.root.v2 root-key";
const LABEL_CHECK: &[u8] = b"vault.root.v2 passphrase-check";
const LABEL_WRAP: &[u8] = b"vault.root.v2 passphrase-wrap";

/// How the root key is kept at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    File,
    Passphrase,
    Pkcs11,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::File => "file",
            Mode::Passphrase => "passphrase",
            Mode::Pkcs11 => "pkcs11",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("root key {path} is damaged ({what}); restore it from your backup of the vault home")]
    Damaged { path: PathBuf, what: String },
    #[error("root key {path} was written by a newer vault (root format {found}); upgrade vault")]
    TooNew { path: PathBuf, found: u32 },
    #[error("wrong passphrase for the root key of this vault home")]
    WrongPassphrase,
    #[error("the root key of this vault home is protected by a passphrase, and none was given")]
    PassphraseNeeded,
    #[error("cannot use secret file {path}: {reason}")]
    SecretFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Kdf(#[from] KdfError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl crate::errors::Classify for RootError {
    fn kind(&self) -> crate::errors::Kind {
        use crate::errors::Kind;
        match self {
            RootError::Damaged { .. } => Kind::Integrity,
            RootError::TooNew { .. } => Kind::Unsupported,
            RootError::WrongPassphrase => Kind::Auth,
            RootError::PassphraseNeeded => Kind::Usage,
            RootError::SecretFile { .. } => Kind::Io,
            RootError::Kdf(KdfError::TooCostly { .. }) => Kind::Unsupported,
            RootError::Kdf(KdfError::CostlyImport { .. }) => Kind::Refused,
            RootError::Kdf(KdfError::TooWeak { .. }) => Kind::Usage,
            RootError::Kdf(KdfError::Argon2(_)) => Kind::Internal,
            RootError::Token(t) => match t {
                TokenError::MissingModule { .. }
                | TokenError::MissingToken { .. }
                | TokenError::KeyMissing { .. } => Kind::NotFound,
                TokenError::WrongPin { .. } => Kind::Auth,
                TokenError::Locked { .. } | TokenError::KeyExists { .. } => Kind::Refused,
                TokenError::PinNeeded { .. } => Kind::Usage,
                TokenError::Unwrap { .. } => Kind::Integrity,
                TokenError::Failed { .. } => Kind::Internal,
            },
        }
    }
}

/// The public description of a root key file: what `vault home show` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootInfo {
    pub mode: Mode,
    /// `None` for a root key written before root ids existed (`VAULTRK1`).
    pub root_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenConfig>,
}

impl RootInfo {
    /// What the keys depend on, in one word a security team can grep for:
    /// `file`, `passphrase` or `pkcs11:<token label>`.
    pub fn dependency(&self) -> String {
        match (&self.mode, &self.token) {
            (Mode::Pkcs11, Some(t)) => format!("pkcs11:{}", t.token_label),
            (m, _) => m.to_string(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrappedDoc {
    format_version: u32,
    root_id: Uuid,
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<PassKdf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<TokenConfig>,
    /// base64(check[16]) for the passphrase mode: tells a wrong passphrase from damage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
    /// base64(nonce[12] ‖ ciphertext[32] ‖ tag[16]).
    wrapped: String,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct PassKdf {
    algorithm: String,
    argon2_version: u32,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

/// A root key file as read from disk, not unlocked yet.
pub struct RootFile {
    pub info: RootInfo,
    body: Body,
}

enum Body {
    Clear(Key32),
    Passphrase {
        salt: Vec<u8>,
        check: [u8; 16],
        wrapped: Vec<u8>,
    },
    Pkcs11 {
        wrapped: Vec<u8>,
    },
}

/// What unlocking needs besides the file: the passphrase or the token's PIN, asked for
/// only when the mode needs it (the CLI reads them from a file, the environment or a TTY).
pub trait Unlocker {
    fn passphrase(&self) -> Result<Password, RootError>;
    /// The PIN of `token` (the library reads a PIN file configured in the home itself).
    fn pin(&self, token: &TokenConfig) -> Result<Password, RootError>;
}

/// An unlocker for homes in mode `file`: asks for nothing.
pub struct NoSecrets;

impl Unlocker for NoSecrets {
    fn passphrase(&self) -> Result<Password, RootError> {
        Err(RootError::PassphraseNeeded)
    }
    fn pin(&self, token: &TokenConfig) -> Result<Password, RootError> {
        Err(RootError::Token(TokenError::PinNeeded {
            label: token.token_label.clone(),
        }))
    }
}

/// An unlocked root key, with what is needed to wrap a new one the same way without
/// asking again (the passphrase-derived key and its salt, or the open token).
pub struct Unlocked {
    pub info: RootInfo,
    pub key: Key32,
    pub(crate) kek: Kek,
}

pub(crate) enum Kek {
    None,
    Passphrase {
        params: KdfParams,
        salt: Vec<u8>,
        check: [u8; 16],
        wrap: Key32,
    },
    Token(Token),
}

/// The protection wanted for a new root key.
pub enum Target<'a> {
    File,
    /// A new passphrase (its Argon2id cost).
    Passphrase(&'a Password, KdfParams),
    /// Keep the passphrase (and salt) the current root is wrapped with.
    SamePassphrase,
    Pkcs11(Token),
    /// Keep the token session the current root was unlocked with.
    SameToken,
}

fn aad(root_id: &Uuid, mode: Mode) -> Vec<u8> {
    let mut a = WRAP_LABEL.to_vec();
    a.extend_from_slice(root_id.as_bytes());
    a.extend_from_slice(mode.to_string().as_bytes());
    a
}

fn damaged(path: &Path, what: impl Into<String>) -> RootError {
    RootError::Damaged {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Parses a root key file. Needs no secret.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<RootFile, RootError> {
    if bytes.len() < 8 {
        return Err(damaged(path, "shorter than its magic bytes"));
    }
    let (magic, rest) = bytes.split_at(8);
    if magic == MAGIC_LEGACY || magic == MAGIC_FILE {
        return parse_clear(path, magic == MAGIC_LEGACY, rest);
    }
    if magic != MAGIC_WRAPPED {
        return Err(damaged(path, "unknown magic bytes"));
    }
    parse_wrapped(path, rest)
}

/// A root key file in mode `file`: the key in clear (after its id, unless `legacy`).
fn parse_clear(path: &Path, legacy: bool, rest: &[u8]) -> Result<RootFile, RootError> {
    let (id, key) = if legacy {
        (None, rest)
    } else {
        if rest.len() < 16 {
            return Err(damaged(path, "cut short"));
        }
        let (id, key) = rest.split_at(16);
        (Some(Uuid::from_slice(id).expect("16 bytes")), key)
    };
    let key = Key32::from_slice(key).ok_or_else(|| damaged(path, "wrong length"))?;
    Ok(RootFile {
        info: RootInfo {
            mode: Mode::File,
            root_id: id,
            kdf: None,
            token: None,
        },
        body: Body::Clear(key),
    })
}

/// A wrapped root key file (the JSON document after its magic bytes).
fn parse_wrapped(path: &Path, rest: &[u8]) -> Result<RootFile, RootError> {
    let doc: WrappedDoc =
        serde_json::from_slice(rest).map_err(|e| damaged(path, format!("not valid JSON: {e}")))?;
    if doc.format_version > 2 {
        return Err(RootError::TooNew {
            path: path.to_path_buf(),
            found: doc.format_version,
        });
    }
    let wrapped = B64
        .decode(&doc.wrapped)
        .map_err(|_| damaged(path, "wrapped key is not base64"))?;
    if wrapped.len() > 1024 {
        return Err(damaged(path, "wrapped key too long"));
    }
    let (kdf_params, body) = match doc.mode {
        Mode::File => return Err(damaged(path, "a wrapped root cannot be in mode file")),
        Mode::Passphrase => passphrase_body(path, &doc, wrapped)?,
        Mode::Pkcs11 => {
            if doc.token.is_none() {
                return Err(damaged(path, "pkcs11 mode without a token"));
            }
            (None, Body::Pkcs11 { wrapped })
        }
    };
    Ok(RootFile {
        info: RootInfo {
            mode: doc.mode,
            root_id: Some(doc.root_id),
            kdf: kdf_params,
            token: doc.token,
        },
        body,
    })
}

/// The KDF parameters and body of a wrapped root in mode `passphrase`.
fn passphrase_body(
    path: &Path,
    doc: &WrappedDoc,
    wrapped: Vec<u8>,
) -> Result<(Option<KdfParams>, Body), RootError> {
    let k = doc
        .kdf
        .as_ref()
        .ok_or_else(|| damaged(path, "passphrase mode without KDF parameters"))?;
    if k.algorithm != "argon2id" || k.argon2_version != 0x13 {
        return Err(damaged(path, "unknown KDF"));
    }
    k.params.check()?;
    let salt = B64
        .decode(&k.salt)
        .map_err(|_| damaged(path, "salt is not base64"))?;
    if salt.len() < kdf::SALT_LEN || salt.len() > 64 {
        return Err(damaged(path, "salt length out of bounds (16 to 64 bytes)"));
    }
    let check: [u8; 16] = doc
        .check
        .as_deref()
        .and_then(|c| B64.decode(c).ok())
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| damaged(path, "passphrase check value missing or malformed"))?;
    Ok((
        Some(k.params),
        Body::Passphrase {
            salt,
            check,
            wrapped,
        },
    ))
}

fn passphrase_keys(
    pw: &Password,
    salt: &[u8],
    params: &KdfParams,
) -> Result<([u8; 16], Key32), RootError> {
    let master = kdf::derive(pw.expose().as_bytes(), salt, params)?;
    let hk = Hkdf::<Sha256>::from_prk(master.as_ref()).expect("32-byte PRK");
    let mut check = [0u8; 16];
    hk.expand(LABEL_CHECK, &mut check).expect("short output");
    let mut wrap = Zeroizing::new([0u8; 32]);
    hk.expand(LABEL_WRAP, wrap.as_mut()).expect("short output");
    Ok((check, Key32::from_bytes(&mut wrap)))
}

impl RootFile {
    /// Unlocks the root key, asking `unlocker` for the passphrase or PIN when needed.
    pub fn unlock(self, path: &Path, unlocker: &dyn Unlocker) -> Result<Unlocked, RootError> {
        let id = self.info.root_id.unwrap_or_default();
        match self.body {
            Body::Clear(key) => Ok(Unlocked {
                info: self.info,
                key,
                kek: Kek::None,
            }),
            Body::Passphrase {
                salt,
                check,
                wrapped,
            } => {
                let params = self.info.kdf.expect("checked by parse");
                let pw = unlocker.passphrase()?;
                let (got, wrap) = passphrase_keys(&pw, &salt, &params)?;
                if !bool::from(got.ct_eq(&check)) {
                    return Err(RootError::WrongPassphrase);
                }
                let key = crate::aead::unwrap_key(&wrap, &aad(&id, Mode::Passphrase), &wrapped)
                    .ok_or_else(|| damaged(path, "the wrapped root key does not authenticate"))?;
                Ok(Unlocked {
                    info: self.info,
                    key,
                    kek: Kek::Passphrase {
                        params,
                        salt,
                        check,
                        wrap,
                    },
                })
            }
            Body::Pkcs11 { wrapped } => {
                let cfg = self.info.token.clone().expect("checked by parse");
                let token = Token::login(&cfg, &|| match &cfg.pin_file {
                    Some(f) => read_secret_line(f),
                    None => unlocker.pin(&cfg),
                })?;
                let mut raw = token.decrypt(&aad(&id, Mode::Pkcs11), &wrapped)?;
                let key = Key32::from_slice(&raw)
                    .ok_or_else(|| damaged(path, "the token returned a key of the wrong length"));
                zeroize::Zeroize::zeroize(&mut *raw);
                Ok(Unlocked {
                    info: self.info,
                    key: key?,
                    kek: Kek::Token(token),
                })
            }
        }
    }
}

impl Unlocked {
    /// The open token, if the root is in mode `pkcs11`.
    pub fn token(&self) -> Option<&Token> {
        match &self.kek {
            Kek::Token(t) => Some(t),
            _ => None,
        }
    }
}

/// A fresh root key protected as `target`, and the bytes of its root key file.
/// `current` supplies the passphrase-derived key or token for the `Same*` targets.
pub fn create(
    target: Target<'_>,
    current: Option<Unlocked>,
) -> Result<(Unlocked, Zeroizing<Vec<u8>>), RootError> {
    let id = Uuid::new_v4();
    let key = Key32::random();
    let kek = kek_for(target, current)?;
    let (info, bytes) = encode(&id, &key, &kek)?;
    Ok((Unlocked { info, key, kek }, bytes))
}

/// What protects a new root key for `target` (`current` for the `Same*` targets).
fn kek_for(target: Target<'_>, current: Option<Unlocked>) -> Result<Kek, RootError> {
    Ok(match target {
        Target::File => Kek::None,
        Target::Passphrase(pw, params) => {
            params.check()?;
            let mut salt = vec![0u8; kdf::SALT_LEN];
            OsRng.fill_bytes(&mut salt);
            let (check, wrap) = passphrase_keys(pw, &salt, &params)?;
            Kek::Passphrase {
                params,
                salt,
                check,
                wrap,
            }
        }
        Target::SamePassphrase => match current.map(|c| c.kek) {
            Some(k @ Kek::Passphrase { .. }) => k,
            _ => panic!("SamePassphrase needs a root unlocked with a passphrase"),
        },
        Target::Pkcs11(t) => Kek::Token(t),
        Target::SameToken => match current.map(|c| c.kek) {
            Some(k @ Kek::Token(_)) => k,
            _ => panic!("SameToken needs a root unlocked with a token"),
        },
    })
}

/// The root key file of root key `key` (id `id`) under `kek`, and what it says.
fn encode(id: &Uuid, key: &Key32, kek: &Kek) -> Result<(RootInfo, Zeroizing<Vec<u8>>), RootError> {
    let id = *id;
    Ok(match kek {
        Kek::None => {
            let mut b = Zeroizing::new(MAGIC_FILE.to_vec());
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(key.expose());
            (
                RootInfo {
                    mode: Mode::File,
                    root_id: Some(id),
                    kdf: None,
                    token: None,
                },
                b,
            )
        }
        Kek::Passphrase {
            params,
            salt,
            check,
            wrap,
        } => {
            let wrapped = crate::aead::wrap_key(wrap, &aad(&id, Mode::Passphrase), key);
            let doc = WrappedDoc {
                format_version: 2,
                root_id: id,
                mode: Mode::Passphrase,
                kdf: Some(PassKdf {
                    algorithm: "argon2id".into(),
                    argon2_version: 0x13,
                    params: *params,
                    salt: B64.encode(salt),
                }),
                token: None,
                check: Some(B64.encode(check)),
                wrapped: B64.encode(wrapped),
            };
            (
                RootInfo {
                    mode: Mode::Passphrase,
                    root_id: Some(id),
                    kdf: Some(*params),
                    token: None,
                },
                wrapped_bytes(&doc),
            )
        }
        Kek::Token(t) => {
            let wrapped = t.encrypt(&aad(&id, Mode::Pkcs11), key.expose())?;
            let doc = WrappedDoc {
                format_version: 2,
                root_id: id,
                mode: Mode::Pkcs11,
                kdf: None,
                token: Some(t.config().clone()),
                check: None,
                wrapped: B64.encode(wrapped),
            };
            (
                RootInfo {
                    mode: Mode::Pkcs11,
                    root_id: Some(id),
                    kdf: None,
                    token: Some(t.config().clone()),
                },
                wrapped_bytes(&doc),
            )
        }
    })
}

/// Reads a one-line secret file (a PIN or passphrase file): at most 4 KiB, checked like
/// every secret file (owner, mode, no symlink), one trailing newline (and CR) stripped.
pub fn read_secret_line(path: &Path) -> Result<Password, RootError> {
    use std::io::Read;
    let io = |e: std::io::Error| RootError::SecretFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let f = crate::fsutil::open_secret_file(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(4097).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > 4096 {
        return Err(io(std::io::Error::other("larger than 4096 bytes")));
    }
    let mut text = String::from_utf8(std::mem::take(&mut *bytes))
        .map_err(|_| io(std::io::Error::other("not UTF-8 text")))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(io(std::io::Error::other("empty")));
    }
    Ok(Password::new(text))
}

fn wrapped_bytes(doc: &WrappedDoc) -> Zeroizing<Vec<u8>> {
    let mut b = Zeroizing::new(MAGIC_WRAPPED.to_vec());
    b.extend_from_slice(&serde_json::to_vec_pretty(doc).expect("root document serializes"));
    b.push(b'\n');
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pw(&'static str);
    impl Unlocker for Pw {
        fn passphrase(&self) -> Result<Password, RootError> {
            Ok(Password::new(self.0.into()))
        }
        fn pin(&self, _: &TokenConfig) -> Result<Password, RootError> {
            unreachable!()
        }
    }

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: kdf::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        }
    }

    #[test]
    fn file_mode_round_trip_and_legacy_layout() {
        let (u, bytes) = create(Target::File, None).unwrap();
        let p = Path::new("root.key");
        let back = parse(p, &bytes).unwrap().unlock(p, &NoSecrets).unwrap();
        assert!(back.key.ct_eq(&u.key));
        assert_eq!(back.info.root_id, u.info.root_id);
        let mut legacy = MAGIC_LEGACY.to_vec();
        legacy.extend_from_slice(u.key.expose());
        let l = parse(p, &legacy).unwrap();
        assert_eq!(l.info.root_id, None);
        assert!(l.unlock(p, &NoSecrets).unwrap().key.ct_eq(&u.key));
    }

    #[test]
    fn passphrase_mode_wrong_passphrase_and_tamper_are_distinct() {
        let pw = Password::new("correct horse battery".into());
        let (u, bytes) = create(Target::Passphrase(&pw, fast()), None).unwrap();
        let p = Path::new("root.key");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(!text.contains(&B64.encode(u.key.expose())));
        let back = parse(p, &bytes)
            .unwrap()
            .unlock(p, &Pw("correct horse battery"))
            .unwrap();
        assert!(back.key.ct_eq(&u.key));
        assert!(matches!(
            parse(p, &bytes).unwrap().unlock(p, &Pw("wrong")),
            Err(RootError::WrongPassphrase)
        ));
        assert!(matches!(
            parse(p, &bytes).unwrap().unlock(p, &NoSecrets),
            Err(RootError::PassphraseNeeded)
        ));
        // Claiming another root id (a document moved from another home) fails closed.
        let mut doc: serde_json::Value = serde_json::from_slice(&bytes[8..]).unwrap();
        doc["rootId"] = serde_json::json!(Uuid::new_v4());
        let mut forged = MAGIC_WRAPPED.to_vec();
        forged.extend_from_slice(&serde_json::to_vec(&doc).unwrap());
        assert!(matches!(
            parse(p, &forged)
                .unwrap()
                .unlock(p, &Pw("correct horse battery")),
            Err(RootError::Damaged { .. })
        ));
        // The same passphrase wraps a fresh root without asking again.
        let (n, _) = create(Target::SamePassphrase, Some(back)).unwrap();
        assert!(!n.key.ct_eq(&u.key));
    }

    #[test]
    fn short_salt_and_absurd_kdf_are_refused() {
        let pw = Password::new("correct horse battery".into());
        let (_, bytes) = create(Target::Passphrase(&pw, fast()), None).unwrap();
        let p = Path::new("root.key");
        let mut doc: serde_json::Value = serde_json::from_slice(&bytes[8..]).unwrap();
        doc["kdf"]["salt"] = serde_json::json!(B64.encode([0u8; 8]));
        let mut b = MAGIC_WRAPPED.to_vec();
        b.extend_from_slice(&serde_json::to_vec(&doc).unwrap());
        assert!(matches!(parse(p, &b), Err(RootError::Damaged { .. })));
        doc["kdf"]["memoryKib"] = serde_json::json!(u32::MAX);
        let mut b = MAGIC_WRAPPED.to_vec();
        b.extend_from_slice(&serde_json::to_vec(&doc).unwrap());
        assert!(matches!(parse(p, &b), Err(RootError::Kdf(_))));
    }
}
