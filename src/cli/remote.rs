//! `vault remote add|list` and the remote side of `vault backup`: push, fetch and
//! `list --remote` (keyless). Credentials come from the environment or a credentials
//! file, read here and handed to the library; nothing about them is printed.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::backup::{backup_json, key_lookup};
use super::keys::{event, list_json};
use super::{CliError, CliResult, Ctx};
use crate::audit::AuditEvent;
use crate::errors::Kind;
use crate::fsutil::AtomicFile;
use crate::keystore::{Home, KeyStore};
use crate::remote::{self, CredentialEnv, LockMode, Remote, RemoteArchive, RemoteConfig};
use crate::store::ArchiveStore;

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
    /// private stores want. Default: on with --endpoint, off for AWS.
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
    /// it also turns versioning on, and cannot be added to a bucket later on most stores).
    #[arg(long, requires = "create_bucket")]
    object_lock: bool,
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
    /// Object Lock retention, in days (e.g. 90d or 90); needs a bucket with Object Lock.
    #[arg(long, value_name = "DAYS", value_parser = parse_days)]
    retain: Option<u32>,
    /// Object Lock mode for --retain.
    #[arg(long, value_enum, requires = "retain")]
    lock: Option<LockArg>,
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

/// `90d`, `90` (days); at most 100 years.
pub fn parse_days(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix('d').unwrap_or(s);
    match n.parse::<u32>() {
        Ok(d) if (1..=36_500).contains(&d) => Ok(d),
        _ => Err(format!(
            "'{s}' is not a number of days (1 to 36500), e.g. 90d"
        )),
    }
}

/// The S3 credentials the environment offers (read here: the library reads no env).
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

/// Opens the named remote of the home.
pub fn connect(home: &Home, name: &str) -> CliResult<Remote> {
    let cfg = remote::config::find(home.dir(), name)?;
    Ok(Remote::connect(
        cfg,
        &credential_env(),
        remote::DEFAULT_TIMEOUT,
    )?)
}

pub fn run(ctx: &Ctx, cmd: RemoteCmd) -> CliResult {
    match cmd {
        RemoteCmd::Add(a) => add(ctx, a),
        RemoteCmd::List => {
            let home = ctx.home()?;
            let items = remote::config::load(home.dir())?
                .iter()
                .map(remote_json)
                .collect();
            ctx.print(&list_json(items))
        }
    }
}

fn remote_json(r: &RemoteConfig) -> Value {
    json!({
        "name": r.name,
        "url": r.url,
        "endpoint": r.endpoint_url().map(|u| u.to_string()).unwrap_or_default(),
        "region": r.region,
        "pathStyle": r.path_style,
        "caCert": r.ca_cert.as_ref().map(|p| p.display().to_string()),
        "profile": r.profile,
        "credentialsFile": r.credentials_file.as_ref().map(|p| p.display().to_string()),
    })
}

fn add(ctx: &Ctx, a: AddArgs) -> CliResult {
    let home = ctx.home()?;
    let ca_cert = match a.ca_cert {
        Some(p) => Some(std::fs::canonicalize(&p).map_err(|e| {
            CliError::new(
                Kind::Usage,
                format!("cannot use --ca-cert {}: {e}", p.display()),
            )
        })?),
        None => None,
    };
    let cfg = RemoteConfig {
        name: a.name,
        url: a.url,
        path_style: a.path_style.unwrap_or(a.endpoint.is_some()),
        endpoint: a.endpoint,
        region: a.region,
        ca_cert,
        profile: a.profile,
        credentials_file: a.credentials_file,
    };
    let r = (|| -> CliResult {
        let _lock = home.lock()?;
        if a.create_bucket {
            let remote = Remote::connect(cfg.clone(), &credential_env(), remote::DEFAULT_TIMEOUT)?;
            remote.client().create_bucket(a.object_lock)?;
        }
        Ok(remote::config::add(home.dir(), cfg.clone())?)
    })();
    ctx.audit(
        AuditEvent {
            detail: Some(format!("remote {} {}", cfg.name, cfg.url)),
            ..event("remote.add")
        },
        &r,
    );
    r?;
    ctx.print(&remote_json(&cfg))
}

