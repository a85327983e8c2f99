//! Actions (`artifortress_take_backup`, `artifortress_run_restore_drill`,
//! `artifortress_run_smoke`) invoked by the real Terraform with
//! `terraform apply -invoke=action.<type>.<name>` and by `action_trigger`, against a PostgreSQL,
//! a Garage and a test bed API of their own. Actions need Terraform 1.14 or later: every
//! Terraform under test at that level runs these (1.15.5 here); older ones (1.11.4) do not see
//! actions at all and run the existing suite unchanged.
//!
//! What is asserted: the effect (backup object and manifest, report file and objects, the
//! scratch repository's published version), the progress lines Terraform 1.15 prints for each
//! progress event (`Action action.<type>.<name> (triggered by …): <message>`, hook_ui.go
//! ProgressAction), failing invocations with their diagnostics, and an `action_trigger` run.

use std::path::Path;

use acceptance_tests::support::api::{TestbedApi, api_env};
use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::postgres::PgServer;
use serde_json::{Value, json};

use crate::examples::{Example, tf_tag};
use crate::harness::{Run, Terraform, Workdir, shows, terraforms_at_least};

const SERVICE_DB: &str = "artifortress";
const BOOTSTRAP_TOKEN: &str = "actions-bootstrap-token-0123456789";

/// Terraforms under test that know actions (>= 1.14).
pub(crate) fn with_actions() -> Vec<Terraform> {
    terraforms_at_least(1, 14, "actions")
}

/// PostgreSQL (the service's database, migrated and seeded), Garage, the test bed API on both,
/// and an admin token minted on it.
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
        pg.create_migrated_database(SERVICE_DB).unwrap();
        pg.seed(SERVICE_DB).unwrap();
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
                .json(&json!({"subject": "actions-test", "scopes": ["repo:*:admin"], "ttlMinutes": 60}))
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

    /// The provider block, everything set in it; `token` as its admin token.
    fn provider(&self, token: &str) -> String {
        format!(
            r#"
provider "artifortress" {{
  api_url      = "{}"
  admin_token  = "{token}"
  database_url = "{}"
  object_storage = {{
    endpoint          = "{}"
    region            = "{}"
    bucket            = "{}"
    access_key_id     = "{}"
    secret_access_key = "{}"
  }}
}}
"#,
            self.api.url(),
            self.pg.database_url(SERVICE_DB),
            self.garage.endpoint(),
            self.garage.region(),
            self.garage.bucket(),
            self.garage.access_key(),
            self.garage.secret_key()
        )
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.rt.block_on(async {
            self.garage
                .s3_client()
                .list_objects_v2()
                .bucket(self.garage.bucket())
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

    fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            self.garage
                .s3_client()
                .get_object()
                .bucket(self.garage.bucket())
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {key}: {e}"))
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
                .to_vec()
        })
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.psql(SERVICE_DB, sql).unwrap()
    }
}

/// `terraform apply -invoke=<address>`.
fn invoke(wd: &Workdir, address: &str) -> Run {
    wd.run(&[
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        &format!("-invoke={address}"),
    ])
}

