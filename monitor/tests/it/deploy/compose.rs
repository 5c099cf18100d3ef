//! The compose files: files, images, volumes, networks, ports, the Docker API proxy's
//! rules, Traefik, and every environment variable against the binaries.

use super::nats::{nats_conf_number, nats_conf_quoted, nats_conf_top, nats_conf_variables};
use super::*;

/// A compose file, parsed, with `${…}` interpolated from `vars` as `docker compose` does.
pub(super) struct Compose {
    /// Repository-relative path.
    file: String,
    /// The compose file's folder (relative paths in it start there).
    dir: PathBuf,
    doc: Value,
    /// Variables the file refuses to start without (`${VAR:?message}`).
    required: BTreeSet<String>,
}

impl Compose {
    pub(super) fn load(file: &str, vars: &[(&str, &str)]) -> Compose {
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

    pub(super) fn service(&self, name: &str) -> &Value {
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

    pub(super) fn environment(&self, service: &Value) -> BTreeMap<String, String> {
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

/// The Docker API proxy image, and the first build of it that gates what `CONTAINERS=1`
/// would otherwise let a GET reach: `/containers/{id}/archive` (any file of any container,
/// the node's wallet keys included) and `/containers/{id}/export` (its whole file
/// system), each behind a switch of its own (`ALLOW_ARCHIVE`, `ALLOW_EXPORT`, and
/// `ALLOW_LOGS` for the logs), checked before the `CONTAINERS` rule.
///
/// Checked in the image's source, linuxserver/docker-socket-proxy: its rule template
/// (root/templates/haproxy.cfg) has the gates from the build tagged `3.4.3-r0-ls92`
/// (2026-08-18, changelog "Add ALLOW_ARCHIVE, ALLOW_CHANGES, ALLOW_EXPORT, ALLOW_LOGS,
/// ALLOW_TOP options"); `-r0-ls91` and older have none. Builds are numbered in order
/// (`…-lsN`), so any later one has them too. tecnativa/docker-socket-proxy has no such
/// gates in any release (v0.1.0 to v0.4.1: everything under `/containers` is one
/// `CONTAINERS` rule); its `ALLOW_ARCHIVE=0` would be a switch that does nothing.
const PROXY_IMAGE: &str = "lscr.io/linuxserver/socket-proxy";
const PROXY_FIRST_GATED_BUILD: u32 = 92;

/// Switches of the Docker API proxy image (linuxserver's socket-proxy, build 92: the
/// variables its Dockerfile sets and its rule template reads). Every one is spelled out in
/// the compose files, so a changed default of the image opens nothing.
const PROXY_SWITCHES: &[&str] = &[
    "ALLOW_ARCHIVE",
    "ALLOW_CHANGES",
    "ALLOW_EXPORT",
    "ALLOW_LOGS",
    "ALLOW_PAUSE",
    "ALLOW_RESTARTS",
    "ALLOW_START",
    "ALLOW_STOP",
    "ALLOW_TOP",
    "ALLOW_UNPAUSE",
    "AUTH",
    "BUILD",
    "COMMIT",
    "CONFIGS",
    "CONTAINERS",
    "DISTRIBUTION",
    "EVENTS",
    "EXEC",
    "GRPC",
    "IMAGES",
    "INFO",
    "LIBPOD_ALLOW_PAUSE",
    "LIBPOD_ALLOW_POD_PAUSE",
    "LIBPOD_ALLOW_POD_RESTARTS",
    "LIBPOD_ALLOW_POD_START",
    "LIBPOD_ALLOW_POD_STOP",
    "LIBPOD_ALLOW_POD_UNPAUSE",
    "LIBPOD_ALLOW_RESTARTS",
    "LIBPOD_ALLOW_START",
    "LIBPOD_ALLOW_STOP",
    "LIBPOD_ALLOW_UNPAUSE",
    "LIBPOD_CONTAINERS",
    "LIBPOD_EVENTS",
    "LIBPOD_EXEC",
    "LIBPOD_GENERATE",
    "LIBPOD_IMAGES",
    "LIBPOD_INFO",
    "LIBPOD_MANIFESTS",
    "LIBPOD_NETWORKS",
    "LIBPOD_PING",
    "LIBPOD_PLAY",
    "LIBPOD_PODS",
    "LIBPOD_SECRETS",
    "LIBPOD_SYSTEM",
    "LIBPOD_VERSION",
    "LIBPOD_VOLUMES",
    "NETWORKS",
    "NODES",
    "PING",
    "PLUGINS",
    "POST",
    "SECRETS",
    "SERVICES",
    "SESSION",
    "SWARM",
    "SYSTEM",
    "TASKS",
    "VERSION",
    "VOLUMES",
];

/// The build number of a linuxserver image tag (`3.4.3-r0-ls92` -> 92, also with an
/// `@sha256:` digest after it).
fn linuxserver_build(tag: &str) -> Option<u32> {
    let tag = tag.split('@').next()?;
    tag.rsplit_once("-ls")?.1.parse().ok()
}

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
    let tag = image
        .strip_prefix(PROXY_IMAGE)
        .and_then(|t| t.strip_prefix(':'))
        .unwrap_or_else(|| {
            panic!(
                "{}: {proxy_name} is not {PROXY_IMAGE}, the proxy image known to gate \
                 archive and export: {image}",
                compose.file
            )
        });
    assert!(
        linuxserver_build(tag).is_some_and(|b| b >= PROXY_FIRST_GATED_BUILD),
        "{}: {image} is not pinned to a build with the archive/export gates \
         (…-ls{PROXY_FIRST_GATED_BUILD} or later)",
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
    // The operator is told what CONTAINERS=1 still opens.
    let text = read(&compose.file);
    let comments: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(
        comments
            .join(" ")
            .to_lowercase()
            .contains("the monitor can read every container's env through"),
        "{}: say in a comment that the monitor can read every container's Env through the proxy",
        compose.file
    );
    for (gate, value) in [
        ("CONTAINERS", "1"),
        ("ALLOW_ARCHIVE", "0"),
        ("ALLOW_EXPORT", "0"),
    ] {
        assert_eq!(
            switches.get(gate).map(String::as_str),
            Some(value),
            "{}: {proxy_name} needs {gate}={value}",
            compose.file
        );
    }
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
    let out = monitor_with_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
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

/// The aggregator binary built by this workspace run, if it is there and newer than every
/// file of aggregator/src (`cargo test --workspace` builds it before any test runs; a
/// `cargo test -p truebit-monitor` alone does not).
fn aggregator_binary() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_BIN_EXE_truebit-monitor")).with_file_name("truebit-aggregator");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok()?;
    let mut stack = vec![root().join("aggregator/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::metadata(&path).and_then(|m| m.modified()).ok()? > built {
                return None;
            }
        }
    }
    Some(bin)
}

/// `truebit-aggregator [ARGS] --help` of the built binary.
pub(super) fn aggregator_help(args: &[&str]) -> Option<String> {
    let bin = aggregator_binary()?;
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the aggregator binary runs");
    assert!(
        out.status.success(),
        "truebit-aggregator --help: {}",
        stderr(&out)
    );
    Some(stdout(&out))
}

/// The environment names the aggregator reads: from `truebit-aggregator --help` when the
/// binary is built (as the monitor's are checked), else from its source (`env = "NAME"`
/// in its clap settings). Both name exactly what clap reads.
fn aggregator_env_names() -> BTreeSet<String> {
    if let Some(help) = aggregator_help(&["run"]) {
        let names: BTreeSet<String> = parse_help_options(&help)
            .into_iter()
            .filter_map(|o| o.env)
            .collect();
        assert!(
            names.contains("AGGREGATOR_NATS_URL") && names.contains("DB_PATH"),
            "cannot read the environment names of `truebit-aggregator run --help`: {names:?}"
        );
        return names;
    }
    let mut names = BTreeSet::new();
    let mut stack = vec![root().join("aggregator/src")];
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
        names.contains("AGGREGATOR_NATS_URL") && names.contains("DB_PATH"),
        "cannot find the aggregator's `env = \"NAME\"` declarations in aggregator/src: {names:?}"
    );
    names
}

/// Every environment name `what` sets must be one the aggregator reads.
pub(super) fn check_aggregator_env(names: &BTreeSet<String>, what: &str) {
    let known = aggregator_env_names();
    let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "{what}: the aggregator does not read {unknown:?} (it reads {known:?})"
    );
}

/// The aggregator command line of a deploy file (`run --create-stream`) is one the
/// binary accepts.
pub(super) fn check_aggregator_command(args: &[String], what: &str) {
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "{what}: the aggregator runs `run`"
    );
    let Some(help) = aggregator_help(&["run"]) else {
        return;
    };
    let flags: BTreeSet<String> = parse_help_options(&help)
        .into_iter()
        .map(|o| o.flag)
        .collect();
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(
            flags.contains(flag),
            "{what}: `truebit-aggregator run` has no option {flag} (it has {flags:?})"
        );
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
    check_aggregator_command(
        &compose.strings(aggregator, "command"),
        "deploy/docker-compose.federation.yml",
    );
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
