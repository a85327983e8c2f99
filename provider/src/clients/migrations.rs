//! The service's SQL migrations: read the directory, read the database's ledger, plan, apply
//! each pending file exactly once.
//!
//! # Compatibility with the service
//! The ledger is the service's own table, used untouched:
//! `schema_migrations(version text primary key, applied_at timestamptz not null default now())`,
//! `version` = the file name including `.sql`, files applied in file-name (byte) order. Everything
//! more (checksums, who applied, timings, the dirty marker) lives in our sidecar table
//! [`SIDECAR_TABLE`] ([`SIDECAR_DDL`]). A database migrated by the service's own script (ledger
//! rows, no sidecar rows) is up to date: its versions are *adopted* (sidecar rows with source
//! `adopted` and the current files' checksums), never re-run.
//!
//! # Files
//! `NNNN_name.sql` (see [`load_dir`]). Directives in the leading `--` comment lines:
//! `-- artifortress:class A|B|C` (default A) and `-- artifortress:no-transaction`.
//! The checksum is the lowercase hex sha256 of the content with CRLF normalised to LF, so a
//! line-ending-only change is not an edit.
//!
//! # Exactly once
//! [`Migrator::apply`] works on one PostgreSQL session. It takes the session advisory lock
//! [`LOCK_KEY`] by *polling* `pg_try_advisory_lock` (a waiter blocked in `pg_advisory_lock`
//! would deadlock with a `CREATE INDEX CONCURRENTLY` run by the holder: flyway#1654,
//! golang-migrate#960, matrix-authentication-service#5298), re-reads the ledger under the lock
//! and re-plans, then runs each pending file:
//! - transactional (the default): one transaction holding the file, its ledger row and its
//!   sidecar row; a failure leaves nothing of the file;
//! - `no-transaction`: the sidecar row is committed first with `dirty = true`, the file's
//!   statements run one by one outside a transaction, then the ledger row and the cleared flag
//!   are committed together; a failure leaves the marker, which the next [`plan`] reports as
//!   [`PlanProblem::Dirty`]. Such files are split at top-level `;` (quotes, comments and dollar
//!   quotes respected; SQL-standard `BEGIN ATOMIC` bodies are not supported there).
//!
//! The lock is released at the end, and by the server if the session dies.
//! No statement or lock timeout is set unless asked ([`Migrator::set_session_timeouts`]):
//! migrations can be long.
//!
//! Database URLs are only ever shown through [`redact_url`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio_util::sync::CancellationToken;

use super::pg::{InvalidUrl, redact_url, scrub};

/// The service's ledger table (never altered by us).
pub const LEDGER_TABLE: &str = "schema_migrations";
/// Exactly the service's DDL for the ledger.
pub const LEDGER_DDL: &str = "create table if not exists schema_migrations (
  version text primary key,
  applied_at timestamptz not null default now()
)";
/// Our sidecar table: one row per version we know more about than the ledger does.
pub const SIDECAR_TABLE: &str = "artifortress_migrations_log";
/// The sidecar's DDL. `source` is one of [`SOURCE_TERRAFORM`], [`SOURCE_ADOPTED`],
/// [`SOURCE_BASELINE`], [`SOURCE_ACCEPTED`].
pub const SIDECAR_DDL: &str = "create table if not exists artifortress_migrations_log (
  version text primary key,
  checksum text not null,
  source text not null check (source in ('terraform', 'adopted', 'baseline', 'accepted')),
  applied_by text not null,
  execution_ms bigint,
  dirty boolean not null default false,
  recorded_at timestamptz not null default now()
)";
/// Applied by us.
pub const SOURCE_TERRAFORM: &str = "terraform";
/// In the ledger without a sidecar row: applied by the service's own script; checksum of the
/// file as it was when we first saw the version.
pub const SOURCE_ADOPTED: &str = "adopted";
/// Marked applied, never run, by a baseline on a database without ledger.
pub const SOURCE_BASELINE: &str = "baseline";
/// An edited applied file whose new checksum was explicitly accepted.
pub const SOURCE_ACCEPTED: &str = "accepted";

/// `application_name` of our sessions (shows in `pg_stat_activity`, and in [`LockHolder`]).
pub const APPLICATION_NAME: &str = "terraform-provider-artifortress";

/// The string the advisory-lock key is derived from.
pub const LOCK_KEY_NAME: &str = "terraform-provider-artifortress/migrations";
/// The session advisory-lock key: the first 8 bytes of sha256([`LOCK_KEY_NAME`]) as a
/// big-endian i64 (`0x6d77d1ed70e2a9be`). Advisory locks are per database, so one constant
/// key serialises migrations of one database only. In `pg_locks` it shows as
/// `locktype = 'advisory', classid = 1836569069, objid = 1893902782, objsubid = 1`.
pub const LOCK_KEY: i64 = 7_888_004_090_094_070_206;

/// How often a waiting apply retries `pg_try_advisory_lock` (plus up to 50 ms of jitter).
const LOCK_POLL: Duration = Duration::from_millis(200);

/// The remediation shown for a dirty version.
fn dirty_remediation(version: &str) -> String {
    format!(
        "Migration {version} runs outside a transaction (-- artifortress:no-transaction) and did \
         not finish: some of its statements may have taken effect. Inspect the database before \
         retrying:\n\
         1. A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind; list them with\n   \
            select indexrelid::regclass from pg_index where not indisvalid;\n   \
            and drop each with DROP INDEX CONCURRENTLY <name>.\n\
         2. To run the file again (its statements should be re-runnable, e.g. IF NOT EXISTS), \
         remove the marker:\n   \
            delete from {SIDECAR_TABLE} where version = '{v}' and dirty;\n\
         3. If the file did complete, record it instead:\n   \
            insert into {LEDGER_TABLE} (version) values ('{v}');\n   \
            update {SIDECAR_TABLE} set dirty = false where version = '{v}';",
        v = version.replace('\'', "''"),
    )
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// Everything that can go wrong. Database URLs in here are always redacted.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot read the migration directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the migration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "migration file {file:?} in {dir} is not named like NNNN_name.sql (digits, an underscore, \
         then letters, digits, '_', '.' or '-', ending in .sql)"
    )]
    BadFileName { dir: PathBuf, file: String },
    #[error("{file}, line {line}: {message}")]
    BadDirective {
        file: String,
        line: usize,
        message: String,
    },
    #[error("invalid database URL {url}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("could not connect to {url}: {message}{}", sqlstate_suffix(sqlstate))]
    Connect {
        url: String,
        sqlstate: Option<String>,
        message: String,
    },
    #[error("could not connect to {url}: no connection within {}", crate::duration::format(*timeout))]
    ConnectTimeout { url: String, timeout: Duration },
    /// A bookkeeping query (reading the ledger, taking the lock, recording rows) failed.
    #[error("{what} failed on {url}: {message}{}", sqlstate_suffix(sqlstate))]
    Database {
        url: String,
        what: &'static str,
        sqlstate: Option<String>,
        message: String,
    },
    #[error(
        "{url}: table {LEDGER_TABLE} exists but is not the service's ledger (version text, \
         applied_at timestamptz); its columns are: {columns}. Another migration tool (e.g. \
         golang-migrate, whose table has the same name) may own this database"
    )]
    ForeignLedger { url: String, columns: String },
    /// A migration file failed (its SQL, or recording it).
    #[error("{0}")]
    MigrationFailed(Box<MigrationFailure>),
    #[error(
        "the migration lock (advisory lock {LOCK_KEY}) on {url} was not free within {waited:?}; {}",
        match holder { Some(h) => format!("it is held by {h}"), None => "its holder is not visible to this user".to_string() }
    )]
    LockTimeout {
        url: String,
        waited: Duration,
        holder: Option<Box<LockHolder>>,
    },
    /// Re-planning under the lock found problems.
    #[error(
        "migrations on {url} cannot be applied: {}",
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
    )]
    Plan {
        url: String,
        problems: Vec<PlanProblem>,
    },
    /// Cancelled before the lock was taken or between two files; `report` says what ran.
    #[error(
        "applying migrations on {url} was cancelled after {} file(s)",
        report.applied.len()
    )]
    Cancelled {
        url: String,
        report: Box<ApplyReport>,
    },
}

fn sqlstate_suffix(sqlstate: &Option<String>) -> String {
    match sqlstate {
        Some(s) => format!(" (SQLSTATE {s})"),
        None => String::new(),
    }
}

