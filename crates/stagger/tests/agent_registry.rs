//! End-to-end tests of `stagger agent` against a real `docker-registry` on loopback.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::agent::{hook_runs, recording_hook, stagger_command, write_script, AgentProcess};
use support::registry::TestRegistry;

const NODE: &str = "8cd2a24f0c3f50bce2f12c846277491433b47ae0";
const REPOSITORY: &str = "orbsnetwork/node";

/// A window long enough that a pending upgrade never comes due during a test.
const NEVER: &str = "100000h";

/// A config for one main service `node` on `registry`, with the given windows and hook.
fn config(registry: &TestRegistry, normal: &str, hotfix: &str, hook: &std::path::Path) -> String {
    format!(
        r#"
node = "{NODE}"
interval = "1s"
splay = "0s"
retry_initial = "1s"
retry_max = "2s"
[windows]
normal = "{normal}"
hotfix = "{hotfix}"
[source]
kind = "registry"
registry = "{host}"
insecure = true
retries = 0
timeout = "3s"
[services.node]
image = "{REPOSITORY}"
group = "main"
executor = {{ kind = "hook", command = ["{hook}"], timeout = "10s" }}
"#,
        host = registry.host(),
        hook = hook.display(),
    )
}

fn wait_for_tag(agent: &AgentProcess, tag: &str, timeout: Duration) {
    agent.wait_until(&format!("node runs {tag}"), timeout, |agent| {
        agent.current_tag("node").as_deref() == Some(tag)
    });
}

/// Waits for the decision that scheduled or rescheduled `tag` and returns its log event, whose
/// `at` is the detection time and `rollout_at_unix` the timeslot. Reading the log instead of
/// `/status` works even when a short window puts the timeslot at the detection time itself.
fn wait_for_decision(agent: &AgentProcess, tag: &str) -> Value {
    agent.wait_until(
        &format!("a decision schedules {tag}"),
        Duration::from_secs(15),
        |agent| !scheduling_events(agent, tag).is_empty(),
    );
    scheduling_events(agent, tag).pop().unwrap()
}

fn scheduling_events(agent: &AgentProcess, tag: &str) -> Vec<Value> {
    agent
        .log_events("decision")
        .into_iter()
        .filter(|event| {
            event["tag"] == tag
                && (event["action"] == "schedule" || event["action"] == "reschedule")
        })
        .collect()
}

fn wait_for_pending(agent: &AgentProcess, tag: &str) -> Value {
    agent.wait_until(
        &format!("{tag} is pending"),
        Duration::from_secs(15),
        |agent| agent.pending("node")["tag"] == tag,
    );
    agent.pending("node")
}

/// Runs `stagger plan` for the test node and returns its JSON.
fn plan(tag: &str, detected_at: u64, normal: &str, hotfix: &str) -> Value {
    let output = stagger_command()
        .args(["plan", "--node", NODE, "--tag", tag, "--json"])
        .args(["--detected-at", &detected_at.to_string()])
        .args(["--normal-window", normal, "--hotfix-window", hotfix])
        .output()
        .unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn adopts_newest_release_pinned_by_digest() {
    let registry = TestRegistry::start();
    let repository = registry.populate_realistic(REPOSITORY);
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());

    let agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    // Among the main-group release tags the newest version is v1.3.2-immediate; canary and
    // staging tags are not eligible.
    wait_for_tag(&agent, "v1.3.2-immediate", Duration::from_secs(20));

    let digest = registry.digest_of(REPOSITORY, "v1.3.2-immediate").unwrap();
    let service = agent.service("node");
    assert_eq!(service["current"]["digest"], digest.as_str());
    assert_eq!(service["ignored_tags"], repository.staging_tags.len() + 2);

    // Non-release tags are reported when they first appear, not at every poll.
    std::thread::sleep(Duration::from_secs(3));
    let reports = agent.log_events("ignoring listed tags that are not release tags");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["count"], repository.staging_tags.len() + 2);
    registry.add_tags(REPOSITORY, "experimental", &["v1.3.14-0badcafe"]);
    agent.wait_until(
        "the new staging tag is reported",
        Duration::from_secs(10),
        |agent| {
            agent
                .log_events("ignoring listed tags that are not release tags")
                .len()
                == 2
        },
    );
    let reports = agent.log_events("ignoring listed tags that are not release tags");
    assert_eq!(reports[1]["count"], 1);

    let runs = hook_runs(work.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].reason, "initial");
    assert_eq!(
        runs[0].image,
        format!("{}/{REPOSITORY}@{digest}", registry.host())
    );
}

