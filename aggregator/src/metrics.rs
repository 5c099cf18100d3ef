//! Counters of the ingest and the publisher, shown by `/metrics` (Prometheus text) and
//! `/api/ingest`. Rejections are counted by reason code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use truebit_protocol::proof::RefusalCode;

use crate::certify::Certification;
use crate::gate::Reason;

#[derive(Debug, Default)]
pub struct Metrics {
    received: AtomicU64,
    accepted: AtomicU64,
    batches: AtomicU64,
    store_errors: AtomicU64,
    stats_published: AtomicU64,
    stats_errors: AtomicU64,
    last_stats_window: AtomicU64,
    slow_consumer: AtomicU64,
    connected: std::sync::atomic::AtomicBool,
    consuming: std::sync::atomic::AtomicBool,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    delivery: Mutex<Option<&'static str>>,
    caught_up: std::sync::atomic::AtomicBool,
    stats_certified: AtomicU64,
    votes_rejected: AtomicU64,
    certification: Mutex<Certification>,
    proofs_served: AtomicU64,
    proofs_refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestSnapshot {
    /// `jetstream`, `core`, or `null` before the feed is open.
    pub delivery: Option<&'static str>,
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejections by reason code.
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    pub batches: u64,
    pub store_errors: u64,
    pub stats_published: u64,
    pub stats_errors: u64,
    /// Times the NATS client dropped messages of a subscription that fell behind.
    pub slow_consumer: u64,
    pub nats_connected: bool,
    /// Whether a report feed (JetStream consumer or core subscription) is being read.
    pub consuming: bool,
}

impl Metrics {
    pub fn record_batch(&self, verdicts: &[Result<(), Reason>]) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.received
            .fetch_add(verdicts.len() as u64, Ordering::Relaxed);
        let mut accepted = 0;
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        for v in verdicts {
            match v {
                Ok(()) => accepted += 1,
                Err(reason) => *rejected.entry(reason.code()).or_default() += 1,
            }
        }
        self.accepted.fetch_add(accepted, Ordering::Relaxed);
    }

    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats_published(&self, window: u64) {
        self.stats_published.fetch_add(1, Ordering::Relaxed);
        self.last_stats_window.store(window, Ordering::Relaxed);
    }

    pub fn stats_error(&self) {
        self.stats_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn slow_consumer(&self) {
        self.slow_consumer.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_delivery(&self, delivery: &'static str) {
        *self.delivery.lock().unwrap_or_else(|p| p.into_inner()) = Some(delivery);
    }

    /// The report feed is being read (`true`) or not (`false`: not opened yet, or it
    /// ended and is being opened again).
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }

    /// Whether the durable consumer had caught up with the stream at the last check.
    pub fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }

    /// Whether the durable consumer had caught up with the stream at the last check.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// A certified statistics message was published.
    pub fn stats_certified(&self) {
        self.stats_certified.fetch_add(1, Ordering::Relaxed);
    }

    /// Another replica's signature message did not open (malformed or mis-signed).
    pub fn vote_rejected(&self) {
        self.votes_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the current window's co-signing stands.
    pub fn set_certification(&self, c: &Certification) {
        *self.certification.lock().unwrap_or_else(|p| p.into_inner()) = c.clone();
    }

    /// An uptime proof request was answered with a sealed, signed statement.
    pub fn proof_served(&self) {
        self.proofs_served.fetch_add(1, Ordering::Relaxed);
    }

    /// An uptime proof request was refused with `code`.
    pub fn proof_refused(&self, code: RefusalCode) {
        *self
            .proofs_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code.as_str())
            .or_default() += 1;
    }

    pub fn proofs_served(&self) -> u64 {
        self.proofs_served.load(Ordering::Relaxed)
    }

    /// Refusals with `code` so far.
    pub fn proofs_refused(&self, code: RefusalCode) -> u64 {
        self.proofs_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(code.as_str())
            .copied()
            .unwrap_or(0)
    }

