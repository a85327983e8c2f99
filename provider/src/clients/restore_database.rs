//! Restoring a backup into the LIVE database: the way back after a contract (class C)
//! migration, the service's runbook `docs/25-upgrade-rollback-runbook.md` "Rollback
//! Procedure" step 3 (lines 70-74 at f628e74d: "If schema/data rollback is required, restore
//! from latest backup", `make db-restore`), which its `scripts/db-restore.sh:26-36` does as:
//! terminate the database's sessions, drop it, create it, restore into it. Knows nothing of
//! Terraform.
//!
//! One restore, in this order (each step reported through the progress callback):
//! 1. **Refusals**, before anything is touched: `confirm` must equal the live database's name;
//!    the backup's manifest must exist and record a migration head; that head must be one of
//!    the migration files given ([`RestoreSpec::migrations`]), so it is neither newer than
//!    the newest of them (a schema no file describes) nor a name they do not have; and it
//!    must not be older than [`RestoreSpec::minimum_head`] (the schema what runs after the
//!    restore needs, e.g. the previous release's `requires_schema`; none: no lower bound).
//! 2. **Download** the dump and check its sha256 against the manifest (a corrupt backup is
//!    refused while the live database is still untouched).
//! 3. **Safety backup** of the live database as it is now ([`crate::clients::backup::run`],
//!    same engine and manifest as every backup), unless told not to; its id is reported.
//! 4. **Terminate** the database's other sessions, **drop** it, **create** it again (same
//!    owner as before; the connecting role when it did not exist), **restore** the dump into
//!    it as the live URL's role (`pg_restore --no-owner --exit-on-error`, or `psql
//!    --single-transaction` for a plain dump): the drill's own steps
//!    ([`crate::clients::restore`]).
//! 5. **Verify**: the row counts of the parity tables and the migration head, read from the
//!    restored database, against the manifest's (which the backup read in its own snapshot).
//!
//! A failure after the drop names the safety backup, the way back to the data as it was.
//! The API and the worker should be stopped first (the runbook's step 1): the restore
//! terminates their sessions, and their pools would reconnect to a database being restored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use super::backup::{self, BackupError, BackupSpec, Format, PARITY_TABLES};
use super::pg::{database_identity, redact_url, valid_identifier};
use super::restore::{self, DrillError, Mismatch};

/// What to restore, where, and the safeguards.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    pub bucket: String,
    /// The backup's manifest (`…/<id>.manifest.json`).
    pub manifest_key: String,
    /// The live database. Its role restores the dump (so it owns what is restored) and the
    /// safety backup reads through it.
    pub database_url: String,
    /// A role that may terminate the database's sessions, drop and create it, connected to
    /// another database of the same server. `None`: `database_url` on the `postgres`
    /// database.
    pub admin_url: Option<String>,
    /// Must equal the live database's name.
    pub confirm: String,
    /// The migration files the operator has (names, e.g. `0014_x.sql`); the backup's head
    /// must be one of them.
    pub migrations: Vec<String>,
    /// The oldest migration head acceptable (none: any head among `migrations`).
    pub minimum_head: Option<String>,
    /// `None`: no safety backup (told not to).
    pub safety_backup: Option<BackupSpec>,
    /// Directory of `pg_restore` and `psql`; `None`: PATH.
    pub bin_dir: Option<PathBuf>,
    pub connect_timeout: Duration,
}

/// The steps, in order, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Checked,
    Downloaded,
    SafetyBackup,
    Terminated,
    Dropped,
    Created,
    Restored,
    Verified,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Checked => "checked",
            Step::Downloaded => "downloaded",
            Step::SafetyBackup => "safety backup",
            Step::Terminated => "terminated",
            Step::Dropped => "dropped",
            Step::Created => "created",
            Step::Restored => "restored",
            Step::Verified => "verified",
        }
    }
}

