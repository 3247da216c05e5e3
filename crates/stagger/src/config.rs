//! The agent's TOML configuration: parsed into input structs, then validated into `AgentConfig`.
//!
//! Every key is documented in docs/configuration.md with its unit and default. Validation errors
//! name the key and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use stagger_core::{Group, NodeId, Strategy, Windows};

use crate::peers::{parse_peer_list, read_peer_file};
use crate::timefmt::parse_duration_secs;

/// Default poll interval, in seconds (3 minutes).
pub const DEFAULT_INTERVAL_SECS: u64 = 180;

/// Default address of the read-only HTTP API. Loopback only: the API is unauthenticated.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7666";

/// Default first delay before retrying a failed upgrade, in seconds.
pub const DEFAULT_RETRY_INITIAL_SECS: u64 = 10;

/// Default longest delay between retries of a failed upgrade, in seconds (10 minutes).
pub const DEFAULT_RETRY_MAX_SECS: u64 = 600;

/// Default time a hook may run before it is killed, in seconds (10 minutes).
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 600;

/// Default connect timeout of a source request, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;

/// Default total timeout of a source request, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;

/// Default cap on a source response body, in bytes (16 MiB): far above a tag list of 100 000 tags.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// Default number of retries of a failed source request within one poll.
pub const DEFAULT_RETRIES: u32 = 3;

/// Default first backoff delay between source request retries, in milliseconds.
pub const DEFAULT_RETRY_BACKOFF_MILLIS: u64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigInput {
    node: Option<String>,
    node_file: Option<PathBuf>,
    state: Option<PathBuf>,
    interval: Option<String>,
    splay: Option<String>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    #[serde(default)]
    windows: WindowsInput,
    strategy: Option<String>,
    peers: Option<Vec<String>>,
    peers_file: Option<PathBuf>,
    #[serde(default)]
    api: ApiInput,
    source: SourceInput,
    #[serde(default)]
    services: BTreeMap<String, ServiceInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowsInput {
    normal: Option<String>,
    hotfix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiInput {
    listen: Option<String>,
    socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceInput {
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
    registry: Option<String>,
    #[serde(default)]
    insecure: bool,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    docker_config: Option<PathBuf>,
    connect_timeout: Option<String>,
    timeout: Option<String>,
    max_response_bytes: Option<u64>,
    retries: Option<u32>,
    retry_backoff: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceInput {
    image: Option<String>,
    group: Option<String>,
    executor: ExecutorInput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorInput {
    kind: String,
    command: Option<Vec<String>>,
    timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file the configuration was read from.
    pub path: PathBuf,
    pub node: NodeId,
    pub windows: Windows,
    pub strategy: Strategy,
    /// Directory holding the state file and the control socket.
    pub state_dir: PathBuf,
    pub interval: Duration,
    /// Upper bound of the random extra delay added to each poll interval.
    pub splay: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub listen: SocketAddr,
    pub socket: PathBuf,
    pub source: SourceConfig,
    pub services: BTreeMap<String, ServiceConfig>,
}

impl AgentConfig {
    /// Returns the path of the state file.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
}

/// Limits applied to every request a source makes.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_response_bytes: u64,
    pub retries: u32,
    pub retry_backoff: Duration,
}

/// Credentials for a registry. Never printed: `Debug` hides the password.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub docker_config: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("docker_config", &self.docker_config)
            .finish()
    }
}

/// The source the releases are listed from.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// A JSON deployment descriptor at a file path or an http(s) URL.
    Descriptor {
        location: DescriptorLocation,
        limits: RequestLimits,
    },
    /// An OCI registry: each service's repository is listed through the Distribution API.
    Registry {
        registry: String,
        insecure: bool,
        credentials: Credentials,
        limits: RequestLimits,
    },
}

/// The location of a descriptor.
#[derive(Debug, Clone)]
pub enum DescriptorLocation {
    File(PathBuf),
    Url(String),
}

/// One service the node runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    /// The image repository, such as `orbsnetwork/node` or `myhub.com:5000/org/node`.
    pub image: String,
    pub group: Group,
    pub executor: ExecutorConfig,
}

/// The executor that carries out a service's upgrades.
#[derive(Debug, Clone)]
pub enum ExecutorConfig {
    /// Run a command (argv, no shell) and wait for exit status 0.
    Hook {
        command: Vec<String>,
        timeout: Duration,
        env: BTreeMap<String, String>,
    },
    /// Publish the release at `GET /node/management` for an orchestrator to pick up.
    Orchestrator,
}

