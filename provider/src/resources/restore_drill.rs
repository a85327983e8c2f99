//! `resource "artifortress_restore_drill"`: the recurring backup/restore drill (D6), joining the
//! restore client to Terraform. A drill is an event: it runs on create, any input change
//! (`triggers`, typically a week number or a `time_rotating` id) runs it again, and Read keeps
//! the record as it is.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::clients::backup::PARITY_TABLES;
use crate::clients::object_store;
use crate::clients::pg::{database_identity, valid_identifier};
use crate::clients::restore::{self, DrillError, DrillReport, DrillSpec};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, ModifyPlanRequest, ModifyPlanResponse,
    ReadRequest, ReadResponse, Resource,
};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::value::{Number, Value};
use crate::settings::Settings;
use crate::shared::timestamp;

pub const TYPE_NAME: &str = "artifortress_restore_drill";
const DEFAULT_DRILL_DATABASE: &str = "artifortress_drill";
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(3600);

pub struct RestoreDrill;

const COMPUTED: [&str; 10] = [
    "id",
    "bucket",
    "passed",
    "rto_seconds",
    "rpo_seconds",
    "backup_duration_seconds",
    "restore_duration_seconds",
    "mismatches",
    "report_markdown",
    "ran_at",
];

fn mismatch_type() -> Type {
    Type::object([
        ("table", Type::String),
        ("expected", Type::Number),
        ("actual", Type::Number),
    ])
}

fn seconds(s: f64) -> Value {
    Value::Number(Number::from_f64((s * 1000.0).round() / 1000.0))
}

fn write_report(state: &mut Value, r: &DrillReport) {
    state.set_attr(
        "id",
        format!("{}@{}", r.backup_id, r.ran_at.format("%Y%m%dT%H%M%SZ")).into(),
    );
    state.set_attr("bucket", r.bucket.clone().into());
    state.set_attr("passed", r.passed.into());
    state.set_attr("rto_seconds", seconds(r.rto_seconds));
    state.set_attr("rpo_seconds", seconds(r.rpo_seconds));
    state.set_attr(
        "backup_duration_seconds",
        seconds(r.backup_duration_seconds),
    );
    state.set_attr(
        "restore_duration_seconds",
        seconds(r.restore_duration_seconds),
    );
    state.set_attr(
        "mismatches",
        Value::List(
            r.mismatches
                .iter()
                .map(|m| {
                    Value::object([
                        ("table", Value::String(m.table.clone())),
                        (
                            "expected",
                            m.expected.map(Value::int).unwrap_or(Value::Null),
                        ),
                        ("actual", m.actual.map(Value::int).unwrap_or(Value::Null)),
                    ])
                })
                .collect(),
        ),
    );
    state.set_attr("report_markdown", r.markdown().into());
    state.set_attr("ran_at", timestamp(r.ran_at));
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
        DrillError::NoManifest { .. } | DrillError::Corrupt { .. } => "backup_id",
        DrillError::Database { .. } => "admin_database_url",
        DrillError::Restore { .. } => "postgres_bin_dir",
        _ => "backup_id",
    };
    Diagnostic::error("Restore drill failed", err.to_string()).at_attr(attr)
}

fn float(v: &Value, default: f64) -> f64 {
    v.as_number().and_then(|n| n.as_f64()).unwrap_or(default)
}

