//! Judging an ops summary: the service's alert thresholds, breaches, and backlog growth against a
//! pre-deploy baseline (contract: "Alert thresholds", "Rollback triggers").

use std::collections::BTreeMap;

use super::api::{self, OpsSummary};

/// The seven counters, in the contract's order.
pub const COUNTERS: [&str; 7] = [
    "pending_outbox_events",
    "available_outbox_events",
    "oldest_pending_outbox_age_seconds",
    "failed_search_jobs",
    "pending_search_jobs",
    "incomplete_gc_runs",
    "recent_policy_timeouts_24h",
];

/// Counters whose growth against a baseline means the worker is falling behind. The policy
/// timeout count is a 24-hour window, not a backlog.
pub const BACKLOG_COUNTERS: [&str; 6] = [
    "pending_outbox_events",
    "available_outbox_events",
    "oldest_pending_outbox_age_seconds",
    "failed_search_jobs",
    "pending_search_jobs",
    "incomplete_gc_runs",
];

/// The pseudo-metric for "readiness status != ready is critical".
pub const READINESS_METRIC: &str = "readiness_status";

/// The trust-material dependencies whose `degraded` status is each its own warning, with the
/// service's rationale (deploy/enterprise-ops-alert-thresholds.yaml:11-20 at f628e74 of the
/// service's repository): `(dependency, pseudo-metric, rationale)`.
pub const TRUST_MATERIAL_CHECKS: [(&str, &str, &str); 2] = [
    (
        "oidc_jwks",
        "oidc_jwks_status",
        "OIDC trust material fallback should be triaged before rollover windows",
    ),
    (
        "saml_metadata",
        "saml_metadata_status",
        "SAML metadata fallback should be triaged before IdP certificate rotation windows",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    None,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "none" | "never" => Some(Severity::None),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A level is breached when the value is strictly greater than it (the contract says
/// "warning > 50"). `None`: no such level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    pub warning: Option<i64>,
    pub critical: Option<i64>,
}

/// The service's own thresholds.
pub fn default_thresholds() -> BTreeMap<&'static str, Levels> {
    let l = |warning, critical| Levels { warning, critical };
    BTreeMap::from([
        ("pending_outbox_events", l(Some(50), Some(200))),
        ("available_outbox_events", l(None, None)),
        ("oldest_pending_outbox_age_seconds", l(Some(300), Some(900))),
        ("failed_search_jobs", l(Some(5), Some(20))),
        ("pending_search_jobs", l(Some(100), None)),
        ("incomplete_gc_runs", l(Some(0), None)),
        ("recent_policy_timeouts_24h", l(Some(0), None)),
    ])
}

/// Per-metric overrides: a level given replaces the service's, a level left out keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides(pub BTreeMap<String, Levels>);

impl Overrides {
    pub fn effective(&self) -> BTreeMap<&'static str, Levels> {
        let mut t = default_thresholds();
        for (metric, given) in &self.0 {
            if let Some(levels) = t.iter_mut().find(|(k, _)| **k == metric.as_str()) {
                if given.warning.is_some() {
                    levels.1.warning = given.warning;
                }
                if given.critical.is_some() {
                    levels.1.critical = given.critical;
                }
            }
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub metric: String,
    pub severity: Severity,
    /// Null for the readiness pseudo-metric.
    pub value: Option<i64>,
    pub threshold: Option<i64>,
    pub detail: String,
}

/// Every breached threshold (the highest level per metric), readiness first, then each
/// trust-material dependency reported `degraded` (a warning of its own, as the service's
/// deploy/enterprise-ops-alert-thresholds.yaml:11-20 says), then the counters.
pub fn breaches(summary: &OpsSummary, overrides: &Overrides) -> Vec<Breach> {
    let mut out = Vec::new();
    if summary.readiness.status != api::READY {
        out.push(Breach {
            metric: READINESS_METRIC.into(),
            severity: Severity::Critical,
            value: None,
            threshold: None,
            detail: format!(
                "readiness status is {:?}, not \"ready\"",
                summary.readiness.status
            ),
        });
    }
    for (dependency, metric, rationale) in TRUST_MATERIAL_CHECKS {
        // The thresholds file reads `dependencies[?name==...].status`; the summary's
        // `trustMaterial` carries the same status when the list does not.
        let found = summary
            .readiness
            .dependencies
            .iter()
            .find(|d| d.name == dependency)
            .map(|d| (d.status.as_str(), d.detail.as_deref()));
        let found = found.or_else(|| {
            let t = match dependency {
                "oidc_jwks" => summary.trust_material.oidc.as_ref(),
                _ => summary.trust_material.saml.as_ref(),
            };
            t.map(|t| (t.status.as_str(), t.detail.as_deref()))
        });
        if let Some((status, detail)) = found
            && status == api::DEGRADED
        {
            out.push(Breach {
                metric: metric.into(),
                severity: Severity::Warning,
                value: None,
                threshold: None,
                detail: format!(
                    "{dependency} is degraded{}: {rationale}",
                    detail.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            });
        }
    }
    let thresholds = overrides.effective();
    for (metric, value) in summary.counters() {
        let levels = thresholds.get(metric).copied().unwrap_or_default();
        let hit = [
            (Severity::Critical, levels.critical),
            (Severity::Warning, levels.warning),
        ]
        .into_iter()
        .find_map(|(sev, lvl)| lvl.filter(|t| value > *t).map(|t| (sev, t)));
        if let Some((severity, threshold)) = hit {
            out.push(Breach {
                metric: metric.into(),
                severity,
                value: Some(value),
                threshold: Some(threshold),
                detail: format!(
                    "{metric} = {value} is above the {} threshold {threshold}",
                    severity.as_str()
                ),
            });
        }
    }
    out
}

pub fn worst(breaches: &[Breach]) -> Severity {
    breaches
        .iter()
        .map(|b| b.severity)
        .max()
        .unwrap_or(Severity::None)
}

/// `current - baseline` for every metric in the baseline, and whether any backlog metric grew.
pub fn growth(
    summary: &OpsSummary,
    baseline: &BTreeMap<String, i64>,
) -> (BTreeMap<String, i64>, bool) {
    let mut deltas = BTreeMap::new();
    let mut grew = false;
    for (metric, value) in summary.counters() {
        if let Some(before) = baseline.get(metric) {
            let d = value - before;
            deltas.insert(metric.to_string(), d);
            grew |= d > 0 && BACKLOG_COUNTERS.contains(&metric);
        }
    }
    (deltas, grew)
}

/// Backlog regressions against a baseline read before a change: critical breaches of backlog
/// counters that the baseline did not have, or, for counts (not ages) that were critical
/// already, growth. An age that was past critical before keeps growing by itself while the
/// same item waits; the change did not cause it and undoing the change would not fix it.
pub fn regressions(
    summary: &OpsSummary,
    baseline: &BTreeMap<String, i64>,
    overrides: &Overrides,
) -> Vec<String> {
    breaches(summary, overrides)
        .into_iter()
        .filter(|b| {
            b.severity == Severity::Critical && BACKLOG_COUNTERS.contains(&b.metric.as_str())
        })
        .filter_map(|b| {
            let (value, threshold) = (b.value?, b.threshold?);
            let before = baseline.get(&b.metric).copied();
            let newly = before.is_none_or(|v| v <= threshold);
            let count_grew =
                !b.metric.ends_with("_age_seconds") && before.is_some_and(|v| value > v);
            (newly || count_grew).then(|| match before {
                Some(v) => format!("{} (was {v} before)", b.detail),
                None => b.detail.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(status: &str, counters: [i64; 7]) -> OpsSummary {
        let c = counters;
        serde_json::from_value(serde_json::json!({
            "pendingOutboxEvents": c[0], "availableOutboxEvents": c[1],
            "oldestPendingOutboxAgeSeconds": c[2], "failedSearchJobs": c[3],
            "pendingSearchJobs": c[4], "incompleteGcRuns": c[5], "recentPolicyTimeouts24h": c[6],
            "readiness": {"status": status, "dependencies": []}
        }))
        .unwrap()
    }

    #[test]
    fn the_services_thresholds_are_strictly_greater_than() {
        let at_limits = summary("ready", [50, 0, 300, 5, 100, 0, 0]);
        assert!(breaches(&at_limits, &Overrides::default()).is_empty());
        let above = summary("ready", [201, 0, 301, 6, 101, 1, 1]);
        let b = breaches(&above, &Overrides::default());
        let got: Vec<_> = b
            .iter()
            .map(|b| (b.metric.as_str(), b.severity, b.threshold))
            .collect();
        assert_eq!(
            got,
            [
                ("pending_outbox_events", Severity::Critical, Some(200)),
                (
                    "oldest_pending_outbox_age_seconds",
                    Severity::Warning,
                    Some(300)
                ),
                ("failed_search_jobs", Severity::Warning, Some(5)),
                ("pending_search_jobs", Severity::Warning, Some(100)),
                ("incomplete_gc_runs", Severity::Warning, Some(0)),
                ("recent_policy_timeouts_24h", Severity::Warning, Some(0)),
            ]
        );
        assert_eq!(worst(&b), Severity::Critical);
    }

    #[test]
    fn readiness_other_than_ready_is_critical() {
        let b = breaches(&summary("degraded", [0; 7]), &Overrides::default());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].metric, READINESS_METRIC);
        assert_eq!(b[0].severity, Severity::Critical);
        assert!(b[0].detail.contains("degraded"));
    }

    #[test]
    fn degraded_trust_material_is_each_its_own_warning() {
        let with = |oidc: &str, saml: &str| -> OpsSummary {
            let mut s = summary("degraded", [0; 7]);
            s.readiness.dependencies = [("oidc_jwks", oidc), ("saml_metadata", saml)]
                .iter()
                .map(|(n, st)| api::Dependency {
                    name: n.to_string(),
                    healthy: *st == "ready",
                    essential: false,
                    status: st.to_string(),
                    detail: Some("fallback_only=true".into()),
                })
                .collect();
            s
        };
        let got = |s: &OpsSummary| -> Vec<(String, Severity)> {
            breaches(s, &Overrides::default())
                .into_iter()
                .map(|b| (b.metric, b.severity))
                .collect()
        };
        assert_eq!(
            got(&with("degraded", "degraded")),
            [
                (READINESS_METRIC.to_string(), Severity::Critical),
                ("oidc_jwks_status".to_string(), Severity::Warning),
                ("saml_metadata_status".to_string(), Severity::Warning),
            ]
        );
        let b = breaches(&with("ready", "degraded"), &Overrides::default());
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].metric, "saml_metadata_status");
        assert!(
            b[1].detail.contains("fallback_only=true")
                && b[1].detail.contains("IdP certificate rotation"),
            "{}",
            b[1].detail
        );
        // not_ready is not this warning (readiness covers it).
        assert_eq!(got(&with("not_ready", "not_configured")).len(), 1);
        // Without the dependency list, trustMaterial says the same.
        let mut s = summary("degraded", [0; 7]);
        s.trust_material.oidc = Some(api::TrustStatus {
            healthy: false,
            status: "degraded".into(),
            detail: None,
        });
        assert_eq!(
            got(&s)[1],
            ("oidc_jwks_status".to_string(), Severity::Warning)
        );
    }

    #[test]
    fn overrides_replace_only_the_levels_given() {
        let o = Overrides(BTreeMap::from([(
            "pending_outbox_events".to_string(),
            Levels {
                warning: Some(5),
                critical: None,
            },
        )]));
        let t = o.effective();
        assert_eq!(
            t["pending_outbox_events"],
            Levels {
                warning: Some(5),
                critical: Some(200)
            }
        );
        let b = breaches(&summary("ready", [6, 0, 0, 0, 0, 0, 0]), &o);
        assert_eq!(b[0].severity, Severity::Warning);
        assert_eq!(b[0].threshold, Some(5));
    }

    #[test]
    fn growth_counts_backlog_metrics_only() {
        let s = summary("ready", [12, 0, 0, 2, 0, 0, 9]);
        let base = BTreeMap::from([
            ("pending_outbox_events".to_string(), 12),
            ("recent_policy_timeouts_24h".to_string(), 0),
        ]);
        let (d, grew) = growth(&s, &base);
        assert_eq!(d["pending_outbox_events"], 0);
        assert_eq!(d["recent_policy_timeouts_24h"], 9);
        assert!(!grew, "policy timeouts are not a backlog");
        let base = BTreeMap::from([("failed_search_jobs".to_string(), 1)]);
        assert!(growth(&s, &base).1);
    }

    #[test]
    fn regressions_are_new_critical_breaches_or_growing_critical_counts() {
        let base = |c: [i64; 7]| -> BTreeMap<String, i64> {
            summary("ready", c)
                .counters()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()
        };
        let o = Overrides::default();
        // An outbox item already past the critical age keeps ageing: not a regression.
        let before = base([1, 0, 1311, 0, 0, 0, 0]);
        assert!(regressions(&summary("ready", [1, 0, 1313, 0, 0, 0, 0]), &before, &o).is_empty());
        // The age crossing the threshold during the change is.
        let before = base([1, 0, 800, 0, 0, 0, 0]);
        let r = regressions(&summary("ready", [1, 0, 901, 0, 0, 0, 0]), &before, &o);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("was 800 before"), "{r:?}");
        // A count past critical before that keeps growing is; one that shrinks is not.
        let before = base([250, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            regressions(&summary("ready", [260, 0, 0, 0, 0, 0, 0]), &before, &o).len(),
            1
        );
        assert!(regressions(&summary("ready", [240, 0, 0, 0, 0, 0, 0]), &before, &o).is_empty());
        // Warnings and readiness are not backlog regressions.
        assert!(
            regressions(
                &summary("degraded", [60, 0, 0, 6, 0, 0, 0]),
                &base([0; 7]),
                &o
            )
            .is_empty()
        );
    }
}
