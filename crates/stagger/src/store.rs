//! The state file: the engine's state, written crash-safely and read back after a restart.
//!
//! A save writes a temporary file in the same directory, fsyncs it, renames it over the old file
//! and fsyncs the directory, so after a crash the file is either the old state or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use stagger_core::EngineState;

/// The state file format this build writes. Older formats are migrated on load.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// The on-disk form of the state.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format_version: u32,
    /// When the file was written, in seconds since the Unix epoch.
    saved_at: u64,
    /// The node identity that computed the timeslots in `engine`.
    node: String,
    engine: EngineState,
}

/// The result of reading the state file at start-up.
#[derive(Debug)]
pub enum Loaded {
    /// The saved state, to resume every pending upgrade at its recorded rollout_at.
    Resumed {
        state: EngineState,
        saved_at: u64,
        node: String,
    },
    /// No state file: first run, or the state was lost.
    Missing,
    /// The file could not be parsed; it was moved aside and the state counts as lost.
    Corrupt { moved_to: PathBuf, reason: String },
}

/// Reads the state file at `path`.
///
/// A file that cannot be parsed is renamed to `<name>.corrupt-<now>` and reported as
/// [`Loaded::Corrupt`]; only an I/O failure (such as a permission error) is an `Err`.
pub fn load(path: &Path, now: u64) -> anyhow::Result<Loaded> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("failed to read state file {}", path.display()))
        }
    };

    match parse(&bytes) {
        Ok(file) => Ok(Loaded::Resumed {
            state: file.engine,
            saved_at: file.saved_at,
            node: file.node,
        }),
        Err(reason) => {
            let moved_to = corrupt_path(path, now);
            fs::rename(path, &moved_to).with_context(|| {
                format!(
                    "failed to move the unreadable state file {} aside to {}",
                    path.display(),
                    moved_to.display()
                )
            })?;
            Ok(Loaded::Corrupt { moved_to, reason })
        }
    }
}

fn parse(bytes: &[u8]) -> Result<StateFile, String> {
    #[derive(Deserialize)]
    struct FormatProbe {
        format_version: u32,
    }

    let probe: FormatProbe = serde_json::from_slice(bytes)
        .map_err(|error| format!("not a stagger state file: {error}"))?;
    match probe.format_version {
        STATE_FORMAT_VERSION => serde_json::from_slice(bytes)
            .map_err(|error| format!("invalid format {STATE_FORMAT_VERSION} state: {error}")),
        newer if newer > STATE_FORMAT_VERSION => Err(format!(
            "format version {newer} is newer than this stagger supports ({STATE_FORMAT_VERSION}); \
             upgrade stagger to resume it"
        )),
        older => Err(format!("unknown format version {older}")),
    }
}

fn corrupt_path(path: &Path, now: u64) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state.json".to_string());
    let mut candidate = path.with_file_name(format!("{name}.corrupt-{now}"));
    let mut attempt = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{name}.corrupt-{now}-{attempt}"));
        attempt += 1;
    }
    candidate
}

