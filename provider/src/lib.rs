//! terraform-provider-artifortress: a Terraform / OpenTofu provider (plugin protocol 6) that
//! turns the deployment of the Artifortress service into code.
//!
//! # Layout
//! - [`protocol`]: the Terraform plugin protocol: handshake, TLS, gRPC, values, schemas,
//!   diagnostics, and the rules every resource gets for free. Knows nothing of Artifortress.
//! - [`clients`]: Artifortress domain clients (HTTP API, migrations and bootstrap over
//!   PostgreSQL, backups and drills over the object store, releases over SSH hosts). Know
//!   nothing of Terraform.
//! - [`settings`]: the provider's settings as resources receive them, and the clients built
//!   lazily from them; below the types, importing clients and protocol only.
//! - [`shared`]: what type files share (value helpers, the migration observation, readiness
//!   dependencies, ops thresholds), so that none imports another.
//! - [`provider`], [`resources`], [`data_sources`], [`ephemeral_resources`] and [`actions`]: the
//!   provider schema and registry, and one file per resource, data source or action, joining
//!   the two.
//! - [`duration`]: Go's duration syntax, the one text format every layer shares (timeouts in
//!   schemas, durations in the clients' messages).

pub mod actions;
pub mod clients;
pub mod data_sources;
pub mod duration;
pub mod ephemeral_resources;
pub mod protocol;
pub mod provider;
pub mod resources;
pub mod settings;
pub mod shared;

/// The provider's registry address.
pub const PROVIDER_ADDRESS: &str = "registry.terraform.io/artifortress/artifortress";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
