//! Shared helpers of the end-to-end tests. Include it with `mod support;`.

// Each test file uses only part of the helpers, so the rest would warn as unused there.
#![allow(dead_code)]

pub mod agent;
pub mod registry;
