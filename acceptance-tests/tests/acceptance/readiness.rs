//! `data "artifortress_readiness"` against the test bed, with every Terraform under test.

use serde_json::json;

use crate::harness::{Workdir, closed_port, shows, terraforms, testbed};

/// A readiness read of `url` (also used by the bounded-reads tests).
pub(crate) fn config(url: &str, extra: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  api_url = "{url}"
}}

data "artifortress_readiness" "api" {{
  {extra}
}}

output "status"       {{ value = data.artifortress_readiness.api.status }}
output "ready"        {{ value = data.artifortress_readiness.api.ready }}
output "live"         {{ value = data.artifortress_readiness.api.live }}
output "http_status"  {{ value = data.artifortress_readiness.api.http_status }}
output "url"          {{ value = data.artifortress_readiness.api.url }}
output "dependencies" {{ value = data.artifortress_readiness.api.dependencies }}
"#
    )
}

fn dependency<'a>(deps: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    deps.as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no dependency {name} in {deps}"))
}

#[test]
fn ready() {
    let api = testbed(&[]);
    for tf in terraforms() {
        let wd = Workdir::new(
            &tf,
            &config(
                api.url(),
                r#"require_status = "ready"
  consecutive    = 2
  poll_interval  = "100ms""#,
            ),
        );
        wd.apply_ok();
        assert_eq!(wd.output("status"), "ready", "terraform {}", tf.version);
        assert_eq!(wd.output("ready"), true);
        assert_eq!(wd.output("live"), true);
        assert_eq!(wd.output("http_status"), 200);
        assert_eq!(wd.output("url"), api.url());
        let deps = wd.output("dependencies");
        let names: Vec<_> = deps
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "redis",
                "telemetry",
                "postgres",
                "object_storage",
                "oidc_jwks",
                "saml_metadata"
            ]
        );
        assert_eq!(
            dependency(&deps, "postgres"),
            &json!({"name": "postgres", "healthy": true, "essential": true, "status": "ready", "detail": null})
        );
        assert_eq!(dependency(&deps, "redis")["status"], "not_configured");
        wd.destroy_ok();
    }
}

#[test]
fn degraded_answers_200_but_is_not_ready() {
    let api = testbed(&[("TESTBED_FAULT_DEPENDENCIES", "oidc_jwks:degraded")]);
    for tf in terraforms() {
        // Reporting only: no failure.
        let wd = Workdir::new(&tf, &config(api.url(), ""));
        wd.apply_ok();
        assert_eq!(wd.output("status"), "degraded", "terraform {}", tf.version);
        assert_eq!(wd.output("http_status"), 200);
        assert_eq!(wd.output("ready"), false);
        let deps = wd.output("dependencies");
        assert_eq!(dependency(&deps, "oidc_jwks")["healthy"], false);

        // A gate on "degraded" passes, a gate on "ready" does not.
        let gate = Workdir::new(&tf, &config(api.url(), r#"require_status = "degraded""#));
        gate.apply_ok();
        let strict = Workdir::new(&tf, &config(api.url(), r#"require_status = "ready""#));
        let run = strict.apply();
        assert_ne!(run.code, 0, "a degraded API must not pass a ready gate");
        let text = run.text();
        assert!(shows(&text, "Artifortress is not ready"), "{text}");
        assert!(
            shows(
                &text,
                "oidc_jwks (non-essential, degraded): testbed fault injection"
            ),
            "{text}"
        );
    }
}

#[test]
fn not_ready_answers_503() {
    let api = testbed(&[("TESTBED_FAULT_DEPENDENCIES", "postgres:not_ready")]);
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &config(api.url(), ""));
        wd.apply_ok();
        assert_eq!(wd.output("status"), "not_ready", "terraform {}", tf.version);
        assert_eq!(wd.output("http_status"), 503);
        assert_eq!(wd.output("live"), true, "the process is up, only not ready");
        let deps = wd.output("dependencies");
        assert_eq!(dependency(&deps, "postgres")["essential"], true);
        assert_eq!(dependency(&deps, "postgres")["healthy"], false);
    }
}

#[test]
fn unreachable() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &config(&url, ""));
        wd.apply_ok();
        assert_eq!(
            wd.output("status"),
            "unreachable",
            "terraform {}",
            tf.version
        );
        assert_eq!(wd.output("http_status"), 0);
        assert_eq!(wd.output("live"), false);
        assert_eq!(wd.output("dependencies"), json!([]));

        let gate = Workdir::new(&tf, &config(&url, r#"require_status = "ready""#));
        let run = gate.apply();
        assert_ne!(run.code, 0);
        assert!(run.shows("could not reach"), "{}", run.text());
    }
}

#[test]
fn waiting_succeeds_when_the_api_becomes_ready_late() {
    for tf in terraforms() {
        // A fresh test bed per Terraform, so each one really has to wait.
        let api = testbed(&[("TESTBED_FAULT_READY_AFTER_SECONDS", "4")]);
        let wd = Workdir::new(
            &tf,
            &config(
                api.url(),
                r#"require_status = "ready"
  wait_timeout   = "60s"
  poll_interval  = "250ms"
  consecutive    = 2"#,
            ),
        );
        let started = std::time::Instant::now();
        wd.apply_ok();
        assert!(
            started.elapsed().as_secs() >= 3,
            "the apply returned before the test bed could have become ready"
        );
        assert_eq!(wd.output("status"), "ready", "terraform {}", tf.version);
    }
}

#[test]
fn waiting_times_out_with_the_dependency_details() {
    let api = testbed(&[("TESTBED_FAULT_NEVER_READY", "1")]);
    for tf in terraforms() {
        let wd = Workdir::new(
            &tf,
            &config(
                api.url(),
                r#"require_status = "ready"
  wait_timeout   = "2s"
  poll_interval  = "200ms""#,
            ),
        );
        let run = wd.apply();
        assert_ne!(run.code, 0, "terraform {}", tf.version);
        let text = run.text();
        assert!(
            shows(&text, "Artifortress did not become ready within 2s"),
            "{text}"
        );
        assert!(shows(&text, "status \"not_ready\" (HTTP 503)"), "{text}");
        assert!(shows(&text, "testbed fault: never ready"), "{text}");
        assert!(
            shows(&text, "require_status"),
            "the diagnostic points at the attribute: {text}"
        );
    }
}

fn check_config(url: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  api_url = "{url}"
}}

