//! `data "artifortress_ops_summary"`: the service's backlog counters judged against its alert
//! thresholds and, optionally, a pre-deploy baseline (D4/D5).
//!
//! Every read writes an `ops.summary.read` row to the service's audit log.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::clients::api::{OpsSummary as Summary, TrustStatus};
use crate::clients::ops::{self, Breach, Overrides, Severity};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::model::Maybe;
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{Settings, api_diagnostic};
use crate::shared::ops::{
    DependencyModel, TOKEN_NOTE, check_metric_keys, overrides, thresholds_attribute,
    validate_thresholds,
};

pub const TYPE_NAME: &str = "artifortress_ops_summary";

pub const AUDIT_NOTE: &str = "Every read writes an `ops.summary.read` row to the service's audit log: a data source refreshed on every plan, or a drift check every 15 minutes, grows that log. Reuse one token per run rather than minting one per read.";

crate::model! {
    /// `data "artifortress_ops_summary"` as configured and read.
    pub(crate) struct OpsSummaryModel {
        /// Passed through: validate checks every level, known or not, of every metric.
        thresholds: Value = thresholds_attribute(),
        /// Values passed through: validate refuses every one that is not a whole number >= 0.
        baseline: Option<BTreeMap<String, Value>> = Attribute::optional("baseline", Type::map(Type::Number))
            .description("An earlier snapshot of the counters (e.g. the `counters` of a summary taken before the deploy, kept in a `terraform_data`). Enables `growth` and `grew`."),
        fail_on: String = Attribute::optional_computed("fail_on", Type::String)
            .default_value("never")
            .validate(Validator::OneOf(&["never", "warning", "critical"]))
            .description("Fail the read when the worst breach is at least this severe: `never` (report only), `warning` or `critical`. In a `check` block the failure becomes a warning."),
        // The seven counters, in the order of `ops::COUNTERS` (a test keeps them so).
        pending_outbox_events: Option<i64> = counter("pending_outbox_events"),
        available_outbox_events: Option<i64> = counter("available_outbox_events"),
        oldest_pending_outbox_age_seconds: Option<i64> =
            counter("oldest_pending_outbox_age_seconds"),
        failed_search_jobs: Option<i64> = counter("failed_search_jobs"),
        pending_search_jobs: Option<i64> = counter("pending_search_jobs"),
        incomplete_gc_runs: Option<i64> = counter("incomplete_gc_runs"),
        recent_policy_timeouts_24h: Option<i64> = counter("recent_policy_timeouts_24h"),
        counters: Option<BTreeMap<String, i64>> = Attribute::computed("counters", Type::map(Type::Number))
            .description("The seven counters as one map, ready to keep as a later read's `baseline`."),
        checked_at: Option<String> = Attribute::computed("checked_at", Type::String)
            .description("When the service computed the summary (its `checkedAtUtc`)."),
        readiness_status: Option<String> = Attribute::computed("readiness_status", Type::String)
            .description("The service's readiness status inside the summary: `ready`, `degraded` or `not_ready`."),
        readiness_dependencies: Option<Vec<DependencyModel>> =
            Attribute::computed("readiness_dependencies", Type::list(DependencyModel::object_type()))
                .description("The readiness dependency checks: `name`, `healthy`, `essential`, `status`, `detail`."),
        trust_material: Option<TrustMaterialModel> =
            Attribute::computed("trust_material", TrustMaterialModel::object_type())
                .description("Health of the OIDC signing keys and SAML metadata: `healthy`, `status`, `detail` each."),
        breaches: Option<Vec<BreachModel>> = Attribute::computed("breaches", Type::list(BreachModel::object_type()))
            .description("Every breached threshold, the highest level per metric: `metric`, `severity` (`warning`/`critical`), `value`, `threshold` and `detail`. Readiness not `ready` is the metric `readiness_status` (critical; `value` and `threshold` null); each trust-material dependency (`oidc_jwks`, `saml_metadata`) reported `degraded` is its own warning `oidc_jwks_status` / `saml_metadata_status`, as the service's `deploy/enterprise-ops-alert-thresholds.yaml` says."),
        worst_severity: Option<String> = Attribute::computed("worst_severity", Type::String)
            .description("`none`, `warning` or `critical`."),
        growth: Option<BTreeMap<String, i64>> = Attribute::computed("growth", Type::map(Type::Number))
            .description("With a `baseline`: current minus baseline, for each metric in the baseline. Null without one."),
        grew: Option<bool> = Attribute::computed("grew", Type::Bool)
            .description("With a `baseline`: whether any backlog metric (all counters but `recent_policy_timeouts_24h`) is above its baseline. Null without one."),
    }
}

crate::model! {
    /// `trust_material`.
    pub(crate) struct TrustMaterialModel {
        oidc: Option<TrustModel> = Attribute::computed("oidc", TrustModel::object_type()),
        saml: Option<TrustModel> = Attribute::computed("saml", TrustModel::object_type()),
    }
}

crate::model! {
    /// The health of one kind of trust material.
    pub(crate) struct TrustModel {
        healthy: bool = Attribute::computed("healthy", Type::Bool),
        status: String = Attribute::computed("status", Type::String),
        detail: Option<String> = Attribute::computed("detail", Type::String),
    }
}

