//! `action "artifortress_restore_database"` with the real Terraform CLI (actions need
//! Terraform >= 1.14: run with every such CLI in `ARTIFORTRESS_TEST_TERRAFORMS`, 1.15.5 in
//! the dev environment) against a real PostgreSQL and a real S3 server (Garage) of the test's
//! own: a backup taken by `artifortress_backup`, a table dropped, the action invoked with
//! `confirm`, the table back with the manifest's counts; a wrong `confirm` refused with
//! nothing touched.

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::PgServer;

use crate::actions::with_actions;
use crate::examples::Example;
use crate::harness::Workdir;

const TABLES: [&str; 10] = [
    "schema_migrations",
    "tenants",
    "repos",
    "packages",
    "blobs",
    "package_versions",
    "artifact_entries",
    "outbox_events",
    "search_index_jobs",
    "gc_runs",
];

/// Row counts of the parity tables that exist (absent tables left out).
fn counts(pg: &PgServer, db: &str) -> serde_json::Map<String, serde_json::Value> {
    TABLES
        .iter()
        .filter(|t| {
            pg.psql(db, &format!("select to_regclass('{t}') is not null"))
                .unwrap()
                == "t"
        })
        .map(|t| {
            let n: i64 = pg
                .psql(db, &format!("select count(*) from {t}"))
                .unwrap()
                .parse()
                .unwrap();
            (t.to_string(), serde_json::json!(n))
        })
        .collect()
}

fn config(pg: &PgServer, g: &GarageServer, db: &str, prefix: &str, confirm: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  database_url = "{url}"
  object_storage = {{
    endpoint          = "{endpoint}"
    region            = "{region}"
    bucket            = "{bucket}"
    access_key_id     = "{ak}"
    secret_access_key = "{sk}"
  }}
}}

resource "artifortress_backup" "b" {{
  prefix = "{prefix}"
}}

action "artifortress_restore_database" "back" {{
  config {{
    backup_id      = artifortress_backup.b.id
    prefix         = "{prefix}"
    confirm        = "{confirm}"
    migrations_dir = "{migrations}"
    safety_backup_prefix = "{prefix}safety/"
  }}
}}

output "table_counts" {{ value = artifortress_backup.b.table_counts }}
"#,
        url = pg.database_url(db),
        endpoint = g.endpoint(),
        region = g.region(),
        bucket = g.bucket(),
        ak = g.access_key(),
        sk = g.secret_key(),
        migrations = migrations_dir().display(),
    )
}

#[test]
fn restore_database_brings_back_a_dropped_table_and_refuses_a_wrong_confirm() {
    let pg = PgServer::start().unwrap();
    let g = GarageServer::start().unwrap();
    for tf in with_actions() {
        let db = format!("live_{}", tf.version.replace('.', "_"));
        pg.create_migrated_database(&db).unwrap();
        pg.seed(&db).unwrap();
        let prefix = format!("backups/{db}/");
        let wd = Workdir::new(&tf, &config(&pg, &g, &db, &prefix, &db));
        wd.apply_ok();
        let recorded = wd.output("table_counts");
        let before = counts(&pg, &db);
        assert_eq!(serde_json::Value::Object(before.clone()), recorded);
        assert!(
            before["package_versions"].as_i64().unwrap() > 0,
            "{before:?}"
        );

        // A table lost after the backup.
        pg.psql(&db, "drop table package_versions cascade").unwrap();
        assert!(!counts(&pg, &db).contains_key("package_versions"));

        // A wrong confirm: refused (at plan), nothing touched, no safety backup.
        wd.set_config(&config(&pg, &g, &db, &prefix, "artifortress"));
        let refused = wd.run(&[
            "apply",
            "-invoke=action.artifortress_restore_database.back",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ]);
        assert_ne!(refused.code, 0, "{}", refused.text());
        assert!(refused.shows("Restore not confirmed"), "{}", refused.text());
        assert!(
            refused.shows(&format!("set confirm = \"{db}\" to restore over it")),
            "{}",
            refused.text()
        );
        assert!(!counts(&pg, &db).contains_key("package_versions"));
        assert!(!refused.shows("safety backup"), "{}", refused.text());

        // Confirmed: the table is back with the counts the backup's manifest recorded.
        wd.set_config(&config(&pg, &g, &db, &prefix, &db));
        let run = wd.run(&[
            "apply",
            "-invoke=action.artifortress_restore_database.back",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ]);
        assert_eq!(run.code, 0, "terraform {}:\n{}", tf.version, run.text());
        assert_eq!(serde_json::Value::Object(counts(&pg, &db)), recorded);
        // Each step reached the terminal as a progress event.
        for step in [
            "checked: backup",
            "downloaded: s3://",
            "safety backup: safety backup",
            "terminated:",
            "dropped: database",
            "created: database",
            "restored:",
            "verified: row counts of 10 table(s)",
        ] {
            assert!(run.shows(step), "{step:?} not shown:\n{}", run.text());
        }
        // Nothing in state changed.
        wd.assert_plan_empty();
    }
}

/// `examples/actions/artifortress_restore_database` (the one docs/ embeds) applied as it is
/// (its migrations directory the test bed's, its database `artifortress`), then invoked: the
/// dropped table is back with the backup's counts.
#[test]
fn the_restore_database_example_applies_and_restores() {
    let pg = PgServer::start().unwrap();
    let g = GarageServer::start().unwrap();
    pg.create_migrated_database("artifortress").unwrap();
    pg.seed("artifortress").unwrap();
    let seeded = counts(&pg, "artifortress");
    for tf in with_actions() {
        let dir = "actions/artifortress_restore_database";
        let ex = Example::new(&tf, &[dir], dir)
            .with_env(
                "ARTIFORTRESS_DATABASE_URL",
                &pg.database_url("artifortress"),
            )
            .with_env("ARTIFORTRESS_S3_ENDPOINT", &g.endpoint())
            .with_env("ARTIFORTRESS_S3_BUCKET", g.bucket())
            .with_env("AWS_ACCESS_KEY_ID", g.access_key())
            .with_env("AWS_SECRET_ACCESS_KEY", g.secret_key())
            .with_env("AWS_REGION", g.region());
        std::fs::write(
            ex.dir.join("terraform.tf"),
            "terraform {\n  required_providers {\n    artifortress = { source = \"artifortress/artifortress\" }\n  }\n}\n",
        )
        .unwrap();
        let migrations = ex.dir.join("db/migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        for f in std::fs::read_dir(migrations_dir()).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), migrations.join(f.file_name())).unwrap();
        }
        ex.init(&[]);
        ex.apply_ok(&[]);
        pg.psql("artifortress", "drop table package_versions cascade")
            .unwrap();
        let run = ex.ok(&[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-invoke=action.artifortress_restore_database.pre_release",
        ]);
        assert!(run.shows("verified: row counts"), "{}", run.text());
        assert_eq!(
            counts(&pg, "artifortress"),
            seeded,
            "terraform {}",
            tf.version
        );
    }
}
