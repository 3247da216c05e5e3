//! The agent: polls the source, runs the engine, and carries out upgrades at their timeslots.
//!
//! One task owns the loop. It polls every `interval` plus a random splay, applies each due
//! upgrade through the service's executor, saves the state after every change, and sleeps until
//! the next poll or the next rollout_at, whichever comes first. The HTTP API and the control
//! socket read and change the same [`Shared`] state and wake the loop through [`Notify`].

pub mod metrics;
pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use stagger_core::{
    parse_release_tag, Cause, Decision, DueUpgrade, Engine, EngineState, ReleaseTag,
};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::{AgentConfig, ServiceConfig};
use crate::executor::{self, Executor, Upgrade};
use crate::source::{Listing, Source};
use crate::store::{self, Loaded};
use crate::timefmt::format_timestamp;

/// Maximum time the loop sleeps before it reads the clock again, in milliseconds. A wall clock
/// that jumps (NTP, suspend) therefore delays nothing by more than this.
const MAX_SLEEP_MILLIS: u64 = 30_000;

/// The outcome of the last poll of one service.
#[derive(Debug, Clone)]
pub struct PollRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub error: Option<String>,
}

/// The outcome of the last executor run of one service.
#[derive(Debug, Clone)]
pub struct ExecutorRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub tag: ReleaseTag,
    pub error: Option<String>,
    pub duration_millis: u64,
}

/// Runtime data of one service beyond the engine's state. Not persisted.
#[derive(Debug, Clone)]
pub struct ServiceRuntime {
    pub config: ServiceConfig,
    /// The last successful listing.
    pub listing: Option<Listing>,
    pub last_poll: Option<PollRecord>,
    pub last_executor: Option<ExecutorRecord>,
    /// Consecutive executor failures of the pending upgrade.
    pub failures: u32,
    /// When the next attempt after a failure may start, in milliseconds since the Unix epoch.
    pub retry_at_millis: Option<u64>,
    /// Fingerprints of the tags of the last listing that are not release tags, each already
    /// reported once.
    pub ignored_tags: HashSet<u64>,
    /// The digest the running release's tag now points to, when the tag was moved after the
    /// upgrade. The agent warns once per new digest.
    pub moved_tag_digest: Option<String>,
}

impl ServiceRuntime {
    /// Returns the image repository to run: the one the last listing named (a descriptor gives
    /// the full reference), else the service's configured `image`.
    pub fn image(&self) -> &str {
        self.listing
            .as_ref()
            .filter(|listing| !listing.image.is_empty())
            .map_or(self.config.image.as_str(), |listing| listing.image.as_str())
    }
}

/// Counters exported as metrics.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub polls_succeeded: u64,
    pub polls_failed: u64,
    /// Executor runs by (service, "success" or "failure").
    pub upgrades: BTreeMap<(String, &'static str), u64>,
    /// Seconds since the Unix epoch of the last poll in which every service succeeded.
    pub last_successful_poll_at: Option<u64>,
    /// State file writes that failed.
    pub state_save_failures: u64,
}

/// The state shared by the loop, the HTTP API and the control socket.
pub struct Shared {
    pub engine: Engine,
    pub services: BTreeMap<String, ServiceRuntime>,
    pub counters: Counters,
    pub source_description: String,
    /// Seconds since the Unix epoch of the last poll, and its error if every service failed.
    pub last_poll: Option<PollRecord>,
    pub started_at: u64,
}

/// A handle to the shared state and the loop's wake-up signal.
#[derive(Clone)]
pub struct Handle {
    pub shared: Arc<Mutex<Shared>>,
    pub wake: Arc<Notify>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<AgentConfig>,
}

impl Handle {
    /// Locks the shared state. A panic elsewhere while it was held does not poison it for good:
    /// the data stays usable, and the agent keeps running.
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Saves the engine state to the state file; a failure is logged and counted, not fatal.
    pub fn save(&self, shared: &mut Shared) {
        let path = self.config.state_file();
        let now = self.clock.now_secs();
        if let Err(error) = store::save(
            &path,
            shared.engine.node().as_str(),
            shared.engine.state(),
            now,
        ) {
            shared.counters.state_save_failures += 1;
            error!(path = %path.display(), error = format!("{error:#}"), "failed to save state");
        }
    }

