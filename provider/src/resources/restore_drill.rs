//! `resource "artifortress_restore_drill"`: the recurring backup/restore drill (D6), joining the
//! restore client to Terraform. A drill is an event: it runs on create, any input change
//! (`triggers`, typically a week number or a `time_rotating` id) runs it again, and Read keeps
//! the record as it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::clients::backup::PARITY_TABLES;
use crate::clients::object_store;
use crate::clients::pg::{database_identity, valid_identifier};
use crate::clients::restore::{self, DrillError, DrillReport, DrillSpec};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, ForImport, IdentityRequest, IdentitySchema,
    Import, ModifyPlanRequest, ModifyPlanResponse, ReadRequest, ReadResponse, Resource, Stopped,
};
use crate::protocol::model::{Maybe, ModelError, ToValue};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::edits::write_changes;
use crate::shared::identity;
use crate::shared::{DEFAULT_BACKUP_PREFIX, timestamp};

pub const TYPE_NAME: &str = "artifortress_restore_drill";
const DEFAULT_DRILL_DATABASE: &str = crate::shared::DEFAULT_DRILL_DATABASE;
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(3600);

crate::model! {
    /// `artifortress_restore_drill` as configured, planned and stored.
    pub(crate) struct RestoreDrillModel {
        backup_id: String = Attribute::required("backup_id", Type::String)
            .requires_replace()
            .description("The backup to restore: an `artifortress_backup`'s `id` (e.g. `artifortress_backup.x.id`), found under `prefix` or, when it is not there, under whichever prefix holds its manifest; or its `object_key`. An id whose manifest is under several prefixes is an error that names them."),
        bucket: Option<String> = Attribute::optional_computed("bucket", Type::String)
            .requires_replace()
            .use_state_for_unknown()
            .description("Bucket of the backup (and of the report). Default: the provider's `object_storage.bucket`."),
        prefix: String = Attribute::optional_computed("prefix", Type::String)
            .requires_replace()
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Where to look first for the backup when `backup_id` is an id; a backup under another prefix is still found (the bucket is listed)."),
        admin_database_url: Option<String> = Attribute::optional("admin_database_url", Type::String)
            .sensitive()
            .write_only()
            .description("PostgreSQL URL of a role that may create and drop databases, on the server to restore to. Default: the provider's `database_url`. Its own database is never the drill database. Write-only (Terraform >= 1.11): never stored; use `triggers` to run a new drill."),
        drill_database: String = Attribute::optional_computed("drill_database", Type::String)
            .requires_replace()
            .default_value(DEFAULT_DRILL_DATABASE)
            .description("The scratch database: its sessions are terminated, it is dropped and re-created, then restored into. Must match `^[A-Za-z_][A-Za-z0-9_]*$` and never be the backup's source database (both checked at plan time where known, and again before anything is dropped)."),
        /// An element that is not a string (unknown in a plan) is left out.
        parity_tables: Vec<Option<String>> = Attribute::optional_computed("parity_tables", Type::list(Type::String))
            .requires_replace()
            .default_value(default_tables())
            .description("Tables whose row counts must equal the backup's (read in its snapshot). Default: the service's ten."),
        rto_target_seconds: f64 = Attribute::optional_computed("rto_target_seconds", Type::Number)
            .requires_replace()
            .default_value(Value::int(900))
            .description("RTO target: drill start to a verified restore."),
        rpo_target_seconds: f64 = Attribute::optional_computed("rpo_target_seconds", Type::Number)
            .requires_replace()
            .default_value(Value::int(300))
            .description("RPO target: the age of the backup's recovery point at drill time."),
        keep_drill_database: bool = Attribute::optional_computed("keep_drill_database", Type::Bool)
            .requires_replace()
            .default_value(false)
            .description("Keep the restored database after the drill (default: drop it). Destroying this resource never drops it."),
        report_object_key: Option<String> = Attribute::optional("report_object_key", Type::String)
            .requires_replace()
            .description("Also write the Markdown report to this key in the bucket, and its JSON twin beside it (`.md` replaced by `.json`)."),
        report_file: Option<String> = Attribute::optional("report_file", Type::String)
            .validate(Validator::NotEmpty)
            .description("Also write the Markdown report (exactly `report_markdown`) to this local file, where the service's tooling looks for it: `docs/reports/phase6-rto-rpo-drill-latest.md` (its `scripts/phase6-drill.sh` writes it there and `scripts/production-preflight.sh` requires it). A relative path is relative to the directory Terraform runs in. Parent directories are created; the file is written atomically (a temporary file beside it, then renamed), also when the drill FAILs, as the script does. Refresh checks the file: when it is missing or no longer holds the recorded report, `report_file_sha256` changes and the plan shows an in-place update that writes the recorded report again, without running a new drill. Changing the path writes the report to the new path (the old file is left alone)."),
        fail_on_breach: bool = Attribute::optional_computed("fail_on_breach", Type::Bool)
            .requires_replace()
            .default_value(true)
            .description("A FAIL (RTO, RPO or data verification) fails the apply with the report in the error, and nothing is recorded, so the next apply runs the drill again. `false`: the result is recorded in `passed`."),
        triggers: Value = Attribute::optional("triggers", Type::map(Type::String))
            .requires_replace()
            .description("Any change runs the drill again (e.g. `{ week = time_rotating.weekly.id }`)."),
        postgres_bin_dir: Option<String> = Attribute::optional("postgres_bin_dir", Type::String)
            .description("Directory holding `pg_restore` and `psql`. Default: PATH."),
        timeouts: Value = framework::timeouts_attribute(&["create"]),
        id: Option<String> = recorded("id", Type::String, "`<backup id>@<time of the drill>`."),
        passed: Option<bool> = recorded("passed", Type::Bool, "RTO, RPO and data verification all PASS."),
        rto_seconds: Option<f64> = recorded("rto_seconds", Type::Number, "Drill start to a restored database that passed verification (download, re-create, restore, count)."),
        rpo_seconds: Option<f64> = recorded("rpo_seconds", Type::Number, "The true RPO: the age of the backup's recovery point (`snapshot_at`) when the drill started."),
        backup_duration_seconds: Option<f64> = recorded("backup_duration_seconds", Type::Number, "How long the backup took: what the service's own drill reports as its RPO, for comparison."),
        restore_duration_seconds: Option<f64> = recorded("restore_duration_seconds", Type::Number, "The `pg_restore` (or `psql`) step alone (when the dump was streamed into it: from the start of the download, which it overlaps)."),
        mismatches: Option<Vec<MismatchModel>> = recorded("mismatches", Type::list(MismatchModel::object_type()), "Parity tables whose restored count differs from the backup's: `table`, `expected` (null: not in the backup), `actual` (null: not restored)."),
        report_markdown: Option<String> = recorded("report_markdown", Type::String, "The report, in the shape of the service's own drill report (`scripts/phase6-drill.sh`: `# Phase 6 RPO/RTO Drill Report`, `Generated at:`, `## Inputs`, `## Results` with `- RPO status: PASS|FAIL`, `- RTO status: …`, `- data verification: …`, `## Verification Notes`), with this provider's further facts as extra bullets (the true RPO, the script's RPO figure, the migration head) and a `### Parity` sub-section. Figures in whole seconds; the exact ones are in the attributes above. A drill recorded by an earlier provider version keeps the report it had until it runs again."),
        ran_at: Option<String> = recorded("ran_at", Type::String, "When the drill started (RFC 3339, UTC)."),
        report_file_sha256: Option<String> = Attribute::computed("report_file_sha256", Type::String)
            .description("With `report_file`: the sha256 of the file as refresh last found it (null when it was missing), which apply sets to that of `report_markdown`; a difference is a plan to write the file again. Null without `report_file`."),
    }
}

