//! The contract between the protocol layer and the provider's resources, data sources and
//! ephemeral resources, and the Terraform rules enforced here once so no resource can break them:
//!
//! - plan: defaults applied, write-only values nulled, computed attributes left unset by the
//!   configuration marked unknown **only when the plan differs from prior state**,
//!   `use_state_for_unknown` honoured, replacement computed from `requires_replace` attributes,
//!   and the result checked against Terraform's plan-validity rules before it is sent;
//! - apply and read: write-only values nulled, results checked for unknowns and for values that
//!   differ from the plan, a missing state after create reported;
//! - config: read-only attributes set in configuration and missing required ones reported with
//!   their path, validators run;
//! - actions (Terraform >= 1.14): validated like any configuration, planned, then invoked with a
//!   [`Progress`] sink whose messages Terraform prints as they come; the diagnostics the action
//!   returns complete the invocation.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use super::schema::{Attribute, AttributeType, Constraint, Nesting, Schema};
use super::types::Type;
use super::validators::Validator;
use super::value::Value;
use crate::duration;

/// What every request carries besides its payload.
#[derive(Clone, Debug)]
pub struct Context {
    /// Cancelled by `StopProvider`; long operations must select on it.
    pub cancel: CancellationToken,
    /// Terraform accepts write-only attributes (>= 1.11).
    pub write_only_allowed: bool,
}

impl Context {
    pub fn detached() -> Self {
        Context {
            cancel: CancellationToken::new(),
            write_only_allowed: true,
        }
    }
}

// ------------------------------------------------------------------- provider

pub struct ConfigureRequest<'a> {
    pub config: &'a Value,
    pub terraform_version: &'a str,
    pub ctx: &'a Context,
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// What `configure` produces and every resource receives (clients, settings).
    type Data: Send + Sync + 'static;

    /// The provider's local name, e.g. `artifortress`; resource names start with it.
    fn name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    /// Builds the provider data. The configuration may contain unknown values during plan.
    async fn configure(&self, req: ConfigureRequest<'_>) -> (Option<Self::Data>, Diagnostics);
    fn data_sources(&self) -> Vec<Arc<dyn DataSource<Self::Data>>>;
    fn resources(&self) -> Vec<Arc<dyn Resource<Self::Data>>>;
    fn ephemeral_resources(&self) -> Vec<Arc<dyn EphemeralResource<Self::Data>>>;
    /// Actions (`action "<type>" "<name>"`, Terraform >= 1.14). Older Terraform never asks.
    fn actions(&self) -> Vec<Arc<dyn Action<Self::Data>>> {
        Vec::new()
    }
    /// List resources (`list` blocks of `terraform query`, Terraform >= 1.14); each lists
    /// objects of the managed resource type of the same name, which must have an identity.
    fn list_resources(&self) -> Vec<Arc<dyn ListResource<Self::Data>>> {
        Vec::new()
    }
}

// ---------------------------------------------------------------- list resource

pub struct ListRequest<'a, D> {
    /// The `config` block of the `list` block (wholly known).
    pub config: &'a Value,
    /// Terraform wants each object's full state too (`-generate-config-out`).
    pub include_resource: bool,
    /// At most this many results are read by Terraform.
    pub limit: i64,
    pub provider: &'a D,
    pub ctx: &'a Context,
}

/// One object found: its identity (encoded with the resource's identity schema), a label,
/// and (when asked for) its state as an import's read would make it.
#[derive(Debug)]
pub struct ListResult {
    pub identity: Value,
    pub display_name: String,
    pub resource: Option<Value>,
}

#[async_trait]
pub trait ListResource<D: Send + Sync>: Send + Sync {
    /// The managed resource type listed, e.g. `artifortress_backup`.
    fn type_name(&self) -> &'static str;
    /// The schema of the `config` block.
    fn schema(&self) -> Schema;
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    async fn list(&self, req: ListRequest<'_, D>) -> (Vec<ListResult>, Diagnostics);
}

// ----------------------------------------------------------------- data source

pub struct ReadDataRequest<'a, D> {
    /// Wholly known: Terraform defers a data source whose configuration is unknown.
    pub config: &'a Value,
    pub provider: &'a D,
    pub ctx: &'a Context,
}

