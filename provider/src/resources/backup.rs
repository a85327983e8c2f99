//! `resource "artifortress_backup"`: a snapshot of the service's database in object storage
//! (D3: before every production change), joining the backup client to Terraform.
//!
//! A backup is immutable: every input that shapes it forces a new one (`triggers` exists for
//! exactly that), while `retention`, `labels`, `verify` and `pg_dump_path` change in place
//! (labels are rewritten in the manifest). Read checks that the dump still exists; one deleted
//! out of band leaves the state, so the plan proposes a new backup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::clients::backup::{self, BackupError, BackupSpec, Compression, Format, Manifest};
use crate::clients::object_store;
use crate::clients::pg::database_identity;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, Import, ModifyPlanRequest,
    ModifyPlanResponse, ReadRequest, ReadResponse, Resource,
};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::{Number, Value};
use crate::settings::Settings;
use crate::shared::{counts_value, timestamp};

pub const TYPE_NAME: &str = "artifortress_backup";
const DEFAULT_PREFIX: &str = "backups/";
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

pub struct Backup;

/// The diagnostic for a backup error, on the attribute it is about.
pub(crate) fn error_diagnostic(summary: &str, err: &BackupError) -> Diagnostic {
    let attr = match err {
        BackupError::PgDumpMissing { .. } | BackupError::PgDumpTooOld { .. } => "pg_dump_path",
        BackupError::InvalidUrl { .. } | BackupError::Database { .. } => "database_url",
        BackupError::ObjectStore(_)
        | BackupError::VerifyMismatch { .. }
        | BackupError::BadManifest { .. } => "bucket",
        _ => "id",
    };
    Diagnostic::error(summary, err.to_string()).at_attr(attr)
}

/// Sets every computed attribute from a manifest.
fn write_manifest(state: &mut Value, m: &Manifest) {
    state.set_attr("id", m.id.clone().into());
    state.set_attr("source_database", m.database.clone().into());
    state.set_attr("bucket", m.bucket.clone().into());
    state.set_attr("object_key", m.object_key.clone().into());
    state.set_attr("manifest_key", m.manifest_key.clone().into());
    state.set_attr("sha256", m.sha256.clone().into());
    state.set_attr("size_bytes", Value::int(m.size_bytes as i64));
    state.set_attr("started_at", timestamp(m.started_at));
    state.set_attr("completed_at", timestamp(m.completed_at));
    state.set_attr("snapshot_at", timestamp(m.snapshot_at));
    state.set_attr(
        "duration_seconds",
        Value::Number(Number::from_f64(m.duration_seconds)),
    );
    state.set_attr(
        "migration_head",
        Value::opt_string(m.migration_head.clone()),
    );
    state.set_attr("table_counts", counts_value(&m.table_counts));
    state.set_attr("postgres_version", m.postgres_version.clone().into());
    state.set_attr("pg_dump_version", m.pg_dump_version.clone().into());
}

/// Labels as state holds them: null rather than an empty map.
fn labels_value(labels: &BTreeMap<String, String>) -> Value {
    if labels.is_empty() {
        Value::Null
    } else {
        Value::string_map(labels)
    }
}

const COMPUTED: [&str; 15] = [
    "id",
    "source_database",
    "object_key",
    "manifest_key",
    "sha256",
    "size_bytes",
    "started_at",
    "completed_at",
    "snapshot_at",
    "duration_seconds",
    "migration_head",
    "table_counts",
    "postgres_version",
    "pg_dump_version",
    "bucket",
];

