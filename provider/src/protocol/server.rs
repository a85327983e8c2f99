//! The `tfplugin6.Provider` gRPC service. Each RPC is a thin shell: find the type, decode the
//! values with its schema, run the framework rules and the resource, check, encode. Panics inside
//! a handler become an error diagnostic, never a dead plugin. Every RPC works without a prior
//! `GetProviderSchema` (we advertise `get_provider_schema_optional`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::diagnostics::{AttributePath, Diagnostic, Diagnostics, Severity, Step};
use super::framework::{
    self, ApplyRequest, ApplyResponse, ConfigureRequest, Context, DataSource, DeleteRequest,
    EphemeralResource, Import, ModifyPlanRequest, ModifyPlanResponse, OpenRequest, OpenResponse,
    Provider, ReadDataRequest, ReadDataResponse, ReadRequest, ReadResponse, Resource,
};
use super::proto::tfplugin6 as pb;
use super::schema::{Attribute, AttributeType, Block, Nesting, Schema};
use super::types::Type;
use super::value::Value;
use super::{json, msgpack};

type Res<T> = Result<Response<T>, Status>;

/// A registered type with its schema computed once.
struct Entry<T: ?Sized> {
    imp: Arc<T>,
    schema: Schema,
    ty: Type,
}

impl<T: ?Sized> Entry<T> {
    fn new(imp: Arc<T>, schema: Schema) -> Self {
        let ty = schema.value_type();
        Entry { imp, schema, ty }
    }
}

pub struct ProviderService<P: Provider> {
    provider: Arc<P>,
    provider_schema: Schema,
    resources: HashMap<String, Entry<dyn Resource<P::Data>>>,
    data_sources: HashMap<String, Entry<dyn DataSource<P::Data>>>,
    ephemerals: HashMap<String, Entry<dyn EphemeralResource<P::Data>>>,
    data: RwLock<Option<Arc<P::Data>>>,
    /// Replaced by a fresh token after every StopProvider, like terraform-plugin-go.
    stop: Mutex<CancellationToken>,
    write_only_allowed: std::sync::atomic::AtomicBool,
    request_ids: AtomicU64,
    /// The provider's registry address, for log lines.
    address: &'static str,
}

impl<P: Provider> ProviderService<P> {
    pub fn new(provider: P, address: &'static str) -> Self {
        let resources = provider
            .resources()
            .into_iter()
            .map(|r| (r.type_name().to_string(), Entry::new(r.clone(), r.schema())))
            .collect();
        let data_sources = provider
            .data_sources()
            .into_iter()
            .map(|d| (d.type_name().to_string(), Entry::new(d.clone(), d.schema())))
            .collect();
        let ephemerals = provider
            .ephemeral_resources()
            .into_iter()
            .map(|e| (e.type_name().to_string(), Entry::new(e.clone(), e.schema())))
            .collect();
        ProviderService {
            provider_schema: provider.schema(),
            provider: Arc::new(provider),
            resources,
            data_sources,
            ephemerals,
            data: RwLock::new(None),
            stop: Mutex::new(CancellationToken::new()),
            write_only_allowed: std::sync::atomic::AtomicBool::new(true),
            request_ids: AtomicU64::new(1),
            address,
        }
    }

    fn context(&self, write_only_allowed: Option<bool>) -> Context {
        let cancel = self
            .stop
            .lock()
            .map(|t| t.child_token())
            .unwrap_or_default();
        Context {
            cancel,
            write_only_allowed: write_only_allowed
                .unwrap_or_else(|| self.write_only_allowed.load(Ordering::Relaxed)),
        }
    }

    fn resource(&self, name: &str) -> Result<&Entry<dyn Resource<P::Data>>, Diagnostic> {
        self.resources
            .get(name)
            .ok_or_else(|| unknown_type("resource", name))
    }

    fn data_source(&self, name: &str) -> Result<&Entry<dyn DataSource<P::Data>>, Diagnostic> {
        self.data_sources
            .get(name)
            .ok_or_else(|| unknown_type("data source", name))
    }

    fn ephemeral(&self, name: &str) -> Result<&Entry<dyn EphemeralResource<P::Data>>, Diagnostic> {
        self.ephemerals
            .get(name)
            .ok_or_else(|| unknown_type("ephemeral resource", name))
    }