/// Reads and validates the configuration file at `path`.
///
/// Relative paths inside the file are resolved against the current directory, as a user running
/// `stagger agent --config examples/agent.toml` from the repository root expects.
pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file {}", path.display()))?;
    parse(&text, path).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses and validates configuration text; `path` is used only in messages and `AgentConfig::path`.
pub fn parse(text: &str, path: &Path) -> anyhow::Result<AgentConfig> {
    let input: ConfigInput = toml::from_str(text)?;

    let node = node_identity(&input)?;
    let windows = Windows {
        normal_secs: positive_secs("windows.normal", input.windows.normal.as_deref(), "24h")?,
        hotfix_secs: positive_secs("windows.hotfix", input.windows.hotfix.as_deref(), "1h")?,
    };
    let strategy = strategy(&input)?;

    let interval_secs = match &input.interval {
        Some(text) => positive_secs("interval", Some(text), "3m")?,
        None => DEFAULT_INTERVAL_SECS,
    };
    let splay_secs = match &input.splay {
        Some(text) => parse_duration_secs(text).context("invalid splay")?,
        None => interval_secs / 10,
    };
    let retry_initial = positive_secs(
        "retry_initial",
        input.retry_initial.as_deref(),
        &format!("{DEFAULT_RETRY_INITIAL_SECS}s"),
    )?;
    let retry_max = positive_secs(
        "retry_max",
        input.retry_max.as_deref(),
        &format!("{DEFAULT_RETRY_MAX_SECS}s"),
    )?;
    if retry_max < retry_initial {
        bail!("retry_max ({retry_max}s) is shorter than retry_initial ({retry_initial}s): raise retry_max");
    }

    let state_dir = input
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(".stagger"));
    let listen_text = input.api.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().with_context(|| {
        format!("invalid api.listen \"{listen_text}\": write an address and port such as 127.0.0.1:7666")
    })?;
    let socket = input
        .api
        .socket
        .clone()
        .unwrap_or_else(|| state_dir.join("control.sock"));

    let source = source(&input.source)?;
    if input.services.is_empty() {
        bail!("no services: add at least one [services.NAME] table");
    }
    let mut services = BTreeMap::new();
    for (name, service) in &input.services {
        services.insert(name.clone(), service_config(name, service, &source)?);
    }

    Ok(AgentConfig {
        path: path.to_path_buf(),
        node,
        windows,
        strategy,
        state_dir,
        interval: Duration::from_secs(interval_secs),
        splay: Duration::from_secs(splay_secs),
        retry_initial: Duration::from_secs(retry_initial),
        retry_max: Duration::from_secs(retry_max),
        listen,
        socket,
        source,
        services,
    })
}

fn node_identity(input: &ConfigInput) -> anyhow::Result<NodeId> {
    let text = match (&input.node, &input.node_file) {
        (Some(_), Some(_)) => bail!("both node and node_file are set: keep only one"),
        (Some(node), None) => node.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("failed to read node_file {}", file.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "missing node: set node = \"<address or name>\" or node_file = \"<path>\" to the \
             node identity"
        ),
    };
    let node = NodeId::parse(&text).context("invalid node")?;
    if node.is_address() && node.bytes().iter().all(|byte| *byte == 0) {
        bail!(
            "node is the all-zero placeholder address: set it to this node's own address, because \
             nodes that share an identity restart together"
        );
    }
    Ok(node)
}

fn strategy(input: &ConfigInput) -> anyhow::Result<Strategy> {
    let name = input.strategy.as_deref().unwrap_or("random");
    match name {
        "random" => {
            if input.peers.is_some() || input.peers_file.is_some() {
                bail!("peers and peers_file apply only to strategy = \"spread\": remove them or set the strategy");
            }
            Ok(Strategy::Random)
        }
        "spread" => {
            let peers = match (&input.peers, &input.peers_file) {
                (Some(_), Some(_)) => bail!("both peers and peers_file are set: keep only one"),
                (Some(list), None) => parse_peer_list(&list.join("\n")).context("invalid peers")?,
                (None, Some(file)) => read_peer_file(file).context("invalid peers_file")?,
                (None, None) => bail!(
                    "strategy = \"spread\" needs the committee: set peers = [...] or peers_file"
                ),
            };
            Ok(Strategy::Spread { peers })
        }
        other => bail!("invalid strategy \"{other}\": expected \"random\" or \"spread\""),
    }
}

fn positive_secs(key: &str, text: Option<&str>, default: &str) -> anyhow::Result<u64> {
    let text = text.unwrap_or(default);
    let secs = parse_duration_secs(text).with_context(|| format!("invalid {key}"))?;
    if secs == 0 {
        bail!("invalid {key} \"{text}\": it must be at least 1s");
    }
    Ok(secs)
}

