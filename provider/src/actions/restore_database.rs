//! `action "artifortress_restore_database"`: a backup restored into the LIVE database, the
//! runbook's way back after a class C (contract) migration (the service's
//! docs/25-upgrade-rollback-runbook.md, "Rollback Procedure" step 3, lines 70-74 at
//! f628e74d), joining `clients::restore_database` to Terraform. Each step is a progress event.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::clients::backup::{BackupSpec, Compression, Format};
use crate::clients::migrations::load_dir;
use crate::clients::pg::database_identity;
use crate::clients::restore;
use crate::clients::restore_database::{self, RestoreError, RestoreSpec};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{Action, InvokeActionRequest, PlanActionRequest};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::DEFAULT_BACKUP_PREFIX;

pub const TYPE_NAME: &str = "artifortress_restore_database";

crate::model! {
    /// `artifortress_restore_database`'s configuration.
    pub(crate) struct RestoreDatabaseModel {
        backup_id: String = Attribute::required("backup_id", Type::String)
            .description("The backup to restore: its id (`artifortress_backup.<name>.id`), looked for under `prefix` first and then anywhere in the bucket, or its dump's object key."),
        confirm: String = Attribute::required("confirm", Type::String)
            .description("Must equal the name of the database the restore replaces (the last path component of `database_url`): the restore drops that database. Anything else refuses the invocation before anything is touched (checked at plan when the URL is known)."),
        migrations_dir: Option<String> = Attribute::optional("migrations_dir", Type::String)
            .description("The migration files the database is migrated with (the directory `artifortress_migration` reads). The backup's migration head must be one of them: a backup whose head is newer than the newest file (a schema no file describes) or not among them (another migration set) is refused. One of `migrations_dir` and `migrations` is required."),
        migrations: Option<Vec<String>> = Attribute::optional("migrations", Type::list(Type::String))
            .description("The same as `migrations_dir`, as file names (e.g. `keys(artifortress_migration.schema.applied_classes)`)."),
        minimum_head: Option<String> = Attribute::optional("minimum_head", Type::String)
            .description("The oldest migration head acceptable: what runs after the restore needs at least this schema (e.g. the `requires_schema` of the release you go back to). A backup older than it is refused. Default: no lower bound."),
        safety_backup: bool = Attribute::optional_computed("safety_backup", Type::Bool)
            .default_value(Value::Bool(true))
            .description("Take a backup of the live database as it is, with the same engine and manifest as `artifortress_backup`, before anything is dropped (default true); its id is reported as a progress event and named in any error after the drop. `false` only when the live database is beyond saving."),
        safety_backup_prefix: Option<String> = Attribute::optional("safety_backup_prefix", Type::String)
            .description("Key prefix of the safety backup. Default: `prefix` with `-safety/` in place of its trailing `/` (`backups/` → `backups-safety/`): outside `prefix`, so the safety backup (of the database as it was, perhaps damaged) never becomes the newest backup there that a drill or `data.artifortress_backups` would pick."),
        bucket: Option<String> = Attribute::optional("bucket", Type::String)
            .description("Bucket of the backup (and of the safety backup). Default: the provider's `object_storage.bucket`."),
        prefix: String = Attribute::optional_computed("prefix", Type::String)
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Where to look first for `backup_id`."),
        database_url: Option<String> = Attribute::optional("database_url", Type::String)
            .sensitive()
            .description("PostgreSQL URL of the live database to replace; its role restores the dump (and so owns what is restored) and the safety backup is read through it. Default: the provider's `database_url`."),
        admin_database_url: Option<String> = Attribute::optional("admin_database_url", Type::String)
            .sensitive()
            .description("A role that may terminate the database's sessions, drop it and create it, connected to another database of the same server. Default: `database_url` on the `postgres` database."),
        postgres_bin_dir: Option<String> = Attribute::optional("postgres_bin_dir", Type::String)
            .description("Directory of `pg_dump`, `pg_restore` and `psql`. Default: found on PATH."),
    }
}

pub struct RestoreDatabase;

