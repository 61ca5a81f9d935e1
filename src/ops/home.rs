//! Root-key operations: `home init`, `show`, `protect` and `rotate-root`.
//!
//! Invariant: a root change (`protect`, `rotate-root`) holds the home lock, unlocks the
//! current root before asking for anything new, and re-wraps every key entry and home
//! secret under a fresh root key in the crash-safe order of `home/root.rs`; a failure
//! before the commit point (wrong PIN, missing token, short passphrase) changes nothing.
use std::path::{Path, PathBuf};

use super::{Context, OpsError, PasswordSource, Subject};
use crate::home::Home;
use crate::home::root::{self, RootError, Unlocker};
use crate::home::token::{Token, TokenConfig};
use crate::keystore::kdf::KdfParams;
use crate::keystore::{KeyStore, RootChange, RootInfo, Target};

/// How the root key is to be protected.
#[derive(Debug, Clone)]
pub enum Protection {
    File,
    /// A new passphrase (from the operation's [`PasswordSource`]) at this Argon2id cost.
    Passphrase(KdfParams),
    /// A fresh AES key generated in this token; its PIN comes from `pin_file` (kept in
    /// the home's configuration) or, without one, from the home's unlocker.
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        pin_file: Option<PathBuf>,
    },
}

/// Logs in to the token named by `p` and generates a fresh wrapping key in it.
fn new_token(
    module: &Path,
    token_label: &str,
    pin_file: Option<&Path>,
    unlocker: &dyn Unlocker,
) -> Result<Token, OpsError> {
    let pin_file = match pin_file {
        Some(p) => Some(std::path::absolute(p).map_err(OpsError::file(p))?),
        None => None,
    };
    let cfg = TokenConfig {
        module: module.to_path_buf(),
        token_label: token_label.to_string(),
        key_label: format!("vault-root-{}", uuid::Uuid::new_v4()),
        pin_file,
    };
    let pin = || match &cfg.pin_file {
        Some(f) => root::read_secret_line(f),
        None => unlocker.pin(&cfg),
    };
    let mut token = Token::login::<RootError>(&cfg, &pin)?;
    token.create_key().map_err(RootError::from)?;
    Ok(token)
}

fn with_target<T>(
    protection: &Protection,
    passphrase: PasswordSource<'_>,
    unlocker: &dyn Unlocker,
    f: impl FnOnce(Target<'_>) -> Result<T, OpsError>,
) -> Result<T, OpsError> {
    match protection {
        Protection::File => f(Target::File),
        Protection::Passphrase(params) => {
            params.check().map_err(OpsError::KdfParams)?;
            let pw = passphrase()?;
            crate::ops::password::check(&pw, true)?;
            f(Target::Passphrase(&pw, *params))
        }
        Protection::Pkcs11 {
            module,
            token_label,
            pin_file,
        } => f(Target::Pkcs11(new_token(
            module,
            token_label,
            pin_file.as_deref(),
            unlocker,
        )?)),
    }
}

/// Creates the home at `dir` with its root key protected as `protection`; refused if the
/// directory already holds a root key or keys. Audited in the new home.
pub fn init(
    dir: &Path,
    account: &str,
    protection: &Protection,
    passphrase: PasswordSource<'_>,
    unlocker: Box<dyn Unlocker + Send + Sync>,
) -> Result<RootInfo, OpsError> {
    let home = with_target(protection, passphrase, unlocker.as_ref(), |t| {
        Ok(Home::init(dir, t)?)
    })?
    .with_unlocker(unlocker);
    let ctx = Context::with_home(home, account);
    ctx.audited("home.init", Subject::default(), |s| {
        let info = ctx.home().root_info()?;
        s.detail = Some(format!("protect {}", info.dependency()));
        Ok(info)
    })
}

/// How the root key is protected; needs no secret.
pub fn show(ctx: &Context) -> Result<RootInfo, OpsError> {
    Ok(ctx.home().root_info()?)
}

/// The home's signing public key, in the one-line form that `--trust` reads.
pub struct PublicKey {
    /// The line without its newline.
    pub line: String,
    pub fingerprint: String,
}

/// The home's signing public key (made with its first backup key), also written to
/// `file` (mode 0644, atomically) when one is given.
pub fn public_key(ctx: &Context, file: Option<&Path>) -> Result<PublicKey, OpsError> {
    let ks = KeyStore::new(ctx.home());
    let key = crate::signing::home_signer(ctx.home(), &ks)?.verifying_key();
    let line = crate::signing::public_key_line(&key);
    if let Some(f) = file {
        crate::fsutil::write_atomic(f, line.as_bytes(), 0o644).map_err(|source| {
            OpsError::Write {
                what: "public key file",
                path: f.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(PublicKey {
        line: line.trim_end().to_string(),
        fingerprint: crate::signing::fingerprint(key.as_bytes()),
    })
}

/// A fresh root key protected as `protection`; every key re-wrapped.
pub fn protect(
    ctx: &Context,
    protection: &Protection,
    passphrase: PasswordSource<'_>,
) -> Result<RootChange, OpsError> {
    ctx.audited("home.protect", Subject::default(), |s| {
        let lock = ctx.home().lock()?;
        let ks = KeyStore::new(ctx.home());
        // The current root first: a wrong PIN or passphrase costs no new token key.
        ks.unlock()?;
        let c = with_target(protection, passphrase, ctx.home().unlocker(), |t| {
            s.intent()?;
            Ok(ks.protect(&lock, t)?)
        })?;
        s.detail = Some(format!(
            "{} -> {}",
            c.previous.dependency(),
            c.current.dependency()
        ));
        Ok(c)
    })
}

/// A fresh root key protected the same way; every key re-wrapped.
pub fn rotate_root(ctx: &Context) -> Result<RootChange, OpsError> {
    ctx.audited("home.rotate-root", Subject::default(), |s| {
        let lock = ctx.home().lock()?;
        s.intent()?;
        let c = KeyStore::new(ctx.home()).rotate_root(&lock)?;
        let id = |i: &RootInfo| i.root_id.map(|u| u.to_string()).unwrap_or_default();
        s.detail = Some(format!("root {} -> {}", id(&c.previous), id(&c.current)));
        Ok(c)
    })
}
