//! API configuration from the same environment variables as the real service.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sqlx::postgres::PgConnectOptions;

use super::faults::{self, Faults};
use super::npgsql;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("invalid {name}: {message}")]
    Invalid { name: &'static str, message: String },
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
pub struct ObjectStorageConfig {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    pub presign_part_ttl_seconds: u32,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to bind (port 0 = pick a free port).
    pub bind: SocketAddr,
    pub environment: String,
    pub postgres: PgConnectOptions,
    pub bootstrap_token: Option<String>,
    pub object_storage: ObjectStorageConfig,
    /// Test-only fault switches (`TESTBED_FAULT_*`), never part of the real service.
    pub initial_faults: Faults,
    /// `TESTBED_FAULTS_ENABLED=1` enables `GET/PUT /testbed/faults`.
    pub faults_api_enabled: bool,
}

/// ASP.NET's listen address without `ASPNETCORE_URLS`.
pub const DEFAULT_URLS: &str = "http://localhost:5000";
/// The service's fallback connection string (Program.fs:7319).
pub const DEFAULT_CONNECTION_STRING: &str =
    "Host=localhost;Port=5432;Username=artifortress;Password=artifortress;Database=artifortress";
/// The well-known bootstrap token shipped in the service's appsettings.json (line 23).
pub const DEFAULT_BOOTSTRAP_TOKEN: &str = "artifortress-bootstrap";
pub const DEFAULT_PRESIGN_PART_TTL_SECONDS: u32 = 900;

/// Parse the first URL of `ASPNETCORE_URLS` (`;`-separated) into a bind address.
pub fn parse_listen_url(urls: &str) -> Result<SocketAddr, ConfigError> {
    let first = urls
        .split(';')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .ok_or_else(|| invalid("ASPNETCORE_URLS", "no URL given"))?;
    let rest = first.strip_prefix("http://").ok_or_else(|| {
        invalid(
            "ASPNETCORE_URLS",
            format!("{first:?}: only http:// URLs are supported by the test bed"),
        )
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, after) = stripped
            .split_once(']')
            .ok_or_else(|| invalid("ASPNETCORE_URLS", format!("{first:?}: bad IPv6 host")))?;
        (h.to_string(), after.strip_prefix(':').unwrap_or(""))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), ""),
        }
    };
    let port: u16 = if port.is_empty() {
        80
    } else {
        port.parse()
            .map_err(|_| invalid("ASPNETCORE_URLS", format!("{first:?}: bad port {port:?}")))?
    };
    let ip: IpAddr = match host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "*" | "+" | "" | "0.0.0.0" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "::" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        h => h.parse().map_err(|_| {
            invalid(
                "ASPNETCORE_URLS",
                format!("{first:?}: host must be an IP address, localhost or *"),
            )
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Missing database or storage settings fall back to the service's localhost defaults, as
    /// the service does: it starts and answers `not_ready` (Program.fs:7316-7320,
    /// ObjectStorage.fs:99-111); an out-of-range `PresignPartTtlSeconds` is 900
    /// (ObjectStorage.fs:94-97); `ObjectStorage__Region` is never read (ObjectStorage.fs:119
    /// signs for `us-east-1`); an unset `Auth__BootstrapToken` is appsettings.json's
    /// `artifortress-bootstrap` (appsettings.json:22-24), one set to blank disables the header.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let or_default = |k: &str, default: &str| {
            non_empty(k).map_or_else(|| default.to_string(), |v| v.trim().to_string())
        };

        let bind =
            parse_listen_url(&non_empty("ASPNETCORE_URLS").unwrap_or_else(|| DEFAULT_URLS.into()))?;
        let environment =
            non_empty("ASPNETCORE_ENVIRONMENT").unwrap_or_else(|| "Production".to_string());
        let postgres = npgsql::to_pg_options(&or_default(
            "ConnectionStrings__Postgres",
            DEFAULT_CONNECTION_STRING,
        ))
        .map_err(|e| invalid("ConnectionStrings__Postgres", e.to_string()))?;
        let presign_part_ttl_seconds = non_empty("ObjectStorage__PresignPartTtlSeconds")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| (60..=3600).contains(n))
            .unwrap_or(DEFAULT_PRESIGN_PART_TTL_SECONDS);
        let object_storage = ObjectStorageConfig {
            endpoint: or_default("ObjectStorage__Endpoint", "http://localhost:9000"),
            access_key: or_default("ObjectStorage__AccessKey", "artifortress"),
            secret_key: or_default("ObjectStorage__SecretKey", "artifortress"),
            bucket: or_default("ObjectStorage__Bucket", "artifortress-dev"),
            presign_part_ttl_seconds,
        };
        let bootstrap_token = match get("Auth__BootstrapToken") {
            None => Some(DEFAULT_BOOTSTRAP_TOKEN.to_string()),
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v),
        };
        let initial_faults = faults::from_lookup(&get)
            .map_err(|e| invalid("TESTBED_FAULT_* (test-only fault switches)", e))?;
        Ok(ApiConfig {
            bind,
            environment,
            postgres,
            bootstrap_token,
            object_storage,
            initial_faults,
            faults_api_enabled: get("TESTBED_FAULTS_ENABLED").is_some_and(|v| is_truthy(&v)),
        })
    }
}

