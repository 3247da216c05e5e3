//! Replay of a timeline of events through the engine, applying every upgrade at its timeslot.
//!
//! The agent carries upgrades out through an executor that may fail. A replay assumes every
//! upgrade succeeds at the moment it is due, because that is what the rollout rules alone decide.

use std::collections::BTreeMap;

use crate::engine::{Decision, Engine, EngineError, EngineState};
use crate::tag::{parse_release_tag, ReleaseTag};

/// One moment of a timeline. Within an event, `restart` runs first, then `observe`, then
/// `redeploy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// When the event happens, in seconds since the Unix epoch.
    pub at: u64,
    /// A restart of the node: `Some(true)` loses the state, `Some(false)` keeps it.
    pub restart: Option<bool>,
    /// The tags each service's source listed; strings that are not release tags are ignored.
    pub observe: BTreeMap<String, Vec<String>>,
    /// A manual redeploy of every service.
    pub redeploy: bool,
}

/// Replays `events` in time order until `until` and returns every decision in order.
///
/// Before each event, and finally at `until`, every upgrade due at or before that time is applied
/// at its own rollout_at. A restart that keeps the state round-trips it through JSON, as the agent
/// does through its state file.
pub fn replay(
    engine: &mut Engine,
    events: &[Event],
    until: u64,
) -> Result<Vec<Decision>, EngineError> {
    let mut ordered: Vec<&Event> = events.iter().collect();
    ordered.sort_by_key(|event| event.at);

    let mut decisions = Vec::new();
    for event in ordered {
        apply_due_until(engine, event.at, &mut decisions)?;

        if let Some(state_lost) = event.restart {
            if state_lost {
                engine.forget();
            } else {
                reload(engine);
            }
        }

        for (service, tags) in &event.observe {
            let release_tags: Vec<ReleaseTag> = tags
                .iter()
                .filter_map(|text| parse_release_tag(text).ok())
                .collect();
            decisions.extend(engine.observe(service, event.at, &release_tags)?);
        }

        if event.redeploy {
            engine.redeploy(event.at, None)?;
        }

        apply_due_until(engine, event.at, &mut decisions)?;
    }
    apply_due_until(engine, until, &mut decisions)?;

    Ok(decisions)
}

/// Applies, in timeslot order, every upgrade due at or before `until`, each at its own rollout_at.
fn apply_due_until(
    engine: &mut Engine,
    until: u64,
    decisions: &mut Vec<Decision>,
) -> Result<(), EngineError> {
    while let Some(next) = engine.due(until).into_iter().next() {
        decisions.push(engine.complete(&next.service, next.tag, None, next.rollout_at)?);
    }
    Ok(())
}

fn reload(engine: &mut Engine) {
    let saved = serde_json::to_string(engine.state()).expect("engine state serializes to JSON");
    let state: EngineState = serde_json::from_str(&saved).expect("saved engine state parses");
    *engine = Engine::with_state(
        engine.node().clone(),
        engine.windows(),
        engine.strategy().clone(),
        state,
    );
}
