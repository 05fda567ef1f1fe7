//! The code map's claim in docs/architecture.md: modules depend on each other without a cycle,
//! at the level of each `src/` module and each actor. Read off the source: every `crate::x`
//! path outside comments and test modules is an edge from the module whose file it is in.

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
