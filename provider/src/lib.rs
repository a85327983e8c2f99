//! terraform-provider-artifortress: a Terraform / OpenTofu provider (plugin protocol 6) that
//! turns the deployment of the Artifortress service into code.
//!
//! # Layout
//! - [`protocol`]: the Terraform plugin protocol: handshake, TLS, gRPC, values, schemas,
//!   diagnostics, and the rules every resource gets for free. Knows nothing of Artifortress.
//! - [`clients`]: Artifortress domain clients (HTTP API, migrations over PostgreSQL, and later
//!   object store, hosts). Know nothing of Terraform.
//! - [`provider`], [`resources`] and [`data_sources`]: the provider configuration and one file
//!   per resource or data source, joining the two.

pub mod clients;
pub mod data_sources;
pub mod ephemeral_resources;
pub mod protocol;
pub mod provider;
pub mod resources;

/// The provider's registry address.
pub const PROVIDER_ADDRESS: &str = "registry.terraform.io/artifortress/artifortress";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
