//! The hook executor: runs a command (argv, no shell) with the upgrade in its environment.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tracing::{info, warn};

use crate::executor::{ApplyFuture, Executor, ExecutorError, Upgrade};

/// Maximum length of a logged hook output line, in bytes. Longer lines are cut.
const MAX_LOGGED_LINE_BYTES: usize = 2_048;

/// Runs a command for each upgrade; exit status 0 means done.
pub struct Hook {
    command: Vec<String>,
    timeout: Duration,
    env: BTreeMap<String, String>,
}

impl Hook {
    /// Creates a hook that runs `command` (program and arguments) for at most `timeout`.
    pub fn new(command: Vec<String>, timeout: Duration, env: BTreeMap<String, String>) -> Self {
        Hook {
            command,
            timeout,
            env,
        }
    }

    async fn run(&self, upgrade: &Upgrade) -> Result<(), ExecutorError> {
        let program = &self.command[0];
        let mut command = Command::new(program);
        command
            .args(&self.command[1..])
            .envs(&self.env)
            .envs(environment(upgrade))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // A process group of its own lets a timeout kill the hook and everything it started.
        #[cfg(unix)]
        command.process_group(0);

        let mut child = command
            .spawn()
            .map_err(|error| ExecutorError(format!("failed to start hook {program:?}: {error}")))?;

        let stdout = child
            .stdout
            .take()
            .map(|out| tokio::spawn(log_lines(out, upgrade.service.clone(), "stdout")));
        let stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(log_lines(err, upgrade.service.clone(), "stderr")));

        let outcome = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(ExecutorError(format!("hook {program:?} failed: {status}"))),
            Ok(Err(error)) => Err(ExecutorError(format!("hook {program:?} failed: {error}"))),
            Err(_) => {
                kill_group(&child);
                let _ = child.kill().await;
                Err(ExecutorError(format!(
                    "hook {program:?} timed out after {}s and was killed",
                    self.timeout.as_secs()
                )))
            }
        };

        for reader in [stdout, stderr].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        outcome
    }
}

impl Executor for Hook {
    fn kind(&self) -> &'static str {
        "hook"
    }

    fn apply<'a>(&'a self, upgrade: &'a Upgrade) -> ApplyFuture<'a> {
        Box::pin(self.run(upgrade))
    }
}

/// Returns the `STAGGER_*` variables a hook receives.
pub fn environment(upgrade: &Upgrade) -> Vec<(&'static str, String)> {
    vec![
        ("STAGGER_SERVICE", upgrade.service.clone()),
        ("STAGGER_GROUP", upgrade.group.to_string()),
        ("STAGGER_TAG", upgrade.tag.to_string()),
        ("STAGGER_VERSION", upgrade.tag.version.to_string()),
        ("STAGGER_URGENCY", upgrade.tag.urgency.to_string()),
        ("STAGGER_IMAGE", upgrade.pinned_reference()),
        ("STAGGER_DIGEST", upgrade.digest.clone().unwrap_or_default()),
        (
            "STAGGER_PREVIOUS_TAG",
            upgrade
                .previous_tag
                .map(|tag| tag.to_string())
                .unwrap_or_default(),
        ),
        ("STAGGER_REASON", upgrade.reason.to_string()),
    ]
}

#[cfg(unix)]
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals the process group the hook leads; it
        // touches no memory of this process.
        let result = unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        if result != 0 {
            warn!(pid, error = %std::io::Error::last_os_error(), "failed to kill the hook's process group");
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_child: &tokio::process::Child) {}

async fn log_lines(stream: impl AsyncRead + Unpin, service: String, channel: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(mut line)) = lines.next_line().await {
        if line.len() > MAX_LOGGED_LINE_BYTES {
            let mut cut = MAX_LOGGED_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        info!(service = %service, stream = channel, "hook: {line}");
    }
}

#[cfg(test)]
mod tests {
    use stagger_core::{parse_release_tag, Group};

    use super::*;

    fn upgrade() -> Upgrade {
        Upgrade {
            service: "signer".to_string(),
            group: Group::Main,
            tag: parse_release_tag("v1.2.0-hotfix").unwrap(),
            image: "orbsnetwork/signer".to_string(),
            digest: Some(format!("sha256:{}", "c".repeat(64))),
            previous_tag: Some(parse_release_tag("v1.1.0").unwrap()),
            reason: "timeslot",
        }
    }

    fn hook(script: &str, timeout: Duration) -> Hook {
        Hook::new(
            vec!["sh".to_string(), "-c".to_string(), script.to_string()],
            timeout,
            BTreeMap::new(),
        )
    }

    #[tokio::test]
    async fn hook_receives_environment() {
        let directory = tempfile::tempdir().unwrap();
        let output = directory.path().join("env.txt");
        let script = format!("env | grep ^STAGGER_ | sort > {}", output.display());
        hook(&script, Duration::from_secs(10))
            .apply(&upgrade())
            .await
            .unwrap();

        let written = std::fs::read_to_string(output).unwrap();
        let digest = format!("sha256:{}", "c".repeat(64));
        assert!(written.contains("STAGGER_SERVICE=signer\n"));
        assert!(written.contains("STAGGER_GROUP=main\n"));
        assert!(written.contains("STAGGER_TAG=v1.2.0-hotfix\n"));
        assert!(written.contains("STAGGER_VERSION=1.2.0\n"));
        assert!(written.contains("STAGGER_URGENCY=hotfix\n"));
        assert!(written.contains(&format!("STAGGER_IMAGE=orbsnetwork/signer@{digest}\n")));
        assert!(written.contains(&format!("STAGGER_DIGEST={digest}\n")));
        assert!(written.contains("STAGGER_PREVIOUS_TAG=v1.1.0\n"));
        assert!(written.contains("STAGGER_REASON=timeslot\n"));
    }

    #[tokio::test]
    async fn image_without_digest_uses_tag() {
        let mut unpinned = upgrade();
        unpinned.digest = None;
        assert_eq!(
            unpinned.pinned_reference(),
            "orbsnetwork/signer:v1.2.0-hotfix"
        );
    }

    #[tokio::test]
    async fn nonzero_exit_is_failure() {
        let error = hook("exit 3", Duration::from_secs(10))
            .apply(&upgrade())
            .await
            .unwrap_err();
        assert!(error.0.contains("exit status: 3"), "{}", error.0);
    }

    #[tokio::test]
    async fn timeout_kills_hook() {
        let started = std::time::Instant::now();
        let error = hook("sleep 30", Duration::from_secs(1))
            .apply(&upgrade())
            .await
            .unwrap_err();
        assert!(error.0.contains("timed out after 1s"), "{}", error.0);
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn missing_program_is_failure() {
        let missing = Hook::new(
            vec!["/nonexistent/upgrade".to_string()],
            Duration::from_secs(5),
            BTreeMap::new(),
        );
        let error = missing.apply(&upgrade()).await.unwrap_err();
        assert!(
            error
                .0
                .contains("failed to start hook \"/nonexistent/upgrade\""),
            "{}",
            error.0
        );
    }
}