/// Writes `state` to `path` crash-safely.
pub fn save(path: &Path, node: &str, state: &EngineState, now: u64) -> anyhow::Result<()> {
    let file = StateFile {
        format_version: STATE_FORMAT_VERSION,
        saved_at: now,
        node: node.to_string(),
        engine: state.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).context("failed to encode the state")?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
        .with_context(|| format!("failed to write state file {}", path.display()))
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either the old or the new
/// content: temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let temporary = directory.join(format!(".{name}.tmp-{}", std::process::id()));

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);

        fs::rename(&temporary, path)?;
        File::open(&directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use rand::Rng;
    use stagger_core::{Engine, Group, NodeId, Strategy, Windows};

    use super::*;

    fn sample_state(counter: u64) -> EngineState {
        let node = NodeId::parse("node-eu-1").unwrap();
        let mut engine = Engine::new(node, Windows::default(), Strategy::Random);
        engine.set_services([("signer", Group::Main)]);
        let tag = format!("v1.0.{counter}").parse().unwrap();
        engine.observe("signer", counter, &[tag]).unwrap();
        engine.state().clone()
    }

    #[test]
    fn save_then_load_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        let state = sample_state(7);
        save(&path, "node-eu-1", &state, 100).unwrap();

        match load(&path, 200).unwrap() {
            Loaded::Resumed {
                state: loaded,
                saved_at,
                node,
            } => {
                assert_eq!(loaded, state);
                assert_eq!(saved_at, 100);
                assert_eq!(node, "node-eu-1");
            }
            other => panic!("expected a resumed state, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_is_lost_state() {
        let directory = tempfile::tempdir().unwrap();
        let loaded = load(&directory.path().join("state.json"), 1).unwrap();
        assert!(matches!(loaded, Loaded::Missing));
    }

    #[test]
    fn corrupt_file_moves_aside() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        fs::write(&path, b"{\"format_version\": 1, \"engine\": tru").unwrap();

        let Loaded::Corrupt { moved_to, reason } = load(&path, 1_764_806_400).unwrap() else {
            panic!("expected a corrupt state");
        };
        assert_eq!(
            moved_to,
            directory.path().join("state.json.corrupt-1764806400")
        );
        assert!(moved_to.exists());
        assert!(!path.exists());
        assert!(reason.contains("not a stagger state file"), "{reason}");
    }

    #[test]
    fn newer_format_moves_aside() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        fs::write(&path, b"{\"format_version\": 9}").unwrap();

        let Loaded::Corrupt { reason, .. } = load(&path, 5).unwrap() else {
            panic!("expected a corrupt state");
        };
        assert!(reason.contains("format version 9 is newer"), "{reason}");
    }

    #[test]
    fn second_corrupt_file_gets_new_name() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        fs::write(&path, b"garbage").unwrap();
        load(&path, 5).unwrap();
        fs::write(&path, b"garbage again").unwrap();
        let Loaded::Corrupt { moved_to, .. } = load(&path, 5).unwrap() else {
            panic!("expected a corrupt state");
        };
        assert_eq!(moved_to, directory.path().join("state.json.corrupt-5-1"));
    }

    const CRASH_DIR_ENV: &str = "STAGGER_TEST_CRASH_DIR";

    /// Child side of `kill_during_save_never_tears`: saves states with a rising counter forever.
    #[test]
    #[ignore = "run only as the child process of kill_during_save_never_tears"]
    fn crash_writer_child() {
        let Some(directory) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let path = Path::new(&directory).join("state.json");
        let start: u64 = fs::read_to_string(Path::new(&directory).join("next"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for counter in start.. {
            // A larger state makes the window in which a torn write could happen wider.
            let mut state = sample_state(counter);
            for index in 0..50 {
                let name = format!("padding-{index}");
                state
                    .services
                    .insert(name, stagger_core::ServiceState::new(Group::Canary));
            }
            save(&path, "node-eu-1", &state, counter).unwrap();
        }
    }

    #[test]
    fn kill_during_save_never_tears() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        let mut random = rand::thread_rng();
        let mut last_seen = 0;

        for round in 0..300 {
            fs::write(
                directory.path().join("next"),
                format!("{}\n", last_seen + 1),
            )
            .unwrap();
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "store::tests::crash_writer_child",
                    "--exact",
                    "--ignored",
                    "--quiet",
                ])
                .env(CRASH_DIR_ENV, directory.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_micros(random.gen_range(2_000..25_000)));
            child.kill().unwrap();
            child.wait().unwrap();

            match load(&path, 0).unwrap() {
                Loaded::Resumed { saved_at, .. } => {
                    assert!(
                        saved_at >= last_seen,
                        "round {round}: state went back from {last_seen} to {saved_at}"
                    );
                    last_seen = saved_at;
                }
                Loaded::Missing => assert_eq!(last_seen, 0, "round {round}: state file vanished"),
                Loaded::Corrupt { reason, .. } => {
                    panic!("round {round}: torn state file: {reason}")
                }
            }
        }
        assert!(last_seen > 0, "the writer never completed a save");
    }
}
