//! Who is acting: the OS account recorded as creator of keys and archives and as the
//! actor of audit records.
//!
//! Invariant: the name is read, never trusted for access decisions (it comes from the
//! environment first); it only says who ran the command.

/// The OS account running this process: `$USER`, else `$LOGNAME`, else `uid:<n>` (the
/// owner of `/proc/self`), else `"unknown"`.
pub fn os_account() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    // No unsafe geteuid(): /proc/self is owned by the process's effective uid.
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) => format!("uid:{}", m.uid()),
        Err(_) => "unknown".to_string(),
    }
}
