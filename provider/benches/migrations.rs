//! Migration engine benchmark: 50 realistic migrations (the test bed's 3 files plus 47
//! generated ones) applied to an empty database, three ways, in the same run:
//!
//! - **ours**: `clients::migrations` (`load_dir`, `Migrator::connect`, `apply`, `close`): one
//!   session, the advisory lock, one transaction per file holding the file, its ledger row and
//!   its sidecar row;
//! - **floor**: one `psql -X -q -1 -v ON_ERROR_STOP=1 -f … -f …` process (one session, one
//!   transaction) over the same files plus a file creating the ledger and inserting its 50 rows;
//! - **service**: `acceptance-tests/testbed/db-migrate.sh` (the service's script: per file a
//!   `psql` check, `psql -f`, then a separate `psql -c` insert).
//!
//! Goals: ours ≤ 1.3× the floor, and ≥ 5× faster than the service's way. This is not a timed
//! assertion: it prints the medians and the ratios and says whether each goal is met; it fails
//! only when something errors (including a run whose result does not verify).
//!
//! `ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL` (a superuser URL): use that server; otherwise a
//! throw-away server is started. `RUNS` (default 5): timed runs of each, interleaved, after one
//! untimed warm-up round. Run it with `bench/migrations.sh`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::support::postgres::{PgServer, pg_bin_dir};
use acceptance_tests::support::{migrations_dir, testbed_dir};
use artifortress_provider::clients::migrations::{LEDGER_DDL, Migrator, PlanInputs, load_dir};
use common::{Result, checked, emit_row, err, median, met, min_max};
use tokio_util::sync::CancellationToken;

