//! Restore drill benchmark: one backup restored and verified two ways, interleaved, in the
//! same run:
//!
//! - **ours**: `clients::restore::run` on a backup taken once up front with `backup::run`
//!   (custom format, no compression) into a throw-away Garage (S3): the dump downloaded with
//!   its sha256 checked, the drill database re-created, `pg_restore --jobs`, the parity tables
//!   counted, the drill database dropped; timed from the call to its return, and the report
//!   must say `data_pass` (a broken run must not look fast);
//! - **service**: the service's drill method: `pg_dump` plain SQL (`--no-owner
//!   --no-privileges`) of the source to a file, the drill database's sessions terminated, the
//!   database dropped and created, `psql -v ON_ERROR_STOP=1 -f FILE` into it, `count(*)` of the
//!   ten parity tables in the source and in the drill database via psql (they must be equal),
//!   the drill database dropped; all of it timed. Its restore-only time (the `psql -f` step plus
//!   the counts, without the dump) is printed for information.
//!
//! Goal: ours ≤ 0.6× the service's drill (issue 4), ≤ 0.8× at 1 GiB in one table (issue 19).
//! Not a timed assertion: it prints medians, the ratio and met/missed, and for each way where
//! the CPU went (`/proc` around each timed run); it exits non-zero only when something errors.
//!
//! The source database: the test bed's schema and seed (`testbed/migrations`, `seed.sql`) plus
//! one table of ids, ints, a blank `char(84)` filler, an md5 text and 256 random bytes per row
//! (pgcrypto's `gen_random_bytes`), so the dump is about `BENCH_SIZE_MB` and not trivially
//! compressible. Loaded in batches over two sessions, then `vacuum (freeze, analyze)` and a
//! checkpoint.
//!
//! Environment: `BENCH_SIZE_MB` (default 256): target size of the custom-format dump in MiB.
//! `RUNS` (default 3): timed rounds, each running both ways once (alternating which goes
//! first), after an untimed warm-up of each. PostgreSQL and Garage are throw-away servers on
//! this machine (PostgreSQL with fsync=off). Run it with `bench/drill.sh`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::postgres::{PgServer, pg_bin_dir};
use artifortress_provider::clients::backup::{self, BackupSpec, Compression, Format};
use artifortress_provider::clients::restore::{self, DrillReport, DrillSpec};
use common::{
    CpuProbe, CpuUse, RANDOM_BYTES_PER_ROW, Result, SETTINGS_SQL, Ticks, bench_tables, checked,
    cpu_sample, emit_row, env_u64, err, garage_client, load_tables, median, met, mib, min_max,
    rows_for,
};
use tokio_util::sync::CancellationToken;

/// Ours / service must stay at or below this: at 1 GiB with the bulk data in one table (which
/// `pg_restore -j` cannot split; the drill streams it), issue 19's 0.8x; otherwise (spread over
/// several tables, or smaller) 0.6x (issues 4 and 19).
const GOAL_ONE_TABLE: f64 = 0.8;
const GOAL_TABLES: f64 = 0.6;
const SOURCE_DB: &str = "src";
const DRILL_DB: &str = "bench_drill";
const PREFIX: &str = "bench/drill/";

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to configure on the command line.
    if let Err(e) = run() {
        eprintln!("drill bench: error: {e}");
        std::process::exit(1);
    }
}

struct Bench {
    pg: PgServer,
    /// Kept alive for the run (stopped on drop).
    garage: GarageServer,
    s3: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
    bin: PathBuf,
    /// The service way's dump file lives here; removed on drop.
    work: tempfile::TempDir,
    bucket: String,
    manifest_key: String,
}

/// One run of ours.
struct OursRun {
    secs: f64,
    report: DrillReport,
}

/// One run of the service's drill, by step.
struct ServiceRun {
    secs: f64,
    dump: f64,
    recreate: f64,
    psql_restore: f64,
    counts: f64,
    drop: f64,
    file_bytes: u64,
}

impl ServiceRun {
    /// The `psql -f` step plus the counts, without the dump.
    fn restore_only(&self) -> f64 {
        self.psql_restore + self.counts
    }
}

impl Bench {
    fn url(&self, db: &str) -> String {
        self.pg.database_url(db)
    }

