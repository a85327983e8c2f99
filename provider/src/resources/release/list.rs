//! `list "artifortress_release"` (`terraform query`): the release in a deploy dir on given
//! hosts: what is installed (`releases/<version>`) and what is live (`current`), with the
//! release's identity and, when asked, the state an import by that identity reads (the
//! release's own import path, [`super::refresh::read`]), so `terraform query
//! -generate-config-out` writes configuration that imports it.
//!
//! `hosts` takes the import ID's host syntax, `<host>=<address>[:<port>][/<role>+<role>],...`:
//! it is the release identity's `hosts` attribute, so a result's identity is the `config` block
//! itself, and one syntax serves the import ID, the identity and the listing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::future::join_all;

use crate::clients::hosts::{self, Installed};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    ListRequest, ListResource, ListResult, ReadRequest, ReadResponse, Resource as _,
};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::Settings;

use super::refresh::{ImportId, parse_id};
use super::{Release, TYPE_NAME, common, transports};

/// `list "artifortress_release"`.
pub struct ReleaseList;

#[async_trait]
impl ListResource<Settings> for ReleaseList {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "The release in a deploy dir on the given hosts: one result when any host has a release installed there (none when nothing is), named by what each host runs (`current`) and the releases installed (`releases/<version>`).",
            vec![
                Attribute::required("deploy_dir", Type::String).description(
                    "The absolute directory holding `releases/` and `current` on every host, as the release's `deploy_dir`.",
                ),
                Attribute::optional("transport", Type::String)
                    .validate(Validator::OneOf(&["ssh", "local"]))
                    .description(
                        "`ssh` (default; the provider's `ssh` settings) or `local` (this machine), as the release's `transport`.",
                    ),
                Attribute::required("hosts", Type::String).description(
                    "The hosts to look on, `<host>=<address>[:<port>][/<role>+<role>],...` as in the release's import ID and identity (roles, when not given, are read from the env files present). From a map: `join(\",\", [for name, h in var.hosts : \"${name}=${h.address}\"])`.",
                ),
            ],
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(Err(d)) = parsed(config) {
            diags.push(d);
        }
        diags
    }

    async fn list(&self, req: ListRequest<'_, Settings>) -> (Vec<ListResult>, Diagnostics) {
        let mut diags = Diagnostics::new();
        let found = match parsed(req.config) {
            Some(Ok(f)) => f,
            Some(Err(d)) => return (Vec::new(), d.into()),
            None => return (Vec::new(), diags),
        };
        let configs: Vec<_> = found.parsed.hosts.iter().map(|(h, _)| h.clone()).collect();
        let ts = transports(req.provider, &found.parsed.transport, &configs).await;
        let seen = join_all(ts.into_iter().map(|t| {
            let dir = &found.parsed.deploy_dir;
            async move {
                let t = t?;
                hosts::installed(&*t, dir).await.map_err(|e| e.to_string())
            }
        }))
        .await;
        let mut installed = BTreeMap::new();
        for (h, r) in configs.iter().zip(seen) {
            match r {
                Ok(i) => {
                    installed.insert(h.name.clone(), i);
                }
                Err(e) => diags.push(
                    Diagnostic::error(
                        format!("Cannot read host {}", h.name),
                        format!(
                            "Listing {TYPE_NAME} in {} needs every host; {} ({}:{}): {e}",
                            found.parsed.deploy_dir, h.name, h.address, h.port
                        ),
                    )
                    .at_attr("hosts"),
                ),
            }
        }
        // A release is found on every host or not at all: its import reads every host.
        if diags.has_errors() || req.limit < 1 {
            return (Vec::new(), diags);
        }
        let Some(display_name) = display_name(&found.parsed.deploy_dir, &installed) else {
            return (Vec::new(), diags);
        };
        let resource = if req.include_resource {
            let mut state = Value::null_object(&Release.schema().value_type());
            state.set_attr("id", Value::string(&found.import_id));
            let mut resp = ReadResponse {
                new_state: state.clone(),
                private: Vec::new(),
                diagnostics: Diagnostics::new(),
            };
            Release
                .read(
                    ReadRequest {
                        current_state: &state,
                        identity: &Value::Null,
                        private: &[],
                        provider: req.provider,
                        ctx: req.ctx,
                    },
                    &mut resp,
                )
                .await;
            if resp.diagnostics.has_errors() {
                diags.extend(resp.diagnostics);
                return (Vec::new(), diags);
            }
            diags.extend(resp.diagnostics);
            Some(resp.new_state)
        } else {
            None
        };
        let result = ListResult {
            identity: Value::object([
                ("transport", Value::string(&found.parsed.transport)),
                ("deploy_dir", Value::string(&found.parsed.deploy_dir)),
                ("hosts", Value::string(&found.hosts)),
            ]),
            display_name,
            resource,
        };
        (vec![result], diags)
    }
}

