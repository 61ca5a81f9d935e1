//! Issue #18: the README's examples and the JSON shapes of docs/json.md are executed, so a
//! documented example that stops working, or a documented field that disappears, fails
//! the suite.
//!
//! Every command line in README.md's shell blocks that runs `vault` is taken from the
//! README itself (not copied here) and either
//! - **run**: in order, against temporary homes and the built-in iLO simulator, with the
//!   README's placeholders (`https://ilo-host`, `ilo-ca.pem`, `5dac1d33`, `KEY`, `ARCH`,
//!   `/other`, …) replaced by real ones; it must exit as documented, and its JSON must
//!   carry every field docs/json.md promises for that command; or
//! - **checked**: a synopsis (`[--since T]`), an elided line (`…`) or one that needs an
//!   S3 store: its subcommand must exist and every flag it uses must be in its `--help`.
//!
//! A README line this file does not know how to place fails the test, so a new example
//! cannot go unchecked. The `--help` texts' own examples (the top-level "Start with", the
//! inventory of `backup pull --help`) are run too.
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use vault::bmc::{SimConfig, SimHandle};

const BMC_PASSWORD: &str = "doc-example-bmc-pw";
const ROOT_PASSWORD: &str = "a root passphrase for the docs";

/// One logical command line of a README shell block.
#[derive(Debug, Clone)]
struct Example {
    line: usize,
    /// The words after `vault`, comments and the `| jq …` tail removed.
    words: Vec<String>,
    /// `cat FILE | vault …`: FILE goes to stdin.
    stdin_file: Option<String>,
    /// The command after a `|`, if any.
    piped_to: Option<String>,
    raw: String,
}

/// Splits a shell line into words: double and single quotes, `#` comments.
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '#' && !in_word => break,
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Every `vault` command line in README.md's `sh` and unlabelled code blocks.
fn readme_examples(readme: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut shell_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        let t = line.trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            in_block = !in_block;
            shell_block = in_block && (lang.is_empty() || lang == "sh");
            continue;
        }
        if !shell_block {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((i + 1, String::new()));
        text.push_str(line.trim());
        if let Some(cont) = text.strip_suffix('\\') {
            pending = Some((start, format!("{} ", cont.trim_end())));
            continue;
        }
        if let Some(e) = parse_example(start, &text) {
            out.push(e);
        }
    }
    out
}

