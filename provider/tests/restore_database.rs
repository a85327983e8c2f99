//! `clients::restore_database` (a backup restored into the LIVE database, the runbook's way
//! back after a contract migration: the service's docs/25-upgrade-rollback-runbook.md
//! "Rollback Procedure" step 3, lines 70-74) against a real PostgreSQL and a real S3 server
//! (Garage), both throw-away.

use std::collections::BTreeMap;
use std::time::Duration;

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::migrations_dir;
use acceptance_tests::support::postgres::{PgServer, pg_bin_dir};
use artifortress_provider::clients::backup::{
    self, BackupSpec, Compression, Format, PARITY_TABLES,
};
use artifortress_provider::clients::object_store::{self, ObjectStoreConfig};
use artifortress_provider::clients::restore_database::{
    self, Progress, RestoreError, RestoreSpec, Step,
};
use tokio_util::sync::CancellationToken;

fn s3(g: &GarageServer) -> aws_sdk_s3::Client {
    object_store::client(&ObjectStoreConfig {
        endpoint: Some(g.endpoint()),
        region: g.region().to_string(),
        access_key_id: Some(g.access_key().to_string()),
        secret_access_key: Some(g.secret_key().to_string()),
        force_path_style: true,
    })
}

fn backup_spec(
    g: &GarageServer,
    prefix: &str,
    format: Format,
    compression: Compression,
) -> BackupSpec {
    BackupSpec {
        bucket: g.bucket().to_string(),
        prefix: prefix.to_string(),
        format,
        compression,
        labels: BTreeMap::new(),
        verify: true,
        pg_dump: pg_bin_dir().unwrap().join("pg_dump"),
        connect_timeout: Duration::from_secs(10),
    }
}

/// The test bed's migration file names.
fn migration_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(migrations_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    v.sort();
    v
}

fn counts(pg: &PgServer, db: &str) -> BTreeMap<String, i64> {
    PARITY_TABLES
        .iter()
        .filter(|t| {
            pg.psql(db, &format!("select to_regclass('{t}') is not null"))
                .unwrap()
                == "t"
        })
        .map(|t| {
            let n = pg
                .psql(db, &format!("select count(*) from {t}"))
                .unwrap()
                .parse()
                .unwrap();
            (t.to_string(), n)
        })
        .collect()
}

