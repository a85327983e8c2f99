//! One look at a database's migrations, as `resource "artifortress_migration"`,
//! `data "artifortress_migrations"` and `data "artifortress_preflight"` all take it: the
//! observation (ledger, files, plan), its computed attributes, the planning inputs from the
//! configuration, and client errors as diagnostics on the attribute they are about.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::SecondsFormat;

use crate::clients::migrations::{
    self, ClassProblem, DatabaseView, MigrationClass, MigrationError, MigrationFile, MigrationPlan,
    Migrator, PendingMigration, PlanInputs, PlanProblem,
};
use crate::clients::pg;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::schema::Attribute;
use crate::protocol::types::Type;
use crate::protocol::value::Value;

pub(crate) fn pending_type() -> Type {
    Type::object([
        ("version", Type::String),
        ("class", Type::String),
        ("checksum", Type::String),
        ("transactional", Type::Bool),
    ])
}

/// The computed attributes of `resource "artifortress_migration"` and `data "artifortress_migrations"`.
pub(crate) fn view_attributes() -> Vec<Attribute> {
    vec![
        Attribute::computed("id", Type::String)
            .description("Which database (and so which ledger) this is: `host:port/database`, without user or password. The import ID."),
        Attribute::computed("applied_versions", Type::list(Type::String))
            .description("Versions in the service's ledger `schema_migrations`, in order (file names with `.sql`), whoever applied them."),
        Attribute::computed("pending", Type::list(pending_type()))
            .description("Files up to the target that are not applied yet, in the order they run: `version`, `class` (`A` expand, `B` expand + backfill, `C` contract), `checksum` (sha256, CRLF normalised to LF) and `transactional` (false for `-- artifortress:no-transaction` files)."),
        Attribute::computed("head", Type::String)
            .description("The newest applied version; null when none is."),
        Attribute::computed("checksums", Type::map(Type::String))
            .description("Applied version → sha256 recorded when it was applied (for versions the service's own script applied and nothing recorded yet: the current file's)."),
        Attribute::computed("applied_classes", Type::map(Type::String))
            .description("Applied version → class (`A` expand, `B` expand + backfill, `C` contract) from its file's `-- artifortress:class` directive (a version whose file is not in `dir` is left out). Give it to `artifortress_release.schema_classes` so that a release never rolls back to binaries older than an applied contract migration."),
        Attribute::computed("last_applied_at", Type::String)
            .description("When the newest ledger row was written (RFC 3339, UTC); null when none is."),
    ]
}

/// One of [`view_attributes`], by name (for a model that declares them one by one).
pub(crate) fn view_attribute(name: &str) -> Attribute {
    view_attributes()
        .into_iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{name:?} is not a view attribute"))
}

/// Which attribute a plan problem is about.
pub(crate) fn problem_attribute(problem: &PlanProblem) -> &'static str {
    match problem {
        PlanProblem::ChecksumMismatch { .. } => "accept_checksums",
        PlanProblem::MissingFile { .. } | PlanProblem::Dirty { .. } => "dir",
        PlanProblem::UnknownTarget { .. } => "target_version",
        PlanProblem::BaselineNeeded { .. } | PlanProblem::UnknownBaseline { .. } => {
            "baseline_version"
        }
        PlanProblem::ContractNotAllowed { .. } => "allow_contract",
        PlanProblem::BackupRequired { .. } => "backup_id",
    }
}

/// How to act on a problem in this resource's terms.
fn remedy(problem: &PlanProblem) -> String {
    match problem {
        PlanProblem::ChecksumMismatch {
            version, current, ..
        } => format!(" To accept the edit: accept_checksums = {{ {version:?} = {current:?} }}."),
        PlanProblem::MissingFile { .. } => " Check `dir`.".into(),
        PlanProblem::Dirty { .. } => String::new(),
        PlanProblem::UnknownTarget { .. } => " Check `target_version`.".into(),
        PlanProblem::BaselineNeeded { .. } => " Set `baseline_version`.".into(),
        PlanProblem::UnknownBaseline { .. } => " Check `baseline_version`.".into(),
        PlanProblem::ContractNotAllowed { .. } => {
            " To run it in this change: allow_contract = true.".into()
        }
        PlanProblem::BackupRequired { .. } => {
            " Set backup_id (the provider's environment is \"production\").".into()
        }
    }
}

