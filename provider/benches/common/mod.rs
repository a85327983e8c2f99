//! Helpers shared by the benchmark binaries (`benches/migrations.rs`, `benches/backup.rs`,
//! `benches/drill.rs`, `benches/release.rs`), each of which includes this file with
//! `mod common;`. Every bench compiles it on its own, so an item not every bench uses carries
//! `#[allow(dead_code)]`.

use std::io::Write as _;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use acceptance_tests::support::garage::GarageServer;
use artifortress_provider::clients::object_store::{self, ObjectStoreConfig};
use sqlx::Connection;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

#[allow(dead_code)]
pub const MIB: f64 = 1024.0 * 1024.0;
/// Bytes one generated row takes in the custom-format dump (measured; the printed dump size
/// is the real one).
#[allow(dead_code)]
pub const ROW_DUMP_BYTES: u64 = 668;
#[allow(dead_code)]
pub const RANDOM_BYTES_PER_ROW: i32 = 256;
#[allow(dead_code)]
pub const BATCH_ROWS: u64 = 20_000;
/// The server settings the backup and drill benches print.
#[allow(dead_code)]
pub const SETTINGS_SQL: &str = "select string_agg(name || '=' || setting, ', ' order by name) \
     from pg_settings \
     where name in ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers')";

pub fn err(message: impl Into<String>) -> BoxError {
    message.into().into()
}

/// `out` if its process succeeded, else an error naming `what` with its stdout and stderr.
pub fn checked(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        return Err(err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

/// The provider's own runtime (provider/src/main.rs): multi-threaded, two workers.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// An S3 client for the throw-away Garage (path-style).
#[allow(dead_code)]
pub fn garage_client(garage: &GarageServer) -> aws_sdk_s3::Client {
    object_store::client(&ObjectStoreConfig {
        endpoint: Some(garage.endpoint()),
        region: garage.region().to_string(),
        access_key_id: Some(garage.access_key().to_string()),
        secret_access_key: Some(garage.secret_key().to_string()),
        force_path_style: true,
    })
}

/// Rows of generated data whose custom-format dump is about `size_mib` MiB.
#[allow(dead_code)]
pub fn rows_for(size_mib: u64) -> u64 {
    (size_mib * 1024 * 1024 / ROW_DUMP_BYTES).max(1)
}

/// Create the table `bench_data` in `url`'s database and fill it with `rows` rows over two
/// sessions, then add its primary key, run `vacuum` (a whole `VACUUM` statement: the table or
/// the whole database) and a checkpoint; returns pg_database_size.
#[allow(dead_code)]
pub async fn load(url: &str, rows: u64, vacuum: &'static str) -> Result<u64> {
    load_tables(url, rows, 1, vacuum).await
}

/// The table names [`load_tables`] fills: `bench_data`, or `bench_data_1` .. `bench_data_<n>`.
#[allow(dead_code)]
pub fn bench_tables(tables: u64) -> Vec<String> {
    if tables <= 1 {
        vec!["bench_data".to_string()]
    } else {
        (1..=tables).map(|i| format!("bench_data_{i}")).collect()
    }
}

/// [`load`] with the rows spread evenly over `tables` tables ([`bench_tables`]): the data
/// shape a parallel restore can split.
#[allow(dead_code)]
pub async fn load_tables(url: &str, rows: u64, tables: u64, vacuum: &'static str) -> Result<u64> {
    let names = Arc::new(bench_tables(tables));
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql("create extension if not exists pgcrypto")
        .execute(&mut conn)
        .await?;
    for name in names.iter() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "create table {name} (
                 id bigint not null,
                 account integer not null,
                 balance integer not null,
                 filler char(84),
                 note text not null,
                 payload bytea not null
             ) with (autovacuum_enabled = off)"
        )))
        .execute(&mut conn)
        .await?;
    }
    let batches = rows.div_ceil(BATCH_ROWS);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (url, next, names) = (url.to_string(), next.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let lo = b * BATCH_ROWS + 1;
                let hi = ((b + 1) * BATCH_ROWS).min(rows);
                let table = &names[(b % names.len() as u64) as usize];
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "insert into {table} (id, account, balance, filler, note, payload)
                     select g, (g % 100000)::int, ((g * 7919) % 20001 - 10000)::int, '',
                            'order ' || g || ' ' || md5(g::text), gen_random_bytes($3)
                     from generate_series($1::bigint, $2::bigint) g"
                )))
                .bind(lo as i64)
                .bind(hi as i64)
                .bind(RANDOM_BYTES_PER_ROW)
                .execute(&mut conn)
                .await?;
            }
            conn.close().await?;
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    // One statement each: several in one simple query would run as one transaction, and
    // VACUUM refuses that.
    for name in names.iter() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "alter table {name} add primary key (id)"
        )))
        .execute(&mut conn)
        .await?;
    }
    for sql in [vacuum, "checkpoint"] {
        sqlx::raw_sql(sql).execute(&mut conn).await?;
    }
    let size: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(size as u64)
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

