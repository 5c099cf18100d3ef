//! The repository stands on its own: every relative link in its Markdown files and doc
//! comments resolves to a file in it, and every document it names (an upper-case `.md` name) is
//! one of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the monitor package sits in the workspace")
        .to_path_buf()
}

/// Text files of the repository (sources, docs, deploy files), skipping build output.
fn text_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !(name.starts_with('.') && name != ".ci"
                    || name == "target"
                    || name == "node_modules")
                {
                    stack.push(path);
                }
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(
                ext,
                "md" | "rs" | "toml" | "yml" | "yaml" | "sh" | "html" | "conf"
            ) || name == "run"
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Relative link targets in Markdown (`[text](target)`), in Markdown files and in doc
/// comments alike; absolute URLs and in-page anchors are not files.
fn relative_links(text: &str) -> Vec<String> {
    let link = Regex::new(r"\]\(([^)\s]+)\)").expect("valid regex");
    link.captures_iter(text)
        .map(|c| c[1].to_owned())
        .filter(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"))
        .map(|t| t.split('#').next().unwrap_or_default().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

#[test]
fn every_relative_link_in_the_repository_resolves() {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in text_files(&root) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let base = file.parent().expect("a file has a folder");
        for target in relative_links(&text) {
            // Rust doc links to items (`[Foo](crate::x::Foo)`) are not paths.
            if file.extension().is_some_and(|e| e == "rs")
                && !target.contains('/')
                && !target.contains('.')
            {
                continue;
            }
            if file.extension().is_some_and(|e| e == "rs") && target.contains("::") {
                continue;
            }
            checked += 1;
            let resolved = if let Some(rest) = target.strip_prefix('/') {
                root.join(rest)
            } else {
                base.join(&target)
            };
            if !resolved.exists() {
                broken.push(format!(
                    "{}: {target}",
                    file.strip_prefix(&root).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        checked > 20,
        "the walk found only {checked} links: is the repository root right?"
    );
    assert!(
        broken.is_empty(),
        "links that do not resolve:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_document_the_repository_names_is_in_the_repository() {
    let root = repo_root();
    let files = text_files(&root);
    let own: BTreeSet<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for name in [
        "LOGFORMAT.md",
        "CONTRIBUTING.md",
        "ARCHITECTURE.md",
        "PRIVACY.md",
    ] {
        assert!(own.contains(name), "{name} is missing from the repository");
    }
    // Upper-case document names mentioned anywhere.
    let mention = Regex::new(r"\b([A-Z][A-Z_]{2,}\.md)\b").expect("valid regex");
    let mut missing = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for c in mention.captures_iter(&text) {
            if !own.contains(&c[1]) {
                missing.push(format!(
                    "{}: {}",
                    file.strip_prefix(&root).unwrap_or(file).display(),
                    &c[1]
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents named but not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_link_finder_sees_relative_links_and_skips_urls() {
    // `\x5d` is `]`: written escaped so this file itself holds no such link.
    let text = "[a\x5d(docs/A.md) [b\x5d(https://x.org/B.md) [c\x5d(#top) [d\x5d(../E.md#part) `[e\x5d(f)`";
    assert_eq!(relative_links(text), vec!["docs/A.md", "../E.md", "f"]);
}
