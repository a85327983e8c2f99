//! The layer rules of ARCHITECTURE.md, checked on the source tree: a change that makes a lower
//! layer import a higher one fails here, not in review.
//!
//! - `protocol/` (the plugin protocol) names nothing of Artifortress: no `clients`, `provider`
//!   or type modules.
//! - `clients/` (the domain clients) name nothing of Terraform: no `protocol`, `provider` or
//!   type modules.
//! - `settings.rs` (settings and lazy clients) and `shared/` (what type files share) sit below
//!   the types: they may import `clients` and `protocol`, never `provider` or a type module.
//! - A type file (`resources/`, `data_sources/`, `ephemeral_resources/`, `actions/`) does not import
//!   another type file. What they share lives in `shared/`; [`KNOWN_TYPE_IMPORTS`] lists
//!   exceptions (none are left since issue 16): that list may only shrink, and an entry that no
//!   longer occurs fails the test so the list is kept exact.
//!
//! A reference is any `crate::<module>` path in the code (comments and strings ignored),
//! `use crate::{a, b}` groups included.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules of the crate, by layer.
const TYPE_MODULES: [&str; 4] = [
    "resources",
    "data_sources",
    "ephemeral_resources",
    "actions",
];

/// Type files that import another type file today: (importing file, imported module path).
const KNOWN_TYPE_IMPORTS: &[(&str, &str)] = &[];

/// The modules below the types and above the clients and protocol: settings with the lazy
/// clients, and what the type files share.
const SHARED_LAYER: [&str; 2] = ["settings.rs", "shared/"];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a Rust file without comments and string or char literals (so a doc comment
/// naming `crate::protocol` is not an import).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('x' or '\n'); lifetimes ('a) are left alone.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// Every `crate::` path a file names, as `module` or `module::sub` (two segments at most);
/// with `parent` (the module of a file below `src/<parent>/`), `super::x` counts as
/// `crate::<parent>::x`.
fn crate_paths(code: &str, parent: Option<&str>) -> BTreeSet<String> {
    let mut out = prefixed_paths(code, "crate::", "");
    if let Some(parent) = parent {
        out.extend(prefixed_paths(code, "super::", &format!("{parent}::")));
    }
    out
}

/// The paths after each `prefix` (e.g. `crate::`), with `base` put in front of them.
fn prefixed_paths(code: &str, prefix: &str, base: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        if i > 0 {
            let prev = code.as_bytes()[i - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' {
                continue; // e.g. `some_crate::`
            }
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a, b::c, d::{e, f}}: the top-level names and their next segment.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        item.push(c);
                    }
                    '}' if depth == 0 => break,
                    '}' => {
                        depth -= 1;
                        item.push(c);
                    }
                    ',' if depth == 0 => {
                        push_path(&mut out, &format!("{base}{}", item.trim()), &ident);
                        item.clear();
                    }
                    c => item.push(c),
                }
            }
            push_path(&mut out, &format!("{base}{}", item.trim()), &ident);
        } else {
            push_path(&mut out, &format!("{base}{rest}"), &ident);
        }
    }
    out
}

fn push_path(out: &mut BTreeSet<String>, path: &str, ident: &dyn Fn(&str) -> String) {
    let first = ident(path);
    if path[first.len()..].starts_with("::{") {
        // `base::{...}` from a `super::{...}` group: one entry for the module itself.
        out.insert(first);
        return;
    }
    if first.is_empty() {
        return;
    }
    let after = &path[first.len()..];
    match after.strip_prefix("::").map(ident) {
        Some(second) if !second.is_empty() => out.insert(format!("{first}::{second}")),
        _ => out.insert(first),
    };
}

struct SourceFile {
    /// Relative to `src/`, with `/`.
    rel: String,
    paths: BTreeSet<String>,
}

fn sources() -> Vec<SourceFile> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            // The module `super::` names: <module> for a file directly below src/<module>/;
            // deeper, the file's folder as a module path (src/a/b/x.rs: a::b), and for a
            // mod.rs the folder's parent (src/a/b/mod.rs: a).
            let segments: Vec<&str> = rel.split('/').collect();
            let parent = match segments.as_slice() {
                [_] => None,
                [module, _] => Some(module.to_string()),
                [folders @ .., file] => {
                    let folders = if *file == "mod.rs" {
                        &folders[..folders.len() - 1]
                    } else {
                        folders
                    };
                    Some(folders.join("::"))
                }
                [] => None,
            };
            SourceFile {
                paths: crate_paths(&code_only(&text), parent.as_deref()),
                rel,
            }
        })
        .collect()
}

