//! PostgreSQL as configuration names it, for every client that connects:
//!
//! - identifiers: the one validation rule and the one quoting function every client uses
//!   before a name reaches SQL;
//! - database URLs: redaction for messages, the password scrubbed from driver messages,
//!   whether a URL carries a password, the URL without it, the database's identity
//!   (`host:port/database`), and the libpq environment for `pg_dump`/`pg_restore`/`psql`.

use std::str::FromStr;

use percent_encoding::percent_decode_str;
use sqlx::postgres::PgConnectOptions;
use url::Url;

/// `^[A-Za-z_][A-Za-z0-9_]*$`, at most 63 bytes (PostgreSQL's identifier limit; also the
/// service's rule for restore targets).
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// A double-quoted SQL identifier (inner `"` doubled), keeping its case. Callers validate
/// names first; quoting is the second line of defence.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A database URL that does not parse, shown redacted (the password never appears).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid database URL {url}: {message}")]
pub struct InvalidUrl {
    /// Redacted ([`redact_url`]).
    pub url: String,
    pub message: String,
}

/// Query parameters that carry a password.
fn is_secret_key(k: &str) -> bool {
    k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword")
}

/// The one query scrubber: every `password`/`sslpassword` parameter replaced by `replacement`,
/// or removed when that is `None` (no query left: none at all). A URL without such a
/// parameter is left exactly as it is.
fn scrub_query(u: &mut Url, replacement: Option<&str>) {
    if !u.query_pairs().any(|(k, _)| is_secret_key(&k)) {
        return;
    }
    // Segment by segment, the others kept byte for byte: libpq decodes `%XX` only (a `+` stays
    // a `+`), so re-encoding the query as a form would change what it reads.
    let query = u.query().unwrap_or_default().to_string();
    let kept: Vec<String> = query
        .split('&')
        .filter(|seg| !seg.is_empty())
        .filter_map(|seg| {
            let key = seg.split('=').next().unwrap_or_default();
            let decoded = percent_decode_str(key).decode_utf8_lossy();
            if is_secret_key(&decoded) {
                replacement.map(|r| format!("{key}={r}"))
            } else {
                Some(seg.to_string())
            }
        })
        .collect();
    if kept.is_empty() {
        u.set_query(None);
    } else {
        u.set_query(Some(&kept.join("&")));
    }
}

/// `url` with its password (and any `password`/`sslpassword` query parameter) replaced by
/// `***`. Anything that does not parse as a URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = Url::parse(url) else {
        return "<unparsable database URL>".to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    scrub_query(&mut u, Some("***"));
    u.to_string()
}

/// Remove the URL's password from a message (defence in depth for driver messages), as written
/// in the URL and percent-decoded.
pub fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_string();
    if let Ok(u) = Url::parse(url)
        && let Some(p) = u.password()
        && !p.is_empty()
    {
        out = out.replace(p, "***");
        if let Ok(decoded) = percent_decode_str(p).decode_utf8()
            && !decoded.is_empty()
        {
            out = out.replace(decoded.as_ref(), "***");
        }
    }
    out
}

/// Whether a database URL carries a password (`user:password@`, or a `password` /
/// `sslpassword` query parameter). An unparsable URL is reported where it is used.
pub fn carries_password(url: &str) -> bool {
    Url::parse(url)
        .is_ok_and(|u| u.password().is_some() || u.query_pairs().any(|(k, _)| is_secret_key(&k)))
}

/// `url` without its password (and without `password`/`sslpassword` query parameters): still
/// a working libpq/sqlx URL, whose password then comes from `PGPASSWORD` or `~/.pgpass`.
pub fn without_password(url: &str) -> Result<String, InvalidUrl> {
    let mut u = Url::parse(url).map_err(|e| InvalidUrl {
        url: redact_url(url),
        message: e.to_string(),
    })?;
    if u.password().is_some() {
        let _ = u.set_password(None);
    }
    scrub_query(&mut u, None);
    Ok(u.to_string())
}

