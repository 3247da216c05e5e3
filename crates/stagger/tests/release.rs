//! End-to-end tests of `stagger release`: the real binary against real docker-registry
//! instances on loopback ports.

mod support;

use std::process::Output;

use assert_cmd::Command;
use base64::Engine as _;
use support::registry::{TestRegistry, TEST_PASSWORD, TEST_USERNAME};

const STAGING: &str = "orbsnetworkstaging/node";
const PRODUCTION: &str = "orbsnetwork/node";

/// Runs `stagger release --insecure ARGS` with an empty Docker config and no credential
/// variables, and without a terminal on standard input.
fn release(args: &[&str]) -> Output {
    let docker_config = tempfile::tempdir().unwrap();
    Command::cargo_bin("stagger")
        .unwrap()
        .arg("release")
        .arg("--insecure")
        .args(args)
        .env("DOCKER_CONFIG", docker_config.path())
        .env_remove("STAGGER_REGISTRY_USERNAME")
        .env_remove("STAGGER_REGISTRY_PASSWORD")
        .env_remove("STAGGER_TARGET_REGISTRY_USERNAME")
        .env_remove("STAGGER_TARGET_REGISTRY_PASSWORD")
        .write_stdin("")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn last_line(output: &Output) -> String {
    stdout(output)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Asserts the exit code, printing both streams when it differs.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn promote_within_one_registry() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    let host = registry.host();

    let output = release(&["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"]);

    assert_exit(&output, 0);
    assert_eq!(
        last_line(&output),
        format!("{host}/{PRODUCTION}:v1.0.0@{}", image.digest)
    );
    assert_eq!(
        registry.digest_of(PRODUCTION, "v1.0.0"),
        Some(image.digest.clone())
    );
    for blob in image.blob_digests() {
        assert!(registry.has_blob(PRODUCTION, &blob), "blob {blob} missing");
    }
    assert!(stderr(&output).contains(": mounted"), "{}", stderr(&output));
    assert_eq!(registry.tags(PRODUCTION), ["v1.0.0"]);
}

#[test]
fn promote_across_two_registries() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let image = staging.push_docker_image(STAGING, "v1.3.13-cc1cc788");

    let output = release(&[
        "--registry",
        &staging.host(),
        "--target-registry",
        &production.host(),
        "--tag",
        "v1.3.13-cc1cc788",
        "--target-tag",
        "v1.3.13",
        "--standard",
        "--yes",
    ]);

    assert_exit(&output, 0);
    assert_eq!(
        last_line(&output),
        format!(
            "{}/{PRODUCTION}:v1.3.13@{}",
            production.host(),
            image.digest
        )
    );
    assert_eq!(
        production.digest_of(PRODUCTION, "v1.3.13"),
        Some(image.digest.clone())
    );
    for blob in image.blob_digests() {
        assert!(
            production.has_blob(PRODUCTION, &blob),
            "blob {blob} missing"
        );
    }
    assert!(
        stderr(&output).contains(": uploaded"),
        "{}",
        stderr(&output)
    );
    assert_eq!(staging.digest_of(PRODUCTION, "v1.3.13"), None);
}

#[test]
fn promote_image_index_across_registries() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let index = staging.push_index(STAGING, "experimental");

    let output = release(&[
        "--registry",
        &staging.host(),
        "--target-registry",
        &production.host(),
        "--target-tag",
        "v1.1.0",
        "--hotfix",
        "-y",
    ]);

    assert_exit(&output, 0);
    assert_eq!(
        last_line(&output),
        format!(
            "{}/{PRODUCTION}:v1.1.0-hotfix@{}",
            production.host(),
            index.digest
        )
    );
    assert_eq!(
        production.digest_of(PRODUCTION, "v1.1.0-hotfix"),
        Some(index.digest.clone())
    );
    assert_eq!(index.children.len(), 2);
    for child in &index.children {
        assert_eq!(
            production.digest_of(PRODUCTION, &child.digest),
            Some(child.digest.clone()),
            "platform manifest {} missing",
            child.digest
        );
        for blob in child.blob_digests() {
            assert!(
                production.has_blob(PRODUCTION, &blob),
                "blob {blob} missing"
            );
        }
    }
    assert_eq!(production.tags(PRODUCTION), ["v1.1.0-hotfix"]);
}

