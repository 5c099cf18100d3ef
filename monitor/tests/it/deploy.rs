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
//! - the restore recipe of docs/OPERATIONS.md is run as written next to a stale `-wal`,
//!   and its page-size conversion on a 4 KiB-page database;
//! - a read-only bind of the Docker socket still lets a client create a container (the
//!   claim docs/OPERATIONS.md makes), against the private dockerd.
//!
//! Needs (scripts/test installs them): nats-server, openssl, sqlite3, hadolint,
//! systemd-analyze, and for the socket test the private dockerd and root (unshare, mount).
//! One submodule per kind of file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;
use truebit_testkit::{find_program, free_port};

use crate::support;

mod backup;
mod compose;
mod config;
mod image;
mod metrics;
mod nats;
mod socket;
mod systemd;

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

/// `api-key list` with `env` (and a database in a temporary folder instead of the
/// env's DB_PATH): a value the monitor rejects fails with exit code 2.
fn monitor_with_env<'a>(env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Output {
    let dir = support::tempdir();
    let db = dir.path().join("monitor.db").display().to_string();
    let mut vars: Vec<(&str, &str)> = env.into_iter().filter(|(k, _)| *k != "DB_PATH").collect();
    vars.push(("DB_PATH", &db));
    monitor(&["api-key", "list"], &vars)
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
        // `[env: NAME=…]` on its own line, or at the end of the option's text.
        if let Some(rest) = text.find("[env: ").map(|i| &text[i + "[env: ".len()..]) {
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

/// Environment the image and the systemd unit set for the C library, not for the monitor
/// (glibc's malloc arenas, docs/PERFORMANCE.md).
const C_LIBRARY_ENV: [&str; 1] = ["MALLOC_ARENA_MAX"];

/// What the image and the systemd unit may set: the monitor's environment and
/// [`C_LIBRARY_ENV`].
fn deploy_env_names() -> BTreeSet<String> {
    let mut names = monitor_env_names();
    names.extend(C_LIBRARY_ENV.map(String::from));
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
