//! Applying: [`Migrator`], one PostgreSQL session that takes the advisory lock by polling,
//! re-plans under it and runs each pending file exactly once; [`cancel_backend`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio_util::sync::CancellationToken;

use crate::clients::pg::{redact_url, scrub};

use super::error::{LockHolder, MigrationError, MigrationFailure, message_of, sqlstate_of};
use super::files::MigrationFile;
use super::ledger::{
    DatabaseView, LEDGER_DDL, SIDECAR_DDL, SOURCE_ADOPTED, SOURCE_BASELINE, SOURCE_TERRAFORM,
    upsert_sidecar,
};
use super::plan::{MigrationPlan, PlanInputs, plan, policy_problems};
use super::split::{line_of, split_statements};

/// `application_name` of our sessions (shows in `pg_stat_activity`, and in [`LockHolder`]).
pub const APPLICATION_NAME: &str = "terraform-provider-artifortress";

/// The string the advisory-lock key is derived from.
pub const LOCK_KEY_NAME: &str = "terraform-provider-artifortress/migrations";
/// The session advisory-lock key: the first 8 bytes of sha256([`LOCK_KEY_NAME`]) as a
/// big-endian i64 (`0x6d77d1ed70e2a9be`). Advisory locks are per database, so one constant
/// key serialises migrations of one database only. In `pg_locks` it shows as
/// `locktype = 'advisory', classid = 1836569069, objid = 1893902782, objsubid = 1`.
pub const LOCK_KEY: i64 = 7_888_004_090_094_070_206;

/// How often a waiting apply retries `pg_try_advisory_lock` (plus up to 50 ms of jitter).
const LOCK_POLL: Duration = Duration::from_millis(200);

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApplyReport {
    /// (version, execution_ms), in order.
    pub applied: Vec<(String, u64)>,
    pub adopted: Vec<String>,
    pub accepted: Vec<String>,
    pub baselined: Vec<String>,
    /// The ledger's head afterwards.
    pub head: Option<String>,
}

/// Ask the server to cancel whatever backend `pid` is running (`pg_cancel_backend`), over a
/// new session. A cancelled statement fails with SQLSTATE 57014 and its transaction rolls back.
pub async fn cancel_backend(
    url: &str,
    pid: i32,
    connect_timeout: Duration,
) -> Result<bool, MigrationError> {
    let mut side = Migrator::connect(url, connect_timeout).await?;
    let cancelled: bool = sqlx::query_scalar("select pg_cancel_backend($1)")
        .bind(pid)
        .fetch_one(&mut side.conn)
        .await
        .map_err(side.db_err("cancelling the running migration"))?;
    side.close().await;
    Ok(cancelled)
}

/// One PostgreSQL session that reads and applies migrations.
pub struct Migrator {
    pub(super) conn: PgConnection,
    /// Redacted.
    pub(super) url: String,
    /// The session's server process (for [`cancel_backend`]).
    pid: i32,
}

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator").field("url", &self.url).finish()
    }
}

