//! Tests of the registry client against a real docker-registry and against small mock servers
//! for what that registry cannot show (bearer tokens, 429, 5xx, oversized bodies).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;

use super::*;

#[allow(dead_code)]
#[path = "../../tests/support/registry.rs"]
mod test_registry;

use test_registry::TestRegistry;

/// Builds a client for a loopback registry with fast retries.
fn loopback_client(host: &str) -> RegistryClient {
    let mut config = RegistryConfig::new(host);
    config.insecure = true;
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(50);
    config.max_retries = 2;
    RegistryClient::new(config).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn list_tags_follows_link_pages() {
    let registry = TestRegistry::start();
    registry.populate_realistic("org/node");
    let mut config = RegistryConfig::new(registry.host());
    config.insecure = true;
    config.tags_page_size = Some(25);
    let client = RegistryClient::new(config).unwrap();

    let mut tags = runtime().block_on(client.list_tags("org/node")).unwrap();
    tags.sort();

    let expected = registry.tags("org/node");
    assert!(
        expected.len() >= 130,
        "only {} tags populated",
        expected.len()
    );
    assert_eq!(tags, expected);
}

#[test]
fn list_tags_missing_repository() {
    let registry = TestRegistry::start();
    let client = loopback_client(&registry.host());
    let error = runtime()
        .block_on(client.list_tags("org/absent"))
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(error.to_string().contains("org/absent"), "{error}");
}

#[test]
fn resolve_digest_of_image_and_index() {
    let registry = TestRegistry::start();
    let image = registry.push_image("org/node", "v1.0.0");
    let index = registry.push_index("org/node", "v1.1.0");
    let client = loopback_client(&registry.host());
    let runtime = runtime();

    let image_digest = runtime
        .block_on(client.resolve_digest("org/node", "v1.0.0"))
        .unwrap();
    assert_eq!(image_digest, image.digest);

    let index_digest = runtime
        .block_on(client.resolve_digest("org/node", "v1.1.0"))
        .unwrap();
    assert_eq!(index_digest, index.digest);
}

#[test]
fn get_manifest_verbatim_and_missing() {
    let registry = TestRegistry::start();
    let image = registry.push_docker_image("org/node", "v1.0.0");
    let client = loopback_client(&registry.host());
    let runtime = runtime();

    let manifest = runtime
        .block_on(client.get_manifest("org/node", "v1.0.0"))
        .unwrap();
    assert_eq!(manifest.digest, image.digest);
    assert_eq!(manifest.media_type, DOCKER_MANIFEST);
    let References::Image(blobs) = manifest.references().unwrap() else {
        panic!("expected an image manifest");
    };
    let digests: Vec<String> = blobs.into_iter().map(|blob| blob.digest).collect();
    assert_eq!(digests, image.blob_digests());

    let error = runtime
        .block_on(client.get_manifest("org/node", "v9.9.9"))
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "manifest org/node:v9.9.9 not found on {}: check the repository and tag names",
            registry.host()
        )
    );
}

#[test]
fn copy_blobs_and_manifest_across_registries() {
    let source = TestRegistry::start();
    let target = TestRegistry::start();
    let image = source.push_image("staging/node", "experimental");
    let source_client = loopback_client(&source.host());
    let target_client = loopback_client(&target.host());
    let runtime = runtime();

    let manifest = runtime
        .block_on(source_client.get_manifest("staging/node", "experimental"))
        .unwrap();
    let References::Image(blobs) = manifest.references().unwrap() else {
        panic!("expected an image manifest");
    };
    for blob in &blobs {
        let transfer = runtime
            .block_on(target_client.copy_blob_from(
                &source_client,
                "staging/node",
                "prod/node",
                blob,
            ))
            .unwrap();
        assert_eq!(transfer, BlobTransfer::Uploaded);
        assert!(target.has_blob("prod/node", &blob.digest));
    }

    let again = runtime
        .block_on(target_client.copy_blob_from(
            &source_client,
            "staging/node",
            "prod/node",
            &blobs[0],
        ))
        .unwrap();
    assert_eq!(again, BlobTransfer::Present);

    let stored = runtime
        .block_on(target_client.put_manifest("prod/node", "v1.0.0", &manifest))
        .unwrap();
    assert_eq!(stored, image.digest);
    assert_eq!(target.digest_of("prod/node", "v1.0.0"), Some(image.digest));
}

