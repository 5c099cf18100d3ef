//! docs/CONFIGURATION.md and deploy/monitor.example.toml against the binary; the documentation's links.

use super::*;

#[test]
fn example_config_is_the_printed_one() {
    let out = monitor(&["--print-example-config"], &[]);
    assert!(out.status.success());
    let printed = stdout(&out);
    let shipped = read("deploy/monitor.example.toml");
    assert!(
        printed == shipped,
        "deploy/monitor.example.toml differs from `truebit-monitor --print-example-config`; \
         regenerate it:\n  cargo run -q -p truebit-monitor -- --print-example-config > \
         deploy/monitor.example.toml"
    );
    // And the binary accepts it as a config file.
    let dir = support::tempdir();
    let db = dir.path().join("m.db").display().to_string();
    let out = monitor(
        &["--config", "deploy/monitor.example.toml", "api-key", "list"],
        &[("DB_PATH", &db)],
    );
    assert!(
        out.status.success(),
        "the example config is rejected: {}",
        stderr(&out)
    );
}

/// A row of the options table in docs/CONFIGURATION.md.
#[derive(Debug)]
struct DocRow {
    env: String,
    flag: String,
    toml: String,
    default: String,
}

fn doc_rows(doc: &str) -> Vec<DocRow> {
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let env = cells.first()?.trim_matches('`');
            let is_env = !env.is_empty()
                && env
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !is_env || cells.len() < 5 {
                return None;
            }
            Some(DocRow {
                env: env.to_owned(),
                flag: cells[1].to_owned(),
                toml: cells[2].to_owned(),
                default: cells[3].to_owned(),
            })
        })
        .collect()
}

/// `[http] host` -> ("http", "host"); `db_path` -> ("", "db_path"); `—` -> None.
fn doc_toml_key(cell: &str) -> Option<(String, String)> {
    let cell = cell.replace('`', "");
    let cell = cell.trim();
    if cell.is_empty() || cell == "—" || cell == "-" {
        return None;
    }
    match cell.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((section, key)) => Some((section.trim().to_owned(), key.trim().to_owned())),
        None => Some((String::new(), cell.to_owned())),
    }
}

#[test]
fn configuration_doc_lists_every_option_of_the_binary() {
    let doc = read("docs/CONFIGURATION.md");
    let rows = doc_rows(&doc);
    let options = cli_options();
    let help: BTreeMap<String, &CliOption> = options
        .iter()
        .filter_map(|o| o.env.clone().map(|e| (e, o)))
        .collect();
    let documented: BTreeSet<String> = rows.iter().map(|r| r.env.clone()).collect();
    let missing: Vec<String> = help
        .iter()
        .filter(|(env, _)| !documented.contains(*env))
        .map(|(env, o)| {
            format!(
                "| `{env}` | `{}` | ? | {} | ? |",
                o.flag,
                o.default
                    .as_deref()
                    .map(|d| format!("`{d}`"))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/CONFIGURATION.md lacks options that `truebit-monitor --help` has; add rows:\n{}",
        missing.join("\n")
    );
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|e| !help.contains_key(*e))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/CONFIGURATION.md documents variables the binary does not read: {unknown:?}"
    );
    assert_eq!(
        rows.len(),
        documented.len(),
        "a variable is documented twice"
    );

    let keys = toml_keys();
    let mut seen_keys: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &rows {
        let option = help[&row.env];
        assert!(
            row.flag.contains(&format!("`{}`", option.flag)),
            "docs/CONFIGURATION.md: {} is set with the flag {}, not {}",
            row.env,
            option.flag,
            row.flag
        );
        if let Some(default) = &option.default {
            assert!(
                row.default.contains(default.as_str()),
                "docs/CONFIGURATION.md: the default of {} is `{default}` (--help), the doc says {:?}",
                row.env,
                row.default
            );
        }
        if let Some((section, key)) = doc_toml_key(&row.toml) {
            let known = keys.get(&section).unwrap_or_else(|| {
                panic!(
                    "docs/CONFIGURATION.md: {}: there is no [{section}] table",
                    row.env
                )
            });
            assert!(
                known.contains(&key),
                "docs/CONFIGURATION.md: {}: the config file has no key {key:?} in [{section}] \
                 (it has {known:?})",
                row.env
            );
            // The names follow one rule; a deliberate exception would be listed here.
            let expected = row.env.to_lowercase();
            let expected = expected
                .strip_prefix(&format!("{section}_"))
                .unwrap_or(&expected);
            assert_eq!(
                key, expected,
                "{}: the TOML key does not follow its name",
                row.env
            );
            seen_keys.insert((section, key));
        }
    }
    let all_keys: BTreeSet<(String, String)> = keys
        .iter()
        .flat_map(|(s, ks)| ks.iter().map(move |k| (s.clone(), k.clone())))
        .collect();
    let undocumented: Vec<_> = all_keys.difference(&seen_keys).collect();
    assert!(
        undocumented.is_empty(),
        "docs/CONFIGURATION.md: TOML keys without a row: {undocumented:?}"
    );

    // Every subcommand is explained.
    let mut commands: Vec<String> = subcommands(&[]);
    for parent in ["password", "api-key"] {
        if commands.iter().any(|c| c == parent) {
            commands.extend(
                subcommands(&[parent])
                    .into_iter()
                    .map(|c| format!("{parent} {c}")),
            );
        }
    }
    for command in commands {
        assert!(
            doc.contains(&format!("truebit-monitor {command}")),
            "docs/CONFIGURATION.md does not explain `truebit-monitor {command}`"
        );
    }
}

