//! A rollback on demand: every host put back on the release it ran before its current one,
//! now, with the automatic rollback's engine ([`Deployment::back`]: `current` switched back,
//! restarted, readiness waited for, API hosts before worker-only hosts, under every host's
//! deploy lock) and the same class C rule ([`Target::unsafe_rollback`], computed by
//! [`unsafe_rollbacks`]). The service's docs/25-upgrade-rollback-runbook.md, "Rollback
//! Procedure" steps 1-2 (lines 68-69 at f628e74d): stop the new release, redeploy the previous
//! known-good binaries.
//!
//! Which release is "previous" is read from each host's `revisions.log` (one line per
//! rollout: `<at> version=<v> sha256=<s> previous=<p> by=<owner>`): the `previous=` of the
//! newest rollout line of the release `current` points to. Lines this rollback writes
//! (`rollback-of=<v>`) are history, not rollouts: a second rollback goes one release further
//! back, not forward again. Before anything is touched every host must have a current and a
//! previous release, and no host's previous release may be unsafe (then nothing is done).
//! A host that does not become ready on its previous release fails the rollback: every host
//! already switched is put back on the release it ran (the deploy's atomic rule, reversed).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use futures::future::join_all;

use super::{
    Archive, Artifacts, Deployment, Failure, Host, HostState, Phase, ReleaseError, Role, Target,
    Touched, failure,
};
use crate::clients::hosts;

/// What a rollback did and what is live now.
#[derive(Clone, Debug, Default)]
pub struct RollbackOutcome {
    /// Per host, the release it ran before the rollback.
    pub from: BTreeMap<String, String>,
    /// Per host, the release it was to be put back on.
    pub to: BTreeMap<String, String>,
    /// Hosts now running their previous release (in the order they were rolled back).
    pub rolled_back: Vec<String>,
    pub failures: Vec<Failure>,
    /// Hosts put back on `from` after a failure, and failures doing so.
    pub restored: Vec<String>,
    pub restore_failures: Vec<Failure>,
    /// Not done: a host's previous release is older than an applied class C migration.
    pub refused: Vec<Failure>,
    pub warnings: Vec<String>,
    /// Live per host at the end (as last seen).
    pub hosts: BTreeMap<String, HostState>,
}

impl RollbackOutcome {
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && self.refused.is_empty() && self.restore_failures.is_empty()
    }
}

