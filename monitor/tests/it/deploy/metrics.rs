//! deploy/grafana and deploy/prometheus against the monitor's /metrics: every series the
//! dashboard or the alert rules use is one the monitor serves.

use std::collections::BTreeSet;

use truebit_monitor::federation::FederationConfig;

use super::*;

/// The metric families `/metrics` of a monitor with a day of node activity serves.
async fn served_families() -> BTreeSet<String> {
    let app = crate::http::app_at(
        crate::http::settings(),
        20,
        FederationConfig::default(),
        1_800_000_000 * 1_000_000_000,
    )
    .await;
    let r = app.get("/metrics").await;
    let text = String::from_utf8(r.body).expect("utf8");
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// The `truebit_…` names a PromQL expression uses, as families (a histogram's
/// `_bucket`, `_sum`, `_count` series belong to it).
fn families_in(expr: &str, served: &BTreeSet<String>) -> Vec<String> {
    let name = regex::Regex::new(r"\btruebit_[a-z_]+").expect("regex");
    name.find_iter(expr)
        .map(|m| {
            let n = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s).filter(|f| served.contains(*f)))
                .unwrap_or(n)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_and_the_alert_rules_use_only_served_metrics() {
    let served = served_families().await;
    for family in [
        "truebit_earned_gas_units_total",
        "truebit_slots_used",
        "truebit_slots_capacity",
        "truebit_execution_seconds",
        "truebit_executions",
        "truebit_ingest_last_entry_age_seconds",
        "truebit_alert_firing",
    ] {
        assert!(
            served.contains(family),
            "/metrics lacks {family}: {served:?}"
        );
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/truebit-node.json")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = families_in(expr, &served);
            assert!(!names.is_empty(), "{title}: {expr} uses no monitor series");
            for n in names {
                assert!(
                    served.contains(&n),
                    "{title}: {n} is not served by /metrics"
                );
                used.insert(n);
            }
        }
    }
    for wanted in [
        "truebit_earned_gas_units_total",
        "truebit_execution_seconds",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard does not chart {wanted}"
        );
    }

    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/truebit-alerts.yml")).expect("rules YAML");
    let rules = rules["groups"][0]["rules"].as_sequence().expect("rules");
    assert!(rules.len() >= 6);
    for rule in rules {
        let alert = rule["alert"].as_str().expect("alert name");
        let expr = rule["expr"].as_str().expect("expr");
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{alert}: severity"
        );
        assert!(
            rule["annotations"]["summary"].as_str().is_some(),
            "{alert}: summary"
        );
        for n in families_in(expr, &served) {
            assert!(
                served.contains(&n),
                "{alert}: {n} is not served by /metrics"
            );
        }
    }
    let scrape: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).expect("scrape YAML");
    assert_eq!(
        scrape["rule_files"][0].as_str(),
        Some("truebit-alerts.yml"),
        "the scrape example loads the rules"
    );
    assert_eq!(
        scrape["scrape_configs"][0]["metrics_path"].as_str(),
        Some("/metrics")
    );
}

/// promtool (from the `prometheus` package; scripts/test installs it). Without it the
/// test fails and says so.
fn promtool() -> std::process::Command {
    let path = std::env::var("TRUEBIT_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let found = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool not found ({path}): install the `prometheus` package (scripts/test does) or set TRUEBIT_TEST_PROMTOOL"
    );
    std::process::Command::new(path)
}

/// promtool accepts the shipped alert rules and the scrape example (which loads them),
/// and its linter finds nothing in what /metrics serves.
#[tokio::test]
async fn promtool_accepts_the_rules_the_scrape_example_and_the_metrics() {
    let out = promtool()
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/truebit-alerts.yml"))
        .output()
        .expect("promtool runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/truebit-alerts.yml")).expect("rules YAML");
    let n = rules["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .len();
    assert!(
        text.contains(&format!("SUCCESS: {n} rules found")),
        "{text}"
    );

    // The scrape example as shipped, beside its rules, with the key file it names made
    // here (it lives in /etc/prometheus on a real server).
    let dir = crate::support::tempdir();
    let key = dir.path().join("truebit-monitor.key");
    std::fs::write(&key, "an-api-key\n").expect("key file");
    let config = read("deploy/prometheus/prometheus.yml");
    assert!(
        config.contains("/etc/prometheus/truebit-monitor.key"),
        "{config}"
    );
    let config = config.replace(
        "/etc/prometheus/truebit-monitor.key",
        &key.display().to_string(),
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
    std::fs::copy(
        root().join("deploy/prometheus/truebit-alerts.yml"),
        dir.path().join("truebit-alerts.yml"),
    )
    .expect("rules");
    let out = promtool()
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let app = crate::http::app_at(
        crate::http::settings(),
        20,
        FederationConfig::default(),
        1_800_000_000 * 1_000_000_000,
    )
    .await;
    let metrics = app.get("/metrics").await.body;
    assert!(metrics.len() > 1000);
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&metrics).expect("write the metrics");
    }
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
