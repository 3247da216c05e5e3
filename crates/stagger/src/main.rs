//! The `stagger` command: gradual, coordinator-free rollout of releases across a node fleet.

use std::process::ExitCode;

use clap::Parser;
use stagger::cli::{self, Command};

fn main() -> ExitCode {
    let args = cli::Cli::parse();

    // Commands that print to standard output end quietly when it closes early, as with
    // `stagger ctl status | head`. The agent keeps Rust's default of ignoring SIGPIPE, so a
    // client that hangs up on the API or the control socket can never kill it.
    if !matches!(args.command, Command::Agent(_)) {
        // SAFETY: signal(2) only resets this process's SIGPIPE disposition, before any thread
        // or output exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }

    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            let code = cli::exit_code_of(&error);
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
