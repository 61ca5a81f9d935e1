//! Process hardening applied before any secret is loaded.
//!
//! Invariant: a crash must not write key material to disk, so core dumps are disabled
//! (RLIMIT_CORE soft and hard limits set to 0) at start-up, before keys or passwords are
//! read. This crate forbids `unsafe`; the `rlimit` crate provides the safe wrapper.
//!
//! A write past RLIMIT_FSIZE (`ulimit -f`, set by some cron and CI environments) raises
//! SIGXFSZ, whose default action kills the process (with a core dump) mid-write. It is
//! blocked at start-up, so such a write fails with EFBIG and vault reports a clear
//! "file too large" error instead of dying; the atomic writers then leave nothing behind.

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
}
