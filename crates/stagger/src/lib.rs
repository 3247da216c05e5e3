//! The `stagger` binary's library: command line, agent, sources, executors, API and state file.
//!
//! The rollout rules themselves live in `stagger-core`; this crate does the I/O around them.

pub mod cli;
pub mod peers;
pub mod store;
pub mod timefmt;
