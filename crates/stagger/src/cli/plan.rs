//! `stagger plan`: when a node upgrades to a release.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use stagger_core::{ImageRef, NodeId, Strategy, Urgency, Windows};

use crate::peers::read_peer_file;
use crate::timefmt::{
    format_duration_secs, format_timestamp, parse_duration_secs, parse_timestamp, unix_now,
};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Node identity: a 20-byte hex address (with or without 0x) or any other name.
    #[arg(long, value_name = "ID")]
    node: String,

    /// Release tag or image reference, such as `v1.4.0-hotfix` or `org/node:v1.4.0`.
    #[arg(long, value_name = "TAG")]
    tag: String,

    /// When the node detected the release: RFC 3339 or Unix seconds. Default: now.
    #[arg(long, value_name = "TIME")]
    detected_at: Option<String>,

    /// Rollout window of normal releases, as a duration such as 24h or 90m.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    normal_window: String,

    /// Rollout window of hotfix releases, as a duration such as 1h or 15m.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    hotfix_window: String,

    /// Use the spread strategy with the peers listed in FILE (one node identity per line,
    /// `#` starts a comment). Without it, the random strategy is used.
    #[arg(long, value_name = "FILE")]
    peers: Option<PathBuf>,

    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
}

/// Runs `stagger plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let node = NodeId::parse(&args.node).context("invalid --node")?;
    let reference = ImageRef::parse(&args.tag).context("invalid --tag")?;
    let tag = reference.tag;
    let windows = Windows {
        normal_secs: window_arg("--normal-window", &args.normal_window)?,
        hotfix_secs: window_arg("--hotfix-window", &args.hotfix_window)?,
    };
    let detected_at = match &args.detected_at {
        Some(text) => parse_timestamp(text).context("invalid --detected-at")?,
        None => unix_now(),
    };
    let strategy = match &args.peers {
        Some(path) => Strategy::Spread {
            peers: read_peer_file(path)?,
        },
        None => Strategy::Random,
    };

    let window_secs = windows.for_urgency(tag.urgency);
    let offset = strategy.offset(&node, tag.version, detected_at, window_secs);
    let rollout_at = detected_at + offset.secs;
    if offset.fell_back {
        eprintln!(
            "warning: node {node} is not in the peer list {}; using the random strategy",
            args.peers
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    let strategy_name = if offset.fell_back {
        "random"
    } else {
        strategy.name()
    };

    if args.json {
        let line = json!({
            "node": node.as_str(),
            "tag": tag.to_string(),
            "urgency": tag.urgency.as_str(),
            "group": tag.group.as_str(),
            "detected_at": detected_at,
            "window_seconds": window_secs,
            "offset_seconds": offset.secs,
            "rollout_at": rollout_at,
            "strategy": strategy_name,
        });
        println!("{line}");
        return Ok(ExitCode::SUCCESS);
    }

    let window_text = if tag.urgency == Urgency::Immediate {
        "none (immediate)".to_string()
    } else {
        format_duration_secs(window_secs)
    };
    println!("node:        {node}");
    println!("tag:         {tag}");
    println!("group:       {}", tag.group);
    println!("urgency:     {}", tag.urgency);
    println!("strategy:    {strategy_name}");
    println!(
        "detected at: {} ({detected_at})",
        format_timestamp(detected_at)
    );
    println!("window:      {window_text}");
    println!(
        "rollout at:  {} ({rollout_at}), {} after detection",
        format_timestamp(rollout_at),
        format_duration_secs(offset.secs)
    );
    Ok(ExitCode::SUCCESS)
}

fn window_arg(flag: &str, text: &str) -> anyhow::Result<u64> {
    let secs = parse_duration_secs(text).with_context(|| format!("invalid {flag}"))?;
    if secs == 0 {
        anyhow::bail!("invalid {flag} \"{text}\": a rollout window must be at least 1s");
    }
    Ok(secs)
}
