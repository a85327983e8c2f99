//! One deployment: lock every host, stage the artifact, per batch forward (env files, switch,
//! restart, wait), on a failure put every touched host back, finish (revisions, stashes,
//! pruning); and stopping the hosts' roles.

use std::collections::BTreeMap;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::open_close::{Finish, Opened};
use super::{
    Artifacts, Deployment, Failure, Host, HostState, Outcome, Phase, ReleaseError, Role, Stopped,
    Target, Touched, Watch, env_path, failure, observe,
};
use crate::clients::hosts::{self, DeployLock, EnvKey, HostError};

impl Deployment {
    /// Env files, switch, restart, wait: one host forward to `target`. The env files, the
    /// switch and the first role's restart go to the host as one command (a stopping
    /// [`hosts::Batch`]): each step still runs, fails and is undone on its own, and what ran
    /// before a failure (stashes, the switch) is known from the command's framed output even
    /// when it was cut off.
    pub(super) async fn forward(
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
        let timeouts = t.timeouts();
        // Every step's script and input, built before anything runs.
        let mut steps: Vec<(Step, String, Option<Vec<u8>>)> = Vec::new();
        let env_fail = |e: HostError| fail(Phase::Env, e.into());
        if let Some(key) = &target.env_key
            && host.roles.iter().any(|r| target.env.contains_key(r))
        {
            let content = key.file_content().into_bytes();
            let path = hosts::env_key_path(&self.deploy_dir);
            let script =
                hosts::write_file_command(&path, content.len() as u64, 0o600).map_err(env_fail)?;
            steps.push((Step::EnvKey, script, Some(content)));
        }
        for role in &host.roles {
            let Some(env) = target.env.get(role) else {
                continue;
            };
            let path = env_path(&self.deploy_dir, *role);
            if stash {
                let script = hosts::stash_command(&path).map_err(env_fail)?;
                steps.push((Step::Stash(path.clone()), script, None));
            }
            let env = super::host_env(env, &self.deploy_dir, &host.name, &host.address, *role);
            let content = hosts::env_file_content(&env)
                .map_err(env_fail)?
                .into_bytes();
            let script =
                hosts::write_file_command(&path, content.len() as u64, 0o600).map_err(env_fail)?;
            steps.push((Step::Env(path, env.len()), script, Some(content)));
        }
        let switch = hosts::switch_command(&self.deploy_dir, v)
            .map_err(|e| fail(Phase::Switch, e.into()))?;
        steps.push((Step::Switch, switch, None));
        // The first role's restart commands (the roles after it restart once it is ready).
        let mut roles = host.roles.clone();
        roles.sort();
        roles.dedup();
        let first = roles
            .first()
            .copied()
            .filter(|r| self.commands.restart.contains_key(r));
        if let Some(role) = first
            && let Some(template) = self.commands.restart.get(&role)
        {
            let cmds = self
                .role_commands(template, host, v, role)
                .map_err(|e| fail(Phase::Restart, e))?;
            tracing::info!(host = %host.name, role = role.as_str(), version = %v, instances = cmds.len(), "restarting");
            for cmd in cmds {
                steps.push((Step::Restart(cmd.clone()), user_command(&cmd), None));
            }
        }

        // The command's time limit is the sum of its steps': each restart command keeps the
        // command limit, the file steps add at most FILE_STEP each (what a hung restart may
        // overrun by).
        let mut batch = hosts::Batch::stopping_at_failure();
        for (step, script, input) in &steps {
            let op = step.op();
            let limit = match step {
                Step::Restart(_) => timeouts.command,
                _ => timeouts.command.min(FILE_STEP),
            };
            match input {
                Some(bytes) => batch.push_with_input(op, script.clone(), bytes, limit),
                None => batch.push(op, script.clone(), limit),
            };
        }
        let ran = batch.run(t).await;
        for (i, (step, _, _)) in steps.iter().enumerate() {
            let Some(r) = ran.output(i) else {
                break;
            };
            let out = r.map_err(|e| fail(step.phase(), e.into()))?;
            match step {
                Step::Switch => {
                    hosts::read_switch(&host.name, &self.deploy_dir, v, out)
                        .map_err(|e| fail(Phase::Switch, e.into()))?;
                    touched.switched = true;
                }
                _ if !out.success() => {
                    return Err(fail(
                        step.phase(),
                        match step {
                            Step::Restart(command) => ReleaseError::CommandFailed {
                                command: command.clone(),
                                status: out.status_text(),
                                stderr: out.stderr_text(),
                            },
                            _ => HostError::Command {
                                host: t.host().to_string(),
                                op: step.op(),
                                status: out.status_text(),
                                stderr: out.stderr_text(),
                            }
                            .into(),
                        },
                    ));
                }
                Step::Stash(path) => touched
                    .stashed
                    .push((path.clone(), hosts::read_stash(&out.stdout_text()))),
                Step::Env(path, keys) => {
                    tracing::info!(host = t.host(), path, keys, "env file written");
                }
                Step::EnvKey => tracing::info!(host = t.host(), "env fingerprint key written"),
                Step::Restart(_) => {}
            }
        }
        self.restart_and_wait(host, v, &self.cancel, true, first)
            .await
            .map_err(|(phase, e)| fail(phase, e))?;
        tracing::info!(host = %host.name, version = %v, "host deployed");
        Ok(())
    }

