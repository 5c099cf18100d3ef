//! The validator gate: the last step before signing, on the exact bytes that would be
//! sent. Its [`Publishable`] is the only thing the publisher accepts, and nothing else
//! in the crate can construct one.

use truebit_protocol::identity::PublicKey;
use truebit_protocol::privacy::validate_report_bytes;
use truebit_protocol::sign::open_report;
use truebit_protocol::window::WindowStart;

use super::identity::Identity;
use crate::store::federation::{BlockedReport, QueuedReport};

/// A signed report whose exact bytes passed every privacy rule: ready for NATS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publishable {
    window: WindowStart,
    message_id: String,
    wire: Vec<u8>,
    cover: bool,
    task_items: usize,
}

impl Publishable {
    pub fn window(&self) -> WindowStart {
        self.window
    }

    /// `<node id>-<window start>`: the JetStream message id (de-duplication).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The bytes published on `truebit.report.v1`.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Whether the report has no task or invoice items.
    pub fn is_cover(&self) -> bool {
        self.cover
    }

    pub fn task_items(&self) -> usize {
        self.task_items
    }

    /// The outbox row of this report (and of the blocked original it replaces, if any).
    pub(crate) fn queued(
        self,
        blocked: Option<Blocked>,
        delay_ms: u64,
        send_at_ms: u64,
        now_ms: u64,
    ) -> QueuedReport {
        QueuedReport {
            window: self.window.as_secs(),
            wire: self.wire,
            cover: self.cover,
            task_items: self.task_items,
            blocked: blocked.map(BlockedReport::from),
            delay_ms,
            send_at_ms,
            now_ms,
        }
    }
}

impl From<Blocked> for BlockedReport {
    fn from(b: Blocked) -> BlockedReport {
        BlockedReport {
            code: b.code,
            reason: b.reason,
            bytes: b.bytes,
        }
    }
}

/// A report the gate stopped: why (never echoing the offending value) and the exact
/// bytes, kept locally for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// Stable reason code for counters (`pattern.ipv4`, `unknown_field`, ...).
    pub code: &'static str,
    /// One line naming the field and the rule.
    pub reason: String,
    pub bytes: Vec<u8>,
}

/// Validates `bytes` with the protocol's privacy validator and signs them with the node
/// key. Fails closed: any violation, or a report that is not this node's, blocks it.
pub fn check(bytes: Vec<u8>, identity: &Identity) -> Result<Publishable, Blocked> {
    let validated = match validate_report_bytes(&bytes) {
        Ok(v) => v,
        Err(violation) => {
            return Err(Blocked {
                code: violation.code(),
                reason: violation.to_string(),
                bytes,
            })
        }
    };
    let signed = validated
        .sign(identity.signing_key())
        .map_err(|error| Blocked {
            code: "not_this_node",
            reason: error.to_string(),
            bytes: bytes.clone(),
        })?;
    let report = signed.report();
    Ok(Publishable {
        window: report.window,
        message_id: report.message_id(),
        cover: report.is_cover(),
        task_items: report.tasks.len(),
        wire: signed.to_wire(),
    })
}

/// Re-checks a report read back from the outbox (after a restart, or a database edited
/// behind the monitor's back): envelope, every privacy rule, signature, and that it is
/// this node's.
pub fn reopen(wire: &[u8], node_key: &PublicKey) -> Result<Publishable, Blocked> {
    let blocked = |code: &'static str, reason: String| Blocked {
        code,
        reason,
        bytes: wire.to_vec(),
    };
    let signed = open_report(wire).map_err(|e| blocked(e.code(), e.to_string()))?;
    let report = signed.report();
    if report.key != *node_key {
        return Err(blocked(
            "not_this_node",
            "the queued report is signed by another key".into(),
        ));
    }
    Ok(Publishable {
        window: report.window,
        message_id: report.message_id(),
        cover: report.is_cover(),
        task_items: report.tasks.len(),
        wire: wire.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::identity::test_fixtures::{identity, window};
    use truebit_protocol::report::{Level, Report};

    #[test]
    fn a_valid_report_is_signed_and_verifies() {
        let id = identity();
        let r = Report::new(id.public_key(), window(), Level::Full);
        let p = check(r.to_canonical_bytes(), &id).expect("passes");
        let opened = open_report(p.wire()).expect("verifies");
        assert_eq!(opened.report(), &r);
        assert_eq!(p.message_id(), format!("{}-{}", id.node_id(), window()));
        assert!(p.is_cover());
        assert_eq!(reopen(p.wire(), &id.public_key()).expect("reopens"), p);
    }

    #[test]
    fn a_planted_value_is_blocked_with_its_reason_and_not_echoed() {
        let id = identity();
        let r = Report::new(id.public_key(), window(), Level::Full);
        let text = String::from_utf8(r.to_canonical_bytes()).expect("utf8");
        let tampered = text.replace(r#""level":"full""#, r#""level":"192.168.1.20""#);
        let blocked = check(tampered.clone().into_bytes(), &id).expect_err("blocked");
        assert_eq!(blocked.code, "pattern.ipv4");
        assert!(blocked.reason.contains("level"), "{}", blocked.reason);
        assert!(!blocked.reason.contains("192.168"), "{}", blocked.reason);
        assert_eq!(blocked.bytes, tampered.into_bytes());
    }

    #[test]
    fn another_nodes_report_is_blocked() {
        let other = Identity::from_bytes([9; 32], [2; 32]);
        let r = Report::new(other.public_key(), window(), Level::Full);
        let blocked = check(r.to_canonical_bytes(), &identity()).expect_err("blocked");
        assert_eq!(blocked.code, "not_this_node");
        let signed = check(r.to_canonical_bytes(), &other).expect("its own");
        let blocked = reopen(signed.wire(), &identity().public_key()).expect_err("blocked");
        assert_eq!(blocked.code, "not_this_node");
    }

    #[test]
    fn a_tampered_outbox_row_does_not_reopen() {
        let id = identity();
        let r = Report::new(id.public_key(), window(), Level::Full);
        let p = check(r.to_canonical_bytes(), &id).expect("passes");
        let mut wire = p.wire().to_vec();
        let at = wire
            .windows(6)
            .position(|w| w == b"\"full\"")
            .expect("level");
        wire[at + 1..at + 5].copy_from_slice(b"fuLl");
        assert!(reopen(&wire, &id.public_key()).is_err());
    }
}
