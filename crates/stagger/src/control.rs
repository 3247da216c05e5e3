//! The control socket: a Unix socket, readable only by its owner, taking one JSON request per
//! connection (`status`, `upgrade-now`, `hold`, `resume`) and sending one JSON response.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use crate::agent::{status, Handle};

/// Maximum length of a request line, in bytes.
const MAX_REQUEST_BYTES: u64 = 4_096;

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    Status,
    UpgradeNow { service: Option<String> },
    Hold { service: String },
    Resume { service: String },
}

/// Binds the control socket at `path` with mode 0600 and serves requests until `shutdown`.
///
/// A socket file left by a stopped agent is replaced. A socket that accepts connections belongs
/// to a running agent, which is an error.
pub async fn serve(
    path: &Path,
    handle: Handle,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!(
                "another agent is listening on the control socket {}; stop it or set api.socket to another path",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| {
            format!(
                "failed to remove the stale control socket {}",
                path.display()
            )
        })?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ok();
    }

    // SAFETY: umask(2) only changes this process's file creation mask. Restricting it around
    // bind means the socket never exists with wider permissions, even for an instant.
    let previous_mask = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(previous_mask) };
    let listener =
        bound.with_context(|| format!("failed to bind the control socket {}", path.display()))?;
    info!(path = %path.display(), "control socket listening");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        if let Err(error) = answer(stream, handle).await {
                            warn!(error = format!("{error:#}"), "control request failed");
                        }
                    });
                }
                Err(error) => warn!(error = %error, "failed to accept a control connection"),
            },
            () = &mut shutdown => break,
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

async fn answer(stream: UnixStream, handle: Handle) -> anyhow::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    BufReader::new(reader.take(MAX_REQUEST_BYTES))
        .read_line(&mut line)
        .await?;

    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            info!(request = ?request, "control request");
            match execute(request, &handle) {
                Ok(result) => json!({ "ok": true, "result": result }),
                Err(error) => json!({ "ok": false, "error": format!("{error:#}") }),
            }
        }
        Err(error) => json!({ "ok": false, "error": format!("invalid control request: {error}") }),
    };
    writer.write_all(format!("{response}\n").as_bytes()).await?;
    writer.shutdown().await?;
    Ok(())
}

fn execute(request: Request, handle: &Handle) -> anyhow::Result<Value> {
    let service = match &request {
        Request::Hold { service } | Request::Resume { service } => Some(service.as_str()),
        Request::UpgradeNow { service } => service.as_deref(),
        Request::Status => None,
    };
    if let Some(service) = service {
        let known: Vec<String> = handle.config.services.keys().cloned().collect();
        if !known.iter().any(|name| name == service) {
            anyhow::bail!(
                "service \"{service}\" is not in the agent's configuration; its services are: {}",
                known.join(", ")
            );
        }
    }

    match request {
        Request::Status => Ok(status::status_json(&handle.lock())),
        Request::UpgradeNow { service } => {
            let started = handle.redeploy(service.as_deref())?;
            let started: Vec<Value> = started
                .into_iter()
                .map(|(service, tag)| json!({ "service": service, "tag": tag.to_string() }))
                .collect();
            Ok(json!({ "redeploying": started }))
        }
        Request::Hold { service } => {
            let was_held = handle.set_held(&service, true)?;
            Ok(json!({ "service": service, "held": true, "was_held": was_held }))
        }
        Request::Resume { service } => {
            let was_held = handle.set_held(&service, false)?;
            Ok(json!({ "service": service, "held": false, "was_held": was_held }))
        }
    }
}

/// Sends `request` to the agent listening on `path` and returns its result.
pub async fn send(path: &Path, request: &Request) -> anyhow::Result<Value> {
    let mut stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "failed to connect to the control socket {}; is the agent running, and are you its user?",
            path.display()
        )
    })?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await?;

    let mut response = String::new();
    BufReader::new(stream).read_line(&mut response).await?;
    let response: Value = serde_json::from_str(&response)
        .with_context(|| format!("invalid response from the agent: {response:?}"))?;
    if response["ok"] == Value::Bool(true) {
        Ok(response["result"].clone())
    } else {
        bail!(
            "{}",
            response["error"]
                .as_str()
                .unwrap_or("the agent rejected the request")
        )
    }
}
