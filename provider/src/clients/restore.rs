//! Restore drills: restore a backup into a scratch database, verify it against the backup's
//! manifest, measure RTO and the true RPO, report. Knows nothing of Terraform.
//!
//! - **RTO**: from the start of the drill to a restored database that passed verification
//!   (download, re-create, restore, count).
//! - **RPO**: the age of the recovery point at drill time (`now - snapshot_at`). The service's
//!   own drill reports the *backup's duration* as its RPO; that figure is reported too
//!   (`backup_duration_seconds`), for comparison, and judged against the same target.
//! - **Verification**: the row counts of the parity tables in the restored database against
//!   the counts the backup read in its own snapshot, and the migration head.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::backup::{self, BackupError, Compression, Format, Manifest};
use super::object_store::{self, ObjectStoreError};
use super::pg::{LibpqConnection, redact_url};
use super::pg::{quote_ident, valid_identifier};
use super::process;
use super::stream::HashingSink;

#[derive(Debug, Clone)]
pub struct DrillSpec {
    pub bucket: String,
    pub manifest_key: String,
    /// A role that may create and drop databases (connects to its own database).
    pub admin_url: String,
    pub drill_database: String,
    pub parity_tables: Vec<String>,
    pub rto_target_seconds: f64,
    pub rpo_target_seconds: f64,
    pub keep_drill_database: bool,
    /// Directory of `pg_restore` and `psql`; `None`: PATH.
    pub bin_dir: Option<PathBuf>,
    pub connect_timeout: Duration,
}

mod report;
mod stream;
pub use report::*;

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Backup(#[from] BackupError),
    #[error("{0}")]
    ObjectStore(#[from] ObjectStoreError),
    #[error("the backup manifest s3://{bucket}/{key} does not exist")]
    NoManifest { bucket: String, key: String },
    #[error(
        "no backup {id:?} in s3://{bucket}: {tried} does not exist, and no other key in the \
         bucket ends with /{id}{suffix}",
        suffix = backup::MANIFEST_SUFFIX
    )]
    NoBackup {
        bucket: String,
        id: String,
        tried: String,
    },
    #[error(
        "backup {id:?} is ambiguous in s3://{bucket}: its manifest is under several prefixes \
         ({}); pass the backup's object_key, or set prefix",
        keys.join(", ")
    )]
    AmbiguousBackup {
        bucket: String,
        id: String,
        keys: Vec<String>,
    },
    #[error(
        "drill database {name:?} is not a plain identifier (^[A-Za-z_][A-Za-z0-9_]*$, ≤ 63 bytes)"
    )]
    BadName { name: String },
    #[error(
        "drill database {name:?} is the backup's source database ({source_db}); a drill never restores over it"
    )]
    IsSource { name: String, source_db: String },
    #[error(
        "the downloaded dump's sha256 is {actual}, but the manifest records {expected}: the backup \
         object is corrupt or was replaced"
    )]
    Corrupt { expected: String, actual: String },
    #[error(
        "s3://{bucket}/{key} holds more than the {expected} bytes its manifest records: the backup \
         object was replaced or is not this backup; the download stopped there"
    )]
    Oversize {
        bucket: String,
        key: String,
        expected: u64,
    },
    #[error("{what} failed on {url}: {message}")]
    Database {
        url: String,
        what: &'static str,
        message: String,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Restore {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("local file error: {0}")]
    Io(String),
    #[error("the drill was cancelled")]
    Cancelled,
}

fn tool(bin_dir: &Option<PathBuf>, name: &str) -> PathBuf {
    match bin_dir {
        Some(d) => d.join(name),
        None => PathBuf::from(name),
    }
}

pub(crate) async fn connect(
    opts: &PgConnectOptions,
    url: &str,
    timeout: Duration,
) -> Result<PgConnection, DrillError> {
    let err = |message: String| DrillError::Database {
        url: redact_url(url),
        what: "connecting",
        message,
    };
    tokio::time::timeout(
        timeout,
        PgConnection::connect_with(
            &opts
                .clone()
                .application_name("terraform-provider-artifortress"),
        ),
    )
    .await
    .map_err(|_| {
        err(format!(
            "no connection within {}",
            crate::duration::format(timeout)
        ))
    })?
    .map_err(|e| err(super::words::pg_error_words(&e)))
}

