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

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::api::{self, ApiClient, Readiness};
use super::hosts::{self, DeployLock, EnvKey, FileSums, HostError, Transport};
use super::ops::{self, Overrides};
use super::poll::{GaveUp, Poller};

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

/// Where in a deployment something went wrong. `Display` gives the name the state's
/// `last_failure.phase` and the messages show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Connect,
    Lock,
    Inspect,
    Upload,
    Env,
    Switch,
    Restart,
    Ready,
    Watch,
    Rehearse,
    Interrupted,
    Rollback,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::Connect,
        Phase::Lock,
        Phase::Inspect,
        Phase::Upload,
        Phase::Env,
        Phase::Switch,
        Phase::Restart,
        Phase::Ready,
        Phase::Watch,
        Phase::Rehearse,
        Phase::Interrupted,
        Phase::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Lock => "lock",
            Phase::Inspect => "inspect",
            Phase::Upload => "upload",
            Phase::Env => "env",
            Phase::Switch => "switch",
            Phase::Restart => "restart",
            Phase::Ready => "ready",
            Phase::Watch => "watch",
            Phase::Rehearse => "rehearse",
            Phase::Interrupted => "interrupted",
            Phase::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong in a deployment step (or a stop, or a command template). The text is what
/// users read, in diagnostics and in the state's `last_failure.detail`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A host operation failed (its own words: host, operation, stderr).
    #[error(transparent)]
    Host(#[from] HostError),
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        /// How it ended (`exit status 3`, `killed by signal 9`).
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A command template uses a variable that has no value on the host (no release known
    /// there), so it is not run.
    #[error(
        "the command `{template}` uses {{{{{variable}}}}}, which has no value on {host}: no release is known there, so the command is not run"
    )]
    CommandWithoutValue {
        template: String,
        variable: String,
        host: String,
    },
    /// A command template has `{{` without `}}`.
    #[error("has a `{{{{` without a closing `}}}}`")]
    UnclosedTemplate,
    /// A command template uses an unknown variable.
    #[error(
        "uses {{{{{name}}}}}; the variables are {}",
        TEMPLATE_VARIABLES.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownTemplateVariable { name: String },
    #[error("no restart command for role {role}")]
    NoRestartCommand { role: Role },
    #[error("the host has the api role but no api_url")]
    NoApiUrl,
    #[error("no worker_status command")]
    NoWorkerStatusCommand,
    /// The API did not become ready in time.
    #[error(
        "not ready within {}: {url} ({}); last: {last}",
        crate::duration::format(*within),
        if *live { "live" } else { "not live" }
    )]
    ApiNotReady {
        within: Duration,
        url: String,
        /// Whether `/health/live` had answered `ok`.
        live: bool,
        /// The last answer that was not `ready`.
        last: String,
    },
    /// The worker's status command did not succeed often enough in time.
    #[error("worker not running within {}; last: {last}", crate::duration::format(*within))]
    WorkerNotRunning {
        within: Duration,
        /// The status command's last failure (empty when it never failed).
        last: String,
    },
    /// A readiness wait was interrupted.
    #[error("interrupted while waiting; last: {last}")]
    WaitInterrupted { last: String },
    /// The deployment was interrupted before a host was deployed.
    #[error("the deployment was interrupted")]
    DeploymentInterrupted,
    /// The deployment was interrupted during the watch window.
    #[error("interrupted during the watch window")]
    WatchInterrupted,
    /// An API host was not ready for longer than the watch window allows.
    #[error(
        "not ready for longer than {} during the watch window: {last}",
        crate::duration::format(*limit)
    )]
    NotReadyDuringWatch { limit: Duration, last: String },
    /// The backlog grew past critical thresholds during the watch window.
    #[error(
        "backlog regressed past critical thresholds during the watch window: {}",
        .regressions.join("; ")
    )]
    BacklogRegressed { regressions: Vec<String> },
    /// Putting a host back on `version` failed after the switch back.
    #[error("{version} after rollback: {error}")]
    AfterRollback {
        version: String,
        error: Box<ReleaseError>,
    },
}

/// A release artifact that could not be made a verified local file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot create a temporary file: {0}")]
    TempFile(#[source] std::io::Error),
    /// The download failed (transport errors in words).
    #[error("GET {artifact}: {detail}")]
    Download { artifact: String, detail: String },
    /// The server answered with an error status.
    #[error("GET {artifact}: HTTP {status}")]
    Status {
        artifact: String,
        status: reqwest::StatusCode,
    },
    /// Nothing arrived for `after`.
    #[error("GET {artifact}: nothing received for {}; gave up", crate::duration::format(*after))]
    Stalled { artifact: String, after: Duration },
    /// Past the size limit.
    #[error(
        "{artifact}: {what} larger than {}, the limit for release artifacts; stopped there",
        super::http::format_size(*limit)
    )]
    TooLarge {
        artifact: String,
        what: Oversize,
        limit: u64,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// The checksum is not the one configured.
    #[error("{artifact}: sha256 is {actual}, the configuration says {expected}")]
    Checksum {
        artifact: String,
        actual: String,
        expected: String,
    },
}

/// What was found larger than the artifact size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oversize {
    /// The server's `Content-Length`.
    Announced,
    /// The bytes downloaded.
    Download,
    /// The local file.
    File,
}

impl fmt::Display for Oversize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Oversize::Announced => "the server announces a file",
            Oversize::Download => "the download is",
            Oversize::File => "the file is",
        })
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

/// Commands run on the hosts, templated with `{{release_dir}}`, `{{version}}`, `{{host}}`,
/// `{{role}}`, `{{address}}` and `{{deploy_dir}}` (each substituted shell-quoted).
#[derive(Clone, Debug, Default)]
pub struct Commands {
    pub restart: BTreeMap<Role, String>,
    pub stop: BTreeMap<Role, String>,
    pub worker_status: Option<String>,
}

pub const TEMPLATE_VARIABLES: [&str; 6] = [
    "release_dir",
    "version",
    "host",
    "role",
    "address",
    "deploy_dir",
];

