//! Validate and plan of `artifortress_release`: the checks of a configuration, what an apply
//! would leave in state (the keyed env fingerprints included); the D3 production gate and the
//! admin token's lifetime are checked through `preconditions.rs`.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::clients::gate;
use crate::clients::hosts::{self, EnvKey};
use crate::clients::release::{self, Role};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{ModifyPlanRequest, ModifyPlanResponse};
use crate::protocol::model::{Maybe, ModelError, Planned, ToValue};
use crate::protocol::types::Type;
use crate::protocol::value::Value;
use crate::settings::Settings;

use super::model::{HostConfig, HostModel, ReleaseModel, env_attr, host_configs, known};
use super::preconditions::{gate, token_lifetime_check};
use super::refresh::make_id;
use super::{
    TYPE_NAME, UNKEYED, has_unkeyed, host_path, insecure_warning, key_cache_id, transports,
};

/// `env_sha256` as a plan holds it.
type EnvShas = Maybe<Option<BTreeMap<String, String>>>;

/// The hosts of a plan, by name.
type PlannedHosts = BTreeMap<String, Maybe<HostModel>>;

/// The cross-attribute checks of a configuration.
pub(super) fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    // A value that does not convert (a duration that does not parse) fails its attribute's
    // validator, which says so.
    let Ok(c) = ReleaseModel::planned(config) else {
        return diags;
    };
    if let Some(v) = known(&c.version)
        && let Err(e) = hosts::check_version(v)
    {
        diags.push(Diagnostic::error("Invalid version", e.to_string()).at_attr("version"));
    }
    if let Some(d) = known(&c.deploy_dir)
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
    if known(&c.worker_processes).is_some_and(|n| *n > 1) {
        for (name, cmd) in known(&c.commands).map(|c| c.named()).into_iter().flatten() {
            if matches!(name, "restart_worker" | "worker_status" | "stop_worker")
                && let Some(cmd) = cmd.known()
                && !release::template_uses(cmd, "instance")
            {
                diags.push(
                    Diagnostic::error(
                        format!("{name} without {{{{instance}}}}"),
                        format!("worker_processes > 1 runs `{name}` once per worker process; without `{{{{instance}}}}` every run would act on the same process."),
                    )
                    .at(AttributePath::root().child_attr("commands").child_attr(name)),
                );
            }
        }
    }
    if let Some(classes) = known(&c.schema_classes) {
        if !c.requires_schema.is_unknown() && known(&c.requires_schema).is_none() {
            diags.push(
                Diagnostic::error(
                    "schema_classes without requires_schema",
                    "`schema_classes` is compared with the schema head each version was deployed against, which `requires_schema` gives: set it too (e.g. `requires_schema = artifortress_migration.schema.head`).",
                )
                .at_attr("schema_classes"),
            );
        }
        for (version, class) in classes {
            if !matches!(class.as_str(), "A" | "B" | "C") {
                diags.push(
                    Diagnostic::error(
                        "Invalid migration class",
                        format!("{version}: {class:?} is not A, B or C"),
                    )
                    .at(AttributePath::root()
                        .child_attr("schema_classes")
                        .child_key(version)),
                );
            }
        }
    }
    super::artifacts::check(&c, &mut diags);
    let cmds = known(&c.commands);
    for (name, cmd) in cmds.map(|c| c.named()).into_iter().flatten() {
        if let Some(cmd) = cmd.known()
            && let Err(e) = release::check_template(cmd)
        {
            diags.push(
                Diagnostic::error("Invalid command template", format!("commands.{name} {e}")).at(
                    AttributePath::root()
                        .child_attr("commands")
                        .child_attr(name),
                ),
            );
        }
    }
    // A command is missing when `commands` is known and it is null.
    let missing =
        |cmd: Option<&Maybe<String>>| !c.commands.is_unknown() && cmd.is_none_or(Maybe::is_null);
    let stop = c.on_destroy.known().map(String::as_str) == Some("stop");
    if let Some(hosts) = known(&c.hosts) {
        if hosts.is_empty() {
            diags.push(Diagnostic::error("No hosts", "Give at least one host.").at_attr("hosts"));
        }
        for (name, h) in hosts {
            let path = host_path(name);
            let Some(h) = h.known() else { continue };
            let Some(roles) = h.roles.known() else {
                continue;
            };
            if roles.is_empty() {
                diags.push(
                    Diagnostic::error("A host needs a role", "roles: `api`, `worker` or both.")
                        .at(path.child_attr("roles")),
                );
            }
            for r in roles {
                let Some(r) = r.known() else { continue };
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
                let restart = format!("restart_{r}");
                if missing(cmds.map(|c| c.restart(role))) {
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
                if role == Role::Worker && missing(cmds.map(|c| &c.worker_status)) {
                    diags.push(Diagnostic::error("commands.worker_status is required", format!("Host {name} has the worker role: its readiness is that command succeeding.")).at(AttributePath::root().child_attr("commands").child_attr("worker_status")));
                }
                let stop_name = format!("stop_{r}");
                if stop && missing(cmds.map(|c| c.stop(role))) {
                    diags.push(
                        Diagnostic::error(
                            format!("commands.{stop_name} is required"),
                            "on_destroy = \"stop\" runs it on every host with the role.",
                        )
                        .at(AttributePath::root()
                            .child_attr("commands")
                            .child_attr(&stop_name)),
                    );
                }
                if role == Role::Api && h.api_url.is_null() {
                    diags.push(
                        Diagnostic::error(
                            "api_url is required",
                            format!(
                                "Host {name} has the api role: its readiness is probed at api_url."
                            ),
                        )
                        .at(path.child_attr("api_url")),
                    );
                }
            }
        }
    }
    super::env::check(&c, &mut diags);
    if let Some(w) = known(&c.change).and_then(|c| c.window.known())
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

/// The prior state in plan form (`None` on create).
pub(super) fn prior_planned(prior: &Value) -> Result<Option<ReleaseModel<Planned>>, ModelError> {
    if prior.is_null() {
        return Ok(None);
    }
    ReleaseModel::planned(prior).map(Some)
}

pub(super) async fn modify_plan(
    req: ModifyPlanRequest<'_, Settings>,
    resp: &mut ModifyPlanResponse,
) {
    let settings = req.provider;
    let models = ReleaseModel::planned(req.config).and_then(|c| {
        Ok((
            c,
            ReleaseModel::planned(&resp.planned_state)?,
            prior_planned(req.prior_state)?,
        ))
    });
    let (config, mut planned, prior) = match models {
        Ok(m) => m,
        Err(e) => {
            return resp
                .diagnostics
                .push(e.diagnostic("Unable to plan the release"));
        }
    };
    let prior = prior.as_ref();
    let env_sha = match planned_env(&config, prior, &planned, settings).await {
        Ok(v) => v,
        Err(d) => return resp.diagnostics.push(d),
    };
    removed_host_checks(&config, prior, &planned, &mut resp.diagnostics);
    match prior {
        Some(prior) if !deployment_changes(&planned, Some(prior), &env_sha) => {
            keep_computed(&mut planned, prior);
        }
        _ => {
            plan_rollout(&config, &mut planned, prior, env_sha, settings, resp).await;
        }
    }
    write_computed(&mut resp.planned_state, &planned);
}

/// The computed attributes of a plan that deploys something, and its checks.
async fn plan_rollout(
    config: &ReleaseModel<Planned>,
    planned: &mut ReleaseModel<Planned>,
    prior: Option<&ReleaseModel<Planned>>,
    env_sha: EnvShas,
    settings: &Settings,
    resp: &mut ModifyPlanResponse,
) {
    // Unknown reads as the default `ssh`: not `local`.
    let transport = planned.transport.known().cloned().unwrap_or_default();
    let hosts_known = planned.hosts.to_value(&Type::Dynamic).is_wholly_known();
    let configs = planned.host_configs();
    planned.id = if hosts_known && !planned.deploy_dir.is_unknown() {
        let deploy_dir = known(&planned.deploy_dir).cloned().unwrap_or_default();
        Maybe::Known(Some(make_id(&transport, &deploy_dir, &configs)))
    } else {
        Maybe::Unknown
    };
    let version = planned.version.clone();
    planned.deployed_version = version.clone();
    planned.host_versions = if hosts_known {
        let v = match &version {
            Maybe::Known(Some(s)) => Maybe::Known(s.clone()),
            Maybe::Unknown => Maybe::Unknown,
            _ => Maybe::Null,
        };
        Maybe::Known(Some(
            configs
                .iter()
                .map(|h| (h.name.clone(), v.clone()))
                .collect(),
        ))
    } else {
        Maybe::Unknown
    };
    // What the hosts' checksums will be (lower-cased), per host and per role.
    (
        planned.host_artifact_sha256,
        planned.host_role_artifact_sha256,
    ) = if hosts_known {
        let (mut hosts, mut roles) = (BTreeMap::new(), BTreeMap::new());
        for h in &configs {
            let (sha, per_role) = super::artifacts::planned_host_shas(planned, h);
            hosts.insert(h.name.clone(), sha);
            roles.insert(h.name.clone(), per_role);
        }
        (Maybe::Known(Some(hosts)), Maybe::Known(Some(roles)))
    } else {
        (Maybe::Unknown, Maybe::Unknown)
    };
    // A deploy re-keys an old state's plain values: known only after the apply.
    planned.env_sha256 = if has_unkeyed(known(&env_sha)) {
        Maybe::Unknown
    } else {
        env_sha
    };
    planned.last_failure = Maybe::Null;
    planned.previous_version = Maybe::Unknown;
    planned.revision = Maybe::Unknown;
    planned.deployed_at = Maybe::Unknown;
    planned.deployed_schemas = Maybe::Unknown;
    planned.rehearsed_at = match planned.rehearse_rollback {
        Maybe::Known(false) | Maybe::Null => prior.map_or(Maybe::Null, |p| p.rehearsed_at.clone()),
        _ => Maybe::Unknown,
    };
    if let Some(w) = insecure_warning(settings, &transport) {
        resp.diagnostics.push(w);
    }
    if hosts_known
        && let Some(d) =
            token_lifetime_check(settings, config, configs.len(), prior.is_none(), Utc::now())
    {
        resp.diagnostics.push(d);
    }
    resp.diagnostics.extend(gate(settings, config, false).await);
}

/// A plan that deploys nothing keeps what the prior state says of the deployment.
fn keep_computed(planned: &mut ReleaseModel<Planned>, prior: &ReleaseModel<Planned>) {
    planned.id = prior.id.clone();
    planned.deployed_version = prior.deployed_version.clone();
    planned.previous_version = prior.previous_version.clone();
    planned.host_versions = prior.host_versions.clone();
    planned.host_artifact_sha256 = prior.host_artifact_sha256.clone();
    planned.host_role_artifact_sha256 = prior.host_role_artifact_sha256.clone();
    planned.env_sha256 = prior.env_sha256.clone();
    planned.revision = prior.revision.clone();
    planned.deployed_at = prior.deployed_at.clone();
    planned.deployed_schemas = prior.deployed_schemas.clone();
    planned.last_failure = prior.last_failure.clone();
    planned.rehearsed_at = prior.rehearsed_at.clone();
}

/// Writes the computed attributes of `model` into the plan; the configured ones stay as
/// Terraform proposed them (unknowns inside nested values included).
fn write_computed(plan: &mut Value, model: &ReleaseModel<Planned>) {
    const COMPUTED: [&str; 12] = [
        "id",
        "deployed_version",
        "previous_version",
        "host_versions",
        "host_artifact_sha256",
        "host_role_artifact_sha256",
        "env_sha256",
        "revision",
        "deployed_at",
        "last_failure",
        "rehearsed_at",
        "deployed_schemas",
    ];
    let Value::Object(all) = model.to_value(&ReleaseModel::object_type()) else {
        return;
    };
    for name in COMPUTED {
        if let Some(v) = all.get(name) {
            plan.set_attr(name, v.clone());
        }
    }
}

/// `env_sha256` as the apply would leave it: the configured env keyed with the hosts' key.
/// Unknown when the env is not known yet, on a first deploy, when the deployment moves
/// (transport or deploy_dir) or when no host has a key: the apply then creates or reuses
/// one. An old state's `unkeyed:` values are compared in the plain form they hold.
async fn planned_env(
    config: &ReleaseModel<Planned>,
    prior: Option<&ReleaseModel<Planned>>,
    planned: &ReleaseModel<Planned>,
    settings: &Settings,
) -> Result<EnvShas, Diagnostic> {
    let Some(env) = config.configured_env() else {
        return Ok(Maybe::Unknown);
    };
    if env.is_empty() {
        return Ok(Maybe::Known(Some(BTreeMap::new())));
    }
    // Invalid env files are plan-time errors whatever the key.
    env_fingerprints(&env, None, "", &[])?;
    let Some(prior) = prior else {
        return Ok(Maybe::Unknown);
    };
    if planned.transport != prior.transport
        || planned.deploy_dir != prior.deploy_dir
        || !planned.hosts.to_value(&Type::Dynamic).is_wholly_known()
    {
        return Ok(Maybe::Unknown);
    }
    let transport = planned.transport.known().cloned().unwrap_or_default();
    let deploy_dir = known(&planned.deploy_dir).cloned().unwrap_or_default();
    let configs = planned.host_configs();
    match planned_env_key(settings, &transport, &deploy_dir, &configs).await? {
        Some(key) => Ok(Maybe::Known(Some(env_fingerprints(
            &env,
            Some(&key),
            &deploy_dir,
            &configs,
        )?))),
        None => {
            let plain = Maybe::Known(Some(env_fingerprints(&env, None, &deploy_dir, &configs)?));
            // Hosts deployed before keyed fingerprints, planned without a refresh: the same
            // env keeps its old value; anything else is decided at apply.
            Ok(if plain == prior.env_sha256 {
                plain
            } else {
                Maybe::Unknown
            })
        }
    }
}

/// Per role, what `env_sha256` holds for `env` written to `hosts` (templates expanded per
/// host; see [`release::role_env_fingerprint`]): keyed with `key`; with no key, the plain
/// sha256 (only ever compared with an `unkeyed:` value from an old state).
fn env_fingerprints(
    env: &BTreeMap<Role, BTreeMap<String, String>>,
    key: Option<&EnvKey>,
    deploy_dir: &str,
    hosts: &[HostConfig],
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut m = BTreeMap::new();
    for (role, e) in env {
        let holders: Vec<(&str, &str)> = hosts
            .iter()
            .filter(|h| h.roles.contains(role))
            .map(|h| (h.name.as_str(), h.address.as_str()))
            .collect();
        let sha = release::role_env_fingerprint(key, deploy_dir, &holders, *role, e)
            .map(|s| match key {
                Some(_) => s,
                None => format!("{UNKEYED}{s}"),
            })
            .map_err(|err| {
                Diagnostic::error("Invalid env", err.to_string()).at_attr(env_attr(*role))
            })?;
        m.insert(role.as_str().to_string(), sha);
    }
    Ok(m)
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

/// Whether what is deployed would change: version, archives' checksums, hosts (address, port, roles),
/// env.
pub(super) fn deployment_changes(
    planned: &ReleaseModel<Planned>,
    prior: Option<&ReleaseModel<Planned>>,
    env_sha: &EnvShas,
) -> bool {
    let Some(prior) = prior else {
        return true;
    };
    // `api_url` is where readiness is probed, not what is deployed.
    let strip = |hosts: &Maybe<Option<PlannedHosts>>| {
        let mut hosts = hosts.clone();
        if let Maybe::Known(Some(m)) = &mut hosts {
            for h in m.values_mut() {
                if let Maybe::Known(h) = h {
                    h.api_url = Maybe::Null;
                }
            }
        }
        hosts
    };
    !(planned.version == prior.version
        && !super::artifacts::shas_differ(planned, prior)
        && strip(&planned.hosts) == strip(&prior.hosts)
        && planned.deploy_dir == prior.deploy_dir
        && planned
            .worker_processes
            .known()
            .copied()
            .flatten()
            .unwrap_or(1)
            == prior
                .worker_processes
                .known()
                .copied()
                .flatten()
                .unwrap_or(1)
        && !planned.worker_processes.is_unknown()
        && *env_sha == prior.env_sha256)
}

/// Hosts of the prior state that the plan no longer has, with their prior settings (empty while
/// the planned hosts are unknown, and on create or destroy).
pub(super) fn removed_hosts(
    prior: Option<&ReleaseModel<Planned>>,
    planned: Option<&ReleaseModel<Planned>>,
) -> PlannedHosts {
    match (
        prior.and_then(|p| known(&p.hosts)),
        planned.and_then(|p| known(&p.hosts)),
    ) {
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
fn removed_host_checks(
    config: &ReleaseModel<Planned>,
    prior: Option<&ReleaseModel<Planned>>,
    planned: &ReleaseModel<Planned>,
    diags: &mut Diagnostics,
) {
    let removed = removed_hosts(prior, Some(planned));
    if removed.is_empty() {
        return;
    }
    let stop = planned.on_destroy.known().map(String::as_str) == Some("stop");
    let cmds = &config.commands;
    let versions: BTreeMap<&String, &String> = prior
        .and_then(|p| known(&p.host_versions))
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k, v.known()?)))
        .collect();
    for h in host_configs(&removed) {
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
                            .map(|v| v.as_str())
                            .filter(|v| !v.is_empty())
                            .unwrap_or("its release"),
                        roles.join(" and "),
                    ),
                )
                .at_attr("hosts"),
            );
            continue;
        }
        for (role, r) in h.roles.iter().zip(roles) {
            let stop_cmd = format!("stop_{r}");
            if !cmds.is_unknown() && known(cmds).is_none_or(|c| c.stop(*role).is_null()) {
                diags.push(
                    Diagnostic::error(
                        format!("commands.{stop_cmd} is required"),
                        format!("{name} leaves hosts and has the {r} role: on_destroy = \"stop\" stops it with that command."),
                    )
                    .at(AttributePath::root().child_attr("commands").child_attr(&stop_cmd)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{nested_null, release_config, without_worker};
    use super::*;

    #[test]
    fn a_host_leaving_is_warned_about_or_needs_its_stop_command() {
        let (prior, mut planned) = without_worker();
        let commands = |stop_api: Value, stop_worker: Value| {
            let mut c = nested_null("commands");
            c.set_attr("stop_api", stop_api);
            c.set_attr("stop_worker", stop_worker);
            ReleaseModel::planned(&release_config(&[("commands", c)])).unwrap()
        };
        let model = |v: &Value| ReleaseModel::planned(v).unwrap();
        let prior = model(&prior);
        let config = commands(Value::String("stop api".into()), Value::Null);
        let mut diags = Diagnostics::new();
        removed_host_checks(&config, Some(&prior), &model(&planned), &mut diags);
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
        removed_host_checks(&config, Some(&prior), &model(&planned), &mut diags);
        assert!(diags.has_errors());
        assert_eq!(
            diags.iter().next().unwrap().summary,
            "commands.stop_worker is required"
        );

        let config = commands(Value::Null, Value::String("stop worker".into()));
        let mut diags = Diagnostics::new();
        removed_host_checks(&config, Some(&prior), &model(&planned), &mut diags);
        assert_eq!(
            diags.iter().count(),
            0,
            "stop_api is not needed: no api host leaves"
        );
    }
}
