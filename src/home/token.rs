//! A PKCS#11 token (an HSM; SoftHSM2 in the tests) holding the home's key-encryption key.
//!
//! Invariant: the token's AES-256 key is generated inside the token as a private,
//! sensitive, non-extractable token object, so its bytes never exist outside it; vault
//! only asks the token to encrypt or decrypt 32-byte keys with it (AES-GCM, a random
//! 96-bit IV per call, AAD naming what is wrapped). Nothing here is specific to SoftHSM2:
//! the module path, token label and key label come from the home's configuration.
//!
//! Each failure a user can act on is its own variant: a module that does not load, a
//! token that is not there, a wrong PIN, a locked PIN, a key that is gone from the token.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::secret::Password;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where the token is and which key in it wraps this home's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenConfig {
    /// Path of the PKCS#11 module (a shared library).
    pub module: PathBuf,
    /// The token's label (CKA_LABEL of the token, as `softhsm2-util --show-slots` prints).
    pub token_label: String,
    /// The label of the AES key object inside the token.
    pub key_label: String,
    /// A file holding the user PIN (mode 0600), if the home is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot load the PKCS#11 module {path}: {reason}")]
    MissingModule { path: PathBuf, reason: String },
    #[error("no PKCS#11 token labelled {label:?} in module {module} (tokens present: {present})")]
    MissingToken {
        label: String,
        module: PathBuf,
        present: String,
    },
    #[error("wrong PIN for PKCS#11 token {label:?}; nothing was changed")]
    WrongPin { label: String },
    #[error(
        "the user PIN of PKCS#11 token {label:?} is locked (too many wrong PINs); have the security officer unlock it; nothing was changed"
    )]
    Locked { label: String },
    #[error("the PIN of PKCS#11 token {label:?} is needed, and none was given")]
    PinNeeded { label: String },
    #[error(
        "PKCS#11 token {label:?} has no key labelled {key:?}: the key that wraps this home's root key is gone from the token, and what depended on it cannot be opened"
    )]
    KeyMissing { label: String, key: String },
    #[error(
        "PKCS#11 token {label:?} already holds a key labelled {key:?}; choose another home or remove that key first"
    )]
    KeyExists { label: String, key: String },
    #[error(
        "PKCS#11 token {label:?} refused to decrypt: the wrapped key was not made by this token's key, or it was altered"
    )]
    Unwrap { label: String },
    #[error("PKCS#11 token {label:?} failed ({what}): {detail}")]
    Failed {
        label: String,
        what: &'static str,
        detail: String,
    },
}

