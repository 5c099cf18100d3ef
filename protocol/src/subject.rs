//! NATS subjects. The version suffix changes only with an incompatible wire format.

/// Node window reports ([`crate::sign::SignedReport`] wire bytes), monitor -> aggregator.
pub const REPORT_SUBJECT: &str = "truebit.report.v1";

/// Certified network statistics ([`crate::certificate::CertifiedStats`] wire bytes),
/// aggregator replicas -> everyone.
pub const STATS_SUBJECT: &str = "truebit.stats.v1";
