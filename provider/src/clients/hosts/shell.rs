//! Quoting and validation: `sh` words, and the paths, versions and checksums commands carry.

use super::error::{HostError, invalid};

/// Quotes `s` as one `sh` word: unchanged when made only of characters no shell treats
/// specially, else in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:@,+%".contains(&b));
    if plain {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// Rejects what a command line or our line-based outputs cannot carry.
pub(super) fn check_text(what: &'static str, s: &str) -> Result<(), HostError> {
    if s.contains(['\0', '\n', '\r']) {
        return Err(invalid(what, s, "contains a NUL or line break"));
    }
    Ok(())
}

pub(super) fn check_path(what: &'static str, s: &str) -> Result<(), HostError> {
    if s.is_empty() {
        return Err(invalid(what, s, "is empty"));
    }
    check_text(what, s)
}

/// A deploy directory: absolute, without trailing slashes.
pub(super) fn deploy_dir_arg(dir: &str) -> Result<String, HostError> {
    check_path("deploy_dir", dir)?;
    if !dir.starts_with('/') {
        return Err(invalid("deploy_dir", dir, "must be an absolute path"));
    }
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(invalid("deploy_dir", dir, "must not be /"));
    }
    Ok(trimmed.to_string())
}

/// A version is one path component: letters, digits, `.`, `_`, `+`, `-`, not starting with a
/// dot or dash, at most 128 bytes.
pub fn check_version(version: &str) -> Result<(), HostError> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        && !version.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "version",
            version,
            "must be 1-128 of A-Z a-z 0-9 . _ + - and not start with . or -",
        ))
    }
}

pub(super) fn normalize_sha256(s: &str) -> Result<String, HostError> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(invalid("sha256", &s, "must be 64 hexadecimal digits"))
    }
}

pub(super) fn parent_dir(path: &str) -> Option<&str> {
    match path.rsplit_once('/') {
        Some(("", _)) => Some("/"),
        Some((parent, _)) => Some(parent),
        None => None,
    }
}

/// The version a `current` target names: its last path component.
pub(super) fn version_of_target(target: &str) -> Option<String> {
    let t = target.trim().trim_end_matches('/');
    let last = t.rsplit('/').next().unwrap_or(t);
    (!last.is_empty()).then(|| last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(
            shell_quote("/opt/artifortress/releases/1.4.2"),
            "/opt/artifortress/releases/1.4.2"
        );
        assert_eq!(shell_quote("a=b,c:d@e+f%g"), "a=b,c:d@e+f%g");
    }

    #[test]
    fn quoting_wraps_everything_else() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("~"), "'~'");
    }

    #[test]
    fn quoted_words_round_trip_through_sh() {
        let cases = [
            "",
            "plain",
            "two words",
            "it's",
            "''",
            "'",
            "$HOME $(id) `id` ${x:-y}",
            "a\\b\\\\c",
            "line\nbreak",
            "tab\there",
            "*?[a-z]",
            "-rf",
            "; rm -rf / #",
            "\"double\"",
            "é ü 日本",
            "!event",
            "a'b'c'",
        ];
        for case in cases {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_quote(case)))
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), case, "case {case:?}");
        }
    }

    #[test]
    fn versions_and_paths() {
        for ok in ["1.4.2", "v1", "2024.01.02-rc1+build.5", "broken"] {
            check_version(ok).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "a\nb", "ä"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        assert_eq!(deploy_dir_arg("/opt/af/").unwrap(), "/opt/af");
        assert!(deploy_dir_arg("relative").is_err());
        assert!(deploy_dir_arg("/").is_err());
        assert!(deploy_dir_arg("/a\nb").is_err());
        assert_eq!(
            version_of_target("releases/1.4.2\n"),
            Some("1.4.2".to_string())
        );
        assert_eq!(
            version_of_target("/opt/af/releases/v2/"),
            Some("v2".to_string())
        );
        assert_eq!(version_of_target("\n"), None);
        assert_eq!(parent_dir("/opt/af/shared/api.env"), Some("/opt/af/shared"));
        assert_eq!(parent_dir("/x"), Some("/"));
        assert_eq!(parent_dir("x"), None);
    }
}