/// Details of [`MigrationError::MigrationFailed`].
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationFailure {
    /// Redacted.
    pub url: String,
    pub version: String,
    pub path: PathBuf,
    /// Line in the file where PostgreSQL placed the error, if it gave a position.
    pub line: Option<usize>,
    pub sqlstate: Option<String>,
    /// PostgreSQL's message (or the driver's, e.g. for a lost connection).
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// True: the file's transaction was rolled back, nothing remains. False: the file ran
    /// outside a transaction and its version is left marked dirty.
    pub transactional: bool,
}

impl fmt::Display for MigrationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_failure(self))
    }
}

fn describe_failure(e: &MigrationFailure) -> String {
    let MigrationFailure {
        url,
        version,
        path,
        line,
        sqlstate,
        message,
        detail,
        hint,
        transactional,
    } = e;
    let mut s = format!("migration {version} failed on {url}");
    if let Some(line) = line {
        s.push_str(&format!(" at line {line}"));
    }
    s.push_str(&format!(": {message}{}", sqlstate_suffix(sqlstate)));
    if let Some(d) = detail {
        s.push_str(&format!("; detail: {d}"));
    }
    if let Some(h) = hint {
        s.push_str(&format!("; hint: {h}"));
    }
    s.push_str(&format!(" (file {})", path.display()));
    if *transactional {
        s.push_str(
            ". Its transaction was rolled back: nothing of the file remains and it is not recorded",
        );
    } else {
        s.push_str(&format!(
            ". It ran outside a transaction: statements before the failing one stay applied and \
             the version is marked dirty in {SIDECAR_TABLE}. {}",
            dirty_remediation(version)
        ));
    }
    s
}

/// The session holding the migration lock, as `pg_stat_activity` tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub user: Option<String>,
    pub client_addr: Option<String>,
    /// When the holding session connected (when it took the lock is not recorded by PostgreSQL).
    pub backend_start: Option<DateTime<Utc>>,
    pub state: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " (application_name {:?})", self.application_name)?;
        }
        if let Some(u) = &self.user {
            write!(f, ", user {u}")?;
        }
        if let Some(a) = &self.client_addr {
            write!(f, ", from {a}")?;
        }
        if let Some(t) = &self.backend_start {
            write!(f, ", connected since {}", t.to_rfc3339())?;
        }
        if let Some(s) = &self.state {
            write!(f, ", state {s}")?;
        }
        Ok(())
    }
}

fn sqlstate_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// PostgreSQL's message alone for server errors, sqlx's description otherwise.
fn message_of(e: &sqlx::Error) -> String {
    super::words::pg_error_words(e)
}

// ------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------

/// Migration class (`-- artifortress:class`): A expand-only, B expand + backfill,
/// C contract (maintenance window; rollback means restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MigrationClass {
    #[default]
    A,
    B,
    C,
}

impl fmt::Display for MigrationClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationClass::A => "A",
            MigrationClass::B => "B",
            MigrationClass::C => "C",
        })
    }
}

/// One `*.sql` file of the migration directory.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationFile {
    /// The file name including `.sql` (the ledger's `version`).
    pub version: String,
    pub path: PathBuf,
    pub class: MigrationClass,
    /// False when the file says `-- artifortress:no-transaction`.
    pub transactional: bool,
    /// Lowercase hex sha256 of the content with CRLF normalised to LF.
    pub checksum: String,
    /// The file's text, as read.
    pub sql: String,
}

impl MigrationFile {
    /// Build from a file name and its content (validates the name and the directives).
    pub fn parse(
        version: &str,
        path: PathBuf,
        sql: String,
    ) -> Result<MigrationFile, MigrationError> {
        if !valid_file_name(version) {
            return Err(MigrationError::BadFileName {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                file: version.to_string(),
            });
        }
        let (class, transactional) = parse_directives(version, &sql)?;
        Ok(MigrationFile {
            version: version.to_string(),
            path,
            class,
            transactional,
            checksum: checksum(&sql),
            sql,
        })
    }
}

/// Lowercase hex sha256 of `sql` with CRLF normalised to LF.
pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.replace("\r\n", "\n").as_bytes()))
}

