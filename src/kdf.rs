//! Argon2id password-based key derivation with bounded parameters.
//!
//! Invariant: parameters read from a file are checked against `KdfParams::check_import`
//! *before* Argon2 allocates its memory, so a hostile key file claiming m = 4 TiB costs
//! nothing. The floor (OWASP: m = 19 MiB, t = 2, p = 1) keeps offline guessing expensive;
//! the default is RFC 9106's second recommendation (m = 64 MiB, t = 3, p = 4).
use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// OWASP floor.
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
pub const MIN_ITERATIONS: u32 = 2;
pub const MIN_PARALLELISM: u32 = 1;
/// Import ceiling: anything above is refused as absurd before allocating.
pub const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
pub const MAX_ITERATIONS: u32 = 10;
pub const MAX_PARALLELISM: u32 = 16;

/// Import ceiling without `--allow-costly-kdf`: a key file asking for more is refused
/// before Argon2 allocates anything (issue 13.6: a 400-byte file asking for m = 2 GiB,
/// t = 10 pinned 2 GiB for seconds before "wrong password" could be said). Four times
/// the default memory, a little over twice its passes.
pub const IMPORT_MAX_MEMORY_KIB: u32 = 256 * 1024;
pub const IMPORT_MAX_ITERATIONS: u32 = 8;

/// Salt length written, and the least accepted (RFC 9106 recommends 16 bytes).
pub const SALT_LEN: usize = 16;
pub const MAX_SALT_LEN: usize = 64;

/// How much KDF cost an import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportLimit {
    /// Up to `IMPORT_MAX_*`.
    Default,
    /// Up to the absolute ceiling `MAX_*` (`--allow-costly-kdf`).
    Costly,
}

/// Argon2id cost parameters, as stored in key files (`kdf` object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// RFC 9106 §4, second recommended option.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KdfError {
    #[error(
        "Argon2id parameters m={memory_kib} KiB, t={iterations}, p={parallelism} are below the \
         minimum (m={MIN_MEMORY_KIB} KiB, t={MIN_ITERATIONS}, p={MIN_PARALLELISM}); choose stronger values"
    )]
    TooWeak {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    #[error(
        "Argon2id parameters m={memory_kib} KiB, t={iterations}, p={parallelism} exceed the accepted \
         maximum (m={MAX_MEMORY_KIB} KiB, t={MAX_ITERATIONS}, p={MAX_PARALLELISM}); the file is \
         corrupted or hostile and was not processed"
    )]
    TooCostly {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    #[error(
        "the key file asks for Argon2id m={memory_kib} KiB, t={iterations}, p={parallelism}, above \
         what an import accepts by default (m={IMPORT_MAX_MEMORY_KIB} KiB, t={IMPORT_MAX_ITERATIONS}); \
         nothing was allocated"
    )]
    CostlyImport {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    #[error("Argon2id rejected its inputs: {0}")]
    Argon2(String),
}

impl KdfParams {
    /// Accepts parameters for a new key file or an import: within floor and ceiling.
    pub fn check(&self) -> Result<(), KdfError> {
        let (m, t, p) = (self.memory_kib, self.iterations, self.parallelism);
        if m > MAX_MEMORY_KIB || t > MAX_ITERATIONS || p > MAX_PARALLELISM {
            return Err(KdfError::TooCostly {
                memory_kib: m,
                iterations: t,
                parallelism: p,
            });
        }
        // Argon2 itself needs at least 8 KiB per lane.
        if m < MIN_MEMORY_KIB || t < MIN_ITERATIONS || p < MIN_PARALLELISM || m < 8 * p {
            return Err(KdfError::TooWeak {
                memory_kib: m,
                iterations: t,
                parallelism: p,
            });
        }
        Ok(())
    }
}

impl KdfParams {
    /// The import policy: [`KdfParams::check`], then the lower ceiling unless `limit`
    /// is [`ImportLimit::Costly`].
    pub fn check_import(&self, limit: ImportLimit) -> Result<(), KdfError> {
        self.check()?;
        if limit == ImportLimit::Default
            && (self.memory_kib > IMPORT_MAX_MEMORY_KIB || self.iterations > IMPORT_MAX_ITERATIONS)
        {
            return Err(KdfError::CostlyImport {
                memory_kib: self.memory_kib,
                iterations: self.iterations,
                parallelism: self.parallelism,
            });
        }
        Ok(())
    }

    /// "m=64 MiB, t=3, p=4": what a user is told before the KDF runs.
    pub fn describe(&self) -> String {
        format!(
            "Argon2id m={} MiB, t={}, p={}",
            self.memory_kib / 1024,
            self.iterations,
            self.parallelism
        )
    }
}