pub fn push(ctx: &Ctx, a: PushArgs) -> CliResult {
    let home = ctx.home()?;
    let remote = connect(&home, &a.remote)?;
    let store = ArchiveStore::new(&home);
    let ids: Vec<(uuid::Uuid, PathBuf)> = if a.all {
        store
            .list()?
            .into_iter()
            .filter_map(|s| s.inspection.ok().map(|i| (i.header.id, s.path)))
            .collect()
    } else {
        vec![store.find(a.id.as_deref().unwrap_or_default())?]
    };
    let lock = match (a.retain, a.lock) {
        (Some(days), mode) => Some((
            mode.map(LockMode::from).unwrap_or(LockMode::Governance),
            remote::retain_until(days),
        )),
        (None, _) => None,
    };
    let mut items = Vec::new();
    let mut first_err = None;
    for (id, path) in ids {
        let r = remote
            .push_file(&path, &id, lock.clone())
            .map_err(CliError::from);
        ctx.audit(
            AuditEvent {
                archive_id: Some(id.to_string()),
                detail: Some(format!(
                    "{} s3://{}/{}",
                    a.remote,
                    remote.url.bucket,
                    remote.object_key(&id)
                )),
                ..event("backup.push")
            },
            &r,
        );
        match r {
            Ok(p) => items.push(json!({
                "id": p.id,
                "remote": a.remote,
                "object": format!("s3://{}/{}", remote.url.bucket, p.key),
                "size": p.size,
                "sha256": p.sha256,
                "uploaded": p.uploaded,
                "parts": p.parts,
                "versionId": p.version_id,
                "lockMode": p.lock.as_ref().map(|(m, _)| m.name()),
                "retainUntil": p.lock.as_ref().map(|(_, d)| d.clone()),
            })),
            Err(e) => {
                ctx.notice(&format!("error: archive {id}: {}", e.message));
                first_err.get_or_insert(e);
            }
        }
    }
    ctx.print(&list_json(items))?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn fetch(ctx: &Ctx, a: FetchArgs) -> CliResult {
    let home = ctx.home()?;
    let remote = connect(&home, &a.remote)?;
    let r = fetch_one(&home, &remote, &a.id);
    ctx.audit(
        AuditEvent {
            archive_id: r.as_ref().ok().map(|(s, _)| s.header.id.to_string()),
            key_id: r.as_ref().ok().map(|(s, _)| s.key_id.to_string()),
            detail: Some(format!("{} {}", a.remote, a.id)),
            ..event("backup.fetch")
        },
        &r,
    );
    let (s, added) = r?;
    if !added {
        ctx.notice(&format!(
            "archive {} is already in this home; nothing changed",
            s.header.id
        ));
    }
    ctx.print(&json!({
        "id": s.header.id,
        "remote": a.remote,
        "verified": true,
        "added": added,
        "backupKeyId": s.key_id,
        "size": s.plaintext_size,
        "checksum": crate::envelope::hex_digest(&s.sha256),
    }))
}

/// Fetches archive `id` from `remote` into the home, verified; returns whether it was new.
pub fn fetch_one(
    home: &Home,
    remote: &Remote,
    id: &str,
) -> CliResult<(crate::envelope::OpenSummary, bool)> {
    let (id, key) = remote.find(id)?;
    let store = ArchiveStore::new(home);
    let dest = store.path_of(&id);
    let ks = KeyStore::new(home);
    let lookup = key_lookup(&ks);
    let mut tmp = AtomicFile::create(&dest, 0o600)
        .map_err(|e| CliError::new(Kind::Io, format!("cannot write in {}: {e}", dest.display())))?;
    let summary = remote.fetch_into(&id, &key, &mut tmp, &lookup)?;
    let _lock = home.lock()?;
    if dest.exists() {
        drop(tmp);
        return Ok((summary, false));
    }
    tmp.commit_new()
        .map_err(|e| CliError::new(Kind::Io, format!("cannot write {}: {e}", dest.display())))?;
    Ok((summary, true))
}

/// `vault backup list --remote NAME`: keyless, by ranged reads of header and trailer.
pub fn list(ctx: &Ctx, name: &str) -> CliResult {
    let home = ctx.home()?;
    let remote = connect(&home, name)?;
    let archives = remote.list()?;
    let stats = remote.client().stats();
    let n = archives.len() as u64;
    let items: Vec<Value> = archives
        .iter()
        .map(|a| remote_archive_json(&remote, a))
        .collect();
    if n > 0 {
        ctx.notice(&format!(
            "listed {n} archives with {} requests and {} bytes of object data ({:.1} requests and {} bytes per archive)",
            stats.requests(),
            stats.bytes_received(),
            stats.requests() as f64 / n as f64,
            stats.bytes_received() / n,
        ));
    }
    ctx.print(&list_json(items))
}

pub fn remote_archive_json(remote: &Remote, a: &RemoteArchive) -> Value {
    let mut v = match &a.inspection {
        Ok(i) => backup_json(i),
        Err(e) => json!({"error": e.to_string()}),
    };
    v["object"] = json!(format!("s3://{}/{}", remote.url.bucket, a.key));
    v["objectSize"] = json!(a.size);
    if let Some(h) = &a.head {
        // Some stores (Ceph RGW) report Object Lock on HEAD only, not on a GET.
        if let Some(m) = h.lock_mode {
            v["lockMode"] = json!(m.name());
        }
        if let Some(d) = &h.retain_until {
            v["retainUntil"] = json!(d);
        }
        v["versionId"] = json!(h.version_id);
        v["objectSha256"] = json!(h.sha256);
    }
    v
}
