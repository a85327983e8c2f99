//! `data "artifortress_readiness"`: probes `/health/live` and `/health/ready` (D0/D4).
//!
//! The status comes from the body, never from the HTTP code alone: `degraded` answers 200. With
//! `require_status`, the read fails (listing every unhealthy dependency) unless the API reaches
//! that status `consecutive` times in a row, polling until `wait_timeout`.

use std::time::Duration;

use async_trait::async_trait;

use crate::clients::api::{self, ApiClient, Readiness as Probe};
use crate::duration;
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::model::DurationText;
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::ops::DependencyModel;

pub const TYPE_NAME: &str = "artifortress_readiness";
/// Reported when no valid readiness answer came back (connection refused, timeout, not the
/// service's body).
pub const UNREACHABLE: &str = "unreachable";
const DEFAULT_POLL_INTERVAL: &str = "2s";
/// [`api::DEFAULT_PROBE_TIMEOUT`] as the attribute's default.
const DEFAULT_PROBE_TIMEOUT: &str = "5s";

crate::model! {
    /// `data "artifortress_readiness"` as configured and read.
    pub(crate) struct ReadinessModel {
        url: Option<String> = Attribute::optional_computed("url", Type::String)
            .description("Base URL of the API to probe. Default: the provider's `api_url`.")
            .validate(Validator::HttpUrl),
        require_status: Option<String> = Attribute::optional("require_status", Type::String)
            .description("Fail unless the API reports this status: `ready`, or `degraded` (which also accepts `ready`). Null: never fail, just report.")
            .validate(Validator::OneOf(&[api::READY, api::DEGRADED])),
        consecutive: i64 = Attribute::optional_computed("consecutive", Type::Number)
            .description("How many satisfying probes in a row `require_status` needs.")
            .default_value(Value::int(1))
            .validate(Validator::IntBetween(1, 1000)),
        wait_timeout: Option<DurationText> = Attribute::optional("wait_timeout", Type::String)
            .description("Keep probing until `require_status` is satisfied or this much time has passed (a duration such as `2m`). Null: no waiting; the first unsatisfying probe fails.")
            .validate(Validator::Duration { min_millis: 1 }),
        poll_interval: DurationText = Attribute::optional_computed("poll_interval", Type::String)
            .description("Pause between probes.")
            .default_value(DEFAULT_POLL_INTERVAL)
            .validate(Validator::Duration { min_millis: 10 }),
        probe_timeout: DurationText = Attribute::optional_computed("probe_timeout", Type::String)
            .description("Time limit of one probe (`/health/live` and `/health/ready`, sent together): an API that accepts the connection but does not answer within it is `unreachable`. At least `3s`, the time the service itself gives its object-storage readiness check before it answers, so a slow storage backend is reported as such rather than as an unreachable API. With `wait_timeout`, probing goes on until that runs out; the last probe gets no more than the time left. Every answer's body is read up to 1 MiB (the service's answers are a few KiB); a larger one is `unreachable`, with the limit named.")
            .default_value(DEFAULT_PROBE_TIMEOUT)
            .validate(Validator::Duration { min_millis: api::MIN_PROBE_TIMEOUT.as_millis() as u64 }),
        live: Option<bool> = Attribute::computed("live", Type::Bool)
            .description("`/health/live` answered 200 `{\"status\":\"ok\"}`."),
        status: Option<String> = Attribute::computed("status", Type::String)
            .description("`ready`, `degraded` or `not_ready` from the readiness body, or `unreachable` when no valid answer came back."),
        ready: Option<bool> = Attribute::computed("ready", Type::Bool)
            .description("`status == \"ready\"`."),
        http_status: Option<i64> = Attribute::computed("http_status", Type::Number)
            .description("HTTP status of the last readiness probe (200 for ready and degraded, 503 for not_ready); 0 when unreachable."),
        checked_at: Option<String> = Attribute::computed("checked_at", Type::String)
            .description("When the last probe was made (RFC 3339, UTC)."),
        dependencies: Option<Vec<DependencyModel>> =
            Attribute::computed("dependencies", Type::list(DependencyModel::object_type()))
                .description("The service's dependency checks, in its order: `name`, `healthy`, `essential`, `status` (`ready`, `degraded`, `not_ready`, `not_configured`) and `detail`."),
    }
}

pub struct Readiness;

