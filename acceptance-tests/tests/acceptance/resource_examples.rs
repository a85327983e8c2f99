//! The small per-resource and per-data-source examples (`examples/resources/*`,
//! `examples/data-sources/*`, `examples/ephemeral-resources/*`: the ones docs/ embeds) applied
//! as they are, with every Terraform under test, on an environment of their own: a throw-away
//! PostgreSQL holding the service's database (the test bed's schema, migrated the service's way),
//! a throw-away Garage, and a test bed API on both. Each example directory is copied unchanged;
//! the test adds only what a user's root module has around it: a `required_providers` block,
//! the provider's settings in its environment variables, the example's input variables, and the
//! `db/migrations` directory the examples point at (the test bed's migrations). After every
//! apply the next plan must be empty; then the example is destroyed.
//!
//! The examples run in an order that lets them build on each other the way an operator's
//! configurations do: the backup example leaves a retained backup that the backups and
//! preflight examples find; the migration example brings the database to the newest file that
//! the migrations example's gate requires.
//!
//! `examples/resources/artifortress_release` needs SSH deploy hosts: its own test
//! (`release_example_applies_to_the_dev_hosts`).

use std::path::Path;

use acceptance_tests::support::api::{TestbedApi, api_env};
use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::PgServer;
use serde_json::{Value, json};

use acceptance_tests::support::free_port;

use crate::deploy_hosts::{self, DevHost, reset};
use crate::examples::{Example, copy_dir, examples_dir, tf_tag};
use crate::harness::{Terraform, required_env, terraforms};

const SERVICE_DB: &str = "artifortress";
const BOOTSTRAP_TOKEN: &str = "examples-bootstrap-token-0123456789";

/// One run's servers: PostgreSQL, Garage (the provider's bucket plus `artifortress-staging`,
/// which the bootstrap example names), the test bed API, and an admin token minted on it.
struct Bed {
    pg: PgServer,
    garage: GarageServer,
    api: TestbedApi,
    admin_token: String,
    rt: tokio::runtime::Runtime,
}

impl Bed {
    fn start() -> Bed {
        let pg = PgServer::start().unwrap();
        let garage = GarageServer::start().unwrap();
        garage.create_bucket("artifortress-staging").unwrap();
        pg.create_migrated_database(SERVICE_DB).unwrap();
        let api = TestbedApi::start(
            Path::new(env!("CARGO_BIN_EXE_artifortress-testbed-api")),
            &api_env(
                &pg.npgsql_connection_string(SERVICE_DB),
                BOOTSTRAP_TOKEN,
                vec![
                    ("ObjectStorage__Endpoint".into(), garage.endpoint()),
                    (
                        "ObjectStorage__AccessKey".into(),
                        garage.access_key().into(),
                    ),
                    (
                        "ObjectStorage__SecretKey".into(),
                        garage.secret_key().into(),
                    ),
                    ("ObjectStorage__Bucket".into(), garage.bucket().into()),
                ],
            ),
        )
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let admin_token = rt.block_on(async {
            let body: Value = reqwest::Client::new()
                .post(format!("{}/v1/auth/pats", api.url()))
                .header("X-Bootstrap-Token", BOOTSTRAP_TOKEN)
                .json(&json!({"subject": "examples-test", "scopes": ["repo:*:admin"], "ttlMinutes": 60}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap();
            body["token"].as_str().expect("minted token").to_string()
        });
        Bed {
            pg,
            garage,
            api,
            admin_token,
            rt,
        }
    }

    /// An example directory copied into a temporary root module, ready to `init`.
    fn example(&self, tf: &Terraform, dir: &str) -> Example {
        let ex = Example::new(tf, &[dir], dir)
            .with_env("ARTIFORTRESS_API_URL", self.api.url())
            .with_env("ARTIFORTRESS_ADMIN_TOKEN", &self.admin_token)
            .with_env("ARTIFORTRESS_BOOTSTRAP_TOKEN", BOOTSTRAP_TOKEN)
            .with_env(
                "ARTIFORTRESS_DATABASE_URL",
                &self.pg.database_url(SERVICE_DB),
            )
            .with_env("ARTIFORTRESS_S3_ENDPOINT", &self.garage.endpoint())
            .with_env("ARTIFORTRESS_S3_BUCKET", self.garage.bucket())
            .with_env("AWS_ACCESS_KEY_ID", self.garage.access_key())
            .with_env("AWS_SECRET_ACCESS_KEY", self.garage.secret_key())
            .with_env("AWS_REGION", self.garage.region());
        std::fs::write(
            ex.dir.join("terraform.tf"),
            "terraform {\n  required_providers {\n    artifortress = { source = \"artifortress/artifortress\" }\n  }\n}\n",
        )
        .unwrap();
        copy_dir(&migrations_dir(), &ex.dir.join("db/migrations"));
        ex.init(&[]);
        ex
    }

    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.rt.block_on(async {
            self.garage
                .s3_client()
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect()
        })
    }

    fn sql(&self, db: &str, sql: &str) -> String {
        self.pg.psql(db, sql).unwrap()
    }
}

/// apply (vars as `-var`), the next plan empty, the outputs; the caller destroys.
#[track_caller]
fn apply(ex: &Example, vars: &[(&str, &str)]) -> Value {
    let args: Vec<String> = vars.iter().map(|(k, v)| format!("-var={k}={v}")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ex.apply_ok(&args);
    let run = ex.ok(&["output", "-json"]);
    serde_json::from_str(&run.stdout).expect("output -json")
}

/// apply, then a plan whose only entries are re-reads of `reads` (data sources scoped in
/// `check` blocks, which Terraform reads again at every plan: hashicorp/terraform#35226);
/// anything else planned fails.
#[track_caller]
fn apply_with_check_reads(ex: &Example, vars: &[(&str, &str)], reads: &[&str]) {
    let vars: Vec<String> = vars.iter().map(|(k, v)| format!("-var={k}={v}")).collect();
    let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
    args.extend(vars.iter().map(String::as_str));
    ex.ok(&args);
    let mut args = vec!["plan", "-input=false", "-no-color", "-out=next.tfplan"];
    args.extend(vars.iter().map(String::as_str));
    ex.ok(&args);
    let plan: Value =
        serde_json::from_str(&ex.ok(&["show", "-json", "next.tfplan"]).stdout).unwrap();
    let planned: Vec<(String, Value)> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["change"]["actions"] != json!(["no-op"]))
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["change"]["actions"].clone(),
            )
        })
        .collect();
    assert!(
        planned
            .iter()
            .all(|(address, actions)| reads.contains(&address.as_str())
                && *actions == json!(["read"])),
        "terraform {}: the plan after apply has more than the check blocks' reads: {planned:?}",
        ex.version()
    );
    assert!(
        plan["output_changes"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(_, c)| c["actions"] == json!(["no-op"])),
        "terraform {}: outputs change after apply: {}",
        ex.version(),
        plan["output_changes"]
    );
}

