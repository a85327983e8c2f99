//! The provider-level RPCs: metadata and schemas, the provider's own configuration
//! (validate, configure) and StopProvider.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response};

use super::{
    Out, ProviderService, Res, WithDiagnostics, decode, server_capabilities, sorted,
    to_proto_diags, to_proto_identity_schema, to_proto_schema,
};
use crate::protocol::diagnostics::Diagnostics;
use crate::protocol::framework::{self, ConfigureRequest, Provider};
use crate::protocol::proto::tfplugin6 as pb;
use crate::protocol::schema::Schema;

impl<P: Provider> ProviderService<P> {
    pub(super) async fn serve_get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> Res<pb::get_metadata::Response> {
        let resp = self
            .run("GetMetadata", "", async {
                pb::get_metadata::Response {
                    server_capabilities: Some(server_capabilities()),
                    data_sources: sorted(self.data_sources.keys())
                        .map(|t| pb::get_metadata::DataSourceMetadata { type_name: t })
                        .collect(),
                    resources: sorted(self.resources.keys())
                        .map(|t| pb::get_metadata::ResourceMetadata { type_name: t })
                        .collect(),
                    ephemeral_resources: sorted(self.ephemerals.keys())
                        .map(|t| pb::get_metadata::EphemeralMetadata { type_name: t })
                        .collect(),
                    actions: sorted(self.actions.keys())
                        .map(|t| pb::get_metadata::ActionMetadata { type_name: t })
                        .collect(),
                    list_resources: sorted(self.lists.keys())
                        .map(|t| pb::get_metadata::ListResourceMetadata { type_name: t })
                        .collect(),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> Res<pb::get_provider_schema::Response> {
        let resp = self
            .run("GetProviderSchema", "", async {
                let mut diags = self.provider_schema.check();
                let mut convert = |entries: Vec<(&String, &Schema)>| {
                    entries
                        .into_iter()
                        .map(|(name, schema)| {
                            diags.extend(schema.check());
                            (name.clone(), to_proto_schema(schema))
                        })
                        .collect::<HashMap<_, _>>()
                };
                let resource_schemas =
                    convert(self.resources.iter().map(|(k, e)| (k, &e.schema)).collect());
                let data_source_schemas = convert(
                    self.data_sources
                        .iter()
                        .map(|(k, e)| (k, &e.schema))
                        .collect(),
                );
                let ephemeral_resource_schemas = convert(
                    self.ephemerals
                        .iter()
                        .map(|(k, e)| (k, &e.schema))
                        .collect(),
                );
                let list_resource_schemas =
                    convert(self.lists.iter().map(|(k, e)| (k, &e.schema)).collect());
                let action_schemas = self
                    .actions
                    .iter()
                    .map(|(name, e)| {
                        diags.extend(e.schema.check());
                        diags.extend(framework::check_action_schema(name, &e.schema));
                        let schema = Some(to_proto_schema(&e.schema));
                        (name.clone(), pb::ActionSchema { schema })
                    })
                    .collect();
                pb::get_provider_schema::Response {
                    provider: Some(to_proto_schema(&self.provider_schema)),
                    resource_schemas,
                    data_source_schemas,
                    ephemeral_resource_schemas,
                    action_schemas,
                    list_resource_schemas,
                    server_capabilities: Some(server_capabilities()),
                    diagnostics: to_proto_diags(&diags),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_get_resource_identity_schemas(
        &self,
        _request: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Res<pb::get_resource_identity_schemas::Response> {
        let resp = self
            .run("GetResourceIdentitySchemas", "", async {
                pb::get_resource_identity_schemas::Response {
                    identity_schemas: self
                        .identities
                        .iter()
                        .map(|(name, (schema, _))| (name.clone(), to_proto_identity_schema(schema)))
                        .collect(),
                    diagnostics: Vec::new(),
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_get_functions(
        &self,
        _request: Request<pb::get_functions::Request>,
    ) -> Res<pb::get_functions::Response> {
        Ok(Response::new(Default::default()))
    }

    pub(super) async fn serve_validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> Res<pb::validate_provider_config::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ValidateProviderConfig", "", async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let ty = self.provider_schema.value_type();
                    let (config, checks) = tri!(
                        diags,
                        self.checked_config(&self.provider_schema, &ty, req.config.as_ref(), None)
                    );
                    diags.extend(checks);
                    diags.extend(self.provider.validate(&config).await);
                    Out((), diags)
                }
                .await;
                pb::validate_provider_config::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> Res<pb::configure_provider::Response> {
        let req = request.into_inner();
        if let Some(caps) = &req.client_capabilities {
            self.write_only_allowed
                .store(caps.write_only_attributes_allowed, Ordering::Relaxed);
        }
        let resp = self
            .run("ConfigureProvider", "", async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let ty = self.provider_schema.value_type();
                    let config = tri!(diags, decode(req.config.as_ref(), &ty, "configuration"));
                    let ctx = self.context(None);
                    let (data, d) = self
                        .provider
                        .configure(ConfigureRequest {
                            config: &config,
                            terraform_version: &req.terraform_version,
                            ctx: &ctx,
                        })
                        .await;
                    diags.extend(d);
                    if let (Some(data), Ok(mut slot)) = (data, self.data.write()) {
                        *slot = Some(Arc::new(data));
                    }
                    Out((), diags)
                }
                .await;
                pb::configure_provider::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> Res<pb::stop_provider::Response> {
        // Cancel everything in flight; requests that arrive later get a fresh token.
        if let Ok(mut token) = self.stop.lock() {
            token.cancel();
            *token = CancellationToken::new();
        }
        tracing::info!(tf_rpc = "StopProvider", "cancelling in-flight operations");
        Ok(Response::new(pb::stop_provider::Response {
            error: String::new(),
        }))
    }
}
