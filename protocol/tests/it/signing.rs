//! Sign -> verify round trips and every way a signature check must fail.

use truebit_protocol::identity::PublicKey;
use truebit_protocol::privacy::validate_report;
use truebit_protocol::report::Report;
use truebit_protocol::sign::{open_report, open_stats, SignedReport, VerifyError};

use crate::support::*;

fn wire_of(report: &Report) -> Vec<u8> {
    validate_report(report)
        .expect("valid")
        .sign(&node_key())
        .expect("signs")
        .to_wire()
}

fn replace(wire: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(wire).expect("ascii");
    assert!(text.contains(from), "{from} not in wire");
    text.replacen(from, to, 1).into_bytes()
}

#[test]
fn every_report_kind_signs_and_verifies() {
    for report in [
        full_report(),
        strict_report(),
        cover_report(),
        report_with_tasks(50),
    ] {
        let signed = validate_report(&report)
            .expect("valid")
            .sign(&node_key())
            .expect("signs");
        assert_eq!(signed.verify(), Ok(()));
        let opened = open_report(&signed.to_wire()).expect("opens");
        assert_eq!(opened.report(), &report);
        assert_eq!(opened.report_bytes(), &report.to_canonical_bytes()[..]);
        assert_eq!(opened.signature(), signed.signature());
    }
}

