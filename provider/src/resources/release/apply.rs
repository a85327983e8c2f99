//! Create, update and delete of `artifortress_release`: the artifact checked, the rollout
//! bounded by its timeout, and a state that says what is live, whatever happened.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::clients::migrations::Migrator;
use crate::clients::ops::Overrides;
use crate::clients::pg::redact_url;
use crate::clients::release::{
    self, Deployment, Host, OpsWatch, Outcome, Stopped, Target, Watch, unsafe_rollbacks,
};
use crate::duration;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{self, ApplyRequest, ApplyResponse, DeleteRequest};
use crate::protocol::model::{Maybe, ModelError, Planned};
use crate::protocol::value::Value;
use crate::settings::Settings;

use super::model::{
    FailureModel, HostConfig, HostModel, ReleaseModel, commands, host_configs, strategy,
    time_limit, time_text,
};
use super::plan::{deployment_changes, prior_planned, removed_hosts};
use super::preconditions::{gate, token_lifetime_check};
use super::refresh::{HostValues, RoleValues, live_maps};
use super::{
    DEFAULT_WATCH, DRIFT, common, host_path, insecure_warning, nothing_to_stop, transports,
};

/// The models an apply works with: the configuration, the plan and the prior state, each as it
/// is (`Known`) and in plan form (for what plan and apply decide alike).
struct Models {
    config: ReleaseModel,
    config_p: ReleaseModel<Planned>,
    planned: ReleaseModel,
    planned_p: ReleaseModel<Planned>,
    prior: Option<ReleaseModel>,
    prior_p: Option<ReleaseModel<Planned>>,
}

impl Models {
    fn read(config: &Value, planned: &Value, prior: &Value) -> Result<Models, ModelError> {
        Ok(Models {
            config: ReleaseModel::from_config(config)?,
            config_p: ReleaseModel::planned(config)?,
            planned: ReleaseModel::from_config(planned)?,
            planned_p: ReleaseModel::planned(planned)?,
            prior: if prior.is_null() {
                None
            } else {
                Some(ReleaseModel::from_config(prior)?)
            },
            prior_p: prior_planned(prior)?,
        })
    }
}