#[async_trait]
impl DataSource<Settings> for Readiness {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Probes the Artifortress API's liveness and readiness (`/health/live`, \
             `/health/ready`). The status is read from the response body, so `degraded` (which \
             answers HTTP 200) is never mistaken for `ready`. Without `require_status` it only \
             reports; with it, the read fails unless the API reaches that status, which makes it a \
             deployment gate. Works inside `check` blocks, where a failure becomes a warning.",
            ReadinessModel::attributes(),
        )
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let mut model = match ReadinessModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => return resp.diagnostics.push(e.diagnostic("Reading readiness")),
        };
        let client = match req.provider.api_client(model.url.as_deref()) {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d.at_attr("url")),
        };
        let plan = ProbePlan::of(&model);
        let outcome = tokio::select! {
            o = plan.run(&client) => o,
            _ = req.ctx.cancel.cancelled() => {
                resp.diagnostics.push(Diagnostic::error(
                    "Readiness probe cancelled",
                    format!("Terraform was interrupted while probing {}.", client.base_url()),
                ));
                return;
            }
        };
        if model.url.is_none() {
            let effective = client.base_url().as_str().trim_end_matches('/').to_string();
            model.url = Some(effective);
        }
        outcome.last.write_into(&mut model);
        if let Some(d) = outcome.failure {
            resp.diagnostics.push(d);
        }
        resp.state = model.to_object();
    }
}

/// How to probe, from the configuration.
struct ProbePlan {
    require: Option<String>,
    consecutive: u64,
    wait_timeout: Option<Duration>,
    poll_interval: Duration,
    /// The limit of one probe (both requests, sent together).
    probe_timeout: Duration,
}

/// The result of one probe, as the data source reports it.
#[derive(Debug, Clone)]
struct Observation {
    live: bool,
    status: String,
    http_status: u16,
    checked_at: String,
    dependencies: Vec<api::Dependency>,
    /// Why no valid readiness answer came back.
    error: Option<String>,
}

struct Outcome {
    last: Observation,
    failure: Option<Diagnostic>,
}

impl ProbePlan {
    /// From the configuration with defaults applied (validated already).
    fn of(model: &ReadinessModel) -> Self {
        ProbePlan {
            require: model.require_status.clone(),
            consecutive: model.consecutive.max(1) as u64,
            wait_timeout: model.wait_timeout.as_ref().map(DurationText::get),
            poll_interval: model.poll_interval.get(),
            probe_timeout: model.probe_timeout.get().max(api::MIN_PROBE_TIMEOUT),
        }
    }

    fn satisfied(&self, status: &str) -> bool {
        match self.require.as_deref() {
            None => true,
            Some(api::READY) => status == api::READY,
            Some(_) => status == api::READY || status == api::DEGRADED,
        }
    }

