//! Secret-holding types.
//!
//! Invariant: key bytes and passwords live only inside these types, which zeroize their
//! memory on drop and implement neither `Debug`, `Display`, `Serialize` nor `Clone`/`Copy`
//! (a derived `Debug` would print key bytes into logs and panic messages). Code that needs
//! the bytes borrows them with `expose()` for the shortest possible scope.
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::{Zeroize, Zeroizing};

/// A 256-bit symmetric key (backup key, data key, root key or derived wrapping key).
pub struct Key32(Zeroizing<[u8; 32]>);

impl Key32 {
    /// A fresh key from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Key32(k)
    }

    /// Takes ownership of `bytes`, wiping the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; 32]) -> Self {
        let k = Zeroizing::new(*bytes);
        bytes.zeroize();
        Key32(k)
    }

    /// Copies a key out of a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Key32(Zeroizing::new(arr)))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality, for "is this the same key material" checks.
    pub fn ct_eq(&self, other: &Key32) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(other.0.as_ref()).into()
    }

    /// An explicit copy (deliberately not `Clone`, so copies are visible in review).
    pub fn duplicate(&self) -> Self {
        Key32(Zeroizing::new(*self.0))
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32([REDACTED])")
    }
}

/// A password or passphrase. Never printed, never logged. A clone is wiped on drop too.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(s: String) -> Self {
        Password(Zeroizing::new(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_key_prints_no_key_bytes() {
        let mut raw = [0xA5u8; 32];
        let k = Key32::from_bytes(&mut raw);
        assert_eq!(raw, [0u8; 32], "caller's copy must be wiped");
        let shown = format!("{k:?} {k:#?}");
        assert!(!shown.contains("a5") && !shown.contains("A5") && !shown.contains("165"));
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn debug_of_password_prints_no_password() {
        let p = Password::new("correct horse battery staple".into());
        let shown = format!("{p:?} {p:#?}");
        assert!(!shown.contains("horse"));
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn random_keys_differ_and_compare() {
        let a = Key32::random();
        let b = Key32::random();
        assert!(!a.ct_eq(&b));
        assert!(a.ct_eq(&a.duplicate()));
    }
}
