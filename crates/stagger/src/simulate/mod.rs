//! `stagger simulate`: Monte Carlo estimate of the risk of losing quorum during a rollout.

pub mod model;
mod plot;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use stagger_core::timeslot::{DEFAULT_HOTFIX_WINDOW_SECS, DEFAULT_NORMAL_WINDOW_SECS};

use crate::cli::ExitError;
use crate::timefmt::parse_duration_secs;
use model::{run_trials, trial_timeline, Scenario, SimStrategy};
use plot::{plot_format, write_plot, PlotInput};
use report::{format_text, summarise};

/// Exit status for invalid arguments, the same that clap uses for its own usage errors.
const USAGE_EXIT_CODE: u8 = 2;

/// Minimum number of node timeslots (nodes × trials) for which a progress bar is shown.
const PROGRESS_MIN_TIMESLOTS: u64 = 10_000_000;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of nodes in the network.
    #[arg(long, value_name = "N")]
    nodes: u32,

    /// Rollout window, as a duration such as 24h or 90m, in place of --urgency.
    #[arg(long, value_name = "DURATION", conflicts_with = "urgency")]
    window: Option<String>,

    /// Urgency whose default rollout window to use: normal (24h) or hotfix (1h).
    #[arg(long, value_enum, default_value = "normal")]
    urgency: SimUrgency,

    /// Time a node is down while it restarts, as a duration such as 5m.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    downtime: String,

    /// Uniform jitter added to each node's downtime, as a duration: each downtime is drawn from
    /// DOWNTIME ± JITTER.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    downtime_jitter: String,

    /// Poll interval of the nodes, as a duration: each node detects the release at a uniformly
    /// random moment within this time after its publication. 0s means all detect it at once.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    poll_interval: String,

    /// Quorum fraction, as A/B (2/3) or a decimal (0.67): the network keeps quorum while more
    /// than this fraction of the nodes is up. 1 means every node must be up.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value = "2/3",
        conflicts_with = "max_down"
    )]
    quorum: String,

    /// Number of nodes that may be down at once without losing quorum, in place of --quorum.
    #[arg(long, value_name = "K")]
    max_down: Option<u32>,

    /// Timeslot strategy of every node: random (hash of the identity and the detection time) or
    /// spread (evenly spaced over all nodes).
    #[arg(long, value_enum, default_value = "random")]
    strategy: StrategyArg,

    /// Number of simulated rollouts.
    #[arg(long, value_name = "T", default_value_t = 100_000)]
    trials: u64,

    /// Seed of the random generator. A seed gives the same result on any number of threads.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,

    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    json: bool,

    /// Also draw the charts into FILE: SVG or PNG, chosen by the extension .svg or .png.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SimUrgency {
    Normal,
    Hotfix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Random,
    Spread,
}

