//! Domain clients: talk to Artifortress and its dependencies; know nothing of Terraform.
//!
//! - [`api`]: the service's HTTP API (health, readiness; later ops summary and tokens).
//! - [`migrations`]: the service's SQL migrations: files, ledger, plan, exactly-once apply.

pub mod api;
pub mod migrations;
