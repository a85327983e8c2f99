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
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub table: String,
    /// `None`: the table was not in the backup.
    pub expected: Option<i64>,
    /// `None`: the table is not in the restored database.
    pub actual: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub ran_at: DateTime<Utc>,
    pub backup_id: String,
    pub bucket: String,
    pub object_key: String,
    pub source_database: String,
    pub drill_database: String,
    pub kept: bool,
    pub snapshot_at: DateTime<Utc>,
    pub rto_seconds: f64,
    pub rto_target_seconds: f64,
    pub rpo_seconds: f64,
    pub rpo_target_seconds: f64,
    pub backup_duration_seconds: f64,
    pub download_seconds: f64,
    pub restore_duration_seconds: f64,
    pub expected_counts: BTreeMap<String, i64>,
    pub actual_counts: BTreeMap<String, i64>,
    pub mismatches: Vec<Mismatch>,
    pub expected_head: Option<String>,
    pub actual_head: Option<String>,
    pub rto_pass: bool,
    pub rpo_pass: bool,
    pub data_pass: bool,
    pub passed: bool,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn opt(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "absent".into())
}

impl DrillReport {
    /// The Markdown report, with the service's drill vocabulary (`RTO status: PASS|FAIL`, …).
    pub fn markdown(&self) -> String {
        let t = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut out = format!(
            "# Artifortress restore drill — {}\n\n\
             - backup: `{}` (`s3://{}/{}`) of `{}`\n\
             - recovery point: {}\n\
             - drill database: `{}` ({})\n\n\
             | check | measured | target | status |\n|---|---|---|---|\n\
             | RTO (drill start to a verified restore) | {:.1} s | {:.0} s | {} |\n\
             | RPO (age of the recovery point) | {:.1} s | {:.0} s | {} |\n\
             | RPO as the service's drill measures it (backup duration) | {:.1} s | {:.0} s | {} |\n\
             | data verification | {} tables, {} mismatches, head {} | equal | {} |\n\n\
             RTO status: {}\nRPO status: {}\ndata verification: {}\nresult: {}\n\n\
             Download {:.1} s, restore {:.1} s.\n\n## Parity\n\n\
             | table | backup | restored | status |\n|---|---|---|---|\n",
            t(self.ran_at),
            self.backup_id,
            self.bucket,
            self.object_key,
            self.source_database,
            t(self.snapshot_at),
            self.drill_database,
            if self.kept {
                "kept"
            } else {
                "dropped after the drill"
            },
            self.rto_seconds,
            self.rto_target_seconds,
            verdict(self.rto_pass),
            self.rpo_seconds,
            self.rpo_target_seconds,
            verdict(self.rpo_pass),
            self.backup_duration_seconds,
            self.rpo_target_seconds,
            verdict(self.backup_duration_seconds <= self.rpo_target_seconds),
            self.expected_counts.len().max(self.actual_counts.len()),
            self.mismatches.len(),
            if self.expected_head == self.actual_head {
                "equal"
            } else {
                "different"
            },
            verdict(self.data_pass),
            verdict(self.rto_pass),
            verdict(self.rpo_pass),
            verdict(self.data_pass),
            verdict(self.passed),
            self.download_seconds,
            self.restore_duration_seconds,
        );
        let tables: std::collections::BTreeSet<&String> = self
            .expected_counts
            .keys()
            .chain(self.actual_counts.keys())
            .collect();
        for table in tables {
            let (e, a) = (
                self.expected_counts.get(table).copied(),
                self.actual_counts.get(table).copied(),
            );
            out.push_str(&format!(
                "| {table} | {} | {} | {} |\n",
                opt(e),
                opt(a),
                verdict(e == a)
            ));
        }
        let mut notes = Vec::new();
        for m in &self.mismatches {
            notes.push(format!(
                "- `{}`: the backup recorded {}, the restored database has {}.",
                m.table,
                opt(m.expected),
                opt(m.actual)
            ));
        }
        if self.expected_head != self.actual_head {
            notes.push(format!(
                "- migration head: the backup recorded {:?}, the restored database has {:?}.",
                self.expected_head, self.actual_head
            ));
        }
        if !self.rpo_pass {
            notes.push(format!(
                "- the newest recovery point was {:.0} s old at drill time, over the {:.0} s target: take backups more often.",
                self.rpo_seconds, self.rpo_target_seconds
            ));
        }
        if !self.rto_pass {
            notes.push(format!(
                "- recovery took {:.0} s, over the {:.0} s target.",
                self.rto_seconds, self.rto_target_seconds
            ));
        }
        if !notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out
    }
}

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