/// One `revisions.log` line's fields before `by=` (the owner, last, may hold spaces).
fn fields(line: &str) -> BTreeMap<&str, &str> {
    let head = line.split(" by=").next().unwrap_or(line);
    head.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

/// The release `current` ran after, from `revisions.log` (oldest line first): the
/// `previous=` of the newest rollout line of `current`; rollback lines are skipped. `None`:
/// not recorded, or `-` (nothing before it).
pub fn previous_release(revisions: &[String], current: &str) -> Option<String> {
    revisions
        .iter()
        .rev()
        .map(|l| fields(l))
        .find(|f| f.get("version") == Some(&current) && !f.contains_key("rollback-of"))
        .and_then(|f| f.get("previous").map(|p| p.to_string()))
        .filter(|p| p != "-" && !p.is_empty())
}

/// The versions a rollback must not put back in service, with why: each version recorded in
/// `deployed_schemas` (`recorded`: version → the schema head it was deployed against) with a
/// head older than an applied class C (contract) migration up to `head`. The service's
/// docs/41-migration-compatibility-policy.md ("Rollback Policy", lines 94-97): an
/// application-only rollback is valid only while the schema stays backward compatible; else
/// a restore (docs/25-upgrade-rollback-runbook.md, "Rollback Procedure" step 3, lines 66-76).
/// Migration versions are file names, ordered as they are applied (by name). `backup_id`
/// names the pre-release backup in the message.
pub fn unsafe_rollbacks(
    head: Option<&str>,
    classes: Option<&BTreeMap<String, String>>,
    recorded: Option<&BTreeMap<String, String>>,
    backup_id: Option<&str>,
) -> BTreeMap<String, String> {
    let (Some(head), Some(classes), Some(recorded)) = (head, classes, recorded) else {
        return BTreeMap::new();
    };
    let backup = match backup_id {
        Some(id) => format!("the pre-release backup `{id}` (change.backup_id)"),
        None => "the pre-release backup (no change.backup_id is set: the newest artifortress_backup taken before the migration)".to_string(),
    };
    recorded
        .iter()
        .filter_map(|(version, deployed_with)| {
            let contract: Vec<&str> = classes
                .iter()
                .filter(|(m, c)| {
                    c.as_str() == "C" && m.as_str() > deployed_with.as_str() && m.as_str() <= head
                })
                .map(|(m, _)| m.as_str())
                .collect();
            if contract.is_empty() {
                return None;
            }
            Some((
                version.clone(),
                format!(
                    "it was deployed against schema {deployed_with}, and class C (contract) migration {} has been applied since; it may not run against the schema it would find (docs/41-migration-compatibility-policy.md, Rollback Policy: an application-only rollback is valid only while the schema stays backward compatible). The way back to {version} is a database restore from {backup}, then {version} deployed against the restored schema (docs/25-upgrade-rollback-runbook.md, Rollback Procedure: restore from the backup, `make db-restore`, and re-run the migrations compatible with the rollback baseline).",
                    contract.join(", ")
                ),
            ))
        })
        .collect()
}

/// A target naming only a version: what [`Deployment::back`] needs to put a host on another
/// release that is already installed (nothing is uploaded, no env file is written).
fn installed(version: &str) -> Target {
    Target {
        version: version.to_string(),
        // Nothing is uploaded: `back` switches to what the host has installed.
        artifacts: Artifacts::Single(Archive {
            path: PathBuf::new(),
            sha256: String::new(),
        }),
        env: BTreeMap::new(),
        env_key: None,
        unsafe_rollback: BTreeMap::new(),
    }
}

/// `current` switched by this run (nothing stashed, nothing installed).
fn switched() -> Touched {
    Touched {
        stashed: Vec::new(),
        switched: true,
        installed: false,
    }
}

impl Deployment {
    /// Puts every host back on its previous release now (see the module's documentation).
    /// `unsafe_rollback`: versions that may not be put back, with why ([`unsafe_rollbacks`]).
    /// `progress` hears each step. Never panics, never leaves a lock of its own behind.
    pub async fn rollback(
        &self,
        unsafe_rollback: &BTreeMap<String, String>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> RollbackOutcome {
        let mut out = RollbackOutcome::default();
        let (locks, failures) = self.lock_all().await;
        if !failures.is_empty() {
            out.failures = failures;
            self.unlock_all(&locks).await;
            return out;
        }
        progress(format!("{} host(s) locked", self.hosts.len()));
        let renewer = self.spawn_renewal(&locks);
        self.rollback_locked(unsafe_rollback, progress, &mut out)
            .await;
        renewer.cancel();
        self.unlock_all(&locks).await;
        out
    }

    async fn rollback_locked(
        &self,
        unsafe_rollback: &BTreeMap<String, String>,
        progress: &(dyn Fn(String) + Send + Sync),
        out: &mut RollbackOutcome,
    ) {
        let roles: Vec<Role> = Vec::new();
        // Where each host is and where it goes back to; nothing is touched until every host
        // has an answer.
        let found = join_all(self.hosts.iter().map(|h| async move {
            let t = &*h.transport;
            let current = hosts::current(t, &self.deploy_dir).await?;
            let revisions = hosts::revisions(t, &self.deploy_dir, 10_000).await?;
            Ok::<_, hosts::HostError>((current, revisions))
        }))
        .await;
        for (h, r) in self.hosts.iter().zip(found) {
            let (current, revisions) = match r {
                Ok(x) => x,
                Err(e) => {
                    out.failures.push(failure(&h.name, "", Phase::Inspect, e));
                    continue;
                }
            };
            let Some(current) = current else {
                out.failures.push(failure(
                    &h.name,
                    "",
                    Phase::Inspect,
                    ReleaseError::NoPreviousRelease { current: None },
                ));
                continue;
            };
            match previous_release(&revisions, &current) {
                Some(prev) => {
                    out.from.insert(h.name.clone(), current);
                    out.to.insert(h.name.clone(), prev);
                }
                None => out.failures.push(failure(
                    &h.name,
                    &current,
                    Phase::Inspect,
                    ReleaseError::NoPreviousRelease {
                        current: Some(current.clone()),
                    },
                )),
            }
        }
        if out.failures.is_empty() {
            for h in &self.hosts {
                let prev = &out.to[&h.name];
                if let Some(reason) = unsafe_rollback.get(prev) {
                    out.refused.push(failure(
                        &h.name,
                        prev,
                        Phase::Rollback,
                        ReleaseError::RollbackRefused {
                            version: prev.clone(),
                            reason: reason.clone(),
                        },
                    ));
                }
            }
        }
        if out.failures.is_empty() && out.refused.is_empty() {
            for h in &self.hosts {
                progress(format!(
                    "{}: {} → {}",
                    h.name, out.from[&h.name], out.to[&h.name]
                ));
            }
            let all: Vec<&Host> = self.hosts.iter().collect();
            'batches: for batch in self.batches(&all) {
                let results = join_all(batch.iter().map(|h| {
                    let (from, to) = (out.from[&h.name].clone(), out.to[&h.name].clone());
                    async move {
                        self.back(h, Some(&to), &installed(&from), &switched(), true)
                            .await
                    }
                }))
                .await;
                for (h, r) in batch.iter().zip(results) {
                    match r {
                        Ok(()) => {
                            progress(format!("{}: on {}, ready", h.name, out.to[&h.name]));
                            out.rolled_back.push(h.name.clone());
                        }
                        Err(f) => {
                            progress(format!("{}: failed: {}", h.name, f.detail));
                            out.failures.push(f);
                        }
                    }
                }
                if !out.failures.is_empty() {
                    // Every host switched (the failed ones too) goes back to what it ran.
                    let switched_hosts: Vec<&Host> = all
                        .iter()
                        .copied()
                        .filter(|h| {
                            out.rolled_back.contains(&h.name)
                                || out.failures.iter().any(|f| f.host == h.name)
                        })
                        .collect();
                    for h in switched_hosts {
                        let (from, to) = (&out.from[&h.name], &out.to[&h.name]);
                        match self
                            .back(h, Some(from), &installed(to), &switched(), true)
                            .await
                        {
                            Ok(()) => {
                                progress(format!("{}: put back on {from}", h.name));
                                out.restored.push(h.name.clone());
                            }
                            Err(f) => out.restore_failures.push(f),
                        }
                    }
                    out.rolled_back.retain(|n| !out.restored.contains(n));
                    break 'batches;
                }
            }
        }
        if out.succeeded() {
            // The hosts' history: one line per host, marked as a rollback.
            let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let results = join_all(self.hosts.iter().map(|h| {
                let (from, to) = (out.from[&h.name].clone(), out.to[&h.name].clone());
                let at = at.clone();
                async move {
                    let t = &*h.transport;
                    let sha = hosts::release_sha256(t, &self.deploy_dir, &to)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "-".into());
                    let line = format!(
                        "{at} version={to} sha256={sha} previous={from} rollback-of={from} by={}",
                        self.lock_owner
                    );
                    hosts::append_revision(t, &self.deploy_dir, &line).await
                }
            }))
            .await;
            for (h, r) in self.hosts.iter().zip(results) {
                if let Err(e) = r {
                    out.warnings.push(format!(
                        "{}: rolled back, but revisions.log could not be written: {e}",
                        h.name
                    ));
                }
            }
        }
        let mut live = BTreeMap::new();
        for (name, e) in self.observe_all(&roles, &mut live).await {
            out.warnings.push(format!(
                "{name}: could not read the host after the rollback: {e}"
            ));
        }
        out.hosts = live;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn the_previous_release_is_the_newest_rollout_of_current_ones_previous() {
        let owner = "by=terraform-provider-artifortress root@box";
        let revisions = log(&[
            &format!("2026-12-01T00:00:00Z version=v1 sha256=a previous=- {owner}"),
            &format!("2026-12-02T00:00:00Z version=v2 sha256=b previous=v1 {owner}"),
            &format!("2026-12-03T00:00:00Z version=v3 sha256=c previous=v2 {owner}"),
        ]);
        assert_eq!(previous_release(&revisions, "v3").as_deref(), Some("v2"));
        assert_eq!(previous_release(&revisions, "v2").as_deref(), Some("v1"));
        // v1 had nothing before it; an unknown release has no record.
        assert_eq!(previous_release(&revisions, "v1"), None);
        assert_eq!(previous_release(&revisions, "v9"), None);
        // After a rollback v3 → v2, a second rollback goes on to v1, not forward to v3.
        let mut after = revisions.clone();
        after.push(format!(
            "2026-12-04T00:00:00Z version=v2 sha256=b previous=v3 rollback-of=v3 {owner}"
        ));
        assert_eq!(previous_release(&after, "v2").as_deref(), Some("v1"));
        // A redeploy of v2 over v3 later is a rollout: its previous is v3.
        after.push(format!(
            "2026-12-05T00:00:00Z version=v2 sha256=b previous=v3 {owner}"
        ));
        assert_eq!(previous_release(&after, "v2").as_deref(), Some("v3"));
        // An owner with `=` and spaces does not confuse the fields.
        let odd = log(&["t version=v2 sha256=b previous=v1 by=x version=v9 previous=v8"]);
        assert_eq!(previous_release(&odd, "v2").as_deref(), Some("v1"));
        assert_eq!(previous_release(&odd, "v9"), None);
    }

    #[test]
    fn unsafe_rollbacks_name_the_contract_migration_and_the_restore_path() {
        let classes = BTreeMap::from([
            ("0001_a.sql".to_string(), "A".to_string()),
            ("0002_b.sql".to_string(), "C".to_string()),
            ("0003_c.sql".to_string(), "B".to_string()),
        ]);
        let recorded = BTreeMap::from([
            ("v1".to_string(), "0001_a.sql".to_string()),
            ("v2".to_string(), "0002_b.sql".to_string()),
        ]);
        let u = unsafe_rollbacks(
            Some("0003_c.sql"),
            Some(&classes),
            Some(&recorded),
            Some("20261205T000000Z-ab"),
        );
        assert_eq!(u.keys().collect::<Vec<_>>(), ["v1"]);
        assert!(
            u["v1"].contains("class C (contract) migration 0002_b.sql"),
            "{}",
            u["v1"]
        );
        assert!(u["v1"].contains("20261205T000000Z-ab"), "{}", u["v1"]);
        assert!(
            u["v1"].contains("docs/25-upgrade-rollback-runbook.md"),
            "{}",
            u["v1"]
        );
        // Before the contract migration is applied (head below it): nothing is unsafe.
        assert!(
            unsafe_rollbacks(Some("0001_a.sql"), Some(&classes), Some(&recorded), None).is_empty()
        );
    }
}
