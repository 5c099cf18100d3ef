//! The deployment files and the operator documentation, tested rather than only written
//! (issue 7). Everything is compared with what the code says, so that a change on either
//! side fails here:
//!
//! - the environment names, flags, defaults and TOML keys come from the binary itself
//!   (`truebit-monitor --help`, and the TOML parser's list of expected keys), and
//!   docs/CONFIGURATION.md, the compose files and the systemd unit must agree with them;
//! - `deploy/monitor.example.toml` is `--print-example-config`, byte for byte;
//! - the compose files are parsed: referenced files, build contexts, Dockerfiles,
//!   volumes, networks, published ports, the Docker API proxy's rules (against the calls
//!   the Docker source makes), Traefik's routes; the monitor's environment is handed to the
//!   real binary, which must accept it;
//! - the Dockerfiles pass hadolint and the project's own rules; the health check script
//!   is run against a real monitor;
//! - `deploy/nats-server.conf` runs in a real nats-server (test certificates from the
//!   openssl CLI) and the monitor and aggregator users are held to their subjects;
//! - the systemd units pass `systemd-analyze verify` and its offline security review;
//! - a read-only bind of the Docker socket still lets a client create a container (the
//!   claim docs/OPERATIONS.md makes), against the private dockerd.
//!
//! Needs (installed by scripts/test): nats-server, openssl, hadolint, systemd-analyze,
//! and for the last test the private dockerd and root (unshare, mount).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

use crate::support;

// ------------------------------------------------------------------------------------------
// The repository and the binary
// ------------------------------------------------------------------------------------------

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the monitor package sits in the workspace")
        .to_owned()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Runs the monitor binary with exactly `env` (and PATH) in its environment.
fn monitor(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("the monitor binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One option of `truebit-monitor --help`.
#[derive(Clone, Debug)]
struct CliOption {
    /// `--db`
    flag: String,
    /// `DB_PATH`
    env: Option<String>,
    /// The text of `[default: …]`, if the help names one.
    default: Option<String>,
}

/// The options of `truebit-monitor --help` (global ones: every subcommand has them too).
fn cli_options() -> Vec<CliOption> {
    let out = monitor(&["--help"], &[]);
    assert!(out.status.success(), "--help failed: {}", stderr(&out));
    parse_help_options(&stdout(&out))
}

fn parse_help_options(help: &str) -> Vec<CliOption> {
    let mut options: Vec<CliOption> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.starts_with("Options:") {
            in_options = true;
            continue;
        }
        if !in_options {
            continue;
        }
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if indent < 10 && text.starts_with('-') {
            let flag = text
                .split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .find(|w| w.starts_with("--"))
                .unwrap_or_else(|| panic!("an option without a long flag: {line:?}"));
            options.push(CliOption {
                flag: flag.to_owned(),
                env: None,
                default: None,
            });
            continue;
        }
        let Some(current) = options.last_mut() else {
            continue;
        };
        if let Some(rest) = text.strip_prefix("[env: ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            current.env = Some(name);
        }
        if let Some(start) = text.find("[default: ") {
            let rest = &text[start + "[default: ".len()..];
            if let Some(end) = rest.find(']') {
                current.default = Some(rest[..end].to_owned());
            }
        }
    }
    assert!(options.len() > 5, "no options found in --help:\n{help}");
    options
}

/// Every environment variable the monitor reads, from its own `--help`.
fn monitor_env_names() -> BTreeSet<String> {
    let names: BTreeSet<String> = cli_options().into_iter().filter_map(|o| o.env).collect();
    for expected in ["DB_PATH", "DOCKER_HOST", "CONTAINER_NAME", "PORT"] {
        assert!(
            names.contains(expected),
            "{expected} missing from --help: {names:?}"
        );
    }
    names
}

/// The subcommands in the `Commands:` section of `truebit-monitor [SUB…] --help`.
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let out = monitor(&args, &[]);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The TOML keys the config file accepts, per table ("" = top level), asked from the
/// binary: an unknown key makes the parser list the expected ones.
fn toml_keys() -> BTreeMap<String, BTreeSet<String>> {
    let dir = support::tempdir();
    let expected_keys = |section: &str| -> Result<BTreeSet<String>, String> {
        let file = dir.path().join("probe.toml");
        let text = if section.is_empty() {
            "zz_probe = 1\n".to_owned()
        } else {
            format!("[{section}]\nzz_probe = 1\n")
        };
        std::fs::write(&file, text).expect("write probe");
        let file = file.display().to_string();
        let out = monitor(&["--config", &file, "api-key", "list"], &[]);
        let err = stderr(&out);
        match err.split_once("expected one of ") {
            Some((_, list)) => Ok(list
                .split(',')
                .map(|k| k.trim().trim_matches('`').to_owned())
                .filter(|k| !k.is_empty())
                .collect()),
            None => Err(err),
        }
    };
    let top = expected_keys("").expect("the top level lists its keys");
    let mut keys = BTreeMap::new();
    let mut plain = BTreeSet::new();
    for key in &top {
        // A table answers with its own key list; a plain key rejects a table.
        match expected_keys(key) {
            Ok(inner) => {
                keys.insert(key.clone(), inner);
            }
            Err(_) => {
                plain.insert(key.clone());
            }
        }
    }
    keys.insert(String::new(), plain);
    keys
}

// ------------------------------------------------------------------------------------------
// docs/CONFIGURATION.md and the example config
// ------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------
// Compose files
// ------------------------------------------------------------------------------------------

/// A compose file, parsed, with `${…}` interpolated from `vars` as `docker compose` does.
struct Compose {
    /// Repository-relative path.
    file: String,
    /// The compose file's folder (relative paths in it start there).
    dir: PathBuf,
    doc: Value,
    /// Variables the file refuses to start without (`${VAR:?message}`).
    required: BTreeSet<String>,
}

impl Compose {
    fn load(file: &str, vars: &[(&str, &str)]) -> Compose {
        let raw: Value = serde_yaml::from_str(&read(file))
            .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
        let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
        let mut required = BTreeSet::new();
        let doc = interpolate_value(raw, &vars, &mut required, file);
        let dir = root()
            .join(file)
            .parent()
            .expect("a file has a folder")
            .to_owned();
        Compose {
            file: file.to_owned(),
            dir,
            doc,
            required,
        }
    }

    fn services(&self) -> Vec<(String, &Value)> {
        let services = self.doc["services"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{}: no services", self.file));
        services
            .iter()
            .map(|(k, v)| (k.as_str().expect("service names are strings").to_owned(), v))
            .collect()
    }

    fn service(&self, name: &str) -> &Value {
        let s = &self.doc["services"][name];
        assert!(s.is_mapping(), "{}: no service {name}", self.file);
        s
    }

    /// The service built from `deploy/<dockerfile>`, by name.
    fn built_from(&self, dockerfile: &str) -> Option<(String, &Value)> {
        self.services().into_iter().find(|(_, s)| {
            self.build(s)
                .is_some_and(|(_, df)| df.ends_with(Path::new("deploy").join(dockerfile)))
        })
    }

    /// (context, Dockerfile) of a service that is built here, both absolute.
    fn build(&self, service: &Value) -> Option<(PathBuf, PathBuf)> {
        let build = service.get("build")?;
        let (context, dockerfile) = match build {
            Value::String(c) => (c.clone(), "Dockerfile".to_owned()),
            map => (
                map["context"].as_str().unwrap_or(".").to_owned(),
                map["dockerfile"]
                    .as_str()
                    .unwrap_or("Dockerfile")
                    .to_owned(),
            ),
        };
        let context = normalize(&self.dir.join(context));
        let dockerfile = normalize(&context.join(dockerfile));
        Some((context, dockerfile))
    }

    fn environment(&self, service: &Value) -> BTreeMap<String, String> {
        match service.get("environment") {
            None => BTreeMap::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, v)| {
                    let k = k.as_str().expect("env names are strings").to_owned();
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => String::new(),
                        other => panic!("{}: {k} has a non-scalar value {other:?}", self.file),
                    };
                    (k, v)
                })
                .collect(),
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|item| {
                    let item = item.as_str().expect("KEY=VALUE");
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
            Some(other) => panic!("{}: environment is {other:?}", self.file),
        }
    }

    fn strings(&self, service: &Value, key: &str) -> Vec<String> {
        match service.get(key) {
            None => Vec::new(),
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("{}: {key} holds {other:?}", self.file),
                })
                .collect(),
            Some(other) => panic!("{}: {key} is {other:?}", self.file),
        }
    }

    /// The service's networks (a list or a map), `default` when none is named.
    fn networks(&self, service: &Value) -> Vec<String> {
        match service.get("networks") {
            None => vec!["default".into()],
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|n| n.as_str().expect("network names").to_owned())
                .collect(),
            Some(Value::Mapping(m)) => m
                .keys()
                .map(|n| n.as_str().expect("network names").to_owned())
                .collect(),
            Some(other) => panic!("{}: networks is {other:?}", self.file),
        }
    }

    /// Published ports (host ip, host port, container port); short syntax only.
    fn ports(&self, service: &Value) -> Vec<(Option<String>, String, u16)> {
        self.strings(service, "ports")
            .iter()
            .map(|p| {
                let p = p.split('/').next().unwrap_or(p);
                let parts: Vec<&str> = p.split(':').collect();
                let (ip, host, container) = match parts.as_slice() {
                    [ip, host, container] => (Some((*ip).to_owned()), *host, *container),
                    [host, container] => (None, *host, *container),
                    [container] => (None, "", *container),
                    _ => panic!("{}: cannot read the port {p:?}", self.file),
                };
                let container = container
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: container port of {p:?}", self.file));
                (ip, host.to_owned(), container)
            })
            .collect()
    }

    /// Volumes as (source, target, read-only); short syntax only.
    fn volumes(&self, service: &Value) -> Vec<(String, String, bool)> {
        self.strings(service, "volumes")
            .iter()
            .map(|v| {
                let parts: Vec<&str> = v.split(':').collect();
                match parts.as_slice() {
                    [source, target] => ((*source).to_owned(), (*target).to_owned(), false),
                    [source, target, mode] => (
                        (*source).to_owned(),
                        (*target).to_owned(),
                        mode.split(',').any(|m| m == "ro"),
                    ),
                    _ => panic!("{}: cannot read the volume {v:?}", self.file),
                }
            })
            .collect()
    }

    fn top_level_names(&self, key: &str) -> BTreeSet<String> {
        self.doc
            .get(key)
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `a/./b/../c` -> `a/c` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn interpolate_value(
    value: Value,
    vars: &BTreeMap<&str, &str>,
    required: &mut BTreeSet<String>,
    file: &str,
) -> Value {
    match value {
        Value::String(s) => Value::String(interpolate(&s, vars, required, file)),
        Value::Sequence(list) => Value::Sequence(
            list.into_iter()
                .map(|v| interpolate_value(v, vars, required, file))
                .collect(),
        ),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| (k, interpolate_value(v, vars, required, file)))
                .collect(),
        ),
        other => other,
    }
}

/// Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?message}`, `${VAR?message}` (a missing required variable fails the test).
fn interpolate(
    s: &str,
    vars: &BTreeMap<&str, &str>,
    required: &mut BTreeSet<String>,
    file: &str,
) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .unwrap_or_else(|| panic!("{file}: unclosed ${{ in {s:?}"));
            let expr = &r[..end];
            rest = &r[end + 1..];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            let value = vars.get(name).copied();
            let set = value.is_some_and(|v| !v.is_empty());
            let resolved = if let Some(default) = op.strip_prefix(":-") {
                if set {
                    value.unwrap_or_default()
                } else {
                    default
                }
                .to_owned()
            } else if let Some(default) = op.strip_prefix('-') {
                value.unwrap_or(default).to_owned()
            } else if op.starts_with(":?") || op.starts_with('?') {
                required.insert(name.to_owned());
                let ok = if op.starts_with(':') {
                    set
                } else {
                    value.is_some()
                };
                assert!(
                    ok,
                    "{file}: {name} is required ({op}) but the test did not set it"
                );
                value.unwrap_or_default().to_owned()
            } else if op.is_empty() {
                value.unwrap_or_default().to_owned()
            } else {
                panic!("{file}: cannot interpolate ${{{expr}}}")
            };
            out.push_str(&resolved);
        } else {
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, r) = rest.split_at(name_len);
            assert!(!name.is_empty(), "{file}: a lone $ in {s:?} (write $$)");
            out.push_str(vars.get(name).copied().unwrap_or_default());
            rest = r;
        }
    }
    out.push_str(rest);
    out
}

/// Switches of the Docker API proxy (ghcr.io/tecnativa/docker-socket-proxy). Every one is
/// spelled out in the compose files, so a changed default of the image opens nothing.
const PROXY_SWITCHES: &[&str] = &[
    "ALLOW_ARCHIVE",
    "ALLOW_ATTACH",
    "ALLOW_EXEC",
    "ALLOW_EXPORT",
    "ALLOW_KILL",
    "ALLOW_LOGS",
    "ALLOW_PAUSE",
    "ALLOW_RESTARTS",
    "ALLOW_START",
    "ALLOW_STOP",
    "ALLOW_UNPAUSE",
    "AUTH",
    "BUILD",
    "COMMIT",
    "CONFIGS",
    "CONTAINERS",
    "DELETE",
    "DISTRIBUTION",
    "EVENTS",
    "EXEC",
    "GRPC",
    "IMAGES",
    "INFO",
    "NETWORKS",
    "NODES",
    "PATCH",
    "PING",
    "PLUGINS",
    "POST",
    "PUT",
    "SECRETS",
    "SERVICES",
    "SESSION",
    "SWARM",
    "SYSTEM",
    "TASKS",
    "VERSION",
    "VOLUMES",
];

/// The Docker Engine calls (bollard methods) the monitor may make, and the proxy switches
/// each needs. Only GET requests: POST stays 0.
const DOCKER_CALLS: &[(&str, &[&str])] = &[
    ("version", &["VERSION"]),
    ("ping", &["PING"]),
    ("list_containers", &["CONTAINERS"]),
    ("inspect_container", &["CONTAINERS"]),
    ("logs", &["CONTAINERS", "ALLOW_LOGS"]),
    ("events", &["EVENTS"]),
];

/// Switches that are on although the monitor does not need them (harmless: a liveness
/// answer without data).
const PROXY_EXTRAS: &[&str] = &["PING"];

/// The bollard methods `source::docker` calls on its client: `docker.<method>(`.
fn docker_calls_in_source() -> BTreeSet<String> {
    let text = read("monitor/src/source/docker.rs");
    let mut calls = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("docker") {
        let before = text.len() - rest.len() + i;
        rest = &rest[i + "docker".len()..];
        // `docker` as a whole word (a variable), followed by `.method(`.
        let prev = text[..before].chars().next_back();
        if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix('.') else {
            continue;
        };
        let after = after.trim_start();
        let method: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !method.is_empty() && after[method.len()..].trim_start().starts_with(['(', ':']) {
            calls.insert(method);
        }
    }
    assert!(
        calls.contains("logs") && calls.contains("events"),
        "cannot find the Docker calls in monitor/src/source/docker.rs: {calls:?}"
    );
    calls
}

/// The Docker API proxy of a compose file: its rules allow exactly what the monitor calls.
fn check_docker_proxy(compose: &Compose, monitor_service: &str) {
    let monitor = compose.service(monitor_service);
    let env = compose.environment(monitor);
    let docker_host = env
        .get("DOCKER_HOST")
        .unwrap_or_else(|| panic!("{}: the monitor has no DOCKER_HOST", compose.file));
    let (proxy_name, port) = docker_host
        .strip_prefix("tcp://")
        .and_then(|a| a.split_once(':'))
        .unwrap_or_else(|| {
            panic!(
                "{}: DOCKER_HOST={docker_host} is not tcp://proxy:port",
                compose.file
            )
        });
    assert_eq!(port, "2375", "{}: the proxy listens on 2375", compose.file);
    let proxy = compose.service(proxy_name);
    let image = proxy["image"].as_str().unwrap_or_default();
    assert!(
        image.starts_with("ghcr.io/tecnativa/docker-socket-proxy:")
            || image.starts_with("tecnativa/docker-socket-proxy:"),
        "{}: {proxy_name} is not the Docker API proxy: {image}",
        compose.file
    );

    // The switches: all spelled out, only 0 or 1, and on exactly where needed.
    let switches = compose.environment(proxy);
    let known: BTreeSet<&str> = PROXY_SWITCHES.iter().copied().collect();
    for (name, value) in &switches {
        assert!(
            known.contains(name.as_str()),
            "{}: {proxy_name} sets {name}, which the proxy does not know",
            compose.file
        );
        assert!(
            value == "0" || value == "1",
            "{}: {name}={value}: use 0 or 1",
            compose.file
        );
    }
    let unset: Vec<&&str> = PROXY_SWITCHES
        .iter()
        .filter(|s| !switches.contains_key(**s))
        .collect();
    assert!(
        unset.is_empty(),
        "{}: spell out every proxy switch, missing: {unset:?}",
        compose.file
    );
    let on: BTreeSet<&str> = switches
        .iter()
        .filter(|(_, v)| *v == "1")
        .map(|(k, _)| k.as_str())
        .collect();
    let table: BTreeMap<&str, &[&str]> = DOCKER_CALLS.iter().copied().collect();
    let mut needed: BTreeSet<&str> = BTreeSet::new();
    for call in docker_calls_in_source() {
        let switches = table.get(call.as_str()).unwrap_or_else(|| {
            panic!(
                "monitor/src/source/docker.rs now calls `{call}`: decide which proxy switch it \
                 needs (it must be a GET), allow it in the compose files and add it to \
                 DOCKER_CALLS in this test"
            )
        });
        needed.extend(switches.iter());
    }
    let missing: Vec<&&str> = needed.iter().filter(|s| !on.contains(**s)).collect();
    assert!(
        missing.is_empty(),
        "{}: the monitor needs {missing:?} from the proxy",
        compose.file
    );
    let extra: Vec<&&str> = on
        .iter()
        .filter(|s| !needed.contains(**s) && !PROXY_EXTRAS.contains(s))
        .collect();
    assert!(
        extra.is_empty(),
        "{}: the proxy allows {extra:?}, which the monitor does not call",
        compose.file
    );
    assert_eq!(switches["POST"], "0", "{}: POST must stay 0", compose.file);

    // The proxy is reachable only on internal networks it shares with the monitor, and
    // it is the only service with the Docker socket.
    assert!(
        compose.ports(proxy).is_empty(),
        "{}: the proxy must not publish a port",
        compose.file
    );
    let proxy_nets = compose.networks(proxy);
    for net in &proxy_nets {
        assert_eq!(
            compose.doc["networks"][net.as_str()]["internal"].as_bool(),
            Some(true),
            "{}: the proxy's network {net} must be internal: true",
            compose.file
        );
    }
    let monitor_nets = compose.networks(monitor);
    assert!(
        proxy_nets.iter().any(|n| monitor_nets.contains(n)),
        "{}: the monitor and the proxy share no network",
        compose.file
    );
    for (name, service) in compose.services() {
        let has_socket = compose
            .volumes(service)
            .iter()
            .any(|(source, _, _)| source.ends_with("docker.sock"));
        assert_eq!(
            has_socket,
            name == proxy_name,
            "{}: only the proxy may mount the Docker socket ({name})",
            compose.file
        );
    }
}

