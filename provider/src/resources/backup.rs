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
    self, ApplyRequest, ApplyResponse, DeleteRequest, ForImport, IdentityRequest, IdentitySchema,
    Import, ListRequest, ListResource, ListResult, ModifyPlanRequest, ModifyPlanResponse,
    ReadRequest, ReadResponse, Resource, Stopped,
};
use crate::protocol::model::ToValue;
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::identity;
use crate::shared::{self, DEFAULT_BACKUP_PREFIX, timestamp_text};

pub const TYPE_NAME: &str = "artifortress_backup";
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

crate::model! {
    /// `artifortress_backup` as configured, planned and stored.
    pub(crate) struct BackupModel {
        database_url: Option<String> = Attribute::optional("database_url", Type::String)
            .sensitive()
            .write_only()
            .description("PostgreSQL URL of the database to back up. Default: the provider's `database_url`. Write-only (Terraform >= 1.11): never stored; `source_database` records which database it was, and pointing at another database plans a new backup. pg_dump gets the password through its environment, never its command line."),
        source_database: Option<String> = Attribute::computed("source_database", Type::String)
            .description("`host:port/database` of the database backed up (from the manifest)."),
        bucket: Option<String> = Attribute::optional_computed("bucket", Type::String)
            .requires_replace()
            .use_state_for_unknown()
            .description("Bucket to write to. Default: the provider's `object_storage.bucket`."),
        prefix: String = Attribute::optional_computed("prefix", Type::String)
            .requires_replace()
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Key prefix of the dump and its manifest (`<prefix><id>.dump`, `<prefix><id>.manifest.json`). Multipart uploads left open under it by a run that died are aborted by the next backup."),
        format: String = Attribute::optional_computed("format", Type::String)
            .requires_replace()
            .default_value("custom")
            .validate(Validator::OneOf(&["custom", "plain"]))
            .description("`custom` (pg_dump's archive, uncompressed by pg_dump, restorable in parallel with `pg_restore -j`) or `plain` (SQL)."),
        compression: String = Attribute::optional_computed("compression", Type::String)
            .requires_replace()
            .default_value("none")
            .validate(Validator::OneOf(&["none", "zstd"]))
            .description("`none`, or `zstd` at its fastest level, streamed by the provider. pg_dump's own compression is never used: its gzip runs at a fraction of the speed."),
        triggers: Option<BTreeMap<String, String>> = Attribute::optional("triggers", Type::map(Type::String))
            .requires_replace()
            .description("Any change takes a new backup (e.g. `{ release = var.release_version }`)."),
        retention: String = Attribute::optional_computed("retention", Type::String)
            .default_value("retain")
            .validate(Validator::OneOf(&["retain", "delete"]))
            .description("On destroy (and replacement): `retain` keeps the dump and its manifest in the bucket, `delete` removes both."),
        labels: Option<BTreeMap<String, String>> = Attribute::optional("labels", Type::map(Type::String))
            .description("Written into the manifest; changing them rewrites the manifest in place."),
        verify: bool = shared::backup_verify_attribute(),
        pg_dump_path: Option<String> = Attribute::optional("pg_dump_path", Type::String)
            .description("The pg_dump to run. Default: `pg_dump` on PATH. It must not be older than the server's major version (checked before anything starts)."),
        timeouts: Value = framework::timeouts_attribute(&["create"]),
        id: Option<String> = Attribute::computed("id", Type::String)
            .use_state_for_unknown()
            .description("The backup's id: its UTC start time and a random suffix."),
        object_key: Option<String> = Attribute::computed("object_key", Type::String)
            .use_state_for_unknown()
            .description("Key of the dump. The import ID."),
        manifest_key: Option<String> = Attribute::computed("manifest_key", Type::String)
            .use_state_for_unknown()
            .description("Key of the JSON manifest beside it."),
        sha256: Option<String> = Attribute::computed("sha256", Type::String)
            .use_state_for_unknown()
            .description("sha256 of the stored object (after compression)."),
        size_bytes: Option<i64> = Attribute::computed("size_bytes", Type::Number)
            .use_state_for_unknown()
            .description("Size of the stored object."),
        started_at: Option<String> = Attribute::computed("started_at", Type::String)
            .use_state_for_unknown()
            .description("When the backup started (RFC 3339, UTC)."),
        completed_at: Option<String> = Attribute::computed("completed_at", Type::String)
            .use_state_for_unknown()
            .description("When the dump, its verification and its manifest were complete."),
        snapshot_at: Option<String> = Attribute::computed("snapshot_at", Type::String)
            .use_state_for_unknown()
            .description("The recovery point: when the snapshot the dump holds was taken."),
        duration_seconds: Option<f64> = Attribute::computed("duration_seconds", Type::Number)
            .use_state_for_unknown()
            .description("Wall time of the whole backup."),
        migration_head: Option<String> = Attribute::computed("migration_head", Type::String)
            .use_state_for_unknown()
            .description("The newest version in `schema_migrations` in the snapshot."),
        table_counts: Option<BTreeMap<String, i64>> = Attribute::computed("table_counts", Type::map(Type::Number))
            .use_state_for_unknown()
            .description("Row counts of the parity tables (`schema_migrations`, `tenants`, `repos`, `packages`, `blobs`, `package_versions`, `artifact_entries`, `outbox_events`, `search_index_jobs`, `gc_runs`) that exist, read in the dump's snapshot."),
        postgres_version: Option<String> = Attribute::computed("postgres_version", Type::String)
            .use_state_for_unknown()
            .description("The server's version."),
        pg_dump_version: Option<String> = Attribute::computed("pg_dump_version", Type::String)
            .use_state_for_unknown()
            .description("The pg_dump's version."),
    }
}

