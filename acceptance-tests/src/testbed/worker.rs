//! The worker's sweep: outbox delivery and search index jobs.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::npgsql;

#[derive(Debug, thiserror::Error)]
pub enum WorkerConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub postgres: sqlx::postgres::PgConnectOptions,
    pub poll_seconds: u64,
    pub batch_size: i64,
    pub search_job_max_attempts: i32,
    pub search_job_lease_seconds: i64,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, WorkerConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerConfigError> {
        let cs = get("ConnectionStrings__Postgres")
            .filter(|v| !v.trim().is_empty())
            .ok_or(WorkerConfigError::Missing("ConnectionStrings__Postgres"))?;
        let postgres = npgsql::to_pg_options(&cs).map_err(|e| {
            WorkerConfigError::Invalid("ConnectionStrings__Postgres", e.to_string())
        })?;
        fn num(
            get: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            default: i64,
        ) -> Result<i64, WorkerConfigError> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<i64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(WorkerConfigError::Invalid(
                        name,
                        format!("{v:?} must be a positive integer"),
                    )),
                },
            }
        }
        Ok(WorkerConfig {
            postgres,
            poll_seconds: num(&get, "Worker__PollSeconds", 30)? as u64,
            batch_size: num(&get, "Worker__BatchSize", 100)?,
            search_job_max_attempts: num(&get, "Worker__SearchJobMaxAttempts", 5)?
                .min(i32::MAX as i64) as i32,
            search_job_lease_seconds: num(&get, "Worker__SearchJobLeaseSeconds", 300)?,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub outbox_delivered: u64,
    pub search_completed: u64,
    pub search_retried: u64,
    pub search_failed: u64,
    pub duration: Duration,
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sweep complete: outbox_delivered={} search_completed={} search_retried={} search_failed={} duration_ms={}",
            self.outbox_delivered,
            self.search_completed,
            self.search_retried,
            self.search_failed,
            self.duration.as_millis()
        )
    }
}

/// One sweep:
/// * up to `batch_size` due outbox events (`delivered_at is null and available_at <= now()`,
///   oldest first, `for update skip locked`) are marked delivered;
/// * up to `batch_size` claimable search index jobs (`pending` and due, or `processing` with an
///   expired lease) are processed: a job for a `published` version completes; otherwise the
///   attempt fails and the job goes back to `pending` with a back-off, or to `failed` once its
///   attempts reach `search_job_max_attempts`.
pub async fn sweep(pool: &PgPool, cfg: &WorkerConfig) -> Result<SweepReport, sqlx::Error> {
    let t = Instant::now();
    let mut tx = pool.begin().await?;
    let delivered = sqlx::query(
        "with due as ( \
           select event_id from outbox_events \
           where delivered_at is null and available_at <= now() \
           order by occurred_at, available_at \
           limit $1 \
           for update skip locked) \
         update outbox_events o \
            set delivered_at = now(), delivery_attempts = o.delivery_attempts + 1 \
           from due where o.event_id = due.event_id",
    )
    .bind(cfg.batch_size)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;

    let mut tx = pool.begin().await?;
    let statuses: Vec<String> = sqlx::query_scalar(
        "with claimed as ( \
           select job_id from search_index_jobs \
           where (status = 'pending' and available_at <= now()) \
              or (status = 'processing' and updated_at <= now() - make_interval(secs => $2)) \
           order by available_at, created_at \
           limit $1 \
           for update skip locked), \
         work as ( \
           select j.job_id, j.attempts + 1 as attempt, pv.state, pv.version_id \
           from search_index_jobs j \
           join claimed c on c.job_id = j.job_id \
           join package_versions pv on pv.version_id = j.version_id) \
         update search_index_jobs j set \
           attempts = w.attempt, \
           status = case when w.state = 'published' then 'completed' \
                         when w.attempt >= $3 then 'failed' \
                         else 'pending' end, \
           last_error = case when w.state = 'published' then null \
                             else 'package version ' || w.version_id || ' is not published (state ' || w.state || ')' end, \
           available_at = case when w.state = 'published' then j.available_at \
                               else now() + make_interval(secs => least(300, 5 * power(2, w.attempt))::double precision) end, \
           updated_at = now() \
         from work w where j.job_id = w.job_id \
         returning j.status",
    )
    .bind(cfg.batch_size)
    .bind(cfg.search_job_lease_seconds as f64)
    .bind(cfg.search_job_max_attempts)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut r = SweepReport {
        outbox_delivered: delivered,
        duration: Duration::ZERO,
        ..Default::default()
    };
    for s in statuses {
        match s.as_str() {
            "completed" => r.search_completed += 1,
            "failed" => r.search_failed += 1,
            _ => r.search_retried += 1,
        }
    }
    r.duration = t.elapsed();
    Ok(r)
}