    async fn run(&self, client: &ApiClient) -> Outcome {
        let started = tokio::time::Instant::now();
        let deadline = self.wait_timeout.map(|t| started + t);
        let mut in_a_row = 0u64;
        let mut probes = 0u64;
        loop {
            let per_request = match deadline {
                Some(d) => d
                    .saturating_duration_since(tokio::time::Instant::now())
                    .clamp(Duration::from_millis(200), self.probe_timeout),
                None => self.probe_timeout,
            };
            let obs = probe(client, per_request).await;
            probes += 1;
            let ok = obs.error.is_none() && self.satisfied(&obs.status);
            in_a_row = if ok { in_a_row + 1 } else { 0 };
            tracing::info!(
                url = %client.base_url(),
                status = %obs.status,
                http_status = obs.http_status,
                in_a_row,
                needed = self.consecutive,
                probes,
                "readiness probe"
            );
            if self.require.is_none() {
                // Just report; an unreachable API is a status, not an error.
                return Outcome {
                    last: obs,
                    failure: None,
                };
            }
            if in_a_row >= self.consecutive {
                return Outcome {
                    last: obs,
                    failure: None,
                };
            }
            let out_of_time = match deadline {
                None => !ok,
                Some(d) => tokio::time::Instant::now() + self.poll_interval > d,
            };
            if out_of_time {
                let failure = self.failure(client, &obs, probes, started.elapsed(), in_a_row);
                return Outcome {
                    last: obs,
                    failure: Some(failure),
                };
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn failure(
        &self,
        client: &ApiClient,
        last: &Observation,
        probes: u64,
        elapsed: Duration,
        in_a_row: u64,
    ) -> Diagnostic {
        let want = self.require.as_deref().unwrap_or(api::READY);
        let summary = match self.wait_timeout {
            Some(t) => format!(
                "Artifortress did not become {want} within {}",
                duration::format(t)
            ),
            None => format!("Artifortress is not {want}"),
        };
        let mut detail = format!(
            "{} reported status {:?} (HTTP {}) on the last of {probes} probe(s) over {}",
            client.base_url(),
            last.status,
            last.http_status,
            duration::format(Duration::from_secs(elapsed.as_secs()))
        );
        if in_a_row > 0 {
            detail.push_str(&format!(
                "; it was satisfied {in_a_row} time(s) in a row but {} are required",
                self.consecutive
            ));
        }
        detail.push('.');
        if let Some(e) = &last.error {
            detail.push_str(&format!("\n\n{e}"));
        }
        let unhealthy: Vec<_> = last.dependencies.iter().filter(|d| !d.healthy).collect();
        if !unhealthy.is_empty() {
            detail.push_str("\n\nUnhealthy dependencies:");
            for d in unhealthy {
                detail.push_str(&format!(
                    "\n  - {} ({}, {}): {}",
                    d.name,
                    if d.essential {
                        "essential"
                    } else {
                        "non-essential"
                    },
                    d.status,
                    d.detail.as_deref().unwrap_or("no detail")
                ));
            }
        }
        Diagnostic::error(summary, detail).at_attr("require_status")
    }
}

/// `/health/live` and `/health/ready` together, so one probe takes at most `timeout`.
async fn probe(client: &ApiClient, timeout: Duration) -> Observation {
    let (live, ready) = tokio::join!(client.live(timeout), client.ready(timeout));
    let checked_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match ready {
        Ok(Probe { http_status, body }) => Observation {
            live: matches!(live, Ok(true)),
            status: body.status,
            http_status,
            checked_at,
            dependencies: body.dependencies,
            error: None,
        },
        Err(e) => Observation {
            live: matches!(live, Ok(true)),
            status: UNREACHABLE.into(),
            http_status: e.status().unwrap_or(0),
            checked_at,
            dependencies: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

impl Observation {
    fn write_into(&self, model: &mut ReadinessModel) {
        model.live = Some(self.live);
        model.status = Some(self.status.clone());
        model.ready = Some(self.status == api::READY);
        model.http_status = Some(i64::from(self.http_status));
        model.checked_at = Some(self.checked_at.clone());
        model.dependencies = Some(DependencyModel::list(&self.dependencies));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(Readiness.schema().check().is_empty());
    }

    #[test]
    fn the_probe_timeout_default_is_the_clients() {
        assert_eq!(
            duration::parse(DEFAULT_PROBE_TIMEOUT).unwrap(),
            api::DEFAULT_PROBE_TIMEOUT
        );
    }

    #[test]
    fn degraded_satisfies_degraded_but_not_ready() {
        let mut plan = ProbePlan {
            require: Some("ready".into()),
            consecutive: 1,
            wait_timeout: None,
            poll_interval: Duration::from_millis(10),
            probe_timeout: Duration::from_secs(3),
        };
        assert!(!plan.satisfied("degraded"));
        assert!(plan.satisfied("ready"));
        plan.require = Some("degraded".into());
        assert!(plan.satisfied("degraded"));
        assert!(plan.satisfied("ready"));
        assert!(!plan.satisfied("not_ready"));
    }

    #[test]
    fn failure_lists_every_unhealthy_dependency() {
        let plan = ProbePlan {
            require: Some("ready".into()),
            consecutive: 3,
            wait_timeout: Some(Duration::from_secs(120)),
            poll_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(3),
        };
        let client = ApiClient::new(
            reqwest::Client::new(),
            url::Url::parse("http://127.0.0.1:9").unwrap(),
            Duration::from_secs(1),
        );
        let obs = Observation {
            live: true,
            status: "not_ready".into(),
            http_status: 503,
            checked_at: String::new(),
            dependencies: vec![
                api::Dependency {
                    name: "postgres".into(),
                    healthy: false,
                    essential: true,
                    status: "not_ready".into(),
                    detail: Some("connection refused".into()),
                },
                api::Dependency {
                    name: "redis".into(),
                    healthy: true,
                    essential: false,
                    status: "not_configured".into(),
                    detail: None,
                },
            ],
            error: None,
        };
        let d = plan.failure(&client, &obs, 7, Duration::from_secs(120), 0);
        assert_eq!(d.summary, "Artifortress did not become ready within 2m0s");
        assert!(
            d.detail
                .contains("postgres (essential, not_ready): connection refused")
        );
        assert!(!d.detail.contains("redis"));
        assert_eq!(d.attribute.unwrap().to_string(), "require_status");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_reported_not_failed_without_require_status() {
        // Port 9 (discard) on loopback: nothing listens there in a test environment.
        let client = ApiClient::new(
            reqwest::Client::new(),
            url::Url::parse("http://127.0.0.1:9").unwrap(),
            Duration::from_secs(2),
        );
        let plan = ProbePlan {
            require: None,
            consecutive: 1,
            wait_timeout: None,
            poll_interval: Duration::from_millis(10),
            probe_timeout: Duration::from_secs(3),
        };
        let out = plan.run(&client).await;
        assert!(out.failure.is_none());
        assert_eq!(out.last.status, UNREACHABLE);
        assert_eq!(out.last.http_status, 0);
        assert!(out.last.error.unwrap().contains("127.0.0.1:9"));
    }
}
