//! Backup engine benchmark: one database dumped and stored several ways, interleaved, in the
//! same run:
//!
//! - **floor**: `pg_dump -Fc -Z0 --no-owner --no-privileges` to `/dev/null` (no storage at all);
//! - **ours**: `clients::backup::run` (custom format, no compression, `verify: false`) into a
//!   throw-away Garage (S3): pg_dump in an exported snapshot streamed into a multipart upload,
//!   sha256 on the fly, manifest written last; timed from the call to its return;
//! - **ours + verify** (`verify: true`: the object is read back and its sha256 compared) and
//!   **ours zstd** (`Compression::Zstd`), for information;
//! - **service**: the service's way: `pg_dump` plain SQL to a file, then that file uploaded with
//!   a sequential multipart upload (8 MiB parts read from the file); both steps timed together;
//! - **pipe**: the cheapest way with the upload, `pg_dump -Fc -Z0 | aws s3 cp - s3://…` (the
//!   `aws` CLI, when one runs here; the way is left out with a note otherwise);
//! - diagnostics: **ours** and **service** into a *null S3*, an endpoint in this process that
//!   answers the upload calls and throws the bytes away, so the engine's own cost shows without
//!   an object store's CPU on the same cores (Garage hashes every byte three ways and compresses
//!   it; a real object store does that on its own machines).
//!
//! Every `ours` run happens in a child process of this binary (re-executed with
//! `BENCH_CHILD=ours`) under GNU time, so its peak RSS is measured: the child reports its own
//! `VmHWM` (the process running `backup::run`), `/usr/bin/time -f %M` the largest of it and its
//! waited-for children (pg_dump).
//!
//! Goals (from the issues): ours ≤ 1.3× the floor; ours ≤ 0.5× the service's way; ours ≤ 1.1×
//! the pipe; the provider process ≤ 1 CPU-second per GiB dumped (issue 19); peak RSS ≤ 64 MiB
//! and not growing with the database's size. Not a timed assertion: it prints medians,
//! ratios, where the CPU went, and met/missed per goal; it exits non-zero only when something
//! errors.
//!
//! The data: one table of ids, ints, a pgbench-like blank `char(84)` filler (compresses ~60:1),
//! an md5 text and 256 random bytes per row (pgcrypto's `gen_random_bytes`, hex in the dump), so
//! the dump is not trivially compressible (zstd: ~2:1). Loaded in batches over two sessions,
//! then `vacuum (freeze, analyze)` and a checkpoint, so no hint-bit writes or background work
//! land in the timed runs.
//!
//! Environment: `BENCH_SIZE_MB` (default 256): target size of the custom-format dump in MiB
//! (the database itself is ~0.75× that: the random bytes are hex in the dump). `RUNS` (default
//! 3): timed rounds, each running every way once, after an untimed warm-up (floor, ours).
//! `BENCH_SIZES` (e.g. `256,1024`): also measure ours' peak RSS on databases of each of these
//! sizes (RUNS runs each), to see whether it grows with size. PostgreSQL and Garage are
//! throw-away servers on this machine (PostgreSQL with fsync=off). Run it with
//! `bench/backup.sh`.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::postgres::{PgServer, pg_bin_dir};
use artifortress_provider::clients::backup::{self, BackupSpec, Compression, Format};
use artifortress_provider::clients::object_store::{self, ObjectStoreConfig};
use common::{
    BATCH_ROWS, BoxError, RANDOM_BYTES_PER_ROW, Result, SETTINGS_SQL, checked, emit_row, env_u64,
    err, garage_client, load, median, met, mib, min_max, rows_for,
};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Ours / floor must stay at or below this.
const GOAL_VS_FLOOR: f64 = 1.3;
/// Ours / service must stay at or below this.
const GOAL_VS_SERVICE: f64 = 0.5;
/// Ours / pipe (`pg_dump -Fc -Z0 | aws s3 cp -`) must stay at or below this.
const GOAL_VS_PIPE: f64 = 1.1;
/// The provider process's CPU seconds per GiB dumped must stay at or below this.
const GOAL_CPU_PER_GIB: f64 = 1.0;
/// Ours' peak RSS must stay at or below this many MiB.
const GOAL_RSS_MIB: f64 = 64.0;
/// "Not growing with size": the largest size's peak within this many MiB, or this fraction,
/// of the smallest size's peak (whichever is larger; allocator noise).
const GROWTH_TOLERANCE_MIB: f64 = 4.0;
const GROWTH_TOLERANCE_FRACTION: f64 = 0.10;
/// Part size of the service way's multipart upload.
const SERVICE_PART: usize = 8 * 1024 * 1024;
const GNU_TIME: &str = "/usr/bin/time";
const PREFIX: &str = "bench/backup/";

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to configure on the command line.
    let result = match std::env::var("BENCH_CHILD") {
        Ok(role) if role == "ours" => child_ours(),
        Ok(role) => Err(err(format!("unknown BENCH_CHILD {role:?}"))),
        Err(_) => run(),
    };
    if let Err(e) = result {
        eprintln!("backup bench: error: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------------------------------
// The child: one `backup::run`, its time, CPU and peak RSS
// ------------------------------------------------------------------------------------------

/// What the child reports on its `BENCH_RESULT` line.
struct ChildReport {
    secs: f64,
    size_bytes: u64,
    dump_bytes: u64,
    /// VmRSS before the backup started (runtime and S3 client built).
    rss_before_kib: u64,
    /// VmHWM after it returned.
    hwm_kib: u64,
    /// CPU of the child itself and of its children (pg_dump, `pg_dump --version`).
    cpu_self: f64,
    cpu_pg_dump: f64,
    object_key: String,
    manifest_key: String,
}

fn child_ours() -> Result<()> {
    let var = |k: &str| std::env::var(k).map_err(|_| err(format!("{k} is not set")));
    let url = var("BENCH_DATABASE_URL")?;
    let cfg = ObjectStoreConfig {
        endpoint: Some(var("BENCH_S3_ENDPOINT")?),
        region: var("BENCH_S3_REGION")?,
        access_key_id: Some(var("BENCH_S3_ACCESS_KEY")?),
        secret_access_key: Some(var("BENCH_S3_SECRET_KEY")?),
        force_path_style: true,
    };
    let compression = Compression::parse(&var("BENCH_COMPRESSION")?)
        .ok_or_else(|| err("BENCH_COMPRESSION must be none or zstd"))?;
    let spec = BackupSpec {
        bucket: var("BENCH_S3_BUCKET")?,
        prefix: PREFIX.to_string(),
        format: Format::Custom,
        compression,
        labels: BTreeMap::new(),
        verify: var("BENCH_VERIFY")? == "1",
        pg_dump: PathBuf::from(var("BENCH_PG_DUMP")?),
        connect_timeout: Duration::from_secs(10),
    };
    // The provider's own runtime (provider/src/main.rs).
    let runtime = common::runtime()?;
    let s3 = object_store::client(&cfg);
    let rss_before_kib = proc_status_kib("VmRSS")?;
    let (secs, manifest) = runtime.block_on(async {
        let started = Instant::now();
        let m = backup::run(&s3, &url, &spec, &CancellationToken::new()).await?;
        Ok::<_, BoxError>((started.elapsed().as_secs_f64(), m))
    })?;
    let hwm_kib = proc_status_kib("VmHWM")?;
    println!(
        "BENCH_RESULT {secs} {} {} {rss_before_kib} {hwm_kib} {} {} {} {}",
        manifest.size_bytes,
        manifest.dump_bytes,
        rusage_secs(libc::RUSAGE_SELF),
        rusage_secs(libc::RUSAGE_CHILDREN),
        manifest.object_key,
        manifest.manifest_key
    );
    Ok(())
}

fn parse_child_report(stdout: &str) -> Result<ChildReport> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .ok_or_else(|| err(format!("the child printed no result: {stdout:?}")))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 9 {
        return Err(err(format!("unexpected child result {line:?}")));
    }
    let bad = |_| err(format!("unexpected child result {line:?}"));
    Ok(ChildReport {
        secs: f[0]
            .parse()
            .map_err(|_| err(format!("bad time in {line:?}")))?,
        size_bytes: f[1].parse().map_err(bad)?,
        dump_bytes: f[2].parse().map_err(bad)?,
        rss_before_kib: f[3].parse().map_err(bad)?,
        hwm_kib: f[4].parse().map_err(bad)?,
        cpu_self: f[5]
            .parse()
            .map_err(|_| err(format!("bad cpu in {line:?}")))?,
        cpu_pg_dump: f[6]
            .parse()
            .map_err(|_| err(format!("bad cpu in {line:?}")))?,
        object_key: f[7].to_string(),
        manifest_key: f[8].to_string(),
    })
}

/// A `kB` line of /proc/self/status (VmRSS, VmHWM), in KiB.
fn proc_status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| err(format!("no {field} in /proc/self/status")))
}

