//! Database backups streamed from `pg_dump` into S3, self-describing and self-verifying.
//! Knows nothing of Terraform.
//!
//! # One backup
//! 1. `pg_dump --version` must not be older than the server (checked before anything starts).
//! 2. A `REPEATABLE READ` transaction exports a snapshot; the row counts of the parity tables
//!    ([`PARITY_TABLES`]) and the migration head are read **in that snapshot**, and `pg_dump
//!    --snapshot` dumps exactly it, so the counts describe what the dump holds. The snapshot's
//!    time is the recovery point.
//! 3. `pg_dump --no-owner --no-privileges` (custom format with `-Z0`, or plain SQL) streams into
//!    an S3 multipart upload: bounded buffers (one part filling, one uploading), sha256 computed
//!    on the fly over the stored bytes, optional zstd compression in this process. Nothing is
//!    held whole in memory or written to disk. Any failure aborts the upload; an empty dump is a
//!    failure; pg_dump's stderr goes into the error.
//! 4. With `verify`, the object is read back and its sha256 and size compared.
//! 5. A JSON manifest ([`Manifest`]) is written beside the dump, last: a dump without a manifest
//!    is never a finished backup (and is deleted if the manifest cannot be written).
//!
//! Multipart uploads left open by a crashed run (ours: keys under the prefix ending in a dump
//! suffix) are aborted at the start of the next backup under the same prefix.
//!
//! Here: the backup's settings, errors and the run itself (snapshot, `pg_dump`); `upload`
//! streams the dump into object storage and reads it back, `manifest` reads and writes what
//! a finished backup is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Row};
use tokio::io::{AsyncRead, BufReader};
use tokio_util::sync::CancellationToken;

use super::object_store::{self, ObjectStoreError};
use super::pg::{InvalidUrl, LibpqConnection, database_identity, redact_url};
use super::process;

mod manifest;
mod upload;

pub use manifest::{
    Manifest, TableBytes, delete, list, manifest_key_for, read_manifest, write_manifest,
};
use upload::{Counting, RunningUpload, stream_parts};
pub use upload::{abort_stale_uploads, checksum_object};

/// The tables whose row counts a backup records and a restore drill compares (the service's
/// drill list).
pub const PARITY_TABLES: [&str; 10] = [
    "schema_migrations",
    "tenants",
    "repos",
    "packages",
    "blobs",
    "package_versions",
    "artifact_entries",
    "outbox_events",
    "search_index_jobs",
    "gc_runs",
];

/// Size of one multipart part (S3's minimum is 5 MiB except for the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `pg_dump -Fc -Z0`: restorable with `pg_restore -j`.
    Custom,
    /// Plain SQL.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// zstd at its fastest level, in this process.
    Zstd,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "custom" => Some(Format::Custom),
            "plain" => Some(Format::Plain),
            _ => None,
        }
    }
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "none" => Some(Compression::None),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The file-name suffix of a dump.
pub fn dump_suffix(format: Format, compression: Compression) -> &'static str {
    match (format, compression) {
        (Format::Custom, Compression::None) => ".dump",
        (Format::Custom, Compression::Zstd) => ".dump.zst",
        (Format::Plain, Compression::None) => ".sql",
        (Format::Plain, Compression::Zstd) => ".sql.zst",
    }
}

