//! Wiring: opens the store, starts the configured source, the HTTP server, the
//! federation service and the alerts, and shuts down in order (stop the source,
//! federation and the alerts, flush the store, then stop the HTTP server, which answered
//! until then).

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truebit_web::format;

use crate::alerts::handle::ServiceOptions;
use crate::alerts::{AlertService, AlertsHandle};
use crate::config::Config;
use crate::federation::{Federation, FederationHandle};
use crate::http;
use crate::ingest::SourceContext;
use crate::parser::ParserConfig;
use crate::source::demo::{DemoOptions, DemoSource};
use crate::source::docker::{DockerConfig, DockerSource};
use crate::source::file::FileSource;
use crate::source::{Connection, ContainerState, SourceStatus};
use crate::store::{Store, StoreConfig, Summary};

/// Which source feeds the store.
#[derive(Clone, Copy, Debug)]
pub enum SourceChoice {
    /// Docker, or the log file when one is configured.
    Configured,
    Demo(DemoOptions),
}

pub fn store_config(config: &Config) -> StoreConfig {
    let mut sc = StoreConfig::new(config.db_path.clone());
    sc.log_retention_days = config.log_retention_days;
    sc.task_retention_days = config.task_retention_days;
    sc
}

pub fn parser_config(config: &Config) -> ParserConfig {
    ParserConfig {
        node_utc_offset_secs: config.node_utc_offset_secs,
    }
}