/// What every compose file must get right.
fn check_compose_common(compose: &Compose, operator_provided: &[&str]) {
    let declared_volumes = compose.top_level_names("volumes");
    let mut declared_networks = compose.top_level_names("networks");
    declared_networks.insert("default".into());
    let service_names: BTreeSet<String> = compose.services().into_iter().map(|(n, _)| n).collect();
    for (name, service) in compose.services() {
        let at = format!("{}: service {name}", compose.file);
        if let Some((context, dockerfile)) = compose.build(service) {
            assert!(
                context.is_dir(),
                "{at}: build context {} is missing",
                context.display()
            );
            assert!(
                dockerfile.is_file(),
                "{at}: {} is missing",
                dockerfile.display()
            );
            assert_eq!(
                normalize(&context),
                root(),
                "{at}: the build context must be the repository root (the Dockerfiles COPY \
                 the workspace)"
            );
        }
        match service.get("image").and_then(Value::as_str) {
            Some(image) if service.get("build").is_none() => {
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
                assert!(
                    !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                    "{at}: pin the image {image} to a version"
                );
            }
            Some(_) => {}
            None => assert!(
                service.get("build").is_some(),
                "{at}: neither image nor build"
            ),
        }
        for (source, target, _) in compose.volumes(service) {
            assert!(
                target.starts_with('/'),
                "{at}: volume target {target} is not absolute"
            );
            if source.starts_with('.') || source.starts_with('/') {
                if source.starts_with('/') {
                    assert_eq!(
                        source, "/var/run/docker.sock",
                        "{at}: an absolute host path {source}"
                    );
                    continue;
                }
                let path = normalize(&compose.dir.join(&source));
                let rel = path
                    .strip_prefix(root())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                if operator_provided.contains(&rel.as_str()) {
                    continue;
                }
                assert!(
                    path.exists(),
                    "{at}: bind mount source {source} ({rel}) is missing"
                );
            } else {
                assert!(
                    declared_volumes.contains(&source),
                    "{at}: volume {source} is not declared under volumes:"
                );
            }
        }
        for net in compose.networks(service) {
            assert!(
                declared_networks.contains(&net),
                "{at}: network {net} is not declared"
            );
        }
        for dep in compose.strings(service, "depends_on") {
            assert!(
                service_names.contains(&dep),
                "{at}: depends on unknown {dep}"
            );
        }
        assert!(
            compose
                .strings(service, "security_opt")
                .iter()
                .any(|o| o == "no-new-privileges:true"),
            "{at}: set security_opt no-new-privileges:true"
        );
    }
}

/// The monitor service: environment known to the binary and accepted by it, database in
/// a volume, port published on loopback only (if at all).
fn check_monitor_service(compose: &Compose, name: &str, known_env: &BTreeSet<String>) {
    let at = format!("{}: service {name}", compose.file);
    let service = compose.service(name);
    let env = compose.environment(service);
    let unknown: Vec<&String> = env.keys().filter(|k| !known_env.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "{at}: the monitor does not read {unknown:?} (see `truebit-monitor --help`)"
    );
    let db = env
        .get("DB_PATH")
        .unwrap_or_else(|| panic!("{at}: no DB_PATH"));
    let volumes = compose.volumes(service);
    let data = volumes
        .iter()
        .find(|(source, target, ro)| {
            !ro && !source.starts_with(['.', '/']) && Path::new(db).starts_with(target)
        })
        .unwrap_or_else(|| panic!("{at}: DB_PATH={db} is not in a named volume"));
    assert_eq!(data.1, "/data", "{at}: the image declares VOLUME /data");
    let port: u16 = env
        .get("PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{at}: set PORT"));
    for (ip, _host, container) in compose.ports(service) {
        assert_eq!(
            ip.as_deref(),
            Some("127.0.0.1"),
            "{at}: publish the dashboard on 127.0.0.1 only"
        );
        assert_eq!(container, port, "{at}: the published port is not PORT");
    }
    if service["read_only"].as_bool() == Some(true) {
        assert!(
            compose
                .strings(service, "tmpfs")
                .iter()
                .any(|t| t == "/tmp"),
            "{at}: a read-only container needs a tmpfs on /tmp (SQLite's temporary files)"
        );
    }
    assert!(
        compose
            .strings(service, "cap_drop")
            .iter()
            .any(|c| c == "ALL"),
        "{at}: drop every capability"
    );
    // The binary accepts this environment (a bad value fails with exit code 2).
    let dir = support::tempdir();
    let db = dir.path().join("monitor.db").display().to_string();
    let mut vars: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| k.as_str() != "DB_PATH")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("DB_PATH", &db));
    let out = monitor(&["api-key", "list"], &vars);
    assert!(
        out.status.success(),
        "{at}: the monitor rejects this environment: {}",
        stderr(&out)
    );
}

#[test]
fn standalone_compose_matches_the_code() {
    let compose = Compose::load("docker-compose.standalone.yml", &[]);
    assert!(compose.required.is_empty(), "{:?}", compose.required);
    check_compose_common(&compose, &[]);
    let (name, service) = compose
        .built_from("monitor.Dockerfile")
        .expect("a monitor service built from deploy/monitor.Dockerfile");
    assert_eq!(
        compose.ports(service),
        vec![(Some("127.0.0.1".into()), "8090".into(), 8090)],
        "the dashboard is on 127.0.0.1:8090 by default"
    );
    check_monitor_service(&compose, &name, &monitor_env_names());
    check_docker_proxy(&compose, &name);
    // MONITOR_PORT moves the published port, never the address.
    let moved = Compose::load("docker-compose.standalone.yml", &[("MONITOR_PORT", "9000")]);
    assert_eq!(
        moved.ports(moved.service(&name)),
        vec![(Some("127.0.0.1".into()), "9000".into(), 8090)]
    );
}

#[test]
fn https_compose_matches_the_code() {
    let vars = [
        ("DOMAIN", "monitor.example.org"),
        ("ACME_EMAIL", "ops@example.org"),
    ];
    let compose = Compose::load("docker-compose.https.yml", &vars);
    assert_eq!(
        compose.required,
        ["ACME_EMAIL", "DOMAIN"].map(String::from).into(),
        "docker-compose.https.yml must refuse to start without DOMAIN and ACME_EMAIL"
    );
    check_compose_common(&compose, &[]);
    let (name, monitor) = compose
        .built_from("monitor.Dockerfile")
        .expect("a monitor service built from deploy/monitor.Dockerfile");
    check_monitor_service(&compose, &name, &monitor_env_names());
    check_docker_proxy(&compose, &name);
    assert!(
        compose.ports(monitor).is_empty(),
        "behind Traefik the monitor publishes no port"
    );
    let env = compose.environment(monitor);
    assert_eq!(env["PUBLIC_URL"], "https://monitor.example.org");
    assert_eq!(env["COOKIE_SECURE"], "true", "Secure cookies");
    let port: u16 = env["PORT"].parse().expect("PORT");

    // Traefik: HTTPS only (port 80 redirects), Let's Encrypt, its routes from the file.
    let traefik = compose.service("traefik");
    let image = traefik["image"].as_str().expect("traefik image");
    assert!(image.starts_with("traefik:v3"), "Traefik v3: {image}");
    let flags: BTreeMap<String, String> = compose
        .strings(traefik, "command")
        .iter()
        .map(|f| {
            let f = f.trim_start_matches('-');
            let (k, v) = f.split_once('=').unwrap_or((f, "true"));
            (k.to_lowercase(), v.to_owned())
        })
        .collect();
    let flag = |k: &str| {
        flags
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("traefik needs --{k}"))
    };
    assert_eq!(flag("entrypoints.web.address"), ":80");
    assert_eq!(flag("entrypoints.websecure.address"), ":443");
    assert_eq!(
        flag("entrypoints.web.http.redirections.entrypoint.to"),
        "websecure"
    );
    assert_eq!(
        flag("entrypoints.web.http.redirections.entrypoint.scheme"),
        "https"
    );
    assert_eq!(
        flag("certificatesresolvers.letsencrypt.acme.email"),
        "ops@example.org"
    );
    assert!(flags.contains_key("certificatesresolvers.letsencrypt.acme.storage"));
    assert!(
        !flags.contains_key("providers.docker"),
        "Traefik gets no Docker access: its routes come from the file provider"
    );
    let published: BTreeSet<(String, u16)> = compose
        .ports(traefik)
        .into_iter()
        .map(|(_, host, container)| (host, container))
        .collect();
    assert_eq!(
        published,
        [("80".to_owned(), 80), ("443".to_owned(), 443)].into()
    );
    let dynamic_target = flag("providers.file.filename");
    let (dynamic_source, _, _) = compose
        .volumes(traefik)
        .into_iter()
        .find(|(_, target, _)| target == dynamic_target)
        .expect("the file provider's file is mounted");
    let dynamic: Value = serde_yaml::from_str(
        &std::fs::read_to_string(compose.dir.join(&dynamic_source)).expect("dynamic.yml"),
    )
    .expect("dynamic.yml is YAML");
    let routers = dynamic["http"]["routers"]
        .as_mapping()
        .expect("dynamic.yml: routers");
    assert!(!routers.is_empty());
    for (router_name, router) in routers {
        let entry_points: Vec<&str> = router["entryPoints"]
            .as_sequence()
            .expect("entryPoints")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(entry_points, ["websecure"], "{router_name:?}: HTTPS only");
        let resolver = router["tls"]["certResolver"]
            .as_str()
            .expect("certResolver");
        assert!(
            flags.contains_key(&format!("certificatesresolvers.{resolver}.acme.email")),
            "{router_name:?}: the resolver {resolver} is not configured"
        );
        let rule = router["rule"].as_str().expect("rule");
        assert!(
            rule.contains(r#"env "DOMAIN""#),
            "the route follows DOMAIN: {rule}"
        );
        let service = router["service"].as_str().expect("router service");
        let servers = dynamic["http"]["services"][service]["loadBalancer"]["servers"]
            .as_sequence()
            .expect("servers");
        let urls: Vec<&str> = servers.iter().filter_map(|s| s["url"].as_str()).collect();
        assert_eq!(
            urls,
            [format!("http://{name}:{port}")],
            "Traefik -> the monitor"
        );
    }
    assert_eq!(
        compose
            .environment(traefik)
            .get("DOMAIN")
            .map(String::as_str),
        Some("monitor.example.org"),
        "dynamic.yml reads DOMAIN from Traefik's environment"
    );

    // X-Forwarded-For is believed from Traefik's address only, inside the web subnet.
    let trusted = &env["TRUSTED_PROXIES"];
    let traefik_nets = traefik["networks"]
        .as_mapping()
        .expect("traefik networks map");
    let (net, cfg) = traefik_nets.iter().next().expect("one network");
    let traefik_ip = cfg["ipv4_address"].as_str().expect("a fixed ipv4_address");
    assert_eq!(trusted, traefik_ip, "TRUSTED_PROXIES is Traefik's address");
    let net = net.as_str().expect("network name");
    assert!(compose.networks(monitor).iter().any(|n| n == net));
    let subnet = compose.doc["networks"][net]["ipam"]["config"][0]["subnet"]
        .as_str()
        .expect("the web network has a fixed subnet");
    assert!(
        v4_in_subnet(traefik_ip, subnet),
        "{traefik_ip} is not in {subnet}"
    );
}

