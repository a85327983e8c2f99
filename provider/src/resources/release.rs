//! `resource "artifortress_release"`: the API and the worker deployed to hosts (D1/D2/D4/D5),
//! joining the release engine (`clients::release`) to Terraform.
//!
//! State is always what is live: after a failed rollout that was rolled back, `version` is
//! the version the hosts run again (so the next plan proposes the new one again), and
//! `last_failure` says what happened. Refresh reads every host's `current`, artifact checksums
//! (the release's, or each role directory's) and env-file checksums; a host changed by hand
//! makes `version`, `artifact.sha256` (per role: `api_artifact.sha256`,
//! `worker_artifact.sha256`) or `env_sha256` differ from the configuration, which the plan shows
//! as a change.
//!
//! The code follows the resource's seams: [`model`] (the schema as fields), [`plan`]
//! (validate and plan), [`env`] (the env files checked against the service's configuration),
//! [`apply`] (create, update, delete) and [`refresh`] (read, import, state upgrades); this file holds the resource and what they share.

mod apply;
mod artifacts;
mod env;
mod list;
mod model;
mod moved;
mod plan;
mod preconditions;
mod refresh;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;

use crate::clients::hosts::{LocalTransport, Timeouts, Transport};
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::framework::{
    ApplyRequest, ApplyResponse, DeleteRequest, ForImport, IdentityRequest, IdentitySchema, Import,
    ModifyPlanRequest, ModifyPlanResponse, MoveStateRequest, MovedState, ReadRequest, ReadResponse,
    Resource,
};
use crate::protocol::schema::Schema;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::DEFAULT_BACKUP_PREFIX;
use crate::shared::identity;

pub use list::ReleaseList;
use model::{HostConfig, ReleaseModel};

pub const TYPE_NAME: &str = "artifortress_release";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `watch.duration` when not given.
const DEFAULT_WATCH: Duration = Duration::from_secs(600);
/// A production release needs a backup younger than this.
const MAX_BACKUP_AGE: Duration = Duration::from_secs(24 * 3600);
/// `change.backup_prefix` when not given.
/// Prefix of a `version` or checksum that refresh found different on some host.
const DRIFT: &str = "drifted: ";
/// Prefix of an `env_sha256` value carried over from schema version 0, which kept the plain
/// sha256 of the env file. The first refresh replaces it with the keyed fingerprint (writing the
/// deployment's key to the hosts), so it never survives an apply.
const UNKEYED: &str = "unkeyed:";

pub struct Release;

