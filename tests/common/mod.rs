//! Shared helpers for the integration tests. Include with `mod common;`.
//!
//! Each test binary uses only part of this, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod engines;
pub mod runc;
pub mod sim;
