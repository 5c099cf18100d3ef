//! Uptime proofs against the real hub: three aggregator replicas with their own keys
//! and databases on the shipped 3-server cluster confs (deploy/nats/), a node that
//! reported in known windows asking through the shared `monitor` user; a single
//! aggregator on the shipped deploy/nats-server.conf; `verify-proof` as a process.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::SeedableRng as _;
use truebit_aggregator::app::Running;
use truebit_protocol::certificate::{KeySet, StatsSignature};
use truebit_protocol::identity::PublicKey;
use truebit_protocol::proof::{
    ProofError, ProofReply, ProofRequest, RefusalCode, ReplicaProof, SealSecret, UptimeProof,
    UptimeStatement, DAY,
};
use truebit_protocol::report::NodeState;
use truebit_protocol::sign::SigningKey;
use truebit_protocol::window::window_of;
use truebit_protocol::PROOF_REQUEST_SUBJECT;

use crate::cluster::{
    pinned, publish, replica_config, replica_key, start_replica, Cluster, MONITOR_PASSWORD,
};
use crate::support::*;

/// 2024-06-01T00:00:00Z.
const DAY0: u64 = NOON - 12 * 3_600;

/// The windows node 1 reports in, and whether it said `up`.
fn node_windows() -> Vec<(u64, bool)> {
    vec![
        (DAY0, true),
        (DAY0 + 300, true),
        (DAY0 + 900, false),
        (DAY0 + DAY + 3_600, true),
        (DAY0 + 2 * DAY - 300, true),
    ]
}

fn node_wires() -> Vec<Vec<u8>> {
    let node = SimNode::new(1);
    let mut wires: Vec<Vec<u8>> = node_windows()
        .into_iter()
        .map(|(w, up)| {
            let mut r = node.report(w, 1, &[]);
            if !up {
                r.status.state = NodeState::Down;
            }
            node.sign(&r)
        })
        .collect();
    // Another node, in other windows and in one of node 1's: not in node 1's statement.
    let other = SimNode::new(2);
    wires.push(other.wire(DAY0 + 600, 1, &[]));
    wires.push(other.wire(DAY0 + 300, 1, &[]));
    wires
}

fn seal_secret(seed: u64) -> SealSecret {
    SealSecret::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
}

/// Publishes `wire` on the request subject with a fresh inbox and collects `n` replies
/// (each at most 10 s apart).
async fn ask(client: &async_nats::Client, wire: &[u8], n: usize) -> Vec<Vec<u8>> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    client.flush().await.expect("flush");
    client
        .publish_with_reply(PROOF_REQUEST_SUBJECT, inbox, wire.to_vec().into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let mut replies = Vec::new();
    while replies.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} replies within 10 s", replies.len()))
            .expect("a reply");
        replies.push(msg.payload.to_vec());
    }
    // No more than one per replica.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "more replies than replicas"
    );
    replies
}

/// The refusal codes of `replies`, by replica name.
fn refusals(replies: &[Vec<u8>]) -> Vec<(String, RefusalCode)> {
    let mut out: Vec<(String, RefusalCode)> = replies
        .iter()
        .map(|w| match ProofReply::from_wire(w).expect("a reply") {
            ProofReply::Refused { replica, code } => (replica, code),
            other => panic!("expected a refusal, got {other:?}"),
        })
        .collect();
    out.sort();
    out
}

fn request(key: &SigningKey, from: u64, to: u64, now: u64, secret: &SealSecret) -> ProofRequest {
    ProofRequest::new(key, from, to, window_of(now).as_secs(), secret.public())
}