/// One step done, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: Step,
    pub message: String,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    pub backup_id: String,
    pub bucket: String,
    pub object_key: String,
    /// `host:port/database` of the live database restored into.
    pub database: String,
    /// `host:port/database` the backup was taken of.
    pub source_database: String,
    pub snapshot_at: DateTime<Utc>,
    /// The safety backup of the database as it was before (`None`: not taken).
    pub safety_backup_id: Option<String>,
    pub safety_backup_manifest_key: Option<String>,
    pub sessions_terminated: i64,
    pub expected_counts: BTreeMap<String, i64>,
    pub actual_counts: BTreeMap<String, i64>,
    pub migration_head: Option<String>,
    pub download_seconds: f64,
    pub restore_seconds: f64,
    pub total_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "confirm is {confirm:?}, not the name of the database it would replace ({database:?}); \
         set confirm = \"{database}\" to restore over it"
    )]
    NotConfirmed { confirm: String, database: String },
    #[error(
        "database {name:?} is not a plain identifier (^[A-Za-z_][A-Za-z0-9_]*$, ≤ 63 bytes), as \
         the service's scripts/db-restore.sh requires of a restore target"
    )]
    BadName { name: String },
    #[error("invalid database URL {url}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("the backup manifest s3://{bucket}/{key} does not exist")]
    NoManifest { bucket: String, key: String },
    #[error(
        "backup {id} records no migration head (its database had no schema_migrations table): \
         there is no telling which migrations would describe the restored schema"
    )]
    NoHead { id: String },
    #[error(
        "backup {id} is at migration {head}, newer than the newest migration file given \
         ({newest}): the restored schema would be one no file here describes. Restore an \
         older backup, or give the migrations that include {head}"
    )]
    HeadNewer {
        id: String,
        head: String,
        newest: String,
    },
    #[error("backup {id} is at migration {head}, but no migration files were given")]
    NoMigrations { id: String, head: String },
    #[error(
        "backup {id} is at migration {head}, which is not among the migration files given \
         (newest {newest}): it was taken with another migration set"
    )]
    HeadUnknown {
        id: String,
        head: String,
        newest: String,
    },
    #[error(
        "backup {id} is at migration {head}, older than {minimum} (minimum_head), the schema \
         what runs after the restore needs. Restore a backup taken at {minimum} or later"
    )]
    HeadOlder {
        id: String,
        head: String,
        minimum: String,
    },
    #[error("the safety backup of the live database failed, nothing was changed: {0}")]
    SafetyBackup(BackupError),
    #[error("{0}")]
    Drill(#[from] DrillError),
    #[error("{0}")]
    Backup(#[from] BackupError),
    #[error(
        "the restored database does not match the backup's manifest: {}{}",
        mismatches.iter().map(|m| format!("{} expected {} got {}", m.table, opt(m.expected), opt(m.actual))).collect::<Vec<_>>().join(", "),
        if expected_head != actual_head {
            format!("{}migration head expected {} got {}", if mismatches.is_empty() { "" } else { "; " }, expected_head.as_deref().unwrap_or("none"), actual_head.as_deref().unwrap_or("none"))
        } else { String::new() }
    )]
    Mismatch {
        mismatches: Vec<Mismatch>,
        expected_head: Option<String>,
        actual_head: Option<String>,
    },
    #[error(
        "{error} (while the database was being replaced, at step {step}). {}",
        match safety_backup_id {
            Some(id) => format!("The database as it was before is in the safety backup {id}."),
            None => "No safety backup was taken.".to_string(),
        }
    )]
    AfterDrop {
        step: &'static str,
        safety_backup_id: Option<String>,
        error: Box<RestoreError>,
    },
}

fn opt(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "absent".into())
}

