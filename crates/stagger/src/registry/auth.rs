//! Registry credentials, Docker `config.json` look-up and `WWW-Authenticate` challenges.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::RegistryError;
use super::DOCKER_HUB_HOST;

/// Credentials for one registry.
///
/// `Debug` prints the user name only, so a credential never reaches a log by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials: anonymous access, and anonymous bearer tokens where the registry uses them.
    #[default]
    Anonymous,
    /// A user name and password (or access token), sent as HTTP basic authentication to the
    /// registry or to its token endpoint.
    Basic { username: String, password: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    /// Looks up the credentials for `host` in the Docker config: `$DOCKER_CONFIG/config.json`
    /// when `DOCKER_CONFIG` is set, else `~/.docker/config.json`.
    ///
    /// Returns `Ok(None)` when no config file exists or it has no entry for `host`.
    pub fn from_docker_config(host: &str) -> Result<Option<Credentials>, RegistryError> {
        let Some(path) = docker_config_path() else {
            return Ok(None);
        };
        if !path.exists() {
            return Ok(None);
        }
        Credentials::from_docker_config_file(&path, host)
    }

    /// Looks up the credentials for `host` in one Docker `config.json` file.
    pub fn from_docker_config_file(
        path: &Path,
        host: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|error| RegistryError::DockerConfig {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        parse_docker_config(&text, host).map_err(|reason| RegistryError::DockerConfig {
            path: path.display().to_string(),
            reason,
        })
    }
}

/// Returns where the Docker config lives: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|home| !home.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Finds the `auths` entry for `host` in the text of a Docker `config.json`.
///
/// Keys may be `host`, `host:port`, or a URL such as `https://index.docker.io/v1/`; Docker Hub
/// matches any of `docker.io`, `index.docker.io` and `registry-1.docker.io`. An entry gives either
/// a base64 `auth` field (`user:password`) or `username` and `password` fields.
// NOTE: credential helpers (`credsStore`, `credHelpers`) are not run; their registries need
// credentials from the environment or flags.
pub fn parse_docker_config(text: &str, host: &str) -> Result<Option<Credentials>, String> {
    let config: DockerConfig =
        serde_json::from_str(text).map_err(|error| format!("invalid JSON: {error}"))?;
    let wanted = normalize_host(host);

    for (key, entry) in &config.auths {
        if normalize_host(key) != wanted {
            continue;
        }
        if let Some(encoded) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
            return decode_auth_field(encoded)
                .map(Some)
                .map_err(|reason| format!("invalid \"auth\" field for \"{key}\": {reason}"));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            }));
        }
    }
    Ok(None)
}

/// Decodes the base64 `user:password` of an `auth` field.
fn decode_auth_field(encoded: &str) -> Result<Credentials, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "not valid base64".to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 after decoding".to_string())?;
    let Some((username, password)) = text.split_once(':') else {
        return Err("expected \"user:password\" after decoding".to_string());
    };
    Ok(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Reduces a registry name or URL to `host[:port]` in lower case, with every Docker Hub alias
/// mapped to [`DOCKER_HUB_HOST`].
fn normalize_host(text: &str) -> String {
    let text = text.trim();
    let without_scheme = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB_HOST.to_string()
        }
        _ => host,
    }
}

/// An authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="...",service="...",scope="..."`: get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// `Basic realm="..."`: send the credentials with every request.
    Basic,
}

/// Parses a `WWW-Authenticate` header value into a challenge; `None` for unknown schemes or a
/// bearer challenge without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = match header.split_once(char::is_whitespace) {
        Some((scheme, params)) => (scheme, params),
        None => (header, ""),
    };

    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }

    let params = parse_auth_params(params);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// Parses `name="value", name=value` pairs; commas inside quotes belong to the value.
fn parse_auth_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();

    while !rest.is_empty() {
        let Some(equals) = rest.find('=') else {
            break;
        };
        let name = rest[..equals]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[equals + 1..].trim_start();

        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((index, character)) = chars.next() {
                match character {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            text.push(escaped);
                        }
                    }
                    '"' => {
                        end = index + 1;
                        break;
                    }
                    _ => text.push(character),
                }
            }
            value = text;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        params.insert(name, value);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_bearer_full() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#;
        let challenge = parse_challenge(header).unwrap();
        assert_eq!(
            challenge,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".to_string(),
                service: Some("registry.docker.io".to_string()),
                scope: Some("repository:library/ubuntu:pull,push".to_string()),
            }
        );
    }

    #[test]
    fn challenge_bearer_spaces_and_unquoted() {
        let header = r#"bearer realm=http://127.0.0.1:9/token , error="insufficient_scope""#;
        let Some(Challenge::Bearer {
            realm,
            service,
            scope,
        }) = parse_challenge(header)
        else {
            panic!("expected a bearer challenge");
        };
        assert_eq!(realm, "http://127.0.0.1:9/token");
        assert_eq!(service, None);
        assert_eq!(scope, None);
    }

    #[test]
    fn challenge_basic() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn challenge_unknown_or_incomplete() {
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn challenge_escaped_quote() {
        let header = r#"Bearer realm="https://a/t",service="say \"hi\"""#;
        let Some(Challenge::Bearer { service, .. }) = parse_challenge(header) else {
            panic!("expected a bearer challenge");
        };
        assert_eq!(service.as_deref(), Some(r#"say "hi""#));
    }

    fn basic(username: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }
    }

    #[test]
    fn docker_config_auth_field() {
        // "release:s3cret:with:colons" in base64.
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("release:s3cret:with:colons");
        let text = format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#);
        let found = parse_docker_config(&text, "127.0.0.1:5000").unwrap();
        assert_eq!(found, Some(basic("release", "s3cret:with:colons")));
    }

    #[test]
    fn docker_config_docker_hub_url_key() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass");
        let text =
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{encoded}"}}}}}}"#);
        let found = parse_docker_config(&text, DOCKER_HUB_HOST).unwrap();
        assert_eq!(found, Some(basic("hubuser", "hubpass")));
    }

    #[test]
    fn docker_config_username_password_fields() {
        let text = r#"{"auths":{"https://registry.example:8443":{"username":"u","password":"p"}}}"#;
        let found = parse_docker_config(text, "Registry.Example:8443").unwrap();
        assert_eq!(found, Some(basic("u", "p")));
    }

    #[test]
    fn docker_config_no_entry() {
        let text = r#"{"auths":{"other.example":{"auth":"dTpw"}},"credsStore":"desktop"}"#;
        assert_eq!(parse_docker_config(text, "registry.example").unwrap(), None);
        assert_eq!(parse_docker_config("{}", "registry.example").unwrap(), None);
    }

    #[test]
    fn docker_config_invalid_auth() {
        let text = r#"{"auths":{"r.example":{"auth":"!!!"}}}"#;
        let message = parse_docker_config(text, "r.example").unwrap_err();
        assert!(message.contains("not valid base64"), "{message}");

        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        let text = format!(r#"{{"auths":{{"r.example":{{"auth":"{no_colon}"}}}}}}"#);
        let message = parse_docker_config(&text, "r.example").unwrap_err();
        assert!(message.contains("user:password"), "{message}");
    }

    #[test]
    fn docker_config_invalid_json() {
        let message = parse_docker_config("{", "r.example").unwrap_err();
        assert!(message.starts_with("invalid JSON"), "{message}");
    }

    #[test]
    fn credentials_debug_hides_password() {
        let text = format!("{:?}", basic("alice", "hunter2"));
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