pub(super) async fn apply(req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
    let settings = req.provider;
    let m = match Models::read(req.config, req.planned_state, req.prior_state) {
        Ok(m) => m,
        Err(e) => {
            return resp
                .diagnostics
                .push(e.diagnostic("Unable to apply the release"));
        }
    };
    let (config, planned) = (&m.config, &m.planned);
    let creating = m.prior.is_none();
    if !deployment_changes(&m.planned_p, m.prior_p.as_ref(), &m.planned_p.env_sha256) {
        // Only settings of future rollouts changed (commands, strategy, ...).
        resp.new_state = req.planned_state.clone();
        return;
    }
    if let Some(w) = insecure_warning(settings, &planned.transport) {
        resp.diagnostics.push(w);
    }
    if let Some(d) = token_lifetime_check(
        settings,
        &m.config_p,
        planned.host_configs().len(),
        creating,
        Utc::now(),
    ) {
        return resp.diagnostics.push(d);
    }
    let gate_diags = gate(settings, &m.config_p, true).await;
    if gate_diags.has_errors() {
        resp.diagnostics.extend(gate_diags);
        return;
    }
    if let Some(required) = &config.requires_schema
        && let Err(d) = schema_check(settings, required).await
    {
        return resp.diagnostics.push(d);
    }
    let Some(env) = m.config_p.configured_env() else {
        return resp.diagnostics.push(Diagnostic::provider_bug(
            "Env not known at apply",
            "api_env_wo / worker_env_wo are not wholly known",
        ));
    };
    let version = planned.version.clone().unwrap_or_default();
    let http = match settings.http() {
        Ok(h) => h,
        Err(d) => return resp.diagnostics.push(d),
    };
    let (artifacts, local) =
        match super::artifacts::fetch(&http, planned, &planned.host_configs()).await {
            Ok(a) => a,
            Err(d) => return resp.diagnostics.push(d),
        };
    let configs = planned.host_configs();
    let deployment = match deployment(
        config,
        planned,
        configs.clone(),
        settings,
        req.ctx.cancel.child_token(),
    )
    .await
    {
        Ok(d) => d,
        Err(diags) => return resp.diagnostics.extend(diags),
    };
    let watch = watch(config, settings, &mut resp.diagnostics);
    let target = Target {
        version: version.clone(),
        artifacts,
        env,
        env_key: None,
        unsafe_rollback: unsafe_rollbacks(
            config.requires_schema.as_deref(),
            config.schema_classes.as_ref(),
            m.prior.as_ref().and_then(|p| p.deployed_schemas.as_ref()),
            backup_id(config).as_deref(),
        ),
    };
    let limit = time_limit(&config.timeouts, creating);
    // The deployment stops on its own token (a child of Terraform's interrupt); the time limit
    // cancels it too.
    let cancel = deployment.cancel.clone();
    let (outcome, stopped) = framework::run_bounded(
        req.ctx,
        limit,
        |_| deployment.deploy(&target, watch.as_ref(), planned.rehearse_rollback),
        |_| async move { cancel.cancel() },
    )
    .await;
    let timed_out = stopped == Some(framework::Stopped::TimedOut);
    drop(local);
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
                    if outcome.rolled_back {
                        " and rolled back"
                    } else {
                        ""
                    }
                ),
            )
            .at_attr("timeouts"),
        );
    }
    let (host_versions, host_shas, role_shas) = live_maps(&configs, &outcome.hosts);
    let prior = m.prior.as_ref();
    for f in &outcome.rollback_refused {
        resp.diagnostics.push(refused_diagnostic(f, &version));
    }
    if outcome.succeeded() && !timed_out {
        let mut state = planned.clone();
        let befores: Vec<&str> = outcome
            .before
            .values()
            .filter_map(|v| v.as_deref())
            .filter(|v| *v != version)
            .collect();
        state.previous_version = if befores.is_empty() {
            prior.and_then(|p| p.previous_version.clone())
        } else {
            let mut b = befores.clone();
            b.sort();
            b.dedup();
            Some(b.join(", "))
        };
        if m.planned_p.env_sha256.is_unknown() {
            state.env_sha256 = Some(
                outcome
                    .env_fingerprints
                    .iter()
                    .map(|(r, f)| (r.as_str().to_string(), f.clone()))
                    .collect(),
            );
        }
        state.deployed_version = Some(version.clone());
        state.deployed_schemas = record_schema(prior, &version, config.requires_schema.as_deref());
        state.host_versions = Some(host_versions);
        state.host_artifact_sha256 = Some(host_shas);
        state.host_role_artifact_sha256 = Some(role_shas);
        state.revision = Some(prior.and_then(|p| p.revision).unwrap_or(0) + 1);
        state.deployed_at = Some(time_text(Utc::now()));
        state.last_failure = None;
        state.rehearsed_at = match outcome.rehearsed_at {
            Some(t) => Some(time_text(t)),
            None => prior.and_then(|p| p.rehearsed_at.clone()),
        };
        tracing::info!(version, hosts = ?outcome.changed_hosts, "release deployed");
        let (was, now) = (
            prior.map_or(1, worker_processes),
            deployment.worker_processes,
        );
        if was > now {
            for (host, e) in deployment.stop_worker_instances(now + 1, was).await {
                resp.diagnostics.push(
                    Diagnostic::warning(
                        format!("Worker processes above {now} not stopped on {host}"),
                        format!("worker_processes went from {was} to {now}, but stopping the processes above {now} failed: {e}"),
                    )
                    .at_attr("worker_processes"),
                );
            }
        }
        let removed = removed_hosts(m.prior_p.as_ref(), Some(&m.planned_p));
        if let Some(prior) = prior
            && !removed.is_empty()
            && planned.on_destroy == "stop"
        {
            let kept = retire(
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
        resp.new_state = state.to_object();
        return;
    }

    rollout_failed(
        &m,
        &outcome,
        deployment.strategy.atomic,
        &version,
        &configs,
        (host_versions, host_shas, role_shas),
        resp,
    );
}

/// A rollout that failed (or ran out of time): diagnostics that say what is true, and a state
/// that says what is live.
fn rollout_failed(
    m: &Models,
    outcome: &Outcome,
    atomic: bool,
    version: &str,
    configs: &[HostConfig],
    (host_versions, host_shas, role_shas): (HostValues, HostValues, RoleValues),
    resp: &mut ApplyResponse,
) {
    let (planned, prior, creating) = (&m.planned, m.prior.as_ref(), m.prior.is_none());
    let first = outcome
        .failures
        .first()
        .or(outcome.rollback_failures.first())
        .cloned();
    let rolled_back_cleanly = outcome.rolled_back
        && outcome.rollback_failures.is_empty()
        && outcome.rollback_refused.is_empty();
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
        } else if outcome.rolled_back && !outcome.rollback_refused.is_empty() {
            "\n\nThe rollback was not done where it would run binaries older than an applied contract migration: see the rollback errors; host_versions says what each host runs.".to_string()
        } else if outcome.rolled_back {
            "\n\nThe rollback did not complete everywhere: see the rollback errors.".to_string()
        } else if !atomic && !outcome.before.is_empty() {
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
    let mut state = match prior {
        Some(p) => p.clone(),
        None => {
            // What the plan left unknown reads as null. Not deployed: the next plan must
            // propose it again.
            let mut s = planned.clone();
            s.version = Some(format!("{DRIFT}failed first deploy"));
            s
        }
    };
    state.id = planned.id.clone();
    // Hosts the run never read (it stopped before) keep what the state knew of them.
    fn merge<T: Clone>(
        before: Option<&BTreeMap<String, T>>,
        seen: BTreeMap<String, T>,
    ) -> BTreeMap<String, T> {
        let mut m = before.cloned().unwrap_or_default();
        m.extend(seen);
        m
    }
    let host_versions = merge(prior.and_then(|p| p.host_versions.as_ref()), host_versions);
    let host_shas = merge(
        prior.and_then(|p| p.host_artifact_sha256.as_ref()),
        host_shas,
    );
    let versions: Vec<(&String, Option<&str>)> = host_versions
        .iter()
        .map(|(k, v)| (k, v.known().map(String::as_str).filter(|s| !s.is_empty())))
        .collect();
    state.deployed_version = common(versions.into_iter());
    if host_versions
        .values()
        .any(|v| v.known().map(String::as_str) == Some(version))
    {
        // Hosts left on the new release run it against today's schema.
        state.deployed_schemas = record_schema(prior, version, m.config.requires_schema.as_deref());
    }
    state.host_versions = Some(host_versions);
    state.host_artifact_sha256 = Some(host_shas);
    state.host_role_artifact_sha256 = Some(merge(
        prior.and_then(|p| p.host_role_artifact_sha256.as_ref()),
        role_shas,
    ));
    if let Some(f) = &first {
        state.last_failure = Some(FailureModel::from(f));
    }
    // Carry the configuration that is not about what is deployed.
    state.commands = planned.commands.clone();
    state.strategy = planned.strategy.clone();
    state.watch = planned.watch.clone();
    state.change = planned.change.clone();
    state.rehearse_rollback = planned.rehearse_rollback;
    state.on_destroy = planned.on_destroy.clone();
    state.timeouts = planned.timeouts.clone();
    state.requires_schema = planned.requires_schema.clone();
    if let Some(prior) = prior
        && !rolled_back_cleanly
        && !atomic
    {
        // Mixed: the version stays the old one, so the plan proposes the new one again.
        state.hosts = planned.hosts.clone();
        // Hosts taken out of `hosts` were not retired by a failed rollout: they stay, and
        // the next plan takes them out again.
        let removed = removed_hosts(m.prior_p.as_ref(), Some(&m.planned_p));
        let names: Vec<String> = removed.keys().cloned().collect();
        keep_in_state(&mut state, prior, &removed, &names);
    }
    resp.new_state = state.to_object();
}

/// Destroy: with `on_destroy = "stop"`, the roles are stopped on every host.
pub(super) async fn delete(req: DeleteRequest<'_, Settings>) -> Diagnostics {
    let state = match ReleaseModel::from_config(req.prior_state) {
        Ok(s) => s,
        Err(e) => return e.diagnostic("Unable to read the state").into(),
    };
    if state.on_destroy != "stop" {
        tracing::info!("on_destroy = keep: the hosts are left running");
        return Diagnostics::new();
    }
    let deployment = match deployment(
        &state,
        &state,
        state.host_configs(),
        req.provider,
        req.ctx.cancel.child_token(),
    )
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

/// Everything a create, update or delete needs; diagnostics when something is missing.
/// `config` gives the commands and strategy, `target` the transport and deploy_dir (the prior
/// state for both on destroy), `configs` the hosts.
async fn deployment(
    config: &ReleaseModel,
    target: &ReleaseModel,
    configs: Vec<HostConfig>,
    settings: &Settings,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Deployment, Diagnostics> {
    let transport = &target.transport;
    let deploy_dir = target.deploy_dir.clone().unwrap_or_default();
    let mut diags = Diagnostics::new();
    let mut hosts = Vec::new();
    for (h, t) in configs
        .iter()
        .zip(transports(settings, transport, &configs).await)
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
    let smoke_token = match config.smoke {
        Some(true) => match settings.admin_token() {
            Ok(t) => Some(release::SmokeToken(t)),
            Err(d) => {
                let mut diags = Diagnostics::new();
                diags.push(d.at_attr("smoke"));
                return Err(diags);
            }
        },
        _ => None,
    };
    let lock_owner = release::default_lock_owner();
    Ok(Deployment {
        deploy_dir,
        hosts,
        commands: commands(config.commands.as_ref()),
        strategy: strategy(config.strategy.as_ref()),
        lock_owner,
        cancel,
        worker_processes: worker_processes(config),
        smoke_token,
    })
}

/// The D5 watch window as configured, warning when it cannot watch the backlog.
fn watch(config: &ReleaseModel, settings: &Settings, diags: &mut Diagnostics) -> Option<Watch> {
    let w = config.watch.as_ref()?;
    let rollback_on_growth = w.on_backlog_growth.as_deref() != Some("warn");
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
        duration: w.duration.as_ref().map_or(DEFAULT_WATCH, |d| d.get()),
        max_not_ready: w
            .max_not_ready
            .as_ref()
            .map_or(std::time::Duration::from_secs(60), |d| d.get()),
        poll_interval: std::time::Duration::from_secs(1),
        ops,
    })
}

/// Stops the hosts taken out of `hosts` (`on_destroy = "stop"`), as a destroy would stop
/// them; returns the ones that could not be stopped.
async fn retire(
    config: &ReleaseModel,
    prior: &ReleaseModel,
    removed: &BTreeMap<String, Maybe<HostModel>>,
    settings: &Settings,
    cancel: tokio_util::sync::CancellationToken,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let deployment = match deployment(config, prior, host_configs(removed), settings, cancel).await
    {
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
                        format!(
                            "{e}\n\nThe host stays in the state, so the next plan removes it again."
                        ),
                    )
                    .at_attr("hosts"),
                );
                kept.push(host);
            }
        }
    }
    kept
}

