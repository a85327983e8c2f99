//! `data "artifortress_preflight"`: the D3 production go/no-go in one place: change window open,
//! rollback owner named, a recent backup, the API ready, no critical backlog breach, no dirty
//! migration, and pending contract (class C) migrations only when allowed.
//!
//! Every check runs (one failure does not hide the others) and is reported in `checks`; with
//! `fail_on_no_go` a no-go is an error listing the failed checks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clients::api::{self, ApiClient};
use crate::clients::backup;
use crate::clients::gate::CheckName;
use crate::clients::gate::{Check, backup_check, owner_check, parse_window, window_check};
use crate::clients::migrations::{MigrationClass, PlanInputs};
use crate::clients::ops::{self, Severity};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::model::{DurationText, Maybe};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Settings, api_diagnostic};
use crate::shared::DEFAULT_BACKUP_PREFIX;
use crate::shared::migrations::{Observation, load_files};
use crate::shared::ops::{TOKEN_NOTE, overrides, thresholds_attribute, validate_thresholds};

pub const TYPE_NAME: &str = "artifortress_preflight";

crate::model! {
    /// `data "artifortress_preflight"` as configured and read.
    pub(crate) struct PreflightModel {
        change_window: Option<String> = Attribute::optional("change_window", Type::String)
            .description("The approved change window as an RFC 3339 interval `START/END`, e.g. `2026-12-01T22:00:00Z/2026-12-01T23:30:00Z`. Null fails the `change_window` check."),
        rollback_owner: Option<String> = Attribute::optional("rollback_owner", Type::String)
            .description("Who owns the rollback (a person or an on-call rotation). Null or blank fails the `rollback_owner` check."),
        max_backup_age: DurationText = Attribute::optional_computed("max_backup_age", Type::String)
            .default_value("1h")
            .validate(Validator::Duration { min_millis: 1000 })
            .description("The newest backup's recovery point must be younger than this."),
        backup_prefix: String = Attribute::optional_computed("backup_prefix", Type::String)
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Key prefix of the backups (as given to `artifortress_backup`)."),
        bucket: Option<String> = Attribute::optional_computed("bucket", Type::String)
            .description("Bucket of the backups. Default: the provider's `object_storage.bucket`."),
        migrations_dir: Option<String> = Attribute::optional("migrations_dir", Type::String)
            .description("Directory of the migration files. When set, the provider's `database_url` is read for dirty migrations and pending class C migrations."),
        allow_contract: bool = Attribute::optional_computed("allow_contract", Type::Bool)
            .default_value(Value::Bool(false))
            .description("Whether pending class C (contract) migrations are approved for this change."),
        require_ready: bool = Attribute::optional_computed("require_ready", Type::Bool)
            .default_value(Value::Bool(true))
            .description("Run the `readiness` check: the API must report `ready` (not `degraded`)."),
        fail_on_no_go: bool = Attribute::optional_computed("fail_on_no_go", Type::Bool)
            .default_value(Value::Bool(true))
            .description("Fail the read on a no-go, listing the failed checks. `false`: only report (`go`, `checks`)."),
        /// Passed through: validate checks every level, known or not, of every metric.
        thresholds: Value = thresholds_attribute(),
        go: Option<bool> = Attribute::computed("go", Type::Bool)
            .description("Every check passed."),
        checks: Option<Vec<CheckModel>> = Attribute::computed("checks", Type::list(CheckModel::object_type()))
            .description("Every check run, in order: `name`, `passed`, `detail`."),
        failed: Option<Vec<String>> = Attribute::computed("failed", Type::list(Type::String))
            .description("Names of the failed checks."),
        newest_backup_id: Option<String> = Attribute::computed("newest_backup_id", Type::String)
            .description("The newest backup under the prefix, or null."),
        newest_backup_age_seconds: Option<f64> = Attribute::computed("newest_backup_age_seconds", Type::Number)
            .description("Age of the newest backup's recovery point at read time, or null."),
        pending_migrations: Option<Vec<PendingModel>> =
            Attribute::computed("pending_migrations", Type::list(PendingModel::object_type()))
                .description("With `migrations_dir`: the migrations an apply would run, with their class."),
        checked_at: Option<String> = Attribute::computed("checked_at", Type::String)
            .description("When the checks ran (RFC 3339, UTC)."),
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

crate::model! {
    /// One element of `pending_migrations`.
    pub(crate) struct PendingModel {
        version: String = Attribute::computed("version", Type::String),
        class: String = Attribute::computed("class", Type::String),
    }
}

pub struct Preflight;

#[async_trait]
impl DataSource<Settings> for Preflight {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            &format!(
                "The D3 production go/no-go in one place. Runs every check and reports each in `checks`: `change_window` (open now), `rollback_owner` (named), `backup_age` (the newest backup under `backup_prefix` is younger than `max_backup_age`), `readiness` (`/health/ready` says `ready`; with `require_ready`), `backlog` (no critical breach in the ops summary), and with `migrations_dir`: `migrations_dirty` (no unfinished migration) and `contract_migrations` (pending class C migrations are listed and need `allow_contract`). With `fail_on_no_go` (the default) a no-go fails the read, listing the failed checks; in a `check` block that failure is a warning. The backlog check reads the ops summary, which writes an audit row in the service. {TOKEN_NOTE}"
            ),
            PreflightModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = validate_thresholds(config);
        // Only a value that an attribute's own validator refuses (a `max_backup_age` that is
        // not a duration) fails to convert; that validator reports it.
        if let Ok(m) = PreflightModel::planned(config)
            && let Maybe::Known(Some(w)) = &m.change_window
            && let Err(e) = parse_window(w)
        {
            diags.push(
                Diagnostic::error("Invalid change window", e.to_string()).at_attr("change_window"),
            );
        }
        diags
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let mut model = match PreflightModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => return resp.diagnostics.push(e.diagnostic("Reading the preflight")),
        };
        let run = Run {
            settings: req.provider,
            model: &model,
        };
        let outcome = tokio::select! {
            o = run.checks() => o,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error("Preflight cancelled", "Terraform was interrupted."));
            }
        };
        let go = outcome.checks.iter().all(|c| c.passed);
        let failed: Vec<String> = outcome
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.to_string())
            .collect();
        for c in &outcome.checks {
            tracing::info!(check = c.name.as_str(), passed = c.passed, detail = %c.detail, "preflight check");
        }
        model.go = Some(go);
        model.checks = Some(
            outcome
                .checks
                .iter()
                .map(|c| CheckModel {
                    name: c.name.as_str().to_string(),
                    passed: c.passed,
                    detail: c.detail.clone(),
                })
                .collect(),
        );
        model.failed = Some(failed.clone());
        if let Some(b) = outcome.bucket {
            model.bucket = Some(b);
        }
        model.newest_backup_id = outcome.newest_backup_id;
        model.newest_backup_age_seconds = outcome.newest_backup_age;
        model.pending_migrations = outcome.pending.map(|p| {
            p.into_iter()
                .map(|(version, class)| PendingModel { version, class })
                .collect()
        });
        model.checked_at = Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if !go && model.fail_on_no_go {
            let list: Vec<String> = outcome
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("  - {}: {}", c.name, c.detail))
                .collect();
            resp.diagnostics.push(
                Diagnostic::error(
                    format!("Preflight: no-go ({} of {} checks failed)", failed.len(), outcome.checks.len()),
                    format!(
                        "Failed checks:\n{}\n\nSet fail_on_no_go = false to only report, e.g. inside a check block.",
                        list.join("\n")
                    ),
                )
                .at_attr("fail_on_no_go"),
            );
        }
        resp.state = model.to_object();
    }
}