/// The progress lines Terraform printed for `address` invoked from the CLI, in order.
fn progress_lines(run: &Run, address: &str) -> Vec<String> {
    let prefix = format!("Action {address} (triggered by CLI): ");
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// A pg_dump that runs the real one, then hands its output on in two halves with a pause
/// between them, so a backup takes a few seconds and the periodic progress has something to
/// report. `--version` goes straight through.
fn slow_pg_dump(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let real = acceptance_tests::support::postgres::pg_bin_dir()
        .unwrap()
        .join("pg_dump");
    let path = dir.join("slow_pg_dump");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nset -e\nif [ \"$1\" = --version ]; then exec {real} --version; fi\n\
             out=$(mktemp)\n{real} \"$@\" > \"$out\"\nsize=$(wc -c < \"$out\")\nhalf=$((size / 2))\n\
             head -c \"$half\" \"$out\"\nsleep 3\ntail -c +$((half + 1)) \"$out\"\nrm -f \"$out\"\n",
            real = real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[test]
fn take_backup_writes_a_backup_with_its_manifest_and_prints_progress() {
    let bed = Bed::start();
    for tf in with_actions() {
        let v = tf_tag(&tf);
        let prefix = format!("actions/backup/{v}/");
        let scripts = tempfile::tempdir().unwrap();
        let pg_dump = slow_pg_dump(scripts.path());
        let wd = Workdir::new(
            &tf,
            &format!(
                r#"{}
action "artifortress_take_backup" "now" {{
  config {{
    prefix            = "{prefix}"
    labels            = {{ reason = "acceptance" }}
    pg_dump_path      = "{pg_dump}"
    progress_interval = "1s"
  }}
}}
"#,
                bed.provider(&bed.admin_token)
            ),
        );
        // A normal apply invokes nothing, and nothing is planned afterwards.
        wd.apply_ok();
        assert!(
            bed.keys(&prefix).is_empty(),
            "terraform {v}: no invocation yet"
        );

        let run = invoke(&wd, "action.artifortress_take_backup.now");
        assert_eq!(run.code, 0, "terraform {v}:\n{}", run.text());
        let lines = progress_lines(&run, "action.artifortress_take_backup.now");
        let at = |start: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(start))
                .unwrap_or_else(|| {
                    panic!("terraform {v}: no progress line {start:?} in {lines:#?}")
                })
        };
        // Stages in order, the periodic lines while pg_dump streams (its pause is 3 s, the
        // interval 1 s), then the result.
        let order = [
            at("backing up 127.0.0.1:"),
            at("snapshot exported at "),
            at("pg_dump streaming into s3://"),
            at("streamed "),
            at("uploaded "),
            at("read back: sha256 and size match"),
            at("backup "),
        ];
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "terraform {v}: {lines:#?}"
        );
        let streamed: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("streamed "))
            .collect();
        assert!(
            streamed.len() >= 2,
            "terraform {v}: periodic progress: {lines:#?}"
        );
        assert!(
            streamed
                .iter()
                .all(|l| l.contains(" from pg_dump so far, ") && l.contains("/s over the last ")),
            "terraform {v}: {streamed:#?}"
        );
        assert!(
            shows(
                &run.stdout,
                "Action complete: action.artifortress_take_backup.now (triggered by CLI)"
            ),
            "terraform {v}:\n{}",
            run.stdout
        );
        // The effect: a dump and its manifest, as the resource writes them.
        let keys = bed.keys(&prefix);
        let manifests: Vec<&String> = keys
            .iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .collect();
        assert_eq!(manifests.len(), 1, "terraform {v}: {keys:?}");
        let manifest: Value = serde_json::from_slice(&bed.get(manifests[0])).unwrap();
        assert!(
            keys.contains(&manifest["object_key"].as_str().unwrap().to_string()),
            "{manifest}"
        );
        assert_eq!(manifest["labels"]["reason"], "acceptance", "{manifest}");
        assert_eq!(manifest["verified"], true, "{manifest}");
        assert_eq!(
            manifest["table_counts"]["repos"]
                .as_i64()
                .unwrap()
                .to_string(),
            bed.sql("select count(*) from repos"),
            "{manifest}"
        );
        let done = &lines[order[6]];
        assert!(
            done.contains(manifest["id"].as_str().unwrap())
                && done.contains(manifest["object_key"].as_str().unwrap()),
            "terraform {v}: {done}"
        );
        // Nothing in state: the next plan is still empty.
        wd.assert_plan_empty();

        // A failing invocation: a pg_dump that does not exist, a diagnostic naming it.
        wd.set_config(&format!(
            r#"{}
action "artifortress_take_backup" "now" {{
  config {{
    prefix       = "{prefix}"
    pg_dump_path = "/nonexistent/pg_dump"
  }}
}}
"#,
            bed.provider(&bed.admin_token)
        ));
        let run = invoke(&wd, "action.artifortress_take_backup.now");
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Backup failed") && run.shows("/nonexistent/pg_dump"),
            "terraform {v}:\n{}",
            run.text()
        );
        assert!(
            shows(
                &run.stdout,
                "Action failed: action.artifortress_take_backup.now"
            ),
            "terraform {v}:\n{}",
            run.stdout
        );
        assert_eq!(
            bed.keys(&prefix).len(),
            2,
            "terraform {v}: nothing more written"
        );
    }
}

