//! `data "artifortress_ops_summary"`: the service's backlog counters judged against its alert
//! thresholds and, optionally, a pre-deploy baseline (D4/D5).
//!
//! Every read writes an `ops.summary.read` row to the service's audit log.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::clients::api::{OpsSummary as Summary, TrustStatus};
use crate::clients::ops::{self, Breach, Severity};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Settings, api_diagnostic};

use crate::shared::ops::{
    TOKEN_NOTE, check_metric_keys, dependencies_value, dependency_type, overrides,
    thresholds_attribute, validate_thresholds,
};

pub const TYPE_NAME: &str = "artifortress_ops_summary";

pub struct OpsSummary;

pub const AUDIT_NOTE: &str = "Every read writes an `ops.summary.read` row to the service's audit log: a data source refreshed on every plan, or a drift check every 15 minutes, grows that log. Reuse one token per run rather than minting one per read.";

fn trust_type() -> Type {
    Type::object([
        ("healthy", Type::Bool),
        ("status", Type::String),
        ("detail", Type::String),
    ])
}

pub fn breach_type() -> Type {
    Type::object([
        ("metric", Type::String),
        ("severity", Type::String),
        ("value", Type::Number),
        ("threshold", Type::Number),
        ("detail", Type::String),
    ])
}

/// Breaches as a list value of [`breach_type`].
pub fn breaches_value(breaches: &[Breach]) -> Value {
    Value::List(
        breaches
            .iter()
            .map(|b| {
                Value::object([
                    ("metric", Value::from(b.metric.as_str())),
                    ("severity", Value::from(b.severity.as_str())),
                    ("value", b.value.map_or(Value::Null, Value::int)),
                    ("threshold", b.threshold.map_or(Value::Null, Value::int)),
                    ("detail", Value::from(b.detail.as_str())),
                ])
            })
            .collect(),
    )
}

fn validate_baseline(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    check_metric_keys(config, "baseline", &mut diags);
    if let Some(m) = config.attr("baseline").as_map() {
        for (key, v) in m {
            if v.is_known() && v.as_i64().is_none_or(|n| n < 0) {
                diags.push(
                    Diagnostic::error(
                        "Invalid baseline",
                        format!("baseline[{key:?}] must be a whole number >= 0."),
                    )
                    .at(AttributePath::root().child_attr("baseline").child_key(key)),
                );
            }
        }
    }
    diags
}

#[async_trait]
impl DataSource<Settings> for OpsSummary {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        let mut attrs = vec![
            thresholds_attribute(),
            Attribute::optional("baseline", Type::map(Type::Number))
                .description("An earlier snapshot of the counters (e.g. the `counters` of a summary taken before the deploy, kept in a `terraform_data`). Enables `growth` and `grew`."),
            Attribute::optional_computed("fail_on", Type::String)
                .default_value("never")
                .validate(Validator::OneOf(&["never", "warning", "critical"]))
                .description("Fail the read when the worst breach is at least this severe: `never` (report only), `warning` or `critical`. In a `check` block the failure becomes a warning."),
        ];
        for c in ops::COUNTERS {
            attrs.push(
                Attribute::computed(c, Type::Number)
                    .description(&format!("The service's `{}` counter.", camel(c))),
            );
        }
        attrs.extend([
            Attribute::computed("counters", Type::map(Type::Number))
                .description("The seven counters as one map, ready to keep as a later read's `baseline`."),
            Attribute::computed("checked_at", Type::String)
                .description("When the service computed the summary (its `checkedAtUtc`)."),
            Attribute::computed("readiness_status", Type::String)
                .description("The service's readiness status inside the summary: `ready`, `degraded` or `not_ready`."),
            Attribute::computed("readiness_dependencies", Type::list(dependency_type()))
                .description("The readiness dependency checks: `name`, `healthy`, `essential`, `status`, `detail`."),
            Attribute::computed(
                "trust_material",
                Type::object([("oidc", trust_type()), ("saml", trust_type())]),
            )
            .description("Health of the OIDC signing keys and SAML metadata: `healthy`, `status`, `detail` each."),
            Attribute::computed("breaches", Type::list(breach_type()))
                .description("Every breached threshold, the highest level per metric: `metric`, `severity` (`warning`/`critical`), `value`, `threshold` and `detail`. Readiness not `ready` is the metric `readiness_status` (critical; `value` and `threshold` null)."),
            Attribute::computed("worst_severity", Type::String)
                .description("`none`, `warning` or `critical`."),
            Attribute::computed("growth", Type::map(Type::Number))
                .description("With a `baseline`: current minus baseline, for each metric in the baseline. Null without one."),
            Attribute::computed("grew", Type::Bool)
                .description("With a `baseline`: whether any backlog metric (all counters but `recent_policy_timeouts_24h`) is above its baseline. Null without one."),
        ]);
        Schema::new(
            0,
            &format!(
                "Reads `GET /v1/admin/ops/summary` and judges it: breaches of the service's alert thresholds (overridable), the worst severity, and growth against a pre-deploy baseline (D4/D5). Needs a token with scope `repo:*:admin` or an admin/auditor role binding. {TOKEN_NOTE} {AUDIT_NOTE}"
            ),
            attrs,
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = validate_thresholds(config);
        diags.extend(validate_baseline(config));
        diags
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let settings = req.provider;
        let token = match settings.admin_token() {
            Ok(t) => t,
            Err(d) => return resp.diagnostics.push(d),
        };
        let client = match settings.api_client(None) {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let summary = tokio::select! {
            s = client.ops_summary(&token) => s,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error("Ops summary cancelled", "Terraform was interrupted."));
            }
        };
        let summary = match summary {
            Ok(s) => s,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(api_diagnostic("Reading the ops summary", &e));
            }
        };
        let judged = Judged::new(&summary, &resp.state);
        tracing::info!(
            worst = judged.worst.as_str(),
            breaches = judged.breaches.len(),
            grew = ?judged.grew,
            "ops summary read"
        );
        judged.write_into(&summary, &mut resp.state);
        let fail_on = resp.state.attr("fail_on").as_str().unwrap_or("never");
        if let Some(d) = judged.failure(fail_on) {
            resp.diagnostics.push(d.at_attr("fail_on"));
        }
    }
}

