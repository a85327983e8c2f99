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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::migrations::{
    self, MigrationClass, MigrationError, MigrationPlan, Migrator, PendingMigration, PlanInputs,
};
use crate::clients::pg;
use crate::duration;
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, Import, ModifyPlanRequest,
    ModifyPlanResponse, ReadRequest, ReadResponse, Resource,
};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Setting, Settings};
use crate::shared::migrations::{
    LookFailure, Observation, error_diagnostic, load_files, plan_inputs, problem_attribute,
    problem_diagnostic, view_attributes,
};

pub const TYPE_NAME: &str = "artifortress_migration";
const DEFAULT_LOCK_TIMEOUT: &str = "5m";
const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Inputs that decide what the database should hold; a change makes the plan read it.
/// `database_url` is write-only: it is compared through `connection_url` (see [`url_changed`]).
const DATABASE_INPUTS: [&str; 5] = [
    "dir",
    "database_url",
    "target_version",
    "baseline_version",
    "accept_checksums",
];
const STORED_INPUTS: [&str; 4] = [
    "dir",
    "target_version",
    "baseline_version",
    "accept_checksums",
];

/// Whether the database the configuration points at (its URL without password) differs from
/// the one in state. A password rotation is not a change.
fn url_changed(config: &Value, prior: &Value, settings: &Settings) -> bool {
    match settings.database_url_for(config.attr("database_url")) {
        Ok(Some(url)) => match pg::without_password(&url) {
            Ok(u) => prior.attr("connection_url").as_str() != Some(u.as_str()),
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

fn is_stored_url(state: &Value, url: &str) -> bool {
    state.attr("connection_url").as_str() == Some(url)
}

/// The URL refresh uses: the provider's `database_url` when it points at the database in state
/// (it carries the password), else the stored URL without password (`PGPASSWORD`/`~/.pgpass`).
fn refresh_url(state: &Value, settings: &Settings) -> Result<String, Diagnostic> {
    let provider_url = settings.database_url_for(&Value::Null).ok().flatten();
    let stored = state.attr("connection_url").as_str();
    let id = state.attr("id").as_str();
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

pub struct Migration;

/// What only this resource derives from an observation: what an apply leaves, its private state.
impl Observation {
    /// What the database will look like once the plan is applied.
    fn after(&self) -> Option<After> {
        let plan = self.plan.as_ref().ok()?;
        let mut applied: BTreeSet<String> = self.applied_versions().into_iter().collect();
        let mut checksums = self.checksums();
        for (version, sum) in plan.adopt.iter().chain(&plan.accept).chain(&plan.baselined) {
            applied.insert(version.clone());
            checksums.insert(version.clone(), sum.clone());
        }
        for p in &plan.pending {
            applied.insert(p.version.clone());
            checksums.insert(p.version.clone(), p.checksum.clone());
        }
        Some(After {
            head: applied.iter().next_back().cloned(),
            applied_versions: applied.into_iter().collect(),
            checksums,
            writes_ledger: !plan.pending.is_empty() || !plan.baselined.is_empty(),
        })
    }

    fn private(&self) -> Private {
        Private {
            v: PRIVATE_VERSION,
            problems: match &self.plan {
                Ok(_) => Vec::new(),
                Err(problems) => problems
                    .iter()
                    .map(|p| {
                        let d = problem_diagnostic(p, Some(&self.url));
                        StoredProblem {
                            summary: d.summary,
                            detail: d.detail,
                            attribute: problem_attribute(p).to_string(),
                        }
                    })
                    .collect(),
            },
            after: self.after(),
        }
    }
}

/// `pending` back from state (only what the policy needs is essential).
fn pending_from_value(value: &Value) -> Vec<PendingMigration> {
    value
        .as_elements()
        .unwrap_or_default()
        .iter()
        .map(|p| PendingMigration {
            version: p.attr("version").as_str().unwrap_or_default().to_string(),
            class: match p.attr("class").as_str() {
                Some("B") => MigrationClass::B,
                Some("C") => MigrationClass::C,
                _ => MigrationClass::A,
            },
            checksum: p.attr("checksum").as_str().unwrap_or_default().to_string(),
            transactional: p.attr("transactional").as_bool().unwrap_or(true),
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Private state: what Read found, for the plan that follows
// ------------------------------------------------------------------------------------------

const PRIVATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct After {
    applied_versions: Vec<String>,
    head: Option<String>,
    checksums: BTreeMap<String, String>,
    /// The apply writes ledger rows (so `last_applied_at` changes).
    writes_ledger: bool,
}

impl After {
    fn write(&self, planned: &mut Value, prior: &Value) {
        planned.set_attr(
            "applied_versions",
            Value::string_list(self.applied_versions.clone()),
        );
        planned.set_attr("pending", Value::List(Vec::new()));
        planned.set_attr("head", Value::opt_string(self.head.clone()));
        planned.set_attr("checksums", Value::string_map(&self.checksums));
        planned.set_attr(
            "last_applied_at",
            if self.writes_ledger {
                Value::unknown()
            } else {
                prior.attr("last_applied_at").clone()
            },
        );
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredProblem {
    summary: String,
    detail: String,
    attribute: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Private {
    v: u32,
    problems: Vec<StoredProblem>,
    after: Option<After>,
}

impl Private {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` when absent or from another provider version.
    fn decode(bytes: &[u8]) -> Option<Private> {
        serde_json::from_slice::<Private>(bytes)
            .ok()
            .filter(|p| p.v == PRIVATE_VERSION)
    }
}

// ------------------------------------------------------------------------------------------
// Configuration
// ------------------------------------------------------------------------------------------

/// The resource's planning inputs plus its policy: class C only with `allow_contract`, and
/// in production nothing without `backup_id`. An unknown value counts as allowed / present
/// (the final plan and the apply check again once it is known).
fn resource_inputs(config: &Value, settings: &Settings) -> PlanInputs {
    let production = matches!(&settings.environment, Setting::Known(e) if e == "production");
    let allow_contract = match config.attr("allow_contract") {
        Value::Unknown(_) => true,
        v => v.as_bool() == Some(true),
    };
    PlanInputs {
        allow_contract,
        require_backup: production && config.attr("backup_id").is_null(),
        ..plan_inputs(config)
    }
}

fn lock_timeout(config: &Value) -> Duration {
    config
        .attr("lock_timeout")
        .as_str()
        .and_then(|s| duration::parse(s).ok())
        .unwrap_or(Duration::from_secs(300))
}

fn applied_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{user}@{host} (terraform-provider-artifortress {})",
        env!("CARGO_PKG_VERSION")
    )
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ------------------------------------------------------------------------------------------
// The resource
// ------------------------------------------------------------------------------------------

#[async_trait]
impl Resource<Settings> for Migration {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        let mut attributes = vec![
            Attribute::required("dir", Type::String)
                .description("Directory of the migration files, `NNNN_name.sql`, applied in file-name order. Leading `--` comment lines may hold `-- artifortress:class A|B|C` (default A) and `-- artifortress:no-transaction` (the file then runs outside a transaction, statement by statement, with a dirty marker set before and cleared after).")
                .validate(Validator::NotEmpty),
            Attribute::optional("database_url", Type::String)
                .sensitive()
                .write_only()
                .description("PostgreSQL URL of the database to migrate. Default: the provider's `database_url`. Write-only (Terraform >= 1.11): never stored; state keeps `connection_url`, the URL without its password. Refresh connects with the provider's `database_url` when it names the same database, else with `connection_url` and the password from `PGPASSWORD` or `~/.pgpass`; when the server refuses that, refresh keeps the state with a warning and the plan (which gets this value) reads the database instead, so drift is still planned."),
            Attribute::optional("target_version", Type::String)
                .description("Apply up to and including this version (a file name with `.sql`). Default: the newest file."),
            Attribute::optional("baseline_version", Type::String)
                .description("Adopt a database that already holds the schema but has no ledger rows: the files up to and including this version are recorded as applied (source `baseline`) without running, the later ones run. Ignored on an empty database and once the ledger has rows."),
            Attribute::optional("backup_id", Type::String)
                .description("The backup taken before this change (e.g. `artifortress_backup.pre_release.id`). With the provider's `environment = \"production\"`, pending migrations are refused at plan time without it."),
            Attribute::optional_computed("allow_contract", Type::Bool)
                .description("Allow class C (contract) migrations to run. They are refused at plan time otherwise.")
                .default_value(false),
            Attribute::optional("accept_checksums", Type::map(Type::String))
                .description("Version → sha256: accepts the new checksum of an applied file that was edited on purpose (comments, formatting). Recorded in the sidecar table with source `accepted`; any other edit of an applied file is a plan-time error."),
            Attribute::optional_computed("lock_timeout", Type::String)
                .description("How long to wait for the migration lock (a session advisory lock, polled, never blocking) held by another deployer.")
                .default_value(DEFAULT_LOCK_TIMEOUT)
                .validate(Validator::Duration { min_millis: 1 }),
            framework::timeouts_attribute(&["create", "update"]),
        ];
        attributes.extend(view_attributes());
        attributes.push(
            Attribute::computed("connection_url", Type::String)
                .description("The database URL without its password (what refresh connects with when the provider's `database_url` names another database)."),
        );
        Schema::new(
            0,
            "Applies the service's SQL migrations exactly once, in file-name order, using the \
             service's own ledger `schema_migrations` untouched (checksums, who applied, timings \
             and a dirty marker live in the sidecar table `artifortress_migrations_log`). The \
             plan shows which files will run; a database migrated by the service's own script is \
             up to date, its versions adopted rather than re-run. Apply takes a polled advisory \
             lock and re-reads the ledger under it, so concurrent deployers apply each file once. \
             Destroy never drops anything: it only removes the resource from state.",
            attributes,
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(map) = config.attr("accept_checksums").as_map() {
            for (version, sum) in map {
                if let Some(s) = sum.as_str()
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
                        .at(
                            crate::protocol::diagnostics::AttributePath::attr("accept_checksums")
                                .child_key(version),
                        ),
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
        let (config, prior, settings) = (req.config, req.prior_state, req.provider);
        let changed = prior.is_null()
            || STORED_INPUTS
                .iter()
                .any(|a| !config.attr(a).same(prior.attr(a)))
            || url_changed(config, prior, settings);
        let private = Private::decode(&resp.planned_private);
        match private {
            Some(private) if !changed => plan_from_refresh(config, prior, settings, &private, resp),
            _ => plan_by_reading(config, prior, settings, resp).await,
        }
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        apply(req, resp, "create").await;
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        apply(req, resp, "update").await;
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        let state = &mut resp.new_state;
        let url = match refresh_url(state, req.provider) {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        // A fresh import holds only the id: it must name the database the URL points at.
        if let Some(id) = state.attr("id").as_str()
            && state.attr("applied_versions").is_null()
        {
            match pg::database_identity(&url).map_err(MigrationError::from) {
                Ok(actual) if actual == id => {}
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
        let (files, dir_problem) = match load_files(state.attr("dir").as_str()) {
            Ok(files) => (files, None),
            Err(f) => (None, Some(f.diagnostics)),
        };
        let inputs = plan_inputs(state);
        let observed = Observation::take(&url, files, &inputs, req.provider.request_timeout).await;
        match observed {
            Ok(obs) => {
                obs.write_now(state);
                if state.attr("connection_url").is_null()
                    && let Ok(u) = pg::without_password(&url)
                {
                    state.set_attr("connection_url", u.into());
                }
                // A fresh import has no arguments yet: give the defaulted ones their default.
                if state.attr("lock_timeout").is_null() {
                    state.set_attr("lock_timeout", DEFAULT_LOCK_TIMEOUT.into());
                }
                if state.attr("allow_contract").is_null() {
                    state.set_attr("allow_contract", false.into());
                }
                let mut private = obs.private();
                if let Some(diags) = dir_problem {
                    private.after = None;
                    private
                        .problems
                        .extend(diags.0.into_iter().map(|d| StoredProblem {
                            summary: d.summary,
                            detail: d.detail,
                            attribute: "dir".into(),
                        }));
                }
                resp.private = private.encode();
            }
            Err(f) if f.refused_credentials && is_stored_url(state, &url) => {
                // No private: the plan reads the database with the configuration's URL.
                resp.private = Vec::new();
                resp.diagnostics.push(unchecked_refresh_warning(&url, &f));
            }
            Err(mut f) => {
                if is_stored_url(state, &url) {
                    for d in &mut f.diagnostics.0 {
                        d.detail.push_str(REFRESH_HINT);
                    }
                }
                resp.diagnostics.extend(f.diagnostics)
            }
        }
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        let id = req
            .prior_state
            .attr("id")
            .as_str()
            .unwrap_or("the database");
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
}

/// Plan from the refreshed prior state and what Read found (database inputs unchanged).
fn plan_from_refresh(
    config: &Value,
    prior: &Value,
    settings: &Settings,
    private: &Private,
    resp: &mut ModifyPlanResponse,
) {
    for p in &private.problems {
        resp.diagnostics
            .push(Diagnostic::error(p.summary.clone(), p.detail.clone()).at_attr(&p.attribute));
    }
    if !private.problems.is_empty() {
        return;
    }
    let pending = pending_from_value(prior.attr("pending"));
    check_policy(config, settings, &pending, resp);
    let planned = &mut resp.planned_state;
    for name in [
        "id",
        "connection_url",
        "applied_versions",
        "pending",
        "head",
        "checksums",
        "last_applied_at",
    ] {
        planned.set_attr(name, prior.attr(name).clone());
    }
    if let Some(after) = &private.after {
        let unchanged = pending.is_empty()
            && prior.attr("head").as_str() == after.head.as_deref()
            && prior
                .attr("applied_versions")
                .same(&Value::string_list(after.applied_versions.clone()))
            && prior
                .attr("checksums")
                .same(&Value::string_map(&after.checksums));
        if !unchanged {
            after.write(planned, prior);
        }
    }
}

/// Plan by reading the database and the directory (create, or changed database inputs).
async fn plan_by_reading(
    config: &Value,
    prior: &Value,
    settings: &Settings,
    resp: &mut ModifyPlanResponse,
) {
    let url = match settings.database_url_for(config.attr("database_url")) {
        Ok(u) => u,
        Err(d) => return resp.diagnostics.push(d.at_attr("database_url")),
    };
    if let Some(u) = &url
        && let Ok(id) = pg::database_identity(u)
    {
        resp.planned_state.set_attr("id", id.into());
    }
    resp.planned_state.set_attr(
        "connection_url",
        match url.as_deref().map(pg::without_password) {
            Some(Ok(u)) => u.into(),
            _ => Value::unknown(),
        },
    );
    let known = DATABASE_INPUTS
        .iter()
        .all(|a| config.attr(a).is_wholly_known());
    let Some(url) = url.filter(|_| known) else {
        tracing::debug!("migration inputs not known yet; results known after apply");
        return;
    };
    let inputs = resource_inputs(config, settings);
    let files = match load_files(config.attr("dir").as_str()) {
        Ok(files) => files,
        Err(f) => return resp.diagnostics.extend(f.diagnostics),
    };
    let obs = match Observation::take(&url, files, &inputs, settings.request_timeout).await {
        Ok(obs) => obs,
        Err(f) if f.unreachable && prior.is_null() => {
            // Typical for a database created in the same apply under a known URL.
            let detail = f
                .diagnostics
                .0
                .iter()
                .map(|d| d.detail.clone())
                .collect::<Vec<_>>()
                .join("; ");
            resp.diagnostics.push(
                Diagnostic::warning(
                    "Database not reachable at plan time",
                    format!(
                        "{detail}. Which migrations will run is known after apply; the apply \
                     connects again and fails if the database is still unreachable."
                    ),
                )
                .at_attr("database_url"),
            );
            return;
        }
        Err(f) => return resp.diagnostics.extend(f.diagnostics),
    };
    let after = match &obs.plan {
        Ok(_) => obs.after(),
        Err(problems) => {
            for p in problems {
                resp.diagnostics.push(problem_diagnostic(p, Some(&obs.url)));
            }
            return;
        }
    };
    if let Some(d) = drift_since_state(prior, &obs) {
        resp.diagnostics.push(d);
    }
    check_policy(config, settings, obs.pending(), resp);
    let planned = &mut resp.planned_state;
    planned.set_attr("id", obs.id.clone().into());
    if let Some(after) = after {
        let mut now = Value::null_object(&Type::object([("last_applied_at", Type::String)]));
        now.set_attr("last_applied_at", Value::opt_string(obs.last_applied_at()));
        after.write(planned, &now);
    }
}

/// The ledger no longer holds what the state records (a row deleted or added out of band):
/// said at plan time, for a plan that read the database because refresh could not.
fn drift_since_state(prior: &Value, obs: &Observation) -> Option<Diagnostic> {
    let recorded: BTreeSet<String> = prior
        .attr("applied_versions")
        .as_elements()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if prior.attr("id").as_str() != Some(obs.id.as_str()) {
        return None;
    }
    let now: BTreeSet<String> = obs.applied_versions().into_iter().collect();
    let gone: Vec<&String> = recorded.difference(&now).collect();
    let added: Vec<&String> = now.difference(&recorded).collect();
    if gone.is_empty() && added.is_empty() {
        return None;
    }
    let list = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut what = Vec::new();
    if !gone.is_empty() {
        what.push(format!(
            "recorded as applied but no longer in the ledger: {}",
            list(&gone)
        ));
    }
    if !added.is_empty() {
        what.push(format!("applied outside Terraform: {}", list(&added)));
    }
    Some(Diagnostic::warning(
        "Migrations changed outside Terraform",
        format!(
            "The ledger of {} differs from the state: {}. The plan is made from what the \
             database holds now.",
            obs.id,
            what.join("; ")
        ),
    ))
}

/// Plan-time refusals: class C without `allow_contract`, production without `backup_id`.
fn check_policy(
    config: &Value,
    settings: &Settings,
    pending: &[PendingMigration],
    resp: &mut ModifyPlanResponse,
) {
    let plan = MigrationPlan {
        pending: pending.to_vec(),
        ..MigrationPlan::default()
    };
    for p in migrations::policy_problems(&plan, &resource_inputs(config, settings)) {
        resp.diagnostics.push(problem_diagnostic(&p, None));
    }
}

/// Create and update: lock, re-plan under the lock, run what is pending, record the truth.
async fn apply(req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse, operation: &str) {
    let (config, settings) = (req.config, req.provider);
    let url = match settings.need_database_url(config.attr("database_url"), "database_url") {
        Ok(u) => u,
        Err(d) => return resp.diagnostics.push(d),
    };
    let files = match load_files(config.attr("dir").as_str()) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return resp.diagnostics.push(Diagnostic::provider_bug(
                "No migration directory",
                "dir is null",
            ));
        }
        Err(f) => return resp.diagnostics.extend(f.diagnostics),
    };
    let id = match pg::database_identity(&url).map_err(MigrationError::from) {
        Ok(id) => id,
        Err(e) => {
            return resp
                .diagnostics
                .extend(error_diagnostic("Invalid database URL", &e));
        }
    };
    let inputs = resource_inputs(config, settings);
    let mut migrator = match Migrator::connect(&url, settings.request_timeout).await {
        Ok(m) => m,
        Err(e) => {
            return resp
                .diagnostics
                .extend(error_diagnostic("Cannot connect to the database", &e));
        }
    };
    let limit = framework::timeout(config, operation, DEFAULT_APPLY_TIMEOUT);
    let stop = req.ctx.cancel.child_token();
    let pid = migrator.backend_pid();
    let by = applied_by();
    let (result, stopped) = {
        let work = migrator.apply(&files, &inputs, lock_timeout(config), &by, &stop);
        tokio::pin!(work);
        let why = tokio::select! {
            r = &mut work => (Some(r), None),
            _ = tokio::time::sleep(limit) => (None, Some(format!("the {operation} timeout ({})", duration::format(limit)))),
            _ = req.ctx.cancel.cancelled() => (None, Some("an interrupt (Terraform was cancelled)".to_string())),
        };
        match why {
            (Some(r), _) => (r, None),
            (None, reason) => {
                // Stop between files, and cancel the statement running now: its transaction
                // rolls back (a no-transaction file keeps its dirty marker).
                stop.cancel();
                tracing::warn!(
                    reason = reason.as_deref().unwrap_or(""),
                    pid,
                    "stopping the migration"
                );
                if let Err(e) =
                    migrations::cancel_backend(&url, pid, settings.request_timeout).await
                {
                    tracing::warn!(error = %e, "could not cancel the running statement");
                }
                (work.await, reason)
            }
        }
    };
    let observed = Observation::with(&mut migrator, id, Some(files), &inputs).await;
    migrator.close().await;
    match result {
        Ok(report) => {
            tracing::info!(
                applied = report.applied.len(),
                adopted = report.adopted.len(),
                accepted = report.accepted.len(),
                baselined = report.baselined.len(),
                head = report.head.as_deref().unwrap_or(""),
                "migrations applied"
            );
        }
        Err(e) => {
            let summary = match (&e, &stopped) {
                (_, Some(_)) => "Migration stopped",
                (MigrationError::MigrationFailed(_), _) => "Migration failed",
                (MigrationError::LockTimeout { .. }, _) => "Migration lock not acquired",
                (MigrationError::Plan { .. }, _) => "Migrations cannot be applied",
                _ => "Applying migrations failed",
            };
            let mut diags = error_diagnostic(summary, &e);
            if let Some(reason) = &stopped {
                for d in &mut diags.0 {
                    d.detail = format!("Stopped by {reason}. {}", d.detail);
                }
            }
            resp.diagnostics.extend(diags);
        }
    }
    match observed {
        Ok(obs) => {
            // On a failed create nothing is kept in state: the next plan reads the database
            // again. A failed update records what the database now holds.
            if !(resp.diagnostics.has_errors() && req.prior_state.is_null()) {
                let mut state = req.planned_state.clone();
                obs.write_now(&mut state);
                if let Ok(u) = pg::without_password(&url) {
                    state.set_attr("connection_url", u.into());
                }
                resp.new_state = state;
                resp.private = obs.private().encode();
            }
        }
        Err(e) => resp.diagnostics.extend(error_diagnostic(
            "Cannot read the migration ledger after apply",
            &e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::migrations::pending_value;

    #[test]
    fn the_schema_is_valid() {
        assert!(Migration.schema().check().is_empty());
    }

    #[test]
    fn private_state_round_trips_and_rejects_other_versions() {
        let p = Private {
            v: PRIVATE_VERSION,
            problems: vec![StoredProblem {
                summary: "s".into(),
                detail: "d".into(),
                attribute: "dir".into(),
            }],
            after: Some(After {
                applied_versions: vec!["0001_a.sql".into()],
                head: Some("0001_a.sql".into()),
                checksums: BTreeMap::from([("0001_a.sql".into(), "ab".into())]),
                writes_ledger: true,
            }),
        };
        assert_eq!(Private::decode(&p.encode()), Some(p.clone()));
        let mut other = p;
        other.v = 99;
        assert_eq!(Private::decode(&other.encode()), None);
        assert_eq!(Private::decode(b""), None);
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