/// `^[0-9]+_[A-Za-z0-9_.-]+\.sql$`
pub fn valid_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".sql") else {
        return false;
    };
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let Some(rest) = stem[digits..].strip_prefix('_') else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Directives in the leading comment lines (blank lines allowed among them).
fn parse_directives(file: &str, sql: &str) -> Result<(MigrationClass, bool), MigrationError> {
    let mut class: Option<(MigrationClass, usize)> = None;
    let mut no_transaction: Option<usize> = None;
    let bad = |line: usize, message: String| MigrationError::BadDirective {
        file: file.to_string(),
        line,
        message,
    };
    for (idx, line) in sql.trim_start_matches('\u{feff}').lines().enumerate() {
        let lineno = idx + 1;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let Some(comment) = t.strip_prefix("--") else {
            break;
        };
        let Some(directive) = comment.trim().strip_prefix("artifortress:") else {
            continue;
        };
        let mut words = directive.split_whitespace();
        match words.next() {
            Some("class") => {
                let args: Vec<&str> = words.collect();
                let c = match args.as_slice() {
                    ["A"] => MigrationClass::A,
                    ["B"] => MigrationClass::B,
                    ["C"] => MigrationClass::C,
                    _ => {
                        return Err(bad(
                            lineno,
                            format!(
                                "`-- artifortress:class` takes exactly one of A, B or C, found {:?}",
                                args.join(" ")
                            ),
                        ));
                    }
                };
                if let Some((_, first)) = class {
                    return Err(bad(
                        lineno,
                        format!("a second `-- artifortress:class` (the first is on line {first})"),
                    ));
                }
                class = Some((c, lineno));
            }
            Some("no-transaction") => {
                if words.next().is_some() {
                    return Err(bad(
                        lineno,
                        "`-- artifortress:no-transaction` takes no argument".to_string(),
                    ));
                }
                if let Some(first) = no_transaction {
                    return Err(bad(
                        lineno,
                        format!(
                            "a second `-- artifortress:no-transaction` (the first is on line {first})"
                        ),
                    ));
                }
                no_transaction = Some(lineno);
            }
            other => {
                return Err(bad(
                    lineno,
                    format!(
                        "unknown directive `artifortress:{}` (known: `artifortress:class A|B|C`, \
                         `artifortress:no-transaction`)",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok((
        class.map(|(c, _)| c).unwrap_or_default(),
        no_transaction.is_none(),
    ))
}

/// The `*.sql` files of `dir` (not recursive), in file-name (byte) order.
pub fn load_dir(dir: &Path) -> Result<Vec<MigrationFile>, MigrationError> {
    let read_dir_err = |source| MigrationError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
        let entry = entry.map_err(read_dir_err)?;
        let name = entry.file_name();
        let lossy = name.to_string_lossy();
        if !lossy.ends_with(".sql") {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a linked file counts, a directory named *.sql does not.
        if !path.is_file() {
            continue;
        }
        match name.to_str() {
            Some(n) if valid_file_name(n) => names.push((n.to_string(), path)),
            _ => {
                return Err(MigrationError::BadFileName {
                    dir: dir.to_path_buf(),
                    file: lossy.into_owned(),
                });
            }
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for (name, path) in names {
        let sql = std::fs::read_to_string(&path).map_err(|source| MigrationError::ReadFile {
            path: path.clone(),
            source,
        })?;
        files.push(MigrationFile::parse(&name, path, sql)?);
    }
    Ok(files)
}

/// Split SQL at top-level `;`, respecting `'…'`, `E'…'`, `"…"`, `$tag$…$tag$`, `--` and
/// (nested) `/* */` comments. Returns each statement with its byte offset; pieces holding only
/// whitespace and comments are dropped.
fn split_statements(sql: &str) -> Vec<(usize, &str)> {
    fn ident(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
    }
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut has_code, mut i) = (0usize, false, 0usize);
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            q @ (b'\'' | b'"') => {
                has_code = true;
                let backslash = q == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !(ident(b[i - 1]) || b[i - 1] == b'$') => {
                has_code = true;
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                let tag_ok =
                    j < b.len() && b[j] == b'$' && !(j > i + 1 && b[i + 1].is_ascii_digit());
                if tag_ok {
                    let tag = &sql[i..=j];
                    i = match sql[j + 1..].find(tag) {
                        Some(k) => j + 1 + k + tag.len(),
                        None => b.len(),
                    };
                } else {
                    i += 1;
                }
            }
            b';' => {
                if has_code {
                    out.push((start, &sql[start..i]));
                }
                i += 1;
                start = i;
                has_code = false;
            }
            c => {
                if !c.is_ascii_whitespace() {
                    has_code = true;
                }
                i += 1;
            }
        }
    }
    if has_code {
        out.push((start, &sql[start..]));
    }
    out
}

/// The 1-based line of `sql` holding PostgreSQL's 1-based character `position` in the
/// statement that starts at byte `offset`.
fn line_of(sql: &str, offset: usize, position: usize) -> usize {
    let stmt = &sql[offset..];
    let bytes: usize = stmt
        .chars()
        .take(position.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    sql[..offset + bytes].matches('\n').count() + 1
}

// ------------------------------------------------------------------------------------------
// Database view
// ------------------------------------------------------------------------------------------

/// One version the database knows about.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedVersion {
    pub version: String,
    /// The ledger's `applied_at`; for a dirty version (no ledger row) the sidecar's
    /// `recorded_at`, i.e. when the attempt started.
    pub applied_at: DateTime<Utc>,
    /// From our sidecar; `None` when the service's script applied it and we never adopted it.
    pub checksum: Option<String>,
    /// The sidecar's `source` (`terraform`, `adopted`, `baseline`, `accepted`).
    pub source: Option<String>,
    /// A `no-transaction` file that started and did not finish: not in the ledger.
    pub dirty: bool,
}

/// What the database says, read without changing anything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatabaseView {
    pub ledger_exists: bool,
    pub sidecar_exists: bool,
    /// Ledger versions (with sidecar details) and dirty versions, in version order.
    pub applied: Vec<AppliedVersion>,
    /// Any table, view, sequence… outside the system schemas, other than the ledger and the
    /// sidecar and objects owned by extensions.
    pub has_user_tables: bool,
}

impl DatabaseView {
    /// The greatest applied (not dirty) version.
    pub fn head(&self) -> Option<&str> {
        self.applied
            .iter()
            .filter(|a| !a.dirty)
            .map(|a| a.version.as_str())
            .max()
    }

    /// True when the ledger is missing or holds no version (a baseline is then possible).
    fn ledger_empty(&self) -> bool {
        !self.applied.iter().any(|a| !a.dirty)
    }
}

// ------------------------------------------------------------------------------------------
// Planning
// ------------------------------------------------------------------------------------------

/// A file that an apply will run.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMigration {
    pub version: String,
    pub class: MigrationClass,
    pub checksum: String,
    pub transactional: bool,
}

/// What an apply will do. Versions are file names including `.sql`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MigrationPlan {
    /// Files to run, in order.
    pub pending: Vec<PendingMigration>,
    /// (version, checksum): ledger rows without sidecar rows (the service's own script applied
    /// them); recorded as `adopted`, not run.
    pub adopt: Vec<(String, String)>,
    /// (version, new checksum): edited applied files whose checksum is accepted.
    pub accept: Vec<(String, String)>,
    /// The baseline version, when the database has no ledger rows and a baseline was given.
    pub baseline: Option<String>,
    /// (version, checksum): the files up to and including `baseline`, recorded as applied
    /// (source `baseline`) without running.
    pub baselined: Vec<(String, String)>,
    /// The ledger's head once the plan is applied.
    pub head_after: Option<String>,
}

impl MigrationPlan {
    /// True when an apply would change nothing at all (no file to run, nothing to record).
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.adopt.is_empty()
            && self.accept.is_empty()
            && self.baselined.is_empty()
    }
}

/// Why the migrations cannot be planned. [`PlanProblem::summary`] and [`PlanProblem::detail`]
/// are meant for a diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanProblem {
    /// An applied file's checksum changed.
    ChecksumMismatch {
        version: String,
        recorded: String,
        current: String,
    },
    /// A ledger version with no file.
    MissingFile { version: String },
    /// A `no-transaction` file that started and did not finish.
    Dirty { version: String },
    /// The target version is not a file.
    UnknownTarget {
        target: String,
        newest: Option<String>,
    },
    /// A non-empty database without ledger, and no baseline.
    BaselineNeeded { newest: Option<String> },
    /// The baseline version is not a file.
    UnknownBaseline { baseline: String },
    /// Class C (contract) files are pending and contract migrations are not allowed.
    ContractNotAllowed { versions: Vec<String> },
    /// Files are pending and the policy requires a backup first.
    BackupRequired { versions: Vec<String> },
}

impl PlanProblem {
    pub fn summary(&self) -> String {
        match self {
            PlanProblem::ChecksumMismatch { version, .. } => {
                format!("Migration {version} was edited after it was applied")
            }
            PlanProblem::MissingFile { version } => {
                format!("Applied migration {version} has no file")
            }
            PlanProblem::Dirty { version } => {
                format!("Migration {version} did not finish (dirty)")
            }
            PlanProblem::UnknownTarget { target, .. } => {
                format!("Target version {target} is not a migration file")
            }
            PlanProblem::BaselineNeeded { .. } => {
                "The database has tables but no migration ledger".to_string()
            }
            PlanProblem::UnknownBaseline { baseline } => {
                format!("Baseline version {baseline} is not a migration file")
            }
            PlanProblem::ContractNotAllowed { versions } => format!(
                "Contract (class C) migration{} not allowed: {}",
                if versions.len() == 1 { "" } else { "s" },
                versions.join(", ")
            ),
            PlanProblem::BackupRequired { .. } => {
                "A backup is required before migrating this database".to_string()
            }
        }
    }

    pub fn detail(&self) -> String {
        match self {
            PlanProblem::ChecksumMismatch {
                version,
                recorded,
                current,
            } => format!(
                "The sha256 of {version} (CRLF normalised to LF) is now {current}, but {recorded} \
                 was recorded when it was applied. Applied migrations must not change: restore the \
                 file. If the edit is deliberate and harmless (comments, formatting), accept it \
                 with the checksum override {version:?} = {current:?}."
            ),
            PlanProblem::MissingFile { version } => format!(
                "{LEDGER_TABLE} records {version}, but the migration directory has no such file. \
                 Applied migrations must never be deleted or renamed: restore the file, or check \
                 that the directory belongs to this database."
            ),
            PlanProblem::Dirty { version } => dirty_remediation(version),
            PlanProblem::UnknownTarget { target, newest } => format!(
                "Versions are file names including .sql; {target:?} is not one of the files{}.",
                newest
                    .as_ref()
                    .map(|n| format!(" (the newest is {n})"))
                    .unwrap_or_default()
            ),
            PlanProblem::BaselineNeeded { newest } => format!(
                "The database has no {LEDGER_TABLE} rows but already holds tables, so which \
                 migrations it reflects is unknown. Set a baseline version: the files up to and \
                 including it are recorded as applied without running, the later ones run{}.",
                newest
                    .as_ref()
                    .map(|n| format!(" (the newest file is {n})"))
                    .unwrap_or_default()
            ),
            PlanProblem::UnknownBaseline { baseline } => format!(
                "Versions are file names including .sql; {baseline:?} is not one of the files."
            ),
            PlanProblem::ContractNotAllowed { versions } => format!(
                "{} {} class C (`-- artifortress:class C`): it removes or narrows schema that \
                 the running release may still use, so it belongs after every instance runs a \
                 release that no longer needs it. Allow contract migrations explicitly for this \
                 change, or set a target version before it.",
                versions.join(", "),
                if versions.len() == 1 { "is" } else { "are" }
            ),
            PlanProblem::BackupRequired { versions } => format!(
                "In production, pending migrations ({}) run only after a backup: reference the \
                 backup taken for this change (e.g. an artifortress_backup's id).",
                versions.join(", ")
            ),
        }
    }
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The remediation is long; the summary plus checksums keeps messages readable.
            PlanProblem::Dirty { version } => write!(
                f,
                "{} (see the remediation for {version}: check for INVALID indexes with \
                 `select indexrelid::regclass from pg_index where not indisvalid`)",
                self.summary()
            ),
            _ => write!(f, "{}: {}", self.summary(), self.detail()),
        }
    }
}

