//! Readiness waits: a host's API until `/health/live` and then `consecutive_ready`
//! `/health/ready` answers in a row say so, a worker until its status command succeeds as often,
//! and a single probe per role; the schedule is in the module docs of [`super`].

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Deployment, Host, PROBE_TIMEOUT, Phase, ReleaseError, Role};
use crate::clients::api::{self, ApiClient, Readiness};
use crate::clients::poll::{GaveUp, Poller};

/// A one-line account of a readiness report: the status and every dependency that is not
/// ready, with its detail.
pub fn describe_readiness(r: &Readiness) -> String {
    let deps: Vec<String> = r
        .body
        .dependencies
        .iter()
        .filter(|d| d.status != api::READY && d.status != "not_configured")
        .map(|d| match &d.detail {
            Some(detail) => format!("{} {} ({detail})", d.name, d.status),
            None => format!("{} {}", d.name, d.status),
        })
        .collect();
    if deps.is_empty() {
        format!("status {} (HTTP {})", r.body.status, r.http_status)
    } else {
        format!(
            "status {} (HTTP {}): {}",
            r.body.status,
            r.http_status,
            deps.join(", ")
        )
    }
}

/// Waits until the API answers `/health/live`, then `consecutive` `/health/ready` probes in a
/// row say `ready`. Returns the time it took, or why it never got there.
pub async fn wait_api_ready(
    api: &ApiClient,
    consecutive: u32,
    poll: Duration,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Duration, ReleaseError> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let mut live = false;
    let mut count = 0;
    let mut poller = Poller::new(timeout, poll, cancel);
    loop {
        if let Err(gave_up) = poller.next_attempt().await {
            return Err(match gave_up {
                GaveUp::Cancelled => ReleaseError::WaitInterrupted { last },
                GaveUp::TimedOut => ReleaseError::ApiNotReady {
                    within: timeout,
                    url: api.base_url().to_string(),
                    live,
                    last,
                },
            });
        }
        if !live {
            match api.live(PROBE_TIMEOUT).await {
                Ok(true) => live = true,
                Ok(false) => last = "/health/live did not answer ok".into(),
                Err(e) => last = format!("/health/live: {e}"),
            }
        }
        if live {
            match api.ready(PROBE_TIMEOUT).await {
                Ok(r) if r.body.status == api::READY => {
                    count += 1;
                    if count >= consecutive.max(1) {
                        return Ok(started.elapsed());
                    }
                }
                Ok(r) => {
                    count = 0;
                    last = describe_readiness(&r);
                }
                Err(e) => {
                    count = 0;
                    last = format!("/health/ready: {e}");
                }
            }
        }
    }
}

/// The full smoke flow against one API (a scratch repository, upload, publish, read back).
async fn smoke_check(api: &ApiClient, token: &str, host: &str) -> Result<(), ReleaseError> {
    tracing::info!(host, url = %api.base_url(), "smoke flow");
    let report = crate::clients::smoke::run(api, token, true).await;
    match report.first_failure() {
        None => {
            tracing::info!(host, steps = report.steps.len(), "smoke flow passed");
            Ok(())
        }
        Some(step) => Err(ReleaseError::SmokeFailed {
            url: api.base_url().to_string(),
            step: step.name.to_string(),
            detail: step.detail.clone(),
        }),
    }
}