async fn connect(
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
async fn download(
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
        downloaded.update(&chunk);
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

/// Run one drill.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    spec: &DrillSpec,
    cancel: &CancellationToken,
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

    // 1. Download (and check) the dump.
    let tmp = tempfile::Builder::new()
        .prefix("artifortress-drill-")
        .tempdir()
        .map_err(|e| DrillError::Io(e.to_string()))?;
    let file = tmp.path().join(match manifest.format {
        Format::Custom => "dump",
        Format::Plain => "dump.sql",
    });
    let t = Instant::now();
    tokio::select! {
        r = download(s3, &manifest, &file) => r?,
        _ = cancel.cancelled() => return Err(DrillError::Cancelled),
    }
    let download_seconds = t.elapsed().as_secs_f64();
    tracing::info!(key = %manifest.object_key, seconds = download_seconds, "drill: dump downloaded and checked");

    // 2. A fresh drill database.
    let mut admin = connect(&admin_opts, &spec.admin_url, spec.connect_timeout).await?;
    let db_err = |what: &'static str| {
        let url = redact_url(&spec.admin_url);
        move |e: sqlx::Error| DrillError::Database {
            url,
            what,
            message: super::words::pg_error_words(&e),
        }
    };
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = $1 and pid <> pg_backend_pid()",
    )
    .bind(&spec.drill_database)
    .execute(&mut admin)
    .await
    .map_err(db_err("terminating the drill database's sessions"))?;
    // The name was validated as a plain identifier; quoting keeps its case.
    let quoted = format!("\"{}\"", spec.drill_database);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database if exists {quoted}"
    )))
    .execute(&mut admin)
    .await
    .map_err(db_err("dropping the drill database"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {quoted}")))
        .execute(&mut admin)
        .await
        .map_err(db_err("creating the drill database"))?;

    // 3. Restore, errors fatal.
    let libpq = LibpqConnection::new(&spec.admin_url, Some(&spec.drill_database))
        .map_err(BackupError::from)?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 4))
        .unwrap_or(2);
    let (tool_name, mut cmd) = match manifest.format {
        Format::Custom => {
            let mut c = tokio::process::Command::new(tool(&spec.bin_dir, "pg_restore"));
            c.args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--jobs={jobs}"))
                .arg(libpq.dbname_arg())
                .arg(&file);
            ("pg_restore", c)
        }
        Format::Plain => {
            let mut c = tokio::process::Command::new(tool(&spec.bin_dir, "psql"));
            c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
                .arg(libpq.dbname_arg())
                .arg("-f")
                .arg(&file);
            ("psql", c)
        }
    };
    cmd.env_remove("PGSERVICE")
        .envs(libpq.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
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
    let restore_duration_seconds = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(DrillError::Restore {
            tool: tool_name.into(),
            status: out.status.to_string(),
            stderr: out.stderr.text(),
        });
    }
    tracing::info!(database = %spec.drill_database, seconds = restore_duration_seconds, "drill: restored");

    // 4. Verify.
    let drill_opts = admin_opts.clone().database(&spec.drill_database);
    let mut drill = connect(&drill_opts, &spec.admin_url, spec.connect_timeout).await?;
    let mut actual_counts = BTreeMap::new();
    for table in &spec.parity_tables {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&mut drill)
            .await
            .map_err(db_err("looking up a parity table"))?;
        if exists {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select count(*) from {}",
                quote_ident(table)
            )))
            .fetch_one(&mut drill)
            .await
            .map_err(db_err("counting rows in the drill database"))?;
            actual_counts.insert(table.clone(), n);
        }
    }
    let actual_head: Option<String> = if actual_counts.contains_key("schema_migrations") {
        sqlx::query_scalar("select max(version) from schema_migrations")
            .fetch_one(&mut drill)
            .await
            .map_err(db_err("reading the migration head"))?
    } else {
        None
    };
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

    // 5. Clean up.
    if !spec.keep_drill_database {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "drop database if exists {quoted}"
        )))
        .execute(&mut admin)
        .await
        .map_err(db_err("dropping the drill database"))?;
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
