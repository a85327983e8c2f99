//! The release's archives: one `artifact` for every role, or one per role (`api_artifact`,
//! `worker_artifact`: the service's two `dotnet publish` outputs, the API and the worker, its
//! docs/29-deployment-howto-production.md "Release Artifact Preparation" lines 26-29 and
//! "Deployment Sequence" step 2, line 73; deploy/kind/Dockerfile.api and Dockerfile.worker,
//! lines 14-16). Their checks at plan, what a plan expects the hosts
//! to record, the archives fetched at apply, and drift per role at refresh.

use std::collections::{BTreeMap, BTreeSet};

use crate::clients::release::{self, Archive, Artifacts, HostState, LocalArtifact, Role};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::model::{Maybe, Planned};

use super::DRIFT;
use super::model::{ArtifactModel, HostConfig, ReleaseModel, artifact_attr, known};

/// The three archive attributes, the single one first.
const ATTRS: [&str; 3] = ["artifact", "api_artifact", "worker_artifact"];

fn sha_path(attr: &str) -> AttributePath {
    AttributePath::root().child_attr(attr).child_attr("sha256")
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The archive attribute `attr` of a plan.
fn planned_attr<'a>(c: &'a ReleaseModel<Planned>, attr: &str) -> &'a Maybe<Option<ArtifactModel>> {
    match attr {
        "api_artifact" => &c.api_artifact,
        "worker_artifact" => &c.worker_artifact,
        _ => &c.artifact,
    }
}

/// The checks of a configuration's archives: each checksum is 64 hex digits; exactly one form
/// (`artifact` alone, or per-role archives covering every role a host has); a per-role archive
/// no host uses is a warning. What is not known yet is checked at the next plan.
pub(super) fn check(c: &ReleaseModel<Planned>, diags: &mut Diagnostics) {
    for attr in ATTRS {
        if let Some(s) = known(planned_attr(c, attr)).and_then(|a| a.sha256.known())
            && !is_sha256(s)
        {
            diags.push(
                Diagnostic::error(
                    "Invalid sha256",
                    format!("{s:?} is not 64 hexadecimal digits"),
                )
                .at(sha_path(attr)),
            );
        }
    }
    if known(&c.artifact).is_some() {
        for role in Role::ALL {
            let attr = artifact_attr(role);
            if known(c.role_artifact(role)).is_some() {
                diags.push(
                    Diagnostic::error(
                        format!("artifact and {attr} both given"),
                        format!("Give either `artifact` (one archive for every role, unpacked as the release) or `api_artifact` and `worker_artifact` (one archive per role, unpacked as `api/` and `worker/`), not both: `{attr}` would be ignored."),
                    )
                    .at_attr(attr),
                );
            }
        }
        return;
    }
    if c.artifact.is_unknown() || Role::ALL.iter().any(|r| c.role_artifact(*r).is_unknown()) {
        return;
    }
    let Some(hosts) = known(&c.hosts) else {
        return;
    };
    // Roles the hosts have, with the hosts; whether every host's roles are known.
    let mut holders: BTreeMap<Role, Vec<&str>> = BTreeMap::new();
    let mut all_known = true;
    for (name, h) in hosts {
        let roles = h.known().and_then(|h| h.roles.known());
        let Some(roles) = roles else {
            all_known = false;
            continue;
        };
        for r in roles {
            match r.known() {
                Some(r) => {
                    if let Some(role) = Role::parse(r) {
                        holders.entry(role).or_default().push(name);
                    }
                }
                None => all_known = false,
            }
        }
    }
    let per_role: BTreeSet<Role> = Role::ALL
        .into_iter()
        .filter(|r| known(c.role_artifact(*r)).is_some())
        .collect();
    if per_role.is_empty() {
        diags.push(
            Diagnostic::error(
                "No artifact",
                "Give `artifact` (one archive for every role) or `api_artifact` and `worker_artifact` (one archive per role, for the roles the hosts have).",
            )
            .at_attr("artifact"),
        );
        return;
    }
    for (role, names) in &holders {
        if !per_role.contains(role) {
            let attr = artifact_attr(*role);
            diags.push(
                Diagnostic::error(
                    format!("{attr} is required"),
                    format!(
                        "The release takes one archive per role, and {} the {role} role: give `{attr}` (or one `artifact` for every role instead of `api_artifact`/`worker_artifact`).",
                        match names.as_slice() {
                            [one] => format!("host {one} has"),
                            many => format!("hosts {} have", many.join(", ")),
                        }
                    ),
                )
                .at_attr(attr),
            );
        }
    }
    if all_known {
        for role in &per_role {
            if !holders.contains_key(role) {
                let attr = artifact_attr(*role);
                diags.push(
                    Diagnostic::warning(
                        format!("{attr} is not used"),
                        format!(
                            "No host has the {role} role: `{attr}` is neither fetched nor deployed."
                        ),
                    )
                    .at_attr(attr),
                );
            }
        }
    }
}

