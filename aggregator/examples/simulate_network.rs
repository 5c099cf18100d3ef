//! Publishes a simulated network's reports for the last 24 hours to a NATS server, as
//! monitors would (signed, privacy-checked by the protocol crate): for trying the
//! aggregator and its network page.
//!
//! ```text
//! cargo run -p truebit-aggregator --example simulate_network -- nats://127.0.0.1:4222 [NODES]
//! ```

use rand::{Rng, SeedableRng};
use truebit_protocol::bucket::{
    ActiveTasksBucket, ExecTimeBucket, GasBucket, MemoryBucket, StepsBucket, TotalTasksBucket,
};
use truebit_protocol::report::{
    ChainId, Continent, InvoiceItem, Level, NodeState, NodeStatus, Operation, Outcome, Report,
    TaskItem,
};
use truebit_protocol::sign::SigningKey;
use truebit_protocol::window::{window_of, WINDOW_SECS};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("nats://127.0.0.1:4222", String::as_str);
    let nodes: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(40);
    let client = async_nats::connect(url).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let last = window_of(now).as_secs() - WINDOW_SECS;
    let continents = [Continent::Europe, Continent::NorthAmerica, Continent::Asia];
    let mut sent = 0;
    for n in 0..nodes {
        let mut seed = [5u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let busy = 1 + n % 4;
        let online_from = if n % 7 == 0 { 12 * 12 } else { 288 };
        for i in (0..online_from).rev() {
            let window = last - i * WINDOW_SECS;
            let w = truebit_protocol::window::WindowStart::new(window).expect("aligned");
            let mut r = Report::for_key(&key.verifying_key(), w, Level::Full);
            r.continent = Some(continents[(n % 3) as usize]);
            r.status = NodeStatus {
                state: NodeState::Up,
                active: ActiveTasksBucket::One,
                total: TotalTasksBucket::From100To500,
            };
            let tasks = rng.gen_range(0..=busy);
            for _ in 0..tasks {
                let ok = rng.gen_bool(0.93);
                r.tasks.push(TaskItem {
                    chain: ChainId::new([1, 137, 43_114][rng.gen_range(0..3)]),
                    outcome: if ok {
                        Outcome::Completed
                    } else {
                        Outcome::Failed
                    },
                    duration: ExecTimeBucket::ALL[rng.gen_range(0..6)],
                    gas: GasBucket::ALL[rng.gen_range(0..4)],
                    memory: MemoryBucket::ALL[rng.gen_range(0..3)],
                    cached: Some(rng.gen_bool(0.3)),
                });
                r.invoices.push(InvoiceItem {
                    op: Operation::Charge,
                    steps: StepsBucket::ALL[rng.gen_range(0..4)],
                });
                if ok {
                    r.counts.completed += 1;
                } else {
                    r.counts.failed += 1;
                }
            }
            r.counts.received = u64::from(tasks);
            r.tasks.sort();
            r.invoices.sort();
            let wire = truebit_protocol::privacy::validate_report(&r)?
                .sign(&key)?
                .to_wire();
            client
                .publish(truebit_protocol::REPORT_SUBJECT, wire.into())
                .await?;
            sent += 1;
        }
    }
    client.flush().await?;
    println!("published {sent} reports of {nodes} nodes");
    Ok(())
}
