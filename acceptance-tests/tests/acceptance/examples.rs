//! The root modules under `examples/` (staging, production, team-state and the local modules
//! they use) with every Terraform under test:
//!
//! - every `.tf` file is formatted, and each root module validates (initialised from a copy, with
//!   the modules it references at the same relative paths, against the provider mirror);
//! - `terraform test` passes in examples/staging and examples/production (mocked providers);
//! - `examples/staging` is applied to the dev environment (deploy hosts 1-3, the test bed's
//!   release tarballs, the dev PostgreSQL and Garage), upgraded with its rollback rehearsal, and
//!   destroyed, with nothing of the provider's environment variables: only its inputs;
//! - `examples/team-state` keeps its state in a fresh database of the dev PostgreSQL, and a
//!   second run fails on the state lock while the first holds it (or waits, with
//!   `-lock-timeout`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::support::free_port;

use crate::deploy_hosts::{self, DevHost, dev_s3_client, reset, ssh};
use crate::harness::{Run, Terraform, cli_config, psql, required_env, terraforms, with_database};

pub(crate) fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The provider's and the SSH agent's environment variables: the staging example must work
/// from its inputs alone.
const PROVIDER_ENV: &[&str] = &[
    "ARTIFORTRESS_API_URL",
    "ARTIFORTRESS_ADMIN_TOKEN",
    "ARTIFORTRESS_BOOTSTRAP_TOKEN",
    "ARTIFORTRESS_DATABASE_URL",
    "ARTIFORTRESS_S3_ENDPOINT",
    "ARTIFORTRESS_S3_BUCKET",
    "ARTIFORTRESS_SSH_USER",
    "ARTIFORTRESS_SSH_PRIVATE_KEY",
    "ARTIFORTRESS_SSH_KNOWN_HOSTS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "SSH_AUTH_SOCK",
    "PG_CONN_STR",
    "PG_SCHEMA_NAME",
];

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        // A developer's local working files are not part of the example.
        if name_str == ".terraform"
            || name_str == ".terraform.lock.hcl"
            || name_str.starts_with("terraform.tfstate")
        {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Some directories of `examples/` copied into a temporary `examples/` (relative paths between
/// them preserved), Terraform run in one of them.
pub(crate) struct Example {
    tf: Terraform,
    _root: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Example {
    pub(crate) fn new(tf: &Terraform, copies: &[&str], run_in: &str) -> Example {
        let root = tempfile::Builder::new()
            .prefix("af-examples-")
            .tempdir()
            .unwrap();
        for c in copies {
            copy_dir(
                &examples_dir().join(c),
                &root.path().join("examples").join(c),
            );
        }
        Example {
            tf: tf.clone(),
            dir: root.path().join("examples").join(run_in),
            _root: root,
            env: Vec::new(),
        }
    }

    pub(crate) fn version(&self) -> &str {
        &self.tf.version
    }

    pub(crate) fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tf.bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", cli_config())
            .env_remove("TF_LOG")
            .env_remove("TF_LOG_PROVIDER");
        if let Ok(level) = std::env::var("ARTIFORTRESS_TEST_TF_LOG") {
            cmd.env("TF_LOG", level);
        }
        for name in PROVIDER_ENV {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tf.bin.display()))
            .into()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tf.bin.display()))
    }

    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code,
            0,
            "terraform {} {}: exit {} in {}:\n{}",
            self.tf.version,
            args.join(" "),
            run.code,
            self.dir.display(),
            run.text()
        );
        run
    }

    #[track_caller]
    pub(crate) fn init(&self, extra: &[&str]) {
        let mut args = vec!["init", "-input=false", "-no-color"];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// `apply`, then `plan -detailed-exitcode` must be empty (exit 0).
    #[track_caller]
    pub(crate) fn apply_ok(&self, vars: &[&str]) -> Run {
        let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
        args.extend_from_slice(vars);
        let run = self.ok(&args);
        self.assert_plan_empty(vars);
        run
    }

    #[track_caller]
    pub(crate) fn assert_plan_empty(&self, vars: &[&str]) {
        let mut args = vec!["plan", "-detailed-exitcode", "-input=false", "-no-color"];
        args.extend_from_slice(vars);
        let plan = self.run(&args);
        assert_eq!(
            plan.code,
            0,
            "terraform {}: the plan after apply is not empty (exit {}):\n{}",
            self.tf.version,
            plan.code,
            plan.text()
        );
    }

    pub(crate) fn output(&self, name: &str) -> serde_json::Value {
        let run = self.ok(&["output", "-json"]);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("output -json");
        v[name]["value"].clone()
    }

    /// The attributes of the first resource of `type_name` in the state.
    pub(crate) fn state_of(&self, type_name: &str) -> serde_json::Value {
        let run = self.ok(&["show", "-json", "-no-color"]);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("show -json");
        v["values"]["root_module"]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["type"] == type_name))
            .map(|r| r["values"].clone())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Databases and roles of one run, dropped when the test ends however it ends.
