//! The provider's settings as resources receive them: every setting optional, with an
//! environment variable fallback, secrets that never print, and the clients built lazily from
//! them. A missing or unknown setting is reported only by what needs it, naming the attribute
//! and the environment variable.
//!
//! Below the type files (resources, data sources, ephemeral resources) and beside
//! [`crate::provider`], which holds the provider schema and the registry: it imports clients and
//! protocol, never a type file.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

use crate::clients::api::{ApiClient, ApiError};
use crate::clients::hosts::{EnvKey, HostError, PrivateKeyText, SshConfig, SshTransport};
use crate::clients::object_store::{self, ObjectStoreConfig};
use crate::duration;
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::value::Value;

pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A provider setting as Terraform gave it, after the environment fallback.
#[derive(Clone, PartialEq, Eq)]
pub enum Setting<T> {
    /// Neither configured nor in the environment.
    Unset,
    /// Configured from something not known until apply.
    Unknown,
    Known(T),
}

/// A secret string: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T: fmt::Debug> fmt::Debug for Setting<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Unset => f.write_str("Unset"),
            Setting::Unknown => f.write_str("Unknown"),
            Setting::Known(v) => write!(f, "Known({v:?})"),
        }
    }
}

/// Describes one setting for diagnostics: its attribute and its environment variable.
#[derive(Clone, Copy, Debug)]
pub struct SettingName {
    /// The nested attribute holding it (`object_storage`), or `None` at the top level.
    pub block: Option<&'static str>,
    /// How diagnostics name it (`object_storage.endpoint`).
    pub attribute: &'static str,
    pub env: Option<&'static str>,
}

