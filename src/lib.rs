//! migward gives a container exactly the NVIDIA MIG instance it asked for,
//! and no other container that instance while it is held.
//!
//! The data path runs one way (DESIGN.md): [`request`] → [`inventory`] →
//! [`plan`] → lease → apply (runtime shim or OCI hook).

pub mod apply;
pub mod cli;
pub mod config;
pub mod hook;
pub mod inventory;
pub mod lease;
pub mod plan;
pub mod request;
pub mod shim;
pub mod simulate;
pub mod spec;
pub mod topology;
