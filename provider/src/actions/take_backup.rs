//! `action "artifortress_take_backup"`: a backup now, by the same engine as
//! `resource "artifortress_backup"` (`clients::backup`: pg_dump in an exported snapshot streamed
//! into an S3 multipart upload, sha256, optional verification, the JSON manifest beside the
//! dump), so restore drills, `data "artifortress_backups"` and the release gate find it like any
//! other. Nothing is kept in Terraform's state: the manifest in the bucket is the record.
//! Typical use: `terraform apply -invoke=action.artifortress_take_backup.now`, or an
//! `action_trigger` running it `before_update` of a release. Progress (stages, bytes streamed
//! and the rate, every `progress_interval`) goes to Terraform's console as it happens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{bytes_text, rate_text, with_ticks};
use crate::clients::backup::{self, BackupError, BackupSpec, Compression, Format, Stage, Watch};
use crate::clients::pg::database_identity;
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, Action, InvokeActionRequest, PlanActionRequest, Progress, Stopped,
};
use crate::protocol::model::Maybe;
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::{self, DEFAULT_BACKUP_PREFIX, timestamp_text};

pub const TYPE_NAME: &str = "artifortress_take_backup";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

crate::model! {
    /// `action "artifortress_take_backup"` as configured.
    pub(crate) struct TakeBackupModel {
        database_url: Option<String> = Attribute::optional("database_url", Type::String)
            .sensitive()
            .description("PostgreSQL URL of the database to back up. Default: the provider's `database_url`. An action's configuration is never stored in state; an ephemeral value may be given. pg_dump gets the password through its environment, never its command line."),
        bucket: Option<String> = Attribute::optional("bucket", Type::String)
            .description("Bucket to write to. Default: the provider's `object_storage.bucket`."),
        prefix: String = Attribute::optional_computed("prefix", Type::String)
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Key prefix of the dump and its manifest (`<prefix><id>.dump`, `<prefix><id>.manifest.json`), as for `artifortress_backup`: restore drills, `data \"artifortress_backups\"` and the release gate look under `backups/` by default. Multipart uploads left open under it by a run that died are aborted."),
        format: String = Attribute::optional_computed("format", Type::String)
            .default_value("custom")
            .validate(Validator::OneOf(&["custom", "plain"]))
            .description("`custom` (pg_dump's archive, restorable in parallel with `pg_restore -j`) or `plain` (SQL)."),
        compression: String = Attribute::optional_computed("compression", Type::String)
            .default_value("none")
            .validate(Validator::OneOf(&["none", "zstd"]))
            .description("`none`, or `zstd` at its fastest level, streamed by the provider."),
        labels: Option<BTreeMap<String, String>> = Attribute::optional("labels", Type::map(Type::String))
            .description("Written into the manifest (e.g. `{ reason = \"before release 2.4.0\" }`)."),
        verify: bool = shared::backup_verify_attribute(),
        pg_dump_path: Option<String> = Attribute::optional("pg_dump_path", Type::String)
            .description("The pg_dump to run. Default: `pg_dump` on PATH. It must not be older than the server's major version (checked before anything starts)."),
        progress_interval: String = Attribute::optional_computed("progress_interval", Type::String)
            .default_value("10s")
            .validate(Validator::Duration { min_millis: 1000 })
            .description("How often, while pg_dump streams, to report the bytes streamed so far and the rate over the last interval, as a duration (at least `1s`)."),
        timeouts: Value = framework::timeouts_attribute(&["invoke"]),
    }
}

pub struct TakeBackup;

