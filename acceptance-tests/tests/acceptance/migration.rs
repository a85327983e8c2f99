//! `resource "artifortress_migration"` and `data "artifortress_migrations"` with the real
//! Terraform CLIs against a real PostgreSQL (a throw-away server per test, so the fault tests can
//! kill it), and the service's own migration script (`testbed/db-migrate.sh`) where the tests
//! need a database migrated the service's way.

use std::io::Read;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use acceptance_tests::support::postgres::{PG_PASSWORD, PgServer, run_db_migrate};
use acceptance_tests::support::{migrations_dir, send_signal, wait_for};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Run, Terraform, Workdir, shows, terraforms};

const TESTBED_VERSIONS: [&str; 3] = [
    "0001_core.sql",
    "0002_auth_and_audit.sql",
    "0003_outbox_and_jobs.sql",
];

/// A database of its own on `pg`.
fn database(pg: &PgServer) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("mig_{}", N.fetch_add(1, Ordering::SeqCst));
    pg.create_database(&name).unwrap();
    name
}

/// A migration directory holding the test bed's three migrations plus `extra` files.
fn migration_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("af-mig-")
        .tempdir()
        .unwrap();
    for v in TESTBED_VERSIONS {
        std::fs::copy(migrations_dir().join(v), dir.path().join(v)).unwrap();
    }
    write_files(dir.path(), extra);
    dir
}

/// A migration directory holding only `files`.
fn files_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("af-mig-")
        .tempdir()
        .unwrap();
    write_files(dir.path(), files);
    dir
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).unwrap();
    }
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.replace("\r\n", "\n").as_bytes()))
}

fn config(url: &str, dir: &Path, provider_extra: &str, extra: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  database_url = "{url}"
  {provider_extra}
}}

resource "artifortress_migration" "schema" {{
  dir = "{dir}"
  {extra}
}}

output "id"              {{ value = artifortress_migration.schema.id }}
output "applied"         {{ value = artifortress_migration.schema.applied_versions }}
output "pending"         {{ value = artifortress_migration.schema.pending }}
output "head"            {{ value = artifortress_migration.schema.head }}
output "checksums"       {{ value = artifortress_migration.schema.checksums }}
output "last_applied_at" {{ value = artifortress_migration.schema.last_applied_at }}
"#,
        dir = dir.display()
    )
}

/// The planned change of the migration resource in a `show -json` plan.
fn change(plan: &Value) -> &Value {
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "artifortress_migration")
        .map(|c| &c["change"])
        .unwrap_or_else(|| panic!("no artifortress_migration change in {plan}"))
}

fn ledger(pg: &PgServer, db: &str) -> Vec<String> {
    let out = pg
        .psql(db, "select version from schema_migrations order by version")
        .unwrap();
    out.lines().map(str::to_string).collect()
}

fn sidecar(pg: &PgServer, db: &str) -> Vec<String> {
    let out = pg
        .psql(
            db,
            "select version || ' ' || source || ' ' || checksum || ' ' || \
             case when dirty then 't' else 'f' end \
             from artifortress_migrations_log order by version",
        )
        .unwrap();
    out.lines().map(str::to_string).collect()
}

fn assert_failed(run: &Run, tf: &Terraform, needles: &[&str]) {
    assert_eq!(
        run.code,
        1,
        "terraform {}: expected a failure:\n{}",
        tf.version,
        run.text()
    );
    let text = run.text();
    for n in needles {
        assert!(
            shows(&text, n),
            "terraform {}: {n:?} not in:\n{text}",
            tf.version
        );
    }
}

/// The pid of the PostgreSQL backend running a statement that contains `needle`.
fn backend_running(pg: &PgServer, db: &str, needle: &str) -> Option<String> {
    let sql = format!(
        "select pid from pg_stat_activity where datname = '{db}' and state = 'active' \
         and query like '%{needle}%' and pid <> pg_backend_pid()"
    );
    pg.psql(db, &sql).ok().filter(|s| !s.is_empty())
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    out.into()
}

// ------------------------------------------------------------------------------------------