#[async_trait]
impl Resource<Settings> for RestoreDrill {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        let default_tables = Value::List(
            PARITY_TABLES
                .iter()
                .map(|t| Value::String(t.to_string()))
                .collect(),
        );
        let mut attrs = vec![
            Attribute::required("backup_id", Type::String)
                .requires_replace()
                .description("The backup to restore: an `artifortress_backup`'s `id` (e.g. `artifortress_backup.x.id`), found under `prefix` or, when it is not there, under whichever prefix holds its manifest; or its `object_key`. An id whose manifest is under several prefixes is an error that names them."),
            Attribute::optional_computed("bucket", Type::String)
                .requires_replace()
                .use_state_for_unknown()
                .description("Bucket of the backup (and of the report). Default: the provider's `object_storage.bucket`."),
            Attribute::optional_computed("prefix", Type::String)
                .requires_replace()
                .default_value("backups/")
                .description("Where to look first for the backup when `backup_id` is an id; a backup under another prefix is still found (the bucket is listed)."),
            Attribute::optional("admin_database_url", Type::String)
                .sensitive()
                .write_only()
                .description("PostgreSQL URL of a role that may create and drop databases, on the server to restore to. Default: the provider's `database_url`. Its own database is never the drill database. Write-only (Terraform >= 1.11): never stored; use `triggers` to run a new drill."),
            Attribute::optional_computed("drill_database", Type::String)
                .requires_replace()
                .default_value(DEFAULT_DRILL_DATABASE)
                .description("The scratch database: its sessions are terminated, it is dropped and re-created, then restored into. Must match `^[A-Za-z_][A-Za-z0-9_]*$` and never be the backup's source database (both checked at plan time where known, and again before anything is dropped)."),
            Attribute::optional_computed("parity_tables", Type::list(Type::String))
                .requires_replace()
                .default_value(default_tables)
                .description("Tables whose row counts must equal the backup's (read in its snapshot). Default: the service's ten."),
            Attribute::optional_computed("rto_target_seconds", Type::Number)
                .requires_replace()
                .default_value(Value::int(900))
                .description("RTO target: drill start to a verified restore."),
            Attribute::optional_computed("rpo_target_seconds", Type::Number)
                .requires_replace()
                .default_value(Value::int(300))
                .description("RPO target: the age of the backup's recovery point at drill time."),
            Attribute::optional_computed("keep_drill_database", Type::Bool)
                .requires_replace()
                .default_value(false)
                .description("Keep the restored database after the drill (default: drop it). Destroying this resource never drops it."),
            Attribute::optional("report_object_key", Type::String)
                .requires_replace()
                .description("Also write the Markdown report to this key in the bucket, and its JSON twin beside it (`.md` replaced by `.json`)."),
            Attribute::optional_computed("fail_on_breach", Type::Bool)
                .requires_replace()
                .default_value(true)
                .description("A FAIL (RTO, RPO or data verification) fails the apply with the report in the error, and nothing is recorded, so the next apply runs the drill again. `false`: the result is recorded in `passed`."),
            Attribute::optional("triggers", Type::map(Type::String))
                .requires_replace()
                .description("Any change runs the drill again (e.g. `{ week = time_rotating.weekly.id }`)."),
            Attribute::optional("postgres_bin_dir", Type::String)
                .description("Directory holding `pg_restore` and `psql`. Default: PATH."),
            framework::timeouts_attribute(&["create"]),
        ];
        let computed = [
            ("id", Type::String, "`<backup id>@<time of the drill>`."),
            (
                "passed",
                Type::Bool,
                "RTO, RPO and data verification all PASS.",
            ),
            (
                "rto_seconds",
                Type::Number,
                "Drill start to a restored database that passed verification (download, re-create, restore, count).",
            ),
            (
                "rpo_seconds",
                Type::Number,
                "The true RPO: the age of the backup's recovery point (`snapshot_at`) when the drill started.",
            ),
            (
                "backup_duration_seconds",
                Type::Number,
                "How long the backup took: what the service's own drill reports as its RPO, for comparison.",
            ),
            (
                "restore_duration_seconds",
                Type::Number,
                "The `pg_restore` (or `psql`) step alone.",
            ),
            (
                "mismatches",
                Type::list(mismatch_type()),
                "Parity tables whose restored count differs from the backup's: `table`, `expected` (null: not in the backup), `actual` (null: not restored).",
            ),
            (
                "report_markdown",
                Type::String,
                "The report, with the service's drill vocabulary (`RTO status: PASS`, `RPO status: …`, `data verification: …`).",
            ),
            (
                "ran_at",
                Type::String,
                "When the drill started (RFC 3339, UTC).",
            ),
        ];
        for (name, ty, text) in computed {
            attrs.push(
                Attribute::computed(name, ty)
                    .use_state_for_unknown()
                    .description(text),
            );
        }
        Schema::new(
            0,
            "The recurring backup/restore drill (D6): downloads a backup (checking its sha256), \
             restores it into a freshly re-created drill database with errors fatal \
             (`pg_restore -j` for the custom format), compares the parity tables' row counts \
             and the migration head with the counts the backup took in its own snapshot, \
             measures RTO and the true RPO against their targets, writes a Markdown report \
             (and a JSON twin) and drops the drill database. It runs again only when `triggers` \
             or another input changes.",
            attrs,
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(name) = config.attr("drill_database").as_str()
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
        for attr in ["rto_target_seconds", "rpo_target_seconds"] {
            if let Some(n) = config.attr(attr).as_number().and_then(|n| n.as_f64())
                && n <= 0.0
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
        let (config, settings) = (req.config, req.provider);
        super::plan_default_bucket(config, req.prior_state, settings, resp);
        // Never the source: refuse at plan time what is known to be the service's database or
        // the admin connection's own.
        let Some(drill) = resp
            .planned_state
            .attr("drill_database")
            .as_str()
            .map(str::to_string)
        else {
            return;
        };
        let admin = settings
            .database_url_for(config.attr("admin_database_url"))
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
        let (config, planned, settings) = (req.config, req.planned_state, req.provider);
        let admin_url = match settings
            .need_database_url(config.attr("admin_database_url"), "admin_database_url")
        {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        let bucket = match settings.need_bucket(planned.attr("bucket").as_str(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let backup_id = planned.attr("backup_id").as_str().unwrap_or_default();
        let prefix = planned.attr("prefix").as_str().unwrap_or("backups/");
        let manifest_key = match restore::find_manifest_key(&s3, &bucket, backup_id, prefix).await {
            Ok(k) => k,
            Err(e) => return resp.diagnostics.push(drill_diagnostic(&e)),
        };
        let spec = DrillSpec {
            bucket: bucket.clone(),
            manifest_key,
            admin_url,
            drill_database: planned
                .attr("drill_database")
                .as_str()
                .unwrap_or(DEFAULT_DRILL_DATABASE)
                .to_string(),
            parity_tables: planned
                .attr("parity_tables")
                .as_elements()
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            rto_target_seconds: float(planned.attr("rto_target_seconds"), 900.0),
            rpo_target_seconds: float(planned.attr("rpo_target_seconds"), 300.0),
            keep_drill_database: planned
                .attr("keep_drill_database")
                .as_bool()
                .unwrap_or(false),
            bin_dir: config.attr("postgres_bin_dir").as_str().map(PathBuf::from),
            connect_timeout: settings.request_timeout,
        };
        let limit = framework::timeout(config, "create", DEFAULT_CREATE_TIMEOUT);
        let stop = req.ctx.cancel.child_token();
        let result = tokio::select! {
            r = restore::run(&s3, &spec, &stop) => r,
            _ = tokio::time::sleep(limit) => {
                stop.cancel();
                return resp.diagnostics.push(Diagnostic::error(
                    "Restore drill timed out",
                    format!("The drill did not finish within the create timeout ({}).", crate::duration::format(limit)),
                ).at_attr("timeouts"));
            }
        };
        let report = match result {
            Ok(r) => r,
            Err(e) => return resp.diagnostics.push(drill_diagnostic(&e)),
        };
        let markdown = report.markdown();
        if let Some(key) = config.attr("report_object_key").as_str() {
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
        tracing::info!(
            passed = report.passed,
            rto_seconds = report.rto_seconds,
            rpo_seconds = report.rpo_seconds,
            mismatches = report.mismatches.len(),
            "restore drill finished"
        );
        if !report.passed && planned.attr("fail_on_breach").as_bool() != Some(false) {
            return resp.diagnostics.push(
                Diagnostic::error("Restore drill FAILED", markdown).at_attr("fail_on_breach"),
            );
        }
        let mut state = planned.clone();
        write_report(&mut state, &report);
        resp.new_state = state;
    }

    async fn read(&self, _req: ReadRequest<'_, Settings>, _resp: &mut ReadResponse) {
        // A drill is a record of an event; there is nothing live to refresh.
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        // Only arguments that do not shape a drill change in place (postgres_bin_dir, timeouts).
        let mut state = req.planned_state.clone();
        for name in COMPUTED {
            state.set_attr(name, req.prior_state.attr(name).clone());
        }
        resp.new_state = state;
    }

    async fn delete(&self, _req: DeleteRequest<'_, Settings>) -> Diagnostics {
        Diagnostics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(RestoreDrill.schema().check().is_empty());
    }

    #[test]
    fn reports_get_a_json_twin() {
        assert_eq!(json_key("drills/latest.md"), "drills/latest.json");
        assert_eq!(json_key("drills/latest"), "drills/latest.json");
    }

    #[test]
    fn every_computed_attribute_is_kept_on_update() {
        for a in &RestoreDrill.schema().block.attributes {
            if a.constraint == crate::protocol::schema::Constraint::Computed {
                assert!(COMPUTED.contains(&a.name.as_str()), "{}", a.name);
            }
        }
    }
}
