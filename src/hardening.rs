//! Process hardening applied before any secret is loaded.
//!
//! Invariant: a crash must not write key material to disk, so core dumps are disabled
//! (RLIMIT_CORE soft and hard limits set to 0) at start-up, before keys or passwords are
//! read. This crate forbids `unsafe`; the `rlimit` crate provides the safe wrapper.

/// Disables core dumps for this process and its children. Returns whether it worked.
pub fn disable_core_dumps() -> bool {
    rlimit::setrlimit(rlimit::Resource::CORE, 0, 0).is_ok()
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
