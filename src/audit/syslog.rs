//! Forwarding audit records to a syslog receiver (a SIEM's collector) as they are appended.
//!
//! Each record leaves as one RFC 5424 message: facility `authpriv`, severity `info`
//! (`warning` for a failed operation), APP-NAME `vault`, MSGID `audit`, structured data
//! `[audit@32473 seq="…" hash="…" prevHash="…"]` and, as MSG, the record itself as
//! compact JSON in pure ASCII (the same fields and values as its `audit.log` line, so the
//! receiver can recompute the hash and check the chain, and holds an anchor: the last
//! seq and hash it received). 32473 is the private enterprise number RFC 5612 reserves
//! for examples; a site that has its own can filter on the SD-ID `audit@32473` as is.
//!
//! Transports: UDP (one datagram per record, fire and forget: a receiver that is down is
//! only noticed when the kernel reports it), TCP (RFC 6587 octet-counting framing, the one
//! RFC 5425 uses too) and a local datagram socket (`/dev/log`-style).
//!
//! Invariant: forwarding never blocks or fails the operation. Every network step has a
//! short timeout ([`TIMEOUT`]); after a failure (and one reconnect for TCP) the forwarder
//! stops trying for the rest of the process, so a fleet run against a dead receiver costs
//! at most one timeout. What was not sent is counted and reported by the caller; the
//! records themselves are safe in `audit.log`.
use std::fmt;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use super::record::AuditRecord;

/// Longest a connect or a send may take before the record is given up.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// RFC 5424 facility 10 (security/authorization, "authpriv").
const FACILITY_AUTHPRIV: u8 = 10;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_INFO: u8 = 6;
/// SD-ID of the structured-data element (see module docs).
pub const SD_ID: &str = "audit@32473";

/// Where records go: `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Udp(String),
    Tcp(String),
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "syslog target '{0}' is not udp://HOST:PORT, tcp://HOST:PORT or unix:/PATH (e.g. tcp://127.0.0.1:514)"
    )]
    Malformed(String),
}

impl crate::errors::Classify for TargetError {
    fn kind(&self) -> crate::errors::Kind {
        crate::errors::Kind::Usage
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        let bad = || TargetError::Malformed(crate::escape::for_terminal(s).into_owned());
        let host_port = |a: &str| -> Result<String, TargetError> {
            // HOST:PORT or [V6]:PORT, a numeric port, nothing after it.
            let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
            let ok_host = !host.is_empty()
                && !host.contains(['/', '@', '?', '#'])
                && host.chars().all(|c| c.is_ascii_graphic());
            if !ok_host || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad());
            }
            Ok(a.to_string())
        };
        if let Some(a) = s.strip_prefix("udp://") {
            Ok(Target::Udp(host_port(a)?))
        } else if let Some(a) = s.strip_prefix("tcp://") {
            Ok(Target::Tcp(host_port(a)?))
        } else if let Some(p) = s.strip_prefix("unix:") {
            let p = p.strip_prefix("//").unwrap_or(p);
            if !p.starts_with('/') {
                return Err(bad());
            }
            Ok(Target::Unix(PathBuf::from(p)))
        } else {
            Err(bad())
        }
    }
}

/// One RFC 5424 message for `rec` (without any transport framing).
pub fn format_message(rec: &AuditRecord, hostname: &str, pid: u32) -> io::Result<Vec<u8>> {
    let severity = if rec.result == "success" {
        SEVERITY_INFO
    } else {
        SEVERITY_WARNING
    };
    let pri = FACILITY_AUTHPRIV * 8 + severity;
    let mut m = format!(
        "<{pri}>1 {} {} vault {pid} audit [{SD_ID} seq=\"{}\" hash=\"{}\" prevHash=\"{}\"] ",
        syslog_timestamp(&rec.time),
        header_field(hostname, 255),
        rec.seq,
        sd_escape(&rec.hash),
        sd_escape(&rec.prev_hash),
    )
    .into_bytes();
    m.extend(crate::escape::to_ascii_json(rec)?);
    Ok(m)
}

