//! Resource identity (Terraform >= 1.12): the identity every resource stores beside its state
//! (`terraform show -json` has it), and `import` blocks by `identity` and by `id`, each followed
//! by an empty plan. Terraform 1.11 never asks for identities: the same configurations apply
//! there and its state has none.

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::PgServer;
use serde_json::{Value, json};

use crate::harness::{Terraform, Workdir, terraforms};

/// Terraform 1.12 introduced resource identity (tfplugin6.9).
pub(crate) fn has_identity(tf: &Terraform) -> bool {
    tf.at_least(1, 12)
}

/// The `identity` (and its schema version) of the one resource of `type_name` in state.
pub(crate) fn state_identity(wd: &Workdir, type_name: &str) -> (Value, Value) {
    let show = wd.run(&["show", "-json"]);
    assert_eq!(show.code, 0, "{}", show.text());
    let state: Value = serde_json::from_str(&show.stdout).unwrap();
    let r = state["values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == type_name)
        .unwrap_or_else(|| panic!("no {type_name} in state: {state}"))
        .clone();
    (r["identity"].clone(), r["identity_schema_version"].clone())
}

/// An import that recorded everything the configuration says.
const EXACT_IMPORT: &str = "1 imported, 0 added, 0 changed, 0 destroyed";
/// A migration's import: the arguments are recorded by an update that applies nothing.
const MIGRATION_IMPORT: &str = "1 imported, 0 added, 1 changed, 0 destroyed";

fn ledger_rows(pg: &PgServer, db: &str) -> usize {
    pg.psql(db, "select count(*) from schema_migrations")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn state_rm(wd: &Workdir, addr: &str) {
    let rm = wd.run(&["state", "rm", addr]);
    assert_eq!(rm.code, 0, "{}", rm.text());
}

/// Applies `config` + `import_block`: the apply must import one object and then do `summary`
/// (`1 imported, 0 added, 0 changed, 0 destroyed` when the import says everything), and the
/// plan after it is empty (`apply_ok`).
fn import_with_block(wd: &Workdir, config: &str, import_block: &str, summary: &str) {
    wd.set_config(&format!("{config}\n{import_block}"));
    let run = wd.apply_ok();
    assert!(run.stdout.contains(summary), "{}", run.text());
    // The import block done, the configuration without it plans nothing either.
    wd.set_config(config);
    wd.assert_plan_empty();
}

fn migration_config(url: &str, dir: &std::path::Path) -> String {
    format!(
        r#"
provider "artifortress" {{
  database_url = "{url}"
}}

resource "artifortress_migration" "schema" {{
  dir = "{}"
}}
"#,
        dir.display()
    )
}

#[test]
fn migration_identity_is_host_port_database_and_imports_by_identity_and_by_id() {
    let pg = PgServer::start().unwrap();
    for (n, tf) in terraforms().into_iter().enumerate() {
        let db = format!("ident_mig_{n}");
        pg.create_database(&db).unwrap();
        let url = pg.database_url(&db);
        let config = migration_config(&url, &migrations_dir());
        let wd = Workdir::new(&tf, &config);
        wd.apply_ok();
        let (identity, version) = state_identity(&wd, "artifortress_migration");
        if !has_identity(&tf) {
            assert!(identity.is_null(), "{} stored an identity", tf.version);
            continue;
        }
        let expected = json!({"host": pg.host(), "port": pg.port(), "database": db});
        assert_eq!(identity, expected, "terraform {}", tf.version);
        assert_eq!(version, json!(0));

        // The import reads the database, not the arguments: `dir` (and the classes read from
        // it) are recorded by an in-place update that runs nothing (everything is applied).
        // By identity.
        state_rm(&wd, "artifortress_migration.schema");
        import_with_block(
            &wd,
            &config,
            &format!(
                r#"import {{
  to = artifortress_migration.schema
  identity = {{
    host     = "{}"
    port     = {}
    database = "{db}"
  }}
}}"#,
                pg.host(),
                pg.port()
            ),
            MIGRATION_IMPORT,
        );
        assert_eq!(state_identity(&wd, "artifortress_migration").0, expected);
        assert_eq!(ledger_rows(&pg, &db), 3, "nothing ran twice");

        // By ID.
        state_rm(&wd, "artifortress_migration.schema");
        import_with_block(
            &wd,
            &config,
            &format!(
                "import {{\n  to = artifortress_migration.schema\n  id = \"{}:{}/{db}\"\n}}",
                pg.host(),
                pg.port()
            ),
            MIGRATION_IMPORT,
        );
        assert_eq!(ledger_rows(&pg, &db), 3, "nothing ran twice");
        assert_eq!(state_identity(&wd, "artifortress_migration").0, expected);

        // An identity naming another database is refused by the read that follows.
        state_rm(&wd, "artifortress_migration.schema");
        wd.set_config(&format!(
            "{config}\nimport {{\n  to = artifortress_migration.schema\n  identity = {{\n    host = \"{}\"\n    port = {}\n    database = \"elsewhere\"\n  }}\n}}",
            pg.host(),
            pg.port()
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(
            plan.shows("Import ID does not match the database URL"),
            "{}",
            plan.text()
        );
    }
}

fn backup_config(pg: &PgServer, garage: &GarageServer, db: &str, prefix: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  database_url = "{}"
  object_storage = {{
    endpoint          = "{}"
    region            = "{}"
    bucket            = "{}"
    access_key_id     = "{}"
    secret_access_key = "{}"
  }}
}}

resource "artifortress_backup" "pre_release" {{
  prefix = "{prefix}"
  labels = {{ owner = "platform" }}
}}

output "object_key" {{ value = artifortress_backup.pre_release.object_key }}
"#,
        pg.database_url(db),
        garage.endpoint(),
        garage.region(),
        garage.bucket(),
        garage.access_key(),
        garage.secret_key()
    )
}

