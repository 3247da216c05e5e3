//! Monte Carlo model of one rollout: when each node restarts and how many are down at once.
//!
//! This file uses only `stagger-core`, `rand` and `rayon`, because the benchmark
//! in `benches/simulate.rs` compiles it on its own with `#[path]`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use stagger_core::timeslot::spread_rank_key;
use stagger_core::{random_offset, NodeId, Version};

/// Unix time, in seconds, at which every simulated release is published (2025-12-04T00:00:00Z).
///
/// The value only feeds the hash of the `random` strategy. Identities are fresh in every trial,
/// so a fixed publication time biases nothing.
pub const PUBLISHED_AT: u64 = 1_764_806_400;

/// Release version that the `spread` strategy hashes to rank the peers.
const SIMULATED_VERSION: Version = Version::new(1, 0, 0);

/// Number of trials handed to the thread pool between two progress reports.
const TRIALS_PER_BLOCK: u64 = 1024;

/// Timeslot strategy of the simulated nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStrategy {
    /// Each node hashes its identity and its own detection time (`random_offset`).
    Random,
    /// The nodes rank each other and space their offsets evenly (`spread_offset`).
    Spread,
}

impl SimStrategy {
    /// Returns the strategy's name as the command line and the timeslot module spell it.
    pub fn name(self) -> &'static str {
        match self {
            SimStrategy::Random => "random",
            SimStrategy::Spread => "spread",
        }
    }
}

/// One simulated rollout setting; every duration is in whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Number of nodes in the network.
    pub nodes: u32,
    /// Rollout window, in seconds.
    pub window_secs: u64,
    /// Mean time a node is down while it restarts, in seconds.
    pub downtime_secs: u64,
    /// Half-width of the uniform jitter around `downtime_secs`, in seconds.
    pub downtime_jitter_secs: u64,
    /// Poll interval, in seconds: a node detects the release uniformly within this time after
    /// its publication; 0 means every node detects it at once.
    pub poll_interval_secs: u64,
    /// Number of nodes that may be down at once before quorum is lost.
    pub tolerated_down: u32,
    /// Timeslot strategy of every node.
    pub strategy: SimStrategy,
    /// Seed from which every trial derives its randomness, together with the trial index.
    pub seed: u64,
}

/// Result of one trial of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialOutcome {
    /// Maximum number of nodes down at the same moment.
    pub max_down: u32,
    /// Seconds during which more than `tolerated_down` nodes were down.
    pub quorum_lost_secs: u64,
    /// Seconds from publication until the last node is back up on the new release.
    pub completion_secs: u64,
}

/// The time a node is down, as a half-open interval of seconds after publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Restart {
    start: u64,
    end: u64,
}

/// Runs `trials` trials of `scenario` in parallel and returns their outcomes in trial order.
///
/// Trial `i` draws its randomness only from `(scenario.seed, i)`, so the result is the same
/// whatever the size of the rayon thread pool. `progress` is called with the number of trials
/// finished since its previous call.
pub fn run_trials(
    scenario: &Scenario,
    trials: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<TrialOutcome> {
    let mut outcomes = Vec::with_capacity(usize::try_from(trials).unwrap_or(0));
    let mut first = 0;
    while first < trials {
        let last = trials.min(first + TRIALS_PER_BLOCK);
        let block: Vec<TrialOutcome> = (first..last)
            .into_par_iter()
            .map(|trial| simulate_trial(scenario, trial))
            .collect();
        outcomes.extend(block);
        progress(last - first);
        first = last;
    }
    outcomes
}

/// Simulates trial number `trial` of `scenario`.
pub fn simulate_trial(scenario: &Scenario, trial: u64) -> TrialOutcome {
    let restarts = draw_restarts(scenario, trial);
    sweep(&restarts, scenario.tolerated_down)
}

/// Returns the number of nodes down over time in trial `trial`, as steps.
///
/// Each point `(t, down)` means `down` nodes are down from `t` seconds after publication until
/// the next point. The first point is at time 0 and the last one returns to 0 nodes down.
pub fn trial_timeline(scenario: &Scenario, trial: u64) -> Vec<(u64, u32)> {
    let restarts = draw_restarts(scenario, trial);
    let events = sorted_events(&restarts);

    let mut steps = vec![(0, 0)];
    let mut down: i64 = 0;
    for (index, &(time, delta)) in events.iter().enumerate() {
        down += i64::from(delta);
        let next_time = events.get(index + 1).map(|&(next, _)| next);
        if next_time == Some(time) {
            continue;
        }
        match steps.last_mut() {
            Some(last) if last.0 == time => last.1 = down as u32,
            _ => steps.push((time, down as u32)),
        }
    }
    steps
}

/// Draws the identities, detection times, timeslots and downtimes of one trial.
fn draw_restarts(scenario: &Scenario, trial: u64) -> Vec<Restart> {
    let mut rng = trial_rng(scenario.seed, trial);
    let node_count = scenario.nodes as usize;

    let mut nodes = Vec::with_capacity(node_count);
    let mut detections = Vec::with_capacity(node_count);
    let mut downtimes = Vec::with_capacity(node_count);
    for _ in 0..node_count {
        nodes.push(random_node(&mut rng));
        detections.push(draw_below(&mut rng, scenario.poll_interval_secs));
        downtimes.push(draw_downtime(&mut rng, scenario));
    }

    let offsets: Vec<u64> = match scenario.strategy {
        SimStrategy::Random => nodes
            .iter()
            .zip(&detections)
            .map(|(node, detection)| {
                random_offset(node, PUBLISHED_AT + detection, scenario.window_secs)
            })
            .collect(),
        SimStrategy::Spread => spread_offsets(&nodes, scenario.window_secs),
    };

    detections
        .iter()
        .zip(&offsets)
        .zip(&downtimes)
        .map(|((detection, offset), downtime)| {
            let start = detection + offset;
            Restart {
                start,
                end: start + downtime,
            }
        })
        .collect()
}

/// Creates the random generator of one trial from the seed and the trial index alone.
///
/// NOTE: `StdRng` is ChaCha12 in rand 0.8, but rand may change its algorithm in a new version, so
/// a seed reproduces a result only with the rand version pinned in Cargo.lock.
fn trial_rng(seed: u64, trial: u64) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&trial.to_le_bytes());
    StdRng::from_seed(key)
}

