//! Domain clients: talk to Artifortress and its dependencies; know nothing of Terraform.
//!
//! - [`api`]: the service's HTTP API (health, readiness; later ops summary and tokens).

pub mod api;