struct Run<'a> {
    settings: &'a Settings,
    model: &'a PreflightModel,
}

#[derive(Default)]
struct Outcome {
    checks: Vec<Check>,
    bucket: Option<String>,
    newest_backup_id: Option<String>,
    newest_backup_age: Option<f64>,
    pending: Option<Vec<(String, String)>>,
}

impl Run<'_> {
    async fn checks(&self) -> Outcome {
        let now = Utc::now();
        let mut out = Outcome::default();
        out.checks
            .push(window_check(self.model.change_window.as_deref(), now));
        out.checks
            .push(owner_check(self.model.rollback_owner.as_deref()));
        let api = self.settings.api_client(None);
        let (backup, readiness, backlog, migrations) = tokio::join!(
            self.backup(
                now,
                &mut out.bucket,
                &mut out.newest_backup_id,
                &mut out.newest_backup_age
            ),
            self.readiness(&api),
            self.backlog(&api),
            self.migrations(),
        );
        out.checks.push(backup);
        if let Some(r) = readiness {
            out.checks.push(r);
        }
        out.checks.push(backlog);
        if let Some((checks, pending)) = migrations {
            out.checks.extend(checks);
            out.pending = pending;
        }
        out
    }

    async fn backup(
        &self,
        now: DateTime<Utc>,
        bucket_out: &mut Option<String>,
        id_out: &mut Option<String>,
        age_out: &mut Option<f64>,
    ) -> Check {
        let prefix = self.model.backup_prefix.as_str();
        // `gate::backup_check` is the comparison the production release gate makes too, with
        // other limits: here the newest backup under the prefix against `max_backup_age`
        // (default 1 h); in `artifortress_release` its `backup_id` against a fixed 24 h.
        let max_age = self.model.max_backup_age.get();
        let bucket = match self
            .settings
            .need_bucket(self.model.bucket.as_deref(), "bucket")
        {
            Ok(b) => b,
            Err(d) => {
                return Check::new(
                    CheckName::BackupAge,
                    false,
                    format!("{}: {}", d.summary, d.detail),
                );
            }
        };
        *bucket_out = Some(bucket.clone());
        let s3 = match self.settings.object_store() {
            Ok(c) => c,
            Err(d) => {
                return Check::new(
                    CheckName::BackupAge,
                    false,
                    format!("{}: {}", d.summary, d.detail),
                );
            }
        };
        match backup::list(&s3, &bucket, prefix).await {
            Ok(list) => {
                let newest = list.last();
                *id_out = newest.map(|m| m.id.clone());
                *age_out = newest
                    .map(|m| ((now - m.snapshot_at).num_milliseconds() as f64 / 1000.0).max(0.0));
                backup_check(newest, prefix, max_age, now)
            }
            Err(e) => Check::new(
                CheckName::BackupAge,
                false,
                format!("cannot list backups under {bucket}/{prefix}: {e}"),
            ),
        }
    }

    async fn readiness(&self, api: &Result<ApiClient, Diagnostic>) -> Option<Check> {
        if !self.model.require_ready {
            return None;
        }
        let client = match api {
            Ok(c) => c,
            Err(d) => {
                return Some(Check::new(
                    CheckName::Readiness,
                    false,
                    format!("{}: {}", d.summary, d.detail),
                ));
            }
        };
        Some(match client.ready(self.settings.request_timeout).await {
            Ok(r) if r.body.status == api::READY => Check::new(CheckName::Readiness, true, "ready"),
            Ok(r) => {
                let unhealthy: Vec<String> = r
                    .body
                    .dependencies
                    .iter()
                    .filter(|d| !d.healthy)
                    .map(|d| format!("{} {}", d.name, d.status))
                    .collect();
                Check::new(
                    CheckName::Readiness,
                    false,
                    format!(
                        "status {:?} (HTTP {}), not \"ready\"{}",
                        r.body.status,
                        r.http_status,
                        if unhealthy.is_empty() {
                            String::new()
                        } else {
                            format!("; unhealthy: {}", unhealthy.join(", "))
                        }
                    ),
                )
            }
            Err(e) => Check::new(CheckName::Readiness, false, e.to_string()),
        })
    }

    async fn backlog(&self, api: &Result<ApiClient, Diagnostic>) -> Check {
        let fail = |d: Diagnostic| {
            Check::new(
                CheckName::Backlog,
                false,
                format!("{}: {}", d.summary, d.detail),
            )
        };
        let client = match api {
            Ok(c) => c,
            Err(d) => return fail(d.clone()),
        };
        let token = match self.settings.admin_token() {
            Ok(t) => t,
            Err(d) => return fail(d),
        };
        let summary = match client.ops_summary(&token).await {
            Ok(s) => s,
            Err(e) => return fail(api_diagnostic("Reading the ops summary", &e)),
        };
        // Readiness has its own check (and `require_ready` may turn it off).
        let breaches: Vec<_> = ops::breaches(&summary, &overrides(&self.model.thresholds))
            .into_iter()
            .filter(|b| b.metric != ops::READINESS_METRIC)
            .collect();
        let critical: Vec<String> = breaches
            .iter()
            .filter(|b| b.severity == Severity::Critical)
            .map(|b| b.detail.clone())
            .collect();
        let warnings: Vec<String> = breaches
            .iter()
            .filter(|b| b.severity == Severity::Warning)
            .map(|b| b.detail.clone())
            .collect();
        let mut detail = if critical.is_empty() {
            "no critical backlog breach".to_string()
        } else {
            format!("critical: {}", critical.join("; "))
        };
        if !warnings.is_empty() {
            detail.push_str(&format!(" (warnings: {})", warnings.join("; ")));
        }
        Check::new(CheckName::Backlog, critical.is_empty(), detail)
    }

    /// `(checks, pending)` with `migrations_dir`, else `None`.
    async fn migrations(&self) -> Option<(Vec<Check>, Option<Vec<(String, String)>>)> {
        let dir = self.model.migrations_dir.as_deref()?;
        let both_fail = |detail: String| {
            Some((
                vec![
                    Check::new(CheckName::MigrationsDirty, false, detail.clone()),
                    Check::new(CheckName::ContractMigrations, false, detail),
                ],
                None,
            ))
        };
        let url = match self
            .settings
            .need_database_url(&Value::Null, "migrations_dir")
        {
            Ok(u) => u,
            Err(d) => return both_fail(format!("{}: {}", d.summary, d.detail)),
        };
        let files = match load_files(Some(dir), &std::collections::BTreeMap::new()) {
            Ok(f) => f,
            Err(f) => return both_fail(diags_text(&f.diagnostics)),
        };
        let obs = match Observation::take(
            &url,
            files,
            &PlanInputs::default(),
            self.settings.request_timeout,
        )
        .await
        {
            Ok(o) => o,
            Err(f) => return both_fail(diags_text(&f.diagnostics)),
        };
        let dirty = obs.dirty_versions();
        let dirty_check = if dirty.is_empty() {
            Check::new(CheckName::MigrationsDirty, true, "no unfinished migration")
        } else {
            Check::new(
                CheckName::MigrationsDirty,
                false,
                format!(
                    "unfinished (dirty) migrations: {}; see data \"artifortress_migrations\" for the remedy",
                    dirty.join(", ")
                ),
            )
        };
        let pending: Vec<(String, String)> = obs
            .pending()
            .iter()
            .map(|p| (p.version.clone(), p.class.to_string()))
            .collect();
        let contract: Vec<&str> = obs
            .pending()
            .iter()
            .filter(|p| p.class == MigrationClass::C)
            .map(|p| p.version.as_str())
            .collect();
        let allow = self.model.allow_contract;
        let contract_check = match (&obs.plan, contract.is_empty()) {
            (Err(problems), _) => Check::new(
                CheckName::ContractMigrations,
                false,
                format!(
                    "the migrations cannot be planned: {}",
                    problems
                        .iter()
                        .map(|p| p.summary())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            (Ok(_), true) => Check::new(
                CheckName::ContractMigrations,
                true,
                format!("{} pending, none of class C", pending.len()),
            ),
            (Ok(_), false) => Check::new(
                CheckName::ContractMigrations,
                allow,
                format!(
                    "pending class C (contract; rollback means restore): {}{}",
                    contract.join(", "),
                    if allow {
                        " — approved (allow_contract)"
                    } else {
                        " — set allow_contract = true once approved"
                    }
                ),
            ),
        };
        Some((vec![dirty_check, contract_check], Some(pending)))
    }
}

fn diags_text(d: &Diagnostics) -> String {
    d.iter()
        .map(|d| format!("{}: {}", d.summary, d.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_schema_is_valid() {
        assert!(Preflight.schema().check().is_empty());
    }

    #[test]
    fn the_window_is_start_inclusive_end_exclusive() {
        let w = Some("2026-12-01T22:00:00Z/2026-12-01T23:30:00Z");
        assert!(!window_check(w, t("2026-12-01T21:59:59Z")).passed);
        assert!(window_check(w, t("2026-12-01T22:00:00Z")).passed);
        assert!(window_check(w, t("2026-12-01T23:29:59Z")).passed);
        let closed = window_check(w, t("2026-12-01T23:30:00Z"));
        assert!(!closed.passed);
        assert!(closed.detail.contains("closed"), "{}", closed.detail);
        assert!(
            window_check(w, t("2026-12-01T21:00:00Z"))
                .detail
                .contains("opens at 2026-12-01T22:00:00Z")
        );
        assert!(!window_check(None, t("2026-12-01T22:00:00Z")).passed);
        assert!(parse_window("2026-12-01T23:00:00Z/2026-12-01T22:00:00Z").is_err());
        assert!(parse_window("2026-12-01T23:00:00Z").is_err());
        assert!(parse_window("2026-12-01T22:00:00+01:00/2026-12-01T23:00:00+01:00").is_ok());
    }

    #[test]
    fn a_blank_owner_is_no_owner() {
        assert!(!owner_check(Some("  ")).passed);
        assert!(!owner_check(None).passed);
        assert!(owner_check(Some("oncall-platform")).passed);
    }
}