/// The live database's name in `url` (what `confirm` must be).
fn database_name(url: &str) -> Option<String> {
    database_identity(url)
        .ok()
        .and_then(|i| i.rsplit('/').next().map(str::to_string))
}

/// The safety backup's default prefix: beside `prefix`, not under it.
fn safety_prefix(prefix: &str) -> String {
    format!("{}-safety/", prefix.trim_end_matches('/'))
}

fn error_attr(e: &RestoreError) -> &'static str {
    match e {
        RestoreError::NotConfirmed { .. } | RestoreError::BadName { .. } => "confirm",
        RestoreError::NoHead { .. }
        | RestoreError::HeadNewer { .. }
        | RestoreError::NoMigrations { .. }
        | RestoreError::HeadUnknown { .. } => "migrations_dir",
        RestoreError::HeadOlder { .. } => "minimum_head",
        RestoreError::NoManifest { .. } => "backup_id",
        RestoreError::SafetyBackup(_) => "safety_backup",
        RestoreError::InvalidUrl { .. } => "database_url",
        _ => "backup_id",
    }
}

#[async_trait]
impl Action<Settings> for RestoreDatabase {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Restores a backup into the LIVE database: the service's way back after a class C (contract) migration (docs/25-upgrade-rollback-runbook.md, Rollback Procedure step 3: restore from the latest backup, `make db-restore`, which its scripts/db-restore.sh does as terminate, drop, create, restore). In order, each step a progress event: refused unless `confirm` equals the database's name and the backup's migration head is among the migration files given and not older than `minimum_head`; the dump downloaded and its sha256 checked against the manifest; a safety backup of the live database (unless `safety_backup = false`); the database's sessions terminated, the database dropped (`WITH (FORCE)` on PostgreSQL 13+) and created again with the same owner; the dump restored as `database_url`'s role (`pg_restore --exit-on-error`, or `psql --single-transaction`); the row counts of the parity tables and the migration head compared with the manifest's. Stop the API and the worker first (the runbook's step 1): their pools would reconnect to a database being restored. Nothing is kept in state. Terraform >= 1.14: `terraform apply -invoke=action.artifortress_restore_database.<name>`.",
            RestoreDatabaseModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        let dir = config.attr("migrations_dir");
        let list = config.attr("migrations");
        if dir.is_null() && list.is_null() {
            diags.push(
                Diagnostic::error(
                    "Migrations required",
                    "Set migrations_dir (or migrations): the backup's migration head is checked against the files before anything is restored.",
                )
                .at_attr("migrations_dir"),
            );
        } else if !dir.is_null() && !list.is_null() {
            diags.push(
                Diagnostic::error(
                    "Conflicting arguments",
                    "Set migrations_dir or migrations, not both.",
                )
                .at_attr("migrations"),
            );
        }
        diags
    }

    async fn plan(&self, req: PlanActionRequest<'_, Settings>) -> Diagnostics {
        let mut diags = Diagnostics::new();
        // The confirmation, refused now when both sides are known.
        let (Some(confirm), Ok(Some(url))) = (
            req.config.attr("confirm").as_str(),
            req.provider
                .database_url_for(req.config.attr("database_url")),
        ) else {
            return diags;
        };
        if let Some(name) = database_name(&url)
            && confirm != name
        {
            diags.push(
                Diagnostic::error(
                    "Restore not confirmed",
                    RestoreError::NotConfirmed {
                        confirm: confirm.to_string(),
                        database: name,
                    }
                    .to_string(),
                )
                .at_attr("confirm"),
            );
        }
        diags
    }

