//! Command-line glue: argument parsing, the run context, error reporting and exit codes.
//!
//! Only this module touches stdout, stderr, environment variables and the TTY; the
//! library modules below it take paths, readers and writers. Errors are printed to stderr
//! as one sentence that says what to do (a library error's fact, then the next step in
//! terms of commands and flags from [`hints`]), and mapped to the stable exit codes of
//! [`crate::errors::Kind`] (listed in README.md).
pub mod args;
mod audit;
mod backup;
mod demo;
mod everyday;
mod hints;
mod home;
mod keys;
pub mod output;
mod password;
mod progress;
mod prune;
mod pull;
pub mod records;
mod remote;
mod shell;
mod signals;
mod table;
mod usage;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::errors::{Classify, Kind};
use crate::keystore::Home;
use crate::ops;
pub use args::{ScopeArg, ScopeArgs};
use output::Format;

/// An error on its way to the user: one sentence and a class that fixes the exit code.
#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
}

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
        }
    }
}

/// A library error: its kind, and its fact followed by the CLI's hint ([`hints`]).
impl<E: Classify + std::fmt::Display + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(e.kind(), hints::message(&e))
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

#[derive(Parser)]
#[command(
    name = "vault",
    version,
    about = "Encrypted backup vault with key management for BMC (HPE iLO / Redfish) configuration backups",
    long_about = "vault pulls configuration backups from BMCs over Redfish, seals each one in an \
authenticated, encrypted archive whose metadata anyone can inspect without the key, and manages \
the backup keys that protect them (system- or domain-scoped, rotatable, exportable under a password).\n\n\
Output on stdout is JSON (pipe it to jq) unless --output table; errors go to stderr with a \
non-zero exit status (see README.md for the codes). Passwords are never taken on the command line: \
use a --password-file (mode 0600), the environment (VAULT_KEY_PASSWORD, VAULT_BMC_PASSWORD) or the \
terminal prompt.",
    after_help = "Start with:  vault demo   (the whole cycle against the built-in BMC simulator)"
)]
pub struct Cli {
    /// The vault home (keys, archives, audit log). Default: <data dir>/vault.
    #[arg(long, global = true, env = "VAULT_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Json)]
    output: Format,
    /// Also send every audit record to this syslog receiver (RFC 5424; udp://HOST:PORT,
    /// tcp://HOST:PORT or unix:/PATH; env VAULT_SYSLOG, or syslog in config.toml).
    #[arg(long, global = true, value_name = "TARGET")]
    syslog: Option<String>,
    /// The root key's passphrase (mode passphrase), from this file (mode 0600) instead
    /// of VAULT_ROOT_PASSWORD or a prompt.
    #[arg(long, global = true, value_name = "F")]
    root_password_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The vault home's root key: how it is protected, and its rotation.
    #[command(subcommand)]
    Home(home::HomeCmd),
    /// Create, rotate, export and import backup keys.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Seal, list, verify, extract, rewrap, pull and restore backups.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Show an archive's metadata without any key (nothing is verified).
    Inspect(backup::InspectArgs),
    /// The tamper-evident operations log, and integrity sweeps over archives.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Off-box archive stores on S3 (AWS S3, Ceph RGW, other S3-compatible stores).
    #[command(subcommand)]
    Remote(remote::RemoteCmd),
    /// Run the whole cycle against a built-in BMC simulator in a temporary home.
    Demo(demo::DemoArgs),
    /// Serve the iLO-like BMC simulator on loopback (for trying vault out and for tests).
    BmcSimulator(demo::SimulatorArgs),
    /// Write a shell completion script (bash, zsh or fish) on stdout.
    Completions(shell::CompletionsArgs),
    /// Write the man pages (one per command and subcommand) into a directory.
    Manpages(shell::ManpagesArgs),
    /// The home's defaults (config.toml) and where each effective value comes from.
    #[command(subcommand)]
    Config(everyday::ConfigCmd),
}

/// Everything a command needs: where the home is, how to print, who is acting.
pub struct Ctx {
    home_dir: PathBuf,
    root_password_file: Option<PathBuf>,
    pub format: Format,
    pub account: String,
}

