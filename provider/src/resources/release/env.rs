//! The checks of `api_env_wo` and `worker_env_wo` at validate (write-only: they are in the
//! configuration, never in state): each against the service's configuration
//! ([`service_config`]: required keys, ranges, the default bootstrap token, keys the service
//! never reads), their `{{templates}}`, and the API's listen port against every API host's
//! `api_url`. Values not known yet are skipped; a diagnostic never holds a value.

use std::collections::BTreeMap;

use crate::clients::release::{self, Role};
use crate::clients::service_config::{self, Severity};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::model::{Maybe, Planned};

use super::model::{ReleaseModel, env_attr, known};

/// The env of `role` as configured: `None` when null or not known yet (nothing to check); a
/// value `None` is not known yet.
fn configured(c: &ReleaseModel<Planned>, role: Role) -> Option<BTreeMap<String, Option<String>>> {
    let env = match role {
        Role::Api => &c.api_env_wo,
        Role::Worker => &c.worker_env_wo,
    };
    known(env).map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.known().cloned()))
            .collect()
    })
}

fn key_path(role: Role, key: &str) -> AttributePath {
    AttributePath::root()
        .child_attr(env_attr(role))
        .child_key(key)
}

/// Every check of the configured env files.
pub(super) fn check(c: &ReleaseModel<Planned>, diags: &mut Diagnostics) {
    for role in Role::ALL {
        let Some(env) = configured(c, role) else {
            continue;
        };
        let attr = env_attr(role);
        for f in service_config::check(role, &env) {
            let d = match f.severity {
                Severity::Error => Diagnostic::error(f.summary, f.detail),
                Severity::Warning => Diagnostic::warning(f.summary, f.detail),
            };
            diags.push(match &f.key {
                Some(k) => d.at(key_path(role, k)),
                None => d.at_attr(attr),
            });
        }
        for (k, v) in &env {
            if let Some(v) = v
                && let Err(e) = release::check_env_template(v)
            {
                diags.push(
                    Diagnostic::error(
                        "Invalid env template",
                        format!(
                            "{attr}[\"{k}\"] {e}; they are expanded per host when its env file is written. Use one of those, or write the value out."
                        ),
                    )
                    .at(key_path(role, k)),
                );
            }
        }
        if role == Role::Api {
            port_check(c, &env, diags);
        }
    }
}