#[async_trait]
impl Resource<Settings> for Release {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            2,
            "The Artifortress API and worker deployed to hosts (D1 staging, D2 rollback rehearsal, D4 rollout, D5 watch window). Per host: a deploy lock with owner and expiry, the artifact uploaded and its sha256 checked on the host, unpacked into `releases/<version>`, env files written mode 0600, `current` switched atomically, the role restarted and waited for (API: `/health/live`, then `consecutive_ready` `/health/ready` probes in a row saying `ready`; a `degraded` 200 is not ready; worker: `worker_status` succeeding as often), a line in `revisions.log`, old releases pruned. Every host is staged before any switches; hosts with the API role go first, in batches of `max_parallel`, and every one is ready before any worker-only host switches (the service's docs/29-deployment-howto-production.md, Deployment Sequence steps 4-6). When any host fails, every host already switched goes back to its previous release, restarted and ready (atomic rollback); the state then says what is live and `last_failure` what went wrong, so the next plan proposes the release again. With `schema_classes`, no rollback (nor rehearsal) puts a release older than an applied class C migration back in service: the way back is a restore (docs/25-upgrade-rollback-runbook.md). Refresh reads each host's live release, artifact checksum and env-file checksums: a host changed by hand shows up as a change in the plan.",
            ReleaseModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        plan::validate(config)
    }

    async fn modify_plan(
        &self,
        req: ModifyPlanRequest<'_, Settings>,
        resp: &mut ModifyPlanResponse,
    ) {
        plan::modify_plan(req, resp).await;
    }

    async fn create(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        apply::apply(req, resp).await;
    }

    async fn read(&self, req: ReadRequest<'_, Settings>, resp: &mut ReadResponse) {
        refresh::read(req, resp).await;
    }

    async fn update(&self, req: ApplyRequest<'_, Settings>, resp: &mut ApplyResponse) {
        apply::apply(req, resp).await;
    }

    async fn delete(&self, req: DeleteRequest<'_, Settings>) -> Diagnostics {
        apply::delete(req).await
    }

    fn import(&self) -> Import {
        Import::Passthrough("id")
    }

    /// `moved` from `terraform_data` / `null_resource`: refused with the `removed` and `import`
    /// blocks to use instead (see [`moved`]).
    fn move_state(&self, req: MoveStateRequest<'_>) -> Result<MovedState, Diagnostics> {
        moved::move_state(req)
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                identity::string_attribute(
                    "transport",
                    ForImport::Optional,
                    "`ssh` or `local`, as the resource's `transport` (default `ssh`).",
                ),
                identity::string_attribute(
                    "deploy_dir",
                    ForImport::Required,
                    "The absolute directory holding the releases on every host.",
                ),
                identity::string_attribute(
                    "hosts",
                    ForImport::Required,
                    "Where to find the hosts when importing: `<host>=<address>[:<port>][/<role>+<role>],...` as in the import ID. Recorded as given at the first import or create and kept while hosts come and go (the release's `id` changes with them, its identity does not).",
                ),
            ],
        })
    }

    /// `{transport, deploy_dir}` name the deployment and never change (both force a new
    /// resource). `hosts` is where it was first found: taken from `id` once, then kept.
    fn identity(&self, req: IdentityRequest<'_, Settings>) -> Option<Value> {
        let transport = req.state.attr("transport").as_str()?;
        let deploy_dir = req.state.attr("deploy_dir").as_str()?;
        let hosts = match req.prior.attr("hosts").as_str() {
            Some(h) => h.to_string(),
            None => refresh::hosts_of_id(req.state.attr("id").as_str()?)?,
        };
        Some(Value::object([
            ("transport", Value::string(transport)),
            ("deploy_dir", Value::string(deploy_dir)),
            ("hosts", Value::string(hosts)),
        ]))
    }

    fn import_id(&self, identity: &Value, _settings: &Settings) -> Result<String, Diagnostic> {
        let dir = identity.attr("deploy_dir").as_str().unwrap_or_default();
        let hosts = identity.attr("hosts").as_str().unwrap_or_default();
        let local = match identity.attr("transport").as_str() {
            None | Some("ssh") => "",
            Some("local") => "local:",
            Some(other) => {
                return Err(Diagnostic::error(
                    "Invalid import identity",
                    format!("transport {other:?}: expected \"ssh\" or \"local\"."),
                ));
            }
        };
        Ok(format!("{local}{dir},{hosts}"))
    }

    /// Version 0 kept the plain sha256 of each env file in `env_sha256` (and in its drift
    /// notes). Version 1 keeps fingerprints keyed with a key that lives only on the hosts: the
    /// plain values are marked `unkeyed:` for the refresh that follows to replace, and drift
    /// notes lose their checksums. Version 2 adds the per-role archives (`api_artifact`,
    /// `worker_artifact`, null in an older state) and `host_role_artifact_sha256`, filled from
    /// `host_artifact_sha256` (before version 2 every role came from the one `artifact`).
    fn upgrade_state(&self, version: i64, raw: &serde_json::Value) -> Result<Value, Diagnostic> {
        refresh::upgrade_state(&self.schema().value_type(), version, raw)
    }
}

/// Transports for the hosts (SSH sessions connect here); errors per host.
async fn transports(
    settings: &Settings,
    transport: &str,
    hosts: &[HostConfig],
) -> Vec<Result<Arc<dyn Transport>, String>> {
    join_all(hosts.iter().map(|h| async move {
        if transport == "local" {
            let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(Timeouts::default()));
            return Ok(t);
        }
        settings
            .ssh(&h.address, h.port)
            .await
            .map(|t| t as Arc<dyn Transport>)
            .map_err(|e| e.to_string())
    }))
    .await
}

/// The warning for SSH without host-key checks (`transport` not `local`; in a plan, unknown
/// reads as `ssh`, its default).
fn insecure_warning(settings: &Settings, transport: &str) -> Option<Diagnostic> {
    (transport != "local" && settings.ssh.insecure_ignore_host_key).then(|| {
        Diagnostic::warning(
            "SSH host keys are not verified",
            "`ssh.insecure_ignore_host_key = true`: any host answering at these addresses is trusted with the release and its env files. Use known_hosts for anything but throw-away hosts.",
        )
        .at_attr("hosts")
    })
}

