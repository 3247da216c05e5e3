//! Statistics over the trials of a simulation and their text and JSON forms.

use serde::Serialize;

use super::model::{Scenario, TrialOutcome};
use crate::timefmt::format_duration_secs;

/// Standard normal quantile for a two-sided 95% confidence interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// A confidence interval for a probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The chance of losing quorum during a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuorumLoss {
    /// Trials in which more than the tolerated number of nodes were down at some moment.
    pub trials_lost: u64,
    /// `trials_lost / trials`.
    pub probability: f64,
    /// 95% Wilson score interval of `probability`.
    pub ci95: Interval,
    /// Mean number of seconds per rollout with quorum lost.
    pub expected_seconds_lost: f64,
}

/// Number of trials whose maximum number of nodes down at once was `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaxDownCount {
    pub down: u32,
    pub trials: u64,
}

/// Distribution of the maximum number of nodes down at once, one value per trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaxDown {
    pub mean: f64,
    /// 99th percentile (nearest rank).
    pub p99: u32,
    pub max: u32,
    /// Trials per value, for every value that occurred, in increasing order.
    pub histogram: Vec<MaxDownCount>,
}

/// Seconds from publication until every node is back up on the new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Completion {
    pub p50_seconds: u64,
    pub p99_seconds: u64,
}

/// Everything `stagger simulate` reports about one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub trials: u64,
    pub quorum_loss: QuorumLoss,
    pub max_down: MaxDown,
    pub completion: Completion,
    /// Index of a trial whose maximum down equals the median, the one `--plot` draws.
    pub typical_trial: u64,
}

/// Computes the 95% Wilson score interval for `successes` out of `trials`.
pub fn wilson_interval(successes: u64, trials: u64) -> Interval {
    if trials == 0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }

    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half_width = Z_95 / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        low: (center - half_width).max(0.0),
        high: (center + half_width).min(1.0),
    }
}

/// Summarises the outcomes of a run; `outcomes` must be in trial order and not empty.
pub fn summarise(outcomes: &[TrialOutcome], tolerated_down: u32) -> Summary {
    let trials = outcomes.len() as u64;

    let trials_lost = outcomes
        .iter()
        .filter(|outcome| outcome.max_down > tolerated_down)
        .count() as u64;
    let seconds_lost: u128 = outcomes
        .iter()
        .map(|outcome| u128::from(outcome.quorum_lost_secs))
        .sum();
    let quorum_loss = QuorumLoss {
        trials_lost,
        probability: trials_lost as f64 / trials as f64,
        ci95: wilson_interval(trials_lost, trials),
        expected_seconds_lost: seconds_lost as f64 / trials as f64,
    };

    let mut max_downs: Vec<u32> = outcomes.iter().map(|outcome| outcome.max_down).collect();
    max_downs.sort_unstable();
    let median_down = nearest_rank(&max_downs, 0.5);
    let typical_trial = outcomes
        .iter()
        .position(|outcome| outcome.max_down == median_down)
        .unwrap_or(0) as u64;
    let max_down = MaxDown {
        mean: max_downs.iter().map(|&down| f64::from(down)).sum::<f64>() / trials as f64,
        p99: nearest_rank(&max_downs, 0.99),
        max: max_downs.last().copied().unwrap_or(0),
        histogram: histogram(&max_downs),
    };

    let mut completions: Vec<u64> = outcomes
        .iter()
        .map(|outcome| outcome.completion_secs)
        .collect();
    completions.sort_unstable();
    let completion = Completion {
        p50_seconds: nearest_rank(&completions, 0.5),
        p99_seconds: nearest_rank(&completions, 0.99),
    };

    Summary {
        trials,
        quorum_loss,
        max_down,
        completion,
        typical_trial,
    }
}

