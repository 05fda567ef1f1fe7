//! The code map's claim in docs/architecture.md: modules depend on each other without a cycle,
//! at the level of each `src/` module and each actor. Read off the source: every `crate::x`
//! path outside comments and test modules is an edge from the module whose file it is in.
//! And its invariant table's: each rule names the code that enforces it and a test that proves
//! it, and both exist (`every_invariant_names_code_and_a_test_that_exist`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module a file belongs to: `src/meta/store.rs` -> `meta`, `src/actors/task/mod.rs` ->
/// `actors::task`, `src/layout.rs` -> `layout`.
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    match parts.as_slice() {
        [first, second, ..] if first == "actors" => format!("actors::{second}"),
        [first, ..] => first.clone(),
        [] => String::new(),
    }
}

/// The modules `text` names by `crate::` paths (an actor by `crate::actors::x`).
fn named(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let first = ident(rest);
            if let Some(actor) = rest.strip_prefix("actors::") {
                out.insert(format!("actors::{}", ident(actor)));
            } else if !first.is_empty() && first != "actors" {
                out.insert(first);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

fn graph_of_src() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        // A test module comes last in its file; what it uses is not a dependency of the module.
        let code = text
            .find("#[cfg(test)]\nmod ")
            .or_else(|| text.find("#[cfg(test)]\npub(crate) mod "))
            .map_or(&text[..], |at| &text[..at]);
        let from = module_of(file.strip_prefix(&src).expect("under src"));
        let edges = graph.entry(from.clone()).or_default();
        edges.extend(named(code).into_iter().filter(|to| *to != from));
    }
    graph
}

#[test]
fn modules_depend_on_each_other_without_a_cycle() {
    let graph = graph_of_src();
    assert!(graph.len() > 20 && graph["api"].contains("actors::supervisor"), "the graph was read: {graph:?}");
    assert_eq!(a_cycle(&graph), None, "a dependency cycle between modules (docs/architecture.md, code map)");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph = graph_of_src();
    // What the code had before the shared types moved down: meta used the relay's hash type.
    graph.get_mut("meta").expect("meta").insert("relay".into());
    let cycle = a_cycle(&graph).expect("a cycle through meta and relay");
    assert!(cycle.contains(&"meta".to_string()) && cycle.contains(&"relay".to_string()), "{cycle:?}");
    assert_eq!(cycle.first(), cycle.last(), "a closed path: {cycle:?}");
}

/// The test functions `text` defines: a `fn` after a `#[test]` attribute (or an async runtime's
/// `#[...::test]`), with other attributes and comments allowed between.
fn test_fns(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut armed = false;
    for line in text.lines().map(str::trim_start) {
        if line.starts_with("#[test]") || (line.starts_with("#[") && line.contains("::test")) {
            armed = true;
        } else if armed && !(line.starts_with("#[") || line.starts_with("//")) {
            let name =
                line.strip_prefix("async ").unwrap_or(line).strip_prefix("fn ").map(|rest| {
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
                });
            out.extend(name.filter(|n| !n.is_empty()));
            armed = false;
        }
    }
    out
}

/// Every identifier in `text`.
fn identifiers(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        .map(str::to_string)
        .collect()
}

/// What the tree holds: every test function's name and every identifier, from `src/`,
/// `tests/`, `benches/` and `fuzz/`.
struct Tree {
    root: PathBuf,
    tests: BTreeSet<String>,
    identifiers: BTreeSet<String>,
}

fn tree() -> Tree {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "fuzz"] {
        let dir = root.join(dir);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    let (mut tests, mut identifiers_seen) = (BTreeSet::new(), BTreeSet::new());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        tests.extend(test_fns(&text));
        identifiers_seen.extend(identifiers(&text));
    }
    Tree { root, tests, identifiers: identifiers_seen }
}

