//! Sources: where the agent reads the releases published for each service.

pub mod descriptor;
pub mod http;
pub mod registry;

use std::collections::BTreeMap;

use crate::config::{ServiceConfig, SourceConfig};

/// The tags a source listed for one service in one poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The image repository the tags belong to, such as `orbsnetwork/node`.
    pub image: String,
    /// Every tag as listed, release tags or not.
    pub tags: Vec<String>,
    /// Manifest digests the source already gave, by tag (a descriptor may pin one).
    pub digests: BTreeMap<String, String>,
}

/// A failed request to a source, with what to check.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// The outcome of one poll: per service, its listing or the error that prevented it.
pub type PollResult = BTreeMap<String, Result<Listing, SourceError>>;

/// A configured source.
pub enum Source {
    Descriptor(descriptor::DescriptorSource),
    Registry(Box<registry::RegistrySource>),
}

impl Source {
    /// Creates the source described by `config`.
    pub fn new(config: &SourceConfig) -> anyhow::Result<Source> {
        match config {
            SourceConfig::Descriptor { location, limits } => Ok(Source::Descriptor(
                descriptor::DescriptorSource::new(location.clone(), limits.clone())?,
            )),
            SourceConfig::Registry {
                registry,
                insecure,
                credentials,
                limits,
            } => Ok(Source::Registry(Box::new(registry::RegistrySource::new(
                registry,
                *insecure,
                credentials,
                limits,
            )?))),
        }
    }

    /// Returns a short description for logs, such as `descriptor examples/versions.json`.
    pub fn describe(&self) -> String {
        match self {
            Source::Descriptor(source) => source.describe(),
            Source::Registry(source) => source.describe(),
        }
    }

    /// Lists the tags of every service.
    pub async fn poll(&self, services: &BTreeMap<String, ServiceConfig>) -> PollResult {
        match self {
            Source::Descriptor(source) => source.poll(services).await,
            Source::Registry(source) => source.poll(services).await,
        }
    }

    /// Resolves a tag to its manifest digest, when the source can: the pinned reference that
    /// the executor applies.
    pub async fn resolve_digest(
        &self,
        listing: Option<&Listing>,
        service: &ServiceConfig,
        tag: &str,
    ) -> Result<Option<String>, SourceError> {
        match self {
            Source::Descriptor(_) => {
                Ok(listing.and_then(|listing| listing.digests.get(tag).cloned()))
            }
            Source::Registry(source) => source.resolve_digest(service, tag).await.map(Some),
        }
    }

    /// Reports whether the source can tell a tag's current digest, to detect moved tags.
    pub fn resolves_digests(&self) -> bool {
        matches!(self, Source::Registry(_))
    }
}

/// Splits `IMAGE:TAG[@sha256:DIGEST]` into its parts, accepting any tag text.
///
/// Returns `None` when there is no tag (no `:` after the last `/`).
pub fn split_reference(reference: &str) -> Option<(String, String, Option<String>)> {
    let (without_digest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest.to_string())),
        None => (reference, None),
    };
    let colon = without_digest.rfind(':')?;
    let (image, tag) = (&without_digest[..colon], &without_digest[colon + 1..]);
    if image.is_empty() || tag.is_empty() || tag.contains('/') {
        return None;
    }
    Some((image.to_string(), tag.to_string(), digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reference_with_port_and_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let reference = format!("myhub.com:5000/org/node:v1.0.0@{digest}");
        assert_eq!(
            split_reference(&reference),
            Some((
                "myhub.com:5000/org/node".to_string(),
                "v1.0.0".to_string(),
                Some(digest)
            ))
        );
    }

    #[test]
    fn split_reference_without_tag() {
        assert_eq!(split_reference("myhub.com:5000/org/node"), None);
        assert_eq!(split_reference("node"), None);
    }

    #[test]
    fn split_reference_keeps_staging_tag() {
        let (_, tag, _) = split_reference("org/node:v1.3.13-cc1cc788").unwrap();
        assert_eq!(tag, "v1.3.13-cc1cc788");
    }
}