crate::model! {
    /// One element of `mismatches`.
    pub(crate) struct MismatchModel {
        table: String = Attribute::computed("table", Type::String),
        expected: Option<i64> = Attribute::computed("expected", Type::Number),
        actual: Option<i64> = Attribute::computed("actual", Type::Number),
    }
}

pub struct RestoreDrill;

#[async_trait]
impl Resource<Settings> for RestoreDrill {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "The recurring backup/restore drill (D6): restores a backup into a freshly \
             re-created drill database with errors fatal, its sha256 checked (streamed into \
             `pg_restore` or `psql` as it downloads when one table holds most of the data or the \
             dump is plain SQL; else downloaded first and restored with `pg_restore -j`), compares the parity tables' row counts \
             and the migration head with the counts the backup took in its own snapshot, \
             measures RTO and the true RPO against their targets, writes a Markdown report \
             (and a JSON twin) and drops the drill database. It runs again only when `triggers` \
             or another input changes.",
            RestoreDrillModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let config = match RestoreDrillModel::planned(config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid restore drill configuration").into(),
        };
        let mut diags = Diagnostics::new();
        if let Maybe::Known(name) = &config.drill_database
            && !valid_identifier(name)
        {
            diags.push(
                Diagnostic::error(
                    "Invalid drill database name",
                    format!("{name:?} must match ^[A-Za-z_][A-Za-z0-9_]*$ (at most 63 bytes): it is dropped and re-created, so it is never quoted from input."),
                )
                .at_attr("drill_database"),
            );
        }
        for (attr, target) in [
            ("rto_target_seconds", &config.rto_target_seconds),
            ("rpo_target_seconds", &config.rpo_target_seconds),
        ] {
            if let Maybe::Known(n) = target
                && *n <= 0.0
            {
                diags.push(
                    Diagnostic::error("Invalid target", format!("{attr} must be positive."))
                        .at_attr(attr),
                );
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
        super::plan_default_bucket(req.config, req.prior_state, settings, resp);
        let (config, planned) = match (
            RestoreDrillModel::planned(req.config),
            RestoreDrillModel::planned(&resp.planned_state),
        ) {
            (Ok(c), Ok(p)) => (c, p),
            (Err(e), _) | (_, Err(e)) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid restore drill plan"));
            }
        };
        let sha = planned_report_sha(
            &config.report_file,
            req.prior_state,
            &framework::replacement_paths(&self.schema(), req.prior_state, &resp.planned_state),
        );
        resp.planned_state.set_attr("report_file_sha256", sha);
        // Never the source: refuse at plan time what is known to be the service's database or
        // the admin connection's own.
        let Maybe::Known(drill) = &planned.drill_database else {
            return;
        };
        let admin = settings
            .database_url_for(&config.admin_database_url.to_value(&Type::String))
            .ok()
            .flatten();
        let source = settings.database_url_for(&Value::Null).ok().flatten();
        if let Some(admin) = admin.as_deref()
            && let Ok(admin_id) = database_identity(admin)
        {
            let (server, admin_db) = admin_id.rsplit_once('/').unwrap_or((&admin_id, ""));
            let target = format!("{server}/{drill}");
            let source_id = source.as_deref().and_then(|s| database_identity(s).ok());
            if admin_db == drill || source_id.as_deref() == Some(target.as_str()) {
                resp.diagnostics.push(
                    Diagnostic::error(
                        "The drill database is the source database",
                        format!(
                            "drill_database {drill:?} on {server} is {}: the drill drops and re-creates its database, so it must be a scratch database.",
                            if admin_db == drill { "the admin connection's own database" } else { "the service's database (the provider's database_url)" }
                        ),
                    )
                    .at_attr("drill_database"),
                );
            }
        }
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        let settings = req.provider;
        let (config, planned) = match models(req.config, req.planned_state) {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid restore drill plan"));
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
        let manifest_key =
            match restore::find_manifest_key(&s3, &bucket, &planned.backup_id, &planned.prefix)
                .await
            {
                Ok(k) => k,
                Err(e) => return resp.diagnostics.push(drill_diagnostic(&e)),
            };
        let spec = DrillSpec {
            bucket: bucket.clone(),
            manifest_key,
            admin_url,
            drill_database: planned.drill_database.clone(),
            parity_tables: planned.parity_tables.iter().flatten().cloned().collect(),
            rto_target_seconds: planned.rto_target_seconds,
            rpo_target_seconds: planned.rpo_target_seconds,
            keep_drill_database: planned.keep_drill_database,
            bin_dir: config.postgres_bin_dir.as_deref().map(PathBuf::from),
            connect_timeout: settings.request_timeout,
        };
        let limit = framework::timeout(req.config, "create", DEFAULT_CREATE_TIMEOUT);
        let (s3_ref, spec_ref) = (&s3, &spec);
        let (result, stopped) = framework::run_bounded(
            req.ctx,
            limit,
            |stop| async move { restore::run(s3_ref, spec_ref, &stop).await },
            framework::nothing_more,
        )
        .await;
        if stopped == Some(Stopped::TimedOut) {
            return resp.diagnostics.push(
                Diagnostic::error(
                    "Restore drill timed out",
                    format!(
                        "The drill did not finish within the create timeout ({}).",
                        crate::duration::format(limit)
                    ),
                )
                .at_attr("timeouts"),
            );
        }
        let report = match result {
            Ok(r) => r,
            Err(e) => return resp.diagnostics.push(drill_diagnostic(&e)),
        };
        let markdown = report.markdown();
        if let Some(key) = &config.report_object_key {
            let json = serde_json::to_vec_pretty(&report).expect("a report serialises");
            for (k, body, ty) in [
                (
                    key.to_string(),
                    markdown.clone().into_bytes(),
                    "text/markdown; charset=utf-8",
                ),
                (json_key(key), json, "application/json"),
            ] {
                if let Err(e) = object_store::put_small(&s3, &bucket, &k, body, ty).await {
                    return resp.diagnostics.push(
                        Diagnostic::error("Cannot write the drill report", e.to_string())
                            .at_attr("report_object_key"),
                    );
                }
            }
        }
        // Written whatever the verdict, as the service's script writes its report before it
        // exits 1 on a FAIL (scripts/phase6-drill.sh:108-114).
        if let Some(file) = &config.report_file
            && let Err(e) = restore::write_report_file(Path::new(file), &markdown)
        {
            return resp.diagnostics.push(report_file_error(&e));
        }
        tracing::info!(
            passed = report.passed,
            rto_seconds = report.rto_seconds,
            rpo_seconds = report.rpo_seconds,
            mismatches = report.mismatches.len(),
            "restore drill finished"
        );
        if !report.passed && planned.fail_on_breach {
            return resp.diagnostics.push(
                Diagnostic::error("Restore drill FAILED", markdown).at_attr("fail_on_breach"),
            );
        }
        let mut state = planned.clone();
        state.record(&report);
        state.report_file_sha256 = config
            .report_file
            .as_ref()
            .map(|_| restore::report_sha256(&markdown));
        resp.new_state = req.planned_state.clone();
        write_changes(
            &mut resp.new_state,
            &RestoreDrillModel::object_type(),
            &planned,
            &state,
        );
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        // An import holds only `report_object_key`: the record is the report's JSON twin.
        if resp.new_state.attr("id").is_null() {
            match read_import(req.provider, &resp.new_state, req.identity).await {
                Ok(state) => resp.new_state = state,
                Err(d) => return resp.diagnostics.push(d),
            }
        }
        // A drill is a record of an event; the one live thing is the report file it wrote.
        // Refresh records what that file holds now (its sha256, null when missing), so a
        // deleted or edited report shows up as a plan to write it again (modify_plan).
        let state = match RestoreDrillModel::from_value(&resp.new_state) {
            Ok(s) => s,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid restore drill state"));
            }
        };
        let Some(file) = &state.report_file else {
            return;
        };
        match restore::report_file_sha256(Path::new(file)) {
            Ok(now) => {
                if now != state.report_file_sha256 {
                    tracing::info!(file = %file, "the drill's report file is missing or changed");
                }
                resp.new_state
                    .set_attr("report_file_sha256", Value::opt_string(now));
            }
            Err(e) => resp.diagnostics.push(
                Diagnostic::warning(
                    "Cannot check the drill's report file",
                    format!("{e}. The state keeps what the last apply wrote."),
                )
                .at_attr("report_file"),
            ),
        }
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        // Only arguments that do not shape a drill change in place (postgres_bin_dir, timeouts).
        let (prior, planned) = match (
            RestoreDrillModel::from_value(req.prior_state),
            RestoreDrillModel::from_value(req.planned_state),
        ) {
            (Ok(r), Ok(p)) => (r, p),
            (Err(e), _) | (_, Err(e)) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Invalid restore drill state"));
            }
        };
        let mut state = planned.clone();
        state.keep_record(&prior);
        // The report file: written again when its path changed or refresh found it missing or
        // changed (the plan then holds the recorded report's sha256).
        state.report_file_sha256 = None;
        if let (Some(file), Some(markdown)) = (&planned.report_file, &prior.report_markdown) {
            let sha = restore::report_sha256(markdown);
            if prior.report_file != planned.report_file
                || prior.report_file_sha256.as_deref() != Some(sha.as_str())
            {
                if let Err(e) = restore::write_report_file(Path::new(file), markdown) {
                    return resp.diagnostics.push(report_file_error(&e));
                }
                tracing::info!(file = %file, "drill report written again");
            }
            state.report_file_sha256 = Some(sha);
        }
        resp.new_state = req.planned_state.clone();
        write_changes(
            &mut resp.new_state,
            &RestoreDrillModel::object_type(),
            &planned,
            &state,
        );
    }

    async fn delete(&self, _req: DeleteRequest<'_, Settings>) -> Diagnostics {
        Diagnostics::new()
    }

    fn import(&self) -> Import {
        Import::Passthrough("report_object_key")
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                identity::string_attribute(
                    "bucket",
                    ForImport::Optional,
                    "The bucket of the backup drilled (and of the report). Default: the provider's `object_storage.bucket` (an import reads that bucket).",
                ),
                identity::string_attribute(
                    "report_object_key",
                    ForImport::Required,
                    "Where the drill wrote its report (`report_object_key`), the record an import reads. Null for a drill that wrote none (such a drill cannot be imported).",
                ),
                identity::string_attribute(
                    "backup_id",
                    ForImport::Optional,
                    "The backup drilled, as `backup_id` gives it (an id or an object key). On import: checked against the report.",
                ),
                identity::string_attribute(
                    "drill_database",
                    ForImport::Optional,
                    "The scratch database restored into (default `artifortress_drill`). On import: checked against the report.",
                ),
                identity::string_attribute(
                    "ran_at",
                    ForImport::Optional,
                    "When the drill started (RFC 3339, UTC). On import: checked against the report.",
                ),
            ],
        })
    }

    /// A drill is a record of one event: which backup (bucket and backup id) was restored
    /// where (the scratch database) and when, and where its report was written. Every part is
    /// fixed for the record's life: any change of them runs a new drill, which is a new record.
    fn identity(&self, req: IdentityRequest<'_, Settings>) -> Option<Value> {
        let s = req.state;
        let field = |name: &str| s.attr(name).as_str().map(Value::string);
        Some(Value::object([
            ("bucket", field("bucket")?),
            (
                "report_object_key",
                field("report_object_key").unwrap_or(Value::Null),
            ),
            ("backup_id", field("backup_id")?),
            ("drill_database", field("drill_database")?),
            ("ran_at", field("ran_at")?),
        ]))
    }

    /// `import { identity = { report_object_key = ... } }` imports exactly as by that key;
    /// the other attributes given are checked against the report by the read that follows.
    fn import_id(&self, identity: &Value, settings: &Settings) -> Result<String, Diagnostic> {
        let key = identity
            .attr("report_object_key")
            .as_str()
            .unwrap_or_default();
        if let Some(wanted) = identity.attr("bucket").as_str() {
            let ours = settings.need_bucket(None, "bucket")?;
            if wanted != ours {
                return Err(Diagnostic::error(
                    "Drill report in another bucket",
                    format!(
                        "The identity names s3://{wanted}/{key}, but an import reads the \
                         provider's object_storage.bucket ({ours:?}). Import with a provider \
                         whose bucket is {wanted:?} (an aliased provider block works)."
                    ),
                ));
            }
        }
        Ok(key.to_string())
    }
}

