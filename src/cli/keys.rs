//! `vault keys …`: backup key management.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, CliResult, Ctx, ScopeArg, ScopeArgs, password};
use crate::audit::{AuditEvent, Outcome};
use crate::errors::Kind;
use crate::keystore::kdf::KdfParams;
use crate::keystore::{Imported, KeyInfo, KeyStore, Scope, keyfile, resolve_domain};
use crate::store::ArchiveStore;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a random 256-bit backup key (the first of its scope/domain becomes the default).
    Create {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Make this key the default of its scope/domain.
        #[arg(long)]
        default: bool,
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// List backup keys.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show one key.
    Get {
        #[arg(long, value_name = "ID")]
        id: String,
    },
    /// Make a key the default of its scope/domain (used when no --key is named).
    SetDefault {
        #[arg(long, value_name = "ID")]
        id: String,
    },
    /// Create a new default key; the previous default is retired (decrypts, never encrypts).
    Rotate {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Delete a key (refused while archives in this home use it, unless --force).
    Delete {
        #[arg(long, value_name = "ID")]
        id: String,
        /// Delete even if archives use it (they become unreadable here) or it is the default.
        #[arg(long)]
        force: bool,
    },
    /// Export a key to a password-protected key file (Argon2id + AES-256-GCM).
    Download(DownloadArgs),
    /// Show a key file's metadata (no password needed).
    Inspect {
        #[arg(long, value_name = "F")]
        file: PathBuf,
    },
    /// Import a key file into this home.
    Upload {
        #[arg(long, value_name = "F")]
        file: PathBuf,
        /// Must match the key file's scope (a domain key file needs --scope domain).
        #[arg(long, value_enum, default_value = "system")]
        scope: ScopeArg,
        /// Read the password from this file (mode 0600) instead of VAULT_KEY_PASSWORD or a prompt.
        #[arg(long, value_name = "P")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct DownloadArgs {
    #[arg(long, value_name = "ID")]
    id: String,
    /// Where to write the key file (atomically; an existing file is replaced).
    #[arg(long, value_name = "F")]
    file: PathBuf,
    /// Read the password from this file (mode 0600) instead of VAULT_KEY_PASSWORD or a prompt.
    #[arg(long, value_name = "P")]
    password_file: Option<PathBuf>,
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

pub fn key_json(k: &KeyInfo) -> Value {
    serde_json::to_value(k).expect("key info serializes")
}

pub fn list_json(items: Vec<Value>) -> Value {
    json!({"skip": 0, "limit": items.len(), "total": items.len(), "resources": items})
}

/// Resolves `--scope/--domain` into a scope and domain id.
pub fn scope_of(args: &ScopeArgs, default: Scope) -> CliResult<(Scope, Option<String>)> {
    let scope = args.scope.map(Scope::from).unwrap_or(default);
    if args.scope.is_none() && args.domain.is_some() {
        // `--domain X` alone clearly means a domain key.
        let d = resolve_domain(Scope::Domain, args.domain.as_deref())?;
        return Ok((Scope::Domain, d));
    }
    Ok((scope, resolve_domain(scope, args.domain.as_deref())?))
}

pub fn run(ctx: &Ctx, cmd: KeysCmd) -> CliResult {
    match cmd {
        KeysCmd::Create {
            scope,
            default,
            description,
        } => {
            let (scope, domain) = scope_of(&scope, Scope::System)?;
            let home = ctx.home()?;
            let lock = home.lock()?;
            let r = KeyStore::new(&home)
                .create(&lock, scope, domain, default, &description, &ctx.account)
                .map_err(CliError::from);
            let id = r.as_ref().ok().map(|k| k.id.to_string());
            ctx.audit(
                AuditEvent {
                    key_id: id,
                    ..event("keys.create")
                },
                &r,
            );
            ctx.print(&key_json(&r?))
        }
        KeysCmd::List { scope } => {
            let home = ctx.home()?;
            let s = scope.scope.map(Scope::from);
            let keys = KeyStore::new(&home).list(s, scope.domain.as_deref())?;
            ctx.print(&list_json(keys.iter().map(key_json).collect()))
        }
        KeysCmd::Get { id } => {
            let home = ctx.home()?;
            let k = KeyStore::new(&home).find(&id)?;
            ctx.print(&key_json(&k))
        }
        KeysCmd::SetDefault { id } => {
            let home = ctx.home()?;
            let ks = KeyStore::new(&home);
            let lock = home.lock()?;
            let r = ks
                .find(&id)
                .and_then(|k| ks.set_default(&lock, &k.id))
                .map_err(CliError::from);
            ctx.audit(
                AuditEvent {
                    key_id: Some(id),
                    ..event("keys.set-default")
                },
                &r,
            );
            ctx.print(&key_json(&r?))
        }
        KeysCmd::Rotate { scope } => {
            let (scope, domain) = scope_of(&scope, Scope::System)?;
            let home = ctx.home()?;
            let lock = home.lock()?;
            let r = KeyStore::new(&home)
                .rotate(&lock, scope, domain, &ctx.account)
                .map_err(CliError::from);
            let detail = r
                .as_ref()
                .ok()
                .map(|r| format!("retired {}", r.retired_key.id));
            let id = r.as_ref().ok().map(|r| r.new_key.id.to_string());
            ctx.audit(
                AuditEvent {
                    key_id: id,
                    detail,
                    ..event("keys.rotate")
                },
                &r,
            );
            let r = r?;
            ctx.print(&json!({
                "newKeyId": r.new_key.id,
                "retiredKeyId": r.retired_key.id,
                "newKey": key_json(&r.new_key),
                "retiredKey": key_json(&r.retired_key),
            }))
        }
        KeysCmd::Delete { id, force } => {
            let home = ctx.home()?;
            let ks = KeyStore::new(&home);
            let lock = home.lock()?;
            let r = (|| -> CliResult<KeyInfo> {
                let k = ks.find(&id)?;
                let refs = ArchiveStore::new(&home).referencing(&k.id)?;
                let removed = ks.delete(&lock, &k.id, force, &refs)?;
                if !refs.is_empty() {
                    ctx.notice(&format!(
                        "deleted key {} although {} archive(s) use it (--force)",
                        k.id,
                        refs.len()
                    ));
                }
                Ok(removed)
            })();
            ctx.audit(
                AuditEvent {
                    key_id: Some(id),
                    detail: force.then(|| "forced".to_string()),
                    ..event("keys.delete")
                },
                &r,
            );
            let k = r?;
            ctx.print(&json!({"deleted": true, "id": k.id, "key": key_json(&k)}))
        }
        KeysCmd::Download(a) => download(ctx, a),
        KeysCmd::Inspect { file } => {
            let bytes = read_key_file(&file)?;
            let parsed = keyfile::parse(&bytes).map_err(|e| {
                CliError::new(
                    crate::errors::Classify::kind(&e),
                    format!("{}: {e}", file.display()),
                )
            })?;
            let m = &parsed.meta;
            let mut v = json!({
                "version": m.version,
                "keyid": m.keyid,
                "scope": m.scope,
                "createdAt": m.created_at,
                "state": m.state,
                "kdf": {
                    "algorithm": m.kdf.algorithm,
                    "memoryKiB": m.kdf.params.memory_kib,
                    "iterations": m.kdf.params.iterations,
                    "parallelism": m.kdf.params.parallelism,
                },
            });
            if let Some(d) = &m.domain_id {
                v["domainID"] = json!(d);
            }
            if !m.description.is_empty() {
                v["description"] = json!(m.description);
            }
            ctx.print(&v)
        }
        KeysCmd::Upload {
            file,
            scope,
            password_file,
        } => {
            let home = ctx.home()?;
            let r = (|| -> CliResult<Imported> {
                let bytes = read_key_file(&file)?;
                // Structure, checksum and KDF bounds are checked before asking for a password.
                keyfile::parse(&bytes).map_err(|e| {
                    CliError::new(
                        crate::errors::Classify::kind(&e),
                        format!("{}: {e}", file.display()),
                    )
                })?;
                let pw = password::obtain(
                    password_file.as_deref(),
                    "VAULT_KEY_PASSWORD",
                    "Password of the key file",
                    false,
                )?;
                let lock = home.lock()?;
                KeyStore::new(&home)
                    .import(&lock, &bytes, scope.into(), &pw, &ctx.account)
                    .map_err(|e| {
                        CliError::new(
                            crate::errors::Classify::kind(&e),
                            format!("{}: {e}", file.display()),
                        )
                    })
            })();
            let id = r.as_ref().ok().map(|i| match i {
                Imported::New(k) | Imported::AlreadyPresent(k) => k.id.to_string(),
            });
            let detail = match &r {
                Ok(Imported::AlreadyPresent(_)) => Some("already present".to_string()),
                _ => None,
            };
            ctx.audit(
                AuditEvent {
                    key_id: id,
                    detail,
                    ..event("keys.upload")
                },
                &r,
            );
            match r? {
                Imported::New(k) => ctx.print(&key_json(&k)),
                Imported::AlreadyPresent(k) => {
                    ctx.notice(&format!(
                        "key {} is already in this home with the same material; nothing changed",
                        k.id
                    ));
                    ctx.print(&key_json(&k))
                }
            }
        }
    }
}

fn download(ctx: &Ctx, a: DownloadArgs) -> CliResult {
    let home = ctx.home()?;
    let ks = KeyStore::new(&home);
    let key = ks.find(&a.id)?;
    let d = KdfParams::default();
    let params = KdfParams {
        memory_kib: a
            .kdf_memory
            .map(|m| m.saturating_mul(1024))
            .unwrap_or(d.memory_kib),
        iterations: a.kdf_time.unwrap_or(d.iterations),
        parallelism: a.kdf_parallelism.unwrap_or(d.parallelism),
    };
    params
        .check()
        .map_err(|e| CliError::new(Kind::Usage, e.to_string()))?;
    let r = (|| -> CliResult<()> {
        let pw = password::obtain(
            a.password_file.as_deref(),
            "VAULT_KEY_PASSWORD",
            "Password for the key file",
            true,
        )?;
        let (_, bytes) = ks.export(&key.id, &pw, params)?;
        crate::fsutil::write_atomic(&a.file, &bytes, 0o600).map_err(|e| {
            CliError::new(
                Kind::Io,
                format!("cannot write key file {}: {e}", a.file.display()),
            )
        })
    })();
    ctx.audit(
        AuditEvent {
            key_id: Some(key.id.to_string()),
            ..event("keys.download")
        },
        &r,
    );
    r?;
    ctx.print(&json!({
        "id": key.id,
        "file": a.file.display().to_string(),
        "kdf": {"algorithm": "argon2id", "memoryKiB": params.memory_kib, "iterations": params.iterations, "parallelism": params.parallelism},
    }))
}

/// Reads a key file, bounded: a key file is a few hundred bytes.
fn read_key_file(path: &std::path::Path) -> CliResult<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| super::backup::file_err(path, e))?;

    let mut bytes = Vec::new();
    f.take(keyfile::MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            CliError::new(
                Kind::Io,
                format!("cannot read key file {}: {e}", path.display()),
            )
        })?;
    if bytes.len() > keyfile::MAX_FILE_LEN {
        return Err(CliError::new(
            Kind::Usage,
            format!("{} is too large to be a vault key file", path.display()),
        ));
    }
    Ok(bytes)
}

/// A success event for `op`; `Ctx::audit` turns it into a failure when the result is `Err`.
pub fn event(op: &str) -> AuditEvent<'_> {
    AuditEvent {
        operation: op,
        key_id: None,
        archive_id: None,
        bmc_host: None,
        result: Outcome::Success,
        detail: None,
    }
}
