//! Redfish JSON shapes, bounded JSON parsing and URI handling.
//!
//! Invariants:
//! - JSON from a BMC is untrusted: it is parsed only after its size was capped by the
//!   caller and its nesting depth checked here, so a hostile BMC cannot exhaust memory or
//!   the stack.
//! - URIs from a BMC (`@odata.id`, `Location`, `BackupFileLocation`, `HttpPushUri`) are
//!   opaque and followed as given, but only their path is used: requests always go to the
//!   origin the user named. iLO puts its own address in `Location`, which may differ from
//!   the one we reached it by (NAT, DNS name); and a BMC must not be able to send our
//!   session token to another host.
use serde_json::Value;

/// Largest JSON body read from a BMC. Redfish resources are a few KiB.
pub const MAX_JSON_BYTES: u64 = 1 << 20;
/// Deepest JSON nesting accepted. Redfish resources nest a handful of levels.
pub const MAX_JSON_DEPTH: usize = 64;
/// Longest URI reference accepted from a BMC.
const MAX_URI_LEN: usize = 2048;
/// Longest BMC-provided text kept for an error message.
const MAX_TEXT: usize = 200;

/// The HPE OEM fallback when a Manager does not link its BackupRestoreService.
pub const FALLBACK_BACKUP_SERVICE: &str = "/redfish/v1/Managers/1/BackupRestoreService/";
/// Redfish session collection (DSP0266): `POST` here logs in.
pub const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";
/// What iLO answers (as the whole body) when a restore has a wrong or missing
/// backup-file password (HPE's iLOrest compares the body with exactly this).
pub const INVALID_RESTORE_PASSWORD: &str = "invalid_restore_password";
/// Redfish service root.
pub const SERVICE_ROOT: &str = "/redfish/v1/";

/// Parses a JSON document after checking its nesting depth.
pub fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    check_depth(bytes, MAX_JSON_DEPTH)?;
    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// Rejects JSON nested deeper than `max`, scanning bytes without allocating.
/// Brackets inside strings do not count; escapes inside strings are skipped.
fn check_depth(bytes: &[u8], max: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(format!("JSON nested deeper than {max} levels"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `v[k1][k2]…` as a string.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    cur.as_str()
}

/// `v[k1][k2]…["@odata.id"]`: the link a Redfish property points to.
pub fn link_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    cur.get("@odata.id")?.as_str()
}

/// The `@odata.id` of every member of a Redfish collection, in order.
pub fn members(collection: &Value) -> Vec<&str> {
    collection
        .get("Members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|e| e.get("@odata.id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// What a Redfish error body says: `error.@Message.ExtendedInfo[0].MessageId` (or
/// `error.code`) and the matching human message. Both sanitized for display.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedfishErrorInfo {
    pub message_id: Option<String>,
    pub message: Option<String>,
}

/// Reads a Redfish/iLO error body. Never fails: an unparsable body gives empty info.
pub fn parse_error_body(bytes: &[u8]) -> RedfishErrorInfo {
    let Ok(v) = parse_json(bytes) else {
        return RedfishErrorInfo::default();
    };
    let Some(err) = v.get("error") else {
        return RedfishErrorInfo::default();
    };
    let first = err
        .get("@Message.ExtendedInfo")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let message_id = first
        .and_then(|f| f.get("MessageId"))
        .and_then(Value::as_str)
        .or_else(|| err.get("code").and_then(Value::as_str))
        .map(sanitize);
    let message = first
        .and_then(|f| f.get("Message"))
        .and_then(Value::as_str)
        .or_else(|| err.get("message").and_then(Value::as_str))
        // iLO's generic pointer to ExtendedInfo tells a person nothing.
        .filter(|m| !m.starts_with("See @Message.ExtendedInfo"))
        .map(sanitize);
    RedfishErrorInfo {
        message_id,
        message,
    }
}

/// Whether a Redfish error means "too many sessions": DMTF's `SessionLimitExceeded`,
/// iDRAC's RAC0218, or a message saying the maximum number of sessions is reached.
pub fn is_session_limit(info: &RedfishErrorInfo) -> bool {
    let id = info.message_id.as_deref().unwrap_or("");
    let msg = info.message.as_deref().unwrap_or("").to_ascii_lowercase();
    id.ends_with("SessionLimitExceeded")
        || id.ends_with("RAC0218")
        || (msg.contains("maximum number") && msg.contains("session"))
}

/// Shortens BMC-provided text and removes control characters (no terminal escapes or
/// fake log lines from a hostile BMC).
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT)
        .collect();
    if s.chars().count() > MAX_TEXT {
        out.push('…');
    }
    out
}