#[test]
fn promote_canary_into_realistic_repository() {
    let registry = TestRegistry::start();
    let staging = registry.populate_realistic(STAGING);
    registry.populate_realistic(PRODUCTION);
    let host = registry.host();

    let output = release(&[
        "--registry",
        &host,
        "--target-tag",
        "v1.5.0",
        "-c",
        "-s",
        "-y",
    ]);

    assert_exit(&output, 0);
    assert_eq!(
        last_line(&output),
        format!(
            "{host}/{PRODUCTION}:v1.5.0-canary@{}",
            staging.staging_image.digest
        )
    );
    let out = stdout(&output);
    assert!(out.contains("group:    canary"), "{out}");
    assert!(out.contains("urgency:  normal"), "{out}");
    assert!(out.contains("window:   24h"), "{out}");
}

#[test]
fn default_target_tag_rejected_before_registry() {
    // Nothing listens on port 9: the command must fail before connecting.
    let output = release(&["--registry", "127.0.0.1:9", "-s", "-y"]);

    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("source tag \"experimental\""), "{message}");
    assert!(message.contains("pass --target-tag vX.Y.Z"), "{message}");
    assert!(!message.contains("connect"), "{message}");
}

#[test]
fn target_tag_with_suffix_rejected() {
    let output = release(&[
        "--registry",
        "127.0.0.1:9",
        "--target-tag",
        "v1.2.0-hotfix",
        "-y",
    ]);

    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("already has a suffix"), "{message}");
    assert!(message.contains("--target-tag v1.2.0"), "{message}");
}