/// A summary judged against the configuration.
pub struct Judged {
    pub breaches: Vec<Breach>,
    pub worst: Severity,
    pub growth: Option<BTreeMap<String, i64>>,
    pub grew: Option<bool>,
}

impl Judged {
    /// `config` carries `thresholds` and `baseline`.
    pub fn new(summary: &Summary, config: &Value) -> Judged {
        let breaches = ops::breaches(summary, &overrides(config));
        let worst = ops::worst(&breaches);
        let baseline: Option<BTreeMap<String, i64>> = config.attr("baseline").as_map().map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
                .collect()
        });
        let (growth, grew) = match &baseline {
            Some(b) => {
                let (g, grew) = ops::growth(summary, b);
                (Some(g), Some(grew))
            }
            None => (None, None),
        };
        Judged {
            breaches,
            worst,
            growth,
            grew,
        }
    }

    fn write_into(&self, s: &Summary, state: &mut Value) {
        let mut counters = BTreeMap::new();
        for (name, v) in s.counters() {
            state.set_attr(name, Value::int(v));
            counters.insert(name.to_string(), Value::int(v));
        }
        state.set_attr("counters", Value::Map(counters));
        state.set_attr("checked_at", Value::opt_string(s.checked_at_utc.clone()));
        state.set_attr("readiness_status", Value::from(s.readiness.status.as_str()));
        state.set_attr(
            "readiness_dependencies",
            dependencies_value(&s.readiness.dependencies),
        );
        let trust = |t: &Option<TrustStatus>| match t {
            Some(t) => Value::object([
                ("healthy", Value::Bool(t.healthy)),
                ("status", Value::from(t.status.as_str())),
                ("detail", Value::opt_string(t.detail.clone())),
            ]),
            None => Value::Null,
        };
        state.set_attr(
            "trust_material",
            Value::object([
                ("oidc", trust(&s.trust_material.oidc)),
                ("saml", trust(&s.trust_material.saml)),
            ]),
        );
        state.set_attr("breaches", breaches_value(&self.breaches));
        state.set_attr("worst_severity", Value::from(self.worst.as_str()));
        state.set_attr(
            "growth",
            match &self.growth {
                Some(g) => Value::Map(g.iter().map(|(k, v)| (k.clone(), Value::int(*v))).collect()),
                None => Value::Null,
            },
        );
        state.set_attr("grew", self.grew.map_or(Value::Null, Value::Bool));
    }

    /// The error for `fail_on`, if the worst breach reaches it.
    pub fn failure(&self, fail_on: &str) -> Option<Diagnostic> {
        let level = match fail_on {
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return None,
        };
        if self.worst < level {
            return None;
        }
        let list: Vec<String> = self
            .breaches
            .iter()
            .filter(|b| b.severity >= level)
            .map(|b| format!("  - {}: {}", b.severity.as_str(), b.detail))
            .collect();
        Some(Diagnostic::error(
            format!("Artifortress backlog is {}", self.worst.as_str()),
            format!(
                "The ops summary breaches thresholds at or above {fail_on} (fail_on = {fail_on:?}):\n{}",
                list.join("\n")
            ),
        ))
    }
}

/// `pending_outbox_events` → `pendingOutboxEvents` (the service's field name).
fn camel(snake: &str) -> String {
    if snake == "recent_policy_timeouts_24h" {
        return "recentPolicyTimeouts24h".into();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(OpsSummary.schema().check().is_empty());
    }

    #[test]
    fn field_names_match_the_service() {
        assert_eq!(camel("pending_outbox_events"), "pendingOutboxEvents");
        assert_eq!(
            camel("oldest_pending_outbox_age_seconds"),
            "oldestPendingOutboxAgeSeconds"
        );
    }

    #[tokio::test]
    async fn unknown_metrics_and_inverted_levels_are_refused() {
        let mut config = Value::null_object(&OpsSummary.schema().value_type());
        config.set_attr(
            "thresholds",
            Value::Map(BTreeMap::from([
                (
                    "pending_outbox".to_string(),
                    Value::object([("warning", Value::int(1)), ("critical", Value::Null)]),
                ),
                (
                    "failed_search_jobs".to_string(),
                    Value::object([("warning", Value::int(9)), ("critical", Value::int(3))]),
                ),
            ])),
        );
        let d = OpsSummary.validate(&config).await;
        let text = format!("{d:?}");
        assert!(text.contains("pending_outbox"), "{text}");
        assert!(text.contains("above critical"), "{text}");
        assert_eq!(d.iter().filter(|d| d.is_error()).count(), 2, "{text}");
    }
}
