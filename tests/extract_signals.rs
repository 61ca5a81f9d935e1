//! Issue 13.2: no decrypted plaintext survives an interrupted `backup extract` under a
//! temporary name, whatever stops it (SIGKILL, SIGTERM, SIGINT, SIGHUP), and the next
//! extract into a directory removes what a killed writer of an older build left there.
mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Vault, bytes, s};

const SIZE: usize = 48 << 20;

fn sealed(v: &Vault) -> String {
    v.create_key(&[]);
    let input = v.path("plain.bin");
    std::fs::write(&input, bytes(SIZE, 7)).unwrap();
    let a = v.ok(&["backup", "create", "--file", s(&input)]);
    a["id"].as_str().unwrap().to_string()
}

/// Whether `pid` holds an unnamed (O_TMPFILE) file open in `dir`: `/proc` shows it as
/// `<dir>/#<inode> (deleted)`. This is the evidence that the kill lands mid-write.
fn writing_unnamed_in(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let prefix = format!("{}/#", dir.display());
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with(&prefix))
    })
}

fn start_extract(v: &Vault, id: &str, out: &Path) -> Child {
    v.cmd(&["backup", "extract", "--id", id, "--out", s(out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_writing(child: &mut Child, dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if writing_unnamed_in(child.id(), dir) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn no_plaintext_survives_a_killed_or_signalled_extract() {
    let v = Vault::new();
    let id = sealed(&v);
    let mut hit = 0;
    for (signal, code) in [
        ("KILL", None),
        ("TERM", Some(143)),
        ("INT", Some(130)),
        ("HUP", Some(129)),
    ] {
        let dir = v.path(&format!("out-{signal}"));
        std::fs::create_dir(&dir).unwrap();
        let out = dir.join("plain.out");
        let mut child = start_extract(&v, &id, &out);
        let writing = wait_writing(&mut child, &dir);
        let st = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        if writing && st.success() {
            hit += 1;
            assert_eq!(status.code(), code, "SIG{signal}");
            assert_eq!(
                entries(&dir),
                Vec::<String>::new(),
                "SIG{signal} mid-write left something next to --out"
            );
        }
    }
    assert!(
        hit >= 3,
        "only {hit} of 4 signals landed while the plaintext was being written"
    );
}

#[test]
fn next_extract_removes_temporaries_that_killed_writers_left() {
    let v = Vault::new();
    v.create_key(&[]);
    let input = v.path("small.bin");
    std::fs::write(&input, b"small").unwrap();
    let id = v.ok(&["backup", "create", "--file", s(&input)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = v.path("out");
    std::fs::create_dir(&dir).unwrap();
    // What a SIGKILLed writer on a file system without O_TMPFILE leaves (pid_max on
    // Linux is at most 2^22, so this writer is gone), and a live process's file.
    std::fs::write(dir.join(".tmp-4194305-k1ll3d"), b"plaintext left by a kill").unwrap();
    let live = format!(".tmp-{}-live", std::process::id());
    std::fs::write(dir.join(&live), b"a live writer's").unwrap();
    let out = dir.join("plain.out");
    v.ok(&["backup", "extract", "--id", &id, "--out", s(&out)]);
    let mut left = entries(&dir);
    left.sort();
    assert_eq!(left, [live, "plain.out".to_string()]);
}