pub struct Backup;

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
            BackupModel::attributes(),
        )
    }

    async fn modify_plan(
        &self,
        req: ModifyPlanRequest<'_, Settings>,
        resp: &mut ModifyPlanResponse,
    ) {
        let (settings, prior_object) = (req.provider, req.prior_state);
        let config = match BackupModel::planned(req.config) {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Cannot read the configuration"));
            }
        };
        super::plan_default_bucket(req.config, prior_object, settings, resp);
        // The URL is write-only: which database it names is compared instead (a password
        // rotation is not a new backup, another database is).
        let own_url = config.database_url.to_value(&Type::String);
        let identity = match settings.database_url_for(&own_url) {
            Ok(Some(url)) => database_identity(&url).ok(),
            _ => None,
        };
        let before = match BackupModel::planned(prior_object) {
            Ok(prior) => prior.source_database.known().cloned().flatten(),
            Err(_) => None,
        };
        let source = BackupModel::source_database;
        match (identity, before) {
            (Some(id), None) if prior_object.is_null() => {
                resp.planned_state.set_attr(source, id.into());
            }
            (Some(id), Some(before)) if id != before => {
                resp.planned_state.set_attr(source, id.into());
                resp.requires_replace
                    .push(AttributePath::root().child_attr(source));
            }
            _ => {}
        }
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        let settings = req.provider;
        let (config, planned) = match (
            BackupModel::from_config(req.config),
            BackupModel::from_value(req.planned_state),
        ) {
            (Ok(c), Ok(p)) => (c, p),
            (Err(e), _) | (_, Err(e)) => {
                return resp.diagnostics.push(e.diagnostic("Cannot read the plan"));
            }
        };
        let own_url = config.database_url.to_value(&Type::String);
        let url = match settings.need_database_url(&own_url, "database_url") {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        let bucket = match settings.need_bucket(planned.bucket.as_deref(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let spec = BackupSpec {
            bucket,
            prefix: planned.prefix.clone(),
            // Validated against these names: parse cannot fail.
            format: Format::parse(&planned.format).unwrap_or(Format::Custom),
            compression: Compression::parse(&planned.compression).unwrap_or(Compression::None),
            labels: config.labels.clone().unwrap_or_default(),
            verify: planned.verify,
            pg_dump: PathBuf::from(config.pg_dump_path.as_deref().unwrap_or("pg_dump")),
            connect_timeout: settings.request_timeout,
        };
        let limit = framework::timeout(req.config, "create", DEFAULT_CREATE_TIMEOUT);
        let (result, stopped) = framework::run_bounded(
            req.ctx,
            limit,
            |stop| async move { backup::run(&s3, &url, &spec, &stop).await },
            framework::nothing_more,
        )
        .await;
        match (result, stopped) {
            // Finished, or finished as the time ran out: a complete backup is kept.
            (Ok(m), _) => {
                let mut state = planned;
                write_manifest(&mut state, &m);
                resp.new_state = state.to_object();
            }
            (Err(e), Some(Stopped::TimedOut)) => resp.diagnostics.push(
                Diagnostic::error(
                    "Backup timed out",
                    format!(
                        "The backup did not finish within the create timeout ({}); it was stopped and its upload aborted. {e}",
                        crate::duration::format(limit),
                    ),
                )
                .at_attr("timeouts"),
            ),
            (Err(e), _) => resp.diagnostics.push(error_diagnostic("Backup failed", &e)),
        }
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        let settings = req.provider;
        // An import's state holds only `object_key`: the rest reads as its defaults and is
        // filled from the manifest below.
        let mut state = match BackupModel::from_config(&resp.new_state) {
            Ok(m) => m,
            Err(e) => return resp.diagnostics.push(e.diagnostic("Cannot read the state")),
        };
        let bucket = match settings.need_bucket(state.bucket.as_deref(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let Some(object_key) = state.object_key.clone() else {
            return resp.diagnostics.push(Diagnostic::provider_bug(
                "Backup without object key",
                "object_key is null",
            ));
        };
        let importing = state.id.is_none();
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
            let manifest_key = state.manifest_key.as_deref().unwrap_or_default();
            if let Ok(None) = object_store::head(&s3, &bucket, manifest_key).await {
                resp.diagnostics.push(Diagnostic::warning(
                    "Backup manifest missing",
                    format!(
                        "s3://{bucket}/{manifest_key} no longer exists. The dump \
                         s3://{bucket}/{object_key} is still there, but restore drills and \
                         data.artifortress_backups find backups by their manifests. Take a new \
                         backup (change `triggers`) or restore the manifest."
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
                write_manifest(&mut state, &m);
                let stem = m.object_key.strip_suffix(backup::dump_suffix(m.format, m.compression));
                state.prefix = stem
                    .and_then(|s| s.strip_suffix(&m.id))
                    .unwrap_or(DEFAULT_BACKUP_PREFIX)
                    .to_string();
                state.format = format_name(m.format).to_string();
                state.compression = compression_name(m.compression).to_string();
                state.labels = labels(&m.labels);
                state.verify = m.verified;
                state.retention = "retain".to_string();
                resp.new_state = state.to_object();
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
        let settings = req.provider;
        let (prior, planned) = match (
            BackupModel::from_value(req.prior_state),
            BackupModel::from_value(req.planned_state),
        ) {
            (Ok(p), Ok(n)) => (p, n),
            (Err(e), _) | (_, Err(e)) => {
                return resp.diagnostics.push(e.diagnostic("Cannot read the plan"));
            }
        };
        let state = updated(planned, prior.clone());
        if state.labels != prior.labels {
            let s3 = match settings.object_store() {
                Ok(c) => c,
                Err(d) => return resp.diagnostics.push(d),
            };
            let bucket = prior.bucket.as_deref().unwrap_or_default();
            let key = prior.manifest_key.as_deref().unwrap_or_default();
            match backup::read_manifest(&s3, bucket, key).await {
                Ok(Some(mut m)) => {
                    m.labels = state.labels.clone().unwrap_or_default();
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
        resp.new_state = state.to_object();
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        let prior = match BackupModel::from_value(req.prior_state) {
            Ok(m) => m,
            Err(e) => return e.diagnostic("Cannot read the state").into(),
        };
        let bucket = prior.bucket.as_deref().unwrap_or_default();
        let object_key = prior.object_key.as_deref().unwrap_or_default();
        let manifest_key = prior.manifest_key.as_deref().unwrap_or_default();
        if prior.retention != "delete" {
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

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                identity::string_attribute(
                    "bucket",
                    ForImport::Optional,
                    "The bucket holding the dump. Default on import: the provider's `object_storage.bucket`.",
                ),
                identity::string_attribute(
                    "object_key",
                    ForImport::Required,
                    "The key of the dump (its manifest is beside it).",
                ),
            ],
        })
    }

    /// The dump's bucket and key: both fixed for the backup's life (a change of either is a
    /// new backup). An import's state names no bucket until its refresh: the provider's.
    fn identity(&self, req: IdentityRequest<'_, Settings>) -> Option<Value> {
        let object_key = req.state.attr("object_key").as_str()?;
        let bucket = match req.state.attr("bucket").as_str() {
            Some(b) => Value::string(b),
            None if req.prior.attr("bucket").is_null() => {
                Value::opt_string(req.provider.bucket(None).ok().flatten())
            }
            None => Value::Null,
        };
        Some(Value::object([
            ("bucket", bucket),
            ("object_key", Value::string(object_key)),
        ]))
    }

    fn import_id(&self, identity: &Value, settings: &Settings) -> Result<String, Diagnostic> {
        let key = identity.attr("object_key").as_str().unwrap_or_default();
        if let Some(wanted) = identity.attr("bucket").as_str() {
            let ours = settings.need_bucket(None, "bucket")?;
            if wanted != ours {
                return Err(Diagnostic::error(
                    "Backup in another bucket",
                    format!(
                        "The identity names s3://{wanted}/{key}, but an import reads the \
                         provider's object_storage.bucket ({ours:?}). Import with a provider \
                         whose bucket is {wanted:?} (an aliased provider block works)."
                    ),
                ));
            }
        }
        Ok(key.to_string())
    }
}

/// `list "artifortress_backup"` (`terraform query`): every backup under a prefix that has a
/// manifest, oldest first, with its identity and, when asked, the state an import by its key
/// reads (so `terraform query -generate-config-out` writes configuration that imports it with
/// an empty plan).
pub struct BackupList;

#[async_trait]
impl ListResource<Settings> for BackupList {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Backups in the provider's bucket, found by their manifests.",
            vec![Attribute::optional("prefix", Type::String).description(
                "List the backups under this prefix (default `backups/`): every dump with a \
                     manifest, as `data \"artifortress_backups\"` finds them.",
            )],
        )
    }

    async fn list(&self, req: ListRequest<'_, Settings>) -> (Vec<ListResult>, Diagnostics) {
        let settings = req.provider;
        let prefix = req
            .config
            .attr("prefix")
            .as_str()
            .unwrap_or(DEFAULT_BACKUP_PREFIX)
            .to_string();
        let listed = async {
            let bucket = settings.need_bucket(None, "bucket")?;
            let s3 = settings.object_store()?;
            let manifests = backup::list(&s3, &bucket, &prefix)
                .await
                .map_err(|e| error_diagnostic("Cannot list the backups", &e).at_attr("prefix"))?;
            Ok::<_, Diagnostic>((bucket, manifests))
        };
        let (bucket, manifests) = match listed.await {
            Ok(l) => l,
            Err(d) => return (Vec::new(), d.into()),
        };
        let mut diags = Diagnostics::new();
        let mut results = Vec::new();
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        for m in manifests.into_iter().take(limit) {
            let resource = if req.include_resource {
                let ty = Backup.schema().value_type();
                let mut state = Value::null_object(&ty);
                state.set_attr("object_key", Value::string(&m.object_key));
                let mut resp = ReadResponse {
                    new_state: state.clone(),
                    private: Vec::new(),
                    diagnostics: Diagnostics::new(),
                };
                Backup
                    .read(
                        ReadRequest {
                            current_state: &state,
                            identity: &Value::Null,
                            private: &[],
                            provider: settings,
                            ctx: req.ctx,
                        },
                        &mut resp,
                    )
                    .await;
                if resp.diagnostics.has_errors() {
                    diags.extend(resp.diagnostics);
                    continue;
                }
                Some(resp.new_state)
            } else {
                None
            };
            results.push(ListResult {
                identity: Value::object([
                    ("bucket", Value::string(&bucket)),
                    ("object_key", Value::string(&m.object_key)),
                ]),
                display_name: format!(
                    "{} ({}, snapshot {})",
                    m.id,
                    m.object_key,
                    timestamp_text(m.snapshot_at)
                ),
                resource,
            });
        }
        (results, diags)
    }
}

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
fn write_manifest(state: &mut BackupModel, m: &Manifest) {
    state.id = Some(m.id.clone());
    state.source_database = Some(m.database.clone());
    state.bucket = Some(m.bucket.clone());
    state.object_key = Some(m.object_key.clone());
    state.manifest_key = Some(m.manifest_key.clone());
    state.sha256 = Some(m.sha256.clone());
    state.size_bytes = Some(m.size_bytes as i64);
    state.started_at = Some(timestamp_text(m.started_at));
    state.completed_at = Some(timestamp_text(m.completed_at));
    state.snapshot_at = Some(timestamp_text(m.snapshot_at));
    state.duration_seconds = Some(m.duration_seconds);
    state.migration_head = m.migration_head.clone();
    state.table_counts = Some(m.table_counts.clone());
    state.postgres_version = Some(m.postgres_version.clone());
    state.pg_dump_version = Some(m.pg_dump_version.clone());
}

/// On update only what the configuration sets changes; everything the backup recorded (the
/// computed attributes, `bucket` included) stays as it was.
fn updated(planned: BackupModel, prior: BackupModel) -> BackupModel {
    BackupModel {
        database_url: planned.database_url,
        prefix: planned.prefix,
        format: planned.format,
        compression: planned.compression,
        triggers: planned.triggers,
        retention: planned.retention,
        labels: planned.labels,
        verify: planned.verify,
        pg_dump_path: planned.pg_dump_path,
        timeouts: planned.timeouts,
        ..prior
    }
}

/// Labels as state holds them: null rather than an empty map.
fn labels(labels: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!labels.is_empty()).then(|| labels.clone())
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
        // A prior state with every attribute set, and a plan that changes every one: the update
        // takes the configurable ones from the plan and keeps every computed one.
        let schema = Backup.schema();
        let object = |tag: &str| {
            Value::object(schema.block.attributes.iter().map(|a| {
                let v = match a.value_type() {
                    Type::String => Value::from(format!("{tag}-{}", a.name)),
                    Type::Bool => Value::Bool(tag == "prior"),
                    Type::Number => Value::int(if tag == "prior" { 1 } else { 2 }),
                    Type::Map(_) => Value::Map(BTreeMap::from([(
                        tag.to_string(),
                        if a.name == "table_counts" {
                            Value::int(1)
                        } else {
                            tag.into()
                        },
                    )])),
                    _ => Value::object([("create", Value::from(tag))]),
                };
                (a.name.clone(), v)
            }))
        };
        let (prior, planned) = (object("prior"), object("planned"));
        let state = updated(
            BackupModel::from_value(&planned).unwrap(),
            BackupModel::from_value(&prior).unwrap(),
        )
        .to_object();
        for a in &schema.block.attributes {
            let from = if a.constraint == crate::protocol::schema::Constraint::Computed
                || a.name == "bucket"
            {
                &prior
            } else {
                &planned
            };
            assert!(state.attr(&a.name).same(from.attr(&a.name)), "{}", a.name);
        }
    }
}
