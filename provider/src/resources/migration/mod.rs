//! `resource "artifortress_migration"`: applies the service's SQL migrations exactly once
//! (D0/D4), joining the migrations client to Terraform's plan/apply rules.
//!
//! # How the plan stays honest and consistent
//! - **Read** (refresh) looks at the database and the directory and stores the truth: applied
//!   versions, the files waiting to run (`pending`), head, checksums. What an apply would leave
//!   behind, and any problem (edited file, dirty marker…), goes to the private state, so a
//!   refresh never fails on them and `destroy` stays possible.
//! - **Plan** with unchanged database inputs derives everything from that refreshed prior state,
//!   so the initial plan and the final plan during apply are identical even when another
//!   deployer migrates the database in between: `pending` planned empty, `applied_versions`,
//!   `head` and `checksums` as they will be after the apply. When the database inputs change
//!   (create, `dir`, `target_version`…), the plan reads the database and the directory itself;
//!   the values it plans depend only on the files and the versions already applied, which no
//!   concurrent apply of the same files changes. Unknown inputs leave the results unknown.
//! - **Apply** takes the lock, re-plans under it and runs what is still pending; a concurrent
//!   deployer that finished first just leaves nothing to run.
//!
//! The resource is split along its seams: this file (schema, the Terraform operations and the
//! configuration), [`plan`] (the two ways to plan), [`apply`] (create and update) and
//! [`private`] (what Read leaves for the plan that follows).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::clients::migrations::{MigrationClass, MigrationError, PendingMigration, PlanInputs};
use crate::clients::pg;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, IdentityRequest, IdentitySchema, Import,
    ModifyPlanRequest, ModifyPlanResponse, ReadRequest, ReadResponse, Resource,
};
use crate::protocol::model::{Maybe, ModelError, Planned, ToValue};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Setting, Settings};
use crate::shared::edits::{write_changes, write_differences};
use crate::shared::identity;
use crate::shared::migrations::{
    LookFailure, Observation, classes_attribute, config_classes, error_diagnostic, load_files,
    plan_inputs, validate_classes, view_attribute,
};

mod apply;
mod plan;
mod private;

use private::{Private, StoredProblem};

pub const TYPE_NAME: &str = "artifortress_migration";
const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

crate::model! {
    /// `artifortress_migration` as configured, planned and stored. Only `id` is known in an
    /// imported state until Read fills in the rest, so every attribute that is not defaulted
    /// may be null.
    pub(crate) struct MigrationModel {
        dir: Option<String> = Attribute::required("dir", Type::String)
            .description("Directory of the migration files, `NNNN_name.sql`, applied in file-name order. Leading `--` comment lines may hold `-- artifortress:class A|B|C` (default A) and `-- artifortress:no-transaction` (the file then runs outside a transaction, statement by statement, with a dirty marker set before and cleared after).")
            .validate(Validator::NotEmpty),
        database_url: Option<String> = Attribute::optional("database_url", Type::String)
            .sensitive()
            .write_only()
            .description("PostgreSQL URL of the database to migrate. Default: the provider's `database_url`. Write-only (Terraform >= 1.11): never stored; state keeps `connection_url`, the URL without its password. Refresh connects with the provider's `database_url` when it names the same database, else with `connection_url` and the password from `PGPASSWORD` or `~/.pgpass`; when the server refuses that, refresh keeps the state with a warning and the plan (which gets this value) reads the database instead, so drift is still planned."),
        target_version: Option<String> = Attribute::optional("target_version", Type::String)
            .description("Apply up to and including this version (a file name with `.sql`). Default: the newest file."),
        baseline_version: Option<String> = Attribute::optional("baseline_version", Type::String)
            .description("Adopt a database that already holds the schema but has no ledger rows: the files up to and including this version are recorded as applied (source `baseline`) without running, the later ones run. Ignored on an empty database and once the ledger has rows."),
        backup_id: Option<String> = Attribute::optional("backup_id", Type::String)
            .description("The backup taken before this change (e.g. `artifortress_backup.pre_release.id`). With the provider's `environment = \"production\"`, pending migrations are refused at plan time without it."),
        /// Elements as they are: a plan must tell an unknown class from a known one.
        classes: Option<BTreeMap<String, Maybe<String>>> = classes_attribute(),
        allow_contract: bool = Attribute::optional_computed("allow_contract", Type::Bool)
            .description("Allow class C (contract) migrations to run (class C by a file's `-- artifortress:class C` or by `classes`). They are refused at plan time otherwise, and again by the apply under the lock.")
            .default_value(false),
        /// Elements as they are: a plan must tell an unknown checksum from a null one.
        accept_checksums: Option<BTreeMap<String, Maybe<String>>> = Attribute::optional("accept_checksums", Type::map(Type::String))
            .description("Version → sha256: accepts the new checksum of an applied file that was edited on purpose (comments, formatting). Recorded in the sidecar table with source `accepted`; any other edit of an applied file is a plan-time error."),
        /// The text: validated as a duration by the attribute, parsed where it is used (so an
        /// invalid value is reported once, by the validator).
        lock_timeout: String = Attribute::optional_computed("lock_timeout", Type::String)
            .description("How long to wait for the migration lock (a session advisory lock, polled, never blocking) held by another deployer.")
            .default_value("5m")
            .validate(Validator::Duration { min_millis: 1 }),
        timeouts: Value = framework::timeouts_attribute(&["create", "update"]),
        id: Option<String> = view_attribute("id"),
        applied_versions: Option<Vec<String>> = view_attribute("applied_versions"),
        pending: Option<Vec<PendingModel>> = view_attribute("pending"),
        head: Option<String> = view_attribute("head"),
        checksums: Option<BTreeMap<String, String>> = view_attribute("checksums"),
        applied_classes: Option<BTreeMap<String, String>> = view_attribute("applied_classes"),
        last_applied_at: Option<String> = view_attribute("last_applied_at"),
        connection_url: Option<String> = Attribute::computed("connection_url", Type::String)
            .description("The database URL without its password (what refresh connects with when the provider's `database_url` names another database)."),
    }
}

