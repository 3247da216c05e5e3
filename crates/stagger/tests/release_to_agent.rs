//! A release published with `stagger release` reaches a running agent with its urgency.

mod support;

use std::time::Duration;

use support::agent::{hook_runs, recording_hook, stagger_command, AgentProcess};
use support::registry::TestRegistry;

#[test]
fn agent_picks_up_published_hotfix() {
    let registry = TestRegistry::start();
    registry.push_image("orbsnetwork/node", "v1.0.0");
    let staged = registry.push_image("orbsnetworkstaging/node", "experimental");
    let work = tempfile::tempdir().unwrap();
    let hook = recording_hook(work.path());

    let config = format!(
        r#"
node = "node-eu-1"
interval = "1s"
splay = "0s"
[windows]
normal = "100000h"
hotfix = "3s"
[source]
kind = "registry"
registry = "{host}"
insecure = true
[services.node]
image = "orbsnetwork/node"
executor = {{ kind = "hook", command = ["{hook}"] }}
"#,
        host = registry.host(),
        hook = hook.display()
    );
    let agent = AgentProcess::start(&config);
    agent.wait_until("node adopts v1.0.0", Duration::from_secs(20), |agent| {
        agent.current_tag("node").as_deref() == Some("v1.0.0")
    });

    let output = stagger_command()
        .args(["release", "--registry", &registry.host(), "--insecure"])
        .args(["--target-tag", "v1.1.0", "--hotfix", "--yes"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().last().unwrap();
    assert!(
        last_line.contains("orbsnetwork/node:v1.1.0-hotfix"),
        "{last_line}"
    );
    assert!(last_line.contains(&staged.digest), "{last_line}");

    // The hotfix window is 3 s, so the timeslot may fall on the detection itself: read the
    // scheduling decision from the log rather than waiting to see it pending in /status.
    agent.wait_until(
        "the hotfix is scheduled",
        Duration::from_secs(15),
        |agent| {
            agent
                .log_events("decision")
                .iter()
                .any(|event| event["tag"] == "v1.1.0-hotfix" && event["action"] == "schedule")
        },
    );
    let scheduled = agent
        .log_events("decision")
        .into_iter()
        .find(|event| event["tag"] == "v1.1.0-hotfix")
        .unwrap();
    let delay = scheduled["rollout_at_unix"].as_u64().unwrap() - scheduled["at"].as_u64().unwrap();
    assert!(
        delay < 3,
        "a hotfix in a 3 s window was scheduled {delay} s after detection"
    );

    agent.wait_until("the hotfix is applied", Duration::from_secs(15), |agent| {
        agent.current_tag("node").as_deref() == Some("v1.1.0-hotfix")
    });
    let run = hook_runs(work.path()).pop().unwrap();
    assert_eq!(
        run.image,
        format!("{}/orbsnetwork/node@{}", registry.host(), staged.digest)
    );
}