#[test]
fn hotfix_applies_at_planned_timeslot() {
    let registry = TestRegistry::start();
    registry.populate_realistic(REPOSITORY);
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let agent = AgentProcess::start(&config(&registry, "20s", "4s", &hook));
    wait_for_tag(&agent, "v1.3.2-immediate", Duration::from_secs(20));

    registry.push_image(REPOSITORY, "v1.4.0-hotfix");
    let decision = wait_for_decision(&agent, "v1.4.0-hotfix");
    let detected_at = decision["at"].as_u64().unwrap();
    let rollout_at = decision["rollout_at_unix"].as_u64().unwrap();
    let planned = plan("v1.4.0-hotfix", detected_at, "20s", "4s");
    assert_eq!(planned["rollout_at"], rollout_at);

    wait_for_tag(&agent, "v1.4.0-hotfix", Duration::from_secs(15));
    let run = hook_runs(work.path()).pop().unwrap();
    assert_eq!(run.tag, "v1.4.0-hotfix");
    assert_eq!(run.reason, "timeslot");
    assert!(
        run.at_millis >= rollout_at * 1_000,
        "applied {} ms before its timeslot",
        rollout_at * 1_000 - run.at_millis
    );
    assert!(
        run.at_millis < rollout_at * 1_000 + 1_000,
        "applied {} ms after its timeslot",
        run.at_millis - rollout_at * 1_000
    );
}

#[test]
fn newer_release_supersedes_then_hotfix_escalates() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let agent = AgentProcess::start(&config(&registry, NEVER, "4s", &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    registry.push_image(REPOSITORY, "v1.1.0");
    let first = wait_for_pending(&agent, "v1.1.0");

    registry.push_image(REPOSITORY, "v1.2.0");
    let superseded = wait_for_pending(&agent, "v1.2.0");
    assert_eq!(superseded["rollout_at"], first["rollout_at"]);
    assert_eq!(superseded["detected_at"], first["detected_at"]);

    registry.push_image(REPOSITORY, "v1.2.0-hotfix");
    let escalated = wait_for_decision(&agent, "v1.2.0-hotfix");
    assert_eq!(escalated["reason"], "escalated");
    let detected_at = escalated["at"].as_u64().unwrap();
    let planned = plan("v1.2.0-hotfix", detected_at, NEVER, "4s");
    assert_eq!(escalated["rollout_at_unix"], planned["rollout_at"]);
    assert!(escalated["rollout_at_unix"].as_u64() < first["rollout_at"].as_u64());

    wait_for_tag(&agent, "v1.2.0-hotfix", Duration::from_secs(15));
    let reasons: Vec<Value> = agent
        .log_events("decision")
        .into_iter()
        .map(|event| event["reason"].clone())
        .collect();
    assert!(reasons.contains(&Value::from("superseded")), "{reasons:?}");
    assert!(reasons.contains(&Value::from("escalated")), "{reasons:?}");
}

#[test]
fn deleted_pending_tag_is_withdrawn() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    registry.push_image(REPOSITORY, "v1.1.0");
    wait_for_pending(&agent, "v1.1.0");
    registry.delete_tag(REPOSITORY, "v1.1.0");

    agent.wait_until(
        "the pending upgrade is cancelled",
        Duration::from_secs(15),
        |agent| agent.pending("node").is_null(),
    );
    let cancels: Vec<Value> = agent
        .log_events("decision")
        .into_iter()
        .filter(|event| event["action"] == "cancel")
        .collect();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0]["reason"], "withdrawn");
    assert_eq!(agent.current_tag("node").as_deref(), Some("v1.0.0"));
}

#[test]
fn immediate_release_applies_at_once() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    registry.push_image(REPOSITORY, "v1.1.0");
    wait_for_pending(&agent, "v1.1.0");
    registry.push_image(REPOSITORY, "v1.2.0-immediate");
    wait_for_tag(&agent, "v1.2.0-immediate", Duration::from_secs(10));

    let run = hook_runs(work.path()).pop().unwrap();
    assert_eq!(run.reason, "immediate");
    assert!(agent.pending("node").is_null());
}

#[test]
fn kill_during_pending_keeps_timeslot() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let mut agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    registry.push_image(REPOSITORY, "v1.1.0");
    let before = wait_for_pending(&agent, "v1.1.0");
    agent.kill();
    std::thread::sleep(Duration::from_millis(1_500));
    agent.spawn(&[]);

    // Give the restarted agent a few polls to prove it does not upgrade at once.
    std::thread::sleep(Duration::from_secs(3));
    let after = agent.pending("node");
    assert_eq!(after["rollout_at"], before["rollout_at"]);
    assert_eq!(after["detected_at"], before["detected_at"]);
    assert_eq!(agent.current_tag("node").as_deref(), Some("v1.0.0"));
    assert_eq!(hook_runs(work.path()).len(), 1);
}