    /// Starts a manual redeploy of every service, or only `service`; returns what will be applied.
    pub fn redeploy(&self, service: Option<&str>) -> anyhow::Result<Vec<(String, ReleaseTag)>> {
        let now = self.clock.now_secs();
        let mut shared = self.lock();
        let started = shared.engine.redeploy(now, service)?;
        for (name, tag) in &started {
            info!(service = %name, tag = %tag, "manual redeploy: applying the newest release now");
            if let Some(runtime) = shared.services.get_mut(name) {
                runtime.failures = 0;
                runtime.retry_at_millis = None;
            }
        }
        if started.is_empty() {
            info!(
                service = service.unwrap_or("all"),
                "manual redeploy: every service already runs its newest observed release"
            );
        }
        self.save(&mut shared);
        drop(shared);
        self.wake.notify_one();
        Ok(started)
    }

    /// Holds or resumes a service; returns the previous hold state.
    pub fn set_held(&self, service: &str, held: bool) -> anyhow::Result<bool> {
        let mut shared = self.lock();
        let previous = shared.engine.set_held(service, held)?;
        if previous != held {
            if held {
                info!(
                    service,
                    "service held: its pending upgrade waits until it is resumed"
                );
            } else {
                info!(service, "service resumed");
            }
            self.save(&mut shared);
        }
        drop(shared);
        self.wake.notify_one();
        Ok(previous)
    }
}

/// The agent: source, executors and the loop.
pub struct Agent {
    handle: Handle,
    source: Source,
    executors: BTreeMap<String, Box<dyn Executor>>,
    redeploy_on_start: bool,
}

