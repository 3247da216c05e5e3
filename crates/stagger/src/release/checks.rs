//! The decisions `stagger release` makes before and after reading the registries: which release
//! tag to publish, and whether publishing it would be ignored or overwrite another image.

use stagger_core::engine::select_newest;
use stagger_core::{parse_release_tag, Group, ReleaseTag, Urgency, Version};

/// Parses the bare version a release is published under: `--target-tag`, or the source tag
/// when no target tag is given.
///
/// The suffixes are chosen by the plan flags, so a tag that already carries `-canary`,
/// `-hotfix` or `-immediate` is rejected rather than combined with the flags.
pub fn parse_target_version(tag: &str, from_source: bool) -> Result<Version, String> {
    let parsed = parse_release_tag(tag).map_err(|error| {
        let origin = if from_source {
            format!(
                "the source tag \"{tag}\" is used as the target tag, but it is not a release tag \
                 ({})",
                error.reason()
            )
        } else {
            format!("invalid --target-tag \"{tag}\": {}", error.reason())
        };
        format!("{origin}: pass --target-tag vX.Y.Z, such as --target-tag v1.4.0")
    })?;

    if parsed.group != Group::Main || parsed.urgency != Urgency::Normal {
        let bare = parsed.version;
        return Err(format!(
            "target tag \"{tag}\" already has a suffix: pass the bare version \
             (--target-tag v{bare}) and choose the suffixes with --canary, --hotfix or \
             --immediate"
        ));
    }
    Ok(parsed.version)
}

/// Finds the existing release that makes `new` pointless: the newest release that nodes of
/// `new.group` pick among `existing`, when every node would ignore `new` next to it.
///
/// Agents never downgrade or reinstall a version, and a tag of the same version changes a
/// pending upgrade only when it is more urgent. So `new` is ignored when that newest release
/// has a higher version, or the same version with the same or a higher urgency. A more urgent
/// tag of the same version (`v1.4.0-hotfix` after `v1.4.0`) is allowed: it speeds up the nodes
/// still waiting for their timeslot. Main nodes consider tags without `-canary` only, canary
/// nodes every release tag, and tags that are not release tags (`latest`, staging builds) are
/// ignored.
pub fn blocking_release(existing: &[String], new: &ReleaseTag) -> Option<String> {
    let releases: Vec<(ReleaseTag, &String)> = existing
        .iter()
        .filter_map(|text| parse_release_tag(text).ok().map(|tag| (tag, text)))
        .collect();
    let newest = select_newest(releases.iter().map(|(tag, _)| tag), new.group)?;

    let ignored = newest.version > new.version
        || (newest.version == new.version && newest.urgency >= new.urgency);
    if !ignored {
        return None;
    }
    releases
        .iter()
        .find(|(tag, _)| *tag == newest)
        .map(|(_, text)| (*text).clone())
}

/// Reports whether nodes of this repository restart in a way that can fork consensus when all
/// of them upgrade at once.
pub fn is_consensus_critical(repository: &str) -> bool {
    matches!(repository, "node" | "management-service")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|tag| tag.to_string()).collect()
    }

    fn release(text: &str) -> ReleaseTag {
        parse_release_tag(text).unwrap()
    }

    #[test]
    fn target_version_bare() {
        assert_eq!(
            parse_target_version("v1.4.0", false),
            Ok(Version::new(1, 4, 0))
        );
    }

    #[test]
    fn target_version_from_experimental() {
        let message = parse_target_version("experimental", true).unwrap_err();
        assert!(message.contains("source tag \"experimental\""), "{message}");
        assert!(message.contains("pass --target-tag vX.Y.Z"), "{message}");
    }

    #[test]
    fn target_version_invalid_flag() {
        let message = parse_target_version("1.4.0", false).unwrap_err();
        assert!(
            message.starts_with("invalid --target-tag \"1.4.0\""),
            "{message}"
        );
        assert!(message.contains("pass --target-tag vX.Y.Z"), "{message}");
    }

    #[test]
    fn target_version_with_suffix() {
        for tag in ["v1.4.0-hotfix", "v1.4.0-canary", "v1.4.0-immediate"] {
            let message = parse_target_version(tag, false).unwrap_err();
            assert!(message.contains("already has a suffix"), "{message}");
            assert!(message.contains("--target-tag v1.4.0"), "{message}");
        }
    }

    #[test]
    fn blocking_release_main() {
        let existing = tags(&[
            "latest",
            "v1.3.0",
            "v1.3.1-hotfix",
            "v1.5.0-canary",
            "v1.3.13-cc1cc788",
        ]);
        assert_eq!(blocking_release(&existing, &release("v1.4.0")), None);
        assert_eq!(
            blocking_release(&existing, &release("v1.3.1")).as_deref(),
            Some("v1.3.1-hotfix")
        );
        assert_eq!(
            blocking_release(&existing, &release("v1.2.0-immediate")).as_deref(),
            Some("v1.3.1-hotfix")
        );
    }

    #[test]
    fn blocking_release_allows_escalation() {
        let existing = tags(&["v1.3.0", "v1.3.1-hotfix"]);
        assert_eq!(
            blocking_release(&existing, &release("v1.3.1-immediate")),
            None
        );
        assert_eq!(
            blocking_release(&existing, &release("v1.3.1-hotfix")).as_deref(),
            Some("v1.3.1-hotfix")
        );
    }

    #[test]
    fn blocking_release_main_ignores_canaries() {
        let existing = tags(&["v1.3.0", "v1.5.0-canary"]);
        assert_eq!(blocking_release(&existing, &release("v1.4.0-hotfix")), None);
    }

    #[test]
    fn blocking_release_canary_sees_main() {
        let existing = tags(&["v1.4.0", "v1.3.0-canary"]);
        assert_eq!(
            blocking_release(&existing, &release("v1.4.0-canary")).as_deref(),
            Some("v1.4.0")
        );
        assert_eq!(blocking_release(&existing, &release("v1.4.1-canary")), None);
    }

    #[test]
    fn blocking_release_empty_repository() {
        assert_eq!(blocking_release(&[], &release("v0.0.1")), None);
    }

    #[test]
    fn consensus_critical_repositories() {
        assert!(is_consensus_critical("node"));
        assert!(is_consensus_critical("management-service"));
        assert!(!is_consensus_critical("signer"));
    }
}
