//! The service's own configuration: the keys the Artifortress API and worker read from their
//! environment, their ranges, which a production deployment must set, and the checks of an env
//! file against them (required keys, ranges, the well-known bootstrap token, misspelt keys, the
//! API's listen port).
//!
//! Sources (sremani/Artifortress at f628e74): `docs/30-deployment-config-reference.md` (the
//! reference) and the code that actually reads each key, cited per key below. ASP.NET Core maps an
//! environment variable `A__B` to the configuration key `A:B` and compares configuration keys
//! case-insensitively, so the API's keys match in any case; the worker reads its environment
//! with `Environment.GetEnvironmentVariable`, which on Linux is case-sensitive.
//!
//! Findings never carry a value (they are secrets), except the number of a range error.

use std::collections::BTreeMap;

use crate::clients::release::Role;

/// What a key's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    Text,
    /// An integer in `min..=max`; the service silently takes its default otherwise. With
    /// `min_from`, the lower bound is that key's value when it is set and in its own range.
    Int {
        min: i64,
        max: i64,
        default: i64,
        min_from: Option<&'static str>,
    },
    /// `true` or `false` (`Boolean.TryParse`; anything else reads as `false`).
    Bool,
    /// `ASPNETCORE_URLS`: `;`-separated URLs the API listens on.
    Urls,
}

/// One key of the service's configuration, as an environment variable.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// The service falls back to a development default (localhost, `artifortress`) when it is
    /// missing, which in production is wrong: a deployment must set it.
    pub required: bool,
    /// Where the service reads it (sremani/Artifortress, file:line).
    pub source: &'static str,
}

const fn text(name: &'static str, required: bool, source: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Text,
        required,
        source,
    }
}

const fn int(name: &'static str, min: i64, max: i64, default: i64, source: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Int {
            min,
            max,
            default,
            min_from: None,
        },
        required: false,
        source,
    }
}

const fn boolean(name: &'static str, source: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Bool,
        required: false,
        source,
    }
}

const I32: i64 = i32::MAX as i64;