/// User + system CPU seconds of this process or of its waited-for children.
fn rusage_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User + system CPU seconds of a process and its reaped children, from /proc/PID/stat.
fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After "pid (comm) ": state is field 3; utime, stime, cutime, cstime are fields 14-17.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    f.get(11..15)
        .map(|v| v.iter().filter_map(|x| x.parse::<f64>().ok()).sum::<f64>() / tick)
        .unwrap_or(0.0)
}

// ------------------------------------------------------------------------------------------
// The servers and the data
// ------------------------------------------------------------------------------------------

struct Bench {
    pg: PgServer,
    garage: GarageServer,
    s3: aws_sdk_s3::Client,
    /// The null S3 endpoint (diagnostic ways) and a client for it.
    null_endpoint: String,
    null_s3: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
    pg_dump: PathBuf,
    postmaster: u32,
    /// Temp files (the service way's dump, GNU time's output); removed on drop.
    work: tempfile::TempDir,
    seq: u64,
    /// `aws --version` when the CLI runs here (the pipe way), else `None`.
    aws: Option<String>,
}

struct Generated {
    rows: u64,
    secs: f64,
    database_bytes: u64,
}

/// CPU seconds so far: this process and its children, the PostgreSQL server (postmaster and
/// its exited backends), Garage.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: f64,
    server: f64,
    garage: f64,
}

impl Cpu {
    fn minus(self, o: Cpu) -> Cpu {
        Cpu {
            client: self.client - o.client,
            server: self.server - o.server,
            garage: self.garage - o.garage,
        }
    }
}

