//! Runs the real `stagger simulate` binary: JSON output, plot files and input errors.
#![cfg(feature = "simulate")]

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

fn simulate() -> Command {
    let mut command = Command::cargo_bin("stagger").unwrap();
    command.arg("simulate");
    command
}

fn run_json(arguments: &[&str]) -> Value {
    let output = simulate().args(arguments).arg("--json").output().unwrap();
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn json_output_shape() {
    let arguments = ["--nodes", "7", "--urgency", "hotfix", "--trials", "500"];
    let output = run_json(&arguments);

    let scenario = &output["scenario"];
    assert_eq!(scenario["nodes"], 7);
    assert_eq!(scenario["window_seconds"], 3_600);
    assert_eq!(scenario["downtime_seconds"], 300);
    assert_eq!(scenario["tolerated_down"], 2);
    assert_eq!(scenario["strategy"], "random");

    let summary = &output["summary"];
    assert_eq!(summary["trials"], 500);
    let loss = &summary["quorum_loss"];
    let probability = loss["probability"].as_f64().unwrap();
    let low = loss["ci95"]["low"].as_f64().unwrap();
    let high = loss["ci95"]["high"].as_f64().unwrap();
    assert!(low <= probability, "{loss}");
    assert!(probability <= high, "{loss}");
    assert!(loss["expected_seconds_lost"].as_f64().unwrap() >= 0.0);

    let histogram = summary["max_down"]["histogram"].as_array().unwrap();
    let histogram_trials: u64 = histogram
        .iter()
        .map(|count| count["trials"].as_u64().unwrap())
        .sum();
    assert_eq!(histogram_trials, 500);
    let lost: u64 = histogram
        .iter()
        .filter(|count| count["down"].as_u64().unwrap() > 2)
        .map(|count| count["trials"].as_u64().unwrap())
        .sum();
    assert_eq!(loss["trials_lost"].as_u64().unwrap(), lost);

    let completion = &summary["completion"];
    let p50 = completion["p50_seconds"].as_u64().unwrap();
    let p99 = completion["p99_seconds"].as_u64().unwrap();
    assert!(p50 <= p99, "{completion}");
    assert!(p99 <= 3_600 + 300, "{completion}");
    assert_eq!(output["plot"], Value::Null);
}

#[test]
fn json_same_seed_same_result() {
    let arguments = ["--nodes", "10", "--trials", "300", "--seed", "42"];
    assert_eq!(run_json(&arguments), run_json(&arguments));
}

#[test]
fn spread_without_skew_never_loses_quorum() {
    let arguments = [
        "--nodes",
        "22",
        "--strategy",
        "spread",
        "--max-down",
        "1",
        "--trials",
        "200",
    ];
    let output = run_json(&arguments);
    assert_eq!(output["summary"]["max_down"]["max"], 1);
    assert_eq!(output["summary"]["quorum_loss"]["trials_lost"], 0);
}

#[test]
fn plot_writes_svg() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("rollout.svg");
    simulate()
        .args(["--nodes", "7", "--trials", "200", "--plot"])
        .arg(&path)
        .assert()
        .success()
        .stdout(contains("plot written to"));

    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<text"), "the SVG has no text element");
    assert!(svg.contains("nodes down"), "the axis label is missing");
}

#[test]
fn plot_writes_png() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("rollout.png");
    simulate()
        .args(["--nodes", "7", "--trials", "200", "--plot"])
        .arg(&path)
        .assert()
        .success();

    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "PNG of {} bytes is too small",
        png.len()
    );
}

#[test]
fn plot_rejects_other_extension() {
    simulate()
        .args(["--nodes", "7", "--trials", "10", "--plot", "rollout.pdf"])
        .assert()
        .code(2)
        .stderr(contains("invalid --plot rollout.pdf"))
        .stderr(contains(".svg or .png"));
}

#[test]
fn errors_name_value_and_fix() {
    let cases: [(&[&str], &str); 6] = [
        (&["--nodes", "0"], "invalid --nodes 0"),
        (
            &["--nodes", "4", "--window", "0s"],
            "invalid --window \"0s\"",
        ),
        (
            &["--nodes", "4", "--quorum", "1.2"],
            "invalid --quorum \"1.2\"",
        ),
        (
            &["--nodes", "4", "--max-down", "9"],
            "invalid --max-down 9 for 4 nodes",
        ),
        (
            &["--nodes", "4", "--urgency", "hotfix", "--downtime", "2h"],
            "invalid --downtime \"2h\"",
        ),
        (&["--nodes", "4", "--trials", "0"], "invalid --trials 0"),
    ];
    for (arguments, expected) in cases {
        simulate()
            .args(arguments)
            .assert()
            .code(2)
            .stderr(contains(expected));
    }
}

#[test]
fn window_conflicts_with_urgency() {
    simulate()
        .args(["--nodes", "4", "--window", "2h", "--urgency", "hotfix"])
        .assert()
        .failure()
        .stderr(contains("cannot be used with"));
}