crate::model! {
    /// One element of `pending`.
    pub(crate) struct PendingModel {
        version: Option<String> = Attribute::computed("version", Type::String),
        class: Option<String> = Attribute::computed("class", Type::String),
        checksum: Option<String> = Attribute::computed("checksum", Type::String),
        transactional: Option<bool> = Attribute::computed("transactional", Type::Bool),
    }
}

pub struct Migration;

#[async_trait]
impl Resource<Settings> for Migration {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Applies the service's SQL migrations exactly once, in file-name order, using the \
             service's own ledger `schema_migrations` untouched (checksums, who applied, timings \
             and a dirty marker live in the sidecar table `artifortress_migrations_log`). The \
             plan shows which files will run; a database migrated by the service's own script is \
             up to date, its versions adopted rather than re-run. Apply takes a polled advisory \
             lock and re-reads the ledger under it, so concurrent deployers apply each file once. \
             Destroy never drops anything: it only removes the resource from state.",
            MigrationModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let config_value = config;
        let config = match MigrationModel::planned(config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid migration configuration").into(),
        };
        let mut diags = validate_classes(config_value);
        if let Maybe::Known(Some(map)) = &config.accept_checksums {
            for (version, sum) in map {
                if let Maybe::Known(s) = sum
                    && !is_sha256(s)
                {
                    diags.push(
                        Diagnostic::error(
                            "Invalid checksum",
                            format!(
                                "accept_checksums[{version:?}] must be a lowercase hex sha256 \
                                 (64 characters), as the plan error reports it; got {s:?}."
                            ),
                        )
                        .at(AttributePath::attr("accept_checksums").child_key(version)),
                    );
                }
            }
        }
        diags
    }

    async fn modify_plan(
        &self,
        req: ModifyPlanRequest<'_, Settings>,
        resp: &mut ModifyPlanResponse,
    ) {
        let (config, settings) = (req.config, req.provider);
        let models = (|| {
            Ok::<_, ModelError>((
                MigrationModel::planned(config)?,
                MigrationModel::planned(&resp.planned_state)?,
                match req.prior_state {
                    Value::Null => None,
                    prior => Some(MigrationModel::from_config(prior)?),
                },
            ))
        })();
        let (cfg, before, prior) = match models {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid migration plan"));
            }
        };
        let mut planned = before.clone();
        let inputs = resource_inputs(config, &cfg, settings);
        let changed = match &prior {
            None => true,
            Some(prior) => {
                !(unchanged(&cfg.dir, &prior.dir)
                    && unchanged(&cfg.target_version, &prior.target_version)
                    && unchanged(&cfg.baseline_version, &prior.baseline_version)
                    && unchanged(&cfg.accept_checksums, &prior.accept_checksums)
                    && unchanged(&cfg.classes, &prior.classes))
                    || url_changed(&cfg, prior, settings)
            }
        };
        let private = Private::decode(&resp.planned_private);
        match (private, &prior) {
            (Some(private), Some(prior)) if !changed => {
                plan::from_refresh(prior, &inputs, &private, &mut planned, resp)
            }
            _ => {
                let classes = config_classes(config);
                plan::by_reading(
                    &cfg,
                    prior.as_ref(),
                    settings,
                    &inputs,
                    &classes,
                    &mut planned,
                    resp,
                )
                .await
            }
        }
        write_changes(
            &mut resp.planned_state,
            &MigrationModel::object_type(),
            &before,
            &planned,
        );
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        apply::apply(req, resp, "create").await;
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        apply::apply(req, resp, "update").await;
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        let stored = match MigrationModel::from_config(&resp.new_state) {
            Ok(s) => s,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid migration state"));
            }
        };
        let url = match refresh_url(&stored, req.provider) {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        // A fresh import holds only the id: it must name the database the URL points at.
        if let Some(id) = &stored.id
            && stored.applied_versions.is_none()
        {
            match pg::database_identity(&url).map_err(MigrationError::from) {
                Ok(actual) if actual == *id => {}
                Ok(actual) => {
                    return resp.diagnostics.push(
                        Diagnostic::error(
                            "Import ID does not match the database URL",
                            format!(
                                "The import ID {id:?} names a database, but the provider's \
                                 database_url points at {actual:?}. Import with that ID, or \
                                 point the provider at the database to import."
                            ),
                        )
                        .at_attr("id"),
                    );
                }
                Err(e) => {
                    return resp
                        .diagnostics
                        .extend(error_diagnostic("Invalid database URL", &e));
                }
            }
        }
        // An unreadable directory (moved, renamed) must not fail the refresh: the database is
        // still read, and the plan reports the directory unless the configuration changed it.
        let (files, dir_problem) =
            match load_files(stored.dir.as_deref(), &config_classes(&resp.new_state)) {
                Ok(files) => (files, None),
                Err(f) => (None, Some(f.diagnostics)),
            };
        let inputs = plan_inputs(&resp.new_state);
        let observed = Observation::take(&url, files, &inputs, req.provider.request_timeout).await;
        match observed {
            Ok(obs) => {
                obs.write_now(&mut resp.new_state);
                // A fresh import has no arguments yet: the defaulted ones get their default
                // (from_config), and the URL it was read with is recorded.
                let mut state = match MigrationModel::from_config(&resp.new_state) {
                    Ok(s) => s,
                    Err(e) => {
                        return resp
                            .diagnostics
                            .push(e.diagnostic("Invalid migration state"));
                    }
                };
                if state.connection_url.is_none()
                    && let Ok(u) = pg::without_password(&url)
                {
                    state.connection_url = Some(u);
                }
                write_differences(&mut resp.new_state, &MigrationModel::object_type(), &state);
                let mut private = obs.private();
                if let Some(diags) = dir_problem {
                    private.after = None;
                    private
                        .problems
                        .extend(diags.0.into_iter().map(StoredProblem::about_the_files));
                }
                resp.private = private.encode();
            }
            Err(f) if f.refused_credentials && stored.connection_url.as_deref() == Some(&url) => {
                // No private: the plan reads the database with the configuration's URL.
                resp.private = Vec::new();
                resp.diagnostics.push(unchecked_refresh_warning(&url, &f));
            }
            Err(mut f) => {
                if stored.connection_url.as_deref() == Some(&url) {
                    for d in &mut f.diagnostics.0 {
                        d.detail.push_str(REFRESH_HINT);
                    }
                }
                resp.diagnostics.extend(f.diagnostics)
            }
        }
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        let prior = match MigrationModel::from_config(req.prior_state) {
            Ok(p) => p,
            Err(e) => return e.diagnostic("Invalid migration state").into(),
        };
        let id = prior.id.as_deref().unwrap_or("the database");
        Diagnostic::warning(
            "Migrations are not rolled back",
            format!(
                "artifortress_migration was removed from the Terraform state only. Nothing in \
                 {id} was dropped or reverted: the schema, the ledger schema_migrations and the \
                 sidecar artifortress_migrations_log are as they were. Artifortress has no down \
                 migrations; restore a backup to go back."
            ),
        )
        .into()
    }

    fn import(&self) -> Import {
        Import::Passthrough("id")
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(identity::database_identity_schema())
    }

    /// The database `id` names: it changes only when `database_url` names another database,
    /// which is another ledger.
    fn identity(&self, req: IdentityRequest<'_, Settings>) -> Option<Value> {
        identity::database_identity(req.state.attr("id").as_str())
    }

    fn import_id(&self, identity: &Value, _provider: &Settings) -> Result<String, Diagnostic> {
        identity::database_import_id(identity)
    }
}