impl Bench {
    fn url(&self, db: &str) -> String {
        self.pg.database_url(db)
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            client: rusage_secs(libc::RUSAGE_SELF) + rusage_secs(libc::RUSAGE_CHILDREN),
            server: proc_cpu(self.postmaster),
            garage: self.garage.pid().map(proc_cpu).unwrap_or(0.0),
        }
    }

    /// A new database `db` whose custom-format dump is about `size_mib` MiB.
    fn generate(&self, db: &str, size_mib: u64) -> Result<Generated> {
        let started = Instant::now();
        self.pg
            .create_database(db)
            .map_err(|e| err(e.to_string()))?;
        let rows = rows_for(size_mib);
        let url = self.url(db);
        let database_bytes =
            self.runtime
                .block_on(load(&url, rows, "vacuum (freeze, analyze) bench_data"))?;
        Ok(Generated {
            rows,
            secs: started.elapsed().as_secs_f64(),
            database_bytes,
        })
    }

    fn drop_database(&self, db: &str) -> Result<()> {
        self.pg
            .psql(
                "postgres",
                &format!("drop database if exists {db} with (force)"),
            )
            .map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// pg_dump against `db`, the password in the environment.
    fn pg_dump(&self, db: &str) -> Command {
        let mut c = Command::new(&self.pg_dump);
        c.args(["--no-owner", "--no-privileges", "--no-password", "-h"])
            .arg(self.pg.host())
            .arg("-p")
            .arg(self.pg.port().to_string())
            .args(["-U", self.pg.user(), "-d", db])
            .env("PGPASSWORD", self.pg.password())
            .env_remove("PGSERVICE")
            .stdin(Stdio::null());
        c
    }

    fn floor(&self, db: &str) -> Result<f64> {
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        let started = Instant::now();
        let out = self
            .pg_dump(db)
            .args(["-Fc", "-Z0"])
            .stdout(null)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| err(format!("cannot run {}: {e}", self.pg_dump.display())))?;
        let secs = started.elapsed().as_secs_f64();
        checked(out, "pg_dump -Fc -Z0 > /dev/null")?;
        Ok(secs)
    }

    fn ours(
        &mut self,
        db: &str,
        compression: Compression,
        verify: bool,
        target: Target,
    ) -> Result<OursRun> {
        let n = self.next();
        let time_out = self.work.path().join(format!("time-{n}.txt"));
        let exe = std::env::current_exe()?;
        let out = Command::new(GNU_TIME)
            .args(["-f", "%M", "-o"])
            .arg(&time_out)
            .arg(&exe)
            .env("BENCH_CHILD", "ours")
            .env("BENCH_DATABASE_URL", self.url(db))
            .env(
                "BENCH_S3_ENDPOINT",
                match target {
                    Target::Garage => self.garage.endpoint(),
                    Target::Null => self.null_endpoint.clone(),
                },
            )
            .env("BENCH_S3_REGION", self.garage.region())
            .env("BENCH_S3_ACCESS_KEY", self.garage.access_key())
            .env("BENCH_S3_SECRET_KEY", self.garage.secret_key())
            .env("BENCH_S3_BUCKET", self.garage.bucket())
            .env("BENCH_PG_DUMP", &self.pg_dump)
            .env(
                "BENCH_COMPRESSION",
                match compression {
                    Compression::None => "none",
                    Compression::Zstd => "zstd",
                },
            )
            .env("BENCH_VERIFY", if verify { "1" } else { "0" })
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("cannot run {GNU_TIME}: {e}")))?;
        let out = checked(out, "the ours child (backup::run)")?;
        let report = parse_child_report(&String::from_utf8_lossy(&out.stdout))?;
        let time_text = std::fs::read_to_string(&time_out)?;
        let _ = std::fs::remove_file(&time_out);
        let time_maxrss_kib: u64 = time_text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| err(format!("unexpected {GNU_TIME} output {time_text:?}")))?;
        let (bucket, object, manifest) = (
            self.garage.bucket().to_string(),
            report.object_key.clone(),
            report.manifest_key.clone(),
        );
        if target == Target::Garage {
            self.runtime
                .block_on(backup::delete(&self.s3, &bucket, &object, &manifest))?;
        }
        Ok(OursRun {
            report,
            time_maxrss_kib,
        })
    }

    /// `pg_dump -Fc -Z0 | aws s3 cp - s3://bucket/key` into Garage (the CLI's defaults: 8 MiB
    /// parts, its own checksums), path-style; the stored object's size is checked, then it is
    /// deleted (not timed).
    fn pipe(&mut self, db: &str) -> Result<f64> {
        let n = self.next();
        let key = format!("{PREFIX}pipe-{n}.dump");
        let bucket = self.garage.bucket().to_string();
        let aws_config = self.work.path().join("aws-config");
        std::fs::write(&aws_config, "[default]\ns3 =\n  addressing_style = path\n")?;
        let started = Instant::now();
        let mut dump = self
            .pg_dump(db)
            .args(["-Fc", "-Z0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", self.pg_dump.display())))?;
        let dump_out = dump.stdout.take().ok_or_else(|| err("no pg_dump stdout"))?;
        let cp = Command::new("aws")
            .args(["s3", "cp", "--only-show-errors", "-"])
            .arg(format!("s3://{bucket}/{key}"))
            .arg("--endpoint-url")
            .arg(self.garage.endpoint())
            .env("AWS_ACCESS_KEY_ID", self.garage.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.garage.secret_key())
            .env("AWS_DEFAULT_REGION", self.garage.region())
            .env("AWS_CONFIG_FILE", &aws_config)
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .stdin(dump_out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| err(format!("cannot run aws: {e}")))?;
        let dumped = dump.wait_with_output()?;
        let secs = started.elapsed().as_secs_f64();
        checked(dumped, "pg_dump -Fc -Z0 (piped into aws s3 cp -)")?;
        checked(cp, "aws s3 cp - (fed by pg_dump)")?;
        let stored = self
            .runtime
            .block_on(object_store::head(&self.s3, &bucket, &key))?
            .unwrap_or(0);
        if stored == 0 {
            return Err(err(format!("aws s3 cp - stored nothing at {key}")));
        }
        self.runtime
            .block_on(object_store::delete(&self.s3, &bucket, &key))?;
        Ok(secs)
    }

    fn service(&mut self, db: &str, target: Target) -> Result<ServiceRun> {
        let n = self.next();
        let file = self.work.path().join(format!("service-{n}.sql"));
        let key = format!("{PREFIX}service-{n}.sql");
        let started = Instant::now();
        let out = self
            .pg_dump(db)
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| err(format!("cannot run {}: {e}", self.pg_dump.display())))?;
        checked(out, "pg_dump (plain) -f FILE")?;
        let dump_secs = started.elapsed().as_secs_f64();
        let bucket = self.garage.bucket().to_string();
        let s3 = match target {
            Target::Garage => self.s3.clone(),
            Target::Null => self.null_s3.clone(),
        };
        self.runtime
            .block_on(upload_file(&s3, &bucket, &key, &file))?;
        let secs = started.elapsed().as_secs_f64();
        let file_bytes = std::fs::metadata(&file)?.len();
        std::fs::remove_file(&file)?;
        self.runtime
            .block_on(object_store::delete(&s3, &bucket, &key))?;
        Ok(ServiceRun {
            secs,
            dump_secs,
            file_bytes,
        })
    }

    /// One timed run of `way`, with the CPU it cost everywhere.
    fn measure(&mut self, db: &str, way: Way) -> Result<Sample> {
        let before = self.cpu();
        let (secs, ours, service) = match way {
            Way::Floor => (self.floor(db)?, None, None),
            Way::Pipe => (self.pipe(db)?, None, None),
            Way::Ours | Way::OursVerify | Way::OursZstd | Way::OursNull => {
                let compression = if way == Way::OursZstd {
                    Compression::Zstd
                } else {
                    Compression::None
                };
                let target = if way == Way::OursNull {
                    Target::Null
                } else {
                    Target::Garage
                };
                let r = self.ours(db, compression, way == Way::OursVerify, target)?;
                (r.report.secs, Some(r), None)
            }
            Way::Service | Way::ServiceNull => {
                let target = if way == Way::ServiceNull {
                    Target::Null
                } else {
                    Target::Garage
                };
                let r = self.service(db, target)?;
                (r.secs, None, Some(r))
            }
        };
        // Let the server reap the backends (their CPU lands in the postmaster's cutime).
        std::thread::sleep(Duration::from_millis(200));
        let cpu = self.cpu().minus(before);
        Ok(Sample {
            secs,
            cpu,
            ours,
            service,
        })
    }
}

