//! Argument errors as one sentence on one line, like every other error of `vault`.
//!
//! clap renders an argument error as several lines (the error, a tip, possible values,
//! the usage, a pointer to `--help`). This folds them into `vault: error: …` with the
//! same facts: what was wrong, the tip or the accepted values, the usage line and which
//! `--help` to read. A missing subcommand names the subcommands instead of printing the
//! whole help. `--help` and `--version` print as clap prints them.
use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind;

use crate::errors::Kind;

/// Prints `err` (help and version to stdout, errors as one line to stderr) and returns the
/// exit code: 0 for help and version, 2 (usage) otherwise.
pub fn report(err: &clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "vault: error: {}",
                crate::escape::for_terminal(&one_sentence(err, &args))
            );
            ExitCode::from(Kind::Usage.exit_code())
        }
    }
}

/// The facts of clap's rendering of `err`, in one sentence; `args` (the command line)
/// tells which subcommand's `--help` to point to.
pub fn one_sentence(err: &clap::Error, args: &[String]) -> String {
    let text = err.render().to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let usage = lines
        .iter()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(str::trim);
    let path = usage.map_or_else(|| subcommand_path(args), command_path);
    let help = format!("run '{path} --help'");
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let subcommands = subcommands(&lines);
        return if subcommands.is_empty() {
            format!("'{path}' needs more arguments; {help}")
        } else {
            format!(
                "'{path}' needs a subcommand ({}); {help}",
                subcommands.join(", ")
            )
        };
    }
    let mut main = String::new();
    let mut notes = Vec::new();
    for l in &lines {
        let t = l.trim();
        if let Some(e) = l.strip_prefix("error: ") {
            main = e.trim().to_string();
        } else if t.is_empty() || l.starts_with("Usage: ") || t.starts_with("For more information")
        {
            continue;
        } else if !main.is_empty() {
            let t = t.strip_prefix("tip: ").unwrap_or(t);
            let t = t.trim_start_matches('[').trim_end_matches(']');
            notes.push(t.to_string());
        }
    }
    if main.is_empty() {
        main = "invalid arguments".to_string();
    }
    let mut s = main;
    if !notes.is_empty() {
        if s.ends_with(':') {
            s.push_str(&format!(" {}", notes.join(", ")));
        } else {
            s.push_str(&format!(" ({})", notes.join("; ")));
        }
    }
    if let Some(u) = usage {
        s.push_str(&format!("; usage: {u}"));
    }
    s.push_str(&format!("; {help}"));
    s
}

/// `vault keys delete --id <ID> --force` → `vault keys delete`.
fn command_path(usage: &str) -> String {
    usage
        .split_whitespace()
        .take_while(|w| !w.starts_with(['[', '<', '-']))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The subcommands named on the command line, in order: `vault keys create`.
fn subcommand_path(args: &[String]) -> String {
    let mut cmd = crate::cli::Cli::command();
    let mut path = vec!["vault".to_string()];
    for a in args.iter().skip(1) {
        let Some(sub) = cmd.find_subcommand(a).cloned() else {
            continue;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    path.join(" ")
}

/// The names listed under `Commands:` in a help text (without `help`).
fn subcommands(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(args: &[&str]) -> (ErrorKind, String) {
        let err = crate::cli::Cli::command()
            .try_get_matches_from(args)
            .expect_err("an argument error");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        (err.kind(), one_sentence(&err, &args))
    }

    #[test]
    fn every_kind_of_argument_error_is_one_line() {
        for args in [
            &["vault", "keys", "delete", "--frce"][..],
            &["vault", "keys"],
            &["vault"],
            &["vault", "backup", "create"],
            &["vault", "--output", "xml", "keys", "list"],
            &["vault", "bogus"],
            &["vault", "keys", "list", "extra"],
        ] {
            let (_, s) = sentence(args);
            assert!(!s.contains('\n') && !s.is_empty(), "{args:?}: {s:?}");
            assert!(s.contains("--help'"), "{args:?}: {s}");
        }
    }

    #[test]
    fn the_facts_survive() {
        let (_, s) = sentence(&["vault", "keys", "delete", "--frce"]);
        assert!(s.contains("'--frce'") && s.contains("'--force'"), "{s}");
        assert!(s.ends_with("run 'vault keys delete --help'"), "{s}");
        let (_, s) = sentence(&["vault", "--output", "xml", "keys", "list"]);
        assert!(s.contains("'xml'") && s.contains("json, table"), "{s}");
        let (_, s) = sentence(&["vault", "backup", "create"]);
        assert!(s.contains("not provided: --file <IN>"), "{s}");
        let (_, s) = sentence(&["vault", "keys", "create", "--scope", "nope"]);
        assert!(
            s.contains("'nope'") && s.ends_with("run 'vault keys create --help'"),
            "{s}"
        );
        let (kind, s) = sentence(&["vault", "keys"]);
        assert_eq!(kind, ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        assert!(s.contains("create") && s.contains("rotate"), "{s}");
        assert!(s.ends_with("run 'vault keys --help'"), "{s}");
    }
}