/// The state of an imported drill, from the JSON twin of its report (written beside
/// `report_object_key` in the provider's bucket): the record as the drill made it, and the
/// arguments the report names (backup, bucket, prefix, scratch database, parity tables,
/// targets, whether the database was kept); `fail_on_breach` is `false` for a FAIL (a failing
/// drill is recorded only then), the rest take their defaults.
async fn read_import(
    settings: &Settings,
    state: &Value,
    identity: &Value,
) -> Result<Value, Diagnostic> {
    let key = state
        .attr("report_object_key")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bucket = settings.need_bucket(None, "bucket")?;
    let s3 = settings.object_store()?;
    let twin = json_key(&key);
    let bytes = object_store::get_small(&s3, &bucket, &twin)
        .await
        .map_err(|e| {
            Diagnostic::error("Cannot read the drill report", e.to_string())
                .at_attr("report_object_key")
        })?
        .ok_or_else(|| {
            Diagnostic::error(
                "Cannot import non-existent drill report",
                format!(
                    "s3://{bucket}/{twin} does not exist. A drill is imported by the \
                     `report_object_key` it wrote its report to; its JSON twin (`.md` \
                     replaced by `.json`) holds the record."
                ),
            )
            .at_attr("report_object_key")
        })?;
    let report: DrillReport = serde_json::from_slice(&bytes).map_err(|e| {
        Diagnostic::error(
            "Not a drill report",
            format!("s3://{bucket}/{twin} is not a report this provider wrote: {e}."),
        )
        .at_attr("report_object_key")
    })?;
    let defaults: Vec<&str> = PARITY_TABLES.to_vec();
    let mut tables: Vec<&str> = report.expected_counts.keys().map(String::as_str).collect();
    let mut sorted_defaults = defaults.clone();
    sorted_defaults.sort();
    if tables == sorted_defaults {
        tables = defaults;
    }
    let prefix = report
        .object_key
        .find(&report.backup_id)
        .map(|at| report.object_key[..at].to_string())
        .unwrap_or_else(|| DEFAULT_BACKUP_PREFIX.to_string());
    let mut model = RestoreDrillModel {
        backup_id: report.backup_id.clone(),
        bucket: Some(report.bucket.clone()),
        prefix,
        admin_database_url: None,
        drill_database: report.drill_database.clone(),
        parity_tables: tables.into_iter().map(|t| Some(t.to_string())).collect(),
        rto_target_seconds: report.rto_target_seconds,
        rpo_target_seconds: report.rpo_target_seconds,
        keep_drill_database: report.kept,
        report_object_key: Some(key.clone()),
        report_file: None,
        fail_on_breach: report.passed,
        triggers: Value::Null,
        postgres_bin_dir: None,
        timeouts: Value::Null,
        id: None,
        passed: None,
        rto_seconds: None,
        rpo_seconds: None,
        backup_duration_seconds: None,
        restore_duration_seconds: None,
        mismatches: None,
        report_markdown: None,
        ran_at: None,
        report_file_sha256: None,
    };
    model.record(&report);
    check_import_identity(&model, identity, &key)?;
    Ok(model.to_value(&RestoreDrillModel::object_type()))
}