#[test]
fn fresh_database_then_one_new_file() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));

        // The create plan already knows what the database will hold.
        let plan = wd.plan_json();
        let after = &change(&plan)["after"];
        assert_eq!(after["applied_versions"], json!(TESTBED_VERSIONS));
        assert_eq!(after["pending"], json!([]));
        assert_eq!(after["head"], "0003_outbox_and_jobs.sql");
        assert_eq!(after["id"], format!("127.0.0.1:{}/{db}", pg.port()));

        wd.apply_ok();
        assert_eq!(ledger(&pg, &db), TESTBED_VERSIONS);
        let rows = sidecar(&pg, &db);
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter()
                .all(|r| r.contains(" terraform ") && r.ends_with(" f")),
            "{rows:?}"
        );
        assert_eq!(wd.output("applied"), json!(TESTBED_VERSIONS));
        assert_eq!(wd.output("pending"), json!([]));
        assert_eq!(wd.output("head"), "0003_outbox_and_jobs.sql");
        let core = std::fs::read_to_string(dir.path().join("0001_core.sql")).unwrap();
        assert_eq!(wd.output("checksums")["0001_core.sql"], sha256(&core));
        assert!(
            wd.output("last_applied_at")
                .as_str()
                .unwrap()
                .ends_with('Z')
        );

        // One new file: the plan lists exactly it, with its class and transaction mode.
        let sql = "-- artifortress:class B\ncreate table release_notes (id bigint primary key);\n";
        write_files(dir.path(), &[("0004_release_notes.sql", sql)]);
        let plan = wd.plan_json();
        let c = change(&plan);
        assert_eq!(c["actions"], json!(["update"]));
        assert_eq!(
            c["before"]["pending"],
            json!([{"version": "0004_release_notes.sql", "class": "B", "checksum": sha256(sql), "transactional": true}])
        );
        assert_eq!(c["after"]["pending"], json!([]));
        assert_eq!(c["after"]["head"], "0004_release_notes.sql");
        assert_eq!(c["after"]["applied_versions"].as_array().unwrap().len(), 4);
        assert_eq!(wd.plan_detailed().code, 2);

        wd.apply_ok();
        assert_eq!(ledger(&pg, &db).len(), 4);
        assert_eq!(
            pg.psql(&db, "select count(*) from release_notes").unwrap(),
            "0"
        );

        // Destroy drops nothing and says so.
        let destroy = wd.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        assert_eq!(destroy.code, 0, "{}", destroy.text());
        assert!(
            destroy.shows("Migrations are not rolled back"),
            "{}",
            destroy.text()
        );
        assert_eq!(ledger(&pg, &db).len(), 4);
        assert_eq!(
            pg.psql(&db, "select count(*) from release_notes").unwrap(),
            "0"
        );
    }
}

#[test]
fn database_migrated_by_the_service_script_is_up_to_date() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let out = run_db_migrate(&url, dir.path()).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied_at = pg
            .psql(
                &db,
                "select string_agg(applied_at::text, ',' order by version) from schema_migrations",
            )
            .unwrap();

        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        let plan = wd.plan_json();
        assert_eq!(change(&plan)["after"]["pending"], json!([]));
        assert_eq!(
            change(&plan)["after"]["applied_versions"],
            json!(TESTBED_VERSIONS)
        );
        wd.apply_ok();
        // Adopted with the current files' checksums, nothing re-run.
        let rows = sidecar(&pg, &db);
        assert_eq!(rows.len(), 3, "{rows:?}");
        for (row, v) in rows.iter().zip(TESTBED_VERSIONS) {
            let sql = std::fs::read_to_string(dir.path().join(v)).unwrap();
            assert_eq!(row, &format!("{v} adopted {} f", sha256(&sql)));
        }
        assert_eq!(
            pg.psql(
                &db,
                "select string_agg(applied_at::text, ',' order by version) from schema_migrations"
            )
            .unwrap(),
            applied_at
        );

        // A file applied out of band by the service's script: no change to plan, and the
        // refreshed state shows it.
        let sql = "create table if not exists oob (id int);\n";
        write_files(dir.path(), &[("0004_oob.sql", sql)]);
        let out = run_db_migrate(&url, dir.path()).unwrap();
        assert!(out.status.success());
        // (The outputs change, so only the resource's action is checked.)
        let plan = wd.plan_json();
        assert_eq!(change(&plan)["actions"], json!(["no-op"]), "{plan}");
        let refresh = wd.run(&["apply", "-refresh-only", "-auto-approve", "-no-color"]);
        assert_eq!(refresh.code, 0, "{}", refresh.text());
        assert_eq!(wd.output("head"), "0004_oob.sql");
        assert_eq!(wd.output("checksums")["0004_oob.sql"], sha256(sql));
    }
}