/// The refusals on the backup's migration head (step 1), in order: none recorded, no files,
/// newer than the newest file, not among the files, older than `minimum`. File names order as
/// they are applied (by name).
pub fn check_head(
    id: &str,
    head: Option<&str>,
    migrations: &[String],
    minimum: Option<&str>,
) -> Result<(), RestoreError> {
    let Some(head) = head else {
        return Err(RestoreError::NoHead { id: id.into() });
    };
    let Some(newest) = migrations.iter().max() else {
        return Err(RestoreError::NoMigrations {
            id: id.into(),
            head: head.into(),
        });
    };
    if head > newest.as_str() {
        return Err(RestoreError::HeadNewer {
            id: id.into(),
            head: head.into(),
            newest: newest.clone(),
        });
    }
    if !migrations.iter().any(|m| m == head) {
        return Err(RestoreError::HeadUnknown {
            id: id.into(),
            head: head.into(),
            newest: newest.clone(),
        });
    }
    if let Some(minimum) = minimum
        && head < minimum
    {
        return Err(RestoreError::HeadOlder {
            id: id.into(),
            head: head.into(),
            minimum: minimum.into(),
        });
    }
    Ok(())
}

/// `url` pointed at `database` instead.
fn on_database(url: &str, database: &str) -> Result<String, RestoreError> {
    let invalid = |message: String| RestoreError::InvalidUrl {
        url: redact_url(url),
        message,
    };
    let mut u = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if u.query_pairs().any(|(k, _)| k == "dbname") {
        return Err(invalid(
            "a dbname parameter cannot be combined with another database; set admin_url".into(),
        ));
    }
    u.set_path(&format!("/{database}"));
    Ok(u.to_string())
}

fn options(url: &str) -> Result<PgConnectOptions, RestoreError> {
    PgConnectOptions::from_str(url).map_err(|e| RestoreError::InvalidUrl {
        url: redact_url(url),
        message: super::pg::scrub(&e.to_string(), url),
    })
}