#[test]
fn plan_required_with_yes() {
    let output = release(&["--registry", "127.0.0.1:9", "--target-tag", "v1.2.0", "-y"]);

    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("a rollout plan is required"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn plan_required_without_terminal() {
    let output = release(&["--registry", "127.0.0.1:9", "--target-tag", "v1.2.0"]);

    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("a rollout plan is required"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn confirmation_needs_terminal_or_yes() {
    let output = release(&["--registry", "127.0.0.1:9", "--target-tag", "v1.2.0", "-s"]);

    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("pass --yes"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn two_plans_rejected() {
    let output = release(&[
        "--registry",
        "127.0.0.1:9",
        "--target-tag",
        "v1.2.0",
        "-s",
        "--hotfix",
        "-y",
    ]);

    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("cannot be used with"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn canary_outside_canary_repos() {
    let registry = TestRegistry::start();
    let image = registry.push_image("orbsnetworkstaging/signer", "experimental");
    let host = registry.host();
    let args = [
        "--registry",
        &host,
        "--repo",
        "signer",
        "--target-tag",
        "v1.0.0",
        "-c",
        "-s",
        "-y",
    ];

    let output = release(&args);
    assert_exit(&output, 3);
    let message = stderr(&output);
    assert!(message.contains("--canary"), "{message}");
    assert!(message.contains("\"signer\""), "{message}");
    assert!(registry.tags("orbsnetwork/signer").is_empty());

    let mut forced = args.to_vec();
    forced.push("--force");
    let output = release(&forced);
    assert_exit(&output, 0);
    assert_eq!(
        registry.digest_of("orbsnetwork/signer", "v1.0.0-canary"),
        Some(image.digest)
    );
}

#[test]
fn canary_repos_option_allows_repository() {
    let registry = TestRegistry::start();
    registry.push_image("orbsnetworkstaging/signer", "experimental");
    let host = registry.host();

    let output = release(&[
        "--registry",
        &host,
        "--repo",
        "signer",
        "--canary-repos",
        "node,signer",
        "--target-tag",
        "v1.0.0",
        "-c",
        "-s",
        "-y",
    ]);

    assert_exit(&output, 0);
    assert_eq!(registry.tags("orbsnetwork/signer"), ["v1.0.0-canary"]);
}

#[test]
fn immediate_node_needs_force() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    let host = registry.host();
    let args = ["--registry", &host, "--target-tag", "v2.0.0", "-i", "-y"];

    let output = release(&args);
    assert_exit(&output, 3);
    let message = stderr(&output);
    assert!(message.contains("fork consensus"), "{message}");
    assert!(message.contains("pass --force"), "{message}");
    assert!(registry.tags(PRODUCTION).is_empty());

    let mut forced = args.to_vec();
    forced.push("--force");
    let output = release(&forced);
    assert_exit(&output, 0);
    assert_eq!(
        registry.digest_of(PRODUCTION, "v2.0.0-immediate"),
        Some(image.digest)
    );
    assert!(
        stdout(&output).contains("window:   none"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn immediate_other_repository_needs_no_force() {
    let registry = TestRegistry::start();
    registry.push_image("orbsnetworkstaging/signer", "experimental");
    let host = registry.host();

    let output = release(&[
        "--registry",
        &host,
        "--repo",
        "signer",
        "--target-tag",
        "v2.0.0",
        "-i",
        "-y",
    ]);

    assert_exit(&output, 0);
    assert_eq!(registry.tags("orbsnetwork/signer"), ["v2.0.0-immediate"]);
}

#[test]
fn older_or_equal_version_rejected() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    registry.push_image(PRODUCTION, "v1.3.0-hotfix");
    registry.push_image(PRODUCTION, "v1.4.0-canary");
    let host = registry.host();

    for version in ["v1.2.0", "v1.3.0"] {
        let output = release(&["--registry", &host, "--target-tag", version, "-s", "-y"]);
        assert_exit(&output, 3);
        let message = stderr(&output);
        assert!(
            message.contains("already has release v1.3.0-hotfix"),
            "{message}"
        );
        assert!(
            message.contains("every main node would ignore"),
            "{message}"
        );
    }
    assert_eq!(
        registry.tags(PRODUCTION),
        ["v1.3.0-hotfix", "v1.4.0-canary"]
    );

    let output = release(&[
        "--registry",
        &host,
        "--target-tag",
        "v1.2.0",
        "-s",
        "-y",
        "--force",
    ]);
    assert_exit(&output, 0);
    assert_eq!(registry.digest_of(PRODUCTION, "v1.2.0"), Some(image.digest));
}

#[test]
fn same_version_more_urgent_allowed() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    registry.push_image(PRODUCTION, "v1.3.0");
    let host = registry.host();

    let output = release(&[
        "--registry",
        &host,
        "--target-tag",
        "v1.3.0",
        "--hotfix",
        "-y",
    ]);

    assert_exit(&output, 0);
    assert_eq!(
        registry.digest_of(PRODUCTION, "v1.3.0-hotfix"),
        Some(image.digest)
    );
}

#[test]
fn older_canary_rejected_by_main_release() {
    let registry = TestRegistry::start();
    registry.push_image(STAGING, "experimental");
    registry.push_image(PRODUCTION, "v1.4.0");
    let host = registry.host();

    let output = release(&[
        "--registry",
        &host,
        "--target-tag",
        "v1.4.0",
        "-c",
        "-s",
        "-y",
    ]);

    assert_exit(&output, 3);
    let message = stderr(&output);
    assert!(message.contains("already has release v1.4.0"), "{message}");
    assert!(
        message.contains("every canary node would ignore"),
        "{message}"
    );
}

#[test]
fn existing_tag_with_other_digest_rejected() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    let other = registry.push_image(PRODUCTION, "v1.0.0");
    let host = registry.host();
    let args = ["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"];

    let output = release(&args);
    assert_exit(&output, 3);
    let message = stderr(&output);
    assert!(
        message.contains(&format!("already exists with digest {}", other.digest)),
        "{message}"
    );
    assert_eq!(registry.digest_of(PRODUCTION, "v1.0.0"), Some(other.digest));

    let mut forced = args.to_vec();
    forced.push("--force");
    let output = release(&forced);
    assert_exit(&output, 0);
    assert_eq!(registry.digest_of(PRODUCTION, "v1.0.0"), Some(image.digest));
}

#[test]
fn same_digest_already_published() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    let host = registry.host();
    let args = ["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"];

    assert_exit(&release(&args), 0);
    let output = release(&args);

    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("nothing to do"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        last_line(&output),
        format!("{host}/{PRODUCTION}:v1.0.0@{}", image.digest)
    );
}

#[test]
fn dry_run_changes_nothing() {
    let registry = TestRegistry::start();
    let image = registry.push_image(STAGING, "experimental");
    registry.push_image(PRODUCTION, "v1.0.0");
    let host = registry.host();
    let before = registry.tags(PRODUCTION);

    let output = release(&[
        "--registry",
        &host,
        "--target-tag",
        "v1.1.0",
        "-s",
        "--dry-run",
    ]);

    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(
        out.contains(&format!("digest:   {}", image.digest)),
        "{out}"
    );
    assert!(
        out.contains(&format!("target:   {host}/{PRODUCTION}:v1.1.0")),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was pushed"), "{out}");
    assert_eq!(registry.tags(PRODUCTION), before);
    assert!(!registry.has_blob(PRODUCTION, &image.config_digest));
}

#[test]
fn missing_source_tag() {
    let registry = TestRegistry::start();
    registry.push_image(STAGING, "experimental");
    let host = registry.host();

    let output = release(&[
        "--registry",
        &host,
        "--tag",
        "v9.9.9-deadbeef",
        "--target-tag",
        "v9.9.9",
        "-s",
        "-y",
    ]);

    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "failed to read the source image {host}/{STAGING}:v9.9.9-deadbeef"
        )),
        "{message}"
    );
    assert!(message.contains("not found"), "{message}");
    assert!(registry.tags(PRODUCTION).is_empty());
}

/// Runs `stagger release --insecure ARGS` with the given environment and no terminal.
fn release_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::cargo_bin("stagger").unwrap();
    command.arg("release").arg("--insecure").args(args);
    for name in [
        "STAGGER_REGISTRY_USERNAME",
        "STAGGER_REGISTRY_PASSWORD",
        "STAGGER_TARGET_REGISTRY_USERNAME",
        "STAGGER_TARGET_REGISTRY_PASSWORD",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.write_stdin("").output().unwrap()
}

#[test]
fn credentials_from_environment() {
    let registry = TestRegistry::start_with_basic_auth();
    let image = registry.push_image(STAGING, "experimental");
    let host = registry.host();
    let docker_config = tempfile::tempdir().unwrap();
    let config_dir = docker_config.path().to_str().unwrap();

    let output = release_with_env(
        &["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"],
        &[
            ("DOCKER_CONFIG", config_dir),
            ("STAGGER_REGISTRY_USERNAME", TEST_USERNAME),
            ("STAGGER_REGISTRY_PASSWORD", TEST_PASSWORD),
            ("STAGGER_LOG", "debug"),
        ],
    );

    assert_exit(&output, 0);
    assert_eq!(registry.digest_of(PRODUCTION, "v1.0.0"), Some(image.digest));
    assert!(!stdout(&output).contains(TEST_PASSWORD));
    assert!(!stderr(&output).contains(TEST_PASSWORD));
}

#[test]
fn credentials_from_docker_config() {
    let registry = TestRegistry::start_with_basic_auth();
    let image = registry.push_image(STAGING, "experimental");
    let host = registry.host();
    let docker_config = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{TEST_USERNAME}:{TEST_PASSWORD}"));
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(r#"{{"auths":{{"http://{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();

    let output = release_with_env(
        &["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"],
        &[("DOCKER_CONFIG", docker_config.path().to_str().unwrap())],
    );

    assert_exit(&output, 0);
    assert_eq!(registry.digest_of(PRODUCTION, "v1.0.0"), Some(image.digest));
}

#[test]
fn wrong_credentials_rejected() {
    let registry = TestRegistry::start_with_basic_auth();
    registry.push_image(STAGING, "experimental");
    let host = registry.host();
    let docker_config = tempfile::tempdir().unwrap();

    let output = release_with_env(
        &["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"],
        &[
            ("DOCKER_CONFIG", docker_config.path().to_str().unwrap()),
            ("STAGGER_REGISTRY_USERNAME", TEST_USERNAME),
            ("STAGGER_REGISTRY_PASSWORD", "wrong-password-xyz"),
        ],
    );

    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("unauthorized"), "{message}");
    assert!(
        message.contains(&format!("check credentials for {host}")),
        "{message}"
    );
    assert!(!message.contains("wrong-password-xyz"), "{message}");
    assert!(registry.tags(PRODUCTION).is_empty());
}

#[test]
fn anonymous_rejected_by_private_registry() {
    let registry = TestRegistry::start_with_basic_auth();
    registry.push_image(STAGING, "experimental");
    let host = registry.host();

    let output = release(&["--registry", &host, "--target-tag", "v1.0.0", "-s", "-y"]);

    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains(&format!("check credentials for {host}")),
        "{message}"
    );
}

#[test]
fn username_without_password_rejected() {
    let output = release(&[
        "--registry",
        "127.0.0.1:9",
        "--username",
        "bot",
        "--target-tag",
        "v1.0.0",
        "-s",
        "-y",
    ]);

    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("STAGGER_REGISTRY_PASSWORD is empty"),
        "{}",
        stderr(&output)
    );
}
