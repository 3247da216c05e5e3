//! The `stagger` command: gradual, coordinator-free rollout of releases across a node fleet.

mod cli;
mod peers;
mod simulate;
mod timefmt;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            let code = cli::exit_code_of(&error);
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
