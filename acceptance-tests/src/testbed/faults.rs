//! TEST-ONLY fault switches. These are not part of the real Artifortress service; they exist so
//! tests can make the test bed report `degraded` / `not_ready` on demand.
//!
//! * At start: `TESTBED_FAULT_DEPENDENCIES=name:status,...`, `TESTBED_FAULT_READY_AFTER_SECONDS=N`
//!   (counted from process start), `TESTBED_FAULT_NEVER_READY=1`.
//! * At run time (only with `TESTBED_FAULTS_ENABLED=1`): `GET /testbed/faults` and
//!   `PUT /testbed/faults` with `{"dependencies":{"oidc_jwks":"degraded"},"readyAfterSeconds":N,
//!   "neverReady":bool}` (PUT replaces everything; `readyAfterSeconds` counts from the PUT).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::health::{DEPENDENCY_NAMES, DepStatus};

pub const FAULT_DETAIL: &str = "testbed fault injection";
pub const WARMING_UP_DETAIL: &str = "testbed fault: warming up";
pub const NEVER_READY_DETAIL: &str = "testbed fault: never ready";

#[derive(Debug, Clone)]
pub struct Faults {
    pub dependencies: BTreeMap<String, DepStatus>,
    pub ready_after_seconds: Option<u64>,
    /// When the `ready_after_seconds` clock started (process start or the PUT).
    pub since: Instant,
    pub never_ready: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            dependencies: BTreeMap::new(),
            ready_after_seconds: None,
            since: Instant::now(),
            never_ready: false,
        }
    }
}

/// Wire form used by `GET/PUT /testbed/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsWire {
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub ready_after_seconds: Option<u64>,
    #[serde(default)]
    pub never_ready: bool,
}

impl Faults {
    pub fn warming_up(&self) -> bool {
        match self.ready_after_seconds {
            Some(n) => self.since.elapsed() < Duration::from_secs(n),
            None => false,
        }
    }

    pub fn remaining_warm_up(&self) -> Option<Duration> {
        self.ready_after_seconds
            .map(|n| Duration::from_secs(n).saturating_sub(self.since.elapsed()))
    }

    pub fn to_wire(&self) -> FaultsWire {
        FaultsWire {
            dependencies: self
                .dependencies
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_string()))
                .collect(),
            ready_after_seconds: self.ready_after_seconds,
            never_ready: self.never_ready,
        }
    }

    pub fn from_wire(w: &FaultsWire) -> Result<Self, String> {
        let mut dependencies = BTreeMap::new();
        for (k, v) in &w.dependencies {
            dependencies.insert(check_name(k)?, parse_status(v)?);
        }
        Ok(Faults {
            dependencies,
            ready_after_seconds: w.ready_after_seconds,
            since: Instant::now(),
            never_ready: w.never_ready,
        })
    }
}

fn check_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    if DEPENDENCY_NAMES.contains(&n) {
        Ok(n.to_string())
    } else {
        Err(format!(
            "unknown dependency {n:?} (expected one of {})",
            DEPENDENCY_NAMES.join(", ")
        ))
    }
}

fn parse_status(s: &str) -> Result<DepStatus, String> {
    DepStatus::parse(s.trim()).ok_or_else(|| {
        format!("unknown status {s:?} (expected ready, degraded, not_ready or not_configured)")
    })
}

/// Parse `name:status,name:status`.
pub fn parse_dependency_list(s: &str) -> Result<BTreeMap<String, DepStatus>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (n, st) = item
            .split_once(':')
            .ok_or_else(|| format!("{item:?} is not of the form name:status"))?;
        out.insert(check_name(n)?, parse_status(st)?);
    }
    Ok(out)
}

/// Read the start-time fault switches from an environment lookup.
pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Faults, String> {
    let mut f = Faults::default();
    if let Some(v) = get("TESTBED_FAULT_DEPENDENCIES") {
        f.dependencies = parse_dependency_list(&v)?;
    }
    if let Some(v) = get("TESTBED_FAULT_READY_AFTER_SECONDS").filter(|v| !v.trim().is_empty()) {
        f.ready_after_seconds = Some(v.trim().parse().map_err(|_| {
            format!("TESTBED_FAULT_READY_AFTER_SECONDS={v:?} is not a number of seconds")
        })?);
    }
    f.never_ready = get("TESTBED_FAULT_NEVER_READY").is_some_and(|v| super::config::is_truthy(&v));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list() {
        let m = parse_dependency_list("oidc_jwks:degraded, postgres:not_ready").unwrap();
        assert_eq!(m["oidc_jwks"], DepStatus::Degraded);
        assert_eq!(m["postgres"], DepStatus::NotReady);
        assert!(parse_dependency_list("nope:ready").is_err());
        assert!(parse_dependency_list("redis:sad").is_err());
        assert!(parse_dependency_list("redis").is_err());
    }

    #[test]
    fn wire_round_trip() {
        let w: FaultsWire = serde_json::from_str(
            r#"{"dependencies":{"oidc_jwks":"degraded"},"readyAfterSeconds":3}"#,
        )
        .unwrap();
        let f = Faults::from_wire(&w).unwrap();
        assert!(f.warming_up());
        assert_eq!(f.to_wire(), w);
        assert!(serde_json::from_str::<FaultsWire>(r#"{"bogus":1}"#).is_err());
    }
}
