//! The registry client: request execution with retries and authentication, and the OCI
//! Distribution operations built on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use super::auth::{parse_challenge, Challenge, Credentials};
use super::error::RegistryError;
use super::headers::{next_link, parse_retry_after};
use super::manifest::{
    is_digest, is_supported_media_type, media_type_field, Descriptor, Manifest, MANIFEST_ACCEPT,
};
use super::{RegistryConfig, DOCKER_HUB_HOST};

/// Maximum number of tag list pages followed, so a registry that links a page to itself cannot
/// keep the client busy forever.
const MAX_TAG_PAGES: usize = 10_000;

/// Lifetime assumed for a bearer token whose response has no `expires_in`, in seconds. The
/// token specification of the Docker distribution project sets this default.
const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 60;

/// Bytes of an error response read to extract the registry's error message.
const ERROR_BODY_LIMIT: u64 = 4096;

/// A client for one registry. It is `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct RegistryClient {
    /// `HOST[:PORT]` after Docker Hub aliases are resolved.
    host: String,
    /// `http://HOST[:PORT]` or `https://HOST[:PORT]`.
    base_url: String,
    config: RegistryConfig,
    http: reqwest::Client,
    auth: Mutex<AuthState>,
}

#[derive(Debug, Default)]
struct AuthState {
    /// The token endpoint, once a bearer challenge has named it.
    bearer: Option<BearerEndpoint>,
    /// Tokens by scope list (`repository:a:pull repository:b:pull,push`).
    tokens: HashMap<String, CachedToken>,
    /// The registry asked for basic authentication.
    basic: bool,
}

#[derive(Debug, Clone)]
struct BearerEndpoint {
    realm: String,
    service: Option<String>,
}

struct CachedToken {
    token: String,
    expires_at: Instant,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedToken(<redacted>)")
    }
}

/// The way a blob reached the target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobTransfer {
    /// The target repository already had it.
    Present,
    /// Mounted from the source repository on the same registry, without transferring data.
    Mounted,
    /// Downloaded from the source and uploaded to the target.
    Uploaded,
}

/// The purpose of one request: the object named in errors and logs, the token scopes it needs,
/// and the permission named when the registry returns 403.
struct Call {
    object: String,
    scopes: Vec<String>,
    action: &'static str,
}

impl Call {
    fn pull(object: String, repository: &str) -> Self {
        Call {
            object,
            scopes: vec![format!("repository:{repository}:pull")],
            action: "pull",
        }
    }

    fn push(object: String, repository: &str) -> Self {
        Call {
            object,
            scopes: vec![format!("repository:{repository}:pull,push")],
            action: "push",
        }
    }

    fn delete(object: String, repository: &str) -> Self {
        Call {
            object,
            scopes: vec![format!("repository:{repository}:delete")],
            action: "delete",
        }
    }
}

/// A failed attempt: a transport error, or a response that should be retried.
enum Failure {
    Transport(reqwest::Error),
    Retryable(Response),
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl RegistryClient {
    /// Creates a client from `config`. Fails on an invalid host or when the HTTP client cannot
    /// be built.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let host = normalize_registry_host(&config.host)?;
        let scheme = if config.insecure { "http" } else { "https" };
        let base_url = format!("{scheme}://{host}");
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("stagger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                RegistryError::Config(format!("failed to build the HTTP client: {error}"))
            })?;
        Ok(RegistryClient {
            host,
            base_url,
            config,
            http,
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// Returns the registry `HOST[:PORT]` this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Returns the repository path used on this registry: on Docker Hub a single-segment name
    /// such as `ubuntu` becomes `library/ubuntu`; elsewhere the name is unchanged.
    pub fn repository_path(&self, repository: &str) -> String {
        if self.host == DOCKER_HUB_HOST && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        }
    }

    /// Lists every tag of `repository`, following `Link: <...>; rel="next"` pagination.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let repository = self.repository_path(repository);
        let mut url = format!("{}/v2/{repository}/tags/list", self.base_url);
        if let Some(size) = self.config.tags_page_size {
            url.push_str(&format!("?n={size}"));
        }

        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let call = Call::pull(format!("tag list of {repository}"), &repository);
            let response = self
                .send(
                    &call,
                    Method::GET,
                    &url,
                    self.config.request_timeout,
                    true,
                    &|request| request,
                )
                .await?;
            let response = self
                .expect_status(&call, response, &[StatusCode::OK])
                .await?;
            let next = response
                .headers()
                .get("link")
                .and_then(|value| value.to_str().ok())
                .and_then(next_link);
            let body = self.read_body(&call, response).await?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|error| self.invalid(&call, format!("invalid tag list JSON: {error}")))?;
            tags.extend(page.tags.unwrap_or_default());