impl Agent {
    /// Creates the agent: loads the state file (moving an unreadable one aside) and declares the
    /// configured services to the engine.
    pub fn new(config: AgentConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Agent> {
        std::fs::create_dir_all(&config.state_dir).map_err(|error| {
            anyhow::anyhow!(
                "failed to create the state directory {}: {error}; set state to a writable directory",
                config.state_dir.display()
            )
        })?;

        let now = clock.now_secs();
        let state = load_state(&config, now)?;
        let mut engine = Engine::with_state(
            config.node.clone(),
            config.windows,
            config.strategy.clone(),
            state,
        );
        engine.set_services(
            config
                .services
                .values()
                .map(|service| (service.name.as_str(), service.group)),
        );

        let source = Source::new(&config.source)?;
        let executors = config
            .services
            .values()
            .map(|service| {
                (
                    service.name.clone(),
                    executor::from_config(&service.executor),
                )
            })
            .collect();
        let services = config
            .services
            .values()
            .map(|service| {
                let runtime = ServiceRuntime {
                    config: service.clone(),
                    listing: None,
                    last_poll: None,
                    last_executor: None,
                    failures: 0,
                    retry_at_millis: None,
                    ignored_tags: HashSet::new(),
                    moved_tag_digest: None,
                };
                (service.name.clone(), runtime)
            })
            .collect();

        let shared = Shared {
            engine,
            services,
            counters: Counters::default(),
            source_description: source.describe(),
            last_poll: None,
            started_at: now,
        };
        let handle = Handle {
            shared: Arc::new(Mutex::new(shared)),
            wake: Arc::new(Notify::new()),
            clock,
            config: Arc::new(config),
        };
        Ok(Agent {
            handle,
            source,
            executors,
            redeploy_on_start: false,
        })
    }

    /// Makes the agent redeploy every service after its first poll, as `--redeploy` requests.
    pub fn redeploy_on_start(mut self, redeploy: bool) -> Self {
        self.redeploy_on_start = redeploy;
        self
    }

    /// Returns a handle for the API and the control socket.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs the loop until `shutdown` resolves, then saves the state. An executor run in flight
    /// when `shutdown` resolves is allowed to finish (its own timeout bounds it).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let clock = self.handle.clock.clone();
        let config = self.handle.config.clone();
        let mut next_poll_millis = clock.now_millis();
        let mut redeploy_pending = self.redeploy_on_start;

        {
            let mut shared = self.handle.lock();
            log_resumed_pending(&shared);
            self.handle.save(&mut shared);
        }

        loop {
            if clock.now_millis() >= next_poll_millis {
                tokio::select! {
                    () = self.poll() => {}
                    () = &mut shutdown => break,
                }
                next_poll_millis = clock.now_millis() + next_poll_delay(&config).as_millis() as u64;
                if std::mem::take(&mut redeploy_pending) {
                    if let Err(error) = self.handle.redeploy(None) {
                        error!(error = format!("{error:#}"), "start-up redeploy failed");
                    }
                }
            }

            self.apply_due().await;

            let next_upgrade_millis = self.next_upgrade_millis();
            let wake_at = next_poll_millis.min(next_upgrade_millis.unwrap_or(u64::MAX));
            let sleep_millis = wake_at
                .saturating_sub(clock.now_millis())
                .min(MAX_SLEEP_MILLIS);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(sleep_millis)) => {}
                () = self.handle.wake.notified() => {}
                () = &mut shutdown => break,
            }
        }

        let mut shared = self.handle.lock();
        self.handle.save(&mut shared);
        info!("agent stopped; state saved");
    }

    /// Polls the source once and feeds every successful listing to the engine. All services
    /// share this poll's detection time.
    async fn poll(&self) {
        let detected_at = self.handle.clock.now_secs();
        let config = self.handle.config.clone();
        let results = self.source.poll(&config.services).await;
        self.record_poll(detected_at, results);

        if self.source.resolves_digests() {
            self.check_moved_tags().await;
        }
    }

    /// Feeds the listings of one poll to the engine and records the outcome.
    fn record_poll(&self, detected_at: u64, results: crate::source::PollResult) {
        let mut shared = self.handle.lock();
        let mut failures = Vec::new();
        for (name, result) in results {
            match result {
                Ok(listing) => {
                    let (tags, listing) = release_tags(&mut shared, &name, listing);
                    let decisions = match shared.engine.observe(&name, detected_at, &tags) {
                        Ok(decisions) => decisions,
                        Err(error) => {
                            error!(service = %name, error = %error, "engine rejected the observation");
                            continue;
                        }
                    };
                    for decision in &decisions {
                        log_decision(decision);
                        if let Some(runtime) = shared.services.get_mut(&name) {
                            // A new plan deserves a fresh attempt, not the old failure's backoff.
                            runtime.failures = 0;
                            runtime.retry_at_millis = None;
                        }
                    }
                    if let Some(runtime) = shared.services.get_mut(&name) {
                        runtime.listing = Some(listing);
                        runtime.last_poll = Some(PollRecord {
                            at: detected_at,
                            error: None,
                        });
                    }
                }
                Err(error) => {
                    warn!(service = %name, error = %error, "poll failed; the rollout plan is unchanged");
                    failures.push(error.0.clone());
                    if let Some(runtime) = shared.services.get_mut(&name) {
                        runtime.last_poll = Some(PollRecord {
                            at: detected_at,
                            error: Some(error.0),
                        });
                    }
                }
            }
        }

        if failures.is_empty() {
            shared.counters.polls_succeeded += 1;
            shared.counters.last_successful_poll_at = Some(detected_at);
            shared.last_poll = Some(PollRecord {
                at: detected_at,
                error: None,
            });
            debug!(detected_at, "poll succeeded");
        } else {
            shared.counters.polls_failed += 1;
            failures.dedup();
            shared.last_poll = Some(PollRecord {
                at: detected_at,
                error: Some(failures.join("; ")),
            });
        }
        self.handle.save(&mut shared);
    }

    /// Warns, once per new digest, when the tag of a running release now points to another
    /// manifest than the one the service was pinned to. The service keeps running its digest.
    async fn check_moved_tags(&self) {
        for (service, tag, pinned) in self.running_pinned_releases() {
            let resolved = self
                .source
                .resolve_digest(None, &service, &tag.to_string())
                .await;
            if let Ok(Some(now_points_to)) = resolved {
                self.note_tag_digest(&service.name, tag, &pinned, now_points_to);
            }
        }
    }

    /// Lists the services whose running release has a pinned digest and a tag still listed.
    fn running_pinned_releases(&self) -> Vec<(ServiceConfig, ReleaseTag, String)> {
        let shared = self.handle.lock();
        shared
            .engine
            .state()
            .services
            .iter()
            .filter_map(|(name, state)| {
                let current = state.current.as_ref()?;
                let digest = current.digest.clone()?;
                let runtime = shared.services.get(name)?;
                let listed = runtime
                    .listing
                    .as_ref()
                    .is_some_and(|listing| listing.tags.contains(&current.tag.to_string()));
                listed.then(|| (runtime.config.clone(), current.tag, digest))
            })
            .collect()
    }

    fn note_tag_digest(&self, service: &str, tag: ReleaseTag, pinned: &str, now_points_to: String) {
        let mut shared = self.handle.lock();
        let Some(runtime) = shared.services.get_mut(service) else {
            return;
        };
        if now_points_to == pinned {
            runtime.moved_tag_digest = None;
        } else if runtime.moved_tag_digest.as_deref() != Some(now_points_to.as_str()) {
            warn!(
                service,
                tag = %tag,
                running_digest = %pinned,
                tag_digest = %now_points_to,
                "the running release's tag was moved to another manifest; the service keeps its pinned digest"
            );
            runtime.moved_tag_digest = Some(now_points_to);
        }
    }

    /// Applies every due upgrade, one at a time, each through its service's executor.
    async fn apply_due(&self) {
        let mut attempted = BTreeSet::new();
        loop {
            let Some((due, runtime)) = self.next_due(&attempted) else {
                return;
            };
            attempted.insert(due.service.clone());
            self.apply_one(due, runtime).await;
        }
    }

    fn next_due(&self, attempted: &BTreeSet<String>) -> Option<(DueUpgrade, ServiceRuntime)> {
        let now_millis = self.handle.clock.now_millis();
        let shared = self.handle.lock();
        shared
            .engine
            .due(now_millis / 1_000)
            .into_iter()
            .filter(|due| !attempted.contains(&due.service))
            .find_map(|due| {
                let runtime = shared.services.get(&due.service)?;
                let waiting = runtime
                    .retry_at_millis
                    .is_some_and(|retry_at| retry_at > now_millis);
                (!waiting).then(|| (due, runtime.clone()))
            })
    }

    async fn apply_one(&self, due: DueUpgrade, runtime: ServiceRuntime) {
        let service = &runtime.config;
        let tag_text = due.tag.to_string();
        let started = self.handle.clock.now_millis();

        let digest = match self
            .source
            .resolve_digest(runtime.listing.as_ref(), service, &tag_text)
            .await
        {
            Ok(digest) => digest,
            Err(error) => {
                self.record_failure(
                    &due,
                    format!("failed to resolve the digest: {error}"),
                    started,
                );
                return;
            }
        };

        let image = runtime.image().to_string();
        let upgrade = Upgrade {
            service: due.service.clone(),
            group: due.group,
            tag: due.tag,
            image,
            digest: digest.clone(),
            previous_tag: due.previous_tag,
            reason: reason_of(due.cause),
        };
        let Some(executor) = self.executors.get(&due.service) else {
            return;
        };
        info!(
            service = %due.service,
            tag = %due.tag,
            image = %upgrade.pinned_reference(),
            reason = upgrade.reason,
            executor = executor.kind(),
            rollout_at = %format_timestamp(due.rollout_at),
            "applying upgrade"
        );

        match executor.apply(&upgrade).await {
            Ok(()) => self.record_success(&due, digest, started),
            Err(error) => self.record_failure(&due, error.0, started),
        }
    }

    fn record_success(&self, due: &DueUpgrade, digest: Option<String>, started: u64) {
        let now_millis = self.handle.clock.now_millis();
        let mut shared = self.handle.lock();
        match shared
            .engine
            .complete(&due.service, due.tag, digest, now_millis / 1_000)
        {
            Ok(decision) => log_decision(&decision),
            Err(error) => {
                error!(service = %due.service, error = %error, "engine rejected the completed upgrade")
            }
        }
        *shared
            .counters
            .upgrades
            .entry((due.service.clone(), "success"))
            .or_default() += 1;
        if let Some(runtime) = shared.services.get_mut(&due.service) {
            runtime.failures = 0;
            runtime.retry_at_millis = None;
            runtime.last_executor = Some(ExecutorRecord {
                at: now_millis / 1_000,
                tag: due.tag,
                error: None,
                duration_millis: now_millis.saturating_sub(started),
            });
        }
        self.handle.save(&mut shared);
    }

    fn record_failure(&self, due: &DueUpgrade, message: String, started: u64) {
        let now_millis = self.handle.clock.now_millis();
        let config = self.handle.config.clone();
        let mut shared = self.handle.lock();
        *shared
            .counters
            .upgrades
            .entry((due.service.clone(), "failure"))
            .or_default() += 1;
        let Some(runtime) = shared.services.get_mut(&due.service) else {
            return;
        };
        runtime.failures += 1;
        let delay = retry_delay(config.retry_initial, config.retry_max, runtime.failures);
        runtime.retry_at_millis = Some(now_millis + delay.as_millis() as u64);
        runtime.last_executor = Some(ExecutorRecord {
            at: now_millis / 1_000,
            tag: due.tag,
            error: Some(message.clone()),
            duration_millis: now_millis.saturating_sub(started),
        });
        error!(
            service = %due.service,
            tag = %due.tag,
            attempt = runtime.failures,
            retry_in_secs = delay.as_secs(),
            error = %message,
            "upgrade failed; it stays pending and will be retried"
        );
    }

    fn next_upgrade_millis(&self) -> Option<u64> {
        let shared = self.handle.lock();
        shared
            .engine
            .state()
            .services
            .iter()
            .filter_map(|(name, state)| {
                let pending = state.applicable_pending()?;
                let slot = pending.rollout_at.saturating_mul(1_000);
                let retry = shared
                    .services
                    .get(name)
                    .and_then(|runtime| runtime.retry_at_millis)
                    .unwrap_or(0);
                Some(slot.max(retry))
            })
            .min()
    }
}

