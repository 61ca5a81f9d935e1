//! The scope of keys and archives, shared by the key store and the archive format.
//!
//! Invariant: a system archive is sealed only under a system key and a domain archive
//! only under a key of its own domain. The type lives at the crate root because both
//! `envelope` (which writes it into headers) and `keystore` (which stores it with each
//! key) depend on it, and neither may depend on the other for it.
use serde::{Deserialize, Serialize};

/// Whether an archive belongs to the whole system or to one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    System,
    Domain,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::System => "system",
            Scope::Domain => "domain",
        })
    }
}
