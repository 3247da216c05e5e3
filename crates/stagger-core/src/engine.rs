//! The rollout engine: per-service decisions from observations and the passage of time.
//!
//! The engine is pure. The caller feeds it successful observations (`observe`), queries which pending
//! upgrades are due (`due`), carries them out, and reports each success (`complete`). Every change
//! of plan comes back as a [`Decision`] that the caller logs or prints.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tag::{Group, ReleaseTag, Urgency, Version};
use crate::timeslot::{NodeId, Strategy, Windows};

/// A release a service runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub tag: ReleaseTag,
    /// The manifest digest `sha256:…` the release was pinned to, when the source provides one.
    pub digest: Option<String>,
    /// When the release was applied, in seconds since the Unix epoch.
    pub applied_at: u64,
}

/// Why a pending upgrade exists, which decides the reason reported when it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// The service had no current release: adopt the newest at once.
    Initial,
    /// A timeslot inside a rollout window.
    Timeslot,
    /// An immediate release: applied at detection.
    Immediate,
    /// A manual redeploy: applied at once, regardless of timeslots.
    Redeploy,
}

/// An upgrade a service will apply at `rollout_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub tag: ReleaseTag,
    /// The detection time the timeslot was computed from, in seconds since the Unix epoch.
    pub detected_at: u64,
    /// When the upgrade is due, in seconds since the Unix epoch.
    pub rollout_at: u64,
    /// The rollout window the timeslot was computed in, in seconds (0 for an at-once upgrade).
    pub window_secs: u64,
    pub cause: Cause,
}

/// Everything the engine remembers about one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub group: Group,
    pub current: Option<Installed>,
    pub pending: Option<Pending>,
    /// A held service keeps its pending upgrade but does not apply it.
    #[serde(default)]
    pub held: bool,
    /// The time of the last successful observation, in seconds since the Unix epoch.
    pub last_observed_at: Option<u64>,
    /// The newest eligible release of the last successful observation.
    pub newest_observed: Option<ReleaseTag>,
}

impl ServiceState {
    /// Returns the pending upgrade unless a hold blocks it. A hold blocks every pending upgrade
    /// but one started by a manual redeploy of the held service.
    pub fn applicable_pending(&self) -> Option<&Pending> {
        let pending = self.pending.as_ref()?;
        if self.held && pending.cause != Cause::Redeploy {
            return None;
        }
        Some(pending)
    }

    /// Creates the state of a service that has never been observed.
    pub fn new(group: Group) -> Self {
        ServiceState {
            group,
            current: None,
            pending: None,
            held: false,
            last_observed_at: None,
            newest_observed: None,
        }
    }
}

/// The kind of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The first release of a service with no current release, applied at once.
    Adopt,
    /// A new pending upgrade at a timeslot.
    Schedule,
    /// The pending upgrade changed its tag or timeslot.
    Reschedule,
    /// The pending upgrade was dropped.
    Cancel,
    /// A pending upgrade was carried out.
    Apply,
}

impl Action {
    /// Returns the lower-case name used in logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Adopt => "adopt",
            Action::Schedule => "schedule",
            Action::Reschedule => "reschedule",
            Action::Cancel => "cancel",
            Action::Apply => "apply",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Adopted because the service had no current release.
    Initial,
    /// Rescheduled because the new tag is more urgent than the pending one.
    Escalated,
    /// Rescheduled because a newer release replaced the pending one at the same urgency or lower.
    Superseded,
    /// Cancelled because the pending release's version is no longer listed.
    Withdrawn,
    /// Applied at its timeslot.
    Timeslot,
    /// Applied at once because the release is immediate.
    Immediate,
    /// Applied at once by a manual redeploy.
    Redeploy,
}

impl Reason {
    /// Returns the lower-case name used in logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Initial => "initial",
            Reason::Escalated => "escalated",
            Reason::Superseded => "superseded",
            Reason::Withdrawn => "withdrawn",
            Reason::Timeslot => "timeslot",
            Reason::Immediate => "immediate",
            Reason::Redeploy => "redeploy",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision of the engine about one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When the decision took effect, in seconds since the Unix epoch.
    pub at: u64,
    pub service: String,
    pub group: Group,
    pub action: Action,
    pub tag: ReleaseTag,
    /// The timeslot: for `schedule`/`reschedule` the new one, for `cancel` the dropped one, for
    /// `apply` the time it was applied; `None` for `adopt`.
    pub rollout_at: Option<u64>,
    pub reason: Option<Reason>,
    /// The tag of the pending upgrade this decision replaced, if any.
    pub previous_tag: Option<ReleaseTag>,
    /// True when the `spread` strategy fell back to `random` because the node is not a peer.
    #[serde(default)]
    pub strategy_fell_back: bool,
}

