//! The model of `artifortress_release`: the schema's attributes as fields, and the conversions from
//! fields to what the release engine takes (hosts, strategy, commands, env, time limit).
//!
//! Most fields are `Option`s: an imported state holds only `id` until its first refresh. The
//! nested attributes that a plan compares with the prior state as they are (hosts, the
//! artifact's checksum, commands, the change) keep null and unknown apart with [`Maybe`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clients::release::{Commands, Failure, Role, Strategy};
use crate::protocol::framework;
use crate::protocol::model::{DurationText, Maybe, Planned};
use crate::protocol::schema::{Attribute, Constraint, Nesting};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::shared::timestamp;

use super::DEFAULT_TIMEOUT;

crate::model! {
    /// `artifortress_release` as configured, planned and stored.
    pub(crate) struct ReleaseModel {
        version: Option<String> = Attribute::required("version", Type::String)
            .description("The release to deploy: one path component (`A-Z a-z 0-9 . _ + -`), installed as `releases/<version>`. Refresh sets it to `drifted: <host>=<version>, ...` when hosts run something else."),
        artifact: Option<ArtifactModel> = Attribute::nested("artifact", Nesting::Single, Constraint::Optional, ArtifactModel::attributes())
            .description("One release tarball for every role, unpacked as `releases/<version>` (`{{release_dir}}`). Give either this or `api_artifact`/`worker_artifact`. Only `sha256` decides whether anything is deployed; a new `source` with the same checksum changes nothing on the hosts."),
        api_artifact: Option<ArtifactModel> = Attribute::nested("api_artifact", Nesting::Single, Constraint::Optional, ArtifactModel::attributes())
            .description("The API's own archive, instead of `artifact`: the service ships two `dotnet publish` outputs, the API (`src/Artifortress.Api`) and the worker (`src/Artifortress.Worker`), published and deployed separately (its docs/29-deployment-howto-production.md, Release Artifact Preparation and Deployment Sequence step 2, \"Deploy new API and worker artifacts to hosts\"; deploy/kind/Dockerfile.api and Dockerfile.worker publish one each; docs/30-deployment-config-reference.md configures each process on its own), and the host module (`examples/modules/hosts`, systemd units `artifortress-api` and `artifortress-worker`) runs them from `current/api/` and `current/worker/`. Unpacked as `releases/<version>/api/` (`{{release_dir}}/api`) on the hosts with the `api` role only, its sha256 checked locally and on each host and recorded in `api/.artifact-sha256`. Required when a host has the `api` role and `artifact` is not given; with `artifact` it is an error. Same checks, size limits and download rules as `artifact`; only `sha256` decides whether anything is deployed."),
        worker_artifact: Option<ArtifactModel> = Attribute::nested("worker_artifact", Nesting::Single, Constraint::Optional, ArtifactModel::attributes())
            .description("The worker's own archive, like `api_artifact`: unpacked as `releases/<version>/worker/` (`{{release_dir}}/worker`) on the hosts with the `worker` role only. A host with both roles gets both archives."),
        deploy_dir: Option<String> = Attribute::required("deploy_dir", Type::String)
            .requires_replace()
            .description("Absolute directory on every host holding `releases/`, `current`, `shared/<role>.env`, `revisions.log` and the deploy lock."),
        transport: String = Attribute::optional_computed("transport", Type::String)
            .default_value("ssh")
            .requires_replace()
            .validate(Validator::OneOf(&["ssh", "local"]))
            .description("`ssh` (the provider's `ssh` settings) or `local` (commands run on the machine running Terraform; for single-box installs and the quickstart)."),
        hosts: Option<BTreeMap<String, Maybe<HostModel>>> = Attribute::nested("hosts", Nesting::Map, Constraint::Required, HostModel::attributes())
            .description("Hosts by name. Names appear in logs, errors, `host_versions` and the import ID."),
        api_env_wo: Option<BTreeMap<String, Maybe<String>>> = Attribute::optional("api_env_wo", Type::map(Type::String))
            .sensitive()
            .write_only()
            .description("Environment of the API (`shared/api.env`, mode 0600, `KEY=value` lines). Write-only: never stored; `env_sha256.api`, a fingerprint keyed on the hosts, is its only trace. Null: the file is not managed. Values may use `{{host}}`, `{{role}}`, `{{address}}` and `{{deploy_dir}}`, expanded per host as written (e.g. `ASPNETCORE_URLS = \"http://{{address}}:8086\"`). Checked at plan against the service's configuration ([docs/30-deployment-config-reference.md](https://github.com/sremani/Artifortress/blob/main/docs/30-deployment-config-reference.md) and the keys its code reads): `ConnectionStrings__Postgres`, `ObjectStorage__Endpoint`, `ObjectStorage__AccessKey`, `ObjectStorage__SecretKey`, `ObjectStorage__Bucket`, `Auth__BootstrapToken` and `ASPNETCORE_URLS` are required (the service would fall back to localhost development defaults); a ranged setting out of its range (e.g. `ObjectStorage__PresignPartTtlSeconds` 60..3600), the well-known bootstrap token `artifortress-bootstrap`, or an `ASPNETCORE_URLS` port other than an API host's `api_url` port is an error; a key the service never reads is a warning naming the nearest key it does read (`ASPNETCORE_*`, `DOTNET_*`, `COMPlus_*`, `Logging__*`, `Kestrel__*`, `AllowedHosts`, `TZ`, `LANG`, `LC_*`, `SSL_CERT_*` and proxy variables are the runtime's and pass)."),
        worker_env_wo: Option<BTreeMap<String, Maybe<String>>> = Attribute::optional("worker_env_wo", Type::map(Type::String))
            .sensitive()
            .write_only()
            .description("Environment of the worker (`shared/worker.env`), like `api_env_wo` (templates too). Checked at plan the same way against the keys the worker reads: `ConnectionStrings__Postgres` is required; `Worker__PollSeconds`, `Worker__BatchSize`, `Worker__SearchJobMaxAttempts` are positive, `Worker__SearchJobLeaseSeconds` 30..86400; runtime variables (`DOTNET_*`, `COMPlus_*`, `TZ`, `LANG`, `LC_*`, `SSL_CERT_*`, proxies) pass, anything else is a warning."),
        commands: Option<CommandsModel> = Attribute::nested("commands", Nesting::Single, Constraint::Required, CommandsModel::attributes())
            .description("Commands run on the hosts with `sh`, templated with `{{release_dir}}`, `{{version}}`, `{{host}}`, `{{role}}`, `{{address}}`, `{{deploy_dir}}` and `{{instance}}` (the worker process, 1 to `worker_processes`; 1 for the API) (substituted shell-quoted). With `api_artifact` / `worker_artifact` each role's files are under `{{release_dir}}/api` and `{{release_dir}}/worker` (e.g. `{{release_dir}}/{{role}}/bin/...`). Changing them changes nothing until the next rollout. On a host with both roles the API is restarted and ready before the worker is restarted."),
        worker_processes: Option<i64> = Attribute::optional("worker_processes", Type::Number)
            .validate(Validator::IntBetween(1, 64))
            .description("Worker processes per worker host (default 1): the service scales its worker by process count (docs/27, docs/31). `restart_worker`, `worker_status` and `stop_worker` run once per process with `{{instance}}` 1 to N (e.g. `systemctl restart artifortress-worker@{{instance}}`), and must use `{{instance}}` when N > 1; a worker host is ready when every process's status succeeds. Lowering it stops the processes above the new count after the rollout."),
        strategy: Option<StrategyModel> = Attribute::nested("strategy", Nesting::Single, Constraint::Optional, StrategyModel::attributes())
            .description("How the rollout goes."),
        requires_schema: Option<String> = Attribute::optional("requires_schema", Type::String)
            .description("A migration version the release needs (e.g. `artifortress_migration.schema.head`): orders the apply after the migration and, when the provider has a `database_url`, is checked to be applied before anything is deployed. Recorded in `deployed_schemas` as the schema this version runs against."),
        schema_classes: Option<BTreeMap<String, String>> = Attribute::optional("schema_classes", Type::map(Type::String))
            .description("The applied migrations with their class, version → `A`/`B`/`C` (`artifortress_migration.schema.applied_classes`); needs `requires_schema`. With it no rollback puts binaries older than an applied class C (contract) migration back in service: an automatic rollback (a host not ready, the watch window) leaves the hosts on the new release and the apply fails naming the migration, the pre-release backup (`change.backup_id`) and the restore path; `rehearse_rollback` is not done and fails the apply the same way. The service's docs/41-migration-compatibility-policy.md (Rollback Policy): an application-only rollback is valid only while the schema stays backward compatible; after a contract migration the way back is a restore from the pre-release backup (docs/25-upgrade-rollback-runbook.md, Rollback Procedure step 3). A version counts as older than a migration when `deployed_schemas` records it with an earlier head; a version deployed before this resource recorded schemas is not checked."),
        smoke: Option<bool> = Attribute::optional("smoke", Type::Bool)
            .description("After each API host is ready on the new release, run the service's minimal smoke flow against it (the service's docs/29-deployment-howto-production.md step 8 and the D1 exit criterion: auth, repository read, draft/publish happy path; the same engine as `data \"artifortress_smoke\"` with `write = true`) with the provider's admin token. A failed step counts as a failed readiness wait: the hosts are rolled back and the apply fails naming the step. Each rollout leaves a scratch repository `smoke-<time>-<random>` with a published version per API host (the service does not delete repositories that have packages). Not run on a rollback."),
        watch: Option<WatchModel> = Attribute::nested("watch", Nesting::Single, Constraint::Optional, WatchModel::attributes())
            .description("D5 watch window: readiness probed every second on every API host; the apply finishes after it."),
        change: Option<ChangeModel> = Attribute::nested("change", Nesting::Single, Constraint::Optional, ChangeModel::attributes())
            .description("D3 production gate, required when the provider's `environment` is `production`: a rollout is refused outside the window, without a rollback owner, or without a fresh backup. Checked at plan (what is known) and again at apply; plans that deploy nothing are not gated."),
        rehearse_rollback: bool = Attribute::optional_computed("rehearse_rollback", Type::Bool)
            .default_value(Value::Bool(false))
            .description("D2: after a successful rollout, roll back to the previous release, check readiness, roll forward again, check readiness; `rehearsed_at` records it. Skipped with a warning when a host has no previous release."),
        on_destroy: String = Attribute::optional_computed("on_destroy", Type::String)
            .default_value("keep")
            .validate(Validator::OneOf(&["keep", "stop"]))
            .description("`keep` leaves the hosts running; `stop` runs `stop_api`/`stop_worker` on every host. Also applied to a host taken out of `hosts`: kept running unmanaged (the plan warns), or stopped after the rollout."),
        timeouts: Value = framework::timeouts_attribute(&["create", "update"]),
        id: Option<String> = Attribute::computed("id", Type::String)
            .description("`[local:]<deploy_dir>,<host>=<address>[:<port>],...`; also the import ID (roles may be appended to a host as `/api+worker`, else they are read from the env files present)."),
        deployed_version: Option<String> = Attribute::computed("deployed_version", Type::String)
            .description("The version live on every host, or `mixed (host=version, ...)`."),
        previous_version: Option<String> = Attribute::computed("previous_version", Type::String)
            .description("What the hosts ran before the last rollout."),
        host_versions: Option<BTreeMap<String, Maybe<String>>> = Attribute::computed("host_versions", Type::map(Type::String))
            .description("Per host, the version `current` points to (empty: none)."),
        host_artifact_sha256: Option<BTreeMap<String, Maybe<String>>> = Attribute::computed("host_artifact_sha256", Type::map(Type::String))
            .description("Per host, what its live release came from (empty: nothing recorded). With `artifact`: that tarball's sha256. With `api_artifact`/`worker_artifact`: one value for the archives of the host's roles, the sha256 of the lines `<role> <sha256>\\n` (`api` first), which changes whenever one of them does; `host_role_artifact_sha256` has them one by one."),
        host_role_artifact_sha256: Option<BTreeMap<String, BTreeMap<String, Maybe<String>>>> = Attribute::computed("host_role_artifact_sha256", Type::map(Type::map(Type::String)))
            .description("Per host, per role it has, the sha256 of the archive that role's files came from, as the host records it (`releases/<version>/<role>/.artifact-sha256`; with `artifact`, that tarball's for every role; empty: nothing recorded). Refresh reads it from the hosts: a role whose directory came from another archive shows as a change of that role's `*_artifact.sha256` in the plan."),
        env_sha256: Option<BTreeMap<String, String>> = Attribute::computed("env_sha256", Type::map(Type::String))
            .description("Per managed role, the keyed fingerprint of its env file (`per-host:<host>=<fingerprint>,...` when templates make the file differ per host), the only trace of the env in state: the sha256 of the deployment's key file (`shared/env-fingerprint.key`: 32 random bytes, mode 0600, written to every host at the first deploy, never in state) followed by the env file. Without the key, which stays on the hosts, nobody who reads the state can test a guessed secret against it, and the same env in two deployments gives different values. Refresh has each host compute it: a file edited by hand makes it `drifted: <host>=changed` (or `=missing`)."),
        deployed_schemas: Option<BTreeMap<String, String>> = Attribute::computed("deployed_schemas", Type::map(Type::String))
            .description("Per version this resource deployed with `requires_schema`, the schema head it was deployed against (the newest recording wins); what `schema_classes` is compared with before a rollback."),
        revision: Option<i64> = Attribute::computed("revision", Type::Number)
            .description("Successful rollouts through this resource."),
        deployed_at: Option<String> = Attribute::computed("deployed_at", Type::String)
            .description("When the last rollout finished."),
        last_failure: Option<FailureModel> = Attribute::computed("last_failure", FailureModel::object_type())
            .description("The last failed rollout (`version`, `host`, `phase`, `detail`, `at`), kept until the next successful one."),
        rehearsed_at: Option<String> = Attribute::computed("rehearsed_at", Type::String)
            .description("When the last rollback rehearsal passed."),
    }
}