#[test]
fn edited_applied_file_is_refused_until_its_checksum_is_accepted() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        wd.apply_ok();

        // Line endings alone are not an edit.
        let path = dir.path().join("0001_core.sql");
        let original = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, original.replace('\n', "\r\n")).unwrap();
        wd.assert_plan_empty();

        let path = dir.path().join("0002_auth_and_audit.sql");
        let original = std::fs::read_to_string(&path).unwrap();
        let edited = format!("{original}-- reviewed by the DBA\n");
        std::fs::write(&path, &edited).unwrap();
        let plan = wd.plan_detailed();
        assert_failed(
            &plan,
            &tf,
            &[
                "Migration 0002_auth_and_audit.sql was edited after it was applied",
                &sha256(&original),
                &sha256(&edited),
                "accept_checksums",
            ],
        );
        // The edit is refused at apply too, and nothing is recorded.
        assert_eq!(wd.apply().code, 1);
        assert!(sidecar(&pg, &db)[1].contains(&sha256(&original)));

        let accepted = format!(
            "accept_checksums = {{ \"0002_auth_and_audit.sql\" = \"{}\" }}",
            sha256(&edited)
        );
        wd.set_config(&config(&url, dir.path(), "", &accepted));
        wd.apply_ok();
        assert_eq!(
            sidecar(&pg, &db)[1],
            format!("0002_auth_and_audit.sql accepted {} f", sha256(&edited))
        );
        assert_eq!(
            wd.output("checksums")["0002_auth_and_audit.sql"],
            sha256(&edited)
        );

        // A malformed checksum is a validation error.
        wd.set_config(&config(
            &url,
            dir.path(),
            "",
            r#"accept_checksums = { "0002_auth_and_audit.sql" = "ABC" }"#,
        ));
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &["Invalid checksum", "lowercase hex sha256"],
        );
    }
}

#[test]
fn contract_migrations_and_production_without_backup_are_refused_at_plan_time() {
    let pg = PgServer::start().unwrap();
    let files = [
        (
            "0001_expand.sql",
            "create table accounts (id int, legacy text);\n",
        ),
        (
            "0002_contract.sql",
            "-- artifortress:class C\nalter table accounts drop column legacy;\n",
        ),
    ];
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = files_dir(&files);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                "Contract (class C) migration not allowed: 0002_contract.sql",
                "allow_contract",
            ],
        );

        wd.set_config(&config(
            &url,
            dir.path(),
            r#"environment = "production""#,
            "allow_contract = true",
        ));
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                "A backup is required before migrating this database",
                "0001_expand.sql, 0002_contract.sql",
                "backup_id",
            ],
        );
        assert_eq!(
            pg.psql(&db, "select to_regclass('accounts') is null")
                .unwrap(),
            "t"
        );

        // A backup id known only after apply passes the plan-time gate.
        let cfg = format!(
            "{}\nresource \"terraform_data\" \"backup\" {{\n  input = \"backup-1\"\n}}\n",
            config(
                &url,
                dir.path(),
                r#"environment = "production""#,
                "allow_contract = true\n  backup_id = terraform_data.backup.output",
            )
        );
        wd.set_config(&cfg);
        wd.apply_ok();
        assert_eq!(ledger(&pg, &db), ["0001_expand.sql", "0002_contract.sql"]);
    }
}

#[test]
fn concurrent_index_build_under_traffic_and_a_failed_one_leaves_a_dirty_marker() {
    let pg = PgServer::start().unwrap();
    let files = [
        (
            "0001_items.sql",
            "create table items (id bigserial primary key, name text not null);\n\
             insert into items (name) select 'n' || g from generate_series(1, 200000) g;\n",
        ),
        (
            "0002_items_name.sql",
            "-- artifortress:no-transaction\n\
             create index concurrently if not exists items_name on items (name);\n",
        ),
    ];
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = files_dir(&files[..1]);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        wd.apply_ok();

        // Normal traffic: short write transactions all the time while the index builds.
        let traffic_dir = tempfile::tempdir().unwrap();
        let script = traffic_dir.path().join("traffic.sql");
        std::fs::write(
            &script,
            "insert into items (name) values ('traffic'); select pg_sleep(0.01);\n".repeat(3000),
        )
        .unwrap();
        let mut traffic = std::process::Command::new("psql")
            .arg(&url)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        write_files(dir.path(), &files[1..]);
        wd.apply_ok();
        assert!(
            traffic.try_wait().unwrap().is_none(),
            "the traffic session ended early (blocked or failed)"
        );
        let _ = traffic.kill();
        let _ = traffic.wait();
        assert_eq!(
            pg.psql(
                &db,
                "select indisvalid from pg_index where indexrelid = 'items_name'::regclass"
            )
            .unwrap(),
            "t"
        );
        assert!(
            pg.psql(&db, "select count(*) from items where name = 'traffic'")
                .unwrap()
                != "0"
        );

        // A failing concurrent build (duplicates) leaves the marker and an INVALID index.
        write_files(
            dir.path(),
            &[(
                "0003_items_unique.sql",
                "-- artifortress:no-transaction\n\
                 create unique index concurrently items_name_unique on items (name);\n",
            )],
        );
        let apply = wd.apply();
        assert_failed(&apply, &tf, &["Migration failed", "0003_items_unique.sql"]);
        assert!(
            sidecar(&pg, &db)
                .iter()
                .any(|r| r.starts_with("0003_items_unique.sql ") && r.ends_with(" t")),
            "{:?}",
            sidecar(&pg, &db)
        );
        assert_eq!(
            pg.psql(&db, "select count(*) from pg_index where not indisvalid")
                .unwrap(),
            "1"
        );
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                "Migration 0003_items_unique.sql did not finish (dirty)",
                "select indexrelid::regclass from pg_index where not indisvalid",
                "DROP INDEX CONCURRENTLY",
            ],
        );
        // The data source reports it without failing.
        let ds = Workdir::new(
            &tf,
            &format!(
                r#"
provider "artifortress" {{
  database_url = "{url}"
}}
data "artifortress_migrations" "now" {{
  dir = "{}"
}}
output "dirty"      {{ value = data.artifortress_migrations.now.dirty }}
output "up_to_date" {{ value = data.artifortress_migrations.now.up_to_date }}
output "problems"   {{ value = data.artifortress_migrations.now.problems }}
"#,
                dir.path().display()
            ),
        );
        ds.apply_ok();
        assert_eq!(ds.output("dirty"), json!(["0003_items_unique.sql"]));
        assert_eq!(ds.output("up_to_date"), false);
        assert!(
            ds.output("problems")[0]["summary"]
                .as_str()
                .unwrap()
                .contains("dirty")
        );
    }
}

