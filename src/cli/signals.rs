//! The process's one handler for SIGINT, SIGTERM and SIGHUP (Ctrl-C, systemd and
//! `timeout`, a closed terminal or Kubernetes), installed once at start-up.
//!
//! Invariant: whichever of the three arrives, before the process exits every live BMC
//! session is logged out (a leaked session holds one of the BMC's few session slots) and
//! every named temporary this process is writing is removed (`exit` skips destructors;
//! plaintext temporaries have no name in the first place where the file system allows
//! it, see [`crate::fsutil::AtomicFile::create_unnamed`]). The exit status is 128 + the
//! signal number, as a shell reports it.
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::bmc::logout_all_live_sessions;
use crate::fsutil;

/// Starts the handler thread. Called once, before any operation; a failure to install
/// it is reported and vault runs on (default signal behaviour).
pub fn install() {
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vault: warning: cannot install the signal handler: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("vault-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let removed = fsutil::remove_live_temps();
                let sessions = logout_all_live_sessions();
                eprintln!(
                    "vault: interrupted by {}: logged out of {sessions} BMC session(s), removed {removed} temporary file(s); nothing partial was stored",
                    name(sig)
                );
                std::process::exit(128 + sig);
            }
        });
    if let Err(e) = spawned {
        eprintln!("vault: warning: cannot start the signal handler: {e}");
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
