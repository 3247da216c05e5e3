//! Questions to the release engineer on the terminal. Prompts go to standard error, so standard
//! output keeps only the plan and the published reference.

use std::io::{self, BufRead, IsTerminal, Write};

use stagger_core::Urgency;

/// Reports whether standard input is a terminal, the only case in which prompts are shown.
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// Prompts for the rollout plan until the reply is valid. Returns `None` when input ends.
pub fn ask_plan() -> io::Result<Option<Urgency>> {
    let mut stderr = io::stderr();
    writeln!(stderr, "Choose the rollout plan:")?;
    writeln!(
        stderr,
        "  s  standard   every node upgrades at its own time within 24 hours; the safest"
    )?;
    writeln!(
        stderr,
        "  h  hotfix     every node upgrades within 1 hour; a bad release reaches most nodes \
         before anyone can react"
    )?;
    writeln!(
        stderr,
        "  i  immediate  every node upgrades as soon as it sees the release; all restart at once"
    )?;

    loop {
        let Some(answer) = read_answer("plan [s/h/i]: ")? else {
            return Ok(None);
        };
        match answer.as_str() {
            "s" | "standard" => return Ok(Some(Urgency::Normal)),
            "h" | "hotfix" => return Ok(Some(Urgency::Hotfix)),
            "i" | "immediate" => return Ok(Some(Urgency::Immediate)),
            _ => writeln!(stderr, "type s, h or i")?,
        }
    }
}

/// Asks a yes/no question; anything but `y` or `yes` (including end of input) is no.
pub fn confirm(question: &str) -> io::Result<bool> {
    let answer = read_answer(&format!("{question} [y/N]: "))?;
    Ok(matches!(answer.as_deref(), Some("y" | "yes")))
}

/// Asks the engineer to type `expected` exactly.
pub fn confirm_by_typing(question: &str, expected: &str) -> io::Result<bool> {
    let answer = read_answer(&format!("{question} Type \"{expected}\" to continue: "))?;
    Ok(answer.as_deref() == Some(expected))
}

/// Prints `prompt` and reads one trimmed, lower-case line; `None` at end of input.
fn read_answer(prompt: &str) -> io::Result<Option<String>> {
    let mut stderr = io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;

    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        writeln!(stderr)?;
        return Ok(None);
    }
    Ok(Some(line.trim().to_ascii_lowercase()))
}
