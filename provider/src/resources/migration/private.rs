//! The private state of `artifortress_migration`: what Read found (problems, and what an apply
//! would leave behind), for the plan that follows, so a refresh never fails on them and the
//! plan stays the same from the first plan to the apply.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{MigrationModel, known};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Step};
use crate::protocol::model::{Maybe, Planned};
use crate::shared::migrations::{Observation, problem_attribute, problem_diagnostic};

const PRIVATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct After {
    pub applied_versions: Vec<String>,
    pub head: Option<String>,
    pub checksums: BTreeMap<String, String>,
    /// Applied version → class, as `applied_classes` will be; `None` in a private state
    /// written before that attribute existed (then planned unknown, never a made-up value).
    #[serde(default)]
    pub applied_classes: Option<BTreeMap<String, String>>,
    /// The apply writes ledger rows (so `last_applied_at` changes).
    pub writes_ledger: bool,
}

impl After {
    /// Plans what the apply leaves; `last_applied_at` is the newest ledger row's time now.
    pub fn write(&self, planned: &mut MigrationModel<Planned>, last_applied_at: Option<String>) {
        planned.applied_versions = Maybe::Known(Some(self.applied_versions.clone()));
        planned.pending = Maybe::Known(Some(Vec::new()));
        planned.head = known(self.head.clone());
        planned.checksums = Maybe::Known(Some(self.checksums.clone()));
        planned.applied_classes = match &self.applied_classes {
            Some(c) => Maybe::Known(Some(c.clone())),
            None => Maybe::Unknown,
        };
        planned.last_applied_at = if self.writes_ledger {
            Maybe::Unknown
        } else {
            known(last_applied_at)
        };
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredProblem {
    pub summary: String,
    pub detail: String,
    pub attribute: String,
    /// The map key under `attribute` (e.g. `classes["0015_x.sql"]`); absent in private state
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl StoredProblem {
    /// A problem with the directory or its files, on the attribute (and key) the diagnostic
    /// names, `dir` when it names none.
    pub fn about_the_files(d: Diagnostic) -> StoredProblem {
        let (attribute, key) = match d.attribute.as_ref().map(|p| p.steps.as_slice()) {
            Some([Step::Attribute(a)]) => (a.clone(), None),
            Some([Step::Attribute(a), Step::Key(k)]) => (a.clone(), Some(k.clone())),
            _ => ("dir".to_string(), None),
        };
        StoredProblem {
            summary: d.summary,
            detail: d.detail,
            attribute,
            key,
        }
    }

    pub fn diagnostic(&self) -> Diagnostic {
        let mut path = AttributePath::attr(&self.attribute);
        if let Some(k) = &self.key {
            path.push_key(k);
        }
        Diagnostic::error(self.summary.clone(), self.detail.clone()).at(path)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Private {
    pub v: u32,
    pub problems: Vec<StoredProblem>,
    pub after: Option<After>,
}

impl Private {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` when absent or from another provider version.
    pub fn decode(bytes: &[u8]) -> Option<Private> {
        serde_json::from_slice::<Private>(bytes)
            .ok()
            .filter(|p| p.v == PRIVATE_VERSION)
    }
}

/// What only this resource derives from an observation: what an apply leaves, its private state.
impl Observation {
    /// What the database will look like once the plan is applied.
    pub(super) fn after(&self) -> Option<After> {
        let plan = self.plan.as_ref().ok()?;
        let mut applied: BTreeSet<String> = self.applied_versions().into_iter().collect();
        let mut checksums = self.checksums();
        for (version, sum) in plan.adopt.iter().chain(&plan.accept).chain(&plan.baselined) {
            applied.insert(version.clone());
            checksums.insert(version.clone(), sum.clone());
        }
        for p in &plan.pending {
            applied.insert(p.version.clone());
            checksums.insert(p.version.clone(), p.checksum.clone());
        }
        let classes = self.file_classes();
        let applied_classes = applied
            .iter()
            .filter_map(|v| Some((v.clone(), classes.get(v)?.clone())))
            .collect();
        Some(After {
            head: applied.iter().next_back().cloned(),
            applied_classes: Some(applied_classes),
            applied_versions: applied.into_iter().collect(),
            checksums,
            writes_ledger: !plan.pending.is_empty() || !plan.baselined.is_empty(),
        })
    }

    pub(super) fn private(&self) -> Private {
        Private {
            v: PRIVATE_VERSION,
            problems: match &self.plan {
                Ok(_) => Vec::new(),
                Err(problems) => problems
                    .iter()
                    .map(|p| {
                        let d = problem_diagnostic(p, Some(&self.url));
                        StoredProblem {
                            summary: d.summary,
                            detail: d.detail,
                            attribute: problem_attribute(p).to_string(),
                            key: None,
                        }
                    })
                    .collect(),
            },
            after: self.after(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_state_round_trips_and_rejects_other_versions() {
        let p = Private {
            v: PRIVATE_VERSION,
            problems: vec![StoredProblem {
                summary: "s".into(),
                detail: "d".into(),
                attribute: "dir".into(),
                key: None,
            }],
            after: Some(After {
                applied_versions: vec!["0001_a.sql".into()],
                head: Some("0001_a.sql".into()),
                checksums: BTreeMap::from([("0001_a.sql".into(), "ab".into())]),
                applied_classes: Some(BTreeMap::from([("0001_a.sql".into(), "C".into())])),
                writes_ledger: true,
            }),
        };
        assert_eq!(Private::decode(&p.encode()), Some(p.clone()));
        let mut other = p;
        other.v = 99;
        assert_eq!(Private::decode(&other.encode()), None);
        assert_eq!(Private::decode(b""), None);
        // Written before `applied_classes`: read, with the classes not known.
        let old = br#"{"v":1,"problems":[],"after":{"applied_versions":["0001_a.sql"],"head":"0001_a.sql","checksums":{},"writes_ledger":false}}"#;
        let after = Private::decode(old).unwrap().after.unwrap();
        assert_eq!(after.applied_classes, None);
    }

    #[test]
    fn a_problem_keeps_its_map_key_and_old_private_state_still_decodes() {
        let d =
            Diagnostic::error("s", "d").at(AttributePath::attr("classes").child_key("0015_x.sql"));
        let p = StoredProblem::about_the_files(d.clone());
        assert_eq!(
            (p.attribute.as_str(), p.key.as_deref()),
            ("classes", Some("0015_x.sql"))
        );
        assert_eq!(p.diagnostic(), d);
        let plain = StoredProblem::about_the_files(Diagnostic::error("s", "d"));
        assert_eq!(
            plain.diagnostic(),
            Diagnostic::error("s", "d").at_attr("dir")
        );
        // Written by the provider before `key` existed.
        let old =
            br#"{"v":1,"problems":[{"summary":"s","detail":"d","attribute":"dir"}],"after":null}"#;
        let decoded = Private::decode(old).unwrap();
        assert_eq!(decoded.problems[0].key, None);
    }
}
