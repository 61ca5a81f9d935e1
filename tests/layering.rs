//! The module graph of `src/` points one way: a module may use modules of a lower layer
//! (and itself), never one of a higher layer, and the graph has no cycle.
//!
//! The layers are the table below, which is also the truth `src/lib.rs` describes. A new
//! top-level module must be given a layer here, so that where it sits is a decision.
//! Print the graph with `cargo test --test layering -- --nocapture`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each top-level module of `src/` (lower number = lower layer).
const LAYERS: &[(&str, u8)] = &[
    // Primitives: no vault module below them but each other's error kinds.
    ("errors", 0),
    ("secret", 0),
    ("clock", 0),
    ("account", 0),
    ("scope", 0),
    ("hardening", 0),
    ("escape", 0),
    ("retention", 0),
    ("group", 0),
    ("aead", 1),
    ("fsutil", 1),
    ("kdf", 1),
    // Formats and the home: bytes, files and the root key.
    ("envelope", 2),
    ("home", 2),
    ("audit", 2),
    ("bmc", 2),
    ("metrics", 2),
    // Domain modules over them.
    ("keystore", 3),
    ("config", 3),
    ("store", 4),
    ("remote", 4),
    ("signing", 4),
    ("sweep", 5),
    // The operations layer, then the command line and the fuzzing entry points.
    ("ops", 6),
    ("cli", 7),
    ("fuzzing", 8),
    ("lib", 9),
    ("main", 9),
];

fn layer(m: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(n, _)| *n == m)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module `{m}` has no layer in tests/layering.rs"))
}

/// Source without comments, so that doc text naming a module is not an import.
fn code_only(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named by `crate::x` or `crate::{x, y::z}` in `code`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    refs_after(code, "crate::")
}

/// The first path segments after `prefix` (`prefix x`, `prefix {x, y::z}`) in `code`.
fn refs_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or an identifier ending in the prefix
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 && c != ',' {
                    item.push(c);
                }
            }
            items.push(item);
            for it in items {
                let name: String = it
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `module -> modules it uses`, over the top-level modules of `src/`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        let entry = graph.entry(top.clone()).or_default();
        for r in crate_refs(&code) {
            if r != top {
                entry.insert(r);
            }
        }
    }
    graph
}

/// Every edge of `graph` that points to a higher layer.
fn upward(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut upward = Vec::new();
    for (from, tos) in graph {
        for to in tos {
            if layer(to) > layer(from) {
                upward.push(format!(
                    "{from} (layer {}) uses {to} (layer {})",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    upward
}

#[test]
fn no_module_imports_a_higher_layer() {
    let graph = module_graph();
    for (from, tos) in &graph {
        println!("{from} (layer {}) -> {tos:?}", layer(from));
    }
    let up = upward(&graph);
    assert!(up.is_empty(), "upward imports:\n{}", up.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    let mut g = BTreeMap::new();
    g.insert("store".to_string(), BTreeSet::from(["ops".to_string()]));
    g.insert("ops".to_string(), BTreeSet::from(["store".to_string()]));
    assert_eq!(upward(&g), ["store (layer 4) uses ops (layer 6)"]);
}

/// The nodes of `graph` that are on a cycle (or between two cycles): what is left after
/// repeatedly removing every node that nothing uses, or that uses nothing, still left.
fn on_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut left: BTreeMap<&str, BTreeSet<&str>> = graph
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
        .collect();
    for tos in graph.values() {
        for t in tos {
            left.entry(t.as_str()).or_default();
        }
    }
    loop {
        let used: BTreeSet<&str> = left.values().flatten().copied().collect();
        let removable: Vec<&str> = left
            .iter()
            .filter(|(k, v)| !used.contains(*k) || v.iter().all(|t| !left.contains_key(t)))
            .map(|(k, _)| *k)
            .collect();
        if removable.is_empty() {
            break;
        }
        for k in removable {
            left.remove(k);
        }
    }
    left.keys().map(|k| k.to_string()).collect()
}

#[test]
fn module_graph_has_no_cycle() {
    let stuck = on_cycle(&module_graph());
    assert!(stuck.is_empty(), "modules on a cycle: {stuck:?}");
}

#[test]
fn the_reference_parser_sees_grouped_and_plain_imports() {
    let code = "use crate::{home::Home, scope::Scope, self as x};\nlet k = crate::clock::now();\n$crate::nope";
    let refs = crate_refs(code);
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["clock", "home", "scope"]
    );
    assert!(crate_refs(&code_only("// crate::cli is not an import\n")).is_empty());
}

/// Issue 11: the archive commands of `src/cli/backup.rs` only parse, call an operation
/// (`ops::backup`) and print; opening archives, sealing, opening and rewrapping are the
/// operations layer's. (Still not covered: `backup list/get` and `inspect` read headers
/// through `store::inspect_file` here, and the demo and the fleet runner do some of it.)
#[test]
fn cli_backup_opens_no_archive_and_does_no_crypto() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli/backup.rs");
    let code = code_only(&std::fs::read_to_string(&path).unwrap());
    let forbidden = [
        "std::fs::File",
        "File::open",
        "open_archive",
        "AtomicFile",
        "envelope::open(",
        "envelope::verify(",
        "envelope::seal",
        "rewrap_file",
        "reencrypt(",
        "envelope::check_keyless",
        "seal_new",
        ".stage(",
        "ctx.audit(",
    ];
    let found: Vec<&str> = forbidden
        .iter()
        .copied()
        .filter(|f| code.contains(f))
        .collect();
    assert!(found.is_empty(), "src/cli/backup.rs does itself: {found:?}");
}

/// Source of `src/cli/`, file name -> code without comments and without its
/// `#[cfg(test)] mod tests` (tests may write temporary files and name `super::*`).
fn cli_sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files
        .into_iter()
        .map(|f| {
            let name = f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
            let text = without_tests(&std::fs::read_to_string(&f).unwrap());
            (name, code_only(&text))
        })
        .collect()
}

/// `src` without its `#[cfg(test)] mod tests { ... }` block (braces matched).
fn without_tests(src: &str) -> String {
    let Some(start) = src.find("#[cfg(test)]\nmod tests {") else {
        return src.to_string();
    };
    let open = start + src[start..].find('{').unwrap();
    let mut depth = 0;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return format!("{}{}", &src[..start], &src[open + i + 1..]);
                }
            }
            _ => {}
        }
    }
    src[..start].to_string()
}

