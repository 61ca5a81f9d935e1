//! Audit forwarding against a real rsyslogd on loopback (Debian's rsyslog), started with a
//! temporary configuration and stopped by its pid: every record arrives intact over UDP,
//! TCP and a local socket, with the chain's seq and hash; a dead receiver costs nothing.
mod tools;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault::audit::syslog::{Forwarder, Target};
use vault::audit::{AuditEvent, AuditLog, AuditRecord, Outcome};

/// One rsyslogd with UDP, TCP and unix-socket inputs writing every message to `out`.
pub struct Rsyslog {
    child: Child,
    pub udp: String,
    pub tcp: String,
    pub sock: PathBuf,
    pub out: PathBuf,
}

/// Ports already handed to a receiver of this test process. The tests run in parallel
/// threads, and the kernel may give the same ephemeral port to two `bind(0)` calls once
/// the first socket is closed: two rsyslogd would then race for one port, the loser's
/// readiness check would connect to the winner, and both tests would read one mixed log.
static GIVEN: std::sync::Mutex<Vec<(bool, u16)>> = std::sync::Mutex::new(Vec::new());

/// A port no other receiver of this process was given (`udp` tells the namespace).
fn fresh_port(udp: bool) -> u16 {
    loop {
        let port = if udp {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
        }
        .unwrap()
        .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&(udp, port)) {
            given.push((udp, port));
            return port;
        }
    }
}

