//! Uptime proofs: what verifying a proof costs (offline, anyone), what a replica spends
//! on one request (statement from 30 days of windows, signature, sealed reply), and the
//! sizes of a proof for 1 and 30 days (printed once).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use truebit_protocol::certificate::KeySet;
use truebit_protocol::identity::PublicKey;
use truebit_protocol::proof::{
    ProofReply, ProofRequest, ReplicaProof, SealSecret, SignedProofRequest, UptimeProof,
    UptimeStatement, DAY,
};
use truebit_protocol::sign::SigningKey;

const FROM: u64 = 1_717_200_000; // 2024-06-01T00:00:00Z

fn replica(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[60 + i; 32])
}

fn hub() -> KeySet {
    KeySet::new(
        (1..=3)
            .map(|i| PublicKey::from(&replica(i).verifying_key()))
            .collect(),
        2,
    )
    .expect("2 of 3")
}

/// A node up in 99 % of the windows of `days` days.
fn windows(days: u64) -> Vec<(u64, bool)> {
    (0..days * 288)
        .filter(|i| i % 100 != 7)
        .map(|i| (FROM + i * 300, i % 50 != 3))
        .collect()
}

fn proof(days: u64) -> UptimeProof {
    let node = PublicKey::from(&SigningKey::from_bytes(&[9; 32]).verifying_key()).node_id();
    let statement =
        UptimeStatement::new_from_windows(node, FROM, FROM + days * DAY, windows(days), &hub())
            .expect("statement");
    let sigs = (1..=2)
        .map(|i| {
            ReplicaProof::sign("r", &statement, &replica(i))
                .expect("signs")
                .sig
        })
        .collect();
    UptimeProof::assemble(&statement.to_canonical_bytes(), sigs, &hub()).expect("2 of 3")
}

fn bench(c: &mut Criterion) {
    for days in [1, 30] {
        let p = proof(days);
        eprintln!(
            "proof for {days} day(s), 2 of 3 signatures: {} bytes compact, {} bytes pretty; statement {} bytes",
            p.to_json().len(),
            p.to_json_pretty().len(),
            p.statement_bytes().len()
        );
    }
    let json = proof(30).to_json();
    let pinned = hub();
    c.bench_function("verify_proof_30_days_2_of_3", |b| {
        b.iter(|| {
            let p = UptimeProof::from_json(black_box(&json)).expect("parses");
            p.verify(&pinned).expect("verifies")
        })
    });

    // A replica's work for one request, store read excepted.
    let node = SigningKey::from_bytes(&[9; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let secret = SealSecret::generate(&mut rng);
    let request = ProofRequest::new(
        &node,
        FROM,
        FROM + 30 * DAY,
        FROM + 31 * DAY,
        secret.public(),
    )
    .sign(&node)
    .to_wire();
    let rows = windows(30);
    let key = replica(1);
    c.bench_function("answer_request_30_days", |b| {
        b.iter(|| {
            let r = SignedProofRequest::open(black_box(&request)).expect("opens");
            let s = UptimeStatement::new_from_windows(
                r.node,
                r.from,
                r.to,
                rows.iter().copied(),
                &pinned,
            )
            .expect("statement");
            let proof = ReplicaProof::sign("r1", &s, &key).expect("signs");
            ProofReply::seal(&proof, &r.reply, &mut rng).to_wire()
        })
    });
    let reply = {
        let r = SignedProofRequest::open(&request).expect("opens");
        let s =
            UptimeStatement::new_from_windows(r.node, r.from, r.to, rows.iter().copied(), &pinned)
                .expect("statement");
        let proof = ReplicaProof::sign("r1", &s, &key).expect("signs");
        ProofReply::seal(&proof, &r.reply, &mut rng).to_wire()
    };
    eprintln!("sealed reply for 30 days: {} bytes", reply.len());
    c.bench_function("open_reply_30_days", |b| {
        b.iter(|| ProofReply::open(black_box(&reply), &secret).expect("opens"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
