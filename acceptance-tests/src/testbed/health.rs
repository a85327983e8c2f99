//! `/health/ready` semantics, exactly as the contract describes them.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool};

use super::faults::{FAULT_DETAIL, Faults, NEVER_READY_DETAIL, WARMING_UP_DETAIL};

/// Dependency names, in the order the service reports them.
pub const DEPENDENCY_NAMES: [&str; 6] = [
    "redis",
    "telemetry",
    "postgres",
    "object_storage",
    "oidc_jwks",
    "saml_metadata",
];

pub const OBJECT_STORAGE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepStatus {
    Ready,
    Degraded,
    NotReady,
    NotConfigured,
}

impl DepStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(Self::Ready),
            "degraded" => Some(Self::Degraded),
            "not_ready" => Some(Self::NotReady),
            "not_configured" => Some(Self::NotConfigured),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::NotReady => "not_ready",
            Self::NotConfigured => "not_configured",
        }
    }

    /// `healthy` is true only for `ready` and `not_configured`.
    pub fn healthy(self) -> bool {
        matches!(self, Self::Ready | Self::NotConfigured)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallStatus {
    Ready,
    Degraded,
    NotReady,
}

impl OverallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::NotReady => "not_ready",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    pub name: String,
    pub healthy: bool,
    pub essential: bool,
    pub status: DepStatus,
    pub detail: Option<String>,
}

impl Dependency {
    pub fn new(name: &str, essential: bool, status: DepStatus, detail: Option<String>) -> Self {
        Dependency {
            name: name.to_string(),
            healthy: status.healthy(),
            essential,
            status,
            detail,
        }
    }

    fn set(&mut self, status: DepStatus, detail: &str) {
        self.status = status;
        self.healthy = status.healthy();
        self.detail = Some(detail.to_string());
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub status: OverallStatus,
    pub checked_at_utc: String,
    pub dependencies: Vec<Dependency>,
}

/// Overall rule: `not_ready` if any essential dependency is `not_ready`; else `degraded` if any
/// dependency is `degraded` or `not_ready`; else `ready`.
pub fn overall(deps: &[Dependency]) -> OverallStatus {
    if deps
        .iter()
        .any(|d| d.essential && d.status == DepStatus::NotReady)
    {
        OverallStatus::NotReady
    } else if deps
        .iter()
        .any(|d| matches!(d.status, DepStatus::Degraded | DepStatus::NotReady))
    {
        OverallStatus::Degraded
    } else {
        OverallStatus::Ready
    }
}

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Result of the real probes, before fault switches.
pub struct ProbeResults {
    pub postgres: Result<(), String>,
    pub object_storage: Result<(), String>,
}

/// Apply the test-only fault switches and build the readiness document.
pub fn assemble(probes: ProbeResults, faults: &Faults) -> Readiness {
    let as_dep = |name: &str, r: Result<(), String>| match r {
        Ok(()) => Dependency::new(name, true, DepStatus::Ready, None),
        Err(e) => Dependency::new(name, true, DepStatus::NotReady, Some(e)),
    };
    let mut deps = vec![
        Dependency::new("redis", false, DepStatus::NotConfigured, None),
        Dependency::new("telemetry", false, DepStatus::NotConfigured, None),
        as_dep("postgres", probes.postgres),
        as_dep("object_storage", probes.object_storage),
        Dependency::new("oidc_jwks", false, DepStatus::NotConfigured, None),
        Dependency::new("saml_metadata", false, DepStatus::NotConfigured, None),
    ];
    for d in deps.iter_mut() {
        if let Some(st) = faults.dependencies.get(&d.name) {
            d.set(*st, FAULT_DETAIL);
        }
        if d.name == "postgres" {
            if faults.warming_up() {
                d.set(DepStatus::NotReady, WARMING_UP_DETAIL);
            }
            if faults.never_ready {
                d.set(DepStatus::NotReady, NEVER_READY_DETAIL);
            }
        }
    }
    Readiness {
        status: overall(&deps),
        checked_at_utc: now_iso(),
        dependencies: deps,
    }
}

/// `select 1` through the pool. When the pool cannot get a connection, a direct connection
/// attempt is made so the detail carries the real error (e.g. "connection refused") instead of
/// the pool's generic timeout message.
pub async fn probe_postgres(pool: &PgPool, opts: &PgConnectOptions) -> Result<(), String> {
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        sqlx::query_scalar::<_, i32>("select 1").fetch_one(pool),
    )
    .await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(super::clients::describe_pg_error(&e, opts).await),
        Err(_) => Err(super::clients::describe_pg_error(&sqlx::Error::PoolTimedOut, opts).await),
    }
}