            match next {
                Some(target) => url = self.resolve_url(&call, &target)?,
                None => return Ok(tags),
            }
        }
        Err(self.invalid(
            &Call::pull(format!("tag list of {repository}"), &repository),
            format!("more than {MAX_TAG_PAGES} pages of tags"),
        ))
    }

    /// Resolves a tag (or digest) to the `sha256:...` digest of its manifest.
    ///
    /// Sends `HEAD` with every supported manifest type in `Accept` and reads
    /// `Docker-Content-Digest`; when the registry omits that header, fetches the manifest and
    /// hashes its bytes.
    pub async fn resolve_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<String, RegistryError> {
        let repository = self.repository_path(repository);
        let call = Call::pull(manifest_object(&repository, reference), &repository);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
        let response = self
            .send(
                &call,
                Method::HEAD,
                &url,
                self.config.request_timeout,
                true,
                &|request| request.header(ACCEPT, MANIFEST_ACCEPT),
            )
            .await?;
        let response = self
            .expect_status(&call, response, &[StatusCode::OK])
            .await?;

        if let Some(digest) = header_text(response.headers(), "docker-content-digest") {
            return Ok(digest);
        }
        let manifest = self.get_manifest(&repository, reference).await?;
        Ok(manifest.digest)
    }

    /// Fetches a manifest by tag or digest, verbatim, with its media type and digest.
    ///
    /// A manifest fetched by digest is checked against that digest.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let repository = self.repository_path(repository);
        let call = Call::pull(manifest_object(&repository, reference), &repository);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
        let response = self
            .send(
                &call,
                Method::GET,
                &url,
                self.config.request_timeout,
                true,
                &|request| request.header(ACCEPT, MANIFEST_ACCEPT),
            )
            .await?;
        let response = self
            .expect_status(&call, response, &[StatusCode::OK])
            .await?;

        let content_type = header_text(response.headers(), CONTENT_TYPE.as_str()).map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        });
        let announced_digest = header_text(response.headers(), "docker-content-digest");
        let bytes = self.read_body(&call, response).await?;

        let media_type = match content_type.filter(|value| is_supported_media_type(value)) {
            Some(value) => value,
            None => media_type_field(&bytes).ok_or_else(|| {
                self.invalid(&call, "the manifest has no known media type".to_string())
            })?,
        };
        if !is_supported_media_type(&media_type) {
            return Err(self.invalid(
                &call,
                format!("unsupported manifest media type \"{media_type}\""),
            ));
        }

        let manifest = Manifest::new(bytes, media_type);
        let expected = if is_digest(reference) {
            Some(reference.to_string())
        } else {
            announced_digest.filter(|digest| digest.starts_with("sha256:"))
        };
        if let Some(expected) = expected {
            if expected != manifest.digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.host.clone(),
                    object: call.object,
                    expected,
                    actual: manifest.digest,
                });
            }
        }
        Ok(manifest)
    }

    /// Uploads `manifest` under `reference` (a tag, or its own digest) and returns the digest
    /// the registry stored it under.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<String, RegistryError> {
        let repository = self.repository_path(repository);
        let call = Call::push(manifest_object(&repository, reference), &repository);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
        let response = self
            .send(
                &call,
                Method::PUT,
                &url,
                self.config.request_timeout,
                true,
                &|request| {
                    request
                        .header(CONTENT_TYPE, manifest.media_type.as_str())
                        .body(manifest.bytes.clone())
                },
            )
            .await?;
        let response = self
            .expect_status(&call, response, &[StatusCode::CREATED, StatusCode::OK])
            .await?;

        let stored = header_text(response.headers(), "docker-content-digest")
            .unwrap_or_else(|| manifest.digest.clone());
        if stored != manifest.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.host.clone(),
                object: call.object,
                expected: manifest.digest.clone(),
                actual: stored,
            });
        }
        Ok(stored)
    }

    /// Deletes the manifest that `reference` (a tag or a digest) points to.
    ///
    /// Registries delete manifests by digest, so a tag is resolved first; every other tag that
    /// points to the same manifest disappears with it.
    pub async fn delete_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(), RegistryError> {
        let digest = if is_digest(reference) {
            reference.to_string()
        } else {
            self.resolve_digest(repository, reference).await?
        };
        let repository = self.repository_path(repository);
        let call = Call::delete(manifest_object(&repository, &digest), &repository);
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.base_url);
        let response = self
            .send(
                &call,
                Method::DELETE,
                &url,
                self.config.request_timeout,
                true,
                &|request| request,
            )
            .await?;
        self.expect_status(&call, response, &[StatusCode::ACCEPTED, StatusCode::OK])
            .await?;
        Ok(())
    }

    /// Reports whether `repository` has the blob `digest` (`HEAD /v2/<name>/blobs/<digest>`).
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, RegistryError> {
        let repository = self.repository_path(repository);
        let call = Call::pull(format!("blob {repository}@{digest}"), &repository);
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base_url);
        let response = self
            .send(
                &call,
                Method::HEAD,
                &url,
                self.config.request_timeout,
                true,
                &|request| request,
            )
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&call, response).await),
        }
    }

    /// Mounts the blob `digest` from repository `from` into `repository` on this registry.
    ///
    /// Returns `true` when the registry mounted it (201) and `false` when it answered 202 by
    /// opening an upload instead, which happens when it cannot or will not mount (for example
    /// when the credentials cannot read `from`). That upload session is cancelled, so the caller
    /// then uploads the blob itself.
    pub async fn mount_blob(
        &self,
        repository: &str,
        digest: &str,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let repository = self.repository_path(repository);
        let from = self.repository_path(from);
        let call = Call {
            object: format!("mount of blob {digest} from {from} into {repository}"),
            scopes: vec![
                format!("repository:{repository}:pull,push"),
                format!("repository:{from}:pull"),
            ],
            action: "push",
        };
        let url = format!(
            "{}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}",
            self.base_url
        );
        let response = self
            .send(
                &call,
                Method::POST,
                &url,
                self.config.request_timeout,
                true,
                &|request| request.header(CONTENT_LENGTH, "0"),
            )
            .await?;
        let response = self
            .expect_status(
                &call,
                response,
                &[StatusCode::CREATED, StatusCode::ACCEPTED],
            )
            .await?;
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }

        if let Some(location) = header_text(response.headers(), LOCATION.as_str()) {
            self.cancel_upload(&call, &location).await;
        }
        Ok(false)
    }

    /// Brings the blob `descriptor` from `source_repository` on `source` into `repository` on
    /// this registry: nothing if it is already there, a cross-repository mount when both are
    /// the same registry, else a streamed download and monolithic upload.
    ///
    /// A streamed transfer is retried as a whole on connection errors, timeouts and 5xx.
    pub async fn copy_blob_from(
        &self,
        source: &RegistryClient,
        source_repository: &str,
        repository: &str,
        descriptor: &Descriptor,
    ) -> Result<BlobTransfer, RegistryError> {
        if self.blob_exists(repository, &descriptor.digest).await? {
            return Ok(BlobTransfer::Present);
        }
        if source.base_url == self.base_url
            && self
                .mount_blob(repository, &descriptor.digest, source_repository)
                .await?
        {
            return Ok(BlobTransfer::Mounted);
        }

        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .stream_blob(source, source_repository, repository, descriptor)
                .await
            {
                Ok(()) => return Ok(BlobTransfer::Uploaded),
                Err(error) if attempt <= self.config.max_retries && is_retryable(&error) => {
                    let delay = self.backoff(attempt);
                    tracing::warn!(
                        registry = %self.host,
                        blob = %descriptor.digest,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "retrying blob transfer"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Downloads one blob from `source` and uploads it to this registry in one streamed `PUT`.
    async fn stream_blob(
        &self,
        source: &RegistryClient,
        source_repository: &str,
        repository: &str,
        descriptor: &Descriptor,
    ) -> Result<(), RegistryError> {
        let digest = &descriptor.digest;
        let source_path = source.repository_path(source_repository);
        let get_call = Call::pull(format!("blob {source_path}@{digest}"), &source_path);
        let get_url = format!("{}/v2/{source_path}/blobs/{digest}", source.base_url);
        let download = source
            .send(
                &get_call,
                Method::GET,
                &get_url,
                source.config.blob_timeout,
                true,
                &|request| request,
            )
            .await?;
        let download = source
            .expect_status(&get_call, download, &[StatusCode::OK])
            .await?;
        if let Some(length) = download.content_length() {
            if length != descriptor.size {
                return Err(source.invalid(
                    &get_call,
                    format!(
                        "blob is {length} bytes but its descriptor says {}",
                        descriptor.size
                    ),
                ));
            }
        }

        let location = self.start_upload(repository).await?;
        let target_path = self.repository_path(repository);
        let put_call = Call::push(
            format!("upload of blob {digest} to {target_path}"),
            &target_path,
        );
        let separator = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{separator}digest={digest}");
        let body = Mutex::new(Some(reqwest::Body::wrap_stream(download.bytes_stream())));
        let size = descriptor.size;
        let response = self
            .send(
                &put_call,
                Method::PUT,
                &put_url,
                self.config.blob_timeout,
                false,
                &|request| {
                    let request = request
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size);
                    match body.lock().map(|mut slot| slot.take()) {
                        Ok(Some(body)) => request.body(body),
                        _ => request,
                    }
                },
            )
            .await?;
        self.expect_status(&put_call, response, &[StatusCode::CREATED])
            .await?;
        Ok(())
    }

    /// Opens a blob upload session and returns its absolute URL.
    async fn start_upload(&self, repository: &str) -> Result<String, RegistryError> {
        let repository = self.repository_path(repository);
        let call = Call::push(format!("blob upload to {repository}"), &repository);
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base_url);
        let response = self
            .send(
                &call,
                Method::POST,
                &url,
                self.config.request_timeout,
                true,
                &|request| request.header(CONTENT_LENGTH, "0"),
            )
            .await?;
        let response = self
            .expect_status(&call, response, &[StatusCode::ACCEPTED])
            .await?;
        let location = header_text(response.headers(), LOCATION.as_str()).ok_or_else(|| {
            self.invalid(&call, "202 response without a Location header".to_string())
        })?;
        self.resolve_url(&call, &location)
    }

    /// Cancels an upload session that a mount request opened; failures are only logged because
    /// the registry expires abandoned sessions on its own.
    async fn cancel_upload(&self, call: &Call, location: &str) {
        let Ok(url) = self.resolve_url(call, location) else {
            return;
        };
        let result = self
            .send(
                call,
                Method::DELETE,
                &url,
                self.config.request_timeout,
                false,
                &|request| request,
            )
            .await;
        if let Err(error) = result {
            tracing::warn!(registry = %self.host, object = %call.object, error = %error,
                "failed to cancel the upload session opened by a mount request");
        }
    }

    /// Sends one request, retrying transport errors, 5xx and 429 (when `retry` is set) and
    /// authenticating once after a `401` challenge.
    async fn send(
        &self,
        call: &Call,
        method: Method,
        url: &str,
        timeout: Duration,
        retry: bool,
        customize: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let max_retries = if retry { self.config.max_retries } else { 0 };
        let mut attempt: u32 = 0;
        let mut challenged = false;

        loop {
            attempt += 1;
            self.prepare_token(call, url).await?;
            let request = self
                .authorize(self.http.request(method.clone(), url), call, url)
                .timeout(timeout);
            let request = customize(request);

            let failure = match request.send().await {
                Err(error) => Failure::Transport(error),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !challenged => {
                    challenged = true;
                    if self.answer_challenge(call, &response).await? {
                        attempt -= 1;
                        continue;
                    }
                    return Ok(response);
                }
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS
                        || response.status().is_server_error() =>
                {
                    Failure::Retryable(response)
                }
                Ok(response) => return Ok(response),
            };

            if attempt > max_retries {
                return match failure {
                    Failure::Transport(error) => Err(self.transport_error(call, error, timeout)),
                    Failure::Retryable(response)
                        if response.status() == StatusCode::TOO_MANY_REQUESTS =>
                    {
                        Err(RegistryError::RateLimited {
                            registry: self.host.clone(),
                            object: call.object.clone(),
                            attempts: attempt,
                        })
                    }
                    Failure::Retryable(response) => Ok(response),
                };
            }

            let (delay, reason) = match &failure {
                Failure::Transport(error) => (self.backoff(attempt), describe(error)),
                Failure::Retryable(response) => {
                    let status = response.status();
                    let delay = if status == StatusCode::TOO_MANY_REQUESTS {
                        header_text(response.headers(), "retry-after")
                            .and_then(|value| parse_retry_after(&value, SystemTime::now()))
                            .map(|wait| wait.min(self.config.retry_max_delay))
                            .unwrap_or_else(|| self.backoff(attempt))
                    } else {
                        self.backoff(attempt)
                    };
                    (delay, format!("HTTP {}", status.as_u16()))
                }
            };
            tracing::warn!(
                registry = %self.host,
                object = %call.object,
                attempt,
                delay_ms = delay.as_millis() as u64,
                reason = %reason,
                "retrying registry request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Adds the credentials the registry asked for: a cached bearer token for the call's scopes,
    /// or basic authentication. Only requests to this registry get them.
    fn authorize(&self, request: RequestBuilder, call: &Call, url: &str) -> RequestBuilder {
        if !self.is_own_url(url) {
            return request;
        }
        let state = self
            .auth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.basic {
            if let Credentials::Basic { username, password } = &self.config.credentials {
                return request.basic_auth(username, Some(password));
            }
        }
        match state.tokens.get(&call.scopes.join(" ")) {
            Some(cached) if cached.expires_at > Instant::now() => {
                request.bearer_auth(&cached.token)
            }
            _ => request,
        }
    }

    /// Fetches a token ahead of the request when the token endpoint is already known and no
    /// valid token for the call's scopes is cached, which saves one `401` round trip.
    async fn prepare_token(&self, call: &Call, url: &str) -> Result<(), RegistryError> {
        if !self.is_own_url(url) {
            return Ok(());
        }
        let endpoint = {
            let state = self
                .auth
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = call.scopes.join(" ");
            let valid = state
                .tokens
                .get(&key)
                .is_some_and(|cached| cached.expires_at > Instant::now());
            if valid || state.basic {
                return Ok(());
            }
            state.bearer.clone()
        };
        if let Some(endpoint) = endpoint {
            self.fetch_token(call, &endpoint, None).await?;
        }
        Ok(())
    }

    /// Reacts to a `401`: fetches a bearer token, or switches to basic authentication. Returns
    /// whether the request is worth sending again.
    async fn answer_challenge(
        &self,
        call: &Call,
        response: &Response,
    ) -> Result<bool, RegistryError> {
        let challenge = header_text(response.headers(), WWW_AUTHENTICATE.as_str())
            .and_then(|value| parse_challenge(&value));
        match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let endpoint = BearerEndpoint { realm, service };
                self.auth
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .bearer = Some(endpoint.clone());
                self.fetch_token(call, &endpoint, scope.as_deref()).await?;
                Ok(true)
            }
            Some(Challenge::Basic) => {
                let has_credentials = matches!(self.config.credentials, Credentials::Basic { .. });
                let mut state = self
                    .auth
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !has_credentials || state.basic {
                    return Ok(false);
                }
                state.basic = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gets a token for the call's scopes (plus the challenge's scope, if it names another) and
    /// caches it under the call's scopes.
    async fn fetch_token(
        &self,
        call: &Call,
        endpoint: &BearerEndpoint,
        challenge_scope: Option<&str>,
    ) -> Result<(), RegistryError> {
        let token_error = |reason: String| RegistryError::Token {
            registry: self.host.clone(),
            realm: endpoint.realm.clone(),
            reason,
        };

        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &endpoint.service {
            query.push(("service", service));
        }
        for scope in &call.scopes {
            query.push(("scope", scope));
        }
        if let Some(extra) = challenge_scope.filter(|extra| !call.scopes.iter().any(|s| s == extra))
        {
            query.push(("scope", extra));
        }

        let build = || {
            let request = self
                .http
                .get(&endpoint.realm)
                .query(&query)
                .timeout(self.config.request_timeout);
            match &self.config.credentials {
                Credentials::Basic { username, password } => {
                    request.basic_auth(username, Some(password))
                }
                Credentials::Anonymous => request,
            }
        };

        // The token endpoint is often a different service from the registry, so it gets the
        // same retries for transport errors and 5xx.
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let failure = match build().send().await {
                Ok(response) if !response.status().is_server_error() => break response,
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err(error) => describe(&error),
            };
            if attempt > self.config.max_retries {
                return Err(token_error(failure));
            }
            let delay = self.backoff(attempt);
            tracing::warn!(
                registry = %self.host,
                realm = %endpoint.realm,
                attempt,
                delay_ms = delay.as_millis() as u64,
                reason = %failure,
                "retrying token request"
            );
            tokio::time::sleep(delay).await;
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.host.clone(),
                object: call.object.clone(),
            });
        }
        if !status.is_success() {
            return Err(token_error(format!("HTTP {}", status.as_u16())));
        }

        let body = self
            .read_body(call, response)
            .await
            .map_err(|error| token_error(error.to_string()))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|error| token_error(format!("invalid token JSON: {error}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| token_error("the response has no token".to_string()))?;
        let lifetime = parsed.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS);
        // Renew ten seconds early so a token never expires between the check and its use.
        let expires_at = Instant::now() + Duration::from_secs(lifetime.saturating_sub(10).max(1));

        let mut state = self
            .auth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .tokens
            .insert(call.scopes.join(" "), CachedToken { token, expires_at });
        Ok(())
    }

    /// Returns the response when its status is one of `expected`, else the matching error.
    async fn expect_status(
        &self,
        call: &Call,
        response: Response,
        expected: &[StatusCode],
    ) -> Result<Response, RegistryError> {
        if expected.contains(&response.status()) {
            Ok(response)
        } else {
            Err(self.status_error(call, response).await)
        }
    }

    /// Turns an unexpected response into an error, with the registry's error code and message
    /// from an OCI error body when there is one.
    async fn status_error(&self, call: &Call, response: Response) -> RegistryError {
        let registry = self.host.clone();
        let object = call.object.clone();
        match response.status() {
            StatusCode::NOT_FOUND => return RegistryError::NotFound { registry, object },
            StatusCode::UNAUTHORIZED => return RegistryError::Unauthorized { registry, object },
            StatusCode::FORBIDDEN => {
                return RegistryError::Denied {
                    registry,
                    object,
                    action: call.action.to_string(),
                }
            }
            _ => {}
        }

        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut response = response;
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() as u64 >= ERROR_BODY_LIMIT {
                break;
            }
        }
        RegistryError::Status {
            registry,
            object,
            status,
            message: error_message(&body),
        }
    }

    /// Reads a whole response body, failing once it exceeds `max_body_bytes`.
    async fn read_body(
        &self,
        call: &Call,
        mut response: Response,
    ) -> Result<Vec<u8>, RegistryError> {
        let limit = self.config.max_body_bytes;
        let too_large = || RegistryError::TooLarge {
            registry: self.host.clone(),
            object: call.object.clone(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }

        let mut body = Vec::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|error| self.transport_error(call, error, self.config.request_timeout))?;
            let Some(chunk) = chunk else {
                return Ok(body);
            };
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// Makes a `Location` or `Link` target absolute, rejecting targets on another registry.
    // NOTE: registries that put upload sessions on another host (a storage front end) are
    // rejected here, because this client sends its credentials to its own registry only.
    fn resolve_url(&self, call: &Call, target: &str) -> Result<String, RegistryError> {
        if target.starts_with('/') {
            return Ok(format!("{}{target}", self.base_url));
        }
        if self.is_own_url(target) {
            return Ok(target.to_string());
        }
        Err(self.invalid(
            call,
            format!("the registry sent a link to another host: {target}"),
        ))
    }

    fn is_own_url(&self, url: &str) -> bool {
        url.strip_prefix(&self.base_url)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let full = self
            .config
            .retry_base_delay
            .saturating_mul(1 << exponent)
            .min(self.config.retry_max_delay);
        let jitter: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        full.mul_f64(jitter)
    }

    fn transport_error(
        &self,
        call: &Call,
        error: reqwest::Error,
        timeout: Duration,
    ) -> RegistryError {
        if error.is_timeout() {
            return RegistryError::TimedOut {
                registry: self.host.clone(),
                object: call.object.clone(),
                timeout,
            };
        }
        RegistryError::Connect {
            registry: self.host.clone(),
            object: call.object.clone(),
            reason: describe(&error),
        }
    }

    fn invalid(&self, call: &Call, reason: String) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.host.clone(),
            object: call.object.clone(),
            reason,
        }
    }
}

