//! `vault backup …` (local archive commands) and `vault inspect`.
use std::io;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::progress::Terminal;
use super::records::{
    Archive, Deleted, Downloaded, Extracted, Failed, Inspected, List, RewrapItem, RewrapResult,
    Verified,
};
use super::{CliError, CliResult, Ctx, ScopeArgs, prune, pull, remote};
use crate::errors::Kind;
use crate::keystore::Scope;
use crate::ops::{self, backup::Input};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Seal a file (or stdin with --file -) into a new archive in this home.
    Create(CreateArgs),
    /// Pull a configuration backup from a BMC (or a fleet) straight into sealed archives.
    Pull(Box<pull::PullArgs>),
    /// Push an archive back to the BMC it came from (verified completely first).
    Restore(Box<pull::RestoreArgs>),
    /// List the archives in this home (or, keylessly, on a remote).
    List {
        #[command(flatten)]
        scope: ScopeArgs,
        /// List this remote instead (keyless: ranged reads of each header and trailer).
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Copy archives to a remote S3 store, optionally under Object Lock.
    Push(remote::PushArgs),
    /// Bring an archive back from a remote into this home, verified end to end.
    Fetch(remote::FetchArgs),
    /// Remove archives a retention policy no longer keeps (per BMC, like restic forget).
    Prune(prune::PruneArgs),
    /// Show one archive's metadata.
    Get {
        #[arg(long, value_name = "ID")]
        id: String,
    },
    /// Copy an archive out of the home (still encrypted) to a file.
    Download {
        #[arg(long, value_name = "ID")]
        id: String,
        #[arg(long, value_name = "F")]
        file: PathBuf,
    },
    /// Add an archive file to this home (its key must be uploaded separately).
    Upload {
        #[arg(long, value_name = "F")]
        file: PathBuf,
    },
    /// Authenticate an archive completely (header, every chunk, trailer, checksum).
    Verify(Target),
    /// Decrypt an archive to a file (written atomically, only if fully authentic).
    Extract {
        #[command(flatten)]
        target: Target,
        /// Where to write the plaintext.
        #[arg(long, value_name = "F")]
        out: PathBuf,
    },
    /// Move archives to another key: rewrite only the key slot (O(header)), or with
    /// --reencrypt give each a fresh data key and payload (when the old key may be compromised).
    Rewrap(RewrapArgs),
    /// Delete an archive from this home.
    Delete {
        #[arg(long, value_name = "ID")]
        id: String,
    },
    /// Same as 'vault inspect'.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The file to seal; '-' reads stdin.
    #[arg(long, value_name = "IN")]
    file: PathBuf,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Seal under this key instead of the scope's default.
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
}

#[derive(Args, Clone)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["id", "file"])))]
pub struct Target {
    /// An archive in this home.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// An archive file anywhere.
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// With --id: fetch the archive from this remote into the home first (verified end to
    /// end, as 'backup fetch' does; nothing is fetched if it is already here).
    #[arg(long, value_name = "NAME", requires = "id")]
    remote: Option<String>,
}

#[derive(Args)]
pub struct RewrapArgs {
    /// The archive to rewrap.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    id: Option<String>,
    /// Every archive in this home (with --from: those sealed under that key).
    #[arg(long)]
    all: bool,
    /// Only archives currently sealed under this key.
    #[arg(long, value_name = "KEY")]
    from: Option<String>,
    /// The new key (default: the current default of each archive's scope/domain).
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    /// Re-encrypt the payload under a fresh data key (O(file)); use when the old key may
    /// already be compromised.
    #[arg(long)]
    reencrypt: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The archive file.
    #[arg(long, value_name = "F")]
    file: PathBuf,
    /// A home public key file to trust (repeatable; from 'vault home public-key'): the
    /// archive is then read in full and its signatures reported without any backup key.
    #[arg(long, value_name = "FILE")]
    trust: Vec<PathBuf>,
}

