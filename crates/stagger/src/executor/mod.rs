//! Executors: how an upgrade is carried out on the node.
//!
//! An executor gets one [`Upgrade`] at a time and reports success or failure. The agent changes
//! a service's current release only after success, and retries a failure with backoff.

pub mod hook;

use std::future::Future;
use std::pin::Pin;

use stagger_core::{Group, ReleaseTag};

use crate::config::ExecutorConfig;

/// One upgrade to carry out.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub service: String,
    pub group: Group,
    pub tag: ReleaseTag,
    /// The image repository, such as `orbsnetwork/node`.
    pub image: String,
    /// The manifest digest the tag resolved to, when known.
    pub digest: Option<String>,
    pub previous_tag: Option<ReleaseTag>,
    /// Why the upgrade happens now: `initial`, `timeslot`, `immediate` or `redeploy`.
    pub reason: &'static str,
}

impl Upgrade {
    /// Returns the reference to run: `repo@sha256:…` when the digest is known, else `repo:tag`.
    pub fn pinned_reference(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}", self.image),
            None => format!("{}:{}", self.image, self.tag),
        }
    }
}

/// A failed upgrade, with its cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ExecutorError(pub String);

/// The future an executor returns.
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ExecutorError>> + Send + 'a>>;

/// Carries out upgrades. Kept small so that new executors (Docker, say) slot in.
pub trait Executor: Send + Sync {
    /// Returns the executor's kind, as written in the config.
    fn kind(&self) -> &'static str;

    /// Carries out `upgrade`; the service runs the new release when this returns `Ok`.
    fn apply<'a>(&'a self, upgrade: &'a Upgrade) -> ApplyFuture<'a>;
}

/// The orchestrator executor: nothing runs here. The agent publishes the applied releases at
/// `GET /node/management`, and the orchestrator polling it restarts the service.
pub struct Orchestrator;

impl Executor for Orchestrator {
    fn kind(&self) -> &'static str {
        "orchestrator"
    }

    fn apply<'a>(&'a self, _upgrade: &'a Upgrade) -> ApplyFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// Creates the executor a service's config describes.
pub fn from_config(config: &ExecutorConfig) -> Box<dyn Executor> {
    match config {
        ExecutorConfig::Hook {
            command,
            timeout,
            env,
        } => Box::new(hook::Hook::new(command.clone(), *timeout, env.clone())),
        ExecutorConfig::Orchestrator => Box::new(Orchestrator),
    }
}