#[test]
fn removed_state_file_adopts_at_once() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let mut agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));
    registry.push_image(REPOSITORY, "v1.1.0");
    wait_for_pending(&agent, "v1.1.0");

    assert_eq!(agent.stop(), Some(0));
    std::fs::remove_file(agent.state_file()).unwrap();
    agent.spawn(&[]);

    wait_for_tag(&agent, "v1.1.0", Duration::from_secs(15));
    let run = hook_runs(work.path()).pop().unwrap();
    assert_eq!(run.tag, "v1.1.0");
    assert_eq!(run.reason, "initial");
}

#[test]
fn corrupt_state_file_is_moved_aside() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let mut agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    assert_eq!(agent.stop(), Some(0));
    std::fs::write(agent.state_file(), b"{\"format_version\": 1, \"engine\": {").unwrap();
    agent.spawn(&[]);
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(15));

    let moved: Vec<String> = std::fs::read_dir(agent.path("state"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(agent.log().contains("unreadable state file moved aside"));
}

#[test]
fn failing_hook_retries_until_success() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let failures_left = work.path().join("failures-left");
    std::fs::write(&failures_left, "2\n").unwrap();
    let hook = write_script(
        work.path(),
        "flaky.sh",
        &format!(
            "left=$(cat {path})\nif [ \"$left\" -gt 0 ]; then echo $((left - 1)) > {path}; echo 'pull failed' >&2; exit 1; fi\nexit 0",
            path = failures_left.display()
        ),
    );
    let agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));

    agent.wait_until(
        "the first attempt fails",
        Duration::from_secs(20),
        |agent| agent.service("node")["last_executor"]["result"] == "failure",
    );
    assert!(agent.current_tag("node").is_none());
    let failed = agent.service("node");
    assert!(failed["last_executor"]["error"]
        .as_str()
        .unwrap()
        .contains("exit status: 1"));

    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));
    let metrics = agent.try_get("/metrics").unwrap();
    assert!(
        metrics.contains("stagger_agent_upgrades_total{service=\"node\",result=\"failure\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stagger_agent_upgrades_total{service=\"node\",result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        agent.log().contains("pull failed"),
        "the hook's stderr is logged"
    );
}

