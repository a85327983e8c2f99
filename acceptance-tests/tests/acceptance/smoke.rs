//! `data "artifortress_smoke"` with every Terraform under test, against a test bed API of its
//! own on a database of its own (the write path leaves a scratch repository behind each read).

use serde_json::Value;

use crate::examples::Example;
use crate::gates::Bed;
use crate::harness::{Workdir, closed_port, shows, terraforms, testbed_on};

fn config(api_url: &str, token: &str, args: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  api_url     = "{api_url}"
  admin_token = "{token}"
}}

data "artifortress_smoke" "post_deploy" {{
  {args}
}}

# A resource that depends on the smoke result: a second plan must not diff it.
resource "terraform_data" "gate" {{
  input = data.artifortress_smoke.post_deploy.passed
}}

# Only `passed` as an output: `steps` holds durations and scratch names that change on every
# read, so an output of it would make every second plan show output changes.
output "passed" {{ value = data.artifortress_smoke.post_deploy.passed }}
"#
    )
}

/// `steps` of the data source as the state holds it (`terraform show -json`).
fn steps_of(wd: &Workdir) -> Value {
    let run = wd.run(&["show", "-json", "-no-color"]);
    assert_eq!(run.code, 0, "{}", run.text());
    let v: Value = serde_json::from_str(&run.stdout).expect("show -json");
    v["values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "data.artifortress_smoke.post_deploy")
        .unwrap_or_else(|| panic!("no data.artifortress_smoke.post_deploy in {v}"))["values"]
        ["steps"]
        .clone()
}

fn names(steps: &Value) -> Vec<String> {
    steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn step<'a>(steps: &'a Value, name: &str) -> &'a Value {
    steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps}"))
}

/// Every step has a duration in Terraform's notation and a detail.
fn well_formed(steps: &Value) {
    for s in steps.as_array().unwrap() {
        let d = s["duration"].as_str().unwrap();
        assert!(d.ends_with('s') && d.len() > 1, "{s}");
        assert!(!s["detail"].as_str().unwrap().is_empty(), "{s}");
    }
}

#[test]
fn read_only_passes_and_writes_nothing() {
    let bed = Bed::start("smoke_ro");
    let token = bed.mint("smoke-ops", &["repo:*:admin"]);
    bed.sql("insert into repos (tenant_id, repo_key, repo_type) select tenant_id, 'libs-release', 'local' from tenants where slug = 'default'");
    for tf in terraforms() {
        let before = bed.sql("select count(*) from audit_log");
        let wd = Workdir::new(&tf, &config(bed.api_url(), &token, ""));
        // apply_ok also checks that a second plan (which reads the data source again) is empty.
        wd.apply_ok();
        assert_eq!(wd.output("passed"), true, "terraform {}", tf.version);
        let steps = steps_of(&wd);
        assert_eq!(
            names(&steps),
            ["whoami", "list_repositories", "read_repository"]
        );
        well_formed(&steps);
        assert!(
            steps
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["status"] == "passed"),
            "{steps}"
        );
        assert!(
            shows(
                step(&steps, "whoami")["detail"].as_str().unwrap(),
                "smoke-ops"
            ),
            "{steps}"
        );
        assert_eq!(
            step(&steps, "read_repository")["detail"],
            "local repository \"libs-release\""
        );
        // Read-only: no audit rows, no repositories.
        assert_eq!(bed.sql("select count(*) from audit_log"), before);
        assert_eq!(bed.sql("select count(*) from repos"), "1");
        wd.destroy_ok();
    }
}