fn limits(input: &SourceInput) -> anyhow::Result<RequestLimits> {
    let connect_timeout = positive_secs(
        "source.connect_timeout",
        input.connect_timeout.as_deref(),
        &format!("{DEFAULT_CONNECT_TIMEOUT_SECS}s"),
    )?;
    let timeout = positive_secs(
        "source.timeout",
        input.timeout.as_deref(),
        &format!("{DEFAULT_REQUEST_TIMEOUT_SECS}s"),
    )?;
    let retry_backoff = match &input.retry_backoff {
        Some(text) => humantime::parse_duration(text).map_err(|error| {
            anyhow::anyhow!("invalid source.retry_backoff \"{text}\": {error}; use a duration such as 500ms or 2s")
        })?,
        None => Duration::from_millis(DEFAULT_RETRY_BACKOFF_MILLIS),
    };
    let max_response_bytes = input
        .max_response_bytes
        .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes == 0 {
        bail!("invalid source.max_response_bytes 0: it must be at least 1");
    }
    Ok(RequestLimits {
        connect_timeout: Duration::from_secs(connect_timeout),
        timeout: Duration::from_secs(timeout),
        max_response_bytes,
        retries: input.retries.unwrap_or(DEFAULT_RETRIES),
        retry_backoff,
    })
}