/// HeadBucket with a 3 s timeout.
pub async fn probe_object_storage(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    let r = tokio::time::timeout(
        OBJECT_STORAGE_PROBE_TIMEOUT,
        s3.head_bucket().bucket(bucket).send(),
    )
    .await;
    match r {
        Err(_) => Err(format!(
            "HeadBucket {bucket:?} timed out after {}s",
            OBJECT_STORAGE_PROBE_TIMEOUT.as_secs()
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(describe_s3_error(bucket, &e)),
    }
}

fn describe_s3_error(bucket: &str, e: &SdkError<HeadBucketError, HttpResponse>) -> String {
    if let SdkError::ServiceError(se) = e {
        let status = se.raw().status().as_u16();
        return match status {
            404 => format!("bucket {bucket:?} not found (HeadBucket returned 404 NotFound)"),
            403 => {
                format!("access to bucket {bucket:?} denied (HeadBucket returned 403 Forbidden)")
            }
            _ => format!(
                "HeadBucket {bucket:?} returned HTTP {status}: {}",
                DisplayErrorContext(e)
            ),
        };
    }
    format!("HeadBucket {bucket:?} failed: {}", error_chain(e))
}

/// `outer: cause: root cause` without Debug noise.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(sts: &[(bool, DepStatus)]) -> Vec<Dependency> {
        sts.iter()
            .map(|(e, s)| Dependency::new("x", *e, *s, None))
            .collect()
    }

    #[test]
    fn overall_rule() {
        use DepStatus::*;
        assert_eq!(
            overall(&deps(&[(true, Ready), (false, NotConfigured)])),
            OverallStatus::Ready
        );
        assert_eq!(
            overall(&deps(&[(true, Ready), (false, Degraded)])),
            OverallStatus::Degraded
        );
        assert_eq!(
            overall(&deps(&[(true, Ready), (false, NotReady)])),
            OverallStatus::Degraded
        );
        assert_eq!(
            overall(&deps(&[(true, Degraded), (false, Ready)])),
            OverallStatus::Degraded
        );
        assert_eq!(
            overall(&deps(&[(true, NotReady), (false, Ready)])),
            OverallStatus::NotReady
        );
        assert!(!Degraded.healthy() && !NotReady.healthy());
        assert!(Ready.healthy() && NotConfigured.healthy());
    }

    #[test]
    fn faults_apply() {
        let ok = || ProbeResults {
            postgres: Ok(()),
            object_storage: Ok(()),
        };
        let r = assemble(ok(), &Faults::default());
        assert_eq!(r.status, OverallStatus::Ready);
        let names: Vec<_> = r.dependencies.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, DEPENDENCY_NAMES);

        let mut f = Faults::default();
        f.dependencies
            .insert("oidc_jwks".into(), DepStatus::Degraded);
        let r = assemble(ok(), &f);
        assert_eq!(r.status, OverallStatus::Degraded);
        assert_eq!(r.dependencies[4].detail.as_deref(), Some(FAULT_DETAIL));
        assert!(!r.dependencies[4].healthy);

        f.never_ready = true;
        let r = assemble(ok(), &f);
        assert_eq!(r.status, OverallStatus::NotReady);
        assert_eq!(
            r.dependencies[2].detail.as_deref(),
            Some(NEVER_READY_DETAIL)
        );
    }
}
