//! `vault remote add|list` and the remote side of `vault backup`: push, fetch and
//! `list --remote` (keyless). Each arm resolves its arguments, calls one operation of
//! [`crate::ops::remote`] and prints one record. S3 credentials are read from the
//! environment here (the library reads none) and never printed.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::records::{FetchedRecord, List, Pushed, RemoteArchiveRecord, RemoteRecord};
use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;
use crate::ops::remote::{self as ops_remote, NewRemote, PushOptions, Selection};
use crate::remote::{CredentialEnv, LockMode, Remote, RemoteConfig};

#[derive(Subcommand)]
pub enum RemoteCmd {
    /// Name an S3 bucket/prefix as an off-box archive store (credentials stay in the
    /// environment or a credentials file, never here).
    Add(AddArgs),
    /// The remotes of this home.
    List,
}

#[derive(Args)]
pub struct AddArgs {
    /// A short name for the remote (used with --remote).
    name: String,
    /// Bucket and prefix: s3://BUCKET/PREFIX.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    url: String,
    /// The S3 endpoint (default: AWS, https://s3.<region>.amazonaws.com).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// The region the requests are signed for.
    #[arg(long, value_name = "R", default_value = "us-east-1")]
    region: String,
    /// Address the bucket in the path (http://host/bucket/key), as Ceph RGW and most
    /// private stores want. Default: true with --endpoint, false for AWS.
    #[arg(long, value_name = "BOOL")]
    path_style: Option<bool>,
    /// Trust this CA (PEM) for the endpoint's certificate instead of the system roots.
    #[arg(long, value_name = "F")]
    ca_cert: Option<PathBuf>,
    /// Take the credentials from this profile of the credentials file.
    #[arg(long, value_name = "P")]
    profile: Option<String>,
    /// An AWS-format credentials file (mode 0600) instead of ~/.aws/credentials.
    #[arg(long, value_name = "F")]
    credentials_file: Option<PathBuf>,
    /// Create the bucket too (it must not exist yet).
    #[arg(long)]
    create_bucket: bool,
    /// With --create-bucket: enable S3 Object Lock on it (needed for --retain/--lock;
    /// it also turns versioning on, and most stores cannot add it to a bucket later).
    #[arg(long, requires = "create_bucket")]
    object_lock: bool,
}

impl AddArgs {
    fn resolve(self) -> CliResult<NewRemote> {
        let ca_cert = match self.ca_cert {
            Some(p) => Some(std::fs::canonicalize(&p).map_err(|e| {
                CliError::new(
                    Kind::Usage,
                    format!("cannot use --ca-cert {}: {e}", p.display()),
                )
            })?),
            None => None,
        };
        Ok(NewRemote {
            config: RemoteConfig {
                name: self.name,
                url: self.url,
                path_style: self.path_style.unwrap_or(self.endpoint.is_some()),
                endpoint: self.endpoint,
                region: self.region,
                ca_cert,
                profile: self.profile,
                credentials_file: self.credentials_file,
            },
            create_bucket: self.create_bucket,
            object_lock: self.object_lock,
        })
    }
}

#[derive(Args)]
pub struct PushArgs {
    /// The archive to push.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    id: Option<String>,
    /// Every archive in this home.
    #[arg(long)]
    all: bool,
    /// The remote to push to.
    #[arg(long, value_name = "NAME")]
    remote: String,
    /// Object Lock retention in days (90d or 90); the bucket needs Object Lock.
    #[arg(long, value_name = "DAYS", value_parser = parse_days)]
    retain: Option<u32>,
    /// Object Lock mode for --retain (default governance).
    #[arg(long, value_enum, requires = "retain")]
    lock: Option<LockArg>,
}

impl PushArgs {
    fn resolve(&self) -> PushOptions {
        PushOptions {
            selection: match &self.id {
                Some(id) if !self.all => Selection::One(id.clone()),
                _ => Selection::All,
            },
            lock: self.retain.map(|days| {
                (
                    self.lock
                        .map(LockMode::from)
                        .unwrap_or(LockMode::Governance),
                    days,
                )
            }),
        }
    }
}

#[derive(Args)]
pub struct FetchArgs {
    /// The remote to fetch from.
    #[arg(long, value_name = "NAME")]
    remote: String,
    /// The archive's id (or an unambiguous prefix).
    #[arg(long, value_name = "ID")]
    id: String,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum LockArg {
    Governance,
    Compliance,
}

impl From<LockArg> for LockMode {
    fn from(l: LockArg) -> LockMode {
        match l {
            LockArg::Governance => LockMode::Governance,
            LockArg::Compliance => LockMode::Compliance,
        }
    }
}

/// `90d` or `90` (days), 1 to 36500.
pub fn parse_days(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix('d').unwrap_or(s);
    match n.parse::<u32>() {
        Ok(d) if (1..=36_500).contains(&d) => Ok(d),
        _ => Err(format!(
            "'{s}' is not a number of days (1 to 36500), e.g. 90d"
        )),
    }
}

/// The S3 credentials the environment offers.
pub fn credential_env() -> CredentialEnv {
    let secret = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Zeroizing::new)
    };
    CredentialEnv {
        access_key_id: secret("AWS_ACCESS_KEY_ID"),
        secret_access_key: secret("AWS_SECRET_ACCESS_KEY"),
        session_token: secret("AWS_SESSION_TOKEN"),
        profile: std::env::var("AWS_PROFILE").ok().filter(|v| !v.is_empty()),
        shared_credentials_file: std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from),
        user_home: dirs::home_dir(),
    }
}

