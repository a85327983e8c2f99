//! The list-resource RPCs of `terraform query` (Terraform >= 1.14): validate a `list` block's
//! `config`, and stream the objects found, each with its identity (encoded with the managed
//! resource's identity schema), a display name and, when asked, its state.

use tonic::{Request, Response};

use super::{
    BoxStream, Out, ProviderService, Res, WithDiagnostics, decode, encode, to_proto_diags,
};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{ListRequest, Provider};
use crate::protocol::proto::tfplugin6 as pb;

impl<P: Provider> ProviderService<P> {
    fn list_entry(
        &self,
        name: &str,
    ) -> Result<&super::Entry<dyn crate::protocol::framework::ListResource<P::Data>>, Diagnostic>
    {
        self.lists
            .get(name)
            .ok_or_else(|| super::unknown_type("list resource", name))
    }

    pub(super) async fn serve_validate_list_resource_config(
        &self,
        request: Request<pb::validate_list_resource_config::Request>,
    ) -> Res<pb::validate_list_resource_config::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ValidateListResourceConfig", &req.type_name, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.list_entry(&req.type_name));
                    let (config, checks) = tri!(
                        diags,
                        self.checked_config(&entry.schema, &entry.ty, req.config.as_ref(), None)
                    );
                    diags.extend(checks);
                    diags.extend(entry.imp.validate(&config).await);
                    Out((), diags)
                }
                .await;
                pb::validate_list_resource_config::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_list_resource(
        &self,
        request: Request<pb::list_resource::Request>,
    ) -> Res<BoxStream<pb::list_resource::Event>> {
        let req = request.into_inner();
        let events = self
            .run("ListResource", &req.type_name, async {
                ListEvents(self.list_events(&req).await)
            })
            .await;
        let stream = futures::stream::iter(events.0.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    /// Every event of one listing; a failure is one event carrying the diagnostics.
    async fn list_events(&self, req: &pb::list_resource::Request) -> Vec<pb::list_resource::Event> {
        let fail = |diags: Diagnostics| {
            vec![pb::list_resource::Event {
                diagnostic: to_proto_diags(&diags),
                ..Default::default()
            }]
        };
        let mut diags = Diagnostics::new();
        let (entry, resource, identity) = match (
            self.list_entry(&req.type_name),
            self.resource(&req.type_name),
            self.identities.get(&req.type_name),
        ) {
            (Ok(l), Ok(r), Some((_, ty))) => (l, r, ty),
            (Err(d), _, _) | (_, Err(d), _) => return fail(d.into()),
            (_, _, None) => {
                return fail(
                    Diagnostic::provider_bug(
                        "List resource without identity",
                        format!("{} has no identity schema", req.type_name),
                    )
                    .into(),
                );
            }
        };
        let config = match decode(req.config.as_ref(), &entry.ty, "configuration") {
            Ok(c) => c,
            Err(d) => return fail(d.into()),
        };
        let data = match self.provider_data() {
            Ok(d) => d,
            Err(d) => return fail(d.into()),
        };
        let ctx = self.context(None);
        let (results, d) = entry
            .imp
            .list(ListRequest {
                config: &config,
                include_resource: req.include_resource_object,
                limit: req.limit,
                provider: &*data,
                ctx: &ctx,
            })
            .await;
        diags.extend(d);
        let mut events = Vec::new();
        for r in results {
            let identity = match encode(&r.identity, identity, "resource identity") {
                Ok(v) => v,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            let resource_object = match r.resource.filter(|_| req.include_resource_object) {
                Some(state) => match encode(&state, &resource.ty, "resource object") {
                    Ok(v) => Some(v),
                    Err(d) => {
                        diags.push(d);
                        continue;
                    }
                },
                None => None,
            };
            events.push(pb::list_resource::Event {
                identity: Some(pb::ResourceIdentityData {
                    identity_data: Some(identity),
                }),
                display_name: r.display_name,
                resource_object,
                diagnostic: Vec::new(),
            });
        }
        if !diags.is_empty() {
            events.push(pb::list_resource::Event {
                diagnostic: to_proto_diags(&diags),
                ..Default::default()
            });
        }
        events
    }
}

/// The events of one listing, so `run` can answer a panic with one event carrying it.
#[derive(Default)]
struct ListEvents(Vec<pb::list_resource::Event>);

impl WithDiagnostics for ListEvents {
    fn from_diagnostics(diags: Diagnostics) -> Self {
        ListEvents(vec![pb::list_resource::Event {
            diagnostic: to_proto_diags(&diags),
            ..Default::default()
        }])
    }
}
