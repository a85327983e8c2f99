//! The migration domain layer (`clients::migrations`) against a real, throw-away PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use acceptance_tests::support::postgres::{PgServer, run_db_migrate};
use artifortress_provider::clients::migrations::{
    self, ApplyReport, LOCK_KEY, MigrationError, Migrator, PlanInputs, PlanProblem, load_dir,
};
use artifortress_provider::clients::pg;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio_util::sync::CancellationToken;

const CONNECT: Duration = Duration::from_secs(10);
const LOCK: Duration = Duration::from_secs(60);

/// A server with one fresh database; returns (server, url).
fn database(name: &str) -> (PgServer, String) {
    let pg = PgServer::start().expect("start PostgreSQL");
    pg.create_database(name).expect("create database");
    let url = pg.database_url(name);
    (pg, url)
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

async fn apply(url: &str, dir: &Path, inputs: &PlanInputs) -> Result<ApplyReport, MigrationError> {
    let files = load_dir(dir).unwrap();
    let mut m = Migrator::connect(url, CONNECT).await.unwrap();
    let r = m
        .apply(&files, inputs, LOCK, "test", &CancellationToken::new())
        .await;
    m.close().await;
    r
}

async fn plan(
    url: &str,
    dir: &Path,
    inputs: &PlanInputs,
) -> Result<migrations::MigrationPlan, Vec<PlanProblem>> {
    let files = load_dir(dir).unwrap();
    let mut m = Migrator::connect(url, CONNECT).await.unwrap();
    let view = m.view().await.unwrap();
    m.close().await;
    migrations::plan(
        &files,
        &view,
        inputs.target.as_deref(),
        inputs.baseline.as_deref(),
        &inputs.accept_checksums,
    )
}

fn versions(report: &ApplyReport) -> Vec<&str> {
    report.applied.iter().map(|(v, _)| v.as_str()).collect()
}

fn ledger(pg: &PgServer, db: &str) -> String {
    pg.psql(
        db,
        "select string_agg(version, ',' order by version) from schema_migrations",
    )
    .unwrap()
}

/// `version:source:dirty` of every sidecar row.
fn sidecar(pg: &PgServer, db: &str) -> String {
    pg.psql(
        db,
        "select string_agg(version || ':' || source || ':' || dirty, ',' order by version) \
         from artifortress_migrations_log",
    )
    .unwrap()
}

#[tokio::test]
async fn fresh_database_gets_everything_once() {
    let (pg, url) = database("fresh");
    let dir = dir_with(&[
        (
            "0001_core.sql",
            "create table a (id int primary key);\ninsert into a values (1), (2);\n",
        ),
        (
            "0002_more.sql",
            "-- artifortress:class B\ncreate table b (x int);\ninsert into b select id from a;\n",
        ),
        (
            "0003_func.sql",
            "create function answer() returns int language plpgsql as $$ begin return 42; end $$;\n\
             create view v as select answer();\n",
        ),
    ]);
    let files = load_dir(dir.path()).unwrap();

    let mut m = Migrator::connect(&url, CONNECT).await.unwrap();
    assert_eq!(
        pg.psql(
            "fresh",
            "select count(*) from pg_stat_activity where application_name = 'terraform-provider-artifortress'"
        )
        .unwrap(),
        "1"
    );
    let view = m.view().await.unwrap();
    assert!(!view.ledger_exists && !view.sidecar_exists && !view.has_user_tables);
    let report = m
        .apply(
            &files,
            &PlanInputs::default(),
            LOCK,
            "test",
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        versions(&report),
        ["0001_core.sql", "0002_more.sql", "0003_func.sql"]
    );
    assert_eq!(report.head.as_deref(), Some("0003_func.sql"));
    assert!(report.adopted.is_empty() && report.accepted.is_empty() && report.baselined.is_empty());

    assert_eq!(
        ledger(&pg, "fresh"),
        "0001_core.sql,0002_more.sql,0003_func.sql"
    );
    assert_eq!(
        sidecar(&pg, "fresh"),
        "0001_core.sql:terraform:false,0002_more.sql:terraform:false,0003_func.sql:terraform:false"
    );
    for f in &files {
        let row = pg
            .psql(
                "fresh",
                &format!(
                    "select checksum || ' ' || (execution_ms is not null) || ' ' || applied_by \
                     from artifortress_migrations_log where version = '{}'",
                    f.version
                ),
            )
            .unwrap();
        assert_eq!(row, format!("{} true test", f.checksum));
    }
    assert_eq!(pg.psql("fresh", "select count(*) from b").unwrap(), "2");
    assert_eq!(pg.psql("fresh", "select * from v").unwrap(), "42");

    // The view now matches, and the lock was released.
    let view = m.view().await.unwrap();
    assert!(view.ledger_exists && view.sidecar_exists && view.has_user_tables);
    assert_eq!(view.head(), Some("0003_func.sql"));
    assert!(
        view.applied
            .iter()
            .all(|a| a.source.as_deref() == Some("terraform") && !a.dirty)
    );
    assert_eq!(
        pg.psql(
            "fresh",
            "select count(*) from pg_locks where locktype = 'advisory'"
        )
        .unwrap(),
        "0"
    );

    // A second apply runs nothing.
    let again = m
        .apply(
            &files,
            &PlanInputs::default(),
            LOCK,
            "test",
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.head.as_deref(), Some("0003_func.sql"));
    assert!(
        plan(&url, dir.path(), &PlanInputs::default())
            .await
            .unwrap()
            .is_empty()
    );
    m.close().await;
}

#[tokio::test]
async fn database_migrated_by_the_service_script_is_adopted_not_rerun() {
    let (pg, url) = database("scripted");
    let dir = tempfile::tempdir().unwrap();
    for f in load_dir(&acceptance_tests::support::migrations_dir()).unwrap() {
        std::fs::copy(&f.path, dir.path().join(&f.version)).unwrap();
    }
    // Fails if it ever runs a second time.
    std::fs::write(
        dir.path().join("0004_once_only.sql"),
        "create table once_only (id int);\ninsert into once_only values (1);\n",
    )
    .unwrap();
    let out = run_db_migrate(&url, dir.path()).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = load_dir(dir.path()).unwrap();
    let all: Vec<String> = files.iter().map(|f| f.version.clone()).collect();
    assert_eq!(all.len(), 4);

    let p = plan(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap();
    assert!(p.pending.is_empty(), "{p:?}");
    assert_eq!(
        p.adopt,
        files
            .iter()
            .map(|f| (f.version.clone(), f.checksum.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(p.head_after.as_deref(), Some("0004_once_only.sql"));

    let report = apply(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.adopted, all);
    assert_eq!(
        pg.psql("scripted", "select count(*) from once_only")
            .unwrap(),
        "1"
    );
    assert_eq!(
        sidecar(&pg, "scripted"),
        all.iter()
            .map(|v| format!("{v}:adopted:false"))
            .collect::<Vec<_>>()
            .join(",")
    );
    // The ledger keeps the service's shape.
    assert_eq!(
        pg.psql(
            "scripted",
            "select string_agg(column_name || ' ' || data_type, ', ' order by ordinal_position) \
             from information_schema.columns where table_name = 'schema_migrations'"
        )
        .unwrap(),
        "version text, applied_at timestamp with time zone"
    );
    // Now up to date: nothing at all to do.
    assert!(
        plan(&url, dir.path(), &PlanInputs::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn edited_applied_file_is_refused_unless_accepted() {
    let (pg, url) = database("edited");
    let v1 = "create table a (id int);\ninsert into a values (1);\n";
    let dir = dir_with(&[
        ("0001_a.sql", v1),
        ("0002_b.sql", "create table b (id int);\n"),
    ]);
    apply(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap();
    let recorded = migrations::checksum(v1);

    // CRLF-only change: not an edit.
    std::fs::write(dir.path().join("0001_a.sql"), v1.replace('\n', "\r\n")).unwrap();
    assert!(
        plan(&url, dir.path(), &PlanInputs::default())
            .await
            .unwrap()
            .is_empty()
    );

    // A real edit.
    let v2 = format!("-- harmless comment\n{v1}");
    std::fs::write(dir.path().join("0001_a.sql"), &v2).unwrap();
    let current = migrations::checksum(&v2);
    let expected = vec![PlanProblem::ChecksumMismatch {
        version: "0001_a.sql".into(),
        recorded: recorded.clone(),
        current: current.clone(),
    }];
    assert_eq!(
        plan(&url, dir.path(), &PlanInputs::default())
            .await
            .unwrap_err(),
        expected
    );
    match apply(&url, dir.path(), &PlanInputs::default()).await {
        Err(MigrationError::Plan { problems, .. }) => assert_eq!(problems, expected),
        other => panic!("{other:?}"),
    }

    let accept = PlanInputs {
        accept_checksums: BTreeMap::from([("0001_a.sql".to_string(), current.clone())]),
        ..PlanInputs::default()
    };
    let report = apply(&url, dir.path(), &accept).await.unwrap();
    assert_eq!(report.accepted, ["0001_a.sql"]);
    assert!(report.applied.is_empty());
    assert_eq!(pg.psql("edited", "select count(*) from a").unwrap(), "1");
    assert_eq!(
        pg.psql(
            "edited",
            "select source || ' ' || checksum from artifortress_migrations_log where version = '0001_a.sql'"
        )
        .unwrap(),
        format!("accepted {current}")
    );
    // Recorded: no override needed any more.
    assert!(
        plan(&url, dir.path(), &PlanInputs::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn failing_transactional_file_leaves_nothing() {
    let (pg, url) = database("txfail");
    let bad =
        "create table good (x int);\ninsert into good values (1);\nselect * from no_such_table;\n";
    let dir = dir_with(&[
        ("0001_ok.sql", "create table ok (x int);\n"),
        ("0002_bad.sql", bad),
        ("0003_later.sql", "create table later (x int);\n"),
    ]);
    let err = apply(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap_err();
    match &err {
        MigrationError::MigrationFailed(f) => {
            assert_eq!(f.version, "0002_bad.sql");
            assert_eq!(f.line, Some(3));
            assert_eq!(f.sqlstate.as_deref(), Some("42P01"));
            assert_eq!(f.message, "relation \"no_such_table\" does not exist");
            assert!(f.transactional);
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    for needle in [
        "0002_bad.sql",
        "line 3",
        "no_such_table",
        "42P01",
        "rolled back",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!text.contains("testpass"), "{text}");

    assert_eq!(
        pg.psql("txfail", "select to_regclass('good') is null")
            .unwrap(),
        "t"
    );
    assert_eq!(ledger(&pg, "txfail"), "0001_ok.sql");
    assert_eq!(sidecar(&pg, "txfail"), "0001_ok.sql:terraform:false");
    assert_eq!(
        pg.psql("txfail", "select to_regclass('later') is null")
            .unwrap(),
        "t"
    );
    // The lock was released despite the failure.
    assert_eq!(
        pg.psql(
            "txfail",
            "select count(*) from pg_locks where locktype = 'advisory'"
        )
        .unwrap(),
        "0"
    );

    // Fixed file: the rest applies.
    std::fs::write(
        dir.path().join("0002_bad.sql"),
        "create table good (x int);\n",
    )
    .unwrap();
    let report = apply(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap();
    assert_eq!(versions(&report), ["0002_bad.sql", "0003_later.sql"]);
}

#[tokio::test]
async fn no_transaction_files_concurrent_index_and_dirty_marker() {
    let (pg, url) = database("notx");
    let dir = dir_with(&[
        (
            "0001_big.sql",
            "create table big (id int, v text);\n\
             insert into big select g, md5(g::text) from generate_series(1, 20000) g;\n\
             insert into big values (1, 'duplicate id');\n\
             create table other (x int);\n",
        ),
        (
            "0002_index.sql",
            "-- Build without blocking writes.\n-- artifortress:no-transaction\n\
             create index concurrently if not exists big_v on big (v);\n\
             create index concurrently if not exists big_id on big (id);\n",
        ),
    ]);
    let first = PlanInputs {
        target: Some("0001_big.sql".into()),
        ..PlanInputs::default()
    };
    apply(&url, dir.path(), &first).await.unwrap();

    // Normal traffic elsewhere: an open transaction that wrote to another table.
    let mut traffic = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("begin; insert into other values (1);")
        .execute(&mut traffic)
        .await
        .unwrap();
    let p = plan(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap();
    assert_eq!(p.pending.len(), 1);
    assert!(!p.pending[0].transactional);
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        apply(&url, dir.path(), &PlanInputs::default()),
    )
    .await
    .expect("CREATE INDEX CONCURRENTLY must not hang")
    .unwrap();
    assert_eq!(versions(&report), ["0002_index.sql"]);
    sqlx::raw_sql("commit").execute(&mut traffic).await.unwrap();
    assert_eq!(
        pg.psql(
            "notx",
            "select string_agg(indexrelid::regclass::text || '=' || indisvalid, ',' order by indexrelid::regclass::text) \
             from pg_index where indrelid = 'big'::regclass"
        )
        .unwrap(),
        "big_id=true,big_v=true"
    );
    assert_eq!(
        sidecar(&pg, "notx"),
        "0001_big.sql:terraform:false,0002_index.sql:terraform:false"
    );

    // A failing one: the unique build fails on the duplicate id and leaves an INVALID index.
    std::fs::write(
        dir.path().join("0003_unique.sql"),
        "-- artifortress:no-transaction\n-- artifortress:class B\n\
         create table side (x int);\n\
         create unique index concurrently big_id_unique on big (id);\n",
    )
    .unwrap();
    let err = apply(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap_err();
    match &err {
        MigrationError::MigrationFailed(f) => {
            assert_eq!(f.version, "0003_unique.sql");
            assert_eq!(f.sqlstate.as_deref(), Some("23505"));
            assert!(!f.transactional);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("dirty"), "{err}");
    // The statement before the failing one stays; the marker is left; no ledger row.
    assert_eq!(
        pg.psql("notx", "select to_regclass('side') is not null")
            .unwrap(),
        "t"
    );
    assert_eq!(ledger(&pg, "notx"), "0001_big.sql,0002_index.sql");
    assert_eq!(
        sidecar(&pg, "notx"),
        "0001_big.sql:terraform:false,0002_index.sql:terraform:false,0003_unique.sql:terraform:true"
    );
    assert_eq!(
        pg.psql(
            "notx",
            "select indexrelid::regclass from pg_index where not indisvalid"
        )
        .unwrap(),
        "big_id_unique"
    );

    // The next plan (and apply) reports it, with the remediation.
    let problems = plan(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap_err();
    assert_eq!(
        problems,
        [PlanProblem::Dirty {
            version: "0003_unique.sql".into()
        }]
    );
    assert!(problems[0].detail().contains("where not indisvalid"));
    assert!(matches!(
        apply(&url, dir.path(), &PlanInputs::default()).await,
        Err(MigrationError::Plan { .. })
    ));

    // Following the remediation: drop the invalid index, fix the data, clear the marker, retry.
    pg.psql("notx", "drop index concurrently big_id_unique")
        .unwrap();
    pg.psql("notx", "delete from big where v = 'duplicate id'")
        .unwrap();
    std::fs::write(
        dir.path().join("0003_unique.sql"),
        "-- artifortress:no-transaction\n-- artifortress:class B\n\
         create table if not exists side (x int);\n\
         create unique index concurrently if not exists big_id_unique on big (id);\n",
    )
    .unwrap();
    pg.psql(
        "notx",
        "delete from artifortress_migrations_log where version = '0003_unique.sql' and dirty",
    )
    .unwrap();
    let report = apply(&url, dir.path(), &PlanInputs::default())
        .await
        .unwrap();
    assert_eq!(versions(&report), ["0003_unique.sql"]);
    assert_eq!(
        sidecar(&pg, "notx"),
        "0001_big.sql:terraform:false,0002_index.sql:terraform:false,0003_unique.sql:terraform:false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applies_at_once_run_each_file_exactly_once() {
    let (pg, url) = database("race");
    let dir = dir_with(&[
        (
            "0001_runs.sql",
            "create table runs (version text not null, at timestamptz default clock_timestamp());\n\
             insert into runs (version) values ('0001');\n",
        ),
        (
            "0002_slow.sql",
            "select pg_sleep(1);\ninsert into runs (version) values ('0002');\n",
        ),
        (
            "0003_index.sql",
            "-- artifortress:no-transaction\n\
             create index concurrently if not exists runs_version on runs (version);\n\
             insert into runs (version) values ('0003');\n",
        ),
        (
            "0004_last.sql",
            "insert into runs (version) values ('0004');\n",
        ),
    ]);
    let run = |url: String, path: std::path::PathBuf| {
        tokio::spawn(async move { apply(&url, &path, &PlanInputs::default()).await })
    };
    let a = run(url.clone(), dir.path().to_path_buf());
    let b = run(url.clone(), dir.path().to_path_buf());
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), async { (a.await, b.await) })
        .await
        .expect("no deadlock");
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    let mut counts = [a.applied.len(), b.applied.len()];
    counts.sort();
    assert_eq!(counts, [0, 4], "{a:?} {b:?}");
    assert_eq!(a.head.as_deref(), Some("0004_last.sql"));
    assert_eq!(b.head.as_deref(), Some("0004_last.sql"));
    assert_eq!(
        pg.psql(
            "race",
            "select string_agg(version || ':' || n, ',' order by version) \
             from (select version, count(*) n from runs group by version) c"
        )
        .unwrap(),
        "0001:1,0002:1,0003:1,0004:1"
    );
    assert_eq!(
        ledger(&pg, "race"),
        "0001_runs.sql,0002_slow.sql,0003_index.sql,0004_last.sql"
    );
}

#[tokio::test]
async fn lock_timeout_names_the_holder() {
    let (pg, url) = database("locked");
    let dir = dir_with(&[("0001_a.sql", "create table a (x int);\n")]);
    let opts: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .unwrap()
        .application_name("lock-holder-test");
    let mut holder = PgConnection::connect_with(&opts).await.unwrap();
    let holder_pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::query("select pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();

    let files = load_dir(dir.path()).unwrap();
    let mut m = Migrator::connect(&url, CONNECT).await.unwrap();
    let started = std::time::Instant::now();
    let err = m
        .apply(
            &files,
            &PlanInputs::default(),
            Duration::from_secs(1),
            "test",
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    match &err {
        MigrationError::LockTimeout {
            holder: Some(h),
            url: shown,
            ..
        } => {
            assert_eq!(h.pid, holder_pid);
            assert_eq!(h.application_name, "lock-holder-test");
            assert!(!shown.contains("testpass"), "{shown}");
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("lock-holder-test") && text.contains(&holder_pid.to_string()),
        "{text}"
    );
    assert!(!text.contains("testpass"), "{text}");
    // Nothing was created.
    assert_eq!(
        pg.psql("locked", "select to_regclass('schema_migrations') is null")
            .unwrap(),
        "t"
    );

    // Once the holder lets go, the same migrator applies.
    holder.close().await.unwrap();
    let report = m
        .apply(
            &files,
            &PlanInputs::default(),
            LOCK,
            "test",
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(versions(&report), ["0001_a.sql"]);
}

#[tokio::test]
async fn baseline_adopts_a_non_empty_database_without_ledger() {
    let (pg, url) = database("legacy");
    pg.psql(
        "legacy",
        "create table legacy (x int); create table legacy2 (x int);",
    )
    .unwrap();
    // The first two would fail if run: their tables exist.
    let dir = dir_with(&[
        ("0001_legacy.sql", "create table legacy (x int);\n"),
        ("0002_legacy2.sql", "create table legacy2 (x int);\n"),
        ("0003_new.sql", "create table fresh (x int);\n"),
    ]);
    let expected = vec![PlanProblem::BaselineNeeded {
        newest: Some("0003_new.sql".into()),
    }];
    assert_eq!(
        plan(&url, dir.path(), &PlanInputs::default())
            .await
            .unwrap_err(),
        expected
    );
    match apply(&url, dir.path(), &PlanInputs::default()).await {
        Err(MigrationError::Plan { problems, .. }) => assert_eq!(problems, expected),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pg.psql("legacy", "select to_regclass('schema_migrations') is null")
            .unwrap(),
        "t"
    );

    let inputs = PlanInputs {
        baseline: Some("0002_legacy2.sql".into()),
        ..PlanInputs::default()
    };
    let report = apply(&url, dir.path(), &inputs).await.unwrap();
    assert_eq!(report.baselined, ["0001_legacy.sql", "0002_legacy2.sql"]);
    assert_eq!(versions(&report), ["0003_new.sql"]);
    assert_eq!(
        ledger(&pg, "legacy"),
        "0001_legacy.sql,0002_legacy2.sql,0003_new.sql"
    );
    assert_eq!(
        sidecar(&pg, "legacy"),
        "0001_legacy.sql:baseline:false,0002_legacy2.sql:baseline:false,0003_new.sql:terraform:false"
    );
    // From now on the ledger rules; the baseline setting is inert.
    assert!(plan(&url, dir.path(), &inputs).await.unwrap().is_empty());
}

#[tokio::test]
async fn cancel_stops_between_files() {
    let (pg, url) = database("cancel");
    let dir = dir_with(&[
        (
            "0001_slow.sql",
            "select pg_sleep(1);\ncreate table a (x int);\n",
        ),
        ("0002_next.sql", "create table b (x int);\n"),
    ]);
    let files = load_dir(dir.path()).unwrap();
    let mut m = Migrator::connect(&url, CONNECT).await.unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    match m
        .apply(&files, &PlanInputs::default(), LOCK, "test", &cancel)
        .await
    {
        Err(MigrationError::Cancelled { report, .. }) => {
            assert_eq!(versions(&report), ["0001_slow.sql"]);
            assert_eq!(report.head.as_deref(), Some("0001_slow.sql"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ledger(&pg, "cancel"), "0001_slow.sql");
    assert_eq!(
        pg.psql(
            "cancel",
            "select count(*) from pg_locks where locktype = 'advisory'"
        )
        .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn connection_errors_never_show_the_password() {
    let (pg, _) = database("secret");
    let url = format!(
        "postgres://postgres:wrong-Pa55word@127.0.0.1:{}/secret",
        pg.port()
    );
    let err = Migrator::connect(&url, CONNECT).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, MigrationError::Connect { .. }), "{err:?}");
    assert!(!text.contains("wrong-Pa55word"), "{text}");
    assert!(text.contains("postgres://postgres:***@127.0.0.1"), "{text}");
}

#[tokio::test]
async fn a_foreign_schema_migrations_table_is_refused() {
    let (pg, url) = database("golang");
    // golang-migrate's table of the same name.
    pg.psql(
        "golang",
        "create table schema_migrations (version bigint not null primary key, dirty boolean not null)",
    )
    .unwrap();
    let mut m = Migrator::connect(&url, CONNECT).await.unwrap();
    let err = m.view().await.unwrap_err();
    assert!(
        matches!(err, MigrationError::ForeignLedger { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("version bigint"), "{err}");
}

#[tokio::test]
async fn policy_is_enforced_under_the_lock_too() {
    let (pg, url) = database("policy");
    let dir = dir_with(&[
        ("0001_a.sql", "create table a (x int, legacy text);\n"),
        (
            "0002_c.sql",
            "-- artifortress:class C\nalter table a drop column legacy;\n",
        ),
    ]);
    // Contract refused by default: nothing runs, not even the class A file before it.
    match apply(&url, dir.path(), &PlanInputs::default()).await {
        Err(MigrationError::Plan { problems, .. }) => assert_eq!(
            problems,
            [PlanProblem::ContractNotAllowed {
                versions: vec!["0002_c.sql".into()]
            }]
        ),
        other => panic!("expected a policy refusal, got {other:?}"),
    }
    assert_eq!(
        pg.psql("policy", "select to_regclass('schema_migrations') is null")
            .unwrap(),
        "t",
        "a refused apply writes nothing"
    );
    let backup = PlanInputs {
        allow_contract: true,
        require_backup: true,
        ..PlanInputs::default()
    };
    assert!(matches!(
        apply(&url, dir.path(), &backup).await,
        Err(MigrationError::Plan { ref problems, .. })
            if matches!(problems[..], [PlanProblem::BackupRequired { .. }])
    ));
    let allowed = PlanInputs {
        allow_contract: true,
        ..PlanInputs::default()
    };
    apply(&url, dir.path(), &allowed).await.unwrap();
    assert_eq!(ledger(&pg, "policy"), "0001_a.sql,0002_c.sql");
    // Nothing pending: a required backup refuses nothing.
    apply(&url, dir.path(), &backup).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_backend_rolls_the_running_file_back() {
    let (pg, url) = database("cancel_backend");
    let dir = dir_with(&[
        ("0001_a.sql", "create table a (x int);\n"),
        (
            "0002_slow.sql",
            "create table slow (x int);\nselect pg_sleep(60);\n",
        ),
    ]);
    let files = load_dir(dir.path()).unwrap();
    let mut m = Migrator::connect(&url, CONNECT).await.unwrap();
    let pid = m.backend_pid();
    let canceller = {
        let url = url.clone();
        tokio::spawn(async move {
            // Wait until the slow statement runs, then cancel it from another session.
            for _ in 0..200 {
                let mut c = PgConnection::connect(&url).await.unwrap();
                let active: Option<i32> = sqlx::query_scalar(
                    "select pid from pg_stat_activity where query like '%pg_sleep(60)%' \
                     and state = 'active' and pid <> pg_backend_pid()",
                )
                .fetch_optional(&mut c)
                .await
                .unwrap();
                if active == Some(pid) {
                    return migrations::cancel_backend(&url, pid, CONNECT)
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    };
    let started = std::time::Instant::now();
    let result = m
        .apply(
            &files,
            &PlanInputs::default(),
            LOCK,
            "test",
            &CancellationToken::new(),
        )
        .await;
    assert!(
        canceller.await.unwrap(),
        "the slow statement was seen and cancelled"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    match result {
        Err(MigrationError::MigrationFailed(f)) => {
            assert_eq!(f.version, "0002_slow.sql");
            assert_eq!(f.sqlstate.as_deref(), Some("57014"), "{f}");
        }
        other => panic!("expected the cancelled file to fail, got {other:?}"),
    }
    m.close().await;
    assert_eq!(ledger(&pg, "cancel_backend"), "0001_a.sql");
    assert_eq!(
        pg.psql("cancel_backend", "select to_regclass('slow') is null")
            .unwrap(),
        "t"
    );
}

#[test]
fn database_identity_names_host_port_and_database_without_credentials() {
    assert_eq!(
        pg::database_identity("postgres://u:secret@db.internal:6543/app").unwrap(),
        "db.internal:6543/app"
    );
    assert_eq!(
        pg::database_identity("postgres://u:other@db.internal:6543/app?sslmode=disable").unwrap(),
        "db.internal:6543/app",
        "stable across password rotations and options"
    );
    assert_eq!(
        pg::database_identity("postgres://u@db.internal/app").unwrap(),
        "db.internal:5432/app"
    );
    let err = pg::database_identity("postgres://u:secret@x:notaport/app").unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}
