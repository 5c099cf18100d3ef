//! `truebit-monitor`: parse the command line, load the configuration, start logging,
//! hand over to the library.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use truebit_monitor::alerts;
use truebit_monitor::app::{self, SourceChoice};
use truebit_monitor::config::{Config, Settings, EXAMPLE_CONFIG};
use truebit_monitor::federation::proof;
use truebit_monitor::http;
use truebit_monitor::source::demo::DemoOptions;
use truebit_monitor::source::import::{import_files, ImportCounts};
use truebit_monitor::store::{settings, Store, Summary};
use truebit_web::format::error_chain;

/// Monitor for a TrueBit runner-node: follows the node container's logs through the
/// Docker Engine API (read-only), parses tasks, executions and invoices, and keeps them in
/// a local SQLite database.
///
/// Without a subcommand it runs the monitor. Every option can also be set in the
/// environment (names in brackets) or in a TOML file given with --config.
#[derive(Parser, Debug)]
#[command(name = "truebit-monitor", version, about, long_about)]
struct Cli {
    /// TOML configuration file (see --print-example-config).
    #[arg(long, env = "CONFIG_FILE", value_name = "PATH", global = true)]
    config: Option<PathBuf>,

    /// Print a commented example configuration file and exit.
    #[arg(long)]
    print_example_config: bool,