/// An import by identity names the drill as well as its report: every attribute the identity
/// gives must be what the report records, or the import is refused (naming each difference)
/// instead of taking another drill under the name given.
fn check_import_identity(
    model: &RestoreDrillModel,
    identity: &Value,
    key: &str,
) -> Result<(), Diagnostic> {
    let recorded = [
        ("bucket", model.bucket.clone()),
        ("backup_id", Some(model.backup_id.clone())),
        ("drill_database", Some(model.drill_database.clone())),
        ("ran_at", model.ran_at.clone()),
    ];
    let differences: Vec<String> = recorded
        .iter()
        .filter_map(|(name, have)| {
            let wanted = identity.attr(name).as_str()?;
            (have.as_deref() != Some(wanted)).then(|| {
                format!(
                    "{name}: the identity says {wanted:?}, the report {:?}",
                    have.as_deref().unwrap_or("")
                )
            })
        })
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(Diagnostic::error(
        "The drill report is of another drill",
        format!(
            "The report at {key} does not record the drill the import identity names ({}). \
             Leave out the attributes you do not know (only report_object_key is required), \
             or name the report of the drill you mean.",
            differences.join("; ")
        ),
    )
    .at_attr("report_object_key"))
}

impl RestoreDrillModel {
    /// The drill's record: every computed attribute.
    fn record(&mut self, r: &DrillReport) {
        self.id = Some(format!(
            "{}@{}",
            r.backup_id,
            r.ran_at.format("%Y%m%dT%H%M%SZ")
        ));
        self.bucket = Some(r.bucket.clone());
        self.passed = Some(r.passed);
        self.rto_seconds = Some(seconds(r.rto_seconds));
        self.rpo_seconds = Some(seconds(r.rpo_seconds));
        self.backup_duration_seconds = Some(seconds(r.backup_duration_seconds));
        self.restore_duration_seconds = Some(seconds(r.restore_duration_seconds));
        self.mismatches = Some(
            r.mismatches
                .iter()
                .map(|m| MismatchModel {
                    table: m.table.clone(),
                    expected: m.expected,
                    actual: m.actual,
                })
                .collect(),
        );
        self.report_markdown = Some(r.markdown());
        self.ran_at = timestamp(r.ran_at).as_str().map(str::to_string);
    }