/// Opens the store; on a failure that may clear up (locked, disk full, a file being
/// restored) it says so once and retries every few seconds instead of exiting, so a
/// container restart policy never turns it into a crash loop.
pub async fn open_store(config: &Config, shutdown: &CancellationToken) -> Option<Store> {
    let mut last: Option<String> = None;
    loop {
        let sc = store_config(config);
        match tokio::task::spawn_blocking(move || Store::open(sc)).await {
            Ok(Ok(store)) => {
                if last.is_some() {
                    tracing::info!(db = %config.db_path.display(), "database opened");
                }
                return Some(store);
            }
            Ok(Err(err)) => {
                let msg = err.to_string();
                if last.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %msg, "cannot open the database; retrying every 10 s");
                    last = Some(msg);
                }
            }
            Err(error) => tracing::error!(%error, "store open task failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Runs ingest until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    choice: SourceChoice,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Bound first: a taken port is a mistake to report now, not after the store opens.
    let listeners = http::Listeners::bind(&config.http).await?;
    let Some(store) = open_store(&config, &shutdown).await else {
        return Ok(());
    };
    run_with_http(store, config, choice, Some(listeners), shutdown).await
}

/// Runs ingest into an already open store until `shutdown` is cancelled, then closes it
/// (no HTTP server).
pub async fn run_with_store(
    store: Store,
    config: Config,
    choice: SourceChoice,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_http(store, config, choice, None, shutdown).await
}

/// Runs ingest into an already open store, and the HTTP server on `listeners` if given,
/// until `shutdown` is cancelled. Then, in order: stop the source (it drains into the
/// store), close (flush) the store, stop the HTTP server, which answered until then.
pub async fn run_with_http(
    store: Store,
    config: Config,
    choice: SourceChoice,
    listeners: Option<http::Listeners>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kind = match (choice, &config.log_file) {
        (SourceChoice::Demo(_), _) => "demo",
        (SourceChoice::Configured, Some(_)) => "file",
        (SourceChoice::Configured, None) => "docker",
    };
    let (status_tx, status_rx) = watch::channel(SourceStatus::new(kind));
    // Off unless the operator enabled it (then it connects); `federation.handle()` is the
    // control for the HTTP API. Stopped after the source, before the store closes.
    let federation_shutdown = CancellationToken::new();
    let federation = Federation::new(store.clone(), config.federation.clone())
        .start(federation_shutdown.clone())
        .await;
    // The rules are always evaluated (their states and incidents are kept); messages go
    // out only to the configured channels, if any. Stopped after the source.
    let alerts_shutdown = CancellationToken::new();
    let alerts = start_alerts(&store, &config, status_rx.clone(), &alerts_shutdown).await?;
    let http_shutdown = CancellationToken::new();
    let http_server = match listeners {
        Some(listeners) => Some(
            start_http(
                &store,
                &config,
                status_rx.clone(),
                listeners,
                &http_shutdown,
                federation.handle(),
                alerts.handle(),
            )
            .await?,
        ),
        None => None,
    };
    let cx = SourceContext::new(
        store.clone(),
        parser_config(&config),
        status_tx,
        shutdown.clone(),
    );
    let source_task = match choice {
        SourceChoice::Demo(options) => tokio::spawn(DemoSource::new(options, cx).run()),
        SourceChoice::Configured => match &config.log_file {
            Some(path) => {
                let src = FileSource::new(path.clone(), cx);
                tokio::task::spawn_blocking(move || src.run_blocking())
            }
            None => {
                let dc = DockerConfig {
                    host: config.docker_host.clone(),
                    container_name: config.container_name.clone(),
                };
                tokio::spawn(DockerSource::new(dc, cx).run())
            }
        },
    };
    let reporter = tokio::spawn(report_periodically(
        store.clone(),
        status_rx,
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    tracing::info!("shutting down: stopping the source");
    source_task.await.context("source task panicked")?;
    reporter.abort();
    federation_shutdown.cancel();
    federation.stopped().await;
    alerts_shutdown.cancel();
    alerts.stopped().await;
    let closed = store.call(Store::close).await;
    if let Some(server) = http_server {
        http_shutdown.cancel();
        match server.await {
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server stopped with an error"),
            Err(error) => tracing::warn!(%error, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    closed?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Starts the alert channels' delivery tasks and the rules engine (with the heartbeat).
async fn start_alerts(
    store: &Store,
    config: &Config,
    status: watch::Receiver<SourceStatus>,
    stop: &CancellationToken,
) -> anyhow::Result<AlertService> {
    AlertService::start(
        store.clone(),
        &config.alert,
        status,
        ServiceOptions {
            dashboard_url: config.http.public_url.clone(),
            federation_enabled: config.federation.initial.enabled,
            clock: truebit_clock::Clock::system(),
            tick: Duration::from_secs(1),
        },
        stop.clone(),
    )
    .await
    .context("cannot start the alerts")
}

/// Makes sure the operator password exists (printing a generated one once), then spawns
/// the live-stream tail and the HTTP server; both stop when `stop` is cancelled.
async fn start_http(
    store: &Store,
    config: &Config,
    status: watch::Receiver<SourceStatus>,
    listeners: http::Listeners,
    stop: &CancellationToken,
    federation: FederationHandle,
    alerts: AlertsHandle,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let http_config = config.http.clone();
    let generated = store
        .call(move |st| http::auth::ensure_password(st, &http_config))
        .await?;
    if let Some(password) = generated {
        tracing::warn!("no operator password was set: one was generated and printed below, once");
        eprintln!(
            "\n  Operator password (dashboard login, task input/output): {password}\n  \
             Shown once; only its hash is stored. Change it with `truebit-monitor password reset`.\n"
        );
    }
    let state = http::AppState::new(
        store.clone(),
        status,
        config.http.clone(),
        truebit_clock::Clock::system(),
        stop.clone(),
    )
    .with_federation(federation)
    .with_alerts(alerts);
    tokio::spawn(state.tail().run());
    Ok(tokio::spawn(http::HttpServer::new(state, listeners).run()))
}

/// Logs a one-line summary every five minutes (and the first one after a minute).
async fn report_periodically(
    store: Store,
    status: watch::Receiver<SourceStatus>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(300),
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.call(Store::summary).await {
            Ok(sum) => {
                let st = status.borrow().clone();
                tracing::info!("{}", status_line(&sum, &st));
            }
            Err(error) => tracing::warn!(%error, "cannot read the summary"),
        }
    }
}

/// The periodic status in the operator's words: what is stored, and what the monitor
/// follows, e.g. `status: 12,040 log entries; tasks: 310 completed, 4 failed, 2 running;
/// 298 invoices; Docker 27.3.1 connected, container runner-node running`.
pub fn status_line(sum: &Summary, st: &SourceStatus) -> String {
    let thousands = |n: u64| format::thousands(i64::try_from(n).unwrap_or(i64::MAX));
    let tasks: Vec<String> = sum
        .tasks_by_status
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| format!("{} {}", thousands(*n), status.as_str()))
        .collect();
    let tasks = if tasks.is_empty() {
        "none".to_owned()
    } else {
        tasks.join(", ")
    };
    let source = match (st.kind, &st.connection) {
        ("docker", Connection::Connecting) => "connecting to Docker".to_owned(),
        ("docker", Connection::Connected { version }) => format!("Docker {version} connected"),
        ("docker", Connection::Unreachable { reason }) => format!("Docker unreachable ({reason})"),
        ("file", _) => "following the log file".to_owned(),
        ("demo", _) => "simulated node (demo)".to_owned(),
        (kind, _) => kind.to_owned(),
    };
    let container = match &st.container {
        ContainerState::Unknown => String::new(),
        ContainerState::Missing { name } => format!(", no container named {name}"),
        ContainerState::Running { name, .. } => format!(", container {name} running"),
        ContainerState::Created { name, .. } => {
            format!(", container {name} created but never started")
        }
        ContainerState::Stopped {
            name,
            exit_code: Some(code),
            ..
        } => format!(", container {name} stopped (exit code {code})"),
        ContainerState::Stopped { name, .. } => format!(", container {name} stopped"),
    };
    format!(
        "status: {} log entries; tasks: {tasks}; {} invoices; {source}{container}",
        thousands(sum.entries),
        thousands(sum.invoices),
    )
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;

    #[test]
    fn the_status_line_is_in_the_operators_words() {
        let sum = Summary {
            entries: 12_040,
            tasks_by_status: vec![
                (TaskStatus::Received, 0),
                (TaskStatus::Completed, 1_310),
                (TaskStatus::Failed, 4),
            ],
            invoices: 298,
            ..Summary::default()
        };
        let mut st = SourceStatus::new("docker");
        st.connection = Connection::Connected {
            version: "27.3.1".into(),
        };
        st.container = ContainerState::Stopped {
            id: "abc".into(),
            name: "runner-node".into(),
            exit_code: Some(137),
        };
        assert_eq!(
            status_line(&sum, &st),
            "status: 12,040 log entries; tasks: 1,310 completed, 4 failed; 298 invoices; \
             Docker 27.3.1 connected, container runner-node stopped (exit code 137)"
        );
        let empty = status_line(&Summary::default(), &SourceStatus::new("file"));
        assert_eq!(
            empty,
            "status: 0 log entries; tasks: none; 0 invoices; following the log file"
        );
    }
}