fn host_path(name: &str) -> AttributePath {
    AttributePath::root().child_attr("hosts").child_key(name)
}

/// Where the deployment's env-fingerprint keys are cached for this provider process: refresh
/// reads them from the hosts, and the plan of the same run keys the configured env with them.
fn key_cache_id(transport: &str, deploy_dir: &str, h: &HostConfig) -> String {
    format!(
        "{transport}|{}|{}:{}",
        deploy_dir.trim_end_matches('/'),
        h.address,
        h.port
    )
}

/// Whether some `env_sha256` value is an `unkeyed:` one from schema version 0.
fn has_unkeyed(env: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    env.is_some_and(|m| m.values().any(|s| s.starts_with(UNKEYED)))
}

/// The warning for a host with no release to stop (wiped or rebuilt).
fn nothing_to_stop(host: &str) -> Diagnostic {
    Diagnostic::warning(
        format!("Nothing to stop on {host}"),
        format!("{host} has no release (no `current` in the deploy dir: wiped or rebuilt), so no stop command was run there."),
    )
    .at(host_path(host))
}

/// The one value every host has, else `mixed (a=x, b=y)`.
fn common<'a>(values: impl Iterator<Item = (&'a String, Option<&'a str>)>) -> Option<String> {
    let all: Vec<(&String, Option<&str>)> = values.collect();
    let first = all.first()?.1;
    if all.iter().all(|(_, v)| *v == first) {
        first.map(str::to_string)
    } else {
        Some(format!(
            "mixed ({})",
            all.iter()
                .map(|(h, v)| format!("{h}={}", v.unwrap_or("none")))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Values for the tests of the release's modules.
#[cfg(test)]
mod fixtures {
    use std::collections::BTreeMap;

    use super::Release;
    use crate::protocol::framework::Resource as _;
    use crate::protocol::types::Type;
    use crate::protocol::value::Value;

    /// A null object of the type of the release's nested attribute `name`.
    pub(super) fn nested_null(name: &str) -> Value {
        match Release.schema().value_type() {
            Type::Object { attributes, .. } => Value::null_object(&attributes[name]),
            other => panic!("not an object: {other:?}"),
        }
    }

    pub(super) fn release_config(sets: &[(&str, Value)]) -> Value {
        let mut v = Value::null_object(&Release.schema().value_type());
        for (k, val) in sets {
            v.set_attr(k, val.clone());
        }
        v
    }

    pub(super) fn strings(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
    }

    /// A `hosts` element as Terraform sends it: every attribute of the schema present.
    pub(super) fn host(address: &str, role: &str) -> Value {
        Value::object([
            ("address", Value::String(address.into())),
            ("port", Value::int(22)),
            ("roles", Value::List(vec![Value::String(role.into())])),
            ("api_url", Value::Null),
        ])
    }

    /// A prior state with api-1 and worker-1, a plan without worker-1.
    pub(super) fn without_worker() -> (Value, Value) {
        let prior = release_config(&[
            (
                "hosts",
                Value::Map(BTreeMap::from([
                    ("api-1".to_string(), host("10.0.0.1", "api")),
                    ("worker-1".to_string(), host("10.0.0.2", "worker")),
                ])),
            ),
            (
                "host_versions",
                strings(&[("api-1", "v1"), ("worker-1", "v1")]),
            ),
            (
                "host_artifact_sha256",
                strings(&[("api-1", "aa"), ("worker-1", "aa")]),
            ),
            ("on_destroy", Value::String("keep".into())),
        ]);
        let planned = release_config(&[
            (
                "hosts",
                Value::Map(BTreeMap::from([(
                    "api-1".to_string(),
                    host("10.0.0.1", "api"),
                )])),
            ),
            ("host_versions", strings(&[("api-1", "v2")])),
            ("host_artifact_sha256", strings(&[("api-1", "bb")])),
            ("on_destroy", Value::String("keep".into())),
        ]);
        (prior, planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_versions_name_each_host() {
        let (a, b) = ("a".to_string(), "b".to_string());
        assert_eq!(
            common([(&a, Some("v1")), (&b, Some("v1"))].into_iter()),
            Some("v1".into())
        );
        assert_eq!(
            common([(&a, Some("v1")), (&b, None)].into_iter()),
            Some("mixed (a=v1, b=none)".into())
        );
    }

    #[test]
    fn the_schema_is_valid() {
        assert!(!Release.schema().check().has_errors());
    }
}
