//! A deployment's first and last command on each host: the deploy lock taken together with
//! the reads the deployment starts from (state, stage probe, installed releases), and the
//! clean-up, last look and unlock at the end, each one [`hosts::Batch`]; the lock's renewal
//! in between.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::{
    Artifacts, Deployment, Failure, Host, HostState, LOCK_TTL, Outcome, Phase, Role, Target,
    Touched, env_files, failure, host_state,
};
use crate::clients::hosts::{self, DeployLock, HostError};

impl Deployment {
    /// Takes `h`'s lock, waiting for a lock held by someone else to be released or to expire
    /// (bounded by cancellation).
    async fn lock_one(&self, h: &Host) -> Result<DeployLock, HostError> {
        let mut waited = false;
        loop {
            match hosts::acquire_lock(&*h.transport, &self.deploy_dir, &self.lock_owner, LOCK_TTL)
                .await
            {
                Ok(l) => return Ok(l),
                Err(HostError::LockHeld {
                    holder,
                    remaining_secs,
                    ..
                }) if !self.cancel.is_cancelled() => {
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
    }

    /// Takes every host's lock (see [`Deployment::lock_one`]).
    pub(super) async fn lock_all(&self) -> (Vec<Option<DeployLock>>, Vec<Failure>) {
        let locks = join_all(self.hosts.iter().map(|h| self.lock_one(h))).await;
        self.lock_results(locks)
    }

    fn lock_results(
        &self,
        locks: Vec<Result<DeployLock, HostError>>,
    ) -> (Vec<Option<DeployLock>>, Vec<Failure>) {
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

    /// Takes every host's lock and, in the same command, reads what the deployment needs
    /// first: the host's state for `roles`, the stage probe of `version` and the installed
    /// releases (kept only when the lock was taken by that command: under the lock they stay
    /// true). A lock that is held, expired or contested takes the full protocol
    /// ([`Deployment::lock_one`]), and its host is read afterwards.
    pub(super) async fn lock_and_read_all(
        &self,
        roles: &[Role],
        version: &str,
    ) -> (Vec<Option<DeployLock>>, Vec<Failure>, Vec<Option<Opened>>) {
        let results = join_all(self.hosts.iter().map(|h| async move {
            match self.lock_and_read(h, roles, version).await {
                Ok(Some((lock, opened))) => (Ok(lock), Some(opened)),
                Ok(None) => (self.lock_one(h).await, None),
                Err(e) => (Err(e), None),
            }
        }))
        .await;
        let (locks, opened): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        let (locks, failures) = self.lock_results(locks);
        (locks, failures, opened)
    }

    async fn lock_and_read(
        &self,
        h: &Host,
        roles: &[Role],
        version: &str,
    ) -> Result<Option<(DeployLock, Opened)>, HostError> {
        let t = &*h.transport;
        let timeouts = t.timeouts();
        let attempt = hosts::LockAttempt::new(&self.deploy_dir, &self.lock_owner, LOCK_TTL)?;
        let files = env_files(&self.deploy_dir, roles);
        let mut batch = hosts::Batch::stopping_at_failure();
        let l = batch.push(
            "acquire deploy lock",
            attempt.script.clone(),
            timeouts.command,
        );
        let i = batch.push(
            "inspect host",
            hosts::inspect_command(&self.deploy_dir, &files)?,
            timeouts.transfer,
        );
        let p = batch.push(
            "install release",
            hosts::stage_probe_command(&self.deploy_dir, version)?,
            timeouts.command,
        );
        let r = batch.push(
            "list releases",
            hosts::installed_command(&self.deploy_dir)?,
            timeouts.command,
        );
        let ran = batch.run(t).await;
        match attempt.read(t.host(), &ran.required(l)?) {
            Ok(hosts::Attempted::Acquired(lock)) => {
                let state = ran
                    .required(i)
                    .and_then(|o| hosts::read_inspection(t.host(), &files, &o))
                    .map(|f| host_state(f, roles, &files));
                Ok(Some((
                    lock,
                    Opened {
                        state,
                        probe: ran.ok(p).and_then(Result::ok),
                        installed: ran
                            .ok(r)
                            .and_then(Result::ok)
                            .map(|o| hosts::parse_installed(&o)),
                    },
                )))
            }
            Ok(_) | Err(HostError::LockHeld { .. }) => Ok(None),
            Err(e) => Err(e),
        }
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

    /// The end of a deployment on every host, one command each: after a success (`finish`),
    /// on the hosts it changed, the revisions log, stashes dropped and old releases pruned;
    /// then on every host the last look (`live` updated; the hosts that could not be read are
    /// returned) and the deploy lock released (its slot emptied).
    pub(super) async fn close_all(
        &self,
        finish: Option<Finish<'_>>,
        roles: &[Role],
        locks: &mut [Option<DeployLock>],
        live: &mut BTreeMap<String, HostState>,
        out: &mut Outcome,
    ) -> Vec<(String, HostError)> {
        let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let files = env_files(&self.deploy_dir, roles);
        let results = join_all(self.hosts.iter().zip(locks.iter()).map(|(h, lock)| {
            let files = &files;
            let finish = finish
                .as_ref()
                .filter(|f| f.todo.iter().any(|t| t.name == h.name));
            let before = out.before.get(&h.name).cloned().flatten();
            let at = at.as_str();
            async move {
                let t = &*h.transport;
                let timeouts = t.timeouts();
                let mut batch = hosts::Batch::new();
                let mut cleanup = Vec::new();
                let mut prune_later = false;
                let mut cleanup_error = None;
                if let Some(f) = finish {
                    match self.finish_steps(h, f, before.as_deref(), at) {
                        Ok((steps, listed)) => {
                            prune_later = !listed;
                            for (op, script) in steps {
                                cleanup.push(batch.push(op, script, timeouts.transfer));
                            }
                        }
                        Err(e) => cleanup_error = Some(e),
                    }
                }
                let look = hosts::inspect_command(&self.deploy_dir, files)
                    .map(|c| batch.push("inspect host", c, timeouts.transfer));
                let unlock = lock
                    .as_ref()
                    .and_then(|l| hosts::release_lock_command(l).ok().map(|c| (l, c)))
                    .map(|(l, c)| (l, batch.push("release deploy lock", c, timeouts.command)));
                let ran = batch.run(t).await;
                let cleanup_error =
                    cleanup_error.or_else(|| cleanup.iter().find_map(|i| ran.required(*i).err()));
                let mut cleanup_error = cleanup_error;
                if prune_later && cleanup_error.is_none() {
                    let protect: Vec<&str> = before.iter().map(String::as_str).collect();
                    cleanup_error = hosts::prune(
                        t,
                        &self.deploy_dir,
                        self.strategy.keep_releases.max(1),
                        &protect,
                    )
                    .await
                    .err();
                }
                let state = look.and_then(|i| {
                    ran.required(i)
                        .and_then(|o| hosts::read_inspection(t.host(), files, &o))
                        .map(|f| host_state(f, roles, files))
                });
                // A release step that did not run (the command was cut off before it) leaves
                // the lock to `unlock_all`.
                let released = match unlock.and_then(|(l, i)| Some((l, ran.ok(i)?))) {
                    Some((l, r)) => {
                        if let Err(e) = r.and_then(|o| hosts::read_release(t.host(), l, &o)) {
                            tracing::warn!(host = %h.name, error = %e, "could not release the deploy lock");
                        }
                        true
                    }
                    None => false,
                };
                (cleanup_error, state, released)
            }
        }))
        .await;
        let mut errors = Vec::new();
        for ((h, (cleanup_error, state, released)), lock) in
            self.hosts.iter().zip(results).zip(locks.iter_mut())
        {
            if let Some(e) = cleanup_error {
                out.warnings.push(format!(
                    "{}: deployed, but the clean-up failed: {e}",
                    h.name
                ));
            }
            match state {
                Ok(s) => {
                    live.insert(h.name.clone(), s);
                }
                Err(e) => errors.push((h.name.clone(), e)),
            }
            if released {
                *lock = None;
            }
        }
        errors
    }

    /// The clean-up steps of a host `finish` changed: its revision line, stashes dropped,
    /// old releases pruned (when the releases were listed with the lock; else `false`, and
    /// [`hosts::prune`] lists them again).
    fn finish_steps(
        &self,
        h: &Host,
        f: &Finish<'_>,
        prev: Option<&str>,
        at: &str,
    ) -> Result<(Steps, bool), HostError> {
        let target = f.target;
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
            prev.unwrap_or("-"),
            self.lock_owner
        );
        let mut steps = vec![(
            "append revision",
            hosts::append_revision_command(&self.deploy_dir, &line)?,
        )];
        let touched = f.touched.get(&h.name);
        for (path, _) in touched.map(|t| t.stashed.as_slice()).unwrap_or_default() {
            steps.push(("drop stash", hosts::drop_stash_command(path)?));
        }
        let Some(listed) = f.listings.get(&h.name) else {
            return Ok((steps, false));
        };
        let staged = touched
            .is_some_and(|t| t.installed)
            .then_some(target.version.as_str());
        let protect: Vec<&str> = prev.into_iter().collect();
        steps.push((
            "prune releases",
            hosts::prune_command(
                &self.deploy_dir,
                listed,
                staged,
                &target.version,
                self.strategy.keep_releases.max(1),
                &protect,
            )?,
        ));
        Ok((steps, true))
    }
}

/// Steps of a [`hosts::Batch`]: (operation, script).
type Steps = Vec<(&'static str, String)>;

/// What a successful deployment cleans up ([`Deployment::close_all`]).
pub(super) struct Finish<'a> {
    pub(super) todo: &'a [&'a Host],
    pub(super) target: &'a Target,
    pub(super) touched: &'a BTreeMap<String, Touched>,
    pub(super) listings: &'a BTreeMap<String, hosts::Installed>,
}

/// What [`Deployment::lock_and_read_all`] read on a host with its lock.
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) state: Result<HostState, HostError>,
    /// What [`hosts::stage_probe_command`] printed.
    pub(super) probe: Option<String>,
    pub(super) installed: Option<hosts::Installed>,
}