#[derive(Debug, Default)]
pub struct ReadDataResponse {
    /// Pre-filled with the configuration (defaults applied); the data source sets computed
    /// attributes. Left as is on error.
    pub state: Value,
    pub diagnostics: Diagnostics,
}

#[async_trait]
pub trait DataSource<D: Send + Sync>: Send + Sync {
    /// Full type name, e.g. `artifortress_readiness`.
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    /// Cross-attribute checks; per-attribute validators run without this.
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    async fn read(&self, req: ReadDataRequest<'_, D>, resp: &mut ReadDataResponse);
}

// -------------------------------------------------------------------- resource

pub struct ModifyPlanRequest<'a, D> {
    pub config: &'a Value,
    /// Null on create.
    pub prior_state: &'a Value,
    pub provider: &'a D,
    pub ctx: &'a Context,
}

#[derive(Debug, Default)]
pub struct ModifyPlanResponse {
    /// The plan after the generic rules; the resource may set computed values or unknowns.
    pub planned_state: Value,
    pub planned_private: Vec<u8>,
    /// Extra replacement paths (beyond `requires_replace` attributes).
    pub requires_replace: Vec<AttributePath>,
    pub diagnostics: Diagnostics,
}

pub struct ApplyRequest<'a, D> {
    pub config: &'a Value,
    /// Null on create.
    pub prior_state: &'a Value,
    pub planned_state: &'a Value,
    pub planned_private: &'a [u8],
    pub provider: &'a D,
    pub ctx: &'a Context,
}

#[derive(Debug, Default)]
pub struct ApplyResponse {
    /// What really exists now. On a failed create leave it null if nothing was created; on
    /// partial failure return what exists plus the error (Terraform saves it as tainted).
    pub new_state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

pub struct ReadRequest<'a, D> {
    pub current_state: &'a Value,
    /// The identity Terraform sent with the state: the stored one, or after an
    /// `import { identity = ... }` the identity as the user wrote it (attributes not given are
    /// null). Null under Terraform < 1.12, after an import by ID, and for types without one.
    pub identity: &'a Value,
    pub private: &'a [u8],
    pub provider: &'a D,
    pub ctx: &'a Context,
}

#[derive(Debug, Default)]
pub struct ReadResponse {
    /// Pre-filled with the current state. Set to null when the object is gone: Terraform then
    /// plans to create it again.
    pub new_state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

pub struct DeleteRequest<'a, D> {
    pub prior_state: &'a Value,
    pub private: &'a [u8],
    pub config: &'a Value,
    pub provider: &'a D,
    pub ctx: &'a Context,
}

/// A `moved` block from another resource type (Terraform >= 1.8): what Terraform sends, the
/// source object as stored. Terraform sends no configuration of either resource.
pub struct MoveStateRequest<'a> {
    /// The source's provider, e.g. `terraform.io/builtin/terraform`.
    pub source_provider_address: &'a str,
    pub source_type_name: &'a str,
    pub source_schema_version: i64,
    /// The source object's attributes as Terraform stores them (JSON).
    pub source_state: &'a serde_json::Value,
    pub source_private: &'a [u8],
}

/// The object a move produces: it replaces the source in state, then refresh and plan run on it.
#[derive(Debug, Default)]
pub struct MovedState {
    pub state: Value,
    pub private: Vec<u8>,
}

/// The refusal a resource gives a move it cannot map: names both types and what to do instead.
pub fn move_not_supported(target: &str, req: &MoveStateRequest<'_>) -> Diagnostic {
    Diagnostic::error(
        "Move not supported",
        format!(
            "{target} cannot take over the state of a {source} ({provider}): nothing in it maps \
             to a {target}. Remove the `moved` block; to forget the old object without \
             destroying it use a `removed` block with `lifecycle {{ destroy = false }}`, and bring \
             the existing object under management with an `import` block (where {target} \
             supports import) or let Terraform create it.",
            source = req.source_type_name,
            provider = req.source_provider_address,
        ),
    )
}

/// How `terraform import` works for a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Import {
    NotSupported,
    /// The import ID goes into this string attribute; Read fills in the rest.
    Passthrough(&'static str),
}

/// Whether Terraform's `import { identity = { ... } }` must give an identity attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForImport {
    Required,
    /// The provider can work it out (a default, the provider's settings).
    Optional,
}