impl Migrator {
    /// Connect (one session, `application_name` = [`APPLICATION_NAME`]).
    pub async fn connect(url: &str, connect_timeout: Duration) -> Result<Migrator, MigrationError> {
        let redacted = redact_url(url);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| MigrationError::InvalidUrl {
                url: redacted.clone(),
                message: scrub(&e.to_string(), url),
            })?
            .application_name(APPLICATION_NAME);
        let started = Instant::now();
        let conn =
            match tokio::time::timeout(connect_timeout, PgConnection::connect_with(&opts)).await {
                Err(_) => {
                    return Err(MigrationError::ConnectTimeout {
                        url: redacted,
                        timeout: connect_timeout,
                    });
                }
                Ok(Err(e)) => {
                    return Err(MigrationError::Connect {
                        url: redacted,
                        sqlstate: sqlstate_of(&e),
                        message: scrub(&message_of(&e), url),
                    });
                }
                Ok(Ok(c)) => c,
            };
        let mut conn = conn;
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| MigrationError::Database {
                url: redacted.clone(),
                what: "reading the session's process id",
                sqlstate: sqlstate_of(&e),
                message: message_of(&e),
            })?;
        // If this process dies mid-statement, let the server notice the closed socket within
        // seconds (PostgreSQL 14+), abort the statement and free the lock, instead of finishing
        // a long migration for nobody. Older servers do not know the setting.
        if let Err(e) =
            sqlx::query("select set_config('client_connection_check_interval', '2000', false)")
                .execute(&mut conn)
                .await
        {
            tracing::debug!(url = %redacted, error = %message_of(&e), "client_connection_check_interval not set");
        }
        tracing::debug!(url = %redacted, pid, ms = started.elapsed().as_millis() as u64, "connected");
        Ok(Migrator {
            conn,
            url: redacted,
            pid,
        })
    }

    /// The server process of this session.
    pub fn backend_pid(&self) -> i32 {
        self.pid
    }

    /// The database URL, redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Close the session (the lock, if held, goes with it).
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }

    pub(super) fn db_err(
        &self,
        what: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> MigrationError + '_ {
        move |e| MigrationError::Database {
            url: self.url.clone(),
            what,
            sqlstate: sqlstate_of(&e),
            message: message_of(&e),
        }
    }

    /// Set PostgreSQL's `statement_timeout` / `lock_timeout` for this session. `None` leaves a
    /// setting as the server and role have it; nothing is set unless asked.
    pub async fn set_session_timeouts(
        &mut self,
        statement_timeout: Option<Duration>,
        lock_timeout: Option<Duration>,
    ) -> Result<(), MigrationError> {
        for (name, value) in [
            ("statement_timeout", statement_timeout),
            ("lock_timeout", lock_timeout),
        ] {
            if let Some(d) = value {
                let ms = format!("{}ms", d.as_millis().max(1));
                sqlx::query("select set_config($1, $2, false)")
                    .bind(name)
                    .bind(&ms)
                    .execute(&mut self.conn)
                    .await
                    .map_err(|e| MigrationError::Database {
                        url: self.url.clone(),
                        what: "setting a session timeout",
                        sqlstate: sqlstate_of(&e),
                        message: message_of(&e),
                    })?;
                tracing::debug!(setting = name, value = %ms, "session setting");
            }
        }
        Ok(())
    }

    /// Who holds the migration lock in this database, if visible.
    pub async fn lock_holder(&mut self) -> Result<Option<LockHolder>, MigrationError> {
        let hi = ((LOCK_KEY as u64) >> 32) as i64;
        let lo = ((LOCK_KEY as u64) & 0xffff_ffff) as i64;
        let row = sqlx::query(
            "select a.pid, coalesce(a.application_name, ''), a.usename::text,
                    host(a.client_addr), a.backend_start, a.state
             from pg_locks l join pg_stat_activity a on a.pid = l.pid
             where l.locktype = 'advisory' and l.granted
               and l.database = (select oid from pg_database where datname = current_database())
               and l.classid::bigint = $1 and l.objid::bigint = $2 and l.objsubid = 1
               and l.pid <> pg_backend_pid()
             limit 1",
        )
        .bind(hi)
        .bind(lo)
        .fetch_optional(&mut self.conn)
        .await
        .map_err(self.db_err("looking up the migration lock's holder"))?;
        Ok(row.map(|r| LockHolder {
            pid: r.get(0),
            application_name: r.get(1),
            user: r.get(2),
            client_addr: r.get(3),
            backend_start: r.get(4),
            state: r.get(5),
        }))
    }

    /// Poll `pg_try_advisory_lock(LOCK_KEY)` until it succeeds, `timeout` passes or `cancel`
    /// fires.
    async fn lock(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), MigrationError> {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut self.conn)
                .await
                .map_err(self.db_err("taking the migration lock"))?;
            if got {
                tracing::info!(
                    url = %self.url,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "migration lock taken"
                );
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                let holder = self.lock_holder().await.ok().flatten().map(Box::new);
                return Err(MigrationError::LockTimeout {
                    url: self.url.clone(),
                    waited,
                    holder,
                });
            }
            if !announced {
                announced = true;
                let holder = self.lock_holder().await.ok().flatten();
                tracing::info!(
                    url = %self.url,
                    holder = %holder.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into()),
                    timeout_ms = timeout.as_millis() as u64,
                    "waiting for the migration lock"
                );
            }
            let jitter = Duration::from_millis(u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() % 50)
                    .unwrap_or(0),
            ));
            let pause = (LOCK_POLL + jitter).min(timeout - waited);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled() => {
                    return Err(MigrationError::Cancelled {
                        url: self.url.clone(),
                        report: Box::default(),
                    });
                }
            }
        }
    }

    async fn unlock(&mut self) {
        match sqlx::query_scalar::<_, bool>("select pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut self.conn)
            .await
        {
            Ok(true) => tracing::debug!(url = %self.url, "migration lock released"),
            Ok(false) => tracing::warn!(url = %self.url, "migration lock was not held at release"),
            Err(e) => tracing::warn!(
                url = %self.url,
                error = %message_of(&e),
                "could not release the migration lock (it goes with the session)"
            ),
        }
    }

    /// Apply: lock, re-read and re-plan under the lock, record adoptions/acceptances/baseline,
    /// run each pending file, unlock. `applied_by` goes into the sidecar. `cancel` stops between
    /// files (or while waiting for the lock) with [`MigrationError::Cancelled`]; the running
    /// file is never interrupted. If this future is dropped part-way, the lock stays with the
    /// session until the `Migrator` is dropped (which closes it).
    pub async fn apply(
        &mut self,
        files: &[MigrationFile],
        inputs: &PlanInputs,
        lock_timeout: Duration,
        applied_by: &str,
        cancel: &CancellationToken,
    ) -> Result<ApplyReport, MigrationError> {
        self.lock(lock_timeout, cancel).await?;
        let result = self.apply_locked(files, inputs, applied_by, cancel).await;
        self.unlock().await;
        result
    }

    async fn apply_locked(
        &mut self,
        files: &[MigrationFile],
        inputs: &PlanInputs,
        applied_by: &str,
        cancel: &CancellationToken,
    ) -> Result<ApplyReport, MigrationError> {
        let view = self.view().await?;
        let plan = plan(
            files,
            &view,
            inputs.target.as_deref(),
            inputs.baseline.as_deref(),
            &inputs.accept_checksums,
        )
        .map_err(|problems| MigrationError::Plan {
            url: self.url.clone(),
            problems,
        })?;
        let problems = policy_problems(&plan, inputs);
        if !problems.is_empty() {
            return Err(MigrationError::Plan {
                url: self.url.clone(),
                problems,
            });
        }
        let mut report = ApplyReport::default();
        if !view.ledger_exists || !view.sidecar_exists || !plan.is_empty() {
            self.record_bookkeeping(&view, &plan, applied_by).await?;
            report.adopted = plan.adopt.iter().map(|(v, _)| v.clone()).collect();
            report.accepted = plan.accept.iter().map(|(v, _)| v.clone()).collect();
            report.baselined = plan.baselined.iter().map(|(v, _)| v.clone()).collect();
        }
        let by_version: HashMap<&str, &MigrationFile> =
            files.iter().map(|f| (f.version.as_str(), f)).collect();
        if plan.pending.is_empty() {
            tracing::info!(url = %self.url, "no pending migrations");
        }
        for pending in &plan.pending {
            if cancel.is_cancelled() {
                tracing::warn!(
                    url = %self.url,
                    next = %pending.version,
                    "cancelled: stopping before the next migration"
                );
                report.head = self.view().await?.head().map(str::to_string);
                return Err(MigrationError::Cancelled {
                    url: self.url.clone(),
                    report: Box::new(report),
                });
            }
            let file = by_version[pending.version.as_str()];
            let ms = if file.transactional {
                self.run_in_transaction(file, applied_by).await?
            } else {
                self.run_outside_transaction(file, applied_by).await?
            };
            report.applied.push((file.version.clone(), ms));
        }
        report.head = self.view().await?.head().map(str::to_string);
        Ok(report)
    }

    /// One transaction: create the ledger and sidecar if missing, record adoptions,
    /// acceptances and the baseline.
    async fn record_bookkeeping(
        &mut self,
        view: &DatabaseView,
        plan: &MigrationPlan,
        applied_by: &str,
    ) -> Result<(), MigrationError> {
        let url = self.url.clone();
        let err = |what: &'static str| {
            let url = url.clone();
            move |e: sqlx::Error| MigrationError::Database {
                url,
                what,
                sqlstate: sqlstate_of(&e),
                message: message_of(&e),
            }
        };
        let mut tx = self
            .conn
            .begin()
            .await
            .map_err(err("starting a transaction"))?;
        if !view.ledger_exists {
            sqlx::raw_sql(LEDGER_DDL)
                .execute(&mut *tx)
                .await
                .map_err(err("creating schema_migrations"))?;
            tracing::info!(url = %url, "created the ledger table schema_migrations");
        }
        if !view.sidecar_exists {
            sqlx::raw_sql(SIDECAR_DDL)
                .execute(&mut *tx)
                .await
                .map_err(err("creating artifortress_migrations_log"))?;
            tracing::info!(url = %url, "created the sidecar table artifortress_migrations_log");
        }
        for (version, checksum) in &plan.baselined {
            sqlx::query(
                "insert into schema_migrations (version) values ($1) on conflict (version) do nothing",
            )
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(err("recording a baseline version in schema_migrations"))?;
            upsert_sidecar(
                &mut tx,
                version,
                checksum,
                SOURCE_BASELINE,
                applied_by,
                None,
                false,
            )
            .await
            .map_err(err(
                "recording a baseline version in artifortress_migrations_log",
            ))?;
            tracing::info!(url = %url, version = %version, "baselined (recorded as applied, not run)");
        }
        for (version, checksum) in &plan.adopt {
            upsert_sidecar(
                &mut tx,
                version,
                checksum,
                SOURCE_ADOPTED,
                applied_by,
                None,
                false,
            )
            .await
            .map_err(err("recording an adopted version"))?;
            tracing::info!(url = %url, version = %version, "adopted (applied by another tool)");
        }
        for (version, checksum) in &plan.accept {
            sqlx::query(
                "update artifortress_migrations_log
                 set checksum = $2, source = 'accepted', applied_by = $3, recorded_at = now()
                 where version = $1",
            )
            .bind(version)
            .bind(checksum)
            .bind(applied_by)
            .execute(&mut *tx)
            .await
            .map_err(err("recording an accepted checksum"))?;
            tracing::warn!(url = %url, version = %version, checksum = %checksum, "accepted the new checksum of an edited applied migration");
        }
        tx.commit()
            .await
            .map_err(err("committing the ledger bookkeeping"))?;
        Ok(())
    }

    fn failed(
        url: &str,
        file: &MigrationFile,
        offset: Option<usize>,
        e: &sqlx::Error,
        transactional: bool,
    ) -> MigrationError {
        let pg = e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<PgDatabaseError>());
        let line = match (offset, pg.and_then(|p| p.position())) {
            (Some(offset), Some(PgErrorPosition::Original(pos))) => {
                Some(line_of(&file.sql, offset, pos))
            }
            _ => None,
        };
        MigrationError::MigrationFailed(Box::new(MigrationFailure {
            url: url.to_string(),
            version: file.version.clone(),
            path: file.path.clone(),
            line,
            sqlstate: sqlstate_of(e),
            message: message_of(e),
            detail: pg.and_then(|p| p.detail()).map(str::to_string),
            hint: pg.and_then(|p| p.hint()).map(str::to_string),
            transactional,
        }))
    }

    /// The file, its ledger row and its sidecar row in one transaction.
    async fn run_in_transaction(
        &mut self,
        file: &MigrationFile,
        applied_by: &str,
    ) -> Result<u64, MigrationError> {
        let url = self.url.clone();
        tracing::info!(url = %self.url, version = %file.version, class = %file.class, transactional = true, "applying migration");
        let started = Instant::now();
        let mut tx = match self.conn.begin().await {
            Ok(tx) => tx,
            Err(e) => return Err(Self::failed(&url, file, None, &e, true)),
        };
        let result = sqlx::raw_sql(AssertSqlSafe(file.sql.clone()))
            .execute(&mut *tx)
            .await;
        let rows = match result {
            Ok(r) => r.rows_affected(),
            Err(e) => {
                let _ = tx.rollback().await;
                let err = Self::failed(&url, file, Some(0), &e, true);
                tracing::error!(version = %file.version, error = %err, "migration failed; rolled back");
                return Err(err);
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        let record = async {
            sqlx::query("insert into schema_migrations (version) values ($1)")
                .bind(&file.version)
                .execute(&mut *tx)
                .await?;
            upsert_sidecar(
                &mut tx,
                &file.version,
                &file.checksum,
                SOURCE_TERRAFORM,
                applied_by,
                Some(ms as i64),
                false,
            )
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = record {
            let err = Self::failed(&url, file, None, &e, true);
            tracing::error!(version = %file.version, error = %err, "recording the migration failed; rolled back");
            return Err(err);
        }
        tracing::info!(url = %self.url, version = %file.version, ms, rows_affected = rows, "applied migration");
        Ok(ms)
    }

    /// Dirty marker (committed), the statements one by one, then ledger row + cleared marker.
    async fn run_outside_transaction(
        &mut self,
        file: &MigrationFile,
        applied_by: &str,
    ) -> Result<u64, MigrationError> {
        let url = self.url.clone();
        tracing::info!(url = %self.url, version = %file.version, class = %file.class, transactional = false, "applying migration outside a transaction");
        sqlx::query(
            "insert into artifortress_migrations_log
               (version, checksum, source, applied_by, execution_ms, dirty)
             values ($1, $2, 'terraform', $3, null, true)
             on conflict (version) do update set checksum = excluded.checksum,
               source = excluded.source, applied_by = excluded.applied_by,
               execution_ms = null, dirty = true, recorded_at = now()",
        )
        .bind(&file.version)
        .bind(&file.checksum)
        .bind(applied_by)
        .execute(&mut self.conn)
        .await
        .map_err(|e| Self::failed(&url, file, None, &e, true))?;
        let started = Instant::now();
        let mut rows = 0u64;
        for (offset, statement) in split_statements(&file.sql) {
            let s = Instant::now();
            match sqlx::raw_sql(AssertSqlSafe(statement.to_string()))
                .execute(&mut self.conn)
                .await
            {
                Ok(r) => {
                    rows += r.rows_affected();
                    tracing::debug!(
                        version = %file.version,
                        line = line_of(&file.sql, offset, 1),
                        ms = s.elapsed().as_millis() as u64,
                        rows_affected = r.rows_affected(),
                        "statement done"
                    );
                }
                Err(e) => {
                    let err = Self::failed(&url, file, Some(offset), &e, false);
                    tracing::error!(version = %file.version, error = %err, "migration failed outside a transaction; left dirty");
                    return Err(err);
                }
            }
        }
        let ms = started.elapsed().as_millis() as u64;
        let mut tx = self
            .conn
            .begin()
            .await
            .map_err(|e| MigrationError::Database {
                url: self.url.clone(),
                what: "starting a transaction",
                sqlstate: sqlstate_of(&e),
                message: message_of(&e),
            })?;
        let record = async {
            sqlx::query("insert into schema_migrations (version) values ($1)")
                .bind(&file.version)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "update artifortress_migrations_log
                 set dirty = false, execution_ms = $2, recorded_at = now() where version = $1",
            )
            .bind(&file.version)
            .bind(ms as i64)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = record {
            let err = Self::failed(&url, file, None, &e, false);
            tracing::error!(version = %file.version, error = %err, "recording the migration failed; left dirty");
            return Err(err);
        }
        tracing::info!(url = %self.url, version = %file.version, ms, rows_affected = rows, "applied migration");
        Ok(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn lock_key_is_derived_from_its_name() {
        let h = Sha256::digest(LOCK_KEY_NAME.as_bytes());
        let key = i64::from_be_bytes(h[..8].try_into().unwrap());
        assert_eq!(key, LOCK_KEY);
        assert_eq!((LOCK_KEY as u64) >> 32, 1_836_569_069);
        assert_eq!((LOCK_KEY as u64) & 0xffff_ffff, 1_893_902_782);
    }
}
