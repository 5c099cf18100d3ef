//! Writes a realistic runner-node log with Docker timestamps to stdout, for benchmarks:
//! `cargo run --release -p truebit-monitor --example genlog -- 1024 > big.log` (MiB).

use std::io::{BufWriter, Write as _};

use truebit_monitor::demo::LogGenerator;

fn main() -> std::io::Result<()> {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let target = mib * 1024 * 1024;
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut generator = LogGenerator::new(7, 1_763_992_000);
    let mut written = 0u64;
    while written < target {
        let line = generator.next_line();
        let text = line.docker_text();
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        written += text.len() as u64 + 1;
    }
    out.flush()
}
