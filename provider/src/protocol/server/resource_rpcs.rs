//! The managed-resource RPCs: validate, upgrade state, read, plan, apply, import and move.

use tonic::{Request, Response};

use super::{
    Out, ProviderService, Res, WithDiagnostics, decode, encode, to_proto_diags, to_proto_path,
};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, IdentityRequest, Import, ModifyPlanRequest,
    ModifyPlanResponse, MoveStateRequest, Provider, ReadRequest, ReadResponse,
};
use crate::protocol::json;
use crate::protocol::proto::tfplugin6 as pb;
use crate::protocol::value::Value;

impl<P: Provider> ProviderService<P> {
    /// The identity Terraform sent for `type_name` (null when it sent none, or when the type
    /// has no identity: Terraform < 1.12 never sends one).
    fn identity_in(
        &self,
        type_name: &str,
        data: Option<&pb::ResourceIdentityData>,
    ) -> Result<Value, Diagnostic> {
        let Some((_, ty)) = self.identities.get(type_name) else {
            return Ok(Value::Null);
        };
        decode(
            data.and_then(|d| d.identity_data.as_ref()),
            ty,
            "resource identity",
        )
    }

    /// The identity to answer with for the object `state` describes: worked out by the
    /// resource, completed with `prior` ([`framework::resolve_identity`]). `None` when the type
    /// has no identity, the object is gone, or (in a plan) it is not wholly known yet: Terraform
    /// accepts no identity, and an unknown one only on create or replace.
    fn identity_out(
        &self,
        entry: &super::Entry<dyn framework::Resource<P::Data>>,
        type_name: &str,
        state: &Value,
        prior: &Value,
        data: &P::Data,
    ) -> Result<Option<pb::ResourceIdentityData>, Diagnostic> {
        let Some((schema, ty)) = self.identities.get(type_name) else {
            return Ok(None);
        };
        if state.is_null() {
            return Ok(None);
        }
        let derived = entry.imp.identity(IdentityRequest {
            state,
            prior,
            provider: data,
        });
        let identity = framework::resolve_identity(schema, derived, prior);
        if identity.is_null() || !identity.is_wholly_known() {
            return Ok(None);
        }
        let encoded = encode(&identity, ty, "resource identity")?;
        Ok(Some(pb::ResourceIdentityData {
            identity_data: Some(encoded),
        }))
    }