fn v4_in_subnet(ip: &str, subnet: &str) -> bool {
    let (net, prefix) = subnet.split_once('/').expect("CIDR");
    let (Ok(ip), Ok(net), Ok(prefix)) = (
        ip.parse::<Ipv4Addr>(),
        net.parse::<Ipv4Addr>(),
        prefix.parse::<u32>(),
    ) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The environment names the aggregator declares (`env = "NAME"` in its clap settings).
fn aggregator_env_names() -> Option<BTreeSet<String>> {
    let src = root().join("aggregator/src");
    if !root().join("aggregator/Cargo.toml").exists() {
        return None;
    }
    let mut names = BTreeSet::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("aggregator/src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("aggregator source");
                for (i, _) in text.match_indices("env") {
                    let rest = text[i + 3..].trim_start();
                    if let Some(rest) = rest.strip_prefix('=') {
                        if let Some(rest) = rest.trim_start().strip_prefix('"') {
                            let name: String = rest.chars().take_while(|c| *c != '"').collect();
                            if !name.is_empty()
                                && name.chars().all(|c| {
                                    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
                                })
                            {
                                names.insert(name);
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        !names.is_empty(),
        "aggregator/ exists but declares no `env = \"NAME\"`: check the aggregator's \
         environment in deploy/ by hand and teach this test where to find it"
    );
    Some(names)
}

/// The aggregator's environment in deploy/, until its package exists (the aggregator
/// issue). Once aggregator/Cargo.toml exists the names are checked against its code.
const PROVISIONAL_AGGREGATOR_ENV: &[&str] = &[
    "AGGREGATOR_NATS_PASSWORD",
    "AGGREGATOR_NATS_TLS_NAME",
    "AGGREGATOR_NATS_URL",
    "AGGREGATOR_NATS_USER",
    "DB_PATH",
    "HOST",
    "PORT",
];

fn check_aggregator_env(names: &BTreeSet<String>, what: &str) {
    match aggregator_env_names() {
        Some(known) => {
            let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
            assert!(
                unknown.is_empty(),
                "{what}: the aggregator does not read {unknown:?} (it reads {known:?})"
            );
        }
        None => {
            let provisional: BTreeSet<String> = PROVISIONAL_AGGREGATOR_ENV
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let unknown: Vec<&String> =
                names.iter().filter(|n| !provisional.contains(*n)).collect();
            assert!(
                unknown.is_empty(),
                "{what}: {unknown:?} are not in PROVISIONAL_AGGREGATOR_ENV"
            );
        }
    }
}

#[test]
fn federation_compose_matches_the_nats_config_and_the_aggregator() {
    let vars = [
        ("MONITOR_PASSWORD", "m-secret"),
        ("AGGREGATOR_PASSWORD", "a-secret"),
        ("HUB_DOMAIN", "hub.example.org"),
    ];
    let compose = Compose::load("deploy/docker-compose.federation.yml", &vars);
    assert_eq!(
        compose.required,
        ["AGGREGATOR_PASSWORD", "HUB_DOMAIN", "MONITOR_PASSWORD"]
            .map(String::from)
            .into()
    );
    check_compose_common(&compose, &["deploy/certs"]);

    // NATS runs the shipped config, gets exactly the variables it references, and
    // publishes its TLS port and its WebSocket port as 443.
    let nats = compose.service("nats");
    let command = compose.strings(nats, "command");
    let conf_target = command
        .iter()
        .position(|a| a == "--config" || a == "-c")
        .and_then(|i| command.get(i + 1))
        .expect("nats runs with --config FILE");
    let mounts = compose.volumes(nats);
    let (conf_source, _, conf_ro) = mounts
        .iter()
        .find(|(_, target, _)| target == conf_target)
        .expect("the config file is mounted");
    assert!(*conf_ro);
    assert_eq!(
        normalize(&compose.dir.join(conf_source)),
        root().join("deploy/nats-server.conf")
    );
    let conf = read("deploy/nats-server.conf");
    let referenced = nats_conf_variables(&conf);
    let given: BTreeSet<String> = compose.environment(nats).into_keys().collect();
    assert_eq!(
        given, referenced,
        "nats' environment vs the $VARS of nats-server.conf"
    );
    let ws_port = nats_conf_number(&conf, "websocket", "port");
    let client_port: u16 = nats_conf_top(&conf, "listen")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("listen host:port");
    let ports: BTreeSet<(String, u16)> = compose
        .ports(nats)
        .into_iter()
        .map(|(_, host, container)| (host, container))
        .collect();
    assert_eq!(
        ports,
        [
            (client_port.to_string(), client_port),
            ("443".to_owned(), ws_port)
        ]
        .into(),
        "nats publishes the TLS client port and wss on 443"
    );
    let cert_dir = Path::new(&nats_conf_quoted(&conf, "cert_file"))
        .parent()
        .expect("cert dir")
        .display()
        .to_string();
    assert!(
        mounts
            .iter()
            .any(|(s, t, ro)| *t == cert_dir && *ro && s.ends_with("certs")),
        "the certificates ({cert_dir}) are mounted read-only"
    );
    let store_dir = nats_conf_quoted(&conf, "store_dir");
    assert!(
        mounts
            .iter()
            .any(|(s, t, _)| *t == store_dir && !s.starts_with(['.', '/'])),
        "JetStream's store_dir {store_dir} is a named volume"
    );

    // The aggregator is built here from its own Dockerfile.
    let (name, aggregator) = compose
        .built_from("aggregator.Dockerfile")
        .expect("an aggregator built from deploy/aggregator.Dockerfile");
    assert!(compose
        .strings(aggregator, "depends_on")
        .contains(&"nats".to_owned()));
    let env = compose.environment(aggregator);
    check_aggregator_env(
        &env.keys().cloned().collect(),
        &format!("deploy/docker-compose.federation.yml: {name}"),
    );
    assert_eq!(env["AGGREGATOR_NATS_USER"], "aggregator");
    assert!(conf.contains(r#"user: "aggregator""#));
    for (ip, _, _) in compose.ports(aggregator) {
        assert_eq!(
            ip.as_deref(),
            Some("127.0.0.1"),
            "the aggregator's page stays local"
        );
    }
}

// ------------------------------------------------------------------------------------------
// deploy/nats-server.conf in a real nats-server
// ------------------------------------------------------------------------------------------

/// `$NAME` references outside quoted strings and comments: what the server takes from
/// its environment.
fn nats_conf_variables(conf: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in conf.lines() {
        let mut quoted = false;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '"' => quoted = !quoted,
                '#' if !quoted => break,
                '$' if !quoted => {
                    let name: String = chars[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                        .collect();
                    i += name.len();
                    names.insert(name);
                }
                _ => {}
            }
            i += 1;
        }
    }
    names
}

/// The value of a top-level `key: value` line, unquoted.
fn nats_conf_top(conf: &str, key: &str) -> String {
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("nats-server.conf has no top-level {key}"))
}

/// The first `key: "value"` anywhere.
fn nats_conf_quoted(conf: &str, key: &str) -> String {
    conf.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("nats-server.conf has no {key}"))
}

/// `key: N` inside the top-level `block { … }`.
fn nats_conf_number(conf: &str, block: &str, key: &str) -> u16 {
    conf.lines()
        .skip_while(|l| !l.starts_with(&format!("{block} {{")))
        .take_while(|l| *l != "}")
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("nats-server.conf has no {block}.{key}"))
}

fn find_program(name: &str, env: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        if !path.is_empty() {
            return PathBuf::from(path);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: scripts/test installs it (or set {env} to its path)")
        })
}

/// With a space and a `#`: the quoting of docker-compose.federation.yml must carry it.
const MONITOR_PASSWORD: &str = "monitor test #password";
const AGGREGATOR_PASSWORD: &str = "aggregator-test-password";
const STREAM: &str = "TRUEBIT_REPORTS";
/// The aggregator's own reply prefix (nats-server.conf lets only it read there).
const AGGREGATOR_INBOX: &str = "_AGGREGATOR_INBOX";

/// A CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI as
/// an operator would; the server files get the names nats-server.conf expects.
fn test_certificates(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::write(
        certs.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    let openssl = find_program("openssl", "TRUEBIT_TEST_OPENSSL");
    let steps = [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
         -out ca.pem -days 2 -subj /CN=truebit-test-CA",
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout privkey.pem \
         -out server.csr -subj /CN=localhost",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -out fullchain.pem -days 2 -extfile ext.cnf",
    ];
    for step in steps {
        let args: Vec<&str> = step.split_whitespace().collect();
        let out = Command::new(&openssl)
            .args(&args)
            .current_dir(&certs)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    }
    certs
}

/// deploy/nats-server.conf with the certificate folder and the JetStream store moved into
/// `dir`, and the WebSocket listener on loopback with a free port. Every replaced text
/// must be there: when the shipped file changes shape, this fails instead of testing
/// something else.
fn test_nats_conf(dir: &Path, certs: &Path) -> PathBuf {
    let shipped = read("deploy/nats-server.conf");
    let replace = |text: String, from: &str, to: &str, count: usize| {
        assert_eq!(
            text.matches(from).count(),
            count,
            "deploy/nats-server.conf: expected {count} × {from:?}"
        );
        text.replace(from, to)
    };
    let conf = replace(
        shipped,
        "/etc/nats/certs/",
        &format!("{}/", certs.display()),
        4,
    );
    let conf = replace(
        conf,
        "store_dir: \"/data\"",
        &format!("store_dir: \"{}\"", dir.join("js").display()),
        1,
    );
    let conf = replace(
        conf,
        "  port: 8443\n",
        "  host: \"127.0.0.1\"\n  port: -1\n",
        1,
    );
    let path = dir.join("nats-server.conf");
    std::fs::write(&path, conf).expect("write the test config");
    path
}

/// A nats-server running deploy/nats-server.conf, stopped (by its pid) on drop.
struct Hub {
    child: Child,
    _dir: tempfile::TempDir,
    ca: PathBuf,
    client: u16,
    websocket: u16,
    http: u16,
}

/// The environment docker-compose.federation.yml gives nats-server for these passwords.
fn nats_env(monitor_password: &str, aggregator_password: &str) -> BTreeMap<String, String> {
    let compose = Compose::load(
        "deploy/docker-compose.federation.yml",
        &[
            ("MONITOR_PASSWORD", monitor_password),
            ("AGGREGATOR_PASSWORD", aggregator_password),
            ("HUB_DOMAIN", "hub.example.org"),
        ],
    );
    compose.environment(compose.service("nats"))
}

impl Hub {
    fn start() -> Hub {
        Hub::start_with_monitor_password(MONITOR_PASSWORD)
    }

    /// `monitor_password` is what MONITOR_PASSWORD holds: a password or a bcrypt hash.
    fn start_with_monitor_password(monitor_password: &str) -> Hub {
        let dir = support::tempdir();
        let certs = test_certificates(dir.path());
        let conf = test_nats_conf(dir.path(), &certs);
        let log = dir.path().join("nats.log");
        let child = Command::new(find_program("nats-server", "TRUEBIT_TEST_NATS_SERVER"))
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-l"])
            .arg(&log)
            .env_clear()
            .envs(nats_env(monitor_password, AGGREGATOR_PASSWORD))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let mut hub = Hub {
            child,
            ca: certs.join("ca.pem"),
            _dir: dir,
            client: 0,
            websocket: 0,
            http: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                let port = |marker: &str| -> u16 {
                    text.lines()
                        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest))
                        .and_then(|rest| rest.trim().rsplit(':').next())
                        .and_then(|p| p.trim().parse().ok())
                        .unwrap_or_else(|| panic!("no {marker:?} in the log:\n{text}"))
                };
                hub.client = port("Listening for client connections on ");
                hub.websocket = port("Listening for websocket clients on ");
                hub.http = port("Starting http monitor on ");
                return hub;
            }
            if let Ok(Some(status)) = hub.child.try_wait() {
                panic!("nats-server exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.client)
    }

    fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}", self.websocket)
    }

    /// GET on the monitoring port, as JSON.
    fn monitoring(&self, path: &str) -> serde_json::Value {
        let body = http_get(self.http, path).1;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, body) of `GET path` on 127.0.0.1:port.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A NATS client and the events the server sent it (permission violations arrive there).
struct NatsClient {
    client: async_nats::Client,
    events: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn nats_connect(
    url: &str,
    user: &str,
    password: &str,
    ca: &Path,
) -> Result<NatsClient, async_nats::ConnectError> {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .add_root_certificates(ca.to_owned())
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event.to_string());
                }
            });
    if user == "aggregator" {
        // Its replies (among them the reports a pull consumer hands out) must not go to
        // _INBOX.>, which every monitor may read (docs/FEDERATION.md).
        options = options.custom_inbox_prefix(AGGREGATOR_INBOX);
    }
    let client = options.connect(url).await?;
    Ok(NatsClient { client, events })
}

