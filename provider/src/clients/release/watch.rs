//! After the switch: the watch window (readiness and backlog kept under watch for a while) and
//! the rollback rehearsal (back to the earlier release and forward again).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::{
    Deployment, Failure, Host, OPS_INTERVAL, Outcome, PROBE_TIMEOUT, Phase, ReleaseError, Target,
    Touched, Watch, describe_readiness, failure,
};
use crate::clients::api::{self, ApiClient};
use crate::clients::ops;

impl Deployment {
    /// Rolls every changed host back to its earlier release and forward again, checking
    /// readiness both ways. `None` when some host has no earlier release.
    pub(super) async fn rehearse(
        &self,
        todo: &[&Host],
        target: &Target,
        before: &BTreeMap<String, Option<String>>,
        touched: &mut BTreeMap<String, Touched>,
    ) -> Result<Option<DateTime<Utc>>, Failure> {
        let prev = |h: &Host| before.get(&h.name).cloned().flatten();
        if todo.is_empty()
            || todo
                .iter()
                .any(|h| prev(h).is_none_or(|p| p == target.version))
        {
            return Ok(None);
        }
        tracing::info!("rehearsing the rollback");
        for batch in self.batches(todo) {
            let results = join_all(batch.iter().map(|h| {
                let t = touched.get(&h.name).cloned().unwrap_or_default();
                let p = prev(h);
                async move { self.back(h, p.as_deref(), target, &t, true).await }
            }))
            .await;
            if let Some(Err(f)) = results.into_iter().find(Result::is_err) {
                return Err(Failure {
                    phase: Phase::Rehearse,
                    ..f
                });
            }
        }
        tracing::info!("rehearsal: rolled back; rolling forward again");
        for batch in self.batches(todo) {
            let results = join_all(batch.iter().map(|h| {
                let mut t = touched.get(&h.name).cloned().unwrap_or_default();
                async move {
                    let r = self.forward(h, target, &mut t, false).await;
                    (h.name.clone(), t, r)
                }
            }))
            .await;
            for (name, t, r) in results {
                touched.insert(name, t);
                if let Err(f) = r {
                    return Err(Failure {
                        phase: Phase::Rehearse,
                        ..f
                    });
                }
            }
        }
        Ok(Some(Utc::now()))
    }

    /// Keeps probing readiness (and the ops summary) for the watch window.
    pub(super) async fn watch(
        &self,
        w: &Watch,
        target: &Target,
        baseline: Option<&BTreeMap<String, i64>>,
        out: &mut Outcome,
    ) -> Result<(), Failure> {
        tracing::info!(duration_s = w.duration.as_secs(), "watch window started");
        let end = Instant::now() + w.duration;
        let apis: Vec<(&str, &ApiClient)> = self
            .hosts
            .iter()
            .filter_map(|h| h.api.as_ref().map(|a| (h.name.as_str(), a)))
            .collect();
        let mut not_ready_since: BTreeMap<&str, (Instant, String)> = BTreeMap::new();
        let mut next_ops = Instant::now();
        let mut warned_growth = false;
        while Instant::now() < end {
            if self.cancel.is_cancelled() {
                return Err(failure(
                    "(all hosts)",
                    &target.version,
                    Phase::Interrupted,
                    ReleaseError::WatchInterrupted,
                ));
            }
            let probes = join_all(apis.iter().map(|(_, a)| a.ready(PROBE_TIMEOUT))).await;
            for ((name, _), r) in apis.iter().zip(probes) {
                let bad = match r {
                    Ok(r) if r.body.status != api::NOT_READY => None,
                    Ok(r) => Some(describe_readiness(&r)),
                    Err(e) => Some(e.to_string()),
                };
                match bad {
                    None => {
                        not_ready_since.remove(name);
                    }
                    Some(why) => {
                        let since = not_ready_since
                            .entry(name)
                            .or_insert_with(|| (Instant::now(), why.clone()));
                        since.1 = why;
                        if since.0.elapsed() > w.max_not_ready {
                            return Err(failure(
                                name,
                                &target.version,
                                Phase::Watch,
                                ReleaseError::NotReadyDuringWatch {
                                    limit: w.max_not_ready,
                                    last: since.1.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            if let (Some(o), Some(base)) = (&w.ops, baseline)
                && Instant::now() >= next_ops
            {
                next_ops = Instant::now() + OPS_INTERVAL;
                match o.api.ops_summary(&o.token).await {
                    Ok(s) => {
                        let grown = ops::regressions(&s, base, &o.overrides);
                        if !grown.is_empty() {
                            let detail = ReleaseError::BacklogRegressed { regressions: grown };
                            if o.rollback_on_growth {
                                return Err(failure(
                                    "(all hosts)",
                                    &target.version,
                                    Phase::Watch,
                                    detail,
                                ));
                            } else if !warned_growth {
                                warned_growth = true;
                                out.warnings.push(detail.to_string());
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "watch: ops summary unavailable"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(w.poll_interval) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
        tracing::info!("watch window passed");
        Ok(())
    }
}