impl PendingModel {
    /// The pending migration back from state (only what the policy needs is essential).
    fn migration(&self) -> PendingMigration {
        PendingMigration {
            version: self.version.clone().unwrap_or_default(),
            class: match self.class.as_deref() {
                Some("B") => MigrationClass::B,
                Some("C") => MigrationClass::C,
                _ => MigrationClass::A,
            },
            checksum: self.checksum.clone().unwrap_or_default(),
            transactional: self.transactional.unwrap_or(true),
        }
    }
}

/// A value for a plan: known, or null.
fn known<T>(v: Option<T>) -> Maybe<Option<T>> {
    match v {
        Some(t) => Maybe::Known(Some(t)),
        None => Maybe::Null,
    }
}

/// Whether a planned value is the one in state (an unknown one is a change).
fn unchanged<T: PartialEq>(planned: &Maybe<Option<T>>, prior: &Option<T>) -> bool {
    match planned {
        Maybe::Unknown => false,
        Maybe::Null => prior.is_none(),
        Maybe::Known(v) => v == prior,
    }
}

/// Whether the database the configuration points at (its URL without password) differs from
/// the one in state. A password rotation is not a change.
fn url_changed(
    config: &MigrationModel<Planned>,
    prior: &MigrationModel,
    settings: &Settings,
) -> bool {
    match settings.database_url_for(&config.database_url.to_value(&Type::String)) {
        Ok(Some(url)) => match pg::without_password(&url) {
            Ok(u) => prior.connection_url.as_deref() != Some(u.as_str()),
            Err(_) => true,
        },
        _ => true,
    }
}