crate::model! {
    /// `artifact`: the release tarball.
    pub(crate) struct ArtifactModel {
        source: Option<String> = Attribute::required("source", Type::String)
            .description("A local path (or `file://`) or an `http(s)://` URL of the release tarball (`.tar.gz`; a single top directory is unpacked as the release). A download streams to a temporary file and stops at the server's `Content-Length` or 2 GiB, whichever is smaller (a local file is refused above 2 GiB too), and gives up after 60 s without data."),
        sha256: Maybe<String> = Attribute::required("sha256", Type::String)
            .description("Its sha256, checked locally before any host sees it and again on every host after the upload."),
    }
}

crate::model! {
    /// One host of `hosts`. Any of it may be unknown in a plan (so may a whole host), and it is
    /// compared with the prior state as it is.
    pub(crate) struct HostModel {
        address: Maybe<String> = Attribute::required("address", Type::String)
            .description("Address to connect to (and `{{address}}` in commands)."),
        port: Maybe<i64> = Attribute::optional("port", Type::Number)
            .validate(Validator::IntBetween(1, 65535))
            .description("SSH port (default 22)."),
        roles: Maybe<Vec<Maybe<String>>> = Attribute::required("roles", Type::list(Type::String))
            .description("`api`, `worker` or both."),
        api_url: Maybe<String> = Attribute::optional("api_url", Type::String)
            .validate(Validator::HttpUrl)
            .description("The host's own API base URL, probed for readiness; required for the `api` role."),
    }
}