/// Files applied by every run.
const FILE_COUNT: usize = 50;
/// Ours / floor must stay at or below this.
const GOAL_VS_FLOOR: f64 = 1.3;
/// Service / ours must reach at least this.
const GOAL_VS_SERVICE: f64 = 5.0;
/// A table created by the last generated file (checked after every run).
const LAST_TABLE: &str = "build_infos";

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to configure on the command line.
    if let Err(e) = run() {
        eprintln!("migrations bench: error: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------------------------------
// The server
// ------------------------------------------------------------------------------------------

struct Server {
    admin_url: String,
    /// `psql` (a full path when the PostgreSQL binaries were found, else looked up in PATH).
    psql: PathBuf,
    /// PATH for every child process, with the PostgreSQL binaries first.
    path_env: String,
    /// Kept alive (and stopped on drop) when we started the server ourselves.
    _throwaway: Option<PgServer>,
}

impl Server {
    fn new() -> Result<Server> {
        let bin = std::env::var_os("ARTIFORTRESS_DEV_PG_BIN")
            .map(PathBuf::from)
            .filter(|d| d.join("psql").is_file())
            .or_else(|| pg_bin_dir().ok().filter(|d| d.join("psql").is_file()));
        let old_path = std::env::var("PATH").unwrap_or_default();
        let (psql, path_env) = match &bin {
            Some(dir) => (dir.join("psql"), format!("{}:{old_path}", dir.display())),
            None => (PathBuf::from("psql"), old_path),
        };
        let (admin_url, throwaway) = match std::env::var("ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL") {
            Ok(url) if !url.is_empty() => {
                println!(
                    "server: the dev environment's PostgreSQL (ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL)"
                );
                (url, None)
            }
            _ => {
                let pg = PgServer::start()?;
                println!(
                    "server: a throw-away PostgreSQL started for this run, with fsync=off, \
                     synchronous_commit=off, full_page_writes=off (a commit costs no disk flush)"
                );
                (pg.database_url("postgres"), Some(pg))
            }
        };
        Ok(Server {
            admin_url,
            psql,
            path_env,
            _throwaway: throwaway,
        })
    }

    /// The admin URL pointing at database `db` (user, password and parameters kept).
    fn url(&self, db: &str) -> Result<String> {
        let mut u = url::Url::parse(&self.admin_url)?;
        u.set_path(&format!("/{db}"));
        Ok(u.to_string())
    }

    fn psql_command(&self) -> Command {
        let mut c = Command::new(&self.psql);
        c.env("PATH", &self.path_env).stdin(Stdio::null());
        c
    }

    /// `psql -X -q -tA -v ON_ERROR_STOP=1 -c SQL URL`; trimmed stdout.
    fn query(&self, url: &str, sql: &str) -> Result<String> {
        let out = self
            .psql_command()
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql, url])
            .output()
            .map_err(|e| err(format!("cannot run {}: {e}", self.psql.display())))?;
        let out = checked(out, "psql -c")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn create_database(&self, name: &str) -> Result<String> {
        self.query(&self.admin_url, &format!("create database {name}"))?;
        self.url(name)
    }

    fn drop_database(&self, name: &str) -> Result<()> {
        self.query(
            &self.admin_url,
            &format!("drop database if exists {name} with (force)"),
        )?;
        Ok(())
    }

    /// The run's result must be complete, or a broken run could look fast.
    fn verify(&self, url: &str, how: &str) -> Result<()> {
        let got = self.query(
            url,
            &format!(
                "select (select count(*) from schema_migrations) || ',' || \
                        (to_regclass('{LAST_TABLE}') is not null)"
            ),
        )?;
        let want = format!("{FILE_COUNT},true");
        if got != want {
            return Err(err(format!(
                "{how}: after the run, (ledger rows, last table exists) = ({got}), expected ({want})"
            )));
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// The migration files
// ------------------------------------------------------------------------------------------

/// (table, id column prefix) of the generated feature tables, one per group of five files.
const FEATURES: [(&str, &str); 10] = [
    ("webhooks", "webhook"),
    ("retention_policies", "retention_policy"),
    ("replication_targets", "replication_target"),
    ("quota_rules", "quota_rule"),
    ("scan_results", "scan_result"),
    ("signing_keys", "signing_key"),
    ("mirror_sources", "mirror_source"),
    ("notification_channels", "notification_channel"),
    ("access_reviews", "access_review"),
    (LAST_TABLE, "build_info"),
];

/// (column, type and default, backfill expression) added to `packages`, one per group.
const PACKAGE_COLUMNS: [(&str, &str, &str); 9] = [
    (
        "download_count",
        "bigint not null default 0",
        "length(name) * 37",
    ),
    (
        "is_deprecated",
        "boolean not null default false",
        "name like '%7'",
    ),
    ("license", "text not null default 'unknown'", "'MIT'"),
    (
        "latest_version",
        "text null",
        "'1.' || (length(name) % 10) || '.0'",
    ),
    (
        "homepage_url",
        "text null",
        "'https://example.test/' || name",
    ),
    (
        "tags",
        "text[] not null default '{}'::text[]",
        "array[package_type, 'backfilled']",
    ),
    ("stars", "int not null default 0", "length(name)"),
    (
        "metadata",
        "jsonb not null default '{}'::jsonb",
        "jsonb_build_object('source', 'backfill', 'len', length(name))",
    ),
    (
        "last_published_at",
        "timestamptz null",
        "created_at + interval '1 day'",
    ),
];

/// Copy the test bed's migrations into `dir` and generate the rest up to [`FILE_COUNT`].
/// Every file applies cleanly after the previous ones, each in its own transaction or all in
/// one (nothing that is forbidden in a transaction block).
fn write_migrations(dir: &Path) -> Result<()> {
    let mut testbed: Vec<PathBuf> = std::fs::read_dir(migrations_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    testbed.sort();
    if testbed.len() != 3 {
        return Err(err(format!(
            "expected 3 test-bed migrations in {}, found {}",
            migrations_dir().display(),
            testbed.len()
        )));
    }
    for p in &testbed {
        std::fs::copy(p, dir.join(p.file_name().unwrap_or_default()))?;
    }
    let mut generated = vec![("default_tenant_and_repos".to_string(), seed_sql())];
    for (g, &(table, id)) in FEATURES.iter().enumerate() {
        generated.push((format!("create_{table}"), create_feature_sql(table, id)));
        generated.push((format!("{table}_add_priority"), add_priority_sql(table, id)));
        generated.push((format!("create_{id}_history"), history_sql(table, id)));
        generated.push((format!("{table}_views_and_triggers"), views_sql(table, id)));
        if let Some(&(column, ty, backfill)) = PACKAGE_COLUMNS.get(g) {
            generated.push((
                format!("packages_add_{column}"),
                package_column_sql(column, ty, backfill),
            ));
        }
    }
    // The last file creates LAST_TABLE (checked after every run).
    generated.truncate(FILE_COUNT - testbed.len());
    for (i, (name, sql)) in generated.into_iter().enumerate() {
        let n = testbed.len() + 1 + i;
        std::fs::write(dir.join(format!("{n:04}_{name}.sql")), sql)?;
    }
    let count = std::fs::read_dir(dir)?.count();
    if count != FILE_COUNT {
        return Err(err(format!(
            "generated {count} migration files, expected {FILE_COUNT}"
        )));
    }
    Ok(())
}

fn seed_sql() -> String {
    // An empty database gets what a fresh install needs: the default tenant and its first
    // repositories. The later backfills then run against (nearly) empty tables, as they do on
    // every new install; data volume is not what this benchmark measures.
    "-- The default tenant and its first repositories.
-- artifortress:class B

insert into tenants (slug, name) values ('default', 'Default tenant')
on conflict (slug) do nothing;

insert into repos (tenant_id, repo_key, repo_type, config)
select t.tenant_id, 'repo-' || g, (array['local', 'remote', 'virtual'])[1 + g % 3],
       jsonb_build_object('index', g, 'retention_days', 30 + g)
from tenants t cross join generate_series(1, 3) g
where t.slug = 'default'
on conflict (tenant_id, repo_key) do nothing;
"
    .to_string()
}

fn create_feature_sql(table: &str, id: &str) -> String {
    format!(
        "-- {table}: per-tenant settings, optionally scoped to a repository; backfilled with
-- one row per (repository, sample key).
-- artifortress:class B

create table if not exists {table} (
  {id}_id bigint generated always as identity primary key,
  tenant_id uuid not null references tenants(tenant_id),
  repo_id uuid null references repos(repo_id) on delete cascade,
  key text not null,
  state text not null default 'active' check (state in ('active', 'disabled')),
  settings jsonb not null default '{{}}'::jsonb,
  created_by_subject text not null default 'system',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, key)
);

create index if not exists idx_{table}_repo
  on {table} (repo_id)
  where repo_id is not null;

create index if not exists idx_{table}_state
  on {table} (tenant_id, state, updated_at desc);

insert into {table} (tenant_id, repo_id, key, state, settings)
select r.tenant_id, r.repo_id, r.repo_key || '/' || g,
       case when g % 10 = 0 then 'disabled' else 'active' end,
       jsonb_build_object('n', g, 'digest', md5(r.repo_key || g))
from repos r cross join generate_series(1, 100) g
on conflict (tenant_id, key) do nothing;
"
    )
}

fn add_priority_sql(table: &str, id: &str) -> String {
    format!(
        "-- {table}: a priority and a last-checked time, backfilled from the existing rows.
-- artifortress:class B

alter table {table} add column if not exists priority int not null default 0;
alter table {table} add column if not exists last_checked_at timestamptz null;

update {table}
set priority = ({id}_id % 5)::int, last_checked_at = created_at
where last_checked_at is null;

create index if not exists idx_{table}_priority
  on {table} (tenant_id, priority desc);
"
    )
}

fn history_sql(table: &str, id: &str) -> String {
    format!(
        "-- {table}: change history, one 'created' row per existing {id}.
-- artifortress:class B

create table if not exists {id}_history (
  history_id bigint generated always as identity primary key,
  {id}_id bigint not null references {table}({id}_id) on delete cascade,
  tenant_id uuid not null references tenants(tenant_id),
  change text not null check (change in ('created', 'updated', 'disabled')),
  changed_by_subject text not null,
  details jsonb not null default '{{}}'::jsonb,
  changed_at timestamptz not null default now()
);

create index if not exists idx_{id}_history_parent
  on {id}_history ({id}_id, changed_at desc);

insert into {id}_history ({id}_id, tenant_id, change, changed_by_subject, details)
select f.{id}_id, f.tenant_id, 'created', 'migration', jsonb_build_object('key', f.key)
from {table} f
where not exists (select 1 from {id}_history h where h.{id}_id = f.{id}_id);
"
    )
}

fn views_sql(table: &str, id: &str) -> String {
    format!(
        "-- {table}: keep updated_at current, and a view of the active rows with their repository.

create or replace function {id}_touch_updated_at() returns trigger
language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end
$$;

drop trigger if exists trg_{table}_touch on {table};
create trigger trg_{table}_touch
  before update on {table}
  for each row execute function {id}_touch_updated_at();

create or replace view {table}_active as
  select f.{id}_id, f.tenant_id, f.repo_id, r.repo_key, f.key, f.priority, f.settings,
         f.updated_at
  from {table} f
  left join repos r on r.repo_id = f.repo_id
  where f.state = 'active';

-- Touch the disabled rows once (exercises the new trigger).
update {table} set state = 'active' where state = 'disabled';
"
    )
}

fn package_column_sql(column: &str, ty: &str, backfill: &str) -> String {
    format!(
        "-- packages.{column}, backfilled for the existing packages.
-- artifortress:class B

alter table packages add column if not exists {column} {ty};

update packages set {column} = {backfill};

create index if not exists idx_packages_{column}
  on packages (repo_id, {column});
"
    )
}

/// The floor's extra file: the ledger table and its 50 rows, in the same session.
fn ledger_sql(dir: &Path) -> Result<String> {
    let mut sql = format!("{LEDGER_DDL};\n");
    for f in load_dir(dir)? {
        writeln!(
            sql,
            "insert into schema_migrations (version) values ('{}');",
            f.version.replace('\'', "''")
        )?;
    }
    Ok(sql)
}

// ------------------------------------------------------------------------------------------
// The three ways
// ------------------------------------------------------------------------------------------

/// Phases of one run of ours, in seconds.
#[derive(Default, Clone, Copy)]
struct OursPhases {
    load: f64,
    connect: f64,
    apply: f64,
    close: f64,
    /// Sum of the report's per-file execution_ms (the files' SQL alone; whole ms, truncated).
    files_sql: f64,
}

/// Timed from `load_dir` (the other two ways read the files too; it is under a millisecond)
/// through `close`.
async fn apply_ours(url: &str, dir: &Path) -> Result<(f64, OursPhases)> {
    let t0 = Instant::now();
    let files = load_dir(dir)?;
    let t1 = Instant::now();
    let mut m = Migrator::connect(url, Duration::from_secs(10)).await?;
    let t2 = Instant::now();
    let inputs = PlanInputs {
        allow_contract: true,
        ..PlanInputs::default()
    };
    let report = m
        .apply(
            &files,
            &inputs,
            Duration::from_secs(60),
            "bench",
            &CancellationToken::new(),
        )
        .await;
    let t3 = Instant::now();
    m.close().await;
    let t4 = Instant::now();
    let report = report?;
    if report.applied.len() != FILE_COUNT {
        return Err(err(format!(
            "ours applied {} files, expected {FILE_COUNT}",
            report.applied.len()
        )));
    }
    let files_ms: u64 = report.applied.iter().map(|(_, ms)| ms).sum();
    let phases = OursPhases {
        load: (t1 - t0).as_secs_f64(),
        connect: (t2 - t1).as_secs_f64(),
        apply: (t3 - t2).as_secs_f64(),
        close: (t4 - t3).as_secs_f64(),
        files_sql: files_ms as f64 / 1000.0,
    };
    Ok(((t4 - t0).as_secs_f64(), phases))
}

fn apply_floor(server: &Server, url: &str, dir: &Path, ledger: &Path) -> Result<f64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut cmd = server.psql_command();
    cmd.args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1"]);
    for f in files.iter().chain([&ledger.to_path_buf()]) {
        cmd.arg("-f").arg(f);
    }
    cmd.arg(url);
    let start = Instant::now();
    let out = cmd.output()?;
    let secs = start.elapsed().as_secs_f64();
    checked(out, "psql -1 (floor)")?;
    Ok(secs)
}

fn apply_service(server: &Server, url: &str, dir: &Path) -> Result<f64> {
    let mut cmd = Command::new("bash");
    cmd.arg(testbed_dir().join("db-migrate.sh"))
        .arg(url)
        .arg(dir)
        .env("PATH", &server.path_env)
        .stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd.output()?;
    let secs = start.elapsed().as_secs_f64();
    checked(out, "db-migrate.sh (service)")?;
    Ok(secs)
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Ours,
    Floor,
    Service,
}

impl Way {
    fn tag(self) -> &'static str {
        match self {
            Way::Ours => "ours",
            Way::Floor => "floor",
            Way::Service => "service",
        }
    }
}

struct Bench {
    server: Server,
    runtime: tokio::runtime::Runtime,
    dir: PathBuf,
    ledger: PathBuf,
    seq: usize,
}

impl Bench {
    /// One run on a fresh database: create, apply (timed), verify, drop.
    fn run(&mut self, way: Way) -> Result<(f64, Option<OursPhases>)> {
        self.seq += 1;
        let db = format!(
            "af_bench_mig_{}_{}_{}",
            std::process::id(),
            self.seq,
            way.tag()
        );
        let url = self.server.create_database(&db)?;
        let result = (|| -> Result<(f64, Option<OursPhases>)> {
            let timed = match way {
                Way::Ours => {
                    let (s, p) = self.runtime.block_on(apply_ours(&url, &self.dir))?;
                    (s, Some(p))
                }
                Way::Floor => (
                    apply_floor(&self.server, &url, &self.dir, &self.ledger)?,
                    None,
                ),
                Way::Service => (apply_service(&self.server, &url, &self.dir)?, None),
            };
            self.server.verify(&url, way.tag())?;
            Ok(timed)
        })();
        let dropped = self.server.drop_database(&db);
        let timed = result?;
        dropped?;
        Ok(timed)
    }
}

fn ms(s: f64) -> String {
    format!("{:.1}", s * 1000.0)
}

fn run() -> Result<()> {
    let runs: usize = match std::env::var("RUNS") {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| err(format!("RUNS must be a positive integer, not {v:?}")))?,
        Err(_) => 5,
    };
    let server = Server::new()?;
    let version = server.query(&server.admin_url, "show server_version")?;
    let fsync = server.query(&server.admin_url, "show fsync")?;
    let sync_commit = server.query(&server.admin_url, "show synchronous_commit")?;
    println!("PostgreSQL {version}; fsync = {fsync}, synchronous_commit = {sync_commit}");

    let work = tempfile::Builder::new()
        .prefix("af-bench-migrations-")
        .tempdir()?;
    let dir = work.path().join("migrations");
    std::fs::create_dir(&dir)?;
    write_migrations(&dir)?;
    let ledger = work.path().join("floor_ledger.sql");
    std::fs::write(&ledger, ledger_sql(&dir)?)?;
    let bytes: u64 = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "migrations: {FILE_COUNT} files ({} KiB; 3 from the test bed, {} generated), each run on a new empty database",
        bytes / 1024,
        FILE_COUNT - 3
    );
    println!("runs: 1 untimed warm-up round, then {runs} timed runs of each, interleaved");

    let runtime = common::runtime()?;
    let mut bench = Bench {
        server,
        runtime,
        dir,
        ledger,
        seq: 0,
    };
    let ways = [Way::Ours, Way::Floor, Way::Service];
    for way in ways {
        bench.run(way)?;
    }
    let (mut ours, mut floor, mut service) = (Vec::new(), Vec::new(), Vec::new());
    let mut phases = Vec::new();
    for i in 1..=runs {
        let mut line = format!("  run {i}:");
        for way in ways {
            let (secs, p) = bench.run(way)?;
            write!(line, " {} {} ms", way.tag(), ms(secs))?;
            match way {
                Way::Ours => ours.push(secs),
                Way::Floor => floor.push(secs),
                Way::Service => service.push(secs),
            }
            phases.extend(p);
        }
        println!("{line}");
    }

    let (o, f, s) = (median(&ours), median(&floor), median(&service));
    let row = |name: &str, v: &[f64], m: f64| {
        let (lo, hi) = min_max(v);
        println!(
            "  {name:<60} {:>8} ms  (min {}, max {})",
            ms(m),
            ms(lo),
            ms(hi)
        );
    };
    println!("migrations: {FILE_COUNT} files on an empty database, median of {runs} runs");
    row(
        "floor: one psql -1 session (files + ledger rows)",
        &floor,
        f,
    );
    row(
        "ours: Migrator (one transaction per file + ledger + sidecar)",
        &ours,
        o,
    );
    row(
        "service: db-migrate.sh (per file psql check, -f, -c insert)",
        &service,
        s,
    );
    let pm = |get: fn(&OursPhases) -> f64| median(&phases.iter().map(get).collect::<Vec<_>>());
    let (load, connect, apply, close, files_sql) = (
        pm(|p| p.load),
        pm(|p| p.connect),
        pm(|p| p.apply),
        pm(|p| p.close),
        pm(|p| p.files_sql),
    );
    println!(
        "  ours by phase (medians): load_dir {} ms, connect {} ms, apply {} ms (of which the files' SQL ≈ {} ms \
         by the report's execution_ms, truncated to whole ms per file), close {} ms",
        ms(load),
        ms(connect),
        ms(apply),
        ms(files_sql),
        ms(close)
    );
    let vs_floor = o / f;
    let vs_service = s / o;
    println!(
        "  ratio ours / floor:   {vs_floor:.2}x  (goal <= {GOAL_VS_FLOOR}x: {})",
        met(vs_floor <= GOAL_VS_FLOOR)
    );
    println!(
        "  ratio service / ours: {vs_service:.2}x  (goal >= {GOAL_VS_SERVICE}x: {})",
        met(vs_service >= GOAL_VS_SERVICE)
    );
    let (ours_text, floor_text, service_text) = (
        format!("{} ms (Migrator, {FILE_COUNT} files)", ms(o)),
        format!("{} ms (one psql -1 session)", ms(f)),
        format!("{} ms (service: db-migrate.sh)", ms(s)),
    );
    emit_row(
        "migrations",
        "ours / floor",
        &ours_text,
        &floor_text,
        &format!("{vs_floor:.2}x"),
        &format!("<= {GOAL_VS_FLOOR}x"),
        met(vs_floor <= GOAL_VS_FLOOR),
    )?;
    emit_row(
        "migrations",
        "service / ours",
        &ours_text,
        &service_text,
        &format!("{vs_service:.2}x"),
        &format!(">= {GOAL_VS_SERVICE}x"),
        met(vs_service >= GOAL_VS_SERVICE),
    )?;
    println!(
        "  ratio service / floor: {:.2}x  (context: the one-transaction floor's own lead over the \
         service on these files)",
        s / f
    );
    if fsync != "on" {
        println!(
            "  note: fsync = {fsync}: commits are nearly free here; on a durable server each of ours' \
             per-file commits (and each of the service's) costs a WAL flush the floor pays once"
        );
    }
    Ok(())
}