#[track_caller]
fn destroy(ex: &Example, vars: &[(&str, &str)]) {
    let mut args = vec![
        "destroy".to_string(),
        "-auto-approve".into(),
        "-input=false".into(),
        "-no-color".into(),
    ];
    args.extend(vars.iter().map(|(k, v)| format!("-var={k}={v}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ex.ok(&args);
}

fn ledger(bed: &Bed, db: &str) -> Vec<String> {
    bed.sql(db, "select version from schema_migrations order by version")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_resource_and_data_source_example_applies() {
    let mut files: Vec<String> = std::fs::read_dir(migrations_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // The example's target and baseline are the service's second file.
    assert!(
        files.len() >= 3 && files[1] == "0002_auth_and_audit.sql",
        "the test bed's migrations changed: {files:?}"
    );
    let newest = files.last().unwrap().clone();

    for tf in terraforms() {
        let bed = Bed::start();
        let admin_url = bed.pg.database_url("postgres");
        let v = tf_tag(&tf);

        // D1: artifortress_bootstrap. Destroy keeps the database (on_destroy = "keep").
        let ex = bed
            .example(&tf, "resources/artifortress_bootstrap")
            .with_env("TF_VAR_admin_database_url", &admin_url)
            .with_env("TF_VAR_db_password", "examples-owner-password-1");
        let out = apply(&ex, &[]);
        let db = &out["staging_database"]["value"];
        assert_eq!(
            db["id"],
            format!("127.0.0.1:{}/artifortress_staging", bed.pg.port()),
            "terraform {v}: {out}"
        );
        let checks = db["checks"].as_array().unwrap();
        assert!(
            !checks.is_empty() && checks.iter().all(|c| c["passed"] == true),
            "terraform {v}: bootstrap checks: {db}"
        );
        destroy(&ex, &[]);
        assert_eq!(
            bed.sql(
                "postgres",
                "select pg_get_userbyid(datdba) from pg_database where datname = 'artifortress_staging'"
            ),
            "artifortress",
            "terraform {v}: on_destroy = keep leaves the database, owned by its role"
        );

        // D0: artifortress_migration. `schema` adopts the service's ledger of the provider's
        // database; `production` stops at 0002 on an empty database; `legacy` records
        // 0001-0002 (present without a ledger) as baseline and runs the rest.
        bed.pg.create_database("production").unwrap();
        bed.pg.create_database("legacy").unwrap();
        for f in &files[..2] {
            bed.pg
                .psql_file("legacy", &migrations_dir().join(f))
                .unwrap();
        }
        let ex = bed
            .example(&tf, "resources/artifortress_migration")
            .with_env(
                "TF_VAR_production_database_url",
                &bed.pg.database_url("production"),
            )
            .with_env("TF_VAR_legacy_database_url", &bed.pg.database_url("legacy"))
            // What the example says refresh needs for databases other than the provider's.
            .with_env("PGPASSWORD", bed.pg.password());
        let vars = [("pre_release_backup_id", "20261127T053900Z-3f9a1c2b")];
        let out = apply(&ex, &vars);
        assert_eq!(
            out["schema_head"]["value"],
            newest.as_str(),
            "terraform {v}"
        );
        assert_eq!(
            ledger(&bed, "production"),
            files[..2].to_vec(),
            "terraform {v}: production stops at target_version"
        );
        assert_eq!(
            ledger(&bed, "legacy"),
            files,
            "terraform {v}: legacy has every file recorded"
        );
        assert_eq!(
            bed.sql(
                "legacy",
                "select string_agg(version || ':' || source, ',' order by version) from artifortress_migrations_log"
            ),
            files
                .iter()
                .enumerate()
                .map(|(i, f)| format!("{f}:{}", if i < 2 { "baseline" } else { "terraform" }))
                .collect::<Vec<_>>()
                .join(","),
            "terraform {v}: legacy's baseline"
        );
        destroy(&ex, &vars);

        // D3: artifortress_backup (and the migration that needs it). Retained on destroy.
        let ex = bed.example(&tf, "resources/artifortress_backup");
        let vars = [("release_version", "v1"), ("change_ticket", "CHG-1")];
        let out = apply(&ex, &vars);
        let backup = &out["backup"]["value"];
        let key = backup["key"].as_str().unwrap().to_string();
        assert!(
            key.starts_with("backups/production/") && key.ends_with(".dump.zst"),
            "terraform {v}: {backup}"
        );
        assert_eq!(backup["migration_head"], newest.as_str(), "terraform {v}");
        destroy(&ex, &vars);
        assert!(
            bed.keys(bed.garage.bucket(), "backups/production/")
                .contains(&key),
            "terraform {v}: retention = retain keeps {key} after destroy"
        );

        // The backups data source finds it (its postcondition: younger than an hour).
        let ex = bed.example(&tf, "data-sources/artifortress_backups");
        let out = apply(&ex, &[]);
        assert!(
            key.contains(out["newest_backup"]["value"].as_str().unwrap()),
            "terraform {v}: newest backup {} is {key}",
            out["newest_backup"]
        );
        destroy(&ex, &[]);

        // The migrations data source: up to date (its gate's postcondition).
        let ex = bed.example(&tf, "data-sources/artifortress_migrations");
        let out = apply(&ex, &[]);
        assert_eq!(
            out["pending_migrations"]["value"],
            json!([]),
            "terraform {v}"
        );
        destroy(&ex, &[]);

        // D3: the preflight, in an open change window, with the backup above.
        let now = chrono::Utc::now();
        let window = format!(
            "{}/{}",
            (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ"),
            (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
        );
        let ex = bed.example(&tf, "data-sources/artifortress_preflight");
        let vars = [("change_window", window.as_str())];
        let out = apply(&ex, &vars);
        let checks = out["preflight"]["value"].as_object().unwrap();
        assert!(
            checks.len() >= 6,
            "terraform {v}: every check listed: {checks:?}"
        );
        destroy(&ex, &vars);

        // D4/D5: the ops summary with a pre-deploy baseline.
        let ex = bed.example(&tf, "data-sources/artifortress_ops_summary");
        let vars = [("release_version", "v1")];
        apply(&ex, &vars);
        destroy(&ex, &vars);

        // Readiness: report, gate and the checks.
        let ex = bed.example(&tf, "data-sources/artifortress_readiness");
        let vars = [("api_url", bed.api.url())];
        apply_with_check_reads(&ex, &vars, &["data.artifortress_readiness.check"]);
        destroy(&ex, &vars);

        // The provider example (no resources: validated).
        bed.example(&tf, "provider").ok(&["validate", "-no-color"]);

        // The ephemeral admin token: minted, used by an aliased provider, revoked.
        let ex = bed.example(&tf, "ephemeral-resources/artifortress_admin_token");
        apply(&ex, &[]);
        destroy(&ex, &[]);

        // D6: the weekly drill of a new backup under backups/staging/.
        let ex = bed
            .example(&tf, "resources/artifortress_restore_drill")
            .with_env("TF_VAR_admin_database_url", &admin_url);
        let vars = [("drill_week", "2026-W48")];
        let out = apply(&ex, &vars);
        let drill = &out["drill"]["value"];
        assert_eq!(drill["passed"], true, "terraform {v}: {drill}");
        assert_eq!(drill["mismatches"], json!([]), "terraform {v}: {drill}");
        assert!(
            bed.keys(bed.garage.bucket(), "drills/staging/")
                .contains(&"drills/staging/latest.md".to_string()),
            "terraform {v}: the drill's report"
        );
        // …and the same report where the service's preflight requires it
        // (scripts/production-preflight.sh:114 of Artifortress).
        let local =
            std::fs::read_to_string(ex.dir.join("docs/reports/phase6-rto-rpo-drill-latest.md"))
                .unwrap_or_else(|e| panic!("terraform {v}: the drill's report file: {e}"));
        assert!(
            local.starts_with("# Phase 6 RPO/RTO Drill Report\n"),
            "terraform {v}: {local}"
        );
        destroy(&ex, &vars);
        assert_eq!(
            bed.sql(
                "postgres",
                "select count(*) from pg_database where datname = 'artifortress_drill'"
            ),
            "0",
            "terraform {v}: keep_drill_database = false drops the drill database"
        );
    }
}

/// `examples/resources/artifortress_release` (with its migration and backup) applied to deploy
/// hosts 1-3 of the dev environment: the test bed's release tarballs, its control script for
/// the commands, the hosts' APIs on this run's database and bucket; under Terraform >= 1.14
/// with `examples/actions/artifortress_rollback_release` beside it, invoked over SSH.
#[test]
fn release_example_applies_to_the_dev_hosts() {
    let hosts = deploy_hosts::example_layout();
    let by_name: Vec<(&str, &DevHost)> = hosts.iter().map(|(n, h, _)| (*n, h)).collect();
    let (artifacts, sums) = deploy_hosts::artifacts();
    let key = std::fs::read_to_string(required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")).unwrap();
    let known_hosts =
        std::fs::read_to_string(required_env("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE")).unwrap();

    for tf in terraforms() {
        let bed = Bed::start();
        let v = tf_tag(&tf);
        let deploy_dir = format!("/opt/artifortress/examples-release-{v}");
        reset(&by_name, &deploy_dir);
        let api_port = free_port().unwrap();
        let hosts_var: serde_json::Map<String, Value> = hosts
            .iter()
            .map(|(name, h, role)| {
                let mut host = json!({"address": h.address, "port": h.port, "roles": [role]});
                if *role == "api" {
                    host["api_url"] = json!(format!("http://{}:{api_port}", h.address));
                }
                (name.to_string(), host)
            })
            .collect();
        let tfvars = json!({
            "release_version": "v1",
            "artifact_sha256": sums["v1"],
            "artifact_base": artifacts,
            "deploy_dir": deploy_dir,
            "api_port": api_port,
            "hosts": hosts_var,
            "database": {"host": "127.0.0.1", "port": bed.pg.port(), "name": SERVICE_DB, "user": "postgres"},
            "object_storage": {
                "endpoint": bed.garage.endpoint(),
                "region": bed.garage.region(),
                "bucket": bed.garage.bucket(),
                "access_key": bed.garage.access_key(),
            },
            "commands": {
                "restart_api": "{{release_dir}}/bin/artifortress restart api",
                "restart_worker": "{{release_dir}}/bin/artifortress restart worker",
                "worker_status": "{{release_dir}}/bin/artifortress status worker",
                "stop_api": "{{release_dir}}/bin/artifortress stop api",
                "stop_worker": "{{release_dir}}/bin/artifortress stop worker",
            },
            "watch_duration": "3s",
        });
        let ex = bed
            .example(&tf, "resources/artifortress_release")
            .with_env(
                "ARTIFORTRESS_SSH_USER",
                &required_env("ARTIFORTRESS_SSH_USER"),
            )
            .with_env("ARTIFORTRESS_SSH_PRIVATE_KEY", &key)
            .with_env("ARTIFORTRESS_SSH_KNOWN_HOSTS", &known_hosts)
            .with_env("TF_VAR_database_password", bed.pg.password())
            .with_env("TF_VAR_s3_secret_key", bed.garage.secret_key())
            .with_env("TF_VAR_bootstrap_token", BOOTSTRAP_TOKEN);
        std::fs::write(
            ex.dir.join("dev.auto.tfvars.json"),
            serde_json::to_string_pretty(&tfvars).unwrap(),
        )
        .unwrap();
        let out = apply(&ex, &[]);
        assert_eq!(
            out["live"]["value"],
            json!({"api-1": "v1", "api-2": "v1", "worker-1": "v1"}),
            "terraform {v}"
        );
        for (name, h, role) in &hosts {
            if *role == "api" {
                let url = format!("http://{}:{api_port}/health/ready", h.address);
                let status = bed
                    .rt
                    .block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) });
                assert_eq!(status.ok(), Some(200), "terraform {v}: {name} {url}");
            }
        }
        if tf.at_least(1, 14) {
            rollback_action_example(&bed, &ex, &hosts, &deploy_dir, &tfvars, &sums, api_port);
        }
        // on_destroy = "keep": the hosts keep running; this test stops them.
        destroy(&ex, &[]);
        reset(&by_name, &deploy_dir);
    }
}

/// `examples/actions/artifortress_rollback_release` (the one docs/ embeds) beside the release
/// example, over SSH to the dev hosts (Terraform >= 1.14): v2 deployed, the action puts every
/// host back on v1 (each API ready), a refresh shows the drift, the next apply deploys v2 again
/// and the plan after it is empty.
fn rollback_action_example(
    bed: &Bed,
    ex: &Example,
    hosts: &[(&str, DevHost, &str)],
    deploy_dir: &str,
    tfvars: &Value,
    sums: &std::collections::BTreeMap<String, String>,
    api_port: u16,
) {
    let v = ex.version().to_string();
    let live = |want: &str| {
        for (name, h, _) in hosts {
            let (code, out) = deploy_hosts::ssh(h, &format!("readlink {deploy_dir}/current"));
            assert_eq!(code, 0, "terraform {v}: {name}: {out}");
            assert!(
                out.trim().ends_with(&format!("releases/{want}")),
                "terraform {v}: {name} runs {out}, not {want}"
            );
        }
        for (name, h, role) in hosts {
            if *role == "api" {
                let url = format!("http://{}:{api_port}/health/ready", h.address);
                let ready = bed
                    .rt
                    .block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) });
                assert_eq!(ready.ok(), Some(200), "terraform {v}: {name} {url}");
            }
        }
    };
    std::fs::copy(
        examples_dir().join("actions/artifortress_rollback_release/action.tf"),
        ex.dir.join("action.tf"),
    )
    .unwrap();
    let mut v2 = tfvars.clone();
    v2["release_version"] = json!("v2");
    v2["artifact_sha256"] = json!(sums["v2"]);
    std::fs::write(
        ex.dir.join("dev.auto.tfvars.json"),
        serde_json::to_string_pretty(&v2).unwrap(),
    )
    .unwrap();
    let out = apply(ex, &[]);
    assert_eq!(
        out["live"]["value"],
        json!({"api-1": "v2", "api-2": "v2", "worker-1": "v2"}),
        "terraform {v}"
    );
    live("v2");

    let run = ex.ok(&[
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-invoke=action.artifortress_rollback_release.previous",
    ]);
    for step in ["host(s) locked", "api-1: v2 → v1", "rolled back:"] {
        assert!(
            run.shows(step),
            "terraform {v}: {step:?} not shown:\n{}",
            run.text()
        );
    }
    live("v1");

    // Terraform keeps no state for an action: the refresh shows the drift, the next apply
    // deploys the configured v2 again, and the plan after it is empty.
    let refresh = ex.run(&[
        "plan",
        "-refresh-only",
        "-detailed-exitcode",
        "-input=false",
        "-no-color",
    ]);
    assert_eq!(refresh.code, 2, "terraform {v}: {}", refresh.text());
    assert!(
        refresh.shows("drifted:"),
        "terraform {v}: {}",
        refresh.text()
    );
    let out = apply(ex, &[]);
    assert_eq!(
        out["live"]["value"],
        json!({"api-1": "v2", "api-2": "v2", "worker-1": "v2"}),
        "terraform {v}"
    );
    live("v2");
    std::fs::remove_file(ex.dir.join("action.tf")).unwrap();
}