#[allow(dead_code)]
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// One result row for `bench/run`'s table (bench/README.md, "Row protocol"): when `BENCH_ROWS`
/// names a file, appends `bench, measure, ours, floor, ratio, goal, verdict` to it as one
/// tab-separated line; else does nothing. `ours` and `floor` are value, unit and what was timed
/// (`"0.42 s (Migrator, 50 files)"`), `ratio` like `"0.86x"` (`"-"` for an absolute bound),
/// `goal` like `"<= 1.3x"`, `verdict` what [`met`] says of the numbers the bench printed. Tabs
/// and line breaks inside a field become spaces.
#[allow(dead_code)]
pub fn emit_row(
    bench: &str,
    measure: &str,
    ours: &str,
    floor: &str,
    ratio: &str,
    goal: &str,
    verdict: &str,
) -> Result<()> {
    let Some(path) = std::env::var_os("BENCH_ROWS").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let fields = [bench, measure, ours, floor, ratio, goal, verdict]
        .map(|f| f.replace(['\t', '\n', '\r'], " "));
    let line = format!("{}\n", fields.join("\t"));
    // One write of the whole line to a file opened for appending: rows never interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| err(format!("BENCH_ROWS {}: {e}", path.to_string_lossy())))
}

/// A positive integer from the environment; `default` when unset or blank.
#[allow(dead_code)]
pub fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .ok()
            .filter(|&n: &u64| n > 0)
            .ok_or_else(|| err(format!("{name} must be a positive integer, not {v:?}"))),
        _ => Ok(default),
    }
}

/// Which CPU time of a process a [`CpuProbe`] reads from `/proc/PID/stat`.
#[allow(dead_code)]
#[derive(Clone, Copy)]
pub enum Ticks {
    /// The process's own user + system time.
    Own,
    /// Its reaped children's (the tools it ran and waited for).
    Children,
    /// Both: a server with the workers it forked and reaped (PostgreSQL's backends).
    Both,
}

/// One named process whose CPU time a bench accounts for.
#[allow(dead_code)]
pub struct CpuProbe {
    pub name: String,
    /// A pid, or `self`.
    pub pid: String,
    pub ticks: Ticks,
}

/// CPU ticks of every probe and of the whole machine (busy, total; `/proc/stat`) at one point.
#[allow(dead_code)]
pub struct CpuSample {
    probes: Vec<u64>,
    busy: u64,
    total: u64,
}

#[allow(dead_code)]
pub fn cpu_sample(probes: &[CpuProbe]) -> CpuSample {
    let ticks = |p: &CpuProbe| -> u64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)) else {
            return 0;
        };
        // pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17)
        let Some(close) = stat.rfind(')') else {
            return 0;
        };
        let f: Vec<u64> = stat[close + 2..]
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 4 {
            return 0;
        }
        match p.ticks {
            Ticks::Own => f[0] + f[1],
            Ticks::Children => f[2] + f[3],
            Ticks::Both => f.iter().sum(),
        }
    };
    let (busy, total) = machine_ticks();
    CpuSample {
        probes: probes.iter().map(ticks).collect(),
        busy,
        total,
    }
}

/// The whole machine's busy (not idle, not iowait) and total CPU ticks, from `/proc/stat`.
#[allow(dead_code)]
pub fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// CPU use between samples, summed over the runs a bench adds: per probe CPU seconds, the
/// machine's busy share, and the runs' wall time.
#[allow(dead_code)]
#[derive(Default)]
pub struct CpuUse {
    secs: Vec<f64>,
    busy: u64,
    total: u64,
    wall: f64,
    runs: usize,
}

#[allow(dead_code)]
impl CpuUse {
    pub fn add(&mut self, before: &CpuSample, after: &CpuSample, wall: f64) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.secs.resize(after.probes.len(), 0.0);
        for (i, (a, b)) in after.probes.iter().zip(&before.probes).enumerate() {
            self.secs[i] += a.saturating_sub(*b) as f64 / hz;
        }
        self.busy += after.busy.saturating_sub(before.busy);
        self.total += after.total.saturating_sub(before.total);
        self.wall += wall;
        self.runs += 1;
    }

    /// One line: per run, the machine's busy share and each probe's CPU seconds.
    pub fn line(&self, probes: &[CpuProbe]) -> String {
        let runs = self.runs.max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts: Vec<String> = probes
            .iter()
            .zip(&self.secs)
            .map(|(p, s)| format!("{} {:.2}", p.name, s / runs))
            .collect();
        let accounted: f64 = self.secs.iter().sum::<f64>() / runs;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        format!(
            "machine busy {:.0} % of {cores} cores over {:.2} s ({:.2} CPU-s); CPU-s per run: {} \
             (these {:.2})",
            100.0 * self.busy as f64 / self.total.max(1) as f64,
            self.wall / runs,
            self.busy as f64 / hz / runs,
            parts.join(", "),
            accounted,
        )
    }
}
