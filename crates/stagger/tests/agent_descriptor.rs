//! End-to-end tests of `stagger agent` with the descriptor source, from a file and over HTTP.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::agent::{hook_runs, recording_hook, write_script, AgentProcess};

fn write_descriptor(path: &Path, node_tag: &str) {
    let text = format!(
        r#"{{"ImageVersions": {{"node": {{"image": "orbsnetwork/node:{node_tag}", "Pull": true}}}}, "Extra": 1}}"#
    );
    std::fs::write(path, text).unwrap();
}

/// Serves the file at `path` to every HTTP GET, from a background thread; returns the URL.
fn serve_file(path: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/versions.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                line.clear();
            }
            let body = std::fs::read(&path).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

fn config(source: &str, hook: &Path, hotfix: &str) -> String {
    format!(
        r#"
node = "node-eu-1"
interval = "1s"
splay = "0s"
[windows]
normal = "100000h"
hotfix = "{hotfix}"
[source]
kind = "descriptor"
{source}
[services.node]
executor = {{ kind = "hook", command = ["{hook}"], timeout = "20s" }}
"#,
        hook = hook.display()
    )
}

#[test]
fn descriptor_over_http_schedules_hotfix() {
    let work = tempfile::tempdir().unwrap();
    let descriptor = work.path().join("versions.json");
    write_descriptor(&descriptor, "v1.0.0");
    let url = serve_file(descriptor.clone());
    let hook = recording_hook(work.path());

    let agent = AgentProcess::start(&config(&format!("url = \"{url}\""), &hook, "3s"));
    agent.wait_until("node adopts v1.0.0", Duration::from_secs(20), |agent| {
        agent.current_tag("node").as_deref() == Some("v1.0.0")
    });
    assert_eq!(agent.status()["source"], format!("descriptor {url}"));

    write_descriptor(&descriptor, "v1.1.0-hotfix");
    agent.wait_until(
        "node applies the hotfix",
        Duration::from_secs(20),
        |agent| agent.current_tag("node").as_deref() == Some("v1.1.0-hotfix"),
    );
    let run = hook_runs(work.path()).pop().unwrap();
    assert_eq!(run.reason, "timeslot");
    assert_eq!(run.image, "orbsnetwork/node:v1.1.0-hotfix");
}

#[test]
fn broken_descriptor_keeps_plan() {
    let work = tempfile::tempdir().unwrap();
    let descriptor = work.path().join("versions.json");
    write_descriptor(&descriptor, "v1.0.0");
    let hook = recording_hook(work.path());
    let source = format!("path = \"{}\"", descriptor.display());
    let agent = AgentProcess::start(&config(&source, &hook, "1h"));
    agent.wait_until("node adopts v1.0.0", Duration::from_secs(20), |agent| {
        agent.current_tag("node").as_deref() == Some("v1.0.0")
    });
    write_descriptor(&descriptor, "v1.1.0");
    agent.wait_until("v1.1.0 is pending", Duration::from_secs(10), |agent| {
        agent.pending("node")["tag"] == "v1.1.0"
    });

    std::fs::write(&descriptor, b"{\"ImageVersions\": ").unwrap();
    agent.wait_until("a poll fails", Duration::from_secs(10), |agent| {
        agent.status()["last_poll"]["result"] == "failure"
    });
    let status = agent.status();
    assert!(status["last_poll"]["error"]
        .as_str()
        .unwrap()
        .contains("invalid descriptor"));
    assert_eq!(
        status["services"]["node"]["pending"]["tag"], "v1.1.0",
        "a failed poll withdraws nothing"
    );
}

#[test]
fn sigterm_lets_running_hook_finish() {
    let work = tempfile::tempdir().unwrap();
    let descriptor = work.path().join("versions.json");
    write_descriptor(&descriptor, "v1.0.0");
    let started = work.path().join("hook-started");
    let finished = work.path().join("hook-finished");
    let hook = write_script(
        work.path(),
        "slow.sh",
        &format!(
            "touch {started}\nsleep 3\ntouch {finished}",
            started = started.display(),
            finished = finished.display()
        ),
    );
    let source = format!("path = \"{}\"", descriptor.display());
    let mut agent = AgentProcess::start(&config(&source, &hook, "1h"));

    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the hook never started\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(agent.stop(), Some(0));
    assert!(
        finished.exists(),
        "the agent exited before its hook finished"
    );

    agent.spawn(&[]);
    assert_eq!(
        agent.current_tag("node").as_deref(),
        Some("v1.0.0"),
        "the finished upgrade was saved"
    );
}