#[async_trait]
impl Action<Settings> for TakeBackup {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Takes a backup of the service's database now, with the engine and manifest of \
             `artifortress_backup` (pg_dump in an exported snapshot streamed into an S3 multipart \
             upload, sha256 on the fly, optional read-back verification, the row counts and \
             migration head of that snapshot in a JSON manifest beside the dump). Nothing is \
             kept in Terraform's state: the backup is found by its manifest, like any other. \
             Progress (each stage, the bytes streamed and the rate) is printed as it happens. \
             Invoke it with `terraform apply -invoke=action.artifortress_take_backup.<name>`, \
             or from a resource's `lifecycle { action_trigger { … } }`, e.g. before a release \
             changes. Needs Terraform 1.14 or later.",
            TakeBackupModel::attributes(),
        )
    }

    async fn plan(&self, req: PlanActionRequest<'_, Settings>) -> Diagnostics {
        // What the invocation would refuse at once: no database or bucket to use.
        let mut diags = Diagnostics::new();
        let config = match TakeBackupModel::planned(req.config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid backup configuration").into(),
        };
        let own_url = match &config.database_url {
            Maybe::Unknown => Value::unknown(),
            Maybe::Known(Some(u)) => Value::String(u.clone()),
            _ => Value::Null,
        };
        if let Err(d) = req.provider.database_url_for(&own_url) {
            diags.push(d.at_attr("database_url"));
        }
        if let Maybe::Null | Maybe::Known(None) = config.bucket
            && let Err(d) = req.provider.bucket(None)
        {
            diags.push(d.at_attr("bucket"));
        }
        diags
    }

    async fn invoke(&self, req: InvokeActionRequest<'_, Settings>) -> Diagnostics {
        let settings = req.provider;
        let config = match TakeBackupModel::from_config(req.config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid backup configuration").into(),
        };
        let url = match settings.need_database_url(
            &Value::opt_string(config.database_url.clone()),
            "database_url",
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
        let spec = BackupSpec {
            bucket: bucket.clone(),
            prefix: config.prefix.clone(),
            // Validated against these names: parse cannot fail.
            format: Format::parse(&config.format).unwrap_or(Format::Custom),
            compression: Compression::parse(&config.compression).unwrap_or(Compression::None),
            labels: config.labels.clone().unwrap_or_default(),
            verify: config.verify,
            pg_dump: PathBuf::from(config.pg_dump_path.as_deref().unwrap_or("pg_dump")),
            connect_timeout: settings.request_timeout,
        };
        let every =
            crate::duration::parse(&config.progress_interval).unwrap_or(Duration::from_secs(10));
        let source = database_identity(&url).unwrap_or_else(|_| "the database".into());
        req.progress.send(format!(
            "backing up {source} to s3://{bucket}/{}",
            config.prefix
        ));
        let limit = framework::timeout(req.config, "invoke", DEFAULT_TIMEOUT);
        let reporter = Reporter::new(req.progress.clone());
        let started = Instant::now();
        let (s3_ref, url_ref, spec_ref, reporter_ref) = (&s3, &url, &spec, &reporter);
        let (result, stopped) = framework::run_bounded(
            req.ctx,
            limit,
            |stop| async move {
                let on_stage = |stage: Stage<'_>| reporter_ref.stage(stage);
                let watch = Watch {
                    dumped: reporter_ref.dumped.clone(),
                    on_stage: Some(&on_stage),
                };
                with_ticks(
                    backup::run_watched(s3_ref, url_ref, spec_ref, &stop, &watch),
                    every,
                    || reporter_ref.tick(),
                )
                .await
            },
            framework::nothing_more,
        )
        .await;
        match (result, stopped) {
            // Finished, or finished as the time ran out: a complete backup is a backup.
            (Ok(m), _) => {
                req.progress.send(format!(
                    "backup {} complete in {}: s3://{}/{} ({}, sha256 {}), manifest s3://{}/{}, snapshot at {}, migration head {}",
                    m.id,
                    crate::duration::format(started.elapsed()),
                    m.bucket,
                    m.object_key,
                    bytes_text(m.size_bytes),
                    m.sha256,
                    m.bucket,
                    m.manifest_key,
                    timestamp_text(m.snapshot_at),
                    m.migration_head.as_deref().unwrap_or("none"),
                ));
                Diagnostics::new()
            }
            (Err(e), Some(Stopped::TimedOut)) => Diagnostic::error(
                "Backup timed out",
                format!(
                    "The backup did not finish within the invoke timeout ({}); it was stopped and its upload aborted. {e}",
                    crate::duration::format(limit),
                ),
            )
            .at_attr("timeouts")
            .into(),
            (Err(e), _) => error_diagnostic(&e).into(),
        }
    }
}

/// Turns the backup's stages and byte counter into progress messages.
struct Reporter {
    progress: Progress,
    dumped: Arc<AtomicU64>,
    /// When streaming started, and the bytes and time at the last tick.
    streaming: Mutex<Option<(Instant, u64, Instant)>>,
}

impl Reporter {
    fn new(progress: Progress) -> Reporter {
        Reporter {
            progress,
            dumped: Arc::new(AtomicU64::new(0)),
            streaming: Mutex::new(None),
        }
    }