const REFRESH_HINT: &str = "\n\nRefresh has no configuration, and database_url is write-only: it \
     connects with the provider's database_url when that names the same database, otherwise \
     with connection_url (no password) and the password from PGPASSWORD or ~/.pgpass.";

/// A refresh that has only `connection_url` (no password) and is refused by the server keeps
/// the prior state: the plan, which has the write-only `database_url`, reads the database.
fn unchecked_refresh_warning(url: &str, failure: &LookFailure) -> Diagnostic {
    let why = failure
        .diagnostics
        .0
        .iter()
        .map(|d| d.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Diagnostic::warning(
        "Migrations not refreshed: no credentials for this database",
        format!(
            "Refresh connected to {url} (connection_url, without password) and the server \
             refused it: {why}. The state was kept as it is, so `terraform refresh` and \
             `plan -refresh-only` did not check drift. A plan or apply checks it anyway: it \
             reads the database with the configuration's write-only database_url. To let \
             refresh check it too, point the provider's database_url at this database, or \
             give its password in PGPASSWORD or ~/.pgpass."
        ),
    )
    .at_attr("database_url")
}

/// The URL refresh uses: the provider's `database_url` when it points at the database in state
/// (it carries the password), else the stored URL without password (`PGPASSWORD`/`~/.pgpass`).
fn refresh_url(state: &MigrationModel, settings: &Settings) -> Result<String, Diagnostic> {
    let provider_url = settings.database_url_for(&Value::Null).ok().flatten();
    let stored = state.connection_url.as_deref();
    let id = state.id.as_deref();
    if let Some(p) = &provider_url
        && (stored.is_none() || pg::database_identity(p).ok().as_deref() == id)
    {
        return Ok(p.clone());
    }
    match stored {
        Some(u) => Ok(u.to_string()),
        None => settings.need_database_url(&Value::Null, "database_url"),
    }
}

/// The resource's planning inputs plus its policy: class C only with `allow_contract`, and
/// in production nothing without `backup_id`. An unknown value counts as allowed / present
/// (the final plan and the apply check again once it is known).
fn resource_inputs(
    config: &Value,
    model: &MigrationModel<Planned>,
    settings: &Settings,
) -> PlanInputs {
    let production = matches!(&settings.environment, Setting::Known(e) if e == "production");
    let allow_contract = match &model.allow_contract {
        Maybe::Unknown => true,
        v => v.known() == Some(&true),
    };
    PlanInputs {
        allow_contract,
        require_backup: production && model.backup_id.is_null(),
        ..plan_inputs(config)
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::model::FromValue;
    use crate::shared::migrations::pending_value;

    fn pending_from_value(value: &Value) -> Vec<PendingMigration> {
        Vec::<PendingModel>::from_value(value)
            .unwrap()
            .iter()
            .map(PendingModel::migration)
            .collect()
    }

    #[test]
    fn the_schema_is_valid() {
        assert!(Migration.schema().check().is_empty());
    }

    #[test]
    fn pending_survives_the_trip_through_state() {
        let pending = vec![
            PendingMigration {
                version: "0001_a.sql".into(),
                class: MigrationClass::C,
                checksum: "ab".into(),
                transactional: false,
            },
            PendingMigration {
                version: "0002_b.sql".into(),
                class: MigrationClass::B,
                checksum: "cd".into(),
                transactional: true,
            },
        ];
        assert_eq!(pending_from_value(&pending_value(&pending)), pending);
    }

    #[test]
    fn checksums_must_be_lowercase_sha256() {
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&"A".repeat(64)));
        assert!(!is_sha256(&"a".repeat(63)));
    }
}