    /// Decodes a configuration and runs the schema's own checks: validators, read-only and
    /// required attributes, write-only support.
    fn checked_config(
        &self,
        schema: &Schema,
        ty: &Type,
        config: Option<&pb::DynamicValue>,
        write_only_allowed: Option<bool>,
    ) -> Result<(Value, Diagnostics), Diagnostic> {
        let config = decode(config, ty, "configuration")?;
        let ctx = self.context(write_only_allowed);
        let checks = framework::validate_config(schema, &config, &ctx);
        Ok((config, checks))
    }

    fn provider_data(&self) -> Result<Arc<P::Data>, Diagnostic> {
        self.data
            .read()
            .ok()
            .and_then(|d| d.clone())
            .ok_or_else(|| {
                Diagnostic::provider_bug(
                    "Provider not configured",
                    "Terraform asked for an operation before ConfigureProvider succeeded",
                )
            })
    }

    /// Runs one RPC body in a span, turning a panic into an error diagnostic.
    async fn run<T, F>(&self, rpc: &'static str, type_name: &str, body: F) -> T
    where
        T: WithDiagnostics,
        F: Future<Output = T>,
    {
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "rpc",
            tf_rpc = rpc,
            tf_req_id = id,
            tf_resource_type = tracing::field::Empty,
            tf_provider_addr = self.address
        );
        if !type_name.is_empty() {
            span.record("tf_resource_type", type_name);
        }
        async {
            tracing::debug!("received request");
            let started = std::time::Instant::now();
            let out = match AssertUnwindSafe(body).catch_unwind().await {
                Ok(out) => out,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(panic = %message, "handler panicked");
                    T::from_diagnostics(
                        Diagnostic::provider_bug(
                            format!("Provider panicked in {rpc}"),
                            format!("{type_name}: {message}"),
                        )
                        .into(),
                    )
                }
            };
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "served request"
            );
            out
        }
        .instrument(span)
        .await
    }
}