impl NatsClient {
    async fn open(url: &str, user: &str, password: &str, ca: &Path) -> NatsClient {
        nats_connect(url, user, password, ca)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect to {url}: {e}"))
    }

    /// Waits for the server's "Permissions Violation for {kind} to \"{subject}\"".
    async fn expect_violation(&mut self, kind: &str, subject: &str) {
        let wanted = format!("permissions violation for {kind} to \"{subject}\"").to_lowercase();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if event.to_lowercase().contains(&wanted) => return,
                Ok(Some(_other)) => continue,
                Ok(None) | Err(_) => {
                    panic!("the server did not refuse {kind} to {subject:?} (expected {wanted:?})")
                }
            }
        }
    }

    async fn publish_denied(&mut self, subject: &str) {
        self.client
            .publish(subject.to_owned(), "not allowed".into())
            .await
            .expect("publish is sent");
        self.client.flush().await.expect("flush");
        self.expect_violation("publish", subject).await;
    }
}

/// The hub with the report stream and the aggregator's consumer, as the aggregator's
/// `--create-stream` will set them up.
async fn hub_with_stream(hub: &Hub) -> (NatsClient, async_nats::jetstream::stream::Stream) {
    use async_nats::jetstream;
    let aggregator =
        NatsClient::open(&hub.tls_url(), "aggregator", AGGREGATOR_PASSWORD, &hub.ca).await;
    let js = jetstream::new(aggregator.client.clone());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![truebit_protocol::REPORT_SUBJECT.into()],
            storage: jetstream::stream::StorageType::File,
            max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(2 * 3600),
            ..Default::default()
        })
        .await
        .expect("the aggregator creates the report stream");
    stream
        .get_or_create_consumer(
            "aggregator",
            jetstream::consumer::pull::Config {
                durable_name: Some("aggregator".into()),
                ..Default::default()
            },
        )
        .await
        .expect("the aggregator creates its consumer");
    (aggregator, stream)
}

/// Waits until the server has processed everything `client` sent so far (a flush only
/// empties the client's buffer): a JetStream API request, answered by the server, that
/// both users may make.
async fn round_trip(client: &async_nats::Client) {
    let js = async_nats::jetstream::new(client.clone());
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        js.stream_by_subject(truebit_protocol::REPORT_SUBJECT),
    )
    .await;
    assert!(
        answered.is_ok(),
        "the server did not answer a stream lookup"
    );
}

async fn jetstream_publish(
    client: &async_nats::Client,
    id: &str,
    payload: Vec<u8>,
) -> async_nats::jetstream::publish::PublishAck {
    let js = async_nats::jetstream::new(client.clone());
    let message = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .message_id(id);
    js.send_publish(truebit_protocol::REPORT_SUBJECT, message)
        .await
        .expect("the report is sent")
        .await
        .expect("the stream acknowledges the report")
}

