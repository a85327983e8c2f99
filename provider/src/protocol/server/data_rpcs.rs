//! The data-source and ephemeral-resource RPCs: validate and read a data source; validate,
//! open, renew and close an ephemeral resource.

use tonic::{Request, Response};

use super::{
    Out, ProviderService, Res, WithDiagnostics, decode, encode, timestamp, to_proto_diags,
};
use crate::protocol::diagnostics::Diagnostics;
use crate::protocol::framework::{
    self, OpenRequest, OpenResponse, Provider, ReadDataRequest, ReadDataResponse,
};
use crate::protocol::proto::tfplugin6 as pb;

impl<P: Provider> ProviderService<P> {
    pub(super) async fn serve_validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> Res<pb::validate_data_resource_config::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ValidateDataResourceConfig", &req.type_name, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.data_source(&req.type_name));
                    let (config, checks) = tri!(
                        diags,
                        self.checked_config(&entry.schema, &entry.ty, req.config.as_ref(), None)
                    );
                    diags.extend(checks);
                    diags.extend(entry.imp.validate(&config).await);
                    Out((), diags)
                }
                .await;
                pb::validate_data_resource_config::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> Res<pb::read_data_source::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ReadDataSource", &req.type_name, async {
                let Out(state, diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.data_source(&req.type_name));
                    let config = tri!(
                        diags,
                        decode(req.config.as_ref(), &entry.ty, "configuration")
                    );
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    let mut prefilled = config.clone();
                    framework::apply_defaults(
                        &entry.schema.block.attributes,
                        &config,
                        &mut prefilled,
                    );
                    let mut resp = ReadDataResponse {
                        state: prefilled,
                        diagnostics: Diagnostics::new(),
                    };
                    entry
                        .imp
                        .read(
                            ReadDataRequest {
                                config: &config,
                                provider: &*data,
                                ctx: &ctx,
                            },
                            &mut resp,
                        )
                        .await;
                    diags.extend(resp.diagnostics);
                    if diags.has_errors() {
                        return Out(None, diags);
                    }
                    let mut state = resp.state;
                    framework::null_write_only(&entry.schema.block.attributes, &mut state);
                    let check =
                        framework::check_result_keeps_config(&entry.schema, &config, &state);
                    if check.has_errors() {
                        diags.extend(check);
                        return Out(None, diags);
                    }
                    let encoded = tri!(diags, encode(&state, &entry.ty, "data source state"));
                    Out(Some(encoded), diags)
                }
                .await;
                pb::read_data_source::Response {
                    state,
                    diagnostics: to_proto_diags(&diags),
                    deferred: None,
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_validate_ephemeral_resource_config(
        &self,
        request: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Res<pb::validate_ephemeral_resource_config::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ValidateEphemeralResourceConfig", &req.type_name, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.ephemeral(&req.type_name));
                    let (config, checks) = tri!(
                        diags,
                        self.checked_config(&entry.schema, &entry.ty, req.config.as_ref(), None)
                    );
                    diags.extend(checks);
                    diags.extend(entry.imp.validate(&config).await);
                    Out((), diags)
                }
                .await;
                pb::validate_ephemeral_resource_config::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_open_ephemeral_resource(
        &self,
        request: Request<pb::open_ephemeral_resource::Request>,
    ) -> Res<pb::open_ephemeral_resource::Response> {
        let req = request.into_inner();
        let resp = self
            .run("OpenEphemeralResource", &req.type_name, async {
                let Out((result, private, renew_at), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.ephemeral(&req.type_name));
                    let config = tri!(
                        diags,
                        decode(req.config.as_ref(), &entry.ty, "configuration")
                    );
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    let mut prefilled = config.clone();
                    framework::apply_defaults(
                        &entry.schema.block.attributes,
                        &config,
                        &mut prefilled,
                    );
                    let mut resp = OpenResponse {
                        result: prefilled,
                        ..Default::default()
                    };
                    entry
                        .imp
                        .open(
                            OpenRequest {
                                config: &config,
                                provider: &*data,
                                ctx: &ctx,
                            },
                            &mut resp,
                        )
                        .await;
                    diags.extend(resp.diagnostics);
                    if diags.has_errors() {
                        return Out((None, None, None), diags);
                    }
                    let check =
                        framework::check_result_keeps_config(&entry.schema, &config, &resp.result);
                    if check.has_errors() {
                        diags.extend(check);
                        return Out((None, None, None), diags);
                    }
                    let encoded = tri!(diags, encode(&resp.result, &entry.ty, "ephemeral result"));
                    Out(
                        (
                            Some(encoded),
                            Some(resp.private),
                            resp.renew_at.map(timestamp),
                        ),
                        diags,
                    )
                }
                .await;
                pb::open_ephemeral_resource::Response {
                    result,
                    private,
                    renew_at,
                    diagnostics: to_proto_diags(&diags),
                    deferred: None,
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_renew_ephemeral_resource(
        &self,
        request: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Res<pb::renew_ephemeral_resource::Response> {
        let req = request.into_inner();
        let resp = self
            .run("RenewEphemeralResource", &req.type_name, async {
                let Out((private, renew_at), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.ephemeral(&req.type_name));
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    let private = req.private.clone().unwrap_or_default();
                    let r = entry.imp.renew(&private, &*data, &ctx).await;
                    diags.extend(r.diagnostics);
                    Out((Some(r.private), r.renew_at.map(timestamp)), diags)
                }
                .await;
                pb::renew_ephemeral_resource::Response {
                    private,
                    renew_at,
                    diagnostics: to_proto_diags(&diags),
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_close_ephemeral_resource(
        &self,
        request: Request<pb::close_ephemeral_resource::Request>,
    ) -> Res<pb::close_ephemeral_resource::Response> {
        let req = request.into_inner();
        let resp = self
            .run("CloseEphemeralResource", &req.type_name, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.ephemeral(&req.type_name));
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    let private = req.private.clone().unwrap_or_default();
                    diags.extend(entry.imp.close(&private, &*data, &ctx).await);
                    Out((), diags)
                }
                .await;
                pb::close_ephemeral_resource::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }
}