    /// Keeps the record of `prior` (every computed attribute) on an in-place update.
    fn keep_record(&mut self, prior: &RestoreDrillModel) {
        self.id = prior.id.clone();
        self.bucket = prior.bucket.clone();
        self.passed = prior.passed;
        self.rto_seconds = prior.rto_seconds;
        self.rpo_seconds = prior.rpo_seconds;
        self.backup_duration_seconds = prior.backup_duration_seconds;
        self.restore_duration_seconds = prior.restore_duration_seconds;
        self.mismatches = prior.mismatches.clone();
        self.report_markdown = prior.report_markdown.clone();
        self.ran_at = prior.ran_at.clone();
        self.report_file_sha256 = prior.report_file_sha256.clone();
    }
}

/// The planned `report_file_sha256`. Without `report_file`: null. On create or replacement:
/// known after the drill. On an in-place update: the sha256 of the recorded report, so a file
/// that refresh found missing or changed (another value in state) or a new path plans an
/// update that writes it again; an intact file plans no change.
fn planned_report_sha(
    report_file: &Maybe<Option<String>>,
    prior: &Value,
    replacing: &[crate::protocol::diagnostics::AttributePath],
) -> Value {
    match report_file {
        Maybe::Null | Maybe::Known(None) => Value::Null,
        Maybe::Unknown => Value::unknown(),
        Maybe::Known(Some(_)) if prior.is_null() || !replacing.is_empty() => Value::unknown(),
        Maybe::Known(Some(_)) => match prior.attr("report_markdown").as_str() {
            Some(markdown) => Value::String(restore::report_sha256(markdown)),
            None => Value::unknown(),
        },
    }
}