#[test]
fn action_trigger_takes_a_backup_before_an_update_only() {
    let bed = Bed::start();
    for tf in with_actions() {
        let v = tf_tag(&tf);
        let prefix = format!("actions/trigger/{v}/");
        let config = |version: &str| {
            format!(
                r#"{}
action "artifortress_take_backup" "pre_release" {{
  config {{
    prefix = "{prefix}"
    labels = {{ before = "{version}" }}
  }}
}}

resource "terraform_data" "release" {{
  input = "{version}"
  lifecycle {{
    action_trigger {{
      events  = [before_update]
      actions = [action.artifortress_take_backup.pre_release]
    }}
  }}
}}
"#,
                bed.provider(&bed.admin_token)
            )
        };
        let wd = Workdir::new(&tf, &config("v1"));
        let run = wd.apply_ok();
        assert!(
            bed.keys(&prefix).is_empty(),
            "terraform {v}: a create is not an update:\n{}",
            run.text()
        );
        wd.set_config(&config("v2"));
        // The plan says the action will run.
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "terraform {v}:\n{}", plan.text());
        assert!(
            plan.shows("Actions to be invoked before this change in order: action \"artifortress_take_backup\" \"pre_release\"")
                && plan.shows("Actions: 1 to invoke."),
            "terraform {v}:\n{}",
            plan.text()
        );
        let run = wd.apply_ok();
        let trigger = "Action action.artifortress_take_backup.pre_release (triggered by terraform_data.release)";
        assert!(
            run.stdout.contains(&format!("{trigger}: backup ")),
            "terraform {v}:\n{}",
            run.stdout
        );
        // Before the update: the action completed before terraform_data was modified.
        let done = run
            .stdout
            .find("Action complete: action.artifortress_take_backup.pre_release")
            .unwrap_or(usize::MAX);
        let modifying = run
            .stdout
            .find("terraform_data.release: Modifying")
            .unwrap_or(0);
        assert!(done < modifying, "terraform {v}:\n{}", run.stdout);
        let keys = bed.keys(&prefix);
        let manifests: Vec<&String> = keys
            .iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .collect();
        assert_eq!(
            manifests.len(),
            1,
            "terraform {v}: one backup, taken before v2: {keys:?}"
        );
        let manifest: Value = serde_json::from_slice(&bed.get(manifests[0])).unwrap();
        assert_eq!(manifest["labels"]["before"], "v2", "{manifest}");
        wd.destroy_ok();
    }
}