/// The service's upload: a sequential multipart upload of `file`, 8 MiB parts read from it.
async fn upload_file(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, file: &Path) -> Result<()> {
    let upload_id = object_store::create_upload(s3, bucket, key, "application/sql", &[]).await?;
    let result = async {
        let mut f = tokio::fs::File::open(file).await?;
        let mut parts = Vec::new();
        for number in 1.. {
            let mut buf = vec![0u8; SERVICE_PART];
            let mut filled = 0;
            while filled < SERVICE_PART {
                let n = f.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            parts.push(object_store::upload_part(s3, bucket, key, &upload_id, number, buf).await?);
            if filled < SERVICE_PART {
                break;
            }
        }
        object_store::complete_upload(s3, bucket, key, &upload_id, parts).await?;
        Ok::<_, BoxError>(())
    }
    .await;
    if result.is_err() {
        let _ = object_store::abort_upload(s3, bucket, key, &upload_id).await;
    }
    result
}

// ------------------------------------------------------------------------------------------
// The null S3: a diagnostic endpoint that throws the bytes away
// ------------------------------------------------------------------------------------------

/// Serve, on `listener`, just enough of S3 (HTTP/1.1, path-style) for `backup::run` without
/// `verify` and for the service's upload: create/complete/abort a multipart upload, upload a
/// part, put a small object, list uploads (none), delete. Bodies are read and discarded; nothing
/// is stored, hashed or checked. It runs in the bench's own process, so its (small) CPU counts
/// as the client's.
async fn serve_null_s3(listener: tokio::net::TcpListener) {
    while let Ok((sock, _)) = listener.accept().await {
        let _ = sock.set_nodelay(true);
        tokio::spawn(async move {
            if let Err(e) = null_s3_connection(sock).await {
                eprintln!("null S3: {e}");
            }
        });
    }
}

async fn null_s3_connection(sock: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = sock.into_split();
    let mut r = BufReader::with_capacity(256 * 1024, read);
    let mut etags = 0u64;
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let (mut length, mut chunked, mut expect) = (0u64, false, false);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "expect" => expect = value.eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        if expect {
            write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let mut sink = tokio::io::sink();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).await?;
                let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                if n == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let mut t = String::new();
                        if r.read_line(&mut t).await? == 0 || t.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                tokio::io::copy(&mut (&mut r).take(n + 2), &mut sink).await?;
            }
        } else {
            tokio::io::copy(&mut (&mut r).take(length), &mut sink).await?;
        }
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let mut segments = path.trim_start_matches('/').splitn(2, '/');
        let bucket = segments.next().unwrap_or_default();
        let key = segments.next().unwrap_or_default();
        let has = |q: &str| {
            query
                .split('&')
                .any(|p| p == q || p.starts_with(&format!("{q}=")))
        };
        etags += 1;
        let etag = format!("\"null-{etags}\"");
        let (status, body) = match method.as_str() {
            "POST" if has("uploads") => (
                "200 OK",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult>\
                     <Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>null-upload</UploadId>\
                     </InitiateMultipartUploadResult>"
                ),
            ),
            "POST" if has("uploadId") => (
                "200 OK",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult>\
                     <Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{etag}</ETag>\
                     </CompleteMultipartUploadResult>"
                ),
            ),
            "GET" if has("uploads") => (
                "200 OK",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListMultipartUploadsResult>\
                     <Bucket>{bucket}</Bucket><IsTruncated>false</IsTruncated>\
                     </ListMultipartUploadsResult>"
                ),
            ),
            "PUT" => ("200 OK", String::new()),
            "DELETE" => ("204 No Content", String::new()),
            _ => (
                "501 Not Implemented",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NotImplemented</Code>\
                 <Message>the null S3 only takes uploads</Message></Error>"
                    .to_string(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/xml\r\n\
             ETag: {etag}\r\n\r\n",
            body.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(body.as_bytes()).await?;
        write.flush().await?;
    }
}