crate::model! {
    /// `commands`: null and unknown differ (a required command is missing only when null).
    pub(crate) struct CommandsModel {
        restart_api: Maybe<String> = Attribute::optional("restart_api", Type::String).description("Restarts the API on the new release (required with an `api` host)."),
        restart_worker: Maybe<String> = Attribute::optional("restart_worker", Type::String).description("Restarts the worker (required with a `worker` host)."),
        worker_status: Maybe<String> = Attribute::optional("worker_status", Type::String).description("Succeeds while the worker runs (required with a `worker` host)."),
        stop_api: Maybe<String> = Attribute::optional("stop_api", Type::String).description("Stops the API: for `on_destroy = \"stop\"` (on destroy, and on hosts taken out of `hosts`) and for undoing a failed first deploy."),
        stop_worker: Maybe<String> = Attribute::optional("stop_worker", Type::String).description("Stops the worker, like `stop_api`."),
    }
}

crate::model! {
    /// `strategy`; what is not set takes [`Strategy::default`].
    pub(crate) struct StrategyModel {
        max_parallel: Option<i64> = Attribute::optional("max_parallel", Type::Number).validate(Validator::IntBetween(1, 1000)).description("Hosts switched at once (default 1)."),
        consecutive_ready: Option<i64> = Attribute::optional("consecutive_ready", Type::Number).validate(Validator::IntBetween(1, 100)).description("Ready probes in a row a host needs (default 3)."),
        health_timeout: Option<DurationText> = Attribute::optional("health_timeout", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("How long a host may take to become ready (default `5m`)."),
        poll_interval: Option<DurationText> = Attribute::optional("poll_interval", Type::String).validate(Validator::Duration { min_millis: 50 }).description("Interval between readiness probes of a host being waited for (default `200ms`: about 5 requests per second per host, only during its wait)."),
        atomic: Option<bool> = Attribute::optional("atomic", Type::Bool).description("Roll every switched host back when any host fails (default true). `false`: hosts already switched stay, and `host_versions` says so."),
        keep_releases: Option<i64> = Attribute::optional("keep_releases", Type::Number).validate(Validator::IntBetween(1, 1000)).description("Releases kept per host (default 5); the previous release is always kept."),
    }
}

crate::model! {
    /// `watch`: the D5 watch window.
    pub(crate) struct WatchModel {
        duration: Option<DurationText> = Attribute::required("duration", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("How long to watch after the rollout."),
        max_not_ready: Option<DurationText> = Attribute::optional("max_not_ready", Type::String).validate(Validator::Duration { min_millis: 1000 }).description("A host `not_ready` (or unreachable) for longer than this triggers the rollback (default `1m`)."),
        on_backlog_growth: Option<String> = Attribute::optional("on_backlog_growth", Type::String).validate(Validator::OneOf(&["rollback", "warn"])).description("What a backlog regression does: `rollback` (default) or `warn`. The ops summary is read every 5 s through the provider's `api_url` with its `admin_token` (without them the watch is readiness only, with a warning) and compared with a baseline read before the rollout: a backlog counter newly past its critical threshold, or a count already past it that grows, is a regression; an age already past it keeps growing by itself and is not."),
    }
}

crate::model! {
    /// `change`: the D3 production gate (null and unknown differ: unknown is checked at apply).
    pub(crate) struct ChangeModel {
        window: Maybe<String> = Attribute::optional("window", Type::String).description("Approved change window, RFC 3339 `START/END`."),
        rollback_owner: Maybe<String> = Attribute::optional("rollback_owner", Type::String).description("Who owns the rollback."),
        approved_by: Option<String> = Attribute::optional("approved_by", Type::String).description("Who approved the change (recorded)."),
        backup_id: Maybe<String> = Attribute::optional("backup_id", Type::String).description("The pre-release backup (`artifortress_backup.x.id`); it must exist and be younger than 24 h."),
        backup_prefix: Option<String> = Attribute::optional("backup_prefix", Type::String).description("Where to look first for the backup (default `backups/`); a backup under another prefix is still found by its id (the bucket is listed), as the restore drill finds it."),
    }
}

crate::model! {
    /// `last_failure`: the last failed rollout (its type, not an attribute of its own).
    pub(crate) struct FailureModel {
        version: String = Attribute::computed("version", Type::String),
        host: String = Attribute::computed("host", Type::String),
        phase: String = Attribute::computed("phase", Type::String),
        detail: String = Attribute::computed("detail", Type::String),
        at: String = Attribute::computed("at", Type::String),
    }
}

/// A field of a planned model that is known and not null.
pub(crate) fn known<T>(m: &Maybe<Option<T>>) -> Option<&T> {
    m.known().and_then(Option::as_ref)
}

/// One host as configured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostConfig {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub roles: Vec<Role>,
    pub api_url: Option<String>,
}

/// The hosts by name; what is not known yet reads as empty (port 22).
pub(crate) fn host_configs(hosts: &BTreeMap<String, Maybe<HostModel>>) -> Vec<HostConfig> {
    hosts
        .iter()
        .map(|(name, h)| {
            let h = h.known();
            HostConfig {
                name: name.clone(),
                address: h
                    .and_then(|h| h.address.known())
                    .cloned()
                    .unwrap_or_default(),
                port: h
                    .and_then(|h| h.port.known())
                    .and_then(|p| u16::try_from(*p).ok())
                    .unwrap_or(22),
                roles: h
                    .and_then(|h| h.roles.known())
                    .map(|roles| {
                        roles
                            .iter()
                            .filter_map(|r| r.known().and_then(|r| Role::parse(r)))
                            .collect()
                    })
                    .unwrap_or_default(),
                api_url: h.and_then(|h| h.api_url.known()).cloned(),
            }
        })
        .collect()
}

impl ReleaseModel {
    /// The hosts (none in an imported state before its first refresh).
    pub(crate) fn host_configs(&self) -> Vec<HostConfig> {
        self.hosts.as_ref().map(host_configs).unwrap_or_default()
    }
}

impl ReleaseModel<Planned> {
    /// The hosts (none while `hosts` is unknown).
    pub(crate) fn host_configs(&self) -> Vec<HostConfig> {
        known(&self.hosts).map(host_configs).unwrap_or_default()
    }

    /// The configured env of `role`.
    fn env(&self, role: Role) -> &Maybe<Option<BTreeMap<String, Maybe<String>>>> {
        match role {
            Role::Api => &self.api_env_wo,
            Role::Worker => &self.worker_env_wo,
        }
    }

    /// The env per role as configured (`None`: not known yet).
    pub(crate) fn configured_env(&self) -> Option<BTreeMap<Role, BTreeMap<String, String>>> {
        let mut out = BTreeMap::new();
        for role in Role::ALL {
            let env = self.env(role);
            if env.is_unknown() {
                return None;
            }
            if let Some(e) = known(env) {
                if e.values().any(Maybe::is_unknown) {
                    return None;
                }
                out.insert(
                    role,
                    e.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.known()?.clone())))
                        .collect(),
                );
            }
        }
        Some(out)
    }
}

