//! Resources and data sources given credentials of their own (another database than the
//! provider's, its password only in a write-only argument), with the real Terraform CLIs on a
//! PostgreSQL and a Garage of their own. Refresh never sees a write-only value: the second plan
//! must still be empty, and an out-of-band change must still be a diff (found by the plan,
//! which has the write-only URL). No data source argument may carry a password, and a backup is
//! found by its id under whatever prefix it was taken.

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::PgServer;
use serde_json::json;

use crate::harness::{Workdir, terraforms};

const APP_ROLE: &str = "app_owner";
const APP_PASSWORD: &str = "app-pw-7f3e91c2";

struct Bed {
    pg: PgServer,
    garage: GarageServer,
}

impl Bed {
    fn start() -> Bed {
        Bed {
            pg: PgServer::start().unwrap(),
            garage: GarageServer::start().unwrap(),
        }
    }

    /// A database owned by a role of its own, with a password the provider never gets.
    fn app_database(&self, db: &str) -> String {
        let roles = self
            .pg
            .psql(
                "postgres",
                &format!("select count(*) from pg_roles where rolname = '{APP_ROLE}'"),
            )
            .unwrap();
        if roles == "0" {
            self.pg
                .psql(
                    "postgres",
                    &format!("create role {APP_ROLE} login password '{APP_PASSWORD}'"),
                )
                .unwrap();
        }
        self.pg
            .psql(
                "postgres",
                &format!("create database {db} owner {APP_ROLE}"),
            )
            .unwrap();
        format!(
            "postgres://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{}/{db}",
            self.pg.port()
        )
    }

    /// The provider: `database_url` names another database (or none), storage is complete.
    fn provider(&self, database_url: Option<&str>) -> String {
        format!(
            r#"
provider "artifortress" {{
  {url}
  object_storage = {{
    endpoint          = "{}"
    region            = "{}"
    bucket            = "{}"
    access_key_id     = "{}"
    secret_access_key = "{}"
  }}
}}

variable "own_url" {{
  type      = string
  sensitive = true
  ephemeral = true
}}
"#,
            self.garage.endpoint(),
            self.garage.region(),
            self.garage.bucket(),
            self.garage.access_key(),
            self.garage.secret_key(),
            url = database_url
                .map(|u| format!("database_url = \"{u}\""))
                .unwrap_or_default(),
        )
    }

    /// A working directory whose only password for the resource's database is `TF_VAR_own_url`:
    /// no `PGPASSWORD`, no `~/.pgpass`, no `ARTIFORTRESS_DATABASE_URL`.
    fn workdir(&self, tf: &crate::harness::Terraform, config: &str, own_url: &str) -> Workdir {
        Workdir::new(tf, config)
            .with_env("TF_VAR_own_url", own_url)
            .with_env("PGPASSFILE", "/nonexistent/pgpass")
            .without_env("PGPASSWORD")
            .without_env("ARTIFORTRESS_DATABASE_URL")
    }
}