#[test]
fn run_restore_drill_reports_to_the_console_a_file_and_the_bucket_and_fails_on_fail() {
    let bed = Bed::start();
    let admin_url = bed.pg.database_url("postgres");
    for tf in with_actions() {
        let v = tf_tag(&tf);
        let prefix = format!("actions/drill/{v}/");
        let drill = |name: &str, body: &str| {
            format!(
                r#"
action "artifortress_run_restore_drill" "{name}" {{
  config {{
    prefix             = "{prefix}"
    admin_database_url = "{admin_url}"
    {body}
  }}
}}
"#
            )
        };
        let config = format!(
            r#"{}
action "artifortress_take_backup" "first" {{
  config {{
    prefix = "{prefix}"
  }}
}}
{}{}{}"#,
            bed.provider(&bed.admin_token),
            drill(
                "newest",
                &format!(
                    "report_file = \"reports/drill.md\"\n    report_object_key = \"drills/{v}/latest.md\"\n    rpo_target_seconds = 3600"
                )
            ),
            drill("missing", "backup_id = \"20200101T000000Z-0badf00d\""),
            drill(
                "strict",
                "report_file = \"reports/strict.md\"\n    rpo_target_seconds = 0.001"
            ),
        );
        let wd = Workdir::new(
            &tf,
            &format!(
                "{config}{}",
                drill(
                    "lenient",
                    "rpo_target_seconds = 0.001\n    fail_on_breach = false"
                )
            ),
        );
        wd.apply_ok();
        let run = invoke(&wd, "action.artifortress_take_backup.first");
        assert_eq!(run.code, 0, "terraform {v}:\n{}", run.text());
        let manifests: Vec<String> = bed
            .keys(&prefix)
            .into_iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .collect();
        assert_eq!(manifests.len(), 1, "terraform {v}");
        let backup_id = manifests[0]
            .trim_start_matches(&prefix)
            .trim_end_matches(".manifest.json")
            .to_string();

        // The newest backup under the prefix: passes; each step, then the report.
        let run = invoke(&wd, "action.artifortress_run_restore_drill.newest");
        assert_eq!(run.code, 0, "terraform {v}:\n{}", run.text());
        let lines = progress_lines(&run, "action.artifortress_run_restore_drill.newest");
        for start in [
            "newest of 1 backup(s) under s3://",
            &format!("drilling backup {backup_id}: downloading "),
            "downloaded in ",
            "drill database artifortress_drill re-created; restoring with pg_restore",
            "restored in ",
            "counted 10 parity table(s) in the restored database: 0 mismatch(es)",
            "# Phase 6 RPO/RTO Drill Report",
            "drill PASSED: ",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(start)),
                "terraform {v}: no progress line {start:?}:\n{}",
                run.stdout
            );
        }
        // The report event is the whole report: its sections follow on the next lines.
        assert!(
            run.stdout.contains("- overall: PASS"),
            "terraform {v}:\n{}",
            run.stdout
        );
        let file = std::fs::read_to_string(wd.file("reports/drill.md"))
            .unwrap_or_else(|e| panic!("terraform {v}: the report file: {e}"));
        assert!(
            file.starts_with("# Phase 6 RPO/RTO Drill Report\n"),
            "{file}"
        );
        assert!(
            file.contains(&format!("- backup id: `{backup_id}`")),
            "{file}"
        );
        assert!(file.contains("- overall: PASS"), "{file}");
        assert!(
            run.stdout.contains(file.trim_end()),
            "terraform {v}: the printed report is the file's"
        );
        assert_eq!(
            String::from_utf8(bed.get(&format!("drills/{v}/latest.md"))).unwrap(),
            file,
            "terraform {v}: the report object"
        );
        let twin: Value =
            serde_json::from_slice(&bed.get(&format!("drills/{v}/latest.json"))).unwrap();
        assert_eq!(twin["backup_id"], backup_id.as_str(), "{twin}");
        assert_eq!(
            bed.pg
                .psql(
                    "postgres",
                    "select count(*) from pg_database where datname = 'artifortress_drill'"
                )
                .unwrap(),
            "0",
            "terraform {v}: the drill database was dropped"
        );

        // A backup that does not exist: the invocation fails with a diagnostic naming it.
        let run = invoke(&wd, "action.artifortress_run_restore_drill.missing");
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Restore drill failed")
                && run.shows("no backup \"20200101T000000Z-0badf00d\""),
            "terraform {v}:\n{}",
            run.text()
        );

        // A FAIL (an RPO target nobody meets) fails the invocation; the report is still
        // written, as the service's script writes it before exiting 1.
        let run = invoke(&wd, "action.artifortress_run_restore_drill.strict");
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Restore drill FAILED") && run.shows("- RPO status: FAIL"),
            "terraform {v}:\n{}",
            run.text()
        );
        let strict = std::fs::read_to_string(wd.file("reports/strict.md")).unwrap();
        assert!(strict.contains("- overall: FAIL"), "{strict}");

        // …unless told not to: a warning, and the apply succeeds.
        let run = invoke(&wd, "action.artifortress_run_restore_drill.lenient");
        assert_eq!(run.code, 0, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Warning")
                && run.shows("Restore drill FAILED: fail_on_breach = false, so the apply goes on."),
            "terraform {v}:\n{}",
            run.text()
        );
        wd.assert_plan_empty();
    }
}