struct PgLeftovers {
    admin_url: String,
    databases: Vec<String>,
    roles: Vec<String>,
}

impl Drop for PgLeftovers {
    fn drop(&mut self) {
        let bin = std::env::var("ARTIFORTRESS_DEV_PG_BIN").unwrap_or_default();
        for sql in self
            .databases
            .iter()
            .map(|d| format!("drop database if exists \"{d}\" with (force)"))
            .chain(
                self.roles
                    .iter()
                    .map(|r| format!("drop role if exists \"{r}\"")),
            )
        {
            let _ = Command::new(Path::new(&bin).join("psql"))
                .arg(&self.admin_url)
                .args(["-X", "-q", "-c", &sql])
                .output();
        }
    }
}

pub(crate) fn tf_tag(tf: &Terraform) -> String {
    tf.version.replace('.', "_")
}

fn random_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

// ---------------------------------------------------------------------------------------------
// (a) formatting and validation

#[test]
fn examples_are_formatted_and_valid() {
    for tf in terraforms() {
        let fmt = Command::new(&tf.bin)
            .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
            .arg(examples_dir())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", cli_config())
            .output()
            .unwrap();
        let fmt: Run = fmt.into();
        assert_eq!(
            fmt.code,
            0,
            "terraform {} fmt -check -recursive examples/:\n{}",
            tf.version,
            fmt.text()
        );

        for (root, copies, init_args) in [
            ("staging", &["modules", "staging"][..], &[][..]),
            ("production", &["modules", "production"][..], &[][..]),
            // Validation needs no state: the pg backend is not contacted.
            ("team-state", &["team-state"][..], &["-backend=false"][..]),
        ] {
            let ex = Example::new(&tf, copies, root);
            ex.init(init_args);
            let run = ex.run(&["validate", "-no-color"]);
            assert!(
                run.code == 0 && run.stdout.contains("The configuration is valid"),
                "terraform {} validate examples/{root}:\n{}",
                tf.version,
                run.text()
            );
        }
    }
}

