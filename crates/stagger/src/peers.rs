//! Peer lists for the spread strategy: one node identity per line.

use std::path::Path;

use anyhow::{bail, Context};
use stagger_core::NodeId;

/// Reads a peer file: one node identity per line; blank lines and text after `#` are ignored.
pub fn read_peer_file(path: &Path) -> anyhow::Result<Vec<NodeId>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read peer file {}", path.display()))?;
    parse_peer_list(&text).with_context(|| format!("invalid peer file {}", path.display()))
}

/// Parses the text of a peer file.
pub fn parse_peer_list(text: &str) -> anyhow::Result<Vec<NodeId>> {
    let mut peers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let peer = NodeId::parse(content).with_context(|| format!("line {}", index + 1))?;
        peers.push(peer);
    }
    if peers.is_empty() {
        bail!("the peer list is empty: list one node identity per line");
    }
    Ok(peers)
}