/// `module -> sibling modules it uses`, among the modules of `src/cli/`: `super::x` and
/// `crate::cli::x` where `x` is another module of `src/cli/`. `mod.rs` (the root that
/// declares them, dispatches the commands and holds `Ctx`/`CliError`) is not a node:
/// every module uses its context, and it uses every command.
fn cli_graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = cli_sources();
    let modules: BTreeSet<String> = sources
        .keys()
        .filter(|f| *f != "mod.rs")
        .map(|f| f.trim_end_matches(".rs").to_string())
        .collect();
    let mut graph = BTreeMap::new();
    for (file, code) in &sources {
        let from = file.trim_end_matches(".rs").to_string();
        if !modules.contains(&from) {
            continue;
        }
        let mut uses: BTreeSet<String> = refs_after(code, "super::");
        uses.extend(refs_after(code, "crate::cli::"));
        uses.retain(|m| modules.contains(m) && *m != from);
        graph.insert(from, uses);
    }
    graph
}

/// Issue 11: the modules of `src/cli/` use each other in one direction only (a command
/// may use a leaf helper module, never one that uses it back). Print the graph with
/// `cargo test --test layering -- --nocapture`.
#[test]
fn cli_modules_have_no_import_cycle() {
    let graph = cli_graph();
    for (from, tos) in &graph {
        println!("cli::{from} -> {tos:?}");
    }
    assert!(
        graph.len() > 10,
        "the cli modules were not found: {graph:?}"
    );
    let stuck = on_cycle(&graph);
    assert!(
        stuck.is_empty(),
        "src/cli modules on an import cycle: {stuck:?}"
    );
}

#[test]
fn a_cli_import_cycle_is_caught() {
    let code = "use super::{Ctx, records::List, pull};\nlet x = crate::cli::remote::f();";
    assert_eq!(
        refs_after(code, "super::").into_iter().collect::<Vec<_>>(),
        ["Ctx", "pull", "records"]
    );
    assert_eq!(
        refs_after(code, "crate::cli::")
            .into_iter()
            .collect::<Vec<_>>(),
        ["remote"]
    );
    let mut g = BTreeMap::new();
    g.insert("backup".to_string(), BTreeSet::from(["pull".to_string()]));
    g.insert("pull".to_string(), BTreeSet::from(["remote".to_string()]));
    g.insert("remote".to_string(), BTreeSet::from(["backup".to_string()]));
    g.insert("records".to_string(), BTreeSet::new());
    assert_eq!(on_cycle(&g), ["backup", "pull", "remote"]);
    g.get_mut("remote").unwrap().clear();
    assert!(on_cycle(&g).is_empty());
}

