//! `stagger release`: promote a staging build to the production repository under a release tag.

mod checks;
mod copy;
mod prompt;

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args};
use stagger_core::{Group, ReleaseTag, Urgency, Windows};

use crate::cli::ExitError;
use crate::registry::{Credentials, Manifest, RegistryClient, RegistryConfig, DOCKER_HUB_HOST};
use crate::timefmt::{format_duration_secs, format_timestamp, unix_now};

use checks::{blocking_release, is_consensus_critical, parse_target_version};
use copy::{copy_and_tag, CopyRoute};

/// Exit code of an invalid command line, a missing plan, or a confirmation that needs a
/// terminal.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a release rejected by a safety check that `--force` overrides.
pub const EXIT_REJECTED: u8 = 3;
/// Exit code when the release engineer declines at a prompt.
pub const EXIT_DECLINED: u8 = 4;

/// Environment variable with the user name for the source registry.
pub const ENV_USERNAME: &str = "STAGGER_REGISTRY_USERNAME";
/// Environment variable with the password or access token for the source registry.
pub const ENV_PASSWORD: &str = "STAGGER_REGISTRY_PASSWORD";
/// Environment variable with the user name for the target registry.
pub const ENV_TARGET_USERNAME: &str = "STAGGER_TARGET_REGISTRY_USERNAME";
/// Environment variable with the password or access token for the target registry.
pub const ENV_TARGET_PASSWORD: &str = "STAGGER_TARGET_REGISTRY_PASSWORD";

/// Text shown after the options by `stagger release --help`.
const AFTER_HELP: &str = "\
The target reference is TARGET_ORG/TARGET_REPO:TARGET_TAG[-canary][-hotfix|-immediate]. \
The command talks to the registries over the OCI Distribution API and needs no Docker daemon.

Credentials: --username with STAGGER_REGISTRY_PASSWORD, or STAGGER_REGISTRY_USERNAME and \
STAGGER_REGISTRY_PASSWORD, else the registry's entry in the Docker config.json \
($DOCKER_CONFIG/config.json, else ~/.docker/config.json), else anonymous. The target registry \
uses --target-username and the STAGGER_TARGET_REGISTRY_* variables, and the source credentials \
when both registries are the same host.

Exit codes: 0 published, already published or dry run; 1 error; 2 invalid usage, missing plan, \
or a confirmation without a terminal; 3 rejected by a safety check (--force overrides); \
4 declined at a prompt.

-h is help, so the hotfix plan is --hotfix only.";

/// Options of `stagger release`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("plan").args(["standard", "hotfix", "immediate"])),
    after_long_help = AFTER_HELP
)]
pub struct ReleaseArgs {
    /// Source tag: the staging build to promote.
    #[arg(long, value_name = "TAG", default_value = "experimental")]
    tag: String,

    /// Version to publish, such as v1.4.0, without suffixes (the plan flags add them).
    /// Default: the source tag.
    #[arg(long, value_name = "TAG")]
    target_tag: Option<String>,

    /// Source repository name.
    #[arg(long, value_name = "NAME", default_value = "node")]
    repo: String,

    /// Target repository name. Default: the source repository name.
    #[arg(long, value_name = "NAME")]
    target_repo: Option<String>,

    /// Source namespace (organization).
    #[arg(long, value_name = "ORG", default_value = "orbsnetworkstaging")]
    org: String,

    /// Target namespace (organization).
    #[arg(long, value_name = "ORG", default_value = "orbsnetwork")]
    target_org: String,

    /// Source registry as HOST[:PORT]; the default is Docker Hub.
    #[arg(long, value_name = "HOST[:PORT]", default_value = DOCKER_HUB_HOST)]
    registry: String,

    /// Target registry as HOST[:PORT]. Default: the source registry.
    #[arg(long, value_name = "HOST[:PORT]")]
    target_registry: Option<String>,