impl Deployment {
    /// Restarts the host's roles on `version` and waits until each is ready (or `cancel`):
    /// the API first, restarted and ready before the worker is restarted (the service's
    /// docs/29-deployment-howto-production.md, "Deployment Sequence" steps 4-6, lines 78-84).
    /// A worker runs `worker_processes` instances, each restarted with its `{{instance}}`.
    /// With `smoke` (forward only) and a `smoke_token`, a ready API must also pass the smoke
    /// flow. `restarted`: the role whose restart commands already ran (in the command that
    /// switched `current`): only waited for.
    pub(super) async fn restart_and_wait(
        &self,
        host: &Host,
        version: &str,
        cancel: &CancellationToken,
        smoke: bool,
        restarted: Option<Role>,
    ) -> Result<(), (Phase, ReleaseError)> {
        let mut roles = host.roles.clone();
        roles.sort();
        roles.dedup();
        for role in &roles {
            let Some(template) = self.commands.restart.get(role) else {
                return Err((
                    Phase::Restart,
                    ReleaseError::NoRestartCommand { role: *role },
                ));
            };
            if restarted != Some(*role) {
                let cmds = self
                    .role_commands(template, host, version, *role)
                    .map_err(|e| (Phase::Restart, e))?;
                tracing::info!(host = %host.name, role = role.as_str(), version, instances = cmds.len(), "restarting");
                self.run_all(host, &cmds)
                    .await
                    .map_err(|e| (Phase::Restart, e))?;
            }
            let started = Instant::now();
            match role {
                Role::Api => {
                    let Some(api) = &host.api else {
                        return Err((Phase::Ready, ReleaseError::NoApiUrl));
                    };
                    wait_api_ready(
                        api,
                        self.strategy.consecutive_ready,
                        self.strategy.poll_interval,
                        self.strategy.health_timeout,
                        cancel,
                    )
                    .await
                    .map_err(|e| (Phase::Ready, e))?;
                    if smoke && let Some(token) = &self.smoke_token {
                        smoke_check(api, &token.0, &host.name)
                            .await
                            .map_err(|e| (Phase::Ready, e))?;
                    }
                }
                Role::Worker => self
                    .wait_worker(host, version, cancel)
                    .await
                    .map_err(|e| (Phase::Ready, e))?,
            }
            tracing::info!(
                host = %host.name,
                role = role.as_str(),
                version,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ready"
            );
        }
        Ok(())
    }

    async fn wait_worker(
        &self,
        host: &Host,
        version: &str,
        cancel: &CancellationToken,
    ) -> Result<(), ReleaseError> {
        let Some(template) = &self.commands.worker_status else {
            return Err(ReleaseError::NoWorkerStatusCommand);
        };
        let cmds = self.role_commands(template, host, version, Role::Worker)?;
        let deadline = Instant::now() + self.strategy.health_timeout;
        let mut count = 0;
        let mut last = String::new();
        loop {
            if cancel.is_cancelled() {
                return Err(ReleaseError::WaitInterrupted { last });
            }
            match self.run_all(host, &cmds).await {
                Ok(()) => {
                    count += 1;
                    if count >= self.strategy.consecutive_ready.max(1) {
                        return Ok(());
                    }
                }
                Err(e) => {
                    count = 0;
                    last = e.to_string();
                }
            }
            if Instant::now() + self.strategy.poll_interval > deadline {
                return Err(ReleaseError::WorkerNotRunning {
                    within: self.strategy.health_timeout,
                    last,
                });
            }
            tokio::time::sleep(self.strategy.poll_interval).await;
        }
    }

    /// One probe per role: the API answers `ready`, the worker's status command succeeds.
    pub(super) async fn running(&self, host: &Host, version: &str) -> bool {
        for role in &host.roles {
            let ok = match role {
                Role::Api => match &host.api {
                    Some(api) => api
                        .ready(PROBE_TIMEOUT)
                        .await
                        .is_ok_and(|r| r.body.status == api::READY),
                    None => false,
                },
                Role::Worker => match &self.commands.worker_status {
                    Some(t) => match self.role_commands(t, host, version, Role::Worker) {
                        Ok(cmds) => self.run_all(host, &cmds).await.is_ok(),
                        Err(_) => false,
                    },
                    None => false,
                },
            };
            if !ok {
                tracing::info!(host = %host.name, role = role.as_str(), version, "release in place but not running or not ready: it is restarted");
                return false;
            }
        }
        true
    }
}
