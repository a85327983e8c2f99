//! `resource "artifortress_release"`: the API and the worker deployed to hosts (D1/D2/D4/D5),
//! joining the release engine (`clients::release`) to Terraform.
//!
//! State is always what is live: after a failed rollout that was rolled back, `version` is
//! the version the hosts run again (so the next plan proposes the new one again), and
//! `last_failure` says what happened. Refresh reads every host's `current`, artifact checksum
//! and env-file checksums; a host changed by hand makes `version`, `artifact.sha256` or
//! `env_sha256` differ from the configuration, which the plan shows as a change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::join_all;

use crate::clients::backup;
use crate::clients::gate;
use crate::clients::hosts::{self, EnvKey, LocalTransport, Timeouts, Transport};
use crate::clients::migrations::Migrator;
use crate::clients::ops::Overrides;
use crate::clients::pg::redact_url;
use crate::clients::release::{
    self, Commands, Deployment, Failure, Host, HostState, OpsWatch, Outcome, Role, Stopped,
    Strategy, Target, Watch,
};
use crate::duration;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, ApplyRequest, ApplyResponse, DeleteRequest, Import, ModifyPlanRequest,
    ModifyPlanResponse, ReadRequest, ReadResponse, Resource,
};
use crate::protocol::json;
use crate::protocol::schema::{Attribute, Constraint, Nesting, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Setting, Settings};
use crate::shared::timestamp;

pub const TYPE_NAME: &str = "artifortress_release";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `watch.duration` when not given.
const DEFAULT_WATCH: Duration = Duration::from_secs(600);
/// A production release needs a backup younger than this.
const MAX_BACKUP_AGE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_BACKUP_PREFIX: &str = "backups/";
/// Prefix of a `version` or checksum that refresh found different on some host.
const DRIFT: &str = "drifted: ";
/// Prefix of an `env_sha256` value carried over from schema version 0, which kept the plain
/// sha256 of the env file. The first refresh replaces it with the keyed fingerprint (writing the
/// deployment's key to the hosts), so it never survives an apply.
const UNKEYED: &str = "unkeyed:";

pub struct Release;

const COMPUTED: [&str; 10] = [
    "id",
    "deployed_version",
    "previous_version",
    "host_versions",
    "host_artifact_sha256",
    "env_sha256",
    "revision",
    "deployed_at",
    "last_failure",
    "rehearsed_at",
];

fn failure_type() -> Type {
    Type::object([
        ("version", Type::String),
        ("host", Type::String),
        ("phase", Type::String),
        ("detail", Type::String),
        ("at", Type::String),
    ])
}

fn env_attr(role: &str) -> &'static str {
    if role == "api" {
        "api_env_wo"
    } else {
        "worker_env_wo"
    }
}

/// One host as configured.
#[derive(Clone, Debug, PartialEq)]
struct HostConfig {
    name: String,
    address: String,
    port: u16,
    roles: Vec<Role>,
    api_url: Option<String>,
}