/// Reads the `--trust` files.
pub fn trusted_keys(files: &[PathBuf]) -> CliResult<Vec<[u8; 32]>> {
    Ok(ops::backup::trusted_keys(files)?)
}

pub fn run(ctx: &Ctx, cmd: BackupCmd) -> CliResult {
    match cmd {
        BackupCmd::Create(a) => create(ctx, a),
        BackupCmd::Pull(a) => pull::pull(ctx, *a),
        BackupCmd::Restore(a) => pull::restore(ctx, *a),
        BackupCmd::Push(a) => remote::push(ctx, a),
        BackupCmd::Fetch(a) => remote::fetch(ctx, a),
        BackupCmd::Prune(a) => prune::run(ctx, a),
        BackupCmd::List {
            remote: Some(name), ..
        } => remote::list(ctx, &name),
        BackupCmd::List { scope, .. } => list(ctx, &scope),
        BackupCmd::Get { id } => {
            let (l, deps) = ops::backup::get(&ctx.ops()?, &id)?;
            ctx.print(&Archive::listed(&l, &deps))
        }
        BackupCmd::Download { id, file } => {
            let (id, bytes) = ops::backup::download(&ctx.ops()?, &id, &file)?;
            ctx.print(&Downloaded {
                id,
                file: file.display().to_string(),
                bytes,
            })
        }
        BackupCmd::Upload { file } => upload(ctx, &file),
        BackupCmd::Verify(t) => verify(ctx, t),
        BackupCmd::Extract { target, out } => extract(ctx, target, &out),
        BackupCmd::Rewrap(a) => rewrap(ctx, a),
        BackupCmd::Delete { id } => {
            let id = ops::backup::delete(&ctx.ops()?, &id)?;
            ctx.print(&Deleted::<()> {
                deleted: true,
                id,
                key: None,
            })
        }
        BackupCmd::Inspect(a) => inspect(ctx, &a),
    }
}

/// `vault backup list` (local).
fn list(ctx: &Ctx, scope: &ScopeArgs) -> CliResult {
    let only = match (scope.scope, &scope.domain) {
        (None, None) => None,
        _ => Some(scope.resolve(Scope::System)?),
    };
    let (archives, deps) = ops::backup::list(&ctx.ops()?, only.as_ref())?;
    ctx.print(&List::of(
        archives.iter().map(|l| Archive::listed(l, &deps)).collect(),
    ))
}

/// `vault backup upload --file F`.
fn upload(ctx: &Ctx, file: &Path) -> CliResult {
    let up = ops::backup::upload(&ctx.ops()?, file)?;
    if !up.added {
        ctx.notice(&format!(
            "archive {} is already in this home; nothing changed",
            up.inspection.header.id
        ));
    }
    if !up.verified
        && let Some((k, _)) = up.inspection.key_ids.first()
    {
        ctx.notice(&format!("stored UNVERIFIED: its key {k} (claimed) is not in this home, so nothing about its content is known; import the key with 'vault keys upload', then run 'vault backup verify'"));
    }
    ctx.print(&Archive {
        verified: Some(up.verified),
        ..Archive::of(&up.inspection)
    })
}

/// `vault backup verify`.
fn verify(ctx: &Ctx, t: Target) -> CliResult {
    let t = fetched(ctx, t)?;
    let s = ops::backup::verify(&ctx.ops()?, &t.resolve(), &Terminal::new())?;
    ctx.print(&Verified {
        id: s.header.id,
        verified: true,
        backup_key_id: s.key_id,
        version: s.version,
        size: s.plaintext_size,
        checksum: hex::encode(s.sha256),
    })
}

/// `vault backup extract`.
fn extract(ctx: &Ctx, target: Target, out: &Path) -> CliResult {
    let target = fetched(ctx, target)?;
    let s = ops::backup::extract(&ctx.ops()?, &target.resolve(), out, &Terminal::new())?;
    ctx.print(&Extracted {
        id: s.header.id,
        out: out.display().to_string(),
        size: s.plaintext_size,
        checksum: hex::encode(s.sha256),
    })
}

