//! The D3 production gate's rules, shared by `data "artifortress_preflight"` and the release
//! resource's gate: the change window, the rollback owner, the age of the newest backup. Pure
//! functions of their inputs and the time; no Terraform types.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backup;
use crate::duration;

/// Which go/no-go check: what callers match on (never the name's text). `Display` gives the
/// name users read in `checks`, `failed` and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckName {
    /// The change window is open now.
    ChangeWindow,
    /// A rollback owner is named.
    RollbackOwner,
    /// The newest backup is young enough.
    BackupAge,
    /// `/health/ready` says `ready`.
    Readiness,
    /// No critical backlog breach in the ops summary.
    Backlog,
    /// No unfinished migration.
    MigrationsDirty,
    /// Pending class C migrations are approved.
    ContractMigrations,
}

impl CheckName {
    pub const ALL: [CheckName; 7] = [
        CheckName::ChangeWindow,
        CheckName::RollbackOwner,
        CheckName::BackupAge,
        CheckName::Readiness,
        CheckName::Backlog,
        CheckName::MigrationsDirty,
        CheckName::ContractMigrations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::ChangeWindow => "change_window",
            CheckName::RollbackOwner => "rollback_owner",
            CheckName::BackupAge => "backup_age",
            CheckName::Readiness => "readiness",
            CheckName::Backlog => "backlog",
            CheckName::MigrationsDirty => "migrations_dirty",
            CheckName::ContractMigrations => "contract_migrations",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One go/no-go check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: CheckName,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: CheckName, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            passed,
            detail: detail.into(),
        }
    }
}

/// Which end of a change window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowBound {
    Start,
    End,
}

impl fmt::Display for WindowBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowBound::Start => "start",
            WindowBound::End => "end",
        })
    }
}

/// Why a change window does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "{text:?} is not an interval; write it as START/END in RFC 3339, e.g. 2026-12-01T22:00:00Z/2026-12-01T23:30:00Z"
    )]
    NotAnInterval { text: String },
    #[error("the {bound} {text:?} is not an RFC 3339 time: {error}")]
    NotATime {
        bound: WindowBound,
        text: String,
        error: chrono::ParseError,
    },
    #[error("the window ends ({end}) before it starts ({start})")]
    EndsBeforeStart {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// `start/end`, both RFC 3339, start before end.
pub fn parse_window(text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), WindowError> {
    let (a, b) = text
        .split_once('/')
        .ok_or_else(|| WindowError::NotAnInterval {
            text: text.to_string(),
        })?;
    let parse = |s: &str, bound: WindowBound| {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|error| WindowError::NotATime {
                bound,
                text: s.to_string(),
                error,
            })
    };
    let (start, end) = (parse(a, WindowBound::Start)?, parse(b, WindowBound::End)?);
    if start >= end {
        return Err(WindowError::EndsBeforeStart { start, end });
    }
    Ok((start, end))
}

/// Whether `now` is inside the window (start inclusive, end exclusive).
pub fn window_check(window: Option<&str>, now: DateTime<Utc>) -> Check {
    let Some(w) = window else {
        return Check::new(
            CheckName::ChangeWindow,
            false,
            "no change window given (change_window)",
        );
    };
    // Absolute times, so that the report is stable from one plan to the next.
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match parse_window(w) {
        Err(e) => Check::new(CheckName::ChangeWindow, false, e.to_string()),
        Ok((start, _)) if now < start => Check::new(
            CheckName::ChangeWindow,
            false,
            format!("the window {w} is not open yet: it opens at {}", at(start)),
        ),
        Ok((_, end)) if now >= end => Check::new(
            CheckName::ChangeWindow,
            false,
            format!("the window {w} closed at {}", at(end)),
        ),
        Ok((_, end)) => Check::new(
            CheckName::ChangeWindow,
            true,
            format!("open now; it closes at {}", at(end)),
        ),
    }
}

pub fn owner_check(owner: Option<&str>) -> Check {
    match owner.map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => Check::new(
            CheckName::RollbackOwner,
            true,
            format!("rollback owner: {o}"),
        ),
        None => Check::new(
            CheckName::RollbackOwner,
            false,
            "no rollback owner given (rollback_owner)",
        ),
    }
}