#[test]
fn write_runs_the_happy_path_and_leaves_a_published_version() {
    let bed = Bed::start("smoke_rw");
    let token = bed.mint("smoke-ops", &["repo:*:admin"]);
    // A repository that sorts before the scratch ones: `read_repository` reads it every time.
    bed.sql("insert into repos (tenant_id, repo_key, repo_type) select tenant_id, 'libs-release', 'local' from tenants where slug = 'default'");
    for tf in terraforms() {
        let repos_before: i64 = bed
            .sql("select count(*) from repos where repo_key like 'smoke-%'")
            .parse()
            .unwrap();
        let wd = Workdir::new(&tf, &config(bed.api_url(), &token, "write = true"));
        wd.apply_ok();
        // apply (plan + apply) and the second plan each read the data source: each read runs
        // the full path and leaves one scratch repository.
        let repos_after: i64 = bed
            .sql("select count(*) from repos where repo_key like 'smoke-%'")
            .parse()
            .unwrap();
        assert!(
            repos_after >= repos_before + 2,
            "terraform {}: {repos_before} -> {repos_after}",
            tf.version
        );
        assert_eq!(wd.output("passed"), true, "terraform {}", tf.version);
        let steps = steps_of(&wd);
        well_formed(&steps);
        assert_eq!(
            names(&steps),
            [
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
                "cleanup"
            ]
        );
        for s in steps.as_array().unwrap() {
            let want = if s["name"] == "cleanup" {
                "warning"
            } else {
                "passed"
            };
            assert_eq!(s["status"], want, "{s}");
        }
        // The repository of the run whose steps are in state: published, blob in the DB, the
        // clean-up refused by the service's foreign keys and named.
        let detail = step(&steps, "create_repository")["detail"]
            .as_str()
            .unwrap();
        let key = detail.split('"').nth(1).unwrap().to_string();
        assert!(key.starts_with("smoke-"), "{detail}");
        assert_eq!(
            bed.sql(&format!(
                "select pv.state || ' ' || p.name || ' ' || pv.version from package_versions pv \
                 join repos r on r.repo_id = pv.repo_id join packages p on p.package_id = pv.package_id \
                 where r.repo_key = '{key}'"
            )),
            "published artifortress-smoke 1.0.0"
        );
        let storage_key = bed.sql(&format!(
            "select b.storage_key from blobs b join artifact_entries ae on ae.blob_digest = b.digest \
             join package_versions pv on pv.version_id = ae.version_id \
             join repos r on r.repo_id = pv.repo_id where r.repo_key = '{key}'"
        ));
        assert!(storage_key.contains(&format!("/{key}/")), "{storage_key}");
        let cleanup = step(&steps, "cleanup")["detail"].as_str().unwrap();
        assert!(
            shows(cleanup, &key) && shows(cleanup, "foreign key"),
            "{cleanup}"
        );
        // The upload went through object storage: the API issued a presigned part and completed
        // a multipart upload.
        assert!(bed.audit_count("upload.part.presigned") >= 2);
        assert!(shows(
            step(&steps, "upload_part")["detail"].as_str().unwrap(),
            "bytes to 127.0.0.1:"
        ));
        wd.destroy_ok();
    }
}

#[test]
fn a_failed_step_fails_the_read_unless_told_to_report() {
    let bed = Bed::start("smoke_fail");
    let token = bed.mint("smoke-ops", &["repo:*:admin"]);
    // A second API on the same database whose object storage is a closed port: the upload
    // session cannot start its multipart upload.
    let no_storage = testbed_on(
        &bed.url,
        &[(
            "ObjectStorage__Endpoint",
            &format!("http://127.0.0.1:{}", closed_port()),
        )],
    );
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &config(no_storage.url(), &token, "write = true"));
        let run = wd.apply();
        assert_ne!(run.code, 0, "terraform {}", tf.version);
        let text = run.text();
        assert!(
            shows(&text, "Smoke flow failed at step \"create_upload_session\""),
            "{text}"
        );
        assert!(shows(&text, "HTTP 503 service_unavailable"), "{text}");
        assert!(shows(&text, "Clean-up (passed)"), "{text}");
        assert!(shows(&text, "deleted"), "{text}");

        // Reporting only.
        let report = Workdir::new(
            &tf,
            &config(
                no_storage.url(),
                &token,
                "write = true\n  fail_on_error = false",
            ),
        );
        report.apply_ok();
        assert_eq!(report.output("passed"), false);
        let steps = steps_of(&report);
        assert_eq!(step(&steps, "create_upload_session")["status"], "failed");
        assert_eq!(step(&steps, "publish")["status"], "skipped");
        // The draft comes after the upload: the repository is still empty and is deleted.
        assert_eq!(step(&steps, "create_draft")["status"], "skipped");
        assert_eq!(step(&steps, "cleanup")["status"], "passed");
        assert_eq!(
            bed.sql("select count(*) from repos where repo_key like 'smoke-%'"),
            "0"
        );
        report.destroy_ok();
    }
}

#[test]
fn example_runs_read_only_and_post_deploy() {
    let bed = Bed::start("smoke_ex");
    let token = bed.mint("smoke-example", &["repo:*:admin"]);
    // Without any repository `read_repository` is skipped, and the first write run would turn
    // it to passed (an output change); with one that sorts first it reads the same every time.
    bed.sql("insert into repos (tenant_id, repo_key, repo_type) select tenant_id, 'libs-release', 'local' from tenants where slug = 'default'");
    let dir = "data-sources/artifortress_smoke";
    for tf in terraforms() {
        let ex = Example::new(&tf, &[dir], dir)
            .with_env("ARTIFORTRESS_API_URL", bed.api_url())
            .with_env("ARTIFORTRESS_ADMIN_TOKEN", &token);
        std::fs::write(
            ex.dir.join("terraform.tf"),
            "terraform {\n  required_providers {\n    artifortress = { source = \"artifortress/artifortress\" }\n  }\n}\n",
        )
        .unwrap();
        let count = || bed.sql("select count(*) from repos where repo_key like 'smoke-%'");
        let before = count();
        ex.init(&[]);
        ex.apply_ok(&[]);
        assert_eq!(
            ex.output("smoke_steps")
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().split(':').next().unwrap().to_string())
                .collect::<Vec<_>>(),
            ["whoami", "list_repositories", "read_repository"],
            "terraform {}",
            tf.version
        );
        // Read-only by default: no scratch repository.
        assert_eq!(count(), before);
        ex.apply_ok(&["-var=post_deploy_smoke=true"]);
        assert_ne!(count(), before);
        ex.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    }
}