#[test]
fn run_smoke_publishes_in_a_scratch_repository_step_by_step_and_fails_on_a_wrong_token() {
    let bed = Bed::start();
    for tf in with_actions() {
        let v = tf_tag(&tf);
        let action = r#"
action "artifortress_run_smoke" "post_deploy" {}
"#;
        let wd = Workdir::new(&tf, &format!("{}{action}", bed.provider(&bed.admin_token)));
        wd.apply_ok();
        let before: i64 = bed
            .sql("select count(*) from repos where repo_key like 'smoke-%'")
            .parse()
            .unwrap();
        assert_eq!(before, 0, "terraform {v}: a normal apply ran no smoke");

        let run = invoke(&wd, "action.artifortress_run_smoke.post_deploy");
        assert_eq!(run.code, 0, "terraform {v}:\n{}", run.text());
        let lines = progress_lines(&run, "action.artifortress_run_smoke.post_deploy");
        let steps: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.split_once(": ").map(|(name, _)| name))
            .filter(|n| !n.contains(' '))
            .collect();
        // Each step of the full flow is one progress event, in order.
        // The provider's smoke::READ_ONLY_STEPS then WRITE_STEPS.
        let want = [
            "whoami",
            "list_repositories",
            "read_repository",
            "create_repository",
            "create_upload_session",
            "presign_part",
            "upload_part",
            "complete_upload",
            "commit_upload",
            "create_draft",
            "add_entry",
            "set_manifest",
            "publish",
            "read_back",
            "verify",
            "cleanup",
        ];
        assert_eq!(steps, want, "terraform {v}:\n{}", run.stdout);
        assert!(
            lines.iter().any(|l| l.starts_with("publish: passed in ")),
            "terraform {v}: {lines:#?}"
        );
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("smoke flow passed: 16 step(s) in "),
            "terraform {v}: {lines:#?}"
        );
        let created = lines
            .iter()
            .find(|l| l.starts_with("create_repository: passed"))
            .unwrap();
        let key = created.split('"').nth(1).unwrap().to_string();
        assert_eq!(
            bed.sql(&format!(
                "select pv.state || ' ' || p.name || ' ' || pv.version from package_versions pv \
                 join repos r on r.repo_id = pv.repo_id join packages p on p.package_id = pv.package_id \
                 where r.repo_key = '{key}'"
            )),
            "published artifortress-smoke 1.0.0",
            "terraform {v}"
        );
        wd.assert_plan_empty();

        // A wrong token: whoami fails with the service's 401, the rest is skipped.
        let bad = Workdir::new(
            &tf,
            &format!(
                "{}{action}",
                bed.provider("0000000000000000000000000000000000000000000000000000000000000000")
            ),
        );
        let run = invoke(&bad, "action.artifortress_run_smoke.post_deploy");
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Smoke flow failed at step \"whoami\"") && run.shows("401"),
            "terraform {v}:\n{}",
            run.text()
        );
        let lines = progress_lines(&run, "action.artifortress_run_smoke.post_deploy");
        assert!(
            lines.iter().any(|l| l.starts_with("whoami: failed in ")),
            "terraform {v}: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("publish: skipped in ")),
            "terraform {v}: {lines:#?}"
        );
        let after: i64 = bed
            .sql("select count(*) from repos where repo_key like 'smoke-%'")
            .parse()
            .unwrap();
        assert_eq!(
            after,
            before + 1,
            "terraform {v}: the failed run created nothing"
        );
    }
}