    /// A tool of the server's bin directory, the password in the environment.
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("PGPASSWORD", self.pg.password())
            .env_remove("PGSERVICE")
            .stdin(Stdio::null());
        c
    }

    /// `psql -X -q -tA -v ON_ERROR_STOP=1 -c SQL` against `db`; trimmed stdout.
    fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = self
            .tool("psql")
            .arg(self.url(db))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()?;
        let out = checked(out, &format!("psql -c {sql:?} on {db}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The parity tables' counts in `db`: one psql session, ten `count(*)`s.
    fn psql_counts(&self, db: &str) -> Result<Vec<i64>> {
        let sql: String = backup::PARITY_TABLES
            .iter()
            .map(|t| format!("select count(*) from {t};"))
            .collect();
        let text = self.psql(db, &sql)?;
        let counts = text
            .lines()
            .map(|l| l.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err(format!("unexpected counts from psql on {db}: {text:?}")))?;
        if counts.len() != backup::PARITY_TABLES.len() {
            return Err(err(format!(
                "unexpected counts from psql on {db}: {text:?}"
            )));
        }
        Ok(counts)
    }

    /// A checkpoint (untimed, between runs): the previous run's dirty pages are not written
    /// during the next.
    fn settle(&self) -> Result<()> {
        self.psql("postgres", "checkpoint")?;
        Ok(())
    }

    /// One drill the provider's way (after [`Bench::settle`], which the caller runs first).
    fn ours(&self) -> Result<OursRun> {
        let spec = DrillSpec {
            bucket: self.bucket.clone(),
            manifest_key: self.manifest_key.clone(),
            admin_url: self.url("postgres"),
            drill_database: DRILL_DB.to_string(),
            parity_tables: backup::PARITY_TABLES.map(String::from).to_vec(),
            rto_target_seconds: 1e9,
            rpo_target_seconds: 1e9,
            keep_drill_database: false,
            bin_dir: Some(self.bin.clone()),
            connect_timeout: Duration::from_secs(10),
        };
        let started = Instant::now();
        let report =
            self.runtime
                .block_on(restore::run(&self.s3, &spec, &CancellationToken::new()))?;
        let secs = started.elapsed().as_secs_f64();
        if !report.data_pass {
            return Err(err(format!(
                "ours: the drill's data verification failed: {:?}, head {:?} vs {:?}",
                report.mismatches, report.expected_head, report.actual_head
            )));
        }
        if report.actual_counts.len() != backup::PARITY_TABLES.len() {
            return Err(err(format!(
                "ours: the drill counted {} of {} parity tables",
                report.actual_counts.len(),
                backup::PARITY_TABLES.len()
            )));
        }
        Ok(OursRun { secs, report })
    }

    /// One drill the service's way (after [`Bench::settle`], which the caller runs first).
    fn service(&self) -> Result<ServiceRun> {
        let file = self.work.path().join("service-drill.sql");
        let started = Instant::now();
        // 1. pg_dump plain to a file.
        let out = self
            .tool("pg_dump")
            .args(["--no-owner", "--no-privileges", "--no-password", "-h"])
            .arg(self.pg.host())
            .arg("-p")
            .arg(self.pg.port().to_string())
            .args(["-U", self.pg.user(), "-d", SOURCE_DB, "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .output()?;
        checked(out, "pg_dump (plain) -f FILE")?;
        let t_dump = started.elapsed().as_secs_f64();
        // 2. Terminate, drop, create the drill database.
        self.psql(
            "postgres",
            &format!(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = '{DRILL_DB}' and pid <> pg_backend_pid()"
            ),
        )?;
        self.psql("postgres", &format!("drop database if exists {DRILL_DB}"))?;
        self.psql("postgres", &format!("create database {DRILL_DB}"))?;
        let t_recreate = started.elapsed().as_secs_f64();
        // 3. psql -f.
        let out = self
            .tool("psql")
            .arg(self.url(DRILL_DB))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .output()?;
        checked(out, "psql -v ON_ERROR_STOP=1 -f FILE")?;
        let t_restore = started.elapsed().as_secs_f64();
        // 4. Counts in the source and in the drill database.
        let source = self.psql_counts(SOURCE_DB)?;
        let drill = self.psql_counts(DRILL_DB)?;
        let t_counts = started.elapsed().as_secs_f64();
        // 5. Drop the drill database.
        self.psql("postgres", &format!("drop database if exists {DRILL_DB}"))?;
        let secs = started.elapsed().as_secs_f64();
        if source != drill {
            return Err(err(format!(
                "service: the counts differ: source {source:?}, drill {drill:?}"
            )));
        }
        let file_bytes = std::fs::metadata(&file)?.len();
        std::fs::remove_file(&file)?;
        Ok(ServiceRun {
            secs,
            dump: t_dump,
            recreate: t_recreate - t_dump,
            psql_restore: t_restore - t_recreate,
            counts: t_counts - t_restore,
            drop: secs - t_counts,
            file_bytes,
        })
    }
}

fn run() -> Result<()> {
    let runs = env_u64("RUNS", 3)? as usize;
    let size_mib = env_u64("BENCH_SIZE_MB", 256)?;
    // BENCH_TABLES: the bulk rows in one table (1, the default: a shape `pg_restore -j` cannot
    // split) or spread over this many tables (e.g. 8: a shape it can).
    let tables = env_u64("BENCH_TABLES", 1)?.max(1);
    // Issue 19's goals are at 1 GiB; below, issue 4's 0.6x for every shape.
    let goal = if tables == 1 && size_mib >= 1024 {
        GOAL_ONE_TABLE
    } else {
        GOAL_TABLES
    };
    let shape = if tables == 1 {
        format!("{size_mib} MiB in one table")
    } else {
        format!("{size_mib} MiB over {tables} tables")
    };
    let bin = pg_bin_dir().map_err(|e| err(e.to_string()))?;
    let pg = PgServer::start().map_err(|e| err(e.to_string()))?;
    let garage = GarageServer::start().map_err(|e| err(e.to_string()))?;
    let runtime = common::runtime()?;
    let s3 = garage_client(&garage);
    let work = tempfile::Builder::new()
        .prefix("af-bench-drill-")
        .tempdir()?;
    let bucket = garage.bucket().to_string();
    let mut bench = Bench {
        pg,
        garage,
        s3,
        runtime,
        bin,
        work,
        bucket,
        manifest_key: String::new(),
    };

    let version = bench.psql("postgres", "show server_version")?;
    let settings = bench.psql("postgres", SETTINGS_SQL)?;
    let tool_version = checked(
        bench.tool("pg_restore").arg("--version").output()?,
        "pg_restore --version",
    )?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "server: a throw-away PostgreSQL {version} on 127.0.0.1 ({settings}; shared_buffers in \
         8 kB pages): fsync=off, so restores and loads cost no flush"
    );
    println!(
        "        {}; pg_restore --jobs={} (the drill's: cores clamped to 1..4)",
        String::from_utf8_lossy(&tool_version.stdout).trim(),
        cores.clamp(1, 4)
    );
    println!(
        "object store: a throw-away Garage (single node, path-style, no fsync) on 127.0.0.1, \
         sharing this machine's {cores} cores with PostgreSQL, the client tools and the provider"
    );

    // The source database: the test bed's schema and seed, plus the bulk data.
    println!("generating the source database (~{size_mib} MiB of custom-format dump) ...");
    let started = Instant::now();
    bench
        .pg
        .create_migrated_database(SOURCE_DB)
        .map_err(|e| err(e.to_string()))?;
    bench.pg.seed(SOURCE_DB).map_err(|e| err(e.to_string()))?;
    let rows = rows_for(size_mib);
    let database_bytes = bench.runtime.block_on(load_tables(
        &bench.url(SOURCE_DB),
        rows,
        tables,
        "vacuum (freeze, analyze)",
    ))?;
    println!(
        "data: the test bed's migrations and seed, plus {rows} rows (id, 2 ints, char(84) blank \
         filler, md5 text, {RANDOM_BYTES_PER_ROW} random bytes from gen_random_bytes) in {}; \
         generated in {:.1} s; pg_database_size {:.0} MiB",
        match bench_tables(tables).as_slice() {
            [one] => one.clone(),
            many => format!(
                "{} tables of equal size ({} .. {})",
                many.len(),
                many[0],
                many[many.len() - 1]
            ),
        },
        started.elapsed().as_secs_f64(),
        mib(database_bytes)
    );

    // The one backup every ours run restores.
    let spec = BackupSpec {
        bucket: bench.bucket.clone(),
        prefix: PREFIX.to_string(),
        format: Format::Custom,
        compression: Compression::None,
        labels: BTreeMap::new(),
        verify: false,
        pg_dump: bench.bin.join("pg_dump"),
        connect_timeout: Duration::from_secs(10),
    };
    let manifest = bench.runtime.block_on(backup::run(
        &bench.s3,
        &bench.url(SOURCE_DB),
        &spec,
        &CancellationToken::new(),
    ))?;
    if let Some(b) = manifest.table_bytes {
        println!(
            "table sizes in the manifest: largest {:.0} MiB of {:.0} MiB ({:.0} %): the drill {}",
            mib(b.largest),
            mib(b.total),
            b.largest as f64 * 100.0 / b.total.max(1) as f64,
            if b.largest * 2 >= b.total {
                "streams the dump into pg_restore as it downloads"
            } else {
                "downloads the dump, then runs pg_restore --jobs"
            }
        );
    }
    println!(
        "backup (once, untimed): backup::run custom -Z0, no compression: {:.0} MiB in {:.1} s \
         (s3://{}/{})",
        mib(manifest.size_bytes),
        manifest.duration_seconds,
        manifest.bucket,
        manifest.object_key
    );
    bench.manifest_key = manifest.manifest_key.clone();

    // Warm-up: caches, Garage's first reads.
    bench.settle()?;
    let warm_ours = bench.ours()?;
    bench.settle()?;
    let warm_service = bench.service()?;
    println!(
        "warm-up (untimed): ours {:.2} s, service {:.2} s",
        warm_ours.secs, warm_service.secs
    );
    println!(
        "runs: {runs} timed rounds, each running both ways once, interleaved (which goes first \
         alternates)"
    );
    // Where the CPU goes in each way's runs: this process (the drill's own code: S3 client,
    // sha256, the restore's plumbing), the tools it runs and reaps (pg_restore, psql, pg_dump),
    // PostgreSQL (the postmaster with the backends it reaped: a restore's sessions end with
    // it), Garage. Read from /proc around each timed run.
    let probes = [
        (
            "bench process (ours: the drill's own code)",
            "self".to_string(),
            Ticks::Own,
        ),
        (
            "its tools (pg_restore, psql, pg_dump)",
            "self".to_string(),
            Ticks::Children,
        ),
        (
            "PostgreSQL (backends reaped)",
            bench
                .pg
                .postmaster_pid()
                .map_or_else(|| "0".to_string(), |p| p.to_string()),
            Ticks::Both,
        ),
        (
            "Garage",
            bench
                .garage
                .pid()
                .map_or_else(|| "0".to_string(), |p| p.to_string()),
            Ticks::Own,
        ),
    ]
    .map(|(name, pid, ticks)| CpuProbe {
        name: name.to_string(),
        pid,
        ticks,
    });
    let (mut ours_cpu, mut service_cpu) = (CpuUse::default(), CpuUse::default());
    // One timed run of either way: settled first, its CPU added to `cpu`.
    fn timed<T>(
        bench: &Bench,
        probes: &[CpuProbe],
        cpu: &mut CpuUse,
        run: impl FnOnce(&Bench) -> Result<T>,
        secs: impl Fn(&T) -> f64,
    ) -> Result<T> {
        bench.settle()?;
        let before = cpu_sample(probes);
        let r = run(bench)?;
        cpu.add(&before, &cpu_sample(probes), secs(&r));
        Ok(r)
    }
    let timed_ours =
        |cpu: &mut CpuUse| timed(&bench, &probes, cpu, Bench::ours, |o: &OursRun| o.secs);
    let timed_service = |cpu: &mut CpuUse| {
        timed(&bench, &probes, cpu, Bench::service, |s: &ServiceRun| {
            s.secs
        })
    };
    let (mut ours, mut service) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        let (o, s) = if i % 2 == 1 {
            let o = timed_ours(&mut ours_cpu)?;
            (o, timed_service(&mut service_cpu)?)
        } else {
            let s = timed_service(&mut service_cpu)?;
            (timed_ours(&mut ours_cpu)?, s)
        };
        println!(
            "  round {i}: ours {:.2} s, service {:.2} s (restore only {:.2} s)",
            o.secs,
            s.secs,
            s.restore_only()
        );
        ours.push(o);
        service.push(s);
    }

    let ours_of = |f: fn(&OursRun) -> f64| median(&ours.iter().map(f).collect::<Vec<_>>());
    let service_of = |f: fn(&ServiceRun) -> f64| median(&service.iter().map(f).collect::<Vec<_>>());
    let ours_secs: Vec<f64> = ours.iter().map(|r| r.secs).collect();
    let service_secs: Vec<f64> = service.iter().map(|r| r.secs).collect();
    let restore_only: Vec<f64> = service.iter().map(ServiceRun::restore_only).collect();
    let (om, sm, rm) = (
        median(&ours_secs),
        median(&service_secs),
        median(&restore_only),
    );
    println!(
        "restore drill of {:.0} MiB (custom -Z0 dump; the service's plain SQL {:.0} MiB; source \
         database {:.0} MiB), median of {runs} runs",
        mib(manifest.size_bytes),
        mib(service[0].file_bytes),
        mib(database_bytes)
    );
    let streamed = manifest
        .table_bytes
        .is_some_and(|b| b.largest * 2 >= b.total);
    let line = |label: &str, v: &[f64]| {
        let (lo, hi) = min_max(v);
        println!(
            "  {label:<78} {:>7.2} s (min {lo:.2}, max {hi:.2})",
            median(v)
        );
    };
    line(
        if streamed {
            "ours: restore::run (re-create, dump streamed into pg_restore + sha256, counts, drop)"
        } else {
            "ours: restore::run (download + sha256, re-create, pg_restore -j, counts, drop)"
        },
        &ours_secs,
    );
    line(
        "service: pg_dump plain to a file, re-create, psql -f, counts in both, drop",
        &service_secs,
    );
    line(
        "for information: service restore only (psql -f + counts, no dump)",
        &restore_only,
    );
    if streamed {
        println!(
            "  ours by phase (medians, from the DrillReport; streamed, so both run from the \
             start of the download): download + sha256 {:.2} s, pg_restore {:.2} s, rto {:.2} s \
             (start to a verified restore); the rest (manifest, re-create, counts, drop) {:.2} s",
            ours_of(|r| r.report.download_seconds),
            ours_of(|r| r.report.restore_duration_seconds),
            ours_of(|r| r.report.rto_seconds),
            ours_of(|r| r.secs - r.report.restore_duration_seconds),
        );
    } else {
        println!(
            "  ours by phase (medians, from the DrillReport): download + sha256 {:.2} s, \
             pg_restore {:.2} s, rto {:.2} s (start to a verified restore); the rest (manifest, \
             re-create, counts, drop) {:.2} s",
            ours_of(|r| r.report.download_seconds),
            ours_of(|r| r.report.restore_duration_seconds),
            ours_of(|r| r.report.rto_seconds),
            ours_of(|r| r.secs - r.report.download_seconds - r.report.restore_duration_seconds),
        );
    }
    println!(
        "  service by step (medians): pg_dump {:.2} s, terminate + drop + create {:.2} s, \
         psql -f {:.2} s, counts {:.2} s, drop {:.2} s",
        service_of(|r| r.dump),
        service_of(|r| r.recreate),
        service_of(|r| r.psql_restore),
        service_of(|r| r.counts),
        service_of(|r| r.drop),
    );
    println!(
        "  where the CPU went, ours (mean per run, /proc): {}",
        ours_cpu.line(&probes)
    );
    println!(
        "  where the CPU went, service (mean per run, /proc): {}",
        service_cpu.line(&probes)
    );
    let ratio = om / sm;
    println!(
        "  ratio ours / service: {ratio:.2}x  (goal <= {goal}x: {})",
        met(ratio <= goal)
    );
    emit_row(
        "drill",
        &format!("ours / service, {shape}"),
        &format!(
            "{om:.2} s (restore::run of a {:.0} MiB backup)",
            mib(manifest.size_bytes)
        ),
        &format!("{sm:.2} s (service's drill: plain pg_dump, psql -f, counts)"),
        &format!("{ratio:.2}x"),
        &format!("<= {goal}x"),
        met(ratio <= goal),
    )?;
    println!(
        "  for information: ours / service restore only {:.2}x",
        om / rm
    );
    println!(
        "note: PostgreSQL runs with fsync=off and Garage without fsync, both on this machine: \
         absolute times are this machine's; the ratio is the result"
    );
    Ok(())
}