fn top(path: &str) -> &str {
    path.split("::").next().unwrap()
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let files = sources();
    assert!(
        files
            .iter()
            .filter(|f| f.rel.starts_with("clients/"))
            .count()
            > 5
            && files.iter().any(|f| f.rel == "protocol/server/mod.rs")
            && SHARED_LAYER
                .iter()
                .all(|m| files.iter().any(|f| f.rel.starts_with(m))),
        "the source tree was read"
    );
    let mut broken = Vec::new();
    for f in &files {
        let forbidden: &[&str] = if f.rel.starts_with("protocol/") {
            &[
                "clients",
                "provider",
                "resources",
                "data_sources",
                "ephemeral_resources",
                "actions",
            ]
        } else if f.rel.starts_with("clients/") {
            &[
                "protocol",
                "provider",
                "resources",
                "data_sources",
                "ephemeral_resources",
                "actions",
            ]
        } else if SHARED_LAYER.iter().any(|m| f.rel.starts_with(m)) {
            &[
                "provider",
                "resources",
                "data_sources",
                "ephemeral_resources",
                "actions",
            ]
        } else {
            &[]
        };
        for p in &f.paths {
            if forbidden.contains(&top(p)) {
                broken.push(format!("{} imports crate::{p}", f.rel));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rule broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn type_files_do_not_import_each_other_beyond_the_known_list() {
    let files = sources();
    // The types as modules (`resources::backup`): a file directly in a type folder, or a folder
    // of its own there (`resources/release.rs` with `resources/release/*.rs`,
    // `resources/migration/mod.rs` with its siblings), all of whose files are that one type.
    // The type folder's own mod.rs (`resources/mod.rs`) holds what its types share; not a type.
    let type_of = |rel: &str| -> Option<String> {
        let m = TYPE_MODULES
            .iter()
            .find(|m| rel.starts_with(&format!("{m}/")))?;
        let rest = &rel[m.len() + 1..];
        if rest == "mod.rs" {
            return None;
        }
        let first = rest.split('/').next().unwrap().trim_end_matches(".rs");
        Some(format!("{m}::{first}"))
    };
    let types: BTreeSet<String> = files.iter().filter_map(|f| type_of(&f.rel)).collect();
    assert!(types.contains("resources::release"), "{types:?}");
    assert!(types.contains("resources::migration"), "{types:?}");
    let mut found = BTreeSet::new();
    for f in &files {
        let Some(own) = type_of(&f.rel) else {
            continue;
        };
        for p in &f.paths {
            if let Some(t) = types
                .iter()
                .find(|t| *p == **t || p.starts_with(&format!("{t}::")))
                && *t != own
            {
                found.insert((f.rel.clone(), t.clone()));
            }
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN_TYPE_IMPORTS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "a type file imports another type file (move what they share below the types):\n{new:#?}"
    );
    assert!(
        gone.is_empty(),
        "no longer imported: remove from KNOWN_TYPE_IMPORTS:\n{gone:#?}"
    );
}

#[test]
fn the_import_scanner_sees_paths_and_ignores_comments_and_strings() {
    let code = code_only(
        r##"
        //! crate::protocol in a doc comment
        use crate::clients::hosts::{self, EnvKey};
        use crate::{data_sources, resources::backup::timestamp};
        /* crate::provider in a block comment */
        let s = "crate::resources::release";
        let r = r#"crate::ephemeral_resources"#;
        let c = '"'; let d = crate::duration::format(x);
        fn f<'a>(x: &'a str) -> crate::protocol::value::Value { todo() }
        let other = some_crate::thing;
        use super::readiness::{dependency_type};
    "##,
    );
    let paths: Vec<String> = crate_paths(&code, Some("data_sources"))
        .into_iter()
        .collect();
    assert_eq!(
        paths,
        [
            "clients::hosts",
            "data_sources",
            "data_sources::readiness",
            "duration::format",
            "protocol::value",
            "resources::backup"
        ]
    );
}
