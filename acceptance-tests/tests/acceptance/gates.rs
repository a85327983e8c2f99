//! D3/D5 gates with the real Terraform CLIs: `data "artifortress_ops_summary"`,
//! `ephemeral "artifortress_admin_token"` and `data "artifortress_preflight"`, against a test bed
//! API of their own on a database of their own (so counters can be pushed over thresholds
//! without disturbing other tests).

use std::path::Path;
use std::process::Command;

use acceptance_tests::support::api::TestbedApi;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::run_db_migrate;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Workdir, psql, required_env, terraforms, testbed_on, with_database};

/// A migrated database on the dev environment's PostgreSQL and a test bed API on it (fault
/// switches enabled). Dropped at the end.
pub struct Bed {
    api: Option<TestbedApi>,
    admin_url: String,
    pub db: String,
    pub url: String,
    rt: tokio::runtime::Runtime,
}

impl Bed {
    pub fn start(tag: &str) -> Bed {
        let admin_url = required_env("ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL");
        let db = format!("af_{tag}_{:08x}", rand::random::<u32>());
        psql(&admin_url, &format!("create database {db}"));
        let url = with_database(&admin_url, &db);
        let out = run_db_migrate(&url, &migrations_dir()).unwrap();
        assert!(
            out.status.success(),
            "db-migrate.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let api = testbed_on(&url, &[("TESTBED_FAULTS_ENABLED", "1")]);
        Bed {
            api: Some(api),
            admin_url,
            db,
            url,
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    pub fn api_url(&self) -> &str {
        self.api.as_ref().unwrap().url()
    }

    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// Adds `n` undelivered outbox events of the default tenant (the ops summary counts the
    /// caller's tenant only).
    pub fn add_outbox(&self, n: u32) {
        self.sql(&format!(
            "insert into tenants (slug, name) values ('default', 'Default tenant') \
               on conflict (slug) do nothing; \
             insert into outbox_events (tenant_id, aggregate_type, aggregate_id, event_type, payload) \
             select t.tenant_id, 'package', 'p' || g, 'package.published', '{{}}'::jsonb \
             from tenants t, generate_series(1, {n}) g where t.slug = 'default'"
        ));
    }

    /// Every token this service minted that appears in `text`. Tokens are 64 lower-case hex
    /// characters with no prefix (Program.fs:2173 at f628e74 of the service's repository), so
    /// each 64-character hex window of `text` is hashed and looked up among the stored hashes.
    pub fn minted_tokens_in(&self, text: &str) -> Vec<String> {
        let stored = self.sql("select string_agg(token_hash, ',') from personal_access_tokens");
        let stored: std::collections::HashSet<&str> =
            stored.split(',').filter(|h| h.len() == 64).collect();
        assert!(!stored.is_empty(), "the service minted tokens");
        let bytes = text.as_bytes();
        let is_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        let mut found = Vec::new();
        let mut start = 0;
        while start < bytes.len() {
            if !is_hex(bytes[start]) {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < bytes.len() && is_hex(bytes[end]) {
                end += 1;
            }
            for w in start..=end.saturating_sub(64) {
                if end - w < 64 {
                    break;
                }
                let candidate = &text[w..w + 64];
                if stored.contains(hex::encode(Sha256::digest(candidate.as_bytes())).as_str()) {
                    found.push(candidate.to_string());
                }
            }
            start = end;
        }
        found
    }

    /// Mints a token with the bootstrap token (outside Terraform).
    pub fn mint(&self, subject: &str, scopes: &[&str]) -> String {
        let url = format!("{}/v1/auth/pats", self.api_url());
        let body: Value = self.rt.block_on(async {
            reqwest::Client::new()
                .post(&url)
                .header(
                    "X-Bootstrap-Token",
                    required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
                )
                .json(&json!({"subject": subject, "scopes": scopes, "ttlMinutes": 30}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {body}"))
            .to_string()
    }

    /// Replaces the test bed's fault switches (`{"neverReady": true}`, `{}`).
    pub fn faults(&self, doc: Value) {
        let url = format!("{}/testbed/faults", self.api_url());
        let status = self.rt.block_on(async {
            reqwest::Client::new()
                .put(&url)
                .json(&doc)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert!(status.is_success(), "PUT /testbed/faults: {status}");
    }

    /// Drops the database under the running API (it then answers 503 on what needs it).
    pub fn drop_database(&self) {
        psql(
            &self.admin_url,
            &format!("drop database if exists {} with (force)", self.db),
        );
    }

    pub fn audit_count(&self, action: &str) -> i64 {
        self.sql(&format!(
            "select count(*) from audit_log where action = '{action}'"
        ))
        .parse()
        .unwrap()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        drop(self.api.take());
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args(["-X", "-q", "-c"])
            .arg(format!("drop database if exists {} with (force)", self.db))
            .output();
    }
}

fn summary_config(api_url: &str, token: &str, body: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  api_url     = "{api_url}"
  admin_token = "{token}"
}}

data "artifortress_ops_summary" "now" {{
{body}
}}

output "worst"    {{ value = data.artifortress_ops_summary.now.worst_severity }}
output "breaches" {{ value = data.artifortress_ops_summary.now.breaches }}
output "pending"  {{ value = data.artifortress_ops_summary.now.counters["pending_outbox_events"] }}
output "growth"   {{ value = data.artifortress_ops_summary.now.growth }}
output "grew"     {{ value = data.artifortress_ops_summary.now.grew }}
output "ready"    {{ value = data.artifortress_ops_summary.now.readiness_status }}
output "trust"    {{ value = data.artifortress_ops_summary.now.trust_material }}
"#
    )
}

fn assert_failed(run: &crate::harness::Run, tf: &str, needles: &[&str]) {
    let text = run.text();
    assert_ne!(run.code, 0, "terraform {tf} should have failed:\n{text}");
    for n in needles {
        assert!(
            run.shows(n),
            "terraform {tf}: {n:?} not in the output:\n{text}"
        );
    }
}

#[test]
fn ops_summary_judges_thresholds_and_baseline_growth() {
    let bed = Bed::start("ops");
    let token = bed.mint("acc-ops", &["repo:*:admin"]);
    for tf in terraforms() {
        bed.sql("delete from outbox_events");
        let body = r#"
  thresholds = { pending_outbox_events = { warning = 2, critical = 4 } }
  baseline   = { pending_outbox_events = 0, failed_search_jobs = 0, recent_policy_timeouts_24h = 0 }
"#;
        let wd = Workdir::new(&tf, &summary_config(bed.api_url(), &token, body));
        let reads_before = bed.audit_count("ops.summary.read");
        wd.apply_ok();
        assert!(
            bed.audit_count("ops.summary.read") > reads_before,
            "every read writes an audit row"
        );
        assert_eq!(wd.output("worst"), "none", "terraform {}", tf.version);
        assert_eq!(wd.output("breaches"), json!([]));
        assert_eq!(wd.output("ready"), "ready");
        assert_eq!(wd.output("grew"), false);
        assert_eq!(wd.output("pending"), 0);
        assert_eq!(wd.output("trust")["oidc"]["status"], "not_configured");
        wd.assert_plan_empty();

        // Above the overridden warning level: a warning, and growth against the baseline.
        bed.add_outbox(3);
        wd.apply_ok();
        assert_eq!(wd.output("worst"), "warning");
        assert_eq!(
            wd.output("breaches"),
            json!([{
                "metric": "pending_outbox_events", "severity": "warning", "value": 3,
                "threshold": 2,
                "detail": "pending_outbox_events = 3 is above the warning threshold 2"
            }])
        );
        assert_eq!(wd.output("growth")["pending_outbox_events"], 3);
        assert_eq!(wd.output("growth")["failed_search_jobs"], 0);
        assert_eq!(wd.output("grew"), true);

        // Above critical, with fail_on: the read fails and names the breach.
        bed.add_outbox(2);
        wd.set_config(&summary_config(
            bed.api_url(),
            &token,
            &format!("{body}\n  fail_on = \"critical\""),
        ));
        assert_failed(
            &wd.apply(),
            &tf.version,
            &[
                "Artifortress backlog is critical",
                "pending_outbox_events = 5 is above the critical threshold 4",
            ],
        );
        // The service's own thresholds apply where none is overridden (critical > 200).
        wd.set_config(&summary_config(bed.api_url(), &token, ""));
        wd.apply_ok();
        assert_eq!(wd.output("worst"), "none");
        assert_eq!(wd.output("growth"), Value::Null);
        bed.add_outbox(200);
        wd.apply_ok();
        assert_eq!(wd.output("worst"), "critical");
        assert_eq!(wd.output("breaches")[0]["threshold"], 200);

        // Readiness other than ready is critical, with the summary still answering.
        bed.sql("delete from outbox_events");
        bed.faults(json!({"dependencies": {"oidc_jwks": "degraded"}}));
        wd.apply_ok();
        assert_eq!(wd.output("ready"), "degraded");
        assert_eq!(wd.output("worst"), "critical");
        assert_eq!(wd.output("breaches")[0]["metric"], "readiness_status");
        assert_eq!(wd.output("trust")["oidc"]["status"], "degraded");
        // ... and degraded trust material is its own warning
        // (deploy/enterprise-ops-alert-thresholds.yaml:11-20 of the service's repository).
        let b = wd.output("breaches");
        assert_eq!(b.as_array().unwrap().len(), 2, "{b}");
        assert_eq!(b[1]["metric"], "oidc_jwks_status");
        assert_eq!(b[1]["severity"], "warning");
        assert!(
            b[1]["detail"]
                .as_str()
                .unwrap()
                .contains("OIDC trust material fallback should be triaged before rollover windows"),
            "{b}"
        );
        // Only a degraded saml_metadata: readiness critical, the SAML warning, no OIDC one.
        bed.faults(json!({"dependencies": {"saml_metadata": "degraded"}}));
        wd.apply_ok();
        let b = wd.output("breaches");
        let got: Vec<(&str, &str)> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["metric"].as_str().unwrap(),
                    x["severity"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("readiness_status", "critical"),
                ("saml_metadata_status", "warning")
            ]
        );
        bed.faults(json!({}));
        wd.destroy_ok();
    }
}

#[test]
fn ops_summary_errors_quote_the_service() {
    let bed = Bed::start("opserr");
    let reader = bed.mint("acc-reader", &["repo:core:read"]);
    for tf in terraforms() {
        // A token the service never minted (its tokens are 64 hex characters).
        let unknown = "0".repeat(64);
        let wd = Workdir::new(&tf, &summary_config(bed.api_url(), &unknown, ""));
        assert_failed(
            &wd.plan_detailed(),
            &tf.version,
            &[
                "Artifortress refused the token (401)",
                "unauthorized: Missing or invalid bearer token.",
            ],
        );
        wd.set_config(&summary_config(bed.api_url(), &reader, ""));
        assert_failed(
            &wd.plan_detailed(),
            &tf.version,
            &[
                "the token lacks the required role (403)",
                "forbidden: Caller does not have the required tenant role.",
            ],
        );
        // Thresholds name real metrics, and warning <= critical.
        wd.set_config(&summary_config(
            bed.api_url(),
            &reader,
            "  thresholds = { pending = { warning = 1 }, failed_search_jobs = { warning = 9, critical = 3 } }",
        ));
        assert_failed(
            &wd.run(&["validate", "-no-color"]),
            &tf.version,
            &[
                "Unknown ops summary metric",
                "warning (9) is above critical (3)",
            ],
        );
    }
    // PostgreSQL not answering for the service: 503 with the service's own words.
    let admin = bed.mint("acc-admin", &["repo:*:admin"]);
    bed.drop_database();
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &summary_config(bed.api_url(), &admin, ""));
        assert_failed(
            &wd.plan_detailed(),
            &tf.version,
            &[
                "Artifortress is unavailable (503)",
                "service_unavailable: Database operation failed",
            ],
        );
    }
}

fn ephemeral_config(api_url: &str, subject: &str, extra: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  api_url = "{api_url}"
}}

ephemeral "artifortress_admin_token" "ci" {{
  subject = "{subject}"
  {extra}
}}

provider "artifortress" {{
  alias       = "minted"
  api_url     = "{api_url}"
  admin_token = ephemeral.artifortress_admin_token.ci.token
}}

data "artifortress_ops_summary" "now" {{
  provider = artifortress.minted
}}

output "worst" {{ value = data.artifortress_ops_summary.now.worst_severity }}
"#
    )
}

#[test]
fn admin_token_is_minted_used_revoked_and_never_stored() {
    let bed = Bed::start("eph");
    // The scan below finds a token the service minted (and nothing in a text without one).
    let control = bed.mint("acc-eph-control", &["repo:*:read"]);
    assert_eq!(
        bed.minted_tokens_in(&format!(
            "Authorization: Bearer {control}\n{}",
            "f".repeat(80)
        )),
        vec![control.clone()]
    );
    assert!(bed.minted_tokens_in(&"a".repeat(64)).is_empty());
    for tf in terraforms() {
        let subject = format!("acc-eph-{}", tf.version.replace('.', "-"));
        let wd = Workdir::new(&tf, &ephemeral_config(bed.api_url(), &subject, ""))
            .without_env("ARTIFORTRESS_ADMIN_TOKEN")
            .with_env("TF_LOG", "trace")
            .with_env("TF_LOG_PATH", wd_log_path().as_str());
        let plan = wd.run(&["plan", "-out=tfplan", "-input=false", "-no-color"]);
        assert_eq!(plan.code, 0, "plan:\n{}", plan.text());
        let shown = wd.run(&["show", "-json", "tfplan"]);
        assert_eq!(shown.code, 0);
        let apply = wd.run(&["apply", "-input=false", "-no-color", "tfplan"]);
        assert_eq!(apply.code, 0, "apply:\n{}", apply.text());
        assert_eq!(wd.output("worst"), "none");

        // Minted at plan and at apply (each run opens it again), revoked at each close.
        let tokens = bed.sql(&format!(
            "select count(*), count(revoked_at) from personal_access_tokens where subject = '{subject}'"
        ));
        assert_eq!(tokens, "2|2", "minted|revoked for {subject}");
        let reads = bed.sql(&format!(
            "select count(*) from audit_log where action = 'ops.summary.read' and actor_subject = '{subject}'"
        ));
        // Read at plan time only: applying a saved plan does not read data sources again.
        assert_eq!(reads, "1");
        let revoked = bed.sql(&format!(
            "select count(*) from audit_log a join personal_access_tokens t \
               on a.resource_id = t.token_id::text \
             where a.action = 'auth.pat.revoked' and t.subject = '{subject}'"
        ));
        assert_eq!(revoked, "2", "the test bed saw both revocations");

        // Never in state, plan or logs.
        let state = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        assert_eq!(
            bed.minted_tokens_in(&state),
            Vec::<String>::new(),
            "token in state"
        );
        assert_eq!(
            bed.minted_tokens_in(&shown.stdout),
            Vec::<String>::new(),
            "token in the plan JSON"
        );
        assert_eq!(
            bed.minted_tokens_in(&(plan.text() + &apply.text())),
            Vec::<String>::new()
        );
        let log = std::fs::read_to_string(wd_log_path()).unwrap_or_default();
        assert!(log.contains("CloseEphemeralResource"), "trace log captured");
        assert_eq!(
            bed.minted_tokens_in(&log),
            Vec::<String>::new(),
            "token in the TF_LOG=trace log"
        );
        wd.assert_plan_empty();

        // TTL bounds are validated before anything is minted.
        wd.set_config(&ephemeral_config(
            bed.api_url(),
            &subject,
            "ttl_minutes = 2",
        ));
        assert_failed(
            &wd.run(&["validate", "-no-color"]),
            &tf.version,
            &["ttl_minutes must be a whole number from 5 to 1440"],
        );
        wd.set_config(&ephemeral_config(
            bed.api_url(),
            &subject,
            "scopes = [\"admin\"]",
        ));
        assert_failed(
            &wd.run(&["validate", "-no-color"]),
            &tf.version,
            &["Invalid scope"],
        );
        let _ = std::fs::remove_file(wd_log_path());
    }
}

/// A TTL above the tenant's PAT policy maximum is refused by the service with
/// "ttlMinutes exceeds configured max TTL of N." (Program.fs:7842-7843 at f628e74); the provider
/// names the limit and the attribute to change. A wrong bootstrap token, once the tenant has
/// tokens, is the service's 403 (Program.fs:7824-7828).
#[test]
fn admin_token_refusals_name_the_policy_limit_and_the_bootstrap_token() {
    let bed = Bed::start("ephpol");
    let admin = bed.mint("acc-policy-admin", &["repo:*:admin"]);
    let status = bed.rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{}/v1/admin/auth/pat-policy", bed.api_url()))
            .bearer_auth(&admin)
            .json(&json!({"maxTtlMinutes": 10, "allowBootstrapIssuance": true}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "PUT pat-policy: {status}");
    for tf in terraforms() {
        let subject = format!("acc-ephpol-{}", tf.version.replace('.', "-"));
        // The default ttl_minutes (15) is above the policy's 10.
        let wd = Workdir::new(&tf, &ephemeral_config(bed.api_url(), &subject, ""))
            .without_env("ARTIFORTRESS_ADMIN_TOKEN");
        assert_failed(
            &wd.plan_detailed(),
            &tf.version,
            &[
                "The tenant's PAT policy allows tokens of at most 10 minutes",
                "ttl_minutes = 15 is above the maximum TTL",
                "Set ttl_minutes to 10 or less",
                "bad_request: ttlMinutes exceeds configured max TTL of 10.",
            ],
        );
        assert_eq!(
            bed.sql(&format!(
                "select count(*) from personal_access_tokens where subject = '{subject}'"
            )),
            "0"
        );
        wd.set_config(&ephemeral_config(
            bed.api_url(),
            &subject,
            "ttl_minutes = 10",
        ));
        wd.apply_ok();
        assert_eq!(wd.output("worst"), "none");
        wd.assert_plan_empty();

        let wd = Workdir::new(&tf, &ephemeral_config(bed.api_url(), &subject, ""))
            .without_env("ARTIFORTRESS_ADMIN_TOKEN")
            .with_env("ARTIFORTRESS_BOOTSTRAP_TOKEN", "not-the-bootstrap-token");
        wd.set_config(&ephemeral_config(
            bed.api_url(),
            &subject,
            "ttl_minutes = 10",
        ));
        assert_failed(
            &wd.plan_detailed(),
            &tf.version,
            &[
                "Artifortress refused the bootstrap token (403)",
                "forbidden: PAT issuance requires bootstrap token or admin scope.",
                "ARTIFORTRESS_BOOTSTRAP_TOKEN",
            ],
        );
    }
}

/// A per-process trace log path (tests run in their own processes under nextest).
fn wd_log_path() -> String {
    std::env::temp_dir()
        .join(format!("af-acc-trace-{}.log", std::process::id()))
        .display()
        .to_string()
}

fn preflight_config(bed: &Bed, token: &str, prefix: &str, dir: &Path, args: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  api_url      = "{api}"
  admin_token  = "{token}"
  database_url = "{url}"
}}

data "artifortress_preflight" "prod" {{
  backup_prefix  = "{prefix}"
  migrations_dir = "{dir}"
  {args}
}}

output "go"      {{ value = data.artifortress_preflight.prod.go }}
output "failed"  {{ value = data.artifortress_preflight.prod.failed }}
output "checks"  {{ value = data.artifortress_preflight.prod.checks }}
output "pending" {{ value = data.artifortress_preflight.prod.pending_migrations }}
output "newest"  {{ value = data.artifortress_preflight.prod.newest_backup_id }}
"#,
        api = bed.api_url(),
        url = bed.url,
        dir = dir.display(),
    )
}