#[test]
fn nats_config_is_valid_and_takes_its_passwords_from_the_environment() {
    let dir = support::tempdir();
    let certs = test_certificates(dir.path());
    // Only the certificate paths differ from the shipped file.
    let conf = read("deploy/nats-server.conf")
        .replace("/etc/nats/certs/", &format!("{}/", certs.display()));
    let path = dir.path().join("shipped.conf");
    std::fs::write(&path, conf).expect("write");
    let check = |env: &BTreeMap<String, String>| {
        let out = Command::new(find_program("nats-server", "TRUEBIT_TEST_NATS_SERVER"))
            .arg("-c")
            .arg(&path)
            .arg("-t")
            .env_clear()
            .envs(env)
            .output()
            .expect("nats-server -t runs");
        (
            out.status.success(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    };
    let mut env = nats_env(MONITOR_PASSWORD, AGGREGATOR_PASSWORD);
    let (ok, said) = check(&env);
    assert!(ok && said.contains("is valid"), "{said}");
    // Unquoted, a password is parsed as configuration: why the compose file quotes it.
    env.insert("MONITOR_PASSWORD".into(), "12e4abcd".into());
    let (ok, _) = check(&env);
    assert!(
        !ok,
        "an unquoted password is parsed (docs/FEDERATION.md says so)"
    );
    env.remove("MONITOR_PASSWORD");
    let (ok, said) = check(&env);
    assert!(
        !ok && said.contains("MONITOR_PASSWORD"),
        "without MONITOR_PASSWORD the server must refuse to start: {said}"
    );
    assert!(
        !read("deploy/nats-server.conf").contains("password: \""),
        "no password is written into the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_monitor_user_publishes_acknowledged_reports_and_reads_stats() {
    use futures_util::StreamExt as _;
    use truebit_protocol::sign::MAX_REPORT_WIRE_BYTES;
    use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

    let hub = Hub::start();
    let (aggregator, mut stream) = hub_with_stream(&hub).await;
    let monitor = NatsClient::open(&hub.tls_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;

    // What the monitor does once per connection: find the stream by subject.
    let js = async_nats::jetstream::new(monitor.client.clone());
    let found = js
        .stream_by_subject(REPORT_SUBJECT)
        .await
        .expect("the monitor may look the stream up");
    assert_eq!(found, STREAM);

    // Acknowledged publishes, de-duplicated by message id, up to the largest report.
    let ack = jetstream_publish(&monitor.client, "node-a:1", b"report one".to_vec()).await;
    assert_eq!((ack.stream.as_str(), ack.duplicate), (STREAM, false));
    let again = jetstream_publish(&monitor.client, "node-a:1", b"report one".to_vec()).await;
    assert!(again.duplicate, "the same node-window is stored once");
    assert!(
        monitor.client.server_info().max_payload >= MAX_REPORT_WIRE_BYTES + 1024,
        "max_payload must fit the largest signed report and its header"
    );
    let largest = vec![b'r'; MAX_REPORT_WIRE_BYTES];
    let ack = jetstream_publish(&monitor.client, "node-a:2", largest).await;
    assert!(!ack.duplicate);

    // The same over WebSocket (wss), as a monitor behind an HTTPS-only firewall.
    let ws = NatsClient::open(&hub.wss_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;
    let ack = jetstream_publish(&ws.client, "node-b:1", b"report over wss".to_vec()).await;
    assert_eq!(ack.stream, STREAM);

    // The aggregator reads them from its consumer.
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer("aggregator")
        .await
        .expect("the consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut sizes = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.expect("a report");
        sizes.push(message.payload.len());
        message.ack().await.expect("ack");
    }
    assert_eq!(sizes, [10, MAX_REPORT_WIRE_BYTES, 15]);
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 3);

    // Statistics: the aggregator publishes, every monitor reads.
    let mut stats = monitor
        .client
        .subscribe(STATS_SUBJECT)
        .await
        .expect("subscribe to stats");
    let mut ws_stats = ws.client.subscribe(STATS_SUBJECT).await.expect("subscribe");
    round_trip(&monitor.client).await;
    round_trip(&ws.client).await;
    aggregator
        .client
        .publish(STATS_SUBJECT, "stats 1".into())
        .await
        .expect("the aggregator publishes stats");
    aggregator.client.flush().await.expect("flush");
    for sub in [&mut stats, &mut ws_stats] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("stats arrive")
            .expect("a message");
        assert_eq!(&got.payload[..], b"stats 1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_monitor_user_cannot_read_reports_or_publish_stats() {
    use futures_util::StreamExt as _;
    use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

    let hub = Hub::start();
    let (mut aggregator, mut stream) = hub_with_stream(&hub).await;
    let mut spy = NatsClient::open(&hub.tls_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;
    let honest = NatsClient::open(&hub.tls_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;

    // Subscribing to reports (directly or with a wildcard) is refused …
    let mut spied = spy
        .client
        .subscribe(REPORT_SUBJECT)
        .await
        .expect("the request is sent");
    spy.client.flush().await.expect("flush");
    spy.expect_violation("subscription", REPORT_SUBJECT).await;
    let _wildcard = spy.client.subscribe(">").await.expect("sent");
    spy.client.flush().await.expect("flush");
    spy.expect_violation("subscription", ">").await;
    // Replies: every monitor may read _INBOX.> (its own acknowledgements arrive there),
    // so the aggregator's replies go to a prefix only it may read.
    let mut inboxes = spy.client.subscribe("_INBOX.>").await.expect("allowed");
    let _theirs = spy
        .client
        .subscribe(format!("{AGGREGATOR_INBOX}.>"))
        .await
        .expect("sent");
    spy.client.flush().await.expect("flush");
    spy.expect_violation("subscription", &format!("{AGGREGATOR_INBOX}.>"))
        .await;
    // … and nothing arrives there, while the aggregator does get the report.
    let mut tap = aggregator
        .client
        .subscribe(REPORT_SUBJECT)
        .await
        .expect("the aggregator may subscribe to reports");
    round_trip(&aggregator.client).await;
    jetstream_publish(&honest.client, "node-h:1", b"honest report".to_vec()).await;
    let got = tokio::time::timeout(Duration::from_secs(5), tap.next())
        .await
        .expect("the aggregator gets the report")
        .expect("a message");
    assert_eq!(&got.payload[..], b"honest report");
    let leaked = tokio::time::timeout(Duration::from_millis(500), spied.next()).await;
    assert!(
        !matches!(leaked, Ok(Some(_))),
        "a monitor received another node's report"
    );
    // The aggregator pulls it from its consumer; the spy's _INBOX.> sees at most the
    // honest monitor's acknowledgement, never the report.
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer("aggregator")
        .await
        .expect("the consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let pulled = batch.next().await.expect("a report").expect("a report");
    assert_eq!(&pulled.payload[..], b"honest report");
    pulled.ack().await.expect("ack");
    while let Ok(Some(seen)) =
        tokio::time::timeout(Duration::from_millis(500), inboxes.next()).await
    {
        assert!(
            !seen.payload.windows(6).any(|w| w == b"honest"),
            "a monitor read the aggregator's replies on {}: {:?}",
            seen.subject,
            seen.payload
        );
    }

    // Forged statistics are refused and reach no one: the first message an honest
    // monitor sees is the aggregator's.
    let mut honest_stats = honest.client.subscribe(STATS_SUBJECT).await.expect("sub");
    round_trip(&honest.client).await;
    spy.publish_denied(STATS_SUBJECT).await;
    aggregator
        .client
        .publish(STATS_SUBJECT, "real stats".into())
        .await
        .expect("publish");
    aggregator.client.flush().await.expect("flush");
    let first = tokio::time::timeout(Duration::from_secs(5), honest_stats.next())
        .await
        .expect("stats arrive")
        .expect("a message");
    assert_eq!(&first.payload[..], b"real stats");

    // No way into the stream through JetStream's API either, nor into other clients'
    // replies, nor onto other subjects.
    for subject in [
        format!("$JS.API.CONSUMER.CREATE.{STREAM}"),
        format!("$JS.API.CONSUMER.CREATE.{STREAM}.spy"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.spy"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.aggregator"),
        format!("$JS.API.CONSUMER.DELETE.{STREAM}.aggregator"),
        format!("$JS.API.STREAM.INFO.{STREAM}"),
        format!("$JS.API.STREAM.MSG.GET.{STREAM}"),
        format!("$JS.API.DIRECT.GET.{STREAM}"),
        format!("$JS.API.STREAM.PURGE.{STREAM}"),
        format!("$JS.API.STREAM.DELETE.{STREAM}"),
        format!("$JS.API.STREAM.UPDATE.{STREAM}"),
        "$JS.API.STREAM.CREATE.SPY".to_owned(),
        "$JS.API.STREAM.LIST".to_owned(),
        format!("$JS.ACK.{STREAM}.aggregator.1.1.1.1.0"),
        "_INBOX.someone-else".to_owned(),
        "truebit.report.v2".to_owned(),
    ] {
        spy.publish_denied(&subject).await;
    }
    let info = stream.info().await.expect("the stream is still there");
    assert_eq!(info.state.messages, 1, "the spy changed nothing");
    assert_eq!(
        info.state.consumer_count, 1,
        "only the aggregator's consumer"
    );

    // The aggregator cannot forge reports.
    aggregator.publish_denied(REPORT_SUBJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_passwords_may_be_bcrypt_hashes() {
    // bcrypt("bcrypt-test-password", cost 10), as docs/FEDERATION.md suggests to store it.
    let hash = "$2b$10$et9MD5uYFI8JFRsQnWYwo.6oxaNXjQjgtrwVD/0r.QlrWoqfTriRa";
    let hub = Hub::start_with_monitor_password(hash);
    let ok = nats_connect(&hub.tls_url(), "monitor", "bcrypt-test-password", &hub.ca).await;
    assert!(
        ok.is_ok(),
        "the password of the hash is accepted: {:?}",
        ok.err()
    );
    let hash_itself = nats_connect(&hub.tls_url(), "monitor", hash, &hub.ca).await;
    assert!(hash_itself.is_err(), "the hash is not a password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_connections_need_tls_the_right_password_and_the_right_listener() {
    use truebit_protocol::sign::MAX_REPORT_WIRE_BYTES;

    let hub = Hub::start();
    // Plain text: the server announces that TLS is required.
    let mut plain = BufReader::new(TcpStream::connect(("127.0.0.1", hub.client)).expect("tcp"));
    let mut info = String::new();
    plain.read_line(&mut info).expect("INFO");
    let info: serde_json::Value =
        serde_json::from_str(info.trim().strip_prefix("INFO ").expect("INFO line")).expect("json");
    assert_eq!(info["tls_required"], true);

    let refused = nats_connect(&hub.tls_url(), "monitor", "wrong-password", &hub.ca).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "a wrong password must be refused: {:?}",
        refused.err()
    );
    // The aggregator's user is for the TLS listener only.
    let ws = nats_connect(&hub.wss_url(), "aggregator", AGGREGATOR_PASSWORD, &hub.ca).await;
    assert!(
        ws.is_err(),
        "the aggregator user must not log in over WebSocket"
    );

    // Limits, as the server applied them.
    let varz = hub.monitoring("/varz");
    let number = |key: &str| varz[key].as_u64().unwrap_or_else(|| panic!("/varz {key}"));
    assert!(number("max_payload") >= (MAX_REPORT_WIRE_BYTES + 1024) as u64);
    assert!(
        number("max_payload") <= 2 * 1024 * 1024,
        "keep max_payload small"
    );
    assert!((1..=100_000).contains(&number("max_connections")));
    assert!((2..=1_000).contains(&number("max_subscriptions")));
    let js = &varz["jetstream"]["config"];
    assert!(js["max_storage"].as_u64().is_some_and(|n| n > 0));
    assert!(js["max_memory"].as_u64().is_some_and(|n| n > 0));
}

// ------------------------------------------------------------------------------------------
// Dockerfiles, .dockerignore, the health check
// ------------------------------------------------------------------------------------------

/// One Dockerfile instruction (continuation lines joined, comments dropped).
#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

fn dockerfile(rel: &str) -> Vec<Instruction> {
    let text = read(rel);
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let continued = trimmed.ends_with('\\');
        acc.push_str(trimmed.trim_end_matches('\\').trim());
        acc.push(' ');
        if continued {
            pending = Some((start, acc));
            continue;
        }
        let acc = acc.trim().to_owned();
        if acc.is_empty() {
            continue;
        }
        let (keyword, args) = acc.split_once(' ').unwrap_or((acc.as_str(), ""));
        out.push(Instruction {
            line: start,
            keyword: keyword.to_uppercase(),
            args: args.trim().to_owned(),
        });
    }
    out
}

/// `KEY=VALUE` pairs of ENV instructions.
fn env_pairs(args: &str) -> Vec<(String, String)> {
    args.split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// The exec-form list of `CMD [...]` / `ENTRYPOINT [...]`.
fn exec_form(args: &str) -> Vec<String> {
    let json = args.trim().trim_start_matches("CMD").trim();
    serde_json::from_str(json).unwrap_or_else(|_| panic!("not the exec (JSON) form: {args}"))
}

fn toolchain_channel() -> String {
    let toolchain: toml::Value = toml::from_str(&read("rust-toolchain.toml")).expect("toml");
    toolchain["toolchain"]["channel"]
        .as_str()
        .expect("a pinned channel")
        .to_owned()
}

/// The project's own Dockerfile rules (hadolint checks the general ones).
fn check_dockerfile(rel: &str, package: &str, binary: &str) {
    let instructions = dockerfile(rel);
    let at = |i: &Instruction| format!("{rel}:{}", i.line);
    let channel = toolchain_channel();
    let ignore = DockerIgnore::load();
    let mut stages: Vec<String> = Vec::new();
    let mut stage_starts = Vec::new();
    for (n, i) in instructions.iter().enumerate() {
        match i.keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = i
                    .args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let image = words[0];
                if !stages.iter().any(|s| s == image) {
                    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
                    assert!(
                        image.contains('@') || (!tag.is_empty() && tag != "latest"),
                        "{}: pin {image} to a version",
                        at(i)
                    );
                }
                if let Some(tag) = image.strip_prefix("rust:") {
                    assert!(
                        tag.starts_with(&format!("{channel}-")),
                        "{}: the builder is rust {tag}, rust-toolchain.toml says {channel}",
                        at(i)
                    );
                }
                if let [_, as_kw, name] = words.as_slice() {
                    assert!(as_kw.eq_ignore_ascii_case("as"));
                    stages.push((*name).to_owned());
                } else {
                    stages.push(format!("#{}", stages.len()));
                }
                stage_starts.push(n);
            }
            "ADD" => panic!("{}: use COPY (no ADD, never of a URL)", at(i)),
            "COPY" => {
                let words: Vec<&str> = i.args.split_whitespace().collect();
                if let Some(from) = words.iter().find_map(|w| w.strip_prefix("--from=")) {
                    assert!(
                        stages[..stages.len() - 1].iter().any(|s| s == from),
                        "{}: COPY --from={from}: no such earlier stage",
                        at(i)
                    );
                } else {
                    let sources: Vec<&&str> = words
                        .iter()
                        .filter(|w| !w.starts_with("--"))
                        .collect::<Vec<_>>();
                    for source in &sources[..sources.len() - 1] {
                        if **source == "." {
                            continue;
                        }
                        assert!(
                            root().join(source).exists(),
                            "{}: COPY {source}: no such file",
                            at(i)
                        );
                        assert!(
                            !ignore.excludes(source),
                            "{}: COPY {source}, but .dockerignore excludes it",
                            at(i)
                        );
                    }
                }
            }
            "RUN" if i.args.contains("apt-get install") => {
                for needed in [
                    "-y",
                    "--no-install-recommends",
                    "rm -rf /var/lib/apt/lists/*",
                ] {
                    assert!(
                        i.args.contains(needed),
                        "{}: apt-get without {needed}",
                        at(i)
                    );
                }
            }
            _ => {}
        }
    }
    assert!(stages.len() >= 2, "{rel}: a multi-stage build");

    // The build stage: rustup uses the image's toolchain; a locked release build.
    let build = &instructions[stage_starts[0]..stage_starts[1]];
    let env: BTreeMap<String, String> = build
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.args))
        .collect();
    assert_eq!(
        env.get("RUSTUP_TOOLCHAIN"),
        Some(&channel),
        "{rel}: RUSTUP_TOOLCHAIN"
    );
    let cargo = build
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .unwrap_or_else(|| panic!("{rel}: no cargo build"));
    for needed in ["--release", "--locked", &format!("-p {package}")] {
        assert!(
            cargo.args.contains(needed),
            "{}: cargo build without {needed}",
            at(cargo)
        );
    }
    assert!(cargo.args.contains(&format!("target/release/{binary}")));

    // The runtime stage.
    let last = *stage_starts.last().expect("stages");
    let runtime = &instructions[last..];
    let find = |keyword: &str| -> &Instruction {
        runtime
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("{rel}: the final stage has no {keyword}"))
    };
    let user = find("USER")
        .args
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "{rel}: the final stage must run as a non-root USER"
    );
    let copies: Vec<String> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .filter_map(|i| i.args.split_whitespace().last().map(str::to_owned))
        .collect();
    let health = &find("HEALTHCHECK").args;
    let health_cmd = exec_form(health.split_once("CMD").map(|(_, c)| c).unwrap_or(""));
    assert!(
        copies.contains(&health_cmd[0]),
        "{rel}: the HEALTHCHECK runs {}, which is not copied into the image",
        health_cmd[0]
    );
    for option in ["--interval=", "--timeout=", "--start-period="] {
        assert!(health.contains(option), "{rel}: HEALTHCHECK {option}");
    }
    let entrypoint = exec_form(&find("ENTRYPOINT").args);
    assert_eq!(
        entrypoint,
        [format!("/usr/local/bin/{binary}")],
        "{rel}: ENTRYPOINT"
    );
    assert!(
        copies.contains(&entrypoint[0]),
        "{rel}: the binary is copied in"
    );
    let volume = exec_form(&find("VOLUME").args);
    assert_eq!(volume, ["/data"], "{rel}: the data volume");
    let env: BTreeMap<String, String> = runtime
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.args))
        .collect();
    assert!(
        env.get("DB_PATH").is_some_and(|p| p.starts_with("/data/")),
        "{rel}: DB_PATH in the volume"
    );
    assert_eq!(
        Some(&find("EXPOSE").args),
        env.get("PORT"),
        "{rel}: EXPOSE is PORT"
    );
}

#[test]
fn dockerfiles_follow_the_project_rules() {
    check_dockerfile(
        "deploy/monitor.Dockerfile",
        "truebit-monitor",
        "truebit-monitor",
    );
    let manifest: toml::Value = toml::from_str(&read("monitor/Cargo.toml")).expect("toml");
    assert_eq!(
        manifest["package"]["name"].as_str(),
        Some("truebit-monitor")
    );
    // The image's defaults are the ones the binary accepts, PORT its default port.
    let port = cli_options()
        .into_iter()
        .find(|o| o.env.as_deref() == Some("PORT"))
        .and_then(|o| o.default)
        .expect("PORT has a default");
    assert!(read("deploy/monitor.Dockerfile").contains(&format!("PORT={port}")));
    let env: Vec<(String, String)> = dockerfile("deploy/monitor.Dockerfile")
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.args))
        .filter(|(k, _)| k != "RUSTUP_TOOLCHAIN" && k != "CARGO_TERM_COLOR")
        .collect();
    let known = monitor_env_names();
    for (k, _) in &env {
        assert!(
            known.contains(k),
            "monitor.Dockerfile sets {k}, which the monitor does not read"
        );
    }
    let dir = support::tempdir();
    let db = dir.path().join("m.db").display().to_string();
    let mut vars: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| k != "DB_PATH")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("DB_PATH", &db));
    let out = monitor(&["api-key", "list"], &vars);
    assert!(
        out.status.success(),
        "the image's ENV is rejected: {}",
        stderr(&out)
    );

    // The aggregator's image: its package arrives with the aggregator issue.
    check_dockerfile(
        "deploy/aggregator.Dockerfile",
        "truebit-aggregator",
        "truebit-aggregator",
    );
    let aggregator_env: BTreeSet<String> = dockerfile("deploy/aggregator.Dockerfile")
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.args))
        .map(|(k, _)| k)
        .filter(|k| k != "RUSTUP_TOOLCHAIN" && k != "CARGO_TERM_COLOR")
        .collect();
    check_aggregator_env(&aggregator_env, "deploy/aggregator.Dockerfile");
    if root().join("aggregator/Cargo.toml").exists() {
        let manifest: toml::Value = toml::from_str(&read("aggregator/Cargo.toml")).expect("toml");
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some("truebit-aggregator"),
            "deploy/aggregator.Dockerfile builds -p truebit-aggregator"
        );
    }
}

