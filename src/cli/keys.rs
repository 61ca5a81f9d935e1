//! `vault keys …`: backup key management. Each arm resolves its arguments, calls one
//! operation of [`crate::ops::keys`] (which audits itself) and prints one record.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{ScopeArg, ScopeArgs};
use super::password::PasswordArg;
use super::records::{Deleted, KeyExported, KeyFileRecord, List, Rotated};
use super::{CliResult, Ctx};
use crate::keystore::Imported;
use crate::keystore::kdf::{ImportLimit, KdfParams};
use crate::ops::keys::{self, KeyFilter, NewKey};
use crate::scope::Scope;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a random 256-bit backup key (the first of its scope/domain becomes the default).
    Create(CreateArgs),
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
    /// Mark a key compromised: it never seals again, still opens, and its archives must
    /// be re-encrypted ('vault backup rewrap --all --from ID --reencrypt').
    Compromise {
        #[arg(long, value_name = "ID")]
        id: String,
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
    Upload(UploadArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Make this key the default of its scope/domain.
    #[arg(long)]
    default: bool,
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
    /// Wrap the key directly by the home's PKCS#11 token (system keys only): its
    /// archives open only where that token is, and it cannot be downloaded.
    #[arg(long)]
    tied_to_hsm: bool,
}

impl CreateArgs {
    fn resolve(self) -> CliResult<NewKey> {
        let (scope, domain) = self.scope.resolve(Scope::System)?;
        Ok(NewKey {
            scope,
            domain,
            make_default: self.default,
            description: self.description,
            tied_to_hsm: self.tied_to_hsm,
        })
    }
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
    #[command(flatten)]
    kdf: super::args::KdfArgs,
}

impl DownloadArgs {
    /// The KDF parameters asked for (checked by the operation) and the password source.
    fn resolve(&self) -> (KdfParams, PasswordArg) {
        let params = self.kdf.params();
        let password = PasswordArg {
            file: self.password_file.clone(),
            env_var: "VAULT_KEY_PASSWORD",
            prompt: "Password for the key file",
            new: true,
        };
        (params, password)
    }
}

#[derive(Args)]
pub struct UploadArgs {
    #[arg(long, value_name = "F")]
    file: PathBuf,
    /// Must match the key file's scope (a domain key file needs --scope domain).
    #[arg(long, value_enum, default_value = "system")]
    scope: ScopeArg,
    /// Read the password from this file (mode 0600) instead of VAULT_KEY_PASSWORD or a prompt.
    #[arg(long, value_name = "P")]
    password_file: Option<PathBuf>,
    /// Accept a key file whose Argon2id cost is above the import ceiling
    /// (m = 256 MiB, t = 8), up to the absolute one (m = 2 GiB, t = 10).
    #[arg(long)]
    allow_costly_kdf: bool,
}

pub fn run(ctx: &Ctx, cmd: KeysCmd) -> CliResult {
    match cmd {
        KeysCmd::Create(a) => create(ctx, a),
        KeysCmd::List { scope } => list(ctx, &scope),
        KeysCmd::Get { id } => get(ctx, &id),
        KeysCmd::SetDefault { id } => ctx.print(&keys::set_default(&ctx.ops()?, &id)?),
        KeysCmd::Compromise { id } => ctx.print(&keys::compromise(&ctx.ops()?, &id)?),
        KeysCmd::Rotate { scope } => rotate(ctx, &scope),
        KeysCmd::Delete { id, force } => delete(ctx, &id, force),
        KeysCmd::Download(a) => download(ctx, &a),
        KeysCmd::Inspect { file } => inspect(ctx, &file),
        KeysCmd::Upload(a) => upload(ctx, &a),
    }
}

fn create(ctx: &Ctx, a: CreateArgs) -> CliResult {
    let new = a.resolve()?;
    ctx.print(&keys::create(&ctx.ops()?, &new)?)
}

fn list(ctx: &Ctx, scope: &ScopeArgs) -> CliResult {
    let filter = KeyFilter {
        scope: scope.scope.map(Scope::from),
        domain: scope.domain.clone(),
    };
    let ops = ctx.ops()?;
    let views = keys::list(&ops, &filter)?
        .into_iter()
        .map(|k| KeyView::of(&ops, k))
        .collect::<CliResult<Vec<_>>>()?;
    ctx.print(&List::of(views))
}

/// A key as `keys list/get` print it, with what it depends on (`dependsOn`: `file`,
/// `passphrase`, `pkcs11:<token>` for the home's root, `hsm:<token>` for a tied key):
/// what is lost if that passphrase or token is.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyView {
    #[serde(flatten)]
    key: crate::keystore::KeyInfo,
    depends_on: String,
}

