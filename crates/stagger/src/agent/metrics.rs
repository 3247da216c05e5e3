//! Prometheus metrics of the agent, rendered from the shared state at each scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::agent::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceResultLabels {
    service: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    service: String,
    group: String,
    tag: String,
    version: String,
}

/// Renders every metric in the Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let mut registry = Registry::with_prefix("stagger_agent");

    let polls = Family::<ResultLabels, Counter>::default();
    registry.register("polls", "Polls of the source, by result", polls.clone());
    polls
        .get_or_create(&ResultLabels {
            result: "success".into(),
        })
        .inc_by(shared.counters.polls_succeeded);
    polls
        .get_or_create(&ResultLabels {
            result: "failure".into(),
        })
        .inc_by(shared.counters.polls_failed);

    let last_success = Gauge::<i64>::default();
    registry.register(
        "last_successful_poll_timestamp_seconds",
        "Unix time of the last poll in which every service was listed",
        last_success.clone(),
    );
    last_success.set(shared.counters.last_successful_poll_at.unwrap_or(0) as i64);

    let upgrades = Family::<ServiceResultLabels, Counter>::default();
    registry.register(
        "upgrades",
        "Executor runs, by service and result",
        upgrades.clone(),
    );
    let current = Family::<ReleaseLabels, Gauge>::default();
    registry.register(
        "current_release_info",
        "The release each service runs (value 1)",
        current.clone(),
    );
    let pending = Family::<ServiceLabels, Gauge>::default();
    registry.register(
        "pending_rollout_timestamp_seconds",
        "Unix time at which the pending upgrade of each service is due",
        pending.clone(),
    );
    let held = Family::<ServiceLabels, Gauge>::default();
    registry.register("held", "1 when the service is held", held.clone());
    let ignored = Family::<ServiceLabels, Gauge>::default();
    registry.register(
        "ignored_tags",
        "Tags of the last listing that are not release tags",
        ignored.clone(),
    );

    for (name, state) in &shared.engine.state().services {
        let service = ServiceLabels {
            service: name.clone(),
        };
        for result in ["success", "failure"] {
            let count = shared
                .counters
                .upgrades
                .get(&(name.clone(), result))
                .copied()
                .unwrap_or(0);
            upgrades
                .get_or_create(&ServiceResultLabels {
                    service: name.clone(),
                    result: result.to_string(),
                })
                .inc_by(count);
        }
        if let Some(installed) = &state.current {
            current
                .get_or_create(&ReleaseLabels {
                    service: name.clone(),
                    group: state.group.to_string(),
                    tag: installed.tag.to_string(),
                    version: installed.tag.version.to_string(),
                })
                .set(1);
        }
        if let Some(upgrade) = &state.pending {
            pending
                .get_or_create(&service)
                .set(upgrade.rollout_at as i64);
        }
        held.get_or_create(&service).set(i64::from(state.held));
        if let Some(runtime) = shared.services.get(name) {
            ignored
                .get_or_create(&service)
                .set(runtime.ignored_tags.len() as i64);
        }
    }

    let save_failures = Counter::<u64>::default();
    registry.register(
        "state_save_failures",
        "State file writes that failed",
        save_failures.clone(),
    );
    save_failures.inc_by(shared.counters.state_save_failures);

    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::error!(error = %error, "failed to encode metrics");
    }
    text
}