fn report_file_error(e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        "Cannot write the drill report file",
        format!(
            "{e}. The drill itself ran; its report is in report_markdown once recorded. Fix the \
             path or its permissions and apply again."
        ),
    )
    .at_attr("report_file")
}

/// A computed attribute of the drill's record, kept from the last drill.
fn recorded(name: &str, ty: Type, description: &str) -> Attribute {
    Attribute::computed(name, ty)
        .use_state_for_unknown()
        .description(description)
}

/// The configuration (for its write-only and configured-only values) and the plan of an apply,
/// defaults filled in.
fn models(
    config: &Value,
    planned: &Value,
) -> Result<(RestoreDrillModel, RestoreDrillModel), ModelError> {
    Ok((
        RestoreDrillModel::from_config(config)?,
        RestoreDrillModel::from_config(planned)?,
    ))
}

fn default_tables() -> Value {
    Value::List(
        PARITY_TABLES
            .iter()
            .map(|t| Value::String(t.to_string()))
            .collect(),
    )
}

/// Seconds to the millisecond.
fn seconds(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// The JSON twin of a Markdown report key.
fn json_key(report_key: &str) -> String {
    match report_key.strip_suffix(".md") {
        Some(stem) => format!("{stem}.json"),
        None => format!("{report_key}.json"),
    }
}

fn drill_diagnostic(err: &DrillError) -> Diagnostic {
    let attr = match err {
        DrillError::BadName { .. } | DrillError::IsSource { .. } => "drill_database",
        DrillError::NoManifest { .. }
        | DrillError::Corrupt { .. }
        | DrillError::Oversize { .. } => "backup_id",
        DrillError::Database { .. } => "admin_database_url",
        DrillError::Restore { .. } => "postgres_bin_dir",
        _ => "backup_id",
    };
    Diagnostic::error("Restore drill failed", err.to_string()).at_attr(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(RestoreDrill.schema().check().is_empty());
    }

    #[test]
    fn the_report_file_sha_is_planned_from_the_recorded_report() {
        let file = Maybe::Known(Some("docs/reports/x.md".to_string()));
        let mut prior = Value::null_object(&RestoreDrillModel::object_type());
        prior.set_attr("report_markdown", "# r\n".into());
        let sha = restore::report_sha256("# r\n");
        // Without report_file: null, whatever the state.
        assert!(planned_report_sha(&Maybe::Null, &prior, &[]).is_null());
        // In place: the recorded report's sha (equal to the state's when the file is intact).
        assert!(planned_report_sha(&file, &prior, &[]).same(&Value::String(sha)));
        // Create, replacement, unknown path: after apply.
        assert!(!planned_report_sha(&file, &Value::Null, &[]).is_known());
        let replacing = [crate::protocol::diagnostics::AttributePath::attr(
            "triggers",
        )];
        assert!(!planned_report_sha(&file, &prior, &replacing).is_known());
        assert!(!planned_report_sha(&Maybe::Unknown, &prior, &[]).is_known());
    }

    #[test]
    fn an_import_identity_must_name_the_drill_its_report_records() {
        let mut state = Value::null_object(&RestoreDrillModel::object_type());
        for (k, v) in [
            ("backup_id", "20261127T053900Z-3f9a1c2b"),
            ("bucket", "artifortress-backups"),
            ("drill_database", "artifortress_drill"),
            ("ran_at", "2026-12-05T02:00:00Z"),
        ] {
            state.set_attr(k, v.into());
        }
        state.set_attr("prefix", "backups/".into());
        state.set_attr("parity_tables", Value::List(vec!["tenants".into()]));
        state.set_attr("rto_target_seconds", Value::int(900));
        state.set_attr("rpo_target_seconds", Value::int(300));
        state.set_attr("keep_drill_database", Value::Bool(false));
        state.set_attr("fail_on_breach", Value::Bool(true));
        let model = RestoreDrillModel::from_value(&state).unwrap();
        let identity = |pairs: &[(&str, &str)]| {
            let mut id = Value::object([
                ("bucket", Value::Null),
                ("report_object_key", "drills/latest.md".into()),
                ("backup_id", Value::Null),
                ("drill_database", Value::Null),
                ("ran_at", Value::Null),
            ]);
            for (k, v) in pairs {
                id.set_attr(k, (*v).into());
            }
            id
        };
        // Only the key (the attributes not given are not checked), or everything right.
        assert!(check_import_identity(&model, &identity(&[]), "drills/latest.md").is_ok());
        assert!(
            check_import_identity(
                &model,
                &identity(&[
                    ("bucket", "artifortress-backups"),
                    ("backup_id", "20261127T053900Z-3f9a1c2b"),
                    ("drill_database", "artifortress_drill"),
                    ("ran_at", "2026-12-05T02:00:00Z"),
                ]),
                "drills/latest.md"
            )
            .is_ok()
        );
        // Each difference is named, with both values.
        let d = check_import_identity(
            &model,
            &identity(&[("ran_at", "2020-01-01T00:00:00Z"), ("drill_database", "x")]),
            "drills/latest.md",
        )
        .unwrap_err();
        assert_eq!(d.summary, "The drill report is of another drill");
        assert!(
            d.detail.contains(
                "ran_at: the identity says \"2020-01-01T00:00:00Z\", the report \"2026-12-05T02:00:00Z\""
            ),
            "{}",
            d.detail
        );
        assert!(
            d.detail.contains("drill_database: the identity says \"x\""),
            "{}",
            d.detail
        );
        assert!(d.detail.contains("drills/latest.md"), "{}", d.detail);
    }

    #[test]
    fn reports_get_a_json_twin() {
        assert_eq!(json_key("drills/latest.md"), "drills/latest.json");
        assert_eq!(json_key("drills/latest"), "drills/latest.json");
    }

    #[test]
    fn every_computed_attribute_is_kept_on_update() {
        let mut config = Value::null_object(&RestoreDrillModel::object_type());
        config.set_attr("backup_id", "b".into());
        let mut prior = RestoreDrillModel::from_config(&config).unwrap();
        prior.id = Some("b@20240101T000000Z".into());
        prior.bucket = Some("bucket".into());
        prior.passed = Some(true);
        prior.rto_seconds = Some(1.5);
        prior.rpo_seconds = Some(2.5);
        prior.backup_duration_seconds = Some(3.5);
        prior.restore_duration_seconds = Some(4.5);
        prior.mismatches = Some(vec![MismatchModel {
            table: "t".into(),
            expected: Some(1),
            actual: None,
        }]);
        prior.report_markdown = Some("# report".into());
        prior.ran_at = Some("2024-01-01T00:00:00.000Z".into());
        prior.report_file_sha256 = Some("ab".repeat(32));
        let mut planned = RestoreDrillModel::from_config(&config).unwrap();
        planned.postgres_bin_dir = Some("/usr/lib/postgresql/15/bin".into());
        planned.keep_record(&prior);
        let (prior, kept) = (prior.to_object(), planned.to_object());
        for a in &RestoreDrillModel::attributes() {
            if a.constraint == crate::protocol::schema::Constraint::Computed {
                assert!(!prior.attr(&a.name).is_null(), "{}", a.name);
                assert!(kept.attr(&a.name).same(prior.attr(&a.name)), "{}", a.name);
            }
        }
    }
}
