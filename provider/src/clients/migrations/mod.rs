//! The service's SQL migrations: read the directory, read the database's ledger, plan, apply
//! each pending file exactly once.
//!
//! # Compatibility with the service
//! The ledger is the service's own table, used untouched:
//! `schema_migrations(version text primary key, applied_at timestamptz not null default now())`,
//! `version` = the file name including `.sql`, files applied in file-name (byte) order. Everything
//! more (checksums, who applied, timings, the dirty marker) lives in our sidecar table
//! [`SIDECAR_TABLE`] ([`SIDECAR_DDL`]). A database migrated by the service's own script (ledger
//! rows, no sidecar rows) is up to date: its versions are *adopted* (sidecar rows with source
//! `adopted` and the current files' checksums), never re-run.
//!
//! # Files
//! `NNNN_name.sql` (see [`load_dir`]). Directives in the leading `--` comment lines:
//! `-- artifortress:class A|B|C` (default A) and `-- artifortress:no-transaction`. The service's
//! own files carry no directive (their classes are stated per release): [`apply_classes`] sets
//! classes given beside the files, and refuses one that contradicts a file's directive.
//! The checksum is the lowercase hex sha256 of the content with CRLF normalised to LF, so a
//! line-ending-only change is not an edit.
//!
//! # Exactly once
//! [`Migrator::apply`] works on one PostgreSQL session. It takes the session advisory lock
//! [`LOCK_KEY`] by *polling* `pg_try_advisory_lock` (a waiter blocked in `pg_advisory_lock`
//! would deadlock with a `CREATE INDEX CONCURRENTLY` run by the holder: flyway#1654,
//! golang-migrate#960, matrix-authentication-service#5298), re-reads the ledger under the lock
//! and re-plans, then runs each pending file:
//! - transactional (the default): one transaction holding the file, its ledger row and its
//!   sidecar row; a failure leaves nothing of the file;
//! - `no-transaction`: the sidecar row is committed first with `dirty = true`, the file's
//!   statements run one by one outside a transaction, then the ledger row and the cleared flag
//!   are committed together; a failure leaves the marker, which the next [`plan`] reports as
//!   [`PlanProblem::Dirty`]. Such files are split at top-level `;` (quotes, comments and dollar
//!   quotes respected; SQL-standard `BEGIN ATOMIC` bodies are not supported there).
//!
//! The lock is released at the end, and by the server if the session dies.
//! No statement or lock timeout is set unless asked ([`Migrator::set_session_timeouts`]):
//! migrations can be long.
//!
//! Database URLs are only ever shown through [`redact_url`](crate::clients::pg::redact_url).
//!
//! The submodules: `files` (names, directives, checksums, the directory), `split` (statement
//! splitting), `ledger` (the ledger, our sidecar, reading them), `plan` (the pure planner and
//! policy), `apply` ([`Migrator`]: lock, re-plan, exactly-once apply) and `error`.

mod apply;
mod error;
mod files;
mod ledger;
mod plan;
mod smoke;
mod split;

pub use apply::{APPLICATION_NAME, ApplyReport, LOCK_KEY, LOCK_KEY_NAME, Migrator, cancel_backend};
pub use error::{LockHolder, MigrationError, MigrationFailure};
pub use files::{
    ClassProblem, MigrationClass, MigrationFile, apply_classes, checksum, load_dir, valid_file_name,
};
pub use ledger::{
    AppliedVersion, DatabaseView, LEDGER_DDL, LEDGER_TABLE, SIDECAR_DDL, SIDECAR_TABLE,
    SOURCE_ACCEPTED, SOURCE_ADOPTED, SOURCE_BASELINE, SOURCE_TERRAFORM,
};
pub use plan::{MigrationPlan, PendingMigration, PlanInputs, PlanProblem, plan, policy_problems};
pub use smoke::SMOKE_TABLES;
