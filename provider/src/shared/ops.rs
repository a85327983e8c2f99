//! The service's health and backlog as the data sources show them: the dependency list of a
//! readiness answer (`data "artifortress_readiness"` and `data "artifortress_ops_summary"`), and
//! the alert-threshold overrides and token note of `data "artifortress_ops_summary"` and
//! `data "artifortress_preflight"`.

use std::collections::BTreeMap;

use crate::clients::api;
use crate::clients::ops::{self, Levels, Overrides};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::schema::{Attribute, Constraint, Nesting};
use crate::protocol::types::Type;
use crate::protocol::value::Value;

crate::model! {
    /// One dependency of a readiness answer, as `readiness_dependencies` and `dependencies`
    /// show it.
    pub(crate) struct DependencyModel {
        name: String = Attribute::computed("name", Type::String),
        healthy: bool = Attribute::computed("healthy", Type::Bool),
        essential: bool = Attribute::computed("essential", Type::Bool),
        status: String = Attribute::computed("status", Type::String),
        detail: Option<String> = Attribute::computed("detail", Type::String),
    }
}

impl DependencyModel {
    /// The service's dependency list.
    pub(crate) fn list(deps: &[api::Dependency]) -> Vec<DependencyModel> {
        deps.iter()
            .map(|d| DependencyModel {
                name: d.name.clone(),
                healthy: d.healthy,
                essential: d.essential,
                status: d.status.clone(),
                detail: d.detail.clone(),
            })
            .collect()
    }
}

/// Why data sources take no `token` argument (shared with the docs).
pub const TOKEN_NOTE: &str = "The token is the provider's `admin_token`. To use a token minted for this run, give it to an aliased provider block (`admin_token = ephemeral.artifortress_admin_token.ci.token`) and read through that alias: Terraform and OpenTofu accept ephemeral values only in provider blocks and in write-only arguments of managed resources, and a data source's arguments are saved in the state, so a token argument here would put the secret in the state.";

/// Threshold overrides from the (validated) `thresholds` attribute.
pub fn overrides(thresholds: &Value) -> Overrides {
    let mut out = BTreeMap::new();
    if let Some(m) = thresholds.as_map() {
        for (metric, levels) in m {
            out.insert(
                metric.clone(),
                Levels {
                    warning: levels.attr("warning").as_i64(),
                    critical: levels.attr("critical").as_i64(),
                },
            );
        }
    }
    Overrides(out)
}

pub(crate) fn check_metric_keys(config: &Value, attr: &str, diags: &mut Diagnostics) {
    if let Some(m) = config.attr(attr).as_map() {
        for key in m.keys() {
            if !ops::COUNTERS.contains(&key.as_str()) {
                diags.push(
                    Diagnostic::error(
                        "Unknown ops summary metric",
                        format!(
                            "{attr} has a key {key:?}; the metrics are: {}.",
                            ops::COUNTERS.join(", ")
                        ),
                    )
                    .at(AttributePath::root().child_attr(attr).child_key(key)),
                );
            }
        }
    }
}

/// Checks of `thresholds`.
pub fn validate_thresholds(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    check_metric_keys(config, "thresholds", &mut diags);
    if let Some(m) = config.attr("thresholds").as_map() {
        for (key, levels) in m {
            let path = AttributePath::root()
                .child_attr("thresholds")
                .child_key(key);
            for level in ["warning", "critical"] {
                let v = levels.attr(level);
                if v.is_known() && !v.is_null() && v.as_i64().is_none_or(|n| n < 0) {
                    diags.push(
                        Diagnostic::error(
                            "Invalid threshold",
                            format!("thresholds[{key:?}].{level} must be a whole number >= 0."),
                        )
                        .at(path.clone().child_attr(level)),
                    );
                }
            }
            if let (Some(w), Some(c)) = (
                levels.attr("warning").as_i64(),
                levels.attr("critical").as_i64(),
            ) && w > c
            {
                diags.push(
                    Diagnostic::error(
                        "Invalid thresholds",
                        format!(
                            "thresholds[{key:?}]: warning ({w}) is above critical ({c}); a value breaching critical would not breach warning."
                        ),
                    )
                    .at(path),
                );
            }
        }
    }
    diags
}

/// The `thresholds` attribute.
pub fn thresholds_attribute() -> Attribute {
    Attribute::nested(
        "thresholds",
        Nesting::Map,
        Constraint::Optional,
        vec![
            Attribute::optional("warning", Type::Number)
                .description("Warn when the metric is above this."),
            Attribute::optional("critical", Type::Number)
                .description("Critical when the metric is above this."),
        ],
    )
    .description("Overrides of the service's alert thresholds, per metric (keys: the seven counter names). A level given replaces the service's; a level left out keeps it. Service defaults: pending_outbox_events warning > 50, critical > 200; oldest_pending_outbox_age_seconds warning > 300, critical > 900; failed_search_jobs warning > 5, critical > 20; pending_search_jobs warning > 100; incomplete_gc_runs warning > 0; recent_policy_timeouts_24h warning > 0. Readiness status other than `ready` is always critical.")
}