crate::model! {
    /// One element of `breaches`.
    pub(crate) struct BreachModel {
        metric: String = Attribute::computed("metric", Type::String),
        severity: String = Attribute::computed("severity", Type::String),
        value: Option<i64> = Attribute::computed("value", Type::Number),
        threshold: Option<i64> = Attribute::computed("threshold", Type::Number),
        detail: String = Attribute::computed("detail", Type::String),
    }
}

pub struct OpsSummary;

#[async_trait]
impl DataSource<Settings> for OpsSummary {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            &format!(
                "Reads `GET /v1/admin/ops/summary` and judges it: breaches of the service's alert thresholds (overridable), the worst severity, and growth against a pre-deploy baseline (D4/D5). Needs a token with scope `repo:*:admin` or an admin/auditor role binding. {TOKEN_NOTE} {AUDIT_NOTE}"
            ),
            OpsSummaryModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = validate_thresholds(config);
        match OpsSummaryModel::planned(config) {
            Ok(m) => validate_baseline(config, &m.baseline, &mut diags),
            Err(e) => diags.push(e.diagnostic("Validating data \"artifortress_ops_summary\"")),
        }
        diags
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let mut model = match OpsSummaryModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Reading the ops summary"));
            }
        };
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
        let baseline = model.baseline.as_ref().map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
                .collect()
        });
        let judged = Judged::new(&summary, &overrides(&model.thresholds), baseline.as_ref());
        tracing::info!(
            worst = judged.worst.as_str(),
            breaches = judged.breaches.len(),
            grew = ?judged.grew,
            "ops summary read"
        );
        judged.write_into(&summary, &mut model);
        if let Some(d) = judged.failure(&model.fail_on) {
            resp.diagnostics.push(d.at_attr("fail_on"));
        }
        resp.state = model.to_object();
    }
}

/// A computed counter attribute, described with the service's field name.
fn counter(name: &'static str) -> Attribute {
    Attribute::computed(name, Type::Number)
        .description(&format!("The service's `{}` counter.", camel(name)))
}

/// Checks of `baseline` (`baseline` as planned: its values may be anything Terraform allows).
fn validate_baseline(
    config: &Value,
    baseline: &Maybe<Option<BTreeMap<String, Value>>>,
    diags: &mut Diagnostics,
) {
    check_metric_keys(config, "baseline", diags);
    if let Maybe::Known(Some(m)) = baseline {
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
}

/// A summary judged against the configuration.
pub struct Judged {
    pub breaches: Vec<Breach>,
    pub worst: Severity,
    pub growth: Option<BTreeMap<String, i64>>,
    pub grew: Option<bool>,
}

impl Judged {
    /// Against the threshold `overrides` and, when given, a `baseline` of the counters.
    pub fn new(
        summary: &Summary,
        overrides: &Overrides,
        baseline: Option<&BTreeMap<String, i64>>,
    ) -> Judged {
        let breaches = ops::breaches(summary, overrides);
        let worst = ops::worst(&breaches);
        let (growth, grew) = match baseline {
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

    fn write_into(&self, s: &Summary, model: &mut OpsSummaryModel) {
        model.pending_outbox_events = Some(s.pending_outbox_events);
        model.available_outbox_events = Some(s.available_outbox_events);
        model.oldest_pending_outbox_age_seconds = Some(s.oldest_pending_outbox_age_seconds);
        model.failed_search_jobs = Some(s.failed_search_jobs);
        model.pending_search_jobs = Some(s.pending_search_jobs);
        model.incomplete_gc_runs = Some(s.incomplete_gc_runs);
        model.recent_policy_timeouts_24h = Some(s.recent_policy_timeouts24h);
        model.counters = Some(
            s.counters()
                .iter()
                .map(|(name, v)| (name.to_string(), *v))
                .collect(),
        );
        model.checked_at = s.checked_at_utc.clone();
        model.readiness_status = Some(s.readiness.status.clone());
        model.readiness_dependencies = Some(DependencyModel::list(&s.readiness.dependencies));
        let trust = |t: &Option<TrustStatus>| {
            t.as_ref().map(|t| TrustModel {
                healthy: t.healthy,
                status: t.status.clone(),
                detail: t.detail.clone(),
            })
        };
        model.trust_material = Some(TrustMaterialModel {
            oidc: trust(&s.trust_material.oidc),
            saml: trust(&s.trust_material.saml),
        });
        model.breaches = Some(self.breaches.iter().map(BreachModel::of).collect());
        model.worst_severity = Some(self.worst.as_str().to_string());
        model.growth = self.growth.clone();
        model.grew = self.grew;
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

impl BreachModel {
    fn of(b: &Breach) -> Self {
        BreachModel {
            metric: b.metric.clone(),
            severity: b.severity.as_str().to_string(),
            value: b.value,
            threshold: b.threshold,
            detail: b.detail.clone(),
        }
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
    fn the_counter_attributes_are_the_services_counters_in_order() {
        let names: Vec<String> = OpsSummaryModel::attributes()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names[3..10], ops::COUNTERS);
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
