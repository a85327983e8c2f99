//! Rolling releases of the API and the worker to hosts: lock every host, stage the artifact
//! everywhere first, then per batch of hosts write the env files, switch `current`, restart and
//! wait for real readiness; on a failure put every touched host back (atomic rollback) and
//! report what is live. Optional watch window (D5) and rollback rehearsal (D2). Knows nothing
//! of Terraform: the caller builds a [`Deployment`] and turns the [`Outcome`] into state.
//!
//! Readiness poll schedule (the defaults; `Strategy::poll_interval`): while a host is being
//! waited for, one `GET /health/live` every interval until it answers `ok`, then one
//! `GET /health/ready` every interval until `consecutive_ready` answers in a row say `ready`
//! (a `degraded` 200 resets the count). The first `/health/ready` follows the successful
//! `/health/live` at once; after that probes are one interval plus the probe's own time apart.
//! With the default 200 ms that is about 5 requests per second per API host (measured: 4.85/s
//! steady, 6 in the first second), and only while that host is in its wait.
//!
//! Here: what a deployment is (hosts, roles, strategy, target) and what it reports. The steps
//! live beside it: `deploy` (lock, stage, forward, back, finish), `readiness` (the waits),
//! `watch` (watch window, rehearsal), `commands` (templates), `artifact` (the verified local
//! artifact) and `errors` (phases and error texts).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::api::{self, ApiClient};
use super::hosts::{self, EnvKey, FileSums, HostError, Transport};
use super::ops::Overrides;

mod artifact;
mod commands;
mod deploy;
mod errors;
mod readiness;
mod watch;

pub use artifact::{ARTIFACT_MAX_SIZE, LocalArtifact, fetch_artifact};
pub use commands::{Commands, TEMPLATE_VARIABLES, check_template, render, template_uses};
pub use errors::{ArtifactError, Oversize, Phase, ReleaseError};
pub use readiness::{describe_readiness, wait_api_ready};

/// How long a deploy lock lives without renewal; renewed every third of it.
pub const LOCK_TTL: Duration = Duration::from_secs(120);
/// The default interval between readiness probes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Time limit of one readiness probe: the readiness data source's default, above the
/// service's own 3 s object-storage check.
const PROBE_TIMEOUT: Duration = api::DEFAULT_PROBE_TIMEOUT;
/// How often the watch window reads the ops summary.
const OPS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Api,
    Worker,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Api, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "api" => Some(Role::Api),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host to deploy to.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// The address commands are templated with (`{{address}}`).
    pub address: String,
    pub transport: Arc<dyn Transport>,
    pub roles: Vec<Role>,
    /// The host's API (required for the `api` role).
    pub api: Option<ApiClient>,
}

#[derive(Clone, Debug)]
pub struct Strategy {
    pub max_parallel: usize,
    pub consecutive_ready: u32,
    pub health_timeout: Duration,
    pub poll_interval: Duration,
    pub atomic: bool,
    pub keep_releases: usize,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            max_parallel: 1,
            consecutive_ready: 3,
            health_timeout: Duration::from_secs(300),
            poll_interval: DEFAULT_POLL_INTERVAL,
            atomic: true,
            keep_releases: 5,
        }
    }
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct Target {
    pub version: String,
    /// A local `.tar.gz`, already checked against `sha256`.
    pub artifact: PathBuf,
    pub sha256: String,
    /// Env files to manage, per role (a role left out keeps whatever file it has).
    pub env: BTreeMap<Role, BTreeMap<String, String>>,
    /// The key their fingerprints are keyed with. `None`: [`Deployment::deploy`] takes the
    /// one the hosts have (the first host, in name order, that has one), else a new one, and
    /// writes it to every host it deploys.
    pub env_key: Option<EnvKey>,
    /// Versions that must not be put back in service by a rollback (automatic, watch window or
    /// rehearsal), with why: binaries older than an applied contract (class C) migration
    /// (the service's docs/41-migration-compatibility-policy.md "Rollback Policy": an
    /// application-only rollback is valid only while the schema stays backward compatible;
    /// the way back is a restore, docs/25-upgrade-rollback-runbook.md "Rollback Procedure").
    pub unsafe_rollback: BTreeMap<String, String>,
}

/// The D5 watch window.
#[derive(Clone, Debug)]
pub struct Watch {
    pub duration: Duration,
    pub max_not_ready: Duration,
    pub poll_interval: Duration,
    pub ops: Option<OpsWatch>,
}

/// Backlog watching through the ops summary.
#[derive(Clone, Debug)]
pub struct OpsWatch {
    pub api: ApiClient,
    pub token: String,
    pub overrides: Overrides,
    /// Roll back on growth past a critical threshold; else only warn.
    pub rollback_on_growth: bool,
}

