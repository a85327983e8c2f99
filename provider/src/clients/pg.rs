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
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(k, v)| {
            if is_secret_key(&k) {
                replacement.map(|r| (k.into_owned(), r.to_string()))
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if pairs.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(pairs);
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

/// libpq environment for pg_dump from a URL, so the password never appears on a command line.
pub fn libpq_env(url: &str) -> Result<Vec<(&'static str, String)>, InvalidUrl> {
    let invalid = |message: String| InvalidUrl {
        url: redact_url(url),
        message,
    };
    let u = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Err(invalid(format!("scheme {:?} is not postgres", u.scheme())));
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut env = vec![("PGAPPNAME", "terraform-provider-artifortress".to_string())];
    if let Some(h) = u.host_str() {
        env.push(("PGHOST", h.trim_matches(['[', ']']).to_string()));
    }
    if let Some(p) = u.port() {
        env.push(("PGPORT", p.to_string()));
    }
    if !u.username().is_empty() {
        env.push(("PGUSER", decode(u.username())));
    }
    if let Some(p) = u.password() {
        env.push(("PGPASSWORD", decode(p)));
    }
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        env.push(("PGDATABASE", decode(db)));
    }
    for (k, v) in u.query_pairs() {
        let var = match k.as_ref() {
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            "host" => "PGHOST",
            "port" => "PGPORT",
            "user" => "PGUSER",
            "password" => "PGPASSWORD",
            "dbname" => "PGDATABASE",
            _ => continue,
        };
        env.push((var, v.into_owned()));
    }
    Ok(env)
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
    fn libpq_environment_carries_the_url_without_a_command_line() {
        let env =
            libpq_env("postgres://app%40x:p%2Fw@db.internal:6543/art?sslmode=require").unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGHOST"), Some("db.internal"));
        assert_eq!(get("PGPORT"), Some("6543"));
        assert_eq!(get("PGUSER"), Some("app@x"));
        assert_eq!(get("PGPASSWORD"), Some("p/w"));
        assert_eq!(get("PGDATABASE"), Some("art"));
        assert_eq!(get("PGSSLMODE"), Some("require"));
        assert!(libpq_env("mysql://x/y").is_err());
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