/// Checks a `HOST[:PORT]` and maps Docker Hub aliases to [`DOCKER_HUB_HOST`].
fn normalize_registry_host(host: &str) -> Result<String, RegistryError> {
    let host = host.trim();
    if host.is_empty() {
        return Ok(DOCKER_HUB_HOST.to_string());
    }
    if host.contains("://") || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(RegistryError::Config(format!(
            "invalid registry host \"{host}\": give HOST[:PORT] without a scheme or path, such as \
             registry.example.com or 127.0.0.1:5000"
        )));
    }
    let lower = host.to_ascii_lowercase();
    if lower == "docker.io" || lower == "index.docker.io" {
        return Ok(DOCKER_HUB_HOST.to_string());
    }
    Ok(lower)
}

fn manifest_object(repository: &str, reference: &str) -> String {
    if is_digest(reference) {
        format!("manifest {repository}@{reference}")
    } else {
        format!("manifest {repository}:{reference}")
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Describes a transport error with its causes, without the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        let part = current.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = current.source();
    }
    text
}

/// Extracts `CODE: message` from an OCI error body (`{"errors":[{"code","message"}]}`), or the
/// start of a non-JSON body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }

    if let Ok(parsed) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|entry| {
                format!(
                    "{}: {}",
                    entry.code.as_deref().unwrap_or("UNKNOWN"),
                    entry.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(200).collect();
    if text.is_empty() {
        "no error message".to_string()
    } else {
        text
    }
}

/// Reports whether a failed blob transfer is worth repeating.
fn is_retryable(error: &RegistryError) -> bool {
    match error {
        RegistryError::Connect { .. } | RegistryError::TimedOut { .. } => true,
        RegistryError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}