#[test]
fn data_source_shows_pending_work_without_changing_anything() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let out = run_db_migrate(&url, &migrations_dir()).unwrap();
        assert!(out.status.success());
        write_files(
            dir.path(),
            &[("0004_next.sql", "create table next (id int);\n")],
        );
        let wd = Workdir::new(
            &tf,
            &format!(
                r#"
provider "artifortress" {{
  database_url = "{url}"
}}
data "artifortress_migrations" "now" {{
  dir = "{}"
}}
output "applied"    {{ value = data.artifortress_migrations.now.applied_versions }}
output "pending"    {{ value = data.artifortress_migrations.now.pending[*].version }}
output "head"       {{ value = data.artifortress_migrations.now.head }}
output "up_to_date" {{ value = data.artifortress_migrations.now.up_to_date }}
output "problems"   {{ value = data.artifortress_migrations.now.problems }}
"#,
                dir.path().display()
            ),
        );
        wd.apply_ok();
        assert_eq!(wd.output("applied"), json!(TESTBED_VERSIONS));
        assert_eq!(wd.output("pending"), json!(["0004_next.sql"]));
        assert_eq!(wd.output("head"), "0003_outbox_and_jobs.sql");
        assert_eq!(wd.output("up_to_date"), false);
        assert_eq!(wd.output("problems"), json!([]));
        assert_eq!(ledger(&pg, &db).len(), 3);
        assert_eq!(
            pg.psql(
                &db,
                "select to_regclass('artifortress_migrations_log') is null"
            )
            .unwrap(),
            "t",
            "reading must not create the sidecar"
        );
    }
}

#[test]
fn unknown_inputs_at_plan_time_apply_consistently() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let wd = Workdir::new(
            &tf,
            &format!(
                r#"
provider "artifortress" {{}}

resource "terraform_data" "db" {{
  input = {{ url = "{url}", target = "0002_auth_and_audit.sql" }}
}}

resource "artifortress_migration" "schema" {{
  dir            = "{}"
  database_url   = terraform_data.db.output.url
  target_version = terraform_data.db.output.target
}}

output "head" {{ value = artifortress_migration.schema.head }}
"#,
                dir.path().display()
            ),
        )
        .without_env("ARTIFORTRESS_DATABASE_URL")
        // database_url is write-only: refresh connects with connection_url (no password) and
        // the password from the environment, as documented.
        .with_env("PGPASSWORD", PG_PASSWORD);
        let plan = wd.plan_json();
        assert_eq!(change(&plan)["after_unknown"]["pending"], true);
        wd.apply_ok();
        // (terraform_data.db holds the URL; the migration's own state must not.)
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap())
                .unwrap();
        let state = state["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "artifortress_migration")
            .unwrap()
            .to_string();
        assert!(
            !state.contains(PG_PASSWORD),
            "the password is in the state:\n{state}"
        );
        let connection = url::Url::parse(&url).map(|mut u| {
            u.set_password(None).unwrap();
            u.to_string()
        });
        assert!(
            state.contains(&format!("\"connection_url\":\"{}\"", connection.unwrap())),
            "{state}"
        );
        assert_eq!(wd.output("head"), "0002_auth_and_audit.sql");
        assert_eq!(ledger(&pg, &db), TESTBED_VERSIONS[..2]);
    }
}