fn unknown_type(kind: &str, name: &str) -> Diagnostic {
    Diagnostic::error(
        format!("Unknown {kind} type"),
        format!(
            "terraform-provider-artifortress {} has no {kind} named {name:?}. Check the spelling, \
             or upgrade the provider if the type is newer.",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

fn decode(dv: Option<&pb::DynamicValue>, ty: &Type, what: &str) -> Result<Value, Diagnostic> {
    let Some(dv) = dv else { return Ok(Value::Null) };
    let result = if !dv.msgpack.is_empty() {
        msgpack::decode(&dv.msgpack, ty)
    } else if !dv.json.is_empty() {
        json::decode(&dv.json, ty)
    } else {
        return Ok(Value::Null);
    };
    result.map_err(|e| {
        Diagnostic::error(
            format!("Invalid {what} from Terraform"),
            format!("The {what} could not be decoded: {e}."),
        )
        .at(e.path)
    })
}

fn encode(value: &Value, ty: &Type, what: &str) -> Result<pb::DynamicValue, Diagnostic> {
    msgpack::encode(value, ty)
        .map(|msgpack| pb::DynamicValue {
            msgpack,
            json: Vec::new(),
        })
        .map_err(|e| {
            Diagnostic::provider_bug(format!("Could not encode the {what}"), &e).at(e.path)
        })
}

/// Collects the result of a fallible step into `diags`, returning early with the response.
macro_rules! tri {
    ($diags:ident, $expr:expr) => {
        match $expr {
            Ok(v) => v,
            Err(d) => {
                $diags.push(d);
                return Out(Default::default(), $diags);
            }
        }
    };
}

// ------------------------------------------------------------------ responses

/// Responses that can carry diagnostics (all of ours), so `run` can answer a panic.
trait WithDiagnostics: Default {
    fn from_diagnostics(diags: Diagnostics) -> Self;
}

macro_rules! with_diagnostics {
    ($($ty:ty),* $(,)?) => {$(
        impl WithDiagnostics for $ty {
            // Some responses have only `diagnostics`; the update is for the others.
            #[allow(clippy::needless_update)]
            fn from_diagnostics(diags: Diagnostics) -> Self {
                Self { diagnostics: to_proto_diags(&diags), ..Default::default() }
            }
        }
    )*};
}

with_diagnostics!(
    pb::get_metadata::Response,
    pb::get_provider_schema::Response,
    pb::get_resource_identity_schemas::Response,
    pb::validate_provider_config::Response,
    pb::configure_provider::Response,
    pb::validate_resource_config::Response,
    pb::validate_data_resource_config::Response,
    pb::validate_ephemeral_resource_config::Response,
    pb::upgrade_resource_state::Response,
    pb::read_resource::Response,
    pb::plan_resource_change::Response,
    pb::apply_resource_change::Response,
    pb::import_resource_state::Response,
    pb::read_data_source::Response,
    pb::open_ephemeral_resource::Response,
    pb::renew_ephemeral_resource::Response,
    pb::close_ephemeral_resource::Response,
    pb::get_functions::Response,
);

/// Body results: a response value and the diagnostics gathered while making it.
struct Out<T>(T, Diagnostics);

impl<T: Default> Default for Out<T> {
    fn default() -> Self {
        Out(T::default(), Diagnostics::new())
    }
}

// --------------------------------------------------------------- conversions

pub(crate) fn to_proto_path(path: &AttributePath) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: path
            .steps
            .iter()
            .map(|s| pb::attribute_path::Step {
                selector: Some(match s {
                    Step::Attribute(n) => Selector::AttributeName(n.clone()),
                    Step::Key(k) => Selector::ElementKeyString(k.clone()),
                    Step::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

fn to_proto_diags(diags: &Diagnostics) -> Vec<pb::Diagnostic> {
    diags
        .iter()
        .map(|d| pb::Diagnostic {
            severity: match d.severity {
                Severity::Error => pb::diagnostic::Severity::Error as i32,
                Severity::Warning => pb::diagnostic::Severity::Warning as i32,
            },
            summary: d.summary.clone(),
            detail: d.detail.clone(),
            attribute: d.attribute.as_ref().map(to_proto_path),
        })
        .collect()
}

pub(crate) fn to_proto_schema(schema: &Schema) -> pb::Schema {
    pb::Schema {
        version: schema.version,
        block: Some(to_proto_block(&schema.block, schema.version)),
    }
}

fn to_proto_block(block: &Block, version: i64) -> pb::schema::Block {
    pb::schema::Block {
        version,
        attributes: block.attributes.iter().map(to_proto_attribute).collect(),
        block_types: block
            .blocks
            .iter()
            .map(|b| pb::schema::NestedBlock {
                type_name: b.type_name.clone(),
                block: Some(to_proto_block(&b.block, 0)),
                nesting: match b.nesting {
                    Nesting::Single => pb::schema::nested_block::NestingMode::Single,
                    Nesting::List => pb::schema::nested_block::NestingMode::List,
                    Nesting::Set => pb::schema::nested_block::NestingMode::Set,
                    Nesting::Map => pb::schema::nested_block::NestingMode::Map,
                    Nesting::Group => pb::schema::nested_block::NestingMode::Group,
                } as i32,
                min_items: b.min_items,
                max_items: b.max_items,
            })
            .collect(),
        description: block.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: block.deprecation.is_some(),
        deprecation_message: block.deprecation.clone().unwrap_or_default(),
    }
}

fn to_proto_attribute(a: &Attribute) -> pb::schema::Attribute {
    let (ty, nested_type) = match &a.ty {
        AttributeType::Primitive(t) => (t.to_json_bytes(), None),
        AttributeType::Nested {
            nesting,
            attributes,
        } => {
            let nesting = match nesting {
                Nesting::Single | Nesting::Group => pb::schema::object::NestingMode::Single,
                Nesting::List => pb::schema::object::NestingMode::List,
                Nesting::Set => pb::schema::object::NestingMode::Set,
                Nesting::Map => pb::schema::object::NestingMode::Map,
            };
            #[allow(deprecated)]
            let object = pb::schema::Object {
                attributes: attributes.iter().map(to_proto_attribute).collect(),
                nesting: nesting as i32,
                min_items: 0,
                max_items: 0,
            };
            (Vec::new(), Some(object))
        }
    };
    let description = a.full_description();
    use super::schema::Constraint::*;
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: ty,
        nested_type,
        description,
        required: a.constraint == Required,
        optional: matches!(a.constraint, Optional | OptionalComputed),
        computed: matches!(a.constraint, Computed | OptionalComputed),
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: a.deprecation.is_some(),
        write_only: a.write_only,
        deprecation_message: a.deprecation.clone().unwrap_or_default(),
    }
}

fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

// ------------------------------------------------------------------ the RPCs

#[tonic::async_trait]
impl<P: Provider> pb::provider_server::Provider for ProviderService<P> {
    async fn get_metadata(
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
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    async fn get_provider_schema(
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
                pb::get_provider_schema::Response {
                    provider: Some(to_proto_schema(&self.provider_schema)),
                    resource_schemas,
                    data_source_schemas,
                    ephemeral_resource_schemas,
                    server_capabilities: Some(server_capabilities()),
                    diagnostics: to_proto_diags(&diags),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    async fn get_resource_identity_schemas(
        &self,
        _request: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Res<pb::get_resource_identity_schemas::Response> {
        // No resource has an identity yet; an empty map tells Terraform so.
        Ok(Response::new(Default::default()))
    }

    async fn get_functions(
        &self,
        _request: Request<pb::get_functions::Request>,
    ) -> Res<pb::get_functions::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn validate_provider_config(
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

    async fn configure_provider(
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

    async fn validate_resource_config(
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

    async fn validate_data_resource_config(
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

    async fn validate_ephemeral_resource_config(
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

    async fn upgrade_resource_state(
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

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Res<pb::read_resource::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ReadResource", &req.type_name, async {
                let Out((new_state, private), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let current = tri!(
                        diags,
                        decode(req.current_state.as_ref(), &entry.ty, "state")
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
                    Out((Some(encoded), resp.private), diags)
                }
                .await;
                pb::read_resource::Response {
                    new_state,
                    private,
                    diagnostics: to_proto_diags(&diags),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Res<pb::plan_resource_change::Response> {
        let req = request.into_inner();
        let resp = self
            .run("PlanResourceChange", &req.type_name, async {
                let Out((planned_state, requires_replace, planned_private), diags) = async {
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
                        return Out((Some(null), Vec::new(), req.prior_private.clone()), diags);
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
                    let replace = replace.iter().map(to_proto_path).collect();
                    Out((Some(encoded), replace, resp.planned_private), diags)
                }
                .await;
                pb::plan_resource_change::Response {
                    planned_state,
                    requires_replace,
                    planned_private,
                    diagnostics: to_proto_diags(&diags),
                    legacy_type_system: false,
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Res<pb::apply_resource_change::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ApplyResourceChange", &req.type_name, async {
                let Out((new_state, private), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.resource(&req.type_name));
                    let prior = tri!(
                        diags,
                        decode(req.prior_state.as_ref(), &entry.ty, "prior state")
                    );
                    let planned =
                        tri!(diags, decode(req.planned_state.as_ref(), &entry.ty, "plan"));
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
                        return Out((Some(encoded), req.planned_private.clone()), diags);
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
                    Out((Some(encoded), resp.private), diags)
                }
                .await;
                pb::apply_resource_change::Response {
                    new_state,
                    private,
                    diagnostics: to_proto_diags(&diags),
                    ..Default::default()
                }
            })
            .await;
        Ok(Response::new(resp))
    }

    async fn import_resource_state(
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
                    if req.id.trim().is_empty() {
                        diags.push(Diagnostic::error(
                            "Missing import ID",
                            format!("Importing {} needs an ID.", req.type_name),
                        ));
                        return Out(Default::default(), diags);
                    }
                    let mut state = Value::null_object(&entry.ty);
                    state.set_attr(id_attr, Value::String(req.id.clone()));
                    let encoded = tri!(diags, encode(&state, &entry.ty, "imported state"));
                    Out(
                        vec![pb::import_resource_state::ImportedResource {
                            type_name: req.type_name.clone(),
                            state: Some(encoded),
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

    async fn read_data_source(
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

    async fn open_ephemeral_resource(
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

    async fn renew_ephemeral_resource(
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

    async fn close_ephemeral_resource(
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

    async fn stop_provider(
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

fn server_capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: false,
        generate_resource_config: false,
    }
}

fn sorted<'a>(keys: impl Iterator<Item = &'a String>) -> impl Iterator<Item = String> {
    let mut v: Vec<String> = keys.cloned().collect();
    v.sort();
    v.into_iter()
}