impl KeyView {
    fn of(ops: &crate::ops::Context, key: crate::keystore::KeyInfo) -> CliResult<KeyView> {
        let depends_on = keys::dependency(ops, &key)?;
        Ok(KeyView { key, depends_on })
    }
}

fn get(ctx: &Ctx, id: &str) -> CliResult {
    let ops = ctx.ops()?;
    let k = keys::get(&ops, id)?;
    ctx.print(&KeyView::of(&ops, k)?)
}

fn inspect(ctx: &Ctx, file: &std::path::Path) -> CliResult {
    let parsed = keys::inspect_file(file)?;
    ctx.print(&KeyFileRecord::from(&parsed.meta))
}

fn rotate(ctx: &Ctx, scope: &ScopeArgs) -> CliResult {
    let (scope, domain) = scope.resolve(Scope::System)?;
    let r = keys::rotate(&ctx.ops()?, scope, domain)?;
    ctx.print(&Rotated {
        new_key_id: r.new_key.id,
        retired_key_id: r.retired_key.id,
        new_key: &r.new_key,
        retired_key: &r.retired_key,
    })
}

fn delete(ctx: &Ctx, id: &str, force: bool) -> CliResult {
    let d = keys::delete(&ctx.ops()?, id, force)?;
    if !d.claimed_only_by.is_empty() {
        ctx.notice(&format!(
            "archive(s) {} name key {} in a key slot that does not open with it (forged or edited; claimed, not sealed under it): run 'vault backup verify' on them",
            d.claimed_only_by.join(", "),
            d.key.id
        ));
    }
    if !d.still_used_by.is_empty() {
        ctx.notice(&format!(
            "deleted key {} although {} archive(s) use it (--force)",
            d.key.id,
            d.still_used_by.len()
        ));
    }
    ctx.print(&Deleted {
        deleted: true,
        id: d.key.id,
        key: Some(&d.key),
    })
}

fn download(ctx: &Ctx, a: &DownloadArgs) -> CliResult {
    let (params, password) = a.resolve();
    if params.check().is_ok() && params.check_import(ImportLimit::Default).is_err() {
        ctx.notice(&format!(
            "{} is above the default import ceiling: 'vault keys upload' of this file will need --allow-costly-kdf",
            params.describe()
        ));
    }
    let x = keys::export(&ctx.ops()?, &a.id, &a.file, params, &|| password.get())?;
    ctx.print(&KeyExported::new(x.key.id, &x.file, &x.params))
}

fn upload(ctx: &Ctx, a: &UploadArgs) -> CliResult {
    let password = PasswordArg {
        file: a.password_file.clone(),
        env_var: "VAULT_KEY_PASSWORD",
        prompt: "Password of the key file",
        new: false,
    };
    let limit = if a.allow_costly_kdf {
        ImportLimit::Costly
    } else {
        ImportLimit::Default
    };
    match keys::import(&ctx.ops()?, &a.file, a.scope.into(), limit, &|| {
        password.get()
    })? {
        Imported::New(k) => ctx.print(&k),
        Imported::AlreadyPresent(k) => {
            ctx.notice(&format!(
                "key {} is already in this home with the same material; nothing changed",
                k.id
            ));
            ctx.print(&k)
        }
    }
}
