//! The status document served at `GET /status` and by `stagger ctl status`.

use serde_json::{json, Map, Value};

use crate::agent::{ServiceRuntime, Shared};
use crate::config::ExecutorConfig;
use crate::timefmt::format_timestamp;

/// Builds the status document: the node, the last poll, and per service its current release,
/// pending upgrade, hold state, last poll and last executor result.
pub fn status_json(shared: &Shared) -> Value {
    let mut services = Map::new();
    for (name, state) in &shared.engine.state().services {
        let Some(runtime) = shared.services.get(name) else {
            continue;
        };
        services.insert(name.clone(), service_json(state, runtime));
    }

    json!({
        "node": shared.engine.node().as_str(),
        "strategy": shared.engine.strategy().name(),
        "windows": {
            "normal_seconds": shared.engine.windows().normal_secs,
            "hotfix_seconds": shared.engine.windows().hotfix_secs,
        },
        "source": shared.source_description,
        "started_at": shared.started_at,
        "last_poll": shared.last_poll.as_ref().map(|poll| json!({
            "at": poll.at,
            "result": if poll.error.is_none() { "success" } else { "failure" },
            "error": poll.error,
        })),
        "last_successful_poll_at": shared.counters.last_successful_poll_at,
        "services": services,
    })
}

fn service_json(state: &stagger_core::ServiceState, runtime: &ServiceRuntime) -> Value {
    let current = state.current.as_ref().map(|current| {
        json!({
            "tag": current.tag.to_string(),
            "version": current.tag.version.to_string(),
            "digest": current.digest,
            "applied_at": current.applied_at,
        })
    });
    let pending = state.pending.as_ref().map(|pending| {
        json!({
            "tag": pending.tag.to_string(),
            "version": pending.tag.version.to_string(),
            "urgency": pending.tag.urgency.as_str(),
            "cause": pending.cause,
            "detected_at": pending.detected_at,
            "rollout_at": pending.rollout_at,
            "rollout_at_utc": format_timestamp(pending.rollout_at),
            "window_seconds": pending.window_secs,
        })
    });
    let executor = match &runtime.config.executor {
        ExecutorConfig::Hook { .. } => "hook",
        ExecutorConfig::Orchestrator => "orchestrator",
    };

    json!({
        "group": state.group.as_str(),
        "image": runtime.image(),
        "executor": executor,
        "held": state.held,
        "current": current,
        "pending": pending,
        "newest_observed": state.newest_observed.map(|tag| tag.to_string()),
        "last_poll": runtime.last_poll.as_ref().map(|poll| json!({
            "at": poll.at,
            "result": if poll.error.is_none() { "success" } else { "failure" },
            "error": poll.error,
        })),
        "last_executor": runtime.last_executor.as_ref().map(|run| json!({
            "at": run.at,
            "tag": run.tag.to_string(),
            "result": if run.error.is_none() { "success" } else { "failure" },
            "error": run.error,
            "duration_ms": run.duration_millis,
        })),
        "failures": runtime.failures,
        "retry_at_ms": runtime.retry_at_millis,
        "ignored_tags": runtime.ignored_tags.len(),
    })
}

/// Builds the document an orchestrator polls for its desired services:
/// `{"services": {"<name>": {"DockerConfig": {"Image", "Tag", "Pull"}}}}`, listing the current
/// release of every service that uses the orchestrator executor.
pub fn management_json(shared: &Shared) -> Value {
    let mut services = Map::new();
    for (name, state) in &shared.engine.state().services {
        let Some(runtime) = shared.services.get(name) else {
            continue;
        };
        if !matches!(runtime.config.executor, ExecutorConfig::Orchestrator) {
            continue;
        }
        let Some(current) = &state.current else {
            continue;
        };
        services.insert(
            name.clone(),
            json!({
                "DockerConfig": {
                    "Image": runtime.image(),
                    "Tag": current.tag.to_string(),
                    "Pull": true,
                }
            }),
        );
    }
    json!({ "services": services })
}