/// The keys the API reads.
pub const API_KEYS: &[Key] = &[
    // GetConnectionString("Postgres"), localhost fallback.
    text(
        "ConnectionStrings__Postgres",
        true,
        "src/Artifortress.Api/Program.fs:7317",
    ),
    // ObjectStorage.tryReadConfig: each falls back to a development value.
    text(
        "ObjectStorage__Endpoint",
        true,
        "src/Artifortress.Api/ObjectStorage.fs:100",
    ),
    text(
        "ObjectStorage__AccessKey",
        true,
        "src/Artifortress.Api/ObjectStorage.fs:101",
    ),
    text(
        "ObjectStorage__SecretKey",
        true,
        "src/Artifortress.Api/ObjectStorage.fs:102",
    ),
    text(
        "ObjectStorage__Bucket",
        true,
        "src/Artifortress.Api/ObjectStorage.fs:103",
    ),
    int(
        "ObjectStorage__PresignPartTtlSeconds",
        60,
        3600,
        900,
        "src/Artifortress.Api/ObjectStorage.fs:94-97,104",
    ),
    // Read per request by POST /v1/auth/pats; appsettings.json:23 ships a well-known default.
    text(
        "Auth__BootstrapToken",
        true,
        "src/Artifortress.Api/Program.fs:7803",
    ),
    int(
        "Policy__EvaluationTimeoutMs",
        1,
        I32,
        250,
        "src/Artifortress.Api/Program.fs:7331-7335",
    ),
    int(
        "Lifecycle__DefaultTombstoneRetentionDays",
        1,
        3650,
        30,
        "src/Artifortress.Api/Program.fs:7338-7342",
    ),
    int(
        "Lifecycle__DefaultGcRetentionGraceHours",
        0,
        24 * 365,
        24,
        "src/Artifortress.Api/Program.fs:7345-7349",
    ),
    int(
        "Lifecycle__DefaultGcBatchSize",
        1,
        5000,
        200,
        "src/Artifortress.Api/Program.fs:7352-7356",
    ),
    // The API judges search-job leases with it too (30..86400).
    int(
        "Worker__SearchJobLeaseSeconds",
        30,
        86400,
        300,
        "src/Artifortress.Api/Program.fs:7358-7363",
    ),
    int(
        "TenantAdmission__DefaultMaxLogicalStorageBytes",
        10 * 1024 * 1024,
        10 * 1024 * 1024 * 1024 * 1024,
        50 * 1024 * 1024 * 1024,
        "src/Artifortress.Api/Program.fs:7367-7372 (parseBoundedPositiveInt64, :1222; default :632)",
    ),
    int(
        "TenantAdmission__DefaultMaxConcurrentUploadSessions",
        1,
        1000,
        1000,
        "src/Artifortress.Api/Program.fs:7374-7379 (default :633)",
    ),
    int(
        "TenantAdmission__DefaultMaxPendingSearchJobs",
        1,
        50000,
        5000,
        "src/Artifortress.Api/Program.fs:7381-7386 (default :634)",
    ),
    boolean(
        "Auth__Oidc__Enabled",
        "src/Artifortress.Api/Program.fs:7391",
    ),
    text(
        "Auth__Oidc__Issuer",
        false,
        "src/Artifortress.Api/Program.fs:7396",
    ),
    text(
        "Auth__Oidc__Audience",
        false,
        "src/Artifortress.Api/Program.fs:7397",
    ),
    text(
        "Auth__Oidc__Hs256SharedSecret",
        false,
        "src/Artifortress.Api/Program.fs:7398",
    ),
    text(
        "Auth__Oidc__JwksJson",
        false,
        "src/Artifortress.Api/Program.fs:7399",
    ),
    text(
        "Auth__Oidc__JwksUrl",
        false,
        "src/Artifortress.Api/Program.fs:7400",
    ),
    text(
        "Auth__Oidc__RoleMappings",
        false,
        "src/Artifortress.Api/Program.fs:7401",
    ),
    int(
        "Auth__Oidc__JwksRefreshIntervalSeconds",
        30,
        86400,
        300,
        "src/Artifortress.Api/Program.fs:7427-7432",
    ),
    int(
        "Auth__Oidc__JwksRefreshTimeoutSeconds",
        1,
        120,
        10,
        "src/Artifortress.Api/Program.fs:7435-7440",
    ),
    Key {
        name: "Auth__Oidc__JwksMaxStalenessSeconds",
        kind: Kind::Int {
            min: 30,
            max: 7 * 24 * 3600,
            default: 900,
            min_from: Some("Auth__Oidc__JwksRefreshIntervalSeconds"),
        },
        required: false,
        source: "src/Artifortress.Api/Program.fs:7443-7448",
    },
    boolean(
        "Auth__Saml__Enabled",
        "src/Artifortress.Api/Program.fs:7493",
    ),
    text(
        "Auth__Saml__IdpMetadataUrl",
        false,
        "src/Artifortress.Api/Program.fs:7494",
    ),
    text(
        "Auth__Saml__IdpMetadataXml",
        false,
        "src/Artifortress.Api/Program.fs:7495",
    ),
    text(
        "Auth__Saml__ServiceProviderEntityId",
        false,
        "src/Artifortress.Api/Program.fs:7496",
    ),
    text(
        "Auth__Saml__ExpectedIssuer",
        false,
        "src/Artifortress.Api/Program.fs:7497",
    ),
    text(
        "Auth__Saml__RoleMappings",
        false,
        "src/Artifortress.Api/Program.fs:7498",
    ),
    int(
        "Auth__Saml__MetadataFetchTimeoutSeconds",
        1,
        120,
        10,
        "src/Artifortress.Api/Program.fs:7500",
    ),
    int(
        "Auth__Saml__MetadataRefreshIntervalSeconds",
        30,
        86400,
        300,
        "src/Artifortress.Api/Program.fs:7502",
    ),
    Key {
        name: "Auth__Saml__MetadataMaxStalenessSeconds",
        kind: Kind::Int {
            min: 30,
            max: 7 * 24 * 3600,
            default: 900,
            min_from: Some("Auth__Saml__MetadataRefreshIntervalSeconds"),
        },
        required: false,
        source: "src/Artifortress.Api/Program.fs:7503-7509",
    },
    int(
        "Auth__Saml__IssuedPatTtlMinutes",
        5,
        1440,
        60,
        "src/Artifortress.Api/Program.fs:7511-7516",
    ),
    // Kestrel's listen addresses: without it the API listens on the framework's default
    // (localhost:5000), which no api_url reaches. docs/30-deployment-config-reference.md:49.
    Key {
        name: "ASPNETCORE_URLS",
        kind: Kind::Urls,
        required: true,
        source: "docs/30-deployment-config-reference.md:49",
    },
];