pub(crate) fn problem_diagnostic(problem: &PlanProblem, url: Option<&str>) -> Diagnostic {
    let database = url.map(|u| format!(" (database {u})")).unwrap_or_default();
    Diagnostic::error(
        problem.summary(),
        format!("{}{}{database}", problem.detail(), remedy(problem)),
    )
    .at_attr(problem_attribute(problem))
}

/// The diagnostic for a client error, on the attribute it is about.
pub(crate) fn error_diagnostic(summary: &str, err: &MigrationError) -> Diagnostics {
    let attr = match err {
        MigrationError::ReadDir { .. }
        | MigrationError::ReadFile { .. }
        | MigrationError::BadFileName { .. }
        | MigrationError::BadDirective { .. }
        | MigrationError::MigrationFailed(_) => "dir",
        MigrationError::LockTimeout { .. } => "lock_timeout",
        MigrationError::Plan { url, problems } => {
            return Diagnostics(
                problems
                    .iter()
                    .map(|p| problem_diagnostic(p, Some(url)))
                    .collect(),
            );
        }
        _ => "database_url",
    };
    Diagnostic::error(summary, err.to_string())
        .at_attr(attr)
        .into()
}

// ------------------------------------------------------------------------------------------
// One look at the database and the directory
// ------------------------------------------------------------------------------------------

/// What one look at the database (and the directory, when there is one) shows.
pub(crate) struct Observation {
    pub id: String,
    pub url: String,
    pub view: DatabaseView,
    /// `None` when no directory is known (a fresh import).
    pub files: Option<Vec<MigrationFile>>,
    pub plan: Result<MigrationPlan, Vec<PlanProblem>>,
}

/// Why a look failed.
#[derive(Debug)]
pub(crate) struct LookFailure {
    pub diagnostics: Diagnostics,
    /// The database could not be reached (as opposed to a bad directory or URL).
    pub unreachable: bool,
    /// The server refused the credentials (no password, or a wrong one).
    pub refused_credentials: bool,
}

impl LookFailure {
    fn new(summary: &str, err: &MigrationError) -> Self {
        LookFailure {
            diagnostics: error_diagnostic(summary, err),
            unreachable: matches!(
                err,
                MigrationError::Connect { .. } | MigrationError::ConnectTimeout { .. }
            ),
            refused_credentials: err.is_refused_credentials(),
        }
    }
}

/// The `*.sql` files of `dir` (none without a directory), with the classes given in the
/// configuration's `classes` merged in ([`migrations::apply_classes`]). A class that contradicts
/// a file's directive, or one for a file that is not there, is an error at `classes["<file>"]`.
pub(crate) fn load_files(
    dir: Option<&str>,
    classes: &BTreeMap<String, MigrationClass>,
) -> Result<Option<Vec<MigrationFile>>, LookFailure> {
    let Some(mut files) = dir
        .map(|d| migrations::load_dir(Path::new(d)))
        .transpose()
        .map_err(|e| LookFailure::new("Cannot read the migration directory", &e))?
    else {
        return Ok(None);
    };
    match migrations::apply_classes(&mut files, classes) {
        Ok(()) => Ok(Some(files)),
        Err(problems) => Err(LookFailure {
            diagnostics: Diagnostics(
                problems
                    .iter()
                    .map(|p| class_problem_diagnostic(p, dir.unwrap_or_default()))
                    .collect(),
            ),
            unreachable: false,
            refused_credentials: false,
        }),
    }
}

fn class_problem_diagnostic(problem: &ClassProblem, dir: &str) -> Diagnostic {
    let summary = match problem {
        ClassProblem::UnknownFile { .. } => "Class given for a file that does not exist",
        ClassProblem::Conflict { .. } => "Class contradicts the file's own directive",
    };
    Diagnostic::error(summary, format!("{problem} (directory {dir})."))
        .at(AttributePath::attr("classes").child_key(problem.file()))
}

/// The `classes` attribute: file name (with `.sql`) → `A`, `B` or `C`, as the service states
/// classes, per release and beside the files (its `docs/41-migration-compatibility-policy.md`).
pub(crate) fn classes_attribute() -> Attribute {
    Attribute::optional("classes", Type::map(Type::String)).description(
        "Migration classes stated beside the files, as the service does (its files carry no \
         marker: classes are stated per release, `docs/41-migration-compatibility-policy.md`): \
         file name including `.sql` → `A`, `B` or `C`. Merged with the files' own \
         `-- artifortress:class` directives: a class that contradicts a file's directive, and a \
         key that names no file of `dir`, are errors at that key; a file in neither keeps class \
         A. Changes no checksum, so an applied file can be classified after the fact.",
    )
}