/// `examples/actions/*` (the ones docs/ embeds) applied as they are, then each action invoked.
#[test]
fn every_action_example_applies_and_invokes() {
    let bed = Bed::start();
    for tf in with_actions() {
        let v = tf_tag(&tf);
        let example = |dir: &str| {
            let ex = Example::new(&tf, &[dir], dir)
                .with_env("ARTIFORTRESS_API_URL", bed.api.url())
                .with_env("ARTIFORTRESS_ADMIN_TOKEN", &bed.admin_token)
                .with_env(
                    "ARTIFORTRESS_DATABASE_URL",
                    &bed.pg.database_url(SERVICE_DB),
                )
                .with_env("ARTIFORTRESS_S3_ENDPOINT", &bed.garage.endpoint())
                .with_env("ARTIFORTRESS_S3_BUCKET", bed.garage.bucket())
                .with_env("AWS_ACCESS_KEY_ID", bed.garage.access_key())
                .with_env("AWS_SECRET_ACCESS_KEY", bed.garage.secret_key())
                .with_env("AWS_REGION", bed.garage.region())
                .with_env(
                    "TF_VAR_admin_database_url",
                    &bed.pg.database_url("postgres"),
                );
            std::fs::write(
                ex.dir.join("terraform.tf"),
                "terraform {\n  required_providers {\n    artifortress = { source = \"artifortress/artifortress\" }\n  }\n}\n",
            )
            .unwrap();
            ex.init(&[]);
            ex
        };
        let invoke_ok = |ex: &Example, address: &str| {
            ex.ok(&[
                "apply",
                "-auto-approve",
                "-input=false",
                "-no-color",
                &format!("-invoke={address}"),
            ])
        };

        // take_backup: invoked, and triggered before the update of the deployed version.
        let ex = example("actions/artifortress_take_backup");
        ex.apply_ok(&[]);
        let before = bed.keys("backups/").len();
        invoke_ok(&ex, "action.artifortress_take_backup.now");
        assert_eq!(
            bed.keys("backups/").len(),
            before + 2,
            "terraform {v}: dump + manifest"
        );
        let run = ex.apply_ok(&["-var=release_version=v2"]);
        assert!(
            run.stdout
                .contains("(triggered by terraform_data.deployed_version): backup "),
            "terraform {v}:\n{}",
            run.stdout
        );
        assert_eq!(bed.keys("backups/").len(), before + 4, "terraform {v}");

        // run_restore_drill: the newest of those, its report where the preflight looks.
        let ex = example("actions/artifortress_run_restore_drill");
        ex.apply_ok(&[]);
        invoke_ok(&ex, "action.artifortress_run_restore_drill.now");
        let report =
            std::fs::read_to_string(ex.dir.join("docs/reports/phase6-rto-rpo-drill-latest.md"))
                .unwrap_or_else(|e| panic!("terraform {v}: {e}"));
        assert!(
            report.contains("- overall: PASS"),
            "terraform {v}: {report}"
        );
        assert!(
            bed.keys("drills/on-demand/")
                .contains(&"drills/on-demand/latest.md".to_string()),
            "terraform {v}"
        );

        // run_smoke.
        let ex = example("actions/artifortress_run_smoke");
        ex.apply_ok(&[]);
        let run = invoke_ok(&ex, "action.artifortress_run_smoke.post_deploy");
        assert!(
            run.stdout.contains("smoke flow passed"),
            "terraform {v}:\n{}",
            run.stdout
        );
    }
}