/// A planned checksum, lower-cased.
fn lower(a: &Maybe<Option<ArtifactModel>>) -> Maybe<String> {
    match a {
        Maybe::Known(Some(a)) => match &a.sha256 {
            Maybe::Known(s) => Maybe::Known(s.to_ascii_lowercase()),
            Maybe::Unknown => Maybe::Unknown,
            Maybe::Null => Maybe::Null,
        },
        Maybe::Known(None) | Maybe::Null => Maybe::Null,
        Maybe::Unknown => Maybe::Unknown,
    }
}

/// What an apply of `planned` leaves in `host_artifact_sha256` and `host_role_artifact_sha256`
/// for the host `h` (see [`release::Artifacts::host_sha256`]).
pub(super) fn planned_host_shas(
    planned: &ReleaseModel<Planned>,
    h: &HostConfig,
) -> (Maybe<String>, BTreeMap<String, Maybe<String>>) {
    if planned.artifact.is_unknown() {
        let roles = h
            .roles
            .iter()
            .map(|r| (r.as_str().to_string(), Maybe::Unknown))
            .collect();
        return (Maybe::Unknown, roles);
    }
    if known(&planned.artifact).is_some() {
        let sha = lower(&planned.artifact);
        let roles = h
            .roles
            .iter()
            .map(|r| (r.as_str().to_string(), sha.clone()))
            .collect();
        return (sha, roles);
    }
    let shas: Vec<(Role, Maybe<String>)> = h
        .roles
        .iter()
        .map(|r| (*r, lower(planned.role_artifact(*r))))
        .collect();
    let set = if shas.iter().any(|(_, s)| s.is_unknown()) {
        Maybe::Unknown
    } else {
        let parts: Option<BTreeMap<Role, String>> = shas
            .iter()
            .map(|(r, s)| Some((*r, s.known()?.clone())))
            .collect();
        match parts {
            Some(p) if !p.is_empty() => Maybe::Known(release::artifact_set_sha256(&p)),
            _ => Maybe::Null,
        }
    };
    let roles = shas
        .into_iter()
        .map(|(r, s)| (r.as_str().to_string(), s))
        .collect();
    (set, roles)
}

/// Whether the archives' checksums differ between two plans (a new `source` alone is not a
/// change).
pub(super) fn shas_differ(a: &ReleaseModel<Planned>, b: &ReleaseModel<Planned>) -> bool {
    let sha = |m: &ReleaseModel<Planned>, attr: &str| match planned_attr(m, attr) {
        Maybe::Known(Some(x)) => x.sha256.clone(),
        Maybe::Unknown => Maybe::Unknown,
        _ => Maybe::Null,
    };
    ATTRS.iter().any(|attr| sha(a, attr) != sha(b, attr))
}

/// The archives of `planned` made local files, each checked against its checksum: the single
/// `artifact`, or the per-role archives of the roles `hosts` have. The local files live as long
/// as the returned holders.
pub(super) async fn fetch(
    http: &reqwest::Client,
    planned: &ReleaseModel,
    hosts: &[HostConfig],
) -> Result<(Artifacts, Vec<LocalArtifact>), Diagnostic> {
    let one = |attr: &'static str, a: Option<&ArtifactModel>| {
        let sha = a
            .and_then(|a| a.sha256.known())
            .map(|s| s.to_ascii_lowercase());
        let source = a.and_then(|a| a.source.clone());
        async move {
            let (Some(sha), Some(source)) = (sha, source) else {
                return Err(Diagnostic::error(
                    format!("{attr} is required"),
                    "The hosts' roles need this archive (see the plan's diagnostics).",
                )
                .at_attr(attr));
            };
            let local = release::fetch_artifact(http, &source, &sha)
                .await
                .map_err(|e| {
                    Diagnostic::error("Artifact rejected", e.to_string()).at(sha_path(attr))
                })?;
            tracing::info!(
                attribute = attr,
                source,
                bytes = local.size,
                "artifact verified locally"
            );
            Ok((
                Archive {
                    path: local.path.clone(),
                    sha256: sha,
                },
                local,
            ))
        }
    };
    if let Some(a) = planned.artifact.as_ref() {
        let (archive, local) = one("artifact", Some(a)).await?;
        return Ok((Artifacts::Single(archive), vec![local]));
    }
    let mut archives = BTreeMap::new();
    let mut held = Vec::new();
    for role in Role::ALL {
        if hosts.iter().any(|h| h.roles.contains(&role)) {
            let (archive, local) =
                one(artifact_attr(role), planned.role_artifact(role).as_ref()).await?;
            archives.insert(role, archive);
            held.push(local);
        }
    }
    Ok((Artifacts::PerRole(archives), held))
}

