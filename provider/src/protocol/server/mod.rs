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

use super::diagnostics::{Diagnostic, Diagnostics};
use super::framework::{self, Action, Context, DataSource, EphemeralResource, Provider, Resource};
use super::proto::tfplugin6 as pb;
use super::schema::Schema;
use super::types::Type;
use super::value::Value;
use super::{json, msgpack};

type Res<T> = Result<Response<T>, Status>;
type BoxStream<T> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

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
    actions: HashMap<String, Entry<dyn Action<P::Data>>>,
    lists: HashMap<String, Entry<dyn framework::ListResource<P::Data>>>,
    /// Identity schemas (and their value types) of the resources that have one.
    identities: HashMap<String, (framework::IdentitySchema, Type)>,
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
        let actions = provider
            .actions()
            .into_iter()
            .map(|a| (a.type_name().to_string(), Entry::new(a.clone(), a.schema())))
            .collect();
        let lists = provider
            .list_resources()
            .into_iter()
            .map(|l| (l.type_name().to_string(), Entry::new(l.clone(), l.schema())))
            .collect();
        let identities = provider
            .resources()
            .into_iter()
            .filter_map(|r| {
                let schema = r.identity_schema()?;
                let ty = schema.value_type();
                Some((r.type_name().to_string(), (schema, ty)))
            })
            .collect();
        ProviderService {
            provider_schema: provider.schema(),
            identities,
            provider: Arc::new(provider),
            resources,
            data_sources,
            ephemerals,
            actions,
            lists,
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

    fn action(&self, name: &str) -> Result<&Entry<dyn Action<P::Data>>, Diagnostic> {
        self.actions
            .get(name)
            .ok_or_else(|| unknown_type("action", name))
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
        guarded(rpc, type_name, body)
            .instrument(self.span(rpc, type_name))
            .await
    }

    /// The span of one request: RPC name, request id, type, provider address.
    fn span(&self, rpc: &'static str, type_name: &str) -> tracing::Span {
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
        span
    }
}