#[test]
fn mount_blob_within_one_registry() {
    let registry = TestRegistry::start();
    let image = registry.push_image("staging/node", "experimental");
    let client = loopback_client(&registry.host());
    let runtime = runtime();

    let mounted = runtime
        .block_on(client.mount_blob("prod/node", &image.config_digest, "staging/node"))
        .unwrap();
    assert!(mounted);
    assert!(registry.has_blob("prod/node", &image.config_digest));

    let descriptor = Descriptor {
        media_type: String::new(),
        digest: image.layer_digests[0].clone(),
        size: 1024,
    };
    let transfer = runtime
        .block_on(client.copy_blob_from(&client, "staging/node", "prod/node", &descriptor))
        .unwrap();
    assert_eq!(transfer, BlobTransfer::Mounted);
}

#[test]
fn mount_of_unknown_blob_falls_back() {
    let registry = TestRegistry::start();
    registry.push_image("staging/node", "experimental");
    let client = loopback_client(&registry.host());
    let absent = sha256_digest(b"not uploaded anywhere");

    let mounted = runtime()
        .block_on(client.mount_blob("prod/node", &absent, "staging/node"))
        .unwrap();
    assert!(!mounted);
}

#[test]
fn delete_manifest_by_tag() {
    let registry = TestRegistry::start();
    registry.push_image("org/node", "v1.0.0");
    let client = loopback_client(&registry.host());

    runtime()
        .block_on(client.delete_manifest("org/node", "v1.0.0"))
        .unwrap();
    assert_eq!(registry.digest_of("org/node", "v1.0.0"), None);
}

#[test]
fn stopped_registry_then_back() {
    let mut registry = TestRegistry::start();
    registry.push_image("org/node", "v1.0.0");
    let client = loopback_client(&registry.host());
    let runtime = runtime();

    registry.stop();
    let error = runtime.block_on(client.list_tags("org/node")).unwrap_err();
    assert!(
        matches!(error, RegistryError::Connect { .. }),
        "expected a connection error, got {error}"
    );
    assert!(error.to_string().contains(&registry.host()), "{error}");

    registry.restart();
    let tags = runtime.block_on(client.list_tags("org/node")).unwrap();
    assert_eq!(tags, ["v1.0.0"]);
}

#[test]
fn connection_retried_until_registry_back() {
    let mut registry = TestRegistry::start();
    registry.push_image("org/node", "v1.0.0");
    let mut config = RegistryConfig::new(registry.host());
    config.insecure = true;
    config.retry_base_delay = Duration::from_millis(200);
    config.retry_max_delay = Duration::from_millis(800);
    config.max_retries = 8;
    let client = RegistryClient::new(config).unwrap();

    registry.stop();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        registry.restart();
        registry
    });
    let tags = runtime().block_on(client.list_tags("org/node"));
    let _registry = restarter.join().unwrap();

    assert_eq!(tags.unwrap(), ["v1.0.0"]);
}

