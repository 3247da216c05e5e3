//! The `stagger` command: gradual, coordinator-free rollout of releases across a node fleet.

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::Parser;
use stagger::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let code = cli::exit_code_of(&error);
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// Reports whether the error is a closed standard output, as with `stagger tag sort | head -1`.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}