/// Loads the state file, treating a missing or unreadable one as a lost state.
fn load_state(config: &AgentConfig, now: u64) -> anyhow::Result<EngineState> {
    let path = config.state_file();
    match store::load(&path, now)? {
        Loaded::Resumed {
            state,
            saved_at,
            node,
        } => {
            if node != config.node.as_str() {
                warn!(
                    saved_node = %node,
                    node = %config.node,
                    "the state file was written for another node identity; its timeslots are kept"
                );
            }
            info!(path = %path.display(), saved_at = %format_timestamp(saved_at), "resumed state");
            Ok(state)
        }
        Loaded::Missing => {
            info!(path = %path.display(), "no state file: every service adopts its newest release at once");
            Ok(EngineState::default())
        }
        Loaded::Corrupt { moved_to, reason } => {
            error!(
                path = %path.display(),
                moved_to = %moved_to.display(),
                reason = %reason,
                "unreadable state file moved aside; the state counts as lost and every service adopts its newest release at once"
            );
            Ok(EngineState::default())
        }
    }
}

fn log_resumed_pending(shared: &Shared) {
    for (name, state) in &shared.engine.state().services {
        if let Some(pending) = &state.pending {
            info!(
                service = %name,
                tag = %pending.tag,
                rollout_at = %format_timestamp(pending.rollout_at),
                held = state.held,
                "resuming pending upgrade at its recorded timeslot"
            );
        }
    }
}

