//! The descriptor source: a JSON document listing one image per service, from a file or a URL.
//!
//! The document has the shape `{"ImageVersions": {"<service>": {"image": "<repo>:<tag>"}}}`;
//! every other field is ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{DescriptorLocation, RequestLimits, ServiceConfig};
use crate::source::{http, split_reference, Listing, PollResult, SourceError};

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "ImageVersions")]
    image_versions: BTreeMap<String, DescriptorEntry>,
}

#[derive(Debug, Deserialize)]
struct DescriptorEntry {
    image: String,
}

/// A deployment descriptor at a file path or an http(s) URL.
pub struct DescriptorSource {
    location: DescriptorLocation,
    limits: RequestLimits,
    client: reqwest::Client,
}

impl DescriptorSource {
    /// Creates the source; nothing is read until the first poll.
    pub fn new(location: DescriptorLocation, limits: RequestLimits) -> anyhow::Result<Self> {
        let client = http::client(&limits)?;
        Ok(DescriptorSource {
            location,
            limits,
            client,
        })
    }

    /// Returns a short description for logs.
    pub fn describe(&self) -> String {
        match &self.location {
            DescriptorLocation::File(path) => format!("descriptor {}", path.display()),
            DescriptorLocation::Url(url) => format!("descriptor {url}"),
        }
    }

    /// Reads the descriptor and returns one listing per configured service.
    ///
    /// A failure to read or parse the document fails every service. A service missing from
    /// the document gets an empty listing, which withdraws its pending upgrade.
    pub async fn poll(&self, services: &BTreeMap<String, ServiceConfig>) -> PollResult {
        match self.read().await {
            Ok(descriptor) => services
                .keys()
                .map(|name| (name.clone(), Ok(listing_for(&descriptor, name))))
                .collect(),
            Err(error) => services
                .keys()
                .map(|name| (name.clone(), Err(error.clone())))
                .collect(),
        }
    }

    async fn read(&self) -> Result<Descriptor, SourceError> {
        let (bytes, origin) = match &self.location {
            DescriptorLocation::File(path) => {
                // A small local file: a plain read keeps the agent free of blocking-pool hand-offs.
                let bytes = std::fs::read(path).map_err(|error| {
                    SourceError(format!(
                        "failed to read descriptor {}: {error}",
                        path.display()
                    ))
                })?;
                if bytes.len() as u64 > self.limits.max_response_bytes {
                    return Err(SourceError(format!(
                        "descriptor {} is larger than {} bytes; raise source.max_response_bytes if it is legitimate",
                        path.display(),
                        self.limits.max_response_bytes
                    )));
                }
                (bytes, path.display().to_string())
            }
            DescriptorLocation::Url(url) => (
                http::get_with_retries(&self.client, url, &self.limits).await?,
                url.clone(),
            ),
        };
        parse(&bytes).map_err(|error| SourceError(format!("invalid descriptor {origin}: {error}")))
    }
}

fn parse(bytes: &[u8]) -> Result<Descriptor, String> {
    serde_json::from_slice(bytes).map_err(|error| {
        format!("{error}; expected {{\"ImageVersions\": {{\"<service>\": {{\"image\": \"<repo>:<tag>\"}}}}}}")
    })
}

fn listing_for(descriptor: &Descriptor, service: &str) -> Listing {
    let Some(entry) = descriptor.image_versions.get(service) else {
        return Listing::default();
    };
    match split_reference(&entry.image) {
        Some((image, tag, digest)) => {
            let mut digests = BTreeMap::new();
            if let Some(digest) = digest {
                digests.insert(tag.clone(), digest);
            }
            Listing {
                image,
                tags: vec![tag],
                digests,
            }
        }
        // An image without a tag lists nothing a node could roll out.
        None => Listing {
            image: entry.image.clone(),
            tags: Vec::new(),
            digests: BTreeMap::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ignores_other_fields() {
        let text =
            br#"{"ImageVersions": {"node": {"image": "orbsnetwork/node:v1.2.3", "Pull": true}},
                        "VirtualChains": {}}"#;
        let descriptor = parse(text).unwrap();
        let listing = listing_for(&descriptor, "node");
        assert_eq!(listing.image, "orbsnetwork/node");
        assert_eq!(listing.tags, vec!["v1.2.3".to_string()]);
    }

    #[test]
    fn missing_service_lists_nothing() {
        let descriptor = parse(br#"{"ImageVersions": {}}"#).unwrap();
        assert_eq!(listing_for(&descriptor, "node"), Listing::default());
    }

    #[test]
    fn digest_is_kept_by_tag() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let text =
            format!(r#"{{"ImageVersions": {{"node": {{"image": "org/node:v1.0.0@{digest}"}}}}}}"#);
        let listing = listing_for(&parse(text.as_bytes()).unwrap(), "node");
        assert_eq!(listing.digests.get("v1.0.0"), Some(&digest));
    }

    #[test]
    fn wrong_shape_explains_expected() {
        let error = parse(br#"{"images": []}"#).unwrap_err();
        assert!(error.contains("missing field `ImageVersions`"), "{error}");
        assert!(error.contains("expected {\"ImageVersions\""), "{error}");
    }
}
