//! Live-path latency: a container prints realistic lines at a steady rate; the monitor
//! follows it; this measures, for every entry, the time from Docker's receive timestamp
//! to the moment the entry is visible in SQLite (an upper bound of the commit latency:
//! the poll interval is 2 ms).
//!
//! `DOCKER_HOST=unix:///path/docker.sock cargo run --release -p truebit-monitor --example live_latency -- 20 1000`
//! (seconds, lines per second). Needs the `tb-test:latest` busybox image (scripts/bench
//! makes one).

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use truebit_clock::now_ns;
use truebit_monitor::app::{self, SourceChoice};
use truebit_monitor::config::Settings;
use truebit_monitor::demo::LogGenerator;
use truebit_monitor::store::Store;

fn docker(host: &str, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::main]
async fn main() {
    let host = std::env::var("DOCKER_HOST").expect("set DOCKER_HOST to the engine to use");
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let rate: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    // Bursts of rate/20 single-line entries every ~50 ms (the shell loop's own cost is
    // about 3 ms a round, so it sleeps 47 ms).
    let per_burst = (rate / 20).max(1) as usize;
    let mut generator = LogGenerator::new(3, 1_763_992_000).with_colour(true);
    let mut chunk = String::new();
    let mut n = 0;
    while n < per_burst {
        let line = generator.next_line();
        if !line.text.contains('\n') {
            chunk.push_str(&line.text);
            chunk.push('\n');
            n += 1;
        }
    }
    std::fs::write(dir.path().join("chunk.log"), &chunk).expect("chunk");
    let name = format!("latency-{}", std::process::id());
    let script = "while true; do cat /fx/chunk.log; busybox usleep 47000; done";
    let fx = format!("{}:/fx:ro", dir.path().display());
    let config = Settings {
        db_path: Some(dir.path().join("m.db")),
        docker_host: Some(host.clone()),
        container_name: Some(name.clone()),
        log_retention_days: Some(0),
        ..Default::default()
    }
    .resolve()
    .expect("config");
    let store = Store::open(app::store_config(&config)).expect("store");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app::run_with_store(
        store.clone(),
        config,
        SourceChoice::Configured,
        shutdown.clone(),
    ));
    docker(
        &host,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "-v",
            &fx,
            "tb-test:latest",
            "sh",
            "-c",
            script,
        ],
    );

    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut latencies_us: Vec<i64> = Vec::new();
    while started.elapsed() < warmup + Duration::from_secs(secs) {
        let s = store.clone();
        let newest = tokio::task::spawn_blocking(move || s.entries(2000))
            .await
            .expect("join")
            .expect("entries");
        let t = now_ns();
        for e in newest {
            if seen.insert(e.id) && started.elapsed() > warmup {
                if let Some(rx) = e.received_ns {
                    latencies_us.push((t - rx) / 1000);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    docker(&host, &["rm", "-f", &name]);
    shutdown.cancel();
    let _ = task.await;
    latencies_us.sort_unstable();
    let pct =
        |p: f64| latencies_us[((latencies_us.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "entries={} rate={:.0}/s p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        latencies_us.len(),
        latencies_us.len() as f64 / secs as f64,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}