fn backup_config(bed: &Bed, prefix: &str) -> String {
    format!(
        r#"
resource "artifortress_backup" "pre" {{
  database_url = "{url}"
  prefix       = "{prefix}"
  retention    = "delete"
}}
"#,
        url = bed.url
    )
}

fn window(open: bool) -> String {
    let now = chrono::Utc::now();
    let (a, b) = if open {
        (
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
    } else {
        (
            now - chrono::Duration::hours(3),
            now - chrono::Duration::hours(2),
        )
    };
    format!(
        "{}/{}",
        a.format("%Y-%m-%dT%H:%M:%SZ"),
        b.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

#[test]
fn preflight_is_go_only_when_every_check_passes() {
    let bed = Bed::start("pre");
    let token = bed.mint("acc-preflight", &["repo:*:admin"]);
    for tf in terraforms() {
        let prefix = format!("backups/acc-preflight-{:08x}/", rand::random::<u32>());
        // The service's migrations plus a pending contract migration.
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(migrations_dir()).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let contract =
            "-- artifortress:class C\nalter table repos drop column if exists legacy_flag;\n";
        std::fs::write(dir.path().join("0004_drop_legacy.sql"), contract).unwrap();

        // Everything wrong at once: each failed check is reported, in order.
        bed.add_outbox(201);
        bed.faults(json!({"neverReady": true}));
        let nogo_args = format!(
            "change_window = \"{}\"\n  fail_on_no_go = false",
            window(false)
        );
        let wd = Workdir::new(
            &tf,
            &preflight_config(&bed, &token, &prefix, dir.path(), &nogo_args),
        );
        wd.apply_ok();
        assert_eq!(wd.output("go"), false, "terraform {}", tf.version);
        assert_eq!(
            wd.output("failed"),
            json!([
                "change_window",
                "rollback_owner",
                "backup_age",
                "readiness",
                "backlog",
                "contract_migrations"
            ])
        );
        let checks = wd.output("checks");
        let detail = |name: &str| {
            checks
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .map(|c| c["detail"].as_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no check {name} in {checks}"))
        };
        assert!(detail("change_window").contains("closed"), "{checks}");
        assert!(detail("backup_age").contains("no backup under"));
        assert!(detail("readiness").contains("not_ready"), "{checks}");
        assert!(
            detail("backlog")
                .contains("pending_outbox_events = 201 is above the critical threshold 200"),
            "{checks}"
        );
        assert!(detail("contract_migrations").contains("0004_drop_legacy.sql"));
        assert_eq!(
            wd.output("pending"),
            json!([{"version": "0004_drop_legacy.sql", "class": "C"}])
        );

        // fail_on_no_go (the default) makes the no-go an error listing the failed checks.
        wd.set_config(&preflight_config(
            &bed,
            &token,
            &prefix,
            dir.path(),
            &format!("change_window = \"{}\"", window(false)),
        ));
        assert_failed(
            &wd.plan_detailed(),
            &tf.version,
            &[
                "Preflight: no-go (6 of 7 checks failed)",
                "- rollback_owner: no rollback owner given",
                "- backlog: critical:",
            ],
        );

        // Fix everything: a backup, the window open, an owner, ready, no backlog, the
        // contract migration approved.
        bed.sql("delete from outbox_events");
        bed.faults(json!({}));
        let go_args = format!(
            "change_window  = \"{}\"\n  rollback_owner = \"oncall-platform\"\n  allow_contract = true\n  depends_on     = [artifortress_backup.pre]",
            window(true)
        );
        wd.set_config(&format!(
            "{}\n{}",
            preflight_config(&bed, &token, &prefix, dir.path(), &go_args),
            backup_config(&bed, &prefix)
        ));
        wd.apply_ok();
        assert_eq!(wd.output("go"), true, "{}", wd.output("checks"));
        assert_eq!(wd.output("failed"), json!([]));
        assert!(wd.output("newest").as_str().is_some());

        // A dirty migration (a no-transaction file that died) is a no-go on its own.
        let sum = hex::encode(Sha256::digest(contract.as_bytes()));
        bed.sql(&format!(
            "create table if not exists artifortress_migrations_log (version text primary key, \
               checksum text not null, source text not null, applied_by text not null, \
               execution_ms bigint, dirty boolean not null default false, \
               recorded_at timestamptz not null default now()); \
             insert into artifortress_migrations_log (version, checksum, source, applied_by, dirty) \
               values ('0004_drop_legacy.sql', '{sum}', 'terraform', 'acc', true)"
        ));
        let run = wd.apply();
        assert_failed(
            &run,
            &tf.version,
            &["- migrations_dirty: unfinished (dirty) migrations: 0004_drop_legacy.sql"],
        );
        bed.sql("drop table artifortress_migrations_log");

        // An old backup fails the age check.
        wd.set_config(&format!(
            "{}\n{}",
            preflight_config(
                &bed,
                &token,
                &prefix,
                dir.path(),
                &go_args.replace(
                    "allow_contract",
                    "max_backup_age = \"1s\"\n  allow_contract"
                ),
            ),
            backup_config(&bed, &prefix)
        ));
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert_failed(
            &wd.apply(),
            &tf.version,
            &[
                "- backup_age: newest backup",
                "is older than the limit of 1s",
            ],
        );
        // A failing gate also fails the refresh of `destroy`: destroy without refreshing.
        let destroy = wd.run(&[
            "destroy",
            "-auto-approve",
            "-refresh=false",
            "-input=false",
            "-no-color",
        ]);
        assert_eq!(destroy.code, 0, "destroy:\n{}", destroy.text());
    }
}
