//! `resource "artifortress_bootstrap"`: the staging database and bucket bootstrap (D1),
//! joining the bootstrap client to Terraform.
//!
//! Create (and every update) makes sure the owner role exists with LOGIN, the database exists
//! and is owned by it, the bucket exists (created with `create_bucket`), and that the storage
//! credentials can put, get and delete a probe object. The owner's password is set on create
//! and whenever `owner_password_wo_version` changes; it is write-only, like the admin URL, so
//! neither is ever in state.
//!
//! Read re-verifies the role, the owner and the bucket without writing anything (the probe's
//! record is kept from the last apply). It has no configuration, so it connects with the
//! provider's `database_url` when that names the same server (any role may read the
//! catalogs). A role, database or bucket gone out of band leaves the state with a warning, so
//! the plan proposes creating it again; a role without LOGIN or a database with another owner
//! plans an update that puts it right.

use async_trait::async_trait;

use crate::clients::bootstrap::{
    self, BootstrapError, BootstrapSpec, CHECK_NAMES, Check, probe_check, server_of,
};
use crate::clients::pg::valid_identifier;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{
    ApplyRequest, ApplyResponse, DeleteRequest, IdentityRequest, IdentitySchema, Import,
    ModifyPlanRequest, ModifyPlanResponse, ReadRequest, ReadResponse, Resource,
};
use crate::protocol::model::{Maybe, ModelError, Planned, ToValue};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Setting, Settings};
use crate::shared::edits::write_changes;
use crate::shared::identity as shared_identity;

pub const TYPE_NAME: &str = "artifortress_bootstrap";

/// Private state after a refresh that had no URL for the bootstrap's server: the plan (which
/// gets the write-only `admin_database_url`) verifies instead.
const UNCHECKED: &[u8] = b"{\"refresh\":\"unchecked\"}";
/// Planned private state when the plan found the role or database gone: the apply creates
/// them again and sets the password as on create.
const RECREATE: &[u8] = b"{\"apply\":\"recreate\"}";

crate::model! {
    /// `artifortress_bootstrap` as configured, planned and stored.
    pub(crate) struct BootstrapModel {
        admin_database_url: Option<String> = Attribute::optional("admin_database_url", Type::String)
            .sensitive()
            .write_only()
            .description("PostgreSQL URL of a role that may create roles and databases, on the server to bootstrap. Default: the provider's `database_url`. Write-only (Terraform >= 1.11): never stored. Refresh and destroy get no write-only values and connect with the provider's `database_url`, which must then name the same server (`id`); a different server plans a replacement. When its own database does not exist (yet), `postgres` is used."),
        database: String = Attribute::required("database", Type::String)
            .requires_replace()
            .description("The database to create (owned by `owner_role`). `^[A-Za-z_][A-Za-z0-9_]*$`, at most 63 bytes."),
        owner_role: String = Attribute::required("owner_role", Type::String)
            .requires_replace()
            .description("The login role that owns the database (created when absent, given LOGIN when it lacks it). `^[A-Za-z_][A-Za-z0-9_]*$`, at most 63 bytes."),
        owner_password_wo: Option<String> = Attribute::optional("owner_password_wo", Type::String)
            .sensitive()
            .write_only()
            .description("The owner role's password, set on create and whenever `owner_password_wo_version` changes. Write-only (Terraform >= 1.11): never stored. Without it no password is set (nor removed). The server builds the `ALTER ROLE … PASSWORD` statement from bind parameters (`format('%I', '%L')`), so the password is never formatted into SQL by the provider."),
        /// Compared as it is (any number).
        owner_password_wo_version: Value = Attribute::optional("owner_password_wo_version", Type::Number)
            .description("Change it (e.g. 1 → 2) to set `owner_password_wo` again: the usual `*_wo_version` rotation trigger. Updates in place."),
        bucket: Option<String> = Attribute::optional_computed("bucket", Type::String)
            .requires_replace()
            .use_state_for_unknown()
            .description("The environment's bucket. Default: the provider's `object_storage.bucket`. It is never deleted."),
        create_bucket: bool = Attribute::optional_computed("create_bucket", Type::Bool)
            .default_value(false)
            .description("`true`: create the bucket when absent. `false`: it must exist. Updates in place."),
        on_destroy: String = Attribute::optional_computed("on_destroy", Type::String)
            .default_value("keep")
            .validate(Validator::OneOf(&["keep", "drop"]))
            .description("`keep`: destroying only forgets the resource (with a warning). `drop`: terminate the database's sessions, drop the database, then the role. The bucket is never deleted. Updates in place."),
        id: Option<String> = Attribute::computed("id", Type::String)
            .use_state_for_unknown()
            .description("`host:port/database`."),
        database_url_template: Option<String> = Attribute::computed("database_url_template", Type::String)
            .use_state_for_unknown()
            .description("`postgres://<owner_role>@host:port/<database>`, without password: add it where the URL is used."),
        checks: Option<Vec<CheckModel>> = Attribute::computed("checks", Type::list(CheckModel::object_type()))
            .use_state_for_unknown()
            .description("What was verified: `role` (exists with LOGIN), `database_owner`, `bucket`, `storage_put_get_delete` (the probe; measured by create and update, kept as recorded by a refresh). Each with `name`, `passed` and `detail`. A refresh that finds a failed check plans an update that repairs it."),
        server_version: Option<String> = Attribute::computed("server_version", Type::String)
            .use_state_for_unknown()
            .description("PostgreSQL's `server_version`."),
    }
}

