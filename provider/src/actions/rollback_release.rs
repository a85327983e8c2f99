//! `action "artifortress_rollback_release"`: a release's hosts put back on their previous
//! release now, joining `clients::release`'s rollback (`Deployment::rollback`: the automatic
//! rollback's engine, locks, API before worker, readiness waits, the class C rule) to
//! Terraform. The service's docs/25-upgrade-rollback-runbook.md, "Rollback Procedure" steps
//! 1-2 (lines 68-69 at f628e74d).
//!
//! Configured with what the engine needs to reach and restart the hosts, in the same shapes
//! as `artifortress_release`'s attributes, so a configuration passes the resource's own
//! (`hosts = artifortress_release.app.hosts`, ...). Terraform keeps no state for an action:
//! the release's state still names the configured version until its next refresh, which
//! reads the hosts and shows the drift; the next plan then proposes the configured version
//! again.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;

use crate::clients::hosts::{LocalTransport, Timeouts, Transport};
use crate::clients::release::{
    self, Commands, Deployment, Host, Role, RollbackOutcome, Strategy, unsafe_rollbacks,
};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{Action, InvokeActionRequest};
use crate::protocol::model::DurationText;
use crate::protocol::schema::{Attribute, Constraint, Nesting, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::settings::Settings;

pub const TYPE_NAME: &str = "artifortress_rollback_release";

crate::model! {
    /// `artifortress_rollback_release`'s configuration.
    pub(crate) struct RollbackReleaseModel {
        deploy_dir: String = Attribute::required("deploy_dir", Type::String)
            .description("The release's `deploy_dir` (`artifortress_release.<name>.deploy_dir`)."),
        transport: String = Attribute::optional_computed("transport", Type::String)
            .default_value("ssh")
            .validate(Validator::OneOf(&["ssh", "local"]))
            .description("The release's `transport`: `ssh` (the provider's `ssh` settings) or `local`."),
        hosts: BTreeMap<String, HostModel> = Attribute::nested("hosts", Nesting::Map, Constraint::Required, HostModel::attributes())
            .description("The release's hosts (`artifortress_release.<name>.hosts`): every one is rolled back."),
        commands: CommandsModel = Attribute::nested("commands", Nesting::Single, Constraint::Required, CommandsModel::attributes())
            .description("The release's commands (`artifortress_release.<name>.commands`): the restart commands and `worker_status` run on the previous release, as in the resource's own rollback."),
        worker_processes: Option<i64> = Attribute::optional("worker_processes", Type::Number)
            .validate(Validator::IntBetween(1, 64))
            .description("The release's `worker_processes` (default 1)."),
        strategy: Option<StrategyModel> = Attribute::nested("strategy", Nesting::Single, Constraint::Optional, StrategyModel::attributes())
            .description("The release's `strategy`: `max_parallel`, `consecutive_ready`, `health_timeout` and `poll_interval` apply; `atomic` and `keep_releases` do not (a rollback that fails on a host always puts every switched host back, and prunes nothing)."),
        schema_classes: Option<BTreeMap<String, String>> = Attribute::optional("schema_classes", Type::map(Type::String))
            .description("The applied migrations with their class, version → `A`/`B`/`C` (`artifortress_migration.schema.applied_classes`). With `deployed_schemas`: a host whose previous release was deployed against a schema older than an applied class C (contract) migration is not rolled back, and nothing is: the invocation fails naming the migration and the way back, a database restore (`artifortress_restore_database`) then that release deployed against the restored schema (docs/41-migration-compatibility-policy.md, Rollback Policy; docs/25-upgrade-rollback-runbook.md, Rollback Procedure step 3)."),
        deployed_schemas: Option<BTreeMap<String, String>> = Attribute::optional("deployed_schemas", Type::map(Type::String))
            .description("The release's `deployed_schemas` (`artifortress_release.<name>.deployed_schemas`): the schema head each version was deployed against."),
        schema_head: Option<String> = Attribute::optional("schema_head", Type::String)
            .description("The database's migration head (`artifortress_migration.schema.head`). Default: the newest of `schema_classes`."),
        backup_id: Option<String> = Attribute::optional("backup_id", Type::String)
            .description("The pre-release backup, named in a refusal as what to restore from."),
    }
}

crate::model! {
    /// One host, as `artifortress_release`'s `hosts` holds it.
    pub(crate) struct HostModel {
        address: String = Attribute::required("address", Type::String)
            .description("Address to connect to (and `{{address}}` in commands)."),
        port: Option<i64> = Attribute::optional("port", Type::Number)
            .validate(Validator::IntBetween(1, 65535))
            .description("SSH port (default 22)."),
        roles: Vec<String> = Attribute::required("roles", Type::list(Type::String))
            .description("`api`, `worker` or both."),
        api_url: Option<String> = Attribute::optional("api_url", Type::String)
            .validate(Validator::HttpUrl)
            .description("The host's own API base URL, probed for readiness; required for the `api` role."),
    }
}

crate::model! {
    /// `commands`, as `artifortress_release` holds them.
    pub(crate) struct CommandsModel {
        restart_api: Option<String> = Attribute::optional("restart_api", Type::String).description("Restarts the API (on the previous release)."),
        restart_worker: Option<String> = Attribute::optional("restart_worker", Type::String).description("Restarts the worker."),
        worker_status: Option<String> = Attribute::optional("worker_status", Type::String).description("Succeeds while the worker runs."),
        stop_api: Option<String> = Attribute::optional("stop_api", Type::String).description("Not used by a rollback (accepted so the release's `commands` can be passed as they are)."),
        stop_worker: Option<String> = Attribute::optional("stop_worker", Type::String).description("Not used by a rollback, like `stop_api`."),
    }
}

crate::model! {
    /// `strategy`, as `artifortress_release` holds it.
    pub(crate) struct StrategyModel {
        max_parallel: Option<i64> = Attribute::optional("max_parallel", Type::Number).validate(Validator::IntBetween(1, 1000)).description("Hosts switched at once (default 1)."),
        consecutive_ready: Option<i64> = Attribute::optional("consecutive_ready", Type::Number).validate(Validator::IntBetween(1, 100)).description("Ready probes in a row a host needs (default 3)."),
        health_timeout: Option<DurationText> = Attribute::optional("health_timeout", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("How long a host may take to become ready (default `5m`)."),
        poll_interval: Option<DurationText> = Attribute::optional("poll_interval", Type::String).validate(Validator::Duration { min_millis: 50 }).description("Interval between readiness probes (default `200ms`)."),
        atomic: Option<bool> = Attribute::optional("atomic", Type::Bool).description("Not used by a rollback."),
        keep_releases: Option<i64> = Attribute::optional("keep_releases", Type::Number).validate(Validator::IntBetween(1, 1000)).description("Not used by a rollback."),
    }
}

pub struct RollbackRelease;

fn host_path(name: &str) -> AttributePath {
    AttributePath::root().child_attr("hosts").child_key(name)
}

fn strategy(s: Option<&StrategyModel>) -> Strategy {
    let d = Strategy::default();
    let Some(s) = s else { return d };
    Strategy {
        max_parallel: s.max_parallel.map_or(d.max_parallel, |n| n.max(1) as usize),
        consecutive_ready: s
            .consecutive_ready
            .map_or(d.consecutive_ready, |n| n.max(1) as u32),
        health_timeout: s
            .health_timeout
            .as_ref()
            .map_or(d.health_timeout, |t| t.get()),
        poll_interval: s
            .poll_interval
            .as_ref()
            .map_or(d.poll_interval, |t| t.get()),
        ..d
    }
}

fn commands(c: &CommandsModel) -> Commands {
    let mut out = Commands::default();
    for (role, restart, stop) in [
        (Role::Api, &c.restart_api, &c.stop_api),
        (Role::Worker, &c.restart_worker, &c.stop_worker),
    ] {
        if let Some(cmd) = restart {
            out.restart.insert(role, cmd.clone());
        }
        if let Some(cmd) = stop {
            out.stop.insert(role, cmd.clone());
        }
    }
    out.worker_status = c.worker_status.clone();
    out
}

/// The engine's hosts: a transport and (for the API role) an API client each.
async fn hosts(settings: &Settings, c: &RollbackReleaseModel) -> Result<Vec<Host>, Diagnostics> {
    let mut diags = Diagnostics::new();
    let transports = join_all(c.hosts.values().map(|h| async move {
        if c.transport == "local" {
            let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(Timeouts::default()));
            return Ok(t);
        }
        let port = h.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(22);
        settings
            .ssh(&h.address, port)
            .await
            .map(|t| t as Arc<dyn Transport>)
            .map_err(|e| e.to_string())
    }))
    .await;
    let mut out = Vec::new();
    for ((name, h), t) in c.hosts.iter().zip(transports) {
        let mut roles = Vec::new();
        for r in &h.roles {
            match Role::parse(r) {
                Some(r) => roles.push(r),
                None => diags.push(
                    Diagnostic::error("Invalid role", format!("{r:?} is not `api` or `worker`."))
                        .at(host_path(name).child_attr("roles")),
                ),
            }
        }
        let api = match &h.api_url {
            Some(u) => match settings.api_client(Some(u)) {
                Ok(c) => Some(c),
                Err(d) => {
                    diags.push(d.at(host_path(name).child_attr("api_url")));
                    None
                }
            },
            None => None,
        };
        match t {
            Ok(transport) => out.push(Host {
                name: name.clone(),
                address: h.address.clone(),
                transport,
                roles,
                api,
            }),
            Err(e) => diags.push(
                Diagnostic::error(format!("Cannot reach host {name}"), e).at(host_path(name)),
            ),
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(out)
    }
}

/// The invocation's result as diagnostics.
fn report(out: &RollbackOutcome) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for f in &out.refused {
        diags.push(
            Diagnostic::error(
                format!("Rollback of {} refused", f.host),
                format!(
                    "{}\n\nNo host was rolled back: {} stays on {}.",
                    f.detail,
                    f.host,
                    out.from.get(&f.host).map_or("its release", String::as_str)
                ),
            )
            .at_attr("schema_classes"),
        );
    }
    for f in &out.failures {
        let put_back = if out.restored.is_empty() {
            String::new()
        } else {
            format!(
                "\n\nPut back on the release they ran: {}.",
                out.restored.join(", ")
            )
        };
        diags.push(
            Diagnostic::error(
                format!("Rollback failed on {}", f.host),
                format!("{} ({}): {}{put_back}", f.host, f.phase, f.detail),
            )
            .at(host_path(&f.host)),
        );
    }
    for f in &out.restore_failures {
        diags.push(
            Diagnostic::error(
                format!("{} could not be put back", f.host),
                format!(
                    "After the failed rollback, {} could not be put back on {}: {}. Check the host.",
                    f.host, f.version, f.detail
                ),
            )
            .at(host_path(&f.host)),
        );
    }
    for w in &out.warnings {
        diags.push(Diagnostic::warning("Rollback warning", w.clone()));
    }
    diags
}

#[async_trait]
impl Action<Settings> for RollbackRelease {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Puts a release's hosts back on their previous release now: the service's docs/25-upgrade-rollback-runbook.md Rollback Procedure steps 1-2 (stop the new release, redeploy the previous known-good binaries), with the engine of `artifortress_release`'s automatic rollback: every host's deploy lock, `current` switched back to the release `revisions.log` records before the current one (already installed: nothing is uploaded, env files are left as they are), the roles restarted and waited for (API hosts first, each ready before any worker-only host switches), and the class C rule (with `schema_classes` and `deployed_schemas`, a previous release older than an applied contract migration is refused, naming the migration and the restore path). Nothing is touched unless every host has a previous release and none is refused; a host that does not become ready puts every switched host back on what it ran and fails the invocation. Each step is a progress event. Configure it with the release's own attributes (`hosts = artifortress_release.app.hosts`, ...). An action keeps no state: afterwards the release's next refresh reads the hosts and shows the drift (`version = \"drifted: <host>=<previous>, ...\"`), and the next plan proposes the configured version again; change `version` in the configuration to stay on the previous release. Terraform >= 1.14: `terraform apply -invoke=action.artifortress_rollback_release.<name>`.",
            RollbackReleaseModel::attributes(),
        )
    }

    async fn invoke(&self, req: InvokeActionRequest<'_, Settings>) -> Diagnostics {
        let settings = req.provider;
        let c = match RollbackReleaseModel::from_config(req.config) {
            Ok(c) => c,
            Err(e) => {
                let mut diags = Diagnostics::new();
                diags.push(e.diagnostic("Invalid rollback_release configuration"));
                return diags;
            }
        };
        let hosts = match hosts(settings, &c).await {
            Ok(h) => h,
            Err(d) => return d,
        };
        let deployment = Deployment {
            deploy_dir: c.deploy_dir.clone(),
            hosts,
            commands: commands(&c.commands),
            strategy: strategy(c.strategy.as_ref()),
            lock_owner: release::default_lock_owner(),
            cancel: req.ctx.cancel.child_token(),
            worker_processes: c.worker_processes.map_or(1, |n| n.max(1) as u32),
            smoke_token: None,
        };
        let head = c
            .schema_head
            .clone()
            .or_else(|| c.schema_classes.as_ref()?.keys().max().cloned());
        let unsafe_ = unsafe_rollbacks(
            head.as_deref(),
            c.schema_classes.as_ref(),
            c.deployed_schemas.as_ref(),
            c.backup_id.as_deref(),
        );
        let progress = req.progress.clone();
        let out = deployment
            .rollback(&unsafe_, &move |m| progress.send(m))
            .await;
        let mut diags = report(&out);
        if out.succeeded() {
            let moved: Vec<String> = out.to.iter().map(|(h, v)| format!("{h}={v}")).collect();
            req.progress
                .send(format!("rolled back: {}", moved.join(", ")));
            diags.push(Diagnostic::warning(
                "Release rolled back outside its resource",
                format!(
                    "The hosts run their previous release now ({}). The artifortress_release state still names the configured version: its next refresh shows the drift, and the next plan deploys the configured version again. To stay on the previous release, set `version` (and `artifact`) to it in the configuration.",
                    moved.join(", ")
                ),
            ));
        }
        diags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framework;

    #[test]
    fn the_schema_is_a_valid_action_schema() {
        let s = RollbackRelease.schema();
        assert!(!framework::check_action_schema(TYPE_NAME, &s).has_errors());
    }

    #[test]
    fn the_release_strategy_maps_to_the_engines() {
        let s = strategy(Some(&StrategyModel {
            max_parallel: Some(3),
            consecutive_ready: None,
            health_timeout: None,
            poll_interval: None,
            atomic: Some(false),
            keep_releases: Some(2),
        }));
        assert_eq!(s.max_parallel, 3);
        assert_eq!(s.consecutive_ready, Strategy::default().consecutive_ready);
        // A rollback never prunes or stays half-done.
        assert!(s.atomic);
    }
}
