//! Planning (pure, no I/O): what an apply would do ([`MigrationPlan`]), why it cannot
//! ([`PlanProblem`]), and the policy checks of the configuration ([`PlanInputs`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::files::{MigrationClass, MigrationFile};
use super::ledger::{DatabaseView, LEDGER_TABLE, dirty_remediation};

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
                "{} {} class C (by its `-- artifortress:class C` directive or the class given for it): it removes or narrows schema that \
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
/// `files` must be in version order ([`load_dir`](super::load_dir) returns them so).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use chrono::{DateTime, Utc};

    use super::super::files::checksum;
    use super::super::ledger::{AppliedVersion, SOURCE_TERRAFORM};

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