/// Returns the `quantile` of sorted `values` by the nearest-rank method; the default when empty.
fn nearest_rank<T: Copy + Default>(sorted: &[T], quantile: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn histogram(sorted: &[u32]) -> Vec<MaxDownCount> {
    let mut counts: Vec<MaxDownCount> = Vec::new();
    for &down in sorted {
        match counts.last_mut() {
            Some(last) if last.down == down => last.trials += 1,
            _ => counts.push(MaxDownCount { down, trials: 1 }),
        }
    }
    counts
}

/// Formats the readable report of `summary` for `scenario`; `quorum` describes the tolerance.
pub fn format_text(scenario: &Scenario, quorum: &str, summary: &Summary) -> String {
    let loss = &summary.quorum_loss;
    let mut lines = vec![
        format!(
            "scenario:   {} nodes, {} strategy, window {}, downtime {} ± {}, poll interval {}",
            scenario.nodes,
            scenario.strategy.name(),
            format_duration_secs(scenario.window_secs),
            format_duration_secs(scenario.downtime_secs),
            format_duration_secs(scenario.downtime_jitter_secs),
            format_duration_secs(scenario.poll_interval_secs),
        ),
        format!(
            "quorum:     {quorum}, so at most {} of {} nodes may be down at once",
            scenario.tolerated_down, scenario.nodes
        ),
        format!("trials:     {} (seed {})", summary.trials, scenario.seed),
        String::new(),
        format!(
            "quorum lost at some moment: {} of {} rollouts = {} (95% CI {} to {})",
            loss.trials_lost,
            summary.trials,
            percent(loss.probability),
            percent(loss.ci95.low),
            percent(loss.ci95.high),
        ),
        format!(
            "expected time with quorum lost: {:.1} s per rollout",
            loss.expected_seconds_lost
        ),
        format!(
            "time until every node has upgraded: p50 {}, p99 {}",
            format_duration_secs(summary.completion.p50_seconds),
            format_duration_secs(summary.completion.p99_seconds),
        ),
        String::new(),
        format!(
            "maximum nodes down at once: mean {:.3}, p99 {}, max {}",
            summary.max_down.mean, summary.max_down.p99, summary.max_down.max
        ),
        "  down    trials    share  quorum".to_string(),
    ];

    for count in &summary.max_down.histogram {
        let state = if count.down > scenario.tolerated_down {
            "lost"
        } else {
            "kept"
        };
        lines.push(format!(
            "  {:>4}  {:>8}  {:>7}  {state}",
            count.down,
            count.trials,
            percent(count.trials as f64 / summary.trials as f64),
        ));
    }
    lines.join("\n")
}

fn percent(fraction: f64) -> String {
    format!("{:.3}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::model::{run_trials, SimStrategy};

    fn outcome(max_down: u32, quorum_lost_secs: u64, completion_secs: u64) -> TrialOutcome {
        TrialOutcome {
            max_down,
            quorum_lost_secs,
            completion_secs,
        }
    }

    #[test]
    fn wilson_matches_reference_values() {
        // 0 of 10: the upper bound is z² / (n + z²).
        let none = wilson_interval(0, 10);
        assert_eq!(none.low, 0.0);
        assert!((none.high - 0.277_532).abs() < 1e-6, "{none:?}");

        // 5 of 10: symmetric around 0.5.
        let half = wilson_interval(5, 10);
        assert!((half.low - 0.236_593).abs() < 1e-6, "{half:?}");
        assert!((half.high - 0.763_407).abs() < 1e-6, "{half:?}");
    }

    #[test]
    fn summary_counts_losses_and_percentiles() {
        let mut outcomes: Vec<TrialOutcome> = (0..99).map(|_| outcome(1, 0, 100)).collect();
        outcomes.push(outcome(3, 50, 200));
        let summary = summarise(&outcomes, 1);

        assert_eq!(summary.trials, 100);
        assert_eq!(summary.quorum_loss.trials_lost, 1);
        assert_eq!(summary.quorum_loss.expected_seconds_lost, 0.5);
        assert_eq!(summary.max_down.p99, 1);
        assert_eq!(summary.max_down.max, 3);
        assert!((summary.max_down.mean - 1.02).abs() < 1e-12);
        assert_eq!(summary.completion.p50_seconds, 100);
        assert_eq!(summary.completion.p99_seconds, 100);
        assert_eq!(summary.typical_trial, 0);
        assert_eq!(
            summary.max_down.histogram,
            vec![
                MaxDownCount {
                    down: 1,
                    trials: 99
                },
                MaxDownCount { down: 3, trials: 1 }
            ]
        );
    }

    /// Returns P(no two of `nodes` restarts of `downtime` overlap) for uniform starts in a window.
    ///
    /// Starts uniform on [0, W] with all gaps at least D: `(1 - (N-1)·D/W)^N` for `(N-1)·D <= W`.
    fn no_overlap_probability(nodes: u32, downtime_secs: u64, window_secs: u64) -> f64 {
        let spacing = f64::from(nodes - 1) * downtime_secs as f64 / window_secs as f64;
        (1.0 - spacing).powi(nodes as i32)
    }

    #[test]
    fn random_strategy_matches_closed_form() {
        // W is large next to D, so the whole-second timeslots shift the probability by far less
        // than the interval width (at most ±0.01 with 10 000 trials). The cases keep (N-1)·D/W
        // large enough that the interval excludes the circular-window formula
        // `(1 - N·D/W)^(N-1)`, which differs by 0.016 for 5 nodes.
        let cases = [(3, 7_200, 86_400), (5, 7_200, 86_400), (10, 1_800, 86_400)];
        for (nodes, downtime_secs, window_secs) in cases {
            let scenario = Scenario {
                nodes,
                window_secs,
                downtime_secs,
                downtime_jitter_secs: 0,
                poll_interval_secs: 0,
                tolerated_down: 1,
                strategy: SimStrategy::Random,
                seed: 2_025,
            };
            let summary = summarise(&run_trials(&scenario, 10_000, &|_| {}), 1);

            // With one node tolerated, quorum is kept exactly when no two restarts overlap.
            let expected_kept = no_overlap_probability(nodes, downtime_secs, window_secs);
            let kept_low = 1.0 - summary.quorum_loss.ci95.high;
            let kept_high = 1.0 - summary.quorum_loss.ci95.low;
            assert!(
                (kept_low..=kept_high).contains(&expected_kept),
                "{nodes} nodes, D {downtime_secs} s, W {window_secs} s: expected {expected_kept}, \
                 95% CI {kept_low}..{kept_high}"
            );
        }
    }
}
