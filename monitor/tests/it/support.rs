//! Test support: the private Docker engine started by `scripts/test`, containers made from
//! the busybox image, the monitor run in-process or as a real process, and waiting.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use truebit_monitor::app::{self, SourceChoice};
use truebit_monitor::config::{Config, Settings};
use truebit_monitor::store::{Store, StoreConfig, Summary};

/// The image `scripts/test` imports from the static busybox binary.
pub const IMAGE: &str = "tb-test:latest";

/// The private Docker engine of this test run.
#[derive(Clone, Debug)]
pub struct TestDocker {
    pub host: String,
}

/// The engine `scripts/test` started. A real-component test never skips silently: without
/// it the test fails and says how to run it.
pub fn docker() -> TestDocker {
    match std::env::var("TRUEBIT_TEST_DOCKER_HOST") {
        Ok(host) if !host.is_empty() => TestDocker { host },
        _ => panic!(
            "TRUEBIT_TEST_DOCKER_HOST is not set: the real-Docker tests need the private dockerd that \
             scripts/test starts; run `scripts/test` (or `scripts/test -- docker` for these tests only)"
        ),
    }
}

impl TestDocker {
    /// Runs the docker CLI against this engine; panics with its stderr on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a detached container running `script` under `sh -c`, with `mounts`
    /// (host dir, container dir, read-only?). Returns the container id.
    pub fn run(&self, name: &str, mounts: &[(&Path, &str, bool)], script: &str) -> String {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.into(),
            "--network".into(),
            "none".into(),
        ];
        for (host, inside, ro) in mounts {
            args.push("-v".into());
            args.push(format!(
                "{}:{}{}",
                host.display(),
                inside,
                if *ro { ":ro" } else { "" }
            ));
        }
        args.extend([IMAGE.to_owned(), "sh".into(), "-c".into(), script.into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&refs)
    }

    pub fn remove(&self, name: &str) {
        let _ = Command::new("docker")
            .args(["rm", "-f", name])
            .env("DOCKER_HOST", &self.host)
            .output();
    }
}

/// A container name unique to this test run.
pub fn unique_name(test: &str) -> String {
    format!("runner-node-{test}-{}", std::process::id())
}

pub fn config(docker_host: &str, container: &str, db: &Path) -> Config {
    Settings {
        db_path: Some(db.to_owned()),
        docker_host: Some(docker_host.to_owned()),
        container_name: Some(container.to_owned()),
        // Fixtures carry old node times: keep every entry.
        log_retention_days: Some(0),
        ..Default::default()
    }
    .resolve()
    .expect("test config is valid")
}

/// Opens a store on `db` that keeps every entry (fixtures carry old node times).
pub fn open_store(db: &Path) -> Store {
    let mut config = StoreConfig::new(db.to_owned());
    config.log_retention_days = None;
    Store::open(config).expect("store opens")
}

/// The monitor running in-process on the test's runtime.
pub struct InProcess {
    pub store: Store,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub fn start(config: Config) -> InProcess {
        init_tracing();
        let store = Store::open(app::store_config(&config)).expect("store opens");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app::run_with_store(
            store.clone(),
            config,
            SourceChoice::Configured,
            shutdown.clone(),
        ));
        InProcess {
            store,
            shutdown,
            task,
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        (&mut self.task)
            .await
            .expect("monitor task")
            .expect("monitor ran cleanly");
    }
}

impl Drop for InProcess {
    /// A failed test must not leave the source running: the runtime would wait for it.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The monitor binary as a real process (to kill it with SIGKILL mid-stream).
pub struct Process {
    child: Child,
}

impl Process {
    pub fn start(docker_host: &str, container: &str, db: &Path, log: &Path) -> Process {
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DB_PATH", db)
            .env("DOCKER_HOST", docker_host)
            .env("CONTAINER_NAME", container)
            .env("LOG_LEVEL", "info")
            // Its HTTP server on a port of its own: tests run side by side.
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("monitor binary starts");
        Process { child }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what` and the last
/// value seen.
pub async fn wait_for<T, S: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, S>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the store's summary satisfies `pred`.
pub async fn wait_summary(
    store: &Store,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Summary) -> bool,
) -> Summary {
    wait_for(what, timeout, || {
        let s = store.summary().expect("summary");
        if pred(&s) {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("truebit-it-")
        .tempdir()
        .expect("tempdir")
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write fixture");
    path.to_owned()
}

/// A Docker engine of the test's own (to start it late and restart it), on a socket in `dir`.
pub struct Dockerd {
    child: Child,
    pub host: String,
}

impl Dockerd {
    pub fn start(dir: &Path) -> Dockerd {
        let bin = std::env::var("TRUEBIT_TEST_DOCKERD_BIN").unwrap_or_else(|_| "dockerd".into());
        let sock = dir.join("docker.sock");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .expect("dockerd log");
        let child = Command::new(bin)
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let d = Dockerd {
            child,
            host: format!("unix://{}", sock.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .env("DOCKER_HOST", &d.host)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "private dockerd did not answer within 60 s; see {}",
                dir.join("dockerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn docker(&self) -> TestDocker {
        TestDocker {
            host: self.host.clone(),
        }
    }

    /// Imports the busybox image (no registry is reachable in tests).
    pub fn import_image(&self, dir: &Path) {
        let root = dir.join("image");
        std::fs::create_dir_all(root.join("bin")).expect("image dir");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("busybox-static is installed");
        for c in ["sh", "cat", "echo", "sleep"] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(c));
        }
        let script = format!("tar -C {} -c . | docker import - {IMAGE}", root.display());
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("DOCKER_HOST", &self.host)
            .output()
            .expect("docker import");
        assert!(
            out.status.success(),
            "image import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGTERM and wait for the daemon to exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// The monitor's own log lines go to the test's captured output (shown on failure).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,truebit_monitor=debug",
        ))
        .with_test_writer()
        .try_init();
}