#[test]
fn dockerfiles_pass_hadolint() {
    let hadolint = find_program("hadolint", "TRUEBIT_TEST_HADOLINT");
    let lint = |files: &[&Path]| {
        Command::new(&hadolint)
            .args(["--no-color", "--config"])
            .arg(root().join(".hadolint.yaml"))
            .args(files)
            .current_dir(root())
            .output()
            .expect("hadolint runs")
    };
    let out = lint(&[
        Path::new("deploy/monitor.Dockerfile"),
        Path::new("deploy/aggregator.Dockerfile"),
    ]);
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The linter is really at work: a bad file fails.
    let dir = support::tempdir();
    let bad = dir.path().join("bad.Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian:latest\nADD https://example.org/x.tar.gz /x\nRUN apt-get install curl\n",
    )
    .expect("write");
    let out = lint(&[&bad]);
    let said = stdout(&out);
    assert!(!out.status.success() && said.contains("DL3007"), "{said}");
}

/// `.dockerignore` as Docker reads it: patterns in order, `!` re-includes, a matching
/// folder excludes everything in it.
struct DockerIgnore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn load() -> DockerIgnore {
        let patterns = read(".dockerignore")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negated, p) = match l.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, l),
                };
                let segments = p
                    .trim_start_matches('/')
                    .trim_end_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (negated, segments)
            })
            .collect();
        DockerIgnore { patterns }
    }

    fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for (negated, pattern) in &self.patterns {
            let hit = (1..=segments.len()).any(|n| glob_segments(pattern, &segments[..n]));
            if hit {
                excluded = !negated;
            }
        }
        excluded
    }
}