fn source(input: &SourceInput) -> anyhow::Result<SourceConfig> {
    let limits = limits(input)?;
    match input.kind.as_str() {
        "descriptor" => {
            let location = match (&input.path, &input.url) {
                (Some(_), Some(_)) => {
                    bail!("source.path and source.url are both set: keep only one")
                }
                (Some(path), None) => DescriptorLocation::File(path.clone()),
                (None, Some(url)) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!(
                            "invalid source.url \"{url}\": it must start with http:// or https://"
                        );
                    }
                    DescriptorLocation::Url(url.clone())
                }
                (None, None) => bail!(
                    "source kind \"descriptor\" needs source.path (a JSON file) or source.url"
                ),
            };
            for (key, set) in [
                ("registry", input.registry.is_some()),
                ("username", input.username.is_some()),
                ("password", input.password.is_some()),
                ("password_file", input.password_file.is_some()),
                ("docker_config", input.docker_config.is_some()),
            ] {
                if set {
                    bail!("source.{key} applies only to kind = \"registry\": remove it");
                }
            }
            Ok(SourceConfig::Descriptor { location, limits })
        }
        "registry" => {
            if input.path.is_some() || input.url.is_some() {
                bail!(
                    "source.path and source.url apply only to kind = \"descriptor\": remove them"
                );
            }
            let registry = input
                .registry
                .clone()
                .unwrap_or_else(|| "registry-1.docker.io".to_string());
            if registry.is_empty()
                || registry.contains('/')
                || registry.contains(char::is_whitespace)
            {
                bail!("invalid source.registry \"{registry}\": write HOST or HOST:PORT, such as ghcr.io or 127.0.0.1:5000");
            }
            let password = match (&input.password, &input.password_file) {
                (Some(_), Some(_)) => {
                    bail!("source.password and source.password_file are both set: keep only one")
                }
                (Some(password), None) => Some(password.clone()),
                (None, Some(file)) => Some(
                    std::fs::read_to_string(file)
                        .with_context(|| {
                            format!("failed to read source.password_file {}", file.display())
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                (None, None) => None,
            };
            if password.is_some() != input.username.is_some() {
                bail!("source.username and a password go together: set both or neither");
            }
            Ok(SourceConfig::Registry {
                registry,
                insecure: input.insecure,
                credentials: Credentials {
                    username: input.username.clone(),
                    password,
                    docker_config: input.docker_config.clone(),
                },
                limits,
            })
        }
        other => bail!("invalid source.kind \"{other}\": expected \"descriptor\" or \"registry\""),
    }
}

fn service_config(
    name: &str,
    input: &ServiceInput,
    source: &SourceConfig,
) -> anyhow::Result<ServiceConfig> {
    let key = format!("services.{name}");
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("invalid service name {name:?}: use letters, digits, '-', '_' or '.'");
    }
    let group = match &input.group {
        Some(text) => text
            .parse::<Group>()
            .map_err(|error| anyhow::anyhow!("invalid {key}.group: {error}"))?,
        None => Group::Main,
    };
    let image = match (&input.image, source) {
        (Some(image), _) => {
            if image.is_empty() || image.contains(char::is_whitespace) || image.contains('@') {
                bail!("invalid {key}.image \"{image}\": write the repository without tag, such as orbsnetwork/node");
            }
            image.clone()
        }
        (None, SourceConfig::Descriptor { .. }) => name.to_string(),
        (None, SourceConfig::Registry { .. }) => bail!(
            "missing {key}.image: the registry source needs each service's repository, such as \
             image = \"orbsnetwork/node\""
        ),
    };

    let executor = match input.executor.kind.as_str() {
        "hook" => {
            let command = input.executor.command.clone().unwrap_or_default();
            if command.is_empty() || command[0].is_empty() {
                bail!(
                    "{key}.executor.command is missing or empty: give the program and its \
                     arguments as a list, such as [\"/usr/local/bin/upgrade\", \"--quiet\"]"
                );
            }
            let timeout = positive_secs(
                &format!("{key}.executor.timeout"),
                input.executor.timeout.as_deref(),
                &format!("{DEFAULT_HOOK_TIMEOUT_SECS}s"),
            )?;
            ExecutorConfig::Hook {
                command,
                timeout: Duration::from_secs(timeout),
                env: input.executor.env.clone(),
            }
        }
        "orchestrator" => {
            if input.executor.command.is_some() || input.executor.timeout.is_some() {
                bail!("{key}.executor: command and timeout apply only to kind = \"hook\"");
            }
            ExecutorConfig::Orchestrator
        }
        other => {
            bail!("invalid {key}.executor.kind \"{other}\": expected \"hook\" or \"orchestrator\"")
        }
    };

    Ok(ServiceConfig {
        name: name.to_string(),
        image,
        group,
        executor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
node = "node-eu-1"
[source]
kind = "descriptor"
path = "versions.json"
[services.signer]
executor = { kind = "hook", command = ["true"] }
"#;

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("agent.toml")).unwrap_err())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(MINIMAL, Path::new("agent.toml")).unwrap();
        assert_eq!(config.windows, Windows::default());
        assert_eq!(config.interval, Duration::from_secs(180));
        assert_eq!(config.splay, Duration::from_secs(18));
        assert_eq!(config.state_dir, PathBuf::from(".stagger"));
        assert_eq!(config.socket, PathBuf::from(".stagger/control.sock"));
        assert_eq!(config.listen, "127.0.0.1:7666".parse().unwrap());
        assert_eq!(config.services["signer"].image, "signer");
        assert_eq!(config.services["signer"].group, Group::Main);
    }

    #[test]
    fn missing_node_names_both_keys() {
        let text = MINIMAL.replace("node = \"node-eu-1\"", "");
        assert!(error_of(&text).contains("missing node: set node = "));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = format!("intervall = \"1m\"\n{MINIMAL}");
        assert!(
            error_of(&text).contains("unknown field `intervall`"),
            "{}",
            error_of(&text)
        );
    }

    #[test]
    fn zero_window_is_rejected() {
        let text = format!("{MINIMAL}\n[windows]\nhotfix = \"0s\"\n");
        assert!(error_of(&text).contains("invalid windows.hotfix \"0s\": it must be at least 1s"));
    }

    #[test]
    fn bad_group_names_key() {
        let text = MINIMAL.replace("[services.signer]", "[services.signer]\ngroup = \"beta\"");
        assert!(error_of(&text).contains("invalid services.signer.group"));
    }

    #[test]
    fn empty_hook_command_is_rejected() {
        let text = MINIMAL.replace("command = [\"true\"]", "command = []");
        assert!(error_of(&text).contains("services.signer.executor.command is missing or empty"));
    }

    #[test]
    fn registry_source_needs_image() {
        let text = MINIMAL.replace(
            "kind = \"descriptor\"\npath = \"versions.json\"",
            "kind = \"registry\"\nregistry = \"127.0.0.1:5000\"\ninsecure = true",
        );
        assert!(error_of(&text).contains("missing services.signer.image"));
    }

    #[test]
    fn spread_needs_peers() {
        let text = format!("strategy = \"spread\"\n{MINIMAL}");
        assert!(error_of(&text).contains("needs the committee"));
    }

    #[test]
    fn spread_reads_peer_list() {
        let text =
            format!("strategy = \"spread\"\npeers = [\"node-eu-1\", \"node-eu-2\"]\n{MINIMAL}");
        let config = parse(&text, Path::new("agent.toml")).unwrap();
        assert!(matches!(config.strategy, Strategy::Spread { ref peers } if peers.len() == 2));
    }

    #[test]
    fn credentials_debug_hides_password() {
        let credentials = Credentials {
            username: Some("robot".to_string()),
            password: Some("hunter2".to_string()),
            docker_config: None,
        };
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("<hidden>"));
    }
}