#[test]
fn backup_identity_is_bucket_and_object_key_and_imports_by_identity_and_by_id() {
    let pg = PgServer::start().unwrap();
    let garage = GarageServer::start().unwrap();
    pg.create_migrated_database("src").unwrap();
    pg.seed("src").unwrap();
    for tf in terraforms() {
        let prefix = format!("backups/ident{}/", tf.version.replace('.', "_"));
        let config = backup_config(&pg, &garage, "src", &prefix);
        let wd = Workdir::new(&tf, &config);
        wd.apply_ok();
        let key = wd.output("object_key").as_str().unwrap().to_string();
        let (identity, _) = state_identity(&wd, "artifortress_backup");
        if !has_identity(&tf) {
            assert!(identity.is_null(), "{} stored an identity", tf.version);
            continue;
        }
        let expected = json!({"bucket": garage.bucket(), "object_key": key});
        assert_eq!(identity, expected, "terraform {}", tf.version);

        // By identity, the bucket left to the provider's.
        state_rm(&wd, "artifortress_backup.pre_release");
        import_with_block(
            &wd,
            &config,
            &format!(
                "import {{\n  to = artifortress_backup.pre_release\n  identity = {{\n    object_key = \"{key}\"\n  }}\n}}"
            ),
            EXACT_IMPORT,
        );
        assert_eq!(state_identity(&wd, "artifortress_backup").0, expected);

        // By ID.
        state_rm(&wd, "artifortress_backup.pre_release");
        import_with_block(
            &wd,
            &config,
            &format!("import {{\n  to = artifortress_backup.pre_release\n  id = \"{key}\"\n}}"),
            EXACT_IMPORT,
        );
        assert_eq!(state_identity(&wd, "artifortress_backup").0, expected);

        // A bucket the provider does not read is refused, naming both.
        state_rm(&wd, "artifortress_backup.pre_release");
        wd.set_config(&format!(
            "{config}\nimport {{\n  to = artifortress_backup.pre_release\n  identity = {{\n    bucket = \"other-bucket\"\n    object_key = \"{key}\"\n  }}\n}}"
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(plan.shows("Backup in another bucket"), "{}", plan.text());
        assert!(plan.shows("other-bucket"), "{}", plan.text());
    }
}

fn bootstrap_config(pg: &PgServer, garage: &GarageServer, database: &str) -> String {
    format!(
        r#"
provider "artifortress" {{
  database_url = "{}"
  object_storage = {{
    endpoint          = "{}"
    region            = "{}"
    bucket            = "{}"
    access_key_id     = "{}"
    secret_access_key = "{}"
  }}
}}

resource "artifortress_bootstrap" "staging" {{
  database   = "{database}"
  owner_role = "{database}_owner"
}}
"#,
        pg.database_url("postgres"),
        garage.endpoint(),
        garage.region(),
        garage.bucket(),
        garage.access_key(),
        garage.secret_key()
    )
}

#[test]
fn bootstrap_imports_by_identity_and_by_id_reading_the_owner_from_the_server() {
    let pg = PgServer::start().unwrap();
    let garage = GarageServer::start().unwrap();
    for (n, tf) in terraforms().into_iter().enumerate() {
        let db = format!("ident_boot_{n}");
        let config = bootstrap_config(&pg, &garage, &db);
        let wd = Workdir::new(&tf, &config);
        wd.apply_ok();
        let (identity, _) = state_identity(&wd, "artifortress_bootstrap");
        let id = format!("{}:{}/{db}", pg.host(), pg.port());

        // By ID (every Terraform: the CLI form), from a state that forgot it.
        state_rm(&wd, "artifortress_bootstrap.staging");
        let import = wd.run(&["import", "-no-color", "artifortress_bootstrap.staging", &id]);
        assert_eq!(import.code, 0, "{}", import.text());
        wd.assert_plan_empty();
        let show = wd.run(&[
            "state",
            "show",
            "-no-color",
            "artifortress_bootstrap.staging",
        ]);
        let owner_line = show
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("owner_role "))
            .unwrap_or_default();
        assert!(
            owner_line.ends_with(&format!("= \"{db}_owner\"")),
            "the owner is read from the server: {}",
            show.stdout
        );

        if !has_identity(&tf) {
            assert!(identity.is_null(), "{} stored an identity", tf.version);
            continue;
        }
        let expected = json!({"host": pg.host(), "port": pg.port(), "database": db});
        assert_eq!(identity, expected, "terraform {}", tf.version);

        // By identity, with an import block.
        state_rm(&wd, "artifortress_bootstrap.staging");
        import_with_block(
            &wd,
            &config,
            &format!(
                "import {{\n  to = artifortress_bootstrap.staging\n  identity = {{\n    host = \"{}\"\n    port = {}\n    database = \"{db}\"\n  }}\n}}",
                pg.host(),
                pg.port()
            ),
            EXACT_IMPORT,
        );
        assert_eq!(state_identity(&wd, "artifortress_bootstrap").0, expected);

        // A database that does not exist cannot be imported.
        state_rm(&wd, "artifortress_bootstrap.staging");
        wd.set_config(&format!(
            "{config}\nimport {{\n  to = artifortress_bootstrap.staging\n  id = \"{}:{}/nowhere\"\n}}",
            pg.host(),
            pg.port()
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(
            plan.shows("Database \"nowhere\" does not exist"),
            "{}",
            plan.text()
        );
    }
}

fn drill_config(pg: &PgServer, garage: &GarageServer, prefix: &str) -> String {
    format!(
        r#"{}
resource "artifortress_restore_drill" "weekly" {{
  backup_id         = artifortress_backup.pre_release.id
  prefix            = "{prefix}"
  report_object_key = "{prefix}drills/latest.md"
}}

output "ran_at" {{ value = artifortress_restore_drill.weekly.ran_at }}
output "drill_id" {{ value = artifortress_restore_drill.weekly.id }}
output "backup_id" {{ value = artifortress_backup.pre_release.id }}
"#,
        backup_config(pg, garage, "src", prefix)
    )
}

#[test]
fn restore_drill_imports_by_its_report_key_and_by_an_identity_naming_that_key() {
    let pg = PgServer::start().unwrap();
    let garage = GarageServer::start().unwrap();
    pg.create_migrated_database("src").unwrap();
    pg.seed("src").unwrap();
    for tf in terraforms() {
        let prefix = format!("drills/ident{}/", tf.version.replace('.', "_"));
        let config = drill_config(&pg, &garage, &prefix);
        let wd = Workdir::new(&tf, &config);
        wd.apply_ok();
        let (ran_at, drill_id) = (wd.output("ran_at"), wd.output("drill_id"));
        let (identity, _) = state_identity(&wd, "artifortress_restore_drill");
        let report_key = format!("{prefix}drills/latest.md");

        // By the report's key (every Terraform: the CLI form): the record comes back as the
        // drill made it, and the plan is empty (no new drill).
        state_rm(&wd, "artifortress_restore_drill.weekly");
        let import = wd.run(&[
            "import",
            "-no-color",
            "artifortress_restore_drill.weekly",
            &report_key,
        ]);
        assert_eq!(import.code, 0, "{}", import.text());
        wd.assert_plan_empty();
        assert_eq!(wd.output("ran_at"), ran_at);
        assert_eq!(wd.output("drill_id"), drill_id);

        if !has_identity(&tf) {
            assert!(identity.is_null(), "{} stored an identity", tf.version);
            continue;
        }
        let expected = json!({
            "bucket": garage.bucket(),
            "report_object_key": report_key,
            "backup_id": wd.output("backup_id"),
            "drill_database": "artifortress_drill",
            "ran_at": ran_at,
        });
        assert_eq!(identity, expected, "terraform {}", tf.version);
        assert_eq!(
            state_identity(&wd, "artifortress_restore_drill").0,
            expected
        );

        // With an import block by ID.
        state_rm(&wd, "artifortress_restore_drill.weekly");
        import_with_block(
            &wd,
            &config,
            &format!(
                "import {{\n  to = artifortress_restore_drill.weekly\n  id = \"{report_key}\"\n}}"
            ),
            EXACT_IMPORT,
        );
        assert_eq!(
            state_identity(&wd, "artifortress_restore_drill").0,
            expected
        );

        // By identity: where the report is (required), the rest left out.
        state_rm(&wd, "artifortress_restore_drill.weekly");
        import_with_block(
            &wd,
            &config,
            &format!(
                "import {{\n  to = artifortress_restore_drill.weekly\n  identity = {{\n    report_object_key = \"{report_key}\"\n  }}\n}}"
            ),
            EXACT_IMPORT,
        );
        assert_eq!(
            state_identity(&wd, "artifortress_restore_drill").0,
            expected
        );
        assert_eq!(wd.output("ran_at"), ran_at);

        // By the whole identity, as `terraform show -json` printed it.
        state_rm(&wd, "artifortress_restore_drill.weekly");
        import_with_block(
            &wd,
            &config,
            &format!(
                "import {{\n  to = artifortress_restore_drill.weekly\n  identity = {{\n    bucket = \"{}\"\n    report_object_key = \"{report_key}\"\n    backup_id = \"{}\"\n    drill_database = \"artifortress_drill\"\n    ran_at = {}\n  }}\n}}",
                garage.bucket(),
                expected["backup_id"].as_str().unwrap(),
                ran_at
            ),
            EXACT_IMPORT,
        );
        assert_eq!(
            state_identity(&wd, "artifortress_restore_drill").0,
            expected
        );

        // An identity whose drill is not the one the report records is refused, naming the
        // difference; so is one without the report's key.
        state_rm(&wd, "artifortress_restore_drill.weekly");
        wd.set_config(&format!(
            "{config}\nimport {{\n  to = artifortress_restore_drill.weekly\n  identity = {{\n    report_object_key = \"{report_key}\"\n    ran_at = \"2020-01-01T00:00:00Z\"\n  }}\n}}"
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(
            plan.shows("The drill report is of another drill"),
            "{}",
            plan.text()
        );
        assert!(plan.shows("2020-01-01T00:00:00Z"), "{}", plan.text());
        wd.set_config(&format!(
            "{config}\nimport {{\n  to = artifortress_restore_drill.weekly\n  identity = {{\n    backup_id = \"{}\"\n    ran_at = {}\n  }}\n}}",
            expected["backup_id"].as_str().unwrap(),
            ran_at
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(plan.shows("report_object_key"), "{}", plan.text());
    }
}

/// `terraform query` (Terraform >= 1.14).
fn has_query(tf: &Terraform) -> bool {
    tf.at_least(1, 14)
}

#[test]
fn query_lists_unmanaged_backups_and_generated_config_imports_them_with_an_empty_plan() {
    let pg = PgServer::start().unwrap();
    let garage = GarageServer::start().unwrap();
    pg.create_migrated_database("src").unwrap();
    pg.seed("src").unwrap();
    let queriers: Vec<Terraform> = terraforms().into_iter().filter(has_query).collect();
    assert!(
        !queriers.is_empty(),
        "no Terraform >= 1.14 in ARTIFORTRESS_TEST_TERRAFORMS: `terraform query` untested"
    );
    for tf in queriers {
        let prefix = format!("query/tf{}/", tf.version.replace('.', "_"));
        let provider_only = backup_config(&pg, &garage, "src", &prefix)
            .split("resource \"artifortress_backup\"")
            .next()
            .unwrap()
            .to_string();
        let two = format!(
            "{provider_only}\nresource \"artifortress_backup\" \"a\" {{\n  prefix = \"{prefix}\"\n}}\nresource \"artifortress_backup\" \"b\" {{\n  prefix = \"{prefix}\"\n  labels = {{ owner = \"dba\" }}\n}}\noutput \"keys\" {{ value = [artifortress_backup.a.object_key, artifortress_backup.b.object_key] }}\n"
        );
        let wd = Workdir::new(&tf, &two);
        wd.apply_ok();
        let keys: Vec<String> = wd
            .output("keys")
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        // Forgotten by Terraform: two old backups nobody manages.
        state_rm(&wd, "artifortress_backup.a");
        state_rm(&wd, "artifortress_backup.b");
        wd.set_config(&provider_only);
        // The documented example (docs/list-resources/backup.md), on this test's prefix.
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/list-resources/artifortress_backup/backups.tfquery.hcl"),
        )
        .unwrap();
        assert!(example.contains("\"backups/production/\""), "{example}");
        std::fs::write(
            wd.file("backups.tfquery.hcl"),
            example.replace("\"backups/production/\"", &format!("\"{prefix}\"")),
        )
        .unwrap();
        let query = wd.run(&["query", "-no-color"]);
        assert_eq!(query.code, 0, "{}", query.text());
        for k in &keys {
            assert!(
                query.stdout.contains(k.as_str()),
                "{k} not listed:\n{}",
                query.text()
            );
        }

        let generate = wd.run(&["query", "-no-color", "-generate-config-out=generated.tf"]);
        assert_eq!(generate.code, 0, "{}", generate.text());
        let generated = std::fs::read_to_string(wd.file("generated.tf")).unwrap();
        assert_eq!(generated.matches("import {").count(), 2, "{generated}");
        assert!(generated.contains("owner = \"dba\""), "{generated}");
        // The generated configuration imports both by identity and changes nothing.
        let run = wd.apply_ok();
        assert!(
            run.stdout
                .contains("2 imported, 0 added, 0 changed, 0 destroyed"),
            "{}",
            run.text()
        );
        let (identity, _) = state_identity(&wd, "artifortress_backup");
        assert!(
            keys.iter().any(|k| identity["object_key"] == *k),
            "{identity}"
        );
    }
}
