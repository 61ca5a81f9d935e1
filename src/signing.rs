//! The home's Ed25519 signing key: every key slot and trailer a home writes (archive
//! format 2) is signed with it, so that anyone holding the home's *public* key can check
//! an archive's origin and every one of its bytes without any backup key.
//!
//! Invariants:
//! - The secret half lives only in the key store, as a secret wrapped under the root key
//!   (`KeyStore::put_secret`), so it is protected exactly like the backup keys in every
//!   root protection mode and re-wrapped with them by `home rotate-root` / `home protect`
//!   and by a key deletion's re-key. It is never exported or printed.
//! - It is created with the home's first backup key (or on first use by an older home),
//!   under the home lock, and never replaced (replacing it
//!   would make every archive already written "unknown signer" for those who trust it).
//! - The public key file (`vault home public-key`) is one line of text:
//!   `vault-home-ed25519 <base64 of the 32-byte public key>`, optionally followed by a
//!   space and a free comment. Only that prefix and exactly 32 bytes are accepted.
//! - The home keeps that line in [`PUBLIC_FILE`] too, so that keyless views of the home
//!   (`backup list/get`, `audit archives`) can tell the slots this home signed without
//!   unlocking the root key. It is written (atomically) whenever the signing key is made
//!   or loaded and the file is missing or differs, so it always names the signing key
//!   once any sealing command ran. It is only as trustworthy as the home directory;
//!   `--trust` with a copy kept elsewhere does not depend on it.
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::home::{Home, HomeLock};
use crate::keystore::{KeyError, KeyStore};

/// Name of the signing key's secret in the key store.
pub const SECRET_NAME: &str = "home-signing-key-ed25519";
/// First word of a public key file.
pub const PUBLIC_KEY_PREFIX: &str = "vault-home-ed25519";
/// The home's own copy of its public key line (see the module doc).
pub const PUBLIC_FILE: &str = "signing.pub";

/// The home's signing key, created (and stored) on first use.
pub fn home_signer(home: &Home, ks: &KeyStore<'_>) -> Result<SigningKey, KeyError> {
    if let Some(s) = load(home, ks)? {
        return Ok(s);
    }
    let lock = home.lock()?;
    ensure(home, ks, &lock)
}

/// The home's signing key, created under a lock the caller already holds if it has none
/// yet. Key creation and import call it, so that a home that has a backup key has its
/// signing key too and a later pull or seal that fails changes nothing in the home.
pub fn ensure(home: &Home, ks: &KeyStore<'_>, lock: &HomeLock) -> Result<SigningKey, KeyError> {
    // Another process may have created it while this one waited for the lock.
    if let Some(s) = load(home, ks)? {
        return Ok(s);
    }
    let key = SigningKey::generate(&mut OsRng);
    ks.put_secret(lock, SECRET_NAME, &Zeroizing::new(key.to_bytes())[..])?;
    keep_public(home, &key);
    Ok(key)
}

/// The home's signing key if it already has one (a keyless caller never creates it).
pub fn load(home: &Home, ks: &KeyStore<'_>) -> Result<Option<SigningKey>, KeyError> {
    let Some(bytes) = ks.secret(SECRET_NAME)? else {
        return Ok(None);
    };
    let secret: Zeroizing<[u8; 32]> =
        Zeroizing::new(bytes.as_slice().try_into().map_err(|_| KeyError::Damaged {
            path: home.keys_path().display().to_string(),
            what: format!("the secret {SECRET_NAME:?} is not 32 bytes"),
        })?);
    let key = SigningKey::from_bytes(&secret);
    keep_public(home, &key);
    Ok(Some(key))
}

/// Writes [`PUBLIC_FILE`] if it does not already say `key`. Best effort: without it the
/// keyless views only show this home's slots as claimed (a read-only home stays usable).
fn keep_public(home: &Home, key: &SigningKey) {
    let line = public_key_line(&key.verifying_key());
    let path = home.dir().join(PUBLIC_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(line.as_str()) {
        let _ = crate::fsutil::write_atomic(&path, line.as_bytes(), 0o600);
    }
}

/// The home's public key as its [`PUBLIC_FILE`] says (keyless; `None` when the file is
/// missing or not a public key).
pub fn home_public_key(home: &Home) -> Option<[u8; 32]> {
    let text = std::fs::read_to_string(home.dir().join(PUBLIC_FILE)).ok()?;
    parse_public_key(&text).ok()
}

/// The text of a public key file for `key`.
pub fn public_key_line(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX} {}\n", B64.encode(key.as_bytes()))
}

/// Why a text is not a public key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("not a vault home public key (it must start with {PUBLIC_KEY_PREFIX:?})")]
    NotAPublicKey,
    #[error("the public key is not valid base64")]
    NotBase64,
    #[error("the public key is {0} bytes, not 32")]
    Length(usize),
    #[error("the public key is not an Ed25519 point")]
    NotAPoint,
}

/// Parses a public key file (see the module doc).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], PublicKeyError> {
    let line = text.lines().next().unwrap_or("").trim_end();
    let mut words = line.splitn(3, ' ');
    if words.next() != Some(PUBLIC_KEY_PREFIX) {
        return Err(PublicKeyError::NotAPublicKey);
    }
    let bytes = B64
        .decode(words.next().unwrap_or(""))
        .map_err(|_| PublicKeyError::NotBase64)?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| PublicKeyError::Length(bytes.len()))?;
    VerifyingKey::from_bytes(&key).map_err(|_| PublicKeyError::NotAPoint)?;
    Ok(key)
}

/// Short display form of a public key: the first 16 hex digits of its SHA-256.
pub fn fingerprint(key: &[u8; 32]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(key)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_is_made_once_and_kept_under_the_root_key() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::open(t.path()).unwrap();
        let ks = KeyStore::new(&home);
        assert!(load(&home, &ks).unwrap().is_none());
        let a = home_signer(&home, &ks).unwrap();
        let home2 = Home::open(t.path()).unwrap();
        let b = home_signer(&home2, &KeyStore::new(&home2)).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        // Not in any file in clear.
        let secret = a.to_bytes();
        for e in std::fs::read_dir(t.path()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!bytes.windows(32).any(|w| w == secret), "{}", p.display());
            }
        }
    }

    #[test]
    fn public_key_files_round_trip_and_junk_is_refused() {
        let k = SigningKey::generate(&mut OsRng).verifying_key();
        let line = public_key_line(&k);
        assert_eq!(parse_public_key(&line).unwrap(), k.to_bytes());
        assert_eq!(
            parse_public_key(&format!("{} lab home\n", line.trim_end())).unwrap(),
            k.to_bytes()
        );
        for bad in [
            "",
            "ssh-ed25519 AAAA",
            "vault-home-ed25519 !!!",
            "vault-home-ed25519 AAAA",
        ] {
            assert!(parse_public_key(bad).is_err(), "{bad}");
        }
    }
}