/// The inputs of [`plan`] that come from configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanInputs {
    /// Apply up to and including this version; default: the newest file.
    pub target: Option<String>,
    /// On a database without ledger rows: record every file up to and including this one as
    /// applied (source `baseline`) without running it.
    pub baseline: Option<String>,
    /// version → checksum: accept an applied file's new checksum.
    pub accept_checksums: BTreeMap<String, String>,
    /// Class C (contract) files may run.
    pub allow_contract: bool,
    /// Refuse to run any file (the caller's policy requires a backup it does not have).
    pub require_backup: bool,
}

/// The policy checks of `inputs` on a plan: class C files without `allow_contract`, any file
/// while `require_backup`.
pub fn policy_problems(plan: &MigrationPlan, inputs: &PlanInputs) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let contract: Vec<String> = plan
        .pending
        .iter()
        .filter(|p| p.class == MigrationClass::C)
        .map(|p| p.version.clone())
        .collect();
    if !inputs.allow_contract && !contract.is_empty() {
        problems.push(PlanProblem::ContractNotAllowed { versions: contract });
    }
    if inputs.require_backup && !plan.pending.is_empty() {
        problems.push(PlanProblem::BackupRequired {
            versions: plan.pending.iter().map(|p| p.version.clone()).collect(),
        });
    }
    problems
}

/// Decide what an apply would do (pure: no I/O).
///
/// `files` must be in version order ([`load_dir`] returns them so).
pub fn plan(
    files: &[MigrationFile],
    view: &DatabaseView,
    target: Option<&str>,
    baseline: Option<&str>,
    accept_checksums: &BTreeMap<String, String>,
) -> Result<MigrationPlan, Vec<PlanProblem>> {
    let mut problems = Vec::new();
    let by_version: HashMap<&str, &MigrationFile> =
        files.iter().map(|f| (f.version.as_str(), f)).collect();
    let newest = files.iter().map(|f| f.version.clone()).max();
    let mut out = MigrationPlan::default();

    let target = match target {
        None => newest.clone(),
        Some(t) if by_version.contains_key(t) => Some(t.to_string()),
        Some(t) => {
            problems.push(PlanProblem::UnknownTarget {
                target: t.to_string(),
                newest: newest.clone(),
            });
            None
        }
    };
    if let Some(b) = baseline
        && !by_version.contains_key(b)
    {
        problems.push(PlanProblem::UnknownBaseline {
            baseline: b.to_string(),
        });
    }

    let mut applied: BTreeSet<&str> = BTreeSet::new();
    for a in &view.applied {
        if a.dirty {
            problems.push(PlanProblem::Dirty {
                version: a.version.clone(),
            });
            continue;
        }
        applied.insert(&a.version);
        let Some(file) = by_version.get(a.version.as_str()) else {
            problems.push(PlanProblem::MissingFile {
                version: a.version.clone(),
            });
            continue;
        };
        match &a.checksum {
            None => out.adopt.push((a.version.clone(), file.checksum.clone())),
            Some(recorded) if *recorded == file.checksum => {}
            Some(recorded) => {
                if accept_checksums.get(&a.version) == Some(&file.checksum) {
                    out.accept.push((a.version.clone(), file.checksum.clone()));
                } else {
                    problems.push(PlanProblem::ChecksumMismatch {
                        version: a.version.clone(),
                        recorded: recorded.clone(),
                        current: file.checksum.clone(),
                    });
                }
            }
        }
    }

    // A baseline only ever describes a database that already holds the schema: on an empty one
    // (say, a database that was reset) every file runs from the first, baseline or not.
    if view.ledger_empty() {
        match baseline {
            Some(_) if !view.has_user_tables => {}
            Some(b) if by_version.contains_key(b) => {
                out.baseline = Some(b.to_string());
                out.baselined = files
                    .iter()
                    .filter(|f| f.version.as_str() <= b)
                    .map(|f| (f.version.clone(), f.checksum.clone()))
                    .collect();
            }
            Some(_) => {} // UnknownBaseline already reported
            None if view.has_user_tables => {
                problems.push(PlanProblem::BaselineNeeded {
                    newest: newest.clone(),
                });
            }
            None => {}
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }

    let baselined: BTreeSet<&str> = out.baselined.iter().map(|(v, _)| v.as_str()).collect();
    if let Some(target) = &target {
        out.pending = files
            .iter()
            .filter(|f| f.version <= *target)
            .filter(|f| !applied.contains(f.version.as_str()))
            .filter(|f| !baselined.contains(f.version.as_str()))
            .map(|f| PendingMigration {
                version: f.version.clone(),
                class: f.class,
                checksum: f.checksum.clone(),
                transactional: f.transactional,
            })
            .collect();
    }
    out.head_after = applied
        .iter()
        .copied()
        .chain(baselined.iter().copied())
        .chain(out.pending.iter().map(|p| p.version.as_str()))
        .max()
        .map(str::to_string);
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Applying
// ------------------------------------------------------------------------------------------

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApplyReport {
    /// (version, execution_ms), in order.
    pub applied: Vec<(String, u64)>,
    pub adopted: Vec<String>,
    pub accepted: Vec<String>,
    pub baselined: Vec<String>,
    /// The ledger's head afterwards.
    pub head: Option<String>,
}

impl From<InvalidUrl> for MigrationError {
    fn from(e: InvalidUrl) -> Self {
        MigrationError::InvalidUrl {
            url: e.url,
            message: e.message,
        }
    }
}

impl MigrationError {
    /// The server refused the credentials: SQLSTATE class 28 (invalid authorization, e.g.
    /// `password authentication failed`, no password supplied).
    pub fn is_refused_credentials(&self) -> bool {
        matches!(self, MigrationError::Connect { sqlstate: Some(s), .. } if s.starts_with("28"))
    }
}

/// Ask the server to cancel whatever backend `pid` is running (`pg_cancel_backend`), over a
/// new session. A cancelled statement fails with SQLSTATE 57014 and its transaction rolls back.
pub async fn cancel_backend(
    url: &str,
    pid: i32,
    connect_timeout: Duration,
) -> Result<bool, MigrationError> {
    let mut side = Migrator::connect(url, connect_timeout).await?;
    let cancelled: bool = sqlx::query_scalar("select pg_cancel_backend($1)")
        .bind(pid)
        .fetch_one(&mut side.conn)
        .await
        .map_err(side.db_err("cancelling the running migration"))?;
    side.close().await;
    Ok(cancelled)
}

/// One PostgreSQL session that reads and applies migrations.
pub struct Migrator {
    conn: PgConnection,
    /// Redacted.
    url: String,
    /// The session's server process (for [`cancel_backend`]).
    pid: i32,
}

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator").field("url", &self.url).finish()
    }
}