/// Sifts the release tags out of a listing and reports each other tag once, when it first
/// appears. Returns the release tags and a copy of the listing with only those tags, which is
/// what the agent keeps until the next poll.
fn release_tags(
    shared: &mut Shared,
    service: &str,
    listing: Listing,
) -> (Vec<ReleaseTag>, Listing) {
    let mut tags = Vec::new();
    let mut kept = Vec::new();
    let Some(runtime) = shared.services.get_mut(service) else {
        return (tags, listing);
    };

    let previous = std::mem::take(&mut runtime.ignored_tags);
    let mut ignored = HashSet::with_capacity(previous.len());
    let mut newly_ignored = 0usize;
    for text in listing.tags {
        if let Some(tag) = ReleaseTag::recognize(&text) {
            tags.push(tag);
            kept.push(text);
            continue;
        }
        let fingerprint = tag_fingerprint(&text);
        if ignored.insert(fingerprint) && !previous.contains(&fingerprint) {
            newly_ignored += 1;
            if tracing::enabled!(tracing::Level::DEBUG) {
                let reason = parse_release_tag(&text)
                    .err()
                    .map(|error| error.reason().to_string());
                debug!(service, tag = %text, reason = reason.as_deref().unwrap_or("-"), "ignoring a tag that is not a release tag");
            }
        }
    }
    runtime.ignored_tags = ignored;

    if newly_ignored > 0 {
        info!(
            service,
            count = newly_ignored,
            "ignoring listed tags that are not release tags"
        );
    }
    let slim = Listing {
        image: listing.image,
        tags: kept,
        digests: listing.digests,
    };
    (tags, slim)
}