/// The keys the worker reads (`Environment.GetEnvironmentVariable`, case-sensitive).
pub const WORKER_KEYS: &[Key] = &[
    text(
        "ConnectionStrings__Postgres",
        true,
        "src/Artifortress.Worker/Program.fs:585-589",
    ),
    // parsePositiveIntOrDefault (src/Artifortress.Worker/WorkerInternals.fs:59-62): >= 1.
    int(
        "Worker__PollSeconds",
        1,
        I32,
        30,
        "src/Artifortress.Worker/Program.fs:591-593",
    ),
    int(
        "Worker__BatchSize",
        1,
        I32,
        100,
        "src/Artifortress.Worker/Program.fs:595-597",
    ),
    int(
        "Worker__SearchJobMaxAttempts",
        1,
        I32,
        5,
        "src/Artifortress.Worker/Program.fs:599-601",
    ),
    // The worker takes any positive value but raises it to 30 when claiming
    // (WorkerInternals.fs:350); the API reads the same setting as 30..86400 (Program.fs:7358):
    // outside that range the two disagree about when a job's lease ran out.
    int(
        "Worker__SearchJobLeaseSeconds",
        30,
        86400,
        300,
        "src/Artifortress.Worker/Program.fs:603-605, src/Artifortress.Worker/WorkerInternals.fs:350, src/Artifortress.Api/Program.fs:7358-7363",
    ),
];

/// `Auth:BootstrapToken` as `src/Artifortress.Api/appsettings.json:23` ships it: known to
/// everyone, so anyone could mint an admin token with it.
pub const DEFAULT_BOOTSTRAP_TOKEN: &str = "artifortress-bootstrap";

/// Variables the runtime reads rather than the service's code (not "unknown" keys):
/// - both roles: `DOTNET_*` and `COMPlus_*` (the .NET runtime: GC, globalization, diagnostics),
///   `TZ`, `LANG`, `LC_*` (time zone and locale), `SSL_CERT_FILE`/`SSL_CERT_DIR` (OpenSSL trust
///   store), `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`/`ALL_PROXY` (any case; .NET's HttpClient);
/// - the API also: `ASPNETCORE_*` (the host: environment, URLs, forwarded headers, ...),
///   `Logging__*`, `Kestrel__*` and `AllowedHosts` (ASP.NET Core's logging, Kestrel and host
///   filtering sections; appsettings.json:2,8).
///
/// `Telemetry__OtlpEndpoint` (appsettings.json:20) and `ObjectStorage__Region` are not here: no
/// code reads them, so setting them has no effect.
pub fn runtime_key(role: Role, key: &str) -> bool {
    let starts = |p: &str| key.len() >= p.len() && key[..p.len()].eq_ignore_ascii_case(p);
    let common = ["DOTNET_", "COMPlus_", "LC_"].iter().any(|p| starts(p))
        || ["TZ", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR"].contains(&key)
        || ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"]
            .iter()
            .any(|p| key.eq_ignore_ascii_case(p));
    common
        || (role == Role::Api
            && (["ASPNETCORE_", "Logging__", "Kestrel__"]
                .iter()
                .any(|p| starts(p))
                || key.eq_ignore_ascii_case("AllowedHosts")))
}

/// How findings name the service's component.
fn label(role: Role) -> &'static str {
    match role {
        Role::Api => "API",
        Role::Worker => "worker",
    }
}