/// The port `ASPNETCORE_URLS` listens on must be the port of each API host's `api_url`, which
/// readiness is probed at (the host part may differ: a proxy or NAT in between).
fn port_check(
    c: &ReleaseModel<Planned>,
    env: &BTreeMap<String, Option<String>>,
    diags: &mut Diagnostics,
) {
    // The API's configuration keys ignore case (see service_config).
    let Some((key, Some(urls))) = env
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ASPNETCORE_URLS"))
    else {
        return;
    };
    let Ok(ports) = service_config::listen_ports(urls) else {
        // Reported by service_config::check.
        return;
    };
    if ports.iter().any(Option::is_none) {
        // A templated port: known per host only.
        return;
    }
    let ports: Vec<u16> = ports.into_iter().flatten().collect();
    let Some(hosts) = known(&c.hosts) else {
        return;
    };
    for (name, h) in hosts {
        let Some(h) = h.known() else { continue };
        let api = h.roles.known().is_some_and(|r| {
            r.iter()
                .any(|r| r.known().map(String::as_str) == Some("api"))
        });
        let Maybe::Known(url) = &h.api_url else {
            continue;
        };
        if !api {
            continue;
        }
        let Ok(Some(port)) = service_config::url_port(url) else {
            continue;
        };
        if !ports.contains(&port) {
            let listen = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            diags.push(
                Diagnostic::error(
                    format!("ASPNETCORE_URLS does not listen on {name}'s api_url port"),
                    format!(
                        "Host {name}'s api_url is on port {port}, but api_env_wo[\"{key}\"] makes the API listen on port {listen}: readiness would be probed where nothing listens and the rollout would fail and roll back. Make the two ports agree (e.g. ASPNETCORE_URLS = \"http://{{{{address}}}}:{port}\")."
                    ),
                )
                .at(key_path(Role::Api, key)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixtures::{release_config, strings};
    use super::super::plan::validate;
    use crate::protocol::value::Value;

    const API_ENV: &[(&str, &str)] = &[
        ("ConnectionStrings__Postgres", "Host=db;Password=pw-s3cret"),
        ("ObjectStorage__Endpoint", "http://s3:3900"),
        ("ObjectStorage__AccessKey", "ak"),
        ("ObjectStorage__SecretKey", "sk-s3cret"),
        ("ObjectStorage__Bucket", "b"),
        ("Auth__BootstrapToken", "boot-s3cret"),
        ("ASPNETCORE_URLS", "http://{{address}}:8086"),
    ];

    fn config(api: &[(&str, &str)], worker: Value, api_url: &str) -> Value {
        let host = Value::object([
            ("address", Value::string("10.0.0.1")),
            ("port", Value::Null),
            ("roles", Value::string_list(["api".to_string()])),
            ("api_url", Value::string(api_url)),
        ]);
        release_config(&[
            (
                "hosts",
                Value::Map(BTreeMap::from([("api-1".into(), host)])),
            ),
            ("api_env_wo", strings(api)),
            ("worker_env_wo", worker),
        ])
    }

    /// (severity is error, summary, attribute path) of each diagnostic about the env.
    fn found(v: &Value) -> Vec<(bool, String, String)> {
        validate(v)
            .iter()
            .filter(|d| {
                d.attribute
                    .as_ref()
                    .is_some_and(|p| p.to_string().contains("env_wo"))
            })
            .map(|d| {
                assert!(!d.detail.contains("s3cret") && !d.summary.contains("s3cret"));
                (
                    d.is_error(),
                    d.summary.clone(),
                    d.attribute.as_ref().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_complete_env_passes() {
        assert_eq!(
            found(&config(API_ENV, Value::Null, "http://10.0.0.1:8086")),
            vec![]
        );
    }

    #[test]
    fn findings_point_at_the_key() {
        let mut api: Vec<(&str, &str)> = API_ENV
            .iter()
            .filter(|(k, _)| *k != "ObjectStorage__Bucket")
            .copied()
            .collect();
        api.push(("ObjectStorage__Bukcet", "b"));
        api.push(("ObjectStorage__PresignPartTtlSeconds", "7200"));
        api.push(("Probe", "{{version}}"));
        let f = found(&config(
            &api,
            strings(&[("Worker__PollSeconds", "5")]),
            "http://10.0.0.1:9000",
        ));
        let has = |error: bool, summary: &str, path: &str| {
            assert!(
                f.iter()
                    .any(|(e, s, p)| *e == error && s.starts_with(summary) && p == path),
                "{summary} at {path} not in {f:#?}"
            )
        };
        has(
            true,
            "The API env misses ObjectStorage__Bucket",
            "api_env_wo",
        );
        has(
            false,
            "The API does not read ObjectStorage__Bukcet",
            "api_env_wo[\"ObjectStorage__Bukcet\"]",
        );
        has(
            true,
            "ObjectStorage__PresignPartTtlSeconds = 7200 is out of range",
            "api_env_wo[\"ObjectStorage__PresignPartTtlSeconds\"]",
        );
        has(true, "Invalid env template", "api_env_wo[\"Probe\"]");
        has(
            true,
            "ASPNETCORE_URLS does not listen on api-1's api_url port",
            "api_env_wo[\"ASPNETCORE_URLS\"]",
        );
        has(
            true,
            "The worker env misses ConnectionStrings__Postgres",
            "worker_env_wo",
        );
    }

    #[test]
    fn unknown_values_are_skipped() {
        let mut v = config(API_ENV, Value::unknown(), "http://10.0.0.1:9000");
        // The listen address not known yet: no port check; the map unknown: nothing.
        if let Some(Value::Map(m)) = v.attr_mut("api_env_wo") {
            m.insert("ASPNETCORE_URLS".into(), Value::unknown());
            m.insert(
                "ObjectStorage__PresignPartTtlSeconds".into(),
                Value::unknown(),
            );
        }
        assert_eq!(found(&v), vec![]);
        v.set_attr("api_env_wo", Value::unknown());
        assert_eq!(found(&v), vec![]);
    }
}
