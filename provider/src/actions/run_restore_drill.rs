//! `action "artifortress_run_restore_drill"`: a restore drill now (D6), by the same engine as
//! `resource "artifortress_restore_drill"` (`clients::restore`: download and check, re-create,
//! restore, parity, RTO / true RPO, the report in the shape of the service's
//! `scripts/phase6-drill.sh` report), against a given backup or the newest one under a prefix.
//! Each step is a progress event, then the report itself; it is also written to a local file
//! (`report_file`, where the service's preflight looks for it) and to the bucket
//! (`report_object_key`) when asked. A FAIL fails the invocation unless
//! `fail_on_breach = false`. Nothing is kept in Terraform's state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::bytes_text;
use crate::clients::backup::{self, PARITY_TABLES};
use crate::clients::object_store;
use crate::clients::pg::{database_identity, valid_identifier};
use crate::clients::restore::{self, DrillError, DrillReport, DrillSpec, DrillStage};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, Action, InvokeActionRequest, PlanActionRequest, Progress, Stopped,
};
use crate::protocol::model::{Maybe, ToValue};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::{DEFAULT_BACKUP_PREFIX, DEFAULT_DRILL_DATABASE, timestamp_text};

pub const TYPE_NAME: &str = "artifortress_run_restore_drill";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

crate::model! {
    /// `action "artifortress_run_restore_drill"` as configured.
    pub(crate) struct RunRestoreDrillModel {
        backup_id: Option<String> = Attribute::optional("backup_id", Type::String)
            .validate(Validator::NotEmpty)
            .description("The backup to restore: a backup's id (found under `prefix` or, when it is not there, under whichever prefix holds its manifest) or its `object_key`. Unset: the newest backup under `prefix` (by its recovery point)."),
        bucket: Option<String> = Attribute::optional("bucket", Type::String)
            .description("Bucket of the backup (and of `report_object_key`). Default: the provider's `object_storage.bucket`."),
        prefix: String = Attribute::optional_computed("prefix", Type::String)
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Where the newest backup is looked for when `backup_id` is unset, and where an id is looked for first."),
        admin_database_url: Option<String> = Attribute::optional("admin_database_url", Type::String)
            .sensitive()
            .description("PostgreSQL URL of a role that may create and drop databases, on the server to restore to. Default: the provider's `database_url`. Its own database is never the drill database. An action's configuration is never stored in state; an ephemeral value may be given."),
        drill_database: String = Attribute::optional_computed("drill_database", Type::String)
            .default_value(DEFAULT_DRILL_DATABASE)
            .description("The scratch database: its sessions are terminated, it is dropped and re-created, then restored into. Must match `^[A-Za-z_][A-Za-z0-9_]*$` and never be the backup's source database (checked at plan time where known, and again before anything is dropped)."),
        /// An element that is not a string (unknown in a plan) is left out.
        parity_tables: Vec<Option<String>> = Attribute::optional_computed("parity_tables", Type::list(Type::String))
            .default_value(default_tables())
            .description("Tables whose row counts must equal the backup's (read in its snapshot). Default: the service's ten."),
        rto_target_seconds: f64 = Attribute::optional_computed("rto_target_seconds", Type::Number)
            .default_value(Value::int(900))
            .description("RTO target: drill start to a verified restore."),
        rpo_target_seconds: f64 = Attribute::optional_computed("rpo_target_seconds", Type::Number)
            .default_value(Value::int(300))
            .description("RPO target: the age of the backup's recovery point at drill time."),
        keep_drill_database: bool = Attribute::optional_computed("keep_drill_database", Type::Bool)
            .default_value(false)
            .description("Keep the restored database after the drill (default: drop it)."),
        report_file: Option<String> = Attribute::optional("report_file", Type::String)
            .validate(Validator::NotEmpty)
            .description("Also write the Markdown report to this local file, e.g. `docs/reports/phase6-rto-rpo-drill-latest.md`, where the service's `scripts/production-preflight.sh` requires it. A relative path is relative to the directory Terraform runs in. Parent directories are created; the file is written atomically, also when the drill FAILs (as the service's script does)."),
        report_object_key: Option<String> = Attribute::optional("report_object_key", Type::String)
            .validate(Validator::NotEmpty)
            .description("Also write the Markdown report to this key in the bucket, and its JSON twin beside it (`.md` replaced by `.json`), also when the drill FAILs."),
        fail_on_breach: bool = Attribute::optional_computed("fail_on_breach", Type::Bool)
            .default_value(true)
            .description("A FAIL (RTO, RPO or data verification) fails the invocation, and with it the apply, with the report in the error. `false`: a FAIL is a warning and the apply goes on."),
        postgres_bin_dir: Option<String> = Attribute::optional("postgres_bin_dir", Type::String)
            .description("Directory holding `pg_restore` and `psql`. Default: PATH."),
        timeouts: Value = framework::timeouts_attribute(&["invoke"]),
    }
}