/// The keys `role` reads.
pub fn keys(role: Role) -> &'static [Key] {
    match role {
        Role::Api => API_KEYS,
        Role::Worker => WORKER_KEYS,
    }
}

/// Whether `a` names `b` for `role` (the API's configuration ignores case).
fn same_key(role: Role, a: &str, b: &str) -> bool {
    match role {
        Role::Api => a.eq_ignore_ascii_case(b),
        Role::Worker => a == b,
    }
}

/// The known key `name` stands for, if any.
pub fn lookup(role: Role, name: &str) -> Option<&'static Key> {
    keys(role).iter().find(|k| same_key(role, k.name, name))
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// Something wrong with an env file. `key` is the key it is about (`None`: the file as a whole).
/// `summary` and `detail` say what is wrong and what to do; neither holds a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub key: Option<String>,
    pub summary: String,
    pub detail: String,
}

impl Finding {
    fn error(key: Option<&str>, summary: String, detail: String) -> Finding {
        Finding {
            severity: Severity::Error,
            key: key.map(str::to_string),
            summary,
            detail,
        }
    }
}

/// Checks `env` of `role` against the service's configuration. A value `None` is not known yet
/// (a plan): the key counts as present and its value is not checked.
pub fn check(role: Role, env: &BTreeMap<String, Option<String>>) -> Vec<Finding> {
    let mut out = Vec::new();
    let attr = role.as_str();
    let role_name = role;
    let role = label(role);
    let doc = "docs/30-deployment-config-reference.md";
    let present = |name: &str| {
        env.iter()
            .find(|(k, _)| same_key(role_name, k, name))
            .map(|(_, v)| v.as_deref())
    };
    // Required keys: missing, or set to nothing (the service treats blank as missing).
    let missing: Vec<&str> = keys(role_name)
        .iter()
        .filter(|k| k.required && present(k.name).is_none())
        .map(|k| k.name)
        .collect();
    if !missing.is_empty() {
        out.push(Finding::error(
            None,
            format!("The {role} env misses {}", missing.join(", ")),
            format!(
                "Without them the {role} falls back to development defaults (localhost, the `artifortress` credentials, the framework's listen address) and a production deployment talks to the wrong database or store, or to none. Set {} in {attr}_env_wo (see {doc}).",
                missing.join(", "),
            ),
        ));
    }
    for (name, value) in env {
        let Some(key) = lookup(role_name, name) else {
            if !runtime_key(role_name, name) {
                out.push(unknown(role_name, name));
            }
            continue;
        };
        let Some(value) = value else { continue };
        if has_template(value) && matches!(key.kind, Kind::Int { .. } | Kind::Bool) {
            // A number or switch from a template (`{{host}}`...) is only known per host: the
            // service reads whatever it expands to; not checked here.
            continue;
        }
        let trimmed = value.trim();
        if key.required && trimmed.is_empty() {
            out.push(Finding::error(
                Some(name),
                format!("{name} is empty"),
                format!(
                    "The {role} treats an empty {} as unset and falls back to its development default. Give it a value.",
                    key.name
                ),
            ));
            continue;
        }
        match key.kind {
            Kind::Text | Kind::Urls => {}
            Kind::Bool => {
                if !trimmed.is_empty()
                    && !trimmed.eq_ignore_ascii_case("true")
                    && !trimmed.eq_ignore_ascii_case("false")
                {
                    out.push(Finding::error(
                        Some(name),
                        format!("{name} is not true or false"),
                        format!(
                            "The {role} reads anything but `true`/`false` as false ({}). Set it to \"true\" or \"false\".",
                            key.source
                        ),
                    ));
                }
            }
            Kind::Int {
                min,
                max,
                default,
                min_from,
            } => {
                if trimmed.is_empty() {
                    // Unset: the service's default.
                    continue;
                }
                // A lower bound taken from another key's (valid) value.
                let min = min_from
                    .and_then(|other| {
                        let v: i64 = present(other)??.trim().parse().ok()?;
                        match lookup(role_name, other)?.kind {
                            Kind::Int { min, max, .. } if (min..=max).contains(&v) => Some(v),
                            _ => None,
                        }
                    })
                    .or_else(|| {
                        min_from
                            .and_then(|other| lookup(role_name, other))
                            .and_then(|k| match k.kind {
                                Kind::Int { default, .. } => Some(default),
                                _ => None,
                            })
                    })
                    .unwrap_or(min);
                match trimmed.parse::<i64>() {
                    Ok(n) if (min..=max).contains(&n) => {}
                    Ok(n) => out.push(Finding::error(
                        Some(name),
                        format!("{name} = {n} is out of range"),
                        format!(
                            "The {role} accepts {min}..{max} and silently uses {} otherwise ({}). Set a value in {min}..{max}, or leave it out for the default.",
                            default_text(default, min_from),
                            key.source
                        ),
                    )),
                    Err(_) => out.push(Finding::error(
                        Some(name),
                        format!("{name} is not an integer"),
                        format!(
                            "The {role} silently uses {} when it is not a whole number ({}). Set a whole number in {min}..{max}, or leave it out.",
                            default_text(default, min_from),
                            key.source
                        ),
                    )),
                }
            }
        }
        if key.name == "Auth__BootstrapToken" && trimmed == DEFAULT_BOOTSTRAP_TOKEN {
            out.push(Finding::error(
                Some(name),
                "Auth__BootstrapToken is the well-known default".into(),
                "It is the token src/Artifortress.Api/appsettings.json:23 ships with: anyone who has read the service's source can mint admin tokens with it. Generate a secret one (e.g. resource \"random_password\") and pass it here.".into(),
            ));
        }
        if key.kind == Kind::Urls
            && let Err(e) = listen_ports(value)
        {
            out.push(Finding::error(
                Some(name),
                format!("{name} is not a list of URLs"),
                format!(
                    "{e}. Give `;`-separated URLs with a port, e.g. \"http://{{{{address}}}}:8086\" or \"http://0.0.0.0:8086\"."
                ),
            ));
        }
    }
    out
}