// ------------------------------------------------------------------------------------------
// The ways and the report
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    Floor,
    /// `pg_dump -Fc -Z0 | aws s3 cp -`: only when the `aws` CLI runs here.
    Pipe,
    Ours,
    OursVerify,
    OursZstd,
    Service,
    /// Diagnostics: the same, into the null S3 (no object store's CPU on this machine).
    OursNull,
    ServiceNull,
}

/// Where the bytes go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Garage,
    Null,
}

impl Way {
    const ALL: [Way; 8] = [
        Way::Floor,
        Way::Pipe,
        Way::Ours,
        Way::OursVerify,
        Way::OursZstd,
        Way::Service,
        Way::OursNull,
        Way::ServiceNull,
    ];

    fn tag(self) -> &'static str {
        match self {
            Way::Floor => "floor",
            Way::Pipe => "pipe",
            Way::Ours => "ours",
            Way::OursVerify => "ours+verify",
            Way::OursZstd => "ours-zstd",
            Way::Service => "service",
            Way::OursNull => "ours->null",
            Way::ServiceNull => "service->null",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Way::Floor => "floor: pg_dump -Fc -Z0 > /dev/null",
            Way::Pipe => "pipe: pg_dump -Fc -Z0 | aws s3 cp - s3://...",
            Way::Ours => "ours: backup::run custom -Z0, no compression, verify=false",
            Way::OursVerify => "ours + verify (object read back, sha256 compared)",
            Way::OursZstd => "ours, zstd (fastest level, in the provider)",
            Way::Service => "service: pg_dump plain to a file, then multipart upload",
            Way::OursNull => "diagnostic: ours into the null S3",
            Way::ServiceNull => "diagnostic: service into the null S3",
        }
    }
}

struct OursRun {
    report: ChildReport,
    time_maxrss_kib: u64,
}

struct ServiceRun {
    secs: f64,
    dump_secs: f64,
    file_bytes: u64,
}

struct Sample {
    secs: f64,
    cpu: Cpu,
    ours: Option<OursRun>,
    service: Option<ServiceRun>,
}

fn env_sizes() -> Result<Option<Vec<u64>>> {
    let Ok(v) = std::env::var("BENCH_SIZES") else {
        return Ok(None);
    };
    if v.trim().is_empty() {
        return Ok(None);
    }
    let mut sizes = v
        .split(',')
        .map(|s| s.trim().parse::<u64>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            err(format!(
                "BENCH_SIZES must be sizes in MiB like 256,1024, not {v:?}"
            ))
        })?;
    sizes.sort_unstable();
    sizes.dedup();
    Ok(Some(sizes))
}

/// The `aws` CLI's version line, when it runs here.
fn aws_cli() -> Option<String> {
    let out = Command::new("aws")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text.lines().next().unwrap_or("aws").trim().to_string())
}

/// Peak RSS (MiB) of the ours runs: (max VmHWM, min VmHWM, max GNU time %M, median VmRSS before).
fn rss_of(runs: &[&OursRun]) -> (f64, f64, f64, f64) {
    let hwm: Vec<f64> = runs
        .iter()
        .map(|r| r.report.hwm_kib as f64 / 1024.0)
        .collect();
    let time: Vec<f64> = runs
        .iter()
        .map(|r| r.time_maxrss_kib as f64 / 1024.0)
        .collect();
    let before: Vec<f64> = runs
        .iter()
        .map(|r| r.report.rss_before_kib as f64 / 1024.0)
        .collect();
    let (lo, hi) = min_max(&hwm);
    (hi, lo, min_max(&time).1, median(&before))
}