#[test]
fn migration_with_its_own_credentials_plans_empty_and_still_finds_drift() {
    let bed = Bed::start();
    let dir = tempfile::Builder::new()
        .prefix("af-own-")
        .tempdir()
        .unwrap();
    for v in ["0001_core.sql", "0002_auth_and_audit.sql"] {
        std::fs::copy(migrations_dir().join(v), dir.path().join(v)).unwrap();
    }
    std::fs::write(
        dir.path().join("0003_extra.sql"),
        "create table if not exists own_extra (id int);\n",
    )
    .unwrap();
    for (n, tf) in terraforms().into_iter().enumerate() {
        let db = format!("own_mig_{n}");
        let own_url = bed.app_database(&db);
        let config = format!(
            r#"{}
resource "artifortress_migration" "schema" {{
  dir          = "{}"
  database_url = var.own_url
}}
"#,
            bed.provider(Some(&bed.pg.database_url("postgres"))),
            dir.path().display()
        );
        let wd = bed.workdir(&tf, &config, &own_url);
        // apply_ok asserts the empty second plan.
        wd.apply_ok();
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 0, "terraform {}:\n{}", tf.version, plan.text());
        assert!(
            plan.shows("Migrations not refreshed: no credentials for this database"),
            "terraform {}: the warning says drift was not checked at refresh:\n{}",
            tf.version,
            plan.text()
        );
        assert!(plan.shows("PGPASSWORD"), "{}", plan.text());
        assert!(
            !plan.text().contains(APP_PASSWORD),
            "the password is never printed"
        );

        // Out of band: a ledger row deleted. The plan (which has the write-only URL) finds it.
        bed.pg
            .psql(
                &db,
                "delete from schema_migrations where version = '0003_extra.sql'",
            )
            .unwrap();
        let plan = wd.plan_detailed();
        assert_eq!(
            plan.code,
            2,
            "terraform {}: drift not planned:\n{}",
            tf.version,
            plan.text()
        );
        assert!(
            plan.shows("recorded as applied but no longer in the ledger: 0003_extra.sql"),
            "terraform {}:\n{}",
            tf.version,
            plan.text()
        );
        wd.apply_ok();
        assert_eq!(
            bed.pg
                .psql(
                    &db,
                    "select count(*) from schema_migrations where version = '0003_extra.sql'"
                )
                .unwrap(),
            "1",
            "terraform {}: the apply ran the file again",
            tf.version
        );
        let state = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        assert!(!state.contains(APP_PASSWORD), "no password in state");
    }
}

#[test]
fn bootstrap_with_its_own_credentials_plans_empty_and_still_finds_drift() {
    let bed = Bed::start();
    // The server to bootstrap is another server than the provider's database.
    let other = PgServer::start().unwrap();
    for (n, tf) in terraforms().into_iter().enumerate() {
        let (db, role) = (format!("own_boot_{n}"), format!("own_boot_{n}"));
        let config = format!(
            r#"{}
variable "owner_password" {{
  type      = string
  sensitive = true
  ephemeral = true
}}

resource "artifortress_bootstrap" "staging" {{
  admin_database_url        = var.own_url
  database                  = "{db}"
  owner_role                = "{role}"
  owner_password_wo         = var.owner_password
  owner_password_wo_version = 1
}}
"#,
            bed.provider(Some(&bed.pg.database_url("postgres")))
        );
        let owner_password = format!("owner-{n}-pw");
        let wd = bed
            .workdir(&tf, &config, &other.database_url("postgres"))
            .with_env("TF_VAR_owner_password", &owner_password);
        wd.apply_ok();
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 0, "terraform {}:\n{}", tf.version, plan.text());
        assert!(
            plan.shows("Bootstrap not refreshed: no database URL for its server"),
            "terraform {}:\n{}",
            tf.version,
            plan.text()
        );

        // Out of band: database and role dropped on the bootstrapped server.
        other
            .psql("postgres", &format!("drop database {db}"))
            .unwrap();
        other
            .psql("postgres", &format!("drop role {role}"))
            .unwrap();
        let plan = wd.plan_detailed();
        assert_eq!(
            plan.code,
            2,
            "terraform {}: drift not planned:\n{}",
            tf.version,
            plan.text()
        );
        assert!(
            plan.shows(&format!("role {role}, database {db} no longer exist")),
            "terraform {}:\n{}",
            tf.version,
            plan.text()
        );
        wd.apply_ok();
        // Created again, owned by the role, which logs in with its password (set as on create).
        let login = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &other.port().to_string()])
            .args(["-U", &role, "-d", &db, "-w", "-X", "-q", "-tA", "-c"])
            .arg("select pg_get_userbyid(datdba) from pg_database where datname = current_database()")
            .env("PGPASSWORD", &owner_password)
            .env_remove("PGSERVICE")
            .output()
            .unwrap();
        assert!(
            login.status.success(),
            "terraform {}: {}",
            tf.version,
            String::from_utf8_lossy(&login.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), role);
    }
}

