//! Resources: one file each, joining a domain client to the protocol layer.

pub mod backup;
pub mod migration;
pub mod restore_drill;