    #[command(flatten)]
    settings: Settings,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the monitor (the default): follow the node container (or LOG_FILE) into the database.
    Run,
    /// Import log files once: plain or .gz, Docker json-file logs, `docker logs -t` or
    /// `docker compose logs` output. Importing the same file again adds nothing.
    Import {
        /// Files to import, in order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a simulated node that prints realistic runner-node logs through the same
    /// pipeline: a live system to look at without a TrueBit node.
    Demo {
        /// Hours of history to back-fill before going live.
        #[arg(long, default_value_t = 24, value_name = "HOURS")]
        history_hours: u64,
        /// Time-lapse factor for the live part (1 = real time).
        #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
        speed: f64,
        /// Random seed of the simulated node.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The operator password (dashboard login, task input/output).
    Password {
        #[command(subcommand)]
        action: http::admin::PasswordCommand,
    },
    /// Named API keys for scripts: create (shown once), list, revoke.
    ApiKey {
        #[command(subcommand)]
        action: http::admin::ApiKeyCommand,
    },
    /// Alerts: send a test message to a channel.
    Alert {
        #[command(subcommand)]
        action: alerts::cli::AlertCommand,
    },
    /// Fetch this node's uptime proof from the federation hub and print it (JSON): the
    /// 5-minute windows its pseudonymous id reported in over whole UTC days, signed by
    /// the pinned hub keys. Anyone can check it offline with
    /// `truebit-aggregator verify-proof`.
    UptimeProof {
        /// First UTC day [default: 30 days before --to].
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// Last UTC day, inclusive [default: yesterday].
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: Option<String>,
        /// Seconds to wait for the hub's replicas to answer.
        #[arg(long, default_value_t = 5, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
        wait: u64,
    },
}

fn main() -> ExitCode {
    let notes = prefixed_environment(std::env::args_os().any(|a| a == "--container-name"));
    let cli = Cli::parse();
    if cli.print_example_config {
        print!(
            "{EXAMPLE_CONFIG}{}{}",
            http::config::EXAMPLE_SECTION,
            alerts::config::EXAMPLE_SECTION
        );
        return ExitCode::SUCCESS;
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("truebit-monitor: {}", error_chain(err.as_ref()));
            return ExitCode::from(2);
        }
    };
    // A one-shot command (import, password, api-key, alert) only talks when something is
    // wrong, unless asked otherwise; uptime-proof's own error line says why it failed
    // (its connection attempts are not logged besides).
    let quiet_import = matches!(
        cli.command,
        Some(
            Command::Import { .. }
                | Command::Password { .. }
                | Command::ApiKey { .. }
                | Command::Alert { .. }
        )
    ) && cli.settings.log_level.is_none();
    let quiet_proof = matches!(cli.command, Some(Command::UptimeProof { .. }))
        && cli.settings.log_level.is_none();
    init_tracing(if quiet_proof {
        "error"
    } else if quiet_import {
        "warn"
    } else {
        &config.log_level
    });
    let follows_docker = matches!(cli.command, None | Some(Command::Run));
    for (note, about_the_container) in notes {
        if follows_docker || !about_the_container {
            tracing::warn!("{note}");
        }
    }
    match run(cli.command.unwrap_or(Command::Run), config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("truebit-monitor: {}", error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Every setting's environment variable may also be given as `TBM_<NAME>`, which wins
/// over `<NAME>`: shells and platforms set some bare names for their own use (zsh sets
/// `HOST` to the machine's name, container platforms set `CONTAINER_NAME`). A bare `HOST`
/// that is not an address is set aside, and a bare `CONTAINER_NAME` is said out loud, so
/// that neither silently changes what the monitor binds to or follows. Returns the notes
/// to log once logging is up (and whether each is about the followed container). Runs
/// first in `main`, before any other thread exists.
fn prefixed_environment(container_name_argument: bool) -> Vec<(String, bool)> {
    let mut notes = Vec::new();
    let prefixed: Vec<_> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let bare = name.to_str()?.strip_prefix("TBM_")?.to_owned();
            (!bare.is_empty()).then_some((bare, value))
        })
        .collect();
    let given = |bare: &str| prefixed.iter().any(|(name, _)| name == bare);
    if !given("HOST") {
        if let Some(host) = std::env::var_os("HOST") {
            let text = host.to_string_lossy().trim().to_owned();
            let address = text.is_empty()
                || text == "localhost"
                || text
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok();
            if !address {
                std::env::remove_var("HOST");
                notes.push((format!(
                    "HOST={text:?} in the environment is not an address (zsh sets HOST to the machine's name): ignored; set TBM_HOST or --host to choose where the monitor listens"
                ), false));
            }
        }
    }
    if !given("CONTAINER_NAME") && !container_name_argument {
        if let Some(name) = std::env::var_os("CONTAINER_NAME") {
            notes.push((format!(
                "following the container named by the environment variable CONTAINER_NAME ({:?}); if something else set it, set TBM_CONTAINER_NAME (which wins) or --container-name",
                name.to_string_lossy()
            ), true));
        }
    }
    for (bare, value) in prefixed {
        std::env::set_var(bare, value);
    }
    notes
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let file = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    Ok(cli.settings.clone().over(file).resolve()?)
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: not in `docker compose logs`, journald
    // or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Run => serve(config, SourceChoice::Configured),
        Command::Demo {
            history_hours,
            speed,
            seed,
        } => {
            if !(speed.is_finite() && speed > 0.0) {
                anyhow::bail!("invalid --speed {speed}: use a positive number such as 1 or 60");
            }
            let options = DemoOptions {
                seed,
                history: Duration::from_secs(history_hours * 3600),
                speed,
            };
            serve(config, SourceChoice::Demo(options))
        }
        Command::Import { files, json } => import(config, &files, json),
        Command::Password { action } => http::admin::password(action, &config),
        Command::ApiKey { action } => http::admin::api_key(action, &config),
        Command::Alert { action } => {
            let store = truebit_monitor::store::Store::open(app::store_config(&config))?;
            alerts::cli::run(action, &config, store)
        }
        Command::UptimeProof { from, to, wait } => uptime_proof(&config, from, to, wait),
    }
}

fn uptime_proof(
    config: &Config,
    from: Option<String>,
    to: Option<String>,
    wait: u64,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let store = Store::open(app::store_config(config))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let proof = runtime.block_on(proof::fetch_for_operator(
        &store,
        &config.federation,
        (from.as_deref(), to.as_deref()),
        &truebit_clock::Clock::system(),
        Duration::from_secs(wait),
    ));
    store.close()?;
    let (_, proof) = proof?;
    let mut json = proof.to_json_pretty();
    json.push(b'\n');
    std::io::stdout()
        .write_all(&json)
        .context("cannot write the proof to standard output")?;
    Ok(())
}

fn serve(config: Config, choice: SourceChoice) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        app::cancel_on_signal(shutdown.clone());
        tracing::info!(db = %config.db_path.display(), "truebit-monitor {} starting", env!("CARGO_PKG_VERSION"));
        app::run(config, choice, shutdown).await
    })
}