#[test]
fn documentation_links_point_to_files_that_exist() {
    for file in [
        "README.md",
        "docs/CONFIGURATION.md",
        "docs/OPERATIONS.md",
        "docs/PRIVACY.md",
        "docs/FEDERATION.md",
    ] {
        let text = read(file);
        let dir = root().join(file);
        let dir = dir.parent().expect("a file has a folder");
        for target in markdown_links(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            assert!(
                dir.join(path).exists(),
                "{file} links to {target}, which does not exist"
            );
        }
    }
}

/// The targets of `[text](target)` links.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            links.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    links
}

/// Variables set by shells and platforms for their own use cannot silently change what the
/// monitor binds to or follows: `TBM_<NAME>` wins over `<NAME>` for every setting, a
/// bare `HOST` that is not an address (zsh's machine name) is set aside with a warning,
/// and the prefixed one is validated as any setting is.
#[test]
fn prefixed_variables_win_and_a_shells_host_is_set_aside() {
    let dir = support::tempdir();
    let wanted = dir.path().join("wanted.db");
    let other = dir.path().join("other.db");
    let (wanted_s, other_s) = (wanted.display().to_string(), other.display().to_string());

    let out = monitor(
        &["api-key", "create", "ci"],
        &[("TBM_DB_PATH", &wanted_s), ("DB_PATH", &other_s)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wanted.exists(), "TBM_DB_PATH is used");
    assert!(!other.exists(), "DB_PATH is not");

    let out = monitor(
        &["api-key", "list"],
        &[("DB_PATH", &wanted_s), ("HOST", "my-laptop.local")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("HOST=\"my-laptop.local\" in the environment is not an address")
            && err.contains("ignored; set TBM_HOST"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes in a pipe: {err:?}"
    );
    assert!(stdout(&out).contains("ci"), "{}", stdout(&out));

    let out = monitor(
        &["api-key", "list"],
        &[("DB_PATH", &wanted_s), ("TBM_HOST", "my-laptop.local")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid HOST"), "{}", stderr(&out));

    // A CONTAINER_NAME from the platform is named where it matters (`run`), not for a
    // command that does not follow the container.
    let out = monitor(
        &["api-key", "list"],
        &[("DB_PATH", &wanted_s), ("CONTAINER_NAME", "uid-abc")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}