/// One attribute of a resource identity: always a primitive, always known once stored.
#[derive(Clone, Debug)]
pub struct IdentityAttribute {
    pub name: &'static str,
    pub ty: Type,
    pub import: ForImport,
    pub description: &'static str,
}

/// The identity of a resource type (Terraform >= 1.12): a small object that names the remote
/// object for its whole life, versioned apart from the resource schema. Terraform stores it
/// beside the state, sends it back on read, plan and apply, and accepts it in `import` blocks.
#[derive(Clone, Debug)]
pub struct IdentitySchema {
    pub version: i64,
    pub attributes: Vec<IdentityAttribute>,
}

impl IdentitySchema {
    /// The object type identity values are encoded with (msgpack on the wire, JSON in state).
    pub fn value_type(&self) -> Type {
        Type::object(self.attributes.iter().map(|a| (a.name, a.ty.clone())))
    }

    /// The `required_for_import` attributes left null in an identity given to import.
    pub fn missing_for_import(&self, identity: &Value) -> Vec<&'static str> {
        self.attributes
            .iter()
            .filter(|a| a.import == ForImport::Required && identity.attr(a.name).is_null())
            .map(|a| a.name)
            .collect()
    }
}

/// What a resource works its identity out from.
pub struct IdentityRequest<'a, D> {
    /// The state (after read or apply) or the plan; wholly known except in a plan.
    pub state: &'a Value,
    /// The identity Terraform stored for the object, or null (first read under Terraform
    /// >= 1.12, an import by ID, a create or a replacement).
    pub prior: &'a Value,
    pub provider: &'a D,
}