/// Returns a 64-bit fingerprint of a tag, so the agent remembers which tags it has reported
/// without keeping a copy of each.
///
/// NOTE: two tags with the same fingerprint share one report. With SipHash and 100 000 tags the
/// chance of any collision is about 3 in 10^10.
fn tag_fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn log_decision(decision: &Decision) {
    let rollout_at = decision.rollout_at.map(format_timestamp);
    let reason = decision.reason.map(|reason| reason.as_str());
    let previous = decision.previous_tag.map(|tag| tag.to_string());
    info!(
        service = %decision.service,
        action = decision.action.as_str(),
        tag = %decision.tag,
        at = decision.at,
        rollout_at = rollout_at.as_deref().unwrap_or("-"),
        rollout_at_unix = decision.rollout_at,
        reason = reason.unwrap_or("-"),
        previous_tag = previous.as_deref().unwrap_or("-"),
        "decision"
    );
    if decision.strategy_fell_back {
        warn!(
            service = %decision.service,
            "this node is not in its own peer list; the spread strategy fell back to a random timeslot"
        );
    }
}

fn reason_of(cause: Cause) -> &'static str {
    match cause {
        Cause::Initial => "initial",
        Cause::Timeslot => "timeslot",
        Cause::Immediate => "immediate",
        Cause::Redeploy => "redeploy",
    }
}

/// Returns the delay before the next poll: the interval plus a random splay.
fn next_poll_delay(config: &AgentConfig) -> Duration {
    let splay_millis = config.splay.as_millis() as u64;
    let extra = if splay_millis == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=splay_millis)
    };
    config.interval + Duration::from_millis(extra)
}

/// Returns the backoff after `failures` consecutive failures: `initial * 2^(failures-1)`,
/// capped at `max`.
fn retry_delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    initial.saturating_mul(1 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_to_cap() {
        let initial = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        assert_eq!(retry_delay(initial, max, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(initial, max, 2), Duration::from_secs(20));
        assert_eq!(retry_delay(initial, max, 4), Duration::from_secs(80));
        assert_eq!(retry_delay(initial, max, 30), Duration::from_secs(600));
    }
}