impl Migrator {
    /// Connect (one session, `application_name` = [`APPLICATION_NAME`]).
    pub async fn connect(url: &str, connect_timeout: Duration) -> Result<Migrator, MigrationError> {
        let redacted = redact_url(url);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| MigrationError::InvalidUrl {
                url: redacted.clone(),
                message: scrub(&e.to_string(), url),
            })?
            .application_name(APPLICATION_NAME);
        let started = Instant::now();
        let conn =
            match tokio::time::timeout(connect_timeout, PgConnection::connect_with(&opts)).await {
                Err(_) => {
                    return Err(MigrationError::ConnectTimeout {
                        url: redacted,
                        timeout: connect_timeout,
                    });
                }
                Ok(Err(e)) => {
                    return Err(MigrationError::Connect {
                        url: redacted,
                        sqlstate: sqlstate_of(&e),
                        message: scrub(&message_of(&e), url),
                    });
                }
                Ok(Ok(c)) => c,
            };
        let mut conn = conn;
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| MigrationError::Database {
                url: redacted.clone(),
                what: "reading the session's process id",
                sqlstate: sqlstate_of(&e),
                message: message_of(&e),
            })?;
        // If this process dies mid-statement, let the server notice the closed socket within
        // seconds (PostgreSQL 14+), abort the statement and free the lock, instead of finishing
        // a long migration for nobody. Older servers do not know the setting.
        if let Err(e) =
            sqlx::query("select set_config('client_connection_check_interval', '2000', false)")
                .execute(&mut conn)
                .await
        {
            tracing::debug!(url = %redacted, error = %message_of(&e), "client_connection_check_interval not set");
        }
        tracing::debug!(url = %redacted, pid, ms = started.elapsed().as_millis() as u64, "connected");
        Ok(Migrator {
            conn,
            url: redacted,
            pid,
        })
    }

    /// The server process of this session.
    pub fn backend_pid(&self) -> i32 {
        self.pid
    }

    /// The database URL, redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Close the session (the lock, if held, goes with it).
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }

    fn db_err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> MigrationError + '_ {
        move |e| MigrationError::Database {
            url: self.url.clone(),
            what,
            sqlstate: sqlstate_of(&e),
            message: message_of(&e),
        }
    }

    /// Set PostgreSQL's `statement_timeout` / `lock_timeout` for this session. `None` leaves a
    /// setting as the server and role have it; nothing is set unless asked.
    pub async fn set_session_timeouts(
        &mut self,
        statement_timeout: Option<Duration>,
        lock_timeout: Option<Duration>,
    ) -> Result<(), MigrationError> {
        for (name, value) in [
            ("statement_timeout", statement_timeout),
            ("lock_timeout", lock_timeout),
        ] {
            if let Some(d) = value {
                let ms = format!("{}ms", d.as_millis().max(1));
                sqlx::query("select set_config($1, $2, false)")
                    .bind(name)
                    .bind(&ms)
                    .execute(&mut self.conn)
                    .await
                    .map_err(|e| MigrationError::Database {
                        url: self.url.clone(),
                        what: "setting a session timeout",
                        sqlstate: sqlstate_of(&e),
                        message: message_of(&e),
                    })?;
                tracing::debug!(setting = name, value = %ms, "session setting");
            }
        }
        Ok(())
    }

    /// Read the ledger, the sidecar and whether the database holds anything. Creates nothing.
    pub async fn view(&mut self) -> Result<DatabaseView, MigrationError> {
        let row = sqlx::query(
            "select
               to_regclass('schema_migrations') is not null,
               to_regclass('artifortress_migrations_log') is not null,
               exists (
                 select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
                   and n.nspname not in ('pg_catalog', 'information_schema')
                   and n.nspname not like 'pg\\_toast%'
                   and n.nspname not like 'pg\\_temp\\_%'
                   and c.oid is distinct from to_regclass('schema_migrations')::oid
                   and c.oid is distinct from to_regclass('artifortress_migrations_log')::oid
                   and not exists (
                     select 1 from pg_depend d
                     where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'
                   )
               )",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(self.db_err("reading the database's tables"))?;
        let ledger_exists: bool = row.get(0);
        let sidecar_exists: bool = row.get(1);
        let has_user_tables: bool = row.get(2);

        let mut ledger: Vec<(String, DateTime<Utc>)> = Vec::new();
        if ledger_exists {
            self.check_ledger_shape().await?;
            ledger = sqlx::query_as("select version, applied_at from schema_migrations")
                .fetch_all(&mut self.conn)
                .await
                .map_err(self.db_err("reading schema_migrations"))?;
        }
        type SidecarRow = (String, String, String, bool, DateTime<Utc>);
        let mut sidecar: HashMap<String, SidecarRow> = HashMap::new();
        if sidecar_exists {
            let rows: Vec<SidecarRow> = sqlx::query_as(
                "select version, checksum, source, dirty, recorded_at from artifortress_migrations_log",
            )
            .fetch_all(&mut self.conn)
            .await
            .map_err(self.db_err("reading artifortress_migrations_log"))?;
            sidecar = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
        }

        let in_ledger: BTreeSet<&str> = ledger.iter().map(|(v, _)| v.as_str()).collect();
        let mut applied: Vec<AppliedVersion> = ledger
            .iter()
            .map(|(version, applied_at)| {
                let side = sidecar.get(version);
                AppliedVersion {
                    version: version.clone(),
                    applied_at: *applied_at,
                    checksum: side.map(|s| s.1.clone()),
                    source: side.map(|s| s.2.clone()),
                    dirty: false,
                }
            })
            .collect();
        applied.extend(
            sidecar
                .values()
                .filter(|s| s.3 && !in_ledger.contains(s.0.as_str()))
                .map(|s| AppliedVersion {
                    version: s.0.clone(),
                    applied_at: s.4,
                    checksum: Some(s.1.clone()),
                    source: Some(s.2.clone()),
                    dirty: true,
                }),
        );
        applied.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(DatabaseView {
            ledger_exists,
            sidecar_exists,
            applied,
            has_user_tables,
        })
    }

    /// Refuse a `schema_migrations` of another tool (golang-migrate uses the same name).
    async fn check_ledger_shape(&mut self) -> Result<(), MigrationError> {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod)
             from pg_attribute a
             where a.attrelid = to_regclass('schema_migrations') and a.attnum > 0
               and not a.attisdropped
             order by a.attnum",
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(self.db_err("reading the columns of schema_migrations"))?;
        let has = |name: &str, ty: &str| columns.iter().any(|(n, t)| n == name && t == ty);
        if has("version", "text") && has("applied_at", "timestamp with time zone") {
            return Ok(());
        }
        Err(MigrationError::ForeignLedger {
            url: self.url.clone(),
            columns: columns
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Who holds the migration lock in this database, if visible.
    pub async fn lock_holder(&mut self) -> Result<Option<LockHolder>, MigrationError> {
        let hi = ((LOCK_KEY as u64) >> 32) as i64;
        let lo = ((LOCK_KEY as u64) & 0xffff_ffff) as i64;
        let row = sqlx::query(
            "select a.pid, coalesce(a.application_name, ''), a.usename::text,
                    host(a.client_addr), a.backend_start, a.state
             from pg_locks l join pg_stat_activity a on a.pid = l.pid
             where l.locktype = 'advisory' and l.granted
               and l.database = (select oid from pg_database where datname = current_database())
               and l.classid::bigint = $1 and l.objid::bigint = $2 and l.objsubid = 1
               and l.pid <> pg_backend_pid()
             limit 1",
        )
        .bind(hi)
        .bind(lo)
        .fetch_optional(&mut self.conn)
        .await
        .map_err(self.db_err("looking up the migration lock's holder"))?;
        Ok(row.map(|r| LockHolder {
            pid: r.get(0),
            application_name: r.get(1),
            user: r.get(2),
            client_addr: r.get(3),
            backend_start: r.get(4),
            state: r.get(5),
        }))
    }

    /// Poll `pg_try_advisory_lock(LOCK_KEY)` until it succeeds, `timeout` passes or `cancel`
    /// fires.
    async fn lock(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), MigrationError> {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut self.conn)
                .await
                .map_err(self.db_err("taking the migration lock"))?;
            if got {
                tracing::info!(
                    url = %self.url,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "migration lock taken"
                );
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                let holder = self.lock_holder().await.ok().flatten().map(Box::new);
                return Err(MigrationError::LockTimeout {
                    url: self.url.clone(),
                    waited,
                    holder,
                });
            }
            if !announced {
                announced = true;
                let holder = self.lock_holder().await.ok().flatten();
                tracing::info!(
                    url = %self.url,
                    holder = %holder.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into()),
                    timeout_ms = timeout.as_millis() as u64,
                    "waiting for the migration lock"
                );
            }
            let jitter = Duration::from_millis(u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() % 50)
                    .unwrap_or(0),
            ));
            let pause = (LOCK_POLL + jitter).min(timeout - waited);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled() => {
                    return Err(MigrationError::Cancelled {
                        url: self.url.clone(),
                        report: Box::default(),
                    });
                }
            }
        }
    }

    async fn unlock(&mut self) {
        match sqlx::query_scalar::<_, bool>("select pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut self.conn)
            .await
        {
            Ok(true) => tracing::debug!(url = %self.url, "migration lock released"),
            Ok(false) => tracing::warn!(url = %self.url, "migration lock was not held at release"),
            Err(e) => tracing::warn!(
                url = %self.url,
                error = %message_of(&e),
                "could not release the migration lock (it goes with the session)"
            ),
        }
    }

    /// Apply: lock, re-read and re-plan under the lock, record adoptions/acceptances/baseline,
    /// run each pending file, unlock. `applied_by` goes into the sidecar. `cancel` stops between
    /// files (or while waiting for the lock) with [`MigrationError::Cancelled`]; the running
    /// file is never interrupted. If this future is dropped part-way, the lock stays with the
    /// session until the `Migrator` is dropped (which closes it).
    pub async fn apply(
        &mut self,
        files: &[MigrationFile],
        inputs: &PlanInputs,
        lock_timeout: Duration,
        applied_by: &str,
        cancel: &CancellationToken,
    ) -> Result<ApplyReport, MigrationError> {
        self.lock(lock_timeout, cancel).await?;
        let result = self.apply_locked(files, inputs, applied_by, cancel).await;
        self.unlock().await;
        result
    }

    async fn apply_locked(
        &mut self,
        files: &[MigrationFile],
        inputs: &PlanInputs,
        applied_by: &str,
        cancel: &CancellationToken,
    ) -> Result<ApplyReport, MigrationError> {
        let view = self.view().await?;
        let plan = plan(
            files,
            &view,
            inputs.target.as_deref(),
            inputs.baseline.as_deref(),
            &inputs.accept_checksums,
        )
        .map_err(|problems| MigrationError::Plan {
            url: self.url.clone(),
            problems,
        })?;
        let problems = policy_problems(&plan, inputs);
        if !problems.is_empty() {
            return Err(MigrationError::Plan {
                url: self.url.clone(),
                problems,
            });
        }
        let mut report = ApplyReport::default();
        if !view.ledger_exists || !view.sidecar_exists || !plan.is_empty() {
            self.record_bookkeeping(&view, &plan, applied_by).await?;
            report.adopted = plan.adopt.iter().map(|(v, _)| v.clone()).collect();
            report.accepted = plan.accept.iter().map(|(v, _)| v.clone()).collect();
            report.baselined = plan.baselined.iter().map(|(v, _)| v.clone()).collect();
        }
        let by_version: HashMap<&str, &MigrationFile> =
            files.iter().map(|f| (f.version.as_str(), f)).collect();
        if plan.pending.is_empty() {
            tracing::info!(url = %self.url, "no pending migrations");
        }
        for pending in &plan.pending {
            if cancel.is_cancelled() {
                tracing::warn!(
                    url = %self.url,
                    next = %pending.version,
                    "cancelled: stopping before the next migration"
                );
                report.head = self.view().await?.head().map(str::to_string);
                return Err(MigrationError::Cancelled {
                    url: self.url.clone(),
                    report: Box::new(report),
                });
            }
            let file = by_version[pending.version.as_str()];
            let ms = if file.transactional {
                self.run_in_transaction(file, applied_by).await?
            } else {
                self.run_outside_transaction(file, applied_by).await?
            };
            report.applied.push((file.version.clone(), ms));
        }
        report.head = self.view().await?.head().map(str::to_string);
        Ok(report)
    }

    /// One transaction: create the ledger and sidecar if missing, record adoptions,
    /// acceptances and the baseline.
    async fn record_bookkeeping(
        &mut self,
        view: &DatabaseView,
        plan: &MigrationPlan,
        applied_by: &str,
    ) -> Result<(), MigrationError> {
        let url = self.url.clone();
        let err = |what: &'static str| {
            let url = url.clone();
            move |e: sqlx::Error| MigrationError::Database {
                url,
                what,
                sqlstate: sqlstate_of(&e),
                message: message_of(&e),
            }
        };
        let mut tx = self
            .conn
            .begin()
            .await
            .map_err(err("starting a transaction"))?;
        if !view.ledger_exists {
            sqlx::raw_sql(LEDGER_DDL)
                .execute(&mut *tx)
                .await
                .map_err(err("creating schema_migrations"))?;
            tracing::info!(url = %url, "created the ledger table schema_migrations");
        }
        if !view.sidecar_exists {
            sqlx::raw_sql(SIDECAR_DDL)
                .execute(&mut *tx)
                .await
                .map_err(err("creating artifortress_migrations_log"))?;
            tracing::info!(url = %url, "created the sidecar table artifortress_migrations_log");
        }
        for (version, checksum) in &plan.baselined {
            sqlx::query(
                "insert into schema_migrations (version) values ($1) on conflict (version) do nothing",
            )
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(err("recording a baseline version in schema_migrations"))?;
            upsert_sidecar(
                &mut tx,
                version,
                checksum,
                SOURCE_BASELINE,
                applied_by,
                None,
                false,
            )
            .await
            .map_err(err(
                "recording a baseline version in artifortress_migrations_log",
            ))?;
            tracing::info!(url = %url, version = %version, "baselined (recorded as applied, not run)");
        }
        for (version, checksum) in &plan.adopt {
            upsert_sidecar(
                &mut tx,
                version,
                checksum,
                SOURCE_ADOPTED,
                applied_by,
                None,
                false,
            )
            .await
            .map_err(err("recording an adopted version"))?;
            tracing::info!(url = %url, version = %version, "adopted (applied by another tool)");
        }
        for (version, checksum) in &plan.accept {
            sqlx::query(
                "update artifortress_migrations_log
                 set checksum = $2, source = 'accepted', applied_by = $3, recorded_at = now()
                 where version = $1",
            )
            .bind(version)
            .bind(checksum)
            .bind(applied_by)
            .execute(&mut *tx)
            .await
            .map_err(err("recording an accepted checksum"))?;
            tracing::warn!(url = %url, version = %version, checksum = %checksum, "accepted the new checksum of an edited applied migration");
        }
        tx.commit()
            .await
            .map_err(err("committing the ledger bookkeeping"))?;
        Ok(())
    }

    fn failed(
        url: &str,
        file: &MigrationFile,
        offset: Option<usize>,
        e: &sqlx::Error,
        transactional: bool,
    ) -> MigrationError {
        let pg = e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<PgDatabaseError>());
        let line = match (offset, pg.and_then(|p| p.position())) {
            (Some(offset), Some(PgErrorPosition::Original(pos))) => {
                Some(line_of(&file.sql, offset, pos))
            }
            _ => None,
        };
        MigrationError::MigrationFailed(Box::new(MigrationFailure {
            url: url.to_string(),
            version: file.version.clone(),
            path: file.path.clone(),
            line,
            sqlstate: sqlstate_of(e),
            message: message_of(e),
            detail: pg.and_then(|p| p.detail()).map(str::to_string),
            hint: pg.and_then(|p| p.hint()).map(str::to_string),
            transactional,
        }))
    }

    /// The file, its ledger row and its sidecar row in one transaction.
    async fn run_in_transaction(
        &mut self,
        file: &MigrationFile,
        applied_by: &str,
    ) -> Result<u64, MigrationError> {
        let url = self.url.clone();
        tracing::info!(url = %self.url, version = %file.version, class = %file.class, transactional = true, "applying migration");
        let started = Instant::now();
        let mut tx = match self.conn.begin().await {
            Ok(tx) => tx,
            Err(e) => return Err(Self::failed(&url, file, None, &e, true)),
        };
        let result = sqlx::raw_sql(AssertSqlSafe(file.sql.clone()))
            .execute(&mut *tx)
            .await;
        let rows = match result {
            Ok(r) => r.rows_affected(),
            Err(e) => {
                let _ = tx.rollback().await;
                let err = Self::failed(&url, file, Some(0), &e, true);
                tracing::error!(version = %file.version, error = %err, "migration failed; rolled back");
                return Err(err);
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        let record = async {
            sqlx::query("insert into schema_migrations (version) values ($1)")
                .bind(&file.version)
                .execute(&mut *tx)
                .await?;
            upsert_sidecar(
                &mut tx,
                &file.version,
                &file.checksum,
                SOURCE_TERRAFORM,
                applied_by,
                Some(ms as i64),
                false,
            )
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = record {
            let err = Self::failed(&url, file, None, &e, true);
            tracing::error!(version = %file.version, error = %err, "recording the migration failed; rolled back");
            return Err(err);
        }
        tracing::info!(url = %self.url, version = %file.version, ms, rows_affected = rows, "applied migration");
        Ok(ms)
    }

    /// Dirty marker (committed), the statements one by one, then ledger row + cleared marker.
    async fn run_outside_transaction(
        &mut self,
        file: &MigrationFile,
        applied_by: &str,
    ) -> Result<u64, MigrationError> {
        let url = self.url.clone();
        tracing::info!(url = %self.url, version = %file.version, class = %file.class, transactional = false, "applying migration outside a transaction");
        sqlx::query(
            "insert into artifortress_migrations_log
               (version, checksum, source, applied_by, execution_ms, dirty)
             values ($1, $2, 'terraform', $3, null, true)
             on conflict (version) do update set checksum = excluded.checksum,
               source = excluded.source, applied_by = excluded.applied_by,
               execution_ms = null, dirty = true, recorded_at = now()",
        )
        .bind(&file.version)
        .bind(&file.checksum)
        .bind(applied_by)
        .execute(&mut self.conn)
        .await
        .map_err(|e| Self::failed(&url, file, None, &e, true))?;
        let started = Instant::now();
        let mut rows = 0u64;
        for (offset, statement) in split_statements(&file.sql) {
            let s = Instant::now();
            match sqlx::raw_sql(AssertSqlSafe(statement.to_string()))
                .execute(&mut self.conn)
                .await
            {
                Ok(r) => {
                    rows += r.rows_affected();
                    tracing::debug!(
                        version = %file.version,
                        line = line_of(&file.sql, offset, 1),
                        ms = s.elapsed().as_millis() as u64,
                        rows_affected = r.rows_affected(),
                        "statement done"
                    );
                }
                Err(e) => {
                    let err = Self::failed(&url, file, Some(offset), &e, false);
                    tracing::error!(version = %file.version, error = %err, "migration failed outside a transaction; left dirty");
                    return Err(err);
                }
            }
        }
        let ms = started.elapsed().as_millis() as u64;
        let mut tx = self
            .conn
            .begin()
            .await
            .map_err(|e| MigrationError::Database {
                url: self.url.clone(),
                what: "starting a transaction",
                sqlstate: sqlstate_of(&e),
                message: message_of(&e),
            })?;
        let record = async {
            sqlx::query("insert into schema_migrations (version) values ($1)")
                .bind(&file.version)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "update artifortress_migrations_log
                 set dirty = false, execution_ms = $2, recorded_at = now() where version = $1",
            )
            .bind(&file.version)
            .bind(ms as i64)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = record {
            let err = Self::failed(&url, file, None, &e, false);
            tracing::error!(version = %file.version, error = %err, "recording the migration failed; left dirty");
            return Err(err);
        }
        tracing::info!(url = %self.url, version = %file.version, ms, rows_affected = rows, "applied migration");
        Ok(ms)
    }
}

async fn upsert_sidecar(
    conn: &mut PgConnection,
    version: &str,
    checksum: &str,
    source: &str,
    applied_by: &str,
    execution_ms: Option<i64>,
    dirty: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into artifortress_migrations_log
           (version, checksum, source, applied_by, execution_ms, dirty)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (version) do update set checksum = excluded.checksum,
           source = excluded.source, applied_by = excluded.applied_by,
           execution_ms = excluded.execution_ms, dirty = excluded.dirty, recorded_at = now()",
    )
    .bind(version)
    .bind(checksum)
    .bind(source)
    .bind(applied_by)
    .bind(execution_ms)
    .bind(dirty)
    .execute(conn)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: &str, sql: &str) -> MigrationFile {
        MigrationFile::parse(version, PathBuf::from(version), sql.to_string()).unwrap()
    }

    fn files(names: &[&str]) -> Vec<MigrationFile> {
        names
            .iter()
            .map(|n| file(n, &format!("create table t_{};", &n[..4])))
            .collect()
    }

    fn applied(version: &str, checksum: Option<&str>) -> AppliedVersion {
        AppliedVersion {
            version: version.to_string(),
            applied_at: DateTime::<Utc>::UNIX_EPOCH,
            checksum: checksum.map(str::to_string),
            source: checksum.map(|_| SOURCE_TERRAFORM.to_string()),
            dirty: false,
        }
    }

    fn ledger(rows: Vec<AppliedVersion>) -> DatabaseView {
        DatabaseView {
            ledger_exists: true,
            sidecar_exists: true,
            applied: rows,
            has_user_tables: true,
        }
    }

    const NAMES: [&str; 3] = ["0001_a.sql", "0002_b.sql", "0003_c.sql"];

    fn plan_of(
        files: &[MigrationFile],
        view: &DatabaseView,
        target: Option<&str>,
        baseline: Option<&str>,
    ) -> Result<MigrationPlan, Vec<PlanProblem>> {
        plan(files, view, target, baseline, &BTreeMap::new())
    }

    fn pending_versions(p: &MigrationPlan) -> Vec<&str> {
        p.pending.iter().map(|p| p.version.as_str()).collect()
    }

    #[test]
    fn lock_key_is_derived_from_its_name() {
        let h = Sha256::digest(LOCK_KEY_NAME.as_bytes());
        let key = i64::from_be_bytes(h[..8].try_into().unwrap());
        assert_eq!(key, LOCK_KEY);
        assert_eq!((LOCK_KEY as u64) >> 32, 1_836_569_069);
        assert_eq!((LOCK_KEY as u64) & 0xffff_ffff, 1_893_902_782);
    }

    #[test]
    fn file_names() {
        for ok in [
            "0001_core.sql",
            "1_a.sql",
            "0015_worker_claim-path.v2.sql",
            "12_3_x.sql",
        ] {
            assert!(valid_file_name(ok), "{ok}");
        }
        for bad in [
            "core.sql",
            "0001.sql",
            "0001_.sql",
            "0001-core.sql",
            "_0001_core.sql",
            "0001_co re.sql",
            "0001_core.SQL",
            "0001_core.sql.bak",
            "0001_cöre.sql",
        ] {
            assert!(!valid_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn checksum_ignores_crlf_but_not_content() {
        let lf = "create table a (x int);\nselect 1;\n";
        let crlf = "create table a (x int);\r\nselect 1;\r\n";
        assert_eq!(checksum(lf), checksum(crlf));
        assert_ne!(
            checksum(lf),
            checksum("create table a (x bigint);\nselect 1;\n")
        );
        // sha256("") in lowercase hex
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn directives() {
        let f = file("0001_a.sql", "create table a();\n");
        assert_eq!((f.class, f.transactional), (MigrationClass::A, true));
        let f = file(
            "0001_a.sql",
            "-- a comment\r\n\r\n-- artifortress:class C\r\n--artifortress:no-transaction\r\nselect 1;\n",
        );
        assert_eq!((f.class, f.transactional), (MigrationClass::C, false));
        // Only the leading comment lines count.
        let f = file(
            "0001_a.sql",
            "select 1;\n-- artifortress:class C\n-- artifortress:bogus\n",
        );
        assert_eq!((f.class, f.transactional), (MigrationClass::A, true));

        for (sql, line, needle) in [
            ("-- x\n-- artifortress:class D\n", 2, "A, B or C"),
            ("-- artifortress:class\n", 1, "A, B or C"),
            ("-- artifortress:class a\n", 1, "A, B or C"),
            ("-- artifortress:class A B\n", 1, "A, B or C"),
            (
                "-- artifortress:class A\n-- artifortress:class B\n",
                2,
                "second",
            ),
            ("-- artifortress:no-transactions\n", 1, "unknown directive"),
            ("-- artifortress:no-transaction yes\n", 1, "no argument"),
        ] {
            let err = MigrationFile::parse("0007_x.sql", PathBuf::from("d/0007_x.sql"), sql.into())
                .unwrap_err();
            match &err {
                MigrationError::BadDirective { file, line: l, .. } => {
                    assert_eq!((file.as_str(), *l), ("0007_x.sql", line), "{sql:?}")
                }
                other => panic!("{other:?}"),
            }
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("0007_x.sql, line {line}:")),
                "{text}"
            );
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn load_dir_orders_filters_and_refuses_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0010_c.sql"), "select 3;").unwrap();
        std::fs::write(dir.path().join("0002_b.sql"), "select 2;").unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "select 1;").unwrap();
        std::fs::write(dir.path().join("README.md"), "x").unwrap();
        std::fs::create_dir(dir.path().join("0003_dir.sql")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/0000_nested.sql"), "select 0;").unwrap();
        let got = load_dir(dir.path()).unwrap();
        let versions: Vec<_> = got.iter().map(|f| f.version.as_str()).collect();
        assert_eq!(versions, ["0001_a.sql", "0002_b.sql", "0010_c.sql"]);
        assert_eq!(got[0].sql, "select 1;");
        assert_eq!(got[0].path, dir.path().join("0001_a.sql"));

        std::fs::write(dir.path().join("add_users.sql"), "select 4;").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&err, MigrationError::BadFileName { file, .. } if file == "add_users.sql"),
            "{err:?}"
        );
        assert!(err.to_string().contains("NNNN_name.sql"), "{err}");

        let err = load_dir(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, MigrationError::ReadDir { .. }), "{err:?}");
    }

    #[test]
    fn splitting_statements() {
        let sql = "-- head; comment\ncreate table a (x text default 'a;b''c');\n\
                   /* block; /* nested; */ still; */\n\
                   create function f() returns int language sql as $$ select 1; $$;\n\
                   create function g() returns int language plpgsql as $body$ begin return 1; end $body$;\n\
                   select E'x\\';y', \"we;ird\", $1;\n\
                   ;;  -- only a comment\n";
        let parts: Vec<&str> = split_statements(sql)
            .iter()
            .map(|(_, s)| s.trim())
            .collect();
        assert_eq!(parts.len(), 4, "{parts:#?}");
        assert!(parts[0].ends_with("default 'a;b''c')"));
        assert!(parts[1].ends_with("as $$ select 1; $$"));
        assert!(parts[2].ends_with("end $body$"));
        assert!(parts[3].ends_with("\"we;ird\", $1"));
        assert_eq!(split_statements("  -- nothing\n/* here */  ").len(), 0);
        assert_eq!(split_statements("select 1").len(), 1);
        // Offsets point into the original text.
        for (offset, s) in split_statements(sql) {
            assert_eq!(&sql[offset..offset + s.len()], s);
        }
    }

    #[test]
    fn error_positions_map_to_lines() {
        let sql = "select 1;\n-- c\nselect é,\n  bogus;";
        let parts = split_statements(sql);
        let (offset, stmt) = parts[1];
        let pos = stmt.chars().position(|c| c == 'b').unwrap() + 1;
        assert_eq!(line_of(sql, offset, pos), 4);
        assert_eq!(line_of(sql, 0, 1), 1);
    }

    #[test]
    fn empty_database_starts_from_the_first_file() {
        let f = files(&NAMES);
        let p = plan_of(&f, &DatabaseView::default(), None, None).unwrap();
        assert_eq!(pending_versions(&p), NAMES);
        assert_eq!(p.head_after.as_deref(), Some("0003_c.sql"));
        assert!(p.adopt.is_empty() && p.baselined.is_empty());
        assert_eq!(p.pending[0].checksum, f[0].checksum);
        assert!(p.pending[0].transactional);
    }

    #[test]
    fn nothing_to_do_when_up_to_date_and_target_limits_pending() {
        let f = files(&NAMES);
        let view = ledger(vec![
            applied("0001_a.sql", Some(&f[0].checksum)),
            applied("0002_b.sql", Some(&f[1].checksum)),
            applied("0003_c.sql", Some(&f[2].checksum)),
        ]);
        let p = plan_of(&f, &view, None, None).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.head_after.as_deref(), Some("0003_c.sql"));

        let p = plan_of(&f, &DatabaseView::default(), Some("0002_b.sql"), None).unwrap();
        assert_eq!(pending_versions(&p), ["0001_a.sql", "0002_b.sql"]);
        assert_eq!(p.head_after.as_deref(), Some("0002_b.sql"));

        let err = plan_of(&f, &DatabaseView::default(), Some("0009_x.sql"), None).unwrap_err();
        assert_eq!(
            err,
            [PlanProblem::UnknownTarget {
                target: "0009_x.sql".into(),
                newest: Some("0003_c.sql".into())
            }]
        );
    }

    #[test]
    fn ledger_rows_without_sidecar_are_adopted() {
        let f = files(&NAMES);
        let view = ledger(vec![
            applied("0001_a.sql", None),
            applied("0002_b.sql", None),
        ]);
        let p = plan_of(&f, &view, None, None).unwrap();
        assert_eq!(
            p.adopt,
            [
                ("0001_a.sql".to_string(), f[0].checksum.clone()),
                ("0002_b.sql".to_string(), f[1].checksum.clone())
            ]
        );
        assert_eq!(pending_versions(&p), ["0003_c.sql"]);
    }

    #[test]
    fn checksum_mismatch_unless_accepted() {
        let f = files(&NAMES);
        let view = ledger(vec![applied("0001_a.sql", Some("old"))]);
        let err = plan_of(&f, &view, None, None).unwrap_err();
        assert_eq!(
            err,
            [PlanProblem::ChecksumMismatch {
                version: "0001_a.sql".into(),
                recorded: "old".into(),
                current: f[0].checksum.clone()
            }]
        );
        assert!(err[0].detail().contains(&f[0].checksum));

        // Accepting some other checksum does not help.
        let wrong = BTreeMap::from([("0001_a.sql".to_string(), "other".to_string())]);
        assert!(plan(&f, &view, None, None, &wrong).is_err());

        let ok = BTreeMap::from([("0001_a.sql".to_string(), f[0].checksum.clone())]);
        let p = plan(&f, &view, None, None, &ok).unwrap();
        assert_eq!(
            p.accept,
            [("0001_a.sql".to_string(), f[0].checksum.clone())]
        );
        assert_eq!(pending_versions(&p), ["0002_b.sql", "0003_c.sql"]);
    }

    #[test]
    fn missing_file_and_dirty() {
        let f = files(&NAMES[..2]);
        let mut dirty = applied("0002_b.sql", Some(&f[1].checksum));
        dirty.dirty = true;
        let view = ledger(vec![applied("0000_gone.sql", Some("x")), dirty]);
        let err = plan_of(&f, &view, None, None).unwrap_err();
        assert_eq!(
            err,
            [
                PlanProblem::MissingFile {
                    version: "0000_gone.sql".into()
                },
                PlanProblem::Dirty {
                    version: "0002_b.sql".into()
                }
            ]
        );
        let remediation = err[1].detail();
        assert!(
            remediation.contains("select indexrelid::regclass from pg_index where not indisvalid"),
            "{remediation}"
        );
        assert!(err[1].to_string().contains("indisvalid"));
    }

    #[test]
    fn baseline() {
        let f = files(&NAMES);
        let nonempty = DatabaseView {
            has_user_tables: true,
            ..DatabaseView::default()
        };
        assert_eq!(
            plan_of(&f, &nonempty, None, None).unwrap_err(),
            [PlanProblem::BaselineNeeded {
                newest: Some("0003_c.sql".into())
            }]
        );
        let p = plan_of(&f, &nonempty, None, Some("0002_b.sql")).unwrap();
        assert_eq!(p.baseline.as_deref(), Some("0002_b.sql"));
        assert_eq!(
            p.baselined,
            [
                ("0001_a.sql".to_string(), f[0].checksum.clone()),
                ("0002_b.sql".to_string(), f[1].checksum.clone())
            ]
        );
        assert_eq!(pending_versions(&p), ["0003_c.sql"]);
        assert_eq!(p.head_after.as_deref(), Some("0003_c.sql"));

        assert_eq!(
            plan_of(&f, &nonempty, None, Some("0009_x.sql")).unwrap_err(),
            [PlanProblem::UnknownBaseline {
                baseline: "0009_x.sql".into()
            }]
        );

        // An empty database (e.g. reset) runs everything, baseline or not.
        let p = plan_of(&f, &DatabaseView::default(), None, Some("0002_b.sql")).unwrap();
        assert_eq!(p.baseline, None);
        assert!(p.baselined.is_empty());
        assert_eq!(
            pending_versions(&p),
            ["0001_a.sql", "0002_b.sql", "0003_c.sql"]
        );

        // With ledger rows, a baseline changes nothing.
        let view = ledger(vec![applied("0001_a.sql", Some(&f[0].checksum))]);
        let p = plan_of(&f, &view, None, Some("0002_b.sql")).unwrap();
        assert_eq!(p.baseline, None);
        assert_eq!(pending_versions(&p), ["0002_b.sql", "0003_c.sql"]);
    }

    #[test]
    fn policy_refuses_contract_migrations_and_migrating_without_a_required_backup() {
        let pending = |v: &str, class| PendingMigration {
            version: v.into(),
            class,
            checksum: checksum(v),
            transactional: true,
        };
        let plan = MigrationPlan {
            pending: vec![
                pending("0001_a.sql", MigrationClass::A),
                pending("0002_c.sql", MigrationClass::C),
            ],
            ..MigrationPlan::default()
        };
        let mut inputs = PlanInputs::default();
        assert_eq!(
            policy_problems(&plan, &inputs),
            [PlanProblem::ContractNotAllowed {
                versions: vec!["0002_c.sql".into()]
            }]
        );
        inputs.allow_contract = true;
        assert!(policy_problems(&plan, &inputs).is_empty());
        inputs.require_backup = true;
        let problems = policy_problems(&plan, &inputs);
        assert_eq!(
            problems,
            [PlanProblem::BackupRequired {
                versions: vec!["0001_a.sql".into(), "0002_c.sql".into()]
            }]
        );
        assert!(problems[0].detail().contains("0001_a.sql, 0002_c.sql"));
        // Nothing pending: nothing to refuse.
        assert!(policy_problems(&MigrationPlan::default(), &inputs).is_empty());
    }
}