/// The attribute holding the archive of `role` in the per-role form.
pub(crate) fn artifact_attr(role: Role) -> &'static str {
    match role {
        Role::Api => "api_artifact",
        Role::Worker => "worker_artifact",
    }
}

impl<M: crate::protocol::model::Mode> ReleaseModel<M> {
    /// The per-role archive of `role` (`api_artifact` / `worker_artifact`).
    pub(crate) fn role_artifact(&self, role: Role) -> &M::Of<Option<ArtifactModel>> {
        match role {
            Role::Api => &self.api_artifact,
            Role::Worker => &self.worker_artifact,
        }
    }
}

/// The attribute holding the env of `role` (for diagnostics).
pub(crate) fn env_attr(role: Role) -> &'static str {
    match role {
        Role::Api => "api_env_wo",
        Role::Worker => "worker_env_wo",
    }
}

impl CommandsModel {
    /// Every command with its attribute's name.
    pub(crate) fn named(&self) -> [(&'static str, &Maybe<String>); 5] {
        [
            ("restart_api", &self.restart_api),
            ("restart_worker", &self.restart_worker),
            ("worker_status", &self.worker_status),
            ("stop_api", &self.stop_api),
            ("stop_worker", &self.stop_worker),
        ]
    }

    pub(crate) fn restart(&self, role: Role) -> &Maybe<String> {
        match role {
            Role::Api => &self.restart_api,
            Role::Worker => &self.restart_worker,
        }
    }

    pub(crate) fn stop(&self, role: Role) -> &Maybe<String> {
        match role {
            Role::Api => &self.stop_api,
            Role::Worker => &self.stop_worker,
        }
    }
}

/// The rollout strategy; what is not set is [`Strategy::default`]'s.
pub(crate) fn strategy(s: Option<&StrategyModel>) -> Strategy {
    let d = Strategy::default();
    let Some(s) = s else { return d };
    let int = |v: Option<i64>, default: i64| v.unwrap_or(default).max(1);
    let dur = |v: &Option<DurationText>, default: Duration| v.as_ref().map_or(default, |t| t.get());
    Strategy {
        max_parallel: int(s.max_parallel, d.max_parallel as i64) as usize,
        consecutive_ready: int(s.consecutive_ready, i64::from(d.consecutive_ready)) as u32,
        health_timeout: dur(&s.health_timeout, d.health_timeout),
        poll_interval: dur(&s.poll_interval, d.poll_interval),
        atomic: s.atomic.unwrap_or(d.atomic),
        keep_releases: int(s.keep_releases, d.keep_releases as i64) as usize,
    }
}

/// The commands the release engine runs.
pub(crate) fn commands(c: Option<&CommandsModel>) -> Commands {
    let mut out = Commands::default();
    let Some(c) = c else { return out };
    for role in Role::ALL {
        if let Some(cmd) = c.restart(role).known() {
            out.restart.insert(role, cmd.clone());
        }
        if let Some(cmd) = c.stop(role).known() {
            out.stop.insert(role, cmd.clone());
        }
    }
    out.worker_status = c.worker_status.known().cloned();
    out
}

/// The create (or update) time limit in `timeouts`.
pub(crate) fn time_limit(timeouts: &Value, creating: bool) -> Duration {
    let op = if creating { "create" } else { "update" };
    framework::timeout(
        &Value::object([("timeouts", timeouts.clone())]),
        op,
        DEFAULT_TIMEOUT,
    )
}

impl From<&Failure> for FailureModel {
    fn from(f: &Failure) -> Self {
        FailureModel {
            version: f.version.clone(),
            host: f.host.clone(),
            phase: f.phase.to_string(),
            detail: f.detail.to_string(),
            at: time_text(f.at),
        }
    }
}

/// [`timestamp`]'s text.
pub(crate) fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    timestamp(t).as_str().unwrap_or_default().to_string()
}