    async fn invoke(&self, req: InvokeActionRequest<'_, Settings>) -> Diagnostics {
        let mut diags = Diagnostics::new();
        let settings = req.provider;
        let c = match RestoreDatabaseModel::from_config(req.config) {
            Ok(c) => c,
            Err(e) => {
                diags.push(e.diagnostic("Invalid restore_database configuration"));
                return diags;
            }
        };
        let database_url = match settings
            .need_database_url(&Value::opt_string(c.database_url.clone()), "database_url")
        {
            Ok(u) => u,
            Err(d) => {
                diags.push(d);
                return diags;
            }
        };
        let bucket = match settings.need_bucket(c.bucket.as_deref(), "bucket") {
            Ok(b) => b,
            Err(d) => {
                diags.push(d);
                return diags;
            }
        };
        let s3 = match settings.object_store() {
            Ok(s) => s,
            Err(d) => {
                diags.push(d);
                return diags;
            }
        };
        let migrations: Vec<String> = match (&c.migrations_dir, &c.migrations) {
            (Some(dir), _) => match load_dir(std::path::Path::new(dir)) {
                Ok(files) => files.into_iter().map(|f| f.version).collect(),
                Err(e) => {
                    diags.push(
                        Diagnostic::error("Cannot read the migrations", e.to_string())
                            .at_attr("migrations_dir"),
                    );
                    return diags;
                }
            },
            (None, Some(list)) => list.clone(),
            (None, None) => Vec::new(),
        };
        let manifest_key =
            match restore::find_manifest_key(&s3, &bucket, &c.backup_id, &c.prefix).await {
                Ok(k) => k,
                Err(e) => {
                    diags.push(
                        Diagnostic::error("Backup not found", e.to_string()).at_attr("backup_id"),
                    );
                    return diags;
                }
            };
        let bin_dir = c.postgres_bin_dir.as_deref().map(PathBuf::from);
        let safety_backup = c.safety_backup.then(|| BackupSpec {
            bucket: bucket.clone(),
            prefix: c
                .safety_backup_prefix
                .clone()
                .unwrap_or_else(|| safety_prefix(&c.prefix)),
            format: Format::Custom,
            compression: Compression::Zstd,
            labels: [
                ("purpose".to_string(), "safety-before-restore".to_string()),
                ("restoring".to_string(), c.backup_id.clone()),
            ]
            .into(),
            verify: true,
            pg_dump: bin_dir
                .as_ref()
                .map_or_else(|| PathBuf::from("pg_dump"), |d| d.join("pg_dump")),
            connect_timeout: settings.request_timeout,
        });
        let spec = RestoreSpec {
            bucket,
            manifest_key,
            database_url,
            admin_url: c.admin_database_url.clone(),
            confirm: c.confirm.clone(),
            migrations,
            minimum_head: c.minimum_head.clone(),
            safety_backup,
            bin_dir,
            connect_timeout: settings.request_timeout,
        };
        let progress = req.progress.clone();
        let cancel = req.ctx.cancel.child_token();
        let result = restore_database::run(
            &s3,
            &spec,
            &mut |p| progress.send(format!("{}: {}", p.step.as_str(), p.message)),
            &cancel,
        )
        .await;
        match result {
            Ok(r) => req.progress.send(format!(
                "restored backup {} into {} in {:.1}s; {} table counts verified{}",
                r.backup_id,
                r.database,
                r.total_seconds,
                r.actual_counts.len(),
                match &r.safety_backup_id {
                    Some(id) => format!("; the database as it was is in safety backup {id}"),
                    None => String::new(),
                }
            )),
            Err(e) => diags.push(
                Diagnostic::error("Database restore failed", e.to_string()).at_attr(error_attr(&e)),
            ),
        }
        diags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framework;

    #[test]
    fn the_schema_is_a_valid_action_schema() {
        let s = RestoreDatabase.schema();
        assert!(!framework::check_action_schema(TYPE_NAME, &s).has_errors());
    }

    #[test]
    fn the_safety_backup_goes_beside_the_prefix_not_under_it() {
        assert_eq!(safety_prefix("backups/"), "backups-safety/");
        assert_eq!(safety_prefix("nightly/eu/"), "nightly/eu-safety/");
        assert!(!safety_prefix("backups/").starts_with("backups/"));
    }

    #[test]
    fn confirm_is_compared_with_the_urls_database_name() {
        assert_eq!(
            database_name("postgres://u:p@db:5432/artifortress?sslmode=disable").as_deref(),
            Some("artifortress")
        );
    }
}
