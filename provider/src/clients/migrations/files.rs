//! Migration files: names, directives (`-- artifortress:class`, `no-transaction`), checksums
//! and reading the directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::MigrationError;

/// Migration class (`-- artifortress:class`): A expand-only, B expand + backfill,
/// C contract (maintenance window; rollback means restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MigrationClass {
    #[default]
    A,
    B,
    C,
}

impl MigrationClass {
    /// `"A"`, `"B"` or `"C"` (exactly; case matters, as in the directive).
    pub fn parse(text: &str) -> Option<MigrationClass> {
        match text {
            "A" => Some(MigrationClass::A),
            "B" => Some(MigrationClass::B),
            "C" => Some(MigrationClass::C),
            _ => None,
        }
    }
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
    /// The class in effect: the file's directive, else the one given for it
    /// ([`apply_classes`]), else A.
    pub class: MigrationClass,
    /// The class the file itself states (`-- artifortress:class`), if it does.
    pub class_directive: Option<MigrationClass>,
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
        let (class_directive, transactional) = parse_directives(version, &sql)?;
        Ok(MigrationFile {
            version: version.to_string(),
            path,
            class: class_directive.unwrap_or_default(),
            class_directive,
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

/// Why classes given beside the files ([`apply_classes`]) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassProblem {
    /// The key names no file of the directory (a typo, or a file not there yet).
    UnknownFile { file: String },
    /// The file states another class in its own directive.
    Conflict {
        file: String,
        directive: MigrationClass,
        given: MigrationClass,
    },
}

impl ClassProblem {
    /// The file name the problem is about.
    pub fn file(&self) -> &str {
        match self {
            ClassProblem::UnknownFile { file } | ClassProblem::Conflict { file, .. } => file,
        }
    }
}

impl fmt::Display for ClassProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassProblem::UnknownFile { file } => write!(
                f,
                "a class is given for {file:?}, but the migration directory has no such file \
                 (keys are file names including .sql)"
            ),
            ClassProblem::Conflict {
                file,
                directive,
                given,
            } => write!(
                f,
                "{file} states `-- artifortress:class {directive}` itself, but class {given} is \
                 given for it: give {directive} or leave the file out"
            ),
        }
    }
}

/// Sets the class of each file named in `classes` (file name including `.sql` → class), the
/// way the service states classes: per release, beside the files, which carry no marker
/// (Artifortress `docs/41-migration-compatibility-policy.md:100-103`, "classify migration as A,
/// B, or C" and "document compatibility assumptions in release notes"). A file's own directive
/// wins only when it agrees: a different class is a [`ClassProblem::Conflict`]; a key that names
/// no file is a [`ClassProblem::UnknownFile`]. On any problem no file is changed.
pub fn apply_classes(
    files: &mut [MigrationFile],
    classes: &BTreeMap<String, MigrationClass>,
) -> Result<(), Vec<ClassProblem>> {
    let mut problems = Vec::new();
    for (name, given) in classes {
        match files.iter().find(|f| f.version == *name) {
            None => problems.push(ClassProblem::UnknownFile { file: name.clone() }),
            Some(f) => {
                if let Some(directive) = f.class_directive
                    && directive != *given
                {
                    problems.push(ClassProblem::Conflict {
                        file: name.clone(),
                        directive,
                        given: *given,
                    });
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for f in files.iter_mut() {
        if let Some(given) = classes.get(&f.version) {
            f.class = *given;
        }
    }
    Ok(())
}

/// Directives in the leading comment lines (blank lines allowed among them): the stated class
/// (if any) and whether the file is transactional.
fn parse_directives(
    file: &str,
    sql: &str,
) -> Result<(Option<MigrationClass>, bool), MigrationError> {
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
    Ok((class.map(|(c, _)| c), no_transaction.is_none()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: &str, sql: &str) -> MigrationFile {
        MigrationFile::parse(version, PathBuf::from(version), sql.to_string()).unwrap()
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
    fn classes_given_beside_the_files_merge_with_the_directives() {
        let mut files = vec![
            file("0001_a.sql", "create table a();\n"),
            file("0002_b.sql", "-- artifortress:class B\nselect 1;\n"),
            file("0003_c.sql", "select 1;\n"),
        ];
        assert_eq!(files[0].class_directive, None);
        assert_eq!(files[1].class_directive, Some(MigrationClass::B));
        let classes = |pairs: &[(&str, MigrationClass)]| -> BTreeMap<String, MigrationClass> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };

        // A conflict and an unknown key: both reported, nothing changed.
        let err = apply_classes(
            &mut files,
            &classes(&[
                ("0002_b.sql", MigrationClass::C),
                ("0003_c.sql", MigrationClass::C),
                ("0009_typo.sql", MigrationClass::A),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                ClassProblem::Conflict {
                    file: "0002_b.sql".into(),
                    directive: MigrationClass::B,
                    given: MigrationClass::C
                },
                ClassProblem::UnknownFile {
                    file: "0009_typo.sql".into()
                }
            ]
        );
        assert!(
            err[0].to_string().contains("artifortress:class B"),
            "{}",
            err[0]
        );
        assert_eq!(err[1].file(), "0009_typo.sql");
        assert_eq!(files[2].class, MigrationClass::A);

        // Agreeing with a directive is fine; a file without one takes the given class.
        apply_classes(
            &mut files,
            &classes(&[
                ("0002_b.sql", MigrationClass::B),
                ("0003_c.sql", MigrationClass::C),
            ]),
        )
        .unwrap();
        let got: Vec<_> = files.iter().map(|f| f.class).collect();
        assert_eq!(
            got,
            [MigrationClass::A, MigrationClass::B, MigrationClass::C]
        );
        // The checksum is the file's, whatever its class.
        assert_eq!(files[2].checksum, checksum("select 1;\n"));
        assert_eq!(MigrationClass::parse("C"), Some(MigrationClass::C));
        assert_eq!(MigrationClass::parse("c"), None);
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
}
