//! Runs the real `stagger agent` binary with a generated config, and reads its API and logs.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// A `stagger agent` process with its own state directory, API port and log file.
pub struct AgentProcess {
    pub directory: tempfile::TempDir,
    pub config_path: PathBuf,
    pub api_port: u16,
    child: Option<Child>,
    http: reqwest::blocking::Client,
    starts: u32,
}

/// Returns a free loopback port. Another process may take it before it is used, which only
/// makes a test fail loudly.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("failed to find a free loopback port")
}

/// Returns the path of the `stagger` binary under test.
pub fn stagger_command() -> Command {
    Command::cargo_bin("stagger").expect("the stagger binary is built")
}

impl AgentProcess {
    /// Writes `config` (TOML without `state` and `[api]`, which this adds) and starts the agent.
    ///
    /// `{dir}` in `config` is replaced by the agent's temporary directory.
    pub fn start(config: &str) -> AgentProcess {
        let directory = tempfile::tempdir().expect("failed to create a temporary directory");
        let api_port = free_port();
        let config = config.replace("{dir}", &directory.path().display().to_string());
        let full = format!(
            "state = \"{state}\"\n{config}\n[api]\nlisten = \"127.0.0.1:{api_port}\"\nsocket = \"{state}/control.sock\"\n",
            state = directory.path().join("state").display(),
        );
        let config_path = directory.path().join("agent.toml");
        std::fs::write(&config_path, full).unwrap();

        let mut agent = AgentProcess {
            directory,
            config_path,
            api_port,
            child: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            starts: 0,
        };
        agent.spawn(&[]);
        agent
    }

    /// Starts the agent process again (after `kill` or `stop`), with extra arguments.
    pub fn spawn(&mut self, extra_args: &[&str]) {
        assert!(self.child.is_none(), "the agent is already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = stagger_command()
            .arg("agent")
            .arg("--config")
            .arg(&self.config_path)
            .args(["--log-format", "json", "--log-level", "stagger=debug"])
            .args(extra_args)
            .current_dir(self.directory.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("failed to start stagger agent");
        self.child = Some(child);
        self.wait_until("the API answers", Duration::from_secs(20), |agent| {
            agent.try_get("/healthz").is_some()
        });
    }

    /// Kills the agent with SIGKILL, as a crash or `kill -9` would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the agent with SIGTERM and waits for it to exit; returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) sends SIGTERM to the agent's process id; no memory is touched.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop after SIGTERM"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reports whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    pub fn log_path(&self) -> PathBuf {
        self.directory.path().join("agent.log")
    }

    /// Returns the agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn state_file(&self) -> PathBuf {
        self.directory.path().join("state/state.json")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// GETs `path` from the API. Returns `None` unless the response is 200.
    pub fn try_get(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.api_port);
        let response = self.http.get(url).send().ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().ok()
    }

    /// GETs `path` from the API and parses it as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let text = self
            .try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed\n{}", self.log()));
        serde_json::from_str(&text).unwrap()
    }

    /// Returns `/status`.
    pub fn status(&self) -> Value {
        self.get_json("/status")
    }

    /// Returns one service's entry of `/status`.
    pub fn service(&self, name: &str) -> Value {
        self.status()["services"][name].clone()
    }

    /// Returns the tag the service currently runs, if any.
    pub fn current_tag(&self, name: &str) -> Option<String> {
        self.service(name)["current"]["tag"]
            .as_str()
            .map(str::to_string)
    }

    /// Returns the pending upgrade of a service, or `Value::Null`.
    pub fn pending(&self, name: &str) -> Value {
        self.service(name)["pending"].clone()
    }

    /// Runs `stagger ctl --config <config> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        stagger_command()
            .arg("ctl")
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .current_dir(self.directory.path())
            .output()
            .unwrap()
    }

    /// Polls `condition` every 100 ms until it holds; panics with the log after `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&AgentProcess) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting until {what}\n--- agent log ---\n{}",
            self.log()
        );
    }

    /// Returns the JSON log lines whose `message` field equals `message`.
    pub fn log_events(&self, message: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["message"] == message)
            .collect()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes an executable shell script and returns its path.
pub fn write_script(directory: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = directory.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "#!/bin/sh\n{body}").unwrap();
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A hook script that appends one line per run to `hooks.log` in `directory`:
/// `SERVICE TAG REASON IMAGE UNIX_MILLIS`.
pub fn recording_hook(directory: &Path) -> PathBuf {
    let log = directory.join("hooks.log");
    write_script(
        directory,
        "hook.sh",
        &format!(
            "echo \"$STAGGER_SERVICE $STAGGER_TAG $STAGGER_REASON $STAGGER_IMAGE $(date +%s%3N)\" >> {}",
            log.display()
        ),
    )
}

/// One recorded hook run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub service: String,
    pub tag: String,
    pub reason: String,
    pub image: String,
    /// When the hook ran, in milliseconds since the Unix epoch.
    pub at_millis: u64,
}

/// Reads the runs a [`recording_hook`] wrote.
pub fn hook_runs(directory: &Path) -> Vec<HookRun> {
    let text = std::fs::read_to_string(directory.join("hooks.log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            HookRun {
                service: fields[0].to_string(),
                tag: fields[1].to_string(),
                reason: fields[2].to_string(),
                image: fields[3].to_string(),
                at_millis: fields[4].parse().unwrap(),
            }
        })
        .collect()
}