fn host_configs(hosts: &Value) -> Vec<HostConfig> {
    hosts
        .as_map()
        .map(|m| {
            m.iter()
                .map(|(name, h)| HostConfig {
                    name: name.clone(),
                    address: h.attr("address").as_str().unwrap_or_default().to_string(),
                    port: h
                        .attr("port")
                        .as_i64()
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or(22),
                    roles: h
                        .attr("roles")
                        .as_elements()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|r| r.as_str().and_then(Role::parse))
                        .collect(),
                    api_url: h.attr("api_url").as_str().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The id (and import ID): `[local:]<deploy_dir>,<host>=<address>[:<port>],...`.
fn make_id(transport: &str, deploy_dir: &str, hosts: &[HostConfig]) -> String {
    let mut id = String::new();
    if transport == "local" {
        id.push_str("local:");
    }
    id.push_str(deploy_dir);
    for h in hosts {
        id.push_str(&format!(",{}={}", h.name, h.address));
        if h.port != 22 {
            id.push_str(&format!(":{}", h.port));
        }
    }
    id
}

/// Parses an import ID; roles may be given as `/api+worker` after a host, else they are read
/// from the env files on the host.
/// A parsed import ID: each host with whether its roles were given.
struct ImportId {
    transport: String,
    deploy_dir: String,
    hosts: Vec<(HostConfig, bool)>,
}

fn parse_id(id: &str) -> Result<ImportId, String> {
    let (transport, rest) = match id.strip_prefix("local:") {
        Some(r) => ("local", r),
        None => ("ssh", id),
    };
    let mut parts = rest.split(',');
    let dir = parts.next().unwrap_or_default().trim();
    if !dir.starts_with('/') {
        return Err(format!(
            "{id:?}: expected [local:]<deploy_dir>,<host>=<address>[:<port>][/<role>+<role>],... with an absolute deploy_dir"
        ));
    }
    let mut hosts = Vec::new();
    for p in parts {
        let (name, addr) = p
            .split_once('=')
            .ok_or_else(|| format!("{p:?}: expected <host>=<address>[:<port>]"))?;
        let (addr, roles) = match addr.split_once('/') {
            Some((a, r)) => (a, Some(r)),
            None => (addr, None),
        };
        let (address, port) = match addr.rsplit_once(':') {
            Some((a, port)) if !a.contains(':') || a.starts_with('[') => (
                a.trim_matches(['[', ']']).to_string(),
                port.parse::<u16>()
                    .map_err(|e| format!("{p:?}: port: {e}"))?,
            ),
            _ => (addr.to_string(), 22),
        };
        let explicit = roles.is_some();
        let roles = match roles {
            Some(r) => r
                .split('+')
                .map(|r| Role::parse(r).ok_or_else(|| format!("{p:?}: unknown role {r:?}")))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        hosts.push((
            HostConfig {
                name: name.trim().to_string(),
                address,
                port,
                roles,
                api_url: None,
            },
            explicit,
        ));
    }
    if hosts.is_empty() {
        return Err(format!("{id:?}: no hosts after the deploy_dir"));
    }
    Ok(ImportId {
        transport: transport.to_string(),
        deploy_dir: dir.to_string(),
        hosts,
    })
}

/// The env per role as configured (`None`: not known yet).
fn configured_env(config: &Value) -> Option<BTreeMap<Role, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for role in Role::ALL {
        match config.attr(env_attr(role.as_str())) {
            Value::Null => {}
            v if !v.is_wholly_known() => return None,
            v => {
                out.insert(role, v.to_string_map());
            }
        }
    }
    Some(out)
}

/// Per role, what `env_sha256` holds for `env`: the keyed fingerprint with `key`; with no key,
/// the plain sha256 (only ever compared with an `unkeyed:` value from an old state).
fn env_fingerprints(
    env: &BTreeMap<Role, BTreeMap<String, String>>,
    key: Option<&EnvKey>,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut m = BTreeMap::new();
    for (role, e) in env {
        let sha = match key {
            Some(k) => hosts::env_fingerprint(k, e),
            None => hosts::env_sha256(e).map(|s| format!("{UNKEYED}{s}")),
        }
        .map_err(|err| {
            Diagnostic::error("Invalid env", err.to_string()).at_attr(env_attr(role.as_str()))
        })?;
        m.insert(role.as_str().to_string(), sha);
    }
    Ok(m)
}

fn string_map(m: BTreeMap<String, String>) -> Value {
    Value::Map(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// Where the deployment's env-fingerprint keys are cached for this provider process: refresh
/// reads them from the hosts, and the plan of the same run keys the configured env with them.
fn key_cache_id(transport: &str, deploy_dir: &str, h: &HostConfig) -> String {
    format!(
        "{transport}|{}|{}:{}",
        deploy_dir.trim_end_matches('/'),
        h.address,
        h.port
    )
}

/// The key `planned`'s env would be keyed with at apply: the first host (in name order) that
/// has one, as [`Deployment::deploy`] chooses it. `Ok(None)`: no host has a key (a first
/// deploy, wiped hosts, or hosts deployed before keyed fingerprints). An error when a host
/// cannot be read, since the apply could then choose another key than the plan.
async fn planned_env_key(
    settings: &Settings,
    transport: &str,
    deploy_dir: &str,
    configs: &[HostConfig],
) -> Result<Option<EnvKey>, Diagnostic> {
    for h in configs {
        let id = key_cache_id(transport, deploy_dir, h);
        let key = match settings.env_key(&id) {
            Some(k) => k,
            None => {
                let t = transports(settings, transport, std::slice::from_ref(h))
                    .await
                    .pop()
                    .expect("one transport per host");
                let found = match t {
                    Ok(t) => hosts::inspect(&*t, deploy_dir, &[])
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match found {
                    Ok(i) => {
                        settings.cache_env_key(id, i.env_key.clone());
                        i.env_key
                    }
                    Err(e) => {
                        return Err(Diagnostic::error(
                            format!("Cannot read host {}", h.name),
                            format!("Planning {TYPE_NAME} reads the deployment's env-fingerprint key from the hosts ({}): {e}", hosts::ENV_KEY_FILE),
                        )
                        .at(host_path(&h.name)));
                    }
                }
            }
        };
        if key.is_some() {
            return Ok(key);
        }
    }
    Ok(None)
}

fn strategy(config: &Value) -> Strategy {
    let s = config.attr("strategy");
    let d = Strategy::default();
    let dur = |name: &str, default: Duration| {
        s.attr(name)
            .as_str()
            .and_then(|v| duration::parse(v).ok())
            .unwrap_or(default)
    };
    let int = |name: &str, default: i64| s.attr(name).as_i64().unwrap_or(default).max(0);
    Strategy {
        max_parallel: int("max_parallel", d.max_parallel as i64).max(1) as usize,
        consecutive_ready: int("consecutive_ready", i64::from(d.consecutive_ready)).max(1) as u32,
        health_timeout: dur("health_timeout", d.health_timeout),
        poll_interval: dur("poll_interval", d.poll_interval),
        atomic: s.attr("atomic").as_bool().unwrap_or(d.atomic),
        keep_releases: int("keep_releases", d.keep_releases as i64).max(1) as usize,
    }
}

fn commands(config: &Value) -> Commands {
    let c = config.attr("commands");
    let mut out = Commands::default();
    for role in Role::ALL {
        if let Some(cmd) = c.attr(&format!("restart_{}", role.as_str())).as_str() {
            out.restart.insert(role, cmd.to_string());
        }
        if let Some(cmd) = c.attr(&format!("stop_{}", role.as_str())).as_str() {
            out.stop.insert(role, cmd.to_string());
        }
    }
    out.worker_status = c.attr("worker_status").as_str().map(str::to_string);
    out
}

/// Whether what is deployed would change: version, artifact, hosts (address, port, roles),
/// env. `None` while something that decides it is unknown.
fn deployment_changes(planned: &Value, prior: &Value, env_sha: &Value) -> bool {
    if prior.is_null() {
        return true;
    }
    let strip = |hosts: &Value| -> Value {
        match hosts.as_map() {
            Some(m) => Value::Map(
                m.iter()
                    .map(|(k, h)| {
                        let mut h = h.clone();
                        h.set_attr("api_url", Value::Null);
                        (k.clone(), h)
                    })
                    .collect(),
            ),
            None => hosts.clone(),
        }
    };
    !(planned.attr("version").same(prior.attr("version"))
        && planned
            .attr("artifact")
            .attr("sha256")
            .same(prior.attr("artifact").attr("sha256"))
        && strip(planned.attr("hosts")).same(&strip(prior.attr("hosts")))
        && planned.attr("deploy_dir").same(prior.attr("deploy_dir"))
        && env_sha.same(prior.attr("env_sha256")))
}

/// The D3 gate's checks; each failure is a diagnostic on `change`.
async fn gate(settings: &Settings, config: &Value, at_apply: bool) -> Diagnostics {
    let mut diags = Diagnostics::new();
    match &settings.environment {
        Setting::Known(e) if e == "production" => {}
        _ => return diags,
    }
    let change = config.attr("change");
    let path = AttributePath::root().child_attr("change");
    if change.is_null() {
        diags.push(
            Diagnostic::error(
                "A production release needs `change`",
                "The provider's environment is \"production\": give `change = { window, rollback_owner, backup_id }` (the D3 gate).",
            )
            .at(path),
        );
        return diags;
    }
    if change.is_unknown() && !at_apply {
        // Checked at apply, once known.
        return diags;
    }
    let now = Utc::now();
    for check in [
        gate::window_check(change.attr("window").as_str(), now),
        gate::owner_check(change.attr("rollback_owner").as_str()),
    ] {
        let attr = if check.name == gate::CheckName::ChangeWindow {
            "window"
        } else {
            "rollback_owner"
        };
        if !check.passed && (at_apply || change.attr(attr).is_known()) {
            diags.push(
                Diagnostic::error(format!("Production gate: {}", check.name), check.detail)
                    .at(path.child_attr(attr)),
            );
        }
    }
    match change.attr("backup_id") {
        Value::Unknown(_) => {}
        Value::String(id) => {
            let prefix = change
                .attr("backup_prefix")
                .as_str()
                .unwrap_or(DEFAULT_BACKUP_PREFIX);
            if let Err(d) = backup_fresh(settings, id, prefix, now).await {
                diags.push(d.at(path.child_attr("backup_id")));
            }
        }
        _ => diags.push(
            Diagnostic::error(
                "Production gate: backup_id",
                "No backup given: take one before the release (`backup_id = artifortress_backup.pre_release.id`).",
            )
            .at(path.child_attr("backup_id")),
        ),
    }
    diags
}

async fn backup_fresh(
    settings: &Settings,
    id: &str,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<(), Diagnostic> {
    let bucket = settings.need_bucket(None, "change")?;
    let s3 = settings.object_store()?;
    let key = format!("{prefix}{id}.manifest.json");
    let m = backup::read_manifest(&s3, &bucket, &key)
        .await
        .map_err(|e| Diagnostic::error("Production gate: backup_id", e.to_string()))?
        .ok_or_else(|| {
            Diagnostic::error(
                "Production gate: backup_id",
                format!("Backup {id:?} does not exist (no manifest s3://{bucket}/{key})."),
            )
        })?;
    // The same age rule as the preflight's backup_age check.
    let check = gate::backup_check(Some(&m), prefix, MAX_BACKUP_AGE, now);
    if !check.passed {
        return Err(Diagnostic::error(
            "Production gate: backup_id",
            format!(
                "Backup {id} (recovery point {}) is too old: a production release needs one younger than {}.",
                m.snapshot_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                duration::format(MAX_BACKUP_AGE)
            ),
        ));
    }
    Ok(())
}

/// Transports for the hosts (SSH sessions connect here); errors per host.
async fn transports(
    settings: &Settings,
    transport: &str,
    hosts: &[HostConfig],
) -> Vec<Result<Arc<dyn Transport>, String>> {
    join_all(hosts.iter().map(|h| async move {
        if transport == "local" {
            let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(Timeouts::default()));
            return Ok(t);
        }
        settings
            .ssh(&h.address, h.port)
            .await
            .map(|t| t as Arc<dyn Transport>)
            .map_err(|e| e.to_string())
    }))
    .await
}

fn insecure_warning(settings: &Settings, transport: &str) -> Option<Diagnostic> {
    (transport == "ssh" && settings.ssh.insecure_ignore_host_key).then(|| {
        Diagnostic::warning(
            "SSH host keys are not verified",
            "`ssh.insecure_ignore_host_key = true`: any host answering at these addresses is trusted with the release and its env files. Use known_hosts for anything but throw-away hosts.",
        )
        .at_attr("hosts")
    })
}

fn host_path(name: &str) -> AttributePath {
    AttributePath::root().child_attr("hosts").child_key(name)
}

fn has_unkeyed(env: &Value) -> bool {
    env.as_map().is_some_and(|m| {
        m.values()
            .any(|v| v.as_str().is_some_and(|s| s.starts_with(UNKEYED)))
    })
}

/// Compares one role's env files on the hosts holding it (`names[i]` is `holders[i]`) with
/// what the state says (`want`: a keyed fingerprint, or an `unkeyed:` plain sha256 from an
/// old state). Returns the value to keep when everything matches (the keyed fingerprint,
/// replacing an `unkeyed:` one) and, per host that differs, `<host>=changed`, `=missing` or
/// `=unkeyed` (a file but no key on the host). Never a checksum: state must not carry one a
/// guess could be tested against.
fn env_drift(
    want: &str,
    role: Role,
    names: &[&String],
    holders: &[&HostState],
    importing: bool,
) -> (Option<String>, Vec<String>) {
    let mut bad = Vec::new();
    let mut keyed = Vec::new();
    for (name, s) in names.iter().zip(holders) {
        let file = s.env.get(&role).cloned().flatten();
        let verdict = match (&file, want.strip_prefix(UNKEYED)) {
            (None, _) if importing => None,
            (None, _) => Some("missing"),
            (Some(f), Some(plain)) => (f.sha256 != plain).then_some("changed"),
            (Some(f), None) => match &f.keyed {
                None => Some("unkeyed"),
                Some(k) => (k != want).then_some("changed"),
            },
        };
        match verdict {
            Some(v) => bad.push(format!("{name}={v}")),
            None => keyed.extend(file.and_then(|f| f.keyed)),
        }
    }
    let value = if want.starts_with(UNKEYED) && bad.is_empty() {
        // Every host has the old file and the deployment's key: its keyed fingerprint.
        keyed
            .first()
            .cloned()
            .filter(|k| keyed.iter().all(|x| x == k))
    } else {
        None
    };
    (value, bad)
}

/// The longest the release may use the provider's admin token: the rollout's worst case
/// (every batch waiting `health_timeout` for each role in turn) and then the watch window,
/// capped by the apply's timeout. With the arithmetic, for the error.
fn token_need(config: &Value, hosts: usize, creating: bool) -> Option<(Duration, String)> {
    let w = config.attr("watch");
    if w.is_null() {
        return None;
    }
    let watch = w
        .attr("duration")
        .as_str()
        .and_then(|v| duration::parse(v).ok())
        .unwrap_or(DEFAULT_WATCH);
    let st = strategy(config);
    let batches = hosts.div_ceil(st.max_parallel.max(1)).max(1) as u32;
    let roles = host_configs(config.attr("hosts"))
        .iter()
        .map(|h| h.roles.len())
        .max()
        .unwrap_or(1)
        .max(1) as u32;
    let rollout = st.health_timeout * batches * roles;
    let op = if creating { "create" } else { "update" };
    let limit = framework::timeout(config, op, DEFAULT_TIMEOUT);
    let f = duration::format;
    let mut why = format!(
        "{batches} batch(es) × {roles} role(s) × strategy.health_timeout {} = {} for the rollout, then watch.duration {}",
        f(st.health_timeout),
        f(rollout),
        f(watch)
    );
    let need = rollout + watch;
    if need > limit {
        why.push_str(&format!(", capped by the {op} timeout {}", f(limit)));
        return Some((limit, why));
    }
    Some((need, why))
}

/// An error when the admin token the watch window reads the ops summary with expires before
/// the release could be done with it (`admin_token_expires_at`).
fn token_lifetime_check(
    settings: &Settings,
    config: &Value,
    hosts: usize,
    creating: bool,
    now: DateTime<Utc>,
) -> Option<Diagnostic> {
    let Setting::Known(expires) = &settings.admin_token_expires_at else {
        return None;
    };
    if !matches!(settings.admin_token, Setting::Known(_)) {
        return None;
    }
    let (need, why) = token_need(config, hosts, creating)?;
    let left = (*expires - now).to_std().unwrap_or_default();
    if left >= need {
        return None;
    }
    let minutes = need.as_secs().div_ceil(60) + 1;
    Some(
        Diagnostic::error(
            "The admin token expires before the release is done with it",
            format!(
                "The provider's admin_token expires at {} (in {}), but the watch window reads the ops summary with it for up to {}: {why}. Mint it with ttl_minutes >= {minutes} (ephemeral \"artifortress_admin_token\"), or shorten the watch window or strategy.health_timeout.",
                expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                duration::format(left),
                duration::format(need),
            ),
        )
        .at_attr("watch"),
    )
}

/// The warning for a host with no release to stop (wiped or rebuilt).
fn nothing_to_stop(host: &str) -> Diagnostic {
    Diagnostic::warning(
        format!("Nothing to stop on {host}"),
        format!("{host} has no release (no `current` in the deploy dir: wiped or rebuilt), so no stop command was run there."),
    )
    .at(host_path(host))
}

/// Hosts of the prior state that the plan no longer has, with their prior settings (empty while
/// the planned hosts are unknown, and on create or destroy).
fn removed_hosts(prior: &Value, planned: &Value) -> BTreeMap<String, Value> {
    match (prior.attr("hosts").as_map(), planned.attr("hosts").as_map()) {
        (Some(before), Some(after)) => before
            .iter()
            .filter(|(name, _)| !after.contains_key(*name))
            .map(|(name, h)| (name.clone(), h.clone()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A plan that takes hosts out of `hosts`: with `on_destroy = "stop"` each of their roles needs
/// its stop command; with `keep` they go on running unmanaged, which the plan says.
fn removed_host_checks(config: &Value, prior: &Value, planned: &Value, diags: &mut Diagnostics) {
    let removed = removed_hosts(prior, planned);
    if removed.is_empty() {
        return;
    }
    let stop = planned.attr("on_destroy").as_str() == Some("stop");
    let cmds = config.attr("commands");
    let versions = prior.attr("host_versions").to_string_map();
    for h in host_configs(&Value::Map(removed)) {
        let name = &h.name;
        let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
        if !stop {
            diags.push(
                Diagnostic::warning(
                    format!("{name} leaves hosts and keeps running"),
                    format!(
                        "With on_destroy = \"keep\", {name} ({}) goes on running {} as {}; Terraform stops managing it. Set on_destroy = \"stop\" to stop hosts taken out of hosts.",
                        h.address,
                        versions
                            .get(name)
                            .map(String::as_str)
                            .filter(|v| !v.is_empty())
                            .unwrap_or("its release"),
                        roles.join(" and "),
                    ),
                )
                .at_attr("hosts"),
            );
            continue;
        }
        for role in roles {
            let stop_cmd = format!("stop_{role}");
            if cmds.is_known() && cmds.attr(&stop_cmd).is_null() {
                diags.push(
                    Diagnostic::error(
                        format!("commands.{stop_cmd} is required"),
                        format!("{name} leaves hosts and has the {role} role: on_destroy = \"stop\" stops it with that command."),
                    )
                    .at(AttributePath::root().child_attr("commands").child_attr(&stop_cmd)),
                );
            }
        }
    }
}

/// Hosts that left `hosts` but could not be stopped stay in the state (with what they ran), so
/// the next plan removes them again.
fn keep_in_state(
    state: &mut Value,
    prior: &Value,
    removed: &BTreeMap<String, Value>,
    kept: &[String],
) {
    if kept.is_empty() {
        return;
    }
    for (attr, from) in [
        ("hosts", removed.clone()),
        (
            "host_versions",
            prior
                .attr("host_versions")
                .as_map()
                .cloned()
                .unwrap_or_default(),
        ),
        (
            "host_artifact_sha256",
            prior
                .attr("host_artifact_sha256")
                .as_map()
                .cloned()
                .unwrap_or_default(),
        ),
    ] {
        let mut m = state.attr(attr).as_map().cloned().unwrap_or_default();
        for name in kept {
            if let Some(v) = from.get(name) {
                m.insert(name.clone(), v.clone());
            }
        }
        state.set_attr(attr, Value::Map(m));
    }
}

fn live_maps(hosts: &BTreeMap<String, HostState>) -> (Value, Value) {
    let per_host = |field: fn(&HostState) -> &Option<String>| {
        Value::Map(
            hosts
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        Value::String(field(s).clone().unwrap_or_default()),
                    )
                })
                .collect(),
        )
    };
    (per_host(|s| &s.version), per_host(|s| &s.artifact_sha256))
}

/// The one value every host has, else `mixed (a=x, b=y)`.
fn common<'a>(values: impl Iterator<Item = (&'a String, Option<&'a str>)>) -> Option<String> {
    let all: Vec<(&String, Option<&str>)> = values.collect();
    let first = all.first()?.1;
    if all.iter().all(|(_, v)| *v == first) {
        first.map(str::to_string)
    } else {
        Some(format!(
            "mixed ({})",
            all.iter()
                .map(|(h, v)| format!("{h}={}", v.unwrap_or("none")))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn failure_value(f: &Failure) -> Value {
    Value::object([
        ("version", Value::String(f.version.clone())),
        ("host", Value::String(f.host.clone())),
        ("phase", Value::String(f.phase.to_string())),
        ("detail", Value::String(f.detail.to_string())),
        ("at", timestamp(f.at)),
    ])
}

impl Release {
    /// Everything a create or update needs; diagnostics when something is missing.
    /// `config` gives the commands and strategy, `planned` the hosts (both the prior state on
    /// destroy).
    async fn deployment(
        &self,
        config: &Value,
        planned: &Value,
        settings: &Settings,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<(Deployment, Vec<HostConfig>), Diagnostics> {
        let transport = planned
            .attr("transport")
            .as_str()
            .unwrap_or("ssh")
            .to_string();
        let deploy_dir = planned
            .attr("deploy_dir")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let configs = host_configs(planned.attr("hosts"));
        let mut diags = Diagnostics::new();
        let mut hosts = Vec::new();
        for (h, t) in configs
            .iter()
            .zip(transports(settings, &transport, &configs).await)
        {
            let api = match &h.api_url {
                Some(u) => match settings.api_client(Some(u)) {
                    Ok(c) => Some(c),
                    Err(d) => {
                        diags.push(d.at(host_path(&h.name).child_attr("api_url")));
                        None
                    }
                },
                None => None,
            };
            match t {
                Ok(transport) => hosts.push(Host {
                    name: h.name.clone(),
                    address: h.address.clone(),
                    transport,
                    roles: h.roles.clone(),
                    api,
                }),
                Err(e) => diags.push(
                    Diagnostic::error(format!("Cannot reach host {}", h.name), e)
                        .at(host_path(&h.name)),
                ),
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        let lock_owner = release::default_lock_owner();
        Ok((
            Deployment {
                deploy_dir,
                hosts,
                commands: commands(config),
                strategy: strategy(config),
                lock_owner,
                cancel,
            },
            configs,
        ))
    }

    /// The first refresh of a state from before keyed fingerprints (schema version 0): gives
    /// every host with a release the deployment's key (the one a host already has, else a new
    /// one) and reads the hosts again, so that `env_sha256` can be keyed without a deploy.
    /// Writing one 0600 file per host is the only change; the env files are untouched.
    async fn key_old_hosts(
        &self,
        settings: &Settings,
        transport: &str,
        deploy_dir: &str,
        configs: &[HostConfig],
        env_roles: &[Role],
        live: &mut BTreeMap<String, HostState>,
    ) -> Result<(), Diagnostic> {
        let key = configs
            .iter()
            .find_map(|h| live.get(&h.name)?.env_key.clone())
            .unwrap_or_else(EnvKey::generate);
        let todo: Vec<&HostConfig> = configs
            .iter()
            .filter(|h| {
                live.get(&h.name)
                    .is_some_and(|s| s.version.is_some() && s.env_key.as_ref() != Some(&key))
            })
            .collect();
        let owned: Vec<HostConfig> = todo.iter().map(|h| (*h).clone()).collect();
        let ts = transports(settings, transport, &owned).await;
        let results = join_all(owned.iter().zip(ts).map(|(h, t)| {
            let key = &key;
            async move {
                let t = t?;
                hosts::write_env_key(&*t, deploy_dir, key)
                    .await
                    .map_err(|e| e.to_string())?;
                release::observe(&*t, deploy_dir, env_roles)
                    .await
                    .map_err(|e| e.to_string())
                    .map(|s| (h.name.clone(), s))
            }
        }))
        .await;
        for (h, r) in owned.iter().zip(results) {
            match r {
                Ok((name, s)) => {
                    settings
                        .cache_env_key(key_cache_id(transport, deploy_dir, h), s.env_key.clone());
                    live.insert(name, s);
                }
                Err(e) => {
                    return Err(Diagnostic::error(
                        format!("Cannot key the env fingerprints on {}", h.name),
                        format!("This state comes from a provider version that kept plain env checksums; the first refresh writes the deployment's key ({}) to each host: {e}", hosts::ENV_KEY_FILE),
                    )
                    .at(host_path(&h.name)));
                }
            }
        }
        if !owned.is_empty() {
            tracing::info!(hosts = ?owned.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), "env fingerprint key written (state from schema version 0)");
        }
        Ok(())
    }

    /// `env_sha256` as the apply would leave it: the configured env keyed with the hosts' key.
    /// Unknown when the env is not known yet, on a first deploy, when the deployment moves
    /// (transport or deploy_dir) or when no host has a key: the apply then creates or reuses
    /// one. An old state's `unkeyed:` values are compared in the plain form they hold.
    async fn planned_env(
        &self,
        config: &Value,
        prior: &Value,
        planned: &Value,
        settings: &Settings,
    ) -> Result<Value, Diagnostic> {
        let Some(env) = configured_env(config) else {
            return Ok(Value::unknown());
        };
        if env.is_empty() {
            return Ok(Value::Map(BTreeMap::new()));
        }
        // Invalid env files are plan-time errors whatever the key.
        env_fingerprints(&env, None)?;
        let moved = |a: &str| !planned.attr(a).same(prior.attr(a));
        if prior.is_null()
            || moved("transport")
            || moved("deploy_dir")
            || !planned.attr("hosts").is_wholly_known()
        {
            return Ok(Value::unknown());
        }
        let transport = planned.attr("transport").as_str().unwrap_or("ssh");
        let deploy_dir = planned.attr("deploy_dir").as_str().unwrap_or_default();
        let configs = host_configs(planned.attr("hosts"));
        match planned_env_key(settings, transport, deploy_dir, &configs).await? {
            Some(key) => Ok(string_map(env_fingerprints(&env, Some(&key))?)),
            None => {
                let plain = string_map(env_fingerprints(&env, None)?);
                // Hosts deployed before keyed fingerprints, planned without a refresh: the same
                // env keeps its old value; anything else is decided at apply.
                Ok(if plain.same(prior.attr("env_sha256")) {
                    plain
                } else {
                    Value::unknown()
                })
            }
        }
    }

    fn watch(&self, config: &Value, settings: &Settings, diags: &mut Diagnostics) -> Option<Watch> {
        let w = config.attr("watch");
        if w.is_null() {
            return None;
        }
        let dur = |name: &str, default: Duration| {
            w.attr(name)
                .as_str()
                .and_then(|v| duration::parse(v).ok())
                .unwrap_or(default)
        };
        let rollback_on_growth = w.attr("on_backlog_growth").as_str() != Some("warn");
        let ops = match settings.admin_token() {
            Ok(token) => match settings.api_client(None) {
                Ok(api) => Some(OpsWatch {
                    api,
                    token,
                    overrides: Overrides::default(),
                    rollback_on_growth,
                }),
                Err(_) => None,
            },
            Err(_) => None,
        };
        if ops.is_none() {
            diags.push(Diagnostic::warning(
                "Watch window without backlog checks",
                "The watch window probes readiness only: backlog growth is watched through the ops summary, which needs the provider's `api_url` and `admin_token`.",
            ).at_attr("watch"));
        }
        Some(Watch {
            duration: dur("duration", DEFAULT_WATCH),
            max_not_ready: dur("max_not_ready", Duration::from_secs(60)),
            poll_interval: Duration::from_secs(1),
            ops,
        })
    }

    /// Stops the hosts taken out of `hosts` (`on_destroy = "stop"`), as a destroy would stop
    /// them; returns the ones that could not be stopped.
    async fn retire(
        &self,
        config: &Value,
        prior: &Value,
        removed: &BTreeMap<String, Value>,
        settings: &Settings,
        cancel: tokio_util::sync::CancellationToken,
        diags: &mut Diagnostics,
    ) -> Vec<String> {
        let mut gone = prior.clone();
        gone.set_attr("hosts", Value::Map(removed.clone()));
        let (deployment, _) = match self.deployment(config, &gone, settings, cancel).await {
            Ok(d) => d,
            Err(d) => {
                diags.extend(d);
                return removed.keys().cloned().collect();
            }
        };
        let mut kept = Vec::new();
        for (host, r) in deployment.stop().await {
            match r {
                Ok(Stopped::Stopped) => tracing::info!(host, "removed from hosts: stopped"),
                Ok(Stopped::NothingDeployed) => diags.push(nothing_to_stop(&host)),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(
                            format!("Could not stop {host}, which left hosts"),
                            format!("{e}\n\nThe host stays in the state, so the next plan removes it again."),
                        )
                        .at_attr("hosts"),
                    );
                    kept.push(host);
                }
            }
        }
        kept
    }

    async fn apply(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        let (config, planned, prior, settings) =
            (req.config, req.planned_state, req.prior_state, req.provider);
        let creating = prior.is_null();
        let env_sha = planned.attr("env_sha256").clone();
        if !deployment_changes(planned, prior, &env_sha) {
            // Only settings of future rollouts changed (commands, strategy, ...).
            resp.new_state = planned.clone();
            return;
        }
        let transport = planned
            .attr("transport")
            .as_str()
            .unwrap_or("ssh")
            .to_string();
        if let Some(w) = insecure_warning(settings, &transport) {
            resp.diagnostics.push(w);
        }
        if let Some(d) = token_lifetime_check(
            settings,
            config,
            host_configs(planned.attr("hosts")).len(),
            creating,
            Utc::now(),
        ) {
            return resp.diagnostics.push(d);
        }
        let gate_diags = gate(settings, config, true).await;
        if gate_diags.has_errors() {
            resp.diagnostics.extend(gate_diags);
            return;
        }
        if let Some(required) = config.attr("requires_schema").as_str()
            && let Err(d) = schema_check(settings, required).await
        {
            return resp.diagnostics.push(d);
        }
        let Some(env) = configured_env(config) else {
            return resp.diagnostics.push(Diagnostic::provider_bug(
                "Env not known at apply",
                "api_env_wo / worker_env_wo are not wholly known",
            ));
        };
        let version = planned
            .attr("version")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let sha = planned
            .attr("artifact")
            .attr("sha256")
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let source = planned
            .attr("artifact")
            .attr("source")
            .as_str()
            .unwrap_or_default();
        let http = match settings.http() {
            Ok(h) => h,
            Err(d) => return resp.diagnostics.push(d),
        };
        let artifact = match release::fetch_artifact(&http, source, &sha).await {
            Ok(a) => a,
            Err(e) => {
                return resp.diagnostics.push(
                    Diagnostic::error("Artifact rejected", e.to_string()).at(AttributePath::root()
                        .child_attr("artifact")
                        .child_attr("sha256")),
                );
            }
        };
        tracing::info!(
            version,
            source,
            bytes = artifact.size,
            "artifact verified locally"
        );
        let (deployment, configs) = match self
            .deployment(config, planned, settings, req.ctx.cancel.child_token())
            .await
        {
            Ok(d) => d,
            Err(diags) => return resp.diagnostics.extend(diags),
        };
        let watch = self.watch(config, settings, &mut resp.diagnostics);
        let rehearse = planned.attr("rehearse_rollback").as_bool().unwrap_or(false);
        let target = Target {
            version: version.clone(),
            artifact: artifact.path.clone(),
            sha256: sha.clone(),
            env,
            env_key: None,
        };
        let limit = framework::timeout(
            config,
            if creating { "create" } else { "update" },
            DEFAULT_TIMEOUT,
        );
        let cancel = deployment.cancel.clone();
        let work = deployment.deploy(&target, watch.as_ref(), rehearse);
        tokio::pin!(work);
        let mut timed_out = false;
        let outcome: Outcome = tokio::select! {
            o = &mut work => o,
            _ = tokio::time::sleep(limit) => {
                timed_out = true;
                cancel.cancel();
                work.await
            }
        };
        drop(artifact);
        for w in &outcome.warnings {
            resp.diagnostics
                .push(Diagnostic::warning("Release warning", w.clone()));
        }
        if timed_out {
            resp.diagnostics.push(
                Diagnostic::error(
                    "Release timed out",
                    format!(
                        "The release did not finish within the {} timeout ({}); it was interrupted{}.",
                        if creating { "create" } else { "update" },
                        duration::format(limit),
                        if outcome.rolled_back { " and rolled back" } else { "" }
                    ),
                )
                .at_attr("timeouts"),
            );
        }
        let (host_versions, host_shas) = live_maps(&outcome.hosts);
        if outcome.succeeded() && !timed_out {
            let mut state = planned.clone();
            let befores: Vec<&str> = outcome
                .before
                .values()
                .filter_map(|v| v.as_deref())
                .filter(|v| *v != version)
                .collect();
            let previous = if befores.is_empty() {
                prior.attr("previous_version").clone()
            } else {
                let mut b = befores.clone();
                b.sort();
                b.dedup();
                Value::String(b.join(", "))
            };
            state.set_attr("previous_version", previous);
            if !state.attr("env_sha256").is_known() {
                state.set_attr(
                    "env_sha256",
                    Value::Map(
                        outcome
                            .env_fingerprints
                            .iter()
                            .map(|(r, f)| (r.as_str().to_string(), Value::String(f.clone())))
                            .collect(),
                    ),
                );
            }
            state.set_attr("deployed_version", Value::String(version.clone()));
            state.set_attr("host_versions", host_versions);
            state.set_attr("host_artifact_sha256", host_shas);
            state.set_attr(
                "revision",
                Value::int(prior.attr("revision").as_i64().unwrap_or(0) + 1),
            );
            state.set_attr("deployed_at", timestamp(Utc::now()));
            state.set_attr("last_failure", Value::Null);
            state.set_attr(
                "rehearsed_at",
                match outcome.rehearsed_at {
                    Some(t) => timestamp(t),
                    None => prior.attr("rehearsed_at").clone(),
                },
            );
            tracing::info!(version, hosts = ?outcome.changed_hosts, "release deployed");
            let removed = removed_hosts(prior, planned);
            if !removed.is_empty() && planned.attr("on_destroy").as_str() == Some("stop") {
                let kept = self
                    .retire(
                        config,
                        prior,
                        &removed,
                        settings,
                        req.ctx.cancel.child_token(),
                        &mut resp.diagnostics,
                    )
                    .await;
                keep_in_state(&mut state, prior, &removed, &kept);
            }
            resp.new_state = state;
            return;
        }

        // Failed: say what is true.
        let first = outcome
            .failures
            .first()
            .or(outcome.rollback_failures.first())
            .cloned();
        let rolled_back_cleanly = outcome.rolled_back && outcome.rollback_failures.is_empty();
        for f in &outcome.failures {
            let path = if configs.iter().any(|h| h.name == f.host) {
                host_path(&f.host)
            } else {
                AttributePath::root().child_attr("hosts")
            };
            let after = if rolled_back_cleanly {
                let mut befores: Vec<String> = outcome
                    .changed_hosts
                    .iter()
                    .map(|h| {
                        outcome
                            .before
                            .get(h)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| "nothing (first deploy)".into())
                    })
                    .collect();
                befores.sort();
                befores.dedup();
                match befores.as_slice() {
                    [] => "\n\nNo host had been changed.".to_string(),
                    [one] if one.starts_with("nothing") => "\n\nEvery host was put back: the new release was removed, and stopped where stop commands are configured.".to_string(),
                    [one] => format!("\n\nEvery host was rolled back to {one} and is ready again."),
                    many => format!("\n\nEvery changed host was rolled back to what it ran before ({}) and is ready again.", many.join(", ")),
                }
            } else if outcome.rolled_back {
                "\n\nThe rollback did not complete everywhere: see the rollback errors.".to_string()
            } else if !deployment.strategy.atomic && !outcome.before.is_empty() {
                "\n\nstrategy.atomic = false: hosts already switched stay on the new release; host_versions records each host.".to_string()
            } else {
                String::new()
            };
            resp.diagnostics.push(
                Diagnostic::error(
                    format!("Release {version} failed on {} ({})", f.host, f.phase),
                    format!("{}{after}", f.detail),
                )
                .at(path),
            );
        }
        for f in &outcome.rollback_failures {
            resp.diagnostics.push(
                Diagnostic::error(
                    format!("Rollback failed on {}", f.host),
                    format!(
                        "{}\n\nThe host may still run {version}; host_versions records what was last seen. Fix the host, then apply again.",
                        f.detail
                    ),
                )
                .at(host_path(&f.host)),
            );
        }
        let nothing_left = outcome.hosts.iter().all(|(name, s)| {
            s.version.is_none()
                || s.version.as_deref() == outcome.before.get(name).cloned().flatten().as_deref()
        });
        if creating && nothing_left {
            // A failed first deploy leaves nothing behind, and no state.
            resp.new_state = Value::Null;
            return;
        }
        let mut state = if creating {
            planned.clone()
        } else {
            prior.clone()
        };
        if creating {
            for a in COMPUTED {
                if state.attr(a).is_unknown() {
                    state.set_attr(a, Value::Null);
                }
            }
            // Not deployed: the next plan must propose it again.
            state.set_attr(
                "version",
                Value::String(format!("{DRIFT}failed first deploy")),
            );
        }
        state.set_attr("id", planned.attr("id").clone());
        // Hosts the run never read (it stopped before) keep what the state knew of them.
        let merge = |before: &Value, seen: Value| -> Value {
            let mut m = before.as_map().cloned().unwrap_or_default();
            m.extend(seen.as_map().cloned().unwrap_or_default());
            Value::Map(m)
        };
        let host_versions = merge(prior.attr("host_versions"), host_versions);
        let host_shas = merge(prior.attr("host_artifact_sha256"), host_shas);
        let versions: Vec<(String, Option<String>)> = host_versions
            .as_map()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().filter(|s| !s.is_empty()).map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let deployed = common(versions.iter().map(|(k, v)| (k, v.as_deref())));
        state.set_attr("deployed_version", Value::opt_string(deployed));
        state.set_attr("host_versions", host_versions);
        state.set_attr("host_artifact_sha256", host_shas);
        if let Some(f) = &first {
            state.set_attr("last_failure", failure_value(f));
        }
        // Carry the configuration that is not about what is deployed.
        for a in [
            "commands",
            "strategy",
            "watch",
            "change",
            "rehearse_rollback",
            "on_destroy",
            "timeouts",
            "requires_schema",
        ] {
            state.set_attr(a, planned.attr(a).clone());
        }
        if !creating && !rolled_back_cleanly && !deployment.strategy.atomic {
            // Mixed: the version stays the old one, so the plan proposes the new one again.
            state.set_attr("hosts", planned.attr("hosts").clone());
            // Hosts taken out of `hosts` were not retired by a failed rollout: they stay, and
            // the next plan takes them out again.
            let removed = removed_hosts(prior, planned);
            let names: Vec<String> = removed.keys().cloned().collect();
            keep_in_state(&mut state, prior, &removed, &names);
        }
        resp.new_state = state;
    }
}

/// `requires_schema`: the provider's database must have that migration applied.
async fn schema_check(settings: &Settings, required: &str) -> Result<(), Diagnostic> {
    let url = match settings.database_url_for(&Value::Null) {
        Ok(Some(u)) => u,
        // No database configured: the attribute only orders the apply.
        _ => return Ok(()),
    };
    let mut m = Migrator::connect(&url, settings.request_timeout)
        .await
        .map_err(|e| {
            Diagnostic::error("Cannot check requires_schema", e.to_string())
                .at_attr("requires_schema")
        })?;
    let view = m.view().await.map_err(|e| {
        Diagnostic::error("Cannot check requires_schema", e.to_string()).at_attr("requires_schema")
    })?;
    if view
        .applied
        .iter()
        .any(|a| a.version == required && !a.dirty)
    {
        return Ok(());
    }
    Err(Diagnostic::error(
        "The schema this release needs is not applied",
        format!(
            "requires_schema = {required:?}, but {} has no such applied migration (head: {}). Apply the migrations first (artifortress_migration).",
            redact_url(&url),
            view.head().unwrap_or("none")
        ),
    )
    .at_attr("requires_schema"))
}

#[async_trait]
impl Resource<Settings> for Release {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            1,
            "The Artifortress API and worker deployed to hosts (D1 staging, D2 rollback rehearsal, D4 rollout, D5 watch window). Per host: a deploy lock with owner and expiry, the artifact uploaded and its sha256 checked on the host, unpacked into `releases/<version>`, env files written mode 0600, `current` switched atomically, the role restarted and waited for (API: `/health/live`, then `consecutive_ready` `/health/ready` probes in a row saying `ready`; a `degraded` 200 is not ready; worker: `worker_status` succeeding as often), a line in `revisions.log`, old releases pruned. Every host is staged before any switches; hosts go in batches of `max_parallel`. When any host fails, every host already switched goes back to its previous release, restarted and ready (atomic rollback); the state then says what is live and `last_failure` what went wrong, so the next plan proposes the release again. Refresh reads each host's live release, artifact checksum and env-file checksums: a host changed by hand shows up as a change in the plan.",
            vec![
                Attribute::required("version", Type::String)
                    .description("The release to deploy: one path component (`A-Z a-z 0-9 . _ + -`), installed as `releases/<version>`. Refresh sets it to `drifted: <host>=<version>, ...` when hosts run something else."),
                Attribute::nested("artifact", Nesting::Single, Constraint::Required, vec![
                    Attribute::required("source", Type::String)
                        .description("A local path (or `file://`) or an `http(s)://` URL of the release tarball (`.tar.gz`; a single top directory is unpacked as the release). A download streams to a temporary file and stops at the server's `Content-Length` or 2 GiB, whichever is smaller (a local file is refused above 2 GiB too), and gives up after 60 s without data."),
                    Attribute::required("sha256", Type::String)
                        .description("Its sha256, checked locally before any host sees it and again on every host after the upload."),
                ]).description("The release tarball. Only `sha256` decides whether anything is deployed; a new `source` with the same checksum changes nothing on the hosts."),
                Attribute::required("deploy_dir", Type::String)
                    .requires_replace()
                    .description("Absolute directory on every host holding `releases/`, `current`, `shared/<role>.env`, `revisions.log` and the deploy lock."),
                Attribute::optional_computed("transport", Type::String)
                    .default_value("ssh")
                    .requires_replace()
                    .validate(Validator::OneOf(&["ssh", "local"]))
                    .description("`ssh` (the provider's `ssh` settings) or `local` (commands run on the machine running Terraform; for single-box installs and the quickstart)."),
                Attribute::nested("hosts", Nesting::Map, Constraint::Required, vec![
                    Attribute::required("address", Type::String)
                        .description("Address to connect to (and `{{address}}` in commands)."),
                    Attribute::optional("port", Type::Number)
                        .validate(Validator::IntBetween(1, 65535))
                        .description("SSH port (default 22)."),
                    Attribute::required("roles", Type::list(Type::String))
                        .description("`api`, `worker` or both."),
                    Attribute::optional("api_url", Type::String)
                        .validate(Validator::HttpUrl)
                        .description("The host's own API base URL, probed for readiness; required for the `api` role."),
                ]).description("Hosts by name. Names appear in logs, errors, `host_versions` and the import ID."),
                Attribute::optional("api_env_wo", Type::map(Type::String))
                    .sensitive()
                    .write_only()
                    .description("Environment of the API (`shared/api.env`, mode 0600, `KEY=value` lines). Write-only: never stored; `env_sha256.api`, a fingerprint keyed on the hosts, is its only trace. Null: the file is not managed."),
                Attribute::optional("worker_env_wo", Type::map(Type::String))
                    .sensitive()
                    .write_only()
                    .description("Environment of the worker (`shared/worker.env`), like `api_env_wo`."),
                Attribute::nested("commands", Nesting::Single, Constraint::Required, vec![
                    Attribute::optional("restart_api", Type::String).description("Restarts the API on the new release (required with an `api` host)."),
                    Attribute::optional("restart_worker", Type::String).description("Restarts the worker (required with a `worker` host)."),
                    Attribute::optional("worker_status", Type::String).description("Succeeds while the worker runs (required with a `worker` host)."),
                    Attribute::optional("stop_api", Type::String).description("Stops the API: for `on_destroy = \"stop\"` (on destroy, and on hosts taken out of `hosts`) and for undoing a failed first deploy."),
                    Attribute::optional("stop_worker", Type::String).description("Stops the worker, like `stop_api`."),
                ]).description("Commands run on the hosts with `sh`, templated with `{{release_dir}}`, `{{version}}`, `{{host}}`, `{{role}}`, `{{address}}` and `{{deploy_dir}}` (substituted shell-quoted). Changing them changes nothing until the next rollout."),
                Attribute::nested("strategy", Nesting::Single, Constraint::Optional, vec![
                    Attribute::optional("max_parallel", Type::Number).validate(Validator::IntBetween(1, 1000)).description("Hosts switched at once (default 1)."),
                    Attribute::optional("consecutive_ready", Type::Number).validate(Validator::IntBetween(1, 100)).description("Ready probes in a row a host needs (default 3)."),
                    Attribute::optional("health_timeout", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("How long a host may take to become ready (default `5m`)."),
                    Attribute::optional("poll_interval", Type::String).validate(Validator::Duration { min_millis: 50 }).description("Interval between readiness probes of a host being waited for (default `200ms`: about 5 requests per second per host, only during its wait)."),
                    Attribute::optional("atomic", Type::Bool).description("Roll every switched host back when any host fails (default true). `false`: hosts already switched stay, and `host_versions` says so."),
                    Attribute::optional("keep_releases", Type::Number).validate(Validator::IntBetween(1, 1000)).description("Releases kept per host (default 5); the previous release is always kept."),
                ]).description("How the rollout goes."),
                Attribute::optional("requires_schema", Type::String)
                    .description("A migration version the release needs (e.g. `artifortress_migration.schema.head`): orders the apply after the migration and, when the provider has a `database_url`, is checked to be applied before anything is deployed."),
                Attribute::nested("watch", Nesting::Single, Constraint::Optional, vec![
                    Attribute::required("duration", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("How long to watch after the rollout."),
                    Attribute::optional("max_not_ready", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("A host `not_ready` (or unreachable) for longer than this triggers the rollback (default `1m`)."),
                    Attribute::optional("on_backlog_growth", Type::String).validate(Validator::OneOf(&["rollback", "warn"])).description("What a backlog regression does: `rollback` (default) or `warn`. The ops summary is read every 5 s through the provider's `api_url` with its `admin_token` (without them the watch is readiness only, with a warning) and compared with a baseline read before the rollout: a backlog counter newly past its critical threshold, or a count already past it that grows, is a regression; an age already past it keeps growing by itself and is not."),
                ]).description("D5 watch window: readiness probed every second on every API host; the apply finishes after it."),
                Attribute::nested("change", Nesting::Single, Constraint::Optional, vec![
                    Attribute::optional("window", Type::String).description("Approved change window, RFC 3339 `START/END`."),
                    Attribute::optional("rollback_owner", Type::String).description("Who owns the rollback."),
                    Attribute::optional("approved_by", Type::String).description("Who approved the change (recorded)."),
                    Attribute::optional("backup_id", Type::String).description("The pre-release backup (`artifortress_backup.x.id`); it must exist and be younger than 24 h."),
                    Attribute::optional("backup_prefix", Type::String).description("Key prefix of the backup (default `backups/`)."),
                ]).description("D3 production gate, required when the provider's `environment` is `production`: a rollout is refused outside the window, without a rollback owner, or without a fresh backup. Checked at plan (what is known) and again at apply; plans that deploy nothing are not gated."),
                Attribute::optional_computed("rehearse_rollback", Type::Bool)
                    .default_value(Value::Bool(false))
                    .description("D2: after a successful rollout, roll back to the previous release, check readiness, roll forward again, check readiness; `rehearsed_at` records it. Skipped with a warning when a host has no previous release."),
                Attribute::optional_computed("on_destroy", Type::String)
                    .default_value("keep")
                    .validate(Validator::OneOf(&["keep", "stop"]))
                    .description("`keep` leaves the hosts running; `stop` runs `stop_api`/`stop_worker` on every host. Also applied to a host taken out of `hosts`: kept running unmanaged (the plan warns), or stopped after the rollout."),
                framework::timeouts_attribute(&["create", "update"]),
                Attribute::computed("id", Type::String)
                    .description("`[local:]<deploy_dir>,<host>=<address>[:<port>],...`; also the import ID (roles may be appended to a host as `/api+worker`, else they are read from the env files present)."),
                Attribute::computed("deployed_version", Type::String)
                    .description("The version live on every host, or `mixed (host=version, ...)`."),
                Attribute::computed("previous_version", Type::String)
                    .description("What the hosts ran before the last rollout."),
                Attribute::computed("host_versions", Type::map(Type::String))
                    .description("Per host, the version `current` points to (empty: none)."),
                Attribute::computed("host_artifact_sha256", Type::map(Type::String))
                    .description("Per host, the sha256 of the artifact the live release came from."),
                Attribute::computed("env_sha256", Type::map(Type::String))
                    .description("Per managed role, the keyed fingerprint of its env file, the only trace of the env in state: the sha256 of the deployment's key file (`shared/env-fingerprint.key`: 32 random bytes, mode 0600, written to every host at the first deploy, never in state) followed by the env file. Without the key, which stays on the hosts, nobody who reads the state can test a guessed secret against it, and the same env in two deployments gives different values. Refresh has each host compute it: a file edited by hand makes it `drifted: <host>=changed` (or `=missing`)."),
                Attribute::computed("revision", Type::Number)
                    .description("Successful rollouts through this resource."),
                Attribute::computed("deployed_at", Type::String)
                    .description("When the last rollout finished."),
                Attribute::computed("last_failure", failure_type())
                    .description("The last failed rollout (`version`, `host`, `phase`, `detail`, `at`), kept until the next successful one."),
                Attribute::computed("rehearsed_at", Type::String)
                    .description("When the last rollback rehearsal passed."),
            ],
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(v) = config.attr("version").as_str()
            && let Err(e) = hosts::check_version(v)
        {
            diags.push(Diagnostic::error("Invalid version", e.to_string()).at_attr("version"));
        }
        if let Some(d) = config.attr("deploy_dir").as_str()
            && (!d.starts_with('/') || d.trim_end_matches('/').is_empty())
        {
            diags.push(
                Diagnostic::error(
                    "Invalid deploy_dir",
                    format!("{d:?} must be an absolute path other than /"),
                )
                .at_attr("deploy_dir"),
            );
        }
        if let Some(s) = config.attr("artifact").attr("sha256").as_str()
            && !(s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            diags.push(
                Diagnostic::error(
                    "Invalid sha256",
                    format!("{s:?} is not 64 hexadecimal digits"),
                )
                .at(AttributePath::root()
                    .child_attr("artifact")
                    .child_attr("sha256")),
            );
        }
        let cmds = config.attr("commands");
        for name in [
            "restart_api",
            "restart_worker",
            "worker_status",
            "stop_api",
            "stop_worker",
        ] {
            if let Some(c) = cmds.attr(name).as_str()
                && let Err(e) = release::check_template(c)
            {
                diags.push(
                    Diagnostic::error("Invalid command template", format!("commands.{name} {e}"))
                        .at(AttributePath::root()
                            .child_attr("commands")
                            .child_attr(name)),
                );
            }
        }
        let stop = config.attr("on_destroy").as_str() == Some("stop");
        if let Some(hosts) = config.attr("hosts").as_map() {
            if hosts.is_empty() {
                diags.push(
                    Diagnostic::error("No hosts", "Give at least one host.").at_attr("hosts"),
                );
            }
            for (name, h) in hosts {
                let path = host_path(name);
                let Some(roles) = h.attr("roles").as_elements() else {
                    continue;
                };
                if roles.is_empty() {
                    diags.push(
                        Diagnostic::error("A host needs a role", "roles: `api`, `worker` or both.")
                            .at(path.child_attr("roles")),
                    );
                }
                for r in roles {
                    let Some(r) = r.as_str() else { continue };
                    let Some(role) = Role::parse(r) else {
                        diags.push(
                            Diagnostic::error(
                                "Unknown role",
                                format!("{r:?}: roles are `api` and `worker`"),
                            )
                            .at(path.child_attr("roles")),
                        );
                        continue;
                    };
                    let needs = |attr: &str| cmds.is_known() && cmds.attr(attr).is_null();
                    let restart = format!("restart_{r}");
                    if needs(&restart) {
                        diags.push(
                            Diagnostic::error(
                                format!("commands.{restart} is required"),
                                format!("Host {name} has the {r} role."),
                            )
                            .at(AttributePath::root()
                                .child_attr("commands")
                                .child_attr(&restart)),
                        );
                    }
                    if role == Role::Worker && needs("worker_status") {
                        diags.push(Diagnostic::error("commands.worker_status is required", format!("Host {name} has the worker role: its readiness is that command succeeding.")).at(AttributePath::root().child_attr("commands").child_attr("worker_status")));
                    }
                    let stop_cmd = format!("stop_{r}");
                    if stop && needs(&stop_cmd) {
                        diags.push(
                            Diagnostic::error(
                                format!("commands.{stop_cmd} is required"),
                                "on_destroy = \"stop\" runs it on every host with the role.",
                            )
                            .at(AttributePath::root()
                                .child_attr("commands")
                                .child_attr(&stop_cmd)),
                        );
                    }
                    if role == Role::Api && h.attr("api_url").is_null() {
                        diags.push(Diagnostic::error("api_url is required", format!("Host {name} has the api role: its readiness is probed at api_url.")).at(path.child_attr("api_url")));
                    }
                }
            }
        }
        if let Some(w) = config.attr("change").attr("window").as_str()
            && let Err(e) = gate::parse_window(w)
        {
            diags.push(
                Diagnostic::error("Invalid change window", e.to_string()).at(AttributePath::root()
                    .child_attr("change")
                    .child_attr("window")),
            );
        }
        diags
    }

    async fn modify_plan(
        &self,
        req: ModifyPlanRequest<'_, Settings>,
        resp: &mut ModifyPlanResponse,
    ) {
        let (config, prior, settings) = (req.config, req.prior_state, req.provider);
        let planned = &mut resp.planned_state;
        let env_sha = match self.planned_env(config, prior, planned, settings).await {
            Ok(v) => v,
            Err(d) => return resp.diagnostics.push(d),
        };
        removed_host_checks(config, prior, planned, &mut resp.diagnostics);
        let changes = deployment_changes(planned, prior, &env_sha);
        if !changes {
            for a in COMPUTED {
                planned.set_attr(a, prior.attr(a).clone());
            }
            return;
        }
        let transport = planned
            .attr("transport")
            .as_str()
            .unwrap_or("ssh")
            .to_string();
        let hosts_value = planned.attr("hosts").clone();
        let configs = host_configs(&hosts_value);
        let known = |v: &Value| v.is_wholly_known();
        planned.set_attr(
            "id",
            if known(&hosts_value) && known(planned.attr("deploy_dir")) {
                Value::String(make_id(
                    &transport,
                    planned.attr("deploy_dir").as_str().unwrap_or_default(),
                    &configs,
                ))
            } else {
                Value::unknown()
            },
        );
        let version = planned.attr("version").clone();
        let sha = match planned.attr("artifact").attr("sha256") {
            Value::String(s) => Value::String(s.to_ascii_lowercase()),
            other => other.clone(),
        };
        planned.set_attr("deployed_version", version.clone());
        let per_host = |v: &Value| {
            if known(&hosts_value) {
                Value::Map(
                    configs
                        .iter()
                        .map(|h| (h.name.clone(), v.clone()))
                        .collect(),
                )
            } else {
                Value::unknown()
            }
        };
        planned.set_attr("host_versions", per_host(&version));
        planned.set_attr("host_artifact_sha256", per_host(&sha));
        // A deploy re-keys an old state's plain values: known only after the apply.
        let unkeyed = env_sha.as_map().is_some_and(|m| {
            m.values()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with(UNKEYED)))
        });
        planned.set_attr(
            "env_sha256",
            if unkeyed { Value::unknown() } else { env_sha },
        );
        planned.set_attr("last_failure", Value::Null);
        for a in ["previous_version", "revision", "deployed_at"] {
            planned.set_attr(a, Value::unknown());
        }
        let rehearse = planned.attr("rehearse_rollback").as_bool().unwrap_or(false);
        planned.set_attr(
            "rehearsed_at",
            if rehearse || !planned.attr("rehearse_rollback").is_known() {
                Value::unknown()
            } else {
                prior.attr("rehearsed_at").clone()
            },
        );
        if let Some(w) = insecure_warning(settings, &transport) {
            resp.diagnostics.push(w);
        }
        if known(&hosts_value)
            && let Some(d) =
                token_lifetime_check(settings, config, configs.len(), prior.is_null(), Utc::now())
        {
            resp.diagnostics.push(d);
        }
        resp.diagnostics.extend(gate(settings, config, false).await);
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        self.apply(req, resp).await;
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        self.apply(req, resp).await;
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        let settings = req.provider;
        let state = &mut resp.new_state;
        let importing = state.attr("hosts").is_null();
        let (transport, deploy_dir, configs, explicit_roles) = if importing {
            let id = state.attr("id").as_str().unwrap_or_default().to_string();
            match parse_id(&id) {
                Ok(parsed) => {
                    let explicit: Vec<bool> = parsed.hosts.iter().map(|(_, e)| *e).collect();
                    (
                        parsed.transport,
                        parsed.deploy_dir,
                        parsed.hosts.into_iter().map(|(h, _)| h).collect::<Vec<_>>(),
                        explicit,
                    )
                }
                Err(e) => {
                    return resp
                        .diagnostics
                        .push(Diagnostic::error("Invalid import ID", e).at_attr("id"));
                }
            }
        } else {
            let configs = host_configs(state.attr("hosts"));
            let n = configs.len();
            (
                state
                    .attr("transport")
                    .as_str()
                    .unwrap_or("ssh")
                    .to_string(),
                state
                    .attr("deploy_dir")
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                configs,
                vec![true; n],
            )
        };
        // Env files: those state says are managed; on import, both (roles come from them).
        let env_roles: Vec<Role> = if importing {
            Role::ALL.to_vec()
        } else {
            state
                .attr("env_sha256")
                .as_map()
                .map(|m| m.keys().filter_map(|k| Role::parse(k)).collect())
                .unwrap_or_default()
        };
        let ts = transports(settings, &transport, &configs).await;
        let seen = join_all(ts.into_iter().map(|t| {
            let (deploy_dir, env_roles) = (&deploy_dir, &env_roles);
            async move {
                let t = t?;
                release::observe(&*t, deploy_dir, env_roles)
                    .await
                    .map_err(|e| e.to_string())
            }
        }))
        .await;
        let mut live: BTreeMap<String, HostState> = BTreeMap::new();
        for (h, r) in configs.iter().zip(seen) {
            match r {
                Ok(s) => {
                    settings
                        .cache_env_key(key_cache_id(&transport, &deploy_dir, h), s.env_key.clone());
                    live.insert(h.name.clone(), s);
                }
                Err(e) => resp.diagnostics.push(
                    Diagnostic::error(
                        format!("Cannot read host {}", h.name),
                        format!("Refreshing {TYPE_NAME} needs every host: {e}"),
                    )
                    .at(host_path(&h.name)),
                ),
            }
        }
        if resp.diagnostics.has_errors() {
            return;
        }
        if importing {
            let mut hosts = BTreeMap::new();
            for (h, explicit) in configs.iter().zip(&explicit_roles) {
                let s = &live[&h.name];
                let roles: Vec<Role> = if *explicit {
                    h.roles.clone()
                } else {
                    Role::ALL.into_iter().filter(|r| s.has_env(*r)).collect()
                };
                hosts.insert(
                    h.name.clone(),
                    Value::object([
                        ("address", Value::String(h.address.clone())),
                        (
                            "port",
                            if h.port == 22 {
                                Value::Null
                            } else {
                                Value::int(i64::from(h.port))
                            },
                        ),
                        (
                            "roles",
                            Value::string_list(roles.iter().map(|r| r.as_str().to_string())),
                        ),
                        ("api_url", Value::Null),
                    ]),
                );
            }
            state.set_attr("hosts", Value::Map(hosts));
            state.set_attr("transport", Value::String(transport.clone()));
            state.set_attr("deploy_dir", Value::String(deploy_dir.clone()));
            state.set_attr("on_destroy", Value::String("keep".into()));
            state.set_attr("rehearse_rollback", Value::Bool(false));
            let version = common(live.iter().map(|(k, s)| (k, s.version.as_deref())));
            let sha = common(live.iter().map(|(k, s)| (k, s.artifact_sha256.as_deref())));
            state.set_attr("version", Value::opt_string(version.clone()));
            state.set_attr("deployed_version", Value::opt_string(version));
            state.set_attr(
                "artifact",
                Value::object([("source", Value::Null), ("sha256", Value::opt_string(sha))]),
            );
            let mut env = BTreeMap::new();
            for role in Role::ALL {
                if let Some(sha) = common(
                    live.iter()
                        .map(|(k, s)| (k, s.env_fingerprint(role).map(str::to_string)))
                        .filter(|(_, v)| v.is_some())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(|(k, v)| (*k, v.as_deref())),
                ) {
                    env.insert(role.as_str().to_string(), Value::String(sha));
                }
            }
            state.set_attr("env_sha256", Value::Map(env));
            if let Some(Ok(t)) = transports(settings, &transport, &configs[..1]).await.pop() {
                let n = hosts::revisions(&*t, &deploy_dir, 100_000)
                    .await
                    .map(|r| r.len())
                    .unwrap_or(0);
                state.set_attr("revision", Value::int(n as i64));
            }
        }
        let (host_versions, host_shas) = live_maps(&live);
        state.set_attr("host_versions", host_versions);
        state.set_attr("host_artifact_sha256", host_shas);
        // Drift: the configuration-facing attributes take what the hosts say.
        let want_version = state
            .attr("version")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let drifted: Vec<String> = live
            .iter()
            .filter(|(_, s)| s.version.as_deref() != Some(want_version.as_str()))
            .map(|(h, s)| format!("{h}={}", s.version.as_deref().unwrap_or("none")))
            .collect();
        if !drifted.is_empty() && !want_version.starts_with(DRIFT) {
            tracing::warn!(hosts = ?drifted, "hosts run another release than the state says");
            state.set_attr(
                "version",
                Value::String(format!("{DRIFT}{}", drifted.join(", "))),
            );
        }
        let want_sha = state
            .attr("artifact")
            .attr("sha256")
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sha_drift: Vec<String> = live
            .iter()
            .filter(|(_, s)| {
                s.version.as_deref() == Some(want_version.as_str())
                    && s.artifact_sha256.as_deref() != Some(want_sha.as_str())
            })
            .map(|(h, s)| format!("{h}={}", s.artifact_sha256.as_deref().unwrap_or("none")))
            .collect();
        if !sha_drift.is_empty()
            && let Some(Value::Object(a)) = state.attr_mut("artifact")
        {
            a.insert(
                "sha256".into(),
                Value::String(format!("{DRIFT}{}", sha_drift.join(", "))),
            );
        }
        if !importing
            && has_unkeyed(state.attr("env_sha256"))
            && let Err(d) = self
                .key_old_hosts(
                    settings,
                    &transport,
                    &deploy_dir,
                    &configs,
                    &env_roles,
                    &mut live,
                )
                .await
        {
            return resp.diagnostics.push(d);
        }
        if let Some(Value::Map(env)) = state.attr_mut("env_sha256") {
            for (role_name, want) in env.iter_mut() {
                let Some(role) = Role::parse(role_name) else {
                    continue;
                };
                let want_text = want.as_str().unwrap_or_default().to_string();
                let holders: Vec<&HostState> = configs
                    .iter()
                    .filter(|h| h.roles.contains(&role) || importing)
                    .filter_map(|h| live.get(&h.name))
                    .collect();
                let names: Vec<&String> = configs
                    .iter()
                    .filter(|h| h.roles.contains(&role) || importing)
                    .filter(|h| live.contains_key(&h.name))
                    .map(|h| &h.name)
                    .collect();
                let (value, bad) = env_drift(&want_text, role, &names, &holders, importing);
                if !bad.is_empty() {
                    tracing::warn!(role = role_name.as_str(), hosts = ?bad, "env file changed on hosts");
                    *want = Value::String(format!("{DRIFT}{}", bad.join(", ")));
                } else if let Some(v) = value {
                    *want = Value::String(v);
                }
            }
        }
        if state.attr("deployed_version").is_null() || !drifted.is_empty() {
            let deployed = common(live.iter().map(|(k, s)| (k, s.version.as_deref())));
            state.set_attr("deployed_version", Value::opt_string(deployed));
        }
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        let state = req.prior_state;
        if state.attr("on_destroy").as_str() != Some("stop") {
            tracing::info!("on_destroy = keep: the hosts are left running");
            return Diagnostics::new();
        }
        let (deployment, _) = match self
            .deployment(state, state, req.provider, req.ctx.cancel.child_token())
            .await
        {
            Ok(d) => d,
            Err(diags) => return diags,
        };
        let mut diags = Diagnostics::new();
        for (host, r) in deployment.stop().await {
            match r {
                Ok(Stopped::Stopped) => {}
                Ok(Stopped::NothingDeployed) => diags.push(nothing_to_stop(&host)),
                Err(e) => diags.push(
                    Diagnostic::error(format!("Could not stop {host}"), e.to_string())
                        .at(host_path(&host)),
                ),
            }
        }
        diags
    }

    fn import(&self) -> Import {
        Import::Passthrough("id")
    }

    /// Version 0 kept the plain sha256 of each env file in `env_sha256` (and in its drift
    /// notes). Version 1 keeps fingerprints keyed with a key that lives only on the hosts: the
    /// plain values are marked `unkeyed:` for the refresh that follows to replace, and drift
    /// notes lose their checksums.
    fn upgrade_state(&self, version: i64, raw: &serde_json::Value) -> Result<Value, Diagnostic> {
        if version != 0 {
            return Err(Diagnostic::provider_bug(
                "Unable to upgrade resource state",
                format!("{TYPE_NAME} has no upgrader from schema version {version}"),
            ));
        }
        let ty = self.schema().value_type();
        let mut state = serde_json::to_vec(raw)
            .map_err(|e| e.to_string())
            .and_then(|b| json::decode(&b, &ty).map_err(|e| e.to_string()))
            .map_err(|e| {
                Diagnostic::error(
                    "Unable to read stored state",
                    format!("The version 0 state of {TYPE_NAME} could not be read: {e}."),
                )
            })?;
        if let Some(Value::Map(env)) = state.attr_mut("env_sha256") {
            for v in env.values_mut() {
                if let Some(text) = v.as_str() {
                    *v = Value::String(upgrade_env_value(text));
                }
            }
        }
        Ok(state)
    }
}

/// One `env_sha256` value of schema version 0 in version 1's form (see `upgrade_state`).
fn upgrade_env_value(text: &str) -> String {
    let is_sha = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha(text) {
        return format!("{UNKEYED}{}", text.to_ascii_lowercase());
    }
    match text.strip_prefix(DRIFT) {
        Some(notes) => format!(
            "{DRIFT}{}",
            notes
                .split(", ")
                .map(|n| match n.split_once('=') {
                    Some((host, v)) if is_sha(v) => format!("{host}=changed"),
                    _ => n.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_with(env: Option<(&str, Option<&str>)>) -> HostState {
        HostState {
            version: Some("v1".into()),
            artifact_sha256: None,
            env_key: None,
            env: BTreeMap::from([(
                Role::Api,
                env.map(|(sha, keyed)| hosts::FileSums {
                    sha256: sha.into(),
                    keyed: keyed.map(str::to_string),
                }),
            )]),
        }
    }

    /// A null object of the type of the release's nested attribute `name`.
    fn nested_null(name: &str) -> Value {
        match Release.schema().value_type() {
            Type::Object { attributes, .. } => Value::null_object(&attributes[name]),
            other => panic!("not an object: {other:?}"),
        }
    }

    fn release_config(sets: &[(&str, Value)]) -> Value {
        let mut v = Value::null_object(&Release.schema().value_type());
        for (k, val) in sets {
            v.set_attr(k, val.clone());
        }
        v
    }

    #[test]
    fn a_token_that_expires_before_the_watch_ends_is_refused() {
        use crate::protocol::framework::Provider as _;
        let host = |roles: &[&str]| {
            Value::object([
                ("address", Value::string("10.0.0.1")),
                ("port", Value::Null),
                (
                    "roles",
                    Value::string_list(roles.iter().map(|r| r.to_string())),
                ),
                ("api_url", Value::Null),
            ])
        };
        let hosts = Value::Map(BTreeMap::from([
            ("api-1".to_string(), host(&["api", "worker"])),
            ("api-2".to_string(), host(&["api"])),
            ("api-3".to_string(), host(&["api"])),
        ]));
        let mut strategy = nested_null("strategy");
        strategy.set_attr("max_parallel", Value::int(2));
        strategy.set_attr("health_timeout", Value::string("2m"));
        let mut watch = nested_null("watch");
        watch.set_attr("duration", Value::string("10m"));
        let config = release_config(&[("hosts", hosts), ("strategy", strategy), ("watch", watch)]);
        // 2 batches × 2 roles × 2m = 8m, then 10m of watch.
        let (need, why) = token_need(&config, 3, false).unwrap();
        assert_eq!(need, Duration::from_secs(18 * 60));
        assert!(why.contains("2 batch(es) × 2 role(s)"), "{why}");
        let now = Utc::now();
        let mut pcfg =
            Value::null_object(&crate::provider::ArtifortressProvider.schema().value_type());
        pcfg.set_attr("admin_token", Value::string("t"));
        pcfg.set_attr(
            "admin_token_expires_at",
            Value::string((now + chrono::Duration::minutes(15)).to_rfc3339()),
        );
        let settings = Settings::from_config(&pcfg).unwrap();
        let d = token_lifetime_check(&settings, &config, 3, false, now).unwrap();
        assert!(d.detail.contains("for up to 18m0s"), "{}", d.detail);
        assert!(d.detail.contains("ttl_minutes >= 19"), "{}", d.detail);
        pcfg.set_attr(
            "admin_token_expires_at",
            Value::string((now + chrono::Duration::minutes(20)).to_rfc3339()),
        );
        let settings = Settings::from_config(&pcfg).unwrap();
        assert!(token_lifetime_check(&settings, &config, 3, false, now).is_none());
        // Capped by the update timeout; no watch window: no need.
        let mut timeouts = nested_null("timeouts");
        timeouts.set_attr("update", Value::string("12m"));
        let mut capped = config.clone();
        capped.set_attr("timeouts", timeouts);
        let (need, why) = token_need(&capped, 3, false).unwrap();
        assert_eq!(need, Duration::from_secs(12 * 60));
        assert!(why.contains("capped by the update timeout 12m0s"), "{why}");
        let mut unwatched = config.clone();
        unwatched.set_attr("watch", Value::Null);
        assert!(token_need(&unwatched, 3, false).is_none());
    }

    #[test]
    fn env_drift_names_hosts_never_checksums() {
        let (a, b) = ("api-1".to_string(), "api-2".to_string());
        let names = [&a, &b];
        let plain = "a".repeat(64);
        let keyed = "b".repeat(64);
        let same = host_with(Some((&plain, Some(&keyed))));
        let edited = host_with(Some((&"c".repeat(64), Some(&"d".repeat(64)))));
        let missing = host_with(None);
        let no_key = host_with(Some((&plain, None)));
        assert_eq!(
            env_drift(&keyed, Role::Api, &names, &[&same, &same], false),
            (None, vec![])
        );
        assert_eq!(
            env_drift(&keyed, Role::Api, &names, &[&same, &edited], false),
            (None, vec!["api-2=changed".to_string()])
        );
        assert_eq!(
            env_drift(&keyed, Role::Api, &names, &[&missing, &no_key], false),
            (
                None,
                vec!["api-1=missing".to_string(), "api-2=unkeyed".to_string()]
            )
        );
        // An old state's plain value: compared plain, replaced by the keyed fingerprint.
        let old = format!("{UNKEYED}{plain}");
        assert_eq!(
            env_drift(&old, Role::Api, &names, &[&same, &same], false),
            (Some(keyed.clone()), vec![])
        );
        assert_eq!(
            env_drift(&old, Role::Api, &names, &[&same, &edited], false).1,
            vec!["api-2=changed".to_string()]
        );
        // Importing: a host without the file is not drift.
        assert_eq!(
            env_drift(&keyed, Role::Api, &names, &[&same, &missing], true),
            (None, vec![])
        );
    }

    #[test]
    fn version_0_env_values_lose_their_plain_checksums() {
        let sha = "AB".repeat(32);
        assert_eq!(
            upgrade_env_value(&sha),
            format!("{UNKEYED}{}", "ab".repeat(32))
        );
        assert_eq!(
            upgrade_env_value(&format!("{DRIFT}api-1={sha}, api-2=missing")),
            format!("{DRIFT}api-1=changed, api-2=missing")
        );
        assert_eq!(upgrade_env_value("something else"), "something else");
    }

    #[test]
    fn version_0_state_upgrades_without_a_plain_checksum() {
        let sha = "0123456789abcdef".repeat(4);
        let raw = serde_json::json!({
            "version": "v1",
            "env_sha256": {"api": sha},
            "hosts": {"api-1": {"address": "10.0.0.1", "port": null, "roles": ["api"], "api_url": null}},
        });
        let up = Release.upgrade_state(0, &raw).unwrap();
        assert_eq!(up.attr("version").as_str(), Some("v1"));
        assert_eq!(
            up.attr("env_sha256").to_string_map()["api"],
            format!("{UNKEYED}{sha}")
        );
        assert!(Release.upgrade_state(1, &raw).is_err());
    }

    fn strings(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
    }

    /// A `hosts` element as Terraform sends it: every attribute of the schema present.
    fn host(address: &str, role: &str) -> Value {
        Value::object([
            ("address", Value::String(address.into())),
            ("port", Value::int(22)),
            ("roles", Value::List(vec![Value::String(role.into())])),
            ("api_url", Value::Null),
        ])
    }

    /// A prior state with api-1 and worker-1, a plan without worker-1.
    fn without_worker() -> (Value, Value) {
        let prior = Value::object([
            (
                "hosts",
                Value::Map(BTreeMap::from([
                    ("api-1".to_string(), host("10.0.0.1", "api")),
                    ("worker-1".to_string(), host("10.0.0.2", "worker")),
                ])),
            ),
            (
                "host_versions",
                strings(&[("api-1", "v1"), ("worker-1", "v1")]),
            ),
            (
                "host_artifact_sha256",
                strings(&[("api-1", "aa"), ("worker-1", "aa")]),
            ),
            ("on_destroy", Value::String("keep".into())),
        ]);
        let planned = Value::object([
            (
                "hosts",
                Value::Map(BTreeMap::from([(
                    "api-1".to_string(),
                    host("10.0.0.1", "api"),
                )])),
            ),
            ("host_versions", strings(&[("api-1", "v2")])),
            ("host_artifact_sha256", strings(&[("api-1", "bb")])),
            ("on_destroy", Value::String("keep".into())),
        ]);
        (prior, planned)
    }

    #[test]
    fn hosts_that_leave_are_found_and_kept_in_state_when_not_stopped() {
        let (prior, mut planned) = without_worker();
        let removed = removed_hosts(&prior, &planned);
        assert_eq!(removed.keys().collect::<Vec<_>>(), ["worker-1"]);
        assert!(removed_hosts(&Value::Null, &planned).is_empty(), "create");
        assert!(removed_hosts(&prior, &Value::Null).is_empty(), "destroy");
        let mut unknown = planned.clone();
        unknown.set_attr("hosts", Value::unknown());
        assert!(removed_hosts(&prior, &unknown).is_empty(), "hosts unknown");

        keep_in_state(&mut planned, &prior, &removed, &[]);
        assert_eq!(planned.attr("hosts").as_map().unwrap().len(), 1);
        keep_in_state(&mut planned, &prior, &removed, &["worker-1".to_string()]);
        assert_eq!(
            planned
                .attr("hosts")
                .as_map()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["api-1", "worker-1"]
        );
        assert_eq!(
            planned.attr("host_versions").to_string_map(),
            BTreeMap::from([
                ("api-1".to_string(), "v2".to_string()),
                ("worker-1".to_string(), "v1".to_string())
            ])
        );
        assert_eq!(
            planned.attr("host_artifact_sha256").to_string_map()["worker-1"],
            "aa"
        );
    }

    #[test]
    fn a_host_leaving_is_warned_about_or_needs_its_stop_command() {
        let (prior, mut planned) = without_worker();
        let config = Value::object([(
            "commands",
            Value::object([
                ("stop_api", Value::String("stop api".into())),
                ("stop_worker", Value::Null),
            ]),
        )]);
        let mut diags = Diagnostics::new();
        removed_host_checks(&config, &prior, &planned, &mut diags);
        let d: Vec<_> = diags.iter().collect();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(!diags.has_errors());
        assert_eq!(d[0].summary, "worker-1 leaves hosts and keeps running");
        assert!(
            d[0].detail.contains("10.0.0.2") && d[0].detail.contains("running v1 as worker"),
            "{}",
            d[0].detail
        );

        planned.set_attr("on_destroy", Value::String("stop".into()));
        let mut diags = Diagnostics::new();
        removed_host_checks(&config, &prior, &planned, &mut diags);
        assert!(diags.has_errors());
        assert_eq!(
            diags.iter().next().unwrap().summary,
            "commands.stop_worker is required"
        );

        let config = Value::object([(
            "commands",
            Value::object([
                ("stop_api", Value::Null),
                ("stop_worker", Value::String("stop worker".into())),
            ]),
        )]);
        let mut diags = Diagnostics::new();
        removed_host_checks(&config, &prior, &planned, &mut diags);
        assert_eq!(
            diags.iter().count(),
            0,
            "stop_api is not needed: no api host leaves"
        );
    }

    #[test]
    fn import_ids_round_trip() {
        let hosts = vec![
            HostConfig {
                name: "api-1".into(),
                address: "10.0.1.5".into(),
                port: 22,
                roles: vec![Role::Api],
                api_url: None,
            },
            HostConfig {
                name: "worker-1".into(),
                address: "10.0.1.6".into(),
                port: 2222,
                roles: vec![Role::Worker],
                api_url: None,
            },
        ];
        let id = make_id("ssh", "/opt/artifortress", &hosts);
        assert_eq!(
            id,
            "/opt/artifortress,api-1=10.0.1.5,worker-1=10.0.1.6:2222"
        );
        let p = parse_id(&id).unwrap();
        assert_eq!(
            (p.transport.as_str(), p.deploy_dir.as_str()),
            ("ssh", "/opt/artifortress")
        );
        assert_eq!(p.hosts[1].0.port, 2222);
        assert!(!p.hosts[0].1);
        let p = parse_id("local:/srv/af,box=localhost/api+worker").unwrap();
        assert_eq!(p.transport, "local");
        assert_eq!(p.hosts[0].0.roles, vec![Role::Api, Role::Worker]);
        assert!(parse_id("relative,h=1").is_err());
        assert!(parse_id("/opt/x").is_err());
        assert!(parse_id("/opt/x,h=a/cron").is_err());
    }

    #[test]
    fn mixed_versions_name_each_host() {
        let (a, b) = ("a".to_string(), "b".to_string());
        assert_eq!(
            common([(&a, Some("v1")), (&b, Some("v1"))].into_iter()),
            Some("v1".into())
        );
        assert_eq!(
            common([(&a, Some("v1")), (&b, None)].into_iter()),
            Some("mixed (a=v1, b=none)".into())
        );
    }

    #[test]
    fn the_schema_is_valid() {
        assert!(!Release.schema().check().has_errors());
    }
}