/// Waits until `n` replicas answer requests (their subscriptions are in place): a
/// malformed request until every one refused it.
async fn wait_for_responders(client: &async_nats::Client, n: usize) {
    wait_until(30, "every replica answers proof requests", async || {
        let inbox = client.new_inbox();
        let Ok(mut sub) = client.subscribe(inbox.clone()).await else {
            return false;
        };
        let _ = client
            .publish_with_reply(PROOF_REQUEST_SUBJECT, inbox, "probe".into())
            .await;
        let _ = client.flush().await;
        let mut seen = std::collections::BTreeSet::new();
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
        {
            if let Ok(ProofReply::Refused { replica, code }) = ProofReply::from_wire(&msg.payload) {
                assert_eq!(code, RefusalCode::BadRequest);
                seen.insert(replica);
            }
        }
        seen.len() == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_certify_a_nodes_reported_windows_and_refuse_what_they_must() {
    let dir = tempdir();
    let cluster = Cluster::start(dir.path());
    // 2024-06-03 01:00 UTC: June 1 and 2 are closed days.
    let now = DAY0 + 2 * DAY + 3_600;
    let clock = clock_at(now);
    let mut replicas: Vec<Running> = Vec::new();
    for i in 1..=3 {
        replicas.push(start_replica(replica_config(dir.path(), &cluster, i), i, &clock).await);
    }
    let monitor = cluster.client("monitor", MONITOR_PASSWORD).await;
    let js = async_nats::jetstream::new(monitor.clone());
    for r in &replicas {
        let m = std::sync::Arc::clone(&r.state.metrics);
        wait_until(
            30,
            "every replica reads the replicated stream",
            async || m.snapshot().delivery == Some("jetstream"),
        )
        .await;
    }
    let wires = node_wires();
    let count = wires.len() as u64;
    publish(&js, wires).await;
    for r in &replicas {
        let store = r.state.store.clone();
        wait_until(30, "every replica stored every report", async || {
            store.totals().await.map(|t| t.reports).unwrap_or(0) == count
        })
        .await;
    }
    for r in &replicas {
        let m = std::sync::Arc::clone(&r.state.metrics);
        wait_until(30, "every replica caught up with the stream", async || {
            m.caught_up()
        })
        .await;
    }
    wait_for_responders(&monitor, 3).await;

    // The node asks for June 1 and 2.
    let node = SimNode::new(1);
    let secret = seal_secret(1);
    let req = request(&node.key, DAY0, DAY0 + 2 * DAY, now, &secret);
    let wire = req.sign(&node.key).to_wire();
    let replies = ask(&monitor, &wire, 3).await;
    let mut proofs: Vec<ReplicaProof> = replies
        .iter()
        .map(|w| ProofReply::open(w, &secret).expect("a sealed statement"))
        .collect();
    proofs.sort_by(|a, b| a.replica.cmp(&b.replica));
    let names: Vec<&str> = proofs.iter().map(|p| p.replica.as_str()).collect();
    assert_eq!(names, ["r1", "r2", "r3"]);
    for (i, p) in proofs.iter().enumerate() {
        assert_eq!(
            p.sig.key,
            replica_key(i + 1).public(),
            "each with its own key"
        );
        assert!(p.verifies());
        assert_eq!(
            p.statement, proofs[0].statement,
            "byte-identical statements"
        );
    }
    let statement = proofs[0].uptime_statement().expect("a statement");
    let expected = UptimeStatement::new_from_windows(
        node.report(DAY0, 0, &[]).node,
        DAY0,
        DAY0 + 2 * DAY,
        node_windows(),
        &pinned(),
    )
    .expect("expected statement");
    assert_eq!(statement, expected);
    let reported: Vec<u64> = node_windows().iter().map(|(w, _)| *w).collect();
    assert_eq!(statement.windows_reported(), reported);
    let up: Vec<u64> = node_windows()
        .iter()
        .filter(|(_, up)| *up)
        .map(|(w, _)| *w)
        .collect();
    assert_eq!(statement.windows_up(), up);
    assert_eq!(
        (statement.uptime_s, statement.downtime_s),
        (4 * 300, 2 * DAY - 4 * 300)
    );

    // Any two of the three certify; one does not.
    let sigs: Vec<StatsSignature> = proofs.iter().map(|p| p.sig).collect();
    let proof = UptimeProof::assemble(&proofs[0].statement, vec![sigs[2], sigs[0]], &pinned())
        .expect("2 of 3");
    let verified = proof.verify(&pinned()).expect("verifies");
    assert_eq!(
        verified.signers,
        vec![replica_key(1).public(), replica_key(3).public()]
    );
    assert_eq!(
        UptimeProof::assemble(&proofs[0].statement, vec![sigs[1]], &pinned()),
        Err(ProofError::UnderThreshold {
            signers: 1,
            threshold: 2
        })
    );
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_json_pretty()).expect("write the proof");
    let out = verify_proof(&file, &pinned(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("2024-06-01 to 2024-06-02 UTC (2 days)"),
        "{}",
        text(&out)
    );

    // A replayed request: answered again, but only the requester's secret opens it.
    let replayed = ask(&monitor, &wire, 3).await;
    for w in &replayed {
        assert_eq!(
            ProofReply::open(w, &seal_secret(2)),
            Err(ProofError::Unseal)
        );
        assert_eq!(
            ProofReply::open(w, &secret).expect("opens").statement,
            proofs[0].statement
        );
    }

    // Signed by another node's key: the signature does not verify.
    let other = SimNode::new(2);
    let forged = req.sign(&other.key).to_wire();
    let codes = refusals(&ask(&monitor, &forged, 3).await);
    assert!(
        codes.iter().all(|(_, c)| *c == RefusalCode::BadSignature),
        "{codes:?}"
    );
    // Node 1's id with another node's key, signed by that key: not its node.
    let mut theirs = request(&other.key, DAY0, DAY0 + 2 * DAY, now, &secret);
    theirs.node = req.node;
    let codes = refusals(&ask(&monitor, &theirs.sign(&other.key).to_wire(), 3).await);
    assert!(
        codes.iter().all(|(_, c)| *c == RefusalCode::NotYourNode),
        "{codes:?}"
    );
    // Made an hour ago: stale.
    let stale = request(&node.key, DAY0, DAY0 + 2 * DAY, now - 3_600, &secret);
    let codes = refusals(&ask(&monitor, &stale.sign(&node.key).to_wire(), 3).await);
    assert_eq!(
        codes,
        (1..=3)
            .map(|i| (format!("r{i}"), RefusalCode::Stale))
            .collect::<Vec<_>>()
    );
    // Today (June 3) has not ended.
    let open_day = request(&node.key, DAY0, DAY0 + 3 * DAY, now, &secret);
    let codes = refusals(&ask(&monitor, &open_day.sign(&node.key).to_wire(), 3).await);
    assert!(
        codes.iter().all(|(_, c)| *c == RefusalCode::NotYetClosed),
        "{codes:?}"
    );

    for r in &replicas {
        let m = &r.state.metrics;
        assert_eq!(m.proofs_served(), 2);
        assert_eq!(m.proofs_refused(RefusalCode::Stale), 1);
        assert_eq!(m.proofs_refused(RefusalCode::NotYourNode), 1);
        assert_eq!(m.proofs_refused(RefusalCode::BadSignature), 1);
        assert_eq!(m.proofs_refused(RefusalCode::NotYetClosed), 1);
        let text = m.render(0);
        assert!(
            text.contains("truebit_aggregator_proofs_served_total 2\n"),
            "{text}"
        );
        assert!(text.contains("truebit_aggregator_proofs_refused_total{code=\"stale\"} 1\n"));
    }
    for r in replicas {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_aggregator_on_the_shipped_conf_answers_a_one_of_one_proof() {
    use crate::hub::{start_hub, AGGREGATOR_PASSWORD, MONITOR_PASSWORD};
    let dir = tempdir();
    let hub = start_hub(dir.path());
    let url = hub.url();
    let now = DAY0 + 2 * DAY + 3_600;
    let clock = clock_at(now);
    let cfg = hub.aggregator_config(dir.path());
    let app = spawn_app(cfg, clock).await;
    wait_until(20, "the stream and the consumer", async || {
        app.state.metrics.snapshot().delivery == Some("jetstream")
    })
    .await;
    let monitor = hub.monitor().await;
    let js = async_nats::jetstream::new(monitor.clone());
    let wires = node_wires();
    let count = wires.len() as u64;
    for wire in wires {
        js.publish(truebit_protocol::REPORT_SUBJECT, wire.into())
            .await
            .expect("publish")
            .await
            .expect("acknowledged");
    }
    let store = app.state.store.clone();
    wait_until(20, "every report stored", async || {
        store.totals().await.map(|t| t.reports).unwrap_or(0) == count
    })
    .await;
    let m = std::sync::Arc::clone(&app.state.metrics);
    wait_until(20, "caught up with the stream", async || m.caught_up()).await;
    wait_for_responders(&monitor, 1).await;

    // The monitor user may publish the request and read the reply on its inbox; the
    // aggregator user may answer on it (allow_responses).
    let node = SimNode::new(1);
    let secret = seal_secret(3);
    let req = request(&node.key, DAY0 + DAY, DAY0 + 2 * DAY, now, &secret);
    let replies = ask(&monitor, &req.sign(&node.key).to_wire(), 1).await;
    let replica = ProofReply::open(&replies[0], &secret).expect("sealed statement");
    let single = single_key_set();
    let proof =
        UptimeProof::assemble(&replica.statement, vec![replica.sig], &single).expect("1 of 1");
    let verified = proof.verify(&single).expect("verifies");
    assert_eq!(
        verified.statement.windows_reported(),
        vec![DAY0 + DAY + 3_600, DAY0 + 2 * DAY - 300]
    );
    assert_eq!(verified.signers, vec![test_key().public()]);

    // A monitor cannot read other nodes' requests; the aggregator user cannot publish
    // under _INBOX except the one reply to a request it received.
    let mut snoop = connect_with_events(&url, "monitor", MONITOR_PASSWORD, &hub.ca).await;
    let _sub = snoop
        .0
        .subscribe(PROOF_REQUEST_SUBJECT)
        .await
        .expect("sent");
    snoop.0.flush().await.expect("flush");
    expect_violation(&mut snoop.1, "subscription", PROOF_REQUEST_SUBJECT).await;
    let mut agg = connect_with_events(&url, "aggregator", AGGREGATOR_PASSWORD, &hub.ca).await;
    agg.0
        .publish("_INBOX.not-a-reply", "x".into())
        .await
        .expect("sent");
    agg.0.flush().await.expect("flush");
    expect_violation(&mut agg.1, "publish", "_INBOX.not-a-reply").await;

    // verify-proof on the aggregator's machine: its own key (KEY_PATH) by default.
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_json()).expect("write");
    let key_file = dir.path().join("own.key");
    std::fs::write(&key_file, format!("{}\n", hex::encode([42u8; 32]))).expect("key");
    let out = aggregator(
        &["verify-proof", &file.display().to_string()],
        &[("KEY_PATH", key_file.display().to_string())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Signed by 1 of the 1 pinned hub keys"),
        "{}",
        text(&out)
    );
    app.shutdown().await;
}

/// A client of `user` whose server errors arrive on the receiver.
async fn connect_with_events(
    url: &str,
    user: &str,
    password: &str,
    ca: &Path,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .add_root_certificates(ca.to_owned())
        .custom_inbox_prefix(if user == "aggregator" {
            "_AGGREGATOR_INBOX"
        } else {
            "_INBOX"
        })
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event.to_string());
            }
        })
        .connect(url)
        .await
        .expect("connects");
    (client, rx)
}

/// Waits for the server's "Permissions Violation for {kind} to \"{subject}\"".
async fn expect_violation(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    kind: &str,
    subject: &str,
) {
    let wanted = format!("permissions violation for {kind} to \"{subject}\"").to_lowercase();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if event.to_lowercase().contains(&wanted) => return,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("the server did not refuse {kind} to {subject:?}"),
        }
    }
}

