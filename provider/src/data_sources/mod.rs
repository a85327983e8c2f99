//! Data sources, one file each.

pub mod backups;
pub mod migrations;
pub mod readiness;