/// Draws a fresh 20-byte address as a node identity, as validators are usually named.
fn random_node(rng: &mut StdRng) -> NodeId {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

    let address: [u8; 20] = rng.gen();
    let mut text = String::with_capacity(40);
    for byte in address {
        text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    NodeId::parse(&text).expect("a 40-digit hex address is a valid node identity")
}

/// Draws a whole number of seconds uniformly from `0..limit`; 0 when `limit` is 0.
fn draw_below(rng: &mut StdRng, limit: u64) -> u64 {
    if limit == 0 {
        0
    } else {
        rng.gen_range(0..limit)
    }
}

/// Draws a downtime uniformly from `downtime ± jitter`, both ends included.
fn draw_downtime(rng: &mut StdRng, scenario: &Scenario) -> u64 {
    let jitter = scenario.downtime_jitter_secs;
    if jitter == 0 {
        return scenario.downtime_secs;
    }
    let lowest = scenario.downtime_secs.saturating_sub(jitter);
    rng.gen_range(lowest..=scenario.downtime_secs + jitter)
}

/// Computes the `spread` offset of every node among `nodes` in one pass.
///
/// This gives the same offsets as calling `stagger_core::spread_offset(node, nodes, …)` for each
/// node (the tests check it), but hashes each node once instead of `nodes.len()` times. It does
/// not remove duplicate identities as `spread_offset` does, and needs not: two random 20-byte
/// addresses collide with negligible probability.
fn spread_offsets(nodes: &[NodeId], window_secs: u64) -> Vec<u64> {
    let mut ranked: Vec<([u8; 32], &[u8], usize)> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            (
                spread_rank_key(node, SIMULATED_VERSION),
                node.bytes(),
                index,
            )
        })
        .collect();
    ranked.sort_unstable();

    let count = nodes.len() as u128;
    let mut offsets = vec![0; nodes.len()];
    for (rank, &(_, _, index)) in ranked.iter().enumerate() {
        offsets[index] = (rank as u128 * u128::from(window_secs) / count) as u64;
    }
    offsets
}

/// Returns the start (+1) and end (-1) events of the restarts, in time order.
///
/// At equal times an end sorts before a start, because the intervals are half-open: a node that
/// comes back at `t` and one that goes down at `t` are never down together.
fn sorted_events(restarts: &[Restart]) -> Vec<(u64, i8)> {
    let mut events = Vec::with_capacity(restarts.len() * 2);
    for restart in restarts {
        events.push((restart.start, 1));
        events.push((restart.end, -1));
    }
    events.sort_unstable();
    events
}

