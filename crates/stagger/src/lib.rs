//! The `stagger` binary's library: command line, agent, sources, executors, API and state file.
//!
//! The rollout rules themselves live in `stagger-core`; this crate does the I/O around them.

pub mod agent;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod executor;
pub mod peers;
pub mod registry;
pub mod release;
#[cfg(feature = "simulate")]
pub mod simulate;
pub mod source;
pub mod store;
pub mod timefmt;
