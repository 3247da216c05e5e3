//! Runs the agent in-process on a controlled clock: a 24-hour rollout in milliseconds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stagger::agent::{Agent, Handle};
use stagger::clock::TokioClock;
use stagger::config;
use stagger_core::{random_offset, NodeId};

const T0: u64 = 1_764_806_400;

fn write_descriptor(path: &Path, tag: &str) {
    let text = format!(r#"{{"ImageVersions": {{"node": {{"image": "orbsnetwork/node:{tag}"}}}}}}"#);
    std::fs::write(path, text).unwrap();
}

fn agent_config(directory: &Path) -> config::AgentConfig {
    let text = std::fs::read_to_string(write_config(directory)).unwrap();
    config::parse(&text, &directory.join("agent.toml")).unwrap()
}

/// Starts the agent on a clock reading `T0` now; send on the returned channel to stop it.
fn start_agent(
    config: config::AgentConfig,
) -> (
    Handle,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let clock = Arc::new(TokioClock::starting_at(T0 * 1_000));
    let agent = Agent::new(config, clock).unwrap();
    let handle = agent.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    (handle, stop, task)
}

fn pending_upgrade(handle: &Handle) -> stagger_core::Pending {
    let shared = handle.lock();
    let state = shared
        .engine
        .service("node")
        .expect("service node is declared");
    state.pending.clone().expect("node has a pending upgrade")
}

fn current_tag(handle: &Handle) -> Option<String> {
    let shared = handle.lock();
    let state = shared.engine.service("node")?;
    state
        .current
        .as_ref()
        .map(|current| current.tag.to_string())
}

#[tokio::test(start_paused = true)]
async fn normal_rollout_applies_at_timeslot() {
    let directory = tempfile::tempdir().unwrap();
    let descriptor = directory.path().join("versions.json");
    write_descriptor(&descriptor, "v1.0.0");

    let (handle, stop, task) = start_agent(agent_config(directory.path()));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(current_tag(&handle).as_deref(), Some("v1.0.0"));

    write_descriptor(&descriptor, "v1.1.0");
    tokio::time::sleep(Duration::from_secs(200)).await;
    let pending = pending_upgrade(&handle);
    let node = NodeId::parse("node-eu-1").unwrap();
    assert_eq!(
        pending.detected_at,
        T0 + 180,
        "the change is detected by the second poll"
    );
    assert_eq!(
        pending.rollout_at,
        pending.detected_at + random_offset(&node, pending.detected_at, 86_400)
    );

    // One second before the timeslot nothing has changed; one second after it has.
    let until_slot = pending.rollout_at * 1_000 - (T0 * 1_000 + 201_000);
    tokio::time::sleep(Duration::from_millis(until_slot) - Duration::from_secs(1)).await;
    assert_eq!(current_tag(&handle).as_deref(), Some("v1.0.0"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(current_tag(&handle).as_deref(), Some("v1.1.0"));

    let applied_at = handle
        .lock()
        .engine
        .service("node")
        .unwrap()
        .current
        .as_ref()
        .unwrap()
        .applied_at;
    assert_eq!(applied_at, pending.rollout_at);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn spread_strategy_uses_peer_rank() {
    let directory = tempfile::tempdir().unwrap();
    let descriptor = directory.path().join("versions.json");
    write_descriptor(&descriptor, "v1.0.0");

    let peers = ["node-eu-1", "node-eu-2", "node-us-1", "node-us-2"];
    let text = format!(
        "strategy = \"spread\"\npeers = {peers:?}\n{}",
        std::fs::read_to_string(write_config(directory.path())).unwrap()
    );
    let config = config::parse(&text, &directory.path().join("agent.toml")).unwrap();

    let (handle, stop, task) = start_agent(config);

    tokio::time::sleep(Duration::from_secs(1)).await;
    write_descriptor(&descriptor, "v1.1.0");
    tokio::time::sleep(Duration::from_secs(200)).await;

    let pending = pending_upgrade(&handle);
    let peer_ids: Vec<NodeId> = peers
        .iter()
        .map(|peer| NodeId::parse(peer).unwrap())
        .collect();
    let node = NodeId::parse("node-eu-1").unwrap();
    let offset =
        stagger_core::spread_offset(&node, &peer_ids, pending.tag.version, 86_400).unwrap();
    assert_eq!(pending.rollout_at, pending.detected_at + offset);
    assert_eq!(
        offset % 21_600,
        0,
        "four peers split a day into 6-hour slots"
    );

    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Writes the config of `agent_config` to a file and returns its path.
fn write_config(directory: &Path) -> std::path::PathBuf {
    let path = directory.join("base.toml");
    let text = format!(
        r#"
node = "node-eu-1"
state = "{state}"
interval = "3m"
splay = "0s"
[api]
socket = "{state}/control.sock"
[source]
kind = "descriptor"
path = "{descriptor}"
[services.node]
executor = {{ kind = "orchestrator" }}
"#,
        state = directory.join("state").display(),
        descriptor = directory.join("versions.json").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}