/// Hosts that left `hosts` but could not be stopped stay in the state (with what they ran), so
/// the next plan removes them again.
fn keep_in_state(
    state: &mut ReleaseModel,
    prior: &ReleaseModel,
    removed: &BTreeMap<String, Maybe<HostModel>>,
    kept: &[String],
) {
    if kept.is_empty() {
        return;
    }
    fn keep<T: Clone>(
        into: &mut Option<BTreeMap<String, T>>,
        from: Option<&BTreeMap<String, T>>,
        kept: &[String],
    ) {
        let mut m = into.take().unwrap_or_default();
        for name in kept {
            if let Some(v) = from.and_then(|f| f.get(name)) {
                m.insert(name.clone(), v.clone());
            }
        }
        *into = Some(m);
    }
    keep(&mut state.hosts, Some(removed), kept);
    keep(&mut state.host_versions, prior.host_versions.as_ref(), kept);
    keep(
        &mut state.host_artifact_sha256,
        prior.host_artifact_sha256.as_ref(),
        kept,
    );
    keep(
        &mut state.host_role_artifact_sha256,
        prior.host_role_artifact_sha256.as_ref(),
        kept,
    );
}

/// `worker_processes` (null: 1).
fn worker_processes(m: &ReleaseModel) -> u32 {
    m.worker_processes
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

/// `change.backup_id` as configured.
fn backup_id(config: &ReleaseModel) -> Option<String> {
    config
        .change
        .as_ref()
        .and_then(|c| c.backup_id.known().cloned())
}

/// `deployed_schemas` after `version` went live against `head` (`requires_schema`): the prior
/// record with this version's entry replaced; without `requires_schema` the version's old entry
/// is dropped (nothing says what it runs against now).
fn record_schema(
    prior: Option<&ReleaseModel>,
    version: &str,
    head: Option<&str>,
) -> Option<BTreeMap<String, String>> {
    let mut m = prior
        .and_then(|p| p.deployed_schemas.clone())
        .unwrap_or_default();
    match head {
        Some(h) => m.insert(version.to_string(), h.to_string()),
        None => m.remove(version),
    };
    (!m.is_empty()).then_some(m)
}

/// The error for a rollback (or rehearsal) not done.
fn refused_diagnostic(f: &release::Failure, new_version: &str) -> Diagnostic {
    let (summary, path) = if f.phase == release::Phase::Rehearse {
        (
            format!("Rollback rehearsal not done on {}", f.host),
            AttributePath::root().child_attr("rehearse_rollback"),
        )
    } else {
        (
            format!("Rollback of {} refused", f.host),
            host_path(&f.host),
        )
    };
    Diagnostic::error(
        summary,
        format!(
            "{}\n\n{} stays on {new_version}, which is live (host_versions says so).",
            f.detail, f.host
        ),
    )
    .at(path)
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::without_worker;
    use super::*;

    #[test]
    fn a_version_older_than_an_applied_contract_migration_is_unsafe_to_roll_back_to() {
        let classes: BTreeMap<String, String> = [
            ("0001_core.sql", "A"),
            ("0002_more.sql", "B"),
            ("0003_drop.sql", "C"),
            ("0004_add.sql", "A"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let recorded: BTreeMap<String, String> = [
            ("v1", "0002_more.sql"),
            ("v2", "0003_drop.sql"),
            ("v3", "0004_add.sql"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let unsafe_ = unsafe_rollbacks(
            Some("0004_add.sql"),
            Some(&classes),
            Some(&recorded),
            Some("bk-1"),
        );
        assert_eq!(unsafe_.keys().collect::<Vec<_>>(), ["v1"]);
        let why = &unsafe_["v1"];
        for part in [
            "0003_drop.sql",
            "`bk-1`",
            "docs/25-upgrade-rollback-runbook.md",
        ] {
            assert!(why.contains(part), "{part} missing: {why}");
        }
        // Without the classes, the head or the record, nothing is refused.
        assert!(unsafe_rollbacks(None, Some(&classes), Some(&recorded), None).is_empty());
        assert!(unsafe_rollbacks(Some("0004_add.sql"), None, Some(&recorded), None).is_empty());
        assert!(unsafe_rollbacks(Some("0004_add.sql"), Some(&classes), None, None).is_empty());
        // A contract migration newer than the head the release needs is not counted.
        assert!(
            unsafe_rollbacks(Some("0002_more.sql"), Some(&classes), Some(&recorded), None)
                .is_empty()
        );
    }

    #[test]
    fn deployed_schemas_record_the_head_per_version() {
        let mut prior =
            ReleaseModel::from_config(&super::super::fixtures::release_config(&[])).unwrap();
        prior.deployed_schemas = Some(BTreeMap::from([("v1".into(), "0001.sql".into())]));
        assert_eq!(
            record_schema(Some(&prior), "v2", Some("0002.sql")),
            Some(BTreeMap::from([
                ("v1".into(), "0001.sql".into()),
                ("v2".into(), "0002.sql".into())
            ]))
        );
        assert_eq!(record_schema(Some(&prior), "v1", None), None);
        assert_eq!(record_schema(None, "v1", None), None);
    }

    #[test]
    fn hosts_that_leave_are_found_and_kept_in_state_when_not_stopped() {
        let (prior, mut planned) = without_worker();
        let plan_form = |v: &Value| ReleaseModel::planned(v).unwrap();
        let removed = removed_hosts(Some(&plan_form(&prior)), Some(&plan_form(&planned)));
        assert_eq!(removed.keys().collect::<Vec<_>>(), ["worker-1"]);
        assert!(
            removed_hosts(None, Some(&plan_form(&planned))).is_empty(),
            "create"
        );
        assert!(
            removed_hosts(Some(&plan_form(&prior)), None).is_empty(),
            "destroy"
        );
        let mut unknown = planned.clone();
        unknown.set_attr("hosts", Value::unknown());
        assert!(
            removed_hosts(Some(&plan_form(&prior)), Some(&plan_form(&unknown))).is_empty(),
            "hosts unknown"
        );

        let state = |v: &Value| ReleaseModel::from_config(v).unwrap();
        let mut kept = state(&planned);
        keep_in_state(&mut kept, &state(&prior), &removed, &[]);
        planned = kept.to_object();
        assert_eq!(planned.attr("hosts").as_map().unwrap().len(), 1);
        let mut kept = state(&planned);
        keep_in_state(
            &mut kept,
            &state(&prior),
            &removed,
            &["worker-1".to_string()],
        );
        planned = kept.to_object();
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
}
