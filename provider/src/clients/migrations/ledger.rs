//! The service's ledger and our sidecar: table names, DDL and sources, the dirty-version
//! remediation, and what the database says ([`DatabaseView`], read by [`Migrator::view`]).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::apply::Migrator;
use super::error::MigrationError;

/// The service's ledger table (never altered by us).
pub const LEDGER_TABLE: &str = "schema_migrations";
/// Exactly the service's DDL for the ledger.
pub const LEDGER_DDL: &str = "create table if not exists schema_migrations (
  version text primary key,
  applied_at timestamptz not null default now()
)";
/// Our sidecar table: one row per version we know more about than the ledger does.
pub const SIDECAR_TABLE: &str = "artifortress_migrations_log";
/// The sidecar's DDL. `source` is one of [`SOURCE_TERRAFORM`], [`SOURCE_ADOPTED`],
/// [`SOURCE_BASELINE`], [`SOURCE_ACCEPTED`].
pub const SIDECAR_DDL: &str = "create table if not exists artifortress_migrations_log (
  version text primary key,
  checksum text not null,
  source text not null check (source in ('terraform', 'adopted', 'baseline', 'accepted')),
  applied_by text not null,
  execution_ms bigint,
  dirty boolean not null default false,
  recorded_at timestamptz not null default now()
)";
/// Applied by us.
pub const SOURCE_TERRAFORM: &str = "terraform";
/// In the ledger without a sidecar row: applied by the service's own script; checksum of the
/// file as it was when we first saw the version.
pub const SOURCE_ADOPTED: &str = "adopted";
/// Marked applied, never run, by a baseline on a database without ledger.
pub const SOURCE_BASELINE: &str = "baseline";
/// An edited applied file whose new checksum was explicitly accepted.
pub const SOURCE_ACCEPTED: &str = "accepted";

/// The remediation shown for a dirty version.
pub(super) fn dirty_remediation(version: &str) -> String {
    format!(
        "Migration {version} runs outside a transaction (-- artifortress:no-transaction) and did \
         not finish: some of its statements may have taken effect. Inspect the database before \
         retrying:\n\
         1. A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind; list them with\n   \
            select indexrelid::regclass from pg_index where not indisvalid;\n   \
            and drop each with DROP INDEX CONCURRENTLY <name>.\n\
         2. To run the file again (its statements should be re-runnable, e.g. IF NOT EXISTS), \
         remove the marker:\n   \
            delete from {SIDECAR_TABLE} where version = '{v}' and dirty;\n\
         3. If the file did complete, record it instead:\n   \
            insert into {LEDGER_TABLE} (version) values ('{v}');\n   \
            update {SIDECAR_TABLE} set dirty = false where version = '{v}';",
        v = version.replace('\'', "''"),
    )
}

/// One version the database knows about.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedVersion {
    pub version: String,
    /// The ledger's `applied_at`; for a dirty version (no ledger row) the sidecar's
    /// `recorded_at`, i.e. when the attempt started.
    pub applied_at: DateTime<Utc>,
    /// From our sidecar; `None` when the service's script applied it and we never adopted it.
    pub checksum: Option<String>,
    /// The sidecar's `source` (`terraform`, `adopted`, `baseline`, `accepted`).
    pub source: Option<String>,
    /// A `no-transaction` file that started and did not finish: not in the ledger.
    pub dirty: bool,
}

/// What the database says, read without changing anything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatabaseView {
    pub ledger_exists: bool,
    pub sidecar_exists: bool,
    /// Ledger versions (with sidecar details) and dirty versions, in version order.
    pub applied: Vec<AppliedVersion>,
    /// Any table, view, sequence… outside the system schemas, other than the ledger and the
    /// sidecar and objects owned by extensions.
    pub has_user_tables: bool,
}

impl DatabaseView {
    /// The greatest applied (not dirty) version.
    pub fn head(&self) -> Option<&str> {
        self.applied
            .iter()
            .filter(|a| !a.dirty)
            .map(|a| a.version.as_str())
            .max()
    }

    /// True when the ledger is missing or holds no version (a baseline is then possible).
    pub(super) fn ledger_empty(&self) -> bool {
        !self.applied.iter().any(|a| !a.dirty)
    }
}