    /// Talk plain HTTP to both registries. Only for loopback and test registries.
    #[arg(long)]
    insecure: bool,

    /// Standard plan: nodes upgrade spread over the 24-hour rollout window (no tag suffix).
    #[arg(short = 's', long)]
    standard: bool,

    /// Hotfix plan: nodes upgrade spread over the 1-hour rollout window (suffix -hotfix).
    #[arg(long)]
    hotfix: bool,

    /// Immediate plan: every node upgrades as soon as it detects the release (suffix
    /// -immediate).
    #[arg(short = 'i', long)]
    immediate: bool,

    /// Publish to canary nodes only (suffix -canary). Allowed for the --canary-repos only.
    #[arg(short = 'c', long)]
    canary: bool,

    /// Repositories whose nodes run canary releases, comma-separated.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "node"
    )]
    canary_repos: Vec<String>,

    /// User name for the source registry; the password comes from STAGGER_REGISTRY_PASSWORD.
    #[arg(long, value_name = "USER")]
    username: Option<String>,

    /// User name for the target registry; the password comes from
    /// STAGGER_TARGET_REGISTRY_PASSWORD.
    #[arg(long, value_name = "USER")]
    target_username: Option<String>,

    /// Skip the confirmation prompts.
    #[arg(short = 'y', long)]
    yes: bool,

    /// Override the safety checks: a release every node would ignore, an existing tag with
    /// another digest, --canary outside the canary repositories, --immediate with --yes.
    #[arg(long)]
    force: bool,

    /// Read the registries and print the plan, but push nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The resolved names of one side of the copy.
struct Side {
    host: String,
    repository: String,
    tag: String,
}

impl Side {
    /// Formats `[HOST/]REPOSITORY:TAG`, leaving out Docker Hub as `docker pull` does.
    fn reference(&self) -> String {
        if self.host == DOCKER_HUB_HOST {
            format!("{}:{}", self.repository, self.tag)
        } else {
            format!("{}/{}:{}", self.host, self.repository, self.tag)
        }
    }
}

/// Runs `stagger release`.
pub fn run(args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    init_logging();

    let planned = plan_release(&args)?;
    let release = planned.release;
    let consensus_risk = planned.consensus_risk;
    let (source_client, source, target_client, target) =
        open_registries(&args, &planned.target_repo, &release)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;

    let inspection = runtime.block_on(inspect(&source_client, &source, &target_client, &target))?;
    print_plan(&source, &target, &release, &inspection.manifest);

    if inspection.existing_digest.as_deref() == Some(inspection.manifest.digest.as_str()) {
        println!(
            "{} already points to this digest: nothing to do",
            target.reference()
        );
        println!("{}@{}", target.reference(), inspection.manifest.digest);
        return Ok(ExitCode::SUCCESS);
    }
    check_target(&args, &target, &release, &inspection)?;

    if args.dry_run {
        println!("dry run: nothing was pushed");
        println!(
            "dry run: would publish {}@{}",
            target.reference(),
            inspection.manifest.digest
        );
        return Ok(ExitCode::SUCCESS);
    }

    confirm(&args, &target, consensus_risk)?;

    let route = CopyRoute {
        source: &source_client,
        source_repository: &source.repository,
        target: &target_client,
        target_repository: &target.repository,
    };
    let (digest, summary) = runtime
        .block_on(copy_and_tag(&route, &inspection.manifest, &target.tag))
        .with_context(|| format!("failed to publish {}", target.reference()))?;
    eprintln!(
        "copied {} platform manifests; blobs: {} uploaded, {} mounted, {} already present",
        summary.child_manifests,
        summary.blobs_uploaded,
        summary.blobs_mounted,
        summary.blobs_present
    );
    println!("{}@{digest}", target.reference());
    Ok(ExitCode::SUCCESS)
}