/// Restore as `spec` says, reporting each step to `progress`.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    spec: &RestoreSpec,
    progress: &mut (dyn FnMut(Progress) + Send),
    cancel: &CancellationToken,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    // 1. Refusals.
    let live_opts = options(&spec.database_url)?;
    let database = live_opts
        .get_database()
        .unwrap_or(live_opts.get_username())
        .to_string();
    if spec.confirm != database {
        return Err(RestoreError::NotConfirmed {
            confirm: spec.confirm.clone(),
            database,
        });
    }
    if !valid_identifier(&database) {
        return Err(RestoreError::BadName { name: database });
    }
    let identity = database_identity(&spec.database_url).map_err(|e| RestoreError::InvalidUrl {
        url: e.url,
        message: e.message,
    })?;
    let admin_url = match &spec.admin_url {
        Some(u) => u.clone(),
        None => on_database(&spec.database_url, "postgres")?,
    };
    let admin_opts = options(&admin_url)?;
    if admin_opts
        .get_database()
        .unwrap_or(admin_opts.get_username())
        == database
    {
        return Err(RestoreError::InvalidUrl {
            url: redact_url(&admin_url),
            message: format!(
                "the admin connection must be to another database than {database}, which it drops"
            ),
        });
    }
    let manifest = backup::read_manifest(s3, &spec.bucket, &spec.manifest_key)
        .await?
        .ok_or_else(|| RestoreError::NoManifest {
            bucket: spec.bucket.clone(),
            key: spec.manifest_key.clone(),
        })?;
    check_head(
        &manifest.id,
        manifest.migration_head.as_deref(),
        &spec.migrations,
        spec.minimum_head.as_deref(),
    )?;
    progress(Progress {
        step: Step::Checked,
        message: format!(
            "backup {} (of {}, recovery point {}) at migration {}; restoring into {identity}",
            manifest.id,
            manifest.database,
            manifest.snapshot_at.to_rfc3339(),
            manifest.migration_head.as_deref().unwrap_or("none"),
        ),
    });

    // 2. Download and check.
    let tmp = tempfile::Builder::new()
        .prefix("artifortress-restore-")
        .tempdir()
        .map_err(|e| DrillError::Io(e.to_string()))?;
    let file = tmp.path().join(match manifest.format {
        Format::Custom => "dump",
        Format::Plain => "dump.sql",
    });
    let t = Instant::now();
    tokio::select! {
        r = restore::download(s3, &manifest, &file) => r?,
        _ = cancel.cancelled() => return Err(DrillError::Cancelled.into()),
    }
    let download_seconds = t.elapsed().as_secs_f64();
    progress(Progress {
        step: Step::Downloaded,
        message: format!(
            "s3://{}/{} ({} bytes) downloaded in {download_seconds:.1}s, sha256 matches the manifest",
            manifest.bucket, manifest.object_key, manifest.size_bytes
        ),
    });

    // 3. Safety backup.
    let safety = match &spec.safety_backup {
        Some(b) => {
            let m = backup::run(s3, &spec.database_url, b, cancel)
                .await
                .map_err(RestoreError::SafetyBackup)?;
            progress(Progress {
                step: Step::SafetyBackup,
                message: format!(
                    "safety backup {} of {identity} taken: s3://{}/{}",
                    m.id, m.bucket, m.object_key
                ),
            });
            Some(m)
        }
        None => {
            progress(Progress {
                step: Step::SafetyBackup,
                message: "no safety backup (safety_backup = false)".into(),
            });
            None
        }
    };
    if cancel.is_cancelled() {
        return Err(DrillError::Cancelled.into());
    }
    let safety_id = safety.as_ref().map(|m| m.id.clone());
    let after_drop = |step: Step| {
        let safety_id = safety_id.clone();
        move |e: RestoreError| RestoreError::AfterDrop {
            step: step.as_str(),
            safety_backup_id: safety_id,
            error: Box::new(e),
        }
    };

    // 4. Terminate, drop, create, restore.
    let mut admin = restore::connect(&admin_opts, &admin_url, spec.connect_timeout).await?;
    let owner: Option<String> = sqlx::query_scalar(
        "select pg_get_userbyid(datdba)::text from pg_database where datname = $1",
    )
    .bind(&database)
    .fetch_optional(&mut admin)
    .await
    .map_err(restore::db_error(
        &admin_url,
        "reading the database's owner",
    ))?;
    let owner = owner.unwrap_or_else(|| live_opts.get_username().to_string());
    let replaced =
        restore::recreate_database(&mut admin, &admin_url, &database, Some(&owner)).await;
    let _ = admin.close().await;
    let terminated = match replaced {
        Ok((_, n)) => n,
        Err(e) => return Err(after_drop(Step::Dropped)(e.into())),
    };
    progress(Progress {
        step: Step::Terminated,
        message: format!("{terminated} session(s) on {database} terminated"),
    });
    progress(Progress {
        step: Step::Dropped,
        message: format!("database {database} dropped"),
    });
    progress(Progress {
        step: Step::Created,
        message: format!("database {database} created, owner {owner}"),
    });
    let restore_seconds = restore::restore_dump(
        &spec.database_url,
        &database,
        &spec.bin_dir,
        manifest.format,
        &file,
        cancel,
    )
    .await
    .map_err(|e| after_drop(Step::Restored)(e.into()))?;
    drop(tmp);
    progress(Progress {
        step: Step::Restored,
        message: format!(
            "{} restored into {database} in {restore_seconds:.1}s",
            manifest.id
        ),
    });

    // 5. Verify.
    let tables: Vec<String> = PARITY_TABLES.iter().map(|t| t.to_string()).collect();
    let mut live = restore::connect(&live_opts, &spec.database_url, spec.connect_timeout)
        .await
        .map_err(|e| after_drop(Step::Verified)(e.into()))?;
    let counted = restore::count_tables(&mut live, &spec.database_url, &tables).await;
    let _ = live.close().await;
    let (actual_counts, actual_head) = counted.map_err(|e| after_drop(Step::Verified)(e.into()))?;
    let mismatches: Vec<Mismatch> = tables
        .iter()
        .filter_map(|t| {
            let (e, a) = (
                manifest.table_counts.get(t).copied(),
                actual_counts.get(t).copied(),
            );
            (e != a).then(|| Mismatch {
                table: t.clone(),
                expected: e,
                actual: a,
            })
        })
        .collect();
    if !mismatches.is_empty() || actual_head != manifest.migration_head {
        return Err(after_drop(Step::Verified)(RestoreError::Mismatch {
            mismatches,
            expected_head: manifest.migration_head.clone(),
            actual_head,
        }));
    }
    progress(Progress {
        step: Step::Verified,
        message: format!(
            "row counts of {} table(s) and migration head {} match the manifest",
            actual_counts.len(),
            actual_head.as_deref().unwrap_or("none")
        ),
    });
    Ok(RestoreReport {
        backup_id: manifest.id.clone(),
        bucket: manifest.bucket.clone(),
        object_key: manifest.object_key.clone(),
        database: identity,
        source_database: manifest.database.clone(),
        snapshot_at: manifest.snapshot_at,
        safety_backup_id: safety.as_ref().map(|m| m.id.clone()),
        safety_backup_manifest_key: safety.as_ref().map(|m| m.manifest_key.clone()),
        sessions_terminated: terminated,
        expected_counts: manifest.table_counts.clone(),
        actual_counts,
        migration_head: actual_head,
        download_seconds,
        restore_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<String> {
        ["0001_a.sql", "0002_b.sql", "0003_c.sql"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_backups_head_must_be_among_the_files_and_not_below_the_minimum() {
        assert!(check_head("b", Some("0002_b.sql"), &files(), None).is_ok());
        assert!(check_head("b", Some("0003_c.sql"), &files(), Some("0003_c.sql")).is_ok());
        assert!(matches!(
            check_head("b", Some("0004_d.sql"), &files(), None),
            Err(RestoreError::HeadNewer { newest, .. }) if newest == "0003_c.sql"
        ));
        assert!(matches!(
            check_head("b", Some("0002_x.sql"), &files(), None),
            Err(RestoreError::HeadUnknown { .. })
        ));
        assert!(matches!(
            check_head("b", Some("0001_a.sql"), &files(), Some("0002_b.sql")),
            Err(RestoreError::HeadOlder { minimum, .. }) if minimum == "0002_b.sql"
        ));
        assert!(matches!(
            check_head("b", None, &files(), None),
            Err(RestoreError::NoHead { .. })
        ));
        assert!(matches!(
            check_head("b", Some("0001_a.sql"), &[], None),
            Err(RestoreError::NoMigrations { .. })
        ));
        let e = check_head("b", Some("0004_d.sql"), &files(), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("newer than the newest migration file given (0003_c.sql)"),
            "{e}"
        );
    }

    #[test]
    fn the_admin_url_defaults_to_the_postgres_database() {
        assert_eq!(
            on_database(
                "postgres://u:p@h:5432/artifortress?sslmode=disable",
                "postgres"
            )
            .unwrap(),
            "postgres://u:p@h:5432/postgres?sslmode=disable"
        );
        assert!(on_database("postgres://u@h/x?dbname=y", "postgres").is_err());
    }

    #[test]
    fn an_error_after_the_drop_names_the_safety_backup() {
        let e = RestoreError::AfterDrop {
            step: Step::Restored.as_str(),
            safety_backup_id: Some("20261205T000000Z-ab".into()),
            error: Box::new(RestoreError::Drill(DrillError::Io("disk full".into()))),
        };
        let text = e.to_string();
        assert!(text.contains("disk full"), "{text}");
        assert!(text.contains("safety backup 20261205T000000Z-ab"), "{text}");
    }
}
