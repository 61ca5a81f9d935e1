//! Argument resolution, in one place (ripgrep's `HiArgs`).
//!
//! clap parses the command line into the `*Args`/`*Cmd` types of each group file (the
//! "low" arguments: what was typed). Turning them into what an operation needs — a
//! scope and domain, KDF parameters, password sources, defaults that depend on other
//! flags — happens here and in each group's `resolve` methods, never inside an
//! operation and never spread over the printing code. Each subcommand then reads:
//!
//! ```text
//! fn create(ctx: &Ctx, a: CreateArgs) -> CliResult {
//!     let new = a.resolve()?;                          // arguments → typed options
//!     let key = ops::keys::create(&ctx.ops()?, &new)?;  // the operation (audited)
//!     ctx.print(&key)                                   // a typed, serialisable record
//! }
//! ```
use std::path::PathBuf;

use clap::Args;

use super::CliResult;
use super::output::Format;
use crate::keystore::resolve_domain;
use crate::scope::Scope;

/// The global arguments, resolved: where the home is, how to print, who is acting.
pub struct HiArgs {
    pub home_dir: PathBuf,
    pub format: Format,
    pub account: String,
}

impl HiArgs {
    pub fn resolve(home: Option<PathBuf>, format: Format) -> HiArgs {
        HiArgs {
            home_dir: home.unwrap_or_else(default_home),
            format,
            account: crate::account::os_account(),
        }
    }
}

fn default_home() -> PathBuf {
    dirs::data_dir()
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("vault")
}

/// Scope flags shared by several commands.
#[derive(Args, Clone, Debug, Default)]
pub struct ScopeArgs {
    /// Key/archive scope.
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    /// Domain id (domain scope only; default: the root domain).
    #[arg(long, value_name = "ID")]
    pub domain: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeArg {
    System,
    Domain,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::System => Scope::System,
            ScopeArg::Domain => Scope::Domain,
        }
    }
}

impl ScopeArgs {
    /// The scope and domain id named, `default` when no scope is named. `--domain X`
    /// alone clearly means a domain key.
    pub fn resolve(&self, default: Scope) -> CliResult<(Scope, Option<String>)> {
        if self.scope.is_none() && self.domain.is_some() {
            let d = resolve_domain(Scope::Domain, self.domain.as_deref())?;
            return Ok((Scope::Domain, d));
        }
        let scope = self.scope.map(Scope::from).unwrap_or(default);
        Ok((scope, resolve_domain(scope, self.domain.as_deref())?))
    }

    /// As a filter: `None` when neither flag was given.
    pub fn filter(&self) -> CliResult<Option<(Scope, Option<String>)>> {
        match (self.scope, &self.domain) {
            (None, None) => Ok(None),
            _ => self.resolve(Scope::System).map(Some),
        }
    }
}

/// Argon2id cost of a new passphrase-protected file (`keys download`, `home protect`).
#[derive(Args, Debug, Clone, Default)]
pub struct KdfArgs {
    /// Argon2id memory in MiB (default 64; at least 19).
    #[arg(long, value_name = "MIB")]
    kdf_memory: Option<u32>,
    /// Argon2id passes (default 3; at least 2).
    #[arg(long, value_name = "N")]
    kdf_time: Option<u32>,
    /// Argon2id lanes (default 4; at least 1).
    #[arg(long, value_name = "N")]
    kdf_parallelism: Option<u32>,
}

impl KdfArgs {
    /// The parameters asked for, the defaults where none was given (bounds are checked
    /// by the operation).
    pub fn params(&self) -> crate::keystore::kdf::KdfParams {
        let d = crate::keystore::kdf::KdfParams::default();
        crate::keystore::kdf::KdfParams {
            memory_kib: self
                .kdf_memory
                .map(|m| m.saturating_mul(1024))
                .unwrap_or(d.memory_kib),
            iterations: self.kdf_time.unwrap_or(d.iterations),
            parallelism: self.kdf_parallelism.unwrap_or(d.parallelism),
        }
    }
}