/// The known, valid entries of `classes` in `config` (or state). Invalid values are refused at
/// validate ([`validate_classes`]), so they are left out here.
pub(crate) fn config_classes(config: &Value) -> BTreeMap<String, MigrationClass> {
    config
        .attr("classes")
        .to_string_map()
        .into_iter()
        .filter_map(|(k, v)| Some((k, MigrationClass::parse(&v)?)))
        .collect()
}

/// Validate-time check of `classes`: every known value is `A`, `B` or `C`.
pub(crate) fn validate_classes(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(map) = config.attr("classes").as_map() {
        for (file, v) in map {
            if let Some(text) = v.as_str()
                && MigrationClass::parse(text).is_none()
            {
                diags.push(
                    Diagnostic::error(
                        "Invalid migration class",
                        format!(
                            "classes[{file:?}] is {text:?}; a class is exactly \"A\" (expand), \
                             \"B\" (expand and backfill) or \"C\" (contract)."
                        ),
                    )
                    .at(AttributePath::attr("classes").child_key(file)),
                );
            }
        }
    }
    diags
}

impl Observation {
    /// Connect, read the ledger and plan against the files.
    pub async fn take(
        url: &str,
        files: Option<Vec<MigrationFile>>,
        inputs: &PlanInputs,
        connect_timeout: Duration,
    ) -> Result<Observation, LookFailure> {
        let id = pg::database_identity(url)
            .map_err(|e| LookFailure::new("Invalid database URL", &e.into()))?;
        let mut migrator = Migrator::connect(url, connect_timeout)
            .await
            .map_err(|e| LookFailure::new("Cannot connect to the database", &e))?;
        let result = Observation::with(&mut migrator, id, files, inputs).await;
        migrator.close().await;
        result.map_err(|e| LookFailure::new("Cannot read the migration ledger", &e))
    }

    /// [`Observation::take`], and on the same session which of `tables` do not exist (the
    /// service's smoke check, [`migrations::SMOKE_TABLES`]).
    pub async fn take_with_missing_tables(
        url: &str,
        files: Option<Vec<MigrationFile>>,
        inputs: &PlanInputs,
        connect_timeout: Duration,
        tables: &[&str],
    ) -> Result<(Observation, Vec<String>), LookFailure> {
        let id = pg::database_identity(url)
            .map_err(|e| LookFailure::new("Invalid database URL", &e.into()))?;
        let mut migrator = Migrator::connect(url, connect_timeout)
            .await
            .map_err(|e| LookFailure::new("Cannot connect to the database", &e))?;
        let result = match Observation::with(&mut migrator, id, files, inputs).await {
            Ok(obs) => migrator
                .missing_tables(tables)
                .await
                .map(|missing| (obs, missing)),
            Err(e) => Err(e),
        };
        migrator.close().await;
        result.map_err(|e| LookFailure::new("Cannot read the migration ledger", &e))
    }

    /// On an open session.
    pub async fn with(
        migrator: &mut Migrator,
        id: String,
        files: Option<Vec<MigrationFile>>,
        inputs: &PlanInputs,
    ) -> Result<Observation, MigrationError> {
        let view = migrator.view().await?;
        let plan = match &files {
            Some(files) => migrations::plan(
                files,
                &view,
                inputs.target.as_deref(),
                inputs.baseline.as_deref(),
                &inputs.accept_checksums,
            ),
            None => Ok(MigrationPlan::default()),
        };
        Ok(Observation {
            id,
            url: migrator.url().to_string(),
            view,
            files,
            plan,
        })
    }

    pub fn applied_versions(&self) -> Vec<String> {
        self.view
            .applied
            .iter()
            .filter(|a| !a.dirty)
            .map(|a| a.version.clone())
            .collect()
    }

    pub fn dirty_versions(&self) -> Vec<String> {
        self.view
            .applied
            .iter()
            .filter(|a| a.dirty)
            .map(|a| a.version.clone())
            .collect()
    }

    /// Recorded checksums; for versions without one, the current file's.
    pub fn checksums(&self) -> BTreeMap<String, String> {
        let files: BTreeMap<&str, &str> = self
            .files
            .iter()
            .flatten()
            .map(|f| (f.version.as_str(), f.checksum.as_str()))
            .collect();
        self.view
            .applied
            .iter()
            .filter(|a| !a.dirty)
            .filter_map(|a| {
                let sum = a
                    .checksum
                    .as_deref()
                    .or_else(|| files.get(a.version.as_str()).copied())?;
                Some((a.version.clone(), sum.to_string()))
            })
            .collect()
    }

