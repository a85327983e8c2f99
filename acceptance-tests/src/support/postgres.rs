//! A throw-away PostgreSQL cluster (initdb + pg_ctl run as the `postgres` user, since initdb
//! refuses to run as root), on a free port of 127.0.0.1, in a temporary directory that is
//! removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

pub const PG_USER: &str = "postgres";
pub const PG_PASSWORD: &str = "testpass";

/// The directory holding `initdb`/`pg_ctl`: `$PGBIN`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("PGBIN") {
        return Ok(PathBuf::from(p));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (is the postgresql package installed?)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .context("no /usr/lib/postgresql/*/bin/initdb found")
}

fn run_as_user() -> String {
    std::env::var("RUNAS").unwrap_or_else(|_| "postgres".into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run a command as the cluster owner (via `runuser` when we are root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg(run_as_user()).arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn check(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A running throw-away PostgreSQL server. Superuser `postgres`, password [`PG_PASSWORD`].
pub struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

impl PgServer {
    /// initdb + start on a free port (≈0.6 s).
    pub fn start() -> Result<PgServer> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("af-pg-")
            .tempdir_in("/tmp")
            .context("create temp dir")?;
        let base = dir.path();
        std::fs::write(base.join("pwfile"), PG_PASSWORD)?;
        if is_root() {
            check(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{}:", run_as_user()))
                    .arg(base)
                    .output()?,
                "chown",
            )?;
        }
        check(
            as_owner(&bin.join("initdb"))
                .arg("-D")
                .arg(base.join("data"))
                .args(["-U", PG_USER])
                .arg(format!("--pwfile={}", base.join("pwfile").display()))
                .args([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ])
                .output()?,
            "initdb",
        )?;
        let port = super::free_port()?;
        let pg = PgServer { dir, port, bin };
        pg.start_again()?;
        Ok(pg)
    }

    /// Start the (stopped) server again on the same port with the same data.
    pub fn start_again(&self) -> Result<()> {
        let base = self.dir.path();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            base.display()
        );
        check(
            as_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(base.join("data"))
                .arg("-l")
                .arg(base.join("server.log"))
                .args(["-w", "-t", "30", "-o", &opts, "start"])
                .stdout(Stdio::null())
                .output()?,
            "pg_ctl start",
        )?;
        Ok(())
    }

    /// Stop the server (fast mode), keeping its data; see [`PgServer::start_again`].
    pub fn stop(&self) -> Result<()> {
        check(
            as_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "fast", "-w", "stop"])
                .output()?,
            "pg_ctl stop",
        )?;
        Ok(())
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn user(&self) -> &'static str {
        PG_USER
    }
    pub fn password(&self) -> &'static str {
        PG_PASSWORD
    }
    /// The temporary directory (data dir is `<dir>/data`, log `<dir>/server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The postmaster's pid (the first line of `postmaster.pid`), while the server runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `postgres://postgres:testpass@127.0.0.1:PORT/DB` (for psql, sqlx, db-migrate.sh).
    pub fn database_url(&self, db: &str) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Npgsql form for `ConnectionStrings__Postgres`.
    pub fn npgsql_connection_string(&self, db: &str) -> String {
        format!(
            "Host=127.0.0.1;Port={};Username={PG_USER};Password={PG_PASSWORD};Database={db}",
            self.port
        )
    }

    /// `psql -v ON_ERROR_STOP=1 -X -q -tA -c SQL` against `db`; returns trimmed stdout.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = check(
            Command::new("psql")
                .arg(self.database_url(db))
                .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA", "-c", sql])
                .output()
                .context("run psql")?,
            "psql",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `psql -f FILE` against `db`.
    pub fn psql_file(&self, db: &str, file: &Path) -> Result<String> {
        let out = check(
            Command::new("psql")
                .arg(self.database_url(db))
                .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-f"])
                .arg(file)
                .output()
                .context("run psql")?,
            "psql -f",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `create database NAME` (name must be a plain identifier).
    pub fn create_database(&self, name: &str) -> Result<()> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("unsafe database name {name:?}");
        }
        self.psql("postgres", &format!("create database {name}"))?;
        Ok(())
    }

    /// Create `name`, apply `testbed/migrations` with `testbed/db-migrate.sh`, return its URL.
    pub fn create_migrated_database(&self, name: &str) -> Result<String> {
        self.create_database(name)?;
        let url = self.database_url(name);
        let out = run_db_migrate(&url, &super::migrations_dir())?;
        check(out, "db-migrate.sh")?;
        Ok(url)
    }

    /// Load `testbed/seed.sql` into `db`.
    pub fn seed(&self, db: &str) -> Result<()> {
        self.psql_file(db, &super::testbed_dir().join("seed.sql"))?;
        Ok(())
    }

    /// The server log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Run `testbed/db-migrate.sh DATABASE_URL DIR` and return its output (not checked).
pub fn run_db_migrate(database_url: &str, dir: &Path) -> Result<Output> {
    Command::new("bash")
        .arg(super::testbed_dir().join("db-migrate.sh"))
        .arg(database_url)
        .arg(dir)
        .output()
        .context("run db-migrate.sh")
}