/// The release decided from the command line alone, before any registry is contacted.
struct PlannedRelease {
    release: ReleaseTag,
    /// Target repository name, without the namespace.
    target_repo: String,
    /// The release is immediate for a repository whose simultaneous restart can fork consensus.
    consensus_risk: bool,
}

/// Applies every check that needs no registry: the target tag, `--canary`, the plan, and the
/// confirmations that `--yes` or a terminal must provide.
fn plan_release(args: &ReleaseArgs) -> anyhow::Result<PlannedRelease> {
    let target_tag_text = args.target_tag.clone().unwrap_or_else(|| args.tag.clone());
    let version = parse_target_version(&target_tag_text, args.target_tag.is_none())
        .map_err(|message| ExitError::new(EXIT_USAGE, message))?;
    let target_repo = args
        .target_repo
        .clone()
        .unwrap_or_else(|| args.repo.clone());

    if args.canary && !args.canary_repos.contains(&target_repo) && !args.force {
        return Err(ExitError::new(
            EXIT_REJECTED,
            format!(
                "--canary is for repositories whose nodes run canary releases ({}), not \
                 \"{target_repo}\": add it with --canary-repos, or pass --force",
                args.canary_repos.join(", ")
            ),
        )
        .into());
    }

    let interactive = prompt::stdin_is_terminal();
    let urgency = choose_urgency(args, interactive)?;
    let group = if args.canary {
        Group::Canary
    } else {
        Group::Main
    };
    let release = ReleaseTag::new(version, group, urgency);

    let consensus_risk = urgency == Urgency::Immediate && is_consensus_critical(&target_repo);
    if consensus_risk && args.yes && !args.force {
        return Err(ExitError::new(
            EXIT_REJECTED,
            format!(
                "--immediate restarts every \"{target_repo}\" node at once, which can stall or \
                 fork consensus; --yes alone does not confirm that: pass --force as well, or \
                 run without --yes to confirm at the prompt"
            ),
        )
        .into());
    }
    if !args.yes && !args.dry_run && !interactive {
        return Err(ExitError::new(
            EXIT_USAGE,
            "confirmation required but standard input is not a terminal: pass --yes",
        )
        .into());
    }

    Ok(PlannedRelease {
        release,
        target_repo,
        consensus_risk,
    })
}

/// Builds the clients of both registries with their credentials, and the names on each side.
fn open_registries(
    args: &ReleaseArgs,
    target_repo: &str,
    release: &ReleaseTag,
) -> anyhow::Result<(RegistryClient, Side, RegistryClient, Side)> {
    let source_host = args.registry.clone();
    let target_host = args
        .target_registry
        .clone()
        .unwrap_or_else(|| source_host.clone());
    let source_client = build_client(
        &source_host,
        args.insecure,
        source_credentials(args, &source_host)?,
    )?;
    let target_client = build_client(
        &target_host,
        args.insecure,
        target_credentials(args, &source_host, &target_host)?,
    )?;
    let source = Side {
        host: source_client.host().to_string(),
        repository: join_repository(&args.org, &args.repo),
        tag: args.tag.clone(),
    };
    let target = Side {
        host: target_client.host().to_string(),
        repository: join_repository(&args.target_org, target_repo),
        tag: release.to_string(),
    };

    Ok((source_client, source, target_client, target))
}

/// The state of both registries before anything is pushed.
struct Inspection {
    manifest: Manifest,
    /// Digest the target tag points to now, if it exists.
    existing_digest: Option<String>,
    /// Every tag of the target repository; empty when the repository does not exist yet.
    target_tags: Vec<String>,
}

