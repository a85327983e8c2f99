//! Refresh, import and state upgrades of `artifortress_release`: what the hosts run, read
//! back into the state; a host changed by hand shows up as drift.

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::clients::hosts::{self, EnvKey};
use crate::clients::release::{self, HostState, Role};
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{ReadRequest, ReadResponse};
use crate::protocol::json;
use crate::protocol::model::Maybe;
use crate::protocol::types::Type;
use crate::protocol::value::Value;
use crate::settings::Settings;

use super::model::{HostConfig, HostModel, ReleaseModel};
use super::{DRIFT, TYPE_NAME, UNKEYED, common, has_unkeyed, host_path, key_cache_id, transports};

pub(super) async fn read(req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
    let settings = req.provider;
    // An imported state holds only `id`: its defaults are those of a configuration.
    let mut state = match ReleaseModel::from_config(&resp.new_state) {
        Ok(m) => m,
        Err(e) => {
            return resp
                .diagnostics
                .push(e.diagnostic("Unable to read the state"));
        }
    };
    let importing = state.hosts.is_none();
    let (transport, deploy_dir, configs, explicit_roles) = if importing {
        let id = state.id.clone().unwrap_or_default();
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
        let configs = state.host_configs();
        let n = configs.len();
        (
            state.transport.clone(),
            state.deploy_dir.clone().unwrap_or_default(),
            configs,
            vec![true; n],
        )
    };
    // Env files: those state says are managed; on import, both (roles come from them).
    let env_roles: Vec<Role> = if importing {
        Role::ALL.to_vec()
    } else {
        state
            .env_sha256
            .as_ref()
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
                settings.cache_env_key(key_cache_id(&transport, &deploy_dir, h), s.env_key.clone());
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
                Maybe::Known(HostModel {
                    address: Maybe::Known(h.address.clone()),
                    port: if h.port == 22 {
                        Maybe::Null
                    } else {
                        Maybe::Known(i64::from(h.port))
                    },
                    roles: Maybe::Known(
                        roles
                            .iter()
                            .map(|r| Maybe::Known(r.as_str().to_string()))
                            .collect(),
                    ),
                    api_url: Maybe::Null,
                }),
            );
        }
        // `on_destroy` and `rehearse_rollback` hold their defaults (from_config).
        state.hosts = Some(hosts);
        state.transport = transport.clone();
        state.deploy_dir = Some(deploy_dir.clone());
        let version = common(live.iter().map(|(k, s)| (k, s.version.as_deref())));
        state.version = version.clone();
        state.deployed_version = version;
        super::artifacts::imported(&mut state, &live);
        let mut env = BTreeMap::new();
        for role in Role::ALL {
            // Files that differ per host (templated values) combine into one value.
            let per_host: BTreeMap<String, String> = live
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), s.env_fingerprint(role)?.to_string())))
                .collect();
            if let Some(sha) = release::combine_fingerprints(&per_host) {
                env.insert(role.as_str().to_string(), sha);
            }
        }
        state.env_sha256 = Some(env);
        if let Some(Ok(t)) = transports(settings, &transport, &configs[..1]).await.pop() {
            let n = hosts::revisions(&*t, &deploy_dir, 100_000)
                .await
                // Lines of `artifortress_rollback_release` (`rollback-of=`) are history, not
                // rollouts: `revision` counts rollouts as the apply does.
                .map(|r| r.iter().filter(|l| !l.contains(" rollback-of=")).count())
                .unwrap_or(0);
            state.revision = Some(n as i64);
        }
    }
    // The hosts with their roles (on import, as just read from the hosts).
    let with_roles = state.host_configs();
    let (host_versions, host_shas, role_shas) = live_maps(&with_roles, &live);
    state.host_versions = Some(host_versions);
    state.host_artifact_sha256 = Some(host_shas);
    state.host_role_artifact_sha256 = Some(role_shas);
    // Drift: the configuration-facing attributes take what the hosts say.
    let want_version = state.version.clone().unwrap_or_default();
    let drifted: Vec<String> = live
        .iter()
        .filter(|(_, s)| s.version.as_deref() != Some(want_version.as_str()))
        .map(|(h, s)| format!("{h}={}", s.version.as_deref().unwrap_or("none")))
        .collect();
    if !drifted.is_empty() && !want_version.starts_with(DRIFT) {
        tracing::warn!(hosts = ?drifted, "hosts run another release than the state says");
        state.version = Some(format!("{DRIFT}{}", drifted.join(", ")));
    }
    super::artifacts::drift(&mut state, &with_roles, &live, &want_version);
    if !importing
        && has_unkeyed(state.env_sha256.as_ref())
        && let Err(d) = key_old_hosts(
            settings,
            &transport,
            &deploy_dir,
            &configs,
            &env_roles,
            &mut live,
        )
        .await
    {
        resp.new_state = state.to_object();
        return resp.diagnostics.push(d);
    }
    if let Some(env) = state.env_sha256.as_mut() {
        for (role_name, want) in env.iter_mut() {
            let Some(role) = Role::parse(role_name) else {
                continue;
            };
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
            let (value, bad) = env_drift(want, role, &names, &holders, importing);
            if !bad.is_empty() {
                tracing::warn!(role = role_name.as_str(), hosts = ?bad, "env file changed on hosts");
                *want = format!("{DRIFT}{}", bad.join(", "));
            } else if let Some(v) = value {
                *want = v;
            }
        }
    }
    if state.deployed_version.is_none() || !drifted.is_empty() {
        state.deployed_version = common(live.iter().map(|(k, s)| (k, s.version.as_deref())));
    }
    resp.new_state = state.to_object();
}

