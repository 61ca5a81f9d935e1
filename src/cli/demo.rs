//! `vault demo` and `vault bmc-simulator`.
//!
//! The demo runs the whole cycle against an in-process simulator (HTTPS with its own CA,
//! on a free loopback port) in throw-away homes, through the same library functions the
//! commands use: so "the demo passes" means the real code paths work on this machine.
//! It needs no network, no TTY and no environment, and must finish in seconds.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use rand::RngCore;
use serde_json::{Value, json};

use super::backup::key_lookup;
use super::event;
use super::{CliError, CliResult, Ctx};
use crate::audit::{AuditEvent, AuditLog};
use crate::bmc::simulator::run_foreground_to;
use crate::bmc::{BmcOptions, Fault, SimConfig, SimHandle};
use crate::envelope;
use crate::errors::Kind;
use crate::fsutil::{self, AtomicFile};
use crate::keystore::kdf::KdfParams;
use crate::keystore::{KeyStore, Scope};
use crate::ops::Silent;
use crate::ops::backup::verify_path;
use crate::ops::pull::{self, PullJob};
use crate::ops::restore::restore_one;
use crate::secret::Password;
use crate::store::{self, ArchiveStore, archive_err};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the temporary homes and files (their path is printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
pub struct SimulatorArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port: u16,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    http: bool,
    /// The account the simulator accepts.
    #[arg(long, value_name = "U", default_value = "Administrator")]
    user: String,
    /// File (mode 0600) with the password it accepts; default: $VAULT_BMC_PASSWORD, else
    /// "simulator-password".
    #[arg(long, value_name = "P")]
    password_file: Option<PathBuf>,
    /// The server serial number it reports (and puts in backup file names).
    #[arg(long, value_name = "S", default_value = "CZ2D1234XY")]
    serial: String,
    /// Serve this file as the backup.
    #[arg(long, value_name = "F", conflicts_with = "backup_size")]
    backup_file: Option<PathBuf>,
    /// Serve this many deterministic pseudo-random bytes as the backup (max 256 MiB).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(256 << 20)))]
    backup_size: Option<u64>,
    /// Sessions allowed at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    session_limit: usize,
    /// Delay added to every request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Inject a fault: server-error, slow[=SECS], slow-drip, cut-mid-download,
    /// malformed-json, html-error-page, huge-content-length, endless-body, redirect-loop,
    /// transient-errors[=N].
    #[arg(long, value_name = "NAME", value_parser = parse_fault)]
    fault: Option<Fault>,
    /// Serve this many BMCs from this one process, each on a port of its own with its
    /// own serial (SERIAL-00001, …) and sessions, all under one certificate; needs
    /// --inventory (--port is then ignored).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "inventory",
          value_parser = clap::value_parser!(u32).range(1..=20_000))]
    count: u32,
    /// With --count: write the fleet's inventory (TOML, for 'backup pull --inventory') here.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// With --count and --fault: only every K-th BMC (the K-th, 2K-th, …) has the fault.
    #[arg(long, value_name = "K", requires = "fault",
          value_parser = clap::value_parser!(u32).range(1..))]
    fault_every: Option<u32>,
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    let (name, arg) = match s.split_once('=') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let num = |default: u64| -> Result<u64, String> {
        arg.map_or(Ok(default), |a| {
            a.parse::<u64>()
                .map_err(|_| format!("{a:?} is not a number"))
        })
    };
    Ok(match name {
        "none" => Fault::None,
        "server-error" => Fault::ServerError,
        "slow" => Fault::Slow(std::time::Duration::from_secs(num(60)?)),
        "slow-drip" => Fault::SlowDrip,
        "cut-mid-download" => Fault::CutMidDownload,
        "malformed-json" => Fault::MalformedJson,
        "html-error-page" => Fault::HtmlErrorPage,
        "huge-content-length" => Fault::HugeContentLength,
        "endless-body" => Fault::EndlessBody,
        "redirect-loop" => Fault::RedirectLoop,
        "transient-errors" => Fault::TransientErrors(u32::try_from(num(3)?).unwrap_or(u32::MAX)),
        other => return Err(format!("unknown fault {other:?}")),
    })
}

