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
//! `watch` (watch window, rehearsal), `rollback` (a rollback on demand), `commands` (templates), `artifact` (the verified local
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
mod open_close;
mod readiness;
mod rollback;
mod watch;

pub use artifact::{ARTIFACT_MAX_SIZE, LocalArtifact, fetch_artifact};

pub use commands::{
    Commands, ENV_TEMPLATE_VARIABLES, TEMPLATE_VARIABLES, check_env_template, check_template,
    host_env, render, template_uses,
};
pub use errors::{ArtifactError, Oversize, Phase, ReleaseError};
pub use readiness::{describe_readiness, wait_api_ready};
pub use rollback::{RollbackOutcome, previous_release, unsafe_rollbacks};

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

/// A local `.tar.gz`, already checked against its sha256.
#[derive(Clone, Debug)]
pub struct Archive {
    pub path: PathBuf,
    /// Lower-case hex.
    pub sha256: String,
}

/// The archives a release is made of.
#[derive(Clone, Debug)]
pub enum Artifacts {
    /// One archive for every role, unpacked as the release directory.
    Single(Archive),
    /// One archive per role, unpacked as `releases/<version>/<role>/` (the service's two
    /// `dotnet publish` outputs, API and worker: its docs/29-deployment-howto-production.md
    /// lines 26-29, deploy/kind/Dockerfile.api and Dockerfile.worker); a host receives the
    /// archives of its roles only.
    PerRole(BTreeMap<Role, Archive>),
}

impl Artifacts {
    /// What a host with `roles` records as its artifact (`host_artifact_sha256`, the revisions
    /// log): the single archive's sha256, or [`artifact_set_sha256`] of its roles' archives.
    pub fn host_sha256(&self, roles: &[Role]) -> String {
        match self {
            Artifacts::Single(a) => a.sha256.clone(),
            Artifacts::PerRole(m) => artifact_set_sha256(
                &roles
                    .iter()
                    .filter_map(|r| Some((*r, m.get(r)?.sha256.clone())))
                    .collect(),
            ),
        }
    }

    /// Whether a host with `roles` already has this release's archives (`s` runs `version`).
    fn installed_on(&self, s: &HostState, roles: &[Role]) -> bool {
        match self {
            Artifacts::Single(a) => s.artifact_sha256.as_deref() == Some(a.sha256.as_str()),
            Artifacts::PerRole(m) => {
                s.artifact_sha256.is_none()
                    && roles.iter().all(|r| {
                        m.get(r).map(|a| a.sha256.as_str())
                            == s.role_artifact_sha256.get(r).map(String::as_str)
                    })
            }
        }
    }

    /// The host as it is after this release was installed on it (when it could not be read).
    fn record_on(&self, s: &mut HostState, roles: &[Role]) {
        match self {
            Artifacts::Single(a) => {
                s.artifact_sha256 = Some(a.sha256.clone());
                s.role_artifact_sha256.clear();
            }
            Artifacts::PerRole(m) => {
                s.artifact_sha256 = None;
                s.role_artifact_sha256 = roles
                    .iter()
                    .filter_map(|r| Some((*r, m.get(r)?.sha256.clone())))
                    .collect();
            }
        }
    }
}

/// One value for the archives a host runs, one per role: the sha256 of the lines
/// `<role> <sha256>\n`, `api` first. It changes whenever any of them changes.
pub fn artifact_set_sha256(parts: &BTreeMap<Role, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (role, sha) in parts {
        h.update(format!("{role} {sha}\n").as_bytes());
    }
    hex::encode(h.finalize())
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct Target {
    pub version: String,
    pub artifacts: Artifacts,
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
    /// With a token: after each API host is ready on the new release, the service's smoke
    /// flow (`clients::smoke`, full happy path) runs against it with this admin token; a
    /// failure counts as a failed readiness wait. Never run on the way back (a rollback).
    pub smoke_token: Option<SmokeToken>,
}

/// The admin token the smoke flow runs with; its `Debug` never shows it.
#[derive(Clone)]
pub struct SmokeToken(pub String);

impl std::fmt::Debug for SmokeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmokeToken(..)")
    }
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

/// Prefix of a role's env fingerprint when its env file differs per host (values templated
/// with `{{host}}`, `{{address}}`, ...; see [`combine_fingerprints`]).
pub const PER_HOST: &str = "per-host:";

