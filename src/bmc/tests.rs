//! The client against the simulator, over loopback HTTPS with the simulator's CA unless a
//! test says otherwise. Every test is bounded: short timeouts, few requests, and the
//! simulator stops (joining its threads) when its handle drops.
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use super::client::{
    AuthMode, BmcOptions, BmcSession, DownloadMethod, live_session_count, logout_all_live_sessions,
};
use super::error::BmcError;
use super::simulator::{Fault, SimConfig, SimHandle};
use crate::secret::Password;

/// `logout_all_live_sessions` is process-wide: the test that calls it takes this lock
/// exclusively so it cannot log out sessions of tests running in parallel.
static SESSION_REGISTRY: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    SESSION_REGISTRY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut v);
    v
}

fn sim_with(f: impl FnOnce(&mut SimConfig)) -> (SimHandle, SimConfig) {
    let mut cfg = SimConfig {
        backup_bytes: random_bytes(300 * 1024),
        ..SimConfig::default()
    };
    f(&mut cfg);
    let sim = SimHandle::start(cfg.clone()).expect("simulator starts");
    (sim, cfg)
}

fn opts_for(sim: &SimHandle, cfg: &SimConfig) -> BmcOptions {
    let mut o = BmcOptions::new(
        sim.base_url(),
        cfg.user.clone(),
        Password::new(cfg.password.clone()),
    );
    o.ca_cert = Some(sim.ca_cert_path().to_path_buf());
    o.timeout = Duration::from_secs(5);
    o.retries = 0;
    // Plain HTTP only where a test serves it, and then explicitly (issue 13.1).
    o.allow_http = !cfg.tls;
    o
}

fn connect(sim: &SimHandle, cfg: &SimConfig) -> BmcSession {
    BmcSession::connect(opts_for(sim, cfg)).expect("login works")
}

#[test]
fn discover_download_restore_and_logout() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut s = connect(&sim, &cfg);
    assert_eq!(sim.open_sessions(), 1);

    let svc = s.discover().unwrap();
    assert_eq!(svc.manager.model.as_deref(), Some("iLO 6"));
    assert_eq!(svc.manager.firmware.as_deref(), Some(cfg.firmware.as_str()));
    assert_eq!(svc.manager.serial.as_deref(), Some(cfg.serial.as_str()));
    assert_eq!(
        svc.manager.host,
        sim.base_url().trim_start_matches("https://")
    );
    assert_eq!(svc.uri, "/redfish/v1/Managers/1/BackupRestoreService/");
    assert_eq!(svc.http_push_uri, "/cgi-bin/uploadRestoreFile");

    let mut out = Vec::new();
    let dl = s.download_backup(&svc, &mut out).unwrap();
    assert_eq!(out, cfg.backup_bytes);
    assert_eq!(dl.bytes, cfg.backup_bytes.len() as u64);
    assert!(
        dl.file_name.starts_with(&format!("HPE_{}_", cfg.serial)),
        "{dl:?}"
    );
    assert!(dl.file_name.ends_with(".bak"));
    assert_eq!(
        dl.backup_file_location,
        format!("/bkupdata/{}", dl.file_name)
    );

    let mut src: &[u8] = &out;
    s.restore(&svc, &dl.file_name, &mut src, out.len() as u64)
        .unwrap();
    assert_eq!(sim.restored(), vec![cfg.backup_bytes.clone()]);

    s.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
    assert_eq!(sim.sessions_created(), 1);
}