    pub fn certification(&self) -> Certification {
        self.certification
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> IngestSnapshot {
        let rejected_by_reason = self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        IngestSnapshot {
            delivery: *self.delivery.lock().unwrap_or_else(|p| p.into_inner()),
            received: self.received.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: rejected_by_reason.values().sum(),
            rejected_by_reason,
            batches: self.batches.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
            stats_published: self.stats_published.load(Ordering::Relaxed),
            stats_errors: self.stats_errors.load(Ordering::Relaxed),
            slow_consumer: self.slow_consumer.load(Ordering::Relaxed),
            nats_connected: self.connected.load(Ordering::Relaxed),
            consuming: self.consuming.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self, db_bytes: u64) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "truebit_aggregator_reports_received_total",
            "Report messages received.",
            s.received,
        );
        counter(
            "truebit_aggregator_reports_accepted_total",
            "Reports verified and stored.",
            s.accepted,
        );
        counter(
            "truebit_aggregator_batches_total",
            "Ingest batches committed.",
            s.batches,
        );
        counter(
            "truebit_aggregator_store_errors_total",
            "Failed store commits (retried).",
            s.store_errors,
        );
        counter(
            "truebit_aggregator_stats_published_total",
            "Signed statistics published.",
            s.stats_published,
        );
        counter(
            "truebit_aggregator_stats_errors_total",
            "Statistics computations or publications that failed.",
            s.stats_errors,
        );
        counter(
            "truebit_aggregator_nats_slow_consumer_total",
            "Times the NATS client dropped reports of a subscription that fell behind.",
            s.slow_consumer,
        );
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_nats_connected Whether the NATS connection is up (1) or not (0).\n\
             # TYPE truebit_aggregator_nats_connected gauge\n\
             truebit_aggregator_nats_connected {}",
            u8::from(s.nats_connected)
        );
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_feed_consuming Whether the report feed is being read (1) or not (0).\n\
             # TYPE truebit_aggregator_feed_consuming gauge\n\
             truebit_aggregator_feed_consuming {}",
            u8::from(s.consuming)
        );
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_reports_rejected_total Reports rejected, by reason.\n\
             # TYPE truebit_aggregator_reports_rejected_total counter"
        );
        for (reason, n) in &s.rejected_by_reason {
            let _ = writeln!(
                out,
                "truebit_aggregator_reports_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_last_stats_window Window of the latest published statistics (Unix seconds).\n\
             # TYPE truebit_aggregator_last_stats_window gauge\n\
             truebit_aggregator_last_stats_window {}",
            self.last_stats_window.load(Ordering::Relaxed)
        );
        let c = self.certification();
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_stats_certified_total Certified statistics published.\n\
             # TYPE truebit_aggregator_stats_certified_total counter\n\
             truebit_aggregator_stats_certified_total {}\n\
             # HELP truebit_aggregator_votes_rejected_total Other replicas' signature messages that did not verify.\n\
             # TYPE truebit_aggregator_votes_rejected_total counter\n\
             truebit_aggregator_votes_rejected_total {}\n\
             # HELP truebit_aggregator_feed_caught_up Whether the consumer had stored every report of the stream at the last check (1) or not (0).\n\
             # TYPE truebit_aggregator_feed_caught_up gauge\n\
             truebit_aggregator_feed_caught_up {}\n\
             # HELP truebit_aggregator_stats_certified Whether this replica's latest statistics are signed by the threshold of pinned replicas (1) or not (0).\n\
             # TYPE truebit_aggregator_stats_certified gauge\n\
             truebit_aggregator_stats_certified {}\n\
             # HELP truebit_aggregator_stats_signers Replicas whose signatures over this replica's latest statistics count.\n\
             # TYPE truebit_aggregator_stats_signers gauge\n\
             truebit_aggregator_stats_signers {}\n\
             # HELP truebit_aggregator_replica_disagrees Replicas whose figures for the latest window differ from those a threshold agreed on (1).\n\
             # TYPE truebit_aggregator_replica_disagrees gauge",
            self.stats_certified.load(Ordering::Relaxed),
            self.votes_rejected.load(Ordering::Relaxed),
            u8::from(self.caught_up.load(Ordering::Relaxed)),
            u8::from(c.certified),
            c.signers.len(),
        );
        for r in &c.disagreeing {
            let _ = writeln!(
                out,
                "truebit_aggregator_replica_disagrees{{replica=\"{}\",key=\"{}\"}} 1",
                r.name, r.key
            );
        }
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_replica_silent Pinned replicas that sent no signature for the latest window (down, or catching up) (1).\n\
             # TYPE truebit_aggregator_replica_silent gauge"
        );
        for r in &c.silent {
            let _ = writeln!(
                out,
                "truebit_aggregator_replica_silent{{replica=\"{}\",key=\"{}\"}} 1",
                r.name, r.key
            );
        }
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_proofs_served_total Uptime proof requests answered with a signed statement.\n\
             # TYPE truebit_aggregator_proofs_served_total counter\n\
             truebit_aggregator_proofs_served_total {}\n\
             # HELP truebit_aggregator_proofs_refused_total Uptime proof requests refused, by code.\n\
             # TYPE truebit_aggregator_proofs_refused_total counter",
            self.proofs_served.load(Ordering::Relaxed)
        );
        for code in RefusalCode::ALL {
            let _ = writeln!(
                out,
                "truebit_aggregator_proofs_refused_total{{code=\"{code}\"}} {}",
                self.proofs_refused(code)
            );
        }
        let _ = writeln!(
            out,
            "# HELP truebit_aggregator_database_bytes Size of the SQLite database and its WAL.\n\
             # TYPE truebit_aggregator_database_bytes gauge\n\
             truebit_aggregator_database_bytes {db_bytes}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_by_reason_in_prometheus_text() {
        let m = Metrics::default();
        m.record_batch(&[
            Ok(()),
            Err(Reason::Duplicate),
            Err(Reason::Verify("bad_signature")),
            Err(Reason::Duplicate),
        ]);
        let s = m.snapshot();
        assert_eq!((s.received, s.accepted, s.rejected), (4, 1, 3));
        let text = m.render(0);
        assert!(
            text.contains("truebit_aggregator_reports_rejected_total{reason=\"duplicate\"} 2\n")
        );
        assert!(text
            .contains("truebit_aggregator_reports_rejected_total{reason=\"bad_signature\"} 1\n"));
        assert!(text.contains("truebit_aggregator_reports_accepted_total 1\n"));
    }

    #[test]
    fn proofs_are_counted_served_and_refused_by_code() {
        let m = Metrics::default();
        m.proof_served();
        m.proof_refused(RefusalCode::Stale);
        m.proof_refused(RefusalCode::Stale);
        m.proof_refused(RefusalCode::Busy);
        let text = m.render(0);
        assert!(
            text.contains("truebit_aggregator_proofs_served_total 1\n"),
            "{text}"
        );
        assert!(text.contains("truebit_aggregator_proofs_refused_total{code=\"stale\"} 2\n"));
        assert!(text.contains("truebit_aggregator_proofs_refused_total{code=\"busy\"} 1\n"));
        assert!(
            text.contains("truebit_aggregator_proofs_refused_total{code=\"not-your-node\"} 0\n")
        );
        assert_eq!(m.proofs_refused(RefusalCode::Stale), 2);
    }
}