/// What to back up and where.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    pub bucket: String,
    /// Key prefix, e.g. `backups/staging/` (used as given).
    pub prefix: String,
    pub format: Format,
    pub compression: Compression,
    pub labels: BTreeMap<String, String>,
    pub verify: bool,
    /// `pg_dump` to run (a path, or a name looked up on PATH).
    pub pg_dump: PathBuf,
    pub connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot run {path}: {message}")]
    PgDumpMissing { path: String, message: String },
    #[error(
        "{path} is version {pg_dump}, older than the server ({server}); pg_dump must be at least \
         the server's major version: install a newer client or set pg_dump_path"
    )]
    PgDumpTooOld {
        path: String,
        pg_dump: String,
        server: String,
    },
    #[error("invalid database URL {url}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("{what} failed on {url}: {message}")]
    Database {
        url: String,
        what: &'static str,
        message: String,
    },
    #[error("pg_dump failed ({status}) after {bytes} bytes: {stderr}")]
    PgDumpFailed {
        status: String,
        bytes: u64,
        stderr: String,
    },
    #[error("pg_dump produced an empty dump of {url}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    EmptyDump { url: String, stderr: String },
    #[error("{0}")]
    ObjectStore(#[from] ObjectStoreError),
    #[error(
        "verification of s3://{bucket}/{key} failed: read back {actual_size} bytes with sha256 \
         {actual}, uploaded {expected_size} bytes with sha256 {expected}; the object was deleted"
    )]
    VerifyMismatch {
        bucket: String,
        key: String,
        expected: String,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("reading pg_dump's output failed after {bytes} bytes: {message}")]
    Stream { bytes: u64, message: String },
    #[error("the backup was cancelled after {bytes} bytes; the upload was aborted")]
    Cancelled { bytes: u64 },
    #[error("the manifest s3://{bucket}/{key} is not a backup manifest: {message}")]
    BadManifest {
        bucket: String,
        key: String,
        message: String,
    },
}

/// `pg_dump --version`: ("15.14", 15).
pub async fn pg_dump_version(pg_dump: &Path) -> Result<(String, u32), BackupError> {
    let missing = |message: String| BackupError::PgDumpMissing {
        path: pg_dump.display().to_string(),
        message,
    };
    let out = process::output(
        tokio::process::Command::new(pg_dump)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true),
        process::STDOUT_LIMIT,
        process::STDERR_LIMIT,
    )
    .await
    .map_err(|e| missing(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout.bytes).to_string();
    if !out.status.success() {
        return Err(missing(format!(
            "`--version` failed: {}",
            out.stderr.text()
        )));
    }
    parse_pg_dump_version(&text).ok_or_else(|| missing(format!("unexpected version {text:?}")))
}

/// "pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)" → ("15.14", 15).
pub fn parse_pg_dump_version(text: &str) -> Option<(String, u32)> {
    let version = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?
        .trim_end_matches(',')
        .to_string();
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((version, major))
}

/// A backup id: UTC time plus randomness, sortable by time.
pub fn new_id(now: DateTime<Utc>) -> String {
    let mut bytes = [0u8; 4];
    rand::fill(&mut bytes);
    format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), hex::encode(bytes))
}

impl From<InvalidUrl> for BackupError {
    fn from(e: InvalidUrl) -> Self {
        BackupError::InvalidUrl {
            url: e.url,
            message: e.message,
        }
    }
}

/// What the snapshot transaction read.
struct SnapshotFacts {
    snapshot: String,
    snapshot_at: DateTime<Utc>,
    counts: BTreeMap<String, i64>,
    head: Option<String>,
    server_version: String,
    server_major: u32,
    table_bytes: Option<TableBytes>,
}

async fn read_snapshot(
    conn: &mut sqlx::PgConnection,
    url: &str,
) -> Result<SnapshotFacts, BackupError> {
    let db = |what: &'static str| {
        let url = redact_url(url);
        move |e: sqlx::Error| BackupError::Database {
            url,
            what,
            message: super::words::pg_error_words(&e),
        }
    };
    let row = sqlx::query(
        "select current_setting('server_version'), current_setting('server_version_num')::int",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db("reading the server version"))?;
    let server_version: String = row.get(0);
    let server_num: i32 = row.get(1);
    // Sizes are not transactional: read before the snapshot, so that a refusal (a role that
    // may not see them) costs the manifest a field, never the backup.
    let table_bytes = match sqlx::query(
        "select coalesce(max(s), 0)::bigint, coalesce(sum(s), 0)::bigint from ( \
           select pg_table_size(c.oid) as s from pg_class c \
           join pg_namespace n on n.oid = c.relnamespace \
           where c.relkind in ('r', 'm') \
             and n.nspname not in ('pg_catalog', 'information_schema') \
             and n.nspname not like 'pg_toast%') t",
    )
    .fetch_one(&mut *conn)
    .await
    {
        Ok(row) => Some(TableBytes {
            largest: row.get::<i64, _>(0).max(0) as u64,
            total: row.get::<i64, _>(1).max(0) as u64,
        }),
        Err(e) => {
            tracing::warn!(error = %super::words::pg_error_words(&e), "table sizes not read; the manifest will not hold them");
            None
        }
    };
    sqlx::raw_sql("begin isolation level repeatable read, read only")
        .execute(&mut *conn)
        .await
        .map_err(db("starting the snapshot transaction"))?;
    let row = sqlx::query("select pg_export_snapshot(), now()")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("exporting a snapshot"))?;
    let snapshot: String = row.get(0);
    let snapshot_at: DateTime<Utc> = row.get(1);
    let mut counts = BTreeMap::new();
    for table in PARITY_TABLES {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(db("looking up a parity table"))?;
        if exists {
            // The name is one of our constants, never user input.
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db("counting rows in the snapshot"))?;
            counts.insert(table.to_string(), n);
        }
    }
    let head = if counts.contains_key("schema_migrations") {
        sqlx::query_scalar("select max(version) from schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(db("reading the migration head"))?
    } else {
        None
    };
    Ok(SnapshotFacts {
        snapshot,
        snapshot_at,
        counts,
        head,
        server_version,
        server_major: (server_num / 10000) as u32,
        table_bytes,
    })
}

