//! One deployment: lock every host, stage the artifact, per batch forward (env files, switch,
//! restart, wait), on a failure put every touched host back, finish (revisions, stashes,
//! pruning); and stopping the hosts' roles.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::{
    Artifacts, Deployment, Failure, Host, HostState, LOCK_TTL, Outcome, Phase, ReleaseError, Role,
    Stopped, Target, Touched, Watch, env_path, failure, observe,
};
use crate::clients::hosts::{self, DeployLock, EnvKey, HostError};

impl Deployment {
    /// Env files, switch, restart, wait: one host forward to `target`.
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
            let env = super::host_env(env, &self.deploy_dir, &host.name, &host.address, *role);
            hosts::write_env(t, &path, &env)
                .await
                .map_err(|e| fail(Phase::Env, e.into()))?;
        }
        hosts::switch_current(t, &self.deploy_dir, v)
            .await
            .map_err(|e| fail(Phase::Switch, e.into()))?;
        touched.switched = true;
        self.restart_and_wait(host, v, &self.cancel, true)
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
                self.restart_and_wait(host, prev, &CancellationToken::new(), false)
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

    /// Takes every host's lock, waiting for a lock held by someone else to be released or to
    /// expire (bounded by cancellation).
    pub(super) async fn lock_all(&self) -> (Vec<Option<DeployLock>>, Vec<Failure>) {
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

    pub(super) async fn unlock_all(&self, locks: &[Option<DeployLock>]) {
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

    pub(super) fn spawn_renewal(&self, locks: &[Option<DeployLock>]) -> CancellationToken {
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
        let installs = join_all(todo.iter().map(|h| self.install(h, target))).await;
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
        } else {
            let before = out.before.clone();
            self.finish(&todo, target, &before, &touched, out).await;
        }

        for (name, e) in self.observe_all(env_roles, &mut live).await {
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
    ) -> Result<hosts::InstalledRelease, HostError> {
        let t = &*host.transport;
        match &target.artifacts {
            Artifacts::Single(a) => {
                hosts::install_release(t, &self.deploy_dir, &target.version, &a.path, &a.sha256)
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
                hosts::install_role_release(t, &self.deploy_dir, &target.version, &parts).await
            }
        }
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
            let parts = match &target.artifacts {
                Artifacts::Single(_) => String::new(),
                Artifacts::PerRole(m) => h
                    .roles
                    .iter()
                    .filter_map(|r| Some(format!(" {r}_sha256={}", m.get(r)?.sha256)))
                    .collect(),
            };
            let line = format!(
                "{at} version={} sha256={}{parts} previous={} by={}",
                target.version,
                target.artifacts.host_sha256(&h.roles),
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
}