/// Checks that a command only uses known `{{variables}}`.
pub fn check_template(command: &str) -> Result<(), ReleaseError> {
    let mut rest = command;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err(ReleaseError::UnclosedTemplate);
        };
        let name = after[..j].trim();
        if !TEMPLATE_VARIABLES.contains(&name) {
            return Err(ReleaseError::UnknownTemplateVariable {
                name: name.to_string(),
            });
        }
        rest = &after[j + 2..];
    }
    Ok(())
}

/// Whether `template` uses the variable `name` (`{{name}}`, spaces inside the braces allowed).
fn template_uses(template: &str, name: &str) -> bool {
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return false;
        };
        if after[..j].trim() == name {
            return true;
        }
        rest = &after[j + 2..];
    }
    false
}

/// Substitutes the template variables (values shell-quoted).
pub fn render(command: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                let name = after[..j].trim();
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(&hosts::shell_quote(v)),
                    None => out.push_str(&rest[i..i + 2 + j + 2]),
                }
                rest = &after[j + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
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

impl Deployment {
    /// The template variables for a command; a variable that has no value (no version known
    /// for the host) is empty.
    fn vars<'a>(&'a self, host: &'a Host, version: &'a str, role: Role) -> Vec<(&'a str, String)> {
        let d = self.deploy_dir.trim_end_matches('/');
        vec![
            (
                "release_dir",
                if version.is_empty() {
                    String::new()
                } else {
                    format!("{d}/{}/{version}", hosts::RELEASES_DIR)
                },
            ),
            ("version", version.to_string()),
            ("host", host.name.clone()),
            ("role", role.as_str().to_string()),
            ("address", host.address.clone()),
            ("deploy_dir", d.to_string()),
        ]
    }

    /// The command `template` stands for on `host`; an error instead of a command built from
    /// an empty value (`releases//bin/...` on a host with no release).
    fn command(
        &self,
        template: &str,
        host: &Host,
        version: &str,
        role: Role,
    ) -> Result<String, ReleaseError> {
        let vars = self.vars(host, version, role);
        if let Some((name, _)) = vars
            .iter()
            .find(|(k, v)| v.is_empty() && template_uses(template, k))
        {
            return Err(ReleaseError::CommandWithoutValue {
                template: template.to_string(),
                variable: name.to_string(),
                host: host.name.clone(),
            });
        }
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ok(render(template, &refs))
    }

    /// Runs a command; a non-zero exit is an error with its stderr.
    async fn run(&self, host: &Host, command: &str) -> Result<String, ReleaseError> {
        let t = &host.transport;
        match t.exec(command, None, t.timeouts().command).await {
            Ok(out) if out.success() => Ok(out.stdout_text()),
            Ok(out) => Err(ReleaseError::CommandFailed {
                command: command.to_string(),
                status: out.status_text(),
                stderr: out.stderr_text().trim().to_string(),
            }),
            Err(e) => Err(ReleaseError::Host(e)),
        }
    }

    /// Restarts the host's roles on `version` and waits until each is ready (or `cancel`).
    async fn restart_and_wait(
        &self,
        host: &Host,
        version: &str,
        cancel: &CancellationToken,
    ) -> Result<(), (Phase, ReleaseError)> {
        for role in &host.roles {
            let Some(template) = self.commands.restart.get(role) else {
                return Err((
                    Phase::Restart,
                    ReleaseError::NoRestartCommand { role: *role },
                ));
            };
            let cmd = self
                .command(template, host, version, *role)
                .map_err(|e| (Phase::Restart, e))?;
            tracing::info!(host = %host.name, role = role.as_str(), version, "restarting");
            self.run(host, &cmd)
                .await
                .map_err(|e| (Phase::Restart, e))?;
        }
        for role in &host.roles {
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
        let cmd = self.command(template, host, version, Role::Worker)?;
        let deadline = Instant::now() + self.strategy.health_timeout;
        let mut count = 0;
        let mut last = String::new();
        loop {
            if cancel.is_cancelled() {
                return Err(ReleaseError::WaitInterrupted { last });
            }
            match self.run(host, &cmd).await {
                Ok(_) => {
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
    async fn running(&self, host: &Host, version: &str) -> bool {
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
                    Some(t) => match self.command(t, host, version, Role::Worker) {
                        Ok(cmd) => self.run(host, &cmd).await.is_ok(),
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

    /// Env files, switch, restart, wait: one host forward to `target`.
    async fn forward(
        &self,
        host: &Host,
        target: &Target,
        touched: &mut Touched,
        stash: bool,
    ) -> Result<(), Failure> {
        let t = &*host.transport;
        let v = &target.version;
        let fail = |phase, detail: ReleaseError| failure(&host.name, v, phase, detail);
        if self.cancel.is_cancelled() {
            return Err(fail(
                Phase::Interrupted,
                ReleaseError::DeploymentInterrupted,
            ));
        }
        tracing::info!(host = %host.name, version = %v, "deploying");
        if let Some(key) = &target.env_key
            && host.roles.iter().any(|r| target.env.contains_key(r))
        {
            hosts::write_env_key(t, &self.deploy_dir, key)
                .await
                .map_err(|e| fail(Phase::Env, e.into()))?;
        }
        for role in &host.roles {
            let Some(env) = target.env.get(role) else {
                continue;
            };
            let path = env_path(&self.deploy_dir, *role);
            if stash {
                let existed = hosts::stash_file(t, &path)
                    .await
                    .map_err(|e| fail(Phase::Env, e.into()))?;
                touched.stashed.push((path.clone(), existed));
            }
            hosts::write_env(t, &path, env)
                .await
                .map_err(|e| fail(Phase::Env, e.into()))?;
        }
        hosts::switch_current(t, &self.deploy_dir, v)
            .await
            .map_err(|e| fail(Phase::Switch, e.into()))?;
        touched.switched = true;
        self.restart_and_wait(host, v, &self.cancel)
            .await
            .map_err(|(phase, e)| fail(phase, e))?;
        tracing::info!(host = %host.name, version = %v, "host deployed");
        Ok(())
    }

    /// Puts a host back: env files restored, `current` back on `before` and restarted (or, when
    /// there was no release before, stopped and the new release removed).
    async fn back(
        &self,
        host: &Host,
        before: Option<&str>,
        target: &Target,
        touched: &Touched,
        keep_stash: bool,
    ) -> Result<(), Failure> {
        let t = &*host.transport;
        let v = before.unwrap_or(&target.version);
        let fail = |detail: ReleaseError| failure(&host.name, v, Phase::Rollback, detail);
        if !touched.switched && touched.stashed.is_empty() {
            // Staged only: nothing to put back; the staged release is removed, best effort.
            if touched.installed
                && !keep_stash
                && before != Some(target.version.as_str())
                && let Err(e) = hosts::remove_release(t, &self.deploy_dir, &target.version).await
            {
                tracing::warn!(host = %host.name, error = %e, "could not remove the staged release");
            }
            return Ok(());
        }
        tracing::warn!(host = %host.name, to = ?before, "rolling back");
        for (path, existed) in &touched.stashed {
            hosts::restore_stash(t, path, *existed, keep_stash)
                .await
                .map_err(|e| fail(e.into()))?;
        }
        match before {
            Some(prev) => {
                if touched.switched {
                    hosts::switch_current(t, &self.deploy_dir, prev)
                        .await
                        .map_err(|e| fail(e.into()))?;
                }
                // Not cancellable: an interrupted or timed-out rollout is still put back
                // (each host bounded by health_timeout).
                self.restart_and_wait(host, prev, &CancellationToken::new())
                    .await
                    .map_err(|(_, e)| {
                        fail(ReleaseError::AfterRollback {
                            version: prev.to_string(),
                            error: Box::new(e),
                        })
                    })?;
                // A release this run installed and rolled back from is not kept (a rehearsal
                // rolls forward to it again).
                if touched.installed && !keep_stash && prev != target.version {
                    hosts::remove_release(t, &self.deploy_dir, &target.version)
                        .await
                        .map_err(|e| fail(e.into()))?;
                }
            }
            None => {
                for role in &host.roles {
                    if let Some(template) = self.commands.stop.get(role) {
                        let cmd = self
                            .command(template, host, &target.version, *role)
                            .map_err(fail)?;
                        self.run(host, &cmd).await.map_err(fail)?;
                    }
                }
                if touched.installed || touched.switched {
                    hosts::remove_release(t, &self.deploy_dir, &target.version)
                        .await
                        .map_err(|e| fail(e.into()))?;
                }
            }
        }
        tracing::info!(host = %host.name, to = ?before, "rolled back");
        Ok(())
    }

    /// Runs the stop command of every role on every host, for the release each host runs now
    /// (read from the host, not from what the state last knew). A host with no release (wiped,
    /// rebuilt) has nothing to stop: [`Stopped::NothingDeployed`], and no command is run
    /// there. Per host: what happened, or why it could not be stopped.
    pub async fn stop(&self) -> Vec<(String, Result<Stopped, ReleaseError>)> {
        let results = join_all(self.hosts.iter().map(|h| async move {
            let version = hosts::current(&*h.transport, &self.deploy_dir).await?;
            let Some(version) = version else {
                tracing::warn!(host = %h.name, "no release on the host: nothing to stop");
                return Ok(Stopped::NothingDeployed);
            };
            for role in &h.roles {
                if let Some(template) = self.commands.stop.get(role) {
                    self.run(h, &self.command(template, h, &version, *role)?)
                        .await?;
                    tracing::info!(host = %h.name, role = role.as_str(), version, "stopped");
                }
            }
            Ok(Stopped::Stopped)
        }))
        .await;
        self.hosts
            .iter()
            .map(|h| h.name.clone())
            .zip(results)
            .collect()
    }

    /// Takes every host's lock, waiting for a lock held by someone else to be released or to
    /// expire (bounded by cancellation).
    async fn lock_all(&self) -> (Vec<Option<DeployLock>>, Vec<Failure>) {
        let locks = join_all(self.hosts.iter().map(|h| async move {
            let mut waited = false;
            loop {
                match hosts::acquire_lock(&*h.transport, &self.deploy_dir, &self.lock_owner, LOCK_TTL)
                    .await
                {
                    Ok(l) => return Ok(l),
                    Err(HostError::LockHeld { holder, remaining_secs, .. })
                        if !self.cancel.is_cancelled() =>
                    {
                        if !waited {
                            tracing::warn!(host = %h.name, holder, remaining_secs, "deploy lock held; waiting");
                            waited = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                            _ = self.cancel.cancelled() => {}
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }))
        .await;
        let mut got = Vec::new();
        let mut failures = Vec::new();
        for (h, r) in self.hosts.iter().zip(locks) {
            match r {
                Ok(l) => got.push(Some(l)),
                Err(e) => {
                    let phase = if e.is_connection_failure() {
                        Phase::Connect
                    } else {
                        Phase::Lock
                    };
                    failures.push(failure(&h.name, "", phase, e));
                    got.push(None);
                }
            }
        }
        (got, failures)
    }

    async fn unlock_all(&self, locks: &[Option<DeployLock>]) {
        join_all(self.hosts.iter().zip(locks).map(|(h, l)| async move {
            if let Some(l) = l
                && let Err(e) = hosts::release_lock(&*h.transport, l).await
            {
                tracing::warn!(host = %h.name, error = %e, "could not release the deploy lock");
            }
        }))
        .await;
    }

    /// Re-reads every host (the end state to report); a host that cannot be read keeps `last`.
    async fn observe_all(
        &self,
        roles: &[Role],
        last: &mut BTreeMap<String, HostState>,
    ) -> Vec<(String, HostError)> {
        let seen = join_all(
            self.hosts
                .iter()
                .map(|h| observe(&*h.transport, &self.deploy_dir, roles)),
        )
        .await;
        let mut errors = Vec::new();
        for (h, r) in self.hosts.iter().zip(seen) {
            match r {
                Ok(s) => {
                    last.insert(h.name.clone(), s);
                }
                Err(e) => errors.push((h.name.clone(), e)),
            }
        }
        errors
    }

    /// Deploys `target`. Never panics, never leaves a lock of its own behind; the outcome says
    /// what is live.
    pub async fn deploy(&self, target: &Target, watch: Option<&Watch>, rehearse: bool) -> Outcome {
        let mut out = Outcome::default();
        let env_roles: Vec<Role> = target.env.keys().copied().collect();
        let (locks, failures) = self.lock_all().await;
        if !failures.is_empty() {
            out.failures = failures;
            self.unlock_all(&locks).await;
            return out;
        }
        let renewer = self.spawn_renewal(&locks);
        self.run_locked(target, watch, rehearse, &env_roles, &mut out)
            .await;
        renewer.cancel();
        self.unlock_all(&locks).await;
        out
    }

    fn spawn_renewal(&self, locks: &[Option<DeployLock>]) -> CancellationToken {
        let stop = CancellationToken::new();
        for (h, l) in self.hosts.iter().zip(locks) {
            let (Some(mut lock), t, name, stop) =
                (l.clone(), h.transport.clone(), h.name.clone(), stop.clone())
            else {
                continue;
            };
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(LOCK_TTL / 3) => {}
                    }
                    match hosts::renew_lock(&*t, &lock, LOCK_TTL).await {
                        Ok(l) => lock = l,
                        Err(e) => {
                            tracing::warn!(host = %name, error = %e, "could not renew the deploy lock")
                        }
                    }
                }
            });
        }
        stop
    }

    async fn run_locked(
        &self,
        target: &Target,
        watch: Option<&Watch>,
        rehearse: bool,
        env_roles: &[Role],
        out: &mut Outcome,
    ) {
        // What is live before anything changes.
        let mut live = BTreeMap::new();
        for (name, e) in self.observe_all(env_roles, &mut live).await {
            out.failures
                .push(failure(&name, &target.version, Phase::Inspect, e));
        }
        if !out.failures.is_empty() {
            out.hosts = live;
            return;
        }
        // The deployment's env-fingerprint key: the one the hosts have, else a new one.
        let key = target.env_key.clone().unwrap_or_else(|| {
            self.hosts
                .iter()
                .find_map(|h| live[&h.name].env_key.clone())
                .unwrap_or_else(EnvKey::generate)
        });
        let resolved = Target {
            env_key: Some(key.clone()),
            ..target.clone()
        };
        let target = &resolved;
        let expected_env: BTreeMap<Role, String> = target
            .env
            .iter()
            .filter_map(|(r, env)| hosts::env_fingerprint(&key, env).ok().map(|s| (*r, s)))
            .collect();
        out.env_fingerprints = expected_env.clone();
        for h in &self.hosts {
            out.before
                .insert(h.name.clone(), live[&h.name].version.clone());
        }
        let in_place = |h: &Host| {
            let s = &live[&h.name];
            let env_ok = h.roles.iter().all(|r| match expected_env.get(r) {
                Some(sha) => s.env_fingerprint(*r) == Some(sha.as_str()),
                None => true,
            });
            s.version.as_deref() == Some(target.version.as_str())
                && s.artifact_sha256.as_deref() == Some(target.sha256.as_str())
                && env_ok
        };
        // A host whose files are already right is left alone only while it also runs: its
        // processes may have been stopped (a destroy with on_destroy = "stop", a crash).
        let running = join_all(
            self.hosts
                .iter()
                .map(|h| async move { in_place(h) && self.running(h, &target.version).await }),
        )
        .await;
        let todo: Vec<&Host> = self
            .hosts
            .iter()
            .zip(running)
            .filter(|(_, ok)| !ok)
            .map(|(h, _)| h)
            .collect();
        out.changed_hosts = todo.iter().map(|h| h.name.clone()).collect();
        let ops_baseline = match watch.and_then(|w| w.ops.as_ref()) {
            Some(o) => match o.api.ops_summary(&o.token).await {
                Ok(s) => Some(
                    s.counters()
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect::<BTreeMap<_, _>>(),
                ),
                Err(e) => {
                    out.warnings.push(format!(
                        "the ops summary could not be read before the rollout, so backlog growth is not watched: {e}"
                    ));
                    None
                }
            },
            None => None,
        };
        let mut touched: BTreeMap<String, Touched> = BTreeMap::new();

        // Stage the artifact everywhere before anything switches.
        let installs = join_all(todo.iter().map(|h| {
            hosts::install_release(
                &*h.transport,
                &self.deploy_dir,
                &target.version,
                &target.artifact,
                &target.sha256,
            )
        }))
        .await;
        for (h, r) in todo.iter().zip(installs) {
            match r {
                Ok(i) => {
                    touched.entry(h.name.clone()).or_default().installed = !i.already_present;
                }
                Err(e) => out
                    .failures
                    .push(failure(&h.name, &target.version, Phase::Upload, e)),
            }
        }

        // Batches of max_parallel.
        if out.failures.is_empty() {
            for (n, batch) in todo.chunks(self.strategy.max_parallel.max(1)).enumerate() {
                tracing::info!(
                    batch = n + 1,
                    hosts = ?batch.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
                    version = %target.version,
                    "rolling out batch"
                );
                let results = join_all(batch.iter().map(|h| {
                    let mut t = touched.get(&h.name).cloned().unwrap_or_default();
                    async move {
                        let r = self.forward(h, target, &mut t, true).await;
                        (t, r)
                    }
                }))
                .await;
                for (h, (t, r)) in batch.iter().zip(results) {
                    touched.insert(h.name.clone(), t);
                    if let Err(f) = r {
                        out.failures.push(f);
                    }
                }
                if !out.failures.is_empty() {
                    break;
                }
            }
        }

        if out.failures.is_empty()
            && let Some(w) = watch
            && let Err(f) = self.watch(w, target, ops_baseline.as_ref(), out).await
        {
            out.failures.push(f);
        }

        if out.failures.is_empty() && rehearse {
            match self.rehearse(&todo, target, &out.before, &mut touched).await {
                Ok(Some(at)) => out.rehearsed_at = Some(at),
                Ok(None) => out.warnings.push(
                    "rollback rehearsal skipped: not every host had an earlier release to roll back to".into(),
                ),
                Err(f) => out.failures.push(f),
            }
        }

        if !out.failures.is_empty() {
            let undo: Vec<&Host> = if self.strategy.atomic {
                // Failed hosts first: they are the ones down.
                let failed: Vec<&str> = out.failures.iter().map(|f| f.host.as_str()).collect();
                let mut v: Vec<&Host> = todo
                    .iter()
                    .copied()
                    .filter(|h| touched.contains_key(&h.name))
                    .collect();
                v.sort_by_key(|h| !failed.contains(&h.name.as_str()));
                v
            } else {
                // Hosts already switched stay on the new release; the others are put back as
                // they were (a release staged but never switched to is removed, env files
                // written before a failed switch restored).
                todo.iter()
                    .copied()
                    .filter(|h| touched.get(&h.name).is_some_and(|t| !t.switched))
                    .collect()
            };
            if self.strategy.atomic {
                out.rolled_back = true;
            }
            for batch in undo.chunks(self.strategy.max_parallel.max(1)) {
                let results = join_all(batch.iter().map(|h| {
                    let t = touched.get(&h.name).cloned().unwrap_or_default();
                    let before = out.before.get(&h.name).cloned().flatten();
                    async move { self.back(h, before.as_deref(), target, &t, false).await }
                }))
                .await;
                for r in results {
                    if let Err(f) = r {
                        out.rollback_failures.push(f);
                    }
                }
            }
        } else {
            let before = out.before.clone();
            self.finish(&todo, target, &before, &touched, out).await;
        }

        for (name, e) in self.observe_all(env_roles, &mut live).await {
            out.warnings.push(format!(
                "{name}: could not read the host after the deployment, reporting what was last seen: {e}"
            ));
            let rollback_failed = out.rollback_failures.iter().any(|f| f.host == name);
            if let Some(s) = live.get_mut(&name)
                && touched.get(&name).is_some_and(|t| t.switched)
                && (!out.rolled_back || rollback_failed)
            {
                s.version = Some(target.version.clone());
                s.artifact_sha256 = Some(target.sha256.clone());
            }
        }
        out.hosts = live;
    }

    /// Revisions log, stashes dropped, old releases pruned.
    async fn finish(
        &self,
        todo: &[&Host],
        target: &Target,
        before: &BTreeMap<String, Option<String>>,
        touched: &BTreeMap<String, Touched>,
        out: &mut Outcome,
    ) {
        let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let results = join_all(todo.iter().map(|h| {
            let line = format!(
                "{at} version={} sha256={} previous={} by={}",
                target.version,
                target.sha256,
                before
                    .get(&h.name)
                    .cloned()
                    .flatten()
                    .as_deref()
                    .unwrap_or("-"),
                self.lock_owner
            );
            let stashed = touched
                .get(&h.name)
                .map(|t| t.stashed.clone())
                .unwrap_or_default();
            let prev = before.get(&h.name).cloned().flatten();
            async move {
                let t = &*h.transport;
                hosts::append_revision(t, &self.deploy_dir, &line).await?;
                for (path, _) in &stashed {
                    hosts::drop_stash(t, path).await?;
                }
                let protect: Vec<&str> = prev.iter().map(String::as_str).collect();
                hosts::prune(
                    t,
                    &self.deploy_dir,
                    self.strategy.keep_releases.max(1),
                    &protect,
                )
                .await?;
                Ok::<_, HostError>(())
            }
        }))
        .await;
        for (h, r) in todo.iter().zip(results) {
            if let Err(e) = r {
                out.warnings.push(format!(
                    "{}: deployed, but the clean-up failed: {e}",
                    h.name
                ));
            }
        }
    }

    /// Rolls every changed host back to its earlier release and forward again, checking
    /// readiness both ways. `None` when some host has no earlier release.
    async fn rehearse(
        &self,
        todo: &[&Host],
        target: &Target,
        before: &BTreeMap<String, Option<String>>,
        touched: &mut BTreeMap<String, Touched>,
    ) -> Result<Option<DateTime<Utc>>, Failure> {
        let prev = |h: &Host| before.get(&h.name).cloned().flatten();
        if todo.is_empty()
            || todo
                .iter()
                .any(|h| prev(h).is_none_or(|p| p == target.version))
        {
            return Ok(None);
        }
        tracing::info!("rehearsing the rollback");
        for batch in todo.chunks(self.strategy.max_parallel.max(1)) {
            let results = join_all(batch.iter().map(|h| {
                let t = touched.get(&h.name).cloned().unwrap_or_default();
                let p = prev(h);
                async move { self.back(h, p.as_deref(), target, &t, true).await }
            }))
            .await;
            if let Some(Err(f)) = results.into_iter().find(Result::is_err) {
                return Err(Failure {
                    phase: Phase::Rehearse,
                    ..f
                });
            }
        }
        tracing::info!("rehearsal: rolled back; rolling forward again");
        for batch in todo.chunks(self.strategy.max_parallel.max(1)) {
            let results = join_all(batch.iter().map(|h| {
                let mut t = touched.get(&h.name).cloned().unwrap_or_default();
                async move {
                    let r = self.forward(h, target, &mut t, false).await;
                    (h.name.clone(), t, r)
                }
            }))
            .await;
            for (name, t, r) in results {
                touched.insert(name, t);
                if let Err(f) = r {
                    return Err(Failure {
                        phase: Phase::Rehearse,
                        ..f
                    });
                }
            }
        }
        Ok(Some(Utc::now()))
    }

    /// Keeps probing readiness (and the ops summary) for the watch window.
    async fn watch(
        &self,
        w: &Watch,
        target: &Target,
        baseline: Option<&BTreeMap<String, i64>>,
        out: &mut Outcome,
    ) -> Result<(), Failure> {
        tracing::info!(duration_s = w.duration.as_secs(), "watch window started");
        let end = Instant::now() + w.duration;
        let apis: Vec<(&str, &ApiClient)> = self
            .hosts
            .iter()
            .filter_map(|h| h.api.as_ref().map(|a| (h.name.as_str(), a)))
            .collect();
        let mut not_ready_since: BTreeMap<&str, (Instant, String)> = BTreeMap::new();
        let mut next_ops = Instant::now();
        let mut warned_growth = false;
        while Instant::now() < end {
            if self.cancel.is_cancelled() {
                return Err(failure(
                    "(all hosts)",
                    &target.version,
                    Phase::Interrupted,
                    ReleaseError::WatchInterrupted,
                ));
            }
            let probes = join_all(apis.iter().map(|(_, a)| a.ready(PROBE_TIMEOUT))).await;
            for ((name, _), r) in apis.iter().zip(probes) {
                let bad = match r {
                    Ok(r) if r.body.status != api::NOT_READY => None,
                    Ok(r) => Some(describe_readiness(&r)),
                    Err(e) => Some(e.to_string()),
                };
                match bad {
                    None => {
                        not_ready_since.remove(name);
                    }
                    Some(why) => {
                        let since = not_ready_since
                            .entry(name)
                            .or_insert_with(|| (Instant::now(), why.clone()));
                        since.1 = why;
                        if since.0.elapsed() > w.max_not_ready {
                            return Err(failure(
                                name,
                                &target.version,
                                Phase::Watch,
                                ReleaseError::NotReadyDuringWatch {
                                    limit: w.max_not_ready,
                                    last: since.1.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            if let (Some(o), Some(base)) = (&w.ops, baseline)
                && Instant::now() >= next_ops
            {
                next_ops = Instant::now() + OPS_INTERVAL;
                match o.api.ops_summary(&o.token).await {
                    Ok(s) => {
                        let grown = ops::regressions(&s, base, &o.overrides);
                        if !grown.is_empty() {
                            let detail = ReleaseError::BacklogRegressed { regressions: grown };
                            if o.rollback_on_growth {
                                return Err(failure(
                                    "(all hosts)",
                                    &target.version,
                                    Phase::Watch,
                                    detail,
                                ));
                            } else if !warned_growth {
                                warned_growth = true;
                                out.warnings.push(detail.to_string());
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "watch: ops summary unavailable"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(w.poll_interval) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
        tracing::info!("watch window passed");
        Ok(())
    }
}

/// An artifact ready to upload: a local file whose sha256 matched.
#[derive(Debug)]
pub struct LocalArtifact {
    pub path: PathBuf,
    pub size: u64,
    /// Holds a downloaded artifact's temporary file until the deployment is over.
    _download: Option<tempfile::TempPath>,
}

/// The largest release artifact the provider downloads or reads: far above a release tarball
/// of the API and worker, and a stop for a URL that streams without end.
pub const ARTIFACT_MAX_SIZE: u64 = 2 << 30;
/// How long an artifact download may go without receiving anything (headers or data).
const ARTIFACT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes `source` (a local path, or an `http(s)://` URL downloaded to a temporary file) a local
/// file and checks its sha256 against `expected` before any host sees it. A download streams to
/// disk and stops at its `Content-Length` or [`ARTIFACT_MAX_SIZE`], whichever is smaller (a
/// local file stops at the latter too), and gives up after [`ARTIFACT_STALL_TIMEOUT`] without
/// data.
pub async fn fetch_artifact(
    http: &reqwest::Client,
    source: &str,
    expected: &str,
) -> Result<LocalArtifact, ArtifactError> {
    fetch_artifact_limited(http, source, expected, ARTIFACT_MAX_SIZE).await
}

async fn fetch_artifact_limited(
    http: &reqwest::Client,
    source: &str,
    expected: &str,
    max_size: u64,
) -> Result<LocalArtifact, ArtifactError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    use super::http::describe;
    use super::stream::HashingSink;
    let too_large = |what| ArtifactError::TooLarge {
        artifact: source.to_string(),
        what,
        limit: max_size,
    };
    let stalled = || ArtifactError::Stalled {
        artifact: source.to_string(),
        after: ARTIFACT_STALL_TIMEOUT,
    };
    let download = |e: reqwest::Error, total| ArtifactError::Download {
        artifact: source.to_string(),
        detail: describe(source, total, &e),
    };
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |error| ArtifactError::Io { path, error }
    };
    let expected = expected.trim().to_ascii_lowercase();
    let (path, download) = if source.starts_with("http://") || source.starts_with("https://") {
        let tmp = tempfile::Builder::new()
            .prefix("artifortress-artifact-")
            .suffix(".tar.gz")
            .tempfile()
            .map_err(ArtifactError::TempFile)?
            .into_temp_path();
        let total = Duration::from_secs(3600);
        let mut resp = timeout(
            ARTIFACT_STALL_TIMEOUT,
            http.get(source).timeout(total).send(),
        )
        .await
        .map_err(|_| stalled())?
        .map_err(|e| download(e, total))?;
        if !resp.status().is_success() {
            return Err(ArtifactError::Status {
                artifact: source.to_string(),
                status: resp.status(),
            });
        }
        if resp.content_length().is_some_and(|n| n > max_size) {
            return Err(too_large(Oversize::Announced));
        }
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        let mut written = 0u64;
        while let Some(chunk) = timeout(ARTIFACT_STALL_TIMEOUT, resp.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| download(e, total))?
        {
            written += chunk.len() as u64;
            if written > max_size {
                return Err(too_large(Oversize::Download));
            }
            f.write_all(&chunk).await.map_err(io(&tmp))?;
        }
        f.flush().await.map_err(io(&tmp))?;
        (tmp.to_path_buf(), Some(tmp))
    } else {
        (
            PathBuf::from(source.strip_prefix("file://").unwrap_or(source)),
            None,
        )
    };
    let mut f = tokio::fs::File::open(&path).await.map_err(io(&path))?;
    let mut read = HashingSink::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(io(&path))?;
        if n == 0 {
            break;
        }
        if read.update(&buf[..n]) > max_size {
            return Err(too_large(Oversize::File));
        }
    }
    let (actual, size) = read.finish();
    if actual != expected {
        return Err(ArtifactError::Checksum {
            artifact: source.to_string(),
            actual,
            expected,
        });
    }
    Ok(LocalArtifact {
        path,
        size,
        _download: download,
    })
}

#[cfg(test)]
mod artifact_tests {
    use super::*;
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `header` then `body` (repeated forever when `endless`) to every connection.
    async fn server(header: String, body: Vec<u8>, endless: bool) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (header, body) = (header.clone(), body.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    s.write_all(header.as_bytes()).await?;
                    loop {
                        s.write_all(&body).await?;
                        if !endless {
                            return Ok::<_, std::io::Error>(());
                        }
                    }
                });
            }
        });
        format!("http://{addr}/artifact.tar.gz")
    }

    #[tokio::test]
    async fn downloads_stop_at_the_size_limit_and_keep_the_checksum() {
        let http = reqwest::Client::new();
        let limit = 1 << 20;
        let block = vec![b'a'; 64 << 10];

        let url = server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
            block.clone(),
            true,
        )
        .await;
        let e = fetch_artifact_limited(&http, &url, "00", limit)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{url}: the download is larger than 1 MiB, the limit for release artifacts; stopped there"
            )
        );

        let url = server(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 << 20),
            block.clone(),
            true,
        )
        .await;
        let e = fetch_artifact_limited(&http, &url, "00", limit)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the server announces a file larger than 1 MiB"),
            "{e}"
        );

        let small = b"a release".to_vec();
        let sha = hex::encode(sha2::Sha256::digest(&small));
        let url = server(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", small.len()),
            small.clone(),
            false,
        )
        .await;
        let a = fetch_artifact_limited(&http, &url, &sha, limit)
            .await
            .unwrap();
        assert_eq!(a.size, small.len() as u64);
        assert_eq!(std::fs::read(&a.path).unwrap(), small);
        let e = fetch_artifact_limited(&http, &url, &"0".repeat(64), limit)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("sha256 is {sha}")), "{e}");

        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![0u8; (limit + 1) as usize]).unwrap();
        let e = fetch_artifact_limited(&http, file.path().to_str().unwrap(), "00", limit)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the file is larger than 1 MiB"), "{e}");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/a.tar.gz");
        let e = fetch_artifact(&http, &url, "00")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("GET {url}: cannot connect to 127.0.0.1:{port}: connection refused")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_substitute_known_variables_quoted() {
        let cmd = render(
            "{{release_dir}}/bin/artifortress restart {{role}} # {{host}} {{nope}}",
            &[
                ("release_dir", "/opt/a b/releases/v1"),
                ("role", "api"),
                ("host", "api-1"),
            ],
        );
        assert_eq!(
            cmd,
            "'/opt/a b/releases/v1'/bin/artifortress restart api # api-1 {{nope}}"
        );
        assert!(check_template("x {{ version }} {{address}}").is_ok());
        assert!(
            check_template("x {{nope}}")
                .unwrap_err()
                .to_string()
                .contains("{{nope}}")
        );
        assert!(check_template("x {{version").is_err());
    }

    #[test]
    fn commands_are_never_built_from_an_empty_version() {
        let d = Deployment {
            deploy_dir: "/opt/af".into(),
            hosts: Vec::new(),
            commands: Commands::default(),
            strategy: Strategy::default(),
            lock_owner: "test".into(),
            cancel: CancellationToken::new(),
        };
        let host = Host {
            name: "api-2".into(),
            address: "10.0.0.2".into(),
            transport: Arc::new(hosts::LocalTransport::new(hosts::Timeouts::default())),
            roles: vec![Role::Api],
            api: None,
        };
        let stop = "{{release_dir}}/bin/artifortress stop {{role}}";
        assert_eq!(
            d.command(stop, &host, "v1", Role::Api).unwrap(),
            "/opt/af/releases/v1/bin/artifortress stop api"
        );
        let e = d
            .command(stop, &host, "", Role::Api)
            .unwrap_err()
            .to_string();
        assert!(e.contains("{{release_dir}}") && e.contains("api-2"), "{e}");
        let e = d
            .command("systemctl stop af@{{ version }}", &host, "", Role::Api)
            .unwrap_err()
            .to_string();
        assert!(e.contains("{{version}}"), "{e}");
        // A template that does not use the version runs without one.
        assert_eq!(
            d.command("systemctl stop artifortress-{{role}}", &host, "", Role::Api)
                .unwrap(),
            "systemctl stop artifortress-api"
        );
        assert!(template_uses("a {{ version }} b", "version"));
        assert!(!template_uses("a {{versions}} {{version", "version"));
    }

    #[test]
    fn env_files_live_in_shared() {
        assert_eq!(
            env_path("/opt/af/", Role::Worker),
            "/opt/af/shared/worker.env"
        );
    }
}

/// The texts users read in diagnostics and in `last_failure`: pinned per variant.
#[cfg(test)]
mod error_text_tests {
    use super::*;

    #[test]
    fn phases_read_as_the_state_names_them() {
        let names: Vec<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            [
                "connect",
                "lock",
                "inspect",
                "upload",
                "env",
                "switch",
                "restart",
                "ready",
                "watch",
                "rehearse",
                "interrupted",
                "rollback",
            ]
        );
        for p in Phase::ALL {
            assert_eq!(p.as_str(), p.to_string());
        }
        assert_eq!(Role::Worker.to_string(), "worker");
    }

    #[test]
    fn release_errors_read_as_before() {
        let host = HostError::Connect {
            host: "api-1".into(),
            message: "connection refused".into(),
        };
        let cases: Vec<(ReleaseError, &str)> = vec![
            (
                ReleaseError::Host(host.clone()),
                "api-1: cannot connect: connection refused",
            ),
            (
                ReleaseError::CommandFailed {
                    command: "systemctl restart af-api".into(),
                    status: "exit status 3".into(),
                    stderr: "unit not found".into(),
                },
                "`systemctl restart af-api` failed (exit status 3): unit not found",
            ),
            (
                ReleaseError::CommandWithoutValue {
                    template: "{{release_dir}}/bin/af stop".into(),
                    variable: "release_dir".into(),
                    host: "api-2".into(),
                },
                "the command `{{release_dir}}/bin/af stop` uses {{release_dir}}, which has no value on api-2: no release is known there, so the command is not run",
            ),
            (
                ReleaseError::UnclosedTemplate,
                "has a `{{` without a closing `}}`",
            ),
            (
                ReleaseError::UnknownTemplateVariable {
                    name: "nope".into(),
                },
                "uses {{nope}}; the variables are {{release_dir}}, {{version}}, {{host}}, {{role}}, {{address}}, {{deploy_dir}}",
            ),
            (
                ReleaseError::NoRestartCommand { role: Role::Worker },
                "no restart command for role worker",
            ),
            (
                ReleaseError::NoApiUrl,
                "the host has the api role but no api_url",
            ),
            (
                ReleaseError::NoWorkerStatusCommand,
                "no worker_status command",
            ),
            (
                ReleaseError::ApiNotReady {
                    within: Duration::from_secs(90),
                    url: "http://10.0.0.1:8080".into(),
                    live: true,
                    last: "status degraded (HTTP 200): db not_ready".into(),
                },
                "not ready within 1m30s: http://10.0.0.1:8080 (live); last: status degraded (HTTP 200): db not_ready",
            ),
            (
                ReleaseError::ApiNotReady {
                    within: Duration::from_secs(5),
                    url: "http://10.0.0.1:8080".into(),
                    live: false,
                    last: "no answer yet".into(),
                },
                "not ready within 5s: http://10.0.0.1:8080 (not live); last: no answer yet",
            ),
            (
                ReleaseError::WorkerNotRunning {
                    within: Duration::from_secs(300),
                    last: "`af status` failed (exit status 1): down".into(),
                },
                "worker not running within 5m0s; last: `af status` failed (exit status 1): down",
            ),
            (
                ReleaseError::WaitInterrupted {
                    last: "no answer yet".into(),
                },
                "interrupted while waiting; last: no answer yet",
            ),
            (
                ReleaseError::DeploymentInterrupted,
                "the deployment was interrupted",
            ),
            (
                ReleaseError::WatchInterrupted,
                "interrupted during the watch window",
            ),
            (
                ReleaseError::NotReadyDuringWatch {
                    limit: Duration::from_secs(30),
                    last: "status not_ready (HTTP 503)".into(),
                },
                "not ready for longer than 30s during the watch window: status not_ready (HTTP 503)",
            ),
            (
                ReleaseError::BacklogRegressed {
                    regressions: vec!["a grew".into(), "b grew".into()],
                },
                "backlog regressed past critical thresholds during the watch window: a grew; b grew",
            ),
            (
                ReleaseError::AfterRollback {
                    version: "v1".into(),
                    error: Box::new(ReleaseError::NoApiUrl),
                },
                "v1 after rollback: the host has the api role but no api_url",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text, "{e:?}");
        }
        assert_eq!(
            ReleaseError::from(host.clone()).to_string(),
            host.to_string()
        );
    }

    #[test]
    fn artifact_errors_read_as_before() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cases: Vec<(ArtifactError, String)> = vec![
            (
                ArtifactError::TempFile(io()),
                format!("cannot create a temporary file: {}", io()),
            ),
            (
                ArtifactError::Download {
                    artifact: "http://h/a.tar.gz".into(),
                    detail: "cannot connect to h:80: connection refused".into(),
                },
                "GET http://h/a.tar.gz: cannot connect to h:80: connection refused".into(),
            ),
            (
                ArtifactError::Status {
                    artifact: "http://h/a.tar.gz".into(),
                    status: reqwest::StatusCode::NOT_FOUND,
                },
                "GET http://h/a.tar.gz: HTTP 404 Not Found".into(),
            ),
            (
                ArtifactError::Stalled {
                    artifact: "http://h/a.tar.gz".into(),
                    after: ARTIFACT_STALL_TIMEOUT,
                },
                "GET http://h/a.tar.gz: nothing received for 1m0s; gave up".into(),
            ),
            (
                ArtifactError::TooLarge {
                    artifact: "http://h/a.tar.gz".into(),
                    what: Oversize::Announced,
                    limit: ARTIFACT_MAX_SIZE,
                },
                "http://h/a.tar.gz: the server announces a file larger than 2 GiB, the limit for release artifacts; stopped there".into(),
            ),
            (
                ArtifactError::TooLarge {
                    artifact: "http://h/a.tar.gz".into(),
                    what: Oversize::Download,
                    limit: 1 << 20,
                },
                "http://h/a.tar.gz: the download is larger than 1 MiB, the limit for release artifacts; stopped there".into(),
            ),
            (
                ArtifactError::TooLarge {
                    artifact: "/tmp/a.tar.gz".into(),
                    what: Oversize::File,
                    limit: 1 << 20,
                },
                "/tmp/a.tar.gz: the file is larger than 1 MiB, the limit for release artifacts; stopped there".into(),
            ),
            (
                ArtifactError::Io {
                    path: "/tmp/a.tar.gz".into(),
                    error: io(),
                },
                format!("/tmp/a.tar.gz: {}", io()),
            ),
            (
                ArtifactError::Checksum {
                    artifact: "/tmp/a.tar.gz".into(),
                    actual: "ab".into(),
                    expected: "cd".into(),
                },
                "/tmp/a.tar.gz: sha256 is ab, the configuration says cd".into(),
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text, "{e:?}");
        }
    }
}
