//! Writes a realistic runner-node log to stdout, for benchmarks:
//! `cargo run --release -p truebit-monitor --example genlog -- [--node] [--plain] 1024 > big.log`
//! (size in MiB).
//!
//! - `--node`: node-like sizes (`LogGenerator::with_short_entries`): small task inputs and
//!   short progress lines, most entries a hundred-odd bytes. Without it, task inputs run
//!   from 200 bytes to 40 KiB (every 25th over Docker's 16 KiB frame), which makes far
//!   fewer, longer entries per MB.
//! - `--plain`: the node's own output (as in its log files), without Docker's timestamps.
//!
//! What was written (bytes, lines, entries, bytes per entry, tasks) goes to stderr, so
//! that every figure measured on the file can state its content.

use std::io::{BufWriter, Write as _};

use truebit_monitor::demo::LogGenerator;

fn main() -> std::io::Result<()> {
    let mut node = false;
    let mut plain = false;
    let mut mib: u64 = 100;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--node" => node = true,
            "--plain" => plain = true,
            other => match other.parse() {
                Ok(n) => mib = n,
                Err(_) => {
                    eprintln!("usage: genlog [--node] [--plain] [MiB]");
                    std::process::exit(2);
                }
            },
        }
    }
    let target = mib * 1024 * 1024;
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut generator = LogGenerator::new(7, 1_763_992_000).with_short_entries(node);
    let mut written = 0u64;
    while written < target {
        let line = generator.next_line();
        let text = if plain { line.text } else { line.docker_text() };
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        written += text.len() as u64 + 1;
    }
    out.flush()?;
    let e = generator.expected();
    eprintln!(
        "genlog{}{}: {written} bytes, {} lines, {} entries, {:.0} bytes/entry, {} tasks, {} invoices",
        if node { " --node" } else { "" },
        if plain { " --plain" } else { "" },
        e.lines,
        e.entries,
        written as f64 / e.entries.max(1) as f64,
        e.tasks_created,
        e.invoices,
    );
    Ok(())
}
