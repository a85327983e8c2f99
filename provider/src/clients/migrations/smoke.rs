//! The service's schema smoke check (`scripts/db-smoke.sh`, run after `make db-migrate`, see its
//! `docs/31-operations-howto.md:85-89` "Verify schema baseline"): the tables that must exist
//! once the migrations are applied.

use super::apply::Migrator;
use super::error::MigrationError;

/// The tables `scripts/db-smoke.sh` requires, in its order (Artifortress
/// `scripts/db-smoke.sh:11-21`, commit f628e74dfb8b884f5113d3c4aadf16000228025a).
pub const SMOKE_TABLES: [&str; 9] = [
    "schema_migrations",
    "tenants",
    "repos",
    "packages",
    "blobs",
    "package_versions",
    "artifact_entries",
    "audit_log",
    "outbox_events",
];

impl Migrator {
    /// Which of `tables` do not exist, in their order. The check is the script's
    /// (`scripts/db-smoke.sh:24`): `to_regclass('public.<table>') is not null`, so a table must
    /// be in schema `public` (a view or another relation of that name counts, as there).
    /// Reads only.
    pub async fn missing_tables(&mut self, tables: &[&str]) -> Result<Vec<String>, MigrationError> {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let missing: Vec<String> = sqlx::query_scalar(
            "select t from unnest($1::text[]) with ordinality as u(t, n)
             where to_regclass('public.' || quote_ident(t)) is null
             order by n",
        )
        .bind(&names)
        .fetch_all(&mut self.conn)
        .await
        .map_err(self.db_err("looking up the smoke check's tables"))?;
        Ok(missing)
    }
}
