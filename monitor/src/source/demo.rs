//! A simulated node for `truebit-monitor demo`: realistic runner-node lines from
//! [`crate::demo::LogGenerator`], fed through the same ingest path as a real container.
//! It first back-fills some history, then prints in real time.

use std::time::{Duration, Instant};

use super::{Connection, ContainerState};
use crate::demo::LogGenerator;
use crate::ingest::{Handoff, SourceContext};
use crate::model::{ContainerAction, ContainerEvent, LineMeta, Pos};

/// Container id and name the demo node pretends to have.
pub const DEMO_CONTAINER: &str = "demo-runner-node";

#[derive(Clone, Copy, Debug)]
pub struct DemoOptions {
    pub seed: u64,
    /// How much history to back-fill before going live.
    pub history: Duration,
    /// Time-lapse factor for the live part (1 = real time).
    pub speed: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            history: Duration::from_secs(24 * 3600),
            speed: 1.0,
        }
    }
}

#[derive(Debug)]
pub struct DemoSource {
    options: DemoOptions,
    cx: SourceContext,
}

impl DemoSource {
    pub fn new(options: DemoOptions, cx: SourceContext) -> Self {
        Self { options, cx }
    }

    pub async fn run(self) {
        let Ok(mut ingest) = self.cx.ingest("demo").await else {
            return;
        };
        let now = super::docker::now_ns();
        let start_secs = now.div_euclid(1_000_000_000) - self.options.history.as_secs() as i64;
        let started = ContainerEvent {
            container_id: DEMO_CONTAINER.into(),
            container_name: DEMO_CONTAINER.into(),
            time_ns: start_secs * 1_000_000_000,
            action: ContainerAction::Started,
            exit_code: None,
            inferred: false,
        };
        self.cx.record_events(vec![started]).await;
        self.cx.status.send_modify(|s| {
            s.connection = Connection::Connected {
                version: "demo".into(),
            };
            s.container = ContainerState::Running {
                id: DEMO_CONTAINER.into(),
                name: DEMO_CONTAINER.into(),
            };
        });
        tracing::info!(
            history_hours = self.options.history.as_secs() / 3600,
            "demo node started: back-filling history, then live"
        );

        let mut generator = LogGenerator::new(self.options.seed, start_secs);
        let live_from = Instant::now();
        let live_base_secs = now.div_euclid(1_000_000_000);
        let mut last_ns = 0i64;
        let mut seq = 0i64;
        loop {
            if self.cx.shutdown.is_cancelled() {
                break;
            }
            let line = generator.next_line();
            // Live part: wait until the line's (time-lapsed) moment.
            let ahead = line.node_time_secs - live_base_secs;
            if ahead > 0 {
                let due = live_from
                    + Duration::from_secs_f64(ahead as f64 / self.options.speed.max(0.001));
                while Instant::now() < due {
                    let now = Instant::now();
                    ingest.commit(Handoff::Idle(now)).await;
                    let wake = ingest.deadline().map_or(due, |d| d.min(due));
                    let wait = wake.saturating_duration_since(now);
                    tokio::select! {
                        () = self.cx.shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            let received = if ahead > 0 {
                super::docker::now_ns()
            } else {
                line.node_time_secs * 1_000_000_000
            };
            if received == last_ns {
                seq += 1;
            } else {
                seq = 0;
                last_ns = received;
            }
            let mut text = line.text.as_bytes();
            // The generator hands out whole (possibly multi-line) console writes.
            while !text.is_empty() {
                let (one, rest) = match memchr::memchr(b'\n', text) {
                    Some(i) => (&text[..i], &text[i + 1..]),
                    None => (text, &b""[..]),
                };
                ingest.push(
                    one,
                    LineMeta {
                        received_ns: Some(received),
                        pos: Pos::new(received, seq),
                    },
                );
                seq += 1;
                text = rest;
            }
            ingest.commit(Handoff::Due).await;
        }
        ingest.commit(Handoff::Finish).await;
    }
}
