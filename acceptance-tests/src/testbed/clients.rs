//! PostgreSQL pool and S3 client construction (both lazy: nothing connects at start).

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::config::ObjectStorageConfig;

/// Acquire timeout for every pooled query: a dead database answers quickly with an error
/// instead of hanging requests.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily connecting pool with short timeouts.
pub fn lazy_pool(opts: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(PG_ACQUIRE_TIMEOUT)
        .idle_timeout(Some(Duration::from_secs(60)))
        .test_before_acquire(true)
        .connect_lazy_with(opts)
}

/// An S3 client for a path-style, S3-compatible endpoint with static credentials.
pub fn s3_client(cfg: &ObjectStorageConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        // The service signs for us-east-1 whatever the endpoint (ObjectStorage.fs:119).
        .region(Region::new("us-east-1"))
        .endpoint_url(cfg.endpoint.trim_end_matches('/'))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            cfg.access_key.clone(),
            cfg.secret_key.clone(),
            None,
            None,
            "artifortress-testbed",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The pool reports a dead database only as "pool timed out". This makes one direct connection
/// attempt (2 s max) to return the real reason (e.g. "Connection refused"); `None` if it connects.
pub async fn diagnose_connect(opts: &PgConnectOptions) -> Option<String> {
    match tokio::time::timeout(PG_ACQUIRE_TIMEOUT, PgConnection::connect_with(opts)).await {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            None
        }
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "timed out connecting to PostgreSQL at {}:{}",
            opts.get_host(),
            opts.get_port()
        )),
    }
}

/// A sqlx error as text, with the real connection failure instead of a bare pool timeout.
pub async fn describe_pg_error(e: &sqlx::Error, opts: &PgConnectOptions) -> String {
    if matches!(e, sqlx::Error::PoolTimedOut) {
        if let Some(reason) = diagnose_connect(opts).await {
            return reason;
        }
        return "timed out waiting for a PostgreSQL connection from the pool".into();
    }
    e.to_string()
}