/// The rows of docs/architecture.md's invariant table: (the invariant, where it is enforced and
/// proved).
fn invariant_rows(doc: &str) -> Vec<(String, String)> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with("| invariant | enforced in |")).skip(2);
    let mut rows = Vec::new();
    while let Some(line) = lines.next().filter(|l| l.starts_with("| ")) {
        let body = line.trim_end().trim_end_matches('|').trim_end();
        let (rule, enforced) = body.rsplit_once(" | ").unwrap_or((body, ""));
        rows.push((rule.trim_start_matches("| ").to_string(), enforced.to_string()));
    }
    rows
}

/// Checks one row's "enforced in" cell: every code path it names in backquotes (`Type::method`,
/// `module::function`, `f()`) ends in an identifier the tree has, every file it names exists, no
/// name is cut short (`...`), and at least one name is a test function that exists.
fn check_enforced(cell: &str, tree: &Tree) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut names_a_test = false;
    let is_path =
        |t: &str| t.split("::").all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    for token in cell.split('`').skip(1).step_by(2) {
        let token = token.trim().trim_end_matches("()");
        if token.contains("...") || token.contains('…') {
            problems.push(format!("`{token}` is cut short: name it whole"));
        } else if token.ends_with(".rs") || token.ends_with(".md") || token.contains('/') {
            if token.ends_with(".rs") && !tree.root.join(token).exists() {
                problems.push(format!("`{token}` does not exist"));
            }
        } else if is_path(token) {
            let last = token.rsplit("::").next().unwrap_or(token);
            if tree.tests.contains(last) {
                names_a_test = true;
            } else if token.contains("::") && !tree.identifiers.contains(last) {
                problems.push(format!("`{token}`: no `{last}` in the tree"));
            }
        }
    }
    if !names_a_test {
        problems.push("names no test that exists".to_string());
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// docs/architecture.md names, for each invariant, the function that enforces it and the test
/// that proves it: every row names a test that exists, and no code path it names is gone.
#[test]
fn every_invariant_names_code_and_a_test_that_exist() {
    let tree = tree();
    let doc = std::fs::read_to_string(tree.root.join("docs/architecture.md")).expect("read docs/architecture.md");
    let rows = invariant_rows(&doc);
    assert!(rows.len() > 50, "the invariant table was read: {} rows", rows.len());
    assert!(tree.tests.len() > 500 && tree.tests.contains("modules_depend_on_each_other_without_a_cycle"));
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|(rule, enforced)| check_enforced(enforced, &tree).err().map(|e| format!("- {rule}\n  {e}")))
        .collect();
    assert!(wrong.is_empty(), "docs/architecture.md's invariant table:\n{}", wrong.join("\n"));
}

#[test]
fn the_invariant_check_finds_what_is_missing() {
    let tree = tree();
    let ok = "`Writer::write_batch`; `overview::tests::a_stalled_writer_needs_a_look_first_and_is_counted`";
    assert_eq!(check_enforced(ok, &tree), Ok(()));
    // Names nobody wrote, made here (written out, this file would hold them).
    let (gone_test, gone_fn) = (["a", "test", "nobody", "wrote"].join("_"), ["no", "such", "method"].join("_"));
    let a_test = "`stall::tests::stalled_work_is_said_once_while_it_lasts_and_once_when_it_returns`";
    let cases = [
        ("`Writer::write_batch` (boundary rules below)".to_string(), "names no test".to_string()),
        (format!("`Writer::write_batch`; `tests::{gone_test}`"), format!("no `{gone_test}` in the tree")),
        (format!("`Writer::{gone_fn}`; {a_test}"), format!("no `{gone_fn}`")),
        (format!("`package::the_deb_installs_...`; {a_test}"), "cut short".to_string()),
        (format!("`tests/it/{gone_fn}.rs`; {a_test}"), "does not exist".to_string()),
    ];
    for (cell, want) in &cases {
        let got = check_enforced(cell, &tree);
        assert!(got.as_ref().is_err_and(|e| e.contains(want.as_str())), "{cell}: {got:?}");
    }
    let t = test_fns("#[test]\n/// doc\n#[ignore]\nfn a() {}\n#[actix_rt::test]\nasync fn b() {}\nfn c() {}\n");
    assert_eq!(t, ["a", "b"].map(String::from).into());
}