fn default_text(default: i64, min_from: Option<&str>) -> String {
    match min_from {
        Some(other) => format!("max({other} × 3, {default})"),
        None => default.to_string(),
    }
}

/// The warning for a key the service never reads.
fn unknown(role: Role, name: &str) -> Finding {
    let other = match role {
        Role::Api => Role::Worker,
        Role::Worker => Role::Api,
    };
    let (who, whom) = (label(role), label(other));
    let detail = if lookup(other, name).is_some() {
        format!(
            "Only the {whom} reads {name}; the {who} ignores it. Move it to {}_env_wo if it was meant for the {whom}, else remove it.",
            other.as_str()
        )
    } else {
        match nearest(role, name) {
            Some((n, d)) if d <= MISSPELT => format!(
                "The {who} never reads {name}, so it has no effect: did you mean {n}? Rename it, or remove it if something else on the host reads it (docs/30-deployment-config-reference.md lists the keys)."
            ),
            Some((n, _)) => format!(
                "The {who} never reads {name}, so it has no effect (the nearest key it reads is {n}). Remove it unless something else on the host reads it (docs/30-deployment-config-reference.md lists the keys)."
            ),
            None => format!("The {who} never reads {name}, so it has no effect. Remove it."),
        }
    };
    Finding {
        severity: Severity::Warning,
        key: Some(name.to_string()),
        summary: format!("The {who} does not read {name}"),
        detail,
    }
}

/// Edits (case ignored) within which an unknown key is taken for a misspelling.
const MISSPELT: usize = 3;

/// The known key nearest to `name` by edit distance (case ignored), and that distance.
pub fn nearest(role: Role, name: &str) -> Option<(&'static str, usize)> {
    let lower = name.to_ascii_lowercase();
    keys(role)
        .iter()
        .map(|k| (k.name, edit_distance(&lower, &k.name.to_ascii_lowercase())))
        .min_by_key(|(_, d)| *d)
}

/// Levenshtein distance over bytes.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn has_template(v: &str) -> bool {
    v.contains("{{")
}