/// What `src/cli/` must not do itself (issue 11): open or write files, call crypto, the
/// key or archive store, the audit log, or HTTP. Those are the operations layer's
/// (`src/ops/`); the CLI parses, resolves, calls an operation and prints.
const CLI_FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs::File", "opens a file"),
    ("File::open", "opens a file"),
    ("File::create", "creates a file"),
    ("OpenOptions", "opens a file"),
    ("fs::write", "writes a file"),
    ("fs::read", "reads a file or directory"),
    ("fs::create_dir", "creates a directory"),
    ("fs::remove", "removes a file"),
    ("fs::rename", "renames a file"),
    ("fs::copy", "copies a file"),
    ("AtomicFile", "writes a file"),
    ("write_atomic", "writes a file"),
    ("copy_atomic", "writes a file"),
    ("envelope::open", "decrypts"),
    ("envelope::verify", "decrypts"),
    ("envelope::seal", "encrypts"),
    ("envelope::inspect", "parses an archive"),
    ("envelope::rewrap", "rewraps"),
    ("envelope::reencrypt", "re-encrypts"),
    ("envelope::check_keyless", "reads an archive"),
    ("envelope::confirm_key", "unwraps a key"),
    ("OpeningKey", "handles key material"),
    ("SealOptions", "encrypts"),
    ("crate::aead", "calls crypto"),
    ("crate::kdf", "calls crypto"),
    ("crate::signing", "signs or hashes keys"),
    ("sha2::", "hashes"),
    ("ed25519", "signs"),
    ("chacha20", "calls crypto"),
    ("argon2::", "calls crypto"),
    ("KeyStore::new", "uses the key store"),
    ("ArchiveStore", "uses the archive store"),
    ("store::inspect_file", "parses an archive"),
    ("store::open_archive", "opens an archive"),
    ("AuditLog::open", "writes or reads the audit log"),
    (".audited(", "writes audit records"),
    ("AuditEvent", "writes audit records"),
    ("BmcSession", "talks HTTP to a BMC"),
    ("bmc::client::", "talks HTTP to a BMC"),
    ("Remote::connect", "talks HTTP to S3"),
    ("reqwest", "talks HTTP"),
    ("ureq", "talks HTTP"),
    ("hyper", "talks HTTP"),
    ("rustls", "talks TLS"),
    ("TcpStream", "opens a socket"),
];

/// Known exceptions: (file, forbidden pattern, why). Each must still be needed (a stale
/// one fails the test, so the list only shrinks). None is left: the man pages are written
/// by `ops::shell`, the simulator's backup file and the demo's check read by `ops::demo`.
const CLI_ALLOWED: &[(&str, &str, &str)] = &[];

/// Every (file, pattern) of `sources` that uses a forbidden pattern and is not allowed,
/// and every allowance that is no longer needed.
fn cli_violations(
    sources: &BTreeMap<String, String>,
    allowed: &[(&str, &str, &str)],
) -> (Vec<String>, Vec<String>) {
    let mut found = Vec::new();
    let mut used = BTreeSet::new();
    for (file, code) in sources {
        for (pat, what) in CLI_FORBIDDEN {
            if !code.contains(pat) {
                continue;
            }
            match allowed.iter().find(|(f, p, _)| f == file && p == pat) {
                Some(a) => {
                    used.insert((a.0, a.1));
                }
                None => found.push(format!("src/cli/{file} {what} itself ({pat})")),
            }
        }
    }
    let stale = allowed
        .iter()
        .filter(|(f, p, _)| !used.contains(&(*f, *p)))
        .map(|(f, p, why)| format!("src/cli/{f}: {p} ({why}) is allowed but no longer used"))
        .collect();
    (found, stale)
}

/// Issue 11: nothing under `src/cli/` opens or writes files, calls crypto, the stores,
/// the audit log or HTTP except through the operations layer (`CLI_ALLOWED` is empty).
#[test]
fn cli_does_no_io_crypto_or_http_itself() {
    let (found, stale) = cli_violations(&cli_sources(), CLI_ALLOWED);
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(
        stale.is_empty(),
        "remove from CLI_ALLOWED:\n{}",
        stale.join("\n")
    );
}

#[test]
fn a_forbidden_cli_call_is_caught() {
    let src = "#[cfg(test)]\nmod tests {\n fn t() { AtomicFile::x(); }\n}\nfn after() { let f = std::fs::File::open(p)?; } // envelope::open in a comment\n";
    let mut sources = BTreeMap::new();
    sources.insert("backup.rs".to_string(), code_only(&without_tests(src)));
    let (found, stale) = cli_violations(&sources, &[("backup.rs", "AtomicFile", "x")]);
    assert_eq!(
        found,
        [
            "src/cli/backup.rs opens a file itself (std::fs::File)",
            "src/cli/backup.rs opens a file itself (File::open)",
        ]
    );
    assert_eq!(
        stale,
        ["src/cli/backup.rs: AtomicFile (x) is allowed but no longer used"]
    );
}
