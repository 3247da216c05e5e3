//! Errors of the registry client: what failed, on which registry and object, and what to do.

use std::time::Duration;

/// A failed registry operation.
///
/// `registry` is the `HOST[:PORT]` the request went to and `object` names what was requested, such
/// as `manifest orbsnetwork/node:v1.2.3`. No variant ever contains a password or a token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// HTTP 404: the repository, tag, manifest or blob does not exist.
    #[error("{object} not found on {registry}: check the repository and tag names")]
    NotFound { registry: String, object: String },

    /// HTTP 401 after every authentication attempt.
    #[error("unauthorized for {object} on {registry}: check credentials for {registry}")]
    Unauthorized { registry: String, object: String },

    /// HTTP 403: the credentials are valid but lack a permission.
    #[error(
        "access denied for {object} on {registry}: the credentials for {registry} lack the \
         permission to {action}"
    )]
    Denied {
        registry: String,
        object: String,
        action: String,
    },

    /// The connect or total request timeout expired.
    #[error(
        "request for {object} on {registry} timed out after {}s: check that the registry is \
         reachable, or raise the timeout",
        .timeout.as_secs()
    )]
    TimedOut {
        registry: String,
        object: String,
        timeout: Duration,
    },

    /// The TCP or TLS connection failed, after every retry.
    #[error(
        "failed to connect to {registry} for {object}: {reason}; check the host and port, and use \
         plain HTTP (insecure) only for a loopback or test registry"
    )]
    Connect {
        registry: String,
        object: String,
        reason: String,
    },

    /// The response body exceeded the configured cap.
    #[error(
        "response for {object} from {registry} is larger than {limit} bytes: raise the response \
         size limit if this object is expected to be that large"
    )]
    TooLarge {
        registry: String,
        object: String,
        limit: u64,
    },

    /// HTTP 429 on every attempt.
    #[error(
        "rate limited by {registry} for {object} after {attempts} attempts: wait and try again, or \
         authenticate to get a higher limit"
    )]
    RateLimited {
        registry: String,
        object: String,
        attempts: u32,
    },

    /// Any other unexpected HTTP status; `message` is the registry's own error code and text.
    #[error("{registry} returned HTTP {status} for {object}: {message}")]
    Status {
        registry: String,
        object: String,
        status: u16,
        message: String,
    },

    /// The token endpoint named by a `WWW-Authenticate: Bearer` challenge failed.
    #[error("failed to get a token from {realm} for {registry}: {reason}; check credentials for {registry}")]
    Token {
        registry: String,
        realm: String,
        reason: String,
    },

    /// A response the client cannot use: a missing header, invalid JSON, an unknown media type.
    #[error("invalid response from {registry} for {object}: {reason}")]
    InvalidResponse {
        registry: String,
        object: String,
        reason: String,
    },

    /// Content whose SHA-256 does not match the digest it was requested or announced by.
    #[error("digest mismatch for {object} on {registry}: expected {expected}, computed {actual}")]
    DigestMismatch {
        registry: String,
        object: String,
        expected: String,
        actual: String,
    },

    /// A Docker `config.json` that cannot be read or parsed.
    #[error("invalid Docker config {path}: {reason}")]
    DockerConfig { path: String, reason: String },

    /// A client configuration that cannot work, such as an empty host.
    #[error("invalid registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// Reports whether the registry returned 404 for the object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}