pub const API_URL: SettingName = SettingName {
    block: None,
    attribute: "api_url",
    env: Some("ARTIFORTRESS_API_URL"),
};
pub const ADMIN_TOKEN: SettingName = SettingName {
    block: None,
    attribute: "admin_token",
    env: Some("ARTIFORTRESS_ADMIN_TOKEN"),
};
pub const BOOTSTRAP_TOKEN: SettingName = SettingName {
    block: None,
    attribute: "bootstrap_token",
    env: Some("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
};
pub const DATABASE_URL: SettingName = SettingName {
    block: None,
    attribute: "database_url",
    env: Some("ARTIFORTRESS_DATABASE_URL"),
};
pub const S3_ENDPOINT: SettingName = SettingName {
    block: Some("object_storage"),
    attribute: "object_storage.endpoint",
    env: Some("ARTIFORTRESS_S3_ENDPOINT"),
};
pub const S3_REGION: SettingName = SettingName {
    block: Some("object_storage"),
    attribute: "object_storage.region",
    env: Some("AWS_REGION"),
};
pub const S3_BUCKET: SettingName = SettingName {
    block: Some("object_storage"),
    attribute: "object_storage.bucket",
    env: Some("ARTIFORTRESS_S3_BUCKET"),
};
pub const S3_ACCESS_KEY: SettingName = SettingName {
    block: Some("object_storage"),
    attribute: "object_storage.access_key_id",
    env: Some("AWS_ACCESS_KEY_ID"),
};
pub const S3_SECRET_KEY: SettingName = SettingName {
    block: Some("object_storage"),
    attribute: "object_storage.secret_access_key",
    env: Some("AWS_SECRET_ACCESS_KEY"),
};

pub const SSH_USER: SettingName = SettingName {
    block: Some("ssh"),
    attribute: "ssh.user",
    env: Some("ARTIFORTRESS_SSH_USER"),
};
pub const SSH_PRIVATE_KEY: SettingName = SettingName {
    block: Some("ssh"),
    attribute: "ssh.private_key",
    env: Some("ARTIFORTRESS_SSH_PRIVATE_KEY"),
};
pub const SSH_KNOWN_HOSTS: SettingName = SettingName {
    block: Some("ssh"),
    attribute: "ssh.known_hosts",
    env: Some("ARTIFORTRESS_SSH_KNOWN_HOSTS"),
};

/// How to reach deploy hosts over SSH.
#[derive(Clone, Debug)]
pub struct SshSettings {
    pub user: Setting<String>,
    pub private_key: Setting<Secret>,
    /// known_hosts text; unset: `~/.ssh/known_hosts`.
    pub known_hosts: Setting<String>,
    pub insecure_ignore_host_key: bool,
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct ObjectStorageSettings {
    pub endpoint: Setting<String>,
    pub region: Setting<String>,
    pub bucket: Setting<String>,
    pub access_key_id: Setting<String>,
    pub secret_access_key: Setting<Secret>,
    pub force_path_style: bool,
}

/// What every resource and data source receives.
#[derive(Debug)]
pub struct Settings {
    /// `staging` or `production`; production turns on the release gates.
    pub environment: Setting<String>,
    pub api_url: Setting<String>,
    pub admin_token: Setting<Secret>,
    /// When `admin_token` expires, when the configuration says (`admin_token_expires_at`).
    pub admin_token_expires_at: Setting<DateTime<Utc>>,
    pub bootstrap_token: Setting<Secret>,
    pub database_url: Setting<Secret>,
    pub object_storage: ObjectStorageSettings,
    pub ssh: SshSettings,
    pub request_timeout: Duration,
    http: OnceLock<Result<reqwest::Client, String>>,
    s3: OnceLock<aws_sdk_s3::Client>,
    /// Tokens minted by `ephemeral "artifortress_admin_token"` in this process, by id, so close
    /// can revoke them without the secret ever leaving the process.
    minted: std::sync::Mutex<std::collections::HashMap<String, Secret>>,
    /// SSH sessions by `address:port`, reused by every operation of this provider process.
    ssh_sessions: tokio::sync::Mutex<std::collections::HashMap<String, Arc<SshTransport>>>,
    /// Release env-fingerprint keys read from hosts in this process (`None`: the host has
    /// none), so a plan keys the env with what the refresh before it read. Memory only.
    env_keys: std::sync::Mutex<std::collections::HashMap<String, Option<EnvKey>>>,
}

impl Settings {
    /// The shared HTTP client, built on first use.
    pub fn http(&self) -> Result<reqwest::Client, Diagnostic> {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(concat!(
                        "terraform-provider-artifortress/",
                        env!("CARGO_PKG_VERSION")
                    ))
                    .connect_timeout(self.request_timeout.min(Duration::from_secs(10)))
                    .timeout(self.request_timeout)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| Diagnostic::error("Could not build the HTTP client", e))
    }

    /// The S3 client for `object_storage`, built on first use. Access keys are optional (an
    /// anonymous client is refused by a private bucket with the server's own message), but an
    /// unknown setting is an error.
    pub fn object_store(&self) -> Result<aws_sdk_s3::Client, Diagnostic> {
        if let Some(c) = self.s3.get() {
            return Ok(c.clone());
        }
        let st = &self.object_storage;
        let optional = |s: &Setting<String>, name: SettingName| match s {
            Setting::Unknown => require(s, name, "object storage"),
            Setting::Known(v) => Ok(v.clone()),
            Setting::Unset => Ok(String::new()),
        };
        let endpoint = optional(&st.endpoint, S3_ENDPOINT)?;
        let region = optional(&st.region, S3_REGION)?;
        let access_key_id = optional(&st.access_key_id, S3_ACCESS_KEY)?;
        let secret = match &st.secret_access_key {
            Setting::Known(s) => s.expose().to_string(),
            Setting::Unset => String::new(),
            unknown => {
                require(unknown, S3_SECRET_KEY, "object storage")?;
                String::new()
            }
        };
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let client = object_store::client(&ObjectStoreConfig {
            endpoint: non_empty(endpoint),
            region: non_empty(region).unwrap_or_else(|| "us-east-1".into()),
            access_key_id: non_empty(access_key_id),
            secret_access_key: non_empty(secret),
            force_path_style: st.force_path_style,
        });
        Ok(self.s3.get_or_init(|| client).clone())
    }

    /// The bucket: `own` (a resource's attribute), else the provider's. `Ok(None)` when unknown.
    pub fn bucket(&self, own: Option<&str>) -> Result<Option<String>, Diagnostic> {
        match (own, &self.object_storage.bucket) {
            (Some(b), _) => Ok(Some(b.to_string())),
            (None, Setting::Unknown) => Ok(None),
            (None, s) => require(s, S3_BUCKET, "a bucket").map(Some),
        }
    }

    /// The database URL in `own` (a resource's attribute) or, when that is null, the
    /// provider's. `Ok(None)` while unknown (plan time).
    pub fn database_url_for(&self, own: &Value) -> Result<Option<String>, Diagnostic> {
        match own {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Unknown(_) => Ok(None),
            _ => match &self.database_url {
                Setting::Unknown => Ok(None),
                other => {
                    require(other, DATABASE_URL, "a database").map(|s| Some(s.expose().to_string()))
                }
            },
        }
    }

    /// [`Settings::database_url_for`] when the value is needed now (apply, refresh, read): an
    /// unknown value is an error on `attr`.
    pub fn need_database_url(&self, own: &Value, attr: &str) -> Result<String, Diagnostic> {
        known(self.database_url_for(own), attr, "database URL")
    }

    /// [`Settings::bucket`] when the value is needed now.
    pub fn need_bucket(&self, own: Option<&str>, attr: &str) -> Result<String, Diagnostic> {
        known(self.bucket(own), attr, "bucket")
    }

    /// An API client for `override_url` (a resource's own `url`) or the provider's `api_url`.
    pub fn api_client(&self, override_url: Option<&str>) -> Result<ApiClient, Diagnostic> {
        let url = match override_url {
            Some(u) => u.to_string(),
            None => require(&self.api_url, API_URL, "the Artifortress API URL")?,
        };
        let parsed = Url::parse(&url).map_err(|e| {
            Diagnostic::error(
                "Invalid Artifortress API URL",
                format!("{url:?} is not a URL: {e}."),
            )
        })?;
        Ok(ApiClient::new(self.http()?, parsed, self.request_timeout))
    }
}

impl Settings {
    /// The SSH client configuration, or the diagnostic naming what is missing.
    pub fn ssh_config(&self) -> Result<SshConfig, Diagnostic> {
        let user = match &self.ssh.user {
            Setting::Unset => std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "root".into()),
            other => require(other, SSH_USER, "the SSH user")?,
        };
        let mut config = SshConfig::new(user);
        config.private_key = match &self.ssh.private_key {
            Setting::Unset => None,
            other => Some(PrivateKeyText::new(
                require(other, SSH_PRIVATE_KEY, "the SSH private key")?
                    .expose()
                    .to_string(),
            )),
        };
        config.insecure_ignore_host_key = self.ssh.insecure_ignore_host_key;
        config.connect_timeout = self.ssh.connect_timeout;
        if !config.insecure_ignore_host_key {
            config.known_hosts = match &self.ssh.known_hosts {
                Setting::Unset => {
                    let path = std::env::var_os("HOME")
                        .map(|h| std::path::PathBuf::from(h).join(".ssh/known_hosts"));
                    match path.as_ref().map(std::fs::read_to_string) {
                        Some(Ok(text)) => text,
                        _ => {
                            return Err(Diagnostic::error(
                                "No known_hosts for SSH",
                                "Host keys are verified against `ssh.known_hosts` (the text of a known_hosts file; environment: ARTIFORTRESS_SSH_KNOWN_HOSTS), else ~/.ssh/known_hosts, and neither is there. Add the hosts' keys (after checking their fingerprints), or set `ssh.insecure_ignore_host_key = true` for throw-away hosts.",
                            )
                            .at_attr("ssh"));
                        }
                    }
                }
                other => require(other, SSH_KNOWN_HOSTS, "the known_hosts text")?,
            };
        }
        Ok(config)
    }

    /// A session to `address:port`, reused within this provider process (reconnecting when the
    /// connection was lost).
    pub async fn ssh(&self, address: &str, port: u16) -> Result<Arc<SshTransport>, HostError> {
        let key = format!("{address}:{port}");
        let mut sessions = self.ssh_sessions.lock().await;
        if let Some(t) = sessions.get(&key) {
            return Ok(t.clone());
        }
        let config = self.ssh_config().map_err(|d| HostError::Connect {
            host: key.clone(),
            message: format!("{}: {}", d.summary, d.detail),
        })?;
        let t = Arc::new(SshTransport::connect(address, port, &config).await?);
        sessions.insert(key, t.clone());
        Ok(t)
    }

    /// The env-fingerprint key a host was seen with in this process (`Some(None)`: seen
    /// without one; `None`: not seen).
    pub fn env_key(&self, id: &str) -> Option<Option<EnvKey>> {
        self.env_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn cache_env_key(&self, id: String, key: Option<EnvKey>) {
        self.env_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, key);
    }

    pub fn remember_minted(&self, token_id: &str, token: Secret) {
        if let Ok(mut m) = self.minted.lock() {
            m.insert(token_id.to_string(), token);
        }
    }

    pub fn forget_minted(&self, token_id: &str) -> Option<Secret> {
        self.minted.lock().ok().and_then(|mut m| m.remove(token_id))
    }

    /// The provider's admin bearer token (possibly an ephemeral one given to this provider
    /// block), or the diagnostic that says how to provide it.
    pub fn admin_token(&self) -> Result<String, Diagnostic> {
        require(
            &self.admin_token,
            ADMIN_TOKEN,
            "an admin token (a PAT with scope `repo:*:admin`); an `ephemeral \"artifortress_admin_token\"` can mint one for this run, given to an aliased provider block as its admin_token",
        )
        .map(|s| s.expose().to_string())
    }
}

