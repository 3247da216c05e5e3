//! Runs the real `stagger` binary: tag, plan and replay.

use std::path::PathBuf;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use assert_cmd::prelude::*;
use predicates::str::contains;

fn stagger() -> Command {
    Command::cargo_bin("stagger").unwrap()
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn tag_parse_valid_inputs_exit_zero() {
    let output = stagger()
        .args([
            "tag",
            "parse",
            "v1.2.3",
            "myhub.com:23433/myorg/node:v1.0.6-canary-hotfix",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());

    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["tag"], "v1.2.3");
    assert_eq!(lines[0]["image"], serde_json::Value::Null);
    assert_eq!(lines[0]["digest"], serde_json::Value::Null);
    assert_eq!(lines[1]["image"], "myhub.com:23433/myorg/node");
    assert_eq!(lines[1]["version"], "1.0.6");
    assert_eq!(lines[1]["group"], "canary");
    assert_eq!(lines[1]["urgency"], "hotfix");
}

#[test]
fn tag_parse_keeps_key_order() {
    let output = stagger().args(["tag", "parse", "v1.2.3"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        text.trim(),
        r#"{"input":"v1.2.3","image":null,"tag":"v1.2.3","version":"1.2.3","group":"main","urgency":"normal","digest":null}"#
    );
}

#[test]
fn tag_parse_invalid_input_exits_one() {
    let output = stagger()
        .args(["tag", "parse", "v1.0.0", "--", "-v1", "v01.2.3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));

    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["input"], "-v1");
    assert_eq!(
        lines[2]["error"],
        "invalid release tag \"v01.2.3\": leading zero in the major version"
    );
    assert!(lines[2].get("tag").is_none());
}

#[test]
fn tag_sort_orders_and_reports_invalid() {
    let input = "v1.3.13\nlatest\nv1.3.9\norg/node:v1.3.11-hotfix\nv1.3.11\nv0.20.0\nv0.2.5\n";
    assert_cmd::Command::cargo_bin("stagger")
        .unwrap()
        .args(["tag", "sort"])
        .write_stdin(input)
        .assert()
        .success()
        .stdout("v0.2.5\nv0.20.0\nv1.3.9\norg/node:v1.3.11-hotfix\nv1.3.11\nv1.3.13\n")
        .stderr(contains("line 2: invalid release tag \"latest\""));
}

#[test]
fn plan_json_address_vector() {
    let output = stagger()
        .args([
            "plan",
            "--node",
            "8cd2a24f0c3f50bce2f12c846277491433b47ae0",
            "--tag",
            "v1.4.0",
            "--detected-at",
            "2025-12-04T00:00:00Z",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let plan = &json_lines(&output.stdout)[0];
    assert_eq!(plan["detected_at"], 1_764_806_400);
    assert_eq!(plan["window_seconds"], 86_400);
    assert_eq!(plan["offset_seconds"], 27_348);
    assert_eq!(plan["rollout_at"], 1_764_806_400 + 27_348);
    assert_eq!(plan["urgency"], "normal");
    assert_eq!(plan["group"], "main");
}

#[test]
fn plan_immediate_has_no_offset() {
    let output = stagger()
        .args([
            "plan",
            "--node",
            "node-eu-1",
            "--tag",
            "v1.4.0-immediate",
            "--detected-at",
            "1764806400",
            "--json",
        ])
        .output()
        .unwrap();
    let plan = &json_lines(&output.stdout)[0];
    assert_eq!(plan["window_seconds"], 0);
    assert_eq!(plan["rollout_at"], 1_764_806_400);
}

#[test]
fn plan_human_output_names_rollout_time() {
    stagger()
        .args([
            "plan",
            "--node",
            "node-eu-1",
            "--tag",
            "v1.4.0",
            "--detected-at",
            "1764806400",
        ])
        .assert()
        .success()
        .stdout(contains(
            "rollout at:  2025-12-04T02:08:59Z (1764814139), 2h 8m 59s after detection",
        ))
        .stdout(contains("window:      24h"));
}

#[test]
fn plan_rejects_bad_values() {
    stagger()
        .args(["plan", "--node", "n", "--tag", "latest"])
        .assert()
        .code(1)
        .stderr(contains("invalid --tag"))
        .stderr(contains("invalid release tag \"latest\""));
    stagger()
        .args([
            "plan",
            "--node",
            "n",
            "--tag",
            "v1.0.0",
            "--normal-window",
            "0s",
        ])
        .assert()
        .code(1)
        .stderr(contains("a rollout window must be at least 1s"));
    stagger()
        .args([
            "plan",
            "--node",
            "n",
            "--tag",
            "v1.0.0",
            "--detected-at",
            "soon",
        ])
        .assert()
        .code(1)
        .stderr(contains("invalid timestamp \"soon\""));
}

#[test]
fn replay_examples_run() {
    for name in [
        "replay-restarts.json",
        "replay-hotfix-during-normal.json",
        "replay-withdrawal.json",
        "replay-spread.json",
    ] {
        stagger()
            .arg("replay")
            .arg(example(name))
            .assert()
            .success()
            .stdout(contains("ACTION"));
    }
}

#[test]
fn replay_hotfix_escalates_pending_normal() {
    let output = stagger()
        .args(["replay", "--json"])
        .arg(example("replay-hotfix-during-normal.json"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let decisions = json_lines(&output.stdout);

    let escalated = decisions
        .iter()
        .find(|decision| decision["reason"] == "escalated")
        .expect("an escalated decision");
    assert_eq!(escalated["service"], "node");
    assert_eq!(escalated["tag"], "v1.5.0-hotfix");
    assert_eq!(escalated["version"], "1.5.0");

    let keys: Vec<&String> = decisions[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "at",
            "service",
            "group",
            "action",
            "tag",
            "version",
            "rollout_at",
            "reason"
        ]
    );
}

#[test]
fn replay_state_loss_adopts_at_once() {
    let output = stagger()
        .args(["replay", "--json"])
        .arg(example("replay-restarts.json"))
        .output()
        .unwrap();
    let decisions = json_lines(&output.stdout);
    let after_loss: Vec<&serde_json::Value> = decisions
        .iter()
        .filter(|decision| decision["at"] == 1_764_811_800)
        .collect();
    assert_eq!(after_loss.len(), 2);
    assert!(after_loss
        .iter()
        .all(|decision| decision["action"] == "adopt"));
    assert!(after_loss
        .iter()
        .all(|decision| decision["rollout_at"].is_null()));
}

#[test]
fn replay_withdrawal_cancels_with_slot() {
    let output = stagger()
        .args(["replay", "--json"])
        .arg(example("replay-withdrawal.json"))
        .output()
        .unwrap();
    let decisions = json_lines(&output.stdout);
    let scheduled = decisions
        .iter()
        .find(|decision| decision["action"] == "schedule")
        .unwrap();
    let cancelled = decisions
        .iter()
        .find(|decision| decision["action"] == "cancel")
        .unwrap();
    assert_eq!(cancelled["reason"], "withdrawn");
    assert_eq!(cancelled["rollout_at"], scheduled["rollout_at"]);
}

#[test]
fn replay_node_override_changes_slots() {
    let run = |extra: &[&str]| {
        let output = stagger()
            .args(["replay", "--json"])
            .args(extra)
            .arg(example("replay-withdrawal.json"))
            .output()
            .unwrap();
        json_lines(&output.stdout)
    };
    let original = run(&[]);
    let overridden = run(&["--node", "node-eu-1"]);
    assert_ne!(original[1]["rollout_at"], overridden[1]["rollout_at"]);
}

#[test]
fn replay_undeclared_service_is_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("scenario.json");
    std::fs::write(
        &path,
        r#"{"node": "n", "services": {"signer": {"group": "main"}},
            "events": [{"at": 10, "observe": {"ghost": ["v1.0.0"]}}]}"#,
    )
    .unwrap();
    stagger()
        .arg("replay")
        .arg(&path)
        .assert()
        .code(1)
        .stderr(contains(
            "observes service \"ghost\", which \"services\" does not declare",
        ));
}

#[test]
fn replay_unknown_field_is_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("scenario.json");
    std::fs::write(
        &path,
        r#"{"node": "n", "services": {}, "events": [], "untill": 5}"#,
    )
    .unwrap();
    stagger()
        .arg("replay")
        .arg(&path)
        .assert()
        .code(1)
        .stderr(contains("unknown field `untill`"));
}

#[test]
fn shipped_configs_check() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    stagger()
        .args(["agent", "--check", "--config"])
        .arg(root.join("examples/agent.toml"))
        .assert()
        .success()
        .stdout(contains("is valid"));

    // The production template is valid but for its placeholder node address.
    stagger()
        .args(["agent", "--check", "--config"])
        .arg(root.join("dist/agent.toml"))
        .assert()
        .code(1)
        .stderr(contains("node is the all-zero placeholder address"));

    let template = std::fs::read_to_string(root.join("dist/agent.toml")).unwrap();
    let address = "0x8cd2a24f0c3f50bce2f12c846277491433b47ae0";
    let directory = tempfile::tempdir().unwrap();
    let configured = directory.path().join("agent.toml");
    let text = template.replace("0x0000000000000000000000000000000000000000", address);
    std::fs::write(&configured, text).unwrap();
    stagger()
        .args(["agent", "--check", "--config"])
        .arg(&configured)
        .assert()
        .success()
        .stdout(contains(format!("node:     {address}")));
}

#[test]
fn agent_check_names_bad_key() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("agent.toml");
    std::fs::write(
        &path,
        "node = \"n\"\ninterval = \"0s\"\n[source]\nkind = \"descriptor\"\npath = \"v.json\"\n\
         [services.a]\nexecutor = { kind = \"orchestrator\" }\n",
    )
    .unwrap();
    stagger()
        .args(["agent", "--check", "--config"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(contains("invalid interval \"0s\": it must be at least 1s"));
}

#[test]
fn closed_stdout_ends_quietly() {
    use std::process::Stdio;

    // A scenario whose decision table is far larger than a pipe's buffer.
    let events: Vec<String> = (0..3_000)
        .map(|index| {
            format!(
                r#"{{"at": {}, "observe": {{"signer": ["v1.0.{index}-immediate"]}}}}"#,
                1_764_806_400 + index
            )
        })
        .collect();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("scenario.json");
    let scenario = format!(
        r#"{{"node": "n", "services": {{"signer": {{"group": "main"}}}}, "events": [{}]}}"#,
        events.join(",")
    );
    std::fs::write(&path, scenario).unwrap();

    let mut child = stagger()
        .arg("replay")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end at once, as `| head -1` does once it has its line.
    drop(child.stdout.take());

    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}