check "api_ready" {{
  data "artifortress_readiness" "gate" {{
    require_status = "ready"
  }}

  assert {{
    condition     = data.artifortress_readiness.gate.ready
    error_message = "Artifortress is not ready."
  }}
}}
"#
    )
}

/// Terraform re-reads a data source scoped inside a `check` block at every apply, so a plan that
/// contains one is never empty: `plan -detailed-exitcode` exits 2 whatever the check's result
/// (hashicorp/terraform#35226). This pins that behaviour, and the provider's part: a warning,
/// with the dependency details, only when the API is not ready.
#[test]
fn inside_a_check_block_a_failure_is_a_warning() {
    let healthy = testbed(&[]);
    let degraded = testbed(&[("TESTBED_FAULT_DEPENDENCIES", "oidc_jwks:degraded")]);
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &check_config(healthy.url()));
        let run = wd.apply();
        assert_eq!(run.code, 0, "terraform {}: {}", tf.version, run.text());
        assert!(!run.shows("Warning: Artifortress"), "{}", run.text());
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "terraform {}: {}", tf.version, plan.text());
        assert!(plan.shows("verify a check block"), "{}", plan.text());

        let wd = Workdir::new(&tf, &check_config(degraded.url()));
        let run = wd.apply();
        assert_eq!(run.code, 0, "terraform {}: {}", tf.version, run.text());
        let text = run.text();
        assert!(shows(&text, "Warning: Artifortress is not ready"), "{text}");
        assert!(
            shows(
                &text,
                "oidc_jwks (non-essential, degraded): testbed fault injection"
            ),
            "{text}"
        );
    }
}

/// For drift detection: the data source outside the check, the check asserting on it. The plan
/// after apply is empty while the API is ready, and a failing assertion is a warning.
#[test]
fn referenced_from_a_check_block_the_plan_stays_empty() {
    let config = |url: &str| {
        format!(
            r#"
provider "artifortress" {{
  api_url = "{url}"
}}

data "artifortress_readiness" "api" {{}}

check "api_ready" {{
  assert {{
    condition     = data.artifortress_readiness.api.ready
    error_message = "Artifortress reports ${{data.artifortress_readiness.api.status}}."
  }}
}}
"#
        )
    };
    let healthy = testbed(&[]);
    let degraded = testbed(&[("TESTBED_FAULT_DEPENDENCIES", "oidc_jwks:degraded")]);
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &config(healthy.url()));
        let run = wd.apply_ok();
        assert!(!run.shows("Warning"), "{}", run.text());

        let wd = Workdir::new(&tf, &config(degraded.url()));
        let run = wd.apply();
        assert_eq!(run.code, 0, "terraform {}: {}", tf.version, run.text());
        assert!(
            run.shows("Artifortress reports degraded."),
            "{}",
            run.text()
        );
    }
}
