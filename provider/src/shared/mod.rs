//! What the type files (resources, data sources, ephemeral resources) share, below all of
//! them: no type owns it, so no type file imports another. It may import the clients and the
//! protocol, never a type file (checked by `provider/tests/architecture.rs`).
//!
//! - here: value helpers (timestamps, row counts);
//! - [`edits`]: a model written back into a plan or state, only where the code changed it;
//! - [`migrations`]: one look at a database's migrations (the observation), shared by the
//!   migration resource, the migrations data source and preflight;
//! - [`identity`]: the database identity `{host, port, database}` (migration, bootstrap);
//! - [`ops`]: readiness dependency lists and ops-summary thresholds, shared by the readiness,
//!   ops summary and preflight data sources.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::protocol::schema::Attribute;
use crate::protocol::types::Type;
use crate::protocol::value::Value;

pub mod edits;
pub mod identity;
pub mod migrations;
pub mod ops;

/// Where backups go unless told otherwise: the backup resource's `prefix` default, and where
/// drills, the backups data source, preflight and the release gate look for them.
pub const DEFAULT_BACKUP_PREFIX: &str = "backups/";

/// The scratch database a restore drill re-creates unless told otherwise (the restore drill
/// resource and the run_restore_drill action).
pub const DEFAULT_DRILL_DATABASE: &str = "artifortress_drill";

/// `verify` of a backup, the same for the backup resource and the take_backup action (one
/// engine): what the read-back checks and what `false` gives up.
pub fn backup_verify_attribute() -> Attribute {
    Attribute::optional_computed("verify", Type::Bool)
        .default_value(true)
        .description("Read the object back after the upload and compare its sha256 and size; a mismatch deletes it and fails. This is the upload's end-to-end check: parts go up without a second checksum of their own (every byte is hashed once, for the manifest), so with `false` only TLS guards the bytes on the way and a corrupted dump is found only when a restore drill or a restore reads it.")
}

/// RFC 3339 with milliseconds, UTC, as text.
pub fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(t: DateTime<Utc>) -> Value {
    Value::String(timestamp_text(t))
}

/// Row counts by table, as a map value.
pub fn counts_value(counts: &BTreeMap<String, i64>) -> Value {
    Value::Map(
        counts
            .iter()
            .map(|(k, v)| (k.clone(), Value::int(*v)))
            .collect(),
    )
}
