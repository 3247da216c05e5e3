//! `stagger release` on a terminal: the plan prompt and the confirmations.
//!
//! util-linux `script` gives the binary a pseudo-terminal and feeds it the typed replies, so the
//! prompts run exactly as they do for a release engineer.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::registry::TestRegistry;

/// Runs `stagger release ARGS` on a pseudo-terminal, typing `replies`.
fn release_on_terminal(args: &[&str], replies: &str) -> Output {
    let binary = assert_cmd::cargo::cargo_bin("stagger");
    let command = format!("{} release {}", binary.display(), args.join(" "));
    let mut child = Command::new("script")
        .args([
            "--quiet",
            "--flush",
            "--return",
            "--command",
            &command,
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(replies.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn terminal_prompts_for_plan() {
    let registry = TestRegistry::start();
    let staged = registry.push_image("orbsnetworkstaging/node", "experimental");
    let host = registry.host();
    let args = ["--registry", &host, "--insecure", "--target-tag", "v1.1.0"];

    let output = release_on_terminal(&args, "x\nh\ny\n");
    let transcript = text(&output);
    assert_eq!(output.status.code(), Some(0), "{transcript}");
    assert!(
        transcript.contains("Choose the rollout plan:"),
        "{transcript}"
    );
    assert!(
        transcript.contains("type s, h or i"),
        "an invalid reply asks again: {transcript}"
    );
    assert!(transcript.contains("urgency:  hotfix"), "{transcript}");
    assert_eq!(
        registry
            .digest_of("orbsnetwork/node", "v1.1.0-hotfix")
            .as_deref(),
        Some(staged.digest.as_str())
    );
}

#[test]
fn declined_confirmation_pushes_nothing() {
    let registry = TestRegistry::start();
    registry.push_image("orbsnetworkstaging/node", "experimental");
    let host = registry.host();
    let args = [
        "--registry",
        &host,
        "--insecure",
        "--target-tag",
        "v1.1.0",
        "--standard",
    ];

    let output = release_on_terminal(&args, "n\n");
    let transcript = text(&output);
    assert_eq!(output.status.code(), Some(4), "{transcript}");
    assert!(
        transcript.contains("release cancelled: nothing was pushed"),
        "{transcript}"
    );
    assert!(registry.tags("orbsnetwork/node").is_empty());
}

#[test]
fn immediate_node_release_needs_typed_confirmation() {
    let registry = TestRegistry::start();
    registry.push_image("orbsnetworkstaging/node", "experimental");
    let host = registry.host();
    let args = [
        "--registry",
        &host,
        "--insecure",
        "--target-tag",
        "v1.1.0",
        "--immediate",
    ];

    let wrong = release_on_terminal(&args, "y\nyes\n");
    let transcript = text(&wrong);
    assert_eq!(wrong.status.code(), Some(4), "{transcript}");
    assert!(
        transcript.contains("consensus may stall or fork"),
        "{transcript}"
    );
    assert!(registry.tags("orbsnetwork/node").is_empty());

    let typed = release_on_terminal(&args, "y\nimmediate\n");
    assert_eq!(typed.status.code(), Some(0), "{}", text(&typed));
    assert_eq!(
        registry.tags("orbsnetwork/node"),
        vec!["v1.1.0-immediate".to_string()]
    );
}
