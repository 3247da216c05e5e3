//! `stagger replay`: run the rollout engine over a recorded or hand-written timeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use stagger_core::replay::{replay, Event};
use stagger_core::{Decision, Engine, Group, NodeId, Strategy, Windows};

use crate::timefmt::{format_timestamp, parse_duration_secs};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Scenario file (JSON): node, windows, strategy, services, events and until.
    #[arg(value_name = "SCENARIO.json")]
    scenario: PathBuf,

    /// Node identity to replay as, overriding the scenario's `node`.
    #[arg(long, value_name = "ID")]
    node: Option<String>,

    /// Print one JSON object per decision instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    node: Option<String>,
    #[serde(default)]
    windows: ScenarioWindows,
    #[serde(default)]
    strategy: Strategy,
    services: BTreeMap<String, ScenarioService>,
    events: Vec<ScenarioEvent>,
    until: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioWindows {
    normal: Option<String>,
    hotfix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioService {
    group: Group,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioEvent {
    at: u64,
    restart: Option<ScenarioRestart>,
    #[serde(default)]
    observe: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    redeploy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioRestart {
    #[serde(default)]
    state_lost: bool,
}

/// Runs `stagger replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.scenario)
        .with_context(|| format!("failed to read scenario {}", args.scenario.display()))?;
    let scenario: Scenario = serde_json::from_str(&text)
        .with_context(|| format!("invalid scenario {}", args.scenario.display()))?;

    let decisions = run_scenario(scenario, args.node.as_deref())
        .with_context(|| format!("invalid scenario {}", args.scenario.display()))?;

    if args.json {
        for decision in &decisions {
            println!("{}", decision_json(decision));
        }
    } else {
        print_table(&decisions);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_scenario(scenario: Scenario, node_override: Option<&str>) -> anyhow::Result<Vec<Decision>> {
    let node_text = match (node_override, &scenario.node) {
        (Some(node), _) => node.to_string(),
        (None, Some(node)) => node.clone(),
        (None, None) => bail!("no node identity: set \"node\" in the scenario or pass --node"),
    };
    let node = NodeId::parse(&node_text)?;

    let windows = Windows {
        normal_secs: scenario_window("windows.normal", scenario.windows.normal.as_deref(), "24h")?,
        hotfix_secs: scenario_window("windows.hotfix", scenario.windows.hotfix.as_deref(), "1h")?,
    };

    if let Strategy::Spread { peers } = &scenario.strategy {
        if peers.is_empty() {
            bail!("strategy.peers is empty: list the committee's node identities");
        }
        if !peers.iter().any(|peer| peer.bytes() == node.bytes()) {
            eprintln!("warning: node {node} is not in strategy.peers; using the random strategy");
        }
    }

    let mut events = Vec::with_capacity(scenario.events.len());
    for (index, event) in scenario.events.into_iter().enumerate() {
        for service in event.observe.keys() {
            if !scenario.services.contains_key(service) {
                bail!(
                    "event {index} (at {}) observes service \"{service}\", which \"services\" \
                     does not declare",
                    event.at
                );
            }
        }
        events.push(Event {
            at: event.at,
            restart: event.restart.map(|restart| restart.state_lost),
            observe: event.observe,
            redeploy: event.redeploy,
        });
    }

    let last_event_at = events.iter().map(|event| event.at).max().unwrap_or(0);
    let until = scenario.until.unwrap_or(last_event_at);
    if until < last_event_at {
        bail!("\"until\" ({until}) is before the last event ({last_event_at})");
    }

    let mut engine = Engine::new(node, windows, scenario.strategy);
    engine.set_services(
        scenario
            .services
            .iter()
            .map(|(name, service)| (name.as_str(), service.group)),
    );
    Ok(replay(&mut engine, &events, until)?)
}

fn scenario_window(key: &str, text: Option<&str>, default: &str) -> anyhow::Result<u64> {
    let text = text.unwrap_or(default);
    let secs = parse_duration_secs(text).with_context(|| format!("invalid {key}"))?;
    if secs == 0 {
        bail!("invalid {key} \"{text}\": a rollout window must be at least 1s");
    }
    Ok(secs)
}

fn decision_json(decision: &Decision) -> serde_json::Value {
    json!({
        "at": decision.at,
        "service": decision.service,
        "group": decision.group.as_str(),
        "action": decision.action.as_str(),
        "tag": decision.tag.to_string(),
        "version": decision.tag.version.to_string(),
        "rollout_at": decision.rollout_at,
        "reason": decision.reason.map(|reason| reason.as_str()),
    })
}

fn print_table(decisions: &[Decision]) {
    let header = [
        "AT",
        "SERVICE",
        "GROUP",
        "ACTION",
        "TAG",
        "ROLLOUT AT",
        "REASON",
    ];
    let rows: Vec<[String; 7]> = decisions
        .iter()
        .map(|decision| {
            [
                format_timestamp(decision.at),
                decision.service.clone(),
                decision.group.to_string(),
                decision.action.to_string(),
                decision.tag.to_string(),
                decision
                    .rollout_at
                    .map_or("-".to_string(), format_timestamp),
                decision
                    .reason
                    .map_or("-".to_string(), |reason| reason.to_string()),
            ]
        })
        .collect();

    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }

    let format_row = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    println!("{}", format_row(header.to_vec()));
    for row in &rows {
        println!("{}", format_row(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        println!("(no decisions)");
    }
}