fn parse_example(line: usize, text: &str) -> Option<Example> {
    // `cargo run --release -- demo` is `vault demo` built from source.
    let text = text.replacen("cargo run --release -- ", "vault ", 1);
    let (head, tail) = match text.split_once(" | ") {
        Some((a, b)) => (a.trim().to_string(), Some(b.trim().to_string())),
        None => (text.trim().to_string(), None),
    };
    let (stdin_file, cmd, piped_to) = if let Some(rest) = head.strip_prefix("cat ") {
        // `cat FILE | vault …`
        let tail = tail?;
        (Some(rest.trim().to_string()), tail, None)
    } else {
        (None, head, tail)
    };
    let words = shell_words(&cmd);
    if words.first().map(String::as_str) != Some("vault") {
        return None;
    }
    Some(Example {
        line,
        words: words[1..].to_vec(),
        stdin_file,
        piped_to,
        raw: text.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// docs/json.md: the fields each command's JSON document promises.

#[derive(Debug, Default, Clone)]
struct Shape {
    /// Fields that are always present.
    required: Vec<String>,
    /// Where the fields sit: the top level, or each element of `resources`.
    in_resources: bool,
}

/// Splits `s` at top-level commas (outside `()`, `{}`, `[]`).
fn top_level_items(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' | ';' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth >= 0 {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// The field names of a `{"a", "b": …, "c"?}` listing or of a prose list of
/// `` `a`, `b` (…), `c`? ``: optional ones (`?`, "omitted", "only") left out.
fn field_names(spec: &str) -> Vec<String> {
    let spec = spec.trim();
    let inner = if let Some(body) = spec.strip_prefix("`{") {
        body.split("}`").next().unwrap_or("").to_string()
    } else {
        spec.to_string()
    };
    let mut names = Vec::new();
    for item in top_level_items(&inner) {
        let item = item.trim();
        let quote = if item.starts_with('"') { '"' } else { '`' };
        let Some(rest) = item.strip_prefix(quote) else {
            continue;
        };
        let Some((name, after)) = rest.split_once(quote) else {
            continue;
        };
        if after.trim_start().starts_with('?')
            || name.contains(' ')
            || name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric())
        {
            continue;
        }
        names.push(name.to_string());
    }
    names
}

/// Expands `backup create/pull/get` into its commands.
fn expand_commands(spec: &str) -> Vec<String> {
    let mut parts = spec.split_whitespace();
    let Some(group) = parts.next() else {
        return Vec::new();
    };
    match parts.next() {
        None => vec![group.to_string()],
        Some(subs) => subs.split('/').map(|s| format!("{group} {s}")).collect(),
    }
}

/// Backticked command names in `text` (`keys rotate`, `backup create/pull`, `inspect`).
fn commands_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, chunk) in text.split('`').enumerate() {
        let first = chunk.split_whitespace().next().unwrap_or("");
        // `backup pull --inventory` is a variant with its own shape, not `backup pull`.
        if i % 2 == 1
            && ["keys", "backup", "audit", "inspect"].contains(&first)
            && !chunk.contains("--")
        {
            out.extend(expand_commands(chunk));
        }
    }
    out
}

/// command → shape, from docs/json.md's Key table and its bullets.
fn json_doc_shapes(doc: &str) -> BTreeMap<String, Shape> {
    let mut shapes: BTreeMap<String, Shape> = BTreeMap::new();
    // The Key table: every field whose note does not make it optional.
    let mut key_fields = Vec::new();
    let mut key_cmds = Vec::new();
    let mut key_list = Vec::new();
    let mut bullets: Vec<String> = Vec::new();
    let mut in_key = false;
    for line in doc.lines() {
        if line.starts_with("**Key**") {
            in_key = true;
            let head = line.split(':').next().unwrap_or("");
            let (direct, each) = head.split_once("each element of").unwrap_or((head, ""));
            key_cmds = commands_in(direct);
            key_list = commands_in(each);
            continue;
        }
        if in_key {
            if let Some(row) = line.strip_prefix("| `") {
                let (name, rest) = row.split_once('`').unwrap();
                if !rest.contains("only") && !rest.contains("omitted") {
                    key_fields.push(name.to_string());
                }
            } else if line.starts_with("Further") {
                in_key = false;
            }
        }
        if let Some(item) = line.strip_prefix("- ") {
            bullets.push(item.to_string());
        } else if line.starts_with("  ") && !bullets.is_empty() {
            let last = bullets.last_mut().unwrap();
            last.push(' ');
            last.push_str(line.trim());
        } else if line.trim().is_empty() {
            // A paragraph ends a bullet.
            bullets.push(String::new());
        }
    }
    for c in key_cmds {
        shapes.insert(
            c,
            Shape {
                required: key_fields.clone(),
                in_resources: false,
            },
        );
    }
    for c in key_list {
        shapes.insert(
            c,
            Shape {
                required: key_fields.clone(),
                in_resources: true,
            },
        );
    }
    for b in bullets {
        // `cmd` …: spec[; `cmd2`: spec2]
        for (i, part) in b.split("; `").enumerate() {
            let part = if i == 0 {
                part.to_string()
            } else {
                format!("`{part}")
            };
            let Some((head, spec)) = part.split_once(':') else {
                continue;
            };
            if head.contains("see README") || spec.contains("see README") {
                continue;
            }
            let (direct, each) = head.split_once("each element of").unwrap_or((head, ""));
            let fields = field_names(spec);
            if fields.is_empty() {
                continue;
            }
            for c in commands_in(direct) {
                shapes.insert(
                    c,
                    Shape {
                        required: fields.clone(),
                        in_resources: false,
                    },
                );
            }
            for c in commands_in(each) {
                shapes.insert(
                    c,
                    Shape {
                        required: fields.clone(),
                        in_resources: true,
                    },
                );
            }
        }
    }
    shapes
}

/// The command an example runs, as docs/json.md names it (`backup create`, `inspect`).
fn command_name(words: &[String]) -> String {
    let w: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.starts_with('-') || w.starts_with('/'))
        .take_while(|w| !w.starts_with('-'))
        .collect();
    match w.as_slice() {
        [one] => (*one).to_string(),
        [a, b, ..] => format!("{a} {b}"),
        [] => String::new(),
    }
}