    fn stage(&self, stage: Stage<'_>) {
        let message = match stage {
            Stage::Snapshot {
                snapshot_at,
                migration_head,
                tables,
            } => format!(
                "snapshot exported at {}: migration head {}, {tables} parity table(s) counted",
                timestamp_text(snapshot_at),
                migration_head.unwrap_or("none"),
            ),
            Stage::Streaming { bucket, object_key } => {
                let now = Instant::now();
                if let Ok(mut s) = self.streaming.lock() {
                    *s = Some((now, 0, now));
                }
                format!("pg_dump streaming into s3://{bucket}/{object_key}")
            }
            Stage::Uploaded {
                size_bytes,
                dump_bytes,
                sha256,
            } => {
                let elapsed = self
                    .streaming
                    .lock()
                    .ok()
                    .and_then(|s| s.map(|(t, _, _)| t.elapsed()))
                    .unwrap_or_default();
                format!(
                    "uploaded {} ({} from pg_dump) in {}, {} on average, sha256 {sha256}",
                    bytes_text(size_bytes),
                    bytes_text(dump_bytes),
                    crate::duration::format(elapsed),
                    rate_text(dump_bytes, elapsed),
                )
            }
            Stage::Verified => "read back: sha256 and size match".to_string(),
        };
        self.progress.send(message);
    }

    /// Bytes so far and the rate since the last tick, once streaming has started.
    fn tick(&self) {
        let Ok(mut s) = self.streaming.lock() else {
            return;
        };
        let Some((_, last_bytes, last_at)) = s.as_mut() else {
            return;
        };
        let now_bytes = self.dumped.load(Ordering::Relaxed);
        let now = Instant::now();
        let message = format!(
            "streamed {} from pg_dump so far, {} over the last {}",
            bytes_text(now_bytes),
            rate_text(now_bytes.saturating_sub(*last_bytes), now - *last_at),
            crate::duration::format(now - *last_at),
        );
        *last_bytes = now_bytes;
        *last_at = now;
        self.progress.send(message);
    }
}

/// The diagnostic for a backup error, on the attribute it is about.
fn error_diagnostic(err: &BackupError) -> Diagnostic {
    let attr = match err {
        BackupError::PgDumpMissing { .. } | BackupError::PgDumpTooOld { .. } => "pg_dump_path",
        BackupError::InvalidUrl { .. } | BackupError::Database { .. } => "database_url",
        BackupError::ObjectStore(_)
        | BackupError::VerifyMismatch { .. }
        | BackupError::BadManifest { .. } => "bucket",
        _ => "prefix",
    };
    Diagnostic::error("Backup failed", err.to_string()).at_attr(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        let schema = TakeBackup.schema();
        assert!(schema.check().is_empty(), "{:?}", schema.check());
        assert!(framework::check_action_schema(TYPE_NAME, &schema).is_empty());
    }

    #[tokio::test]
    async fn stages_and_ticks_become_progress_messages() {
        let (progress, mut rx) = Progress::channel();
        let r = Reporter::new(progress);
        // No tick before streaming: nothing to say.
        r.tick();
        r.stage(Stage::Snapshot {
            snapshot_at: "2026-12-05T01:00:00Z".parse().unwrap(),
            migration_head: Some("0042"),
            tables: 10,
        });
        r.stage(Stage::Streaming {
            bucket: "b",
            object_key: "backups/x.dump",
        });
        r.dumped.store(3 * 1024 * 1024, Ordering::Relaxed);
        r.tick();
        r.stage(Stage::Uploaded {
            size_bytes: 3 * 1024 * 1024,
            dump_bytes: 3 * 1024 * 1024,
            sha256: "ab12",
        });
        r.stage(Stage::Verified);
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(m);
        }
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!(
            got[0],
            "snapshot exported at 2026-12-05T01:00:00.000Z: migration head 0042, 10 parity table(s) counted"
        );
        assert_eq!(got[1], "pg_dump streaming into s3://b/backups/x.dump");
        assert!(
            got[2].starts_with("streamed 3.0 MiB from pg_dump so far, "),
            "{}",
            got[2]
        );
        assert!(got[2].contains("/s over the last "), "{}", got[2]);
        assert!(
            got[3].starts_with("uploaded 3.0 MiB (3.0 MiB from pg_dump) in "),
            "{}",
            got[3]
        );
        assert!(got[3].ends_with("sha256 ab12"), "{}", got[3]);
        assert_eq!(got[4], "read back: sha256 and size match");
    }

    #[test]
    fn errors_point_at_the_attribute_they_are_about() {
        let d = error_diagnostic(&BackupError::PgDumpMissing {
            path: "/nope/pg_dump".into(),
            message: "No such file or directory".into(),
        });
        assert_eq!(d.attribute.unwrap().to_string(), "pg_dump_path");
        assert!(d.detail.contains("/nope/pg_dump"));
    }
}
