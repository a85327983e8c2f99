//! `data "artifortress_backups"`: the backups under a prefix, from their manifests, for D3
//! gates ("a backup younger than an hour exists").

use async_trait::async_trait;
use chrono::Utc;

use crate::clients::backup;
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::value::{Number, Value};
use crate::settings::Settings;
use crate::shared::{counts_value, timestamp};

pub const TYPE_NAME: &str = "artifortress_backups";

pub struct Backups;

fn backup_type() -> Type {
    Type::object([
        ("id", Type::String),
        ("object_key", Type::String),
        ("snapshot_at", Type::String),
        ("completed_at", Type::String),
        ("size_bytes", Type::Number),
        ("migration_head", Type::String),
        ("sha256", Type::String),
        ("table_counts", Type::map(Type::Number)),
    ])
}

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
            vec![
                Attribute::optional_computed("bucket", Type::String)
                    .description("Bucket to list. Default: the provider's `object_storage.bucket`."),
                Attribute::optional_computed("prefix", Type::String)
                    .default_value("backups/")
                    .description("Key prefix, as given to `artifortress_backup`."),
                Attribute::computed("backups", Type::list(backup_type()))
                    .description("Every backup, oldest recovery point first: `id`, `object_key`, `snapshot_at` (the recovery point), `completed_at`, `size_bytes`, `migration_head`, `sha256`, `table_counts`."),
                Attribute::computed("newest_id", Type::String)
                    .description("The id of the backup with the newest recovery point; null when there is none."),
                Attribute::computed("newest_age_seconds", Type::Number)
                    .description("Seconds since the newest backup's recovery point (`snapshot_at`), at read time; null when there is none."),
            ],
        )
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let settings = req.provider;
        let bucket = match settings.need_bucket(req.config.attr("bucket").as_str(), "bucket") {
            Ok(b) => b,
            Err(d) => return resp.diagnostics.push(d),
        };
        let s3 = match settings.object_store() {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let prefix = resp
            .state
            .attr("prefix")
            .as_str()
            .unwrap_or("backups/")
            .to_string();
        let list = tokio::select! {
            l = backup::list(&s3, &bucket, &prefix) => l,
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
        let state = &mut resp.state;
        state.set_attr("bucket", bucket.into());
        let newest = manifests.last();
        state.set_attr("newest_id", Value::opt_string(newest.map(|m| m.id.clone())));
        state.set_attr(
            "newest_age_seconds",
            match newest {
                Some(m) => Value::Number(Number::from_f64(
                    ((Utc::now() - m.snapshot_at).num_milliseconds() as f64 / 1000.0).max(0.0),
                )),
                None => Value::Null,
            },
        );
        state.set_attr(
            "backups",
            Value::List(
                manifests
                    .iter()
                    .map(|m| {
                        Value::object([
                            ("id", Value::String(m.id.clone())),
                            ("object_key", Value::String(m.object_key.clone())),
                            ("snapshot_at", timestamp(m.snapshot_at)),
                            ("completed_at", timestamp(m.completed_at)),
                            ("size_bytes", Value::int(m.size_bytes as i64)),
                            (
                                "migration_head",
                                Value::opt_string(m.migration_head.clone()),
                            ),
                            ("sha256", Value::String(m.sha256.clone())),
                            ("table_counts", counts_value(&m.table_counts)),
                        ])
                    })
                    .collect(),
            ),
        );
    }
}