/// Serves every request with `handler` on a loopback port and returns `127.0.0.1:PORT`.
async fn spawn_mock<F>(handler: F) -> String
where
    F: Fn(&Request) -> Response + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let router = axum::Router::new().fallback(move |request: Request| {
        let handler = handler.clone();
        async move { handler(&request) }
    });
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    host
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: &str) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn bearer_token_fetched_once_per_scope() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let host_cell = Arc::new(std::sync::OnceLock::<String>::new());
    let host_for_handler = host_cell.clone();
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("release:s3cret")
    );

    let host = spawn_mock(move |request| {
        let path = request.uri().path();
        if path == "/token" {
            counter.fetch_add(1, Ordering::SeqCst);
            let query = request.uri().query().unwrap_or("");
            if header(request.headers(), "authorization") != expected_basic
                || !query.contains("scope=repository%3Aorg%2Fnode%3Apull")
                || !query.contains("service=mock")
            {
                return respond(StatusCode::UNAUTHORIZED, &[], "");
            }
            return respond(StatusCode::OK, &[], r#"{"token":"tok-1","expires_in":300}"#);
        }
        if header(request.headers(), "authorization") != "Bearer tok-1" {
            let realm = format!(
                r#"Bearer realm="http://{}/token",service="mock",scope="repository:org/node:pull""#,
                host_for_handler.get().unwrap()
            );
            return respond(
                StatusCode::UNAUTHORIZED,
                &[("WWW-Authenticate", &realm)],
                "",
            );
        }
        respond(
            StatusCode::OK,
            &[],
            r#"{"name":"org/node","tags":["v1.0.0"]}"#,
        )
    })
    .await;
    host_cell.set(host.clone()).unwrap();

    let mut config = RegistryConfig::new(&host);
    config.insecure = true;
    config.credentials = Credentials::Basic {
        username: "release".to_string(),
        password: "s3cret".to_string(),
    };
    let client = RegistryClient::new(config).unwrap();

    assert_eq!(client.list_tags("org/node").await.unwrap(), ["v1.0.0"]);
    assert_eq!(client.list_tags("org/node").await.unwrap(), ["v1.0.0"]);
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_request_retried() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let host_cell = Arc::new(std::sync::OnceLock::<String>::new());
    let host_for_handler = host_cell.clone();
    let host = spawn_mock(move |request| {
        if request.uri().path() == "/token" {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return respond(StatusCode::BAD_GATEWAY, &[], "");
            }
            return respond(StatusCode::OK, &[], r#"{"access_token":"tok-2"}"#);
        }
        if header(request.headers(), "authorization") != "Bearer tok-2" {
            let realm = format!(
                r#"Bearer realm="http://{}/token",service="mock""#,
                host_for_handler.get().unwrap()
            );
            return respond(
                StatusCode::UNAUTHORIZED,
                &[("WWW-Authenticate", &realm)],
                "",
            );
        }
        respond(StatusCode::OK, &[], r#"{"tags":["v3.0.0"]}"#)
    })
    .await;
    host_cell.set(host.clone()).unwrap();

    let client = loopback_client(&host);
    assert_eq!(client.list_tags("org/node").await.unwrap(), ["v3.0.0"]);
    assert_eq!(token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bearer_token_rejected_hides_password() {
    let host_cell = Arc::new(std::sync::OnceLock::<String>::new());
    let host_for_handler = host_cell.clone();
    let host = spawn_mock(move |request| {
        if request.uri().path() == "/token" {
            return respond(StatusCode::UNAUTHORIZED, &[], "");
        }
        let realm = format!(
            r#"Bearer realm="http://{}/token",service="mock""#,
            host_for_handler.get().unwrap()
        );
        respond(
            StatusCode::UNAUTHORIZED,
            &[("WWW-Authenticate", &realm)],
            "",
        )
    })
    .await;
    host_cell.set(host.clone()).unwrap();

    let mut config = RegistryConfig::new(&host);
    config.insecure = true;
    config.credentials = Credentials::Basic {
        username: "release".to_string(),
        password: "wrong-password-123".to_string(),
    };
    let client = RegistryClient::new(config).unwrap();

    let error = client.list_tags("org/node").await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, RegistryError::Unauthorized { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("check credentials for {host}")),
        "{message}"
    );
    assert!(!message.contains("wrong-password-123"), "{message}");
    assert!(!format!("{error:?}").contains("wrong-password-123"));
}

#[tokio::test]
async fn basic_challenge_sends_credentials() {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    );
    let host = spawn_mock(move |request| {
        if header(request.headers(), "authorization") != expected {
            return respond(
                StatusCode::UNAUTHORIZED,
                &[("WWW-Authenticate", r#"Basic realm="Registry""#)],
                "",
            );
        }
        respond(StatusCode::OK, &[], r#"{"tags":["v2.0.0"]}"#)
    })
    .await;

    let mut config = RegistryConfig::new(&host);
    config.insecure = true;
    config.credentials = Credentials::Basic {
        username: "u".to_string(),
        password: "p".to_string(),
    };
    let client = RegistryClient::new(config).unwrap();
    assert_eq!(client.list_tags("node").await.unwrap(), ["v2.0.0"]);
}

#[tokio::test]
async fn rate_limit_waits_retry_after() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let host = spawn_mock(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            return respond(StatusCode::TOO_MANY_REQUESTS, &[("Retry-After", "1")], "");
        }
        respond(StatusCode::OK, &[], r#"{"tags":["v1.0.0"]}"#)
    })
    .await;

    let mut config = RegistryConfig::new(&host);
    config.insecure = true;
    config.retry_base_delay = Duration::from_millis(1);
    let client = RegistryClient::new(config).unwrap();

    let started = Instant::now();
    assert_eq!(client.list_tags("node").await.unwrap(), ["v1.0.0"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rate_limit_gives_up() {
    let host =
        spawn_mock(|_| respond(StatusCode::TOO_MANY_REQUESTS, &[("Retry-After", "0")], "")).await;
    let client = loopback_client(&host);
    let error = client.list_tags("node").await.unwrap_err();
    assert!(
        matches!(error, RegistryError::RateLimited { attempts: 3, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn server_errors_retried() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let host = spawn_mock(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            return respond(StatusCode::SERVICE_UNAVAILABLE, &[], "down");
        }
        respond(StatusCode::OK, &[], r#"{"tags":["v1.0.0"]}"#)
    })
    .await;
    let client = loopback_client(&host);
    assert_eq!(client.list_tags("node").await.unwrap(), ["v1.0.0"]);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn server_error_after_retries() {
    let host = spawn_mock(|_| {
        respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            &[],
            r#"{"errors":[{"code":"UNKNOWN","message":"disk full"}]}"#,
        )
    })
    .await;
    let client = loopback_client(&host);
    let error = client.list_tags("node").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{host} returned HTTP 500 for tag list of node: UNKNOWN: disk full")
    );
}

#[tokio::test]
async fn oversized_body_rejected() {
    let big = format!(r#"{{"tags":["{}"]}}"#, "x".repeat(4096));
    let host = spawn_mock(move |_| respond(StatusCode::OK, &[], &big)).await;
    let mut config = RegistryConfig::new(&host);
    config.insecure = true;
    config.max_body_bytes = 1000;
    let client = RegistryClient::new(config).unwrap();

    let error = client.list_tags("node").await.unwrap_err();
    assert!(
        matches!(error, RegistryError::TooLarge { limit: 1000, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("larger than 1000 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn resolve_digest_falls_back_to_get() {
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"c","digest":"sha256:aa","size":1},"layers":[]}"#;
    let host =
        spawn_mock(move |_| respond(StatusCode::OK, &[("Content-Type", OCI_MANIFEST)], manifest))
            .await;
    let client = loopback_client(&host);
    let digest = client.resolve_digest("node", "v1.0.0").await.unwrap();
    assert_eq!(digest, sha256_digest(manifest.as_bytes()));
}

#[tokio::test]
async fn request_timeout_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    // Accept connections and never respond.
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let mut config = RegistryConfig::new(&host);
    config.insecure = true;
    config.request_timeout = Duration::from_millis(200);
    config.max_retries = 0;
    let client = RegistryClient::new(config).unwrap();

    let error = client.list_tags("node").await.unwrap_err();
    assert!(matches!(error, RegistryError::TimedOut { .. }), "{error}");
}

#[test]
fn docker_hub_library_prefix() {
    let hub = RegistryClient::new(RegistryConfig::new("docker.io")).unwrap();
    assert_eq!(hub.host(), DOCKER_HUB_HOST);
    assert_eq!(hub.repository_path("ubuntu"), "library/ubuntu");
    assert_eq!(hub.repository_path("orbsnetwork/node"), "orbsnetwork/node");

    let other = RegistryClient::new(RegistryConfig::new("127.0.0.1:5000")).unwrap();
    assert_eq!(other.repository_path("node"), "node");
}

#[test]
fn host_with_scheme_rejected() {
    let error = RegistryClient::new(RegistryConfig::new("https://r.example")).unwrap_err();
    assert!(error.to_string().contains("without a scheme"), "{error}");
}
