//! Appends node-like log lines (`LogGenerator::with_short_entries`, the node's plain
//! output) to a file at a steady rate, for the soak benchmark (`scripts/bench soak`): the
//! monitor follows the file (`LOG_FILE`) as it would a node's log.
//!
//! `cargo run --release -p truebit-monitor --example soak_writer -- FILE [LINES_PER_SEC] [SECONDS]`
//! (defaults: 1,000 lines/s for 3,600 s). Lines go out every 10 ms; at the end it prints
//! how many lines and bytes it wrote and the rate it kept.

use std::io::Write as _;
use std::time::{Duration, Instant};

use truebit_monitor::demo::LogGenerator;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: soak_writer FILE [LINES_PER_SEC] [SECONDS]");
        std::process::exit(2);
    };
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3_600);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let start_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut generator = LogGenerator::new(11, start_secs)
        .with_short_entries(true)
        .with_banner(false);
    let tick = Duration::from_millis(10);
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let (mut lines, mut bytes) = (0_u64, 0_u64);
    let mut buffer = String::new();
    let mut next = started;
    while Instant::now() < end {
        // Lines due by now: catches up after a late wake-up, never runs ahead.
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        buffer.clear();
        while lines < due {
            buffer.push_str(&generator.next_line().text);
            buffer.push('\n');
            lines += 1;
        }
        if !buffer.is_empty() {
            file.write_all(buffer.as_bytes())?;
            bytes += buffer.len() as u64;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let e = generator.expected();
    println!(
        "soak_writer: {lines} lines ({} entries, {} tasks), {bytes} bytes in {secs:.0} s = {:.0} lines/s",
        e.entries,
        e.tasks_created,
        lines as f64 / secs
    );
    Ok(())
}