/// Per host, per role it has, the sha256 of the archive its files came from (empty: none).
pub(super) fn role_map(
    configs: &[HostConfig],
    live: &BTreeMap<String, HostState>,
) -> BTreeMap<String, BTreeMap<String, Maybe<String>>> {
    configs
        .iter()
        .filter_map(|h| {
            let s = live.get(&h.name)?;
            Some((
                h.name.clone(),
                h.roles
                    .iter()
                    .map(|r| {
                        (
                            r.as_str().to_string(),
                            Maybe::Known(s.role_sha256(*r).unwrap_or_default().to_string()),
                        )
                    })
                    .collect(),
            ))
        })
        .collect()
}

/// Refresh: each configured archive's `sha256` becomes `drifted: <host>=<sha256>, ...` when a
/// host running `version` has files of that role (every role, for `artifact`) from another
/// archive, so the plan shows a change.
pub(super) fn drift(
    state: &mut ReleaseModel,
    configs: &[HostConfig],
    live: &BTreeMap<String, HostState>,
    version: &str,
) {
    let running = |h: &HostConfig| {
        live.get(&h.name)
            .filter(|s| s.version.as_deref() == Some(version))
    };
    let want = |a: Option<&ArtifactModel>| {
        a.and_then(|a| a.sha256.known())
            .map(|s| s.to_ascii_lowercase())
    };
    let mark = |a: &mut Option<ArtifactModel>, bad: Vec<String>| {
        if let Some(a) = a.as_mut()
            && !bad.is_empty()
        {
            a.sha256 = Maybe::Known(format!("{DRIFT}{}", bad.join(", ")));
        }
    };
    if let Some(w) = want(state.artifact.as_ref()) {
        let bad = configs
            .iter()
            .filter_map(|h| {
                let s = running(h)?;
                (s.artifact_sha256.as_deref() != Some(w.as_str())).then(|| {
                    format!(
                        "{}={}",
                        h.name,
                        s.artifact_sha256.as_deref().unwrap_or("none")
                    )
                })
            })
            .collect();
        mark(&mut state.artifact, bad);
        return;
    }
    for role in Role::ALL {
        let Some(w) = want(state.role_artifact(role).as_ref()) else {
            continue;
        };
        let bad = configs
            .iter()
            .filter(|h| h.roles.contains(&role))
            .filter_map(|h| {
                let s = running(h)?;
                let have = s.role_sha256(role);
                (have != Some(w.as_str())).then(|| format!("{}={}", h.name, have.unwrap_or("none")))
            })
            .collect();
        match role {
            Role::Api => mark(&mut state.api_artifact, bad),
            Role::Worker => mark(&mut state.worker_artifact, bad),
        }
    }
}