/// A stage of a running backup, as [`Watch::on_stage`] is told of it.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// The snapshot is exported and counted; the dump will hold exactly it.
    Snapshot {
        snapshot_at: DateTime<Utc>,
        migration_head: Option<&'a str>,
        tables: usize,
    },
    /// pg_dump runs and streams into this object.
    Streaming {
        bucket: &'a str,
        object_key: &'a str,
    },
    /// The upload is complete (before verification and manifest).
    Uploaded {
        size_bytes: u64,
        dump_bytes: u64,
        sha256: &'a str,
    },
    /// The object was read back and matches.
    Verified,
}

/// What a caller can follow while a backup runs: the bytes pg_dump has produced so far (read
/// it at any time, e.g. to show a rate) and each [`Stage`] as it is reached.
#[derive(Default)]
pub struct Watch<'a> {
    pub dumped: Arc<AtomicU64>,
    pub on_stage: Option<&'a (dyn Fn(Stage<'_>) + Send + Sync)>,
}

impl Watch<'_> {
    fn stage(&self, stage: Stage<'_>) {
        if let Some(f) = self.on_stage {
            f(stage);
        }
    }
}

/// Take a backup of `database_url` as `spec` says.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    database_url: &str,
    spec: &BackupSpec,
    cancel: &CancellationToken,
) -> Result<Manifest, BackupError> {
    run_watched(s3, database_url, spec, cancel, &Watch::default()).await
}

