//! The systemd units: `systemd-analyze verify`, its security review, and the
//! environment and paths against the monitor.

use super::compose::{check_aggregator_command, check_aggregator_env};
use super::*;

fn unit_values(unit: &str, key: &str, commented_too: bool) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = if commented_too {
                l.strip_prefix('#').unwrap_or(l)
            } else {
                l
            };
            l.strip_prefix(&format!("{key}="))
        })
        .map(str::to_owned)
        .collect()
}

/// `systemd-analyze verify` (no warning either) and the offline security review, on a
/// copy whose ExecStart points at `binary`.
fn check_unit(name: &str, binary: &Path) -> String {
    let analyze = find_program("systemd-analyze", "TRUEBIT_TEST_SYSTEMD_ANALYZE");
    let text = read(&format!("deploy/systemd/{name}"));
    let exec = unit_values(&text, "ExecStart", false);
    assert_eq!(exec.len(), 1, "{name}: one ExecStart");
    let shipped_binary = exec[0].split_whitespace().next().expect("a command");
    assert!(
        shipped_binary.starts_with("/usr/local/bin/"),
        "{name}: {shipped_binary}"
    );
    let dir = support::tempdir();
    let copy = dir.path().join(name);
    std::fs::write(
        &copy,
        text.replace(shipped_binary, &binary.display().to_string()),
    )
    .expect("write unit");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify {name}:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security runs");
    let report = stdout(&out);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ").map(|(_, r)| r))
        .and_then(|r| r.split_once(": ").map(|(_, v)| v))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{report}{}", stderr(&out)));
    assert!(
        exposure <= 2.0,
        "{name}: systemd rates the exposure {exposure} (keep it at 2.0 or lower):\n{report}"
    );
    text
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let unit = check_unit(
        "truebit-monitor.service",
        Path::new(env!("CARGO_BIN_EXE_truebit-monitor")),
    );
    // The environment it sets (or suggests) is the monitor's.
    let known = deploy_env_names();
    for assignment in unit_values(&unit, "Environment", true) {
        let name = assignment.split('=').next().unwrap_or_default();
        assert!(
            known.contains(name),
            "truebit-monitor.service sets unknown {name}"
        );
    }
    // The command line works, and the config and state folders match the example config.
    let exec = &unit_values(&unit, "ExecStart", false)[0];
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let config = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("ExecStart --config FILE");
    let config_dir = &unit_values(&unit, "ConfigurationDirectory", false)[0];
    assert_eq!(
        Path::new(config).parent(),
        Some(Path::new("/etc").join(config_dir).as_path())
    );
    let mut check: Vec<&str> = args
        .iter()
        .map(|a| {
            if a == config {
                "deploy/monitor.example.toml"
            } else {
                a
            }
        })
        .collect();
    check.push("--help");
    let out = monitor(&check, &[]);
    assert!(out.status.success(), "{check:?}: {}", stderr(&out));
    let example: toml::Value = toml::from_str(&read("deploy/monitor.example.toml")).expect("toml");
    let db = example["db_path"].as_str().expect("db_path");
    let state = &unit_values(&unit, "StateDirectory", false)[0];
    assert!(
        Path::new(db).starts_with(Path::new("/var/lib").join(state)),
        "db_path {db} is not in the StateDirectory /var/lib/{state}"
    );
    assert_eq!(unit_values(&unit, "DynamicUser", false), ["yes"]);
    assert_eq!(unit_values(&unit, "NoNewPrivileges", false), ["yes"]);
    assert_eq!(unit_values(&unit, "ProtectSystem", false), ["strict"]);
    assert!(
        unit_values(&unit, "SupplementaryGroups", false).is_empty(),
        "the docker group is opt-in (commented), never the default"
    );

    let aggregator = check_unit(
        "truebit-aggregator.service",
        &find_program("true", "TRUEBIT_TEST_TRUE"),
    );
    let names: BTreeSet<String> = unit_values(&aggregator, "Environment", true)
        .iter()
        .filter_map(|a| a.split('=').next().map(str::to_owned))
        .collect();
    check_aggregator_env(&names, "truebit-aggregator.service");
    let exec: Vec<String> = unit_values(&aggregator, "ExecStart", false)
        .first()
        .expect("ExecStart")
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    check_aggregator_command(&exec, "truebit-aggregator.service");
}
