//! `stagger ctl`: control a running agent through its Unix socket.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cli::agent::DEFAULT_CONFIG;
use crate::config;
use crate::control::{self, Request};
use crate::timefmt::format_timestamp;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Agent configuration file, read to find the control socket.
    #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,

    /// Control socket path; overrides the one in the configuration.
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,

    /// Print the agent's JSON response instead of a summary.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Show every service's current release, pending upgrade and timeslot, and hold state.
    Status,
    /// Apply the newest observed release now, regardless of timeslots (all services, or one).
    UpgradeNow {
        /// Service to redeploy; all services that are not held when omitted.
        service: Option<String>,
    },
    /// Keep a service's pending upgrade but do not apply it until `resume`. Holds persist.
    Hold { service: String },
    /// Let a held service apply its pending upgrade again.
    Resume { service: String },
}

/// Runs `stagger ctl`.
pub fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let socket = match &args.socket {
        Some(socket) => socket.clone(),
        None => {
            config::load(&args.config)
                .context("pass --socket PATH, or --config FILE of the running agent")?
                .socket
        }
    };
    let request = match &args.command {
        CtlCommand::Status => Request::Status,
        CtlCommand::UpgradeNow { service } => Request::UpgradeNow {
            service: service.clone(),
        },
        CtlCommand::Hold { service } => Request::Hold {
            service: service.clone(),
        },
        CtlCommand::Resume { service } => Request::Resume {
            service: service.clone(),
        },
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(control::send(&socket, &request))?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    match args.command {
        CtlCommand::Status => print_status(&result),
        CtlCommand::UpgradeNow { .. } => {
            let started = result["redeploying"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if started.is_empty() {
                println!("nothing to redeploy: every service runs its newest observed release");
            }
            for entry in started {
                println!(
                    "{}: applying {} now",
                    entry["service"].as_str().unwrap_or("?"),
                    entry["tag"].as_str().unwrap_or("?")
                );
            }
        }
        CtlCommand::Hold { service } => println!("{service}: held"),
        CtlCommand::Resume { service } => println!("{service}: resumed"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &Value) {
    println!("node:      {}", status["node"].as_str().unwrap_or("?"));
    println!("strategy:  {}", status["strategy"].as_str().unwrap_or("?"));
    println!("source:    {}", status["source"].as_str().unwrap_or("?"));
    match status["last_poll"].as_object() {
        Some(poll) => {
            let at = poll["at"]
                .as_u64()
                .map_or("?".to_string(), format_timestamp);
            match poll["error"].as_str() {
                Some(error) => println!("last poll: {at} failed: {error}"),
                None => println!("last poll: {at} ok"),
            }
        }
        None => println!("last poll: none yet"),
    }

    let Some(services) = status["services"].as_object() else {
        return;
    };
    for (name, service) in services {
        println!();
        let held = if service["held"] == Value::Bool(true) {
            " (held)"
        } else {
            ""
        };
        println!(
            "{name} [{}]{held}",
            service["group"].as_str().unwrap_or("?")
        );
        match service["current"].as_object() {
            Some(current) => {
                let digest = current["digest"]
                    .as_str()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default();
                println!(
                    "  current: {}{digest}",
                    current["tag"].as_str().unwrap_or("?")
                );
            }
            None => println!("  current: none"),
        }
        match service["pending"].as_object() {
            Some(pending) => println!(
                "  pending: {} at {} ({})",
                pending["tag"].as_str().unwrap_or("?"),
                pending["rollout_at_utc"].as_str().unwrap_or("?"),
                pending["rollout_at"]
            ),
            None => println!("  pending: none"),
        }
        if let Some(run) = service["last_executor"].as_object() {
            let at = run["at"].as_u64().map_or("?".to_string(), format_timestamp);
            match run["error"].as_str() {
                Some(error) => println!(
                    "  last upgrade: {} at {at} failed: {error}",
                    run["tag"].as_str().unwrap_or("?")
                ),
                None => println!(
                    "  last upgrade: {} at {at} succeeded",
                    run["tag"].as_str().unwrap_or("?")
                ),
            }
        }
    }
}