#[test]
fn import_by_id_and_a_reset_database_is_migrated_again() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        wd.apply_ok();
        let id = format!("127.0.0.1:{}/{db}", pg.port());
        assert_eq!(wd.output("id"), id);

        let rm = wd.run(&["state", "rm", "artifortress_migration.schema"]);
        assert_eq!(rm.code, 0, "{}", rm.text());
        let wrong = wd.run(&[
            "import",
            "-no-color",
            "artifortress_migration.schema",
            "127.0.0.1:1/other",
        ]);
        assert_failed(&wrong, &tf, &["Import ID does not match the database URL"]);
        let import = wd.run(&["import", "-no-color", "artifortress_migration.schema", &id]);
        assert_eq!(import.code, 0, "{}", import.text());
        let plan = wd.plan_json();
        let c = change(&plan);
        assert_eq!(
            c["actions"],
            json!(["update"]),
            "only the arguments are new"
        );
        assert_eq!(c["after"]["applied_versions"], json!(TESTBED_VERSIONS));
        wd.apply_ok();
        assert_eq!(ledger(&pg, &db).len(), 3);

        // Reset the database: the plan proposes applying everything again.
        pg.psql(&db, "drop schema public cascade; create schema public")
            .unwrap();
        let plan = wd.plan_json();
        let c = change(&plan);
        assert_eq!(c["before"]["pending"].as_array().unwrap().len(), 3);
        assert_eq!(c["after"]["applied_versions"], json!(TESTBED_VERSIONS));
        wd.apply_ok();
        assert_eq!(ledger(&pg, &db), TESTBED_VERSIONS);
    }
}

#[test]
fn a_moved_directory_is_an_update_and_a_missing_one_a_plan_error() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = migration_dir(&[]);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        wd.apply_ok();

        let moved = tempfile::Builder::new()
            .prefix("af-moved-")
            .tempdir()
            .unwrap();
        for v in TESTBED_VERSIONS {
            std::fs::rename(dir.path().join(v), moved.path().join(v)).unwrap();
        }
        // Configuration unchanged, files gone: the refresh works, the plan says why not.
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                "Applied migration 0001_core.sql has no file",
                "restore the file",
            ],
        );
        std::fs::remove_dir(dir.path()).unwrap();
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                "Cannot read the migration directory",
                &dir.path().display().to_string(),
            ],
        );
        std::fs::create_dir(dir.path()).unwrap();
        // Pointed at the new place: only `dir` changes, nothing runs.
        wd.set_config(&config(&url, moved.path(), "", ""));
        let plan = wd.plan_json();
        let c = change(&plan);
        assert_eq!(c["actions"], json!(["update"]));
        assert_eq!(
            c["after"]["applied_versions"],
            c["before"]["applied_versions"]
        );
        assert_eq!(
            c["after"]["last_applied_at"],
            c["before"]["last_applied_at"]
        );
        wd.apply_ok();
        assert_eq!(ledger(&pg, &db), TESTBED_VERSIONS);
    }
}

// ------------------------------------------------------------------------------------------
// Faults
// ------------------------------------------------------------------------------------------

/// Files whose second one is slow; every file records that it ran.
fn counted_files(sleep_seconds: u32) -> Vec<(String, String)> {
    vec![
        (
            "0001_runs.sql".into(),
            "create table runs (file text not null);\ninsert into runs values ('0001');\n".into(),
        ),
        (
            "0002_slow.sql".into(),
            format!(
                "create table slow (id int);\ninsert into slow select generate_series(1, 1000);\n\
                 insert into runs values ('0002');\nselect pg_sleep({sleep_seconds});\n"
            ),
        ),
        (
            "0003_after.sql".into(),
            "create table after_slow (id int);\ninsert into runs values ('0003');\n".into(),
        ),
    ]
}

fn counted_dir(sleep_seconds: u32) -> tempfile::TempDir {
    let files = counted_files(sleep_seconds);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    files_dir(&refs)
}

fn apply_args() -> [&'static str; 4] {
    ["apply", "-auto-approve", "-input=false", "-no-color"]
}