/// Import: the archives the hosts run, as the configuration would give them. A release from a
/// single archive gives `artifact`; one installed per role gives `api_artifact` /
/// `worker_artifact` for the roles found (`mixed (...)` where the hosts differ).
pub(super) fn imported(state: &mut ReleaseModel, live: &BTreeMap<String, HostState>) {
    let common = |f: &dyn Fn(&HostState) -> Option<&str>| {
        let seen: Vec<(&String, Option<&str>)> = live
            .iter()
            .map(|(k, s)| (k, f(s)))
            .filter(|(_, v)| v.is_some())
            .collect();
        super::common(seen.into_iter())
    };
    let model = |sha: Option<String>| {
        sha.map(|s| ArtifactModel {
            source: None,
            sha256: Maybe::Known(s),
        })
    };
    let per_role = live.values().all(|s| s.artifact_sha256.is_none())
        && live.values().any(|s| !s.role_artifact_sha256.is_empty());
    if per_role {
        state.artifact = None;
        state.api_artifact = model(common(&|s| {
            s.role_artifact_sha256.get(&Role::Api).map(String::as_str)
        }));
        state.worker_artifact = model(common(&|s| {
            s.role_artifact_sha256
                .get(&Role::Worker)
                .map(String::as_str)
        }));
    } else {
        let sha = super::common(live.iter().map(|(k, s)| (k, s.artifact_sha256.as_deref())));
        state.artifact = Some(ArtifactModel {
            source: None,
            sha256: sha.map_or(Maybe::Null, Maybe::Known),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{host, release_config};
    use super::*;
    use crate::protocol::value::Value;

    const A: &str = "aa";

    fn sha(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn artifact(source: &str, sha: &str) -> Value {
        Value::object([
            ("source", Value::String(source.into())),
            ("sha256", Value::String(sha.into())),
        ])
    }

    fn hosts(list: &[(&str, &[&str])]) -> Value {
        Value::Map(
            list.iter()
                .map(|(name, roles)| {
                    let mut h = host("10.0.0.1", A);
                    h.set_attr(
                        "roles",
                        Value::List(roles.iter().map(|r| Value::String((*r).into())).collect()),
                    );
                    (name.to_string(), h)
                })
                .collect(),
        )
    }

    fn diags_of(sets: &[(&str, Value)]) -> Vec<(String, bool, String)> {
        let c = ReleaseModel::planned(&release_config(sets)).unwrap();
        let mut d = Diagnostics::new();
        check(&c, &mut d);
        d.iter()
            .map(|d| {
                (
                    d.summary.clone(),
                    d.is_error(),
                    format!("{:?}", d.attribute),
                )
            })
            .collect()
    }

    #[test]
    fn exactly_one_form_covering_every_role() {
        let both = hosts(&[("api-1", &["api"]), ("worker-1", &["worker"])]);
        // `artifact` alone; per-role archives for every role: fine.
        assert!(
            diags_of(&[
                ("hosts", both.clone()),
                ("artifact", artifact("a", &sha('a')))
            ])
            .is_empty()
        );
        assert!(
            diags_of(&[
                ("hosts", both.clone()),
                ("api_artifact", artifact("a", &sha('a'))),
                ("worker_artifact", artifact("w", &sha('b'))),
            ])
            .is_empty()
        );
        // Mixed: an error at the per-role attribute.
        let d = diags_of(&[
            ("hosts", both.clone()),
            ("artifact", artifact("a", &sha('a'))),
            ("worker_artifact", artifact("w", &sha('b'))),
        ]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].0, "artifact and worker_artifact both given");
        assert!(d[0].1 && d[0].2.contains("worker_artifact"), "{d:?}");
        // A role some host has without its archive: an error naming the host.
        let c = ReleaseModel::planned(&release_config(&[
            ("hosts", both.clone()),
            ("api_artifact", artifact("a", &sha('a'))),
        ]))
        .unwrap();
        let mut diags = Diagnostics::new();
        check(&c, &mut diags);
        let d: Vec<_> = diags.iter().collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].summary, "worker_artifact is required");
        assert!(d[0].detail.contains("host worker-1 has"), "{}", d[0].detail);
        assert_eq!(
            d[0].attribute,
            Some(AttributePath::root().child_attr("worker_artifact"))
        );
        // None at all.
        let d = diags_of(&[("hosts", both)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "No artifact");
        // An archive no host uses: a warning.
        let d = diags_of(&[
            ("hosts", hosts(&[("api-1", &["api"])])),
            ("api_artifact", artifact("a", &sha('a'))),
            ("worker_artifact", artifact("w", &sha('b'))),
        ]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].0, "worker_artifact is not used");
        assert!(!d[0].1);
        // A bad checksum, at its own path.
        let d = diags_of(&[
            ("hosts", hosts(&[("api-1", &["api"])])),
            ("api_artifact", artifact("a", "nope")),
        ]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "Invalid sha256");
        assert!(
            d[0].2.contains("api_artifact") && d[0].2.contains("sha256"),
            "{d:?}"
        );
        // Unknown archives are checked at the next plan.
        assert!(
            diags_of(&[
                ("hosts", hosts(&[("api-1", &["api"])])),
                ("api_artifact", Value::unknown()),
            ])
            .is_empty()
        );
    }

    #[test]
    fn planned_checksums_per_host_and_role() {
        let config = |sets: &[(&str, Value)]| ReleaseModel::planned(&release_config(sets)).unwrap();
        let both = HostConfig {
            name: "both-1".into(),
            address: "10.0.0.1".into(),
            port: 22,
            roles: vec![Role::Api, Role::Worker],
            api_url: None,
        };
        let single = config(&[("artifact", artifact("a", &sha('A')))]);
        let (h, r) = planned_host_shas(&single, &both);
        assert_eq!(h, Maybe::Known(sha('a')));
        assert_eq!(r["api"], Maybe::Known(sha('a')));
        assert_eq!(r["worker"], Maybe::Known(sha('a')));
        let per_role = config(&[
            ("api_artifact", artifact("a", &sha('a'))),
            ("worker_artifact", artifact("w", &sha('b'))),
        ]);
        let (h, r) = planned_host_shas(&per_role, &both);
        assert_eq!(
            h,
            Maybe::Known(release::artifact_set_sha256(&BTreeMap::from([
                (Role::Api, sha('a')),
                (Role::Worker, sha('b'))
            ])))
        );
        assert_eq!(r["worker"], Maybe::Known(sha('b')));
        let unknown = config(&[
            ("api_artifact", artifact("a", &sha('a'))),
            ("worker_artifact", Value::unknown()),
        ]);
        assert_eq!(planned_host_shas(&unknown, &both).0, Maybe::Unknown);
        // A new source with the same checksum is no change; a role's new checksum is.
        let moved = config(&[
            ("api_artifact", artifact("elsewhere", &sha('a'))),
            ("worker_artifact", artifact("w", &sha('b'))),
        ]);
        assert!(!shas_differ(&per_role, &moved));
        let new_worker = config(&[
            ("api_artifact", artifact("a", &sha('a'))),
            ("worker_artifact", artifact("w", &sha('c'))),
        ]);
        assert!(shas_differ(&per_role, &new_worker));
        assert!(shas_differ(&per_role, &single), "a change of form");
    }

    #[test]
    fn refresh_marks_the_drifted_role_only() {
        let mut state = ReleaseModel::from_config(&release_config(&[
            ("api_artifact", artifact("a", &sha('a'))),
            ("worker_artifact", artifact("w", &sha('b'))),
        ]))
        .unwrap();
        let cfg = |name: &str, roles: Vec<Role>| HostConfig {
            name: name.into(),
            address: "x".into(),
            port: 22,
            roles,
            api_url: None,
        };
        let configs = [
            cfg("api-1", vec![Role::Api]),
            cfg("worker-1", vec![Role::Worker]),
        ];
        let live_with = |worker: &str| {
            BTreeMap::from([
                (
                    "api-1".to_string(),
                    HostState {
                        version: Some("v1".into()),
                        role_artifact_sha256: BTreeMap::from([(Role::Api, sha('a'))]),
                        ..Default::default()
                    },
                ),
                (
                    "worker-1".to_string(),
                    HostState {
                        version: Some("v1".into()),
                        role_artifact_sha256: BTreeMap::from([(Role::Worker, worker.to_string())]),
                        ..Default::default()
                    },
                ),
            ])
        };
        let live = live_with(&sha('b'));
        drift(&mut state, &configs, &live, "v1");
        assert_eq!(
            state.worker_artifact.as_ref().unwrap().sha256,
            Maybe::Known(sha('b'))
        );
        let roles = role_map(&configs, &live);
        assert_eq!(roles["worker-1"]["worker"], Maybe::Known(sha('b')));
        assert_eq!(roles["api-1"].len(), 1, "only the host's roles");

        let live = live_with(&sha('c'));
        drift(&mut state, &configs, &live, "v1");
        assert_eq!(
            state.worker_artifact.as_ref().unwrap().sha256,
            Maybe::Known(format!("{DRIFT}worker-1={}", sha('c')))
        );
        assert_eq!(
            state.api_artifact.as_ref().unwrap().sha256,
            Maybe::Known(sha('a'))
        );

        // Import of hosts installed per role gives the per-role form.
        let mut imported_state = ReleaseModel::from_config(&release_config(&[])).unwrap();
        imported(&mut imported_state, &live_with(&sha('b')));
        assert!(imported_state.artifact.is_none());
        assert_eq!(
            imported_state.worker_artifact.unwrap().sha256,
            Maybe::Known(sha('b'))
        );
    }
}