    /// The class of every applied version whose file is in the directory (the ledger has no
    /// class: it comes from the file's directive).
    pub fn applied_classes(&self) -> BTreeMap<String, String> {
        let applied: std::collections::BTreeSet<String> =
            self.applied_versions().into_iter().collect();
        self.files
            .iter()
            .flatten()
            .filter(|f| applied.contains(&f.version))
            .map(|f| (f.version.clone(), f.class.to_string()))
            .collect()
    }

    /// The class of each file, by version.
    pub fn file_classes(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .flatten()
            .map(|f| (f.version.clone(), f.class.to_string()))
            .collect()
    }

    pub fn last_applied_at(&self) -> Option<String> {
        self.view
            .applied
            .iter()
            .filter(|a| !a.dirty)
            .map(|a| a.applied_at)
            .max()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn pending(&self) -> &[PendingMigration] {
        match &self.plan {
            Ok(p) => &p.pending,
            Err(_) => &[],
        }
    }

    /// Sets the computed attributes to what the database holds now.
    pub fn write_now(&self, state: &mut Value) {
        state.set_attr("id", self.id.clone().into());
        state.set_attr(
            "applied_versions",
            Value::string_list(self.applied_versions()),
        );
        state.set_attr("pending", pending_value(self.pending()));
        state.set_attr(
            "head",
            Value::opt_string(self.view.head().map(str::to_string)),
        );
        state.set_attr("checksums", Value::string_map(&self.checksums()));
        state.set_attr(
            "applied_classes",
            Value::string_map(&self.applied_classes()),
        );
        state.set_attr("last_applied_at", Value::opt_string(self.last_applied_at()));
    }
}

pub(crate) fn pending_value(pending: &[PendingMigration]) -> Value {
    Value::List(
        pending
            .iter()
            .map(|p| {
                Value::object([
                    ("version", Value::String(p.version.clone())),
                    ("class", Value::String(p.class.to_string())),
                    ("checksum", Value::String(p.checksum.clone())),
                    ("transactional", Value::Bool(p.transactional)),
                ])
            })
            .collect(),
    )
}

/// The planning inputs in `config` (or state): target, baseline, accepted checksums.
pub(crate) fn plan_inputs(config: &Value) -> PlanInputs {
    let accept_checksums = config.attr("accept_checksums").to_string_map();
    PlanInputs {
        target: config.attr("target_version").as_str().map(str::to_string),
        baseline: config.attr("baseline_version").as_str().map(str::to_string),
        accept_checksums,
        ..PlanInputs::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_merged_and_their_problems_are_at_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "select 1;\n").unwrap();
        std::fs::write(
            dir.path().join("0002_b.sql"),
            "-- artifortress:class B\nselect 2;\n",
        )
        .unwrap();
        let d = dir.path().to_str().unwrap();
        let classes = |pairs: &[(&str, &str)]| {
            let mut config = Value::object([(
                "classes",
                Value::string_map(
                    &pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
            )]);
            let diags = validate_classes(&config);
            let merged = config_classes(&config);
            config.set_attr("classes", Value::Null);
            (diags, merged)
        };

        let (diags, merged) = classes(&[("0001_a.sql", "C")]);
        assert!(diags.is_empty());
        let files = load_files(Some(d), &merged).unwrap().unwrap();
        assert_eq!(files[0].class, MigrationClass::C);
        assert_eq!(files[1].class, MigrationClass::B);

        let (diags, merged) = classes(&[("0002_b.sql", "C"), ("0003_typo.sql", "A")]);
        assert!(diags.is_empty());
        let Err(failure) = load_files(Some(d), &merged) else {
            panic!("a conflict and an unknown key must fail");
        };
        let paths: Vec<String> = failure
            .diagnostics
            .iter()
            .map(|d| d.attribute.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            [r#"classes["0002_b.sql"]"#, r#"classes["0003_typo.sql"]"#]
        );
        assert!(failure.diagnostics.has_errors());

        // Not A/B/C: a validate error at the key, and left out of the merge.
        let (diags, merged) = classes(&[("0001_a.sql", "c"), ("0002_b.sql", "B")]);
        let paths: Vec<String> = diags
            .iter()
            .map(|d| d.attribute.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(paths, [r#"classes["0001_a.sql"]"#]);
        assert_eq!(merged.len(), 1);

        // Without a directory: nothing to check against.
        assert!(load_files(None, &merged).unwrap().is_none());
    }
}