#[test]
fn a_valid_but_altered_report_fails_the_signature() {
    let wire = wire_of(&full_report());
    let altered = replace(&wire, r#""continent":"EU""#, r#""continent":"AS""#);
    assert_eq!(
        open_report(&altered).map(|_| ()),
        Err(VerifyError::BadSignature)
    );
    let altered = replace(&wire, r#""state":"up""#, r#""state":"down""#);
    assert_eq!(
        open_report(&altered).map(|_| ()),
        Err(VerifyError::BadSignature)
    );
    // From_wire alone accepts it (it is a valid report); verify is what catches it.
    let parsed = SignedReport::from_wire(&altered).expect("valid report");
    assert_eq!(parsed.verify(), Err(VerifyError::BadSignature));
}

#[test]
fn every_single_byte_change_is_rejected() {
    for wire in [wire_of(&cover_report()), wire_of(&full_report())] {
        for i in 0..wire.len() {
            for flip in [0x01u8, 0x20] {
                let mut tampered = wire.clone();
                tampered[i] ^= flip;
                assert!(
                    open_report(&tampered).is_err(),
                    "byte {i} ^ {flip:#x} accepted"
                );
            }
        }
    }
}

#[test]
fn a_signature_by_another_key_is_rejected() {
    // Signed by the fixture node, but the report names another node's key and id.
    let wire = wire_of(&full_report());
    let mine = PublicKey::from(&node_key().verifying_key());
    let theirs = PublicKey::from(&other_key().verifying_key());
    let swapped = replace(&wire, &mine.to_string(), &theirs.to_string());
    let swapped = replace(
        &swapped,
        &mine.node_id().to_string(),
        &theirs.node_id().to_string(),
    );
    assert_eq!(
        open_report(&swapped).map(|_| ()),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_node_id_not_derived_from_the_key_is_rejected() {
    let wire = wire_of(&full_report());
    let mine = PublicKey::from(&node_key().verifying_key()).node_id();
    let theirs = PublicKey::from(&other_key().verifying_key()).node_id();
    let claimed = replace(&wire, &mine.to_string(), &theirs.to_string());
    assert_eq!(
        open_report(&claimed).map(|_| ()),
        Err(VerifyError::NodeIdMismatch)
    );
}

#[test]
fn broken_envelopes_are_rejected() {
    let wire = wire_of(&cover_report());
    let text = String::from_utf8(wire.clone()).expect("ascii");
    let report = String::from_utf8(cover_report().to_canonical_bytes()).expect("ascii");
    let sig = &text[text.len() - 130..text.len() - 2];
    let cases = [
        // Unsigned.
        report.clone(),
        format!(r#"{{"report":{report}}}"#),
        // Reordered or reformatted envelopes.
        format!(r#"{{"sig":"{sig}","report":{report}}}"#),
        format!(r#"{{ "report":{report},"sig":"{sig}"}}"#),
        format!(r#"{{"report":{report},"sig":"{}"}}"#, sig.to_uppercase()),
        format!(r#"{{"report":{report},"sig":"{}"}}"#, &sig[..126]),
        format!(r#"{{"report":{report},"sig":"{sig}","x":1}}"#),
        String::new(),
    ];
    for case in cases {
        let err = open_report(case.as_bytes())
            .map(|_| ())
            .expect_err("rejected");
        assert!(
            matches!(err, VerifyError::Envelope | VerifyError::Privacy(_)),
            "{case}: {err:?}"
        );
    }
    // Whitespace inside the embedded report is a privacy (canonical form) rejection.
    let spaced = replace(&wire, r#""v":2"#, r#""v": 2"#);
    assert_eq!(
        open_report(&spaced).map(|_| ()),
        Err(VerifyError::Privacy(
            truebit_protocol::privacy::PrivacyViolation::NonCanonical
        ))
    );
}

#[test]
fn oversized_wire_messages_are_rejected_before_parsing() {
    let big = vec![b' '; truebit_protocol::sign::MAX_REPORT_WIRE_BYTES + 1];
    assert!(matches!(
        open_report(&big),
        Err(VerifyError::TooLarge { .. })
    ));
}

#[test]
fn stats_verify_only_against_the_pinned_aggregator_key() {
    let signed = sample_stats().sign(&aggregator_key()).expect("signs");
    let wire = signed.to_wire();
    assert!(open_stats(&wire, &aggregator_key().verifying_key()).is_ok());
    assert_eq!(
        open_stats(&wire, &node_key().verifying_key()).map(|_| ()),
        Err(VerifyError::BadSignature)
    );
    // Signed by someone else entirely.
    let forged = sample_stats().sign(&other_key()).expect("signs").to_wire();
    assert_eq!(
        open_stats(&forged, &aggregator_key().verifying_key()).map(|_| ()),
        Err(VerifyError::BadSignature)
    );
    // Altered figure.
    let text = String::from_utf8(wire).expect("ascii");
    let altered = text.replacen(r#""active_nodes":12"#, r#""active_nodes":13"#, 1);
    assert_ne!(altered, text);
    assert_eq!(
        open_stats(altered.as_bytes(), &aggregator_key().verifying_key()).map(|_| ()),
        Err(VerifyError::BadSignature)
    );
    // A report envelope is not a stats envelope.
    let report_wire = wire_of(&cover_report());
    assert_eq!(
        open_stats(&report_wire, &aggregator_key().verifying_key()).map(|_| ()),
        Err(VerifyError::Envelope)
    );
}

#[test]
fn stats_with_invalid_labels_cannot_be_signed_or_opened() {
    let mut stats = sample_stats();
    stats.distributions.memory.insert("64MB".into(), 5);
    assert!(stats.clone().sign(&aggregator_key()).is_err());
    // Even if someone signs such bytes by hand, receivers refuse them.
    let mut good = sample_stats();
    good.distributions.memory.insert("64-256".into(), 5);
    let wire =
        String::from_utf8(good.sign(&aggregator_key()).expect("signs").to_wire()).expect("ascii");
    let bad = wire.replacen(r#""64-256":5"#, r#""64MB":5"#, 1);
    assert!(matches!(
        open_stats(bad.as_bytes(), &aggregator_key().verifying_key()),
        Err(VerifyError::Stats(_))
    ));
}

#[test]
fn the_signed_message_is_the_context_followed_by_the_exact_bytes() {
    let signed = validate_report(&full_report())
        .expect("valid")
        .sign(&node_key())
        .expect("signs");
    let mut expected = b"truebit.report.v1\n".to_vec();
    expected.extend_from_slice(&full_report().to_canonical_bytes());
    assert_eq!(signed.signed_message(), expected);
    assert!(node_key()
        .verifying_key()
        .verify_strict(&expected, signed.signature())
        .is_ok());

    let stats = sample_stats().sign(&aggregator_key()).expect("signs");
    let mut expected = b"truebit.stats.v1\n".to_vec();
    expected.extend_from_slice(&sample_stats().to_canonical_bytes());
    assert_eq!(stats.signed_message(), expected);
    assert!(aggregator_key()
        .verifying_key()
        .verify_strict(&expected, stats.signature())
        .is_ok());
}
