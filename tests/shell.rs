//! `vault completions bash|zsh|fish` and `vault manpages`: generated from the parser's own
//! clap definitions, syntactically valid for each shell, one man page per subcommand.
mod common;
mod tools;

use std::process::Command;

use clap::CommandFactory;
use common::BIN;

fn completions(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks `script` with the shell's own parser (`-n`: read, do not execute).
fn syntax_ok(shell: &str, flag: &str, script: &str) {
    let Some(sh) = tools::require(shell, ".ci/install.d/43-shells.sh") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("vault.{shell}"));
    std::fs::write(&file, script).unwrap();
    let out = Command::new(sh).arg(flag).arg(&file).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{shell} rejects the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bash_completion_parses_and_knows_every_command() {
    let s = completions("bash");
    syntax_ok("bash", "-n", &s);
    assert!(s.contains("complete -F _vault"), "{s:.200}");
    for word in ["keys", "backup", "audit", "rotate", "--inventory"] {
        assert!(s.contains(word), "bash completion lacks {word}");
    }
}

#[test]
fn zsh_completion_parses() {
    let s = completions("zsh");
    assert!(s.starts_with("#compdef vault"));
    syntax_ok("zsh", "-n", &s);
}

#[test]
fn fish_completion_parses() {
    let s = completions("fish");
    assert!(s.contains("complete -c vault"));
    syntax_ok("fish", "--no-execute", &s);
}

#[test]
fn unknown_shell_is_refused_with_the_choices() {
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bash") && err.contains("zsh") && err.contains("fish"),
        "{err}"
    );
}

/// Every (non-hidden) command path: ["vault"], ["vault", "keys"], ["vault", "keys", "create"], …
fn command_paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut here = prefix.to_vec();
    here.push(cmd.get_name().to_string());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_paths(sub, &here, out);
    }
    out.push(here);
}

#[test]
fn a_man_page_per_subcommand_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["manpages", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut paths = Vec::new();
    command_paths(&vault::cli::Cli::command(), &[], &mut paths);
    assert!(paths.len() > 30, "{paths:?}");
    let man = tools::require("man", ".ci/install.d/40-systemd.sh");
    for p in &paths {
        let name = p.join("-");
        let page = dir.path().join(format!("{name}.1"));
        let roff = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(
            roff.contains(&format!(".TH {name} 1")),
            "{name}.1 has no title"
        );
        if let Some(man) = &man {
            let out = Command::new(man)
                .args(["--warnings", "-l"])
                .arg(&page)
                .env("MANWIDTH", "100")
                .output()
                .unwrap();
            // Overstrike bold/underline ("N\x08N"): keep the last character of each pair.
            let mut text = String::new();
            for c in String::from_utf8_lossy(&out.stdout).chars() {
                if c == '\x08' {
                    text.pop();
                } else {
                    text.push(c);
                }
            }
            assert!(
                out.status.success(),
                "man {name}.1: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stderr.is_empty(),
                "man warns on {name}.1: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("NAME") && text.contains("SYNOPSIS"),
                "{name}.1:\n{text}"
            );
        }
    }
    // The pull page documents the flags a cron or systemd user needs.
    let pull = std::fs::read_to_string(dir.path().join("vault-backup-pull.1")).unwrap();
    assert!(pull.contains("inventory"));
}
