//! AES-256-GCM, the one AEAD of vault: archive chunks, archive key slots, keys at rest
//! under the root key, and key files.
//!
//! Invariant: a (key, nonce) pair is never used twice. Chunk nonces are the Cobblestone
//! base nonce XOR a counter under a per-archive derived key; every other use draws a
//! random 96-bit nonce for a key that wraps only a handful of messages. This module is
//! the only place that touches the `aes-gcm` API.
use aes_gcm::aead::{AeadInOut, KeyInit};
pub use aes_gcm::{Aes256Gcm, Error};

use crate::secret::Key32;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// A cipher instance for `key` (its round keys live inside `Aes256Gcm`, which the
/// `aes-gcm` crate zeroizes on drop).
pub fn cipher(key: &Key32) -> Aes256Gcm {
    Aes256Gcm::new(key.expose().into())
}

/// Encrypts `buf` in place; returns the detached tag. Fails only for a message beyond
/// GCM's limit (64 GiB).
pub fn seal_in_place(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    cipher
        .encrypt_inout_detached(nonce.into(), aad, buf.into())
        .map(Into::into)
}

/// Decrypts `buf` in place with a detached tag. On failure `buf` must not be used.
pub fn open_in_place(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    cipher.decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
}

/// Wraps a 32-byte key under `kek` with a random nonce: `nonce ‖ ciphertext ‖ tag`.
pub fn wrap_key(kek: &Key32, aad: &[u8], key: &Key32) -> [u8; NONCE_LEN + 32 + TAG_LEN] {
    use rand::RngCore;
    let mut out = [0u8; NONCE_LEN + 32 + TAG_LEN];
    let (nonce, rest) = out.split_at_mut(NONCE_LEN);
    rand::rngs::OsRng.fill_bytes(nonce);
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().expect("12 bytes");
    let (ct, tag) = rest.split_at_mut(32);
    ct.copy_from_slice(key.expose());
    let t = seal_in_place(&cipher(kek), &nonce, aad, ct).expect("32 bytes is within GCM's limit");
    tag.copy_from_slice(&t);
    out
}

/// Unwraps what `wrap_key` produced; `None` if it does not authenticate.
pub fn unwrap_key(kek: &Key32, aad: &[u8], blob: &[u8]) -> Option<Key32> {
    if blob.len() != NONCE_LEN + 32 + TAG_LEN {
        return None;
    }
    let nonce: [u8; NONCE_LEN] = blob[..NONCE_LEN].try_into().ok()?;
    let tag: [u8; TAG_LEN] = blob[NONCE_LEN + 32..].try_into().ok()?;
    let mut buf = zeroize::Zeroizing::new([0u8; 32]);
    buf.copy_from_slice(&blob[NONCE_LEN..NONCE_LEN + 32]);
    open_in_place(&cipher(kek), &nonce, aad, buf.as_mut(), &tag).ok()?;
    Key32::from_slice(buf.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_round_trip_and_aad_binding() {
        let kek = Key32::random();
        let key = Key32::random();
        let blob = wrap_key(&kek, b"aad", &key);
        assert!(unwrap_key(&kek, b"aad", &blob).unwrap().ct_eq(&key));
        assert!(unwrap_key(&kek, b"other", &blob).is_none());
        assert!(unwrap_key(&Key32::random(), b"aad", &blob).is_none());
        for i in 0..blob.len() {
            let mut b = blob;
            b[i] ^= 1;
            assert!(unwrap_key(&kek, b"aad", &b).is_none(), "byte {i}");
        }
        assert!(unwrap_key(&kek, b"aad", &blob[1..]).is_none());
    }
}
