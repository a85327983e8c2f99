//! `examples/ci-drift` (the drift-detection CI job) end to end with every Terraform under test:
//! the module and its `drift-check.sh` copied into a working directory, against a PostgreSQL,
//! a Garage and a test bed API of their own (the API on that same database, so the ops summary
//! and the minted tokens live where the migrations run).

use std::path::{Path, PathBuf};
use std::process::Command;

use acceptance_tests::support::api::{TestbedApi, api_env};
use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::{PgServer, run_db_migrate};

use crate::harness::{Run, Terraform, Workdir, cli_config, terraforms};

const DB: &str = "artifortress";
const BOOTSTRAP_TOKEN: &str = "ci-drift-bootstrap-token-0123456789";
const PREFIX: &str = "backups/ci-drift/";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci-drift")
}

/// The servers of one Terraform's run.
struct Bed {
    pg: PgServer,
    garage: GarageServer,
    api: TestbedApi,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
}

impl Bed {
    fn start() -> Bed {
        let pg = PgServer::start().unwrap();
        pg.create_migrated_database(DB).unwrap();
        let garage = GarageServer::start().unwrap();
        let mut env = api_env(
            &pg.npgsql_connection_string(DB),
            BOOTSTRAP_TOKEN,
            garage.object_storage_env(garage.bucket()),
        );
        env.push(("TESTBED_FAULTS_ENABLED".into(), "1".into()));
        let api = TestbedApi::start(
            Path::new(env!("CARGO_BIN_EXE_artifortress-testbed-api")),
            &env,
        )
        .expect("test bed API starts");
        Bed {
            s3: garage.s3_client(),
            pg,
            garage,
            api,
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// What the CI job's environment holds: every provider setting, and the module's variables.
    fn env(&self, migrations: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("ARTIFORTRESS_API_URL", self.api.url().to_string()),
            ("ARTIFORTRESS_BOOTSTRAP_TOKEN", BOOTSTRAP_TOKEN.to_string()),
            ("ARTIFORTRESS_DATABASE_URL", self.pg.database_url(DB)),
            ("ARTIFORTRESS_S3_ENDPOINT", self.garage.endpoint()),
            ("ARTIFORTRESS_S3_BUCKET", self.garage.bucket().to_string()),
            ("AWS_ACCESS_KEY_ID", self.garage.access_key().to_string()),
            (
                "AWS_SECRET_ACCESS_KEY",
                self.garage.secret_key().to_string(),
            ),
            ("AWS_REGION", self.garage.region().to_string()),
            ("TF_VAR_migrations_dir", migrations.display().to_string()),
            ("TF_VAR_backup_prefix", PREFIX.to_string()),
        ]
    }

    fn exists(&self, key: &str) -> bool {
        self.rt.block_on(async {
            self.s3
                .head_object()
                .bucket(self.garage.bucket())
                .key(key)
                .send()
                .await
                .is_ok()
        })
    }

    fn delete(&self, key: &str) {
        self.rt.block_on(async {
            self.s3
                .delete_object()
                .bucket(self.garage.bucket())
                .key(key)
                .send()
                .await
                .unwrap();
        });
    }

    /// Replaces the test bed's run-time fault switches (`{}`: none).
    fn faults(&self, body: serde_json::Value) {
        self.rt.block_on(async {
            let resp = reqwest::Client::new()
                .put(format!("{}/testbed/faults", self.api.url()))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "PUT /testbed/faults: {resp:?}");
        });
    }

    fn count(&self, sql: &str) -> i64 {
        self.pg.psql(DB, sql).unwrap().parse().unwrap()
    }

    /// Audit rows by action: `[ops.summary.read, auth.pat.issued, auth.pat.revoked]`.
    fn audit(&self) -> [i64; 3] {
        ["ops.summary.read", "auth.pat.issued", "auth.pat.revoked"].map(|action| {
            self.count(&format!(
                "select count(*) from audit_log where action = '{action}'"
            ))
        })
    }

    fn live_tokens(&self) -> i64 {
        self.count("select count(*) from personal_access_tokens where revoked_at is null")
    }
}

/// `drift-check.sh` run the way the CI job runs it: in the module's directory, with the job's
/// environment and the Terraform under test.
fn drift_check(wd: &Workdir, env: &[(&str, String)]) -> Run {
    let dir = wd.file("main.tf").parent().unwrap().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("drift-check.sh"))
        .current_dir(&dir)
        .env("TERRAFORM", &wd.tf.bin)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("TF_CLI_CONFIG_FILE", cli_config())
        .env_remove("TF_LOG")
        .env_remove("TF_LOG_PROVIDER")
        .env_remove("ARTIFORTRESS_ADMIN_TOKEN")
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("bash runs drift-check.sh").into()
}