#[async_trait]
pub trait Resource<D: Send + Sync>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    /// Runs after the generic plan rules, on create and update (not on destroy).
    async fn modify_plan(&self, _req: ModifyPlanRequest<'_, D>, _resp: &mut ModifyPlanResponse) {}
    /// Warnings or errors for a planned destroy (e.g. refusing to drop something valuable).
    async fn plan_destroy(&self, _prior_state: &Value, _provider: &D) -> Diagnostics {
        Diagnostics::new()
    }
    async fn create(&self, req: ApplyRequest<'_, D>, resp: &mut ApplyResponse);
    async fn read(&self, req: ReadRequest<'_, D>, resp: &mut ReadResponse);
    async fn update(&self, req: ApplyRequest<'_, D>, resp: &mut ApplyResponse);
    async fn delete(&self, req: DeleteRequest<'_, D>) -> Diagnostics;
    fn import(&self) -> Import {
        Import::NotSupported
    }
    /// The state for a `moved` block whose `from` is another resource type (`MoveResourceState`).
    /// Refused unless a resource maps the source honestly.
    fn move_state(&self, req: MoveStateRequest<'_>) -> Result<MovedState, Diagnostics> {
        Err(move_not_supported(self.type_name(), &req).into())
    }

    /// The identity schema; `None` (the default): the type has no identity and Terraform
    /// keeps none.
    fn identity_schema(&self) -> Option<IdentitySchema> {
        None
    }
    /// The object's identity, from its state (or plan) and the identity stored before. `None`
    /// when the state does not name the object yet (unknowns in a create plan). The protocol
    /// layer keeps a stored identity's values wherever this leaves an attribute null.
    fn identity(&self, _req: IdentityRequest<'_, D>) -> Option<Value> {
        None
    }
    /// An `import { identity = { ... } }`: the import ID naming the same object, so the import
    /// then runs exactly as one by ID. Required attributes were checked to be set.
    fn import_id(&self, _identity: &Value, _provider: &D) -> Result<String, Diagnostic> {
        Err(Diagnostic::error(
            "Import by identity not supported",
            format!(
                "{} cannot be imported by identity; import it by ID.",
                self.type_name()
            ),
        ))
    }
    /// Converts an identity stored by an older identity version (JSON) to the current one.
    fn upgrade_identity(
        &self,
        version: i64,
        _raw: &serde_json::Value,
    ) -> Result<Value, Diagnostic> {
        Err(Diagnostic::provider_bug(
            "Unable to upgrade resource identity",
            format!(
                "{} has no identity upgrader from version {version}",
                self.type_name()
            ),
        ))
    }
    /// Converts state stored by an older schema version (JSON) to the current one. Only called
    /// when `version` is below the schema's; the same version is decoded generically.
    fn upgrade_state(&self, version: i64, _raw: &serde_json::Value) -> Result<Value, Diagnostic> {
        Err(Diagnostic::provider_bug(
            "Unable to upgrade resource state",
            format!(
                "{} has no upgrader from schema version {version}",
                self.type_name()
            ),
        ))
    }
}

/// The identity to send Terraform: what the resource worked out (`derived`), with the stored
/// identity's value wherever it left an attribute null, or the stored identity when it worked
/// out nothing; null when there is neither. Stored values never override derived ones: an
/// identity is the object's, and the object is what the state describes.
pub fn resolve_identity(schema: &IdentitySchema, derived: Option<Value>, prior: &Value) -> Value {
    let Some(mut identity) = derived.filter(|d| !d.is_null()) else {
        return prior.clone();
    };
    if prior.is_null() {
        return identity;
    }
    for a in &schema.attributes {
        if identity.attr(a.name).is_null() && !prior.attr(a.name).is_null() {
            identity.set_attr(a.name, prior.attr(a.name).clone());
        }
    }
    identity
}

// ---------------------------------------------------------- ephemeral resource

pub struct OpenRequest<'a, D> {
    pub config: &'a Value,
    pub provider: &'a D,
    pub ctx: &'a Context,
}

#[derive(Debug, Default)]
pub struct OpenResponse {
    /// Pre-filled with the configuration; set the computed attributes.
    pub result: Value,
    pub private: Vec<u8>,
    pub renew_at: Option<SystemTime>,
    pub diagnostics: Diagnostics,
}

#[derive(Debug, Default)]
pub struct RenewResponse {
    pub private: Vec<u8>,
    pub renew_at: Option<SystemTime>,
    pub diagnostics: Diagnostics,
}

#[async_trait]
pub trait EphemeralResource<D: Send + Sync>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    async fn open(&self, req: OpenRequest<'_, D>, resp: &mut OpenResponse);
    async fn renew(&self, _private: &[u8], _provider: &D, _ctx: &Context) -> RenewResponse {
        RenewResponse::default()
    }
    async fn close(&self, _private: &[u8], _provider: &D, _ctx: &Context) -> Diagnostics {
        Diagnostics::new()
    }
}

// ---------------------------------------------------------------------- action

/// Where an action's progress goes. Every message becomes one `InvokeAction` progress event,
/// which Terraform prints at once as `Action action.<type>.<name> (triggered by …): <message>`
/// (and streams to HCP Terraform). Cheap to clone and `Send`, so work running in spawned tasks
/// can report too; sending never blocks, and after the invocation ended (or Terraform hung up)
/// messages are dropped.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Progress {
    /// A sink and the receiving end the server forwards as events (tests read it too).
    pub fn channel() -> (Progress, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Progress { tx: Some(tx) }, rx)
    }

    /// A sink that drops every message.
    pub fn discard() -> Progress {
        Progress { tx: None }
    }

    /// Sends one message (one line on Terraform's console; keep it short and without secrets).
    pub fn send(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(progress = %message, "action progress");
        if let Some(tx) = &self.tx {
            let _ = tx.send(message);
        }
    }
}

pub struct PlanActionRequest<'a, D> {
    /// May contain unknown values (an action triggered by a resource that is not created yet).
    pub config: &'a Value,
    pub provider: &'a D,
    pub ctx: &'a Context,
}

pub struct InvokeActionRequest<'a, D> {
    /// Wholly known.
    pub config: &'a Value,
    pub provider: &'a D,
    /// Cancelled by `StopProvider` and when Terraform stops reading the event stream.
    pub ctx: &'a Context,
    pub progress: &'a Progress,
}