fn check_shape(ex: &Example, out: &Value, shape: &Shape) {
    let docs: Vec<&Value> = if shape.in_resources {
        out["resources"].as_array().unwrap().iter().collect()
    } else {
        vec![out]
    };
    for d in docs {
        for f in &shape.required {
            assert!(
                d.get(f).is_some(),
                "README line {} ({}): docs/json.md promises field {f:?}, output has none: {d}",
                ex.line,
                ex.raw
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running the examples.

struct World {
    dir: tempfile::TempDir,
    /// `export VAULT_HOME=…` of the tour.
    home: PathBuf,
    /// `--home /other`.
    other: PathBuf,
    /// The home a `home init` example made, used by the examples after it in its block.
    current: Option<PathBuf>,
    sim: SimHandle,
    hsm: Option<common::softhsm::Hsm>,
    /// The archive the tour pulled from the simulator (its placeholders are this one).
    pulled: Option<String>,
    /// What `KEY` stood for last.
    last_key: Option<String>,
    shapes: BTreeMap<String, Shape>,
    shapes_used: Vec<String>,
    ran: Vec<String>,
    checked: Vec<String>,
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_secret(p: &Path, content: &str) {
    std::fs::write(p, content).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimHandle::start(SimConfig {
            password: BMC_PASSWORD.into(),
            ..SimConfig::default()
        })
        .unwrap();
        let scratch = dir.path();
        std::fs::write(scratch.join("config.bak"), common::bytes(70_000, 18)).unwrap();
        for pw in ["ilo.pw", ".ilo-pw"] {
            write_secret(&scratch.join(pw), BMC_PASSWORD);
        }
        // The README's iLO backup-file password.
        write_secret(&scratch.join("ilo-file.pw"), "doc-example-file-pw");
        write_secret(&scratch.join("pw"), common::PASSWORD);
        write_secret(&scratch.join("rootpw.txt"), ROOT_PASSWORD);
        write_secret(&scratch.join("pin.txt"), common::softhsm::PIN);
        let shapes = json_doc_shapes(&std::fs::read_to_string("docs/json.md").unwrap());
        World {
            home: scratch.join("share/vault"),
            other: scratch.join("other"),
            current: None,
            hsm: None,
            pulled: None,
            last_key: None,
            shapes,
            shapes_used: Vec::new(),
            ran: Vec::new(),
            checked: Vec::new(),
            dir,
            sim,
        }
    }

    fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn vault(&self, home: Option<&Path>, args: &[String]) -> Command {
        let mut c = Command::new(common::BIN);
        c.current_dir(self.scratch())
            .args(args)
            .env("VAULT_HOME", home.unwrap_or(&self.home))
            .env("VAULT_BMC_USER", "admin")
            // The README's restore examples name no password file: "BMC passwords from
            // `--bmc-password-file`, `VAULT_BMC_PASSWORD`, or the prompt".
            .env("VAULT_BMC_PASSWORD", BMC_PASSWORD)
            .env_remove("VAULT_KEY_PASSWORD")
            .env("VAULT_ROOT_PASSWORD", ROOT_PASSWORD)
            .env_remove("VAULT_PKCS11_PIN")
            .stdin(Stdio::null());
        if let Some(h) = &self.hsm {
            c.env("SOFTHSM2_CONF", &h.conf);
        }
        c
    }

    fn json_of(&self, home: &Path, args: &[&str]) -> Value {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = self.vault(Some(home), &args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The default system key of `home`.
    fn default_key(&self, home: &Path) -> String {
        let list = self.json_of(home, &["keys", "list"]);
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["isDefault"] == true && k["scope"] == "system")
            .expect("a default system key")["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Replaces the README's placeholders by real values.
    fn substitute(&mut self, words: &[String]) -> Vec<String> {
        let url = self.sim.base_url();
        let ca = self.sim.ca_cert_path().display().to_string();
        let mut out = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let prev = if i > 0 { words[i - 1].as_str() } else { "" };
            let v = match (prev, w.as_str()) {
                (_, "https://ilo-host") => url.clone(),
                ("--ca-cert", _) => ca.clone(),
                // The simulator's one account (the README's are examples of names).
                ("--bmc-user", _) => "admin".to_string(),
                ("--home", "/other") => self.other.display().to_string(),
                ("--id", "5dac1d33") => self.pulled.clone().unwrap()[..8].to_string(),
                ("--id", "ARCH") => self.pulled.clone().unwrap(),
                ("--id", "KEY") => {
                    let k = self.default_key(&self.home.clone());
                    self.last_key = Some(k.clone());
                    k
                }
                ("--port", _) => "0".to_string(),
                ("--tls-fingerprint", "sha256:FINGERPRINT") => self.sim.cert_fingerprint(),
                ("--bmc-password-file", p) => p.replace("~/", ""),
                ("--inventory", "fleet.toml") => self.fleet_from_readme(),
                (_, "/srv/backups") => self.home.join("archives").display().to_string(),
                _ => w.clone(),
            };
            out.push(v);
        }
        out
    }

    /// The README's own fleet inventory (its ```toml block), pointed at the simulator.
    fn fleet_from_readme(&mut self) -> String {
        let readme = std::fs::read_to_string("README.md").unwrap();
        let block = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("README has the fleet inventory");
        let ca = self.sim.ca_cert_path().display().to_string();
        let toml = block
            .replace("https://ilo-rack1-01", &self.sim.base_url())
            .replace("ilo-ca.pem", &ca)
            .replace("\"backup\"", "\"admin\"");
        // The inventory's domain needs its default key, as any domain-scoped pull does.
        let domain: toml::Value = toml::from_str(&toml).unwrap();
        let d = domain["bmc"][0]["domain"].as_str().unwrap().to_string();
        self.json_of(
            &self.home.clone(),
            &["keys", "create", "--scope", "domain", "--domain", &d],
        );
        let p = self.scratch().join("fleet.toml");
        std::fs::write(&p, toml).unwrap();
        p.display().to_string()
    }

    /// The flags an example uses exist in its subcommand's `--help`.
    fn check_flags(&mut self, ex: &Example, why: &str) {
        let sub: Vec<String> = ex
            .words
            .iter()
            .take_while(|w| !w.starts_with('-') && !w.starts_with('['))
            .cloned()
            .collect();
        let mut args = sub.clone();
        args.push("--help".into());
        let out = self.vault(None, &args).output().unwrap();
        assert!(
            out.status.success(),
            "README line {} ({}): `vault {} --help` fails: {}",
            ex.line,
            ex.raw,
            sub.join(" "),
            stderr(&out)
        );
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for w in &ex.words {
            let flag = w.trim_start_matches('[');
            if let Some(name) = flag.strip_prefix("--") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                assert!(
                    help.contains(&format!("--{name}")),
                    "README line {} ({}): `vault {}` has no flag --{name}",
                    ex.line,
                    ex.raw,
                    sub.join(" ")
                );
            }
        }
        self.checked
            .push(format!("line {}: {} ({why})", ex.line, ex.raw));
    }

    fn run_example(&mut self, ex: &Example) {
        let w: Vec<&str> = ex.words.iter().map(String::as_str).collect();
        let raw = ex.raw.as_str();
        // Lines that cannot be run as written.
        let cmd = ex.words.join(" ");
        if cmd.contains('[') && cmd.contains(']') {
            return self.check_flags(ex, "synopsis");
        }
        if cmd.contains('…') && !cmd.contains("--anchor") {
            return self.check_flags(ex, "elided arguments");
        }
        if w.contains(&"--remote") || w.contains(&"--push-to") {
            return self.check_flags(
                ex,
                "needs an S3 store: tests/remote_rgw.rs runs push, list, fetch and prune against Ceph RGW",
            );
        }
        // The home an example acts on.
        let mut home = if w.contains(&"--home") {
            self.other.clone()
        } else {
            self.current.clone().unwrap_or_else(|| self.home.clone())
        };
        let mut args = self.substitute(&ex.words);
        if w.starts_with(&["home", "init"]) {
            home = self.scratch().join(format!("home-{}", ex.line));
            self.current = Some(home.clone());
            if w.contains(&"pkcs11") {
                let Some(hsm) = common::softhsm::softhsm() else {
                    self.current = None;
                    return self.check_flags(ex, "SoftHSM2 missing (not CI)");
                };
                hsm.init_token("vault");
                self.hsm = Some(hsm);
            }
        }
        if w.contains(&"--tied-to-hsm") && self.hsm.is_none() {
            return self.check_flags(ex, "SoftHSM2 missing (not CI)");
        }
        if w.contains(&"--anchor") {
            let v = self.json_of(&home, &["audit", "verify"]);
            let i = args.iter().position(|a| a == "--anchor").unwrap();
            args[i + 1] = v["anchor"].as_str().unwrap().to_string();
        }
        if w.first() == Some(&"bmc-simulator") {
            return self.run_simulator(ex, &args);
        }
        let mut cmd = self.vault(Some(&home), &args);
        if let Some(f) = &ex.stdin_file {
            cmd.stdin(std::fs::File::open(self.scratch().join(f)).unwrap());
        }
        if w.starts_with(&["inspect", "--file"]) {
            // The tour inspects an archive file it has in hand.
            let a = self.pulled.clone().unwrap();
            std::fs::copy(
                self.home.join(format!("archives/{a}.vault")),
                self.scratch().join(&args[2]),
            )
            .unwrap();
        }
        let out = cmd.output().unwrap();
        let restore_unconfirmed = w.starts_with(&["backup", "restore"]) && !w.contains(&"--yes");
        if restore_unconfirmed {
            // "asks for confirmation on a terminal (`--yes` otherwise)": without a
            // terminal it is refused before any request (a usage error, exit 2) ...
            assert_eq!(
                out.status.code(),
                Some(2),
                "README line {} ({raw}): {}",
                ex.line,
                stderr(&out)
            );
            assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
            assert!(self.sim.restored().is_empty());
            // ... and "a refused `restore` without `--yes` ... [is] in the log too".
            let log = self.json_of(&home, &["audit", "log", "--operation", "backup.restore"]);
            let last = log["records"].as_array().unwrap().last().cloned();
            let last = last.expect("the refused restore is audited");
            assert_eq!(last["result"], "failure", "{last}");
            assert_eq!(
                last["archiveId"],
                self.pulled.clone().unwrap().as_str(),
                "{last}"
            );
            self.ran
                .push(format!("line {}: {raw} (refused: no --yes)", ex.line));
            return;
        }
        assert!(
            out.status.success(),
            "README line {} ({raw}) fails as run (vault {}): {}",
            ex.line,
            args.join(" "),
            stderr(&out)
        );
        self.ran.push(format!("line {}: {raw}", ex.line));
        if w.contains(&"--output") {
            assert!(!out.stdout.is_empty());
            return;
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "README line {} ({raw}): stdout is not JSON ({e}): {}",
                ex.line,
                String::from_utf8_lossy(&out.stdout)
            )
        });
        self.after(ex, &home, &v);
    }

    /// What each run example must show beyond success.
    fn after(&mut self, ex: &Example, home: &Path, v: &Value) {
        let w: Vec<&str> = ex.words.iter().map(String::as_str).collect();
        let name = command_name(&ex.words);
        if let Some(shape) = self.shapes.get(&name).cloned()
            && !w.contains(&"--inventory")
        {
            check_shape(ex, v, &shape);
            self.shapes_used.push(name.clone());
        }
        match name.as_str() {
            "keys create" if self.current.is_none() && w.len() == 2 => {
                // "created 0700 on first use"
                let mode = std::fs::metadata(home).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o700, "home mode {mode:o}");
                // "the first of a scope is its default"
                assert_eq!(v["isDefault"], true);
            }
            "backup pull" if w.contains(&"--inventory") => {
                assert_eq!(v["failed"], 0, "{v}");
                assert_eq!(v["results"][0]["status"], "ok", "{v}");
            }
            "backup pull" => {
                self.pulled = Some(v["id"].as_str().unwrap().to_string());
                assert!(v["source"]["serialNumber"].is_string(), "{v}");
                // "with a file password the download is always the POST", and "the way
                // HPE's iLOrest does (POST with a sessionKey field)".
                let download = self
                    .sim
                    .requests()
                    .into_iter()
                    .rfind(|r| r.target.starts_with("/bkupdata/"))
                    .expect("the .bak was downloaded");
                if w.contains(&"--file-password-file") {
                    assert_eq!(download.method, "POST");
                    assert_eq!(download.form_fields, ["sessionKey", "password"]);
                } else if w.contains(&"--download-method") {
                    assert_eq!(download.method, "POST");
                    assert_eq!(download.form_fields, ["sessionKey"]);
                }
            }
            "backup restore" => {
                assert_eq!(v["restored"], true);
                assert_eq!(self.sim.restored().len(), 1);
                assert_eq!(self.sim.open_sessions(), 0, "the session was logged out");
            }
            "backup rewrap" => {
                assert!(v["failed"].as_array().unwrap().is_empty(), "{v}");
                assert!(!v["rewrapped"].as_array().unwrap().is_empty(), "{v}");
            }
            "home show" => {
                // `vault home show  # mode, root id, token, dependsOn`
                let p = &v["protection"];
                for f in ["mode", "rootId", "token", "dependsOn"] {
                    assert!(p.get(f).is_some(), "home show lacks {f}: {v}");
                }
            }
            "keys create" if w.contains(&"--tied-to-hsm") => {
                let list = self.json_of(home, &["keys", "list"]);
                let tied = list["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|k| k["id"] == v["id"])
                    .unwrap()
                    .clone();
                assert!(
                    tied["dependsOn"].as_str().unwrap().starts_with("hsm:"),
                    "README: dependsOn is hsm:<token> for tied keys: {tied}"
                );
            }
            "audit verify" if w.contains(&"--anchor") => {
                assert_eq!(v["anchorCheck"]["result"]["status"], "found", "{v}");
            }
            "audit archives" => {
                // `| jq '.archives[] | select(.findings != []) | {path, codes: [.findings[].code]}'`
                assert!(
                    ex.piped_to
                        .as_deref()
                        .unwrap_or("")
                        .contains(".findings[].code")
                );
                let a = v["archives"].as_array().unwrap();
                assert!(!a.is_empty());
                for r in a {
                    assert!(r["path"].is_string() && r["findings"].is_array(), "{r}");
                }
            }
            "demo" => assert_eq!(v["ok"], true),
            "keys compromise" => {
                // The README's comment says what comes next: "then: backup rewrap …
                // --reencrypt (a plain rewrap is refused)". Both halves are run.
                let then = ex.raw.split("then: ").nth(1).expect("what to do then");
                let then = then.split(" (").next().unwrap();
                let key = self.last_key.clone().unwrap();
                let then: Vec<String> = shell_words(then)
                    .into_iter()
                    .map(|w| if w == "KEY" { key.clone() } else { w })
                    .collect();
                assert!(then.contains(&"--reencrypt".to_string()), "{then:?}");
                let plain: Vec<String> = then
                    .iter()
                    .filter(|w| *w != "--reencrypt")
                    .cloned()
                    .collect();
                let out = self.vault(Some(home), &plain).output().unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(7),
                    "a plain rewrap: {}",
                    stderr(&out)
                );
                // A new default to re-encrypt under (and for the examples after).
                self.json_of(home, &["keys", "create"]);
                let then: Vec<&str> = then.iter().map(String::as_str).collect();
                let r = self.json_of(home, &then);
                assert!(r["failed"].as_array().unwrap().is_empty(), "{r}");
                assert!(!r["rewrapped"].as_array().unwrap().is_empty(), "{r}");
            }
            "inspect" if w.contains(&"--trust") => {
                // "signature valid / invalid / unknown signer / unsigned": this home's.
                assert_eq!(v["signature"], "valid", "{v}");
            }
            _ => {}
        }
    }

    /// `vault bmc-simulator --port N`: serves until killed; a pull against it works.
    fn run_simulator(&mut self, ex: &Example, args: &[String]) {
        let mut child = self
            .vault(None, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
        let url = next()
            .strip_prefix("BMC simulator listening on ")
            .map(str::to_string);
        let ca = next().strip_prefix("CA certificate: ").map(str::to_string);
        let pulled = match (&url, &ca) {
            (Some(url), Some(ca)) => {
                let pw = self.scratch().join("ilo.pw").display().to_string();
                let args: Vec<String> = [
                    "backup",
                    "pull",
                    "--bmc",
                    url,
                    "--bmc-password-file",
                    &pw,
                    "--ca-cert",
                    ca,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                // Its account is `--user`'s default (see `vault bmc-simulator --help`).
                self.vault(None, &args)
                    .env("VAULT_BMC_USER", "Administrator")
                    .output()
                    .unwrap()
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("README line {}: unexpected simulator banner", ex.line);
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(pulled.status.success(), "{}", stderr(&pulled));
        self.ran.push(format!("line {}: {}", ex.line, ex.raw));
    }
}

/// Every README example runs or is checked; every docs/json.md shape the tour reaches holds.
#[test]
fn readme_examples_run_as_documented() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let examples = readme_examples(&readme);
    assert!(
        examples.len() >= 40,
        "the README parser found only {} examples",
        examples.len()
    );
    let mut world = World::new();
    for ex in &examples {
        // A new block resets the home a `home init` chose.
        if !ex.words.starts_with(&["home".to_string()])
            && !ex.words.contains(&"--tied-to-hsm".to_string())
        {
            world.current = None;
        }
        world.run_example(ex);
    }
    eprintln!(
        "ran {} README examples, checked {} against --help:",
        world.ran.len(),
        world.checked.len()
    );
    for r in &world.ran {
        eprintln!("  ran {r}");
    }
    for c in &world.checked {
        eprintln!("  checked {c}");
    }
    // Most of the README runs for real; what is only checked is said above.
    assert!(
        world.ran.len() >= 30,
        "only {} examples ran: {:#?}",
        world.ran.len(),
        world.ran
    );
    for must in [
        "keys rotate",
        "backup rewrap",
        "keys download",
        "backup verify",
        "backup extract",
        "backup download",
        "keys create",
        "backup create",
        "backup pull",
        "inspect",
    ] {
        assert!(
            world.shapes_used.iter().any(|s| s == must),
            "docs/json.md's shape of `{must}` was never checked (shapes: {:?})",
            world.shapes.keys().collect::<Vec<_>>()
        );
    }
}

/// The examples inside `--help` texts: "Start with: vault demo" and the fleet inventory of
/// `backup pull --help`, which must parse and pull.
#[test]
fn help_examples_run() {
    let world = World::new();
    let top = world.vault(None, &["--help".into()]).output().unwrap();
    assert!(top.status.success());
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    assert!(top.contains("vault demo"), "{top}");

    let help = world
        .vault(None, &["backup".into(), "pull".into(), "--help".into()])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let start = help
        .find("[[bmc]]")
        .expect("pull --help shows an inventory");
    let block: String = help[start..]
        .lines()
        .take_while(|l| !l.starts_with("Unset"))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    let ca = world.sim.ca_cert_path().display().to_string();
    let toml = block
        .replace("https://ilo-rack1-01", &world.sim.base_url())
        .replace("ilo-ca.pem", &ca)
        .replace("\"backup\"", "\"admin\"");
    let parsed: toml::Value = toml::from_str(&toml).expect("the --help inventory is TOML");
    let domain = parsed["bmc"][0]["domain"].as_str().unwrap();
    world.json_of(
        &world.home,
        &["keys", "create", "--scope", "domain", "--domain", domain],
    );
    let inv = world.scratch().join("help-fleet.toml");
    std::fs::write(&inv, toml).unwrap();
    let v = world.json_of(
        &world.home,
        &["backup", "pull", "--inventory", inv.to_str().unwrap()],
    );
    assert_eq!(v["succeeded"], 1, "{v}");

    // An error that tells what to pass names a flag the command has.
    let url = world.sim.base_url();
    let out = world
        .vault(None, &["backup".into(), "pull".into(), "--bmc".into(), url])
        .env_remove("VAULT_BMC_PASSWORD")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pass --bmc-password-file FILE"), "{err}");
    assert!(help.contains("--bmc-password-file"));
}

/// The harness itself: the parsers find what they must, so a passing run means something.
#[test]
fn harness_parses_what_it_claims() {
    assert_eq!(
        shell_words(r#"vault backup create --file x --description "before firmware 3.10"   # c"#),
        [
            "vault",
            "backup",
            "create",
            "--file",
            "x",
            "--description",
            "before firmware 3.10"
        ]
    );
    let ex = readme_examples(
        "```sh\nvault a \\\n   --b c   # d\ncat f | vault e\nls\n```\n```toml\nvault no\n```\n",
    );
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].words, ["a", "--b", "c"]);
    assert_eq!(ex[1].stdin_file.as_deref(), Some("f"));
    let shapes = json_doc_shapes(&std::fs::read_to_string("docs/json.md").unwrap());
    let rotate = &shapes["keys rotate"].required;
    assert_eq!(
        rotate,
        &["newKeyId", "retiredKeyId", "newKey", "retiredKey"]
    );
    assert!(shapes["keys list"].in_resources);
    assert!(
        shapes["keys list"]
            .required
            .contains(&"isDefault".to_string())
    );
    assert!(
        !shapes["keys list"]
            .required
            .contains(&"domainID".to_string())
    );
    assert!(
        shapes["backup create"]
            .required
            .contains(&"tiedToHSM".to_string())
    );
    assert!(
        !shapes["backup create"]
            .required
            .contains(&"source".to_string())
    );
    assert!(
        shapes["inspect"]
            .required
            .contains(&"isHSMBacked".to_string())
    );
    assert!(
        shapes["backup verify"]
            .required
            .contains(&"verified".to_string())
    );
}
