//! Errors: [`MigrationError`], the details of a failed file ([`MigrationFailure`]), the
//! holder of the migration lock ([`LockHolder`]), and what a `sqlx` error says.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clients::pg::InvalidUrl;

use super::apply::{ApplyReport, LOCK_KEY};
use super::ledger::{LEDGER_TABLE, SIDECAR_TABLE, dirty_remediation};
use super::plan::PlanProblem;

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

pub(super) fn sqlstate_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// PostgreSQL's message alone for server errors, sqlx's description otherwise.
pub(super) fn message_of(e: &sqlx::Error) -> String {
    crate::clients::words::pg_error_words(e)
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
