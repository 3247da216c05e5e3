//! Release tags and image references: the grammar, parsing, formatting and ordering.
//!
//! A release tag is `v{MAJOR}.{MINOR}.{PATCH}[-canary][-hotfix|-immediate]`. Everything else a
//! registry lists (`latest`, `experimental`, staging tags such as `v1.3.13-cc1cc788`) is simply not a
//! release tag.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A release version: the three numbers of a release tag and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// Creates a version from its three numbers.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The rollout group a release tag targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Every node that does not opt into canaries. Tags without `-canary`.
    Main,
    /// Nodes that run canary releases. Tags with `-canary`.
    Canary,
}

impl Group {
    /// Returns the lower-case name used in tags, config files, logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Main => "main",
            Group::Canary => "canary",
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Group {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "main" => Ok(Group::Main),
            "canary" => Ok(Group::Canary),
            other => Err(format!(
                "invalid rollout group \"{other}\": expected \"main\" or \"canary\""
            )),
        }
    }
}

/// The urgency of a release, which sets its rollout window. Ordered `Normal < Hotfix < Immediate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// No suffix: the normal rollout window (24 hours by default).
    Normal,
    /// `-hotfix`: the hotfix rollout window (1 hour by default).
    Hotfix,
    /// `-immediate`: no rollout window, every node upgrades as soon as it detects the release.
    Immediate,
}

impl Urgency {
    /// Returns the lower-case name used in config files, logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Hotfix => "hotfix",
            Urgency::Immediate => "immediate",
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Urgency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "normal" => Ok(Urgency::Normal),
            "hotfix" => Ok(Urgency::Hotfix),
            "immediate" => Ok(Urgency::Immediate),
            other => Err(format!(
                "invalid urgency \"{other}\": expected \"normal\", \"hotfix\" or \"immediate\""
            )),
        }
    }
}

/// A rejected release tag or image reference: the input and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("invalid release tag \"{input}\": {reason}")]
    Tag { input: String, reason: String },
    #[error("invalid image reference \"{input}\": {reason}")]
    Reference { input: String, reason: String },
}

impl TagError {
    fn tag(input: &str, reason: impl Into<String>) -> Self {
        TagError::Tag {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    fn reference(input: &str, reason: impl Into<String>) -> Self {
        TagError::Reference {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// Returns the reason alone, without the input.
    pub fn reason(&self) -> &str {
        match self {
            TagError::Tag { reason, .. } | TagError::Reference { reason, .. } => reason,
        }
    }
}

/// A parsed release tag such as `v1.4.2-canary-hotfix`.
///
/// Equality compares every part; ordering (`cmp_version`) compares only the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReleaseTag {
    pub version: Version,
    pub group: Group,
    pub urgency: Urgency,
}

impl ReleaseTag {
    /// Creates a release tag from its parts.
    pub const fn new(version: Version, group: Group, urgency: Urgency) -> Self {
        ReleaseTag {
            version,
            group,
            urgency,
        }
    }

    /// Compares two tags by version only: `v1.2.3`, `v1.2.3-hotfix` and `v1.2.3-canary` are equal.
    pub fn cmp_version(&self, other: &ReleaseTag) -> Ordering {
        self.version.cmp(&other.version)
    }
}

impl fmt::Display for ReleaseTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.version)?;
        if self.group == Group::Canary {
            f.write_str("-canary")?;
        }
        match self.urgency {
            Urgency::Normal => Ok(()),
            Urgency::Hotfix => f.write_str("-hotfix"),
            Urgency::Immediate => f.write_str("-immediate"),
        }
    }
}

impl FromStr for ReleaseTag {
    type Err = TagError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_release_tag(input)
    }
}

impl Serialize for ReleaseTag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReleaseTag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

const VERSION_PART_NAMES: [&str; 3] = ["major", "minor", "patch"];