#[test]
fn relative_location_and_plain_http_work() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| {
        c.absolute_location = false;
        c.tls = false;
    });
    assert!(sim.base_url().starts_with("http://"));
    let mut o = opts_for(&sim, &cfg);
    o.ca_cert = None;
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    let mut out = Vec::new();
    s.download_backup(&svc, &mut out).unwrap();
    assert_eq!(out, cfg.backup_bytes);
    assert_eq!(sim.open_sessions(), 1);
    s.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn basic_auth_works_without_a_session() {
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    o.auth = AuthMode::Basic;
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    let mut out = Vec::new();
    s.download_backup(&svc, &mut out).unwrap();
    assert_eq!(out, cfg.backup_bytes);
    let err = s
        .restore(&svc, "x.bak", &mut &out[..], out.len() as u64)
        .unwrap_err();
    assert!(matches!(err, BmcError::RestoreNeedsSession { .. }), "{err}");
    s.logout().unwrap();
    assert_eq!(sim.sessions_created(), 0);
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn wrong_password_is_an_auth_error_naming_the_host() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    o.password = Password::new("Wr0ng-Secret-Value".into());
    let err = BmcSession::connect(o).unwrap_err();
    assert!(matches!(err, BmcError::Auth { status: 401, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(msg.contains("refused the login"), "{msg}");
    assert!(msg.contains("Base.1.12.NoValidSession"), "{msg}");
    // "check --bmc-user and the password" is the CLI's hint: cli::hints.
    assert!(!msg.contains("--"), "{msg}");
    assert!(!msg.contains("Wr0ng") && !format!("{err:?}").contains("Wr0ng"));
    assert_eq!(sim.open_sessions(), 0);

    // Basic auth fails on the first protected request, with the same advice.
    let mut o = opts_for(&sim, &cfg);
    o.auth = AuthMode::Basic;
    o.password = Password::new("Wr0ng-Secret-Value".into());
    let mut s = BmcSession::connect(o).unwrap();
    let err = s.discover().unwrap_err();
    assert!(err.to_string().contains("refused the login"), "{err}");
    assert!(!format!("{s:?} {err:?}").contains("Wr0ng"));
}

#[test]
fn untrusted_certificate_is_a_tls_error_and_insecure_works() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    o.ca_cert = None;
    let err = BmcSession::connect(o).unwrap_err();
    assert!(matches!(err, BmcError::Tls { .. }), "{err:?}");
    // The flags to use (--ca-cert, --insecure) are the CLI's hint: cli::hints.
    assert!(err.to_string().contains("TLS with BMC"), "{err}");
    assert_eq!(sim.sessions_created(), 0);

    let mut o = opts_for(&sim, &cfg);
    o.ca_cert = None;
    o.insecure = true;
    let mut s = BmcSession::connect(o).unwrap();
    s.discover().unwrap();
    s.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.pem");
    std::fs::write(&p, "not a pem").unwrap();
    let mut o = BmcOptions::new("https://127.0.0.1:9", "u", Password::new("p".into()));
    o.ca_cert = Some(p);
    let err = BmcSession::connect(o).unwrap_err();
    assert!(matches!(err, BmcError::CaCert { .. }), "{err:?}");
}

#[test]
fn session_limit_is_reported_and_clears_after_logout() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.session_limit = 2);
    let a = connect(&sim, &cfg);
    let b = connect(&sim, &cfg);
    let err = BmcSession::connect(opts_for(&sim, &cfg)).unwrap_err();
    assert!(matches!(err, BmcError::SessionLimit { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("Base.1.12.SessionLimitExceeded") && msg.contains("127.0.0.1"),
        "{msg}"
    );
    assert_eq!(sim.open_sessions(), 2);
    a.logout().unwrap();
    let c = connect(&sim, &cfg);
    assert_eq!(sim.open_sessions(), 2);
    drop(b);
    drop(c);
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn logout_all_live_sessions_closes_open_sessions() {
    let _g = SESSION_REGISTRY
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let (sim, cfg) = sim_with(|_| {});
    let a = connect(&sim, &cfg);
    let b = connect(&sim, &cfg);
    assert_eq!(sim.open_sessions(), 2);
    assert_eq!(live_session_count(), 2);
    assert_eq!(logout_all_live_sessions(), 2);
    assert_eq!(sim.open_sessions(), 0);
    assert_eq!(live_session_count(), 0);
    // The sessions know they are gone: dropping or logging out sends nothing more.
    let before = sim.request_count();
    a.logout().unwrap();
    drop(b);
    assert_eq!(sim.request_count(), before);
}

/// Connects, discovers, injects `fault`, downloads; returns the error and what reached
/// the sink. Checks the session is gone once the client is dropped.
fn download_with_fault(fault: Fault, tune: impl FnOnce(&mut BmcOptions)) -> (BmcError, Vec<u8>) {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    tune(&mut o);
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    sim.set_fault(fault);
    let mut out = Vec::new();
    let err = s.download_backup(&svc, &mut out).unwrap_err();
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    drop(s);
    assert_eq!(sim.open_sessions(), 0, "session leaked after {err}");
    (err, out)
}

#[test]
fn fault_server_error() {
    let (err, out) = download_with_fault(Fault::ServerError, |o| o.retries = 1);
    assert!(
        matches!(&err, BmcError::Http { status: 500, message_id: Some(id), .. } if id == "Base.1.12.InternalError"),
        "{err:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn fault_slow_answer_times_out() {
    let (err, _) = download_with_fault(Fault::Slow(Duration::from_secs(30)), |o| {
        o.timeout = Duration::from_secs(1)
    });
    assert!(matches!(err, BmcError::Timeout { .. }), "{err:?}");
    // "raise --timeout" is the CLI's hint: cli::hints.
    assert!(err.to_string().contains("did not answer in time"), "{err}");
}

#[test]
fn fault_slow_drip_is_a_stall() {
    let (err, _) = download_with_fault(Fault::SlowDrip, |o| o.timeout = Duration::from_secs(1));
    assert!(matches!(err, BmcError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("stalled"), "{err}");
}

#[test]
fn fault_cut_mid_download_is_truncated() {
    let (err, _) = download_with_fault(Fault::CutMidDownload, |_| {});
    assert!(
        matches!(err, BmcError::Truncated { expected: Some(n), received, .. } if n == 300 * 1024 && received < n),
        "{err:?}"
    );
    assert!(err.to_string().contains("must not be used"), "{err}");
}

#[test]
fn fault_malformed_json() {
    // The service is read once, by discovery: that is where its JSON breaks.
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.fault = Fault::MalformedJson);
    let mut s = connect(&sim, &cfg);
    let err = s.discover().unwrap_err();
    assert!(matches!(err, BmcError::MalformedResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    drop(s);
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn fault_html_error_page_is_not_a_backup() {
    let (err, out) = download_with_fault(Fault::HtmlErrorPage, |_| {});
    assert!(matches!(err, BmcError::NotABackup { .. }), "{err:?}");
    assert!(err.to_string().contains("HTML"), "{err}");
    assert!(out.is_empty(), "an error page must never reach the sink");
}

#[test]
fn fault_huge_content_length_is_refused_before_reading() {
    let (err, out) = download_with_fault(Fault::HugeContentLength, |_| {});
    assert!(
        matches!(
            err,
            BmcError::TooLarge {
                claimed: Some(10_000_000_000),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn fault_endless_body_stops_at_the_limit() {
    let (err, out) = download_with_fault(Fault::EndlessBody, |o| o.max_backup_bytes = 1 << 20);
    assert!(
        matches!(err, BmcError::TooLarge { claimed: None, .. }),
        "{err:?}"
    );
    assert!(out.len() <= 1 << 20);
}

#[test]
fn fault_redirect_loop_is_not_followed() {
    let (err, out) = download_with_fault(Fault::RedirectLoop, |o| o.retries = 3);
    assert!(
        matches!(err, BmcError::Redirect { status: 302, .. }),
        "{err:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn transient_errors_are_retried_for_gets() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    o.retries = 3;
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    // Two 503s on the .bak GET (discovery already read the service), then the file.
    sim.set_fault(Fault::TransientErrors(2));
    let before = sim.request_count();
    let mut out = Vec::new();
    s.download_backup(&svc, &mut out).unwrap();
    assert_eq!(out, cfg.backup_bytes);
    assert_eq!(sim.request_count() - before, 3);

    // Without retries the same fault is an error.
    let mut o = opts_for(&sim, &cfg);
    o.retries = 0;
    let mut s2 = BmcSession::connect(o).unwrap();
    sim.set_fault(Fault::TransientErrors(1));
    let err = s2.download_backup(&svc, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, BmcError::Http { status: 503, .. }), "{err:?}");
    drop((s, s2));
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn posts_are_never_retried() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    o.retries = 3;

    // Login.
    sim.set_fault(Fault::TransientErrors(1));
    let err = BmcSession::connect(o).unwrap_err();
    assert!(matches!(err, BmcError::Http { status: 503, .. }), "{err:?}");
    // The service root (read for its Sessions link), then one login POST.
    assert_eq!(requests(&sim, "POST", "/"), 1);
    assert_eq!(sim.request_count(), 2);
    assert_eq!(sim.sessions_created(), 0);

    // Restore.
    let mut o = opts_for(&sim, &cfg);
    o.retries = 3;
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    sim.set_fault(Fault::TransientErrors(1));
    let before = sim.request_count();
    let data = random_bytes(1000);
    let err = s.restore(&svc, "a.bak", &mut &data[..], 1000).unwrap_err();
    assert!(matches!(err, BmcError::Http { status: 503, .. }), "{err:?}");
    assert_eq!(sim.request_count() - before, 1);
    assert!(sim.restored().is_empty());
    drop(s);
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn restore_refuses_a_short_source() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut s = connect(&sim, &cfg);
    let svc = s.discover().unwrap();
    let data = random_bytes(100);
    let err = s.restore(&svc, "a.bak", &mut &data[..], 200).unwrap_err();
    assert!(matches!(err, BmcError::Io { .. }), "{err:?}");
    assert!(sim.restored().is_empty());
    s.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
}

#[test]
fn simulator_speaks_like_ilo_to_other_clients() {
    let (sim, cfg) = sim_with(|c| c.tls = false);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build(),
    );
    let base = sim.base_url();
    let mut r = agent
        .get(format!("{base}/redfish/v1/Systems/"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body = r.body_mut().read_to_string().unwrap();
    assert!(body.contains("Base.1.12.NoValidSession") && body.contains("iLO.0.10.ExtendedInfo"));
    let r = agent.get(format!("{base}/nope")).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Case- and slash-insensitive routing, service root without auth.
    let r = agent.get(format!("{base}/REDFISH/v1")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A restore POST without a matching cookie and field is refused.
    let r = agent
        .post(format!("{base}/cgi-bin/uploadRestoreFile"))
        .header("Content-Type", "multipart/form-data; boundary=B")
        .send(&b"--B\r\nContent-Disposition: form-data; name=\"sessionKey\"\r\n\r\nx\r\n--B--\r\n"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Basic auth is accepted on protected resources.
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", cfg.user, cfg.password),
    );
    let r = agent
        .get(format!("{base}/redfish/v1/managers/1/"))
        .header("Authorization", format!("Basic {basic}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn shutdown_stops_a_simulator_with_a_request_in_flight() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut s = connect(&sim, &cfg);
    let svc = s.discover().unwrap();
    sim.set_fault(Fault::Slow(Duration::from_secs(60)));
    let before = sim.request_count();
    let client = std::thread::spawn(move || {
        let r = s.download_backup(&svc, &mut Vec::new());
        (r.is_err(), s)
    });
    // Give the .bak GET time to arrive; shutdown must not wait for the 60 s delay.
    while sim.request_count() <= before {
        std::thread::sleep(Duration::from_millis(20));
    }
    sim.shutdown();
    let (failed, s) = client.join().unwrap();
    assert!(failed);
    drop(s); // logout attempt against a stopped simulator must not hang or panic
}

#[test]
fn session_debug_shows_no_secrets() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let s = connect(&sim, &cfg);
    let shown = format!("{s:?}");
    assert!(!shown.contains(&cfg.password));
    assert!(shown.contains("127.0.0.1"));
}

/// A minimal HTTP CONNECT proxy on loopback that counts tunnels; stops when dropped.
struct TestProxy {
    addr: std::net::SocketAddr,
    tunnels: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestProxy {
    fn start() -> TestProxy {
        use std::io::{BufRead, BufReader, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t, st) = (tunnels.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut pipes = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !st.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                client
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = line.split(' ').nth(1).unwrap_or("").to_string();
                assert!(line.starts_with("CONNECT 127.0.0.1:"), "{line}");
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let upstream = TcpStream::connect(&target).unwrap();
                upstream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut c = client;
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                t.fetch_add(1, Ordering::SeqCst);
                let (mut c2, mut u2) = (c.try_clone().unwrap(), upstream.try_clone().unwrap());
                let mut u = upstream;
                pipes.push(std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c, &mut u);
                    let _ = u.shutdown(std::net::Shutdown::Write);
                }));
                pipes.push(std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                }));
            }
            for p in pipes {
                let _ = p.join();
            }
        });
        TestProxy {
            addr,
            tunnels,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn proxy_is_used_when_given() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let proxy = TestProxy::start();
    let mut o = opts_for(&sim, &cfg);
    o.proxy = Some(format!("http://{}", proxy.addr));
    let mut s = BmcSession::connect(o).unwrap();
    let svc = s.discover().unwrap();
    let mut out = Vec::new();
    s.download_backup(&svc, &mut out).unwrap();
    assert_eq!(out, cfg.backup_bytes);
    s.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
    // Every connection went through the tunnel (TLS end to end with the simulator's
    // CA), and kept alive, a connection served several requests.
    assert_eq!(
        proxy.tunnels.load(std::sync::atomic::Ordering::SeqCst),
        sim.connection_count()
    );
    assert!(
        sim.connection_count() < sim.request_count(),
        "{} connections for {} requests",
        sim.connection_count(),
        sim.request_count()
    );

    // A dead proxy is a connection error, never a silent direct connection.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut o = opts_for(&sim, &cfg);
    o.proxy = Some(format!("http://{dead_addr}"));
    let err = BmcSession::connect(o).unwrap_err();
    assert!(matches!(err, BmcError::Connect { .. }), "{err:?}");

    let mut o = opts_for(&sim, &cfg);
    o.proxy = Some("socks5://127.0.0.1:1080".into());
    let err = BmcSession::connect(o).unwrap_err();
    assert!(matches!(err, BmcError::InvalidProxy { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Issue 14: one test per client defect, against the simulator configured to behave so.

/// Pulls once: discover, request, download. Returns the bytes.
fn pull(s: &mut BmcSession) -> Result<Vec<u8>, BmcError> {
    let svc = s.discover()?;
    let file = s.request_backup(&svc)?;
    let mut out = Vec::new();
    s.download_file(&file, &mut out)?;
    Ok(out)
}

fn requests(sim: &SimHandle, method: &str, prefix: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == method && r.target.to_ascii_lowercase().starts_with(prefix))
        .count()
}

/// Defect 2: a BMC that refuses `GET <BackupFileLocation>` is downloaded from by
/// iLOrest's POST with a `sessionKey` field; `--download-method get` does not fall back.
#[test]
fn download_falls_back_to_post_when_get_is_refused() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.get_download = false);
    let mut s = connect(&sim, &cfg);
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();
    assert_eq!(requests(&sim, "GET", "/bkupdata/"), 1);
    let posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.target.starts_with("/bkupdata/"))
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].form_fields, ["sessionKey"]);
    assert_eq!(posts[0].status, 200);

    let mut o = opts_for(&sim, &cfg);
    o.download = DownloadMethod::Get;
    let mut s = BmcSession::connect(o).unwrap();
    let e = pull(&mut s).unwrap_err();
    assert!(matches!(e, BmcError::Http { status: 405, .. }), "{e}");
    drop(s);
    // POST only, and Basic auth cannot POST (iLO checks the session key in the form).
    let mut o = opts_for(&sim, &cfg);
    o.download = DownloadMethod::Post;
    let mut s = BmcSession::connect(o).unwrap();
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();
    let mut o = opts_for(&sim, &cfg);
    o.download = DownloadMethod::Post;
    o.auth = AuthMode::Basic;
    let mut s = BmcSession::connect(o).unwrap();
    let e = pull(&mut s).unwrap_err();
    assert!(matches!(e, BmcError::NeedsSession { .. }), "{e}");
    // "use --auth session" is the CLI's hint: cli::hints.
    assert!(e.to_string().contains("needs a session"), "{e}");
    assert_eq!(sim.open_sessions(), 0);
}

/// Defect 2: iLO's backup-file password. The backup is asked for protected (POST with a
/// `password` field), the restore sends it, a wrong one is `FilePasswordRejected`, and
/// more than 32 characters is refused before anything is sent.
#[test]
fn backup_file_password_on_pull_and_restore() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut o = opts_for(&sim, &cfg);
    o.file_password = Some(Password::new("file-pass-1".into()));
    let mut s = BmcSession::connect(o).unwrap();
    let protected = pull(&mut s).unwrap();
    assert_ne!(protected, cfg.backup_bytes);
    assert!(protected.ends_with(&cfg.backup_bytes));
    let svc = s.discover().unwrap();
    s.restore(
        &svc,
        "x.bak",
        &mut protected.as_slice(),
        protected.len() as u64,
    )
    .unwrap();
    s.logout().unwrap();
    let restores = sim.restores();
    assert_eq!(restores.len(), 1);
    assert!(restores[0].with_password);
    assert_eq!(restores[0].file, protected);

    for wrong in [Some("other-pass"), None] {
        let mut o = opts_for(&sim, &cfg);
        o.file_password = wrong.map(|w| Password::new(w.into()));
        let mut s = BmcSession::connect(o).unwrap();
        let svc = s.discover().unwrap();
        let e = s
            .restore(
                &svc,
                "x.bak",
                &mut protected.as_slice(),
                protected.len() as u64,
            )
            .unwrap_err();
        assert!(matches!(e, BmcError::FilePasswordRejected { .. }), "{e}");
        assert!(e.to_string().contains("invalid_restore_password"), "{e}");
        s.logout().unwrap();
    }
    assert_eq!(sim.restores().len(), 1);

    let before = sim.request_count();
    let mut o = opts_for(&sim, &cfg);
    o.file_password = Some(Password::new("x".repeat(33)));
    let e = BmcSession::connect(o).unwrap_err();
    assert!(matches!(e, BmcError::FilePassword { .. }), "{e}");
    assert!(!e.to_string().contains("xxxx"), "{e}");
    assert_eq!(sim.request_count(), before, "nothing was sent");
    assert_eq!(sim.open_sessions(), 0);
}

/// Defect 3: `--ca-cert` with the BMC's own self-signed certificate that has
/// `basicConstraints CA:TRUE` (what `openssl req -x509` makes) is accepted; a different
/// certificate with the CA bit is still refused.
#[test]
fn ca_cert_accepts_a_self_signed_certificate_with_the_ca_bit() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.ca_flag_certificate = true);
    let mut s = connect(&sim, &cfg);
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();

    let (other, _) = sim_with(|c| c.ca_flag_certificate = true);
    let mut o = opts_for(&sim, &cfg);
    o.ca_cert = Some(other.ca_cert_path().to_path_buf());
    let e = BmcSession::connect(o).unwrap_err();
    assert!(matches!(e, BmcError::Tls { .. }), "{e}");
    assert_eq!(sim.open_sessions(), 0);
}

/// Defect 3: `--tls-fingerprint sha256:…` pins the certificate (alone or with a CA);
/// a wrong pin is a TLS error naming the certificate's actual fingerprint.
#[test]
fn tls_fingerprint_pins_the_certificate() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.ca_flag_certificate = true);
    let pin = super::tls::parse_fingerprint(&sim.cert_fingerprint()).unwrap();
    let mut o = opts_for(&sim, &cfg);
    o.ca_cert = None;
    o.tls_fingerprints = vec![pin];
    let mut s = BmcSession::connect(o).unwrap();
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();

    let mut o = opts_for(&sim, &cfg);
    o.tls_fingerprints = vec![[7u8; 32]];
    let e = BmcSession::connect(o).unwrap_err();
    assert!(matches!(e, BmcError::Tls { .. }), "{e}");
    assert!(e.to_string().contains(&sim.cert_fingerprint()), "{e}");
    // Without --ca-cert or a pin the public roots do not know the simulator.
    let mut o = opts_for(&sim, &cfg);
    o.ca_cert = None;
    assert!(matches!(
        BmcSession::connect(o).unwrap_err(),
        BmcError::Tls { .. }
    ));
    assert_eq!(sim.open_sessions(), 0);
}

/// Defect 4: the Sessions URI comes from the service root; a service without sessions
/// gets an error that says so and suggests `--auth basic`, which then works.
#[test]
fn login_follows_the_service_root_and_explains_a_service_without_sessions() {
    let _g = shared();
    let (sim, cfg) =
        sim_with(|c| c.sessions_uri = Some("/redfish/v1/SessionService/Tokens/".into()));
    let mut s = connect(&sim, &cfg);
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();
    assert_eq!(
        requests(&sim, "POST", "/redfish/v1/sessionservice/tokens"),
        1
    );
    assert_eq!(
        requests(&sim, "POST", "/redfish/v1/sessionservice/sessions"),
        0
    );
    assert_eq!(sim.open_sessions(), 0);

    let (sim, cfg) = sim_with(|c| c.sessions_uri = None);
    let e = BmcSession::connect(opts_for(&sim, &cfg)).unwrap_err();
    assert!(matches!(e, BmcError::NoSessions { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        // "log in with --auth basic" is the CLI's hint: cli::hints.
        msg.contains("no Redfish sessions") && !msg.contains("--auth"),
        "{msg}"
    );
    assert!(!msg.contains("--bmc-user"), "{msg}");
    assert_eq!(requests(&sim, "POST", "/"), 0, "no login was attempted");
    let mut o = opts_for(&sim, &cfg);
    o.auth = AuthMode::Basic;
    let mut s = BmcSession::connect(o).unwrap();
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
}

/// Defect 5: a Manager that fails is skipped with a note; the next one has the service.
#[test]
fn a_failing_manager_is_skipped_with_a_note() {
    let _g = shared();
    for status in [404, 500] {
        let (sim, cfg) = sim_with(|c| c.failing_first_manager = Some(status));
        let mut s = connect(&sim, &cfg);
        let svc = s.discover().unwrap();
        assert_eq!(svc.notes.len(), 1, "{:?}", svc.notes);
        assert!(
            svc.notes[0].contains("/redfish/v1/Managers/0/"),
            "{:?}",
            svc.notes
        );
        assert!(
            svc.notes[0].contains(&status.to_string()),
            "{:?}",
            svc.notes
        );
        assert_eq!(svc.manager.firmware.as_deref(), Some(cfg.firmware.as_str()));
        let file = s.request_backup(&svc).unwrap();
        let mut out = Vec::new();
        s.download_file(&file, &mut out).unwrap();
        assert_eq!(out, cfg.backup_bytes);
        s.logout().unwrap();
        assert_eq!(sim.open_sessions(), 0);
    }
}

/// Defect 6: one pull reads the BackupRestoreService once (each read builds a backup).
#[test]
fn one_pull_reads_the_backup_service_once() {
    let _g = shared();
    let (sim, cfg) = sim_with(|_| {});
    let mut s = connect(&sim, &cfg);
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();
    assert_eq!(sim.backups_built(), 1);
    assert_eq!(
        requests(&sim, "GET", "/redfish/v1/managers/1/backuprestoreservice"),
        1
    );
    assert_eq!(sim.open_sessions(), 0);
}

/// `SessionLimitExceeded` is retried with bounded backoff: it succeeds once a slot
/// frees up, and gives up after the configured attempts.
#[test]
fn session_limit_is_retried_with_backoff() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.session_limit = 1);
    let holder = connect(&sim, &cfg);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.logout().unwrap();
    });
    let mut o = opts_for(&sim, &cfg);
    o.session_limit_retries = 5;
    let s = BmcSession::connect(o).expect("a retry gets the freed slot");
    release.join().unwrap();
    let refused = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == 503)
        .count();
    assert!(refused >= 1, "the first attempt met the limit");
    let holder = s;
    let mut o = opts_for(&sim, &cfg);
    o.session_limit_retries = 2;
    let e = BmcSession::connect(o).unwrap_err();
    assert!(matches!(e, BmcError::SessionLimit { .. }), "{e}");
    let refused_after = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == 503)
        .count();
    assert_eq!(refused_after - refused, 3, "1 attempt + 2 retries");
    holder.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
}