/// [`run`], followed through `watch`.
pub async fn run_watched(
    s3: &aws_sdk_s3::Client,
    database_url: &str,
    spec: &BackupSpec,
    cancel: &CancellationToken,
    watch: &Watch<'_>,
) -> Result<Manifest, BackupError> {
    let redacted = redact_url(database_url);
    let (pg_dump_version, pg_dump_major) = pg_dump_version(&spec.pg_dump).await?;
    let database = database_identity(database_url).map_err(|e| BackupError::InvalidUrl {
        url: redacted.clone(),
        message: e.to_string(),
    })?;
    let libpq = LibpqConnection::new(database_url, None)?;
    let opts: sqlx::postgres::PgConnectOptions =
        database_url
            .parse()
            .map_err(|e: sqlx::Error| BackupError::InvalidUrl {
                url: redacted.clone(),
                message: e.to_string(),
            })?;
    let mut conn = tokio::time::timeout(
        spec.connect_timeout,
        sqlx::PgConnection::connect_with(&opts.application_name("terraform-provider-artifortress")),
    )
    .await
    .map_err(|_| BackupError::Database {
        url: redacted.clone(),
        what: "connecting",
        message: format!(
            "no connection within {}",
            crate::duration::format(spec.connect_timeout)
        ),
    })?
    .map_err(|e| BackupError::Database {
        url: redacted.clone(),
        what: "connecting",
        message: super::words::pg_error_words(&e),
    })?;
    let result = run_on(
        s3,
        &mut conn,
        database_url,
        &libpq,
        spec,
        cancel,
        (pg_dump_version, pg_dump_major),
        database,
        watch,
    )
    .await;
    let _ = conn.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_on(
    s3: &aws_sdk_s3::Client,
    conn: &mut sqlx::PgConnection,
    database_url: &str,
    libpq: &LibpqConnection,
    spec: &BackupSpec,
    cancel: &CancellationToken,
    (pg_dump_version, pg_dump_major): (String, u32),
    database: String,
    watch: &Watch<'_>,
) -> Result<Manifest, BackupError> {
    let redacted = redact_url(database_url);
    let started = Instant::now();
    let started_at = Utc::now();
    let facts = read_snapshot(conn, database_url).await?;
    if pg_dump_major < facts.server_major {
        return Err(BackupError::PgDumpTooOld {
            path: spec.pg_dump.display().to_string(),
            pg_dump: pg_dump_version,
            server: facts.server_version,
        });
    }
    watch.stage(Stage::Snapshot {
        snapshot_at: facts.snapshot_at,
        migration_head: facts.head.as_deref(),
        tables: facts.counts.len(),
    });
    match abort_stale_uploads(s3, &spec.bucket, &spec.prefix).await {
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not list or abort stale multipart uploads"),
    }
    let id = new_id(started_at);
    let object_key = format!(
        "{}{id}{}",
        spec.prefix,
        dump_suffix(spec.format, spec.compression)
    );
    let manifest_key = format!("{}{id}{MANIFEST_SUFFIX}", spec.prefix);

    let mut cmd = tokio::process::Command::new(&spec.pg_dump);
    cmd.args(["--no-owner", "--no-privileges", "--no-password"])
        .arg(format!("--snapshot={}", facts.snapshot))
        .args(match spec.format {
            Format::Custom => &["--format=custom", "--compress=0"][..],
            Format::Plain => &["--format=plain"][..],
        })
        .arg(libpq.dbname_arg())
        .env_remove("PGSERVICE")
        .envs(libpq.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| BackupError::PgDumpMissing {
        path: spec.pg_dump.display().to_string(),
        message: e.to_string(),
    })?;
    tracing::info!(url = %redacted, key = %object_key, snapshot = %facts.snapshot, "pg_dump started");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        process::read_capped(stderr, process::STDERR_LIMIT)
            .await
            .text()
    });

    let raw_bytes = watch.dumped.clone();
    raw_bytes.store(0, Ordering::Relaxed);
    let counted = Counting {
        inner: stdout,
        count: raw_bytes.clone(),
    };
    let mut reader: Pin<Box<dyn AsyncRead + Send>> = match spec.compression {
        Compression::None => Box::pin(counted),
        Compression::Zstd => Box::pin(
            async_compression::tokio::bufread::ZstdEncoder::with_quality(
                BufReader::with_capacity(256 * 1024, counted),
                async_compression::Level::Fastest,
            ),
        ),
    };

    let upload_id = object_store::create_upload(
        s3,
        &spec.bucket,
        &object_key,
        "application/octet-stream",
        &[("artifortress-backup-id", &id)],
    )
    .await?;
    let _running = RunningUpload::new(&upload_id);
    watch.stage(Stage::Streaming {
        bucket: &spec.bucket,
        object_key: &object_key,
    });

    let streamed = stream_parts(
        s3,
        &spec.bucket,
        &object_key,
        &upload_id,
        &mut reader,
        &raw_bytes,
        cancel,
    )
    .await;
    drop(reader);
    // Whatever happened, pg_dump is done or must stop now.
    let status = match &streamed {
        Ok(_) => child.wait().await.ok(),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    let stderr_text = stderr_task.await.unwrap_or_default();
    // The snapshot transaction ends here (read only: nothing to commit).
    let _ = sqlx::raw_sql("rollback").execute(&mut *conn).await;
    let dump_bytes = raw_bytes.load(Ordering::Relaxed);

    let failure = match (&streamed, status) {
        (Err(_), _) => None,
        (Ok(_), Some(st)) if !st.success() => Some(BackupError::PgDumpFailed {
            status: st.to_string(),
            bytes: dump_bytes,
            stderr: stderr_text.clone(),
        }),
        (Ok(_), None) => Some(BackupError::PgDumpFailed {
            status: "unknown exit status".into(),
            bytes: dump_bytes,
            stderr: stderr_text.clone(),
        }),
        (Ok(_), Some(_)) if dump_bytes == 0 => Some(BackupError::EmptyDump {
            url: redacted.clone(),
            stderr: stderr_text.clone(),
        }),
        _ => None,
    };
    let (parts, sha256, size_bytes) = match (streamed, failure) {
        (Ok(done), None) => done,
        (Err(e), _) | (Ok(_), Some(e)) => {
            if let Err(abort) =
                object_store::abort_upload(s3, &spec.bucket, &object_key, &upload_id).await
            {
                tracing::warn!(error = %abort, "could not abort the multipart upload; the next backup under this prefix will");
            }
            return Err(match e {
                BackupError::Stream { bytes, message } if !stderr_text.is_empty() => {
                    BackupError::Stream {
                        bytes,
                        message: format!("{message}; pg_dump said: {stderr_text}"),
                    }
                }
                other => other,
            });
        }
    };
    object_store::complete_upload(s3, &spec.bucket, &object_key, &upload_id, parts).await?;
    tracing::info!(key = %object_key, size_bytes, dump_bytes, sha256 = %sha256, "dump uploaded");
    watch.stage(Stage::Uploaded {
        size_bytes,
        dump_bytes,
        sha256: &sha256,
    });

    let cleanup = |err: BackupError| async {
        if let Err(e) = object_store::delete(s3, &spec.bucket, &object_key).await {
            tracing::warn!(error = %e, "could not delete the unfinished backup object");
        }
        err
    };
    if spec.verify {
        match checksum_object(s3, &spec.bucket, &object_key).await {
            Ok((actual, actual_size)) if actual == sha256 && actual_size == size_bytes => {
                tracing::info!(key = %object_key, "verified: read back, sha256 matches");
                watch.stage(Stage::Verified);
            }
            Ok((actual, actual_size)) => {
                return Err(cleanup(BackupError::VerifyMismatch {
                    bucket: spec.bucket.clone(),
                    key: object_key.clone(),
                    expected: sha256,
                    actual,
                    expected_size: size_bytes,
                    actual_size,
                })
                .await);
            }
            Err(e) => return Err(cleanup(e.into()).await),
        }
    }
    let completed_at = Utc::now();
    let manifest = Manifest {
        id,
        bucket: spec.bucket.clone(),
        object_key: object_key.clone(),
        manifest_key: manifest_key.clone(),
        sha256,
        size_bytes,
        dump_bytes,
        format: spec.format,
        compression: spec.compression,
        database,
        snapshot_at: facts.snapshot_at,
        started_at,
        completed_at,
        duration_seconds: (started.elapsed().as_millis() as f64) / 1000.0,
        migration_head: facts.head,
        table_counts: facts.counts,
        table_bytes: facts.table_bytes,
        postgres_version: facts.server_version,
        pg_dump_version,
        verified: spec.verify,
        labels: spec.labels.clone(),
    };
    if let Err(e) = write_manifest(s3, &manifest).await {
        return Err(cleanup(e.into()).await);
    }
    // Once more at the end: right after the object store restarted, the first listing may
    // have failed or come back before the store saw every open upload.
    if let Err(e) = abort_stale_uploads(s3, &spec.bucket, &spec.prefix).await {
        tracing::warn!(error = %e, "could not list or abort stale multipart uploads");
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_versions_parse() {
        assert_eq!(
            parse_pg_dump_version("pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
            Some(("15.14".into(), 15))
        );
        assert_eq!(
            parse_pg_dump_version("pg_dump (PostgreSQL) 17beta2"),
            Some(("17beta2".into(), 17))
        );
        assert_eq!(
            parse_pg_dump_version("pg_dump (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), 9))
        );
        assert_eq!(parse_pg_dump_version("nonsense"), None);
    }

    #[test]
    fn ids_sort_by_time() {
        let a = new_id("2026-11-27T05:00:00Z".parse().unwrap());
        let b = new_id("2026-11-27T06:00:00Z".parse().unwrap());
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("20261127T050000Z-"));
    }
}
