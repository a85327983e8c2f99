//! The secrets policy, end to end: every resource, data source and ephemeral resource of the
//! provider in one configuration, given every kind of secret (provider tokens, database URLs
//! with passwords at provider and resource level, the S3 secret key, a minted token), run
//! with `TF_LOG=trace`; the state files, `terraform show -json` of every plan, the CLI output
//! and the trace log must contain none of the secret values.

use serde_json::json;

use crate::gates::Bed;
use crate::harness::{Workdir, required_env, terraforms};
use acceptance_tests::support::migrations_dir;

fn config(bed: &Bed, prefix: &str, drill_db: &str, boot: &str) -> String {
    format!(
        r#"
# Secrets come in as ephemeral variables (TF_VAR_*): Terraform keeps them out of plan files,
# and they are only used where ephemeral values are allowed (provider blocks, write-only
# arguments).
variable "admin_token" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
variable "bootstrap_token" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
variable "database_url" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
variable "s3_secret_key" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
variable "owner_password" {{
  type      = string
  sensitive = true
  ephemeral = true
}}

provider "artifortress" {{
  api_url         = "{api}"
  admin_token     = var.admin_token
  bootstrap_token = var.bootstrap_token
  database_url    = var.database_url
  object_storage = {{
    endpoint          = "{endpoint}"
    bucket            = "{bucket}"
    access_key_id     = "{access}"
    secret_access_key = var.s3_secret_key
  }}
}}

ephemeral "artifortress_admin_token" "run" {{
  subject = "acc-secrets"
}}

provider "artifortress" {{
  alias        = "minted"
  api_url      = "{api}"
  admin_token  = ephemeral.artifortress_admin_token.run.token
  database_url = var.database_url
}}

resource "artifortress_bootstrap" "staging" {{
  admin_database_url        = var.database_url
  database                  = "{boot}"
  owner_role                = "{boot}"
  owner_password_wo         = var.owner_password
  owner_password_wo_version = 1
  bucket                    = "{bucket}"
  on_destroy                = "drop"
}}

resource "artifortress_migration" "schema" {{
  dir          = "{dir}"
  database_url = var.database_url
}}

resource "artifortress_backup" "pre" {{
  database_url = var.database_url
  prefix       = "{prefix}"
  retention    = "delete"
  depends_on   = [artifortress_migration.schema]
}}

resource "artifortress_restore_drill" "drill" {{
  backup_id          = artifortress_backup.pre.id
  prefix             = "{prefix}"
  admin_database_url = var.database_url
  drill_database     = "{drill_db}"
  fail_on_breach     = false
}}

data "artifortress_readiness" "api" {{}}

data "artifortress_migrations" "now" {{
  dir        = "{dir}"
  depends_on = [artifortress_migration.schema]
}}

data "artifortress_backups" "all" {{
  prefix     = "{prefix}"
  depends_on = [artifortress_backup.pre]
}}

data "artifortress_ops_summary" "now" {{
  provider = artifortress.minted
}}

data "artifortress_preflight" "gate" {{
  provider       = artifortress.minted
  backup_prefix  = "{prefix}"
  migrations_dir = "{dir}"
  fail_on_no_go  = false
  depends_on     = [artifortress_backup.pre]
}}

output "status"  {{ value = data.artifortress_readiness.api.status }}
output "drill"   {{ value = artifortress_restore_drill.drill.passed }}
output "report"  {{ value = artifortress_restore_drill.drill.report_markdown }}
output "backups" {{ value = length(data.artifortress_backups.all.backups) }}
output "worst"   {{ value = data.artifortress_ops_summary.now.worst_severity }}
output "checks"  {{ value = {{ for c in data.artifortress_preflight.gate.checks : c.name => c.passed }} }}
"#,
        api = bed.api_url(),
        endpoint = required_env("ARTIFORTRESS_S3_ENDPOINT"),
        bucket = required_env("ARTIFORTRESS_S3_BUCKET"),
        access = required_env("AWS_ACCESS_KEY_ID"),
        dir = migrations_dir().display(),
    )
}

