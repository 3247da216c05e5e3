//! A real `docker-registry` (CNCF distribution) on a loopback port, and helpers that push tiny
//! synthetic images, image indexes and tags to it through the registry API.
//!
//! Every instance gets its own free port and temporary storage directory with deletes enabled,
//! and is killed when dropped. A missing binary fails the test: the suite never skips silently.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::RngCore;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest (schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// User name accepted by [`TestRegistry::start_with_basic_auth`].
pub const TEST_USERNAME: &str = "release-bot";
/// Password accepted by [`TestRegistry::start_with_basic_auth`].
pub const TEST_PASSWORD: &str = "stagger-test-password";
/// bcrypt hash of [`TEST_PASSWORD`] (cost 5), the only hash format docker-registry's htpasswd
/// authentication reads. Made with `perl -e 'print crypt("stagger-test-password", "$2a$05$...")'`.
const TEST_PASSWORD_BCRYPT: &str = "$2a$05$stAggerTestSaltSaltSaec6l/tnYtMRdHt5EsAVW9pO7xQhM50O6";

/// Maximum wait for a started registry to return 200 on `GET /v2/`, in seconds.
const STARTUP_TIMEOUT_SECS: u64 = 15;

/// A running (or stopped) `docker-registry serve` process on `127.0.0.1:port`.
pub struct TestRegistry {
    port: u16,
    storage: tempfile::TempDir,
    child: Option<Child>,
    http: Client,
    /// Whether the registry requires [`TEST_USERNAME`] and [`TEST_PASSWORD`].
    basic_auth: bool,
}

/// An image pushed by [`TestRegistry::push_image`].
#[derive(Debug, Clone)]
pub struct TestImage {
    /// Digest of the manifest.
    pub digest: String,
    pub media_type: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

impl TestImage {
    /// Returns the config and layer digests.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut blobs = vec![self.config_digest.clone()];
        blobs.extend(self.layer_digests.iter().cloned());
        blobs
    }
}

/// An image index pushed by [`TestRegistry::push_index`].
#[derive(Debug, Clone)]
pub struct TestIndex {
    /// Digest of the index manifest.
    pub digest: String,
    /// The platform images, `linux/amd64` first, then `linux/arm64`.
    pub children: Vec<TestImage>,
}

/// The tags [`TestRegistry::populate_realistic`] created.
#[derive(Debug, Clone)]
pub struct RealisticRepository {
    /// Release tags such as `v1.3.0`, `v1.3.1-hotfix`, `v1.4.0-canary`.
    pub release_tags: Vec<String>,
    /// Staging tags such as `v1.3.13-cc1cc788`.
    pub staging_tags: Vec<String>,
    /// The image behind `latest`, `experimental` and the staging tags.
    pub staging_image: TestImage,
}