#[derive(Clone, Debug)]
pub struct Deployment {
    pub deploy_dir: String,
    pub hosts: Vec<Host>,
    pub commands: Commands,
    pub strategy: Strategy,
    pub lock_owner: String,
    pub cancel: CancellationToken,
    /// Processes per worker host (the service scales workers by process count: its
    /// docs/27 and docs/31); each worker command runs once per process with `{{instance}}`.
    pub worker_processes: u32,
}

/// The deploy lock's owner for runs from this machine and user:
/// `terraform-provider-artifortress <user>@<machine>`. A lock left by a killed run of the same
/// owner is taken over at once; another owner's waits for release or expiry.
pub fn default_lock_owner() -> String {
    format!(
        "terraform-provider-artifortress {}@{}",
        user_name(),
        hostname()
    )
}

/// The local user (for the deploy lock's owner): `$USER`, `$LOGNAME`, else the uid's name.
fn user_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return u;
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Where a host's env file for `role` lives.
pub fn env_path(deploy_dir: &str, role: Role) -> String {
    format!(
        "{}/shared/{}.env",
        deploy_dir.trim_end_matches('/'),
        role.as_str()
    )
}

/// A host as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    pub version: Option<String>,
    pub artifact_sha256: Option<String>,
    /// The deployment's env-fingerprint key, when the host has one.
    pub env_key: Option<EnvKey>,
    /// Per role asked about: the env file's checksums, `None` when there is none.
    pub env: BTreeMap<Role, Option<FileSums>>,
}

impl HostState {
    /// The keyed fingerprint of `role`'s env file (`None`: no file, or no key on the host).
    pub fn env_fingerprint(&self, role: Role) -> Option<&str> {
        self.env.get(&role)?.as_ref()?.keyed.as_deref()
    }

    /// Whether the host has an env file for `role`.
    pub fn has_env(&self, role: Role) -> bool {
        self.env.get(&role).is_some_and(Option::is_some)
    }
}

/// Reads a host's live release, artifact checksum and env file checksums.
pub async fn observe(
    t: &dyn Transport,
    deploy_dir: &str,
    roles: &[Role],
) -> Result<HostState, HostError> {
    let files: Vec<String> = roles.iter().map(|r| env_path(deploy_dir, *r)).collect();
    let found = hosts::inspect(t, deploy_dir, &files).await?;
    Ok(HostState {
        version: found.version,
        artifact_sha256: found.artifact_sha256,
        env_key: found.env_key,
        env: roles
            .iter()
            .zip(&files)
            .map(|(r, f)| (*r, found.files.get(f).cloned().flatten()))
            .collect(),
    })
}

/// What [`Deployment::stop`] did on a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The stop commands of its roles ran.
    Stopped,
    /// The host has no release (`current` is missing): nothing was run.
    NothingDeployed,
}

/// One thing that went wrong, on one host.
#[derive(Clone, Debug)]
pub struct Failure {
    pub host: String,
    pub version: String,
    pub phase: Phase,
    pub detail: ReleaseError,
    pub at: DateTime<Utc>,
}

/// What a deployment did and what is live now.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Live per host at the end (as last seen, when a host could not be read).
    pub hosts: BTreeMap<String, HostState>,
    /// Live per host before anything was switched.
    pub before: BTreeMap<String, Option<String>>,
    pub failures: Vec<Failure>,
    /// Failures while putting hosts back.
    pub rollback_failures: Vec<Failure>,
    /// Rollbacks (or a rehearsal) not done because the version to go back to is in
    /// [`Target::unsafe_rollback`]: those hosts stay on the new release.
    pub rollback_refused: Vec<Failure>,
    pub rolled_back: bool,
    pub warnings: Vec<String>,
    pub rehearsed_at: Option<DateTime<Utc>>,
    /// Hosts that were changed (the others already had the release and env).
    pub changed_hosts: Vec<String>,
    /// The keyed fingerprint of each managed env file as deployed (see
    /// [`hosts::env_fingerprint`]); empty when the run stopped before choosing the key.
    pub env_fingerprints: BTreeMap<Role, String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && self.rollback_failures.is_empty()
    }
}

/// What a host's deploy step did, so that it can be undone.
#[derive(Clone, Debug, Default)]
struct Touched {
    /// Env files stashed: (path, existed before).
    stashed: Vec<(String, bool)>,
    /// `current` was switched (from `before`).
    switched: bool,
    /// The release was installed by this run (not already there).
    installed: bool,
}

fn failure(host: &str, version: &str, phase: Phase, detail: impl Into<ReleaseError>) -> Failure {
    Failure {
        host: host.to_string(),
        version: version.to_string(),
        phase,
        detail: detail.into(),
        at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_live_in_shared() {
        assert_eq!(
            env_path("/opt/af/", Role::Worker),
            "/opt/af/shared/worker.env"
        );
    }
}
