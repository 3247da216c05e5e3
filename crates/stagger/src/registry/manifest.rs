//! Manifest media types, raw manifests and the descriptors they reference.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (a multi-platform image).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (a multi-platform image).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header for manifest requests: every manifest and index type this client handles.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest exactly as the registry stores it.
///
/// The bytes are kept verbatim because the digest is the SHA-256 of these bytes: re-serializing
/// a parsed manifest could change the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

impl Manifest {
    /// Creates a manifest from its bytes and media type, computing the digest.
    pub fn new(bytes: Vec<u8>, media_type: impl Into<String>) -> Self {
        let digest = sha256_digest(&bytes);
        Manifest {
            bytes,
            media_type: media_type.into(),
            digest,
        }
    }

    /// Reports whether this is an image index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// Parses the references of this manifest: the child manifests of an index, or the config
    /// and layer blobs of an image manifest.
    pub fn references(&self) -> Result<References, String> {
        let parsed: ManifestJson = serde_json::from_slice(&self.bytes)
            .map_err(|error| format!("invalid manifest JSON: {error}"))?;
        if parsed.schema_version != Some(2) {
            return Err(format!(
                "unsupported manifest schema version {:?}: only schema 2 is supported",
                parsed.schema_version
            ));
        }

        if self.is_index() {
            return Ok(References::Index(parsed.manifests));
        }

        let config = parsed
            .config
            .ok_or_else(|| "image manifest without a \"config\" descriptor".to_string())?;
        let mut blobs = vec![config];
        blobs.extend(parsed.layers);
        Ok(References::Image(blobs))
    }
}

/// The content a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum References {
    /// The child manifests of an image index.
    Index(Vec<Descriptor>),
    /// The config blob followed by the layer blobs of an image manifest.
    Image(Vec<Descriptor>),
}

/// A content descriptor: media type, digest and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: Option<u64>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Reports whether `media_type` is one of the four manifest types this client copies.
pub fn is_supported_media_type(media_type: &str) -> bool {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .contains(&media_type)
}

/// Reads the `mediaType` field of a manifest, for registries that send a generic content type.
pub fn media_type_field(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct MediaTypeOnly {
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaTypeOnly>(bytes)
        .ok()?
        .media_type
}

/// Computes `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Reports whether `reference` is a digest (`algorithm:hex`) rather than a tag.
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn image_references_config_first() {
        let bytes =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"c","digest":"sha256:aa","size":2},
            "layers":[{"mediaType":"l","digest":"sha256:bb","size":3}]}"#;
        let manifest = Manifest::new(bytes.to_vec(), OCI_MANIFEST);
        let References::Image(blobs) = manifest.references().unwrap() else {
            panic!("expected image references");
        };
        let digests: Vec<&str> = blobs.iter().map(|blob| blob.digest.as_str()).collect();
        assert_eq!(digests, ["sha256:aa", "sha256:bb"]);
    }

    #[test]
    fn index_references_children() {
        let bytes = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":9}]}"#;
        let manifest = Manifest::new(bytes.to_vec(), OCI_INDEX);
        let References::Index(children) = manifest.references().unwrap() else {
            panic!("expected index references");
        };
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].digest, "sha256:cc");
    }

    #[test]
    fn schema_one_rejected() {
        let manifest = Manifest::new(br#"{"schemaVersion":1}"#.to_vec(), DOCKER_MANIFEST);
        let message = manifest.references().unwrap_err();
        assert!(message.contains("schema version"), "{message}");
    }

    #[test]
    fn media_type_field_read() {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#;
        assert_eq!(media_type_field(bytes).as_deref(), Some(OCI_INDEX));
        assert_eq!(media_type_field(b"{}"), None);
    }
}