crate::model! {
    /// One element of `checks`.
    pub(crate) struct CheckModel {
        name: String = Attribute::computed("name", Type::String),
        passed: bool = Attribute::computed("passed", Type::Bool),
        detail: String = Attribute::computed("detail", Type::String),
    }
}

pub struct Bootstrap;

#[async_trait]
impl Resource<Settings> for Bootstrap {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "The bootstrap of an environment's database and bucket (D1): the owner role \
             (LOGIN, its password set on create and on every change of \
             `owner_password_wo_version`), the database owned by it, the bucket (created with \
             `create_bucket`), and a probe that the provider's storage credentials can put, get \
             (content compared) and delete an object under `_artifortress/`. Names are plain \
             identifiers, checked at plan time and always double-quoted. Neither password is \
             ever stored. A refresh re-verifies the role, the owner and the bucket (without \
             writing a probe); one that vanished out of band is planned again.",
            BootstrapModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let config = match BootstrapModel::planned(config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid bootstrap configuration").into(),
        };
        let mut diags = Diagnostics::new();
        for (attr, name) in [
            ("database", &config.database),
            ("owner_role", &config.owner_role),
        ] {
            if let Maybe::Known(name) = name
                && !valid_identifier(name)
            {
                diags.push(identifier_diagnostic(attr, name));
            }
        }
        diags
    }

    async fn modify_plan(
        &self,
        req: ModifyPlanRequest<'_, Settings>,
        resp: &mut ModifyPlanResponse,
    ) {
        let settings = req.provider;
        // Names are checked by `validate`, which Terraform calls again during plan with the
        // evaluated configuration, and once more by the client before any SQL.
        super::plan_default_bucket(req.config, req.prior_state, settings, resp);
        let models = (|| {
            Ok::<_, ModelError>((
                admin_url_value(req.config)?,
                BootstrapModel::planned(&resp.planned_state)?,
                prior_model(req.prior_state)?,
            ))
        })();
        let (admin_url, before, prior) = match models {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid bootstrap plan"));
            }
        };
        let mut planned = before.clone();
        let server = match settings.database_url_for(&admin_url) {
            Ok(Some(url)) => server_of(&url).ok(),
            _ => None,
        };
        let database = planned.database.known().cloned();
        let role = planned.owner_role.known().cloned();
        match (server, database, role) {
            (Some(server), Some(db), Some(role)) => {
                let id = identity(&server, &db);
                if let Some(prior) = &prior
                    && prior.id.as_deref() != Some(id.as_str())
                {
                    // Another server (the admin URL changed): a new bootstrap.
                    resp.requires_replace
                        .push(AttributePath::root().child_attr("id"));
                }
                planned.id = Maybe::Known(Some(id));
                planned.database_url_template =
                    Maybe::Known(Some(url_template(&server, &role, &db)));
            }
            (_, database, role) => {
                // Not known yet: a new resource (or new names) is unknown; otherwise the
                // recorded identity stands.
                let renamed = prior.as_ref().is_none_or(|p| {
                    database.as_deref() != Some(p.database.as_str())
                        || role.as_deref() != Some(p.owner_role.as_str())
                });
                if renamed {
                    planned.id = Maybe::Unknown;
                    planned.database_url_template = Maybe::Unknown;
                }
            }
        }
        if let Some(prior) = &prior
            && plan_repair(settings, &admin_url, prior, &planned, resp).await
        {
            planned.checks = Maybe::Unknown;
            planned.server_version = Maybe::Unknown;
        }
        write_changes(
            &mut resp.planned_state,
            &BootstrapModel::object_type(),
            &before,
            &planned,
        );
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        self.apply(req, resp, true).await;
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        let settings = req.provider;
        // An import holds only `id`: what it names is read from the server first.
        if resp.new_state.attr("database").is_null()
            && let Err(d) = read_import(settings, &mut resp.new_state).await
        {
            return resp.diagnostics.push(d);
        }
        let before = match BootstrapModel::from_value(&resp.new_state) {
            Ok(s) => s,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid bootstrap state"));
            }
        };
        let Some(server) = before.server() else {
            return resp.diagnostics.push(Diagnostic::provider_bug(
                "Bootstrap without id",
                "id is null or not host:port/database",
            ));
        };
        let url = match provider_url_on(settings, &server, &Value::Null) {
            Ok(u) => u,
            Err(d) => {
                // No credentials for this server at refresh (admin_database_url is write-only):
                // keep the state, and let the plan verify with the configuration's URL.
                resp.private = UNCHECKED.to_vec();
                return resp.diagnostics.push(
                    Diagnostic::warning(
                        "Bootstrap not refreshed: no database URL for its server",
                        format!(
                            "{} The state was kept as it is, so `terraform refresh` and \
                             `plan -refresh-only` did not check drift. A plan or apply checks \
                             it anyway, with the configuration's write-only \
                             admin_database_url. To let refresh check it too, point the \
                             provider's database_url at {server} (any role may read the \
                             catalogs).",
                            d.detail
                        ),
                    )
                    .at_attr("admin_database_url"),
                );
            }
        };
        let seen = match verify(settings, &url, &before).await {
            Ok(v) => v,
            Err(d) => return resp.diagnostics.push(d),
        };
        resp.private = Vec::new();
        if !seen.gone.is_empty() {
            resp.diagnostics.push(Diagnostic::warning(
                "Bootstrap changed outside Terraform",
                format!(
                    "{} on {server}, so this bootstrap is gone from the state and the plan \
                     proposes creating it again.",
                    gone_text(&seen.gone)
                ),
            ));
            resp.new_state = Value::Null;
            return;
        }
        let mut state = before.clone();
        state.checks = Some(check_models(&seen.checks));
        state.server_version = Some(seen.server_version);
        write_changes(
            &mut resp.new_state,
            &BootstrapModel::object_type(),
            &before,
            &state,
        );
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        self.apply(req, resp, false).await;
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        let prior = match BootstrapModel::from_config(req.prior_state) {
            Ok(p) => p,
            Err(e) => return e.diagnostic("Invalid bootstrap state").into(),
        };
        let (database, role) = (prior.database.as_str(), prior.owner_role.as_str());
        if prior.on_destroy != "drop" {
            return Diagnostic::warning(
                "Database and role kept",
                format!(
                    "on_destroy = \"keep\": database {database} and role {role} stay on the \
                     server, and the bucket {} stays; only the resource is forgotten.",
                    prior.bucket.as_deref().unwrap_or_default()
                ),
            )
            .into();
        }
        let Some(server) = prior.server() else {
            return Diagnostic::provider_bug("Bootstrap without id", "id is null").into();
        };
        let own = match admin_url_value(req.config) {
            Ok(v) => v,
            Err(e) => return e.diagnostic("Invalid bootstrap configuration").into(),
        };
        let url = match provider_url_on(req.provider, &server, &own) {
            Ok(u) => u,
            Err(d) => return d.into(),
        };
        match bootstrap::drop_all(&url, database, role, req.provider.request_timeout).await {
            Ok(()) => Diagnostics::new(),
            Err(e) => error_diagnostic("Cannot drop the database and role", &e)
                .at_attr("on_destroy")
                .into(),
        }
    }

    fn import(&self) -> Import {
        Import::Passthrough("id")
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(shared_identity::database_identity_schema())
    }

    fn import_id(&self, identity: &Value, _provider: &Settings) -> Result<String, Diagnostic> {
        shared_identity::database_import_id(identity)
    }

    /// The database `id` names (`host:port/database` of the effective `database_url`, no
    /// credentials); both of its parts force a new resource when they change.
    fn identity(&self, req: IdentityRequest<'_, Settings>) -> Option<Value> {
        shared_identity::database_identity(req.state.attr("id").as_str())
    }
}