/// Deterministic filler that does not look like an error page.
fn filler(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

pub fn simulator(ctx: &Ctx, a: SimulatorArgs) -> CliResult {
    let password = match &a.password_file {
        Some(p) => crate::ops::password::from_file(p)?.expose().to_string(),
        None => {
            match std::env::var("VAULT_BMC_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    ctx.notice("password: simulator-password (the default; use --password-file to choose one)");
                    "simulator-password".to_string()
                }
            }
        }
    };
    let backup_bytes = match (&a.backup_file, a.backup_size) {
        (Some(f), _) => {
            let meta = std::fs::metadata(f)
                .map_err(|e| CliError::from(crate::ops::OpsError::file(f)(e)))?;
            if meta.len() > 256 << 20 {
                return Err(CliError::new(
                    Kind::Usage,
                    format!("{} is larger than 256 MiB", f.display()),
                ));
            }
            std::fs::read(f).map_err(|e| CliError::from(crate::ops::OpsError::file(f)(e)))?
        }
        (None, Some(n)) => filler(usize::try_from(n).unwrap_or(usize::MAX)),
        (None, None) => SimConfig::default().backup_bytes,
    };
    let cfg = SimConfig {
        tls: !a.http,
        user: a.user,
        password,
        session_limit: a.session_limit.max(1),
        serial: a.serial,
        backup_bytes,
        latency: std::time::Duration::from_millis(a.latency_ms),
        fault: a.fault.unwrap_or_default(),
        ..SimConfig::default()
    };
    ctx.notice("BMC simulator for tests and demos (loopback only); stop it with Ctrl-C");
    let mut out = std::io::stdout();
    if let Some(inventory) = a.inventory.as_deref().filter(|_| a.count > 1) {
        let every = a.fault_every.unwrap_or(1) as usize;
        let cfgs = (1..=a.count as usize)
            .map(|i| SimConfig {
                serial: format!("{}-{i:05}", cfg.serial),
                fault: if i % every == 0 {
                    cfg.fault.clone()
                } else {
                    Fault::None
                },
                ..cfg.clone()
            })
            .collect();
        let signal = crate::bmc::simulator::run_fleet_foreground_to(cfgs, inventory, &mut out)
            .map_err(|e| {
                CliError::new(Kind::Io, format!("cannot run the BMC simulator fleet: {e}"))
            })?;
        ctx.notice(&format!("BMC simulator fleet stopped by {signal}"));
        return Ok(());
    }
    let signal = run_foreground_to(cfg, a.port, &mut out).map_err(|e| {
        CliError::new(
            Kind::Io,
            format!("cannot run the BMC simulator on port {}: {e}", a.port),
        )
    })?;
    ctx.notice(&format!(
        "BMC simulator stopped by {signal}; its certificate directory is removed"
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// demo

/// Runs numbered steps, printing each as a line on stderr; stops at the first failure.
struct Steps {
    done: Vec<Value>,
    failed: Option<CliError>,
    started: Instant,
}

impl Steps {
    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> CliResult<(T, String)>) -> Option<T> {
        if self.failed.is_some() {
            return None;
        }
        let n = self.done.len() + 1;
        match f() {
            Ok((v, detail)) => {
                eprintln!("vault demo: {n:>2}. ok      {name}: {detail}");
                self.done
                    .push(json!({"step": n, "name": name, "ok": true, "detail": detail}));
                Some(v)
            }
            Err(e) => {
                eprintln!(
                    "vault demo: {n:>2}. FAILED  {name}: {}",
                    crate::escape::for_terminal(&e.message)
                );
                self.done.push(
                    json!({"step": n, "name": name, "ok": false, "error": e.message, "errorKind": e.kind.name()}),
                );
                self.failed = Some(e);
                None
            }
        }
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> CliResult {
    if ok {
        Ok(())
    } else {
        Err(CliError::new(Kind::Internal, what()))
    }
}

fn short(id: impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

pub fn run(ctx: &Ctx, a: DemoArgs) -> CliResult {
    let tmp = tempfile::Builder::new()
        .prefix("vault-demo-")
        .tempdir()
        .map_err(|e| {
            CliError::new(
                Kind::Io,
                format!("cannot create a temporary directory: {e}"),
            )
        })?;
    let root = tmp.path().to_path_buf();
    let mut steps = Steps {
        done: Vec::new(),
        failed: None,
        started: Instant::now(),
    };
    eprintln!(
        "vault demo: the whole cycle against a built-in iLO simulator, in {}",
        root.display()
    );
    let result = cycle(ctx, &root, &mut steps);
    let kept = if a.keep {
        let p = tmp.keep();
        Some(p.display().to_string())
    } else {
        None
    };
    let ok = steps.failed.is_none();
    let mut summary = json!({
        "ok": ok,
        "steps": steps.done,
        "seconds": (steps.started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    });
    if let Value::Object(m) = &mut summary {
        for (k, v) in result {
            m.insert(k, v);
        }
        if let Some(k) = kept {
            m.insert("keptIn".into(), json!(k));
        }
    }
    ctx.print(&summary)?;
    match steps.failed {
        None => {
            eprintln!("vault demo: every step passed");
            Ok(())
        }
        Some(e) => Err(CliError::new(
            e.kind,
            format!("the demo failed: {}", e.message),
        )),
    }
}

/// The steps themselves; returns facts for the summary.
fn cycle(ctx: &Ctx, root: &Path, steps: &mut Steps) -> Vec<(String, Value)> {
    let mut facts = Vec::new();
    let account = ctx.account.clone();
    let ctx_a = Ctx {
        home_dir: root.join("home-a"),
        root_password_file: None,
        format: ctx.format,
        account: account.clone(),
    };
    let ctx_b = Ctx {
        home_dir: root.join("home-b"),
        root_password_file: None,
        format: ctx.format,
        account: account.clone(),
    };
    // Secrets of the demo exist only in memory (never on argv or in the environment).
    let bmc_password = hex::encode(rand::random::<[u8; 16]>());
    let key_password_text = hex::encode(rand::random::<[u8; 16]>());
    let key_password = || Password::new(key_password_text.clone());
    let mut backup = vec![0u8; 192 * 1024 + 123];
    rand::thread_rng().fill_bytes(&mut backup);
    let serial = "CZDEMO0001";

    let Some(sim) = steps.run("start the iLO simulator (HTTPS, private CA)", || {
        let sim = SimHandle::start(SimConfig {
            user: "Administrator".into(),
            password: bmc_password.clone(),
            serial: serial.into(),
            backup_bytes: backup.clone(),
            ..SimConfig::default()
        })
        .map_err(|e| CliError::new(Kind::Io, format!("cannot start the simulator: {e}")))?;
        let d = format!("{} ({} byte backup)", sim.base_url(), backup.len());
        Ok((sim, d))
    }) else {
        return facts;
    };
    facts.push(("bmc".into(), json!(sim.base_url())));
    let opts = || {
        let mut o = BmcOptions::new(
            sim.base_url(),
            "Administrator",
            Password::new(bmc_password.clone()),
        );
        o.ca_cert = Some(sim.ca_cert_path().to_path_buf());
        o.timeout = std::time::Duration::from_secs(10);
        o
    };

    let homes = steps.run(
        "open two vault homes (A: this site, B: the restore site)",
        || {
            let a = ctx_a.home()?;
            let b = ctx_b.home()?;
            Ok((
                (a, b),
                format!(
                    "{} and {}",
                    ctx_a.home_dir.display(),
                    ctx_b.home_dir.display()
                ),
            ))
        },
    );
    let Some((home_a, home_b)) = homes else {
        return facts;
    };
    let ks_a = KeyStore::new(&home_a);

    let Some(key1) = steps.run("create a system backup key in A", || {
        let lock = home_a.lock()?;
        let k = ks_a.create(&lock, Scope::System, None, true, "demo key", &account)?;
        ctx_a.audit(
            AuditEvent {
                key_id: Some(k.id.to_string()),
                ..event("keys.create")
            },
            &Ok::<_, CliError>(()),
        );
        let d = format!("key {} is the system default", short(k.id));
        Ok((k, d))
    }) else {
        return facts;
    };

    let Some(pulled) = steps.run("pull a backup from the BMC into a sealed archive", || {
        let job = PullJob {
            opts: opts(),
            scope: Scope::System,
            domain: None,
            key: None,
            description: Some("demo backup".into()),
        };
        let p = pull::pull(&ctx_a.ops()?, job, &Silent)?;
        check(p.sealed.key_id == key1.id, || {
            "the archive is not sealed under the system default".into()
        })?;
        let d = format!(
            "archive {} ({} bytes from {}, sealed under key {})",
            short(p.sealed.header.id),
            p.sealed.plaintext_size,
            p.host,
            short(p.sealed.key_id)
        );
        Ok((p, d))
    }) else {
        return facts;
    };
    let id = pulled.sealed.header.id;
    facts.push(("archiveId".into(), json!(id)));
    let path_a = ArchiveStore::new(&home_a).path_of(&id);

    steps.run("inspect the archive without any key", || {
        let i = store::inspect_file(&path_a)?;
        let src = i.header.source.clone().unwrap_or_default();
        check(src.serial_number.as_deref() == Some(serial), || {
            format!(
                "the archive records serial {:?}, not {serial}",
                src.serial_number
            )
        })?;
        check(i.plaintext_size == backup.len() as u64, || {
            "the archive's size differs from the BMC's backup".into()
        })?;
        let d = format!(
            "{} from {} ({}, {}), serial {}, sha256 {}…",
            src.file_name.unwrap_or_default(),
            src.bmc_host.unwrap_or_default(),
            src.manager_model.unwrap_or_default(),
            src.firmware_version.unwrap_or_default(),
            serial,
            &envelope::hex_digest(&i.sha256)[..16]
        );
        Ok(((), d))
    });

    steps.run("verify the archive completely with its key", || {
        let s = verify_path(&home_a, &path_a, &Silent)?;
        Ok((
            (),
            format!(
                "every chunk and the trailer authenticate under key {}",
                short(s.key_id)
            ),
        ))
    });

    let key2 = steps.run("rotate the system key", || {
        let lock = home_a.lock()?;
        let r = ks_a.rotate(&lock, Scope::System, None, &account)?;
        let d = format!(
            "new default {}, {} retired (it still decrypts)",
            short(r.new_key.id),
            short(r.retired_key.id)
        );
        Ok((r.new_key, d))
    });

    if let Some(key2) = &key2 {
        steps.run("rewrap the archive onto the new key (header only)", || {
            let before = std::fs::read(&path_a)
                .map_err(|e| CliError::from(crate::ops::OpsError::file(&path_a)(e)))?;
            let (info, material) = ks_a.material(&key2.id, true)?;
            let lookup = key_lookup(&ks_a)?;
            let new_key = envelope::OpeningKey::new(material, info.scope, info.domain_id);
            let s = envelope::rewrap_file(&path_a, &lookup, key2.id, &new_key, None)
                .map_err(archive_err(&path_a))?;
            let after = std::fs::read(&path_a)
                .map_err(|e| CliError::from(crate::ops::OpsError::file(&path_a)(e)))?;
            let changed = before.iter().zip(&after).filter(|(x, y)| x != y).count();
            let v = verify_path(&home_a, &path_a, &Silent)?;
            check(v.key_id == key2.id, || {
                "the archive does not open with the new key".into()
            })?;
            Ok((
                (),
                format!(
                    "now under key {} ({changed} of {} bytes rewritten), verified",
                    short(s.new_key_id),
                    after.len()
                ),
            ))
        });
    }

    let key_file = root.join("demo-key.vkey");
    if let Some(key2) = &key2 {
        steps.run(
            "export the new key under a password (keys download)",
            || {
                let (_, bytes) = ks_a.export(&key2.id, &key_password(), KdfParams::default())?;
                fsutil::write_atomic(&key_file, &bytes, 0o600)
                    .map_err(|e| CliError::from(crate::ops::OpsError::file(&key_file)(e)))?;
                Ok((
                    (),
                    format!("{} ({} bytes, Argon2id)", key_file.display(), bytes.len()),
                ))
            },
        );
        steps.run("import the key into home B (keys upload)", || {
            let bytes = std::fs::read(&key_file)
                .map_err(|e| CliError::from(crate::ops::OpsError::file(&key_file)(e)))?;
            let lock = home_b.lock()?;
            KeyStore::new(&home_b).import(
                &lock,
                &bytes,
                Scope::System,
                &key_password(),
                &account,
            )?;
            Ok(((), format!("key {} is now in B", short(key2.id))))
        });
    }

    let copy = root.join("demo-archive.vault");
    steps.run(
        "move the archive to home B (backup download / upload)",
        || {
            let n = store::copy_atomic(&path_a, &copy, 0o600)?;
            let lock = home_b.lock()?;
            let (_, added) = ArchiveStore::new(&home_b).import(&lock, &copy)?;
            check(added, || "home B already had the archive".into())?;
            Ok(((), format!("{n} bytes, still encrypted")))
        },
    );

    let path_b = ArchiveStore::new(&home_b).path_of(&id);
    steps.run("extract in home B and compare with the BMC's bytes", || {
        let out = root.join("extracted.bak");
        let ks_b = KeyStore::new(&home_b);
        let lookup = key_lookup(&ks_b)?;
        let f = std::fs::File::open(&path_b)
            .map_err(|e| CliError::from(crate::ops::OpsError::file(&path_b)(e)))?;
        let mut dest = AtomicFile::create_unnamed(&out, 0o600)
            .map_err(|e| CliError::from(crate::ops::OpsError::file(&out)(e)))?;
        envelope::open(std::io::BufReader::new(f), &lookup, &mut dest)
            .map_err(archive_err(&path_b))?;
        dest.flush()
            .map_err(|e| CliError::from(crate::ops::OpsError::file(&out)(e)))?;
        dest.commit()
            .map_err(|e| CliError::from(crate::ops::OpsError::file(&out)(e)))?;
        let mut got = Vec::new();
        std::fs::File::open(&out)
            .and_then(|mut f| f.read_to_end(&mut got))
            .map_err(|e| CliError::from(crate::ops::OpsError::file(&out)(e)))?;
        check(got == backup, || {
            "the extracted bytes differ from the BMC's backup".into()
        })?;
        Ok(((), format!("{} bytes, identical", got.len())))
    });

    let restored = steps.run("restore from home B to the BMC", || {
        let r = restore_one(&home_b, &path_b, opts(), false, &|_| Ok(()), &Silent)
            .map_err(CliError::from);
        ctx_b.audit(
            AuditEvent {
                bmc_host: Some(pull::host_of(&sim.base_url())),
                archive_id: Some(id.to_string()),
                ..event("backup.restore")
            },
            &r,
        );
        let x = r?;
        let got = sim.restored();
        check(got.len() == 1 && got[0] == backup, || {
            "the simulator did not receive exactly the original backup".into()
        })?;
        let v = serde_json::to_value(super::records::RestoredRecord::from(&x))
            .expect("a record serializes");
        Ok((
            v,
            format!(
                "{} bytes sent; the simulator received identical bytes",
                x.bytes
            ),
        ))
    });
    if let Some(v) = restored {
        facts.push(("restore".into(), v));
    }

    steps.run("check that no BMC session is left open", || {
        let open = sim.open_sessions();
        check(open == 0, || {
            format!("{open} session(s) still open on the simulator")
        })?;
        Ok((
            (),
            format!("{} session(s) created, 0 open", sim.sessions_created()),
        ))
    });

    steps.run("verify the audit logs of both homes", || {
        let mut n = 0;
        for c in [&ctx_a, &ctx_b] {
            let r = AuditLog::open(&c.home_dir).verify().map_err(|e| {
                CliError::new(
                    Kind::Integrity,
                    format!("audit log of {}: {e}", c.home_dir.display()),
                )
            })?;
            check(r.is_intact(), || {
                format!("the audit log of {} is broken", c.home_dir.display())
            })?;
            n += r.records;
        }
        Ok(((), format!("{n} records, hash chains intact")))
    });
    sim.shutdown();
    facts
}