#[test]
fn api_and_ctl_answer() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    registry.push_image("orbsnetwork/signer", "v2.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let text = format!(
        "{}\n[services.signer]\nimage = \"orbsnetwork/signer\"\nexecutor = {{ kind = \"orchestrator\" }}\n",
        config(&registry, NEVER, NEVER, &hook)
    );
    let agent = AgentProcess::start(&text);
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));
    agent.wait_until("signer adopts", Duration::from_secs(10), |agent| {
        agent.current_tag("signer").is_some()
    });

    assert_eq!(agent.try_get("/healthz").as_deref(), Some("ok\n"));
    let status = agent.status();
    assert_eq!(status["node"], NODE);
    assert_eq!(status["last_poll"]["result"], "success");

    let management = agent.get_json("/node/management");
    let signer = &management["services"]["signer"]["DockerConfig"];
    assert_eq!(
        signer["Image"],
        format!("{}/orbsnetwork/signer", registry.host())
    );
    assert_eq!(signer["Tag"], "v2.0.0");
    assert_eq!(signer["Pull"], true);
    assert!(
        management["services"].get("node").is_none(),
        "hook services are not published"
    );

    registry.push_image(REPOSITORY, "v1.1.0");
    let pending = wait_for_pending(&agent, "v1.1.0");
    let metrics = agent.try_get("/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "stagger_agent_pending_rollout_timestamp_seconds{{service=\"node\"}} {}",
            pending["rollout_at"]
        )),
        "{metrics}"
    );
    assert!(metrics.contains("stagger_agent_current_release_info{service=\"signer\",group=\"main\",tag=\"v2.0.0\",version=\"2.0.0\"} 1"), "{metrics}");
    assert!(
        metrics.contains("stagger_agent_last_successful_poll_timestamp_seconds"),
        "{metrics}"
    );

    let ctl_status = agent.ctl(&["status"]);
    assert!(ctl_status.status.success());
    let text = String::from_utf8_lossy(&ctl_status.stdout);
    assert!(text.contains("pending: v1.1.0 at"), "{text}");

    let held = agent.ctl(&["hold", "node"]);
    assert!(
        held.status.success(),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    assert_eq!(agent.service("node")["held"], true);
    let redeploy_all = agent.ctl(&["upgrade-now"]);
    assert!(String::from_utf8_lossy(&redeploy_all.stdout).contains("nothing to redeploy"));
    assert_eq!(
        agent.current_tag("node").as_deref(),
        Some("v1.0.0"),
        "a held service waits"
    );

    assert!(agent.ctl(&["resume", "node"]).status.success());
    let redeploy = agent.ctl(&["upgrade-now", "node"]);
    assert!(String::from_utf8_lossy(&redeploy.stdout).contains("node: applying v1.1.0 now"));
    wait_for_tag(&agent, "v1.1.0", Duration::from_secs(10));
    assert_eq!(hook_runs(work.path()).pop().unwrap().reason, "redeploy");

    let unknown = agent.ctl(&["hold", "ghost"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains(
            "service \"ghost\" is not in the agent's configuration; its services are: node, signer"
        ),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn hold_persists_across_restart() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let mut agent = AgentProcess::start(&config(&registry, NEVER, "2s", &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    assert!(agent.ctl(&["hold", "node"]).status.success());
    agent.kill();
    agent.spawn(&[]);
    assert_eq!(agent.service("node")["held"], true);

    registry.push_image(REPOSITORY, "v1.1.0-hotfix");
    wait_for_pending(&agent, "v1.1.0-hotfix");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(agent.current_tag("node").as_deref(), Some("v1.0.0"));

    assert!(agent.ctl(&["resume", "node"]).status.success());
    wait_for_tag(&agent, "v1.1.0-hotfix", Duration::from_secs(10));
}

#[test]
fn registry_outage_is_reported_and_survived() {
    let mut registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let mut agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    registry.stop();
    agent.wait_until("a poll fails", Duration::from_secs(20), |agent| {
        agent.status()["last_poll"]["result"] == "failure"
    });
    let status = agent.status();
    let error = status["last_poll"]["error"].as_str().unwrap();
    assert!(error.contains(&registry.host()), "{error}");
    assert!(agent.is_running());
    assert_eq!(agent.current_tag("node").as_deref(), Some("v1.0.0"));
    let metrics = agent.try_get("/metrics").unwrap();
    assert!(
        !metrics.contains("stagger_agent_polls_total{result=\"failure\"} 0"),
        "{metrics}"
    );

    registry.restart();
    registry.push_image(REPOSITORY, "v1.1.0");
    agent.wait_until("polls succeed again", Duration::from_secs(20), |agent| {
        agent.status()["last_poll"]["result"] == "success"
            && agent.pending("node")["tag"] == "v1.1.0"
    });
}

#[test]
fn redeploy_flag_applies_newest_at_start() {
    let registry = TestRegistry::start();
    registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let mut agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));
    registry.push_image(REPOSITORY, "v1.1.0");
    wait_for_pending(&agent, "v1.1.0");

    assert_eq!(agent.stop(), Some(0));
    agent.spawn(&["--redeploy"]);
    wait_for_tag(&agent, "v1.1.0", Duration::from_secs(15));
    assert_eq!(hook_runs(work.path()).pop().unwrap().reason, "redeploy");
}

#[test]
fn moved_tag_is_reported_once() {
    let registry = TestRegistry::start();
    let original = registry.push_image(REPOSITORY, "v1.0.0");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());
    let agent = AgentProcess::start(&config(&registry, NEVER, NEVER, &hook));
    wait_for_tag(&agent, "v1.0.0", Duration::from_secs(20));

    let moved = registry.push_image(REPOSITORY, "v1.0.0");
    let message = "the running release's tag was moved to another manifest; the service keeps its pinned digest";
    agent.wait_until(
        "the moved tag is reported",
        Duration::from_secs(10),
        |agent| !agent.log_events(message).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(3));

    let warnings = agent.log_events(message);
    assert_eq!(warnings.len(), 1, "reported once, not at every poll");
    assert_eq!(warnings[0]["running_digest"], original.digest.as_str());
    assert_eq!(warnings[0]["tag_digest"], moved.digest.as_str());
    assert_eq!(
        agent.service("node")["current"]["digest"],
        original.digest.as_str()
    );
    assert_eq!(
        hook_runs(work.path()).len(),
        1,
        "a moved tag triggers no upgrade"
    );
}