/// Raw Argon2id (version 0x13) with optional secret and associated data, writing
/// `out.len()` bytes. Callers must have bounded `params` already; this function does
/// not apply the vault's policy so that RFC 9106's small test vector can run through it.
pub fn argon2id_raw(
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    ad: &[u8],
    params: &KdfParams,
    out: &mut [u8],
) -> Result<(), KdfError> {
    let mut builder = ParamsBuilder::new();
    builder
        .m_cost(params.memory_kib)
        .t_cost(params.iterations)
        .p_cost(params.parallelism)
        .output_len(out.len());
    if !ad.is_empty() {
        builder.data(AssociatedData::new(ad).map_err(|e| KdfError::Argon2(e.to_string()))?);
    }
    let p = builder
        .build()
        .map_err(|e| KdfError::Argon2(e.to_string()))?;
    let argon = if secret.is_empty() {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
    } else {
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, p)
            .map_err(|e| KdfError::Argon2(e.to_string()))?
    };
    argon
        .hash_password_into(password, salt, out)
        .map_err(|e| KdfError::Argon2(e.to_string()))
}

/// Derives 32 bytes from a password under the vault's policy (bounds enforced).
pub fn derive(
    password: &[u8],
    salt: &[u8],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    params.check()?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon2id_raw(password, salt, &[], &[], params, out.as_mut())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9106 §5.3: the Argon2id test vector.
    #[test]
    fn rfc9106_argon2id_vector() {
        let password = [0x01u8; 32];
        let salt = [0x02u8; 16];
        let secret = [0x03u8; 8];
        let ad = [0x04u8; 12];
        let params = KdfParams {
            memory_kib: 32,
            iterations: 3,
            parallelism: 4,
        };
        let mut tag = [0u8; 32];
        argon2id_raw(&password, &salt, &secret, &ad, &params, &mut tag).unwrap();
        assert_eq!(
            hex::encode(tag),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    #[test]
    fn policy_bounds() {
        assert!(KdfParams::default().check().is_ok());
        let floor = KdfParams {
            memory_kib: MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        };
        assert!(floor.check().is_ok());
        for bad in [
            (MIN_MEMORY_KIB - 1, 2, 1),
            (MIN_MEMORY_KIB, 1, 1),
            (MIN_MEMORY_KIB, 2, 0),
        ] {
            let p = KdfParams {
                memory_kib: bad.0,
                iterations: bad.1,
                parallelism: bad.2,
            };
            assert!(
                matches!(p.check(), Err(KdfError::TooWeak { .. })),
                "{bad:?}"
            );
        }
        for bad in [
            (u32::MAX, 3, 4),
            (MAX_MEMORY_KIB + 1, 3, 4),
            (65536, 11, 4),
            (65536, 3, 17),
        ] {
            let p = KdfParams {
                memory_kib: bad.0,
                iterations: bad.1,
                parallelism: bad.2,
            };
            assert!(
                matches!(p.check(), Err(KdfError::TooCostly { .. })),
                "{bad:?}"
            );
        }
    }

    /// Issue 13.6: the lower import ceiling, and the flag above it.
    #[test]
    fn import_ceiling_is_lower_than_the_absolute_one() {
        let hostile = KdfParams {
            memory_kib: MAX_MEMORY_KIB,
            iterations: MAX_ITERATIONS,
            parallelism: 4,
        };
        assert!(hostile.check().is_ok());
        assert!(matches!(
            hostile.check_import(ImportLimit::Default),
            Err(KdfError::CostlyImport { .. })
        ));
        assert!(hostile.check_import(ImportLimit::Costly).is_ok());
        let at = KdfParams {
            memory_kib: IMPORT_MAX_MEMORY_KIB,
            iterations: IMPORT_MAX_ITERATIONS,
            parallelism: 4,
        };
        assert!(at.check_import(ImportLimit::Default).is_ok());
        assert!(
            KdfParams::default()
                .check_import(ImportLimit::Default)
                .is_ok()
        );
        let over_t = KdfParams {
            iterations: IMPORT_MAX_ITERATIONS + 1,
            ..at
        };
        assert!(over_t.check_import(ImportLimit::Default).is_err());
    }

    #[test]
    fn derive_refuses_absurd_params_without_allocating() {
        // 4 TiB would abort the process if allocated; the check must come first.
        let p = KdfParams {
            memory_kib: u32::MAX,
            iterations: 3,
            parallelism: 4,
        };
        assert!(matches!(
            derive(b"pw", &[0u8; 16], &p),
            Err(KdfError::TooCostly { .. })
        ));
    }
}