/// The `config` block read: the import ID it names and that ID parsed.
struct Found {
    /// `[local:]<deploy_dir>,<hosts>`: what an import by this release's identity reads.
    import_id: String,
    /// `hosts` as given (the identity keeps it so).
    hosts: String,
    parsed: ImportId,
}

/// `None` while a value is unknown (validation at plan time); else the config as an import ID.
fn parsed(config: &Value) -> Option<Result<Found, Diagnostic>> {
    let dir = config.attr("deploy_dir");
    let hosts = config.attr("hosts");
    let transport = config.attr("transport");
    if dir.is_unknown() || hosts.is_unknown() || transport.is_unknown() {
        return None;
    }
    let dir = dir.as_str().unwrap_or_default().trim();
    let hosts = hosts.as_str().unwrap_or_default().trim();
    let local = match transport.as_str() {
        Some("local") => "local:",
        _ => "",
    };
    if !dir.starts_with('/') {
        return Some(Err(Diagnostic::error(
            "Invalid deploy_dir",
            format!("{dir:?}: the deploy dir must be an absolute path, as the release's."),
        )
        .at_attr("deploy_dir")));
    }
    let import_id = format!("{local}{dir},{hosts}");
    Some(match parse_id(&import_id) {
        Ok(parsed) => Ok(Found {
            import_id,
            hosts: hosts.to_string(),
            parsed,
        }),
        Err(e) => Err(Diagnostic::error(
            "Invalid hosts",
            format!("Expected <host>=<address>[:<port>][/<role>+<role>],... as in the release's import ID: {e}"),
        )
        .at_attr("hosts")),
    })
}

