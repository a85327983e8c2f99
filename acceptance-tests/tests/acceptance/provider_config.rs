//! Provider configuration as Terraform delivers it: schema, unknown values at plan time,
//! missing settings reported only by what needs them.

use crate::harness::{Workdir, terraforms, testbed};

#[test]
fn the_schema_shows_the_provider_and_data_source() {
    for tf in terraforms() {
        let wd = Workdir::new(
            &tf,
            r#"data "artifortress_readiness" "x" { url = "http://127.0.0.1:1" }"#,
        );
        let run = wd.run(&["providers", "schema", "-json"]);
        assert_eq!(run.code, 0, "{}", run.text());
        let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let p = &schema["provider_schemas"]["registry.terraform.io/artifortress/artifortress"];
        let attrs = &p["provider"]["block"]["attributes"];
        assert_eq!(
            attrs["admin_token"]["sensitive"], true,
            "terraform {}",
            tf.version
        );
        assert_eq!(attrs["database_url"]["sensitive"], true);
        assert_eq!(
            attrs["object_storage"]["nested_type"]["attributes"]["secret_access_key"]["sensitive"],
            true
        );
        let ds = &p["data_source_schemas"]["artifortress_readiness"]["block"]["attributes"];
        assert_eq!(ds["status"]["computed"], true);
        assert_eq!(ds["require_status"]["optional"], true);
        assert_eq!(ds["dependencies"]["computed"], true);
    }
}

#[test]
fn unknown_provider_settings_do_not_break_the_plan() {
    let api = testbed(&[]);
    for tf in terraforms() {
        // api_url is unknown until terraform_data is created; the data source has its own url.
        let wd = Workdir::new(
            &tf,
            &format!(
                r#"
resource "terraform_data" "endpoint" {{
  input = "{url}"
}}

provider "artifortress" {{
  api_url     = terraform_data.endpoint.output
  admin_token = terraform_data.endpoint.id
}}

data "artifortress_readiness" "api" {{
  url = "{url}"
}}

output "status" {{ value = data.artifortress_readiness.api.status }}
"#,
                url = api.url()
            ),
        );
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "terraform {}: {}", tf.version, plan.text());
        wd.apply_ok();
        assert_eq!(wd.output("status"), "ready");
        wd.destroy_ok();
    }
}

#[test]
fn a_missing_setting_names_the_attribute_and_environment_variable() {
    for tf in terraforms() {
        let wd = Workdir::new(&tf, r#"data "artifortress_readiness" "api" {}"#)
            .without_env("ARTIFORTRESS_API_URL");
        let run = wd.plan_detailed();
        assert_eq!(run.code, 1, "terraform {}: {}", tf.version, run.text());
        let text = run.text();
        assert!(run.shows("Missing provider setting api_url"), "{text}");
        assert!(run.shows("ARTIFORTRESS_API_URL"), "{text}");
    }
}

fn validate_errors(tf: &crate::harness::Terraform, config: &str) -> String {
    let wd = Workdir::new(tf, config);
    let run = wd.run(&["validate", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v["valid"],
        false,
        "terraform {}: {}",
        tf.version,
        run.text()
    );
    run.stdout
}

#[test]
fn invalid_settings_are_refused_at_validate_with_their_path() {
    for tf in terraforms() {
        // Terraform validates data sources only once the provider configuration is valid, so
        // the two are checked separately.
        let text = validate_errors(
            &tf,
            r#"
provider "artifortress" {
  environment     = "prod"
  request_timeout = "soon"
}

# Terraform validates a provider configuration only when something uses it.
data "artifortress_readiness" "api" {
  url = "http://127.0.0.1:1"
}
"#,
        );
        for needle in [
            "environment",
            "\\\"prod\\\"",
            "request_timeout",
            "\\\"soon\\\" is not a duration",
        ] {
            assert!(text.contains(needle), "missing {needle} in {text}");
        }
        let text = validate_errors(
            &tf,
            r#"
data "artifortress_readiness" "api" {
  url            = "ftp://example"
  require_status = "up"
}
"#,
        );
        for needle in ["ftp://example", "\\\"up\\\"", "require_status"] {
            assert!(text.contains(needle), "missing {needle} in {text}");
        }
    }
}

#[test]
fn provider_secrets_never_reach_the_provider_logs_or_state() {
    let api = testbed(&[]);
    let secrets = [
        "af-admin-SECRET-7f3a9c",
        "af-bootstrap-SECRET-51be0d",
        "postgres://deploy:pw-SECRET-c0ffee@127.0.0.1:5432/artifortress",
        "s3-SECRET-9d8e7f6a5b4c",
    ];
    for tf in terraforms() {
        let wd = Workdir::new(
            &tf,
            &format!(
                r#"
provider "artifortress" {{
  api_url         = "{url}"
  admin_token     = "{admin}"
  bootstrap_token = "{bootstrap}"
  database_url    = "{db}"
  object_storage = {{
    secret_access_key = "{s3}"
  }}
}}

data "artifortress_readiness" "api" {{
  require_status = "ready"
}}

output "status" {{ value = data.artifortress_readiness.api.status }}
"#,
                url = api.url(),
                admin = secrets[0],
                bootstrap = secrets[1],
                db = secrets[2],
                s3 = secrets[3],
            ),
        )
        .with_env("TF_LOG", "trace")
        .with_env("TF_LOG_PATH", "terraform.log");
        wd.apply_ok();
        let log = std::fs::read_to_string(wd.file("terraform.log")).unwrap();
        // Only what the provider itself wrote: Terraform prefixes it with the plugin's logger.
        let provider_lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("provider.terraform-provider-artifortress"))
            .collect();
        assert!(
            provider_lines
                .iter()
                .any(|l| l.contains("tf_rpc=ReadDataSource")),
            "terraform {}: the provider's trace lines are in the log",
            tf.version
        );
        let state = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        for secret in secrets {
            let leaks = provider_lines.iter().filter(|l| l.contains(secret)).count();
            assert_eq!(
                leaks, 0,
                "terraform {}: {secret} in provider logs",
                tf.version
            );
            assert!(!state.contains(secret), "{secret} in state");
        }
    }
}
