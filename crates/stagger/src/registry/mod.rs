//! OCI Distribution API client for the release command and the agent.
//!
//! The client talks to one registry (`HOST[:PORT]`) over HTTPS, or plain HTTP when `insecure` is
//! set, and handles anonymous access, bearer tokens (`WWW-Authenticate: Bearer`) and basic
//! authentication. It retries connection failures, timeouts and 5xx responses with exponential
//! backoff and jitter, waits out `429` responses for the `Retry-After` delay, and caps every response
//! body it buffers.

mod auth;
mod client;
mod error;
mod headers;
mod manifest;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use auth::{docker_config_path, Credentials};
pub use client::{BlobTransfer, RegistryClient};
pub use error::RegistryError;
pub use headers::parse_retry_after;
pub use manifest::{
    sha256_digest, Descriptor, Manifest, References, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    OCI_INDEX, OCI_MANIFEST,
};

/// The registry behind Docker Hub, used when no registry host is given.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// Connect timeout of the default configuration, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Total timeout of one API request (manifest, tag list, token) in the default configuration,
/// in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 60;
/// Total timeout of one blob transfer in the default configuration, in seconds. Layers can be
/// hundreds of megabytes, so this is far longer than the API request timeout.
pub const DEFAULT_BLOB_TIMEOUT_SECS: u64 = 30 * 60;
/// Cap on a buffered response body (manifest, tag list page, token) in the default
/// configuration, in bytes. Blob transfers are streamed and not capped by it.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Retries after the first attempt in the default configuration.
pub const DEFAULT_MAX_RETRIES: u32 = 4;

/// Settings of a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registry `HOST[:PORT]`, without a scheme. `docker.io` and `index.docker.io` mean
    /// [`DOCKER_HUB_HOST`], where single-segment repository names get the `library/` prefix.
    pub host: String,
    /// Use plain HTTP instead of HTTPS. Meant for loopback and test registries only.
    pub insecure: bool,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// Total timeout of one API request, including reading its body.
    pub request_timeout: Duration,
    /// Total timeout of one blob download or upload.
    pub blob_timeout: Duration,
    /// Cap on a buffered response body, in bytes.
    pub max_body_bytes: u64,
    /// Retries after the first attempt, on connection errors, timeouts, 5xx and 429.
    pub max_retries: u32,
    /// Backoff before the first retry; it doubles on every further retry, with random jitter
    /// that shortens each delay by up to half.
    pub retry_base_delay: Duration,
    /// Cap on one backoff delay and on a `Retry-After` wait.
    pub retry_max_delay: Duration,
    /// Page size (`n`) requested when listing tags; `None` lets the registry choose. Pages are
    /// followed through the `Link` header either way.
    pub tags_page_size: Option<u32>,
}

impl RegistryConfig {
    /// Creates the default configuration for `host`: HTTPS, anonymous, the `DEFAULT_*` limits,
    /// and retries from 500 ms up to 30 s.
    pub fn new(host: impl Into<String>) -> Self {
        RegistryConfig {
            host: host.into(),
            insecure: false,
            credentials: Credentials::Anonymous,
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            blob_timeout: Duration::from_secs(DEFAULT_BLOB_TIMEOUT_SECS),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            tags_page_size: None,
        }
    }
}
