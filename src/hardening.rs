//! Process hardening applied before any secret is loaded.
//!
//! Invariant: a crash must not write key material to disk, so core dumps are disabled
//! (RLIMIT_CORE soft and hard limits set to 0) and the process is made non-dumpable
//! (`PR_SET_DUMPABLE` = 0, which also stops same-user `ptrace` and `/proc/<pid>/mem`
//! reads) at start-up, before keys or passwords are read. This crate forbids `unsafe`; the `rlimit` crate provides the safe wrapper.
//!
//! A write past RLIMIT_FSIZE (`ulimit -f`, set by some cron and CI environments) raises
//! SIGXFSZ, whose default action kills the process (with a core dump) mid-write. It is
//! blocked at start-up, so such a write fails with EFBIG and vault reports a clear
//! "file too large" error instead of dying; the atomic writers then leave nothing behind.

/// Makes the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core file even where
/// RLIMIT_CORE is raised again or a core pattern pipes to a helper, and other processes
/// of the same user can no longer `ptrace` it or read its `/proc/<pid>/mem`. The flag is
/// reset by the kernel on `execve`, which vault only does for nothing that sees secrets.
/// Returns whether it worked.
pub fn make_non_dumpable() -> bool {
    nix::sys::prctl::set_dumpable(false).is_ok()
}

/// Disables core dumps for this process and its children. Returns whether it worked.
pub fn disable_core_dumps() -> bool {
    rlimit::setrlimit(rlimit::Resource::CORE, 0, 0).is_ok()
}

/// Blocks SIGXFSZ for the calling thread and the threads it spawns later (call it first
/// thing in `main`), so exceeding RLIMIT_FSIZE is an `EFBIG` error, not a kill.
pub fn survive_file_size_limit() -> bool {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGXFSZ);
    set.thread_block().is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn core_limit_is_zero_after_hardening() {
        assert!(super::disable_core_dumps());
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }

    /// Issue 13.11: the process stays dumpable.
    #[test]
    fn process_is_not_dumpable_after_hardening() {
        assert!(super::make_non_dumpable());
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
