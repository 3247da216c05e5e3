//! The registry source: lists each service's repository through the OCI Distribution API.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::{self, RequestLimits, ServiceConfig};
use crate::registry::{Credentials, RegistryClient, RegistryConfig, DOCKER_HUB_HOST};
use crate::source::{Listing, PollResult, SourceError};

/// An OCI registry holding one repository per service.
pub struct RegistrySource {
    client: RegistryClient,
    host: String,
}

impl RegistrySource {
    /// Creates the source and its client; credentials come from the config, else from the
    /// Docker `config.json`, else none.
    pub fn new(
        host: &str,
        insecure: bool,
        credentials: &config::Credentials,
        limits: &RequestLimits,
    ) -> anyhow::Result<Self> {
        let credentials = match (&credentials.username, &credentials.password) {
            (Some(username), Some(password)) => Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            _ => {
                let found = match &credentials.docker_config {
                    Some(path) => Credentials::from_docker_config_file(path, host)?,
                    None => Credentials::from_docker_config(host)?,
                };
                found.unwrap_or_default()
            }
        };

        let mut settings = RegistryConfig::new(host);
        settings.insecure = insecure;
        settings.credentials = credentials;
        settings.connect_timeout = limits.connect_timeout;
        settings.request_timeout = limits.timeout;
        settings.max_body_bytes = limits.max_response_bytes;
        settings.max_retries = limits.retries;
        settings.retry_base_delay = limits.retry_backoff;
        settings.retry_max_delay = Duration::from_secs(60);

        let client = RegistryClient::new(settings)?;
        Ok(RegistrySource {
            host: client.host().to_string(),
            client,
        })
    }

    /// Returns a short description for logs.
    pub fn describe(&self) -> String {
        format!("registry {}", self.host)
    }

    /// Returns the reference a node pulls for `repository`: `host/repository`, or the bare
    /// repository on Docker Hub.
    pub fn image_of(&self, repository: &str) -> String {
        if self.host == DOCKER_HUB_HOST {
            repository.to_string()
        } else {
            format!("{}/{repository}", self.host)
        }
    }

    /// Lists the tags of every service's repository, concurrently.
    pub async fn poll(&self, services: &BTreeMap<String, ServiceConfig>) -> PollResult {
        let requests = services.values().map(|service| async move {
            let result = self
                .client
                .list_tags(&service.image)
                .await
                .map(|tags| Listing {
                    image: self.image_of(&service.image),
                    tags,
                    digests: BTreeMap::new(),
                })
                .map_err(|error| SourceError(error.to_string()));
            (service.name.clone(), result)
        });
        join_all(requests).await.into_iter().collect()
    }

    /// Resolves `tag` of the service's repository to its manifest digest.
    pub async fn resolve_digest(
        &self,
        service: &ServiceConfig,
        tag: &str,
    ) -> Result<String, SourceError> {
        self.client
            .resolve_digest(&service.image, tag)
            .await
            .map_err(|error| SourceError(error.to_string()))
    }
}
