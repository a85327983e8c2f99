//! `/health/ready` semantics, exactly as the contract describes them.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
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

/// The service's object-storage readiness timeout (Program.fs:2383 `TimeSpan.FromSeconds(3.0)`).
pub const OBJECT_STORAGE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The service's `detail` of each `not_configured` dependency (Program.fs:2407, :2457,
/// :2508-2513).
pub const REDIS_DETAIL: &str = "Redis is not on the critical path for current production scope.";
pub const TELEMETRY_DETAIL: &str = "Telemetry exporter health is not enforced by readiness; validate collector and exporter pipelines separately.";
pub const OIDC_DISABLED_DETAIL: &str = "OIDC bearer validation is disabled.";
pub const SAML_DISABLED_DETAIL: &str = "SAML federation is disabled.";
/// Program.fs:2394.
pub const STORAGE_TIMEOUT_DETAIL: &str = "Object storage readiness check timed out.";

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
    let not_configured = |name: &str, detail: &str| {
        Dependency::new(name, false, DepStatus::NotConfigured, Some(detail.into()))
    };
    let mut deps = vec![
        not_configured("redis", REDIS_DETAIL),
        not_configured("telemetry", TELEMETRY_DETAIL),
        as_dep("postgres", probes.postgres),
        as_dep("object_storage", probes.object_storage),
        not_configured("oidc_jwks", OIDC_DISABLED_DETAIL),
        not_configured("saml_metadata", SAML_DISABLED_DETAIL),
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

/// `select 1` through the pool, with no time limit of its own (Program.fs:2371
/// `checkPostgresReadiness`); only getting a connection is bounded, by the pool's acquire
/// timeout as Npgsql's connect timeout bounds the service's. When the pool cannot get a
/// connection, a direct connection attempt is made so the detail carries the real error (e.g.
/// "connection refused") instead of the pool's generic timeout message.
pub async fn probe_postgres(pool: &PgPool, opts: &PgConnectOptions) -> Result<(), String> {
    match sqlx::query_scalar::<_, i32>("select 1")
        .fetch_one(pool)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(super::clients::describe_pg_error(&e, opts).await),
    }
}

/// `ListObjectsV2` with `MaxKeys = 1` on the bucket (ObjectStorage.fs:335-341
/// `CheckAvailability`), given 3 s (Program.fs:2383).
pub async fn probe_object_storage(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    let r = tokio::time::timeout(
        OBJECT_STORAGE_PROBE_TIMEOUT,
        s3.list_objects_v2().bucket(bucket).max_keys(1).send(),
    )
    .await;
    match r {
        Err(_) => Err(STORAGE_TIMEOUT_DETAIL.to_string()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(describe_s3_error(bucket, &e)),
    }
}

fn describe_s3_error(bucket: &str, e: &SdkError<ListObjectsV2Error, HttpResponse>) -> String {
    if let SdkError::ServiceError(se) = e {
        let status = se.raw().status().as_u16();
        return match status {
            404 => format!("bucket {bucket:?} not found (ListObjectsV2 returned 404 NoSuchBucket)"),
            403 => format!(
                "access to bucket {bucket:?} denied (ListObjectsV2 returned 403 AccessDenied)"
            ),
            _ => format!(
                "ListObjectsV2 {bucket:?} returned HTTP {status}: {}",
                DisplayErrorContext(e)
            ),
        };
    }
    format!("ListObjectsV2 {bucket:?} failed: {}", error_chain(e))
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