/// Runs `stagger simulate`; invalid arguments end it with exit status 2.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let usage_error = |error: anyhow::Error| ExitError::new(USAGE_EXIT_CODE, format!("{error:#}"));
    let (scenario, quorum_text) = scenario_from_args(&args).map_err(usage_error)?;
    let plot_target = match &args.plot {
        Some(path) => Some((path.clone(), plot_format(path).map_err(usage_error)?)),
        None => None,
    };

    let progress_bar = progress_bar(&scenario, args.trials);
    let outcomes = run_trials(&scenario, args.trials, &|finished| {
        progress_bar.inc(finished)
    });
    progress_bar.finish_and_clear();
    let summary = summarise(&outcomes, scenario.tolerated_down);

    if let Some((path, format)) = &plot_target {
        let timeline = trial_timeline(&scenario, summary.typical_trial);
        let input = PlotInput {
            summary: &summary,
            timeline: &timeline,
            tolerated_down: scenario.tolerated_down,
            title: format!(
                "{} nodes, {} strategy, quorum: {}",
                scenario.nodes,
                scenario.strategy.name(),
                quorum_text
            ),
        };
        write_plot(path, *format, &input)?;
    }

    if args.json {
        let output = json!({
            "scenario": {
                "nodes": scenario.nodes,
                "window_seconds": scenario.window_secs,
                "downtime_seconds": scenario.downtime_secs,
                "downtime_jitter_seconds": scenario.downtime_jitter_secs,
                "poll_interval_seconds": scenario.poll_interval_secs,
                "tolerated_down": scenario.tolerated_down,
                "strategy": scenario.strategy.name(),
                "seed": scenario.seed,
            },
            "summary": summary,
            "plot": args.plot.as_ref().map(|path| path.display().to_string()),
        });
        println!("{output}");
    } else {
        println!("{}", format_text(&scenario, &quorum_text, &summary));
        if let Some(path) = &args.plot {
            println!("\nplot written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Validates the arguments into a scenario and a description of the quorum rule.
fn scenario_from_args(args: &SimulateArgs) -> anyhow::Result<(Scenario, String)> {
    let nodes = args.nodes;
    if nodes == 0 {
        bail!("invalid --nodes 0: simulate at least 1 node");
    }
    if args.trials == 0 {
        bail!("invalid --trials 0: give at least 1 trial, such as 100000");
    }

    let window_secs = match &args.window {
        Some(text) => {
            let secs = parse_duration_secs(text).context("invalid --window")?;
            if secs == 0 {
                bail!(
                    "invalid --window \"{text}\": a window of 0 is the immediate urgency, where \
                     every node restarts at once; give a window such as 24h or 1h"
                );
            }
            secs
        }
        None => match args.urgency {
            SimUrgency::Normal => DEFAULT_NORMAL_WINDOW_SECS,
            SimUrgency::Hotfix => DEFAULT_HOTFIX_WINDOW_SECS,
        },
    };

    let downtime_secs = parse_duration_secs(&args.downtime).context("invalid --downtime")?;
    if downtime_secs == 0 {
        bail!(
            "invalid --downtime \"{}\": a restart keeps a node down for some time; give a \
             duration such as 5m",
            args.downtime
        );
    }
    let jitter_secs =
        parse_duration_secs(&args.downtime_jitter).context("invalid --downtime-jitter")?;
    if jitter_secs >= downtime_secs {
        bail!(
            "invalid --downtime-jitter \"{}\": it must be shorter than --downtime \"{}\" so \
             every downtime stays above 0",
            args.downtime_jitter,
            args.downtime
        );
    }
    let poll_interval_secs =
        parse_duration_secs(&args.poll_interval).context("invalid --poll-interval")?;
    let run_secs = window_secs + poll_interval_secs;
    if downtime_secs + jitter_secs > run_secs {
        bail!(
            "invalid --downtime \"{}\": a node could be down longer than the whole rollout \
             (window plus poll interval, {run_secs} s), so every restart would overlap; \
             shorten --downtime or widen --window",
            args.downtime
        );
    }

    let (tolerated_down, quorum_text) = match args.max_down {
        Some(max_down) => {
            if max_down >= nodes {
                bail!(
                    "invalid --max-down {max_down} for {nodes} nodes: with every node allowed \
                     down, quorum is never lost; use a value below --nodes"
                );
            }
            (max_down, format!("at most {max_down} down"))
        }
        None => {
            let fraction = Fraction::parse(&args.quorum)?;
            let tolerated = fraction.tolerated_down(nodes);
            (tolerated, format!("more than {} up", args.quorum))
        }
    };

    let strategy = match args.strategy {
        StrategyArg::Random => SimStrategy::Random,
        StrategyArg::Spread => SimStrategy::Spread,
    };
    let scenario = Scenario {
        nodes,
        window_secs,
        downtime_secs,
        downtime_jitter_secs: jitter_secs,
        poll_interval_secs,
        tolerated_down,
        strategy,
        seed: args.seed,
    };
    Ok((scenario, quorum_text))
}

/// A quorum fraction kept as an exact ratio, so `2/3` of 300 nodes is exactly 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fraction {
    numerator: u64,
    denominator: u64,
}

impl Fraction {
    /// Parses `A/B` or a decimal such as `0.67`; the value must lie in (0, 1].
    fn parse(text: &str) -> anyhow::Result<Fraction> {
        let invalid = || {
            format!(
                "invalid --quorum \"{text}\": write a fraction in (0, 1] as A/B (2/3) or as a \
                 decimal (0.67)"
            )
        };
        let trimmed = text.trim();

        let fraction = if let Some((numerator, denominator)) = trimmed.split_once('/') {
            Fraction {
                numerator: numerator.trim().parse().ok().with_context(invalid)?,
                denominator: denominator.trim().parse().ok().with_context(invalid)?,
            }
        } else {
            let (whole, decimals) = trimmed.split_once('.').unwrap_or((trimmed, ""));
            let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
            if whole.is_empty() && decimals.is_empty()
                || !all_digits(whole)
                || !all_digits(decimals)
                || decimals.len() > 9
            {
                bail!(invalid());
            }
            let scale = 10u64.pow(decimals.len() as u32);
            let whole: u64 = if whole.is_empty() {
                0
            } else {
                whole.parse().ok().with_context(invalid)?
            };
            let decimals: u64 = if decimals.is_empty() {
                0
            } else {
                decimals.parse().ok().with_context(invalid)?
            };
            Fraction {
                numerator: whole
                    .checked_mul(scale)
                    .and_then(|value| value.checked_add(decimals))
                    .with_context(invalid)?,
                denominator: scale,
            }
        };

        if fraction.denominator == 0
            || fraction.numerator == 0
            || fraction.numerator > fraction.denominator
        {
            bail!(invalid());
        }
        Ok(fraction)
    }

    /// Returns how many of `nodes` may be down while more than this fraction stays up.
    ///
    /// The network needs `floor(fraction · nodes) + 1` nodes up, at most all of them, so the
    /// fraction 1 means every node must be up.
    fn tolerated_down(self, nodes: u32) -> u32 {
        let product = u128::from(self.numerator) * u128::from(nodes);
        let needed_up = (product / u128::from(self.denominator) + 1).min(u128::from(nodes));
        nodes - needed_up as u32
    }
}

/// Creates a progress bar on standard error for long runs; hidden when it is not a terminal.
fn progress_bar(scenario: &Scenario, trials: u64) -> ProgressBar {
    let timeslots = trials.saturating_mul(u64::from(scenario.nodes));
    if timeslots < PROGRESS_MIN_TIMESLOTS {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(trials), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} trials, {eta} left") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(arguments: &[&str]) -> SimulateArgs {
        let mut full = vec!["simulate"];
        full.extend_from_slice(arguments);
        TestCli::try_parse_from(full).unwrap().args
    }

    fn error_of(arguments: &[&str]) -> String {
        format!("{:#}", scenario_from_args(&parse(arguments)).unwrap_err())
    }

    #[test]
    fn quorum_two_thirds_tolerance() {
        let two_thirds = Fraction::parse("2/3").unwrap();
        let expected = [(1, 0), (3, 0), (4, 1), (7, 2), (22, 7), (50, 16), (100, 33)];
        for (nodes, tolerated) in expected {
            assert_eq!(two_thirds.tolerated_down(nodes), tolerated, "{nodes} nodes");
        }
    }

    #[test]
    fn quorum_decimal_and_one() {
        let decimal = Fraction::parse("0.67").unwrap();
        assert_eq!(decimal.tolerated_down(100), 32);
        assert_eq!(Fraction::parse("1").unwrap().tolerated_down(10), 0);
        assert_eq!(Fraction::parse(".5").unwrap().tolerated_down(10), 4);
    }

    #[test]
    fn quorum_rejects_out_of_range() {
        for text in ["0", "0/3", "4/3", "1.5", "2/0", "abc", "-0.5", ".", ""] {
            let message = format!("{:#}", Fraction::parse(text).unwrap_err());
            assert!(
                message.contains(&format!("invalid --quorum \"{text}\"")),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn defaults_give_normal_window() {
        let (scenario, _) = scenario_from_args(&parse(&["--nodes", "22"])).unwrap();
        assert_eq!(scenario.window_secs, 86_400);
        assert_eq!(scenario.tolerated_down, 7);
        assert_eq!(scenario.downtime_secs, 300);
        assert_eq!(scenario.strategy, SimStrategy::Random);
    }

    #[test]
    fn hotfix_urgency_and_max_down() {
        let arguments = ["--nodes", "10", "--urgency", "hotfix", "--max-down", "2"];
        let (scenario, _) = scenario_from_args(&parse(&arguments)).unwrap();
        assert_eq!(scenario.window_secs, 3_600);
        assert_eq!(scenario.tolerated_down, 2);
    }

    #[test]
    fn rejects_zero_nodes() {
        let message = error_of(&["--nodes", "0"]);
        assert!(message.contains("invalid --nodes 0"), "{message}");
    }

    #[test]
    fn rejects_zero_window() {
        let message = error_of(&["--nodes", "4", "--window", "0s"]);
        assert!(message.contains("invalid --window \"0s\""), "{message}");
        assert!(message.contains("such as 24h"), "{message}");
    }

    #[test]
    fn rejects_max_down_of_all_nodes() {
        let message = error_of(&["--nodes", "4", "--max-down", "4"]);
        assert!(
            message.contains("invalid --max-down 4 for 4 nodes"),
            "{message}"
        );
    }

    #[test]
    fn rejects_downtime_longer_than_rollout() {
        let arguments = ["--nodes", "4", "--window", "1h", "--downtime", "2h"];
        let message = error_of(&arguments);
        assert!(message.contains("invalid --downtime \"2h\""), "{message}");
        assert!(message.contains("widen --window"), "{message}");
    }

    #[test]
    fn rejects_jitter_not_below_downtime() {
        let arguments = [
            "--nodes",
            "4",
            "--downtime",
            "5m",
            "--downtime-jitter",
            "5m",
        ];
        let message = error_of(&arguments);
        assert!(
            message.contains("invalid --downtime-jitter \"5m\""),
            "{message}"
        );
    }

    #[test]
    fn rejects_zero_trials() {
        let message = error_of(&["--nodes", "4", "--trials", "0"]);
        assert!(message.contains("invalid --trials 0"), "{message}");
    }

    #[test]
    fn rejects_bad_duration() {
        let message = error_of(&["--nodes", "4", "--downtime", "5"]);
        assert!(message.contains("invalid --downtime"), "{message}");
        assert!(message.contains("such as 90s"), "{message}");
    }
}
