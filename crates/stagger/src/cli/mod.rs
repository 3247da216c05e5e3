//! Command-line definitions and dispatch to each subcommand.

pub mod agent;
mod ctl;
mod plan;
mod replay;
mod tag;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Gradual, coordinator-free rollout of releases across the nodes of a validator network.
///
/// Every node upgrades at its own pseudo-random timeslot inside a rollout window: 24 h for a
/// normal release, 1 h for a hotfix, none for an immediate one. The timeslot comes from the
/// node's identity and the time it detected the release, so the network never restarts at once.
#[derive(Debug, Parser)]
#[command(name = "stagger", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and sort release tags and image references.
    #[command(subcommand)]
    Tag(tag::TagCommand),
    /// Show when a node upgrades to a release: its timeslot inside the rollout window.
    Plan(plan::PlanArgs),
    /// Run the rollout engine over a timeline of events and print every decision.
    Replay(replay::ReplayArgs),
    /// Run the agent: poll for releases and upgrade each service at its timeslot.
    Agent(agent::AgentArgs),
    /// Control a running agent: status, upgrade-now, hold, resume.
    Ctl(ctl::CtlArgs),
    /// Promote a staging build to the production repository under a release tag.
    Release(crate::release::ReleaseArgs),
    /// Estimate by Monte Carlo simulation how likely a rollout is to lose quorum.
    #[cfg(feature = "simulate")]
    Simulate(crate::simulate::SimulateArgs),
}

/// An error that carries the process exit code it should end with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

impl ExitError {
    /// Creates an error that ends the process with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        ExitError {
            code,
            message: message.into(),
        }
    }
}

/// Returns the exit code for an error: the one an [`ExitError`] carries, else 1.
pub fn exit_code_of(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ExitError>())
        .map_or(1, |exit| exit.code)
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Tag(command) => tag::run(command),
        Command::Plan(args) => plan::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Release(args) => crate::release::run(args),
        #[cfg(feature = "simulate")]
        Command::Simulate(args) => crate::simulate::run(args),
    }
}