/// `terraform test` in examples/staging and examples/production (their `tests/*.tftest.hcl`):
/// plan-time checks with the provider mocked, every run passing, none skipped. Production's
/// `artifortress.mint` is not mocked (mock providers cannot mock ephemeral resources): it mints
/// its token from the dev environment's test bed, through the provider's environment variables.
#[test]
fn examples_terraform_test_files_pass_with_mocked_providers() {
    for tf in terraforms() {
        for (root, runs) in [("staging", 3), ("production", 4)] {
            let ex = Example::new(&tf, &["modules", root], root)
                .with_env(
                    "ARTIFORTRESS_API_URL",
                    &required_env("ARTIFORTRESS_API_URL"),
                )
                .with_env(
                    "ARTIFORTRESS_BOOTSTRAP_TOKEN",
                    &required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
                );
            ex.init(&[]);
            let run = ex.run(&["test", "-no-color"]);
            assert!(
                run.code == 0
                    && run
                        .stdout
                        .contains(&format!("Success! {runs} passed, 0 failed.")),
                "terraform {} test in examples/{root}:\n{}",
                tf.version,
                run.text()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) examples/staging applied to the dev environment

fn object_exists(rt: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, key: &str) -> bool {
    let bucket = required_env("ARTIFORTRESS_S3_BUCKET");
    rt.block_on(async {
        s3.head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    })
}

/// Objects under some prefixes of the dev bucket, deleted when the test ends however it ends
/// (the drill's report is never deleted by a destroy; backups are, unless the run failed).
struct S3Leftovers<'a> {
    rt: &'a tokio::runtime::Runtime,
    s3: &'a aws_sdk_s3::Client,
    prefixes: Vec<String>,
}

impl Drop for S3Leftovers<'_> {
    fn drop(&mut self) {
        let bucket = required_env("ARTIFORTRESS_S3_BUCKET");
        self.rt.block_on(async {
            for prefix in &self.prefixes {
                let Ok(list) = self
                    .s3
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(prefix)
                    .send()
                    .await
                else {
                    continue;
                };
                for key in list.contents().iter().filter_map(|o| o.key()) {
                    let _ = self
                        .s3
                        .delete_object()
                        .bucket(&bucket)
                        .key(key)
                        .send()
                        .await;
                }
            }
        });
    }
}

fn port_open(address: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{address}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

#[test]
fn staging_example_deploys_upgrades_with_a_rehearsal_and_destroys() {
    let hosts = deploy_hosts::example_layout();
    let by_name: Vec<(&str, &DevHost)> = hosts.iter().map(|(n, h, _)| (*n, h)).collect();
    let (artifacts, sums) = deploy_hosts::artifacts();
    let admin_url = required_env("ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = dev_s3_client();

    for tf in terraforms() {
        let tag = format!("{}_{}", tf_tag(&tf), random_tag());
        let database = format!("af_ex_stg_{tag}");
        let role = format!("af_ex_stg_owner_{tag}");
        let drill_db = format!("af_ex_stg_drill_{tag}");
        let _leftovers = PgLeftovers {
            admin_url: admin_url.clone(),
            databases: vec![database.clone(), drill_db.clone()],
            roles: vec![role.clone()],
        };
        let deploy_dir = format!("/opt/artifortress/examples-staging-{}", tf_tag(&tf));
        reset(&by_name, &deploy_dir);
        let api_port = free_port().unwrap();
        let prefix = format!("backups/examples-staging-{tag}/");
        let drills = format!("drills/examples-staging-{tag}/");
        let _objects = S3Leftovers {
            rt: &rt,
            s3: &s3,
            prefixes: vec![prefix.clone(), drills.clone()],
        };

        let ex = Example::new(&tf, &["modules", "staging"], "staging")
            .with_env(
                "TF_VAR_ssh_private_key",
                &std::fs::read_to_string(required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE"))
                    .unwrap(),
            )
            .with_env("TF_VAR_admin_database_url", &admin_url)
            .with_env(
                "TF_VAR_db_password",
                &format!(
                    "{:016x}{:016x}",
                    rand::random::<u64>(),
                    rand::random::<u64>()
                ),
            )
            .with_env(
                "TF_VAR_s3_secret_access_key",
                &required_env("AWS_SECRET_ACCESS_KEY"),
            )
            .with_env(
                "TF_VAR_bootstrap_token",
                &required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
            );
        let tfvars = |version: &str| {
            let hosts: serde_json::Map<String, serde_json::Value> = hosts
                .iter()
                .map(|(name, h, role)| {
                    (
                        name.to_string(),
                        serde_json::json!({"address": h.address, "port": h.port, "role": role}),
                    )
                })
                .collect();
            let vars = serde_json::json!({
                "release_version": version,
                "artifacts": {"base": artifacts, "sha256": sums},
                "hosts": hosts,
                "api_port": api_port,
                "deploy_dir": deploy_dir,
                "release_on_destroy": "stop",
                "migrations_dir": acceptance_tests::support::migrations_dir(),
                "ssh_user": required_env("ARTIFORTRESS_SSH_USER"),
                // The dev client key's public half: the hosts' user data authorizes it.
                "ssh_authorized_keys": [std::fs::read_to_string(format!(
                    "{}.pub",
                    required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")
                ))
                .unwrap()
                .trim()],
                "ssh_known_hosts_file": required_env("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE"),
                "database_name": database,
                "database_role": role,
                "database_on_destroy": "drop",
                "bucket": {
                    "name": required_env("ARTIFORTRESS_S3_BUCKET"),
                    "endpoint": required_env("ARTIFORTRESS_S3_ENDPOINT"),
                    "region": "us-east-1",
                },
                "s3_access_key_id": required_env("AWS_ACCESS_KEY_ID"),
                "backup_prefix": prefix,
                "backup_retention": "delete",
                "drill_week": "2026-W48",
                "drill_database": drill_db,
                "drill_report_key": format!("{drills}latest.md"),
            });
            std::fs::write(
                ex.file("terraform.tfvars.json"),
                serde_json::to_string_pretty(&vars).unwrap(),
            )
            .unwrap();
        };
        tfvars("v1");
        ex.init(&[]);

        // v1: bootstrap, backup, migrations, rollout, readiness, drill; the next plan is empty.
        ex.apply_ok(&[]);
        let release = ex.output("release");
        assert_eq!(release["version"], "v1", "{release}");
        assert_eq!(
            release["host_versions"],
            serde_json::json!({"api-1": "v1", "api-2": "v1", "worker-1": "v1"})
        );
        assert!(
            release["rehearsed_at"].is_null(),
            "nothing to rehearse on a first deploy: {release}"
        );
        assert_eq!(
            ex.output("readiness"),
            serde_json::json!({"api-1": "ready", "api-2": "ready"})
        );
        assert_eq!(ex.output("schema_head"), "0003_outbox_and_jobs.sql");
        let drill = ex.output("drill");
        assert_eq!(drill["passed"], true, "{drill}");
        assert!(
            object_exists(&rt, &s3, &format!("{drills}latest.md")),
            "the drill report in the bucket"
        );
        let v1_backup = ex.output("pre_release_backup")["object_key"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            v1_backup.starts_with(&prefix) && object_exists(&rt, &s3, &v1_backup),
            "{v1_backup}"
        );
        let db_url = with_database(&admin_url, &database);
        assert_eq!(
            psql(
                &admin_url,
                &format!(
                    "select pg_get_userbyid(datdba) from pg_database where datname = '{database}'"
                )
            ),
            role
        );
        assert_eq!(psql(&db_url, "select count(*) from schema_migrations"), "3");

        // v2: a new backup, then the rollout and its rehearsal (v2, back to v1, forward to v2).
        tfvars("v2");
        ex.apply_ok(&[]);
        let release = ex.output("release");
        assert_eq!(release["version"], "v2", "{release}");
        assert_eq!(release["previous_version"], "v1", "{release}");
        assert!(release["rehearsed_at"].is_string(), "{release}");
        let state = ex.state_of("artifortress_release");
        assert_eq!(state["version"], "v2", "{state}");
        assert_eq!(state["deployed_version"], "v2", "{state}");
        assert!(state["rehearsed_at"].is_string(), "{state}");
        for (name, h) in &by_name {
            let (_, live) = ssh(h, &format!("basename \"$(readlink {deploy_dir}/current)\""));
            assert_eq!(live.trim(), "v2", "{name}");
        }
        let (starts, log) = deploy_hosts::api_start_history(&hosts[0].1, &deploy_dir);
        assert_eq!(
            starts,
            ["v1", "v2", "v1", "v2"],
            "api-1 start history (the rehearsal):\n{log}"
        );
        let v2_backup = ex.output("pre_release_backup")["object_key"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(v2_backup, v1_backup, "a new release takes a new backup");
        assert!(object_exists(&rt, &s3, &v2_backup), "{v2_backup}");

        // Destroy: the service stopped on every host, database and role dropped, backups
        // deleted.
        ex.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        for (name, h, role) in &hosts {
            if *role == "api" {
                assert!(
                    !port_open(&h.address, api_port),
                    "{name}: the API still listens on {}:{api_port} after destroy",
                    h.address
                );
            }
        }
        let (code, out) = ssh(
            &hosts[2].1,
            &format!("{deploy_dir}/current/bin/artifortress status worker"),
        );
        assert!(
            code == 3 && out.contains("stopped"),
            "the worker after destroy: exit {code}: {out}"
        );
        assert_eq!(
            psql(
                &admin_url,
                &format!(
                    "select count(*) from pg_database where datname in ('{database}', '{drill_db}')"
                )
            ),
            "0"
        );
        assert_eq!(
            psql(
                &admin_url,
                &format!("select count(*) from pg_roles where rolname = '{role}'")
            ),
            "0"
        );
        assert!(!object_exists(&rt, &s3, &v2_backup), "{v2_backup} deleted");
        reset(&by_name, &deploy_dir);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) examples/team-state: the state in PostgreSQL, and its lock

/// A resource whose create-time provisioner holds the apply (and so the state lock) from
/// `held-<round>` appearing until `release-<round>` appears (at most 120 s).
fn hold_config(markers: &Path) -> String {
    let m = markers.display();
    format!(
        r#"
variable "hold_round" {{
  type = string
}}

resource "terraform_data" "hold" {{
  triggers_replace = var.hold_round
  provisioner "local-exec" {{
    command = "touch {m}/held-${{var.hold_round}}; i=0; while [ ! -e {m}/release-${{var.hold_round}} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
  }}
}}
"#
    )
}

/// Waits for `marker` while `child` runs; panics with its output if it exits first.
fn wait_for_marker(child: &mut Child, marker: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            use std::io::Read;
            if let Some(mut s) = child.stdout.take() {
                s.read_to_string(&mut out).unwrap();
            }
            if let Some(mut s) = child.stderr.take() {
                s.read_to_string(&mut out).unwrap();
            }
            panic!("{what} exited ({status}) before holding the lock:\n{out}");
        }
        assert!(Instant::now() < deadline, "{what} never held the lock");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

#[test]
fn team_state_example_keeps_the_state_in_postgres_and_locks_it() {
    let admin_url = required_env("ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL");
    for tf in terraforms() {
        let db = format!("af_ex_tfstate_{}_{}", tf_tag(&tf), random_tag());
        psql(&admin_url, &format!("create database \"{db}\""));
        let _leftovers = PgLeftovers {
            admin_url: admin_url.clone(),
            databases: vec![db.clone()],
            roles: vec![],
        };
        let conn = format!("{}?sslmode=disable", with_database(&admin_url, &db));
        let api_url = required_env("ARTIFORTRESS_API_URL");
        // Two working directories, as two CI runners would have.
        let runner = || {
            let ex = Example::new(&tf, &["team-state"], "team-state")
                .with_env("PG_CONN_STR", &conn)
                .with_env("TF_VAR_api_url", &api_url);
            ex.init(&[]);
            ex
        };
        let a = runner();
        a.apply_ok(&[]);
        assert!(
            a.output("api_status").is_string(),
            "{}",
            a.output("api_status")
        );
        assert!(
            !a.file("terraform.tfstate").exists(),
            "the state must not be kept locally"
        );
        assert_eq!(
            psql(
                &conn,
                "select count(*) from artifortress_staging.states where name = 'default' and data like '%artifortress_readiness%'"
            ),
            "1",
            "the state row in artifortress_staging.states"
        );
        // The other runner sees the same state: nothing to do.
        let b = runner();
        b.assert_plan_empty(&[]);

        let markers = tempfile::Builder::new()
            .prefix("af-tfstate-lock-")
            .tempdir()
            .unwrap();
        for ex in [&a, &b] {
            std::fs::write(ex.file("hold.tf"), hold_config(markers.path())).unwrap();
        }
        let apply = ["apply", "-auto-approve", "-input=false", "-no-color"];

        // Round 1: while runner A's apply holds the lock, runner B's apply fails at once.
        let mut first = a.spawn(&[&apply[..], &["-var", "hold_round=1"]].concat());
        wait_for_marker(&mut first, &markers.path().join("held-1"), "apply A");
        let locks = psql(
            &admin_url,
            &format!(
                "select count(*) from pg_locks l join pg_database d on d.oid = l.database \
                 where l.locktype = 'advisory' and l.granted and d.datname = '{db}'"
            ),
        );
        assert_ne!(locks, "0", "an advisory lock is held in {db} meanwhile");
        let started = Instant::now();
        let second = b.run(&[&apply[..], &["-lock-timeout=0s", "-var", "hold_round=1"]].concat());
        assert_eq!(
            second.code,
            1,
            "terraform {}: an apply while another holds the lock must fail:\n{}",
            tf.version,
            second.text()
        );
        assert!(
            second.shows("Error acquiring the state lock"),
            "{}",
            second.text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "it failed without waiting"
        );
        std::fs::write(markers.path().join("release-1"), "").unwrap();
        let first = finish(first);
        assert_eq!(first.code, 0, "apply A:\n{}", first.text());

        // Round 2: with -lock-timeout, runner B waits for A, then plans against A's new state.
        let mut first = a.spawn(&[&apply[..], &["-var", "hold_round=2"]].concat());
        wait_for_marker(&mut first, &markers.path().join("held-2"), "apply A");
        let mut second =
            b.spawn(&[&apply[..], &["-lock-timeout=2m", "-var", "hold_round=2"]].concat());
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            second.try_wait().unwrap().is_none(),
            "apply B must wait for the lock"
        );
        std::fs::write(markers.path().join("release-2"), "").unwrap();
        let first = finish(first);
        assert_eq!(first.code, 0, "apply A:\n{}", first.text());
        let second = finish(second);
        assert_eq!(
            second.code,
            0,
            "terraform {}: apply B with -lock-timeout:\n{}",
            tf.version,
            second.text()
        );
        assert!(
            second.shows("0 added, 0 changed, 0 destroyed"),
            "apply B saw A's state:\n{}",
            second.text()
        );
        a.assert_plan_empty(&["-var", "hold_round=2"]);
    }
}
