//! Issue 13, item 3: attacker-controlled bytes (archive headers, key files, file names,
//! BMC fields) never reach the terminal raw: not in tables, not in JSON, not in errors.
mod common;

use std::process::Output;

use common::{Vault, s};

/// ESC [2J (clear screen), OSC 0 (window title), C1 CSI, RLO, an isolate, DEL.
const HOSTILE: &str = "x\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1m\u{202e}fdp.exe\u{2067}\u{7f}";

/// What a terminal would obey: C0 (but the newlines and tabs of the layout), DEL, C1, bidi.
fn raw_controls(bytes: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| vault::escape::is_dangerous(c) && c != '\n')
        .collect()
}

fn clean(out: &Output) {
    assert!(
        raw_controls(&out.stdout).is_empty() && raw_controls(&out.stderr).is_empty(),
        "raw control characters reached the terminal:\nstdout {:?}\nstderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hostile_description_is_escaped_in_tables_and_json_but_kept_in_the_data() {
    let v = Vault::new();
    v.create_key(&["--description", HOSTILE]);
    let input = v.path("in.bin");
    std::fs::write(&input, b"config").unwrap();
    let created = v.ok(&[
        "backup",
        "create",
        "--file",
        s(&input),
        "--description",
        HOSTILE,
    ]);
    let id = created["id"].as_str().unwrap().to_string();
    let archive = v.home.join("archives").join(format!("{id}.vault"));

    for args in [
        vec!["--output", "table", "keys", "list"],
        vec!["--output", "table", "backup", "list"],
        vec!["--output", "table", "backup", "get", "--id", &id],
        vec!["--output", "table", "inspect", "--file", s(&archive)],
        vec!["--output", "table", "audit", "log"],
        vec!["keys", "list"],
        vec!["backup", "list"],
        vec!["inspect", "--file", s(&archive)],
    ] {
        let out = v.run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        clean(&out);
    }
    // The table shows the escape; the JSON, parsed, still holds the exact description.
    let t = v.run(&["--output", "table", "backup", "get", "--id", &id]);
    assert!(String::from_utf8_lossy(&t.stdout).contains("x\\u{1b}[2J\\u{1b}]0;owned\\u{7}"));
    let j = v.ok(&["backup", "get", "--id", &id]);
    assert_eq!(j["description"], HOSTILE);
}

#[test]
fn error_messages_quoting_a_file_name_are_escaped() {
    let v = Vault::new();
    let evil = v.path(&format!("nothing{HOSTILE}"));
    for args in [
        vec!["inspect", "--file", s(&evil)],
        vec!["keys", "inspect", "--file", s(&evil)],
        vec!["backup", "upload", "--file", s(&evil)],
        vec!["backup", "verify", "--file", s(&evil)],
    ] {
        let out = v.run(&args);
        assert!(!out.status.success());
        clean(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("\\u{1b}"),
            "{args:?}: the name must still be shown: {err}"
        );
    }
}

#[test]
fn a_file_that_is_not_an_archive_but_looks_hostile_gives_a_clean_error() {
    let v = Vault::new();
    let f = v.path("evil.vault");
    std::fs::write(&f, HOSTILE.repeat(4)).unwrap();
    let out = v.run(&["inspect", "--file", s(&f)]);
    assert!(!out.status.success());
    clean(&out);
}
