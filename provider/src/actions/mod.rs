//! Actions (Terraform >= 1.14): one file each, joining a domain client to the protocol layer
//! like a resource does, but with no state. Invoked with
//! `terraform apply -invoke=action.<type>.<name>` or by `action_trigger` in a resource's
//! `lifecycle`; progress goes to Terraform's console as progress events
//! (`framework::Progress`), the result is the diagnostics. Registered in `provider.rs`
//! (`actions()`).

pub mod restore_database;
pub mod rollback_release;