/// The reason a string is not a release tag. It borrows from the input, so rejecting a string costs no
/// allocation; [`parse_release_tag`] turns it into a message only when one is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection<'a> {
    Empty,
    WhiteSpace,
    MissingV,
    NoVersion,
    PartCount(usize),
    PartMissing(usize),
    NotDecimal(usize, &'a str),
    LeadingZero(usize),
    TooLarge(usize, &'a str),
    CanaryRepeated,
    CanaryAfter(Urgency),
    TwoUrgencies,
    TrailingDash,
    EmptySuffix,
    UnknownSuffix(&'a str),
}

impl Rejection<'_> {
    fn reason(self) -> String {
        match self {
            Rejection::Empty => "the tag is empty".to_string(),
            Rejection::WhiteSpace => "surrounding white space".to_string(),
            Rejection::MissingV => {
                "a release tag starts with a lower-case \"v\", as in v1.2.3".to_string()
            }
            Rejection::NoVersion => "no version after \"v\"".to_string(),
            Rejection::PartCount(found) => format!(
                "expected three dot-separated numbers after \"v\" (MAJOR.MINOR.PATCH), found {found}"
            ),
            Rejection::PartMissing(index) => {
                format!("the {} version is missing", VERSION_PART_NAMES[index])
            }
            Rejection::NotDecimal(index, part) => format!(
                "the {} version \"{part}\" is not a decimal number",
                VERSION_PART_NAMES[index]
            ),
            Rejection::LeadingZero(index) => {
                format!("leading zero in the {} version", VERSION_PART_NAMES[index])
            }
            Rejection::TooLarge(index, part) => format!(
                "the {} version {part} does not fit in 64 bits",
                VERSION_PART_NAMES[index]
            ),
            Rejection::CanaryRepeated => "\"-canary\" appears more than once".to_string(),
            Rejection::CanaryAfter(urgency) => {
                format!("\"-canary\" must come before \"-{urgency}\"")
            }
            Rejection::TwoUrgencies => {
                "a tag takes at most one of \"-hotfix\" and \"-immediate\"".to_string()
            }
            Rejection::TrailingDash => "the tag ends with \"-\"".to_string(),
            Rejection::EmptySuffix => "empty suffix between two \"-\"".to_string(),
            Rejection::UnknownSuffix(suffix) => format!(
                "unknown suffix \"-{suffix}\" (allowed: -canary, -hotfix, -immediate)"
            ),
        }
    }
}

/// Parses a release tag such as `v1.4.2`, `v1.4.2-canary` or `v1.4.2-canary-hotfix`.
pub fn parse_release_tag(input: &str) -> Result<ReleaseTag, TagError> {
    recognize(input).map_err(|rejection| TagError::tag(input, rejection.reason()))
}

impl ReleaseTag {
    /// Returns the release tag `text` spells, or `None` for any other string.
    ///
    /// It accepts exactly what [`parse_release_tag`] accepts but builds no error, which keeps
    /// sifting a registry's listing of mostly other tags cheap.
    pub fn recognize(text: &str) -> Option<ReleaseTag> {
        // Most listed tags are staging builds such as `v1.3.13-cc1cc788`: an unknown suffix
        // rejects them before any number is parsed.
        if let Some(index) = text.find('-') {
            let known = text[index + 1..]
                .split('-')
                .all(|suffix| matches!(suffix, "canary" | "hotfix" | "immediate"));
            if !known {
                return None;
            }
        }
        recognize(text).ok()
    }
}

fn recognize(input: &str) -> Result<ReleaseTag, Rejection<'_>> {
    if input.is_empty() {
        return Err(Rejection::Empty);
    }
    if input.trim() != input {
        return Err(Rejection::WhiteSpace);
    }
    let Some(rest) = input.strip_prefix('v') else {
        return Err(Rejection::MissingV);
    };

    // The version ends at the first '-'; everything after it is the list of suffixes.
    let (version_text, suffix_text) = match rest.find('-') {
        Some(index) => (&rest[..index], Some(&rest[index + 1..])),
        None => (rest, None),
    };
    let version = recognize_version(version_text)?;

    let mut group = Group::Main;
    let mut urgency = Urgency::Normal;
    if let Some(suffix_text) = suffix_text {
        let mut suffixes = suffix_text.split('-').peekable();
        while let Some(suffix) = suffixes.next() {
            let is_last = suffixes.peek().is_none();
            match suffix {
                "canary" => {
                    if group == Group::Canary {
                        return Err(Rejection::CanaryRepeated);
                    }
                    if urgency != Urgency::Normal {
                        return Err(Rejection::CanaryAfter(urgency));
                    }
                    group = Group::Canary;
                }
                "hotfix" | "immediate" => {
                    if urgency != Urgency::Normal {
                        return Err(Rejection::TwoUrgencies);
                    }
                    urgency = if suffix == "hotfix" {
                        Urgency::Hotfix
                    } else {
                        Urgency::Immediate
                    };
                }
                "" if is_last => return Err(Rejection::TrailingDash),
                "" => return Err(Rejection::EmptySuffix),
                other => return Err(Rejection::UnknownSuffix(other)),
            }
        }
    }

    Ok(ReleaseTag::new(version, group, urgency))
}

