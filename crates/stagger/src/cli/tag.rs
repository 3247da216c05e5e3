//! `stagger tag`: parse and sort release tags and image references.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use stagger_core::ImageRef;

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Parse each reference and print one JSON object per input, in input order.
    ///
    /// A reference is `[IMAGE:]TAG[@sha256:DIGEST]`. Valid inputs print
    /// {"input","image","tag","version","group","urgency","digest"}; invalid ones print
    /// {"input","error"}. Exits 0 when every input is valid, 1 otherwise. Put inputs that start
    /// with `-` after `--`.
    Parse {
        /// References or bare release tags, such as `v1.2.3-canary` or `org/node:v1.2.3-hotfix`.
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
    },
    /// Read references from standard input, one per line, and print the valid ones in ascending
    /// version order (stable for equal versions). Invalid lines are reported on standard error.
    Sort,
}

/// Runs a `stagger tag` subcommand.
pub fn run(command: TagCommand) -> anyhow::Result<ExitCode> {
    match command {
        TagCommand::Parse { references } => parse(&references),
        TagCommand::Sort => sort(),
    }
}

fn parse(references: &[String]) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut all_valid = true;

    for input in references {
        let line = match ImageRef::parse(input) {
            Ok(reference) => json!({
                "input": input,
                "image": reference.image,
                "tag": reference.tag.to_string(),
                "version": reference.tag.version.to_string(),
                "group": reference.tag.group.as_str(),
                "urgency": reference.tag.urgency.as_str(),
                "digest": reference.digest,
            }),
            Err(error) => {
                all_valid = false;
                json!({ "input": input, "error": error.to_string() })
            }
        };
        writeln!(out, "{line}")?;
    }

    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn sort() -> anyhow::Result<ExitCode> {
    let mut valid = Vec::new();
    for (index, line) in io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match ImageRef::parse(&line) {
            Ok(reference) => valid.push((reference.tag.version, line)),
            Err(error) => eprintln!("line {}: {error}", index + 1),
        }
    }

    // `sort_by_key` is stable, so equal versions keep their input order.
    valid.sort_by_key(|(version, _)| *version);

    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (_, line) in valid {
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}