/// `vault inspect --file F`: metadata only, no key, nothing verified.
pub fn inspect(ctx: &Ctx, a: &InspectArgs) -> CliResult {
    let i = ops::backup::inspect(&a.file)?;
    let signers = ops::backup::signers(&i);
    let mut record = Inspected::new(&i, &signers);
    // HSM-backed: sealed under a key that this home's key store says is tied to the
    // token (claimed, like every keyless view; opening checks it).
    if ctx.home_dir().join("keys.json").exists() {
        let deps = ops::backup::dependencies(&ctx.ops()?)?;
        if let Some((k, _)) = i.key_ids.first() {
            record.is_hsm_backed = deps.tied(k);
            record.depends_on = Some(deps.of(k));
        }
    }
    if record.interrupted_rewrap.is_some() {
        ctx.notice("both key slots are occupied: a rewrap was interrupted; run 'vault backup rewrap' on it again to complete it");
    }
    if !a.trust.is_empty() {
        let trusted = trusted_keys(&a.trust)?;
        let check = ops::backup::check_keyless(&a.file)?;
        record.signature = Some(check.provenance(&trusted).to_string());
        record.ciphertext_matches = Some(check.ciphertext_matches);
    }
    ctx.notice(
        "metadata shown as stored (key ids are claimed); nothing is verified without the key: run 'vault backup verify'",
    );
    ctx.print(&record)
}

/// A `--remote` target is fetched into the home first and then named by its full id.
fn fetched(ctx: &Ctx, mut t: Target) -> CliResult<Target> {
    if let (Some(remote), Some(id)) = (&t.remote, &t.id) {
        t.id = Some(remote::fetch_first(ctx, remote, id)?);
    }
    Ok(t)
}

impl Target {
    fn resolve(&self) -> ops::backup::Target {
        match (&self.id, &self.file) {
            (Some(id), _) => ops::backup::Target::Id(id.clone()),
            // clap's group makes one of the two required.
            (None, f) => ops::backup::Target::File(f.clone().unwrap_or_default()),
        }
    }
}

fn create(ctx: &Ctx, a: CreateArgs) -> CliResult {
    let (scope, domain) = a.scope.resolve(Scope::System)?;
    let new = ops::backup::NewArchive {
        scope,
        domain,
        key: a.key,
        description: a.description,
    };
    let input = if a.file.as_os_str() == "-" {
        Input::Stream(Box::new(io::stdin().lock()))
    } else {
        Input::File(&a.file)
    };
    let i = ops::backup::create(&ctx.ops()?, &new, input, &Terminal::new())?;
    ctx.print(&Archive::sealed(&i))
}

fn rewrap(ctx: &Ctx, a: RewrapArgs) -> CliResult {
    let plan = ops::backup::RewrapPlan {
        id: a.id,
        from: a.from,
        key: a.key,
        reencrypt: a.reencrypt,
    };
    let report = ops::backup::rewrap(&ctx.ops()?, &plan)?;
    let rewrapped: Vec<RewrapItem> = report
        .rewrapped
        .iter()
        .map(|r| RewrapItem {
            id: r.id,
            from: r.from,
            to: r.to,
            changed: r.changed,
            reencrypted: r.reencrypted,
        })
        .collect();
    let failed: Vec<Failed> = report
        .failed
        .into_iter()
        .map(|(id, e)| {
            let e = CliError::from(e);
            Failed {
                id,
                error: e.message,
                error_kind: e.kind.name(),
            }
        })
        .collect();
    let n_failed = failed.len();
    ctx.print(&RewrapResult {
        total: rewrapped.len() + n_failed,
        rewrapped,
        failed,
    })?;
    if n_failed > 0 {
        return Err(CliError::new(
            Kind::Integrity,
            format!(
                "{n_failed} archive(s) could not be rewrapped (listed in the output); the others were"
            ),
        ));
    }
    Ok(())
}