#[async_trait]
impl Resource<Settings> for Backup {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "A backup of the service's database in object storage, taken before a production \
             change (D3). `pg_dump --no-owner --no-privileges` runs in an exported snapshot and \
             streams straight into an S3 multipart upload (bounded memory, nothing on disk), \
             with the sha256 computed on the fly and, with `verify`, checked by reading the \
             object back. The row counts of the ten parity tables and the migration head are \
             read in the same snapshot, so they describe exactly what the dump holds; they and \
             everything else are written to a JSON manifest beside the dump. Any change of \
             `triggers` (or of what the backup is made of) takes a new backup.",
            vec![
                Attribute::optional("database_url", Type::String)
                    .sensitive()
                    .write_only()
                    .description("PostgreSQL URL of the database to back up. Default: the provider's `database_url`. Write-only (Terraform >= 1.11): never stored; `source_database` records which database it was, and pointing at another database plans a new backup. pg_dump gets the password through its environment, never its command line."),
                Attribute::computed("source_database", Type::String)
                    .description("`host:port/database` of the database backed up (from the manifest)."),
                Attribute::optional_computed("bucket", Type::String)
                    .requires_replace()
                    .use_state_for_unknown()
                    .description("Bucket to write to. Default: the provider's `object_storage.bucket`."),
                Attribute::optional_computed("prefix", Type::String)
                    .requires_replace()
                    .default_value(DEFAULT_PREFIX)
                    .description("Key prefix of the dump and its manifest (`<prefix><id>.dump`, `<prefix><id>.manifest.json`). Multipart uploads left open under it by a run that died are aborted by the next backup."),
                Attribute::optional_computed("format", Type::String)
                    .requires_replace()
                    .default_value("custom")
                    .validate(Validator::OneOf(&["custom", "plain"]))
                    .description("`custom` (pg_dump's archive, uncompressed by pg_dump, restorable in parallel with `pg_restore -j`) or `plain` (SQL)."),
                Attribute::optional_computed("compression", Type::String)
                    .requires_replace()
                    .default_value("none")
                    .validate(Validator::OneOf(&["none", "zstd"]))
                    .description("`none`, or `zstd` at its fastest level, streamed by the provider. pg_dump's own compression is never used: its gzip runs at a fraction of the speed."),
                Attribute::optional("triggers", Type::map(Type::String))
                    .requires_replace()
                    .description("Any change takes a new backup (e.g. `{ release = var.release_version }`)."),
                Attribute::optional_computed("retention", Type::String)
                    .default_value("retain")
                    .validate(Validator::OneOf(&["retain", "delete"]))
                    .description("On destroy (and replacement): `retain` keeps the dump and its manifest in the bucket, `delete` removes both."),
                Attribute::optional("labels", Type::map(Type::String))
                    .description("Written into the manifest; changing them rewrites the manifest in place."),
                Attribute::optional_computed("verify", Type::Bool)
                    .default_value(true)
                    .description("Read the object back after the upload and compare its sha256 and size; a mismatch deletes it and fails."),
                Attribute::optional("pg_dump_path", Type::String)
                    .description("The pg_dump to run. Default: `pg_dump` on PATH. It must not be older than the server's major version (checked before anything starts)."),
                framework::timeouts_attribute(&["create"]),
                Attribute::computed("id", Type::String)
                    .use_state_for_unknown()
                    .description("The backup's id: its UTC start time and a random suffix."),
                Attribute::computed("object_key", Type::String)
                    .use_state_for_unknown()
                    .description("Key of the dump. The import ID."),
                Attribute::computed("manifest_key", Type::String)
                    .use_state_for_unknown()
                    .description("Key of the JSON manifest beside it."),
                Attribute::computed("sha256", Type::String)
                    .use_state_for_unknown()
                    .description("sha256 of the stored object (after compression)."),
                Attribute::computed("size_bytes", Type::Number)
                    .use_state_for_unknown()
                    .description("Size of the stored object."),
                Attribute::computed("started_at", Type::String)
                    .use_state_for_unknown()
                    .description("When the backup started (RFC 3339, UTC)."),
                Attribute::computed("completed_at", Type::String)
                    .use_state_for_unknown()
                    .description("When the dump, its verification and its manifest were complete."),
                Attribute::computed("snapshot_at", Type::String)
                    .use_state_for_unknown()
                    .description("The recovery point: when the snapshot the dump holds was taken."),
                Attribute::computed("duration_seconds", Type::Number)
                    .use_state_for_unknown()
                    .description("Wall time of the whole backup."),
                Attribute::computed("migration_head", Type::String)
                    .use_state_for_unknown()
                    .description("The newest version in `schema_migrations` in the snapshot."),
                Attribute::computed("table_counts", Type::map(Type::Number))
                    .use_state_for_unknown()
                    .description("Row counts of the parity tables (`schema_migrations`, `tenants`, `repos`, `packages`, `blobs`, `package_versions`, `artifact_entries`, `outbox_events`, `search_index_jobs`, `gc_runs`) that exist, read in the dump's snapshot."),
                Attribute::computed("postgres_version", Type::String)
                    .use_state_for_unknown()
                    .description("The server's version."),
                Attribute::computed("pg_dump_version", Type::String)
                    .use_state_for_unknown()
                    .description("The pg_dump's version."),
            ],
        )
    }

    async fn modify_plan(
        &self,
        req: ModifyPlanRequest<'_, Settings>,
        resp: &mut ModifyPlanResponse,
    ) {
        let (config, prior, settings) = (req.config, req.prior_state, req.provider);
        super::plan_default_bucket(config, prior, settings, resp);
        // The URL is write-only: which database it names is compared instead (a password
        // rotation is not a new backup, another database is).
        let identity = match settings.database_url_for(config.attr("database_url")) {
            Ok(Some(url)) => database_identity(&url).ok(),
            _ => None,
        };
        match (identity, prior.attr("source_database").as_str()) {
            (Some(id), None) if prior.is_null() => {
                resp.planned_state.set_attr("source_database", id.into());
            }
            (Some(id), Some(before)) if id != before => {
                resp.planned_state.set_attr("source_database", id.into());
                resp.requires_replace
                    .push(AttributePath::root().child_attr("source_database"));
            }
            _ => {}
        }
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        let (config, planned, settings) = (req.config, req.planned_state, req.provider);
        let url = match settings.need_database_url(config.attr("database_url"), "database_url") {
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
        let spec = BackupSpec {
            bucket,
            prefix: planned
                .attr("prefix")
                .as_str()
                .unwrap_or(DEFAULT_PREFIX)
                .to_string(),
            format: planned
                .attr("format")
                .as_str()
                .and_then(Format::parse)
                .unwrap_or(Format::Custom),
            compression: planned
                .attr("compression")
                .as_str()
                .and_then(Compression::parse)
                .unwrap_or(Compression::None),
            labels: config.attr("labels").to_string_map(),
            verify: planned.attr("verify").as_bool().unwrap_or(true),
            pg_dump: PathBuf::from(config.attr("pg_dump_path").as_str().unwrap_or("pg_dump")),
            connect_timeout: settings.request_timeout,
        };
        let limit = framework::timeout(config, "create", DEFAULT_CREATE_TIMEOUT);
        let stop = req.ctx.cancel.child_token();
        let work = backup::run(&s3, &url, &spec, &stop);
        tokio::pin!(work);
        let result = tokio::select! {
            r = &mut work => r,
            _ = tokio::time::sleep(limit) => {
                stop.cancel();
                match work.await {
                    // It finished as the time ran out: a complete backup is kept.
                    Ok(m) => Ok(m),
                    Err(e) => return resp.diagnostics.push(Diagnostic::error(
                        "Backup timed out",
                        format!(
                            "The backup did not finish within the create timeout ({}); it was stopped and its upload aborted. {e}",
                            crate::duration::format(limit),
                        ),
                    ).at_attr("timeouts")),
                }
            }
        };
        match result {
            Ok(m) => {
                let mut state = planned.clone();
                write_manifest(&mut state, &m);
                resp.new_state = state;
            }
            Err(e) => resp.diagnostics.push(error_diagnostic("Backup failed", &e)),
        }
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        let state = &mut resp.new_state;
        let settings = req.provider;
        let bucket = match settings.need_bucket(state.attr("bucket").as_str(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let Some(object_key) = state.attr("object_key").as_str().map(str::to_string) else {
            return resp.diagnostics.push(Diagnostic::provider_bug(
                "Backup without object key",
                "object_key is null",
            ));
        };
        let importing = state.attr("id").is_null();
        match object_store::head(&s3, &bucket, &object_key).await {
            Ok(Some(_)) => {}
            Ok(None) if importing => {
                return resp.diagnostics.push(
                    Diagnostic::error(
                        "Backup not found",
                        format!("s3://{bucket}/{object_key} does not exist."),
                    )
                    .at_attr("object_key"),
                );
            }
            Ok(None) => {
                resp.diagnostics.push(Diagnostic::warning(
                    "Backup deleted outside Terraform",
                    format!(
                        "s3://{bucket}/{object_key} no longer exists, so this backup is gone \
                         from the state and the plan proposes a new one."
                    ),
                ));
                resp.new_state = Value::Null;
                return;
            }
            Err(e) => {
                return resp.diagnostics.push(
                    Diagnostic::error("Cannot check the backup", e.to_string()).at_attr("bucket"),
                );
            }
        }
        if !importing {
            // The dump is what the backup is; a lost manifest is worth a warning (restore
            // drills and the backups data source need it), not a new backup.
            let manifest_key = state.attr("manifest_key").as_str().unwrap_or_default();
            if let Ok(None) = object_store::head(&s3, &bucket, manifest_key).await {
                resp.diagnostics.push(Diagnostic::warning(
                    "Backup manifest missing",
                    format!(
                        "s3://{bucket}/{manifest_key} no longer exists. The dump                          s3://{bucket}/{object_key} is still there, but restore drills and                          data.artifortress_backups find backups by their manifests. Take a new                          backup (change `triggers`) or restore the manifest."
                    ),
                ));
            }
            return;
        }
        // Import: everything comes from the manifest.
        let Some(manifest_key) = backup::manifest_key_for(&object_key) else {
            return resp.diagnostics.push(
                Diagnostic::error(
                    "Not a backup key",
                    format!("{object_key:?} does not end like a backup dump (.dump, .sql, optionally .zst)."),
                )
                .at_attr("object_key"),
            );
        };
        match backup::read_manifest(&s3, &bucket, &manifest_key).await {
            Ok(Some(m)) => {
                write_manifest(state, &m);
                let stem = m.object_key.strip_suffix(backup::dump_suffix(m.format, m.compression));
                let prefix = stem
                    .and_then(|s| s.strip_suffix(&m.id))
                    .unwrap_or(DEFAULT_PREFIX);
                state.set_attr("prefix", prefix.into());
                state.set_attr("format", format_name(m.format).into());
                state.set_attr("compression", compression_name(m.compression).into());
                state.set_attr("labels", labels_value(&m.labels));
                state.set_attr("verify", m.verified.into());
                state.set_attr("retention", "retain".into());
            }
            Ok(None) => resp.diagnostics.push(
                Diagnostic::error(
                    "Backup manifest not found",
                    format!("s3://{bucket}/{manifest_key} does not exist: {object_key} was not written by artifortress_backup, or its manifest was deleted."),
                )
                .at_attr("object_key"),
            ),
            Err(e) => resp.diagnostics.push(error_diagnostic("Cannot read the backup manifest", &e)),
        }
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        let (prior, planned, settings) = (req.prior_state, req.planned_state, req.provider);
        let mut state = planned.clone();
        for name in COMPUTED {
            state.set_attr(name, prior.attr(name).clone());
        }
        if !planned.attr("labels").same(prior.attr("labels")) {
            let s3 = match settings.object_store() {
                Ok(c) => c,
                Err(d) => return resp.diagnostics.push(d),
            };
            let bucket = prior.attr("bucket").as_str().unwrap_or_default();
            let key = prior.attr("manifest_key").as_str().unwrap_or_default();
            match backup::read_manifest(&s3, bucket, key).await {
                Ok(Some(mut m)) => {
                    m.labels = planned.attr("labels").to_string_map();
                    if let Err(e) = backup::write_manifest(&s3, &m).await {
                        return resp.diagnostics.push(
                            Diagnostic::error("Cannot update the backup's labels", e.to_string())
                                .at_attr("labels"),
                        );
                    }
                }
                Ok(None) => {
                    return resp.diagnostics.push(
                        Diagnostic::error(
                            "Backup manifest not found",
                            format!(
                                "s3://{bucket}/{key} does not exist; labels cannot be updated."
                            ),
                        )
                        .at_attr("labels"),
                    );
                }
                Err(e) => {
                    return resp
                        .diagnostics
                        .push(error_diagnostic("Cannot read the backup manifest", &e));
                }
            }
        }
        resp.new_state = state;
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        let prior = req.prior_state;
        let bucket = prior.attr("bucket").as_str().unwrap_or_default();
        let object_key = prior.attr("object_key").as_str().unwrap_or_default();
        let manifest_key = prior.attr("manifest_key").as_str().unwrap_or_default();
        if prior.attr("retention").as_str() != Some("delete") {
            tracing::info!(
                bucket,
                object_key,
                "backup retained in the bucket (retention = retain)"
            );
            return Diagnostics::new();
        }
        let s3 = match req.provider.object_store() {
            Ok(c) => c,
            Err(d) => return d.into(),
        };
        match backup::delete(&s3, bucket, object_key, manifest_key).await {
            Ok(()) => Diagnostics::new(),
            Err(e) => Diagnostic::error("Cannot delete the backup", e.to_string())
                .at_attr("retention")
                .into(),
        }
    }

    fn import(&self) -> Import {
        Import::Passthrough("object_key")
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Custom => "custom",
        Format::Plain => "plain",
    }
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Zstd => "zstd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(Backup.schema().check().is_empty());
    }

    #[test]
    fn every_computed_attribute_is_kept_on_update() {
        let schema = Backup.schema();
        for a in &schema.block.attributes {
            if a.constraint == crate::protocol::schema::Constraint::Computed {
                assert!(COMPUTED.contains(&a.name.as_str()), "{}", a.name);
            }
        }
    }
}
