//! Shell integration: completion scripts and man pages, generated from the same clap
//! definitions as the parser, so they can never disagree with it.
use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;
use crate::ops::{self, shell::ManPage};

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
    let pages = render_manpages()
        .map_err(|e| CliError::new(Kind::Internal, format!("cannot render the man pages: {e}")))?;
    let pages = ops::shell::write_manpages(&a.dir, &pages)?;
    ctx.print(&super::records::ManPages {
        dir: a.dir.display().to_string(),
        pages,
    })
}

/// One page per command and visible subcommand (`vault.1`, `vault-keys.1`,
/// `vault-keys-create.1`, …), named and rendered as `clap_mangen::generate_to` would.
fn render_manpages() -> std::io::Result<Vec<ManPage>> {
    fn render(cmd: clap::Command, out: &mut Vec<ManPage>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            render(sub, out)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        out.push(ManPage {
            name: man.get_filename(),
            roff,
        });
        Ok(())
    }
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    render(cmd, &mut pages)?;
    Ok(pages)
}
