//! Outside programs the tests need (installed by `.ci/install.d/4*.sh`).
//!
//! Under `CI=true` a missing program is a failure, never a skip: a suite that silently
//! stops checking is worse than a red one. On a developer machine the test says what to
//! install and returns early.
#![allow(dead_code)]

use std::path::PathBuf;

/// The absolute path of `program` on PATH (or in the sbin directories, where Debian puts
/// rsyslogd), or `None` when it is absent and this is not CI.
pub fn require(program: &str, install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = format!("`{program}` is not installed: run `bash {install}` (as root)");
        // The same rule as tests/common `in_ci` (this module is also used without it).
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{msg}; under CI=true this is a failure, not a skip");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}