async fn inspect(
    source_client: &RegistryClient,
    source: &Side,
    target_client: &RegistryClient,
    target: &Side,
) -> anyhow::Result<Inspection> {
    let manifest = source_client
        .get_manifest(&source.repository, &source.tag)
        .await
        .with_context(|| format!("failed to read the source image {}", source.reference()))?;

    let target_tags = match target_client.list_tags(&target.repository).await {
        Ok(tags) => tags,
        Err(error) if error.is_not_found() => Vec::new(),
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "failed to list the tags of the target repository {}",
                    target.repository
                )
            })
        }
    };

    let existing_digest = if target_tags.contains(&target.tag) {
        let digest = target_client
            .resolve_digest(&target.repository, &target.tag)
            .await
            .with_context(|| format!("failed to read the existing {}", target.reference()))?;
        Some(digest)
    } else {
        None
    };

    Ok(Inspection {
        manifest,
        existing_digest,
        target_tags,
    })
}

/// Applies the checks that need the target's tags: no overwrite of another digest, and no
/// release that every node of its group would ignore.
fn check_target(
    args: &ReleaseArgs,
    target: &Side,
    release: &ReleaseTag,
    inspection: &Inspection,
) -> anyhow::Result<()> {
    if let Some(existing) = &inspection.existing_digest {
        if args.force {
            eprintln!(
                "warning: --force: overwriting {} (was {existing})",
                target.reference()
            );
        } else {
            return Err(ExitError::new(
                EXIT_REJECTED,
                format!(
                    "{} already exists with digest {existing}, not {}: pick another version, or \
                     pass --force to overwrite it",
                    target.reference(),
                    inspection.manifest.digest
                ),
            )
            .into());
        }
    }

    let others: Vec<String> = inspection
        .target_tags
        .iter()
        .filter(|tag| **tag != target.tag)
        .cloned()
        .collect();
    if let Some(blocking) = blocking_release(&others, release) {
        let message = format!(
            "{} already has release {blocking}, which is not older than {release}, so every {} \
             node would ignore {release}; publish a higher version (or the same version with a \
             more urgent plan), or pass --force",
            target.repository, release.group
        );
        if args.force {
            eprintln!("warning: --force: {message}");
        } else {
            return Err(ExitError::new(EXIT_REJECTED, message).into());
        }
    }
    Ok(())
}

/// Returns the urgency from the plan flags, else prompts on the terminal, else fails with
/// [`EXIT_USAGE`].
fn choose_urgency(args: &ReleaseArgs, interactive: bool) -> anyhow::Result<Urgency> {
    if args.standard {
        return Ok(Urgency::Normal);
    }
    if args.hotfix {
        return Ok(Urgency::Hotfix);
    }
    if args.immediate {
        return Ok(Urgency::Immediate);
    }

    let missing = "a rollout plan is required: pass --standard (-s), --hotfix or --immediate (-i)";
    if args.yes || !interactive {
        return Err(ExitError::new(EXIT_USAGE, missing).into());
    }
    match prompt::ask_plan().context("failed to read the plan from the terminal")? {
        Some(urgency) => Ok(urgency),
        None => Err(ExitError::new(EXIT_USAGE, missing).into()),
    }
}

/// Asks to proceed, and once more for an immediate release of a consensus-critical
/// repository, unless `--yes` was given.
fn confirm(args: &ReleaseArgs, target: &Side, consensus_risk: bool) -> anyhow::Result<()> {
    if args.yes {
        return Ok(());
    }
    let declined = || ExitError::new(EXIT_DECLINED, "release cancelled: nothing was pushed");

    if !prompt::confirm(&format!("Publish {}?", target.reference()))
        .context("failed to read the reply from the terminal")?
    {
        return Err(declined().into());
    }
    if consensus_risk {
        eprintln!(
            "warning: every node restarts with this release at the same time; consensus may \
             stall or fork until enough nodes are back"
        );
        if !prompt::confirm_by_typing("Really publish an immediate release?", "immediate")
            .context("failed to read the reply from the terminal")?
        {
            return Err(declined().into());
        }
    }
    Ok(())
}