fn restore_spec(pg: &PgServer, g: &GarageServer, manifest_key: &str, db: &str) -> RestoreSpec {
    RestoreSpec {
        bucket: g.bucket().to_string(),
        manifest_key: manifest_key.to_string(),
        database_url: pg.database_url(db),
        admin_url: None,
        confirm: db.to_string(),
        migrations: migration_files(),
        minimum_head: None,
        safety_backup: Some(backup_spec(g, "safety/", Format::Custom, Compression::Zstd)),
        bin_dir: Some(pg_bin_dir().unwrap()),
        connect_timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_back_a_dropped_table_with_the_manifests_counts() {
    let pg = PgServer::start().unwrap();
    let g = GarageServer::start().unwrap();
    let url = pg.create_migrated_database("live").unwrap();
    pg.seed("live").unwrap();
    let s3 = s3(&g);
    let m = backup::run(
        &s3,
        &url,
        &backup_spec(&g, "backups/", Format::Custom, Compression::Zstd),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let before = counts(&pg, "live");
    assert!(before["packages"] > 0, "{before:?}");
    assert_eq!(m.table_counts, before);

    // After the backup: a table dropped.
    pg.psql("live", "drop table package_versions cascade")
        .unwrap();
    let damaged = counts(&pg, "live");
    assert!(!damaged.contains_key("package_versions"));

    // A session left open on the live database (an API's pool): terminated by the restore.
    let mut held = std::process::Command::new("psql")
        .arg(pg.database_url("live"))
        .args(["-X", "-q", "-c", "select pg_sleep(60)"])
        .spawn()
        .unwrap();
    let seen = acceptance_tests::support::wait_for(Duration::from_secs(10), || {
        (pg.psql(
            "postgres",
            "select count(*) from pg_stat_activity where datname = 'live'",
        )
        .unwrap()
            != "0")
            .then_some(())
    });
    assert!(seen.is_some(), "the held session never showed");

    let mut steps: Vec<Progress> = Vec::new();
    let report = restore_database::run(
        &s3,
        &restore_spec(&pg, &g, &m.manifest_key, "live"),
        &mut |p| steps.push(p),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let _ = held.kill();
    let _ = held.wait();

    // The table is back, every count as the manifest recorded it, and as the report says.
    assert_eq!(counts(&pg, "live"), m.table_counts);
    assert_eq!(report.actual_counts, m.table_counts);
    assert_eq!(report.expected_counts, m.table_counts);
    assert_eq!(report.migration_head, m.migration_head);
    assert_eq!(report.backup_id, m.id);
    assert_eq!(report.database, format!("127.0.0.1:{}/live", pg.port()));
    assert!(report.sessions_terminated >= 1, "{report:?}");
    assert_eq!(
        steps.iter().map(|p| p.step).collect::<Vec<_>>(),
        [
            Step::Checked,
            Step::Downloaded,
            Step::SafetyBackup,
            Step::Terminated,
            Step::Dropped,
            Step::Created,
            Step::Restored,
            Step::Verified
        ]
    );

    // The safety backup holds the database as it was just before: the damaged one.
    let safety_id = report.safety_backup_id.clone().unwrap();
    assert!(steps[2].message.contains(&safety_id), "{:?}", steps[2]);
    let safety = backup::read_manifest(
        &s3,
        g.bucket(),
        report.safety_backup_manifest_key.as_deref().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(safety.id, safety_id);
    assert_eq!(safety.table_counts, damaged);
    // The restored database is still owned by the role that owned it.
    assert_eq!(
        pg.psql(
            "postgres",
            "select pg_get_userbyid(datdba) from pg_database where datname = 'live'"
        )
        .unwrap(),
        pg.user()
    );
}

/// What a refused restore's error must be.
type Expected = fn(&RestoreError) -> bool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_restores_touch_nothing() {
    let pg = PgServer::start().unwrap();
    let g = GarageServer::start().unwrap();
    let url = pg.create_migrated_database("live").unwrap();
    pg.seed("live").unwrap();
    let s3 = s3(&g);
    let m = backup::run(
        &s3,
        &url,
        &backup_spec(&g, "backups/", Format::Plain, Compression::None),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        m.migration_head.as_deref(),
        Some("0003_outbox_and_jobs.sql")
    );
    pg.psql("live", "drop table package_versions cascade")
        .unwrap();
    let damaged = counts(&pg, "live");

    let files = migration_files();
    let cases: Vec<(&str, RestoreSpec, Expected)> = vec![
        (
            "wrong confirm",
            RestoreSpec {
                confirm: "artifortress".into(),
                ..restore_spec(&pg, &g, &m.manifest_key, "live")
            },
            |e| matches!(e, RestoreError::NotConfirmed { database, .. } if database == "live"),
        ),
        (
            "head newer than the files",
            RestoreSpec {
                migrations: files[..2].to_vec(),
                ..restore_spec(&pg, &g, &m.manifest_key, "live")
            },
            |e| matches!(e, RestoreError::HeadNewer { head, .. } if head == "0003_outbox_and_jobs.sql"),
        ),
        (
            "head older than the minimum",
            RestoreSpec {
                migrations: [files.clone(), vec!["0004_contract.sql".to_string()]].concat(),
                minimum_head: Some("0004_contract.sql".into()),
                ..restore_spec(&pg, &g, &m.manifest_key, "live")
            },
            |e| matches!(e, RestoreError::HeadOlder { minimum, .. } if minimum == "0004_contract.sql"),
        ),
        (
            "no such backup",
            restore_spec(&pg, &g, "backups/nope.manifest.json", "live"),
            |e| matches!(e, RestoreError::NoManifest { .. }),
        ),
    ];
    for (name, spec, expected) in cases {
        let mut steps = Vec::new();
        let err = restore_database::run(
            &s3,
            &spec,
            &mut |p| steps.push(p),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(expected(&err), "{name}: {err}");
        assert!(steps.is_empty(), "{name}: {steps:?}");
        assert_eq!(
            counts(&pg, "live"),
            damaged,
            "{name}: the live database changed"
        );
    }
    let wrong = restore_database::run(
        &s3,
        &RestoreSpec {
            confirm: "artifortress".into(),
            ..restore_spec(&pg, &g, &m.manifest_key, "live")
        },
        &mut |_| {},
        &CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(wrong.contains("confirm = \"live\""), "{wrong}");
    // No safety backup was taken by any refused restore.
    assert!(
        backup::list(&s3, g.bucket(), "safety/")
            .await
            .unwrap()
            .is_empty()
    );

    // The same backup, confirmed, without a safety backup: restored (plain SQL via psql).
    let mut steps = Vec::new();
    let report = restore_database::run(
        &s3,
        &RestoreSpec {
            safety_backup: None,
            ..restore_spec(&pg, &g, &m.manifest_key, "live")
        },
        &mut |p| steps.push(p),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.safety_backup_id, None);
    assert_eq!(counts(&pg, "live"), m.table_counts);
    assert!(
        steps
            .iter()
            .any(|p| p.step == Step::SafetyBackup && p.message.contains("no safety backup"))
    );
    assert!(
        backup::list(&s3, g.bucket(), "safety/")
            .await
            .unwrap()
            .is_empty()
    );
}