/// RFC 5424 allows at most 6 fractional digits; the record keeps nanoseconds.
fn syslog_timestamp(rfc3339: &str) -> String {
    match rfc3339.split_once('.') {
        Some((secs, frac)) if frac.ends_with('Z') => {
            let digits: String = frac[..frac.len() - 1].chars().take(6).collect();
            format!("{secs}.{digits}Z")
        }
        _ => rfc3339.to_string(),
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

/// PARAM-VALUE escaping: `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

/// What happened to the records handed to a [`Forwarder`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardStatus {
    pub sent: u64,
    /// Records not sent, and the seq of the first and last of them.
    pub unsent: u64,
    pub first_unsent_seq: Option<u64>,
    pub last_unsent_seq: Option<u64>,
    /// Why forwarding stopped (the first error).
    pub error: Option<String>,
}

struct State {
    conn: Option<Conn>,
    status: ForwardStatus,
}

/// Sends records to one [`Target`]; shared by the threads of a fleet run.
pub struct Forwarder {
    target: Target,
    hostname: String,
    state: Mutex<State>,
}

impl Forwarder {
    pub fn new(target: Target) -> Self {
        Forwarder {
            target,
            hostname: local_hostname(),
            state: Mutex::new(State {
                conn: None,
                status: ForwardStatus::default(),
            }),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends `rec`, or counts it as unsent. Never returns an error and never waits longer
    /// than [`TIMEOUT`] per step; after a failure it no longer tries (see module docs).
    pub fn forward(&self, rec: &AuditRecord) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.status.error.is_none() {
            let result = format_message(rec, &self.hostname, std::process::id())
                .and_then(|msg| self.send(&mut st.conn, &msg));
            match result {
                Ok(()) => {
                    st.status.sent += 1;
                    return;
                }
                Err(e) => {
                    st.conn = None;
                    st.status.error = Some(e.to_string());
                }
            }
        }
        let s = &mut st.status;
        s.unsent += 1;
        s.first_unsent_seq.get_or_insert(rec.seq);
        s.last_unsent_seq = Some(rec.seq);
    }

    pub fn status(&self) -> ForwardStatus {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone()
    }

    fn send(&self, conn: &mut Option<Conn>, msg: &[u8]) -> io::Result<()> {
        // A TCP receiver that restarted since the last record closed our connection:
        // reconnect once before giving up.
        let attempts = if matches!(self.target, Target::Tcp(_)) {
            2
        } else {
            1
        };
        let mut last = None;
        for _ in 0..attempts {
            if let Some(Conn::Tcp(s)) = conn
                && peer_closed(s)
            {
                *conn = None;
            }
            if conn.is_none() {
                *conn = Some(self.connect()?);
            }
            let r = match conn.as_mut().expect("connected above") {
                Conn::Udp(s) => s.send(msg).map(drop),
                Conn::Unix(s) => match &self.target {
                    Target::Unix(p) => s.send_to(msg, p).map(drop),
                    _ => unreachable!("a unix socket only for a unix target"),
                },
                Conn::Tcp(s) => {
                    // RFC 6587 octet counting: "LEN SP MSG".
                    let mut framed = format!("{} ", msg.len()).into_bytes();
                    framed.extend_from_slice(msg);
                    s.write_all(&framed).and_then(|()| s.flush())
                }
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *conn = None;
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn connect(&self) -> io::Result<Conn> {
        let resolve = |a: &str| -> io::Result<std::net::SocketAddr> {
            a.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{a} does not resolve"))
            })
        };
        match &self.target {
            Target::Udp(a) => {
                let addr = resolve(a)?;
                let bind = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(bind)?;
                s.set_write_timeout(Some(TIMEOUT))?;
                s.connect(addr)?;
                Ok(Conn::Udp(s))
            }
            Target::Tcp(a) => {
                let s = TcpStream::connect_timeout(&resolve(a)?, TIMEOUT)?;
                s.set_write_timeout(Some(TIMEOUT))?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
            Target::Unix(_) => {
                let s = UnixDatagram::unbound()?;
                // A receiver that does not keep up must not stall the operation.
                s.set_nonblocking(true)?;
                Ok(Conn::Unix(s))
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Close TCP cleanly so the receiver sees the last frame followed by EOF.
        if let Ok(st) = self.state.get_mut()
            && let Some(Conn::Tcp(s)) = &st.conn
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Whether the receiver has closed a TCP connection (FIN or RST already arrived). Without
/// this check the first record after a receiver restart would be written into a dead
/// connection and lost: TCP syslog has no acknowledgements, so "sent" means accepted by
/// the kernel on a connection that was open at the time.
fn peer_closed(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = match s.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    closed || s.set_nonblocking(false).is_err()
}

static INSTALLED: std::sync::OnceLock<Forwarder> = std::sync::OnceLock::new();

/// Makes `f` the forwarder of every [`super::AuditLog::append`] in this process (the CLI
/// does this once, from `--syslog`, `VAULT_SYSLOG` or `config.toml`). A second call is
/// ignored and returns false.
pub fn install(f: Forwarder) -> bool {
    INSTALLED.set(f).is_ok()
}

/// The installed forwarder, if any.
pub fn installed() -> Option<&'static Forwarder> {
    INSTALLED.get()
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn record(seq: u64, result: &str) -> AuditRecord {
        let mut r = AuditRecord {
            seq,
            time: "2026-12-01T09:00:00.123456789Z".into(),
            account: "ops".into(),
            operation: "backup.pull".into(),
            key_id: None,
            archive_id: Some("a]b\"c".into()),
            bmc_host: Some("ilo-1:443".into()),
            result: result.into(),
            error_kind: None,
            detail: Some("Größe \u{1b}[2J".into()),
            prev_hash: super::super::GENESIS_PREV_HASH.into(),
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }

    #[test]
    fn targets_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "udp://127.0.0.1:514".parse::<Target>().unwrap(),
            Target::Udp("127.0.0.1:514".into())
        );
        assert_eq!(
            "tcp://[::1]:6514".parse::<Target>().unwrap(),
            Target::Tcp("[::1]:6514".into())
        );
        assert_eq!(
            "unix:///dev/log".parse::<Target>().unwrap(),
            Target::Unix("/dev/log".into())
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<Target>().unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        for bad in [
            "127.0.0.1:514",
            "tcp://host",
            "tcp://host:0",
            "tcp://u:p@host:514",
            "udp://:514",
            "unix:rel",
            "http://x:1",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn message_is_rfc5424_with_the_chain_in_structured_data() {
        let rec = record(7, "failure");
        let m = String::from_utf8(format_message(&rec, "host one", 42).unwrap()).unwrap();
        let prefix = format!(
            "<84>1 2026-12-01T09:00:00.123456Z hostone vault 42 audit [audit@32473 seq=\"7\" hash=\"{}\" prevHash=\"{}\"] {{",
            rec.hash, rec.prev_hash
        );
        assert!(m.starts_with(&prefix), "{m}");
        assert!(m.is_ascii());
        let json = &m[prefix.len() - 1..];
        let back: AuditRecord = serde_json::from_str(json).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.compute_hash(), rec.hash);
        assert!(
            format_message(&record(1, "success"), "", 1)
                .unwrap()
                .starts_with(b"<86>1 ")
        );
        assert_eq!(sd_escape("a]b\"c\\"), "a\\]b\\\"c\\\\");
    }

    #[test]
    fn tcp_frames_by_octet_count_and_a_dead_receiver_is_counted_not_fatal() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let f = Forwarder::new(Target::Tcp(addr.to_string()));
        let reader = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        f.forward(&record(1, "success"));
        f.forward(&record(2, "success"));
        drop(f);
        let all = reader.join().unwrap();
        let text = String::from_utf8(all).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        assert!(
            rest[..len].contains("seq=\"1\"") && rest[len..].contains("seq=\"2\""),
            "{text}"
        );

        // Nobody listens any more: the records are counted, the call returns at once.
        let f = Forwarder::new(Target::Tcp(addr.to_string()));
        for seq in 3..6 {
            f.forward(&record(seq, "success"));
        }
        let st = f.status();
        assert_eq!(
            (st.sent, st.unsent, st.first_unsent_seq, st.last_unsent_seq),
            (0, 3, Some(3), Some(5))
        );
        assert!(st.error.is_some());
    }

    #[test]
    fn a_missing_local_socket_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let f = Forwarder::new(Target::Unix(d.path().join("no.sock")));
        f.forward(&record(1, "success"));
        assert_eq!(f.status().unsent, 1);
    }
}