fn recognize_version(text: &str) -> Result<Version, Rejection<'_>> {
    if text.is_empty() {
        return Err(Rejection::NoVersion);
    }
    let part_count = text.split('.').count();
    if part_count != 3 {
        return Err(Rejection::PartCount(part_count));
    }

    let mut numbers = [0u64; 3];
    for (index, part) in text.split('.').enumerate() {
        if part.is_empty() {
            return Err(Rejection::PartMissing(index));
        }
        if !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(Rejection::NotDecimal(index, part));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(Rejection::LeadingZero(index));
        }
        numbers[index] = part.parse().map_err(|_| Rejection::TooLarge(index, part))?;
    }

    Ok(Version::new(numbers[0], numbers[1], numbers[2]))
}

/// A parsed image reference `[IMAGE:]TAG[@sha256:DIGEST]` whose tag is a release tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The repository part, such as `myhub.com:23433/myorg/node`; `None` for a bare tag.
    pub image: Option<String>,
    /// The release tag.
    pub tag: ReleaseTag,
    /// The manifest digest `sha256:<64 hex>`, when the reference pins one.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `IMAGE:TAG`, `IMAGE:TAG@sha256:<hex>`, or a bare release tag.
    ///
    /// IMAGE is everything before the last `:` once the digest is removed, so a registry port
    /// (`myhub.com:23433/org/node:v1.0.6`) stays part of the image.
    pub fn parse(input: &str) -> Result<ImageRef, TagError> {
        if input.trim() != input {
            return Err(TagError::reference(input, "surrounding white space"));
        }

        let (without_digest, digest) = match input.split_once('@') {
            Some((reference, digest)) => {
                validate_digest(input, digest)?;
                (reference, Some(digest.to_string()))
            }
            None => (input, None),
        };

        let (image, tag_text) = match without_digest.rfind(':') {
            // A ':' followed by a '/' belongs to a registry port, not to a tag.
            Some(index) if !without_digest[index + 1..].contains('/') => {
                (Some(&without_digest[..index]), &without_digest[index + 1..])
            }
            _ => (None, without_digest),
        };

        if let Some(image) = image {
            if image.is_empty() {
                return Err(TagError::reference(
                    input,
                    "the image name before \":\" is empty",
                ));
            }
            if image.chars().any(char::is_whitespace) {
                return Err(TagError::reference(
                    input,
                    "the image name contains white space",
                ));
            }
        } else if tag_text.contains('/') {
            return Err(TagError::reference(
                input,
                "no tag: write the reference as IMAGE:TAG",
            ));
        }

        let tag = parse_release_tag(tag_text).map_err(|error| match image {
            // A bare tag keeps the plain tag error; a reference names the whole input.
            None => error,
            Some(_) => {
                TagError::reference(input, format!("tag \"{tag_text}\": {}", error.reason()))
            }
        })?;

        Ok(ImageRef {
            image: image.map(str::to_string),
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(image) = &self.image {
            write!(f, "{image}:")?;
        }
        write!(f, "{}", self.tag)?;
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Checks that `digest` has the form `sha256:<64 lower-case hex digits>`.
pub fn validate_digest(input: &str, digest: &str) -> Result<(), TagError> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(TagError::reference(
            input,
            format!("digest \"{digest}\" must start with \"sha256:\""),
        ));
    };
    let is_lower_hex = hex
        .bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if hex.len() != 64 || !is_lower_hex {
        return Err(TagError::reference(
            input,
            format!("digest \"{digest}\" must be \"sha256:\" followed by 64 lower-case hex digits"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> ReleaseTag {
        parse_release_tag(text).unwrap()
    }

    fn error(text: &str) -> String {
        parse_release_tag(text).unwrap_err().to_string()
    }

    #[test]
    fn parse_plain_tag() {
        let parsed = tag("v1.2.3");
        assert_eq!(parsed.version, Version::new(1, 2, 3));
        assert_eq!(parsed.group, Group::Main);
        assert_eq!(parsed.urgency, Urgency::Normal);
    }

    #[test]
    fn parse_every_suffix_combination() {
        let cases = [
            ("v0.0.0", Group::Main, Urgency::Normal),
            ("v1.2.3-canary", Group::Canary, Urgency::Normal),
            ("v1.2.3-hotfix", Group::Main, Urgency::Hotfix),
            ("v1.2.3-immediate", Group::Main, Urgency::Immediate),
            ("v1.2.3-canary-hotfix", Group::Canary, Urgency::Hotfix),
            ("v1.2.3-canary-immediate", Group::Canary, Urgency::Immediate),
        ];
        for (text, group, urgency) in cases {
            let parsed = tag(text);
            assert_eq!(parsed.group, group, "{text}");
            assert_eq!(parsed.urgency, urgency, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn parse_u64_max_version() {
        let parsed = tag("v18446744073709551615.0.0");
        assert_eq!(parsed.version.major, u64::MAX);
    }

    #[test]
    fn reject_leading_zero() {
        assert_eq!(
            error("v01.2.3"),
            "invalid release tag \"v01.2.3\": leading zero in the major version"
        );
        assert_eq!(
            error("v1.02.3"),
            "invalid release tag \"v1.02.3\": leading zero in the minor version"
        );
        assert_eq!(
            error("v1.2.03"),
            "invalid release tag \"v1.2.03\": leading zero in the patch version"
        );
    }

    #[test]
    fn reject_number_past_u64() {
        assert_eq!(
            error("v18446744073709551616.0.0"),
            "invalid release tag \"v18446744073709551616.0.0\": the major version \
             18446744073709551616 does not fit in 64 bits"
        );
    }

    #[test]
    fn reject_misordered_or_repeated_suffixes() {
        assert_eq!(
            error("v1.2.3-hotfix-canary"),
            "invalid release tag \"v1.2.3-hotfix-canary\": \"-canary\" must come before \"-hotfix\""
        );
        assert_eq!(
            error("v1.2.3-immediate-canary"),
            "invalid release tag \"v1.2.3-immediate-canary\": \"-canary\" must come before \"-immediate\""
        );
        assert_eq!(
            error("v1.2.3-canary-canary"),
            "invalid release tag \"v1.2.3-canary-canary\": \"-canary\" appears more than once"
        );
        assert_eq!(
            error("v1.2.3-hotfix-immediate"),
            "invalid release tag \"v1.2.3-hotfix-immediate\": a tag takes at most one of \"-hotfix\" and \"-immediate\""
        );
        assert_eq!(
            error("v1.2.3-hotfix-hotfix"),
            "invalid release tag \"v1.2.3-hotfix-hotfix\": a tag takes at most one of \"-hotfix\" and \"-immediate\""
        );
    }

    #[test]
    fn reject_non_release_tags() {
        let cases = [
            (
                "latest",
                "a release tag starts with a lower-case \"v\", as in v1.2.3",
            ),
            (
                "experimental",
                "a release tag starts with a lower-case \"v\", as in v1.2.3",
            ),
            (
                "V1.2.3",
                "a release tag starts with a lower-case \"v\", as in v1.2.3",
            ),
            (
                "v1.3.13-cc1cc788",
                "unknown suffix \"-cc1cc788\" (allowed: -canary, -hotfix, -immediate)",
            ),
            (
                "v1.2.3-rc1",
                "unknown suffix \"-rc1\" (allowed: -canary, -hotfix, -immediate)",
            ),
            (
                "v1.2.3+build5",
                "the patch version \"3+build5\" is not a decimal number",
            ),
            (" v1.2.3", "surrounding white space"),
            ("v1.2.3 ", "surrounding white space"),
            ("", "the tag is empty"),
            (
                "v1.2",
                "expected three dot-separated numbers after \"v\" (MAJOR.MINOR.PATCH), found 2",
            ),
            (
                "v1.2.3.4",
                "expected three dot-separated numbers after \"v\" (MAJOR.MINOR.PATCH), found 4",
            ),
            ("v1..3", "the minor version is missing"),
            ("v1.2.3-", "the tag ends with \"-\""),
            ("v1.2.3--hotfix", "empty suffix between two \"-\""),
            ("v-1.2.3", "no version after \"v\""),
            ("v", "no version after \"v\""),
            (
                "v1.2.+3",
                "the patch version \"+3\" is not a decimal number",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(
                error(text),
                format!("invalid release tag \"{text}\": {reason}"),
                "input {text:?}"
            );
        }
    }

    #[test]
    fn order_by_numbers_only() {
        assert!(tag("v1.3.9").cmp_version(&tag("v1.3.11")).is_lt());
        assert!(tag("v1.3.11").cmp_version(&tag("v1.3.13")).is_lt());
        assert!(tag("v0.20.0").cmp_version(&tag("v0.2.5")).is_gt());
        assert!(tag("v1.2.3").cmp_version(&tag("v1.2.3-hotfix")).is_eq());
        assert!(tag("v1.2.3").cmp_version(&tag("v1.2.3-canary")).is_eq());
    }

    #[test]
    fn reference_with_registry_port() {
        let parsed = ImageRef::parse("myhub.com:23433/myorg/node:v1.0.6-canary-hotfix").unwrap();
        assert_eq!(parsed.image.as_deref(), Some("myhub.com:23433/myorg/node"));
        assert_eq!(parsed.tag, tag("v1.0.6-canary-hotfix"));
        assert_eq!(parsed.digest, None);
    }

    #[test]
    fn reference_with_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let input = format!("orbsnetwork/node:v1.0.6@{digest}");
        let parsed = ImageRef::parse(&input).unwrap();
        assert_eq!(parsed.image.as_deref(), Some("orbsnetwork/node"));
        assert_eq!(parsed.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(parsed.to_string(), input);
    }

    #[test]
    fn reference_bare_tag() {
        let parsed = ImageRef::parse("v2.0.0-hotfix").unwrap();
        assert_eq!(parsed.image, None);
        assert_eq!(parsed.tag, tag("v2.0.0-hotfix"));
    }

    #[test]
    fn reference_rejects_bad_digest() {
        let upper = format!("node:v1.0.0@sha256:{}", "AB".repeat(32));
        assert_eq!(
            ImageRef::parse(&upper).unwrap_err().to_string(),
            format!(
                "invalid image reference \"{upper}\": digest \"sha256:{}\" must be \"sha256:\" followed by 64 lower-case hex digits",
                "AB".repeat(32)
            )
        );
        let short = "node:v1.0.0@sha256:abc";
        assert!(ImageRef::parse(short).is_err());
        let other_algorithm = format!("node:v1.0.0@sha512:{}", "ab".repeat(32));
        assert!(ImageRef::parse(&other_algorithm)
            .unwrap_err()
            .to_string()
            .contains("must start with \"sha256:\""));
    }

    #[test]
    fn reference_rejects_empty_image() {
        assert_eq!(
            ImageRef::parse(":v1.0.0").unwrap_err().to_string(),
            "invalid image reference \":v1.0.0\": the image name before \":\" is empty"
        );
    }

    #[test]
    fn reference_rejects_white_space_in_image() {
        assert_eq!(
            ImageRef::parse("my org/node:v1.0.0")
                .unwrap_err()
                .to_string(),
            "invalid image reference \"my org/node:v1.0.0\": the image name contains white space"
        );
    }

    #[test]
    fn reference_rejects_non_release_tag() {
        assert_eq!(
            ImageRef::parse("orbsnetwork/node:latest")
                .unwrap_err()
                .to_string(),
            "invalid image reference \"orbsnetwork/node:latest\": tag \"latest\": a release tag \
             starts with a lower-case \"v\", as in v1.2.3"
        );
    }

    #[test]
    fn reference_without_tag() {
        assert_eq!(
            ImageRef::parse("myhub.com:5000/node").unwrap_err().to_string(),
            "invalid image reference \"myhub.com:5000/node\": no tag: write the reference as IMAGE:TAG"
        );
    }
}