pub struct RunRestoreDrill;

#[async_trait]
impl Action<Settings> for RunRestoreDrill {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Runs a backup/restore drill (D6) now, with the engine of \
             `artifortress_restore_drill`: downloads a backup (a given one, or the newest under \
             a prefix) checking its sha256, restores it into a freshly re-created drill \
             database with errors fatal, compares the parity tables' row counts and the \
             migration head with those the backup took in its own snapshot, measures RTO and \
             the true RPO against their targets, and drops the drill database. Each step is \
             printed as it happens, then the report in the shape of the service's own drill \
             report, which can also go to a local file and to the bucket. A FAIL fails the \
             invocation unless `fail_on_breach = false`. Nothing is kept in Terraform's state. \
             Needs Terraform 1.14 or later.",
            RunRestoreDrillModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let config = match RunRestoreDrillModel::planned(config) {
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

    async fn plan(&self, req: PlanActionRequest<'_, Settings>) -> Diagnostics {
        // Never the source: refuse at plan time what is known to be the service's database or
        // the admin connection's own.
        let config = match RunRestoreDrillModel::planned(req.config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid restore drill configuration").into(),
        };
        let Maybe::Known(drill) = &config.drill_database else {
            return Diagnostics::new();
        };
        let settings = req.provider;
        let admin = settings
            .database_url_for(&config.admin_database_url.to_value(&Type::String))
            .ok()
            .flatten();
        let source = settings.database_url_for(&Value::Null).ok().flatten();
        let Some(admin_id) = admin.as_deref().and_then(|a| database_identity(a).ok()) else {
            return Diagnostics::new();
        };
        let (server, admin_db) = admin_id.rsplit_once('/').unwrap_or((&admin_id, ""));
        let target = format!("{server}/{drill}");
        let source_id = source.as_deref().and_then(|s| database_identity(s).ok());
        if admin_db == drill || source_id.as_deref() == Some(target.as_str()) {
            return Diagnostic::error(
                "The drill database is the source database",
                format!(
                    "drill_database {drill:?} on {server} is {}: the drill drops and re-creates its database, so it must be a scratch database.",
                    if admin_db == drill {
                        "the admin connection's own database"
                    } else {
                        "the service's database (the provider's database_url)"
                    }
                ),
            )
            .at_attr("drill_database")
            .into();
        }
        Diagnostics::new()
    }

    async fn invoke(&self, req: InvokeActionRequest<'_, Settings>) -> Diagnostics {
        let settings = req.provider;
        let config = match RunRestoreDrillModel::from_config(req.config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid restore drill configuration").into(),
        };
        let admin_url = match settings.need_database_url(
            &Value::opt_string(config.admin_database_url.clone()),
            "admin_database_url",
        ) {
            Ok(u) => u,
            Err(d) => return d.into(),
        };
        let bucket = match settings.need_bucket(config.bucket.as_deref(), "bucket") {
            Ok(b) => b,
            Err(d) => return d.into(),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return d.into(),
        };
        let manifest_key = match &config.backup_id {
            Some(id) => match restore::find_manifest_key(&s3, &bucket, id, &config.prefix).await {
                Ok(k) => k,
                Err(e) => return drill_diagnostic(&e).into(),
            },
            None => match backup::list(&s3, &bucket, &config.prefix).await {
                Ok(all) => match all.last() {
                    Some(newest) => {
                        req.progress.send(format!(
                            "newest of {} backup(s) under s3://{bucket}/{}: {} (recovery point {})",
                            all.len(),
                            config.prefix,
                            newest.id,
                            timestamp_text(newest.snapshot_at)
                        ));
                        newest.manifest_key.clone()
                    }
                    None => {
                        return Diagnostic::error(
                            "No backup to drill",
                            format!(
                                "There is no backup manifest under s3://{bucket}/{}. Take a backup first (artifortress_backup, or action artifortress_take_backup), or set backup_id.",
                                config.prefix
                            ),
                        )
                        .at_attr("prefix")
                        .into();
                    }
                },
                Err(e) => {
                    return Diagnostic::error("Cannot list the backups", e.to_string())
                        .at_attr("prefix")
                        .into();
                }
            },
        };
        let spec = DrillSpec {
            bucket: bucket.clone(),
            manifest_key,
            admin_url,
            drill_database: config.drill_database.clone(),
            parity_tables: config.parity_tables.iter().flatten().cloned().collect(),
            rto_target_seconds: config.rto_target_seconds,
            rpo_target_seconds: config.rpo_target_seconds,
            keep_drill_database: config.keep_drill_database,
            bin_dir: config.postgres_bin_dir.as_deref().map(PathBuf::from),
            connect_timeout: settings.request_timeout,
        };
        let limit = framework::timeout(req.config, "invoke", DEFAULT_TIMEOUT);
        let progress = req.progress;
        let on_stage = |stage: DrillStage<'_>| progress.send(stage_message(stage));
        let (s3_ref, spec_ref, on_stage_ref) = (&s3, &spec, &on_stage);
        let (result, stopped) = framework::run_bounded(
            req.ctx,
            limit,
            |stop| async move { restore::run_watched(s3_ref, spec_ref, &stop, on_stage_ref).await },
            framework::nothing_more,
        )
        .await;
        let report = match (result, stopped) {
            (Ok(r), _) => r,
            (Err(e), Some(Stopped::TimedOut)) => {
                return Diagnostic::error(
                    "Restore drill timed out",
                    format!(
                        "The drill did not finish within the invoke timeout ({}). {e}",
                        crate::duration::format(limit)
                    ),
                )
                .at_attr("timeouts")
                .into();
            }
            (Err(e), _) => return drill_diagnostic(&e).into(),
        };
        finish(&config, &s3, &bucket, &report, progress).await
    }
}

/// The report as events, to the file and the bucket, and the verdict.
async fn finish(
    config: &RunRestoreDrillModel,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    report: &DrillReport,
    progress: &Progress,
) -> Diagnostics {
    let markdown = report.markdown();
    progress.send(markdown.trim_end().to_string());
    let mut diags = Diagnostics::new();
    // Written whatever the verdict, as the service's script writes its report before it exits
    // 1 on a FAIL (scripts/phase6-drill.sh:108-114).
    if let Some(key) = &config.report_object_key {
        let json = serde_json::to_vec_pretty(report).unwrap_or_default();
        for (k, body, ty) in [
            (
                key.to_string(),
                markdown.clone().into_bytes(),
                "text/markdown; charset=utf-8",
            ),
            (json_key(key), json, "application/json"),
        ] {
            match object_store::put_small(s3, bucket, &k, body, ty).await {
                Ok(()) => progress.send(format!("report written to s3://{bucket}/{k}")),
                Err(e) => diags.push(
                    Diagnostic::error("Cannot write the drill report", e.to_string())
                        .at_attr("report_object_key"),
                ),
            }
        }
    }
    if let Some(file) = &config.report_file {
        match restore::write_report_file(Path::new(file), &markdown) {
            Ok(()) => progress.send(format!("report written to {file}")),
            Err(e) => diags.push(
                Diagnostic::error(
                    "Cannot write the drill report file",
                    format!("{e}. The drill itself ran; its report was printed above."),
                )
                .at_attr("report_file"),
            ),
        }
    }
    if report.passed {
        progress.send(format!(
            "drill PASSED: RTO {:.1}s (target {:.0}s), RPO {:.1}s (target {:.0}s), {} parity table(s) match",
            report.rto_seconds,
            report.rto_target_seconds,
            report.rpo_seconds,
            report.rpo_target_seconds,
            report.actual_counts.len()
        ));
    } else if config.fail_on_breach {
        diags.push(Diagnostic::error("Restore drill FAILED", markdown).at_attr("fail_on_breach"));
    } else {
        diags.push(
            Diagnostic::warning(
                "Restore drill FAILED",
                format!("fail_on_breach = false, so the apply goes on.\n\n{markdown}"),
            )
            .at_attr("fail_on_breach"),
        );
    }
    diags
}

fn stage_message(stage: DrillStage<'_>) -> String {
    match stage {
        DrillStage::Downloading {
            backup_id,
            object_key,
            size_bytes,
        } => format!(
            "drilling backup {backup_id}: downloading {object_key} ({})",
            bytes_text(size_bytes)
        ),
        DrillStage::Downloaded { seconds } => {
            format!("downloaded in {seconds:.1}s; sha256 matches the manifest")
        }
        DrillStage::Restoring { database, tool } => {
            format!("drill database {database} re-created; restoring with {tool}")
        }
        DrillStage::Restored { seconds } => format!("restored in {seconds:.1}s"),
        DrillStage::Counted { tables, mismatches } => format!(
            "counted {tables} parity table(s) in the restored database: {mismatches} mismatch(es)"
        ),
    }
}

fn default_tables() -> Value {
    Value::List(
        PARITY_TABLES
            .iter()
            .map(|t| Value::String(t.to_string()))
            .collect(),
    )
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
        let schema = RunRestoreDrill.schema();
        assert!(schema.check().is_empty(), "{:?}", schema.check());
        assert!(framework::check_action_schema(TYPE_NAME, &schema).is_empty());
    }

