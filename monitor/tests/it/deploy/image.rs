//! The Dockerfiles (hadolint and the project's rules), .dockerignore, and the health
//! check script against a real monitor.

use super::compose::check_aggregator_env;
use super::*;

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
    let known = deploy_env_names();
    for (k, _) in &env {
        assert!(
            known.contains(k),
            "monitor.Dockerfile sets {k}, which the monitor does not read"
        );
    }
    let out = monitor_with_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
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