/// A diagnostic for a failed API call: the summary says what the status means, the detail
/// quotes the service's own `error`/`message`.
pub fn api_diagnostic(doing: &str, e: &ApiError) -> Diagnostic {
    let summary = match e {
        ApiError::Service { status: 401, .. } => {
            format!("{doing}: Artifortress refused the token (401)")
        }
        ApiError::Service { status: 403, .. } => {
            format!("{doing}: the token lacks the required role (403)")
        }
        ApiError::Service { status: 503, .. } => {
            format!("{doing}: Artifortress is unavailable (503)")
        }
        ApiError::Unreachable { .. } | ApiError::Timeout { .. } => {
            format!("{doing}: Artifortress is unreachable")
        }
        ApiError::BodyTooLarge { .. } => {
            format!("{doing}: the answer is larger than the provider reads")
        }
        _ => format!("{doing} failed"),
    };
    let hint = match e {
        ApiError::Service { status: 401, .. } => {
            "\n\nThe token is invalid, expired or revoked. Mint a fresh one (`ephemeral \"artifortress_admin_token\"`) or check `admin_token` / ARTIFORTRESS_ADMIN_TOKEN."
        }
        ApiError::Service { status: 403, .. } => {
            "\n\nThe admin endpoints need a PAT with scope `repo:*:admin` or an admin/auditor role binding."
        }
        ApiError::Service { status: 503, .. } => {
            "\n\nThe service answers 503 when PostgreSQL does not; see `data \"artifortress_readiness\"`."
        }
        _ => "",
    };
    Diagnostic::error(summary, format!("{e}{hint}"))
}