#[test]
fn fault_postmaster_killed_mid_migration_then_restarted() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        // The test server trades durability for speed (synchronous_commit=off); this database
        // gets PostgreSQL's default back, so a commit acknowledged before the crash survives it.
        pg.psql(
            &db,
            &format!("alter database {db} set synchronous_commit = on"),
        )
        .unwrap();
        let url = pg.database_url(&db);
        let dir = counted_dir(30);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        let child = wd.spawn(&apply_args());
        wait_for(Duration::from_secs(60), || {
            backend_running(&pg, &db, "pg_sleep")
        })
        .expect("the slow migration starts");

        let pid_file = std::fs::read_to_string(pg.dir().join("data/postmaster.pid")).unwrap();
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        assert!(send_signal(postmaster, libc::SIGKILL));
        let run = finish(child);
        assert_ne!(
            run.code,
            0,
            "apply must fail when the server dies:\n{}",
            run.text()
        );

        // Restart once every old backend is gone.
        wait_for(Duration::from_secs(30), || pg.start_again().ok()).expect("PostgreSQL restarts");

        // Nothing half-recorded: 0001 complete, 0002 neither in the ledger nor in effect.
        assert_eq!(ledger(&pg, &db), ["0001_runs.sql"]);
        assert_eq!(
            pg.psql(&db, "select to_regclass('slow') is null").unwrap(),
            "t"
        );
        assert_eq!(
            pg.psql(&db, "select string_agg(file, ',') from runs")
                .unwrap(),
            "0001"
        );
        assert!(sidecar(&pg, &db).iter().all(|r| r.ends_with(" f")));

        // The next apply completes (quickly: the file no longer sleeps).
        write_files(dir.path(), &[("0002_slow.sql", &counted_files(0)[1].1)]);
        wd.apply_ok();
        assert_eq!(ledger(&pg, &db).len(), 3);
        assert_eq!(
            pg.psql(&db, "select string_agg(file, ',' order by file) from runs")
                .unwrap(),
            "0001,0002,0003"
        );
    }
}

#[test]
fn fault_two_applies_at_once_run_every_migration_exactly_once() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = counted_dir(3);
        // Two working directories (two CI jobs, two people) against one database.
        let a = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        let b = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        let (ca, cb) = (a.spawn(&apply_args()), b.spawn(&apply_args()));
        let (ra, rb) = (finish(ca), finish(cb));
        assert_eq!(
            ra.code,
            0,
            "terraform {} first apply:\n{}",
            tf.version,
            ra.text()
        );
        assert_eq!(
            rb.code,
            0,
            "terraform {} second apply:\n{}",
            tf.version,
            rb.text()
        );
        assert_eq!(
            pg.psql(&db, "select string_agg(file, ',' order by file) from runs")
                .unwrap(),
            "0001,0002,0003",
            "every migration ran exactly once"
        );
        assert_eq!(ledger(&pg, &db).len(), 3);
        a.assert_plan_empty();
        b.assert_plan_empty();
    }
}

#[test]
fn fault_provider_killed_mid_apply_leaves_no_lock_and_the_next_apply_completes() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = counted_dir(60);
        let wd = Workdir::new(&tf, &config(&url, dir.path(), "", ""));
        let child = wd.spawn(&apply_args());
        wait_for(Duration::from_secs(60), || {
            backend_running(&pg, &db, "pg_sleep")
        })
        .expect("the slow migration starts");
        let provider = provider_child(child.id()).expect("the provider process of this apply");
        assert!(send_signal(provider, libc::SIGKILL));
        let run = finish(child);
        assert_ne!(run.code, 0, "{}", run.text());

        // The server notices the dead client, rolls the file back and frees the lock.
        wait_for(Duration::from_secs(20), || {
            let locks = pg
                .psql(
                    &db,
                    "select count(*) from pg_locks where locktype = 'advisory'",
                )
                .ok()?;
            (locks == "0").then_some(())
        })
        .expect("the migration lock is released");
        assert_eq!(ledger(&pg, &db), ["0001_runs.sql"]);
        assert_eq!(
            pg.psql(&db, "select to_regclass('slow') is null").unwrap(),
            "t"
        );

        write_files(dir.path(), &[("0002_slow.sql", &counted_files(0)[1].1)]);
        wd.apply_ok();
        assert_eq!(
            pg.psql(&db, "select string_agg(file, ',' order by file) from runs")
                .unwrap(),
            "0001,0002,0003"
        );
    }
}

/// The provider plugin process started (directly or through a shim) under `root`.
fn provider_child(root: u32) -> Option<u32> {
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let mut stat = String::new();
            if std::fs::File::open(entry.path().join("stat"))
                .and_then(|mut f| f.read_to_string(&mut stat))
                .is_err()
            {
                continue;
            }
            // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(parent) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("terraform-provider-artifortress") {
                return Some(pid);
            }
            frontier.push(pid);
        }
    }
    None
}

#[test]
fn fault_timeout_cancels_the_running_migration_and_rolls_it_back() {
    let pg = PgServer::start().unwrap();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);
        let dir = counted_dir(120);
        let wd = Workdir::new(
            &tf,
            &config(&url, dir.path(), "", r#"timeouts = { create = "3s" }"#),
        );
        let started = std::time::Instant::now();
        let apply = wd.apply();
        assert_failed(
            &apply,
            &tf,
            &[
                "Migration stopped",
                "Stopped by the create timeout (3s)",
                "0002_slow.sql",
            ],
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the statement was cancelled, not waited for"
        );
        assert_eq!(ledger(&pg, &db), ["0001_runs.sql"]);
        assert_eq!(
            pg.psql(&db, "select to_regclass('slow') is null").unwrap(),
            "t"
        );
        assert_eq!(
            pg.psql(
                &db,
                "select count(*) from pg_locks where locktype = 'advisory'"
            )
            .unwrap(),
            "0"
        );
        // A failed create keeps nothing in state: the next plan creates it again and runs
        // exactly what is left.
        let plan = wd.plan_json();
        assert_eq!(change(&plan)["actions"], json!(["create"]));
        write_files(dir.path(), &[("0002_slow.sql", &counted_files(0)[1].1)]);
        wd.apply_ok();
        assert_eq!(
            pg.psql(&db, "select string_agg(file, ',' order by file) from runs")
                .unwrap(),
            "0001,0002,0003"
        );
    }
}