fn import(config: Config, files: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let mut store_config = app::store_config(&config);
    store_config.writer_cache_mib = 16;
    // Four batches of node-like entries per transaction: every commit rewrites the pages
    // of the task index that its new tasks fall on (random execution ids), so fewer,
    // larger commits write less (docs/PERFORMANCE.md, import round of 12-04; +4 MiB peak).
    store_config.batch_max_entries = 8192;
    store_config.read_connections = 1;
    let store = Store::open(store_config)?;
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let counts = if std::io::stderr().is_terminal() && !json {
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let counts = import_files(&store, files, app::parser_config(&config), &bar);
        bar.finish_and_clear();
        counts?
    } else {
        import_files(&store, files, app::parser_config(&config), &())?
    };
    let summary = store.summary()?;
    let retention = RetentionOutlook::new(store.retention(), std::time::SystemTime::now());
    store.close()?;
    if json {
        let out = serde_json::json!({
            "imported": counts,
            "database": database_json(&summary),
            "retention": retention,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_summary(&counts, &summary);
        for line in retention.lines() {
            println!("{line}");
        }
    }
    Ok(())
}

/// What retention will do with what was just imported.
#[derive(serde::Serialize)]
struct RetentionOutlook {
    /// Days a log entry is kept from when it was stored (imported); `None`: forever.
    log_days: Option<u32>,
    /// The UTC day this import's log entries are deleted after; `None`: never.
    log_entries_kept_until: Option<String>,
    /// Days tasks, invoices and container events are kept, by their own time; `None`:
    /// forever.
    task_days: Option<u32>,
    /// `config` (LOG_RETENTION_DAYS…) or `database` (saved on the dashboard).
    source: settings::SettingSource,
}

impl RetentionOutlook {
    fn new(r: settings::Retention, now: std::time::SystemTime) -> Self {
        let until = r.log_days.map(|days| {
            let t = time::OffsetDateTime::from(now) + time::Duration::days(i64::from(days));
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        });
        Self {
            log_days: r.log_days,
            log_entries_kept_until: until,
            task_days: r.task_days,
            source: r.source,
        }
    }

    fn lines(&self) -> Vec<String> {
        let from = match self.source {
            settings::SettingSource::Config => "LOG_RETENTION_DAYS",
            settings::SettingSource::Database => "the dashboard's Settings",
        };
        let log = match (self.log_days, &self.log_entries_kept_until) {
            (Some(days), Some(until)) => format!(
                "retention        log entries are kept {days} days from when they were stored: \
                 these until {until} (UTC), whatever their own dates ({from})"
            ),
            _ => format!("retention        log entries are kept forever ({from})"),
        };
        let tasks = match self.task_days {
            Some(days) => format!(
                "                 tasks, invoices and container events older than {days} days by \
                 their own time are deleted, imported ones too"
            ),
            None => "                 tasks, invoices and container events are kept forever".into(),
        };
        vec![log, tasks]
    }
}

fn print_summary(c: &ImportCounts, s: &Summary) {
    println!("imported {} file(s), {} bytes", c.files, c.bytes);
    println!(
        "  lines            {:>10}  ({} already imported, skipped)",
        c.lines, c.skipped_lines
    );
    println!(
        "  entries          {:>10}  ({} raw, unparsed)",
        c.entries, c.raw_entries
    );
    println!(
        "  tasks            {:>10} received, {} completed, {} failed",
        c.tasks_received, c.tasks_completed, c.tasks_failed
    );
    println!("  invoices         {:>10}", c.invoices);
    println!("database now holds ({} bytes)", s.db_size_bytes);
    let by_status: Vec<String> = s
        .tasks_by_status
        .iter()
        .map(|(k, v)| format!("{v} {}", k.as_str()))
        .collect();
    println!("  tasks            {}", by_status.join(", "));
    println!("  invoices         {:>10}", s.invoices);
    println!(
        "  log entries      {:>10}  ({} raw)",
        s.entries, s.raw_entries
    );
}

fn database_json(s: &Summary) -> serde_json::Value {
    let by_status: serde_json::Map<String, serde_json::Value> = s
        .tasks_by_status
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), (*v).into()))
        .collect();
    let by_kind: serde_json::Map<String, serde_json::Value> = s
        .entries_by_kind
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), (*v).into()))
        .collect();
    serde_json::json!({
        "tasks_by_status": by_status,
        "invoices": s.invoices,
        "invoice_items": s.invoice_items,
        "entries": s.entries,
        "raw_entries": s.raw_entries,
        "entries_by_kind": by_kind,
        "container_events": s.container_events,
        "db_size_bytes": s.db_size_bytes,
    })
}