/// Sweeps the timeline for the maximum number down at once and the time with quorum lost.
fn sweep(restarts: &[Restart], tolerated_down: u32) -> TrialOutcome {
    let events = sorted_events(restarts);

    let mut down: i64 = 0;
    let mut max_down: i64 = 0;
    let mut quorum_lost_secs = 0;
    for (index, &(time, delta)) in events.iter().enumerate() {
        down += i64::from(delta);
        max_down = max_down.max(down);
        if down > i64::from(tolerated_down) {
            if let Some(&(next_time, _)) = events.get(index + 1) {
                quorum_lost_secs += next_time - time;
            }
        }
    }

    TrialOutcome {
        max_down: max_down as u32,
        quorum_lost_secs,
        completion_secs: restarts
            .iter()
            .map(|restart| restart.end)
            .max()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(nodes: u32, window_secs: u64, downtime_secs: u64) -> Scenario {
        Scenario {
            nodes,
            window_secs,
            downtime_secs,
            downtime_jitter_secs: 0,
            poll_interval_secs: 0,
            tolerated_down: 1,
            strategy: SimStrategy::Random,
            seed: 7,
        }
    }

    fn restart(start: u64, end: u64) -> Restart {
        Restart { start, end }
    }

    #[test]
    fn sweep_counts_overlap_and_lost_time() {
        let restarts = [restart(0, 10), restart(5, 15), restart(8, 12)];
        let outcome = sweep(&restarts, 1);
        assert_eq!(outcome.max_down, 3);
        // More than one node is down from 5 to 12.
        assert_eq!(outcome.quorum_lost_secs, 7);
        assert_eq!(outcome.completion_secs, 15);
    }

    #[test]
    fn sweep_touching_restarts_do_not_overlap() {
        let restarts = [restart(0, 10), restart(10, 20)];
        let outcome = sweep(&restarts, 0);
        assert_eq!(outcome.max_down, 1);
        assert_eq!(outcome.quorum_lost_secs, 20);
    }

    #[test]
    fn timeline_steps_match_restarts() {
        let mut setting = scenario(3, 3_000, 100);
        setting.strategy = SimStrategy::Spread;
        let steps = trial_timeline(&setting, 0);
        assert_eq!(
            steps,
            vec![
                (0, 1),
                (100, 0),
                (1_000, 1),
                (1_100, 0),
                (2_000, 1),
                (2_100, 0)
            ]
        );
    }

    #[test]
    fn spread_offsets_match_core_function() {
        let mut rng = trial_rng(3, 0);
        for count in [1, 2, 7, 50] {
            let nodes: Vec<NodeId> = (0..count).map(|_| random_node(&mut rng)).collect();
            let offsets = spread_offsets(&nodes, 86_400);
            for (node, offset) in nodes.iter().zip(&offsets) {
                let expected = stagger_core::spread_offset(node, &nodes, SIMULATED_VERSION, 86_400);
                assert_eq!(Some(*offset), expected, "node {node} among {count}");
            }
        }
    }

    #[test]
    fn random_restarts_use_core_offset() {
        let setting = scenario(5, 3_600, 60);
        let restarts = draw_restarts(&setting, 11);

        let mut rng = trial_rng(setting.seed, 11);
        for restart in &restarts {
            let node = random_node(&mut rng);
            let detection = draw_below(&mut rng, setting.poll_interval_secs);
            let downtime = draw_downtime(&mut rng, &setting);
            let offset = random_offset(&node, PUBLISHED_AT + detection, setting.window_secs);
            assert_eq!(restart.start, detection + offset);
            assert_eq!(restart.end - restart.start, downtime);
        }
    }

    #[test]
    fn detection_and_downtime_stay_in_range() {
        let mut setting = scenario(200, 3_600, 300);
        setting.poll_interval_secs = 120;
        setting.downtime_jitter_secs = 60;
        let restarts = draw_restarts(&setting, 0);
        for restart in &restarts {
            let downtime = restart.end - restart.start;
            assert!((240..=360).contains(&downtime), "downtime {downtime}");
            assert!(restart.start < 120 + 3_600, "start {}", restart.start);
        }
        let distinct: std::collections::BTreeSet<u64> =
            restarts.iter().map(|r| r.end - r.start).collect();
        assert!(distinct.len() > 10, "jitter drew only {distinct:?}");
    }

    #[test]
    fn spread_without_skew_keeps_one_down() {
        // D <= W/N, no poll skew: consecutive slots are at least floor(W/N) >= D apart.
        for (nodes, window_secs) in [(4, 3_600), (7, 3_600), (22, 86_400), (100, 86_399)] {
            let mut setting = scenario(nodes, window_secs, window_secs / u64::from(nodes));
            setting.strategy = SimStrategy::Spread;
            for trial in 0..20 {
                let outcome = simulate_trial(&setting, trial);
                assert_eq!(outcome.max_down, 1, "{nodes} nodes, trial {trial}");
                assert_eq!(outcome.quorum_lost_secs, 0, "{nodes} nodes, trial {trial}");
            }
        }
    }

    #[test]
    fn trials_identical_across_thread_counts() {
        let mut setting = scenario(30, 3_600, 300);
        setting.poll_interval_secs = 600;
        setting.downtime_jitter_secs = 120;
        let run_with_threads = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run_trials(&setting, 3_000, &|_| {}))
        };

        let single = run_with_threads(1);
        let four = run_with_threads(4);
        assert_eq!(single.len(), 3_000);
        assert_eq!(single, four);
    }

    #[test]
    fn different_seeds_differ() {
        let first = run_trials(&scenario(10, 3_600, 300), 200, &|_| {});
        let mut other = scenario(10, 3_600, 300);
        other.seed = 8;
        let second = run_trials(&other, 200, &|_| {});
        assert_ne!(first, second);
    }

    #[test]
    fn progress_reports_every_trial() {
        let reported = std::sync::atomic::AtomicU64::new(0);
        let count = |finished: u64| {
            reported.fetch_add(finished, std::sync::atomic::Ordering::Relaxed);
        };
        run_trials(&scenario(3, 3_600, 60), 2_500, &count);
        assert_eq!(reported.into_inner(), 2_500);
    }
}