/// One fingerprint for a role's env files from each host's (by host name): when every host has
/// the same file, that file's fingerprint (what a file without templates always gives);
/// otherwise [`PER_HOST`] and `host=fingerprint` for each host, `,`-separated, so that drift
/// names the host whose file changed. Keyed fingerprints confirm no guessed secret. `None` for
/// no hosts.
pub fn combine_fingerprints(per_host: &BTreeMap<String, String>) -> Option<String> {
    let first = per_host.values().next()?;
    if per_host.values().all(|f| f == first) {
        return Some(first.clone());
    }
    let entries: Vec<String> = per_host.iter().map(|(h, f)| format!("{h}={f}")).collect();
    Some(format!("{PER_HOST}{}", entries.join(",")))
}

/// Whether a [`PER_HOST`] value holds `fingerprint` for `host`.
pub fn per_host_has(combined: &str, host: &str, fingerprint: &str) -> bool {
    let Some(body) = combined.strip_prefix(PER_HOST) else {
        return false;
    };
    let entry = format!("{host}={fingerprint}");
    body == entry
        || body.starts_with(&format!("{entry},"))
        || body.ends_with(&format!(",{entry}"))
        || body.contains(&format!(",{entry},"))
}

/// The fingerprint of `role`'s env as written to `hosts` (name, address; those with the role):
/// each host's file (templates expanded, see [`host_env`]) keyed with `key`, or its plain
/// sha256 without one, then [`combine_fingerprints`]. With no host, the file as configured.
pub fn role_env_fingerprint(
    key: Option<&EnvKey>,
    deploy_dir: &str,
    hosts: &[(&str, &str)],
    role: Role,
    env: &BTreeMap<String, String>,
) -> Result<String, HostError> {
    let fp = |e: &BTreeMap<String, String>| match key {
        Some(k) => hosts::env_fingerprint(k, e),
        None => hosts::env_sha256(e),
    };
    let mut per_host = BTreeMap::new();
    for (name, address) in hosts {
        let e = host_env(env, deploy_dir, name, address, role);
        per_host.insert(name.to_string(), fp(&e)?);
    }
    match combine_fingerprints(&per_host) {
        Some(f) => Ok(f),
        None => fp(env),
    }
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
    /// The sha256 of the single archive the live release came from (`None` for a release
    /// installed per role).
    pub artifact_sha256: Option<String>,
    /// Per role directory of a live release installed per role, the sha256 of its archive.
    pub role_artifact_sha256: BTreeMap<Role, String>,
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

    /// The sha256 of the archive `role`'s files came from: the single archive of the release,
    /// else the role's own (`None`: no release, or none recorded).
    pub fn role_sha256(&self, role: Role) -> Option<&str> {
        self.artifact_sha256
            .as_deref()
            .or(self.role_artifact_sha256.get(&role).map(String::as_str))
    }

    /// What `host_artifact_sha256` records for a host with `roles`: the single archive's
    /// sha256, else [`artifact_set_sha256`] of the roles' archives (`None` when one is missing).
    pub fn host_sha256(&self, roles: &[Role]) -> Option<String> {
        if let Some(s) = &self.artifact_sha256 {
            return Some(s.clone());
        }
        let parts: BTreeMap<Role, String> = roles
            .iter()
            .map(|r| Some((*r, self.role_artifact_sha256.get(r)?.clone())))
            .collect::<Option<_>>()?;
        (!parts.is_empty()).then(|| artifact_set_sha256(&parts))
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
    let files = env_files(deploy_dir, roles);
    let found = hosts::inspect(t, deploy_dir, &files).await?;
    Ok(host_state(found, roles, &files))
}

/// The env files [`observe`] inspects for `roles`.
fn env_files(deploy_dir: &str, roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| env_path(deploy_dir, *r)).collect()
}