    /// Puts a host back: env files restored, `current` back on `before` and restarted (or, when
    /// there was no release before, stopped and the new release removed).
    pub(super) async fn back(
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
                self.restart_and_wait(host, prev, &CancellationToken::new(), false, None)
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
                        let cmds = self
                            .role_commands(template, host, &target.version, *role)
                            .map_err(fail)?;
                        self.run_all(host, &cmds).await.map_err(fail)?;
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
                    self.run_all(h, &self.role_commands(template, h, &version, *role)?)
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

    /// The rollout's batches: every host with the API role first, then the worker-only
    /// hosts, each in batches of `max_parallel`; so every API host is switched and ready
    /// before any worker host is switched, whatever `max_parallel` is (the service's
    /// docs/29-deployment-howto-production.md, "Deployment Sequence" steps 4-6, lines 78-84:
    /// start the API instances, verify health, then start the workers).
    pub(super) fn batches<'a>(&self, hosts: &[&'a Host]) -> Vec<Vec<&'a Host>> {
        let (api, workers): (Vec<&Host>, Vec<&Host>) =
            hosts.iter().partition(|h| h.roles.contains(&Role::Api));
        let n = self.strategy.max_parallel.max(1);
        api.chunks(n)
            .chain(workers.chunks(n))
            .map(<[&Host]>::to_vec)
            .collect()
    }

    /// Stops worker processes `from..=to` (`{{instance}}`) on every worker host, for the
    /// release each runs: what lowering `worker_processes` leaves running. Per host, the error
    /// when one could not be stopped.
    pub async fn stop_worker_instances(&self, from: u32, to: u32) -> Vec<(String, ReleaseError)> {
        let Some(template) = self.commands.stop.get(&Role::Worker) else {
            return Vec::new();
        };
        let results = join_all(
            self.hosts
                .iter()
                .filter(|h| h.roles.contains(&Role::Worker))
                .map(|h| async move {
                    let r = async {
                        let Some(version) = hosts::current(&*h.transport, &self.deploy_dir).await?
                        else {
                            return Ok(());
                        };
                        for i in from..=to {
                            let cmd =
                                self.instance_command(template, h, &version, Role::Worker, i)?;
                            self.run(h, &cmd).await?;
                            tracing::info!(host = %h.name, instance = i, "worker process stopped");
                        }
                        Ok::<_, ReleaseError>(())
                    }
                    .await;
                    (h.name.clone(), r)
                }),
        )
        .await;
        results
            .into_iter()
            .filter_map(|(n, r)| r.err().map(|e| (n, e)))
            .collect()
    }

    /// Re-reads every host (the end state to report); a host that cannot be read keeps `last`.
    pub(super) async fn observe_all(
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
        let started: Vec<u64> = self
            .hosts
            .iter()
            .map(|h| h.transport.commands_started())
            .collect();
        let (mut locks, failures, opened) =
            self.lock_and_read_all(&env_roles, &target.version).await;
        if !failures.is_empty() {
            out.failures = failures;
            self.unlock_all(&locks).await;
            return out;
        }
        let renewer = self.spawn_renewal(&locks);
        self.run_locked(
            target,
            watch,
            rehearse,
            &env_roles,
            opened,
            (&mut locks, &renewer),
            &mut out,
        )
        .await;
        renewer.cancel();
        self.unlock_all(&locks).await;
        for (h, before) in self.hosts.iter().zip(started) {
            tracing::info!(
                host = %h.name,
                commands = h.transport.commands_started().saturating_sub(before),
                changed = out.changed_hosts.contains(&h.name),
                "host commands in this deployment"
            );
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_locked(
        &self,
        target: &Target,
        watch: Option<&Watch>,
        rehearse: bool,
        env_roles: &[Role],
        opened: Vec<Option<Opened>>,
        (locks, renewer): (&mut [Option<DeployLock>], &CancellationToken),
        out: &mut Outcome,
    ) {
        // What is live before anything changes: read with the lock, or now.
        let mut probes: BTreeMap<String, String> = BTreeMap::new();
        let mut listings: BTreeMap<String, hosts::Installed> = BTreeMap::new();
        let states = join_all(self.hosts.iter().zip(opened).map(|(h, o)| {
            let state = o.map(|o| {
                if let Some(p) = o.probe {
                    probes.insert(h.name.clone(), p);
                }
                if let Some(l) = o.installed {
                    listings.insert(h.name.clone(), l);
                }
                o.state
            });
            async move {
                match state {
                    Some(s) => s,
                    None => observe(&*h.transport, &self.deploy_dir, env_roles).await,
                }
            }
        }))
        .await;
        let mut live = BTreeMap::new();
        for (h, r) in self.hosts.iter().zip(states) {
            match r {
                Ok(s) => {
                    live.insert(h.name.clone(), s);
                }
                Err(e) => out
                    .failures
                    .push(failure(&h.name, &target.version, Phase::Inspect, e)),
            }
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
        out.env_fingerprints = target
            .env
            .iter()
            .filter_map(|(r, env)| {
                let holders: Vec<(&str, &str)> = self
                    .hosts
                    .iter()
                    .filter(|h| h.roles.contains(r))
                    .map(|h| (h.name.as_str(), h.address.as_str()))
                    .collect();
                super::role_env_fingerprint(Some(&key), &self.deploy_dir, &holders, *r, env)
                    .ok()
                    .map(|s| (*r, s))
            })
            .collect();
        for h in &self.hosts {
            out.before
                .insert(h.name.clone(), live[&h.name].version.clone());
        }
        // Each host's own file (templates expanded for it) is what it must have.
        let in_place = |h: &Host| {
            let s = &live[&h.name];
            let env_ok = h.roles.iter().all(|r| match target.env.get(r) {
                Some(env) => {
                    let e = super::host_env(env, &self.deploy_dir, &h.name, &h.address, *r);
                    hosts::env_fingerprint(&key, &e)
                        .is_ok_and(|f| s.env_fingerprint(*r) == Some(f.as_str()))
                }
                None => true,
            });
            s.version.as_deref() == Some(target.version.as_str())
                && target.artifacts.installed_on(s, &h.roles)
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
        let installs = join_all(
            todo.iter()
                .map(|h| self.install(h, target, probes.get(&h.name).map(String::as_str))),
        )
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
            for (n, batch) in self.batches(&todo).iter().enumerate() {
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

        // Hosts whose rollback target may not come back (see `Target::unsafe_rollback`).
        let before_all = out.before.clone();
        let refused = |h: &Host| {
            let prev = before_all.get(&h.name).cloned().flatten()?;
            let reason = target.unsafe_rollback.get(&prev)?;
            Some(failure(
                &h.name,
                &prev,
                Phase::Rollback,
                ReleaseError::RollbackRefused {
                    version: prev.clone(),
                    reason: reason.clone(),
                },
            ))
        };
        let rehearsal_refused: Vec<Failure> = if rehearse {
            todo.iter().filter_map(|h| refused(h)).collect()
        } else {
            Vec::new()
        };
        if out.failures.is_empty() && !rehearsal_refused.is_empty() {
            tracing::warn!(
                "rollback rehearsal not done: it would run binaries older than an applied contract migration"
            );
            out.rollback_refused = rehearsal_refused
                .into_iter()
                .map(|f| Failure {
                    phase: Phase::Rehearse,
                    ..f
                })
                .collect();
        } else if out.failures.is_empty() && rehearse {
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
            // A switched host whose previous release may not run against today's schema stays
            // on the new release (staged-only hosts never left their release: undone as usual).
            let undo: Vec<&Host> = undo
                .into_iter()
                .filter(|h| {
                    let switched = touched.get(&h.name).is_some_and(|t| t.switched);
                    match refused(h).filter(|_| switched) {
                        Some(f) => {
                            tracing::warn!(host = %h.name, to = %f.version, "rollback refused: older than an applied contract migration");
                            out.rollback_refused.push(f);
                            false
                        }
                        None => true,
                    }
                })
                .collect();
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
        }

        // Clean-up after a success, the last look at each host and its unlock: one command.
        renewer.cancel();
        let finish = out.failures.is_empty().then_some(Finish {
            todo: &todo,
            target,
            touched: &touched,
            listings: &listings,
        });
        for (name, e) in self
            .close_all(finish, env_roles, locks, &mut live, out)
            .await
        {
            out.warnings.push(format!(
                "{name}: could not read the host after the deployment, reporting what was last seen: {e}"
            ));
            let rollback_failed = out
                .rollback_failures
                .iter()
                .chain(&out.rollback_refused)
                .any(|f| f.host == name);
            if let Some(s) = live.get_mut(&name)
                && touched.get(&name).is_some_and(|t| t.switched)
                && (!out.rolled_back || rollback_failed)
            {
                s.version = Some(target.version.clone());
                let roles = self
                    .hosts
                    .iter()
                    .find(|h| h.name == name)
                    .map(|h| h.roles.clone())
                    .unwrap_or_default();
                target.artifacts.record_on(s, &roles);
            }
        }
        out.hosts = live;
    }

    /// Stages `target`'s archives for `host` as `releases/<version>`: the single archive, or
    /// the archives of the host's roles only, each unpacked as `<role>/`.
    async fn install(
        &self,
        host: &Host,
        target: &Target,
        probed: Option<&str>,
    ) -> Result<hosts::InstalledRelease, HostError> {
        let t = &*host.transport;
        match &target.artifacts {
            Artifacts::Single(a) => {
                hosts::install_release_probed(
                    t,
                    &self.deploy_dir,
                    &target.version,
                    &a.path,
                    &a.sha256,
                    probed,
                )
                .await
            }
            Artifacts::PerRole(m) => {
                let parts: Vec<hosts::RolePart<'_>> = host
                    .roles
                    .iter()
                    .filter_map(|r| {
                        let a = m.get(r)?;
                        Some(hosts::RolePart {
                            dir: r.as_str(),
                            artifact: &a.path,
                            sha256: &a.sha256,
                        })
                    })
                    .collect();
                hosts::install_role_release_probed(
                    t,
                    &self.deploy_dir,
                    &target.version,
                    &parts,
                    probed,
                )
                .await
            }
        }
    }
}

/// The time a file step of [`Deployment::forward`]'s command adds to its limit.
const FILE_STEP: std::time::Duration = std::time::Duration::from_secs(10);

/// One step of [`Deployment::forward`]'s command.
#[derive(Debug)]
enum Step {
    EnvKey,
    /// The env file at this path is stashed.
    Stash(String),
    /// The env file at this path is written (with this many keys).
    Env(String, usize),
    Switch,
    /// A restart command, as configured (templates expanded).
    Restart(String),
}

impl Step {
    fn op(&self) -> &'static str {
        match self {
            Step::EnvKey => "write env fingerprint key",
            Step::Stash(_) => "stash file",
            Step::Env(..) => "write env file",
            Step::Switch => "switch current",
            Step::Restart(_) => "restart",
        }
    }

    fn phase(&self) -> Phase {
        match self {
            Step::EnvKey | Step::Stash(_) | Step::Env(..) => Phase::Env,
            Step::Switch => Phase::Switch,
            Step::Restart(_) => Phase::Restart,
        }
    }
}

/// A configured command as a step of a [`hosts::Batch`]: `eval` of the command's text (parsed
/// when it runs, by the same shell, as when it is a command of its own; a syntax error fails
/// this step only).
pub(super) fn user_command(command: &str) -> String {
    format!("eval {}", hosts::shell_quote(command))
}
