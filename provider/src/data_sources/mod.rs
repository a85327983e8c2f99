//! Data sources, one file each.

pub mod backups;
pub mod migrations;
pub mod ops_summary;
pub mod preflight;
pub mod readiness;
pub mod smoke;