fn aggregator(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_truebit-aggregator"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("truebit-aggregator runs")
}

/// `truebit-aggregator verify-proof FILE --keys … --threshold …` (plus `extra` args).
fn verify_proof(file: &Path, keys: &KeySet, extra: &[&str]) -> Output {
    let list: Vec<String> = keys.keys().iter().map(PublicKey::to_string).collect();
    let mut args = vec![
        "verify-proof".to_owned(),
        file.display().to_string(),
        "--keys".to_owned(),
        list.join(","),
        "--threshold".to_owned(),
        keys.threshold().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    aggregator(&args, &[])
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A proof signed by `signers` of [`pinned`] over node 1's windows.
fn made_proof(signers: &[usize], keys: &KeySet) -> UptimeProof {
    let statement = UptimeStatement::new_from_windows(
        SimNode::new(1).report(DAY0, 0, &[]).node,
        DAY0,
        DAY0 + 2 * DAY,
        node_windows(),
        keys,
    )
    .expect("statement");
    let sigs = signers
        .iter()
        .map(|i| {
            ReplicaProof::sign(&format!("r{i}"), &statement, replica_key(*i).signing_key())
                .expect("signs")
                .sig
        })
        .collect();
    UptimeProof::assemble(&statement.to_canonical_bytes(), sigs, keys).expect("assembles")
}

#[test]
fn verify_proof_prints_a_summary_or_one_line_and_exits_accordingly() {
    let dir = tempdir();
    let file = dir.path().join("proof.json");
    let proof = made_proof(&[1, 3], &pinned());
    std::fs::write(&file, proof.to_json()).expect("write");
    let out = verify_proof(&file, &pinned(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let node = SimNode::new(1).report(DAY0, 0, &[]).node;
    assert!(summary.contains(&format!("node {node}")), "{summary}");
    assert!(summary.contains("up 0.69 % of the time"), "{summary}");
    assert!(
        summary.contains("(1200 s up, 171600 s down; a report in 5 of 576"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "Signed by 2 of the 3 pinned hub keys (threshold 2): {}, {}.",
            replica_key(1).public(),
            replica_key(3).public()
        )),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 1);

    // Fails in one line, exit 1: a bit flipped, an unknown hub, under the threshold, no
    // keys at all, no file.
    let json = String::from_utf8(proof.to_json()).expect("ascii");
    let flipped = json.replacen("\"reported\":\"d", "\"reported\":\"f", 1);
    assert_ne!(flipped, json);
    let bad = dir.path().join("flipped.json");
    std::fs::write(&bad, &flipped).expect("write");
    let other = KeySet::new((2..=4).map(|i| replica_key(i).public()).collect(), 2).expect("keys");
    let one = dir.path().join("one.json");
    std::fs::write(&one, made_proof(&[1, 2, 3], &pinned()).to_json()).expect("write");
    let three_of_three = KeySet::new(pinned().keys().to_vec(), 3).expect("3 of 3");
    let cases: Vec<(Output, &str)> = vec![
        (
            verify_proof(&bad, &pinned(), &[]),
            "does not verify: signed by 0 of the pinned",
        ),
        (
            verify_proof(&file, &other, &[]),
            "issued for another hub key set",
        ),
        (
            verify_proof(&one, &three_of_three, &[]),
            "issued for another hub key set",
        ),
        (
            aggregator(
                &["verify-proof", &file.display().to_string()],
                &[(
                    "DB_PATH",
                    dir.path().join("none/a.db").display().to_string(),
                )],
            ),
            "no hub keys to verify against",
        ),
        (
            verify_proof(&dir.path().join("missing.json"), &pinned(), &[]),
            "cannot read the proof",
        ),
        (
            aggregator(
                &[
                    "verify-proof",
                    &dir.path().join("missing.json").display().to_string(),
                ],
                &[(
                    "DB_PATH",
                    dir.path().join("none/a.db").display().to_string(),
                )],
            ),
            "cannot read the proof",
        ),
    ];
    for (out, expected) in cases {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.stdout.is_empty(), "{}", text(&out));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
}

/// The in-flight limit, made 0 so that every request meets it: refused `busy`, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_at_its_in_flight_limit_answers_busy() {
    use std::sync::Arc;
    use truebit_aggregator::metrics::Metrics;
    use truebit_aggregator::nats::Nats;
    use truebit_aggregator::proof::ProofServer;
    use truebit_aggregator::store::Store;
    let dir = tempdir();
    let server = NatsServer::start(dir.path(), &[]);
    let cfg = config(dir.path(), &server.url());
    let metrics = Arc::new(Metrics::default());
    // Caught up: only the in-flight limit can make it busy.
    metrics.set_caught_up(true);
    let nats = Nats::connect(&cfg.nats, Arc::clone(&metrics))
        .await
        .expect("connects");
    let store = Store::open(&cfg.db_path, cfg.limits).expect("store");
    let now = DAY0 + 2 * DAY + 3_600;
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(
        ProofServer {
            nats: nats.clone(),
            store,
            key: test_key(),
            replica: "r1".into(),
            keys: single_key_set(),
            retention_days: 30,
            clock: clock_at(now),
            metrics: Arc::clone(&metrics),
            max_in_flight: 0,
            cancel: cancel.clone(),
        }
        .run(),
    );
    let client = client(&server).await;
    wait_until(20, "the replica answers", async || {
        metrics.proofs_refused(RefusalCode::Busy) > 0 || !ask_quietly(&client).await.is_empty()
    })
    .await;
    let node = SimNode::new(1);
    let secret = seal_secret(4);
    let req = request(&node.key, DAY0, DAY0 + DAY, now, &secret);
    let before = metrics.proofs_refused(RefusalCode::Busy);
    let codes = refusals(&ask(&client, &req.sign(&node.key).to_wire(), 1).await);
    assert_eq!(codes, vec![("r1".to_owned(), RefusalCode::Busy)]);
    assert_eq!(metrics.proofs_refused(RefusalCode::Busy), before + 1);
    assert_eq!(metrics.proofs_served(), 0);
    cancel.cancel();
    task.await.expect("stops");
    nats.close().await;
}

/// Sends a malformed request and returns whatever replies came within 500 ms.
async fn ask_quietly(client: &async_nats::Client) -> Vec<Vec<u8>> {
    let inbox = client.new_inbox();
    let Ok(mut sub) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    let _ = client
        .publish_with_reply(PROOF_REQUEST_SUBJECT, inbox, "probe".into())
        .await;
    let _ = client.flush().await;
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        out.push(msg.payload.to_vec());
    }
    out
}

/// What a replica's store read and answer cost for a 31-day request, on a store with
/// 31 days of every window of 10 nodes (89,280 reports): median of 21 runs, printed.
/// `cargo test -p truebit-aggregator --test it proof::measure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (docs/PERFORMANCE.md), not a check"]
async fn measure_a_31_day_statement_from_the_store() {
    use std::sync::Arc;
    use std::time::Instant;
    use truebit_aggregator::gate::Limits;
    use truebit_aggregator::store::Store;
    let dir = tempdir();
    let store = Store::open(&dir.path().join("m.db"), Limits::default()).expect("store");
    let nodes: Vec<SimNode> = (1..=10).map(SimNode::new).collect();
    let days = 31;
    let start = Instant::now();
    for hour in 0..days * 24 {
        let mut batch = Vec::new();
        for w in 0..12 {
            let window = DAY0 + hour * 3_600 + w * 300;
            for n in &nodes {
                batch.push(n.report(window, 1, &[]));
            }
        }
        let now = DAY0 + (hour + 1) * 3_600 + 60;
        let verdicts = store.ingest(Arc::new(batch), now).await.expect("stored");
        assert!(verdicts.iter().all(Result::is_ok));
    }
    let totals = store.totals().await.expect("totals");
    assert_eq!(totals.reports, days * 288 * 10);
    eprintln!(
        "{} reports stored in {:.1} s",
        totals.reports,
        start.elapsed().as_secs_f64()
    );
    let node = nodes[0].report(DAY0, 0, &[]).node;
    let key = test_key();
    let keys = single_key_set();
    let secret = seal_secret(5);
    let mut reads = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let windows = store
            .node_windows(node, DAY0, DAY0 + days * DAY)
            .await
            .expect("windows");
        reads.push(t.elapsed());
        assert_eq!(windows.len() as u64, days * 288);
        let statement =
            UptimeStatement::new_from_windows(node, DAY0, DAY0 + days * DAY, windows, &keys)
                .expect("statement");
        let proof = ReplicaProof::sign("r1", &statement, key.signing_key()).expect("signs");
        let _ = ProofReply::seal(&proof, &secret.public(), &mut rand::rngs::OsRng).to_wire();
        answers.push(t.elapsed());
    }
    reads.sort();
    answers.sort();
    eprintln!(
        "31-day statement: store read median {:?} (max {:?}); read + statement + sign + seal median {:?} (max {:?})",
        reads[10], reads[20], answers[10], answers[20]
    );
}