/// The newest backup's recovery point against `max_age`.
pub fn backup_check(
    newest: Option<&backup::Manifest>,
    prefix: &str,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Check {
    let Some(m) = newest else {
        return Check::new(
            CheckName::BackupAge,
            false,
            format!(
                "no backup under {prefix:?}; take one (artifortress_backup) before the release"
            ),
        );
    };
    let age = (now - m.snapshot_at).num_seconds().max(0) as u64;
    let passed = age <= max_age.as_secs();
    Check::new(
        CheckName::BackupAge,
        passed,
        format!(
            "newest backup {} (recovery point {}) is {} the limit of {}",
            m.id,
            m.snapshot_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if passed { "within" } else { "older than" },
            duration::format(max_age)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn manifest(id: &str, snapshot_at: &str) -> backup::Manifest {
        let at = t(snapshot_at);
        backup::Manifest {
            id: id.into(),
            bucket: "b".into(),
            object_key: "backups/x.dump".into(),
            manifest_key: "backups/x.manifest.json".into(),
            sha256: "00".into(),
            size_bytes: 1,
            dump_bytes: 1,
            format: backup::Format::Custom,
            compression: backup::Compression::None,
            database: "localhost:5432/af".into(),
            snapshot_at: at,
            started_at: at,
            completed_at: at,
            duration_seconds: 1.0,
            migration_head: None,
            table_counts: Default::default(),
            table_bytes: None,
            postgres_version: "17".into(),
            pg_dump_version: "17".into(),
            verified: true,
            labels: Default::default(),
        }
    }

    #[test]
    fn check_names_read_as_the_names_users_see() {
        let names: Vec<String> = CheckName::ALL.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "change_window",
                "rollback_owner",
                "backup_age",
                "readiness",
                "backlog",
                "migrations_dirty",
                "contract_migrations",
            ]
        );
        for n in CheckName::ALL {
            assert_eq!(n.as_str(), n.to_string());
        }
    }

    #[test]
    fn window_errors_say_what_is_wrong() {
        assert_eq!(
            parse_window("2026-12-01T23:00:00Z")
                .unwrap_err()
                .to_string(),
            "\"2026-12-01T23:00:00Z\" is not an interval; write it as START/END in RFC 3339, e.g. 2026-12-01T22:00:00Z/2026-12-01T23:30:00Z"
        );
        let e = parse_window("tonight/2026-12-01T23:00:00Z").unwrap_err();
        assert!(matches!(
            &e,
            WindowError::NotATime { bound: WindowBound::Start, text, .. } if text == "tonight"
        ));
        assert_eq!(
            e.to_string(),
            "the start \"tonight\" is not an RFC 3339 time: premature end of input"
        );
        let e = parse_window("2026-12-01T22:00:00Z/ late").unwrap_err();
        assert!(matches!(
            e,
            WindowError::NotATime {
                bound: WindowBound::End,
                ..
            }
        ));
        assert!(
            e.to_string()
                .starts_with("the end \" late\" is not an RFC 3339 time: "),
            "{e}"
        );
        let e = parse_window("2026-12-01T23:00:00Z/2026-12-01T22:00:00Z").unwrap_err();
        assert_eq!(
            e,
            WindowError::EndsBeforeStart {
                start: t("2026-12-01T23:00:00Z"),
                end: t("2026-12-01T22:00:00Z"),
            }
        );
        assert_eq!(
            e.to_string(),
            "the window ends (2026-12-01 22:00:00 UTC) before it starts (2026-12-01 23:00:00 UTC)"
        );
    }

    #[test]
    fn window_checks_are_data() {
        let w = "2026-12-01T22:00:00Z/2026-12-01T23:30:00Z";
        assert_eq!(
            window_check(Some(w), t("2026-12-01T22:00:00Z")),
            Check::new(
                CheckName::ChangeWindow,
                true,
                "open now; it closes at 2026-12-01T23:30:00Z"
            )
        );
        assert_eq!(
            window_check(Some(w), t("2026-12-01T21:00:00Z")),
            Check::new(
                CheckName::ChangeWindow,
                false,
                format!("the window {w} is not open yet: it opens at 2026-12-01T22:00:00Z")
            )
        );
        assert_eq!(
            window_check(Some(w), t("2026-12-01T23:30:00Z")),
            Check::new(
                CheckName::ChangeWindow,
                false,
                format!("the window {w} closed at 2026-12-01T23:30:00Z")
            )
        );
        assert_eq!(
            window_check(None, t("2026-12-01T22:00:00Z")),
            Check::new(
                CheckName::ChangeWindow,
                false,
                "no change window given (change_window)"
            )
        );
        let bad = window_check(Some("soon"), t("2026-12-01T22:00:00Z"));
        assert_eq!(
            (bad.name, bad.passed, bad.detail),
            (
                CheckName::ChangeWindow,
                false,
                parse_window("soon").unwrap_err().to_string()
            )
        );
    }

    #[test]
    fn owner_and_backup_checks_are_data() {
        assert_eq!(
            owner_check(Some(" oncall ")),
            Check::new(CheckName::RollbackOwner, true, "rollback owner: oncall")
        );
        assert_eq!(
            owner_check(Some("")),
            Check::new(
                CheckName::RollbackOwner,
                false,
                "no rollback owner given (rollback_owner)"
            )
        );
        let now = t("2026-12-01T22:00:00Z");
        let hour = Duration::from_secs(3600);
        assert_eq!(
            backup_check(None, "backups/", hour, now),
            Check::new(
                CheckName::BackupAge,
                false,
                "no backup under \"backups/\"; take one (artifortress_backup) before the release"
            )
        );
        let fresh = manifest("b1", "2026-12-01T21:30:00Z");
        assert_eq!(
            backup_check(Some(&fresh), "backups/", hour, now),
            Check::new(
                CheckName::BackupAge,
                true,
                "newest backup b1 (recovery point 2026-12-01T21:30:00Z) is within the limit of 1h0m0s"
            )
        );
        let stale = manifest("b0", "2026-12-01T20:00:00Z");
        assert_eq!(
            backup_check(Some(&stale), "backups/", hour, now),
            Check::new(
                CheckName::BackupAge,
                false,
                "newest backup b0 (recovery point 2026-12-01T20:00:00Z) is older than the limit of 1h0m0s"
            )
        );
    }
}