// ------------------------------------------------------------------------------------------
// The service's own migration files
// ------------------------------------------------------------------------------------------

/// The commit of Artifortress (`sremani/Artifortress`) whose migrations these tests apply.
const REAL_COMMIT: &str = "f628e74dfb8b884f5113d3c4aadf16000228025a";

/// The service's own migration files (`db/migrations/*.sql` at [`REAL_COMMIT`], 15 files, no
/// class markers), read at test time from a clone of the service's repository: the git directory
/// in `ARTIFORTRESS_REAL_REPO`, by default the mirror this project is developed beside. They are
/// not copied into this repository (the service's code is not ours to copy). With
/// `ARTIFORTRESS_REAL_REPO` set, a clone that cannot be read is a failure; with it unset and no
/// clone at the default place (a machine that never fetched the service; the test bed's network
/// reaches no GitHub), `None`: the caller says loudly that it did not run.
fn real_migrations_dir() -> Option<tempfile::TempDir> {
    const DEFAULT: &str = "/work/.mirror/sremani+Artifortress/repo";
    let repo = match std::env::var("ARTIFORTRESS_REAL_REPO") {
        Ok(repo) => repo,
        Err(_) if Path::new(DEFAULT).is_dir() => DEFAULT.to_string(),
        Err(_) => return None,
    };
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "reading the service's migrations from {repo} (set ARTIFORTRESS_REAL_REPO to a \
             clone of sremani/Artifortress holding {REAL_COMMIT}): git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = tempfile::Builder::new()
        .prefix("af-real-mig-")
        .tempdir()
        .unwrap();
    let names = git(&["ls-tree", "--name-only", REAL_COMMIT, "db/migrations/"]);
    for path in names.lines() {
        let name = path.rsplit('/').next().unwrap();
        let sql = git(&["show", &format!("{REAL_COMMIT}:{path}")]);
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    Some(dir)
}

fn real_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The tables the service's `scripts/db-smoke.sh:11-21` requires (at [`REAL_COMMIT`]).
const SMOKE_TABLES: [&str; 9] = [
    "schema_migrations",
    "tenants",
    "repos",
    "packages",
    "blobs",
    "package_versions",
    "artifact_entries",
    "audit_log",
    "outbox_events",
];

fn real_config(url: &str, dir: &Path, classes: &str, extra: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  database_url = "{url}"
}}

resource "artifortress_migration" "schema" {{
  dir     = "{dir}"
  classes = {classes}
  {extra}
}}

data "artifortress_migrations" "after" {{
  dir        = "{dir}"
  classes    = {classes}
  depends_on = [artifortress_migration.schema]
}}

output "pending"  {{ value = artifortress_migration.schema.pending }}
output "missing"  {{ value = data.artifortress_migrations.after.missing_tables }}
output "required" {{ value = data.artifortress_migrations.after.required_tables }}
output "up_to_date" {{ value = data.artifortress_migrations.after.up_to_date }}
"#,
        dir = dir.display()
    )
}

