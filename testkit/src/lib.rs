//! Test support shared by the monitor's and the aggregator's integration tests, examples
//! and benchmarks (a dev-dependency only): a real nats-server of the test's own
//! ([`NatsServer`]), deploy/nats-server.conf made runnable in a temporary folder
//! ([`shipped_nats_conf`]), and a test CA with a server certificate for 127.0.0.1 made
//! with the openssl CLI ([`certificates`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A loopback TCP port that was free a moment ago, for a server the test starts. Never the
/// same port twice in one test process: `bind(0)` can hand back a port just released, and
/// two servers given the same one lost one of them ("Address already in use"; the
/// aggregator's SIGKILL cluster test failed so, once in a few runs).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if GIVEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// The path of `name`: the environment variable `env` if set, else the first in `PATH`,
/// /usr/sbin, /sbin or /usr/local/bin. Panics with what to install.
pub fn find_program(name: &str, env: &str) -> PathBuf {
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

/// The nats-server binary (`TRUEBIT_TEST_NATS_SERVER` overrides the search).
pub fn nats_bin() -> PathBuf {
    find_program("nats-server", "TRUEBIT_TEST_NATS_SERVER")
}

/// A nats-server process of the test's own on 127.0.0.1, stopped (by its pid) when
/// dropped. Its ports are read from its log once it says "Server is ready".
#[derive(Debug)]
pub struct NatsServer {
    dir: PathBuf,
    args: Vec<String>,
    env: Option<Vec<(String, String)>>,
    child: Option<Child>,
    starts: u32,
    /// The client port.
    pub port: u16,
    /// The WebSocket port, when the configuration has a listener.
    pub websocket_port: Option<u16>,
    /// The HTTP monitoring port, when asked for (`-m`).
    pub http_port: Option<u16>,
}

impl NatsServer {
    /// JetStream on (stored under `dir`), no authentication.
    pub fn jetstream(dir: &Path) -> NatsServer {
        let js = dir.join("nats").join("js");
        NatsServer::start(dir, &["-js", "-sd", &js.display().to_string()])
    }

    /// `nats-server -a 127.0.0.1 ARGS -p -1`, logging under `dir/nats/`.
    pub fn start(dir: &Path, args: &[&str]) -> NatsServer {
        NatsServer::spawn_new(dir, args, None)
    }

    /// As [`NatsServer::start`], with only `PATH` and `env` in the environment.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(String, String)]) -> NatsServer {
        NatsServer::spawn_new(dir, args, Some(env.to_vec()))
    }

    fn spawn_new(dir: &Path, args: &[&str], env: Option<Vec<(String, String)>>) -> NatsServer {
        let dir = dir.join("nats");
        std::fs::create_dir_all(&dir).expect("nats dir");
        let mut server = NatsServer {
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            child: None,
            starts: 0,
            port: 0,
            websocket_port: None,
            http_port: None,
        };
        server.spawn();
        server
    }

    /// Starts the process (on the same client port after the first start) and waits
    /// until it is ready.
    pub fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.join(format!("nats-{}.log", self.starts));
        let port = if self.port == 0 {
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let mut command = Command::new(nats_bin());
        command
            .args(["-a", "127.0.0.1"])
            .args(&self.args)
            .args(["-p", &port])
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(env) = &self.env {
            command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env.iter().map(|(k, v)| (k, v)));
        }
        let mut child = command.spawn().expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                let port = |marker: &str| -> Option<u16> {
                    text.lines()
                        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest))
                        .and_then(|rest| rest.trim().rsplit(':').next())
                        .and_then(|p| p.trim().parse().ok())
                };
                self.port = port("Listening for client connections on ")
                    .unwrap_or_else(|| panic!("no client port in the log:\n{text}"));
                self.websocket_port = port("Listening for websocket clients on ");
                self.http_port = port("Starting http monitor on ");
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited ({status}):\n{text}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server did not start within 20 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the process ([`terminate`], 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Kills the server with SIGKILL (a crash: no shutdown of its own) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL nats-server");
            child.wait().expect("reap nats-server");
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the running process, by pid.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops `child` the way an operator would: SIGTERM by its pid, then SIGKILL if it has
/// not exited `within`.
pub fn terminate(child: &mut Child, within: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A test CA and a server certificate it signed, for localhost and 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Certificates {
    /// The folder: `ca.pem`, and the server's `fullchain.pem` and `privkey.pem` (the
    /// names deploy/nats-server.conf expects).
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes [`Certificates`] in `dir/certs` with the openssl CLI, as an operator would
/// (`TRUEBIT_TEST_OPENSSL` overrides where openssl is).
pub fn certificates(dir: &Path) -> Certificates {
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
         -out ca.pem -days 2 -subj /CN=truebit-test-CA \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
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
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Certificates {
        ca: certs.join("ca.pem"),
        cert: certs.join("fullchain.pem"),
        key: certs.join("privkey.pem"),
        dir: certs,
    }
}

/// deploy/nats-server.conf (`shipped`, its text) with the certificate folder and the
/// JetStream store moved into `dir`, and the WebSocket listener on loopback with a free
/// port, written to `dir/nats-server.conf`. Every replaced text must be there: when the
/// shipped file changes shape, this fails instead of testing something else.
pub fn shipped_nats_conf(shipped: &str, dir: &Path, certs: &Path) -> PathBuf {
    let replace = |text: String, from: &str, to: &str, count: usize| {
        assert_eq!(
            text.matches(from).count(),
            count,
            "deploy/nats-server.conf: expected {count} × {from:?}"
        );
        text.replace(from, to)
    };
    let conf = replace(
        shipped.to_owned(),
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