/// What may be shown of a BMC URL that could not be parsed: its host and port, never a
/// user-info part (`user:password@`), never a path; sanitized for display.
pub fn display_host(url: &str) -> String {
    let t = url.trim();
    let rest = t.split_once("://").map_or(t, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    sanitize(host)
}

/// The base of a BMC URL: `scheme://authority`, plus the host label used in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https://host[:port]` with no trailing slash.
    pub base: String,
    /// `host[:port]` as the user wrote it, for messages.
    pub host: String,
    pub tls: bool,
}

/// Why a BMC URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("it must start with https:// (or http://)")]
    Scheme,
    /// A `user:password@` part: it would sit on the command line and in shell history.
    #[error("do not put credentials in the URL")]
    Credentials,
    #[error("it has no host")]
    NoHost,
    #[error("the host contains invalid characters")]
    BadHost,
    #[error("give only scheme, host and port (e.g. https://10.0.0.5)")]
    Path,
}

impl Origin {
    /// Parses `https://host[:port]` or `http://host[:port]` (a trailing `/` or the service
    /// root path is tolerated). Credentials in the URL are refused: they would sit on the
    /// command line and in shell history.
    pub fn parse(url: &str) -> Result<Origin, UrlProblem> {
        let url = url.trim();
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else {
            return Err(UrlProblem::Scheme);
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlProblem::Credentials);
        }
        if authority.is_empty() {
            return Err(UrlProblem::NoHost);
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            return Err(UrlProblem::BadHost);
        }
        let path = path.trim_end_matches('/');
        if !(path.is_empty() || path.eq_ignore_ascii_case("/redfish/v1")) {
            return Err(UrlProblem::Path);
        }
        let scheme = if tls { "https" } else { "http" };
        Ok(Origin {
            base: format!("{scheme}://{authority}"),
            host: authority.to_string(),
            tls,
        })
    }

    /// The absolute URL for a BMC-provided reference: its path (and query) on our origin.
    pub fn resolve(&self, reference: &str) -> Result<String, String> {
        Ok(format!("{}{}", self.base, path_of(reference)?))
    }
}

/// The path (and query) of a URI reference that is either absolute (`https://x/p`) or a
/// path (`/p`). Rejects anything that is not a plausible URI.
pub fn path_of(reference: &str) -> Result<String, String> {
    let r = reference.trim();
    if r.is_empty() {
        return Err("empty URI".into());
    }
    if r.len() > MAX_URI_LEN {
        return Err("URI too long".into());
    }
    if r.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#' || !c.is_ascii())
    {
        return Err(format!("URI {:?} contains invalid characters", sanitize(r)));
    }
    let path = if let Some(rest) =
        strip_prefix_ci(r, "https://").or_else(|| strip_prefix_ci(r, "http://"))
    {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        r
    };
    if !path.starts_with('/') {
        return Err(format!("URI {:?} is not a path", sanitize(r)));
    }
    // "//host/x" is a network-path reference; keep it on our origin as a plain path.
    let trimmed = path.trim_start_matches('/');
    Ok(format!("/{trimmed}"))
}

