//! The ingest pipeline: report feed -> verify (size, schema, privacy, node id, batch
//! signature check; off the runtime) -> store (window, rates, new nodes, duplicates,
//! one transaction per batch) -> acknowledge (JetStream) -> counters.
//!
//! Two stages joined by a short channel, so batch `n + 1` is verified while batch `n`
//! commits. A failed commit is retried (with backoff) before anything later is
//! acknowledged: with the consumer's ack-all policy a later acknowledgement would
//! otherwise cover reports that were never stored.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use truebit_protocol::report::Report;
use truebit_protocol::sign::{verify_reports, SignedReport};

use crate::gate::Reason;
use crate::metrics::Metrics;
use crate::nats::{Ack, Feed};
use crate::store::Store;
use crate::Clock;

/// The message checks that need no state. Returns the reports that passed and the
/// reasons of those that did not.
pub fn verify_batch(payloads: &[Vec<u8>]) -> (Vec<Report>, Vec<Reason>) {
    let mut rejected = Vec::new();
    let mut parsed: Vec<SignedReport> = Vec::with_capacity(payloads.len());
    for payload in payloads {
        match SignedReport::from_wire(payload) {
            Ok(signed) => parsed.push(signed),
            Err(e) => rejected.push(Reason::Verify(e.code())),
        }
    }
    let results = verify_reports(&parsed);
    let mut reports = Vec::with_capacity(parsed.len());
    for (signed, result) in parsed.into_iter().zip(results) {
        match result {
            Ok(()) => reports.push(signed.into_report()),
            Err(e) => rejected.push(Reason::Verify(e.code())),
        }
    }
    (reports, rejected)
}

struct Verified {
    reports: Arc<Vec<Report>>,
    rejected: Vec<Reason>,
    acks: Vec<Ack>,
}

/// The ingest task.
#[derive(Debug)]
pub struct Ingest {
    pub feed: Feed,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub cancel: CancellationToken,
}

impl Ingest {
    pub async fn run(self) -> anyhow::Result<()> {
        let Ingest {
            mut feed,
            store,
            metrics,
            clock,
            cancel,
        } = self;
        let (tx, mut rx) = mpsc::channel::<Verified>(2);
        let verify_cancel = cancel.clone();
        let verifier = tokio::spawn(async move {
            loop {
                let incoming = tokio::select! {
                    _ = verify_cancel.cancelled() => break,
                    incoming = feed.next() => match incoming {
                        Some(i) => i,
                        None => break,
                    },
                };
                let payloads = incoming.payloads;
                let (reports, rejected) =
                    match tokio::task::spawn_blocking(move || verify_batch(&payloads)).await {
                        Ok(v) => v,
                        Err(_) => {
                            tracing::error!("report verification panicked");
                            break;
                        }
                    };
                let verified = Verified {
                    reports: Arc::new(reports),
                    rejected,
                    acks: incoming.acks,
                };
                if tx.send(verified).await.is_err() {
                    break;
                }
            }
        });
        while let Some(batch) = rx.recv().await {
            let mut backoff = Duration::from_millis(100);
            let verdicts = loop {
                match store
                    .ingest(Arc::clone(&batch.reports), clock.now_secs())
                    .await
                {
                    Ok(v) => break Some(v),
                    Err(e) => {
                        metrics.store_error();
                        tracing::error!(error = %e, batch.len = batch.reports.len(), "cannot store reports; retrying");
                        tokio::select! {
                            _ = cancel.cancelled() => break None,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            };
            let Some(mut verdicts) = verdicts else {
                // Shutting down with an unstored batch: not acknowledged, so JetStream
                // delivers it again.
                break;
            };
            verdicts.extend(batch.rejected.into_iter().map(Err));
            metrics.record_batch(&verdicts);
            for ack in &batch.acks {
                if let Err(e) = ack.ack().await {
                    // Stored; a redelivery is dropped as a duplicate.
                    tracing::warn!(error = %e, "cannot acknowledge a report");
                    break;
                }
            }
        }
        verifier.abort();
        let _ = verifier.await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truebit_protocol::report::Level;
    use truebit_protocol::sign::SigningKey;
    use truebit_protocol::window::WindowStart;

    fn wire(seed: u8) -> Vec<u8> {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let w = WindowStart::new(1_717_243_200).expect("aligned");
        let r = Report::for_key(&key.verifying_key(), w, Level::Full);
        truebit_protocol::privacy::validate_report(&r)
            .expect("valid")
            .sign(&key)
            .expect("signs")
            .to_wire()
    }

    #[test]
    fn malformed_forged_and_oversized_messages_are_rejected_by_reason() {
        let good = wire(1);
        let mut forged = wire(2);
        // Flip one hex digit of the signature.
        let i = forged.len() - 5;
        forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
        let payloads = vec![
            good,
            forged,
            b"not json at all".to_vec(),
            vec![b'x'; 2_000_000],
            Vec::new(),
        ];
        let (reports, rejected) = verify_batch(&payloads);
        assert_eq!(reports.len(), 1);
        let codes: Vec<&str> = rejected.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            ["envelope", "too_large", "envelope", "bad_signature"]
        );
    }
}