/// The ports an `ASPNETCORE_URLS` value listens on. Hosts may be templated (`{{address}}`);
/// `*`, `+` and `[::]` are hosts like any other. A URL without a port listens on its scheme's
/// (80, 443). `Ok` with `None` for a URL whose port is templated (known per host only).
pub fn listen_ports(urls: &str) -> Result<Vec<Option<u16>>, String> {
    let mut out = Vec::new();
    for u in urls.split(';').map(str::trim).filter(|u| !u.is_empty()) {
        out.push(url_port(u)?);
    }
    if out.is_empty() {
        return Err("it lists no URL".into());
    }
    Ok(out)
}

/// The port of one URL (see [`listen_ports`]); the error never holds the URL.
pub fn url_port(url: &str) -> Result<Option<u16>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "a URL has no scheme (`http://` or `https://`)".to_string())?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err("a URL's scheme is neither http nor https".into()),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("a URL has no host".into());
    }
    // The port follows the last `:` outside `[...]` (template names hold no `:`).
    let host_end = if authority.starts_with('[') {
        authority
            .find(']')
            .map(|i| i + 1)
            .unwrap_or(authority.len())
    } else {
        0
    };
    let tail = &authority[host_end..];
    let port = match tail.rfind(':') {
        Some(i) => &tail[i + 1..],
        _ => return Ok(Some(default)),
    };
    if has_template(port) {
        return Ok(None);
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .map(Some)
        .ok_or_else(|| "a URL's port is not a number in 1..65535".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    fn api_env() -> BTreeMap<String, Option<String>> {
        env(&[
            ("ConnectionStrings__Postgres", "Host=db;Password=s3cret"),
            ("ObjectStorage__Endpoint", "https://s3.example"),
            ("ObjectStorage__AccessKey", "ak"),
            ("ObjectStorage__SecretKey", "sk-s3cret"),
            ("ObjectStorage__Bucket", "prod"),
            ("Auth__BootstrapToken", "b00t-s3cret"),
            ("ASPNETCORE_URLS", "http://{{address}}:8086"),
        ])
    }

    fn errors(f: &[Finding]) -> Vec<&Finding> {
        f.iter().filter(|f| f.severity == Severity::Error).collect()
    }

    #[test]
    fn a_complete_env_passes_and_runtime_keys_are_known() {
        let mut e = api_env();
        for k in [
            "ASPNETCORE_ENVIRONMENT",
            "DOTNET_gcServer",
            "Logging__LogLevel__Default",
            "AllowedHosts",
            "TZ",
            "https_proxy",
        ] {
            e.insert(k.into(), Some("x".into()));
        }
        assert_eq!(check(Role::Api, &e), vec![]);
        let w = env(&[
            ("ConnectionStrings__Postgres", "Host=db"),
            ("Worker__PollSeconds", "5"),
            ("DOTNET_TieredPGO", "0"),
        ]);
        assert_eq!(check(Role::Worker, &w), vec![]);
    }

    #[test]
    fn required_keys_missing_or_empty_are_named() {
        // API: src/Artifortress.Api/Program.fs:7317 and ObjectStorage.fs:100-103 fall back to
        // localhost defaults; docs/30 lists them (and ASPNETCORE_URLS) as required in prod.
        let f = check(Role::Api, &env(&[("ObjectStorage__Bucket", "b")]));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].summary,
            "The API env misses ConnectionStrings__Postgres, ObjectStorage__Endpoint, ObjectStorage__AccessKey, ObjectStorage__SecretKey, Auth__BootstrapToken, ASPNETCORE_URLS"
        );
        assert!(f[0].detail.contains("api_env_wo"), "{}", f[0].detail);
        assert_eq!(f[0].key, None);
        // Worker: Program.fs:585-589.
        let f = check(Role::Worker, &env(&[]));
        assert!(
            f[0].summary.ends_with("misses ConnectionStrings__Postgres"),
            "{f:?}"
        );
        // Blank is missing to the service; unknown (a plan) counts as present.
        let mut e = api_env();
        e.insert("ObjectStorage__Bucket".into(), Some("  ".into()));
        e.insert("ObjectStorage__SecretKey".into(), None);
        let f = check(Role::Api, &e);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].key.as_deref(), Some("ObjectStorage__Bucket"));
        assert_eq!(f[0].summary, "ObjectStorage__Bucket is empty");
    }

    #[test]
    fn the_api_matches_keys_in_any_case_the_worker_does_not() {
        let mut e = api_env();
        let v = e.remove("ObjectStorage__Bucket").unwrap();
        e.insert("objectstorage__bucket".into(), v);
        assert_eq!(check(Role::Api, &e), vec![]);
        let f = check(
            Role::Worker,
            &env(&[
                ("ConnectionStrings__Postgres", "x"),
                ("worker__pollseconds", "5"),
            ]),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].detail.contains("did you mean Worker__PollSeconds?"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn ranges_follow_the_service() {
        let cases = [
            // ObjectStorage.fs:94-97.
            (
                "ObjectStorage__PresignPartTtlSeconds",
                "59",
                Some("60..3600"),
            ),
            ("ObjectStorage__PresignPartTtlSeconds", "60", None),
            ("ObjectStorage__PresignPartTtlSeconds", "3600", None),
            (
                "ObjectStorage__PresignPartTtlSeconds",
                "3601",
                Some("60..3600"),
            ),
            // Program.fs:7358-7363.
            ("Worker__SearchJobLeaseSeconds", "29", Some("30..86400")),
            ("Worker__SearchJobLeaseSeconds", "86401", Some("30..86400")),
            ("Lifecycle__DefaultGcRetentionGraceHours", "0", None),
            (
                "Lifecycle__DefaultGcRetentionGraceHours",
                "8761",
                Some("0..8760"),
            ),
            ("Lifecycle__DefaultGcBatchSize", "5001", Some("1..5000")),
            ("Policy__EvaluationTimeoutMs", "0", Some("1..2147483647")),
            ("Auth__Saml__IssuedPatTtlMinutes", "4", Some("5..1440")),
            (
                "Auth__Oidc__JwksRefreshTimeoutSeconds",
                "121",
                Some("1..120"),
            ),
            ("ObjectStorage__PresignPartTtlSeconds", "", None),
            (
                "TenantAdmission__DefaultMaxPendingSearchJobs",
                "50001",
                Some("1..50000 and silently uses 5000 otherwise"),
            ),
        ];
        for (k, v, want) in cases {
            let mut e = api_env();
            e.insert(k.into(), Some(v.into()));
            let f = check(Role::Api, &e);
            match want {
                None => assert_eq!(f, vec![], "{k}={v}"),
                Some(range) => {
                    assert_eq!(f.len(), 1, "{k}={v}: {f:?}");
                    assert_eq!(f[0].summary, format!("{k} = {v} is out of range"));
                    assert!(f[0].detail.contains(range), "{k}: {}", f[0].detail);
                }
            }
        }
        let mut e = api_env();
        e.insert(
            "ObjectStorage__PresignPartTtlSeconds".into(),
            Some("15m".into()),
        );
        let f = check(Role::Api, &e);
        assert_eq!(
            f[0].summary,
            "ObjectStorage__PresignPartTtlSeconds is not an integer"
        );
        // The worker's lease: WorkerInternals.fs:350 raises below 30; the API's range applies.
        let w = |v: &str| {
            check(
                Role::Worker,
                &env(&[
                    ("ConnectionStrings__Postgres", "x"),
                    ("Worker__SearchJobLeaseSeconds", v),
                ]),
            )
        };
        assert_eq!(w("300"), vec![]);
        assert_eq!(errors(&w("10")).len(), 1);
        assert_eq!(errors(&w("0")).len(), 1);
    }

    #[test]
    fn staleness_bounds_follow_the_refresh_interval() {
        // Program.fs:7443-7448: min is the refresh interval.
        let with = |interval: Option<&str>, staleness: &str| {
            let mut e = api_env();
            if let Some(i) = interval {
                e.insert(
                    "Auth__Oidc__JwksRefreshIntervalSeconds".into(),
                    Some(i.into()),
                );
            }
            e.insert(
                "Auth__Oidc__JwksMaxStalenessSeconds".into(),
                Some(staleness.into()),
            );
            check(Role::Api, &e)
        };
        assert_eq!(with(Some("600"), "600"), vec![]);
        assert!(with(Some("600"), "599")[0].detail.contains("600..604800"));
        assert!(with(None, "299")[0].detail.contains("300..604800"));
        assert_eq!(with(None, "604800"), vec![]);
        assert_eq!(errors(&with(None, "604801")).len(), 1);
    }

    #[test]
    fn the_default_bootstrap_token_is_refused() {
        let mut e = api_env();
        e.insert(
            "Auth__BootstrapToken".into(),
            Some(DEFAULT_BOOTSTRAP_TOKEN.into()),
        );
        let f = check(Role::Api, &e);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].summary,
            "Auth__BootstrapToken is the well-known default"
        );
        assert!(!f[0].detail.contains(DEFAULT_BOOTSTRAP_TOKEN));
    }

    #[test]
    fn unknown_keys_warn_with_the_nearest_known_one() {
        let mut e = api_env();
        e.insert("ObjectStorage__Bukcet".into(), Some("s3cret".into()));
        e.insert("ObjectStorage__Region".into(), Some("garage".into()));
        e.insert("Telemetry__OtlpEndpoint".into(), Some("x".into()));
        e.insert("Worker__PollSeconds".into(), Some("5".into()));
        e.insert("SOMETHING_ELSE".into(), Some("x".into()));
        let f = check(Role::Api, &e);
        assert!(errors(&f).is_empty(), "{f:?}");
        let by = |k: &str| f.iter().find(|f| f.key.as_deref() == Some(k)).unwrap();
        assert!(
            by("ObjectStorage__Bukcet")
                .detail
                .contains("did you mean ObjectStorage__Bucket?")
        );
        // The service never reads a region (ObjectStorage.fs:99-104).
        let region = &by("ObjectStorage__Region").detail;
        assert!(
            region.contains("no effect (the nearest key it reads is ObjectStorage__"),
            "{region}"
        );
        assert!(by("Telemetry__OtlpEndpoint").detail.contains("no effect"));
        assert!(by("Worker__PollSeconds").detail.contains("Only the worker"));
        assert!(!by("SOMETHING_ELSE").detail.contains("did you mean"));
        assert_eq!(
            by("SOMETHING_ELSE").summary,
            "The API does not read SOMETHING_ELSE"
        );
        for x in &f {
            assert!(!x.detail.contains("s3cret") && !x.summary.contains("s3cret"));
        }
        assert_eq!(
            nearest(Role::Api, "Auth__BootstrapTokn"),
            Some(("Auth__BootstrapToken", 1))
        );
    }

    #[test]
    fn secrets_never_appear_in_findings() {
        let mut e = api_env();
        e.insert("Auth__Oidc__Enabled".into(), Some("s3cret".into()));
        e.insert("ASPNETCORE_URLS".into(), Some("s3cret".into()));
        let f = check(Role::Api, &e);
        assert_eq!(f.len(), 2, "{f:?}");
        for x in &f {
            assert!(!x.detail.contains("s3cret") && !x.summary.contains("s3cret"));
        }
    }

    #[test]
    fn listen_ports_read_like_kestrel() {
        assert_eq!(
            listen_ports("http://{{address}}:8086").unwrap(),
            vec![Some(8086)]
        );
        assert_eq!(
            listen_ports("http://0.0.0.0:80;https://[::]:8443/").unwrap(),
            vec![Some(80), Some(8443)]
        );
        assert_eq!(
            listen_ports("http://*; https://+").unwrap(),
            vec![Some(80), Some(443)]
        );
        assert_eq!(listen_ports("http://[::1]").unwrap(), vec![Some(80)]);
        assert_eq!(listen_ports("http://h:{{port}}").unwrap(), vec![None]);
        assert!(listen_ports("0.0.0.0:8086").is_err());
        assert!(listen_ports("ftp://h:1").is_err());
        assert!(listen_ports("http://h:0").is_err());
        assert!(listen_ports(" ; ").is_err());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
