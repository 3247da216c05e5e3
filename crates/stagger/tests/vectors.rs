//! Checks the timeslot vectors in docs/rollout.md against Python's hashlib and the real binary.

use std::path::PathBuf;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns the rows of the Markdown table between `<!-- vectors:NAME -->` and `<!-- /vectors -->`.
fn vector_rows(name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repository_root().join("docs/rollout.md")).unwrap();
    let start_marker = format!("<!-- vectors:{name} -->");
    let start = text.find(&start_marker).expect("vector table start marker") + start_marker.len();
    let end = start
        + text[start..]
            .find("<!-- /vectors -->")
            .expect("vector table end marker");

    text[start..end]
        .lines()
        .filter(|line| line.starts_with('|') && !line.contains("---"))
        .skip(1)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

/// Computes offsets with Python's hashlib, independently of the Rust code.
fn python_offsets(script_body: &str) -> Vec<u64> {
    let script = format!(
        r#"
import hashlib, struct, sys, json
def node_bytes(node):
    hex_part = node[2:] if node[:2] in ("0x", "0X") else node
    if len(hex_part) == 40:
        try:
            return bytes.fromhex(hex_part)
        except ValueError:
            pass
    return node.encode("utf-8")
def random_offset(node, detected_at, window):
    digest = hashlib.sha256(node_bytes(node) + struct.pack(">Q", detected_at)).digest()
    return struct.unpack(">Q", digest[:8])[0] % window
def spread_offset(node, peers, version, window):
    unique = {{node_bytes(peer): peer for peer in peers}}
    ranked = sorted(unique, key=lambda raw: (hashlib.sha256(raw + version.encode()).digest(), raw))
    return ranked.index(node_bytes(node)) * window // len(ranked)
{script_body}
"#
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .map(|number| number.parse().unwrap())
        .collect()
}

fn plan_json(args: &[&str]) -> serde_json::Value {
    let output = Command::cargo_bin("stagger")
        .unwrap()
        .arg("plan")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stagger plan {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn random_vectors_match_python_and_binary() {
    let rows = vector_rows("random");
    assert!(rows.len() >= 10, "expected at least 10 random vectors");

    let calls: Vec<String> = rows
        .iter()
        .map(|row| format!("print(random_offset({:?}, {}, {}))", row[0], row[1], row[2]))
        .collect();
    let python = python_offsets(&calls.join("\n"));

    for (row, python_offset) in rows.iter().zip(python) {
        let documented: u64 = row[3].parse().unwrap();
        assert_eq!(
            python_offset, documented,
            "python disagrees with docs for {row:?}"
        );

        let detected_at: u64 = row[1].parse().unwrap();
        if detected_at > 253_402_300_799 {
            // Past the year 9999 the binary rejects the time instead of overflowing.
            continue;
        }
        let window = format!("{}s", row[2]);
        let plan = plan_json(&[
            "--node",
            &row[0],
            "--tag",
            "v1.0.0",
            "--detected-at",
            &row[1],
            "--normal-window",
            &window,
        ]);
        assert_eq!(
            plan["offset_seconds"], documented,
            "binary disagrees with docs for {row:?}"
        );
    }
}

#[test]
fn spread_vectors_match_python_and_binary() {
    let peers = [
        "node-eu-1",
        "node-eu-2",
        "node-us-1",
        "node-us-2",
        "node-ap-1",
        "node-ap-2",
        "node-sa-1",
    ];
    let directory = tempfile::tempdir().unwrap();
    let peer_file = directory.path().join("peers.txt");
    std::fs::write(&peer_file, format!("# committee\n{}\n", peers.join("\n"))).unwrap();

    let rows = vector_rows("spread");
    assert_eq!(rows.len(), 14);
    let calls: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "print(spread_offset({:?}, {:?}, {:?}, {}))",
                row[2], peers, row[0], row[1]
            )
        })
        .collect();
    let python = python_offsets(&calls.join("\n"));

    for (row, python_offset) in rows.iter().zip(python) {
        let documented: u64 = row[3].parse().unwrap();
        assert_eq!(
            python_offset, documented,
            "python disagrees with docs for {row:?}"
        );

        let tag = format!("v{}", row[0]);
        let window = format!("{}s", row[1]);
        let plan = plan_json(&[
            "--node",
            &row[2],
            "--tag",
            &tag,
            "--detected-at",
            "1764806400",
            "--normal-window",
            &window,
            "--hotfix-window",
            &window,
            "--peers",
            peer_file.to_str().unwrap(),
        ]);
        assert_eq!(
            plan["offset_seconds"], documented,
            "binary disagrees with docs for {row:?}"
        );
        assert_eq!(plan["strategy"], "spread");
    }
}