/// `host:port/database` of a database URL: which database (and so which ledger) it points
/// at, without user or password. Stable across password rotations.
pub fn database_identity(url: &str) -> Result<String, InvalidUrl> {
    let opts = PgConnectOptions::from_str(url).map_err(|e| InvalidUrl {
        url: redact_url(url),
        message: scrub(&e.to_string(), url),
    })?;
    let database = opts
        .get_database()
        .unwrap_or(opts.get_username())
        .to_string();
    Ok(format!(
        "{}:{}/{database}",
        opts.get_host(),
        opts.get_port()
    ))
}

/// How a libpq tool (`pg_dump`, `pg_restore`, `psql`) is pointed at a database: the URL
/// itself as `--dbname`, so every parameter it carries (`sslmode`, `connect_timeout`,
/// `options`, `target_session_attrs`, …) reaches libpq as written, minus its password, which
/// goes through `PGPASSWORD` and so never appears on a command line.
#[derive(Clone)]
pub struct LibpqConnection {
    /// The `--dbname` argument: the URL without password.
    pub dbname: String,
    /// Environment for the tool (`PGPASSWORD` when the URL has one, `PGAPPNAME`).
    pub env: Vec<(&'static str, String)>,
}

impl LibpqConnection {
    /// For `url`, optionally on another database of the same server (a restore drill's).
    pub fn new(url: &str, database: Option<&str>) -> Result<LibpqConnection, InvalidUrl> {
        let invalid = |message: String| InvalidUrl {
            url: redact_url(url),
            message,
        };
        let mut u = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!("scheme {:?} is not postgres", u.scheme())));
        }
        if u.query_pairs().any(|(k, _)| k == "sslpassword") {
            // libpq reads it from no environment variable: it would be on the command line.
            return Err(invalid(
                "sslpassword cannot reach pg_dump/pg_restore without appearing on their \
                 command line; use a client key without a passphrase"
                    .into(),
            ));
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let mut env = vec![("PGAPPNAME", "terraform-provider-artifortress".to_string())];
        let from_query = u
            .query_pairs()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned());
        if let Some(p) = u.password().map(decode).or(from_query) {
            env.push(("PGPASSWORD", p));
        }
        if let Some(db) = database {
            if u.query_pairs().any(|(k, _)| k == "dbname") {
                return Err(invalid(
                    "a dbname parameter cannot be combined with another database".into(),
                ));
            }
            u.set_path(&format!(
                "/{}",
                percent_encoding::utf8_percent_encode(db, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        let dbname = without_password(u.as_str())?;
        Ok(LibpqConnection { dbname, env })
    }

    /// `--dbname=<url without password>`.
    pub fn dbname_arg(&self) -> String {
        format!("--dbname={}", self.dbname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_password_keeps_a_working_url() {
        assert_eq!(
            without_password("postgres://app:s3cr3t@db:5432/af?sslmode=require&password=x")
                .unwrap(),
            "postgres://app@db:5432/af?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://app@db/af?password=x").unwrap(),
            "postgres://app@db/af"
        );
        assert_eq!(
            without_password("postgres://db/af").unwrap(),
            "postgres://db/af"
        );
        assert!(without_password("not a url").is_err());
    }

    #[test]
    fn passwords_are_found_in_user_info_and_query() {
        assert!(carries_password("postgres://app:s3cr3t@db:5432/af"));
        assert!(carries_password(
            "postgres://app@db/af?sslmode=require&password=x"
        ));
        assert!(carries_password("postgres://app@db/af?PassWord=x"));
        assert!(carries_password("postgres://app@db/af?sslpassword=x"));
        assert!(!carries_password(
            "postgres://app@db:5432/af?sslmode=require"
        ));
        assert!(!carries_password("postgres://db/af"));
        assert!(!carries_password("not a url"));
    }

    #[test]
    fn redacting_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db.example:5432/af?sslmode=require"),
            "postgres://app:***@db.example:5432/af?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/af?user=u&password=hunter2"),
            "postgres://db/af?user=u&password=***"
        );
        assert_eq!(redact_url("postgres://u@db/af"), "postgres://u@db/af");
        assert_eq!(
            redact_url("host=db password=hunter2"),
            "<unparsable database URL>"
        );
        assert_eq!(
            scrub(
                "auth failed for s3cr@t",
                "postgres://app:s3cr%40t@db.example/af"
            ),
            "auth failed for ***"
        );
    }

    #[test]
    fn libpq_gets_the_whole_url_and_the_password_only_through_its_environment() {
        // Issue 16: parameters libpq knows and we do not map (connect_timeout, options,
        // target_session_attrs) used to be dropped silently; now the URL itself is the dbname.
        let c = LibpqConnection::new(
            "postgres://app%40x:p%2Fw@db.internal:6543/art?sslmode=require&connect_timeout=7&options=-c%20search_path%3Dx&target_session_attrs=read-write",
            None,
        )
        .unwrap();
        let get = |k: &str| c.env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGPASSWORD"), Some("p/w"));
        assert_eq!(get("PGAPPNAME"), Some("terraform-provider-artifortress"));
        assert_eq!(
            c.dbname_arg(),
            "--dbname=postgres://app%40x@db.internal:6543/art?sslmode=require&connect_timeout=7&options=-c%20search_path%3Dx&target_session_attrs=read-write"
        );
        assert!(!c.dbname.contains("p%2Fw") && !c.dbname.contains("p/w"));
        // A password given as a parameter goes the same way, the other parameters kept as
        // written (libpq reads a `+` as a `+`).
        let c = LibpqConnection::new("postgres://app@db/art?password=s3cr3t", None).unwrap();
        assert_eq!(c.dbname, "postgres://app@db/art");
        let c = LibpqConnection::new(
            "postgres://app@db/art?options=-c%20x%3Dy&password=s3cr3t&sslmode=require",
            None,
        )
        .unwrap();
        assert_eq!(
            c.dbname,
            "postgres://app@db/art?options=-c%20x%3Dy&sslmode=require"
        );
        assert!(c.env.contains(&("PGPASSWORD", "s3cr3t".to_string())));
        // Another database of the same server (a restore drill's).
        let c = LibpqConnection::new(
            "postgres://app:pw@db:5432/postgres?sslmode=disable",
            Some("af_drill_1"),
        )
        .unwrap();
        assert_eq!(
            c.dbname,
            "postgres://app@db:5432/af%5Fdrill%5F1?sslmode=disable"
        );
        assert!(LibpqConnection::new("mysql://x/y", None).is_err());
        let e = LibpqConnection::new("postgres://db/a?sslpassword=k", None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("sslpassword"), "{e}");
    }

    #[test]
    fn drill_database_names_are_plain_identifiers() {
        assert!(valid_identifier("artifortress_drill"));
        assert!(valid_identifier("_x9"));
        assert!(!valid_identifier("9x"));
        assert!(!valid_identifier("drill\"; drop database prod; --"));
        assert!(!valid_identifier("o'brien"));
        assert!(!valid_identifier(""));
        assert!(!valid_identifier(&"a".repeat(64)));
    }

    #[test]
    fn identifiers_are_plain_and_at_most_63_bytes() {
        for ok in [
            "artifortress",
            "artifortress_staging",
            "_x",
            "A1",
            &"a".repeat(63),
        ] {
            assert!(valid_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "bad-name",
            "1abc",
            "a b",
            "a\"b",
            "a;drop role x",
            "é",
            "x'",
            &"a".repeat(64),
        ] {
            assert!(!valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn quoting_doubles_inner_quotes_and_keeps_case() {
        assert_eq!(quote_ident("Artifortress"), "\"Artifortress\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\"; drop role y; --"),
            "\"x\"\"; drop role y; --\""
        );
    }
}