/// Prints the source, target and rollout plan to standard output.
fn print_plan(source: &Side, target: &Side, release: &ReleaseTag, manifest: &Manifest) {
    let windows = Windows::default();
    let window_secs = windows.for_urgency(release.urgency);
    let now = unix_now();

    println!("source:   {}", source.reference());
    println!("digest:   {} ({})", manifest.digest, manifest.media_type);
    println!("target:   {}", target.reference());
    println!("group:    {}", release.group);
    println!("urgency:  {}", release.urgency);
    if release.urgency == Urgency::Immediate {
        println!("window:   none: every node upgrades as soon as it detects the release");
        println!("complete: as soon as every agent has polled the registry once");
    } else {
        println!(
            "window:   {}: each node upgrades at its own timeslot after detecting the release",
            format_duration_secs(window_secs)
        );
        println!(
            "complete: by about {} (now + window; add one agent poll interval, and nodes \
             configured with other windows differ)",
            format_timestamp(now + window_secs)
        );
    }
}

fn build_client(
    host: &str,
    insecure: bool,
    credentials: Credentials,
) -> anyhow::Result<RegistryClient> {
    let mut config = RegistryConfig::new(host);
    config.insecure = insecure;
    config.credentials = credentials;
    RegistryClient::new(config)
        .map_err(|error| ExitError::new(EXIT_USAGE, error.to_string()).into())
}

/// Joins the namespace and repository name; an empty namespace leaves the name alone.
fn join_repository(org: &str, repository: &str) -> String {
    if org.is_empty() {
        repository.to_string()
    } else {
        format!("{org}/{repository}")
    }
}

/// Resolves the source credentials: `--username` or `STAGGER_REGISTRY_USERNAME` with
/// `STAGGER_REGISTRY_PASSWORD`, else the Docker config, else anonymous.
fn source_credentials(args: &ReleaseArgs, host: &str) -> anyhow::Result<Credentials> {
    if let Some(credentials) = credentials_from(
        args.username.as_deref(),
        "--username",
        ENV_USERNAME,
        ENV_PASSWORD,
    )? {
        return Ok(credentials);
    }
    docker_config_credentials(host)
}

/// Resolves the target credentials: `--target-username` or the `STAGGER_TARGET_REGISTRY_*`
/// variables, else the source credentials when both registries are the same host, else the
/// Docker config, else anonymous.
fn target_credentials(
    args: &ReleaseArgs,
    source_host: &str,
    target_host: &str,
) -> anyhow::Result<Credentials> {
    if let Some(credentials) = credentials_from(
        args.target_username.as_deref(),
        "--target-username",
        ENV_TARGET_USERNAME,
        ENV_TARGET_PASSWORD,
    )? {
        return Ok(credentials);
    }
    if source_host.eq_ignore_ascii_case(target_host) {
        return source_credentials(args, source_host);
    }
    docker_config_credentials(target_host)
}

fn credentials_from(
    flag_username: Option<&str>,
    flag: &str,
    username_variable: &str,
    password_variable: &str,
) -> anyhow::Result<Option<Credentials>> {
    let username = flag_username.map(str::to_string).or_else(|| {
        std::env::var(username_variable)
            .ok()
            .filter(|name| !name.is_empty())
    });
    let Some(username) = username else {
        return Ok(None);
    };
    let password = std::env::var(password_variable)
        .ok()
        .filter(|value| !value.is_empty());
    let Some(password) = password else {
        let source = if flag_username.is_some() {
            flag
        } else {
            username_variable
        };
        return Err(ExitError::new(
            EXIT_USAGE,
            format!("{source} is set but {password_variable} is empty: export the password or access token in {password_variable}"),
        )
        .into());
    };
    Ok(Some(Credentials::Basic { username, password }))
}

fn docker_config_credentials(host: &str) -> anyhow::Result<Credentials> {
    let found =
        Credentials::from_docker_config(host).context("failed to read registry credentials")?;
    Ok(found.unwrap_or_default())
}

/// Sends `tracing` events (retries, for example) to standard error; `STAGGER_LOG` sets the
/// filter, `warn` by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STAGGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
