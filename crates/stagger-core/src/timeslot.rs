//! Timeslot functions: when a node upgrades to a release inside its rollout window.
//!
//! Two strategies exist. `random` needs nothing but the node's own identity: the offset into the
//! window is a SHA-256 of the identity and the detection time. `spread` needs the list of peers and
//! spaces their timeslots evenly, so the number of nodes down at once is bounded.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tag::{Urgency, Version};

/// Default normal rollout window, in seconds (24 hours).
pub const DEFAULT_NORMAL_WINDOW_SECS: u64 = 24 * 60 * 60;

/// Default hotfix rollout window, in seconds (1 hour).
pub const DEFAULT_HOTFIX_WINDOW_SECS: u64 = 60 * 60;

/// A node identity as the timeslot functions hash it.
///
/// A 20-byte hex address (40 hex digits, optional `0x`/`0X` prefix, any case) hashes as its 20 raw
/// bytes, so `0xABCD…` and `abcd…` are the same node. Any other identity hashes as its UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    text: String,
    bytes: Vec<u8>,
}

/// A rejected node identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("invalid node identity: it is empty; set it to the node's address or name")]
    Empty,
    #[error("invalid node identity {0:?}: surrounding white space")]
    WhiteSpace(String),
}

impl NodeId {
    /// Parses a node identity, decoding a 20-byte hex address to its raw bytes.
    pub fn parse(text: &str) -> Result<NodeId, NodeIdError> {
        if text.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if text.trim() != text {
            return Err(NodeIdError::WhiteSpace(text.to_string()));
        }

        let bytes = decode_address(text).unwrap_or_else(|| text.as_bytes().to_vec());
        Ok(NodeId {
            text: text.to_string(),
            bytes,
        })
    }

    /// Returns the identity as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the bytes the timeslot functions hash.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Reports whether the identity is a 20-byte hex address.
    pub fn is_address(&self) -> bool {
        self.bytes.len() == 20 && self.bytes != self.text.as_bytes()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn decode_address(text: &str) -> Option<Vec<u8>> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if hex.len() != 40 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }

    let mut bytes = Vec::with_capacity(20);
    for pair in hex.as_bytes().chunks(2) {
        bytes.push((hex_value(pair[0])? << 4) | hex_value(pair[1])?);
    }
    Some(bytes)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The rollout windows of the two urgencies that have one, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    pub normal_secs: u64,
    pub hotfix_secs: u64,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            normal_secs: DEFAULT_NORMAL_WINDOW_SECS,
            hotfix_secs: DEFAULT_HOTFIX_WINDOW_SECS,
        }
    }
}

impl Windows {
    /// Returns the rollout window of `urgency`, in seconds; 0 for immediate.
    pub fn for_urgency(&self, urgency: Urgency) -> u64 {
        match urgency {
            Urgency::Normal => self.normal_secs,
            Urgency::Hotfix => self.hotfix_secs,
            Urgency::Immediate => 0,
        }
    }
}

/// Computes the random-strategy offset into the rollout window, in seconds.
///
/// `offset = u64_be(SHA-256(node_bytes || u64_be(detected_at))[0..8]) mod window_secs`, where
/// `detected_at` is in seconds since the Unix epoch. A window of 0 (immediate) gives offset 0.
pub fn random_offset(node: &NodeId, detected_at: u64, window_secs: u64) -> u64 {
    if window_secs == 0 {
        return 0;
    }

    let mut hasher = Sha256::new();
    hasher.update(node.bytes());
    hasher.update(detected_at.to_be_bytes());
    let digest = hasher.finalize();

    hash_prefix(&digest) % window_secs
}

fn hash_prefix(digest: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(prefix)
}

/// Returns the SHA-256 that orders a peer in the `spread` strategy for one release version.
pub fn spread_rank_key(node: &NodeId, version: Version) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(node.bytes());
    hasher.update(version.to_string().as_bytes());
    hasher.finalize().into()
}

/// Computes the spread-strategy offset into the rollout window, in seconds.
///
/// The peers (the committee, duplicates removed by node bytes) are ranked by
/// `SHA-256(node_bytes || utf8("MAJOR.MINOR.PATCH"))`, ties broken by node bytes, and the node of
/// rank `r` among `n` peers gets `floor(r * window_secs / n)`. Returns `None` when `node` is not
/// in `peers`; the caller then falls back to [`random_offset`].
pub fn spread_offset(
    node: &NodeId,
    peers: &[NodeId],
    version: Version,
    window_secs: u64,
) -> Option<u64> {
    let mut ranked: Vec<([u8; 32], &[u8])> = peers
        .iter()
        .map(|peer| (spread_rank_key(peer, version), peer.bytes()))
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);

    let rank = ranked
        .iter()
        .position(|(_, bytes)| *bytes == node.bytes())?;
    let offset = (rank as u128 * window_secs as u128) / ranked.len() as u128;
    Some(offset as u64)
}

