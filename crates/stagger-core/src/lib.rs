//! The pure rules of stagger: release tags, timeslots and the rollout engine.
//!
//! Nothing here performs I/O or reads a clock: every time is a parameter in seconds since the Unix
//! epoch, so the same inputs always give the same decisions on every node and in every test.

pub mod engine;
pub mod replay;
pub mod tag;
pub mod timeslot;

pub use engine::{
    Action, Cause, Decision, DueUpgrade, Engine, EngineError, EngineState, Installed, Pending,
    Reason, ServiceState,
};
pub use tag::{parse_release_tag, Group, ImageRef, ReleaseTag, TagError, Urgency, Version};
pub use timeslot::{random_offset, spread_offset, NodeId, Strategy, Windows};