/// Download the dump into `file`, checking its sha256; a zstd dump is decompressed on the way.
/// The download stops as soon as it passes the size the manifest records (a replaced object
/// cannot fill the disk before its sha256 is found wrong).
pub(crate) async fn download(
    s3: &aws_sdk_s3::Client,
    m: &Manifest,
    file: &std::path::Path,
) -> Result<(), DrillError> {
    let out = s3
        .get_object()
        .bucket(&m.bucket)
        .key(&m.object_key)
        .send()
        .await
        .map_err(|e| ObjectStoreError::new("GET", s3, &m.bucket, &m.object_key, &e))?;
    let io = |e: std::io::Error| DrillError::Io(e.to_string());
    let mut body = out.body;
    let mut downloaded = HashingSink::new();
    let sink = tokio::fs::File::create(file).await.map_err(io)?;
    let mut writer: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>> = match m.compression {
        Compression::None => Box::pin(tokio::io::BufWriter::with_capacity(1 << 20, sink)),
        Compression::Zstd => Box::pin(async_compression::tokio::write::ZstdDecoder::new(
            tokio::io::BufWriter::with_capacity(1 << 20, sink),
        )),
    };
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ObjectStoreError::stream("GET", s3, &m.bucket, &m.object_key, &e))?;
        if downloaded.update(&chunk) > m.size_bytes {
            return Err(DrillError::Oversize {
                bucket: m.bucket.clone(),
                key: m.object_key.clone(),
                expected: m.size_bytes,
            });
        }
        writer.write_all(&chunk).await.map_err(io)?;
    }
    writer.shutdown().await.map_err(io)?;
    let (actual, _) = downloaded.finish();
    if actual != m.sha256 {
        return Err(DrillError::Corrupt {
            expected: m.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// The manifests in `keys` that belong to backup `id`, under any prefix.
fn manifests_of(keys: &[String], id: &str) -> Vec<String> {
    let name = format!("{id}{}", backup::MANIFEST_SUFFIX);
    keys.iter()
        .filter(|k| k.rsplit('/').next() == Some(name.as_str()))
        .cloned()
        .collect()
}

/// Where the manifest of `backup_id` is. A dump key (`<prefix><id>.dump…`) names its own
/// manifest. An id is looked for at `<prefix><id>.manifest.json` first, then under any prefix
/// in the bucket, so a backup taken with another `prefix` is found from its id alone; an id
/// whose manifest is under several prefixes is an error naming them.
pub async fn find_manifest_key(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    backup_id: &str,
    prefix: &str,
) -> Result<String, DrillError> {
    if let Some(key) = backup::manifest_key_for(backup_id) {
        return Ok(key);
    }
    let tried = format!("{prefix}{backup_id}{}", backup::MANIFEST_SUFFIX);
    if object_store::head(s3, bucket, &tried).await?.is_some() {
        return Ok(tried);
    }
    let keys = object_store::list_keys(s3, bucket, "").await?;
    let mut found = manifests_of(&keys, backup_id);
    match found.len() {
        0 => Err(DrillError::NoBackup {
            bucket: bucket.to_string(),
            id: backup_id.to_string(),
            tried,
        }),
        1 => {
            let key = found.remove(0);
            tracing::info!(%key, "backup found under another prefix");
            Ok(key)
        }
        _ => Err(DrillError::AmbiguousBackup {
            bucket: bucket.to_string(),
            id: backup_id.to_string(),
            keys: found,
        }),
    }
}

/// A database error on `url` (shown redacted) while doing `what`.
pub(crate) fn db_error(url: &str, what: &'static str) -> impl FnOnce(sqlx::Error) -> DrillError {
    let url = redact_url(url);
    move |e: sqlx::Error| DrillError::Database {
        url,
        what,
        message: super::words::pg_error_words(&e),
    }
}

/// Terminates every other session on `database`, drops it and creates it again empty (owned
/// by `owner` when given, else by the admin connection's role); the service's
/// `scripts/db-restore.sh:26-34` (f628e74d) does the same three statements. On PostgreSQL 13
/// and later the drop is `WITH (FORCE)`, so a session that reconnected since the terminate
/// (a pool's) cannot stop it. `database` must already be validated ([`valid_identifier`]).
/// Returns the quoted name and how many sessions were terminated.
pub(crate) async fn recreate_database(
    admin: &mut PgConnection,
    admin_url: &str,
    database: &str,
    owner: Option<&str>,
) -> Result<(String, i64), DrillError> {
    let terminated: i64 = sqlx::query_scalar(
        "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity \
         where datname = $1 and pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(&mut *admin)
    .await
    .map_err(db_error(admin_url, "terminating the database's sessions"))?;
    let server: i32 = sqlx::query_scalar("select current_setting('server_version_num')::int")
        .fetch_one(&mut *admin)
        .await
        .map_err(db_error(admin_url, "reading the server version"))?;
    // The name was validated as a plain identifier; quoting keeps its case.
    let quoted = quote_ident(database);
    let force = if server >= 130000 {
        " with (force)"
    } else {
        ""
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database if exists {quoted}{force}"
    )))
    .execute(&mut *admin)
    .await
    .map_err(db_error(admin_url, "dropping the database"))?;
    let create = match owner {
        Some(o) => format!("create database {quoted} owner {}", quote_ident(o)),
        None => format!("create database {quoted}"),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut *admin)
        .await
        .map_err(db_error(admin_url, "creating the database"))?;
    Ok((quoted, terminated))
}

/// Restores the downloaded dump `file` into `database` (on `url`'s server, as `url`'s role)
/// with `pg_restore` (custom format) or `psql` (plain), errors fatal. Returns the seconds it
/// took.
pub(crate) async fn restore_dump(
    url: &str,
    database: &str,
    bin_dir: &Option<PathBuf>,
    format: Format,
    file: &Path,
    cancel: &CancellationToken,
) -> Result<f64, DrillError> {
    let libpq = LibpqConnection::new(url, Some(database)).map_err(BackupError::from)?;
    let (tool_name, mut cmd) = restore_command(format, bin_dir, &libpq, Some(file));
    cmd.stdin(Stdio::null());
    let t = Instant::now();
    // stdout is read and dropped (both tools print little there); stderr keeps its first 16 KiB.
    let out = tokio::select! {
        o = process::output(&mut cmd, 0, process::STDERR_LIMIT) => o.map_err(|e| DrillError::Restore {
            tool: tool_name.into(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?,
        _ = cancel.cancelled() => return Err(DrillError::Cancelled),
    };
    let seconds = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(DrillError::Restore {
            tool: tool_name.into(),
            status: out.status.to_string(),
            stderr: out.stderr.text(),
        });
    }
    Ok(seconds)
}

/// How many `pg_restore` jobs a restore from a file runs: this machine's cores, at most 4.
pub(crate) fn restore_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 4))
        .unwrap_or(2)
}

/// The restore tool for `format` into `libpq`'s database, errors fatal: `pg_restore` (custom
/// format; from `file` with [`restore_jobs`] jobs, or from stdin) or `psql` (plain, one
/// transaction; from `file` or stdin).
pub(crate) fn restore_command(
    format: Format,
    bin_dir: &Option<PathBuf>,
    libpq: &LibpqConnection,
    file: Option<&Path>,
) -> (&'static str, tokio::process::Command) {
    let (tool_name, mut cmd) = match format {
        Format::Custom => {
            let mut c = tokio::process::Command::new(tool(bin_dir, "pg_restore"));
            c.args(["--no-owner", "--no-privileges", "--exit-on-error"]);
            if file.is_some() {
                c.arg(format!("--jobs={}", restore_jobs()));
            }
            c.arg(libpq.dbname_arg());
            if let Some(f) = file {
                c.arg(f);
            }
            ("pg_restore", c)
        }
        Format::Plain => {
            let mut c = tokio::process::Command::new(tool(bin_dir, "psql"));
            c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
                .arg(libpq.dbname_arg());
            if let Some(f) = file {
                c.arg("-f").arg(f);
            }
            ("psql", c)
        }
    };
    cmd.env_remove("PGSERVICE")
        .envs(libpq.env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    (tool_name, cmd)
}

/// The row counts of those of `tables` that exist in `conn`'s database, and its migration head
/// (`max(version)` of `schema_migrations`, when that table is among them and exists).
pub(crate) async fn count_tables(
    conn: &mut PgConnection,
    url: &str,
    tables: &[String],
) -> Result<(BTreeMap<String, i64>, Option<String>), DrillError> {
    let mut counts = BTreeMap::new();
    for table in tables {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error(url, "looking up a parity table"))?;
        if exists {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select count(*) from {}",
                quote_ident(table)
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error(url, "counting rows"))?;
            counts.insert(table.clone(), n);
        }
    }
    let head: Option<String> = if counts.contains_key("schema_migrations") {
        sqlx::query_scalar("select max(version) from schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error(url, "reading the migration head"))?
    } else {
        None
    };
    Ok((counts, head))
}

/// A step of a running drill, as the `on_stage` of [`run_watched`] is told of it.
#[derive(Debug, Clone, Copy)]
pub enum DrillStage<'a> {
    /// The backup's manifest was read; its dump is being downloaded.
    Downloading {
        backup_id: &'a str,
        object_key: &'a str,
        size_bytes: u64,
    },
    /// The dump is downloaded and its sha256 matches the manifest.
    Downloaded { seconds: f64 },
    /// The drill database was dropped and created again; the restore runs.
    Restoring { database: &'a str, tool: &'a str },
    /// The restore finished without error.
    Restored { seconds: f64 },
    /// The parity tables were counted in the restored database.
    Counted { tables: usize, mismatches: usize },
}