#[test]
fn no_secret_reaches_state_plans_or_trace_logs() {
    let bed = Bed::start("sec");
    let token = bed.mint("acc-secrets-provider", &["repo:*:admin"]);
    let db_password = url::Url::parse(&bed.url)
        .unwrap()
        .password()
        .expect("the dev admin URL has a password")
        .to_string();
    let secrets = [
        ("database password", db_password),
        ("admin token", token.clone()),
        (
            "bootstrap token",
            required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
        ),
        ("S3 secret key", required_env("AWS_SECRET_ACCESS_KEY")),
        // Tokens minted by the ephemeral resource are never seen by the test: any token.
        ("a minted token (prefix)", "af_pat_".to_string()),
    ];
    for tf in terraforms() {
        let tag = format!("{:08x}", rand::random::<u32>());
        let prefix = format!("backups/acc-secrets-{tag}/");
        let drill_db = format!("af_drill_{tag}");
        let log = std::env::temp_dir().join(format!("af-acc-secrets-{tag}.log"));
        let boot = format!("af_boot_{tag}");
        let owner_password = format!("pw-{:016x}", rand::random::<u64>());
        let wd = Workdir::new(&tf, &config(&bed, &prefix, &drill_db, &boot))
            .with_env("TF_VAR_owner_password", &owner_password)
            .with_env("TF_VAR_admin_token", &token)
            .with_env(
                "TF_VAR_bootstrap_token",
                &required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
            )
            .with_env("TF_VAR_database_url", &bed.url)
            .with_env(
                "TF_VAR_s3_secret_key",
                &required_env("AWS_SECRET_ACCESS_KEY"),
            )
            // Nothing from the dev environment: only what the configuration gives.
            .without_env("ARTIFORTRESS_ADMIN_TOKEN")
            .without_env("ARTIFORTRESS_DATABASE_URL")
            .without_env("ARTIFORTRESS_BOOTSTRAP_TOKEN")
            .without_env("AWS_SECRET_ACCESS_KEY")
            .with_env("TF_LOG", "trace")
            .with_env("TF_LOG_PATH", &log.display().to_string());
        let mut seen = String::new();
        let mut run = |args: &[&str]| {
            let r = wd.run(args);
            assert_eq!(
                r.code,
                0,
                "terraform {} {args:?}:\n{}",
                tf.version,
                r.text()
            );
            seen.push_str(&r.text());
            r
        };
        run(&["plan", "-out=create.tfplan", "-input=false", "-no-color"]);
        run(&["show", "-json", "create.tfplan"]);
        run(&["apply", "-input=false", "-no-color", "create.tfplan"]);
        let second = run(&[
            "plan",
            "-out=second.tfplan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
        ]);
        assert!(second.stdout.contains("No changes"), "{}", second.text());
        run(&["show", "-json", "second.tfplan"]);
        run(&["show", "-json"]);
        assert_eq!(wd.output("status"), "ready");
        assert_eq!(wd.output("drill"), true, "{}", wd.output("report"));
        assert_eq!(wd.output("backups"), 1);
        assert!(wd.output("worst").as_str().is_some());
        assert_eq!(wd.output("checks")["migrations_dirty"], json!(true));
        let state = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        let state_after = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        let backup_state =
            std::fs::read_to_string(wd.file("terraform.tfstate.backup")).unwrap_or_default();
        let trace = std::fs::read_to_string(&log).unwrap();
        assert!(
            trace.contains("OpenEphemeralResource") && trace.contains("ApplyResourceChange"),
            "the trace log was captured"
        );
        for (place, text) in [
            ("the state", &state),
            ("the state after destroy", &state_after),
            ("terraform.tfstate.backup", &backup_state),
            ("the CLI output and show -json", &seen),
            ("the TF_LOG=trace log", &trace),
        ] {
            let per_run = [("bootstrap owner password", owner_password.clone())];
            for (what, secret) in secrets.iter().chain(per_run.iter()) {
                let n = text.matches(secret.as_str()).count();
                assert_eq!(
                    n, 0,
                    "terraform {}: the {what} appears {n} time(s) in {place}",
                    tf.version
                );
            }
        }
        // The state records which database, without the password.
        assert!(state.contains("connection_url"), "{state}");
        let _ = std::fs::remove_file(&log);
    }
}