pub fn run(ctx: &Ctx, cmd: RemoteCmd) -> CliResult {
    match cmd {
        RemoteCmd::Add(a) => {
            let new = a.resolve()?;
            let cfg = ops_remote::add(&ctx.ops()?, &new, &credential_env())?;
            ctx.print(&RemoteRecord::from(&cfg))
        }
        RemoteCmd::List => {
            let all = ops_remote::list(&ctx.ops()?)?;
            ctx.print(&List::of(all.iter().map(RemoteRecord::from).collect()))
        }
    }
}

pub fn push(ctx: &Ctx, a: PushArgs) -> CliResult {
    let opts = a.resolve();
    let ops = ctx.ops()?;
    let remote = ops_remote::connect(&ops, &a.remote, &credential_env())?;
    let report = ops_remote::push(&ops, &remote, &opts)?;
    ctx.print(&List::of(
        report
            .pushed
            .iter()
            .map(|p| Pushed::new(&remote, p))
            .collect(),
    ))?;
    for (id, e) in &report.failed {
        ctx.notice(&format!("error: archive {id} was not pushed: {e}"));
    }
    match report.failed.into_iter().next() {
        Some((_, e)) => Err(e.into()),
        None => Ok(()),
    }
}

pub fn fetch(ctx: &Ctx, a: FetchArgs) -> CliResult {
    let ops = ctx.ops()?;
    let remote = ops_remote::connect(&ops, &a.remote, &credential_env())?;
    let f = ops_remote::fetch(&ops, &remote, &a.id)?;
    let s = &f.summary;
    if !f.added {
        ctx.notice(&format!(
            "archive {} is already in this home; nothing changed",
            s.header.id
        ));
    }
    ctx.print(&FetchedRecord {
        id: s.header.id,
        remote: &a.remote,
        verified: true,
        added: f.added,
        backup_key_id: s.key_id,
        size: s.plaintext_size,
        checksum: hex::encode(s.sha256),
    })
}

/// `--remote NAME` of `backup extract`/`verify`/`restore`: brings archive `id` (or an
/// unambiguous prefix) from the remote into the home first, verified end to end like
/// `backup fetch` (a no-op when it is already there); returns its full id.
pub fn fetch_first(ctx: &Ctx, remote: &str, id: &str) -> CliResult<String> {
    let ops = ctx.ops()?;
    let r = ops_remote::connect(&ops, remote, &credential_env())?;
    let f = ops_remote::fetch(&ops, &r, id)?;
    let id = f.summary.header.id;
    if f.added {
        ctx.notice(&format!("archive {id} fetched from {remote} and verified"));
    }
    Ok(id.to_string())
}

/// `vault backup list --remote NAME`: keyless, by ranged reads of header and trailer.
pub fn list(ctx: &Ctx, name: &str) -> CliResult {
    let ops = ctx.ops()?;
    let remote = ops_remote::connect(&ops, name, &credential_env())?;
    let archives = ops_remote::list_archives(&remote)?;
    let stats = remote.client().stats();
    let n = archives.len() as u64;
    if n > 0 {
        ctx.notice(&format!(
            "listed {n} archives with {} requests and {} bytes of object data ({:.1} requests and {} bytes per archive)",
            stats.requests(),
            stats.bytes_received(),
            stats.requests() as f64 / n as f64,
            stats.bytes_received() / n,
        ));
    }
    let confirmed = ops_remote::key_confirmed(&ops, &archives);
    ctx.print(&List::of(
        archives
            .iter()
            .zip(confirmed)
            .map(|(a, c)| RemoteArchiveRecord::new(&remote, a, c))
            .collect(),
    ))
}

/// The remote of this home for `s3://BUCKET/PREFIX` (its endpoint, region and
/// credentials), addressed at that prefix.
pub fn remote_for_url(ctx: &Ctx, url: &str) -> CliResult<Remote> {
    let ops = if ctx.home_dir().exists() {
        Some(ctx.ops()?)
    } else {
        None
    };
    ops_remote::connect_url(ops.as_ref(), url, &credential_env()).map_err(|e| {
        let mut e = CliError::from(e);
        if e.kind == Kind::NotFound {
            e.message.push_str(&format!(
                "; add one first with 'vault remote add NAME --url {url} --endpoint URL'"
            ));
        }
        e
    })
}
