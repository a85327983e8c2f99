//! The secrets policy, end to end: every resource, data source and ephemeral resource of the
//! provider in one configuration, given every kind of secret (provider tokens, database URLs
//! with passwords at provider and resource level, the ways a data source reaches another
//! database without a secret argument (an aliased provider, a URL without password plus
//! `PGPASSWORD`), the S3 secret key, a minted token, the SSH
//! private key, a release's env values; the release goes to dev deploy host 1), run
//! with `TF_LOG=trace`; the state files, `terraform show -json` of every plan, the CLI output
//! and the trace log must contain none of the secret values.

use serde_json::json;

use crate::gates::Bed;
use crate::harness::{Workdir, required_env, terraforms};
use acceptance_tests::support::migrations_dir;

/// Where the release goes: a dev deploy host (`scripts/dev-env up --hosts`).
struct ReleaseTarget {
    address: String,
    port: u16,
    deploy_dir: String,
    api_port: u16,
}

fn config(bed: &Bed, prefix: &str, drill_db: &str, boot: &str, rel: &ReleaseTarget) -> String {
    let (artifacts, sums) = crate::deploy_hosts::artifacts();
    let sha = &sums["v1"];
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
variable "ssh_private_key" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
variable "api_connection_string" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
variable "env_secret" {{
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
  ssh = {{
    user        = "{ssh_user}"
    private_key = var.ssh_private_key
    known_hosts = file("{known_hosts}")
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

resource "artifortress_release" "app" {{
  version    = "v1"
  artifact   = {{ source = "{artifacts}/artifortress-v1.tar.gz", sha256 = "{sha}" }}
  deploy_dir = "{deploy_dir}"
  hosts = {{
    "api-1" = {{ address = "{rel_address}", port = {rel_port}, roles = ["api", "worker"], api_url = "http://{rel_address}:{api_port}" }}
  }}
  api_env_wo = {{
    ConnectionStrings__Postgres = var.api_connection_string
    ObjectStorage__Endpoint     = "{endpoint}"
    ObjectStorage__AccessKey    = "{access}"
    ObjectStorage__SecretKey    = var.s3_secret_key
    ObjectStorage__Bucket       = "{bucket}"
    Auth__BootstrapToken        = var.bootstrap_token
    ASPNETCORE_URLS             = "http://{{{{address}}}}:{api_port}"
    Probe__Secret               = var.env_secret
  }}
  worker_env_wo = {{ ConnectionStrings__Postgres = var.api_connection_string, Probe__Secret = var.env_secret }}
  commands = {{
    restart_api    = "{{{{release_dir}}}}/bin/artifortress restart api"
    restart_worker = "{{{{release_dir}}}}/bin/artifortress restart worker"
    worker_status  = "{{{{release_dir}}}}/bin/artifortress status worker"
    stop_api       = "{{{{release_dir}}}}/bin/artifortress stop api"
    stop_worker    = "{{{{release_dir}}}}/bin/artifortress stop worker"
  }}
  on_destroy = "stop"
}}

data "artifortress_readiness" "api" {{}}

data "artifortress_migrations" "now" {{
  dir        = "{dir}"
  depends_on = [artifortress_migration.schema]
}}

# Another way to reach a database from a data source: an aliased provider holding the URL...
data "artifortress_migrations" "via_alias" {{
  provider   = artifortress.minted
  dir        = "{dir}"
  depends_on = [artifortress_migration.schema]
}}

# ...or the URL without its password, and the password in PGPASSWORD.
data "artifortress_migrations" "bare_url" {{
  database_url = "{bare_url}"
  dir          = "{dir}"
  depends_on   = [artifortress_migration.schema]
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

# The smoke flow's whole happy path (draft, upload through a presigned part, publish) with the
# provider's admin token.
data "artifortress_smoke" "post_deploy" {{
  write = true
}}

output "status"  {{ value = data.artifortress_readiness.api.status }}
output "smoke"   {{ value = data.artifortress_smoke.post_deploy.passed }}
output "release" {{ value = artifortress_release.app.host_versions }}
output "drill"   {{ value = artifortress_restore_drill.drill.passed }}
output "report"  {{ value = artifortress_restore_drill.drill.report_markdown }}
output "backups" {{ value = length(data.artifortress_backups.all.backups) }}
output "worst"   {{ value = data.artifortress_ops_summary.now.worst_severity }}
output "via_alias" {{ value = data.artifortress_migrations.via_alias.up_to_date }}
output "bare_url"  {{ value = data.artifortress_migrations.bare_url.up_to_date }}
output "checks"  {{ value = {{ for c in data.artifortress_preflight.gate.checks : c.name => c.passed }} }}
"#,
        api = bed.api_url(),
        endpoint = required_env("ARTIFORTRESS_S3_ENDPOINT"),
        bucket = required_env("ARTIFORTRESS_S3_BUCKET"),
        access = required_env("AWS_ACCESS_KEY_ID"),
        dir = migrations_dir().display(),
        known_hosts = required_env("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE"),
        ssh_user = required_env("ARTIFORTRESS_SSH_USER"),
        deploy_dir = rel.deploy_dir,
        rel_address = rel.address,
        rel_port = rel.port,
        api_port = rel.api_port,
        bare_url = {
            let mut u = url::Url::parse(&bed.url).unwrap();
            u.set_password(None).unwrap();
            u.to_string()
        },
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
    let ssh_key =
        std::fs::read_to_string(required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")).unwrap();
    let key_line = ssh_key
        .lines()
        .nth(2)
        .expect("an OpenSSH key has body lines")
        .to_string();
    let secrets = [
        ("database password", db_password.clone()),
        ("admin token", token.clone()),
        (
            "bootstrap token",
            required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
        ),
        ("S3 secret key", required_env("AWS_SECRET_ACCESS_KEY")),
        ("SSH private key (a line of it)", key_line.clone()),
    ];
    let host = crate::deploy_hosts::dev_host("host-1");
    for tf in terraforms() {
        let tag = format!("{:08x}", rand::random::<u32>());
        let prefix = format!("backups/acc-secrets-{tag}/");
        let drill_db = format!("af_drill_{tag}");
        let log = std::env::temp_dir().join(format!("af-acc-secrets-{tag}.log"));
        let boot = format!("af_boot_{tag}");
        let owner_password = format!("pw-{:016x}", rand::random::<u64>());
        let env_secret = format!("env-{:016x}", rand::random::<u64>());
        let rel = ReleaseTarget {
            address: host.address.clone(),
            port: host.port,
            deploy_dir: format!("/opt/artifortress/secrets-{tag}"),
            api_port: acceptance_tests::support::free_port().unwrap(),
        };
        let wd = Workdir::new(&tf, &config(&bed, &prefix, &drill_db, &boot, &rel))
            .with_env("TF_VAR_ssh_private_key", &ssh_key)
            .with_env(
                "TF_VAR_api_connection_string",
                &crate::harness::npgsql(&bed.url),
            )
            .with_env("TF_VAR_env_secret", &env_secret)
            .with_env("TF_VAR_owner_password", &owner_password)
            .with_env("TF_VAR_admin_token", &token)
            .with_env(
                "TF_VAR_bootstrap_token",
                &required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
            )
            .with_env("TF_VAR_database_url", &bed.url)
            // For the data source given a URL without password (never in configuration).
            .with_env("PGPASSWORD", &db_password)
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
        assert_eq!(wd.output("smoke"), true);
        assert_eq!(wd.output("release"), json!({"api-1": "v1"}));
        assert_eq!(wd.output("drill"), true, "{}", wd.output("report"));
        assert_eq!(wd.output("backups"), 1);
        assert!(wd.output("worst").as_str().is_some());
        assert_eq!(wd.output("checks")["migrations_dirty"], json!(true));
        assert_eq!(wd.output("via_alias"), true);
        assert_eq!(wd.output("bare_url"), true);
        let state = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        // What the env files hash to as they sit on the host, and the key their fingerprints
        // are keyed with: neither may be anywhere (a plain sha256 lets a reader of the state
        // test guessed secrets offline).
        let on_host = |cmd: String| {
            let (code, out) = crate::deploy_hosts::ssh(&host, &cmd);
            assert_eq!(code, 0, "{cmd}: {out}");
            out.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let shared = format!("{}/shared", rel.deploy_dir);
        let host_values = [
            (
                "plain sha256 of the api env file",
                on_host(format!("sha256sum < {shared}/api.env")),
            ),
            (
                "plain sha256 of the worker env file",
                on_host(format!("sha256sum < {shared}/worker.env")),
            ),
            (
                "env fingerprint key",
                on_host(format!("cat {shared}/env-fingerprint.key")),
            ),
        ];
        for (what, v) in &host_values {
            assert_eq!(v.len(), 64, "{what}: {v}");
        }
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
            let per_run = [
                ("bootstrap owner password", owner_password.clone()),
                ("release env secret", env_secret.clone()),
            ];
            let host_values = host_values.iter().map(|(w, v)| (*w, v.clone()));
            for (what, secret) in secrets
                .iter()
                .cloned()
                .chain(per_run.iter().cloned())
                .chain(host_values)
            {
                let n = text.matches(secret.as_str()).count();
                assert_eq!(
                    n, 0,
                    "terraform {}: the {what} appears {n} time(s) in {place}",
                    tf.version
                );
            }
            // Tokens minted by the ephemeral resource are never seen by the test: any token
            // the service minted (64 hex characters, no prefix) is looked up by its hash.
            let minted = bed.minted_tokens_in(text);
            assert!(
                minted.is_empty(),
                "terraform {}: {} minted token(s) appear in {place}",
                tf.version,
                minted.len()
            );
        }
        // The state records which database, without the password.
        assert!(state.contains("connection_url"), "{state}");
        let _ = std::fs::remove_file(&log);
    }
}