#[test]
fn a_drill_finds_a_backup_by_id_under_another_prefix_with_its_own_credentials() {
    let bed = Bed::start();
    let own_url = bed.pg.create_migrated_database("own_src").unwrap();
    bed.pg.seed("own_src").unwrap();
    for (n, tf) in terraforms().into_iter().enumerate() {
        let prefix = format!("nightly/eu-{n}/");
        let drill_db = format!("own_drill_{n}");
        let config = |week: &str| {
            format!(
                r#"{}
resource "artifortress_backup" "nightly" {{
  database_url = var.own_url
  prefix       = "{prefix}"
}}

resource "artifortress_restore_drill" "weekly" {{
  backup_id          = artifortress_backup.nightly.id
  admin_database_url = var.own_url
  drill_database     = "{drill_db}"
  triggers           = {{ week = "{week}" }}
}}

output "passed" {{ value = artifortress_restore_drill.weekly.passed }}
output "id"     {{ value = artifortress_backup.nightly.id }}
"#,
                bed.provider(None)
            )
        };
        let wd = bed.workdir(&tf, &config("1"), &own_url);
        wd.apply_ok();
        assert_eq!(wd.output("passed"), json!(true), "terraform {}", tf.version);

        // The same id under a second prefix: ambiguous, said with both keys.
        let id = wd.output("id").as_str().unwrap().to_string();
        let manifest = format!("{prefix}{id}.manifest.json");
        let copy = format!("copies/{id}.manifest.json");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let s3 = bed.garage.s3_client();
        rt.block_on(async {
            s3.copy_object()
                .bucket(bed.garage.bucket())
                .copy_source(format!("{}/{manifest}", bed.garage.bucket()))
                .key(&copy)
                .send()
                .await
                .unwrap();
        });
        wd.set_config(&config("2"));
        let run = wd.apply();
        assert_eq!(run.code, 1, "terraform {}:\n{}", tf.version, run.text());
        for needle in [
            "is ambiguous",
            manifest.as_str(),
            copy.as_str(),
            "object_key",
        ] {
            assert!(
                run.shows(needle),
                "terraform {}: {needle:?} not in:\n{}",
                tf.version,
                run.text()
            );
        }
    }
}

#[test]
fn the_migrations_data_source_refuses_a_password_and_forgets_a_stored_one() {
    let bed = Bed::start();
    for (n, tf) in terraforms().into_iter().enumerate() {
        let db = format!("own_ds_{n}");
        let own_url = bed.app_database(&db);
        let bare = own_url.replace(&format!(":{APP_PASSWORD}@"), "@");
        assert!(!bare.contains(APP_PASSWORD));
        let config = |url: &str| {
            format!(
                r#"{}
data "artifortress_migrations" "now" {{
  database_url = "{url}"
}}

output "id" {{ value = data.artifortress_migrations.now.id }}
"#,
                bed.provider(Some(&bed.pg.database_url("postgres")))
            )
        };

        // A URL with a password is refused at validate, saying what to do instead.
        let wd = bed.workdir(&tf, &config(&own_url), &own_url);
        let run = wd.run(&["validate", "-no-color"]);
        assert_eq!(run.code, 1, "terraform {}:\n{}", tf.version, run.text());
        for needle in [
            "Password in a data source argument",
            "aliased artifortress provider",
            "PGPASSWORD or ~/.pgpass",
        ] {
            assert!(run.shows(needle), "{needle:?} not in:\n{}", run.text());
        }
        let run = wd.plan_detailed();
        assert_eq!(run.code, 1, "terraform {}:\n{}", tf.version, run.text());

        // Without the password, and PGPASSWORD given: read, nothing secret in state.
        wd.set_config(&config(&bare));
        let wd = wd.with_env("PGPASSWORD", APP_PASSWORD);
        wd.apply_ok();
        let port = bed.pg.port();
        assert_eq!(wd.output("id"), json!(format!("127.0.0.1:{port}/{db}")));

        // A state written before (0.1.0 stored the argument, password included): the next
        // apply replaces the data source's state with one read from the new configuration.
        let path = wd.file("terraform.tfstate");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut state: serde_json::Value = serde_json::from_str(&text).unwrap();
        let instance = state["resources"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|r| r["type"] == "artifortress_migrations")
            .unwrap();
        instance["instances"][0]["attributes"]["database_url"] = json!(own_url);
        std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 0, "terraform {}:\n{}", tf.version, plan.text());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains(APP_PASSWORD),
            "a plan does not write the state"
        );
        wd.apply_ok();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            !after.contains(APP_PASSWORD),
            "terraform {}: the stored password survived an apply:\n{after}",
            tf.version
        );
    }
}