/// A pending upgrade that is due and not held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueUpgrade {
    pub service: String,
    pub group: Group,
    pub tag: ReleaseTag,
    pub rollout_at: u64,
    pub cause: Cause,
    /// The tag the service runs now, if any.
    pub previous_tag: Option<ReleaseTag>,
}

/// A request the engine cannot carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown service \"{0}\": declare it before observing or controlling it")]
    UnknownService(String),
}

/// The persistent part of the engine: every service's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EngineState {
    pub services: BTreeMap<String, ServiceState>,
}

/// The rollout engine of one node.
#[derive(Debug, Clone)]
pub struct Engine {
    node: NodeId,
    windows: Windows,
    strategy: Strategy,
    state: EngineState,
}

/// Reports whether a tag is eligible for a service of `group`: a canary takes every release tag,
/// main takes only tags without `-canary`.
pub fn is_eligible(tag: &ReleaseTag, group: Group) -> bool {
    group == Group::Canary || tag.group == Group::Main
}

/// Selects the newest release among the tags eligible for `group`.
///
/// The highest version wins; among tags of that version the most urgent, then the one of `group`.
pub fn select_newest<'a>(
    tags: impl IntoIterator<Item = &'a ReleaseTag>,
    group: Group,
) -> Option<ReleaseTag> {
    tags.into_iter()
        .filter(|tag| is_eligible(tag, group))
        .max_by(|left, right| {
            left.version
                .cmp(&right.version)
                .then(left.urgency.cmp(&right.urgency))
                .then((left.group == group).cmp(&(right.group == group)))
        })
        .copied()
}

impl Engine {
    /// Creates an engine with no services.
    pub fn new(node: NodeId, windows: Windows, strategy: Strategy) -> Self {
        Engine {
            node,
            windows,
            strategy,
            state: EngineState::default(),
        }
    }

    /// Creates an engine that resumes from a saved state.
    pub fn with_state(
        node: NodeId,
        windows: Windows,
        strategy: Strategy,
        state: EngineState,
    ) -> Self {
        Engine {
            node,
            windows,
            strategy,
            state,
        }
    }