/// A host's state from its inspection (`files`: [`env_files`] of `roles`).
fn host_state(found: hosts::Inspection, roles: &[Role], files: &[String]) -> HostState {
    HostState {
        version: found.version,
        artifact_sha256: found.artifact_sha256,
        role_artifact_sha256: found
            .role_artifact_sha256
            .into_iter()
            .filter_map(|(dir, sha)| Some((Role::parse(&dir)?, sha)))
            .collect(),
        env_key: found.env_key,
        env: roles
            .iter()
            .zip(files)
            .map(|(r, f)| (*r, found.files.get(f).cloned().flatten()))
            .collect(),
    }
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
    /// The keyed fingerprint of each managed role's env files as deployed (see
    /// [`role_env_fingerprint`]); empty when the run stopped before choosing the key.
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
    fn per_role_archives_are_matched_and_recorded_per_role() {
        let archive = |c: char| Archive {
            path: PathBuf::from(format!("/tmp/{c}.tar.gz")),
            sha256: c.to_string().repeat(64),
        };
        let per_role = Artifacts::PerRole(BTreeMap::from([
            (Role::Api, archive('a')),
            (Role::Worker, archive('b')),
        ]));
        let api_only = [Role::Api];
        let both = [Role::Api, Role::Worker];
        // The set digest is the sha256 of `<role> <sha256>\n` lines, api first.
        assert_eq!(
            per_role.host_sha256(&both),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                format!("api {}\nworker {}\n", "a".repeat(64), "b".repeat(64)).as_bytes()
            ))
        );
        assert_ne!(per_role.host_sha256(&api_only), per_role.host_sha256(&both));
        let mut s = HostState {
            version: Some("v1".into()),
            ..Default::default()
        };
        per_role.record_on(&mut s, &api_only);
        assert_eq!(
            s.role_artifact_sha256,
            BTreeMap::from([(Role::Api, "a".repeat(64))])
        );
        assert!(per_role.installed_on(&s, &api_only));
        assert!(!per_role.installed_on(&s, &both), "the worker's is missing");
        assert_eq!(
            s.host_sha256(&api_only),
            Some(per_role.host_sha256(&api_only))
        );
        assert_eq!(s.host_sha256(&both), None);
        assert_eq!(s.role_sha256(Role::Api), Some("a".repeat(64).as_str()));
        // A release from a single archive serves every role; it is not the per-role release.
        let single = Artifacts::Single(archive('c'));
        single.record_on(&mut s, &both);
        assert!(single.installed_on(&s, &both));
        assert!(!per_role.installed_on(&s, &api_only));
        assert_eq!(s.role_sha256(Role::Worker), Some("c".repeat(64).as_str()));
        assert_eq!(s.host_sha256(&both), Some("c".repeat(64)));
    }

    #[test]
    fn per_host_env_files_combine_into_one_fingerprint() {
        let key = EnvKey::parse(&"ab".repeat(32)).unwrap();
        let env = BTreeMap::from([("URLS".to_string(), "http://{{address}}:1".to_string())]);
        let plain = BTreeMap::from([("URLS".to_string(), "http://0.0.0.0:1".to_string())]);
        let two = [("a", "10.0.0.1"), ("b", "10.0.0.2")];
        // The same file everywhere: that file's fingerprint, as before templates.
        let same = role_env_fingerprint(Some(&key), "/d", &two, Role::Api, &plain).unwrap();
        assert_eq!(same, hosts::env_fingerprint(&key, &plain).unwrap());
        // Files that differ: one per-host value that changes with any host's file.
        let per = role_env_fingerprint(Some(&key), "/d", &two, Role::Api, &env).unwrap();
        assert!(per.starts_with(PER_HOST), "{per}");
        let moved = [("a", "10.0.0.1"), ("b", "10.0.0.3")];
        assert_ne!(
            per,
            role_env_fingerprint(Some(&key), "/d", &moved, Role::Api, &env).unwrap()
        );
        // What the hosts compute, combined, is the same value.
        let on_hosts: BTreeMap<String, String> = two
            .iter()
            .map(|(n, a)| {
                let e = host_env(&env, "/d", n, a, Role::Api);
                (n.to_string(), hosts::env_fingerprint(&key, &e).unwrap())
            })
            .collect();
        assert_eq!(combine_fingerprints(&on_hosts), Some(per.clone()));
        assert!(per_host_has(&per, "b", &on_hosts["b"]));
        assert!(!per_host_has(&per, "b", &on_hosts["a"]));
        assert!(!per_host_has(&per, "c", &on_hosts["b"]));
        assert_eq!(combine_fingerprints(&BTreeMap::new()), None);
    }

    #[test]
    fn a_readiness_probe_outwaits_the_services_own_storage_check() {
        // The service answers /health/ready only after its object-storage check, which it
        // gives 3 s (src/Artifortress.Api/Program.fs:2383, ObjectStorage.fs:335-341 at f628e74);
        // PostgreSQL is probed first with no limit of its own. One probe waits longer, with
        // margin, so a slow bucket is not taken for a dead API.
        assert!(PROBE_TIMEOUT >= api::MIN_PROBE_TIMEOUT + Duration::from_secs(2));
    }

    #[test]
    fn the_smoke_token_never_shows_in_debug_output() {
        let t = SmokeToken("0123abcd".repeat(8));
        assert_eq!(format!("{t:?}"), "SmokeToken(..)");
        assert!(!format!("{:?}", Some(t)).contains("0123abcd"));
    }

    #[test]
    fn env_files_live_in_shared() {
        assert_eq!(
            env_path("/opt/af/", Role::Worker),
            "/opt/af/shared/worker.env"
        );
    }
}
