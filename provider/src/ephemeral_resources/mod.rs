//! Ephemeral resources, one file each: values that exist only for one Terraform run and are
//! never written to state or plan files.

pub mod admin_token;