pub fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn listen_urls() {
        assert_eq!(
            parse_listen_url("http://127.0.0.1:8086").unwrap(),
            "127.0.0.1:8086".parse().unwrap()
        );
        assert_eq!(
            parse_listen_url("http://localhost:0/;http://x:1").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen_url("http://*:8086").unwrap(),
            "0.0.0.0:8086".parse().unwrap()
        );
        assert_eq!(
            parse_listen_url("http://[::1]:9").unwrap(),
            "[::1]:9".parse().unwrap()
        );
        assert!(parse_listen_url("https://127.0.0.1:1").is_err());
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_fallbacks_follow_the_service() {
        let base = [
            (
                "ConnectionStrings__Postgres",
                "Host=127.0.0.1;Port=1;Username=u;Password=p;Database=d",
            ),
            ("ObjectStorage__Endpoint", "http://127.0.0.1:2"),
            ("ObjectStorage__AccessKey", "ak"),
            ("ObjectStorage__SecretKey", "sk"),
            ("ObjectStorage__Bucket", "b"),
        ];
        let e = env(&base);
        let c = ApiConfig::from_lookup(|k| e.get(k).cloned()).unwrap();
        assert_eq!(c.environment, "Production");
        assert_eq!(c.object_storage.presign_part_ttl_seconds, 900);
        assert_eq!(c.bootstrap_token.as_deref(), Some("artifortress-bootstrap"));
        assert_eq!(c.bind, "127.0.0.1:5000".parse().unwrap());

        for ttl in ["59", "3601", "x"] {
            let mut v = base.to_vec();
            v.push(("ObjectStorage__PresignPartTtlSeconds", ttl));
            let e = env(&v);
            let c = ApiConfig::from_lookup(|k| e.get(k).cloned()).unwrap();
            assert_eq!(c.object_storage.presign_part_ttl_seconds, 900, "{ttl}");
        }
        let mut v = base.to_vec();
        v.push(("ObjectStorage__PresignPartTtlSeconds", "60"));
        v.push(("Auth__BootstrapToken", " "));
        let e = env(&v);
        let c = ApiConfig::from_lookup(|k| e.get(k).cloned()).unwrap();
        assert_eq!(c.object_storage.presign_part_ttl_seconds, 60);
        assert_eq!(c.bootstrap_token, None);

        let e = env(&[]);
        let c = ApiConfig::from_lookup(|k| e.get(k).cloned()).unwrap();
        assert_eq!(c.postgres.get_host(), "localhost");
        assert_eq!(c.postgres.get_port(), 5432);
        assert_eq!(c.object_storage.endpoint, "http://localhost:9000");
        assert_eq!(c.object_storage.bucket, "artifortress-dev");
    }
}