/// A value needed now: unknown is an error (on `attr`, like any error from `r`).
fn known<T>(r: Result<Option<T>, Diagnostic>, attr: &str, what: &str) -> Result<T, Diagnostic> {
    match r {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Diagnostic::error(
            format!("The {what} is not known"),
            format!(
                "This operation needs the {what} now, but it depends on a value that is not \
                 known yet."
            ),
        )
        .at_attr(attr)),
        Err(d) => Err(d.at_attr(attr)),
    }
}

/// The value of a setting an operation needs, or the diagnostic that says how to provide it.
pub fn require<T: Clone>(
    setting: &Setting<T>,
    name: SettingName,
    what: &str,
) -> Result<T, Diagnostic> {
    let how = match name.env {
        Some(env) => format!(
            "`{}` in the provider block or the {env} environment variable",
            name.attribute
        ),
        None => format!("`{}` in the provider block", name.attribute),
    };
    match setting {
        Setting::Known(v) => Ok(v.clone()),
        Setting::Unset => Err(Diagnostic::error(
            format!("Missing provider setting {}", name.attribute),
            format!("This operation needs {what}. Set {how}."),
        )),
        Setting::Unknown => Err(Diagnostic::error(
            format!("Provider setting {} is not known yet", name.attribute),
            format!(
                "This operation needs {what} now, but the provider's `{}` depends on a value \
                 that is only known after apply. Set it from a known value, apply the \
                 resources it depends on first (-target), or give this block its own setting.",
                name.attribute
            ),
        )),
    }
}