/// An action: an operation run on demand (`terraform apply -invoke=action.<type>.<name>`) or
/// around a resource change (`action_trigger` in a resource's `lifecycle`). It has a
/// configuration but no state: nothing it does is recorded by Terraform.
#[async_trait]
pub trait Action<D: Send + Sync>: Send + Sync {
    /// Full type name, e.g. `artifortress_take_backup`.
    fn type_name(&self) -> &'static str;
    /// Required and optional attributes only (an action has no computed results).
    fn schema(&self) -> Schema;
    /// Cross-attribute checks; per-attribute validators run without this. The configuration
    /// may contain unknown values.
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    /// Runs when Terraform plans the invocation (the provider is configured; the configuration
    /// may contain unknowns): refuse early what the invocation would refuse.
    async fn plan(&self, _req: PlanActionRequest<'_, D>) -> Diagnostics {
        Diagnostics::new()
    }
    /// Does the work, reporting through `req.progress`; the returned diagnostics (errors fail
    /// the invocation, and with it the apply) complete it.
    async fn invoke(&self, req: InvokeActionRequest<'_, D>) -> Diagnostics;
}

// --------------------------------------------------------------------- timeouts

/// The conventional `timeouts` attribute (`timeouts = { create = "30m" }`), an ordinary
/// optional nested attribute of Go durations.
pub fn timeouts_attribute(operations: &[&str]) -> Attribute {
    let attrs = operations
        .iter()
        .map(|op| {
            Attribute::optional(op, Type::String)
                .description(&format!(
                    "How long `{op}` may take, as a duration such as `30s`, `10m` or `2h`."
                ))
                .validate(Validator::Duration { min_millis: 1 })
        })
        .collect();
    Attribute::nested("timeouts", Nesting::Single, Constraint::Optional, attrs).description(
        "Per-operation time limits. Cancelling Terraform (Ctrl-C) also stops the operation.",
    )
}

/// The configured timeout for `operation`, or `default` (the value was validated already).
pub fn timeout(config: &Value, operation: &str, default: Duration) -> Duration {
    config
        .attr("timeouts")
        .attr(operation)
        .as_str()
        .and_then(|s| duration::parse(s).ok())
        .unwrap_or(default)
}

/// Why a bounded operation was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Its time limit ran out.
    TimedOut,
    /// Terraform was interrupted (`StopProvider`).
    Interrupted,
}

/// Runs `work` with a time limit and Terraform's interrupt: `work` gets a child token of
/// `ctx.cancel`, which is cancelled when `limit` runs out. Either way the operation is then
/// awaited to its end (it must stop promptly once its token is cancelled, cleaning up what it
/// started), so the caller always gets its result, and why it was stopped if it was.
/// `on_stop` runs once, right after the token is cancelled, before the wait (e.g. to cancel a
/// statement running on a server).
pub async fn run_bounded<T, W, S>(
    ctx: &Context,
    limit: Duration,
    work: impl FnOnce(CancellationToken) -> W,
    on_stop: impl FnOnce(Stopped) -> S,
) -> (T, Option<Stopped>)
where
    W: std::future::Future<Output = T>,
    S: std::future::Future<Output = ()>,
{
    let stop = ctx.cancel.child_token();
    let work = work(stop.clone());
    tokio::pin!(work);
    let why = tokio::select! {
        r = &mut work => return (r, None),
        _ = tokio::time::sleep(limit) => Stopped::TimedOut,
        _ = ctx.cancel.cancelled() => Stopped::Interrupted,
    };
    stop.cancel();
    on_stop(why).await;
    (work.await, Some(why))
}

/// An `on_stop` for [`run_bounded`] that does nothing more.
pub async fn nothing_more(_: Stopped) {}

// ------------------------------------------------------------- generic checks

