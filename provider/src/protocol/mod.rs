//! The protocol layer: everything Terraform-specific and nothing Artifortress-specific.
//!
//! - [`serve`]: go-plugin handshake, AutoMTLS, unix socket, lifecycle (Shutdown, StopProvider).
//! - [`server`]: the `tfplugin6.Provider` gRPC service, one thin shell per RPC.
//! - [`framework`]: the traits resources implement, and Terraform's plan/apply rules.
//! - [`types`], [`value`], [`msgpack`], [`json`]: cty types, values and their wire forms.
//! - [`model`]: typed models of resources and data sources, from which schemas are built.
//! - [`schema`], [`validators`], [`diagnostics`], [`logging`].
//!
//! Architecture invariant: only this module touches prost/tonic types; the rest of the provider
//! sees [`value::Value`], [`schema::Schema`] and [`diagnostics::Diagnostics`].

pub mod diagnostics;
pub mod framework;
pub mod json;
pub mod logging;
pub mod model;
pub mod msgpack;
pub mod schema;
pub mod serve;
pub mod server;
pub mod tls;
pub mod types;
pub mod validators;
pub mod value;

#[cfg(test)]
mod codec_props;
#[cfg(test)]
mod server_tests;

#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
pub(crate) mod proto {
    pub mod tfplugin6 {
        tonic::include_proto!("tfplugin6");
    }
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}
