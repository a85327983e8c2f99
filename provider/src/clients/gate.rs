//! The D3 production gate's rules, shared by `data "artifortress_preflight"` and the release
//! resource's gate: the change window, the rollback owner, the age of the newest backup. Pure
//! functions of their inputs and the time; no Terraform types.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backup;
use crate::duration;

/// One go/no-go check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            passed,
            detail: detail.into(),
        }
    }
}

/// `start/end`, both RFC 3339, start before end.
pub fn parse_window(text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let (a, b) = text.split_once('/').ok_or_else(|| {
        format!("{text:?} is not an interval; write it as START/END in RFC 3339, e.g. 2026-12-01T22:00:00Z/2026-12-01T23:30:00Z")
    })?;
    let parse = |s: &str, which: &str| {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("the {which} {s:?} is not an RFC 3339 time: {e}"))
    };
    let (start, end) = (parse(a, "start")?, parse(b, "end")?);
    if start >= end {
        return Err(format!(
            "the window ends ({end}) before it starts ({start})"
        ));
    }
    Ok((start, end))
}

/// Whether `now` is inside the window (start inclusive, end exclusive).
pub fn window_check(window: Option<&str>, now: DateTime<Utc>) -> Check {
    let Some(w) = window else {
        return Check::new(
            "change_window",
            false,
            "no change window given (change_window)",
        );
    };
    // Absolute times, so that the report is stable from one plan to the next.
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match parse_window(w) {
        Err(e) => Check::new("change_window", false, e),
        Ok((start, _)) if now < start => Check::new(
            "change_window",
            false,
            format!("the window {w} is not open yet: it opens at {}", at(start)),
        ),
        Ok((_, end)) if now >= end => Check::new(
            "change_window",
            false,
            format!("the window {w} closed at {}", at(end)),
        ),
        Ok((_, end)) => Check::new(
            "change_window",
            true,
            format!("open now; it closes at {}", at(end)),
        ),
    }
}

pub fn owner_check(owner: Option<&str>) -> Check {
    match owner.map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => Check::new("rollback_owner", true, format!("rollback owner: {o}")),
        None => Check::new(
            "rollback_owner",
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
            "backup_age",
            false,
            format!(
                "no backup under {prefix:?}; take one (artifortress_backup) before the release"
            ),
        );
    };
    let age = (now - m.snapshot_at).num_seconds().max(0) as u64;
    let passed = age <= max_age.as_secs();
    Check::new(
        "backup_age",
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