/// Issue 13.1: plain HTTP is refused unless asked for explicitly, before any request.
#[test]
fn plain_http_is_refused_unless_allowed() {
    let _g = shared();
    let (sim, cfg) = sim_with(|c| c.tls = false);
    let mut o = opts_for(&sim, &cfg);
    o.allow_http = false;
    let e = BmcSession::connect(o).unwrap_err();
    assert!(matches!(e, BmcError::PlaintextRefused { .. }), "{e}");
    // "pass --allow-http" is the CLI's hint: cli::hints.
    assert!(e.to_string().contains("unencrypted"), "{e}");
    assert_eq!(sim.request_count(), 0);
    let mut s = connect(&sim, &cfg);
    assert_eq!(pull(&mut s).unwrap(), cfg.backup_bytes);
    s.logout().unwrap();
    assert_eq!(sim.open_sessions(), 0);
}

/// Issue 13.9: an invalid URL's error shows host and port only, never the password.
#[test]
fn invalid_url_error_never_echoes_credentials() {
    let o = BmcOptions::new(
        "https://admin:hunter2-secret@ilo-9:8443/other",
        "admin",
        Password::new("x".into()),
    );
    let e = BmcSession::connect(o).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, BmcError::InvalidUrl { .. }), "{msg}");
    assert!(msg.contains("ilo-9:8443"), "{msg}");
    assert!(!msg.contains("hunter2") && !msg.contains("admin"), "{msg}");
    assert!(!format!("{e:?}").contains("hunter2"));
}