/// The last segment of a path without query, e.g. the `.bak` file name.
pub fn last_segment(path: &str) -> &str {
    let p = path.split(['?', '#']).next().unwrap_or("");
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// A file name safe for a `Content-Disposition` header and a file system.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "backup.bak".to_string()
    } else {
        cleaned
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_parsing() {
        let o = Origin::parse("https://10.0.0.5").unwrap();
        assert_eq!(o.base, "https://10.0.0.5");
        assert_eq!(o.host, "10.0.0.5");
        assert!(o.tls);
        let o = Origin::parse("HTTP://127.0.0.1:8080/").unwrap();
        assert_eq!(o.base, "http://127.0.0.1:8080");
        assert!(!o.tls);
        assert!(Origin::parse("https://ilo/redfish/v1/").is_ok());
        let e = Origin::parse("https://admin:pw@ilo").unwrap_err();
        assert_eq!(e, UrlProblem::Credentials);
        assert!(e.to_string().contains("credentials"), "{e}");
        assert!(Origin::parse("ftp://ilo").is_err());
        assert!(Origin::parse("https://").is_err());
        assert!(Origin::parse("https://ilo/other").is_err());
    }

    #[test]
    fn display_host_never_shows_credentials() {
        assert_eq!(
            display_host("https://root:hunter2@ilo-7:8443/x"),
            "ilo-7:8443"
        );
        assert_eq!(display_host("ftp://a:b@c"), "c");
        assert_eq!(display_host("https://u:p@w@h"), "h");
        assert!(!display_host("hunter2@ilo").contains("hunter2"));
    }

    #[test]
    fn references_stay_on_our_origin() {
        let o = Origin::parse("https://10.0.0.5:443").unwrap();
        assert_eq!(
            o.resolve("https://192.168.1.9/redfish/v1/SessionService/Sessions/a1/")
                .unwrap(),
            "https://10.0.0.5:443/redfish/v1/SessionService/Sessions/a1/"
        );
        assert_eq!(
            o.resolve("/bkupdata/x.bak").unwrap(),
            "https://10.0.0.5:443/bkupdata/x.bak"
        );
        assert_eq!(
            o.resolve("//evil.example/x").unwrap(),
            "https://10.0.0.5:443/evil.example/x"
        );
        assert_eq!(
            o.resolve("http://evil.example").unwrap(),
            "https://10.0.0.5:443/"
        );
        assert!(o.resolve("relative/x").is_err());
        assert!(o.resolve("/a b").is_err());
        assert!(o.resolve("/a\r\nX-Injected: 1").is_err());
        assert!(o.resolve("").is_err());
    }

    #[test]
    fn error_body_is_understood() {
        let body = br#"{"error":{"code":"iLO.0.10.ExtendedInfo","message":"See @Message.ExtendedInfo for more information.","@Message.ExtendedInfo":[{"MessageId":"Base.1.12.NoValidSession"}]}}"#;
        let info = parse_error_body(body);
        assert_eq!(info.message_id.as_deref(), Some("Base.1.12.NoValidSession"));
        assert_eq!(info.message, None);
        let info = parse_error_body(
            br#"{"error":{"code":"Base.1.8.GeneralError","message":"bad\u001b[31m thing"}}"#,
        );
        assert_eq!(info.message_id.as_deref(), Some("Base.1.8.GeneralError"));
        assert_eq!(info.message.as_deref(), Some("bad [31m thing"));
        assert_eq!(parse_error_body(b"<html>"), RedfishErrorInfo::default());
        assert_eq!(
            parse_error_body(b"{\"error\":[1]}"),
            RedfishErrorInfo::default()
        );
    }

    #[test]
    fn session_limit_is_recognised() {
        let info = |id: &str, m: &str| RedfishErrorInfo {
            message_id: Some(id.into()),
            message: Some(m.into()),
        };
        assert!(is_session_limit(&info(
            "Base.1.12.SessionLimitExceeded",
            ""
        )));
        assert!(is_session_limit(&info("IDRAC.2.4.RAC0218", "")));
        assert!(is_session_limit(&info(
            "X",
            "The maximum number of user sessions is reached."
        )));
        assert!(!is_session_limit(&info("Base.1.12.NoValidSession", "")));
    }

    #[test]
    fn deep_json_is_refused_without_recursing() {
        let deep = "[".repeat(100_000);
        assert!(parse_json(deep.as_bytes()).unwrap_err().contains("nested"));
        // Brackets inside strings do not count.
        let s = format!("{{\"a\":\"{}\"}}", "[".repeat(1000));
        assert!(parse_json(s.as_bytes()).is_ok());
        assert!(parse_json(br#"{"a":"\"[[["}"#).is_ok());
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(
            last_segment("/bkupdata/HPE_X_20240101_1200.bak"),
            "HPE_X_20240101_1200.bak"
        );
        assert_eq!(last_segment("/a/b/?q=1"), "b");
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name("a\"b\r\n.bak"), "a_b__.bak");
        assert_eq!(safe_file_name(""), "backup.bak");
        assert_eq!(sanitize(&"x".repeat(500)).chars().count(), MAX_TEXT + 1);
    }
}