/// `<deploy_dir>: live <version> | installed <versions>`: the live version every host runs
/// (else `mixed (<host>=<version>, ...)`) and the releases installed (the same on every host,
/// else per host). `None` when no host has anything installed.
fn display_name(deploy_dir: &str, hosts: &BTreeMap<String, Installed>) -> Option<String> {
    if hosts
        .values()
        .all(|i| i.current.is_none() && i.releases.is_empty())
    {
        return None;
    }
    let live = common(hosts.iter().map(|(k, i)| (k, i.current.as_deref())))
        .unwrap_or_else(|| "none".into());
    let lists: Vec<&Vec<String>> = hosts.values().map(|i| &i.releases).collect();
    let text = |r: &Vec<String>| {
        if r.is_empty() {
            "none".to_string()
        } else {
            r.join(", ")
        }
    };
    let installed = if lists.iter().all(|r| *r == lists[0]) {
        text(lists[0])
    } else {
        hosts
            .iter()
            .map(|(k, i)| format!("{k}: {}", text(&i.releases)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some(format!("{deploy_dir}: live {live} | installed {installed}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framework::{Context, Provider as _};
    use crate::provider::ArtifortressProvider;

    fn config(dir: &str, transport: Option<&str>, hosts: &str) -> Value {
        let mut v = Value::null_object(&ReleaseList.schema().value_type());
        v.set_attr("deploy_dir", Value::string(dir));
        if let Some(t) = transport {
            v.set_attr("transport", Value::string(t));
        }
        v.set_attr("hosts", Value::string(hosts));
        v
    }

    /// The provider with no settings but `ssh.insecure_ignore_host_key`, so that SSH hosts
    /// are really connected to.
    fn settings() -> Settings {
        let ty = ArtifortressProvider.schema().value_type();
        let mut config = Value::null_object(&ty);
        if let Type::Object { attributes, .. } = &ty {
            let mut ssh = Value::null_object(&attributes["ssh"]);
            ssh.set_attr("insecure_ignore_host_key", Value::Bool(true));
            config.set_attr("ssh", ssh);
        }
        Settings::from_config(&config).unwrap()
    }

    async fn list(config: &Value, include_resource: bool) -> (Vec<ListResult>, Diagnostics) {
        let (s, ctx) = (settings(), Context::detached());
        ReleaseList
            .list(ListRequest {
                config,
                include_resource,
                limit: 100,
                provider: &s,
                ctx: &ctx,
            })
            .await
    }

    fn installed(current: Option<&str>, releases: &[&str]) -> Installed {
        Installed {
            current: current.map(str::to_string),
            releases: releases.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn the_schema_is_valid() {
        assert!(!ReleaseList.schema().check().has_errors());
    }

    #[test]
    fn display_names_say_what_is_live_and_installed() {
        let same = BTreeMap::from([
            ("a".to_string(), installed(Some("v2"), &["v1", "v2"])),
            ("b".to_string(), installed(Some("v2"), &["v1", "v2"])),
        ]);
        assert_eq!(
            display_name("/srv/af", &same).as_deref(),
            Some("/srv/af: live v2 | installed v1, v2")
        );
        let mixed = BTreeMap::from([
            ("a".to_string(), installed(Some("v2"), &["v1", "v2"])),
            ("b".to_string(), installed(None, &[])),
        ]);
        assert_eq!(
            display_name("/srv/af", &mixed).as_deref(),
            Some("/srv/af: live mixed (a=v2, b=none) | installed a: v1, v2; b: none")
        );
        let empty = BTreeMap::from([("a".to_string(), installed(None, &[]))]);
        assert_eq!(display_name("/srv/af", &empty), None);
    }

    #[tokio::test]
    async fn bad_configs_name_their_attribute() {
        let d = ReleaseList
            .validate(&config("relative", None, "a=10.0.0.1"))
            .await;
        assert!(d.has_errors(), "{d:?}");
        assert!(format!("{d:?}").contains("deploy_dir"), "{d:?}");
        let d = ReleaseList
            .validate(&config("/srv/af", None, "a=10.0.0.1/cron"))
            .await;
        assert!(format!("{d:?}").contains("unknown role"), "{d:?}");
        let d = ReleaseList
            .validate(&config(
                "/srv/af",
                Some("local"),
                "box=localhost/api+worker",
            ))
            .await;
        assert!(!d.has_errors(), "{d:?}");
    }

    #[tokio::test]
    async fn an_empty_deploy_dir_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (results, diags) = list(
            &config(dir.path().to_str().unwrap(), Some("local"), "box=localhost"),
            true,
        )
        .await;
        assert!(results.is_empty() && !diags.has_errors(), "{diags:?}");
    }

    #[tokio::test]
    async fn a_release_on_this_machine_is_listed_with_its_identity_and_import_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        for v in ["v1", "v2"] {
            std::fs::create_dir_all(format!("{d}/releases/{v}")).unwrap();
        }
        std::os::unix::fs::symlink(format!("{d}/releases/v2"), format!("{d}/current")).unwrap();
        std::fs::write(
            format!("{d}/revisions.log"),
            "2026-01-01T00:00:00Z version=v1\n2026-01-02T00:00:00Z version=v2\n",
        )
        .unwrap();
        let cfg = config(d, Some("local"), "box=localhost");
        let (results, diags) = list(&cfg, false).await;
        assert!(!diags.has_errors(), "{diags:?}");
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert!(r.display_name.contains("live v2"), "{}", r.display_name);
        assert!(
            r.display_name.contains("installed v1, v2"),
            "{}",
            r.display_name
        );
        assert_eq!(r.identity.attr("transport").as_str(), Some("local"));
        assert_eq!(r.identity.attr("deploy_dir").as_str(), Some(d));
        assert_eq!(r.identity.attr("hosts").as_str(), Some("box=localhost"));
        assert!(r.resource.is_none());
        // The identity is what the release imports by.
        assert_eq!(
            Release.import_id(&r.identity, &settings()).unwrap(),
            format!("local:{d},box=localhost")
        );
        // With include_resource: the state an import by that ID reads.
        let (results, diags) = list(&cfg, true).await;
        assert!(!diags.has_errors(), "{diags:?}");
        let state = results[0].resource.clone().unwrap();
        assert_eq!(state.attr("version").as_str(), Some("v2"));
        assert_eq!(state.attr("transport").as_str(), Some("local"));
        assert_eq!(state.attr("deploy_dir").as_str(), Some(d));
        assert_eq!(*state.attr("revision"), Value::int(2));
        assert!(state.attr("hosts").as_map().unwrap().contains_key("box"));
    }

    #[tokio::test]
    async fn an_unreachable_host_is_named() {
        let (results, diags) = list(&config("/srv/af", None, "gone-1=127.0.0.1:1"), false).await;
        assert!(results.is_empty());
        assert!(diags.has_errors());
        let text = format!("{diags:?}");
        assert!(text.contains("Cannot read host gone-1"), "{text}");
        // Refused at connect, not for a missing setting.
        assert!(
            text.contains("cannot connect") && !text.contains("known_hosts"),
            "{text}"
        );
    }
}