impl Migrator {
    /// Read the ledger, the sidecar and whether the database holds anything. Creates nothing.
    pub async fn view(&mut self) -> Result<DatabaseView, MigrationError> {
        let row = sqlx::query(
            "select
               to_regclass('schema_migrations') is not null,
               to_regclass('artifortress_migrations_log') is not null,
               exists (
                 select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
                   and n.nspname not in ('pg_catalog', 'information_schema')
                   and n.nspname not like 'pg\\_toast%'
                   and n.nspname not like 'pg\\_temp\\_%'
                   and c.oid is distinct from to_regclass('schema_migrations')::oid
                   and c.oid is distinct from to_regclass('artifortress_migrations_log')::oid
                   and not exists (
                     select 1 from pg_depend d
                     where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'
                   )
               )",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(self.db_err("reading the database's tables"))?;
        let ledger_exists: bool = row.get(0);
        let sidecar_exists: bool = row.get(1);
        let has_user_tables: bool = row.get(2);

        let mut ledger: Vec<(String, DateTime<Utc>)> = Vec::new();
        if ledger_exists {
            self.check_ledger_shape().await?;
            ledger = sqlx::query_as("select version, applied_at from schema_migrations")
                .fetch_all(&mut self.conn)
                .await
                .map_err(self.db_err("reading schema_migrations"))?;
        }
        type SidecarRow = (String, String, String, bool, DateTime<Utc>);
        let mut sidecar: HashMap<String, SidecarRow> = HashMap::new();
        if sidecar_exists {
            let rows: Vec<SidecarRow> = sqlx::query_as(
                "select version, checksum, source, dirty, recorded_at from artifortress_migrations_log",
            )
            .fetch_all(&mut self.conn)
            .await
            .map_err(self.db_err("reading artifortress_migrations_log"))?;
            sidecar = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
        }

        let in_ledger: BTreeSet<&str> = ledger.iter().map(|(v, _)| v.as_str()).collect();
        let mut applied: Vec<AppliedVersion> = ledger
            .iter()
            .map(|(version, applied_at)| {
                let side = sidecar.get(version);
                AppliedVersion {
                    version: version.clone(),
                    applied_at: *applied_at,
                    checksum: side.map(|s| s.1.clone()),
                    source: side.map(|s| s.2.clone()),
                    dirty: false,
                }
            })
            .collect();
        applied.extend(
            sidecar
                .values()
                .filter(|s| s.3 && !in_ledger.contains(s.0.as_str()))
                .map(|s| AppliedVersion {
                    version: s.0.clone(),
                    applied_at: s.4,
                    checksum: Some(s.1.clone()),
                    source: Some(s.2.clone()),
                    dirty: true,
                }),
        );
        applied.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(DatabaseView {
            ledger_exists,
            sidecar_exists,
            applied,
            has_user_tables,
        })
    }

    /// Refuse a `schema_migrations` of another tool (golang-migrate uses the same name).
    async fn check_ledger_shape(&mut self) -> Result<(), MigrationError> {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod)
             from pg_attribute a
             where a.attrelid = to_regclass('schema_migrations') and a.attnum > 0
               and not a.attisdropped
             order by a.attnum",
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(self.db_err("reading the columns of schema_migrations"))?;
        let has = |name: &str, ty: &str| columns.iter().any(|(n, t)| n == name && t == ty);
        if has("version", "text") && has("applied_at", "timestamp with time zone") {
            return Ok(());
        }
        Err(MigrationError::ForeignLedger {
            url: self.url.clone(),
            columns: columns
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

pub(super) async fn upsert_sidecar(
    conn: &mut PgConnection,
    version: &str,
    checksum: &str,
    source: &str,
    applied_by: &str,
    execution_ms: Option<i64>,
    dirty: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into artifortress_migrations_log
           (version, checksum, source, applied_by, execution_ms, dirty)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (version) do update set checksum = excluded.checksum,
           source = excluded.source, applied_by = excluded.applied_by,
           execution_ms = excluded.execution_ms, dirty = excluded.dirty, recorded_at = now()",
    )
    .bind(version)
    .bind(checksum)
    .bind(source)
    .bind(applied_by)
    .bind(execution_ms)
    .bind(dirty)
    .execute(conn)
    .await
    .map(|_| ())
}