/// The strategy a node uses to pick its offset into a rollout window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Strategy {
    /// A pseudo-random offset from the node identity and the detection time.
    #[default]
    Random,
    /// Evenly spaced offsets over a known list of peers.
    Spread { peers: Vec<NodeId> },
}

/// The offset a strategy chose and whether it had to fall back to `random`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    /// Seconds after the detection time.
    pub secs: u64,
    /// True when the `spread` strategy was asked for but the node is not in its peer list.
    pub fell_back: bool,
}

impl Strategy {
    /// Computes this strategy's offset for a release detected at `detected_at` (Unix seconds).
    pub fn offset(
        &self,
        node: &NodeId,
        version: Version,
        detected_at: u64,
        window_secs: u64,
    ) -> Offset {
        match self {
            Strategy::Random => Offset {
                secs: random_offset(node, detected_at, window_secs),
                fell_back: false,
            },
            Strategy::Spread { peers } => match spread_offset(node, peers, version, window_secs) {
                Some(secs) => Offset {
                    secs,
                    fell_back: false,
                },
                None => Offset {
                    secs: random_offset(node, detected_at, window_secs),
                    fell_back: true,
                },
            },
        }
    }

    /// Returns the strategy's name as used in configs and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Spread { .. } => "spread",
        }
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NodeId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> NodeId {
        NodeId::parse(text).unwrap()
    }

    #[test]
    fn random_offset_address_vector() {
        let address = node("8cd2a24f0c3f50bce2f12c846277491433b47ae0");
        assert_eq!(random_offset(&address, 1_764_806_400, 86_400), 27_348);
    }

    #[test]
    fn random_offset_name_vector() {
        assert_eq!(
            random_offset(&node("node-eu-1"), 1_764_806_400, 86_400),
            7_739
        );
    }

    #[test]
    fn address_prefix_and_case_are_ignored() {
        let plain = node("8cd2a24f0c3f50bce2f12c846277491433b47ae0");
        let prefixed = node("0x8CD2A24F0C3F50BCE2F12C846277491433B47AE0");
        let upper_prefix = node("0X8cd2a24f0c3f50bce2f12c846277491433b47ae0");
        assert_eq!(plain.bytes(), prefixed.bytes());
        assert_eq!(plain.bytes(), upper_prefix.bytes());
        assert!(plain.is_address());
    }

    #[test]
    fn non_address_hashes_as_text() {
        let short_hex = node("8cd2a24f");
        assert_eq!(short_hex.bytes(), b"8cd2a24f");
        assert!(!short_hex.is_address());
        let forty_non_hex = "g".repeat(40);
        assert_eq!(node(&forty_non_hex).bytes(), forty_non_hex.as_bytes());
    }

    #[test]
    fn node_id_rejects_empty_and_padded() {
        assert_eq!(NodeId::parse(""), Err(NodeIdError::Empty));
        assert!(matches!(
            NodeId::parse(" node"),
            Err(NodeIdError::WhiteSpace(_))
        ));
    }

    #[test]
    fn immediate_window_gives_zero() {
        assert_eq!(random_offset(&node("node-eu-1"), 1_764_806_400, 0), 0);
    }

    #[test]
    fn spread_offsets_are_evenly_spaced() {
        let peers: Vec<NodeId> = (0..4).map(|index| node(&format!("peer-{index}"))).collect();
        let version = Version::new(1, 2, 3);
        let mut offsets: Vec<u64> = peers
            .iter()
            .map(|peer| spread_offset(peer, &peers, version, 3_600).unwrap())
            .collect();
        offsets.sort();
        assert_eq!(offsets, vec![0, 900, 1_800, 2_700]);
    }

    #[test]
    fn spread_ignores_duplicate_peers() {
        let address = "8cd2a24f0c3f50bce2f12c846277491433b47ae0";
        let peers = vec![
            node(address),
            node(&format!("0x{}", address.to_uppercase())),
            node("node-eu-1"),
        ];
        let version = Version::new(1, 0, 0);
        let mut offsets: Vec<u64> = [node(address), node("node-eu-1")]
            .iter()
            .map(|peer| spread_offset(peer, &peers, version, 100).unwrap())
            .collect();
        offsets.sort();
        assert_eq!(offsets, vec![0, 50]);
    }

    #[test]
    fn spread_outside_peer_list_falls_back() {
        let peers = vec![node("peer-a"), node("peer-b")];
        let stranger = node("node-eu-1");
        assert_eq!(
            spread_offset(&stranger, &peers, Version::new(1, 0, 0), 86_400),
            None
        );

        let strategy = Strategy::Spread { peers };
        let offset = strategy.offset(&stranger, Version::new(1, 0, 0), 1_764_806_400, 86_400);
        assert!(offset.fell_back);
        assert_eq!(offset.secs, 7_739);
    }
}
