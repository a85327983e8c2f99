//! Npgsql-style connection strings (`Host=..;Port=..;Username=..;Password=..;Database=..`),
//! as the real service reads them from `ConnectionStrings__Postgres`.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The parsed, recognised settings of an Npgsql connection string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NpgsqlSettings {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub ssl_mode: Option<String>,
    pub application_name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NpgsqlError {
    #[error("connection string segment {0:?} is not of the form Key=Value")]
    Malformed(String),
    #[error("connection string has an invalid Port {0:?}")]
    BadPort(String),
    #[error("connection string has an unsupported SSL Mode {0:?}")]
    BadSslMode(String),
    #[error("connection string has no Host")]
    NoHost,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            let inner = &v[1..v.len() - 1];
            let doubled: String = [q, q].iter().collect();
            return inner.replace(&doubled, &q.to_string());
        }
    }
    v.to_string()
}

/// Split on `;` that are not inside single or double quotes.
fn split_segments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (None, ';') => out.push(std::mem::take(&mut cur)),
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parse an Npgsql connection string. Keys are matched case-insensitively and spaces inside
/// keys are ignored (`User ID`, `UserId`, `SSL Mode`, `SslMode`). Unknown keys are ignored.
pub fn parse(s: &str) -> Result<NpgsqlSettings, NpgsqlError> {
    let mut out = NpgsqlSettings::default();
    for seg in split_segments(s) {
        if seg.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = seg.split_once('=') else {
            return Err(NpgsqlError::Malformed(seg.trim().to_string()));
        };
        let key: String = k
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let value = unquote(v);
        match key.as_str() {
            "host" | "server" => out.host = Some(value),
            "port" => {
                out.port = Some(
                    value
                        .parse()
                        .map_err(|_| NpgsqlError::BadPort(value.clone()))?,
                )
            }
            "username" | "userid" | "user" | "uid" => out.username = Some(value),
            "password" | "pwd" | "psw" => out.password = Some(value),
            "database" | "db" => out.database = Some(value),
            "sslmode" => out.ssl_mode = Some(value),
            "applicationname" => out.application_name = Some(value),
            _ => {}
        }
    }
    Ok(out)
}

impl NpgsqlSettings {
    /// Convert to sqlx connect options (no environment fallbacks, no `.pgpass`).
    pub fn to_pg_options(&self) -> Result<PgConnectOptions, NpgsqlError> {
        let host = self.host.as_deref().ok_or(NpgsqlError::NoHost)?;
        // Npgsql accepts a comma-separated host list; the test bed uses the first one.
        let host = host.split(',').next().unwrap_or(host).trim();
        let (host, port_in_host) = match host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => {
                (h, p.parse::<u16>().ok())
            }
            _ => (host, None),
        };
        let port = self.port.or(port_in_host).unwrap_or(5432);
        let mut o = PgConnectOptions::new_without_pgpass().port(port);
        if host.starts_with('/') {
            o = o.socket(host);
        } else {
            o = o.host(host);
        }
        if let Some(u) = &self.username {
            o = o.username(u);
        }
        if let Some(p) = &self.password {
            o = o.password(p);
        }
        // Npgsql's default database is the user name.
        let db = self.database.clone().or_else(|| self.username.clone());
        if let Some(d) = &db {
            o = o.database(d);
        }
        let ssl = match self
            .ssl_mode
            .as_deref()
            .map(|s| s.to_ascii_lowercase().replace(['-', '_'], ""))
            .as_deref()
        {
            None | Some("prefer") => PgSslMode::Prefer,
            Some("disable") => PgSslMode::Disable,
            Some("allow") => PgSslMode::Allow,
            Some("require") => PgSslMode::Require,
            Some("verifyca") => PgSslMode::VerifyCa,
            Some("verifyfull") => PgSslMode::VerifyFull,
            Some(_) => {
                return Err(NpgsqlError::BadSslMode(
                    self.ssl_mode.clone().unwrap_or_default(),
                ));
            }
        };
        o = o.ssl_mode(ssl);
        o = o.application_name(
            self.application_name
                .as_deref()
                .unwrap_or("artifortress-testbed"),
        );
        Ok(o)
    }
}

/// Parse and convert in one go.
pub fn to_pg_options(s: &str) -> Result<PgConnectOptions, NpgsqlError> {
    parse(s)?.to_pg_options()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitive_keys() {
        let s = parse(
            "host=127.0.0.1;PORT=5433;User ID=app;Password='p;w';DATABASE=af;SSL Mode=Disable",
        )
        .unwrap();
        assert_eq!(s.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.port, Some(5433));
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(s.password.as_deref(), Some("p;w"));
        assert_eq!(s.database.as_deref(), Some("af"));
        let o = s.to_pg_options().unwrap();
        assert_eq!(o.get_port(), 5433);
        assert_eq!(o.get_host(), "127.0.0.1");
        assert_eq!(o.get_database(), Some("af"));
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Disable));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse("Host"), Err(NpgsqlError::Malformed(_))));
        assert!(matches!(
            parse("Host=x;Port=abc"),
            Err(NpgsqlError::BadPort(_))
        ));
        assert!(matches!(to_pg_options("Port=1"), Err(NpgsqlError::NoHost)));
    }
}
