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
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or an identifier ending in "crate"
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

#[test]
fn module_graph_has_no_cycle() {
    let graph = module_graph();
    // Kahn's algorithm: whatever cannot be ordered is on a cycle.
    let mut indeg: BTreeMap<&str, usize> = graph.keys().map(|k| (k.as_str(), 0)).collect();
    for tos in graph.values() {
        for t in tos {
            *indeg.entry(t.as_str()).or_default() += 1;
        }
    }
    let mut ready: Vec<&str> = indeg
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut seen = 0;
    while let Some(n) = ready.pop() {
        seen += 1;
        for t in graph.get(n).into_iter().flatten() {
            let d = indeg.get_mut(t.as_str()).unwrap();
            *d -= 1;
            if *d == 0 {
                ready.push(t);
            }
        }
    }
    let stuck: Vec<_> = indeg
        .iter()
        .filter(|(_, d)| **d > 0)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(seen, indeg.len(), "modules on a cycle: {stuck:?}");
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
