//! Shell integration: completion scripts and man pages, generated from the same clap
//! definitions as the parser, so they can never disagree with it.
use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (on stdout).
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManpagesArgs {
    /// Directory to write the pages to (vault.1, vault-keys.1, vault-keys-create.1, …);
    /// created if missing.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// The clap command tree, as completions and man pages see it.
pub fn command() -> clap::Command {
    super::Cli::command()
}

pub fn completions(_ctx: &Ctx, a: &CompletionsArgs) -> CliResult {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "vault", &mut out);
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|_| stdout.flush())
        .map_err(|e| CliError::new(Kind::Io, format!("cannot write to stdout: {e}")))
}

pub fn manpages(ctx: &Ctx, a: &ManpagesArgs) -> CliResult {
    let io = |e: std::io::Error| {
        CliError::new(
            Kind::Io,
            format!("cannot write man pages to {}: {e}", a.dir.display()),
        )
    };
    std::fs::create_dir_all(&a.dir).map_err(io)?;
    clap_mangen::generate_to(command(), &a.dir).map_err(io)?;
    let mut pages: Vec<String> = std::fs::read_dir(&a.dir)
        .map_err(io)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("vault") && n.ends_with(".1"))
        .collect();
    pages.sort();
    ctx.print(&super::records::ManPages {
        dir: a.dir.display().to_string(),
        pages,
    })
}