impl Rsyslog {
    pub fn start(dir: &Path) -> Option<Rsyslog> {
        let bin = tools::require("rsyslogd", ".ci/install.d/42-rsyslog.sh")?;
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let (udp, tcp) = (fresh_port(true), fresh_port(false));
        let sock = dir.join("log.sock");
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
template(name="fields" type="string" string="%inputname%|%syslogfacility-text%|%syslogseverity-text%|%app-name%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="all") {{ action(type="omfile" file="{out}" template="fields") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="all")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="all")
input(type="imuxsock" Socket="{sock}" useSpecialParser="off" parseHostname="on" ruleset="all")
"#,
                work = work.display(),
                out = out.display(),
                sock = sock.display(),
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Rsyslog {
            child,
            udp: format!("127.0.0.1:{udp}"),
            tcp: format!("127.0.0.1:{tcp}"),
            sock,
            out,
        };
        // Ready when the TCP input accepts and the socket exists (bounded).
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&r.tcp).is_err() || !r.sock.exists() {
            assert!(Instant::now() < deadline, "rsyslogd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    /// The lines received so far, waiting (bounded) until there are at least `n`.
    pub fn wait_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd (SIGTERM to its pid, then SIGKILL if it lingers) and reaps it.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(self.child.id() as i32);
        if self.child.try_wait().unwrap().is_none() {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.wait();
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A received line: (input, facility, severity, app, msgid, structured data, record).
struct Received {
    input: String,
    header: [String; 4],
    sd: String,
    record: AuditRecord,
}

fn parse(line: &str) -> Received {
    let f: Vec<&str> = line.splitn(7, '|').collect();
    assert_eq!(f.len(), 7, "{line}");
    Received {
        input: f[0].into(),
        header: [f[1].into(), f[2].into(), f[3].into(), f[4].into()],
        sd: f[5].into(),
        record: serde_json::from_str(f[6].trim_start())
            .unwrap_or_else(|e| panic!("not a record ({e}): {line}")),
    }
}

fn append(log: &AuditLog, i: u64) -> AuditRecord {
    let result = if i.is_multiple_of(2) {
        Outcome::Success
    } else {
        Outcome::Failure { kind: "bmc".into() }
    };
    log.append(
        &AuditEvent::new("backup.pull", result)
            .bmc_host(format!("ilo-{i}.example:443"))
            // Non-ASCII and a control character: they must survive as they are.
            .detail(format!("run {i}: Größe \u{1b}[2J ✓")),
    )
    .unwrap()
}

#[test]
fn every_record_arrives_intact_over_udp_tcp_and_a_local_socket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rs) = Rsyslog::start(dir.path()) else {
        return;
    };
    let home = dir.path().join("home");
    let log = AuditLog::open(&home);
    let targets = [
        Target::Udp(rs.udp.clone()),
        Target::Tcp(rs.tcp.clone()),
        Target::Unix(rs.sock.clone()),
    ];
    let fwd: Vec<Forwarder> = targets.iter().cloned().map(Forwarder::new).collect();
    const N: u64 = 12;
    let mut appended = Vec::new();
    for i in 0..N {
        let rec = append(&log, i);
        for f in &fwd {
            f.forward(&rec);
        }
        appended.push(rec);
    }
    for f in &fwd {
        let st = f.status();
        assert_eq!((st.sent, st.unsent), (N, 0), "{}: {st:?}", f.target());
    }
    drop(fwd); // closes the TCP connection
    let lines = rs.wait_lines(3 * N as usize);
    assert_eq!(lines.len(), 3 * N as usize, "{lines:#?}");
    for input in ["imudp", "imtcp", "imuxsock"] {
        let got: Vec<Received> = lines
            .iter()
            .map(|l| parse(l))
            .filter(|r| r.input == input)
            .collect();
        assert_eq!(got.len(), N as usize, "{input}");
        for (r, want) in got.iter().zip(&appended) {
            assert_eq!(&r.record, want, "{input}: the record changed on the way");
            assert_eq!(r.record.compute_hash(), want.hash);
            let sev = if want.result == "success" {
                "info"
            } else {
                "warning"
            };
            assert_eq!(
                r.header,
                ["authpriv", sev, "vault", "audit"].map(String::from)
            );
            assert_eq!(
                r.sd,
                format!(
                    "[audit@32473 seq=\"{}\" hash=\"{}\" prevHash=\"{}\"]",
                    want.seq, want.hash, want.prev_hash
                )
            );
        }
    }
    // The receiver's last record is an anchor that the local log confirms.
    let last = &appended.last().unwrap();
    let report = log.verify().unwrap();
    assert_eq!(
        (report.records, report.last_hash.as_str()),
        (last.seq, last.hash.as_str())
    );
}

#[test]
fn a_stopped_receiver_is_counted_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut rs) = Rsyslog::start(dir.path()) else {
        return;
    };
    let log = AuditLog::open(&dir.path().join("home"));
    let tcp = Forwarder::new(Target::Tcp(rs.tcp.clone()));
    let unix = Forwarder::new(Target::Unix(rs.sock.clone()));
    let first = append(&log, 0);
    tcp.forward(&first);
    unix.forward(&first);
    assert_eq!(rs.wait_lines(2).len(), 2);
    rs.stop();
    std::fs::remove_file(&rs.sock).ok();
    for i in 1..4 {
        let rec = append(&log, i);
        tcp.forward(&rec);
        unix.forward(&rec);
    }
    for f in [&tcp, &unix] {
        let st = f.status();
        assert_eq!(st.sent, 1, "{}: {st:?}", f.target());
        assert_eq!(st.unsent, 3, "{}: {st:?}", f.target());
        assert_eq!(
            (st.first_unsent_seq, st.last_unsent_seq),
            (Some(2), Some(4))
        );
        assert!(st.error.is_some());
    }
    // The local log has everything.
    assert_eq!(log.verify().unwrap().records, 4);
}

/// `vault --syslog` (and VAULT_SYSLOG): the records of a real run reach rsyslog; with the
/// receiver stopped the command still succeeds and says which records were not sent.
#[test]
fn cli_forwards_every_record_and_survives_a_dead_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut rs) = Rsyslog::start(dir.path()) else {
        return;
    };
    let home = dir.path().join("home");
    let vault = |args: &[&str], target: &str| {
        Command::new(env!("CARGO_BIN_EXE_vault"))
            .arg("--home")
            .arg(&home)
            .args(args)
            .env("VAULT_SYSLOG", target)
            .env_remove("VAULT_METRICS_FILE")
            .output()
            .unwrap()
    };
    let tcp = format!("tcp://{}", rs.tcp);
    for args in [
        &["keys", "create"][..],
        &["keys", "list"],
        &["keys", "rotate"],
    ] {
        let out = vault(args, &tcp);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let local: Vec<AuditRecord> = AuditLog::open(&home)
        .records()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(local.len() >= 2, "{local:?}");
    let got: Vec<AuditRecord> = rs
        .wait_lines(local.len())
        .iter()
        .map(|l| parse(l).record)
        .collect();
    assert_eq!(got, local, "every record arrives, intact and in order");

    rs.stop();
    let out = vault(
        &["keys", "create", "--scope", "domain", "--domain", "d1"],
        &tcp,
    );
    assert!(
        out.status.success(),
        "a dead receiver must not fail the operation"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let seq = local.len() + 1;
    assert!(
        err.contains(&format!(
            "1 audit record(s) (seq {seq}) were not forwarded to syslog {tcp}"
        )),
        "{err}"
    );
    assert_eq!(AuditLog::open(&home).verify().unwrap().records, seq as u64);
}

/// A kill between an operation's commit point and its outcome leaves an intent; the next
/// append takes it into the chain as an `unfinished` record, and that record reaches the
/// syslog receiver like every other one (the receiver's copy of the chain has no gap).
#[test]
fn an_unfinished_record_is_forwarded_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rs) = Rsyslog::start(dir.path()) else {
        return;
    };
    let home = dir.path().join("home");
    let tcp = format!("tcp://{}", rs.tcp);
    let vault = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vault"));
        c.arg("--home")
            .arg(&home)
            .args(args)
            .env("VAULT_SYSLOG", &tcp)
            .env_remove("VAULT_METRICS_FILE")
            .env_remove(vault::ops::PAUSE_BEFORE_OUTCOME)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let ok = |args: &[&str]| {
        let out = vault(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["keys", "create"]);

    // `keys rotate` held after its commit point, then SIGKILLed there.
    let pending = home.join(vault::audit::PENDING_DIR);
    let mut child = vault(&["keys", "rotate"])
        .env(vault::ops::PAUSE_BEFORE_OUTCOME, "30000")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let keys_before = std::fs::read(home.join("keys.json")).unwrap();
    while std::fs::read(home.join("keys.json")).unwrap() == keys_before {
        assert!(child.try_wait().unwrap().is_none(), "rotate exited early");
        assert!(Instant::now() < deadline, "rotate changed nothing in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "rotate exited before the kill: the pause hook did not hold it"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read_dir(&pending).unwrap().count(), 1);

    ok(&["keys", "create", "--scope", "domain", "--domain", "d1"]);
    let local: Vec<AuditRecord> = AuditLog::open(&home)
        .records()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        local
            .iter()
            .any(|r| r.result == "unfinished" && r.operation == "keys.rotate"),
        "{local:#?}"
    );
    let got: Vec<AuditRecord> = rs
        .wait_lines(local.len())
        .iter()
        .map(|l| parse(l).record)
        .collect();
    assert_eq!(
        got, local,
        "the receiver has every record, unfinished included"
    );
}