impl TestRegistry {
    /// Starts a registry on a free loopback port with empty storage and waits until it
    /// responds.
    ///
    /// Panics when `docker-registry` is not installed or does not come up.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(false)
    }

    /// Starts a registry that requires HTTP basic authentication with [`TEST_USERNAME`] and
    /// [`TEST_PASSWORD`] on every request. The helper methods send them too.
    pub fn start_with_basic_auth() -> TestRegistry {
        TestRegistry::start_with(true)
    }

    fn start_with(basic_auth: bool) -> TestRegistry {
        let storage = tempfile::tempdir().expect("failed to create a temporary directory");
        let port = free_port();
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("failed to build the HTTP client");
        let mut registry = TestRegistry {
            port,
            storage,
            child: None,
            http,
            basic_auth,
        };
        registry.write_config();
        registry.spawn();
        registry
    }

    /// Returns `127.0.0.1:PORT`, the form `stagger --registry` takes.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Kills the registry process; storage and port are kept for [`TestRegistry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port with the same storage, stopping it first if
    /// it still runs.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Reports whether the registry process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child
                .try_wait()
                .map(|status| status.is_none())
                .unwrap_or(false),
            None => false,
        }
    }

    /// Pushes a synthetic single-platform OCI image (a random config and one random layer) under
    /// `tag`.
    pub fn push_image(&self, repository: &str, tag: &str) -> TestImage {
        self.push_platform_image(repository, tag, OCI_MANIFEST, "amd64")
    }

    /// Pushes a synthetic Docker schema 2 image under `tag`.
    pub fn push_docker_image(&self, repository: &str, tag: &str) -> TestImage {
        self.push_platform_image(repository, tag, DOCKER_MANIFEST, "amd64")
    }

    /// Pushes an OCI image index with two platform images (`linux/amd64`, `linux/arm64`) under
    /// `tag`. The children are pushed by digest only.
    pub fn push_index(&self, repository: &str, tag: &str) -> TestIndex {
        let mut children = Vec::new();
        let mut descriptors = Vec::new();
        for architecture in ["amd64", "arm64"] {
            let (image, size) =
                self.push_platform_image_by_digest(repository, OCI_MANIFEST, architecture);
            descriptors.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": size,
                "platform": {"architecture": architecture, "os": "linux"},
            }));
            children.push(image);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": descriptors,
        });
        let bytes = serde_json::to_vec_pretty(&index).unwrap();
        let digest = self.put_manifest(repository, tag, OCI_INDEX, &bytes);
        TestIndex { digest, children }
    }

    /// Adds `tags` to the manifest that `existing` (a tag or digest) points to, by uploading the
    /// same manifest bytes again; no blob is transferred.
    pub fn add_tags(&self, repository: &str, existing: &str, tags: &[&str]) {
        let (bytes, media_type) = self
            .manifest(repository, existing)
            .unwrap_or_else(|| panic!("cannot tag {repository}:{existing}: it does not exist"));
        for tag in tags {
            self.put_manifest(repository, tag, &media_type, &bytes);
        }
    }

    /// Deletes the manifest behind `tag`. Every other tag on the same manifest goes with it,
    /// because the registry deletes manifests by digest.
    pub fn delete_tag(&self, repository: &str, tag: &str) {
        let digest = self
            .digest_of(repository, tag)
            .unwrap_or_else(|| panic!("cannot delete {repository}:{tag}: it does not exist"));
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.url());
        let response = self
            .request(Method::DELETE, &url)
            .send()
            .expect("DELETE manifest failed");
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "deleting {repository}@{digest} failed: {}",
            response.text().unwrap_or_default()
        );
    }

    /// Lists every tag of `repository`, sorted; empty when the repository does not exist.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let url = format!("{}/v2/{repository}/tags/list?n=100000", self.url());
        let response = self
            .request(Method::GET, &url)
            .send()
            .expect("GET tag list failed");
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "listing tags of {repository} failed"
        );
        let body: serde_json::Value = response.json().expect("invalid tag list JSON");
        let mut tags: Vec<String> = body["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|tag| tag.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Returns the manifest digest behind `reference`, or `None` when it does not exist.
    pub fn digest_of(&self, repository: &str, reference: &str) -> Option<String> {
        let (bytes, _) = self.manifest(repository, reference)?;
        Some(sha256_digest(&bytes))
    }

    /// Returns the manifest bytes and media type behind `reference`, or `None` when it does not
    /// exist.
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<(Vec<u8>, String)> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.url());
        let response = self
            .request(Method::GET, &url)
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .expect("GET manifest failed");
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(response.status(), StatusCode::OK, "GET {url} failed");
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Some((response.bytes().unwrap().to_vec(), media_type))
    }

    /// Reports whether `repository` has the blob `digest`.
    pub fn has_blob(&self, repository: &str, digest: &str) -> bool {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.url());
        let response = self
            .request(Method::HEAD, &url)
            .send()
            .expect("HEAD blob failed");
        response.status() == StatusCode::OK
    }

    /// Fills `repository` the way a staging or production repository looks: release tags over
    /// several versions with `-canary`, `-hotfix` and `-immediate`, 120 staging tags such as
    /// `v1.3.13-cc1cc788`, and `latest` and `experimental`.
    pub fn populate_realistic(&self, repository: &str) -> RealisticRepository {
        let release_tags: Vec<String> = [
            "v1.2.0",
            "v1.2.1-hotfix",
            "v1.3.0-canary",
            "v1.3.0",
            "v1.3.1-canary-hotfix",
            "v1.3.1-hotfix",
            "v1.3.2-immediate",
            "v1.4.0-canary",
        ]
        .iter()
        .map(|tag| tag.to_string())
        .collect();
        for tag in &release_tags {
            self.push_image(repository, tag);
        }

        let staging_image = self.push_image(repository, "experimental");
        let mut rng = rand::thread_rng();
        let staging_tags: Vec<String> = (0..120)
            .map(|_| format!("v1.3.13-{:08x}", rng.next_u32()))
            .collect();
        let mut extra: Vec<&str> = staging_tags.iter().map(String::as_str).collect();
        extra.push("latest");
        self.add_tags(repository, "experimental", &extra);

        RealisticRepository {
            release_tags,
            staging_tags,
            staging_image,
        }
    }

    fn push_platform_image(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        architecture: &str,
    ) -> TestImage {
        let (image, bytes) = self.build_image(repository, media_type, architecture);
        let digest = self.put_manifest(repository, tag, media_type, &bytes);
        assert_eq!(digest, image.digest);
        image
    }

    fn push_platform_image_by_digest(
        &self,
        repository: &str,
        media_type: &str,
        architecture: &str,
    ) -> (TestImage, usize) {
        let (image, bytes) = self.build_image(repository, media_type, architecture);
        self.put_manifest(repository, &image.digest, media_type, &bytes);
        (image, bytes.len())
    }

    /// Uploads a random config and layer and returns the image with its manifest bytes.
    fn build_image(
        &self,
        repository: &str,
        media_type: &str,
        architecture: &str,
    ) -> (TestImage, Vec<u8>) {
        let mut layer = vec![0u8; 1024];
        rand::thread_rng().fill_bytes(&mut layer);
        let layer_digest = self.push_blob(repository, &layer);

        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Labels": {"stagger.test.nonce": format!("{:016x}", rand::random::<u64>())}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = self.push_blob(repository, &config);

        let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
            (
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            )
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer.len()}],
        });
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let image = TestImage {
            digest: sha256_digest(&bytes),
            media_type: media_type.to_string(),
            config_digest,
            layer_digests: vec![layer_digest],
        };
        (image, bytes)
    }

    /// Uploads a blob monolithically (POST, then PUT with the digest) and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.url());
        let response = self
            .request(Method::POST, &url)
            .send()
            .expect("POST blob upload failed");
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "starting an upload failed"
        );
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .expect("upload response without Location")
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.url())
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .request(Method::PUT, format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .expect("PUT blob failed");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "uploading blob {digest} failed: {}",
            response.text().unwrap_or_default()
        );
        digest
    }

    /// Uploads manifest bytes under `reference` and returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.url());
        let response = self
            .request(Method::PUT, &url)
            .header("Content-Type", media_type)
            .body(bytes.to_vec())
            .send()
            .expect("PUT manifest failed");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "PUT {url} failed: {}",
            response.text().unwrap_or_default()
        );
        sha256_digest(bytes)
    }

    /// Starts a request to this registry, with the test credentials when it requires them.
    fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        let request = self.http.request(method, url);
        if self.basic_auth {
            request.basic_auth(TEST_USERNAME, Some(TEST_PASSWORD))
        } else {
            request
        }
    }

    fn write_config(&self) {
        let data = self.storage.path().join("data");
        fs::create_dir_all(&data).expect("failed to create the storage directory");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{}\n",
            data.display(),
            self.port
        );
        if self.basic_auth {
            let htpasswd = self.storage.path().join("htpasswd");
            fs::write(
                &htpasswd,
                format!("{TEST_USERNAME}:{TEST_PASSWORD_BCRYPT}\n"),
            )
            .expect("failed to write the htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stagger-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        fs::write(self.config_path(), config).expect("failed to write the registry config");
    }

    fn config_path(&self) -> PathBuf {
        self.storage.path().join("config.yml")
    }

    fn spawn(&mut self) {
        let binary = find_registry_binary();
        let log_path = self.storage.path().join("registry.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("failed to open the registry log");
        let child = Command::new(&binary)
            .arg("serve")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("failed to clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {}: {error}", binary.display()));
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(STARTUP_TIMEOUT_SECS);
        let url = format!("{}/v2/", self.url());
        loop {
            if let Ok(response) = self
                .request(Method::GET, &url)
                .timeout(Duration::from_secs(1))
                .send()
            {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "docker-registry on port {} did not answer GET /v2/ within {STARTUP_TIMEOUT_SECS}s \
                     (exit status {exited:?}); its log:\n{log}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds `docker-registry` on `PATH` or in `/usr/bin`, panicking with the install hint when it
/// is missing.
fn find_registry_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]);
    for dir in candidates {
        let candidate = dir.join("docker-registry");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("docker-registry not found: run scripts/install-test-deps.sh");
}

/// Returns a port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a loopback port");
    listener.local_addr().unwrap().port()
}

/// Computes `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}