fn run() -> Result<()> {
    let runs = env_u64("RUNS", 3)? as usize;
    let size_mib = env_u64("BENCH_SIZE_MB", 256)?;
    let sizes = env_sizes()?;
    if !Path::new(GNU_TIME).is_file() {
        return Err(err(format!(
            "{GNU_TIME} (GNU time) is needed to measure peak RSS"
        )));
    }
    let pg_dump = pg_bin_dir()
        .map_err(|e| err(e.to_string()))?
        .join("pg_dump");
    let pg = PgServer::start().map_err(|e| err(e.to_string()))?;
    let garage = GarageServer::start().map_err(|e| err(e.to_string()))?;
    let postmaster: u32 = std::fs::read_to_string(pg.dir().join("data/postmaster.pid"))?
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| err("no pid in postmaster.pid"))?;
    let runtime = common::runtime()?;
    let s3 = garage_client(&garage);
    let work = tempfile::Builder::new()
        .prefix("af-bench-backup-")
        .tempdir()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))?;
    let null_endpoint = format!("http://{}", listener.local_addr()?);
    runtime.spawn(serve_null_s3(listener));
    let null_s3 = object_store::client(&ObjectStoreConfig {
        endpoint: Some(null_endpoint.clone()),
        region: garage.region().to_string(),
        access_key_id: Some("null".to_string()),
        secret_access_key: Some("null".to_string()),
        force_path_style: true,
    });
    let mut bench = Bench {
        pg,
        garage,
        s3,
        null_endpoint,
        null_s3,
        runtime,
        pg_dump,
        postmaster,
        work,
        seq: 0,
        aws: aws_cli(),
    };

    let q = |sql: &str| {
        bench
            .pg
            .psql("postgres", sql)
            .map_err(|e| err(e.to_string()))
    };
    let version = q("show server_version")?;
    let settings = q(SETTINGS_SQL)?;
    let pg_dump_version = checked(
        Command::new(&bench.pg_dump).arg("--version").output()?,
        "pg_dump --version",
    )?;
    println!(
        "server: a throw-away PostgreSQL {version} on 127.0.0.1 ({settings}; shared_buffers in \
         8 kB pages): fsync=off, so the loads cost no flush; a dump only reads"
    );
    println!(
        "        {}",
        String::from_utf8_lossy(&pg_dump_version.stdout).trim()
    );
    println!(
        "object store: a throw-away Garage (single node, path-style, metadata_fsync/data_fsync \
         off, its default zstd level 1 block compression) on 127.0.0.1, sharing this machine's {} \
         cores with PostgreSQL, pg_dump and the provider",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let ways: Vec<Way> = Way::ALL
        .into_iter()
        .filter(|&w| w != Way::Pipe || bench.aws.is_some())
        .collect();
    match &bench.aws {
        Some(v) => println!("pipe: {v} (aws s3 cp -: 8 MiB parts, its default checksums)"),
        None => println!(
            "pipe: left out, no `aws` CLI runs here (pip install awscli, or the distribution's \
             awscli package, adds it)"
        ),
    }

    let db = "bench_backup";
    println!("generating ~{size_mib} MiB of custom-format dump ...");
    let g = bench.generate(db, size_mib)?;
    println!(
        "data: {} rows (id, 2 ints, char(84) blank filler, md5 text, {RANDOM_BYTES_PER_ROW} \
         random bytes from gen_random_bytes) generated in {:.1} s (2 sessions, {BATCH_ROWS}-row \
         batches, then primary key, vacuum freeze analyze, checkpoint); pg_database_size {:.0} MiB",
        g.rows,
        g.secs,
        mib(g.database_bytes)
    );

    // Warm-up: caches, Garage's first writes, the child binary's pages.
    let warm_floor = bench.measure(db, Way::Floor)?;
    let warm_ours = bench.measure(db, Way::Ours)?;
    println!(
        "warm-up (untimed): floor {:.2} s, ours {:.2} s",
        warm_floor.secs, warm_ours.secs
    );
    println!("runs: {runs} timed rounds, each running every way once, interleaved");

    let mut samples: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    for i in 1..=runs {
        let mut line = format!("  round {i}:");
        for &way in &ways {
            let s = bench.measure(db, way)?;
            write!(line, " {} {:.2} s", way.tag(), s.secs)?;
            samples.entry(way.tag()).or_default().push(s);
        }
        println!("{line}");
    }

    let of = |way: Way| &samples[way.tag()];
    let secs = |way: Way| of(way).iter().map(|s| s.secs).collect::<Vec<_>>();
    let med = |way: Way| median(&secs(way));
    let cpu_med = |way: Way, f: fn(&Cpu) -> f64| {
        median(&of(way).iter().map(|s| f(&s.cpu)).collect::<Vec<_>>())
    };
    let ours_runs = |way: Way| {
        of(way)
            .iter()
            .filter_map(|s| s.ours.as_ref())
            .collect::<Vec<_>>()
    };
    let dump_bytes = ours_runs(Way::Ours)
        .first()
        .map(|r| r.report.dump_bytes)
        .unwrap_or(0);
    let zstd_size = ours_runs(Way::OursZstd)
        .first()
        .map(|r| r.report.size_bytes)
        .unwrap_or(0);
    let plain_bytes = of(Way::Service)
        .iter()
        .filter_map(|s| s.service.as_ref())
        .map(|s| s.file_bytes)
        .next()
        .unwrap_or(0);
    println!(
        "backup of {:.0} MiB (custom -Z0 dump; plain SQL {:.0} MiB; database {:.0} MiB), median \
         of {runs} runs; MiB/s of the custom dump; CPU seconds (medians) of the client side \
         (pg_dump, the provider process / the service's upload), the PostgreSQL server, Garage",
        mib(dump_bytes),
        mib(plain_bytes),
        mib(g.database_bytes)
    );
    for &way in &ways {
        let m = med(way);
        let (lo, hi) = min_max(&secs(way));
        println!(
            "  {:<60} {:>7.2} s (min {:.2}, max {:.2}) {:>6.0} MiB/s",
            way.label(),
            m,
            lo,
            hi,
            mib(dump_bytes) / m,
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "CPU seconds (medians): client (pg_dump, plus the provider process or the service's \
         upload) + PostgreSQL server + Garage = total; total / {cores} cores = the shortest wall \
         time this machine allows"
    );
    for &way in &ways {
        let (c, sv, ga) = (
            cpu_med(way, |c| c.client),
            cpu_med(way, |c| c.server),
            cpu_med(way, |c| c.garage),
        );
        let total = c + sv + ga;
        println!(
            "  {:<14} {c:>6.2} + {sv:>6.2} + {ga:>6.2} = {total:>6.2}  -> >= {:.2} s (wall {:.2} s)",
            way.tag(),
            total / cores,
            med(way)
        );
    }
    let o = ours_runs(Way::Ours);
    let split =
        |f: fn(&ChildReport) -> f64| median(&o.iter().map(|r| f(&r.report)).collect::<Vec<_>>());
    println!(
        "  ours' client CPU split (medians): provider process {:.2} s, pg_dump {:.2} s",
        split(|r| r.cpu_self),
        split(|r| r.cpu_pg_dump)
    );
    let svc_dump = median(
        &of(Way::Service)
            .iter()
            .filter_map(|s| s.service.as_ref())
            .map(|s| s.dump_secs)
            .collect::<Vec<_>>(),
    );
    println!(
        "  service by step (medians): pg_dump to the file {svc_dump:.2} s, upload {:.2} s \
         (deleting the file is not timed)",
        med(Way::Service) - svc_dump
    );
    println!(
        "  zstd stores {:.0} MiB of {:.0} MiB ({:.2}:1)",
        mib(zstd_size),
        mib(dump_bytes),
        dump_bytes as f64 / zstd_size.max(1) as f64
    );

    let (f, ours, service) = (med(Way::Floor), med(Way::Ours), med(Way::Service));
    let vs_floor = ours / f;
    let vs_service = ours / service;
    println!(
        "  ratio ours / floor:   {vs_floor:.2}x  (goal <= {GOAL_VS_FLOOR}x: {})",
        met(vs_floor <= GOAL_VS_FLOOR)
    );
    println!(
        "  ratio ours / service: {vs_service:.2}x  (goal <= {GOAL_VS_SERVICE}x: {})",
        met(vs_service <= GOAL_VS_SERVICE)
    );
    if bench.aws.is_some() {
        let pipe = med(Way::Pipe);
        let vs_pipe = ours / pipe;
        println!(
            "  ratio ours / pipe:    {vs_pipe:.2}x  (goal <= {GOAL_VS_PIPE}x: {})",
            met(vs_pipe <= GOAL_VS_PIPE)
        );
        emit_row(
            "backup",
            "ours / pipe",
            &format!("{ours:.2} s (backup engine into Garage)"),
            &format!("{pipe:.2} s (pg_dump -Fc -Z0 | aws s3 cp -)"),
            &format!("{vs_pipe:.2}x"),
            &format!("<= {GOAL_VS_PIPE}x"),
            met(vs_pipe <= GOAL_VS_PIPE),
        )?;
    }
    let gib = dump_bytes as f64 / (1024.0 * 1024.0 * 1024.0);
    let per_gib = split(|r| r.cpu_self) / gib.max(f64::MIN_POSITIVE);
    println!(
        "  provider process CPU (user+sys) per GiB dumped: {per_gib:.2} s  (goal <= \
         {GOAL_CPU_PER_GIB} s: {})",
        met(per_gib <= GOAL_CPU_PER_GIB)
    );
    emit_row(
        "backup",
        "provider CPU per GiB",
        &format!("{per_gib:.2} CPU-s (median of the ours runs)"),
        "- (an absolute bound)",
        "-",
        &format!("<= {GOAL_CPU_PER_GIB} CPU-s"),
        met(per_gib <= GOAL_CPU_PER_GIB),
    )?;
    let ours_text = format!(
        "{ours:.2} s (backup engine into Garage, {:.0} MiB dump)",
        mib(dump_bytes)
    );
    emit_row(
        "backup",
        "ours / floor",
        &ours_text,
        &format!("{f:.2} s (pg_dump -Fc -Z0 > /dev/null)"),
        &format!("{vs_floor:.2}x"),
        &format!("<= {GOAL_VS_FLOOR}x"),
        met(vs_floor <= GOAL_VS_FLOOR),
    )?;
    emit_row(
        "backup",
        "ours / service",
        &ours_text,
        &format!("{service:.2} s (service: plain pg_dump to a file, then upload)"),
        &format!("{vs_service:.2}x"),
        &format!("<= {GOAL_VS_SERVICE}x"),
        met(vs_service <= GOAL_VS_SERVICE),
    )?;
    println!(
        "  for information: ours+verify / floor {:.2}x, ours-zstd / floor {:.2}x, service / \
         floor {:.2}x",
        med(Way::OursVerify) / f,
        med(Way::OursZstd) / f,
        service / f
    );
    let (on, sn) = (med(Way::OursNull), med(Way::ServiceNull));
    println!(
        "  diagnostic, into the null S3 (no object store's CPU on this machine): ours->null / \
         floor {:.2}x (the goal's bound: {GOAL_VS_FLOOR}x), ours->null / service->null {:.2}x \
         ({GOAL_VS_SERVICE}x)",
        on / f,
        on / sn
    );

    // Fixed costs: the same on an empty database (no rows; pg_dump still writes its TOC).
    let empty = "bench_empty";
    bench
        .pg
        .create_database(empty)
        .map_err(|e| err(e.to_string()))?;
    let (mut ef, mut eo) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ef.push(bench.measure(empty, Way::Floor)?.secs);
        eo.push(bench.measure(empty, Way::Ours)?.secs);
    }
    bench.drop_database(empty)?;
    println!(
        "  fixed costs (an empty database, median of {runs}): floor {:.0} ms, ours {:.0} ms \
         (pg_dump --version, connect, snapshot, parity counts, stale-upload listing, upload \
         create/complete, manifest)",
        median(&ef) * 1000.0,
        median(&eo) * 1000.0
    );

    // Peak RSS.
    let (hwm, hwm_lo, time_max, before) = rss_of(&o);
    println!(
        "peak RSS of ours (the child process running backup::run, {} runs at {:.0} MiB): VmHWM \
         max {hwm:.1} MiB (min {hwm_lo:.1}; VmRSS before the call {before:.1}); GNU time %M (it \
         or pg_dump, the larger) max {time_max:.1} MiB",
        o.len(),
        mib(dump_bytes)
    );
    for way in [Way::OursVerify, Way::OursZstd] {
        let (h, _, _, _) = rss_of(&ours_runs(way));
        println!("  {}: VmHWM max {h:.1} MiB", way.tag());
    }
    println!(
        "  peak RSS <= {GOAL_RSS_MIB} MiB at {size_mib} MiB: {}",
        met(hwm <= GOAL_RSS_MIB)
    );
    emit_row(
        "backup",
        &format!("peak RSS at {size_mib} MiB"),
        &format!(
            "{hwm:.1} MiB (VmHWM of the backup process, max of {} runs)",
            o.len()
        ),
        "- (an absolute bound)",
        "-",
        &format!("<= {GOAL_RSS_MIB} MiB"),
        met(hwm <= GOAL_RSS_MIB),
    )?;
    match sizes {
        None => println!(
            "  growth with size: not measured in this run (set BENCH_SIZES, e.g. \
             BENCH_SIZES=1024,4096, to measure the peak at several sizes)"
        ),
        Some(sizes) => {
            let mut per_size: Vec<(u64, f64, f64)> = Vec::new();
            if sizes.iter().any(|&s| s != size_mib) {
                bench.drop_database(db)?;
            }
            for &s in &sizes {
                if s == size_mib {
                    per_size.push((s, hwm, time_max));
                    continue;
                }
                let sdb = format!("bench_backup_{s}");
                let g = bench.generate(&sdb, s)?;
                let mut rs = Vec::new();
                for _ in 0..runs {
                    rs.push(bench.ours(&sdb, Compression::None, false, Target::Garage)?);
                }
                bench.drop_database(&sdb)?;
                let refs: Vec<&OursRun> = rs.iter().collect();
                let (h, _, t, _) = rss_of(&refs);
                let secs = median(&rs.iter().map(|r| r.report.secs).collect::<Vec<_>>());
                println!(
                    "  at {s} MiB ({:.0} MiB dumped, database {:.0} MiB, generated in {:.1} s): \
                     VmHWM max {h:.1} MiB, GNU time %M max {t:.1} MiB, ours {secs:.2} s median \
                     of {runs}",
                    mib(rs[0].report.dump_bytes),
                    mib(g.database_bytes),
                    g.secs
                );
                per_size.push((s, h, t));
            }
            let mut line = String::from("  peak RSS (VmHWM) by size:");
            for (s, h, _) in &per_size {
                write!(line, " {s} MiB -> {h:.1} MiB;")?;
            }
            println!("{}", line.trim_end_matches(';'));
            let all_under = per_size.iter().all(|&(_, h, _)| h <= GOAL_RSS_MIB);
            println!(
                "  peak RSS <= {GOAL_RSS_MIB} MiB at every size: {}",
                met(all_under)
            );
            let sizes_text = per_size
                .iter()
                .map(|(s, _, _)| s.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let worst = per_size.iter().map(|&(_, h, _)| h).fold(0.0, f64::max);
            emit_row(
                "backup",
                &format!("peak RSS at every size ({sizes_text} MiB)"),
                &format!("{worst:.1} MiB (largest VmHWM of the sizes)"),
                "- (an absolute bound)",
                "-",
                &format!("<= {GOAL_RSS_MIB} MiB"),
                met(all_under),
            )?;
            if let (Some(first), Some(last)) = (per_size.first(), per_size.last())
                && first.0 != last.0
            {
                // Rounded to the printed 0.1 MiB, and never "-0.0".
                let growth = ((last.1 - first.1) * 10.0).round() / 10.0 + 0.0;
                let tolerance = GROWTH_TOLERANCE_MIB.max(first.1 * GROWTH_TOLERANCE_FRACTION);
                println!(
                    "  not growing with size: {} -> {} MiB grows the peak by {growth:+.1} MiB \
                     (tolerance {tolerance:.1} MiB: {})",
                    first.0,
                    last.0,
                    met(growth <= tolerance)
                );
                emit_row(
                    "backup",
                    &format!("peak RSS growth, {} -> {} MiB", first.0, last.0),
                    &format!("{growth:+.1} MiB ({:.1} -> {:.1} MiB)", first.1, last.1),
                    "- (an absolute bound)",
                    "-",
                    &format!("<= +{tolerance:.1} MiB"),
                    met(growth <= tolerance),
                )?;
            } else {
                println!("  growth with size: BENCH_SIZES names one size; nothing to compare");
            }
        }
    }
    println!(
        "note: PostgreSQL runs with fsync=off and Garage without fsync, both on this machine: \
         absolute times are this machine's; the ratios are the result"
    );
    Ok(())
}