/// Issue 17 part 3. The service's 15 files carry no class; its policy states classes per release
/// (`docs/41-migration-compatibility-policy.md:100-103`). Given through `classes`, a class C
/// file is gated like one with the directive, without touching the files; a contradiction with a
/// directive, a key naming no file and a value other than A/B/C are errors at `classes`. The
/// data source reports the service's smoke-check tables (`scripts/db-smoke.sh`) missing before
/// the migrations and present after.
#[test]
fn real_migrations_classes_given_beside_the_files_gate_class_c_and_db_smoke_tables() {
    let Some(real) = real_migrations_dir() else {
        eprintln!(
            "NOT RUN: no clone of sremani/Artifortress (set ARTIFORTRESS_REAL_REPO to one holding \
             {REAL_COMMIT}); the service's own migration files cannot be read here"
        );
        return;
    };
    let pg = PgServer::start().unwrap();
    let names = real_files(real.path());
    assert_eq!(names.len(), 15, "{names:?}");
    assert_eq!(names[14], "0015_worker_claim_path_indexes.sql");
    let contract = "0014_search_assurance_controls.sql";
    let sums: Vec<String> = names
        .iter()
        .map(|n| sha256(&std::fs::read_to_string(real.path().join(n)).unwrap()))
        .collect();
    for tf in terraforms() {
        let db = database(&pg);
        let url = pg.database_url(&db);

        // Before: the data source alone, on the empty database. Every table is missing, the
        // given class shows in `pending`.
        let before = Workdir::new(
            &tf,
            &format!(
                r#"
provider "artifortress" {{
  database_url = "{url}"
}}
data "artifortress_migrations" "before" {{
  dir     = "{dir}"
  classes = {{ "{contract}" = "C" }}
}}
output "missing"  {{ value = data.artifortress_migrations.before.missing_tables }}
output "required" {{ value = data.artifortress_migrations.before.required_tables }}
output "classes"  {{ value = {{ for p in data.artifortress_migrations.before.pending : p.version => p.class }} }}
"#,
                dir = real.path().display()
            ),
        );
        before.apply_ok();
        assert_eq!(before.output("required"), json!(SMOKE_TABLES));
        assert_eq!(before.output("missing"), json!(SMOKE_TABLES));
        let classes = before.output("classes");
        assert_eq!(classes.as_object().unwrap().len(), 15, "{classes}");
        for n in &names {
            let want = if n == contract { "C" } else { "A" };
            assert_eq!(classes[n], want, "{n}: {classes}");
        }

        // The gate fires on the real file, classified through `classes` only.
        let cfg = |classes: &str, extra: &str| real_config(&url, real.path(), classes, extra);
        let wd = Workdir::new(&tf, &cfg(&format!(r#"{{ "{contract}" = "C" }}"#), ""));
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                &format!("Contract (class C) migration not allowed: {contract}"),
                "allow_contract",
            ],
        );
        assert_eq!(
            pg.psql(&db, "select to_regclass('schema_migrations') is null")
                .unwrap(),
            "t",
            "nothing ran"
        );

        // A key that names no file (a typo: index, not indexes).
        wd.set_config(&cfg(
            r#"{ "0015_worker_claim_path_index.sql" = "A" }"#,
            "allow_contract = true",
        ));
        assert_failed(
            &wd.plan_detailed(),
            &tf,
            &[
                "Class given for a file that does not exist",
                "\"0015_worker_claim_path_index.sql\"",
            ],
        );
        // A value other than A, B or C: refused at validate.
        wd.set_config(&cfg(r#"{ "0001_init.sql" = "c" }"#, ""));
        assert_failed(
            &wd.run(&["validate", "-no-color"]),
            &tf,
            &["Invalid migration class", "classes[\"0001_init.sql\"]"],
        );

        // Allowed: the 15 files run; the smoke tables are all there afterwards.
        wd.set_config(&cfg(
            &format!(r#"{{ "{contract}" = "C" }}"#),
            "allow_contract = true",
        ));
        wd.apply_ok();
        assert_eq!(ledger(&pg, &db), names);
        assert_eq!(wd.output("missing"), json!([]));
        assert_eq!(wd.output("required"), json!(SMOKE_TABLES));
        assert_eq!(wd.output("up_to_date"), true);
        // The files are untouched: the recorded checksums are theirs.
        let recorded = sidecar(&pg, &db);
        for (row, sum) in recorded.iter().zip(&sums) {
            assert!(row.contains(sum), "{row} vs {sum}");
        }

        // A file that states its class: giving another one is refused at that key; the same
        // one is fine. (A copy of the real directory plus a 16th file of ours.)
        let dir = tempfile::Builder::new()
            .prefix("af-real-mig-")
            .tempdir()
            .unwrap();
        for n in &names {
            std::fs::copy(real.path().join(n), dir.path().join(n)).unwrap();
        }
        write_files(
            dir.path(),
            &[("0016_backfill.sql", "-- artifortress:class B\nselect 1;\n")],
        );
        let wd2 = Workdir::new(
            &tf,
            &real_config(
                &url,
                dir.path(),
                &format!(r#"{{ "{contract}" = "C", "0016_backfill.sql" = "C" }}"#),
                "allow_contract = true",
            ),
        );
        assert_failed(
            &wd2.plan_detailed(),
            &tf,
            &[
                "Class contradicts the file's own directive",
                "0016_backfill.sql states `-- artifortress:class B` itself, but class C is given",
            ],
        );
        wd2.set_config(&real_config(
            &url,
            dir.path(),
            &format!(r#"{{ "{contract}" = "C", "0016_backfill.sql" = "B" }}"#),
            "",
        ));
        let plan = wd2.plan_json();
        assert_eq!(
            change(&plan)["after"]["applied_versions"]
                .as_array()
                .unwrap()
                .len(),
            16
        );
        wd2.apply_ok();
        assert_eq!(ledger(&pg, &db).len(), 16);
    }
}