/// Per host, a value as state holds it.
pub(super) type HostValues = BTreeMap<String, Maybe<String>>;
/// Per host, per role, a value as state holds it.
pub(super) type RoleValues = BTreeMap<String, BTreeMap<String, Maybe<String>>>;

/// Per host, the version `current` points to, what its release came from
/// (`host_artifact_sha256`) and, per role of the host, the sha256 of that role's archive (empty:
/// none).
pub(super) fn live_maps(
    configs: &[HostConfig],
    hosts: &BTreeMap<String, HostState>,
) -> (HostValues, HostValues, RoleValues) {
    let roles = |name: &str| {
        configs
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.roles.clone())
            .unwrap_or_default()
    };
    let known = |v: Option<String>| Maybe::Known(v.unwrap_or_default());
    (
        hosts
            .iter()
            .map(|(k, s)| (k.clone(), known(s.version.clone())))
            .collect(),
        hosts
            .iter()
            .map(|(k, s)| (k.clone(), known(s.host_sha256(&roles(k)))))
            .collect(),
        super::artifacts::role_map(configs, hosts),
    )
}

/// The first refresh of a state from before keyed fingerprints (schema version 0): gives
/// every host with a release the deployment's key (the one a host already has, else a new
/// one) and reads the hosts again, so that `env_sha256` can be keyed without a deploy.
/// Writing one 0600 file per host is the only change; the env files are untouched.
async fn key_old_hosts(
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
                settings.cache_env_key(key_cache_id(transport, deploy_dir, h), s.env_key.clone());
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

/// The id (and import ID): `[local:]<deploy_dir>,<host>=<address>[:<port>],...`.
pub(super) fn make_id(transport: &str, deploy_dir: &str, hosts: &[HostConfig]) -> String {
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

/// The hosts part of an ID (`<host>=<address>[:<port>],...`, what follows the deploy dir), for
/// the identity; `None` when the ID is not one.
pub(super) fn hosts_of_id(id: &str) -> Option<String> {
    let parsed = parse_id(id).ok()?;
    let rest = id.strip_prefix("local:").unwrap_or(id);
    let (_, hosts) = rest.split_once(',')?;
    (!parsed.hosts.is_empty()).then(|| hosts.to_string())
}

/// Parses an import ID; roles may be given as `/api+worker` after a host, else they are read
/// from the env files on the host.
/// A parsed import ID: each host with whether its roles were given.
pub(super) struct ImportId {
    pub(super) transport: String,
    pub(super) deploy_dir: String,
    pub(super) hosts: Vec<(HostConfig, bool)>,
}

pub(super) fn parse_id(id: &str) -> Result<ImportId, String> {
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
    if want.starts_with(release::PER_HOST) {
        // Env files that differ per host (templated values): each host's keyed fingerprint
        // against its own entry.
        for (name, s) in names.iter().zip(holders) {
            let verdict = match s.env.get(&role).cloned().flatten() {
                None if importing => None,
                None => Some("missing"),
                Some(f) => match f.keyed {
                    None => Some("unkeyed"),
                    Some(k) => (!release::per_host_has(want, name, &k)).then_some("changed"),
                },
            };
            if let Some(v) = verdict {
                bad.push(format!("{name}={v}"));
            }
        }
        return (None, bad);
    }
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

/// See [`Release::upgrade_state`](super::Release).
pub(super) fn upgrade_state(
    ty: &Type,
    version: i64,
    raw: &serde_json::Value,
) -> Result<Value, Diagnostic> {
    if !(0..=1).contains(&version) {
        return Err(Diagnostic::provider_bug(
            "Unable to upgrade resource state",
            format!("{TYPE_NAME} has no upgrader from schema version {version}"),
        ));
    }
    // Attributes added since (`api_artifact`, `worker_artifact`, `host_role_artifact_sha256`)
    // read as null.
    let mut state = serde_json::to_vec(raw)
        .map_err(|e| e.to_string())
        .and_then(|b| json::decode(&b, ty).map_err(|e| e.to_string()))
        .map_err(|e| {
            Diagnostic::error(
                "Unable to read stored state",
                format!("The version {version} state of {TYPE_NAME} could not be read: {e}."),
            )
        })?;
    if version == 0
        && let Some(Value::Map(env)) = state.attr_mut("env_sha256")
    {
        for v in env.values_mut() {
            if let Some(text) = v.as_str() {
                *v = Value::String(upgrade_env_value(text));
            }
        }
    }
    let roles = role_shas_from_single(&state);
    state.set_attr("host_role_artifact_sha256", roles);
    Ok(state)
}

/// `host_role_artifact_sha256` of a state from before per-role archives (schema versions 0 and
/// 1, which knew only `artifact`): every role of a host came from the one archive recorded in
/// `host_artifact_sha256` (empty when none), as the next refresh reads it too.
fn role_shas_from_single(state: &Value) -> Value {
    let Some(shas) = state.attr("host_artifact_sha256").as_map() else {
        return Value::Null;
    };
    let hosts = state.attr("hosts");
    let hosts = hosts.as_map();
    Value::Map(
        shas.iter()
            .map(|(name, sha)| {
                let sha = sha.as_str().unwrap_or_default().to_string();
                let roles = hosts
                    .and_then(|h| h.get(name))
                    .map(|h| h.attr("roles"))
                    .and_then(|r| match r {
                        Value::List(v) => Some(v.as_slice()),
                        _ => None,
                    })
                    .unwrap_or(&[]);
                (
                    name.clone(),
                    Value::Map(
                        roles
                            .iter()
                            .filter_map(|r| {
                                Some((r.as_str()?.to_string(), Value::String(sha.clone())))
                            })
                            .collect(),
                    ),
                )
            })
            .collect(),
    )
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
    use super::super::Release;
    use super::*;
    use crate::protocol::framework::Resource as _;

    fn host_with(env: Option<(&str, Option<&str>)>) -> HostState {
        HostState {
            version: Some("v1".into()),
            artifact_sha256: None,
            role_artifact_sha256: BTreeMap::new(),
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
        // Per-host files (templated): compared combined; a change names the role's hosts.
        let per = release::combine_fingerprints(&BTreeMap::from([
            (a.clone(), keyed.clone()),
            (b.clone(), "e".repeat(64)),
        ]))
        .unwrap();
        let other = host_with(Some((&plain, Some(&"e".repeat(64)))));
        assert_eq!(
            env_drift(&per, Role::Api, &names, &[&same, &other], false),
            (None, vec![])
        );
        assert_eq!(
            env_drift(&per, Role::Api, &names, &[&same, &edited], false).1,
            vec!["api-2=changed".to_string()]
        );
        assert_eq!(
            env_drift(&per, Role::Api, &names, &[&other, &other], false).1,
            vec!["api-1=changed".to_string()]
        );
        assert_eq!(
            env_drift(&per, Role::Api, &names, &[&same, &missing], false).1,
            vec!["api-2=missing".to_string()]
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
        // Schema version 2 is the current one: nothing to upgrade from it.
        assert!(Release.upgrade_state(2, &raw).is_err());
    }

    #[test]
    fn version_1_state_upgrades_to_the_single_artifact_form_unchanged() {
        let sha = "ab".repeat(32);
        let raw = serde_json::json!({
            "version": "v1",
            "artifact": {"source": "/tmp/a.tar.gz", "sha256": sha},
            "env_sha256": {"api": "c".repeat(64)},
            "hosts": {
                "both-1": {"address": "10.0.0.1", "port": null, "roles": ["api", "worker"], "api_url": "http://10.0.0.1:8086"},
                "wiped-1": {"address": "10.0.0.2", "port": null, "roles": ["worker"], "api_url": null},
            },
            "host_artifact_sha256": {"both-1": sha, "wiped-1": ""},
        });
        let up = Release.upgrade_state(1, &raw).unwrap();
        // Nothing of version 1 changes (its env values are keyed already).
        assert_eq!(
            up.attr("artifact").attr("sha256").as_str(),
            Some(sha.as_str())
        );
        assert_eq!(up.attr("env_sha256").to_string_map()["api"], "c".repeat(64));
        assert!(up.attr("api_artifact").is_null() && up.attr("worker_artifact").is_null());
        // Every role of a host came from its one archive.
        let roles = up.attr("host_role_artifact_sha256");
        let roles = roles.as_map().unwrap();
        assert_eq!(
            roles["both-1"].to_string_map(),
            BTreeMap::from([
                ("api".to_string(), sha.clone()),
                ("worker".to_string(), sha.clone())
            ])
        );
        assert_eq!(
            roles["wiped-1"].to_string_map(),
            BTreeMap::from([("worker".to_string(), String::new())])
        );
        // The upgraded state is a state of the current schema.
        assert!(ReleaseModel::from_config(&up).is_ok());
    }

    #[test]
    fn hosts_of_an_id_are_what_follows_the_deploy_dir() {
        assert_eq!(
            hosts_of_id("/opt/af,api-1=10.0.1.5,worker-1=10.0.1.7:2222").as_deref(),
            Some("api-1=10.0.1.5,worker-1=10.0.1.7:2222")
        );
        assert_eq!(
            hosts_of_id("local:/srv/af,box=127.0.0.1").as_deref(),
            Some("box=127.0.0.1")
        );
        assert_eq!(hosts_of_id("relative,a=b"), None);
        assert_eq!(hosts_of_id("/opt/af"), None);
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
}