fn string_setting(config: &Value, name: SettingName) -> Setting<String> {
    let field = name.attribute.rsplit('.').next().unwrap_or(name.attribute);
    let holder = match name.block {
        Some(block) => config.attr(block),
        None => config,
    };
    match holder.attr(field) {
        Value::Unknown(_) => Setting::Unknown,
        Value::String(s) => Setting::Known(s.clone()),
        // The whole nested attribute may be unknown.
        _ if holder.is_unknown() => Setting::Unknown,
        _ => match name.env.and_then(|e| std::env::var(e).ok()) {
            Some(v) if !v.is_empty() => Setting::Known(v),
            _ => Setting::Unset,
        },
    }
}

fn secret_setting(config: &Value, name: SettingName) -> Setting<Secret> {
    match string_setting(config, name) {
        Setting::Known(s) => Setting::Known(Secret(s)),
        Setting::Unknown => Setting::Unknown,
        Setting::Unset => Setting::Unset,
    }
}

impl Settings {
    pub fn from_config(config: &Value) -> Result<Settings, Diagnostic> {
        let request_timeout = match config.attr("request_timeout").as_str() {
            Some(s) => duration::parse(s).map_err(|e| {
                Diagnostic::error("Invalid request_timeout", e.to_string())
                    .at_attr("request_timeout")
            })?,
            None => DEFAULT_REQUEST_TIMEOUT,
        };
        let environment = match config.attr("environment") {
            Value::Unknown(_) => Setting::Unknown,
            Value::String(s) => Setting::Known(s.clone()),
            _ => Setting::Unset,
        };
        let admin_token_expires_at = match config.attr("admin_token_expires_at") {
            Value::Unknown(_) => Setting::Unknown,
            Value::String(s) => Setting::Known(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|e| {
                        Diagnostic::error(
                            "Invalid admin_token_expires_at",
                            format!("{s:?} is not an RFC 3339 time: {e}."),
                        )
                        .at_attr("admin_token_expires_at")
                    })?
                    .with_timezone(&Utc),
            ),
            _ => Setting::Unset,
        };
        let storage = config.attr("object_storage");
        Ok(Settings {
            environment,
            api_url: string_setting(config, API_URL),
            admin_token: secret_setting(config, ADMIN_TOKEN),
            admin_token_expires_at,
            bootstrap_token: secret_setting(config, BOOTSTRAP_TOKEN),
            database_url: secret_setting(config, DATABASE_URL),
            object_storage: ObjectStorageSettings {
                endpoint: string_setting(config, S3_ENDPOINT),
                region: match string_setting(config, S3_REGION) {
                    Setting::Unset => Setting::Known("us-east-1".into()),
                    other => other,
                },
                bucket: string_setting(config, S3_BUCKET),
                access_key_id: string_setting(config, S3_ACCESS_KEY),
                secret_access_key: secret_setting(config, S3_SECRET_KEY),
                force_path_style: storage.attr("force_path_style").as_bool().unwrap_or(true),
            },
            ssh: SshSettings {
                user: string_setting(config, SSH_USER),
                private_key: secret_setting(config, SSH_PRIVATE_KEY),
                known_hosts: string_setting(config, SSH_KNOWN_HOSTS),
                insecure_ignore_host_key: config
                    .attr("ssh")
                    .attr("insecure_ignore_host_key")
                    .as_bool()
                    .unwrap_or(false),
                connect_timeout: match config.attr("ssh").attr("connect_timeout").as_str() {
                    Some(s) => duration::parse(s).map_err(|e| {
                        Diagnostic::error("Invalid ssh.connect_timeout", e.to_string())
                            .at_attr("ssh")
                    })?,
                    None => Duration::from_secs(30),
                },
            },
            request_timeout,
            http: OnceLock::new(),
            s3: OnceLock::new(),
            minted: Default::default(),
            ssh_sessions: Default::default(),
            env_keys: Default::default(),
        })
    }
}
