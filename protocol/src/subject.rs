//! NATS subjects. The version suffix changes only with an incompatible wire format.

/// Node window reports ([`crate::sign::SignedReport`] wire bytes), monitor -> aggregator.
pub const REPORT_SUBJECT: &str = "truebit.report.v1";

/// Certified network statistics ([`crate::certificate::CertifiedStats`] wire bytes),
/// aggregator replicas -> everyone. Version 2: version 1 carried one aggregator's
/// signed statistics.
pub const STATS_SUBJECT: &str = "truebit.stats.v2";

/// Uptime proof requests ([`crate::proof::SignedProofRequest`] wire bytes), monitor ->
/// every aggregator replica, answered on the request's reply inbox
/// ([`crate::proof::ProofReply`]).
pub const PROOF_REQUEST_SUBJECT: &str = "truebit.proof.req.v1";
