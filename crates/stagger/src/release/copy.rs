//! Copying an image, or an image index with its platform images, between repositories.

use anyhow::{bail, Context};

use crate::registry::{BlobTransfer, Manifest, References, RegistryClient};

/// Counts of what a copy transferred.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopySummary {
    /// Child manifests of an index pushed by digest.
    pub child_manifests: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub blobs_uploaded: usize,
}

/// Repositories and clients of one copy.
pub struct CopyRoute<'a> {
    pub source: &'a RegistryClient,
    pub source_repository: &'a str,
    pub target: &'a RegistryClient,
    pub target_repository: &'a str,
}

/// Copies `manifest` and everything it references to the target, then tags it `tag` there.
///
/// Blobs go first, then the child manifests of an index by digest, and the tag last, so a failure
/// part-way leaves only untagged content that no agent can see. Returns the digest the target
/// stored the tagged manifest under, which equals `manifest.digest`.
pub async fn copy_and_tag(
    route: &CopyRoute<'_>,
    manifest: &Manifest,
    tag: &str,
) -> anyhow::Result<(String, CopySummary)> {
    let mut summary = CopySummary::default();

    match parse_references(manifest)? {
        References::Index(children) => {
            for child in &children {
                let child_manifest = route
                    .source
                    .get_manifest(route.source_repository, &child.digest)
                    .await
                    .with_context(|| {
                        format!("failed to read platform manifest {}", child.digest)
                    })?;
                let References::Image(blobs) = parse_references(&child_manifest)? else {
                    bail!(
                        "image index {} contains another index ({}): nested indexes are not \
                         supported",
                        manifest.digest,
                        child.digest
                    );
                };
                copy_blobs(route, &blobs, &mut summary).await?;
                route
                    .target
                    .put_manifest(route.target_repository, &child.digest, &child_manifest)
                    .await
                    .with_context(|| {
                        format!("failed to push platform manifest {}", child.digest)
                    })?;
                summary.child_manifests += 1;
                eprintln!("pushed platform manifest {}", child.digest);
            }
        }
        References::Image(blobs) => copy_blobs(route, &blobs, &mut summary).await?,
    }

    let digest = route
        .target
        .put_manifest(route.target_repository, tag, manifest)
        .await
        .with_context(|| format!("failed to push the manifest under tag {tag}"))?;
    Ok((digest, summary))
}

async fn copy_blobs(
    route: &CopyRoute<'_>,
    blobs: &[crate::registry::Descriptor],
    summary: &mut CopySummary,
) -> anyhow::Result<()> {
    for blob in blobs {
        let transfer = route
            .target
            .copy_blob_from(
                route.source,
                route.source_repository,
                route.target_repository,
                blob,
            )
            .await
            .with_context(|| format!("failed to copy blob {}", blob.digest))?;
        let outcome = match transfer {
            BlobTransfer::Present => {
                summary.blobs_present += 1;
                "already present"
            }
            BlobTransfer::Mounted => {
                summary.blobs_mounted += 1;
                "mounted"
            }
            BlobTransfer::Uploaded => {
                summary.blobs_uploaded += 1;
                "uploaded"
            }
        };
        eprintln!("blob {} ({} bytes): {outcome}", blob.digest, blob.size);
    }
    Ok(())
}

fn parse_references(manifest: &Manifest) -> anyhow::Result<References> {
    manifest
        .references()
        .map_err(|reason| anyhow::anyhow!("cannot copy manifest {}: {reason}", manifest.digest))
}
