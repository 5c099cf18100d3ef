//! `truebit-aggregator`: thin: CLI, configuration, tracing, then `app::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use truebit_aggregator::config::{Settings, EXAMPLE_CONFIG};
use truebit_aggregator::key::AggregatorKey;
use truebit_aggregator::{app, Clock};

#[derive(Debug, Parser)]
#[command(
    name = "truebit-aggregator",
    version,
    about = "TrueBit federation hub: verifies node reports, publishes k-anonymous signed network statistics"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (lower precedence than the environment and flags)
    #[arg(long, global = true, env = "AGGREGATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Print a commented example configuration file and exit
    #[arg(long)]
    print_example_config: bool,
    /// Create the JetStream report stream (TRUEBIT_REPORTS) if it does not exist
    #[arg(long, global = true, env = "CREATE_STREAM")]
    create_stream: bool,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the aggregator (the default)
    Run,
    /// Print the aggregator's public key (creating the key if needed), for monitors to pin
    Key,
    /// Verify an uptime proof file offline against the hub's keys (--keys K1,K2,...
    /// --threshold M; default: this replica's AGGREGATOR_KEYS, or its own key alone)
    VerifyProof {
        /// The proof (JSON, as `truebit-monitor uptime-proof` writes it)
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "truebit-aggregator: {}",
                truebit_web::format::error_chain(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.print_example_config {
        print!("{EXAMPLE_CONFIG}");
        return Ok(());
    }
    let file = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let settings = cli.settings.over(file);
    match cli.command.unwrap_or(Command::Run) {
        Command::Key => {
            let key_path = settings
                .key_path
                .clone()
                .or_else(|| {
                    settings
                        .db_path
                        .as_ref()
                        .map(|db| db.with_file_name("aggregator.key"))
                })
                .unwrap_or_else(|| PathBuf::from("aggregator.key"));
            let key = AggregatorKey::load_or_create(&key_path)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::VerifyProof { file } => {
            // The file first: a wrong path is the likelier mistake, and says so.
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read the proof {}", file.display()))?;
            let pinned = settings.pinned_key_set()?;
            let summary = truebit_aggregator::proof::verify_file(&bytes, &pinned)
                .with_context(|| format!("{} does not verify", file.display()))?;
            println!("{summary}");
            Ok(())
        }
        Command::Run => {
            let mut config = settings.validate()?;
            config.create_stream = cli.create_stream;
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let key = AggregatorKey::load_or_create(&config.key_path)?;
            println!("aggregator public key: {}", key.public());
            tracing::info!(public_key = %key.public(), "aggregator key (monitors pin it as FEDERATION_AGGREGATOR_KEY)");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} (HOST/PORT)", config.listen))?;
                app::run(config, listener, key, Clock::system(), shutdown_signal()).await
            })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
