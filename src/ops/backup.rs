//! Shared steps of the archive operations: which key seals a new archive, and the key
//! lookup that opens one.
//!
//! Invariant: a new archive is sealed only under an *active* key of its own scope and
//! domain; opening may use any key of this home (retired keys included).
use uuid::Uuid;

use super::OpsError;
use crate::envelope::OpeningKey;
use crate::keystore::{KeyError, KeyInfo, KeyStore};
use crate::scope::Scope;
use crate::secret::Key32;

/// Chooses the key that seals a new archive of `scope`/`domain` (the one `named`, else
/// the default) and checks it may.
pub fn sealing_key(
    ks: &KeyStore<'_>,
    scope: Scope,
    domain: Option<&str>,
    named: Option<&str>,
) -> Result<(KeyInfo, Key32), OpsError> {
    let no_default = || KeyError::NoDefault {
        scope,
        domain: domain.map(str::to_string),
    };
    let (info, key) = match named {
        Some(id) => {
            let info = ks.find(id)?;
            check_scope(&info, scope, domain)?;
            ks.material(&info.id, true)?
        }
        None => ks.default_material(scope, domain)?.ok_or_else(no_default)?,
    };
    check_scope(&info, scope, domain)?;
    Ok((info, key))
}

fn check_scope(info: &KeyInfo, scope: Scope, domain: Option<&str>) -> Result<(), OpsError> {
    if info.in_scope(scope, domain) {
        return Ok(());
    }
    Err(OpsError::KeyOutOfScope {
        key: info.id,
        key_scope: info.scope,
        key_domain: info.domain_id.clone(),
        scope,
        domain: domain.map(str::to_string),
    })
}

/// Looks up keys of this home for opening archives (retired keys included), with the
/// scope and domain the home records for each. The root key is unlocked first, so a
/// wrong PIN, a missing token or passphrase, or an edited key entry is reported as such,
/// not as "key not in this home".
pub fn key_lookup<'a>(
    ks: &'a KeyStore<'_>,
) -> Result<impl Fn(&Uuid) -> Option<OpeningKey> + 'a, OpsError> {
    ks.unlock()?;
    Ok(move |id: &Uuid| {
        ks.material(id, false)
            .ok()
            .map(|(info, k)| OpeningKey::new(k, info.scope, info.domain_id))
    })
}