    /// Returns the node identity.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Returns the rollout windows.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// Returns the timeslot strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// Returns the state to persist.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// Returns one service's state.
    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.state.services.get(name)
    }

    /// Declares the services to follow: keeps the state of those already known (updating their
    /// group), adds new ones, and drops the state of services no longer declared.
    pub fn set_services<'a>(&mut self, services: impl IntoIterator<Item = (&'a str, Group)>) {
        let mut next = BTreeMap::new();
        for (name, group) in services {
            let mut state = self
                .state
                .services
                .remove(name)
                .unwrap_or_else(|| ServiceState::new(group));
            state.group = group;
            next.insert(name.to_string(), state);
        }
        self.state.services = next;
    }

    /// Forgets everything but the declared services and their groups, as after a lost state file.
    pub fn forget(&mut self) {
        for state in self.state.services.values_mut() {
            *state = ServiceState::new(state.group);
        }
    }

    /// Feeds one successful observation of a service: the tags its source listed at `at`
    /// (seconds since the Unix epoch). Tags that are not release tags must already be filtered out.
    pub fn observe(
        &mut self,
        service: &str,
        at: u64,
        tags: &[ReleaseTag],
    ) -> Result<Vec<Decision>, EngineError> {
        let node = self.node.clone();
        let windows = self.windows;
        let strategy = self.strategy.clone();
        let state = self
            .state
            .services
            .get_mut(service)
            .ok_or_else(|| EngineError::UnknownService(service.to_string()))?;

        let group = state.group;
        let newest = select_newest(tags, group);
        state.last_observed_at = Some(at);
        state.newest_observed = newest;

        let mut decisions = Vec::new();
        let decision = |action, tag, rollout_at, reason, previous_tag| Decision {
            at,
            service: service.to_string(),
            group,
            action,
            tag,
            rollout_at,
            reason,
            previous_tag,
            strategy_fell_back: false,
        };

        // Rule: a pending upgrade whose version is no longer listed was withdrawn.
        if let Some(pending) = &state.pending {
            if !lists_version(tags, group, pending.tag.version) {
                decisions.push(decision(
                    Action::Cancel,
                    pending.tag,
                    Some(pending.rollout_at),
                    Some(Reason::Withdrawn),
                    None,
                ));
                state.pending = None;
            }
        }

        let Some(newest) = newest else {
            return Ok(decisions);
        };

        // Rule: no current release, so adopt the newest at once.
        let Some(current) = &state.current else {
            let already_adopting = matches!(
                &state.pending,
                Some(pending) if pending.tag == newest && pending.cause == Cause::Initial
            );
            if !already_adopting {
                state.pending = Some(Pending {
                    tag: newest,
                    detected_at: at,
                    rollout_at: at,
                    window_secs: 0,
                    cause: Cause::Initial,
                });
            }
            return Ok(decisions);
        };

        // Rule: never downgrade, never reinstall the same version.
        if newest.version <= current.tag.version {
            return Ok(decisions);
        }

        // Rule: an immediate release is applied at once, replacing any pending upgrade.
        if newest.urgency == Urgency::Immediate {
            let already_immediate = matches!(
                &state.pending,
                Some(pending) if pending.tag == newest && pending.cause == Cause::Immediate
            );
            if !already_immediate {
                state.pending = Some(Pending {
                    tag: newest,
                    detected_at: at,
                    rollout_at: at,
                    window_secs: 0,
                    cause: Cause::Immediate,
                });
            }
            return Ok(decisions);
        }

        let window_secs = windows.for_urgency(newest.urgency);
        let offset = strategy.offset(&node, newest.version, at, window_secs);
        let fresh_slot = Pending {
            tag: newest,
            detected_at: at,
            rollout_at: at.saturating_add(offset.secs),
            window_secs,
            cause: Cause::Timeslot,
        };

        match state.pending.clone() {
            // Rule: no pending upgrade, so schedule the newest at its timeslot.
            None => {
                let mut scheduled = decision(
                    Action::Schedule,
                    newest,
                    Some(fresh_slot.rollout_at),
                    None,
                    None,
                );
                scheduled.strategy_fell_back = offset.fell_back;
                decisions.push(scheduled);
                state.pending = Some(fresh_slot);
            }

            // Rule: same version as the pending upgrade; only a more urgent tag changes anything.
            Some(pending) if pending.tag.version == newest.version => {
                if newest.urgency > pending.tag.urgency {
                    let next = escalate(&pending, fresh_slot);
                    let mut escalated = decision(
                        Action::Reschedule,
                        newest,
                        Some(next.rollout_at),
                        Some(Reason::Escalated),
                        Some(pending.tag),
                    );
                    escalated.strategy_fell_back = offset.fell_back;
                    decisions.push(escalated);
                    state.pending = Some(next);
                }
            }

            // Rule: a newer release supersedes the pending one and keeps its timeslot, unless it
            // is more urgent, in which case the earlier of the two timeslots wins.
            Some(pending) => {
                let (next, reason) = if newest.urgency > pending.tag.urgency {
                    (escalate(&pending, fresh_slot), Reason::Escalated)
                } else {
                    let kept = Pending {
                        tag: newest,
                        cause: Cause::Timeslot,
                        ..pending.clone()
                    };
                    (kept, Reason::Superseded)
                };
                let mut rescheduled = decision(
                    Action::Reschedule,
                    newest,
                    Some(next.rollout_at),
                    Some(reason),
                    Some(pending.tag),
                );
                rescheduled.strategy_fell_back = offset.fell_back && reason == Reason::Escalated;
                decisions.push(rescheduled);
                state.pending = Some(next);
            }
        }

        Ok(decisions)
    }

    /// Lists the pending upgrades due at `now` (seconds since the Unix epoch), earliest first.
    /// A held service's upgrade is due only when it comes from a manual redeploy of that service.
    pub fn due(&self, now: u64) -> Vec<DueUpgrade> {
        let mut due: Vec<DueUpgrade> = self
            .state
            .services
            .iter()
            .filter_map(|(name, state)| {
                let pending = state.applicable_pending()?;
                if pending.rollout_at > now {
                    return None;
                }
                Some(DueUpgrade {
                    service: name.clone(),
                    group: state.group,
                    tag: pending.tag,
                    rollout_at: pending.rollout_at,
                    cause: pending.cause,
                    previous_tag: state.current.as_ref().map(|current| current.tag),
                })
            })
            .collect();
        due.sort_by(|left, right| {
            left.rollout_at
                .cmp(&right.rollout_at)
                .then_with(|| left.service.cmp(&right.service))
        });
        due
    }

    /// Returns the earliest rollout_at among pending upgrades that can become due, if any.
    pub fn next_rollout_at(&self) -> Option<u64> {
        self.state
            .services
            .values()
            .filter_map(|state| state.applicable_pending())
            .map(|pending| pending.rollout_at)
            .min()
    }

    /// Records that `service` now runs `tag`, applied at `at` (seconds since the Unix epoch).
    ///
    /// The pending upgrade is cleared when it was for this tag, or kept when a newer one replaced
    /// it while the upgrade was being carried out.
    pub fn complete(
        &mut self,
        service: &str,
        tag: ReleaseTag,
        digest: Option<String>,
        at: u64,
    ) -> Result<Decision, EngineError> {
        let state = self
            .state
            .services
            .get_mut(service)
            .ok_or_else(|| EngineError::UnknownService(service.to_string()))?;

        let previous_tag = state.current.as_ref().map(|current| current.tag);
        let cause = match state.pending.take() {
            Some(pending) if pending.tag == tag => pending.cause,
            Some(pending) => {
                if pending.tag.version > tag.version {
                    state.pending = Some(pending);
                }
                Cause::Timeslot
            }
            None => Cause::Timeslot,
        };
        state.current = Some(Installed {
            tag,
            digest,
            applied_at: at,
        });

        let (action, rollout_at, reason) = match cause {
            Cause::Initial => (Action::Adopt, None, Reason::Initial),
            Cause::Timeslot => (Action::Apply, Some(at), Reason::Timeslot),
            Cause::Immediate => (Action::Apply, Some(at), Reason::Immediate),
            Cause::Redeploy => (Action::Apply, Some(at), Reason::Redeploy),
        };
        Ok(Decision {
            at,
            service: service.to_string(),
            group: state.group,
            action,
            tag,
            rollout_at,
            reason: Some(reason),
            previous_tag,
            strategy_fell_back: false,
        })
    }

    /// Starts a manual redeploy at `at`: every service (or only `only`) whose newest observed
    /// release is newer than its current one, or that has none, applies it at once, and its
    /// pending upgrade is replaced. Returns the services and tags that will be applied.
    ///
    /// A redeploy of all services skips held ones; naming a held service redeploys it anyway.
    pub fn redeploy(
        &mut self,
        at: u64,
        only: Option<&str>,
    ) -> Result<Vec<(String, ReleaseTag)>, EngineError> {
        if let Some(name) = only {
            if !self.state.services.contains_key(name) {
                return Err(EngineError::UnknownService(name.to_string()));
            }
        }

        let mut started = Vec::new();
        for (name, state) in &mut self.state.services {
            let selected = match only {
                Some(only) => only == name,
                None => !state.held,
            };
            if !selected {
                continue;
            }
            let Some(newest) = state.newest_observed else {
                continue;
            };
            let is_newer = match &state.current {
                Some(current) => newest.version > current.tag.version,
                None => true,
            };
            if !is_newer {
                continue;
            }
            state.pending = Some(Pending {
                tag: newest,
                detected_at: at,
                rollout_at: at,
                window_secs: 0,
                cause: Cause::Redeploy,
            });
            started.push((name.clone(), newest));
        }
        Ok(started)
    }

    /// Holds or resumes a service. Returns the previous hold state.
    pub fn set_held(&mut self, service: &str, held: bool) -> Result<bool, EngineError> {
        let state = self
            .state
            .services
            .get_mut(service)
            .ok_or_else(|| EngineError::UnknownService(service.to_string()))?;
        Ok(std::mem::replace(&mut state.held, held))
    }
}

/// Escalates `pending` to a more urgent tag: the earlier of the pending timeslot and the fresh one
/// computed for the new tag wins, and the tag becomes the new one.
fn escalate(pending: &Pending, fresh_slot: Pending) -> Pending {
    if fresh_slot.rollout_at < pending.rollout_at {
        fresh_slot
    } else {
        Pending {
            tag: fresh_slot.tag,
            cause: Cause::Timeslot,
            ..pending.clone()
        }
    }
}

/// Returns whether `version` is listed among the eligible `tags` of `group`.
pub fn lists_version(tags: &[ReleaseTag], group: Group, version: Version) -> bool {
    tags.iter()
        .any(|tag| is_eligible(tag, group) && tag.version == version)
}