impl Ctx {
    /// Opens (creating on first use) the vault home.
    pub fn home(&self) -> CliResult<Home> {
        Ok(Home::open(&self.home_dir)?.with_unlocker(Box::new(self.unlocker())))
    }

    /// Where the root passphrase and token PINs come from.
    pub fn unlocker(&self) -> home::CliUnlocker {
        home::CliUnlocker {
            root_password_file: self.root_password_file.clone(),
        }
    }

    pub fn home_dir(&self) -> &Path {
        &self.home_dir
    }

    /// Opens the home for the operations layer; its warnings go to stderr.
    pub fn ops(&self) -> CliResult<ops::Context> {
        Ok(ops::Context::with_home(self.home()?, self.account.clone())
            .with_reporter(Box::new(Notices)))
    }

    /// Prints a result record on stdout.
    pub fn print<T: Serialize + ?Sized>(&self, record: &T) -> CliResult {
        let value = serde_json::to_value(record)
            .map_err(|e| CliError::new(Kind::Internal, format!("cannot encode the result: {e}")))?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        output::render(&mut lock, self.format, &value)
            .and_then(|_| lock.flush())
            .map_err(|e| CliError::new(Kind::Io, format!("cannot write to stdout: {e}")))
    }

    /// A notice for the person at the terminal (stderr, never parsed by scripts).
    pub fn notice(&self, msg: &str) {
        eprintln!("vault: {}", crate::escape::for_terminal(msg));
    }
}

/// Warnings of operations, for the person at the terminal.
struct Notices;

impl ops::Progress for Notices {
    fn warn(&self, message: &str) {
        eprintln!("vault: {}", crate::escape::for_terminal(message));
    }
}

/// Parses the command line, runs it and returns the exit code.
pub fn main() -> ExitCode {
    // Secrets must never end up in a core file.
    disable_core_dumps();
    // Before any thread exists, so every thread inherits the blocked SIGXFSZ.
    crate::hardening::survive_file_size_limit();
    // One handler for INT/TERM/HUP: BMC sessions logged out, temporaries removed.
    signals::install();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage::report(&e),
    };
    let hi = args::HiArgs::resolve(cli.home.clone(), cli.output);
    let ctx = Ctx {
        home_dir: hi.home_dir,
        root_password_file: cli.root_password_file.clone(),
        format: hi.format,
        account: hi.account,
    };
    // A command that fails never leaves a new home behind (issue 17): a failed
    // `backup create` on a fresh machine must not create a home with a root key.
    let fresh_home = !ctx.home_dir.exists();
    let result = everyday::install_syslog(&ctx.home_dir, cli.syslog.clone())
        .and_then(|()| run(&ctx, cli.command));
    everyday::report_syslog();
    if result.is_err()
        && fresh_home
        && let Err(e) = crate::home::discard_unused(&ctx.home_dir)
    {
        ctx.notice(&format!(
            "warning: could not remove the home {} this failed command created: {e}",
            ctx.home_dir.display()
        ));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages quote file and BMC content: escape it (issue 13, item 3).
            eprintln!("vault: error: {}", crate::escape::for_terminal(&e.message));
            ExitCode::from(e.kind.exit_code())
        }
    }
}

fn run(ctx: &Ctx, cmd: Command) -> CliResult {
    match cmd {
        Command::Home(c) => home::run(ctx, c),
        Command::Keys(c) => keys::run(ctx, c),
        Command::Backup(c) => backup::run(ctx, c),
        Command::Inspect(a) => backup::inspect(ctx, &a),
        Command::Audit(c) => audit::run(ctx, c),
        Command::Remote(c) => remote::run(ctx, c),
        Command::Demo(a) => demo::run(ctx, a),
        Command::BmcSimulator(a) => demo::simulator(ctx, a),
        Command::Completions(a) => shell::completions(ctx, &a),
        Command::Manpages(a) => shell::manpages(ctx, &a),
        Command::Config(c) => everyday::run(ctx, c),
    }
}

fn disable_core_dumps() {
    if !crate::hardening::disable_core_dumps() {
        eprintln!("vault: warning: could not disable core dumps (RLIMIT_CORE)");
    }
    if !crate::hardening::make_non_dumpable() {
        eprintln!("vault: warning: could not make the process non-dumpable (PR_SET_DUMPABLE)");
    }
}