#[track_caller]
fn expect_exit(tf: &Terraform, run: &Run, code: i32, what: &str) {
    assert_eq!(
        run.code,
        code,
        "terraform {}: drift-check.sh after {what} exited {} instead of {code}:\n{}",
        tf.version,
        run.code,
        run.text()
    );
}

/// The module copied into an initialised working directory, with the test bed's migrations.
fn workdir(tf: &Terraform, bed: &Bed) -> (Workdir, PathBuf, Vec<(&'static str, String)>) {
    // Initialised with the harness's required_providers block, then replaced by the module,
    // which requires the same provider.
    let mut wd = Workdir::new(tf, "");
    for file in ["main.tf", "drift-check.sh"] {
        std::fs::copy(example_dir().join(file), wd.file(file)).unwrap();
    }
    let migrations = wd.file("db/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    for entry in std::fs::read_dir(migrations_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, migrations.join(path.file_name().unwrap())).unwrap();
    }
    let env = bed.env(&migrations);
    for (k, v) in &env {
        wd = wd.with_env(k, v);
    }
    (wd.without_env("ARTIFORTRESS_ADMIN_TOKEN"), migrations, env)
}

#[test]
fn ci_drift_example_exits_0_when_clean_and_2_on_drift() {
    for tf in terraforms() {
        let bed = Bed::start();
        let (wd, migrations, env) = workdir(&tf, &bed);
        // apply_ok also asserts that `plan -detailed-exitcode` is then empty: the data sources
        // of the checks are declared outside them (hashicorp/terraform#35226).
        wd.apply_ok();
        let key = wd.output("backup_object_key").as_str().unwrap().to_string();
        assert!(key.starts_with(PREFIX) && bed.exists(&key), "{key}");
        assert_eq!(wd.output("migration_head"), "0003_outbox_and_jobs.sql");

        let before = bed.audit();
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 0, "apply");
        assert!(run.stdout.contains("drift check: CLEAN"), "{}", run.text());
        assert!(!run.stdout.contains("warning: check"), "{}", run.text());
        // Each of the two plans minted a token, read the ops summary with it and revoked it,
        // each step writing an audit row (what the README says).
        assert_eq!(bed.audit(), before.map(|n| n + 2), "{}", run.text());
        assert_eq!(bed.live_tokens(), 0);

        // A failing check is a warning, not drift.
        bed.faults(serde_json::json!({"dependencies": {"object_storage": "degraded"}}));
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 0, "a degraded API");
        for check in ["check.readiness", "check.backlog"] {
            assert!(
                run.stdout
                    .contains(&format!("warning: check {check} is fail")),
                "{check}:\n{}",
                run.text()
            );
        }
        bed.faults(serde_json::json!({}));

        // A migration applied out of band, the service's way (file, then a ledger row).
        std::fs::write(
            migrations.join("0004_ci_drift_probe.sql"),
            "create table if not exists ci_drift_probe (id int primary key);\n",
        )
        .unwrap();
        let out = run_db_migrate(&bed.pg.database_url(DB), &migrations).unwrap();
        assert!(out.status.success(), "{out:?}");
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 2, "a migration applied out of band");
        assert!(
            run.stdout.contains("0004_ci_drift_probe.sql"),
            "{}",
            run.text()
        );
        assert!(run.stdout.contains("drift check: DRIFT"), "{}", run.text());

        wd.apply_ok();
        assert_eq!(wd.output("migration_head"), "0004_ci_drift_probe.sql");
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 0, "re-applying");

        // The backup's dump deleted from the bucket.
        bed.delete(&key);
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 2, "deleting the backup");
        assert!(
            run.stdout.contains("artifortress_backup.baseline"),
            "{}",
            run.text()
        );

        wd.apply_ok();
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 0, "a new backup");
        assert_eq!(bed.live_tokens(), 0);

        // Why the module declares its data sources outside the checks: scoped inside one, a
        // data source is planned to be read during apply on every run, so a clean environment
        // would be reported as drift (hashicorp/terraform#35226).
        let main = std::fs::read_to_string(wd.file("main.tf")).unwrap();
        let (top, check) = (
            "data \"artifortress_readiness\" \"api\" {}\n",
            "check \"readiness\" {\n",
        );
        assert!(
            main.contains(top) && main.contains(check),
            "the module changed shape:\n{main}"
        );
        let scoped = main
            .replacen(top, "", 1)
            .replacen(check, &format!("{check}  {top}"), 1);
        std::fs::write(wd.file("main.tf"), scoped).unwrap();
        let run = drift_check(&wd, &env);
        expect_exit(&tf, &run, 2, "scoping a data source inside its check");
        assert!(
            run.stdout
                .contains("data.artifortress_readiness.api will be read during apply"),
            "{}",
            run.text()
        );
    }
}