impl Bootstrap {
    /// Create and update: make everything so, then record what was verified.
    async fn apply(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse, create: bool) {
        let settings = req.provider;
        let models = (|| {
            Ok::<_, ModelError>((
                BootstrapModel::from_config(req.config)?,
                BootstrapModel::from_config(req.planned_state)?,
                prior_model(req.prior_state)?,
            ))
        })();
        let (config, planned, prior) = match models {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid bootstrap plan"));
            }
        };
        let admin_url = match settings.need_database_url(
            &Value::opt_string(config.admin_database_url.clone()),
            "admin_database_url",
        ) {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        let bucket = match settings.need_bucket(planned.bucket.as_deref(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        // A role the plan found gone is created again: its password is set as on create.
        let prior_version = prior.map_or(Value::Null, |p| p.owner_password_wo_version);
        let rotate = create
            || req.planned_private == RECREATE
            || !planned.owner_password_wo_version.same(&prior_version);
        let password = config.owner_password_wo.clone();
        if rotate && !create && password.is_none() {
            resp.diagnostics.push(
                Diagnostic::warning(
                    "No password to set",
                    "owner_password_wo_version changed but owner_password_wo is not set: the \
                     role's password was left as it is.",
                )
                .at_attr("owner_password_wo"),
            );
        }
        let spec = BootstrapSpec {
            admin_url,
            database: planned.database.clone(),
            owner_role: planned.owner_role.clone(),
            owner_password: if rotate { password } else { None },
            bucket,
            create_bucket: planned.create_bucket,
            region: region(settings),
            connect_timeout: settings.request_timeout,
        };
        let outcome = match bootstrap::ensure(&s3, &spec).await {
            Ok(o) => o,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(error_diagnostic("Bootstrap failed", &e));
            }
        };
        if let Some(failed) = outcome.checks.iter().find(|c| !c.passed) {
            return resp.diagnostics.push(
                Diagnostic::error(
                    "Bootstrap check failed",
                    format!("{}: {}", failed.name, failed.detail),
                )
                .at_attr("checks"),
            );
        }
        let mut state = planned.clone();
        state.bucket = Some(spec.bucket.clone());
        state.id = Some(identity(&outcome.server, &spec.database));
        state.database_url_template = Some(url_template(
            &outcome.server,
            &spec.owner_role,
            &spec.database,
        ));
        state.checks = Some(check_models(&outcome.checks));
        state.server_version = Some(outcome.server_version);
        resp.new_state = req.planned_state.clone();
        write_changes(
            &mut resp.new_state,
            &BootstrapModel::object_type(),
            &planned,
            &state,
        );
        resp.private = Vec::new();
    }
}

impl BootstrapModel {
    /// The server (`host:port`) a resource in state lives on, from its id.
    fn server(&self) -> Option<String> {
        self.id
            .as_deref()
            .and_then(|id| id.rsplit_once('/'))
            .map(|(server, _)| server.to_string())
    }
}

/// The state before a plan or an apply; `None` on create.
fn prior_model(prior: &Value) -> Result<Option<BootstrapModel>, ModelError> {
    match prior {
        Value::Null => Ok(None),
        v => BootstrapModel::from_value(v).map(Some),
    }
}

/// The configuration's `admin_database_url` as [`Settings::database_url_for`] takes it (null
/// when there is no configuration, as on destroy).
fn admin_url_value(config: &Value) -> Result<Value, ModelError> {
    match config {
        Value::Null => Ok(Value::Null),
        v => Ok(BootstrapModel::planned(v)?
            .admin_database_url
            .to_value(&Type::String)),
    }
}

/// Whether the plan must repair the bootstrap: a refresh found something wrong (NOLOGIN,
/// another owner), or could not look and the plan finds it now. The plan looks with the
/// configuration's `admin_database_url` when the refresh could not, unless it replaces the
/// bootstrap anyway.
async fn plan_repair(
    settings: &Settings,
    admin_url: &Value,
    prior: &BootstrapModel,
    planned: &BootstrapModel<Planned>,
    resp: &mut ModifyPlanResponse,
) -> bool {
    let mut failed = prior.checks.iter().flatten().any(|c| !c.passed);
    let planned_id = planned.id.known().and_then(|id| id.as_deref());
    let same_server = resp.requires_replace.is_empty()
        && planned_id.is_some()
        && planned_id == prior.id.as_deref();
    if resp.planned_private == UNCHECKED && same_server {
        resp.planned_private = Vec::new();
        if let Ok(Some(url)) = settings.database_url_for(admin_url) {
            match verify(settings, &url, prior).await {
                Ok(seen) if !seen.gone.is_empty() => {
                    resp.diagnostics.push(Diagnostic::warning(
                        "Bootstrap changed outside Terraform",
                        format!(
                            "{} on {}: the apply creates {} again (the role with \
                             owner_password_wo when it is set, as on create).",
                            gone_text(&seen.gone),
                            prior.server().unwrap_or_default(),
                            if seen.gone.len() == 1 { "it" } else { "them" }
                        ),
                    ));
                    resp.planned_private = RECREATE.to_vec();
                    failed = true;
                }
                Ok(seen) => failed |= seen.checks.iter().any(|c| !c.passed),
                Err(d) => resp.diagnostics.push(d),
            }
        }
    }
    failed
}

/// What a look at the server and the bucket found, against the state.
struct Verified {
    /// What no longer exists (`role x`, `database y`, `bucket z`).
    gone: Vec<String>,
    checks: Vec<Check>,
    server_version: String,
}

async fn verify(
    settings: &Settings,
    url: &str,
    state: &BootstrapModel,
) -> Result<Verified, Diagnostic> {
    let (database, role) = (&state.database, &state.owner_role);
    let bucket = state.bucket.clone().unwrap_or_default();
    let s3 = settings.object_store()?;
    let seen = bootstrap::observe(&s3, url, database, role, &bucket, settings.request_timeout)
        .await
        .map_err(|e| error_diagnostic("Cannot verify the bootstrap", &e))?;
    let mut gone = Vec::new();
    if !seen.role_exists {
        gone.push(format!("role {role}"));
    }
    if !seen.database_exists {
        gone.push(format!("database {database}"));
    }
    if !seen.bucket_exists {
        gone.push(format!("bucket {bucket}"));
    }
    let mut checks = seen.checks(role, database, &bucket);
    // The probe writes; a refresh or a plan does not. Its last measured result is kept.
    let probe = state
        .checks
        .as_ref()
        .and_then(|cs| cs.get(3))
        .filter(|c| c.name == CHECK_NAMES[3])
        .map(|c| Check {
            name: CHECK_NAMES[3],
            passed: c.passed,
            detail: c.detail.clone(),
        })
        .unwrap_or_else(|| probe_check(&bucket));
    checks.push(probe);
    Ok(Verified {
        gone,
        checks,
        server_version: seen.server_version,
    })
}

fn gone_text(gone: &[String]) -> String {
    format!(
        "{} no longer exist{}",
        gone.join(", "),
        if gone.len() == 1 { "s" } else { "" }
    )
}

fn check_models(checks: &[Check]) -> Vec<CheckModel> {
    checks
        .iter()
        .map(|c| CheckModel {
            name: c.name.to_string(),
            passed: c.passed,
            detail: c.detail.clone(),
        })
        .collect()
}

/// Fills an imported state (only `id`, `host:port/database`) from the server, with the
/// provider's `database_url` for it: the database must exist, its owner is `owner_role`; the
/// bucket is the provider's; the other arguments take their defaults (`create_bucket = false`,
/// `on_destroy = "keep"`). The refresh that follows verifies role, database and bucket as for
/// any state, so the imported checks are what the server and the bucket show now.
async fn read_import(settings: &Settings, state: &mut Value) -> Result<(), Diagnostic> {
    let id = state.attr("id").as_str().unwrap_or_default().to_string();
    let Some((host, port, database)) = shared_identity::parse_database_id(&id) else {
        return Err(Diagnostic::error(
            "Invalid import ID",
            format!(
                "{id:?}: expected <host>:<port>/<database>, e.g. db.internal:5432/artifortress_staging."
            ),
        )
        .at_attr("id"));
    };
    if !valid_identifier(&database) {
        return Err(Diagnostic::error(
            "Invalid import ID",
            format!(
                "{database:?} is not a database name this resource manages \
                 (^[A-Za-z_][A-Za-z0-9_]*$, at most 63 bytes)."
            ),
        )
        .at_attr("id"));
    }
    let server = format!("{host}:{port}");
    let url = provider_url_on(settings, &server, &Value::Null)?;
    let bucket = settings.need_bucket(None, "bucket")?;
    let s3 = settings.object_store()?;
    let seen = bootstrap::observe(&s3, &url, &database, "", &bucket, settings.request_timeout)
        .await
        .map_err(|e| error_diagnostic("Cannot read the bootstrap to import", &e))?;
    let Some(owner) = seen.database_owner else {
        return Err(Diagnostic::error(
            "Cannot import non-existent database",
            format!("Database {database:?} does not exist on {server}."),
        )
        .at_attr("id"));
    };
    state.set_attr("database", Value::string(&database));
    state.set_attr("owner_role", Value::string(&owner));
    state.set_attr("bucket", Value::string(&bucket));
    state.set_attr("create_bucket", Value::Bool(false));
    state.set_attr("on_destroy", Value::string("keep"));
    state.set_attr(
        "database_url_template",
        Value::string(url_template(&server, &owner, &database)),
    );
    Ok(())
}

fn identity(server: &str, database: &str) -> String {
    format!("{server}/{database}")
}

fn url_template(server: &str, role: &str, database: &str) -> String {
    format!("postgres://{role}@{server}/{database}")
}

/// The diagnostic for a bootstrap error, on the attribute it is about.
fn error_diagnostic(summary: &str, err: &BootstrapError) -> Diagnostic {
    let attr = match err {
        BootstrapError::BadIdentifier { what, .. } => what,
        BootstrapError::InvalidUrl { .. }
        | BootstrapError::Connect { .. }
        | BootstrapError::Database { .. } => "admin_database_url",
        BootstrapError::ObjectStore(_)
        | BootstrapError::BucketMissing { .. }
        | BootstrapError::ProbeMismatch { .. } => "bucket",
    };
    Diagnostic::error(summary, err.to_string()).at_attr(attr)
}

fn identifier_diagnostic(attr: &str, name: &str) -> Diagnostic {
    Diagnostic::error(
        format!("Invalid {attr}"),
        format!(
            "{name:?} must match ^[A-Za-z_][A-Za-z0-9_]*$ and be at most 63 bytes: it becomes a \
             PostgreSQL identifier."
        ),
    )
    .at_attr(attr)
}

fn region(settings: &Settings) -> String {
    match &settings.object_storage.region {
        Setting::Known(r) if !r.is_empty() => r.clone(),
        _ => "us-east-1".to_string(),
    }
}

/// The provider's `database_url` when it names `server`: what Read and a destroy (which get
/// no write-only values) connect with.
fn provider_url_on(settings: &Settings, server: &str, own: &Value) -> Result<String, Diagnostic> {
    let url = settings
        .need_database_url(own, "admin_database_url")
        .map_err(|d| {
            Diagnostic::error(
                d.summary.clone(),
                format!(
                    "{}\n\nThis bootstrap lives on {server}. admin_database_url is write-only and \
                     never stored, so refresh and destroy connect with the provider's \
                     `database_url` (or ARTIFORTRESS_DATABASE_URL), which must name that server.",
                    d.detail
                ),
            )
            .at_attr("admin_database_url")
        })?;
    match server_of(&url) {
        Ok(s) if s == server => Ok(url),
        Ok(other) => Err(Diagnostic::error(
            "No database URL for this server",
            format!(
                "This bootstrap lives on {server}, but the provider's database_url names \
                 {other}. admin_database_url is write-only and never stored, so refresh and \
                 destroy connect with the provider's `database_url` (or \
                 ARTIFORTRESS_DATABASE_URL): point it at {server} (any role may read the \
                 catalogs; `on_destroy = \"drop\"` needs one that may drop the database and \
                 the role)."
            ),
        )
        .at_attr("admin_database_url")),
        Err(e) => Err(error_diagnostic("Invalid database URL", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(Bootstrap.schema().check().is_empty());
    }

    #[test]
    fn ids_and_templates_carry_no_password() {
        let server = server_of("postgres://admin:s3cret@db.internal:5433/postgres").unwrap();
        assert_eq!(identity(&server, "af"), "db.internal:5433/af");
        let t = url_template(&server, "artifortress", "artifortress_staging");
        assert_eq!(
            t,
            "postgres://artifortress@db.internal:5433/artifortress_staging"
        );
        assert!(!t.contains("s3cret"));
    }

    #[tokio::test]
    async fn bad_identifiers_are_refused_at_validate() {
        let mut config = Value::null_object(&Bootstrap.schema().value_type());
        config.set_attr("database", "bad-name".into());
        config.set_attr("owner_role", "ok_role".into());
        let diags = Bootstrap.validate(&config).await;
        assert!(diags.has_errors());
        let d = diags.iter().next().unwrap();
        assert!(d.summary.contains("database"), "{}", d.summary);
    }
}
