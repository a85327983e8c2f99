//! `data "artifortress_preflight"`: the D3 production go/no-go in one place: change window open,
//! rollback owner named, a recent backup, the API ready, no critical backlog breach, no dirty
//! migration, and pending contract (class C) migrations only when allowed.
//!
//! Every check runs (one failure does not hide the others) and is reported in `checks`; with
//! `fail_on_no_go` a no-go is an error listing the failed checks.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clients::api::{self, ApiClient};
use crate::clients::backup;
use crate::clients::gate::CheckName;
use crate::clients::gate::{Check, backup_check, owner_check, parse_window, window_check};
use crate::clients::migrations::{MigrationClass, PlanInputs};
use crate::clients::ops::{self, Severity};
use crate::duration;
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::{Number, Value};
use crate::settings::{Settings, api_diagnostic};
use crate::shared::migrations::{Observation, load_files};
use crate::shared::ops::{TOKEN_NOTE, overrides, thresholds_attribute, validate_thresholds};

pub const TYPE_NAME: &str = "artifortress_preflight";

pub struct Preflight;

fn check_type() -> Type {
    Type::object([
        ("name", Type::String),
        ("passed", Type::Bool),
        ("detail", Type::String),
    ])
}

#[async_trait]
impl DataSource<Settings> for Preflight {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            &format!("The D3 production go/no-go in one place. Runs every check and reports each in `checks`: `change_window` (open now), `rollback_owner` (named), `backup_age` (the newest backup under `backup_prefix` is younger than `max_backup_age`), `readiness` (`/health/ready` says `ready`; with `require_ready`), `backlog` (no critical breach in the ops summary), and with `migrations_dir`: `migrations_dirty` (no unfinished migration) and `contract_migrations` (pending class C migrations are listed and need `allow_contract`). With `fail_on_no_go` (the default) a no-go fails the read, listing the failed checks; in a `check` block that failure is a warning. The backlog check reads the ops summary, which writes an audit row in the service. {TOKEN_NOTE}"),
            vec![
                Attribute::optional("change_window", Type::String)
                    .description("The approved change window as an RFC 3339 interval `START/END`, e.g. `2026-12-01T22:00:00Z/2026-12-01T23:30:00Z`. Null fails the `change_window` check."),
                Attribute::optional("rollback_owner", Type::String)
                    .description("Who owns the rollback (a person or an on-call rotation). Null or blank fails the `rollback_owner` check."),
                Attribute::optional_computed("max_backup_age", Type::String)
                    .default_value("1h")
                    .validate(Validator::Duration { min_millis: 1000 })
                    .description("The newest backup's recovery point must be younger than this."),
                Attribute::optional_computed("backup_prefix", Type::String)
                    .default_value("backups/")
                    .description("Key prefix of the backups (as given to `artifortress_backup`)."),
                Attribute::optional_computed("bucket", Type::String)
                    .description("Bucket of the backups. Default: the provider's `object_storage.bucket`."),
                Attribute::optional("migrations_dir", Type::String)
                    .description("Directory of the migration files. When set, the provider's `database_url` is read for dirty migrations and pending class C migrations."),
                Attribute::optional_computed("allow_contract", Type::Bool)
                    .default_value(Value::Bool(false))
                    .description("Whether pending class C (contract) migrations are approved for this change."),
                Attribute::optional_computed("require_ready", Type::Bool)
                    .default_value(Value::Bool(true))
                    .description("Run the `readiness` check: the API must report `ready` (not `degraded`)."),
                Attribute::optional_computed("fail_on_no_go", Type::Bool)
                    .default_value(Value::Bool(true))
                    .description("Fail the read on a no-go, listing the failed checks. `false`: only report (`go`, `checks`)."),
                thresholds_attribute(),
                Attribute::computed("go", Type::Bool)
                    .description("Every check passed."),
                Attribute::computed("checks", Type::list(check_type()))
                    .description("Every check run, in order: `name`, `passed`, `detail`."),
                Attribute::computed("failed", Type::list(Type::String))
                    .description("Names of the failed checks."),
                Attribute::computed("newest_backup_id", Type::String)
                    .description("The newest backup under the prefix, or null."),
                Attribute::computed("newest_backup_age_seconds", Type::Number)
                    .description("Age of the newest backup's recovery point at read time, or null."),
                Attribute::computed("pending_migrations", Type::list(Type::object([("version", Type::String), ("class", Type::String)])))
                    .description("With `migrations_dir`: the migrations an apply would run, with their class."),
                Attribute::computed("checked_at", Type::String)
                    .description("When the checks ran (RFC 3339, UTC)."),
            ],
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = validate_thresholds(config);
        if let Some(w) = config.attr("change_window").as_str()
            && let Err(e) = parse_window(w)
        {
            diags.push(
                Diagnostic::error("Invalid change window", e.to_string()).at_attr("change_window"),
            );
        }
        diags
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let run = Run {
            settings: req.provider,
            config: &resp.state.clone(),
        };
        let outcome = tokio::select! {
            o = run.checks() => o,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error("Preflight cancelled", "Terraform was interrupted."));
            }
        };
        let state = &mut resp.state;
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
        state.set_attr("go", Value::Bool(go));
        state.set_attr(
            "checks",
            Value::List(
                outcome
                    .checks
                    .iter()
                    .map(|c| {
                        Value::object([
                            ("name", Value::from(c.name.as_str())),
                            ("passed", Value::Bool(c.passed)),
                            ("detail", Value::from(c.detail.as_str())),
                        ])
                    })
                    .collect(),
            ),
        );
        state.set_attr("failed", Value::string_list(failed.clone()));
        if let Some(b) = outcome.bucket {
            state.set_attr("bucket", b.into());
        }
        state.set_attr(
            "newest_backup_id",
            Value::opt_string(outcome.newest_backup_id),
        );
        state.set_attr(
            "newest_backup_age_seconds",
            outcome
                .newest_backup_age
                .map_or(Value::Null, |s| Value::Number(Number::from_f64(s))),
        );
        state.set_attr(
            "pending_migrations",
            match outcome.pending {
                Some(p) => Value::List(
                    p.into_iter()
                        .map(|(v, c)| {
                            Value::object([
                                ("version", Value::String(v)),
                                ("class", Value::String(c)),
                            ])
                        })
                        .collect(),
                ),
                None => Value::Null,
            },
        );
        state.set_attr(
            "checked_at",
            Value::String(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
        if !go && state.attr("fail_on_no_go").as_bool() != Some(false) {
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
    }
}

struct Run<'a> {
    settings: &'a Settings,
    config: &'a Value,
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
        out.checks.push(window_check(
            self.config.attr("change_window").as_str(),
            now,
        ));
        out.checks
            .push(owner_check(self.config.attr("rollback_owner").as_str()));
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
        let prefix = self
            .config
            .attr("backup_prefix")
            .as_str()
            .unwrap_or("backups/");
        let max_age = self
            .config
            .attr("max_backup_age")
            .as_str()
            .and_then(|s| duration::parse(s).ok())
            .unwrap_or(Duration::from_secs(3600));
        let bucket = match self
            .settings
            .need_bucket(self.config.attr("bucket").as_str(), "bucket")
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
        if self.config.attr("require_ready").as_bool() == Some(false) {
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
        let breaches: Vec<_> = ops::breaches(&summary, &overrides(self.config))
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
        let dir = self.config.attr("migrations_dir").as_str()?;
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
        let files = match load_files(Some(dir)) {
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
        let allow = self.config.attr("allow_contract").as_bool() == Some(true);
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
