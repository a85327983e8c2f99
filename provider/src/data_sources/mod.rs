//! Data sources, one file each.

pub mod migrations;
pub mod readiness;
