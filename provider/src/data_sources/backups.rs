//! `data "artifortress_backups"`: the backups under a prefix, from their manifests, for D3
//! gates ("a backup younger than an hour exists").

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::Utc;

use crate::clients::backup::{self, Manifest};
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::settings::Settings;
use crate::shared::{DEFAULT_BACKUP_PREFIX, timestamp_text};

pub const TYPE_NAME: &str = "artifortress_backups";

crate::model! {
    /// `data "artifortress_backups"` as configured and read.
    pub(crate) struct BackupsModel {
        bucket: Option<String> = Attribute::optional_computed("bucket", Type::String)
            .description("Bucket to list. Default: the provider's `object_storage.bucket`."),
        prefix: String = Attribute::optional_computed("prefix", Type::String)
            .default_value(DEFAULT_BACKUP_PREFIX)
            .description("Key prefix, as given to `artifortress_backup`."),
        backups: Option<Vec<BackupEntry>> =
            Attribute::computed("backups", Type::list(BackupEntry::object_type()))
                .description("Every backup, oldest recovery point first: `id`, `object_key`, `snapshot_at` (the recovery point), `completed_at`, `size_bytes`, `migration_head`, `sha256`, `table_counts`."),
        newest_id: Option<String> = Attribute::computed("newest_id", Type::String)
            .description("The id of the backup with the newest recovery point; null when there is none."),
        newest_age_seconds: Option<f64> = Attribute::computed("newest_age_seconds", Type::Number)
            .description("Seconds since the newest backup's recovery point (`snapshot_at`), at read time; null when there is none."),
    }
}

crate::model! {
    /// One element of `backups`: a backup's manifest.
    pub(crate) struct BackupEntry {
        id: String = Attribute::computed("id", Type::String),
        object_key: String = Attribute::computed("object_key", Type::String),
        snapshot_at: String = Attribute::computed("snapshot_at", Type::String),
        completed_at: String = Attribute::computed("completed_at", Type::String),
        size_bytes: i64 = Attribute::computed("size_bytes", Type::Number),
        migration_head: Option<String> = Attribute::computed("migration_head", Type::String),
        sha256: String = Attribute::computed("sha256", Type::String),
        table_counts: BTreeMap<String, i64> =
            Attribute::computed("table_counts", Type::map(Type::Number)),
    }
}

pub struct Backups;

#[async_trait]
impl DataSource<Settings> for Backups {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Lists the backups under a prefix from their manifests (objects without a manifest \
             are not finished backups and are skipped), oldest first, with the newest one's id \
             and age. For D3 gates, e.g. a `check` or a precondition that a backup younger \
             than an hour exists.",
            BackupsModel::attributes(),
        )
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let mut model = match BackupsModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => return resp.diagnostics.push(e.diagnostic("Reading backups")),
        };
        let settings = req.provider;
        let bucket = match settings.need_bucket(model.bucket.as_deref(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let list = tokio::select! {
            l = backup::list(&s3, &bucket, &model.prefix) => l,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error("Listing backups cancelled", "Terraform was interrupted."));
            }
        };
        let manifests = match list {
            Ok(l) => l,
            Err(e) => {
                return resp.diagnostics.push(
                    Diagnostic::error("Cannot list backups", e.to_string()).at_attr("prefix"),
                );
            }
        };
        let newest = manifests.last();
        model.bucket = Some(bucket);
        model.newest_id = newest.map(|m| m.id.clone());
        model.newest_age_seconds = newest
            .map(|m| ((Utc::now() - m.snapshot_at).num_milliseconds() as f64 / 1000.0).max(0.0));
        model.backups = Some(manifests.iter().map(BackupEntry::of).collect());
        resp.state = model.to_object();
    }
}

impl BackupEntry {
    fn of(m: &Manifest) -> Self {
        BackupEntry {
            id: m.id.clone(),
            object_key: m.object_key.clone(),
            snapshot_at: timestamp_text(m.snapshot_at),
            completed_at: timestamp_text(m.completed_at),
            size_bytes: m.size_bytes as i64,
            migration_head: m.migration_head.clone(),
            sha256: m.sha256.clone(),
            table_counts: m.table_counts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(Backups.schema().check().is_empty());
    }
}