/// Run one drill.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    spec: &DrillSpec,
    cancel: &CancellationToken,
) -> Result<DrillReport, DrillError> {
    run_watched(s3, spec, cancel, &|_| {}).await
}

/// [`run`], telling `on_stage` of each step as it is reached.
pub async fn run_watched(
    s3: &aws_sdk_s3::Client,
    spec: &DrillSpec,
    cancel: &CancellationToken,
    on_stage: &(dyn Fn(DrillStage<'_>) + Send + Sync),
) -> Result<DrillReport, DrillError> {
    if !valid_identifier(&spec.drill_database) {
        return Err(DrillError::BadName {
            name: spec.drill_database.clone(),
        });
    }
    let started = Instant::now();
    let ran_at = Utc::now();
    let manifest = backup::read_manifest(s3, &spec.bucket, &spec.manifest_key)
        .await?
        .ok_or_else(|| DrillError::NoManifest {
            bucket: spec.bucket.clone(),
            key: spec.manifest_key.clone(),
        })?;
    let admin_opts: PgConnectOptions =
        spec.admin_url
            .parse()
            .map_err(|e: sqlx::Error| DrillError::Database {
                url: redact_url(&spec.admin_url),
                what: "parsing the URL",
                message: e.to_string(),
            })?;
    let target_identity = format!(
        "{}:{}/{}",
        admin_opts.get_host(),
        admin_opts.get_port(),
        spec.drill_database
    );
    let admin_db = admin_opts
        .get_database()
        .unwrap_or(admin_opts.get_username())
        .to_string();
    if target_identity == manifest.database || admin_db == spec.drill_database {
        return Err(DrillError::IsSource {
            name: spec.drill_database.clone(),
            source_db: if admin_db == spec.drill_database {
                format!("the admin connection's own database {admin_db}")
            } else {
                manifest.database.clone()
            },
        });
    }

    // 1-3. A fresh drill database and the dump restored into it: streamed from the object
    // store into the restore tool as it downloads when a parallel restore from a file would
    // gain nothing (see `stream::streams`), else downloaded (and checked) first, then restored
    // with `--jobs`. Either way the dump's sha256 is checked: a restore from a corrupt object
    // fails the drill.
    let tmp = tempfile::Builder::new()
        .prefix("artifortress-drill-")
        .tempdir()
        .map_err(|e| DrillError::Io(e.to_string()))?;
    let tool_name = match manifest.format {
        Format::Custom => "pg_restore",
        Format::Plain => "psql",
    };
    let mut admin = connect(&admin_opts, &spec.admin_url, spec.connect_timeout).await?;
    let (download_seconds, restore_duration_seconds, quoted) = if stream::streams(
        &manifest,
        restore_jobs(),
    ) {
        let (quoted, _) =
            recreate_database(&mut admin, &spec.admin_url, &spec.drill_database, None).await?;
        on_stage(DrillStage::Downloading {
            backup_id: &manifest.id,
            object_key: &manifest.object_key,
            size_bytes: manifest.size_bytes,
        });
        on_stage(DrillStage::Restoring {
            database: &spec.drill_database,
            tool: tool_name,
        });
        let s = stream::stream_restore(
            s3,
            &manifest,
            &spec.admin_url,
            &spec.drill_database,
            &spec.bin_dir,
            cancel,
        )
        .await?;
        tracing::info!(
            key = %manifest.object_key,
            database = %spec.drill_database,
            download_seconds = s.download_seconds,
            restore_seconds = s.restore_seconds,
            "drill: dump streamed into the restore, checked and restored"
        );
        on_stage(DrillStage::Downloaded {
            seconds: s.download_seconds,
        });
        on_stage(DrillStage::Restored {
            seconds: s.restore_seconds,
        });
        (s.download_seconds, s.restore_seconds, quoted)
    } else {
        let file = tmp.path().join(match manifest.format {
            Format::Custom => "dump",
            Format::Plain => "dump.sql",
        });
        let t = Instant::now();
        on_stage(DrillStage::Downloading {
            backup_id: &manifest.id,
            object_key: &manifest.object_key,
            size_bytes: manifest.size_bytes,
        });
        tokio::select! {
            r = download(s3, &manifest, &file) => r?,
            _ = cancel.cancelled() => return Err(DrillError::Cancelled),
        }
        let download_seconds = t.elapsed().as_secs_f64();
        tracing::info!(key = %manifest.object_key, seconds = download_seconds, "drill: dump downloaded and checked");
        on_stage(DrillStage::Downloaded {
            seconds: download_seconds,
        });
        let (quoted, _) =
            recreate_database(&mut admin, &spec.admin_url, &spec.drill_database, None).await?;
        on_stage(DrillStage::Restoring {
            database: &spec.drill_database,
            tool: tool_name,
        });
        let restore_duration_seconds = restore_dump(
            &spec.admin_url,
            &spec.drill_database,
            &spec.bin_dir,
            manifest.format,
            &file,
            cancel,
        )
        .await?;
        tracing::info!(database = %spec.drill_database, seconds = restore_duration_seconds, "drill: restored");
        on_stage(DrillStage::Restored {
            seconds: restore_duration_seconds,
        });
        (download_seconds, restore_duration_seconds, quoted)
    };

    // 4. Verify.
    let drill_opts = admin_opts.clone().database(&spec.drill_database);
    let mut drill = connect(&drill_opts, &spec.admin_url, spec.connect_timeout).await?;
    let (actual_counts, actual_head) =
        count_tables(&mut drill, &spec.admin_url, &spec.parity_tables).await?;
    let _ = drill.close().await;
    let rto_seconds = started.elapsed().as_secs_f64();

    let expected_counts: BTreeMap<String, i64> = spec
        .parity_tables
        .iter()
        .filter_map(|t| Some((t.clone(), *manifest.table_counts.get(t)?)))
        .collect();
    let mismatches: Vec<Mismatch> = spec
        .parity_tables
        .iter()
        .filter_map(|t| {
            let (e, a) = (
                expected_counts.get(t).copied(),
                actual_counts.get(t).copied(),
            );
            (e != a).then(|| Mismatch {
                table: t.clone(),
                expected: e,
                actual: a,
            })
        })
        .collect();
    on_stage(DrillStage::Counted {
        tables: actual_counts.len(),
        mismatches: mismatches.len(),
    });

    // 5. Clean up.
    if !spec.keep_drill_database {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "drop database if exists {quoted}"
        )))
        .execute(&mut admin)
        .await
        .map_err(db_error(&spec.admin_url, "dropping the drill database"))?;
    }
    let _ = admin.close().await;
    drop(tmp);

    let rpo_seconds = ((ran_at - manifest.snapshot_at).num_milliseconds() as f64 / 1000.0).max(0.0);
    let expected_head = manifest.migration_head.clone();
    let data_pass = mismatches.is_empty() && expected_head == actual_head;
    let rto_pass = rto_seconds <= spec.rto_target_seconds;
    let rpo_pass = rpo_seconds <= spec.rpo_target_seconds;
    Ok(DrillReport {
        ran_at,
        backup_id: manifest.id.clone(),
        bucket: manifest.bucket.clone(),
        object_key: manifest.object_key.clone(),
        source_database: manifest.database.clone(),
        drill_database: spec.drill_database.clone(),
        kept: spec.keep_drill_database,
        snapshot_at: manifest.snapshot_at,
        rto_seconds,
        rto_target_seconds: spec.rto_target_seconds,
        rpo_seconds,
        rpo_target_seconds: spec.rpo_target_seconds,
        backup_duration_seconds: manifest.duration_seconds,
        download_seconds,
        restore_duration_seconds,
        expected_counts,
        actual_counts,
        mismatches,
        expected_head,
        actual_head,
        rto_pass,
        rpo_pass,
        data_pass,
        passed: rto_pass && rpo_pass && data_pass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(passed: bool) -> DrillReport {
        let ran_at: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
        let counts = |packages| {
            BTreeMap::from([
                ("packages".to_string(), packages),
                ("schema_migrations".to_string(), 15),
            ])
        };
        DrillReport {
            ran_at,
            backup_id: "20261127T095900Z-ab".into(),
            bucket: "backups".into(),
            object_key: "b/20261127T095900Z-ab.dump.zst".into(),
            source_database: "127.0.0.1:5432/artifortress".into(),
            drill_database: "artifortress_drill".into(),
            kept: false,
            snapshot_at: "2026-11-27T09:59:00Z".parse().unwrap(),
            rto_seconds: 4.6,
            rto_target_seconds: 900.0,
            rpo_seconds: if passed { 60.0 } else { 400.0 },
            rpo_target_seconds: 300.0,
            backup_duration_seconds: 0.4,
            download_seconds: 0.2,
            restore_duration_seconds: 3.5,
            expected_counts: counts(7),
            actual_counts: counts(if passed { 7 } else { 5 }),
            mismatches: if passed {
                Vec::new()
            } else {
                vec![Mismatch {
                    table: "packages".into(),
                    expected: Some(7),
                    actual: Some(5),
                }]
            },
            expected_head: Some("0015_worker_claim_path_indexes.sql".into()),
            actual_head: Some("0015_worker_claim_path_indexes.sql".into()),
            rto_pass: true,
            rpo_pass: passed,
            data_pass: passed,
            passed,
        }
    }

    /// A line's shape: each run of digits `N`, each `…` span `` `X` ``, PASS or FAIL `V`.
    fn shape(line: &str) -> String {
        let line = line.replace("PASS", "V").replace("FAIL", "V");
        let mut out = String::new();
        let mut in_code = false;
        for c in line.chars() {
            match c {
                '`' => {
                    in_code = !in_code;
                    out.push_str(if in_code { "`X" } else { "`" });
                }
                _ if in_code => {}
                '0'..='9' if out.ends_with('N') => {}
                '0'..='9' => out.push('N'),
                c => out.push(c),
            }
        }
        out
    }

    /// The lines the service's drill writes, in its order (Artifortress
    /// `scripts/phase6-drill.sh:77-106`, f628e74d, and its committed output
    /// `docs/reports/phase6-rto-rpo-drill-latest.md`), as shapes: our report has each, in the
    /// same order, with that shape; extra lines come only after the script's own in a section.
    const SCRIPT_LINES: [&str; 19] = [
        "# Phase N RPO/RTO Drill Report",
        "",
        "Generated at: N-N-NTN:N:NZ",
        "",
        "## Inputs",
        "",
        "- source DB: `X`",
        "- drill DB: `X`",
        "- backup file: `X`",
        "- RTO target (seconds): N",
        "- RPO target (seconds): N",
        "## Results",
        "- backup duration (seconds): N",
        "- restore duration (seconds): N",
        "- total drill duration (seconds): N",
        "- RPO status: V",
        "- RTO status: V",
        "- data verification: V",
        "## Verification Notes",
    ];

    #[test]
    fn the_report_has_the_service_drill_report_shape() {
        assert_eq!(shape("- RPO status: PASS"), "- RPO status: V");
        assert_eq!(
            shape("Generated at: 2026-04-28T03:19:22Z"),
            "Generated at: N-N-NTN:N:NZ"
        );
        for passed in [true, false] {
            let md = report(passed).markdown();
            let lines: Vec<&str> = md.lines().collect();
            // The script's lines appear in its order; the first eleven are the very first lines.
            let mut at = 0;
            for (i, expected) in SCRIPT_LINES.iter().enumerate() {
                let found = lines[at..]
                    .iter()
                    .position(|l| shape(l) == *expected)
                    .unwrap_or_else(|| panic!("{expected:?} not after line {at} in:\n{md}"));
                if i < 11 {
                    assert_eq!(found, 0, "{expected:?} is not line {at} in:\n{md}");
                }
                at += found + 1;
            }
            // Within Inputs and Results the script's bullets come first, without gaps.
            let bullets_after = |heading: &str| -> Vec<&str> {
                let h = lines.iter().position(|l| *l == heading).unwrap();
                lines[h + 2..]
                    .iter()
                    .take_while(|l| l.starts_with("- "))
                    .copied()
                    .collect()
            };
            let inputs = bullets_after("## Inputs");
            assert!(inputs[0].starts_with("- source DB: "), "{inputs:?}");
            assert!(
                inputs[4].starts_with("- RPO target (seconds): "),
                "{inputs:?}"
            );
            let results = bullets_after("## Results");
            assert!(
                results[0].starts_with("- backup duration (seconds): "),
                "{results:?}"
            );
            assert_eq!(results[3], format!("- RPO status: {}", verdict(passed)));
            assert_eq!(results[4], "- RTO status: PASS");
            assert_eq!(
                results[5],
                format!("- data verification: {}", verdict(passed))
            );
            assert!(md.contains("- total drill duration (seconds): 5\n"), "{md}");
            assert!(
                md.contains("- backup file: `s3://backups/b/20261127T095900Z-ab.dump.zst`\n"),
                "{md}"
            );
            // The provider's extra facts, as extra bullets and a sub-section.
            assert!(md.contains("- recovery point age at drill start (true RPO, seconds): "));
            assert!(md.contains(
                "- RPO status by backup duration (as scripts/phase6-drill.sh judges it): PASS\n"
            ));
            assert!(
                md.contains("\n### Parity\n\n- packages: source=7, drill="),
                "{md}"
            );
            let notes = bullets_after("## Verification Notes");
            if passed {
                // phase6-drill.sh:102, verbatim.
                assert_eq!(
                    notes,
                    ["- all required table counts matched between source and drill databases."]
                );
            } else {
                // phase6-drill.sh:52's shape; then the RPO note.
                assert_eq!(notes[0], "- count mismatch on packages: source=7, drill=5");
                assert!(notes[1].starts_with("- RPO exceeded target"), "{notes:?}");
                assert_eq!(notes.len(), 2, "{notes:?}");
            }
        }
    }

    #[test]
    fn the_report_file_is_written_atomically_with_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("docs/reports/phase6-rto-rpo-drill-latest.md");
        assert_eq!(report_file_sha256(&path).unwrap(), None);
        write_report_file(&path, "one\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(
            report_file_sha256(&path).unwrap(),
            Some(report_sha256("one\n"))
        );
        write_report_file(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        // No temporary file left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["phase6-rto-rpo-drill-latest.md"]);
        // A parent that is a file: an error naming the path.
        let blocked = dir
            .path()
            .join("docs/reports/phase6-rto-rpo-drill-latest.md/x.md");
        let err = write_report_file(&blocked, "x").unwrap_err();
        assert!(
            err.to_string().contains("phase6-rto-rpo-drill-latest.md"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }

    #[test]
    fn a_backup_id_matches_its_manifest_under_any_prefix_and_nothing_else() {
        let keys: Vec<String> = [
            "backups/20261127T000000Z-ab.manifest.json",
            "nightly/eu/20261127T000000Z-ab.manifest.json",
            "20261127T000000Z-ab.manifest.json",
            "backups/20261127T000000Z-ab.dump.zst",
            "backups/x20261127T000000Z-ab.manifest.json",
            "backups/20261127T000000Z-abc.manifest.json",
            "drills/20261127T000000Z-ab.md",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            manifests_of(&keys, "20261127T000000Z-ab"),
            vec![
                "backups/20261127T000000Z-ab.manifest.json".to_string(),
                "nightly/eu/20261127T000000Z-ab.manifest.json".to_string(),
                "20261127T000000Z-ab.manifest.json".to_string(),
            ]
        );
        assert!(manifests_of(&keys, "20261128T000000Z-cd").is_empty());
    }
}