mod checks;
pub use checks::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(
            0,
            "test",
            vec![
                Attribute::computed("id", Type::String).use_state_for_unknown(),
                Attribute::required("name", Type::String).requires_replace(),
                Attribute::optional("size", Type::Number),
                Attribute::optional_computed("mode", Type::String).default_value("fast"),
                Attribute::computed("version", Type::Number),
                Attribute::optional("secret_wo", Type::String).write_only(),
                timeouts_attribute(&["create"]),
            ],
        )
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        let mut base = Value::null_object(&schema().value_type());
        for (k, v) in pairs {
            base.set_attr(k, v.clone());
        }
        base
    }

    #[test]
    fn create_marks_computed_unknown_applies_defaults_and_nulls_write_only() {
        let config = obj(&[("name", "a".into()), ("secret_wo", "s3cret".into())]);
        let planned = plan_generic(&schema(), &Value::Null, &config, &config);
        assert!(planned.attr("id").is_unknown());
        assert!(planned.attr("version").is_unknown());
        assert_eq!(planned.attr("mode"), &Value::from("fast"));
        assert!(planned.attr("secret_wo").is_null());
        assert!(check_plan_valid(&schema(), &Value::Null, &config, &planned).is_empty());
    }

    #[test]
    fn no_change_means_no_unknowns_so_the_plan_is_empty() {
        let config = obj(&[("name", "a".into())]);
        let prior = obj(&[
            ("id", "x1".into()),
            ("name", "a".into()),
            ("mode", "fast".into()),
            ("version", Value::int(3)),
        ]);
        // Terraform proposes prior values for computed attributes the config leaves null.
        let planned = plan_generic(&schema(), &prior, &prior, &config);
        assert!(planned.same(&prior), "{planned:?}");
        assert!(replacement_paths(&schema(), &prior, &planned).is_empty());
    }

    #[test]
    fn update_keeps_stable_ids_and_marks_the_rest_unknown() {
        let prior = obj(&[
            ("id", "x1".into()),
            ("name", "a".into()),
            ("mode", "fast".into()),
            ("version", Value::int(3)),
        ]);
        let config = obj(&[("name", "a".into()), ("size", Value::int(2))]);
        let mut proposed = prior.clone();
        proposed.set_attr("size", Value::int(2));
        let planned = plan_generic(&schema(), &prior, &proposed, &config);
        assert_eq!(planned.attr("id"), &Value::from("x1"));
        assert!(planned.attr("version").is_unknown());
        assert!(replacement_paths(&schema(), &prior, &planned).is_empty());
    }

    #[test]
    fn requires_replace_reports_the_changed_path() {
        let prior = obj(&[("id", "x1".into()), ("name", "a".into())]);
        let config = obj(&[("name", "b".into())]);
        let mut proposed = prior.clone();
        proposed.set_attr("name", "b".into());
        let planned = plan_generic(&schema(), &prior, &proposed, &config);
        assert_eq!(
            replacement_paths(&schema(), &prior, &planned),
            vec![AttributePath::attr("name")]
        );
    }

    #[test]
    fn invalid_plans_are_caught_with_the_path() {
        let config = obj(&[("name", "a".into())]);
        let mut planned = plan_generic(&schema(), &Value::Null, &config, &config);
        planned.set_attr("size", Value::int(9));
        let diags = check_plan_valid(&schema(), &Value::Null, &config, &planned);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(diags.0[0].attribute, Some(AttributePath::attr("size")));
    }

    #[test]
    fn apply_results_must_match_known_planned_values() {
        let planned = obj(&[("name", "a".into()), ("id", Value::unknown())]);
        let good = obj(&[("name", "a".into()), ("id", "x".into())]);
        assert!(check_apply_result(&planned, &good).is_empty());
        let changed = obj(&[("name", "A".into()), ("id", "x".into())]);
        let diags = check_apply_result(&planned, &changed);
        assert_eq!(diags.0[0].attribute, Some(AttributePath::attr("name")));
        let unknown = obj(&[("name", "a".into()), ("id", Value::unknown())]);
        assert!(check_apply_result(&planned, &unknown).has_errors());
    }

    #[test]
    fn config_checks_name_read_only_and_required_attributes() {
        let config = obj(&[("version", Value::int(1))]);
        let diags = validate_config(&schema(), &config, &Context::detached());
        let paths: Vec<_> = diags
            .iter()
            .map(|d| d.attribute.clone().unwrap().to_string())
            .collect();
        assert_eq!(paths, ["name", "version"]);
        let mut no_wo = Context::detached();
        no_wo.write_only_allowed = false;
        let config = obj(&[("name", "a".into()), ("secret_wo", "x".into())]);
        assert!(validate_config(&schema(), &config, &no_wo).has_errors());
        let config = obj(&[
            ("name", "a".into()),
            ("timeouts", Value::object([("create", Value::from("soon"))])),
        ]);
        let diags = validate_config(&schema(), &config, &Context::detached());
        assert_eq!(
            diags.0[0].attribute.as_ref().unwrap().to_string(),
            "timeouts.create"
        );
    }

    #[test]
    fn timeouts_fall_back_to_the_default() {
        let config = obj(&[("timeouts", Value::object([("create", Value::from("90s"))]))]);
        assert_eq!(
            timeout(&config, "create", Duration::from_secs(5)),
            Duration::from_secs(90)
        );
        assert_eq!(
            timeout(&obj(&[]), "create", Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn every_test_schema_is_valid() {
        assert!(schema().check().is_empty(), "{:?}", schema().check());
    }
}