    pub(super) async fn serve_validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> Res<pb::validate_resource_config::Response> {
        let req = request.into_inner();
        let write_only = req
            .client_capabilities
            .as_ref()
            .map(|c| c.write_only_attributes_allowed);
        let resp = self
            .run("ValidateResourceConfig", &req.type_name, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let (config, checks) = tri!(
                        diags,
                        self.checked_config(
                            &entry.schema,
                            &entry.ty,
                            req.config.as_ref(),
                            write_only
                        )
                    );
                    diags.extend(checks);
                    diags.extend(entry.imp.validate(&config).await);
                    Out((), diags)
                }
                .await;
                pb::validate_resource_config::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Res<pb::upgrade_resource_state::Response> {
        let req = request.into_inner();
        let resp = self
            .run("UpgradeResourceState", &req.type_name, async {
                let Out(upgraded_state, diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let raw = req.raw_state.unwrap_or_default();
                    if raw.json.is_empty() {
                        diags.push(Diagnostic::error(
                            "Unable to upgrade resource state",
                            "The stored state is in the pre-0.12 flatmap format, which this \
                             provider never wrote. Remove the resource from state and import it.",
                        ));
                        return Out(None, diags);
                    }
                    let current = entry.schema.version;
                    let mut state = if req.version == current {
                        tri!(
                            diags,
                            json::decode(&raw.json, &entry.ty).map_err(|e| {
                                Diagnostic::error(
                                    "Unable to read stored state",
                                    format!(
                                        "The state of {} could not be read: {e}.",
                                        req.type_name
                                    ),
                                )
                            })
                        )
                    } else if req.version > current {
                        diags.push(Diagnostic::error(
                            "Resource instance managed by a newer provider version",
                            format!(
                                "The state was written by schema version {} but this provider \
                                 ({}) knows only up to version {current}. Upgrade the provider.",
                                req.version,
                                env!("CARGO_PKG_VERSION")
                            ),
                        ));
                        return Out(None, diags);
                    } else {
                        let json: serde_json::Value = tri!(
                            diags,
                            serde_json::from_slice(&raw.json).map_err(|e| Diagnostic::error(
                                "Unable to read stored state",
                                format!("The stored state is not JSON: {e}.")
                            ))
                        );
                        tri!(diags, entry.imp.upgrade_state(req.version, &json))
                    };
                    framework::null_write_only(&entry.schema.block.attributes, &mut state);
                    let encoded = tri!(diags, encode(&state, &entry.ty, "upgraded state"));
                    Out(Some(encoded), diags)
                }
                .await;
                pb::upgrade_resource_state::Response {
                    upgraded_state,
                    diagnostics: to_proto_diags(&diags),
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_upgrade_resource_identity(
        &self,
        request: Request<pb::upgrade_resource_identity::Request>,
    ) -> Res<pb::upgrade_resource_identity::Response> {
        let req = request.into_inner();
        let resp = self
            .run("UpgradeResourceIdentity", &req.type_name, async {
                let Out(upgraded_identity, diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let Some((schema, ty)) = self.identities.get(&req.type_name) else {
                        diags.push(Diagnostic::error(
                            "Unable to upgrade resource identity",
                            format!(
                                "{} has no resource identity in this provider ({}); remove \
                                 the identity from state by removing and re-importing the \
                                 resource.",
                                req.type_name,
                                env!("CARGO_PKG_VERSION")
                            ),
                        ));
                        return Out(None, diags);
                    };
                    let raw = req.raw_identity.unwrap_or_default();
                    let identity = if req.version == schema.version {
                        tri!(
                            diags,
                            json::decode(&raw.json, ty).map_err(|e| Diagnostic::error(
                                "Unable to read stored identity",
                                format!(
                                    "The identity of {} could not be read: {e}.",
                                    req.type_name
                                ),
                            ))
                        )
                    } else if req.version > schema.version {
                        diags.push(Diagnostic::error(
                            "Resource instance managed by a newer provider version",
                            format!(
                                "The identity was written by identity version {} but this \
                                 provider ({}) knows only up to version {}. Upgrade the \
                                 provider.",
                                req.version,
                                env!("CARGO_PKG_VERSION"),
                                schema.version
                            ),
                        ));
                        return Out(None, diags);
                    } else {
                        let json: serde_json::Value = tri!(
                            diags,
                            serde_json::from_slice(&raw.json).map_err(|e| Diagnostic::error(
                                "Unable to read stored identity",
                                format!("The stored identity is not JSON: {e}.")
                            ))
                        );
                        tri!(diags, entry.imp.upgrade_identity(req.version, &json))
                    };
                    let encoded = tri!(diags, encode(&identity, ty, "upgraded identity"));
                    Out(
                        Some(pb::ResourceIdentityData {
                            identity_data: Some(encoded),
                        }),
                        diags,
                    )
                }
                .await;
                pb::upgrade_resource_identity::Response {
                    upgraded_identity,
                    diagnostics: to_proto_diags(&diags),
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Res<pb::read_resource::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ReadResource", &req.type_name, async {
                let Out((new_state, private, new_identity), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let current = tri!(
                        diags,
                        decode(req.current_state.as_ref(), &entry.ty, "state")
                    );
                    let current_identity = tri!(
                        diags,
                        self.identity_in(&req.type_name, req.current_identity.as_ref())
                    );
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    let mut resp = ReadResponse {
                        new_state: current.clone(),
                        private: req.private.clone(),
                        diagnostics: Diagnostics::new(),
                    };
                    entry
                        .imp
                        .read(
                            ReadRequest {
                                current_state: &current,
                                identity: &current_identity,
                                private: &req.private,
                                provider: &*data,
                                ctx: &ctx,
                            },
                            &mut resp,
                        )
                        .await;
                    diags.extend(resp.diagnostics);
                    let mut state = resp.new_state;
                    framework::null_write_only(&entry.schema.block.attributes, &mut state);
                    if !state.is_wholly_known() {
                        diags.push(Diagnostic::provider_bug(
                            "Provider produced an invalid object on read",
                            "the refreshed state contains unknown values",
                        ));
                        return Out(Default::default(), diags);
                    }
                    let encoded = tri!(diags, encode(&state, &entry.ty, "state"));
                    let identity = tri!(
                        diags,
                        self.identity_out(entry, &req.type_name, &state, &current_identity, &data)
                    );
                    Out((Some(encoded), resp.private, identity), diags)
                }
                .await;
                pb::read_resource::Response {
                    new_state,
                    private,
                    new_identity,
                    diagnostics: to_proto_diags(&diags),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Res<pb::plan_resource_change::Response> {
        let req = request.into_inner();
        let resp = self
            .run("PlanResourceChange", &req.type_name, async {
                let Out(
                    (planned_state, requires_replace, planned_private, planned_identity),
                    diags,
                ) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let prior = tri!(
                        diags,
                        decode(req.prior_state.as_ref(), &entry.ty, "prior state")
                    );
                    let proposed = tri!(
                        diags,
                        decode(req.proposed_new_state.as_ref(), &entry.ty, "proposed state")
                    );
                    let config = tri!(
                        diags,
                        decode(req.config.as_ref(), &entry.ty, "configuration")
                    );
                    let data = tri!(diags, self.provider_data());
                    if proposed.is_null() {
                        diags.extend(entry.imp.plan_destroy(&prior, &*data).await);
                        let null = tri!(diags, encode(&Value::Null, &entry.ty, "plan"));
                        return Out(
                            (Some(null), Vec::new(), req.prior_private.clone(), None),
                            diags,
                        );
                    }
                    let ctx = self.context(None);
                    let mut resp = ModifyPlanResponse {
                        planned_state: framework::plan_generic(
                            &entry.schema,
                            &prior,
                            &proposed,
                            &config,
                        ),
                        planned_private: req.prior_private.clone(),
                        requires_replace: Vec::new(),
                        diagnostics: Diagnostics::new(),
                    };
                    entry
                        .imp
                        .modify_plan(
                            ModifyPlanRequest {
                                config: &config,
                                prior_state: &prior,
                                provider: &*data,
                                ctx: &ctx,
                            },
                            &mut resp,
                        )
                        .await;
                    diags.extend(resp.diagnostics);
                    let planned = resp.planned_state;
                    let check =
                        framework::check_plan_valid(&entry.schema, &prior, &config, &planned);
                    if check.has_errors() {
                        diags.extend(check);
                        return Out(Default::default(), diags);
                    }
                    let mut replace = framework::replacement_paths(&entry.schema, &prior, &planned);
                    for p in resp.requires_replace {
                        if !replace.contains(&p) {
                            replace.push(p);
                        }
                    }
                    let encoded = tri!(diags, encode(&planned, &entry.ty, "plan"));
                    // A replacement is a new object: the stored identity is not its own.
                    let prior_identity = if prior.is_null() || !replace.is_empty() {
                        Value::Null
                    } else {
                        tri!(
                            diags,
                            self.identity_in(&req.type_name, req.prior_identity.as_ref())
                        )
                    };
                    let identity = tri!(
                        diags,
                        self.identity_out(entry, &req.type_name, &planned, &prior_identity, &data)
                    );
                    let replace = replace.iter().map(to_proto_path).collect();
                    Out(
                        (Some(encoded), replace, resp.planned_private, identity),
                        diags,
                    )
                }
                .await;
                pb::plan_resource_change::Response {
                    planned_state,
                    requires_replace,
                    planned_private,
                    planned_identity,
                    diagnostics: to_proto_diags(&diags),
                    legacy_type_system: false,
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Res<pb::apply_resource_change::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ApplyResourceChange", &req.type_name, async {
                let Out((new_state, private, new_identity), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let prior = tri!(
                        diags,
                        decode(req.prior_state.as_ref(), &entry.ty, "prior state")
                    );
                    let planned =
                        tri!(diags, decode(req.planned_state.as_ref(), &entry.ty, "plan"));
                    let planned_identity = tri!(
                        diags,
                        self.identity_in(&req.type_name, req.planned_identity.as_ref())
                    );
                    let config = tri!(
                        diags,
                        decode(req.config.as_ref(), &entry.ty, "configuration")
                    );
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    if planned.is_null() {
                        diags.extend(
                            entry
                                .imp
                                .delete(DeleteRequest {
                                    prior_state: &prior,
                                    private: &req.planned_private,
                                    config: &config,
                                    provider: &*data,
                                    ctx: &ctx,
                                })
                                .await,
                        );
                        // On failure the object still exists: keep it in state.
                        let state = if diags.has_errors() {
                            &prior
                        } else {
                            &Value::Null
                        };
                        let encoded = tri!(diags, encode(state, &entry.ty, "state"));
                        let identity = if diags.has_errors() {
                            tri!(
                                diags,
                                self.identity_out(
                                    entry,
                                    &req.type_name,
                                    &prior,
                                    &planned_identity,
                                    &data
                                )
                            )
                        } else {
                            None
                        };
                        return Out(
                            (Some(encoded), req.planned_private.clone(), identity),
                            diags,
                        );
                    }
                    let creating = prior.is_null();
                    let mut resp = ApplyResponse {
                        new_state: if creating { Value::Null } else { prior.clone() },
                        private: req.planned_private.clone(),
                        diagnostics: Diagnostics::new(),
                    };
                    let apply = ApplyRequest {
                        config: &config,
                        prior_state: &prior,
                        planned_state: &planned,
                        planned_private: &req.planned_private,
                        provider: &*data,
                        ctx: &ctx,
                    };
                    if creating {
                        entry.imp.create(apply, &mut resp).await;
                    } else {
                        entry.imp.update(apply, &mut resp).await;
                    }
                    diags.extend(resp.diagnostics);
                    let mut state = resp.new_state;
                    framework::null_write_only(&entry.schema.block.attributes, &mut state);
                    if state.is_null() && !diags.has_errors() {
                        diags.push(Diagnostic::provider_bug(
                            "Missing resource state after apply",
                            format!("{} returned no state and no error", req.type_name),
                        ));
                    }
                    if !state.is_null() && !diags.has_errors() {
                        diags.extend(framework::check_apply_result(&planned, &state));
                    }
                    if !state.is_wholly_known() {
                        // Never send unknowns after apply; keep what existed before.
                        state = prior.clone();
                    }
                    let encoded = tri!(diags, encode(&state, &entry.ty, "state"));
                    let identity = tri!(
                        diags,
                        self.identity_out(entry, &req.type_name, &state, &planned_identity, &data)
                    );
                    Out((Some(encoded), resp.private, identity), diags)
                }
                .await;
                pb::apply_resource_change::Response {
                    new_state,
                    private,
                    new_identity,
                    diagnostics: to_proto_diags(&diags),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Res<pb::import_resource_state::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ImportResourceState", &req.type_name, async {
                let Out(imported, diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let Import::Passthrough(id_attr) = entry.imp.import() else {
                        diags.push(Diagnostic::error(
                            "Resource import not supported",
                            format!("{} cannot be imported.", req.type_name),
                        ));
                        return Out(Default::default(), diags);
                    };
                    let identity = tri!(
                        diags,
                        self.identity_in(&req.type_name, req.identity.as_ref())
                    );
                    let (id, identity) = if identity.is_null() {
                        (req.id.clone(), None)
                    } else {
                        // Terraform >= 1.12 `import { identity = { ... } }`: the resource names
                        // the object by its import ID, and the import goes on as one by ID.
                        let Some((schema, ty)) = self.identities.get(&req.type_name) else {
                            return Out(Default::default(), diags);
                        };
                        let missing = schema.missing_for_import(&identity);
                        if !missing.is_empty() {
                            diags.push(Diagnostic::error(
                                "Incomplete import identity",
                                format!(
                                    "Importing {} by identity needs {}.",
                                    req.type_name,
                                    missing.join(", ")
                                ),
                            ));
                            return Out(Default::default(), diags);
                        }
                        let data = tri!(diags, self.provider_data());
                        let id = tri!(diags, entry.imp.import_id(&identity, &data));
                        let encoded = tri!(diags, encode(&identity, ty, "resource identity"));
                        (
                            id,
                            Some(pb::ResourceIdentityData {
                                identity_data: Some(encoded),
                            }),
                        )
                    };
                    if id.trim().is_empty() {
                        diags.push(Diagnostic::error(
                            "Missing import ID",
                            format!("Importing {} needs an ID.", req.type_name),
                        ));
                        return Out(Default::default(), diags);
                    }
                    let mut state = Value::null_object(&entry.ty);
                    state.set_attr(id_attr, Value::String(id));
                    let encoded = tri!(diags, encode(&state, &entry.ty, "imported state"));
                    Out(
                        vec![pb::import_resource_state::ImportedResource {
                            type_name: req.type_name.clone(),
                            state: Some(encoded),
                            identity,
                            ..Default::default()
                        }],
                        diags,
                    )
                }
                .await;
                pb::import_resource_state::Response {
                    imported_resources: imported,
                    diagnostics: to_proto_diags(&diags),
                    deferred: None,
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    /// `moved` across resource types: the target resource maps the source's stored JSON to its
    /// own state, or refuses with a diagnostic saying what to do instead.
    pub(super) async fn serve_move_resource_state(
        &self,
        request: Request<pb::move_resource_state::Request>,
    ) -> Res<pb::move_resource_state::Response> {
        let req = request.into_inner();
        let resp = self
            .run("MoveResourceState", &req.target_type_name, async {
                let Out((target_state, target_private), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.target_type_name));
                    let raw = req.source_state.clone().unwrap_or_default();
                    let source: serde_json::Value = if raw.json.is_empty() {
                        serde_json::Value::Null
                    } else {
                        tri!(
                            diags,
                            serde_json::from_slice(&raw.json).map_err(|e| Diagnostic::error(
                                "Unable to read the moved state",
                                format!(
                                    "The stored state of the {} being moved is not JSON: {e}.",
                                    req.source_type_name
                                )
                            ))
                        )
                    };
                    let moved = entry.imp.move_state(MoveStateRequest {
                        source_provider_address: &req.source_provider_address,
                        source_type_name: &req.source_type_name,
                        source_schema_version: req.source_schema_version,
                        source_state: &source,
                        source_private: &req.source_private,
                    });
                    let mut moved = match moved {
                        Ok(m) => m,
                        Err(refused) => {
                            diags.extend(refused);
                            return Out(Default::default(), diags);
                        }
                    };
                    framework::null_write_only(&entry.schema.block.attributes, &mut moved.state);
                    if moved.state.is_null() || !moved.state.is_wholly_known() {
                        diags.push(Diagnostic::provider_bug(
                            "Provider produced an invalid moved state",
                            format!(
                                "the state moved from {} to {} is null or not wholly known",
                                req.source_type_name, req.target_type_name
                            ),
                        ));
                        return Out(Default::default(), diags);
                    }
                    let encoded = tri!(diags, encode(&moved.state, &entry.ty, "moved state"));
                    Out((Some(encoded), moved.private), diags)
                }
                .await;
                pb::move_resource_state::Response {
                    target_state,
                    target_private,
                    diagnostics: to_proto_diags(&diags),
                    target_identity: None,
                }
            })
            .await;
        Ok(Response::new(resp))
    }
}
