//! Backup manifests: what a backup is, as written beside its dump (`…/ID.manifest.json`),
//! and the operations on finished backups (list, read, write, delete).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BackupError, Compression, Format, MANIFEST_SUFFIX};
use crate::clients::object_store::{self, ObjectStoreError};

/// Longest first, so `.dump.zst` is not taken for `.dump`.
pub(super) const DUMP_SUFFIXES: [&str; 4] = [".dump.zst", ".sql.zst", ".dump", ".sql"];

/// The manifest key of a dump key (`…/ID.dump.zst` → `…/ID.manifest.json`).
pub fn manifest_key_for(object_key: &str) -> Option<String> {
    DUMP_SUFFIXES
        .iter()
        .find_map(|s| object_key.strip_suffix(s))
        .map(|stem| format!("{stem}{MANIFEST_SUFFIX}"))
}

/// What a backup is, as written next to it (`…/ID.manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub bucket: String,
    pub object_key: String,
    pub manifest_key: String,
    /// sha256 of the stored object (after compression).
    pub sha256: String,
    pub size_bytes: u64,
    /// Bytes pg_dump produced (before compression).
    pub dump_bytes: u64,
    pub format: Format,
    pub compression: Compression,
    /// `host:port/database` of the source.
    pub database: String,
    /// The recovery point: when the dump's snapshot was taken.
    pub snapshot_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub migration_head: Option<String>,
    /// Row counts of the [`PARITY_TABLES`](super::PARITY_TABLES) that exist, read in the dump's
    /// snapshot.
    pub table_counts: BTreeMap<String, i64>,
    /// On-disk sizes of the source's tables (heap and TOAST, no indexes), read as the backup
    /// started: how a drill chooses between streaming the dump into the restore and a parallel
    /// restore from a file. Absent in manifests written before 0.2.0 (and when the server
    /// would not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_bytes: Option<TableBytes>,
    pub postgres_version: String,
    pub pg_dump_version: String,
    pub verified: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The largest table's size and all tables' sizes, in bytes ([`Manifest::table_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableBytes {
    pub largest: u64,
    pub total: u64,
}

pub async fn write_manifest(
    s3: &aws_sdk_s3::Client,
    manifest: &Manifest,
) -> Result<(), ObjectStoreError> {
    let body = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    object_store::put_small(
        s3,
        &manifest.bucket,
        &manifest.manifest_key,
        body,
        "application/json",
    )
    .await
}

/// The manifest at `key`, `None` if absent.
pub async fn read_manifest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Manifest>, BackupError> {
    let Some(bytes) = object_store::get_small(s3, bucket, key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| BackupError::BadManifest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: e.to_string(),
        })
}

/// Every backup under `prefix` that has a readable manifest, oldest first.
pub async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<Manifest>, BackupError> {
    let mut out = Vec::new();
    for key in object_store::list_keys(s3, bucket, prefix).await? {
        if !key.ends_with(MANIFEST_SUFFIX) {
            continue;
        }
        match read_manifest(s3, bucket, &key).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable manifest"),
        }
    }
    out.sort_by(|a, b| a.snapshot_at.cmp(&b.snapshot_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Delete a backup: the dump, then the manifest.
pub async fn delete(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    object_key: &str,
    manifest_key: &str,
) -> Result<(), ObjectStoreError> {
    object_store::delete(s3, bucket, object_key).await?;
    object_store::delete(s3, bucket, manifest_key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_follow_dump_keys() {
        assert_eq!(
            manifest_key_for("backups/x/20261127T000000Z-ab.dump.zst").as_deref(),
            Some("backups/x/20261127T000000Z-ab.manifest.json")
        );
        assert_eq!(
            manifest_key_for("b/ID.sql").as_deref(),
            Some("b/ID.manifest.json")
        );
        assert_eq!(manifest_key_for("b/ID.tar"), None);
    }
}