/// Runs one RPC body (in the caller's span), turning a panic into an error diagnostic.
async fn guarded<T, F>(rpc: &'static str, type_name: &str, body: F) -> T
where
    T: WithDiagnostics,
    F: Future<Output = T>,
{
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
    pb::upgrade_resource_identity::Response,
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
    pb::move_resource_state::Response,
    pb::read_data_source::Response,
    pb::open_ephemeral_resource::Response,
    pb::renew_ephemeral_resource::Response,
    pb::close_ephemeral_resource::Response,
    pb::get_functions::Response,
    pb::validate_action_config::Response,
    pb::plan_action::Response,
    pb::validate_list_resource_config::Response,
);

impl WithDiagnostics for Diagnostics {
    fn from_diagnostics(diags: Diagnostics) -> Self {
        diags
    }
}

/// Body results: a response value and the diagnostics gathered while making it.
struct Out<T>(T, Diagnostics);

impl<T: Default> Default for Out<T> {
    fn default() -> Self {
        Out(T::default(), Diagnostics::new())
    }
}

mod action_rpcs;
mod conversions;
mod data_rpcs;
mod list_rpcs;
mod provider_rpcs;
mod resource_rpcs;

pub(crate) use conversions::to_proto_path;
use conversions::{timestamp, to_proto_diags, to_proto_identity_schema, to_proto_schema};

// ------------------------------------------------------------------ the RPCs

/// Each RPC is served by the `serve_` method of the same name, in the file of its kind:
/// `provider_rpcs`, `resource_rpcs`, `data_rpcs` (data sources and ephemeral resources),
/// `action_rpcs`.
#[tonic::async_trait]
impl<P: Provider> pb::provider_server::Provider for ProviderService<P> {
    async fn get_metadata(
        &self,
        request: Request<pb::get_metadata::Request>,
    ) -> Res<pb::get_metadata::Response> {
        self.serve_get_metadata(request).await
    }

    async fn get_provider_schema(
        &self,
        request: Request<pb::get_provider_schema::Request>,
    ) -> Res<pb::get_provider_schema::Response> {
        self.serve_get_provider_schema(request).await
    }

    async fn get_resource_identity_schemas(
        &self,
        request: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Res<pb::get_resource_identity_schemas::Response> {
        self.serve_get_resource_identity_schemas(request).await
    }

    async fn upgrade_resource_identity(
        &self,
        request: Request<pb::upgrade_resource_identity::Request>,
    ) -> Res<pb::upgrade_resource_identity::Response> {
        self.serve_upgrade_resource_identity(request).await
    }

    async fn get_functions(
        &self,
        request: Request<pb::get_functions::Request>,
    ) -> Res<pb::get_functions::Response> {
        self.serve_get_functions(request).await
    }

    async fn validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> Res<pb::validate_provider_config::Response> {
        self.serve_validate_provider_config(request).await
    }

    async fn configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> Res<pb::configure_provider::Response> {
        self.serve_configure_provider(request).await
    }

    async fn validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> Res<pb::validate_resource_config::Response> {
        self.serve_validate_resource_config(request).await
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> Res<pb::validate_data_resource_config::Response> {
        self.serve_validate_data_resource_config(request).await
    }

    async fn validate_ephemeral_resource_config(
        &self,
        request: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Res<pb::validate_ephemeral_resource_config::Response> {
        self.serve_validate_ephemeral_resource_config(request).await
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Res<pb::upgrade_resource_state::Response> {
        self.serve_upgrade_resource_state(request).await
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Res<pb::read_resource::Response> {
        self.serve_read_resource(request).await
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Res<pb::plan_resource_change::Response> {
        self.serve_plan_resource_change(request).await
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Res<pb::apply_resource_change::Response> {
        self.serve_apply_resource_change(request).await
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Res<pb::import_resource_state::Response> {
        self.serve_import_resource_state(request).await
    }

    async fn move_resource_state(
        &self,
        request: Request<pb::move_resource_state::Request>,
    ) -> Res<pb::move_resource_state::Response> {
        self.serve_move_resource_state(request).await
    }

    async fn read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> Res<pb::read_data_source::Response> {
        self.serve_read_data_source(request).await
    }

    async fn open_ephemeral_resource(
        &self,
        request: Request<pb::open_ephemeral_resource::Request>,
    ) -> Res<pb::open_ephemeral_resource::Response> {
        self.serve_open_ephemeral_resource(request).await
    }

    async fn renew_ephemeral_resource(
        &self,
        request: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Res<pb::renew_ephemeral_resource::Response> {
        self.serve_renew_ephemeral_resource(request).await
    }

    async fn close_ephemeral_resource(
        &self,
        request: Request<pb::close_ephemeral_resource::Request>,
    ) -> Res<pb::close_ephemeral_resource::Response> {
        self.serve_close_ephemeral_resource(request).await
    }

    async fn validate_action_config(
        &self,
        request: Request<pb::validate_action_config::Request>,
    ) -> Res<pb::validate_action_config::Response> {
        self.serve_validate_action_config(request).await
    }

    async fn plan_action(
        &self,
        request: Request<pb::plan_action::Request>,
    ) -> Res<pb::plan_action::Response> {
        self.serve_plan_action(request).await
    }

    async fn invoke_action(
        &self,
        request: Request<pb::invoke_action::Request>,
    ) -> Res<tonic::codegen::BoxStream<pb::invoke_action::Event>> {
        self.serve_invoke_action(request).await
    }

    async fn validate_list_resource_config(
        &self,
        request: Request<pb::validate_list_resource_config::Request>,
    ) -> Res<pb::validate_list_resource_config::Response> {
        self.serve_validate_list_resource_config(request).await
    }

    async fn list_resource(
        &self,
        request: Request<pb::list_resource::Request>,
    ) -> Res<BoxStream<pb::list_resource::Event>> {
        self.serve_list_resource(request).await
    }

    async fn stop_provider(
        &self,
        request: Request<pb::stop_provider::Request>,
    ) -> Res<pb::stop_provider::Response> {
        self.serve_stop_provider(request).await
    }
}

fn server_capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: true,
        generate_resource_config: false,
    }
}

fn sorted<'a>(keys: impl Iterator<Item = &'a String>) -> impl Iterator<Item = String> {
    let mut v: Vec<String> = keys.cloned().collect();
    v.sort();
    v.into_iter()
}