fn glob_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| glob_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => {
            !path.is_empty()
                && glob(first.as_bytes(), path[0].as_bytes())
                && glob_segments(rest, &path[1..])
        }
    }
}

/// `*` and `?` within one path segment.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[test]
fn dockerignore_keeps_what_the_build_needs_and_nothing_else() {
    let ignore = DockerIgnore::load();
    let workspace: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let members: Vec<String> = workspace["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    assert!(members.contains(&"monitor".to_owned()));
    let mut needed: Vec<String> = ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"]
        .map(String::from)
        .to_vec();
    for member in &members {
        let mut stack = vec![root().join(member)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("member folder").flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(root())
                    .expect("inside")
                    .display()
                    .to_string();
                if path.is_dir() {
                    if entry.file_name() != "target" {
                        stack.push(path);
                    }
                } else {
                    needed.push(rel);
                }
            }
        }
    }
    for path in &needed {
        assert!(
            !ignore.excludes(path),
            ".dockerignore excludes {path}, which the build needs"
        );
    }
    for path in [
        ".git/config",
        "target/release/truebit-monitor",
        "truebit-monitor.db",
        "monitor/truebit-monitor.db-wal",
        ".env",
        "deploy/certs/privkey.pem",
    ] {
        assert!(ignore.excludes(path), ".dockerignore must exclude {path}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs deploy/healthcheck.sh as the image does, with HOST and PORT.
fn healthcheck(host: &str, port: u16) -> bool {
    Command::new(root().join("deploy/healthcheck.sh"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOST", host)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the health check runs")
        .success()
}

#[test]
fn healthcheck_passes_on_a_healthy_monitor_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let script = root().join("deploy/healthcheck.sh");
    let mode = std::fs::metadata(&script)
        .expect("script")
        .permissions()
        .mode();
    assert!(
        mode & 0o111 != 0,
        "deploy/healthcheck.sh must be executable (COPY keeps the mode)"
    );

    let dir = support::tempdir();
    let log_file = support::write(&dir.path().join("node.log"), "");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("monitor.log")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("run")
        .env_clear()
        .env("DB_PATH", dir.path().join("m.db"))
        .env("LOG_FILE", &log_file)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("TASK_DATA_PASSWORD", "health-check-password")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the monitor starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthcheck("127.0.0.1", port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the monitor exited ({status}):\n{}",
                std::fs::read_to_string(dir.path().join("monitor.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the monitor never became healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(port, "/health").0, 200);
    assert!(
        healthcheck("0.0.0.0", port),
        "a wildcard HOST is checked on loopback"
    );

    // The backups of docs/OPERATIONS.md, taken while the monitor runs (WAL), are whole
    // databases the monitor opens.
    let sqlite3 = find_program("sqlite3", "TRUEBIT_TEST_SQLITE3");
    let db = dir.path().join("m.db");
    for (name, command) in [
        ("backup.db", ".backup '{}'"),
        ("vacuum.db", "VACUUM INTO '{}'"),
    ] {
        let copy = dir.path().join(name);
        let out = Command::new(&sqlite3)
            .arg(&db)
            .arg(command.replace("{}", &copy.display().to_string()))
            .output()
            .expect("sqlite3 runs");
        assert!(out.status.success(), "sqlite3 {command}: {}", stderr(&out));
        let out = Command::new(&sqlite3)
            .arg(&copy)
            .arg("PRAGMA integrity_check")
            .output()
            .expect("sqlite3 runs");
        assert_eq!(stdout(&out).trim(), "ok", "{name}");
        let copy = copy.display().to_string();
        let out = monitor(&["api-key", "list"], &[("DB_PATH", &copy)]);
        assert!(
            out.status.success(),
            "the monitor cannot open {name}: {}",
            stderr(&out)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !healthcheck("127.0.0.1", port),
        "nothing listens: unhealthy"
    );

    // Something answers, but not 200: unhealthy, and it asked for /health.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fake = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the check connects");
        let mut request = String::new();
        BufReader::new(conn.try_clone().expect("clone"))
            .read_line(&mut request)
            .expect("request line");
        conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            .expect("answer");
        request
    });
    assert!(!healthcheck("127.0.0.1", fake), "a 503 is unhealthy");
    let request = server.join().expect("fake server");
    assert!(request.starts_with("GET /health HTTP/1.1"), "{request:?}");
}

// ------------------------------------------------------------------------------------------
// systemd units
// ------------------------------------------------------------------------------------------

fn unit_values(unit: &str, key: &str, commented_too: bool) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = if commented_too {
                l.strip_prefix('#').unwrap_or(l)
            } else {
                l
            };
            l.strip_prefix(&format!("{key}="))
        })
        .map(str::to_owned)
        .collect()
}

/// `systemd-analyze verify` (no warning either) and the offline security review, on a
/// copy whose ExecStart points at `binary`.
fn check_unit(name: &str, binary: &Path) -> String {
    let analyze = find_program("systemd-analyze", "TRUEBIT_TEST_SYSTEMD_ANALYZE");
    let text = read(&format!("deploy/systemd/{name}"));
    let exec = unit_values(&text, "ExecStart", false);
    assert_eq!(exec.len(), 1, "{name}: one ExecStart");
    let shipped_binary = exec[0].split_whitespace().next().expect("a command");
    assert!(
        shipped_binary.starts_with("/usr/local/bin/"),
        "{name}: {shipped_binary}"
    );
    let dir = support::tempdir();
    let copy = dir.path().join(name);
    std::fs::write(
        &copy,
        text.replace(shipped_binary, &binary.display().to_string()),
    )
    .expect("write unit");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify {name}:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security runs");
    let report = stdout(&out);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ").map(|(_, r)| r))
        .and_then(|r| r.split_once(": ").map(|(_, v)| v))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{report}{}", stderr(&out)));
    assert!(
        exposure <= 2.0,
        "{name}: systemd rates the exposure {exposure} (keep it at 2.0 or lower):\n{report}"
    );
    text
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let unit = check_unit(
        "truebit-monitor.service",
        Path::new(env!("CARGO_BIN_EXE_truebit-monitor")),
    );
    // The environment it sets (or suggests) is the monitor's.
    let known = monitor_env_names();
    for assignment in unit_values(&unit, "Environment", true) {
        let name = assignment.split('=').next().unwrap_or_default();
        assert!(
            known.contains(name),
            "truebit-monitor.service sets unknown {name}"
        );
    }
    // The command line works, and the config and state folders match the example config.
    let exec = &unit_values(&unit, "ExecStart", false)[0];
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let config = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("ExecStart --config FILE");
    let config_dir = &unit_values(&unit, "ConfigurationDirectory", false)[0];
    assert_eq!(
        Path::new(config).parent(),
        Some(Path::new("/etc").join(config_dir).as_path())
    );
    let mut check: Vec<&str> = args
        .iter()
        .map(|a| {
            if a == config {
                "deploy/monitor.example.toml"
            } else {
                a
            }
        })
        .collect();
    check.push("--help");
    let out = monitor(&check, &[]);
    assert!(out.status.success(), "{check:?}: {}", stderr(&out));
    let example: toml::Value = toml::from_str(&read("deploy/monitor.example.toml")).expect("toml");
    let db = example["db_path"].as_str().expect("db_path");
    let state = &unit_values(&unit, "StateDirectory", false)[0];
    assert!(
        Path::new(db).starts_with(Path::new("/var/lib").join(state)),
        "db_path {db} is not in the StateDirectory /var/lib/{state}"
    );
    assert_eq!(unit_values(&unit, "DynamicUser", false), ["yes"]);
    assert_eq!(unit_values(&unit, "NoNewPrivileges", false), ["yes"]);
    assert_eq!(unit_values(&unit, "ProtectSystem", false), ["strict"]);
    assert!(
        unit_values(&unit, "SupplementaryGroups", false).is_empty(),
        "the docker group is opt-in (commented), never the default"
    );

    let aggregator = check_unit(
        "truebit-aggregator.service",
        &find_program("true", "TRUEBIT_TEST_TRUE"),
    );
    let names: BTreeSet<String> = unit_values(&aggregator, "Environment", true)
        .iter()
        .filter_map(|a| a.split('=').next().map(str::to_owned))
        .collect();
    check_aggregator_env(&names, "truebit-aggregator.service");
}

// ------------------------------------------------------------------------------------------
// The claim of docs/OPERATIONS.md: `:ro` does not make the Docker API read-only
// ------------------------------------------------------------------------------------------

#[test]
fn read_only_bind_of_the_docker_socket_still_lets_a_client_create_containers() {
    let docker = support::docker();
    let socket = docker
        .host
        .strip_prefix("unix://")
        .expect("the private dockerd listens on a Unix socket");
    let dir = support::tempdir();
    let target = dir.path().join("ro-docker.sock");
    std::fs::File::create(&target).expect("mount point");
    let name = format!("ro-socket-proof-{}", std::process::id());
    docker.remove(&name);
    // In a private mount namespace: bind the socket read-only, show the mount flags, and
    // create a container through it (a POST /containers/create).
    let script = r#"set -e
mount --bind -o ro "$1" "$2"
grep -F " $2 " /proc/self/mountinfo
DOCKER_HOST="unix://$2" docker container create --name "$3" tb-test:latest true
"#;
    let out = Command::new(find_program("unshare", "TRUEBIT_TEST_UNSHARE"))
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            socket,
        ])
        .arg(&target)
        .arg(&name)
        .output()
        .expect("unshare runs (as root)");
    docker.remove(&name);
    assert!(
        out.status.success(),
        "creating a container through a read-only bind of the socket failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let said = stdout(&out);
    let mountinfo = said.lines().next().unwrap_or_default();
    let options = mountinfo.split_whitespace().nth(5).unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "the bind was not read-only: {mountinfo}"
    );
    let id = said.lines().nth(1).unwrap_or_default().trim();
    assert!(
        id.len() >= 12,
        "docker create printed no container id: {said}"
    );
}
