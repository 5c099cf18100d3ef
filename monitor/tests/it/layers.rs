//! The import graph of the workspace's crates: no module imports another that imports it
//! back (directly or around a circle), and the monitor's lower layers (model, parser,
//! store) never reach up into the parts built on them. ARCHITECTURE.md draws this; the
//! test keeps it true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the monitor package sits in the workspace")
        .to_path_buf()
}

/// The crate's source files below `src`, as (module path, file).
fn modules(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(src)
                    .expect("below src")
                    .with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                    parts.clear();
                }
                out.push((parts, path));
            }
        }
    }
    out
}

/// Which modules each module names through `crate::…` or `super::…` (unit tests left out:
/// they may import what they like). A name resolves to the longest module it starts with.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let paths = Regex::new(r"(?:\buse\s+|[^:\w])((?:crate|super)(?:::\w+)+)").expect("regex");
    let comment = Regex::new(r"//[^\n]*").expect("regex");
    let files = modules(src);
    let known: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(at) => &text[..at],
            None => &text[..],
        };
        let text = comment.replace_all(text, "");
        let mut deps = BTreeSet::new();
        for found in paths.captures_iter(&text) {
            let words: Vec<&str> = found[1].split("::").collect();
            let mut target: Vec<String> = Vec::new();
            let mut rest = &words[..];
            if words[0] == "crate" {
                rest = &words[1..];
            } else {
                target = module.clone();
                while rest.first() == Some(&"super") {
                    target.pop();
                    rest = &rest[1..];
                }
            }
            target.extend(rest.iter().map(|w| w.to_string()));
            while !target.is_empty() && !known.contains(&target) {
                target.pop();
            }
            if !target.is_empty() && &target != module {
                deps.insert(target.join("::"));
            }
        }
        graph.insert(module.join("::"), deps);
    }
    graph
}

/// One circle in `graph`, if there is any (depth-first search).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let start = path.iter().position(|p| p == next).expect("on the path");
                    let mut circle = path[start..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(circle) = visit(next, graph, marks, path) {
                        return Some(circle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str()) {
            if let Some(circle) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(circle);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = repo_root();
    for krate in [
        "monitor",
        "aggregator",
        "protocol",
        "web",
        "clock",
        "nats-auth",
    ] {
        let graph = import_graph(&root.join(krate).join("src"));
        assert!(
            graph.len() > 1 || krate != "monitor",
            "the monitor has modules"
        );
        if let Some(circle) = find_circle(&graph) {
            panic!("{krate}: import circle {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_monitors_lower_layers_import_nothing_above_them() {
    let graph = import_graph(&repo_root().join("monitor/src"));
    // The top-level modules each lower layer may use; everything else is above it.
    let allowed: [(&str, &[&str]); 4] = [
        ("model", &[]),
        ("setting", &[]),
        ("parser", &["model"]),
        ("store", &["model"]),
    ];
    for (layer, may_use) in allowed {
        for (module, deps) in &graph {
            if module.split("::").next() != Some(layer) {
                continue;
            }
            for dep in deps {
                let top = dep.split("::").next().unwrap_or_default();
                assert!(
                    top == layer || may_use.contains(&top),
                    "{module} imports {dep}: {layer} may only use {may_use:?}"
                );
            }
        }
    }
}

#[test]
fn the_graph_sees_crate_and_super_paths_and_finds_a_circle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").expect("write");
    std::fs::write(src.join("a/mod.rs"), "mod x;\nuse super::b::Thing;\n").expect("write");
    std::fs::write(
        src.join("a/x.rs"),
        "// use crate::b; is a comment\nfn f() { crate::b::g() }\n",
    )
    .expect("write");
    std::fs::write(
        src.join("b.rs"),
        "use crate::a::x::Y;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    )
    .expect("write");
    let graph = import_graph(src);
    let deps = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(deps("a"), vec!["b"]);
    assert_eq!(deps("a::x"), vec!["b"]);
    assert_eq!(deps("b"), vec!["a::x"]);
    assert_eq!(
        find_circle(&graph),
        Some(vec!["b".into(), "a::x".into(), "b".into()])
    );
}