/// One initialised context per module per process: PKCS#11 allows a single
/// `C_Initialize` per library, and finalising it would end every other session.
fn context(module: &Path) -> Result<Pkcs11, TokenError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let missing = |reason: String| TokenError::MissingModule {
        path: module.to_path_buf(),
        reason,
    };
    if !module.is_file() {
        return Err(missing("no such file".into()));
    }
    let ctx = Pkcs11::new(module).map_err(|e| missing(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(missing(format!("C_Initialize failed: {e}"))),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A logged-in session on the token, with the handle of the wrapping key.
pub struct Token {
    config: TokenConfig,
    session: Session,
    key: Option<ObjectHandle>,
}

impl Token {
    /// Opens the token named by `config` and logs in with the PIN from `pin`
    /// (called only once the module and token are known to be there).
    pub fn login<E>(config: &TokenConfig, pin: &dyn Fn() -> Result<Password, E>) -> Result<Token, E>
    where
        E: From<TokenError>,
    {
        let ctx = context(&config.module)?;
        let label = config.token_label.clone();
        let failed = |what: &'static str| {
            let label = label.clone();
            move |e: CkError| TokenError::Failed {
                label,
                what,
                detail: e.to_string(),
            }
        };
        let slots = ctx
            .get_slots_with_token()
            .map_err(failed("listing slots"))?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(failed("reading token info"))?;
            let l = info.label().trim_end().to_string();
            if l == config.token_label && found.is_none() {
                found = Some((slot, info));
            } else {
                present.push(format!("{l:?}"));
            }
        }
        let Some((slot, info)) = found else {
            return Err(TokenError::MissingToken {
                label: config.token_label.clone(),
                module: config.module.clone(),
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }
            .into());
        };
        if info.user_pin_locked() {
            return Err(TokenError::Locked { label }.into());
        }
        let session = ctx
            .open_rw_session(slot)
            .map_err(failed("opening a session"))?;
        let pw = pin()?;
        let auth = AuthPin::from(pw.expose().to_string());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                return Err(TokenError::WrongPin { label }.into());
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(TokenError::Locked { label }.into());
            }
            Err(e) => return Err(failed("logging in")(e).into()),
        }
        let mut token = Token {
            config: config.clone(),
            session,
            key: None,
        };
        token.key = token.find_key()?;
        Ok(token)
    }

    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    fn failed(&self, what: &'static str) -> impl FnOnce(CkError) -> TokenError + '_ {
        move |e| TokenError::Failed {
            label: self.config.token_label.clone(),
            what,
            detail: e.to_string(),
        }
    }

    fn key_template(&self) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.config.key_label.as_bytes().to_vec()),
        ]
    }

    fn find_key(&self) -> Result<Option<ObjectHandle>, TokenError> {
        let found = self
            .session
            .find_objects(&self.key_template())
            .map_err(self.failed("finding the key"))?;
        Ok(found.into_iter().next())
    }

    /// Generates the home's wrapping key inside the token: AES-256, a private token
    /// object that is sensitive and never extractable. Refused if the label is taken.
    pub fn create_key(&mut self) -> Result<(), TokenError> {
        if self.key.is_some() {
            return Err(TokenError::KeyExists {
                label: self.config.token_label.clone(),
                key: self.config.key_label.clone(),
            });
        }
        let mut template = self.key_template();
        template.extend([
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ]);
        let h = self
            .session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(self.failed("generating the key"))?;
        self.key = Some(h);
        Ok(())
    }

    fn key(&self) -> Result<ObjectHandle, TokenError> {
        self.key.ok_or_else(|| TokenError::KeyMissing {
            label: self.config.token_label.clone(),
            key: self.config.key_label.clone(),
        })
    }

    /// AES-GCM inside the token: returns `iv[12] ‖ ciphertext ‖ tag[16]`.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, TokenError> {
        let key = self.key()?;
        let mut iv = [0u8; IV_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, (TAG_LEN as u64 * 8).into())
            .map_err(self.failed("AES-GCM parameters"))?;
        let ct = self
            .session
            .encrypt(&Mechanism::AesGcm(params), key, plaintext)
            .map_err(self.failed("encrypting"))?;
        let mut out = iv.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Reverses [`Token::encrypt`]; the plaintext is returned in a zeroizing buffer.
    pub fn decrypt(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TokenError> {
        let key = self.key()?;
        if blob.len() < IV_LEN + TAG_LEN || blob.len() > 1024 {
            return Err(TokenError::Unwrap {
                label: self.config.token_label.clone(),
            });
        }
        let mut iv: [u8; IV_LEN] = blob[..IV_LEN].try_into().expect("12 bytes");
        let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())
            .map_err(self.failed("AES-GCM parameters"))?;
        match self
            .session
            .decrypt(&Mechanism::AesGcm(params), key, &blob[IV_LEN..])
        {
            Ok(p) => Ok(zeroize::Zeroizing::new(p)),
            Err(CkError::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                _,
            )) => Err(TokenError::Unwrap {
                label: self.config.token_label.clone(),
            }),
            Err(e) => Err(self.failed("decrypting")(e)),
        }
    }
}

/// The Debian/Ubuntu path of SoftHSM2's module, the token used by the tests.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