    #[tokio::test]
    async fn bad_names_and_targets_are_refused_at_validate() {
        let mut config = Value::null_object(&RunRestoreDrillModel::object_type());
        config.set_attr("drill_database", "drop table".into());
        config.set_attr("rpo_target_seconds", Value::int(0));
        let d = RunRestoreDrill.validate(&config).await;
        let paths: Vec<String> = d
            .iter()
            .map(|d| d.attribute.clone().unwrap().to_string())
            .collect();
        assert_eq!(paths, ["drill_database", "rpo_target_seconds"]);
        // Unknown values wait for the plan.
        config.set_attr("drill_database", Value::unknown());
        config.set_attr("rpo_target_seconds", Value::unknown());
        assert!(RunRestoreDrill.validate(&config).await.is_empty());
    }

    #[test]
    fn stages_read_as_progress_lines() {
        assert_eq!(
            stage_message(DrillStage::Downloading {
                backup_id: "20261205T010000Z-ab",
                object_key: "backups/20261205T010000Z-ab.dump",
                size_bytes: 2048,
            }),
            "drilling backup 20261205T010000Z-ab: downloading backups/20261205T010000Z-ab.dump (2.0 KiB)"
        );
        assert_eq!(
            stage_message(DrillStage::Counted {
                tables: 10,
                mismatches: 1
            }),
            "counted 10 parity table(s) in the restored database: 1 mismatch(es)"
        );
    }

    #[test]
    fn errors_point_at_the_attribute_they_are_about() {
        let e = DrillError::NoBackup {
            bucket: "b".into(),
            id: "nope".into(),
            tried: "backups/nope.manifest.json".into(),
        };
        let d = drill_diagnostic(&e);
        assert_eq!(d.attribute.unwrap().to_string(), "backup_id");
        assert!(d.detail.contains("no backup \"nope\""), "{}", d.detail);
        assert_eq!(json_key("drills/latest.md"), "drills/latest.json");
    }
}
