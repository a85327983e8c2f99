//! `artifortress_release` against real sshd deploy hosts (`scripts/dev-env up --hosts 4`: each an
//! sshd on 127.0.0.K+1 in its own mount namespace, so every host has its own
//! `/opt/artifortress`), the test bed's release tarballs (`v1`, `v2`, `broken`: the test bed API
//! and worker with a control script) and the real Terraform CLIs.
//!
//! Hosts 1-3 are shared by the tests here: each test works in its own subdirectory of
//! `/opt/artifortress` with its own API port. Host 4 is only used by the crash test, which
//! kills it (`scripts/dev-env host stop host-4`) and starts it again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::deploy_hosts::{
    DevHost, api_start_history, artifacts, dev_host, dev_s3_client, reset_command, ssh,
};
use super::harness::{Terraform, Workdir, npgsql, required_env, shows, terraforms};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(super) fn free_port() -> u16 {
    acceptance_tests::support::free_port().unwrap()
}

pub(super) fn hcl(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One release under test: hosts (name → dev host, roles), where, and on which port the APIs
/// listen.
pub(super) struct Fleet {
    pub(super) hosts: Vec<(String, DevHost, Vec<&'static str>)>,
    pub(super) deploy_dir: String,
    pub(super) api_port: u16,
    pub(super) local: bool,
    /// The APIs accept `PUT /testbed/faults`.
    pub(super) faults: bool,
}

/// Extra API environment: the test bed's run-time fault switch (`PUT /testbed/faults`).
const FAULTS_ENV: &str = "TESTBED_FAULTS_ENABLED = \"1\"";

impl Fleet {
    fn api_url(&self, h: &DevHost) -> String {
        format!("http://{}:{}", h.address, self.api_port)
    }

    pub(super) fn apis(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .filter(|(_, _, r)| r.contains(&"api"))
            .map(|(n, h, _)| (n.clone(), self.api_url(h)))
            .collect()
    }

    fn provider(&self, extra: &str) -> String {
        format!(
            r#"
provider "artifortress" {{
  {extra}
  ssh = {{
    user        = {user}
    private_key = file({key})
    known_hosts = file({kh})
  }}
}}
"#,
            user = hcl(&required_env("ARTIFORTRESS_SSH_USER")),
            key = hcl(&required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")),
            kh = hcl(&required_env("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE")),
        )
    }

    /// The resource for `version`, with extra resource arguments.
    fn resource(&self, version: &str, extra: &str) -> String {
        let (dir, sums) = artifacts();
        let db = npgsql(&required_env("ARTIFORTRESS_DATABASE_URL"));
        let mut hosts = String::new();
        for (name, h, roles) in &self.hosts {
            let roles = roles.iter().map(|r| hcl(r)).collect::<Vec<_>>().join(", ");
            let api = if self
                .hosts
                .iter()
                .any(|x| x.0 == *name && x.2.contains(&"api"))
            {
                format!(", api_url = {}", hcl(&self.api_url(h)))
            } else {
                String::new()
            };
            let port = if self.local {
                String::new()
            } else {
                format!(", port = {}", h.port)
            };
            hosts.push_str(&format!(
                "    {} = {{ address = {}{port}, roles = [{roles}]{api} }}\n",
                hcl(name),
                hcl(&h.address)
            ));
        }
        format!(
            r#"
resource "artifortress_release" "r" {{
  version    = {version}
  artifact   = {{ source = {source}, sha256 = {sha} }}
  deploy_dir = {deploy_dir}
  transport  = {transport}
  hosts = {{
{hosts}  }}
  api_env_wo = {{
    ConnectionStrings__Postgres = {db}
    ObjectStorage__Endpoint     = {s3}
    ObjectStorage__AccessKey    = {ak}
    ObjectStorage__SecretKey    = {sk}
    ObjectStorage__Bucket       = {bucket}
    Auth__BootstrapToken        = {boot}
    ASPNETCORE_URLS             = "http://{{{{address}}}}:{port}"
    {faults}
  }}
  worker_env_wo = {{ ConnectionStrings__Postgres = {db}, Worker__PollSeconds = "1" }}
  commands = {{
    restart_api    = "{{{{release_dir}}}}/bin/artifortress restart api"
    restart_worker = "{{{{release_dir}}}}/bin/artifortress restart worker"
    worker_status  = "{{{{release_dir}}}}/bin/artifortress status worker"
    stop_api       = "{{{{release_dir}}}}/bin/artifortress stop api"
    stop_worker    = "{{{{release_dir}}}}/bin/artifortress stop worker"
  }}
  on_destroy = "stop"
  {extra}
}}

"#,
            version = hcl(version),
            source = hcl(&format!("{dir}/artifortress-{version}.tar.gz")),
            sha = hcl(&sums[version]),
            deploy_dir = hcl(&self.deploy_dir),
            transport = hcl(if self.local { "local" } else { "ssh" }),
            db = hcl(&db),
            s3 = hcl(&required_env("ARTIFORTRESS_S3_ENDPOINT")),
            ak = hcl(&required_env("AWS_ACCESS_KEY_ID")),
            sk = hcl(&required_env("AWS_SECRET_ACCESS_KEY")),
            bucket = hcl(&required_env("ARTIFORTRESS_S3_BUCKET")),
            boot = hcl(&required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN")),
            port = self.api_port,
            faults = if self.faults { FAULTS_ENV } else { "" },
        )
    }

    /// Leftovers of an earlier run of the same test (same deploy_dir) are stopped and removed.
    pub(super) fn reset(&self) {
        let cmd = reset_command(&self.deploy_dir);
        for (name, h, _) in &self.hosts {
            let (code, out) = if self.local {
                let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
                (
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            } else {
                ssh(h, &cmd)
            };
            assert_eq!(code, 0, "{name}: reset failed: {out}");
        }
    }

    pub(super) fn config(&self, version: &str, extra: &str) -> String {
        format!("{}{}", self.provider(""), self.resource(version, extra))
    }

    /// The same fleet without one host.
    fn without(&self, name: &str) -> Fleet {
        Fleet {
            hosts: self.hosts.iter().filter(|h| h.0 != name).cloned().collect(),
            deploy_dir: self.deploy_dir.clone(),
            ..*self
        }
    }
}

/// The resource's attributes in the state (`terraform show -json`), or null without one.
pub(super) fn state(wd: &Workdir) -> serde_json::Value {
    let run = wd.run(&["show", "-json", "-no-color"]);
    assert_eq!(run.code, 0, "show -json failed:\n{}", run.text());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("show -json is JSON");
    v["values"]["root_module"]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["type"] == "artifortress_release"))
        .map(|r| r["values"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// `GET /health/ready` over plain HTTP/1.0: `Some(status)` from the body, `None` when nothing
/// answers.
pub(super) fn readiness(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let addr: std::net::SocketAddr = rest.trim_end_matches('/').parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET /health/ready HTTP/1.0\r\nHost: {rest}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let body = buf.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["status"].as_str().map(str::to_string)
}

/// `PUT /testbed/faults` (test bed only); panics unless it answers 200.
fn put_faults(url: &str, body: &str) {
    let rest = url.strip_prefix("http://").unwrap().trim_end_matches('/');
    let mut s = TcpStream::connect(rest).unwrap();
    s.write_all(
        format!(
            "PUT /testbed/faults HTTP/1.0\r\nHost: {rest}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    assert!(
        buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200"),
        "PUT /testbed/faults: {buf}"
    );
}

/// One API probed over a kept-alive HTTP/1.1 connection: a restart always breaks the
/// connection to the old process, so it is seen as down at least once however fast the new
/// process comes up (a fresh connection per probe can miss a restart shorter than the
/// sampling interval: seen on an idle 2-core CI machine, where the most down at once read 0).
struct KeptAlive {
    url: String,
    conn: Option<std::io::BufReader<TcpStream>>,
}

impl KeptAlive {
    /// Whether `/health/ready` says `ready` on the kept connection (a broken connection is
    /// dropped, and this probe counts as not ready; the next one connects afresh).
    fn ready(&mut self) -> bool {
        use std::io::BufRead;
        let rest = self
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if self.conn.is_none() {
            let Ok(addr) = rest.parse::<std::net::SocketAddr>() else {
                return false;
            };
            let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            self.conn = Some(std::io::BufReader::new(s));
        }
        let conn = self.conn.as_mut().unwrap();
        let answer = (|| -> Option<String> {
            conn.get_mut()
                .write_all(format!("GET /health/ready HTTP/1.1\r\nHost: {rest}\r\n\r\n").as_bytes())
                .ok()?;
            let mut len = None;
            loop {
                let mut line = String::new();
                if conn.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse::<usize>().ok();
                }
            }
            let mut body = vec![0; len?];
            conn.read_exact(&mut body).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            v["status"].as_str().map(str::to_string)
        })();
        match answer {
            Some(status) => status == "ready",
            None => {
                self.conn = None;
                false
            }
        }
    }
}

/// Probes every API every 50 ms until stopped, each over a kept-alive connection; records the
/// most APIs not ready at once.
struct Prober {
    stop: Arc<AtomicBool>,
    max_down: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(urls: Vec<String>) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let max_down = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(AtomicUsize::new(0));
        let (s, m, n) = (stop.clone(), max_down.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let mut apis: Vec<KeptAlive> = urls
                .into_iter()
                .map(|url| KeptAlive { url, conn: None })
                .collect();
            while !s.load(Ordering::SeqCst) {
                let down = apis.iter_mut().map(|a| a.ready()).filter(|r| !r).count();
                m.fetch_max(down, Ordering::SeqCst);
                n.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Prober {
            stop,
            max_down,
            samples,
            thread: Some(thread),
        }
    }

    /// (most APIs down at once, samples taken)
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.max_down.load(Ordering::SeqCst),
            self.samples.load(Ordering::SeqCst),
        )
    }
}

pub(super) fn tf_tag(tf: &Terraform) -> String {
    tf.version.replace('.', "_")
}

fn shared_fleet(test: &str, tf: &Terraform) -> Fleet {
    let fleet = Fleet {
        hosts: vec![
            ("api-1".into(), dev_host("host-1"), vec!["api"]),
            ("api-2".into(), dev_host("host-2"), vec!["api"]),
            ("worker-1".into(), dev_host("host-3"), vec!["worker"]),
        ],
        deploy_dir: format!("/opt/artifortress/{test}-{}", tf_tag(tf)),
        api_port: free_port(),
        local: false,
        faults: false,
    };
    fleet.reset();
    fleet
}

/// Every host's `current` and env file modes, read over OpenSSH.
pub(super) fn live_version(h: &DevHost, deploy_dir: &str) -> String {
    let (_, out) = ssh(
        h,
        &format!("basename \"$(readlink {deploy_dir}/current)\" 2>/dev/null"),
    );
    out.trim().to_string()
}

#[test]
fn release_rolls_out_rolls_back_and_detects_drift() {
    for tf in terraforms() {
        let fleet = shared_fleet("roll", &tf);
        let strategy =
            r#"strategy = { max_parallel = 1, health_timeout = "10s", poll_interval = "100ms" }"#;
        let wd = Workdir::new(&tf, &fleet.config("v1", strategy));

        // Fresh deploy of v1 to 2 API hosts and a worker; apply_ok also checks the next plan
        // is empty.
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(s["version"], "v1");
        assert_eq!(s["deployed_version"], "v1");
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "v1", "api-2": "v1", "worker-1": "v1"})
        );
        assert_eq!(s["revision"], 1);
        assert!(
            s["api_env_wo"].is_null(),
            "write-only env must not be stored"
        );
        for (name, h, roles) in &fleet.hosts {
            assert_eq!(live_version(h, &fleet.deploy_dir), "v1", "{name}");
            let role = roles[0];
            let (_, mode) = ssh(
                h,
                &format!("stat -c %a {}/shared/{role}.env", fleet.deploy_dir),
            );
            assert_eq!(mode.trim(), "600", "{name}: env file mode");
        }
        for (name, url) in fleet.apis() {
            assert_eq!(readiness(&url).as_deref(), Some("ready"), "{name}");
        }

        // Rolling upgrade to v2, one host at a time: never more than one API down.
        wd.set_config(&fleet.config("v2", strategy));
        let prober = Prober::start(fleet.apis().into_iter().map(|(_, u)| u).collect());
        wd.apply_ok();
        let (max_down, samples) = prober.finish();
        assert!(samples > 20, "the prober ran ({samples} samples)");
        assert_eq!(
            max_down, 1,
            "terraform {}: during a max_parallel = 1 rollout exactly one API at a time must be down (the restart); the most down at once was {max_down}",
            tf.version
        );
        let s = state(&wd);
        assert_eq!(s["version"], "v2");
        assert_eq!(s["previous_version"], "v1");
        assert_eq!(s["revision"], 2);
        let (_, log) = ssh(
            &fleet.hosts[0].1,
            &format!("cat {}/revisions.log", fleet.deploy_dir),
        );
        assert_eq!(log.lines().count(), 2, "revisions.log:\n{log}");
        assert!(log.lines().last().unwrap().contains("version=v2"), "{log}");

        // broken never becomes ready: every host back on v2, the state says so.
        wd.set_config(&fleet.config("broken", strategy));
        let run = wd.apply();
        assert_ne!(run.code, 0, "applying broken must fail:\n{}", run.text());
        let text = run.text();
        assert!(
            shows(&text, "Release broken failed on api-1 (ready)"),
            "{text}"
        );
        assert!(
            shows(&text, "testbed fault: never ready"),
            "the dependency detail is shown:\n{text}"
        );
        assert!(shows(&text, "rolled back to v2"), "{text}");
        let s = state(&wd);
        assert_eq!(s["version"], "v2", "state after the rollback: {s}");
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "v2", "api-2": "v2", "worker-1": "v2"})
        );
        assert_eq!(s["last_failure"]["version"], "broken");
        assert_eq!(s["last_failure"]["host"], "api-1");
        assert_eq!(s["last_failure"]["phase"], "ready");
        for (name, h, _) in &fleet.hosts {
            assert_eq!(live_version(h, &fleet.deploy_dir), "v2", "{name}");
            let (_, ls) = ssh(h, &format!("ls {}/releases", fleet.deploy_dir));
            assert!(
                !ls.contains("broken"),
                "{name}: the rolled-back release is removed: {ls}"
            );
        }
        for (name, url) in fleet.apis() {
            assert_eq!(
                readiness(&url).as_deref(),
                Some("ready"),
                "{name} is ready on v2"
            );
        }
        // Nothing is wedged: the next plan proposes broken again...
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "{}", plan.text());
        assert!(plan.shows(r#""v2" -> "broken""#), "{}", plan.text());
        // ...and the v2 configuration is what is live.
        wd.set_config(&fleet.config("v2", strategy));
        wd.assert_plan_empty();

        // atomic = false: the host that failed stays where it failed, the hosts that only had
        // the release staged are put back (the staged release removed), and the state says what
        // every host runs.
        let partial = r#"strategy = { max_parallel = 1, health_timeout = "5s", poll_interval = "100ms", atomic = false }"#;
        wd.set_config(&fleet.config("broken", partial));
        let run = wd.apply();
        assert_ne!(run.code, 0, "applying broken must fail:\n{}", run.text());
        assert!(
            run.shows("Release broken failed on api-1 (ready)"),
            "{}",
            run.text()
        );
        assert!(
            run.shows("hosts already switched stay on the new release"),
            "{}",
            run.text()
        );
        let s = state(&wd);
        assert_eq!(s["version"], "v2", "the version stays the old one: {s}");
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "broken", "api-2": "v2", "worker-1": "v2"}),
            "{s}"
        );
        assert_eq!(s["last_failure"]["host"], "api-1");
        assert_eq!(live_version(&fleet.hosts[0].1, &fleet.deploy_dir), "broken");
        for (name, h, _) in &fleet.hosts[1..] {
            assert_eq!(live_version(h, &fleet.deploy_dir), "v2", "{name}");
            let (_, ls) = ssh(h, &format!("ls {}/releases", fleet.deploy_dir));
            assert!(
                !ls.contains("broken"),
                "{name}: a release staged but never switched to is removed: {ls}"
            );
        }
        assert_eq!(
            readiness(&fleet.apis()[1].1).as_deref(),
            Some("ready"),
            "api-2 was never switched"
        );
        // The v2 configuration is a change (api-1 runs broken) and repairs it.
        wd.set_config(&fleet.config("v2", strategy));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "{}", plan.text());
        assert!(plan.shows("api-1=broken"), "{}", plan.text());
        wd.apply_ok();
        assert_eq!(live_version(&fleet.hosts[0].1, &fleet.deploy_dir), "v2");
        assert_eq!(
            readiness(&fleet.apis()[0].1).as_deref(),
            Some("ready"),
            "api-1 is back on v2"
        );

        // A host switched by hand shows up in the plan, naming the host.
        let (code, out) = ssh(
            &fleet.hosts[1].1,
            &format!("cd {} && ln -sfn releases/v1 current", fleet.deploy_dir),
        );
        assert_eq!(code, 0, "{out}");
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "drift must be a change:\n{}", plan.text());
        assert!(
            plan.shows("api-2=v1"),
            "the plan names the host:\n{}",
            plan.text()
        );
        wd.apply_ok();
        assert_eq!(live_version(&fleet.hosts[1].1, &fleet.deploy_dir), "v2");

        // An env file edited by hand is drift too.
        let (code, out) = ssh(
            &fleet.hosts[2].1,
            &format!("echo EXTRA=1 >> {}/shared/worker.env", fleet.deploy_dir),
        );
        assert_eq!(code, 0, "{out}");
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "env drift must be a change:\n{}", plan.text());
        assert!(plan.shows("worker-1="), "{}", plan.text());
        wd.apply_ok();

        // A host taken out of hosts: with on_destroy = "keep" the plan says it goes on running
        // unmanaged, and it does...
        let (api1, api2) = (fleet.apis()[0].1.clone(), fleet.apis()[1].1.clone());
        let two = fleet.without("api-2");
        let keep = two
            .config("v2", strategy)
            .replace(r#"on_destroy = "stop""#, r#"on_destroy = "keep""#);
        assert_ne!(keep, two.config("v2", strategy));
        wd.set_config(&keep);
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "{}", plan.text());
        assert!(
            plan.shows("api-2 leaves hosts and keeps running"),
            "{}",
            plan.text()
        );
        wd.apply_ok();
        assert_eq!(readiness(&api2).as_deref(), Some("ready"), "kept running");
        // ...taken back, it is managed again; with on_destroy = "stop" it is
        // stopped when it leaves, and the others go on.
        wd.set_config(&fleet.config("v2", strategy));
        wd.apply_ok();
        wd.set_config(&two.config("v2", strategy));
        wd.apply_ok();
        assert_eq!(readiness(&api2), None, "api-2 left hosts and was stopped");
        assert_eq!(readiness(&api1).as_deref(), Some("ready"));
        assert_eq!(
            state(&wd)["host_versions"],
            serde_json::json!({"api-1": "v2", "worker-1": "v2"})
        );

        wd.destroy_ok();
        for (name, url) in fleet.apis() {
            assert_eq!(
                readiness(&url),
                None,
                "{name}: on_destroy = stop stopped the API"
            );
        }
    }
}

#[test]
fn release_rolls_back_when_a_host_dies_mid_rollout() {
    for tf in terraforms() {
        let fleet = Fleet {
            hosts: vec![
                ("api-1".into(), dev_host("host-1"), vec!["api"]),
                ("api-2".into(), dev_host("host-2"), vec!["api"]),
                ("api-3".into(), dev_host("host-4"), vec!["api"]),
            ],
            deploy_dir: format!("/opt/artifortress/crash-{}", tf_tag(&tf)),
            api_port: free_port(),
            local: false,
            faults: false,
        };
        fleet.reset();
        let strategy = r#"strategy = { max_parallel = 1, health_timeout = "20s", consecutive_ready = 5, poll_interval = "200ms" }"#;
        let wd = Workdir::new(&tf, &fleet.config("v1", strategy));
        wd.apply_ok();

        // Roll out v2; once api-1 runs it, host-4 (api-3) dies with everything on it.
        wd.set_config(&fleet.config("v2", strategy));
        let child = wd.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while live_version(&fleet.hosts[0].1, &fleet.deploy_dir) != "v2" {
            assert!(Instant::now() < deadline, "api-1 never switched to v2");
            std::thread::sleep(Duration::from_millis(100));
        }
        let stop = Command::new(repo().join("scripts/dev-env"))
            .args(["host", "stop", "host-4"])
            .output()
            .unwrap();
        assert!(
            stop.status.success(),
            "{}",
            String::from_utf8_lossy(&stop.stderr)
        );
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "the apply must fail:\n{text}");
        assert!(
            shows(&text, "Release v2 failed on api-3"),
            "the error names the host:\n{text}"
        );
        assert!(shows(&text, "rolled back to v1"), "{text}");
        let s = state(&wd);
        assert_eq!(s["version"], "v1", "{s}");
        assert_eq!(s["host_versions"]["api-1"], "v1");
        assert_eq!(s["host_versions"]["api-2"], "v1");
        assert_eq!(s["last_failure"]["host"], "api-3");
        assert_eq!(live_version(&fleet.hosts[0].1, &fleet.deploy_dir), "v1");
        assert_eq!(live_version(&fleet.hosts[1].1, &fleet.deploy_dir), "v1");
        for (name, url) in fleet.apis().into_iter().take(2) {
            assert_eq!(
                readiness(&url).as_deref(),
                Some("ready"),
                "{name} is back and ready"
            );
        }

        // The host comes back (empty); the next apply completes.
        let start = Command::new(repo().join("scripts/dev-env"))
            .args(["host", "start", "host-4"])
            .output()
            .unwrap();
        assert!(
            start.status.success(),
            "{}",
            String::from_utf8_lossy(&start.stderr)
        );
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "v2", "api-2": "v2", "api-3": "v2"})
        );
        wd.destroy_ok();
    }
}

/// The provider's processes under `root` (Terraform's child, or the shim's grandchild).
fn provider_pids_under(root: u32) -> Vec<i32> {
    let mut parents: BTreeMap<i32, i32> = BTreeMap::new();
    let mut names: BTreeMap<i32, String> = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rsplit_once(") ").map(|x| x.1) else {
            continue;
        };
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parents.insert(pid, ppid);
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let first = cmd.split(|b| *b == 0).next().unwrap_or_default();
        names.insert(pid, String::from_utf8_lossy(first).into_owned());
    }
    names
        .iter()
        .filter(|(_, n)| n.contains("terraform-provider-artifortress"))
        .map(|(p, _)| *p)
        .filter(|p| {
            let mut cur = *p;
            for _ in 0..10 {
                match parents.get(&cur) {
                    Some(pp) if *pp == root as i32 => return true,
                    Some(pp) => cur = *pp,
                    None => return false,
                }
            }
            false
        })
        .collect()
}

#[test]
fn release_completes_after_the_provider_was_killed_mid_rollout() {
    for tf in terraforms() {
        let fleet = shared_fleet("sigkill", &tf);
        let strategy = r#"strategy = { max_parallel = 1, health_timeout = "30s", consecutive_ready = 10, poll_interval = "300ms" }"#;
        let wd = Workdir::new(&tf, &fleet.config("v1", strategy));
        wd.apply_ok();

        wd.set_config(&fleet.config("v2", strategy));
        let child = wd.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let root = child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        while live_version(&fleet.hosts[0].1, &fleet.deploy_dir) != "v2" {
            assert!(Instant::now() < deadline, "api-1 never switched to v2");
            std::thread::sleep(Duration::from_millis(100));
        }
        let pids = provider_pids_under(root);
        assert!(!pids.is_empty(), "no provider process found under {root}");
        for p in &pids {
            // SAFETY: kill(2) on a pid we just found; no memory is involved.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "terraform must fail when its provider dies"
        );
        // The dead provider's locks are still there...
        let (code, _) = ssh(
            &fleet.hosts[1].1,
            &format!("test -d {}/.deploy-lock", fleet.deploy_dir),
        );
        assert_eq!(
            code, 0,
            "the killed run left its deploy lock behind (this test must exercise the takeover)"
        );
        // ...and the next apply takes them over and completes.
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "v2", "api-2": "v2", "worker-1": "v2"})
        );
        let (code, _) = ssh(
            &fleet.hosts[1].1,
            &format!("test -d {}/.deploy-lock", fleet.deploy_dir),
        );
        assert_ne!(code, 0, "the lock is released after the apply");
        wd.destroy_ok();
    }
}

#[test]
fn release_verifies_host_keys() {
    for tf in terraforms() {
        let h1 = dev_host("host-1");
        let h2 = dev_host("host-2");
        let fleet = Fleet {
            hosts: vec![("api-1".into(), h1.clone(), vec!["api"])],
            deploy_dir: format!("/opt/artifortress/hostkey-{}", tf_tag(&tf)),
            api_port: free_port(),
            local: false,
            faults: false,
        };
        fleet.reset();
        // known_hosts that lists host-2's key for host-1's address.
        let kh =
            std::fs::read_to_string(required_env("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE")).unwrap();
        let key2 = kh
            .lines()
            .find(|l| l.starts_with(&format!("[{}]:{} ", h2.address, h2.port)))
            .and_then(|l| l.split_once(' '))
            .map(|x| x.1.to_string())
            .expect("host-2's key in known_hosts");
        let wrong = format!("[{}]:{} {key2}\n", h1.address, h1.port);
        let provider = |extra: &str| {
            format!(
                r#"
provider "artifortress" {{
  ssh = {{
    user        = {user}
    private_key = file({key})
    known_hosts = {kh}
    {extra}
  }}
}}
"#,
                user = hcl(&required_env("ARTIFORTRESS_SSH_USER")),
                key = hcl(&required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")),
                kh = hcl(&wrong),
            )
        };
        let wd = Workdir::new(
            &tf,
            &format!("{}{}", provider(""), fleet.resource("v1", "")),
        );
        let run = wd.apply();
        assert_ne!(
            run.code,
            0,
            "a wrong host key must be refused:\n{}",
            run.text()
        );
        assert!(run.shows("HOST KEY MISMATCH"), "{}", run.text());
        assert!(run.shows("api-1"), "{}", run.text());
        assert!(state(&wd).is_null(), "nothing deployed, no state");
        assert_eq!(
            live_version(&h1, &fleet.deploy_dir),
            "",
            "nothing reached the host"
        );

        wd.set_config(&format!(
            "{}{}",
            provider("insecure_ignore_host_key = true"),
            fleet.resource("v1", "")
        ));
        let run = wd.apply_ok();
        assert!(
            run.shows("SSH host keys are not verified"),
            "insecure_ignore_host_key warns:\n{}",
            run.text()
        );
        assert_eq!(live_version(&h1, &fleet.deploy_dir), "v1");
        wd.destroy_ok();
    }
}

#[test]
fn release_deploys_on_this_machine_and_imports() {
    for tf in terraforms() {
        let dir = tempfile::Builder::new()
            .prefix("af-release-local-")
            .tempdir()
            .unwrap();
        let deploy_dir = dir.path().join("deploy").display().to_string();
        let fleet = Fleet {
            hosts: vec![(
                "box".into(),
                DevHost {
                    address: "127.0.0.1".into(),
                    port: 22,
                },
                vec!["api", "worker"],
            )],
            deploy_dir: deploy_dir.clone(),
            api_port: free_port(),
            local: true,
            faults: false,
        };
        // requires_schema is checked against the provider's database before anything starts.
        let wd = Workdir::new(
            &tf,
            &fleet.config("v1", r#"requires_schema = "9999_not_there.sql""#),
        );
        let run = wd.apply();
        assert_ne!(run.code, 0, "{}", run.text());
        assert!(
            run.text()
                .contains("The schema this release needs is not applied"),
            "{}",
            run.text()
        );
        assert!(state(&wd).is_null());
        assert!(
            !std::path::Path::new(&deploy_dir).exists(),
            "nothing was deployed"
        );
        wd.set_config(&fleet.config("v1", r#"requires_schema = "0001_core.sql""#));
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(s["host_versions"], serde_json::json!({"box": "v1"}));
        let link = std::fs::read_link(format!("{deploy_dir}/current")).unwrap();
        assert!(link.ends_with("releases/v1"), "{}", link.display());
        let mode = std::fs::metadata(format!("{deploy_dir}/shared/api.env"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap();
        assert_eq!(mode, 0o600);
        let url = fleet.apis()[0].1.clone();
        assert_eq!(readiness(&url).as_deref(), Some("ready"));

        // Import by id: the same deployment, nothing redeployed.
        let id = s["id"].as_str().unwrap().to_string();
        assert_eq!(id, format!("local:{deploy_dir},box=127.0.0.1"));
        let run = wd.run(&["state", "rm", "artifortress_release.r"]);
        assert_eq!(run.code, 0, "{}", run.text());
        let run = wd.run(&[
            "import",
            "-input=false",
            "-no-color",
            "artifortress_release.r",
            &id,
        ]);
        assert_eq!(run.code, 0, "import failed:\n{}", run.text());
        let imported = state(&wd);
        assert_eq!(imported["version"], "v1");
        assert_eq!(
            imported["hosts"]["box"]["roles"],
            serde_json::json!(["api", "worker"])
        );
        assert_eq!(imported["env_sha256"], s["env_sha256"]);
        wd.apply_ok();
        assert_eq!(
            state(&wd)["revision"],
            imported["revision"],
            "no rollout after import"
        );
        if crate::identity::has_identity(&tf) {
            // Identity (Terraform >= 1.12): the deployment and where its hosts were found.
            let expected = serde_json::json!({
                "transport": "local", "deploy_dir": deploy_dir, "hosts": "box=127.0.0.1"
            });
            let (identity, _) = crate::identity::state_identity(&wd, "artifortress_release");
            assert_eq!(identity, expected);
            let run = wd.run(&["state", "rm", "artifortress_release.r"]);
            assert_eq!(run.code, 0, "{}", run.text());
            // main.tf as the test wrote it (required_providers included), plus the block.
            let config = std::fs::read_to_string(wd.file("main.tf")).unwrap();
            let block = format!(
                "import {{\n  to = artifortress_release.r\n  identity = {{\n    transport = \"local\"\n    deploy_dir = \"{deploy_dir}\"\n    hosts = \"box=127.0.0.1\"\n  }}\n}}\n"
            );
            std::fs::write(wd.file("main.tf"), format!("{config}\n{block}")).unwrap();
            // As after the import by ID: the arguments the hosts do not hold (api_url,
            // on_destroy, requires_schema) are recorded by an update that deploys nothing.
            let run = wd.apply_ok();
            assert!(
                run.stdout
                    .contains("1 imported, 0 added, 1 changed, 0 destroyed"),
                "{}",
                run.text()
            );
            assert_eq!(
                crate::identity::state_identity(&wd, "artifortress_release").0,
                expected
            );
            assert_eq!(state(&wd)["revision"], imported["revision"], "no rollout");
            std::fs::write(wd.file("main.tf"), config).unwrap();
        }
        wd.destroy_ok();
        assert_eq!(readiness(&url), None, "stopped on destroy");
    }
}

/// `list "artifortress_release"` (Terraform >= 1.14): a release Terraform forgot is found by
/// `terraform query` with its live version, and the generated import brings it back under
/// management as an import by ID does.
#[test]
fn query_lists_a_local_release_and_generated_config_imports_it() {
    for tf in crate::harness::terraforms_at_least(1, 14, "terraform query") {
        let dir = tempfile::Builder::new()
            .prefix("af-release-query-")
            .tempdir()
            .unwrap();
        let deploy_dir = dir.path().join("deploy").display().to_string();
        let fleet = Fleet {
            hosts: vec![(
                "box".into(),
                DevHost {
                    address: "127.0.0.1".into(),
                    port: 22,
                },
                vec!["api", "worker"],
            )],
            deploy_dir: deploy_dir.clone(),
            api_port: free_port(),
            local: true,
            faults: false,
        };
        // The local transport needs no `ssh` settings (no deploy hosts in this test).
        let provider_only = "\nprovider \"artifortress\" {}\n".to_string();
        let wd = Workdir::new(&tf, &format!("{provider_only}{}", fleet.resource("v1", "")));
        wd.apply_ok();
        wd.set_config(&format!("{provider_only}{}", fleet.resource("v2", "")));
        wd.apply_ok();
        let deployed = state(&wd);
        assert_eq!(deployed["host_versions"], serde_json::json!({"box": "v2"}));
        let run = wd.run(&["state", "rm", "artifortress_release.r"]);
        assert_eq!(run.code, 0, "{}", run.text());
        wd.set_config(&provider_only);

        // The documented example (docs/list-resources/release.md) on this test's deploy dir.
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/list-resources/artifortress_release/releases.tfquery.hcl"),
        )
        .unwrap();
        let hosts_line = r#"hosts      = "api-1=10.0.1.5,worker-1=10.0.1.7:2222""#;
        assert!(example.contains(hosts_line), "{example}");
        std::fs::write(
            wd.file("releases.tfquery.hcl"),
            example
                .replace("\"/opt/artifortress\"", &hcl(&deploy_dir))
                .replace(
                    hosts_line,
                    "hosts      = \"box=127.0.0.1\"\n    transport  = \"local\"",
                ),
        )
        .unwrap();
        let query = wd.run(&["query", "-no-color"]);
        assert_eq!(query.code, 0, "{}", query.text());
        assert!(
            query
                .stdout
                .contains(&format!("{deploy_dir}: live v2 | installed v1, v2")),
            "live and installed versions listed:\n{}",
            query.text()
        );

        let generate = wd.run(&["query", "-no-color", "-generate-config-out=generated.tf"]);
        assert_eq!(generate.code, 0, "{}", generate.text());
        let generated = std::fs::read_to_string(wd.file("generated.tf")).unwrap();
        assert_eq!(generated.matches("import {").count(), 1, "{generated}");
        for want in [
            "version           = \"v2\"".to_string(),
            format!(
                "sha256 = {}",
                hcl(deployed["artifact"]["sha256"].as_str().unwrap())
            ),
            "transport         = \"local\"".to_string(),
            "roles   = [\"api\", \"worker\"]".to_string(),
            "hosts      = \"box=127.0.0.1\"".to_string(),
        ] {
            assert!(generated.contains(&want), "{want} not in:\n{generated}");
        }
        // The hosts hold no artifact source, commands or api_url: as generated, the
        // configuration is refused at plan (notes.md: complete it, as for `import`).
        let plan = wd.run(&["plan", "-no-color", "-input=false"]);
        assert_ne!(plan.code, 0, "{}", plan.text());
        assert!(
            plan.text().contains("artifact.source must be set"),
            "{}",
            plan.text()
        );
        // Completed with the release's own configuration, under the generated name, with the
        // generated import block.
        // Terraform takes `provider` in an import block only while it generates the resource.
        let import = generated[generated.find("import {").unwrap()..]
            .replace("  provider = artifortress\n", "");
        std::fs::remove_file(wd.file("generated.tf")).unwrap();
        let completed = fleet.resource("v2", "").replace(
            "\"artifortress_release\" \"r\"",
            "\"artifortress_release\" \"app_0\"",
        );
        wd.set_config(&format!("{provider_only}{completed}{import}"));
        // As an import by ID: the arguments the hosts do not hold (api_url, on_destroy) are
        // recorded by an in-place update that deploys nothing.
        let plan = wd.run(&["plan", "-no-color", "-input=false"]);
        assert_eq!(plan.code, 0, "{}", plan.text());
        assert!(
            plan.stdout
                .contains("Plan: 1 to import, 0 to add, 1 to change, 0 to destroy."),
            "{}",
            plan.text()
        );
        let run = wd.apply_ok();
        assert!(
            run.stdout
                .contains("1 imported, 0 added, 1 changed, 0 destroyed"),
            "{}",
            run.text()
        );
        let imported = state(&wd);
        assert_eq!(imported["revision"], deployed["revision"], "no rollout");
        assert_eq!(imported["host_versions"], deployed["host_versions"]);
        assert_eq!(imported["env_sha256"], deployed["env_sha256"]);
        assert_eq!(imported["on_destroy"], "stop");
        assert_eq!(
            crate::identity::state_identity(&wd, "artifortress_release").0,
            serde_json::json!({
                "transport": "local", "deploy_dir": deploy_dir, "hosts": "box=127.0.0.1"
            })
        );
        let url = fleet.apis()[0].1.clone();
        assert_eq!(readiness(&url).as_deref(), Some("ready"));
        wd.destroy_ok();
        assert_eq!(readiness(&url), None, "stopped on destroy");
    }
}

/// Writes a backup manifest (as `artifortress_backup` does) with the given recovery point.
fn put_manifest(id: &str, snapshot_at: chrono::DateTime<chrono::Utc>) {
    put_manifest_under("backups/", id, snapshot_at)
}

/// The same under `prefix`.
fn put_manifest_under(prefix: &str, id: &str, snapshot_at: chrono::DateTime<chrono::Utc>) {
    let bucket = required_env("ARTIFORTRESS_S3_BUCKET");
    let s3 = dev_s3_client();
    let key = format!("{prefix}{id}.manifest.json");
    let t = snapshot_at.to_rfc3339();
    let body = serde_json::json!({
        "id": id, "bucket": bucket, "object_key": format!("{prefix}{id}.dump"),
        "manifest_key": key, "sha256": "0".repeat(64), "size_bytes": 1, "dump_bytes": 1,
        "format": "custom", "compression": "none", "database": "127.0.0.1:5432/x",
        "snapshot_at": t, "started_at": t, "completed_at": t, "duration_seconds": 1.0,
        "migration_head": null, "table_counts": {}, "postgres_version": "15",
        "pg_dump_version": "15", "verified": true
    });
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(serde_json::to_vec(&body).unwrap().into())
            .send()
            .await
            .expect("put manifest");
    });
}

#[test]
fn release_production_gate_refuses_unsafe_changes_at_plan_and_apply() {
    let now = chrono::Utc::now();
    let suffix = format!("{:x}", rand::random::<u32>());
    let fresh = format!("gate-fresh-{suffix}");
    let stale = format!("gate-stale-{suffix}");
    put_manifest(&fresh, now - chrono::Duration::minutes(10));
    put_manifest(&stale, now - chrono::Duration::hours(30));
    let open = format!(
        "{}/{}",
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339()
    );
    let closed = format!(
        "{}/{}",
        (now - chrono::Duration::hours(3)).to_rfc3339(),
        (now - chrono::Duration::hours(2)).to_rfc3339()
    );
    for tf in terraforms() {
        let dir = tempfile::Builder::new()
            .prefix("af-release-gate-")
            .tempdir()
            .unwrap();
        let fleet = Fleet {
            hosts: vec![(
                "box".into(),
                DevHost {
                    address: "127.0.0.1".into(),
                    port: 22,
                },
                vec!["api"],
            )],
            deploy_dir: dir.path().join("deploy").display().to_string(),
            api_port: free_port(),
            local: true,
            faults: false,
        };
        let config = |change: &str| {
            format!(
                "{}{}",
                fleet.provider(r#"environment = "production""#),
                fleet.resource("v1", change)
            )
        };
        let change = |window: &str, owner: Option<&str>, backup: Option<&str>| {
            let mut c = format!("change = {{ window = {}", hcl(window));
            if let Some(o) = owner {
                c.push_str(&format!(", rollback_owner = {}", hcl(o)));
            }
            if let Some(b) = backup {
                c.push_str(&format!(", backup_id = {}", hcl(b)));
            }
            c.push_str(" }");
            c
        };
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "A production release needs `change`"),
            (change(&closed, Some("oncall"), Some(&fresh)), "closed at"),
            (change(&open, None, Some(&fresh)), "no rollback owner"),
            (change(&open, Some("oncall"), None), "No backup given"),
            (
                change(&open, Some("oncall"), Some("no-such-backup")),
                "does not exist",
            ),
            (
                change(&open, Some("oncall"), Some(&stale)),
                "a production release needs one younger than",
            ),
        ];
        let wd = Workdir::new(&tf, &config(""));
        for (c, expected) in &cases {
            wd.set_config(&config(c));
            let plan = wd.plan_detailed();
            assert_eq!(
                plan.code,
                1,
                "terraform {}: {c:?} must fail the plan:\n{}",
                tf.version,
                plan.text()
            );
            assert!(
                plan.shows(expected),
                "{c:?}: expected {expected:?} in:\n{}",
                plan.text()
            );
        }
        wd.set_config(&config(&change(&open, Some("oncall"), Some(&fresh))));
        let plan = wd.plan_detailed();
        assert_eq!(
            plan.code,
            2,
            "a gated change that passes plans normally:\n{}",
            plan.text()
        );
        // A backup taken under another prefix is found by its id alone (as the drill finds it),
        // without repeating the prefix in backup_prefix.
        let elsewhere = format!("gate-elsewhere-{suffix}-{}", tf_tag(&tf));
        put_manifest_under(
            &format!("backups/gates-{suffix}/"),
            &elsewhere,
            now - chrono::Duration::minutes(10),
        );
        wd.set_config(&config(&change(&open, Some("oncall"), Some(&elsewhere))));
        let plan = wd.plan_detailed();
        assert_eq!(
            plan.code,
            2,
            "a backup under another prefix passes the gate:\n{}",
            plan.text()
        );

        // Checked again at apply: a saved plan made while its backup was fresh is refused once
        // the backup no longer is, and nothing is deployed.
        let late = format!("gate-late-{suffix}-{}", tf_tag(&tf));
        put_manifest(&late, now - chrono::Duration::minutes(10));
        wd.set_config(&config(&change(&open, Some("oncall"), Some(&late))));
        let plan = wd.run(&["plan", "-out=tfplan", "-input=false", "-no-color"]);
        assert_eq!(plan.code, 0, "{}", plan.text());
        put_manifest(&late, now - chrono::Duration::hours(30));
        let apply = wd.run(&["apply", "-input=false", "-no-color", "tfplan"]);
        assert_eq!(
            apply.code,
            1,
            "the stale backup must stop the apply:\n{}",
            apply.text()
        );
        assert!(
            apply.shows("a production release needs one younger than"),
            "{}",
            apply.text()
        );
        let current = std::path::Path::new(&fleet.deploy_dir).join("current");
        assert!(
            std::fs::symlink_metadata(&current).is_err(),
            "nothing was deployed"
        );
        let list = wd.run(&["state", "list"]);
        assert!(
            !list.stdout.contains("artifortress_release"),
            "nothing in state: {}",
            list.stdout
        );
    }
}

#[test]
fn release_rehearses_the_rollback_and_watches_the_rollout() {
    for tf in terraforms() {
        let fleet = Fleet {
            hosts: vec![
                ("api-1".into(), dev_host("host-1"), vec!["api"]),
                ("api-2".into(), dev_host("host-2"), vec!["api"]),
            ],
            deploy_dir: format!("/opt/artifortress/watch-{}", tf_tag(&tf)),
            api_port: free_port(),
            local: false,
            faults: true,
        };
        fleet.reset();
        let strategy = r#"strategy = { health_timeout = "15s", poll_interval = "100ms" }"#;
        // Readiness only: the dev environment's shared backlog (other tests write to it) must
        // not decide this test's watch window.
        let wd = Workdir::new(&tf, &fleet.config("v1", strategy))
            .without_env("ARTIFORTRESS_ADMIN_TOKEN");
        wd.apply_ok();

        // D2: v2 with a rollback rehearsal: v2, back to v1, forward to v2 again.
        wd.set_config(&fleet.config("v2", &format!("{strategy}\n  rehearse_rollback = true")));
        wd.apply_ok();
        let s = state(&wd);
        assert!(s["rehearsed_at"].is_string(), "rehearsed_at is set: {s}");
        assert_eq!(s["version"], "v2");
        let (starts, log) = api_start_history(&fleet.hosts[0].1, &fleet.deploy_dir);
        assert_eq!(
            starts,
            ["v1", "v2", "v1", "v2"],
            "api-1 start history:\n{log}"
        );

        // D5: the watch window rolls back when a host stays not_ready too long.
        let watch = format!(
            "{strategy}\n  rehearse_rollback = true\n  watch = {{ duration = \"40s\", max_not_ready = \"2s\" }}"
        );
        wd.set_config(&fleet.config("v1", &watch));
        let child = wd.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = fleet
                .hosts
                .iter()
                .all(|(_, h, _)| live_version(h, &fleet.deploy_dir) == "v1")
                && fleet
                    .apis()
                    .iter()
                    .all(|(_, u)| readiness(u).as_deref() == Some("ready"));
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the rollout to v1 never finished"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The rollout has finished (the last host needs 3 ready probes 100 ms apart); the
        // watch window is running.
        std::thread::sleep(Duration::from_secs(2));
        put_faults(&fleet.apis()[0].1, r#"{"neverReady": true}"#);
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "the watch window must fail the apply:\n{text}"
        );
        assert!(shows(&text, "during the watch window"), "{text}");
        assert!(shows(&text, "rolled back to v2"), "{text}");
        let s = state(&wd);
        assert_eq!(s["version"], "v2", "{s}");
        assert_eq!(s["last_failure"]["phase"], "watch");
        assert_eq!(s["last_failure"]["host"], "api-1");
        for (name, h, _) in &fleet.hosts {
            assert_eq!(live_version(h, &fleet.deploy_dir), "v2", "{name}");
        }
        for (name, url) in fleet.apis() {
            assert_eq!(
                readiness(&url).as_deref(),
                Some("ready"),
                "{name} ready on v2 again"
            );
        }
        wd.set_config(&fleet.config("v2", &watch));
        wd.assert_plan_empty();
        wd.destroy_ok();
    }
}

/// The state's env fingerprints are keyed with a key that lives only on the hosts (issue 15):
/// no plain sha256 of an env file in state, a hand edit still drift. A host whose deploy dir
/// was wiped (a rebuilt VM) is drift the plan shows, the apply deploys it again, and a destroy
/// of a wiped host succeeds with a warning instead of running `releases//bin/...`. A state from
/// schema version 0 (plain checksums, no key on the hosts) is keyed by its first refresh.
#[test]
fn release_keys_env_fingerprints_and_handles_wiped_hosts() {
    for tf in terraforms() {
        let fleet = shared_fleet("keyed", &tf);
        let strategy =
            r#"strategy = { max_parallel = 3, health_timeout = "10s", poll_interval = "100ms" }"#;
        let wd = Workdir::new(&tf, &fleet.config("v1", strategy));
        wd.apply_ok();
        let key_path = format!("{}/shared/env-fingerprint.key", fleet.deploy_dir);
        let plain = |h: &DevHost, role: &str| -> String {
            let (code, out) = ssh(
                h,
                &format!("sha256sum < {}/shared/{role}.env", fleet.deploy_dir),
            );
            assert_eq!(code, 0, "{out}");
            out.split_whitespace().next().unwrap().to_string()
        };
        let mut keys = Vec::new();
        for (name, h, _) in &fleet.hosts {
            let (code, out) = ssh(h, &format!("stat -c %a {key_path} && cat {key_path}"));
            assert_eq!(code, 0, "{name}: the key file exists: {out}");
            let mut lines = out.lines();
            assert_eq!(lines.next(), Some("600"), "{name}: key file mode");
            keys.push(lines.next().unwrap().to_string());
        }
        assert!(
            keys.iter().all(|k| k == &keys[0] && k.len() == 64),
            "one key for the deployment: {keys:?}"
        );
        let api_plain = plain(&fleet.hosts[0].1, "api");
        let worker_plain = plain(&fleet.hosts[2].1, "worker");
        let state_text = std::fs::read_to_string(wd.file("terraform.tfstate")).unwrap();
        for (what, p) in [("api", &api_plain), ("worker", &worker_plain)] {
            assert!(
                !state_text.contains(p.as_str()),
                "the plain sha256 of the {what} env file is in the state"
            );
            assert!(!state_text.contains(&keys[0]), "the key is in the state");
        }
        let s = state(&wd);
        // The API's env differs per host (ASPNETCORE_URLS = http://{{address}}:...): one keyed
        // fingerprint per host.
        let keyed = s["env_sha256"]["api"].as_str().unwrap().to_string();
        let entries: Vec<&str> = keyed
            .strip_prefix("per-host:")
            .unwrap_or_else(|| panic!("{s}"))
            .split(',')
            .collect();
        assert_eq!(entries.len(), 2, "{s}");
        assert!(
            entries
                .iter()
                .all(|e| e.split_once('=').unwrap().1.len() == 64),
            "{s}"
        );
        assert!(!keyed.contains(&api_plain));

        // A hand edit is still drift, named per host, without a checksum.
        ssh(
            &fleet.hosts[1].1,
            &format!("echo EXTRA=1 >> {}/shared/api.env", fleet.deploy_dir),
        );
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "env drift must be a change:\n{}", plan.text());
        assert!(plan.shows("drifted: api-2=changed"), "{}", plan.text());
        wd.apply_ok();

        // api-2 rebuilt: its deploy dir is gone (processes stopped, files removed).
        let wipe = |h: &DevHost| {
            let (code, out) = ssh(h, &reset_command(&fleet.deploy_dir));
            assert_eq!(code, 0, "wipe: {out}");
        };
        wipe(&fleet.hosts[1].1);
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "a wiped host is drift:\n{}", plan.text());
        assert!(plan.shows("drifted: api-2=none"), "{}", plan.text());
        wd.apply_ok();
        assert_eq!(live_version(&fleet.hosts[1].1, &fleet.deploy_dir), "v1");
        let s = state(&wd);
        assert_eq!(s["env_sha256"]["api"], keyed, "the same key and env: {s}");

        // A state written by schema version 0: plain checksums, no key on the hosts. The first
        // refresh writes the key and keys the values; nothing is deployed.
        let state_file = wd.file("terraform.tfstate");
        let mut old: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
        let inst = &mut old["resources"][0]["instances"][0];
        inst["schema_version"] = 0.into();
        // Version 0 had no env templates: the worker's env (the same on every host) is the
        // legacy value; the API's, templated per host, keeps its keyed value, and the worker host
        // loses its key (a host deployed before keyed fingerprints).
        let worker_keyed = s["env_sha256"]["worker"].as_str().unwrap().to_string();
        inst["attributes"]["env_sha256"] =
            serde_json::json!({"api": keyed, "worker": worker_plain});
        old["serial"] = (old["serial"].as_u64().unwrap() + 1).into();
        std::fs::write(&state_file, serde_json::to_string_pretty(&old).unwrap()).unwrap();
        ssh(&fleet.hosts[2].1, &format!("rm -f {key_path}"));
        let run = wd.run(&[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ]);
        assert_eq!(run.code, 0, "refresh of a version 0 state:\n{}", run.text());
        let state_text = std::fs::read_to_string(&state_file).unwrap();
        assert!(
            !state_text.contains(&api_plain) && !state_text.contains(&worker_plain),
            "the upgraded state still holds a plain env checksum:\n{state_text}"
        );
        let s = state(&wd);
        assert_eq!(
            s["env_sha256"]["worker"].as_str().unwrap(),
            worker_keyed,
            "keyed after the refresh, with the deployment's key: {s}"
        );
        assert_eq!(s["env_sha256"]["api"].as_str().unwrap(), keyed, "{s}");
        let (code, out) = ssh(&fleet.hosts[2].1, &format!("cat {key_path}"));
        assert_eq!(
            (code, out.trim()),
            (0, keys[0].as_str()),
            "the key was written to the host that had none"
        );
        assert_eq!(s["revision"], 3, "nothing was deployed: {s}");
        wd.assert_plan_empty();

        // Destroy with a wiped host: the others are stopped, api-2 has nothing to stop.
        wipe(&fleet.hosts[1].1);
        let run = wd.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        assert_eq!(run.code, 0, "destroy with a wiped host:\n{}", run.text());
        assert!(run.shows("Nothing to stop on api-2"), "{}", run.text());
        assert!(
            !run.text().contains("releases//"),
            "a command built from an empty version ran:\n{}",
            run.text()
        );
        for (name, url) in fleet.apis() {
            assert_ne!(readiness(&url).as_deref(), Some("ready"), "{name} stopped");
        }
    }
}

/// A database of its own on the dev PostgreSQL (dropped first when an earlier run left it).
fn own_database(name: &str) -> String {
    let admin = required_env("ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL");
    super::harness::psql(
        &admin,
        &format!("drop database if exists {name} with (force)"),
    );
    super::harness::psql(&admin, &format!("create database {name}"));
    super::harness::with_database(&admin, name)
}

/// Issue 17 part 4: no rollback puts binaries older than an applied class C (contract) migration
/// back in service (the service's docs/41-migration-compatibility-policy.md, "Rollback Policy":
/// application-only rollback only while the schema stays backward compatible; else restore,
/// docs/25-upgrade-rollback-runbook.md, "Rollback Procedure"). v1 runs against 0001; v2 comes
/// with the contract migration 0002: its rehearsal would run v1 against 0002, so it is not done
/// and the apply fails naming the migration and the restore path, with v2 live in the state.
/// Then `broken` comes with the contract migration 0003: api-1 never becomes ready, and its
/// automatic rollback to v2 (deployed against 0002) is refused too: api-1 stays on `broken`, and
/// the state says so.
#[test]
fn release_never_rolls_back_past_a_contract_migration() {
    for tf in terraforms() {
        let fleet = shared_fleet("contract", &tf);
        let db = own_database(&format!("release_contract_{}", tf_tag(&tf)));
        let dir = tempfile::Builder::new()
            .prefix("af-rel-mig-")
            .tempdir()
            .unwrap();
        let write = |name: &str, sql: &str| std::fs::write(dir.path().join(name), sql).unwrap();
        write(
            "0001_expand.sql",
            "-- artifortress:class A\ncreate table rel_t (id int, old_col text);\n",
        );
        let strategy =
            r#"strategy = { max_parallel = 1, health_timeout = "10s", poll_interval = "100ms" }"#;
        let config = |version: &str, extra: &str| {
            format!(
                r#"{provider}
resource "artifortress_migration" "db" {{
  dir            = {dir}
  allow_contract = true
}}
{release}"#,
                provider = fleet.provider(&format!("database_url = {}", hcl(&db))),
                dir = hcl(&dir.path().to_string_lossy()),
                release = fleet.resource(
                    version,
                    &format!(
                        "{strategy}\n  requires_schema = artifortress_migration.db.head\n  schema_classes  = artifortress_migration.db.applied_classes\n  {extra}"
                    )
                ),
            )
        };
        let wd = Workdir::new(&tf, &config("v1", ""));
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(
            s["deployed_schemas"],
            serde_json::json!({"v1": "0001_expand.sql"})
        );

        // v2 with the contract migration 0002 and a rehearsal.
        write(
            "0002_contract.sql",
            "-- artifortress:class C\nalter table rel_t drop column old_col;\n",
        );
        wd.set_config(&config("v2", "rehearse_rollback = true"));
        let run = wd.apply();
        assert_ne!(
            run.code,
            0,
            "the rehearsal must fail the apply:\n{}",
            run.text()
        );
        let text = run.text();
        for needle in [
            "Rollback rehearsal not done on api-1",
            "v1 is not put back in service",
            "0002_contract.sql",
            "docs/25-upgrade-rollback-runbook.md",
            "pre-release backup",
        ] {
            assert!(shows(&text, needle), "{needle:?} missing:\n{text}");
        }
        let s = state(&wd);
        assert_eq!(s["version"], "v2", "v2 is live: {s}");
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "v2", "api-2": "v2", "worker-1": "v2"})
        );
        assert!(s["rehearsed_at"].is_null(), "no rehearsal happened: {s}");
        assert_eq!(
            s["deployed_schemas"],
            serde_json::json!({"v1": "0001_expand.sql", "v2": "0002_contract.sql"})
        );
        for (name, h, _) in &fleet.hosts {
            assert_eq!(live_version(h, &fleet.deploy_dir), "v2", "{name}");
        }
        let (starts, log) = api_start_history(&fleet.hosts[0].1, &fleet.deploy_dir);
        assert_eq!(starts, ["v1", "v2"], "v1 never ran again on api-1:\n{log}");
        // What is live is what the state says: nothing to do.
        wd.assert_plan_empty();

        // broken with the contract migration 0003: api-1 fails and stays on broken.
        write(
            "0003_contract.sql",
            "-- artifortress:class C\nalter table rel_t alter column id set not null;\n",
        );
        wd.set_config(&config("broken", ""));
        let run = wd.apply();
        assert_ne!(run.code, 0, "applying broken must fail:\n{}", run.text());
        let text = run.text();
        for needle in [
            "Release broken failed on api-1 (ready)",
            "Rollback of api-1 refused",
            "v2 is not put back in service",
            "0003_contract.sql",
            "api-1 stays on broken",
        ] {
            assert!(shows(&text, needle), "{needle:?} missing:\n{text}");
        }
        let s = state(&wd);
        assert_eq!(
            s["host_versions"],
            serde_json::json!({"api-1": "broken", "api-2": "v2", "worker-1": "v2"}),
            "{s}"
        );
        assert_eq!(s["last_failure"]["version"], "broken");
        assert_eq!(live_version(&fleet.hosts[0].1, &fleet.deploy_dir), "broken");
        assert_eq!(live_version(&fleet.hosts[1].1, &fleet.deploy_dir), "v2");
        let (starts, log) = api_start_history(&fleet.hosts[0].1, &fleet.deploy_dir);
        assert_eq!(
            starts,
            ["v1", "v2", "broken"],
            "v2 was not restarted on api-1:\n{log}"
        );
    }
}

/// The times a role's processes started on a host, from the control script's
/// `=== <time> starting <role> <version>` log lines (`log`: `api`, `worker`, `worker-2`, ...).
fn starts(
    h: &DevHost,
    deploy_dir: &str,
    log: &str,
) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
    let (_, text) = ssh(h, &format!("cat {deploy_dir}/run/{log}.log 2>/dev/null"));
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("=== ")?;
            let (at, what) = rest.split_once(" starting ")?;
            let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
            Some((at.into(), what.split_whitespace().last()?.to_string()))
        })
        .collect()
}

/// Issue 17 part 5: every API host switched and ready before any worker host is switched,
/// whatever `max_parallel` is (the service's docs/29-deployment-howto-production.md, "Deployment
/// Sequence" steps 4-6: start the API instances, verify health, then the workers); and a worker
/// host runs `worker_processes` processes (docs/27, docs/31: workers scale by process count).
/// With max_parallel = 3 every host is in one batch; each API needs 5 ready probes 300 ms apart,
/// so a worker started with its APIs would start within milliseconds of them, and one started
/// after they were ready starts at least 1.2 s after the last API started.
#[test]
fn release_switches_workers_after_the_apis_and_runs_n_worker_processes() {
    for tf in terraforms() {
        let fleet = shared_fleet("order", &tf);
        let strategy = r#"strategy = { max_parallel = 3, consecutive_ready = 5, health_timeout = "20s", poll_interval = "300ms" }"#;
        let config = |version: &str, processes: u32| {
            fleet
                .config(
                    version,
                    &format!("{strategy}\n  worker_processes = {processes}"),
                )
                .replace(
                    "artifortress restart worker\"",
                    "artifortress restart worker {{instance}}\"",
                )
                .replace(
                    "artifortress status worker\"",
                    "artifortress status worker {{instance}}\"",
                )
                .replace(
                    "artifortress stop worker\"",
                    "artifortress stop worker {{instance}}\"",
                )
        };
        let worker = &fleet.hosts[2].1;
        let status = |i: u32| {
            let (code, out) = ssh(
                worker,
                &format!(
                    "{}/current/bin/artifortress status worker {i}",
                    fleet.deploy_dir
                ),
            );
            (code, out.trim().to_string())
        };
        let wd = Workdir::new(&tf, &config("v1", 3));
        for version in ["v1", "v2"] {
            wd.set_config(&config(version, 3));
            wd.apply_ok();
            let last_api_start = fleet.hosts[..2]
                .iter()
                .map(|(name, h, _)| {
                    let s = starts(h, &fleet.deploy_dir, "api");
                    s.iter()
                        .rev()
                        .find(|(_, v)| v == version)
                        .unwrap_or_else(|| panic!("{name}: no start of api {version}: {s:?}"))
                        .0
                })
                .max()
                .unwrap();
            let mut pids = Vec::new();
            for i in 1..=3u32 {
                let log = if i == 1 {
                    "worker".to_string()
                } else {
                    format!("worker-{i}")
                };
                let s = starts(worker, &fleet.deploy_dir, &log);
                let (at, _) = s
                    .iter()
                    .rev()
                    .find(|(_, v)| v == version)
                    .unwrap_or_else(|| panic!("no start of worker {i} {version}: {s:?}"));
                let after = *at - last_api_start;
                assert!(
                    after >= chrono::Duration::milliseconds(1200),
                    "terraform {}: worker process {i} ({version}) started {after} after the last API; every API must be ready first",
                    tf.version
                );
                let (code, out) = status(i);
                assert_eq!(code, 0, "worker process {i}: {out}");
                assert!(out.starts_with(&format!("running {version} pid ")), "{out}");
                pids.push(out.rsplit(' ').next().unwrap().to_string());
            }
            pids.sort();
            pids.dedup();
            assert_eq!(pids.len(), 3, "three worker processes: {pids:?}");
        }

        // Fewer processes: the ones above the new count are stopped.
        wd.set_config(&config("v2", 1));
        wd.apply_ok();
        assert_eq!(status(1).0, 0, "{:?}", status(1));
        for i in [2, 3] {
            assert_eq!(status(i), (3, "stopped".to_string()), "worker process {i}");
        }
    }
}

/// Issue 17 part 7: `smoke = true` runs the service's minimal smoke flow (its
/// docs/29-deployment-howto-production.md step 8: auth, repository read, draft/publish happy
/// path) on every API host once it is ready. v1 passes it: one published scratch repository per
/// API host in the service's database. v2 comes with an API env whose database is an empty one
/// (ready: `select 1` answers, Program.fs:2371) where the provider's admin token means nothing:
/// the smoke flow fails at `whoami`, which counts as a failed readiness wait, so the hosts go
/// back to v1 and the apply fails naming the step.
#[test]
fn release_runs_the_smoke_flow_after_readiness_and_rolls_back_when_it_fails() {
    for tf in terraforms() {
        let fleet = shared_fleet("smoke", &tf);
        let service_db = required_env("ARTIFORTRESS_DATABASE_URL");
        let smoke_repos = || {
            super::harness::psql(
                &service_db,
                "select count(*) from repos where repo_key like 'smoke-%'",
            )
            .trim()
            .parse::<u64>()
            .unwrap()
        };
        let strategy =
            r#"strategy = { max_parallel = 1, health_timeout = "10s", poll_interval = "100ms" }"#;
        let extra = format!("{strategy}\n  smoke = true");
        let before = smoke_repos();
        let wd = Workdir::new(&tf, &fleet.config("v1", &extra));
        wd.apply_ok();
        assert_eq!(
            smoke_repos(),
            before + 2,
            "one smoke repository per API host (api-1, api-2)"
        );

        let empty = own_database(&format!("release_smoke_{}", tf_tag(&tf)));
        let db_line = format!(
            "    ConnectionStrings__Postgres = {}\n",
            hcl(&npgsql(&service_db))
        );
        let v2 = fleet.config("v2", &extra);
        assert!(v2.contains(&db_line), "{v2}");
        wd.set_config(&v2.replacen(
            &db_line,
            &format!(
                "    ConnectionStrings__Postgres = {}\n",
                hcl(&npgsql(&empty))
            ),
            1,
        ));
        let run = wd.apply();
        assert_ne!(run.code, 0, "the smoke failure must fail the apply");
        let text = run.text();
        for needle in ["smoke flow failed at step \"whoami\"", "api-1"] {
            assert!(shows(&text, needle), "{needle:?} missing:\n{text}");
        }
        for (name, h, _) in &fleet.hosts {
            assert_eq!(live_version(h, &fleet.deploy_dir), "v1", "{name}");
        }
        let s = state(&wd);
        assert_eq!(s["deployed_version"], "v1", "{s}");
    }
}

/// `moved { from = terraform_data.deploy, to = artifortress_release.r }` is refused (a
/// terraform_data records no hosts, dir or artifact: `resources/release/moved.rs`) with the
/// `removed` + `import` blocks to use instead, and the state is left as it was; following the
/// advice without `import` (nothing in the provider's layout yet) forgets the terraform_data
/// without running its destroy-time provisioner and creates the release; the next plan is empty.
#[test]
fn release_refuses_a_move_from_terraform_data_and_its_advice_works() {
    for tf in terraforms() {
        let dir = tempfile::Builder::new()
            .prefix("af-release-moved-")
            .tempdir()
            .unwrap();
        let deploy_dir = dir.path().join("deploy").display().to_string();
        let marker = dir.path().join("destroy-provisioner-ran");
        let fleet = Fleet {
            hosts: vec![(
                "box".into(),
                DevHost {
                    address: "127.0.0.1".into(),
                    port: 22,
                },
                vec!["api", "worker"],
            )],
            deploy_dir: deploy_dir.clone(),
            api_port: free_port(),
            local: true,
            faults: false,
        };
        // What users come from: a remote-exec deployment (here local-exec) with a destroy-time
        // provisioner that must not run when they switch.
        let old = format!(
            r#"
resource "terraform_data" "deploy" {{
  input = "v1"
  provisioner "local-exec" {{
    when    = destroy
    command = "touch {marker}"
  }}
}}
"#,
            marker = marker.display()
        );
        let wd = Workdir::new(&tf, &old);
        wd.apply_ok();

        let release = format!(
            "provider \"artifortress\" {{}}\n{}",
            fleet.resource("v1", "")
        );
        wd.set_config(&format!(
            "{release}\nmoved {{\n  from = terraform_data.deploy\n  to   = artifortress_release.r\n}}\n"
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        for needle in [
            "Cannot move terraform_data to artifortress_release",
            "A terraform_data records no hosts, deploy directory, transport or artifact",
            "from = terraform_data.NAME",
            "destroy = false",
            "to = artifortress_release.NAME",
            "[local:]<deploy_dir>,<host>=<address>[:<port>][/<role>+<role>],...",
        ] {
            assert!(
                plan.shows(needle),
                "terraform {}: {needle:?} not in:\n{}",
                tf.version,
                plan.text()
            );
        }
        let list = wd.run(&["state", "list"]);
        assert_eq!(
            list.stdout.trim(),
            "terraform_data.deploy",
            "{}",
            list.text()
        );

        // The advice, without `import`: forgotten (not destroyed), the release created.
        wd.set_config(&format!(
            "{release}\nremoved {{\n  from = terraform_data.deploy\n  lifecycle {{\n    destroy = false\n  }}\n}}\n"
        ));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "{}", plan.text());
        assert!(
            plan.shows("terraform_data.deploy will no longer be managed by Terraform"),
            "{}",
            plan.text()
        );
        assert!(
            plan.shows("artifortress_release.r will be created"),
            "{}",
            plan.text()
        );
        wd.apply_ok();
        assert!(!marker.exists(), "the destroy-time provisioner ran");
        let list = wd.run(&["state", "list"]);
        assert_eq!(
            list.stdout.trim(),
            "artifortress_release.r",
            "{}",
            list.text()
        );
        assert_eq!(
            state(&wd)["host_versions"],
            serde_json::json!({"box": "v1"})
        );
        wd.destroy_ok();
    }
}

/// `action_trigger` on a release (Terraform >= 1.14): `artifortress_take_backup` runs
/// `before_update` of the release, not on its create, and the rollout follows the backup.
/// Local transport: no deploy hosts needed.
#[test]
fn release_takes_a_backup_before_an_update_through_an_action_trigger() {
    for tf in crate::actions::with_actions() {
        let dir = tempfile::Builder::new()
            .prefix("af-release-action-")
            .tempdir()
            .unwrap();
        let fleet = Fleet {
            hosts: vec![(
                "box".into(),
                DevHost {
                    address: "127.0.0.1".into(),
                    port: 22,
                },
                vec!["api", "worker"],
            )],
            deploy_dir: dir.path().join("deploy").display().to_string(),
            api_port: free_port(),
            local: true,
            faults: false,
        };
        let prefix = format!(
            "actions/release-trigger/{}-{:08x}/",
            tf_tag(&tf),
            rand::random::<u32>()
        );
        let config_with = |version: &str, pg_dump: &str| {
            format!(
                r#"
provider "artifortress" {{}}

action "artifortress_take_backup" "pre_release" {{
  config {{
    prefix       = "{prefix}"
    labels       = {{ next_release = "{version}" }}
    pg_dump_path = "{pg_dump}"
  }}
}}
{}"#,
                fleet.resource(
                    version,
                    "lifecycle {\n    action_trigger {\n      events  = [before_update]\n      actions = [action.artifortress_take_backup.pre_release]\n    }\n  }"
                )
            )
        };
        let config = |version: &str| config_with(version, "pg_dump");
        let manifests = || -> Vec<String> {
            let s3 = dev_s3_client();
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                s3.list_objects_v2()
                    .bucket(required_env("ARTIFORTRESS_S3_BUCKET"))
                    .prefix(&prefix)
                    .send()
                    .await
                    .unwrap()
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string))
                    .filter(|k| k.ends_with(".manifest.json"))
                    .collect()
            })
        };
        let wd = Workdir::new(&tf, &config("v1"));
        wd.apply_ok();
        assert!(
            manifests().is_empty(),
            "terraform {}: a create is not an update",
            tf.version
        );
        wd.set_config(&config("v2"));
        let run = wd.apply_ok();
        let trigger = "Action action.artifortress_take_backup.pre_release (triggered by artifortress_release.r)";
        assert!(
            run.stdout.contains(&format!("{trigger}: backup ")),
            "terraform {}:\n{}",
            tf.version,
            run.stdout
        );
        let backed_up = run
            .stdout
            .find("Action complete: action.artifortress_take_backup.pre_release")
            .unwrap();
        let modifying = run
            .stdout
            .find("artifortress_release.r: Modifying")
            .unwrap();
        assert!(
            backed_up < modifying,
            "terraform {}: backup first:\n{}",
            tf.version,
            run.stdout
        );
        assert_eq!(manifests().len(), 1, "terraform {}", tf.version);
        assert_eq!(
            state(&wd)["host_versions"],
            serde_json::json!({"box": "v2"})
        );
        // A failed backup stops the apply before the release is touched.
        wd.set_config(&config_with("v1", "/nonexistent/pg_dump"));
        let run = wd.apply();
        assert_eq!(run.code, 1, "terraform {}:\n{}", tf.version, run.text());
        assert!(
            run.shows("Backup failed") && run.shows("/nonexistent/pg_dump"),
            "terraform {}:\n{}",
            tf.version,
            run.text()
        );
        assert!(
            !run.stdout.contains("artifortress_release.r: Modifying"),
            "terraform {}:\n{}",
            tf.version,
            run.stdout
        );
        assert_eq!(
            state(&wd)["host_versions"],
            serde_json::json!({"box": "v2"})
        );
        assert_eq!(manifests().len(), 1, "terraform {}", tf.version);
        wd.set_config(&config("v2"));
        wd.destroy_ok();
    }
}

/// `action "artifortress_rollback_release"` (Terraform >= 1.14) configured with the release's
/// own attributes: refused while the previous release is older than an applied class C
/// migration (naming it and the restore path, nothing touched); then the hosts go back to v1,
/// a refresh shows the drift, the next plan deploys v2 again, and after it the plan is empty.
#[test]
fn rollback_release_action_goes_back_then_the_plan_redeploys() {
    for tf in crate::actions::with_actions() {
        let dir = tempfile::Builder::new()
            .prefix("af-rollback-action-")
            .tempdir()
            .unwrap();
        let deploy_dir = dir.path().join("deploy").display().to_string();
        let fleet = Fleet {
            hosts: vec![(
                "box".into(),
                DevHost {
                    address: "127.0.0.1".into(),
                    port: 22,
                },
                vec!["api", "worker"],
            )],
            deploy_dir: deploy_dir.clone(),
            api_port: free_port(),
            local: true,
            faults: false,
        };
        let action = |classes: &str| {
            format!(
                r#"
action "artifortress_rollback_release" "back" {{
  config {{
    deploy_dir       = artifortress_release.r.deploy_dir
    transport        = artifortress_release.r.transport
    hosts            = artifortress_release.r.hosts
    commands         = artifortress_release.r.commands
    strategy         = artifortress_release.r.strategy
    deployed_schemas = artifortress_release.r.deployed_schemas
    schema_head      = artifortress_release.r.requires_schema
    schema_classes   = {{ "0001_core.sql" = "A", "0002_auth_and_audit.sql" = "{classes}", "0003_outbox_and_jobs.sql" = "A" }}
  }}
}}
"#
            )
        };
        let config = |version: &str, schema: &str, classes: &str| {
            format!(
                "{}{}",
                fleet.config(version, &format!("requires_schema = {}", hcl(schema))),
                action(classes)
            )
        };
        let live = || {
            std::fs::read_link(format!("{deploy_dir}/current"))
                .unwrap()
                .display()
                .to_string()
        };
        let invoke = |wd: &Workdir| {
            wd.run(&[
                "apply",
                "-invoke=action.artifortress_rollback_release.back",
                "-auto-approve",
                "-input=false",
                "-no-color",
            ])
        };
        let wd = Workdir::new(&tf, &config("v1", "0001_core.sql", "C"));
        wd.apply_ok();
        wd.set_config(&config("v2", "0003_outbox_and_jobs.sql", "C"));
        wd.apply_ok();
        assert!(live().ends_with("releases/v2"), "{}", live());
        assert_eq!(
            state(&wd)["deployed_schemas"],
            serde_json::json!({"v1": "0001_core.sql", "v2": "0003_outbox_and_jobs.sql"})
        );
        let url = fleet.apis()[0].1.clone();

        // v1 ran against 0001; 0002 is a contract migration applied since: refused.
        let refused = invoke(&wd);
        assert_ne!(refused.code, 0, "{}", refused.text());
        assert!(
            refused.shows("Rollback of box refused"),
            "{}",
            refused.text()
        );
        assert!(
            refused.shows("class C (contract) migration 0002_auth_and_audit.sql"),
            "{}",
            refused.text()
        );
        assert!(
            refused.shows("docs/25-upgrade-rollback-runbook.md"),
            "{}",
            refused.text()
        );
        assert!(live().ends_with("releases/v2"), "{}", live());

        // 0002 not a contract migration. With v1's release directory gone, the switch back
        // fails: the host is put back on v2 (ready) and the invocation fails naming it.
        wd.set_config(&config("v2", "0003_outbox_and_jobs.sql", "B"));
        let (v1, away) = (
            format!("{deploy_dir}/releases/v1"),
            format!("{deploy_dir}/v1.away"),
        );
        std::fs::rename(&v1, &away).unwrap();
        let failed = invoke(&wd);
        assert_ne!(failed.code, 0, "{}", failed.text());
        assert!(failed.shows("Rollback failed on box"), "{}", failed.text());
        assert!(failed.shows("box: put back on v2"), "{}", failed.text());
        assert!(live().ends_with("releases/v2"), "{}", live());
        assert_eq!(readiness(&url).as_deref(), Some("ready"));
        std::fs::rename(&away, &v1).unwrap();

        // Back to v1, each step a progress event.
        let run = invoke(&wd);
        assert_eq!(run.code, 0, "terraform {}:\n{}", tf.version, run.text());
        for step in [
            "host(s) locked",
            "box: v2 → v1",
            "box: on v1, ready",
            "rolled back: box=v1",
        ] {
            assert!(run.shows(step), "{step:?} not shown:\n{}", run.text());
        }
        assert!(
            run.shows("the next plan deploys the configured version again"),
            "{}",
            run.text()
        );
        assert!(live().ends_with("releases/v1"), "{}", live());
        assert_eq!(readiness(&url).as_deref(), Some("ready"));
        let revisions = std::fs::read_to_string(format!("{deploy_dir}/revisions.log")).unwrap();
        assert!(
            revisions
                .lines()
                .last()
                .unwrap()
                .contains("version=v1 sha256="),
            "{revisions}"
        );
        assert!(revisions.contains("rollback-of=v2"), "{revisions}");

        // A refresh shows the drift; the plan proposes v2 again.
        let refresh = wd.run(&["plan", "-refresh-only", "-input=false", "-no-color"]);
        assert_eq!(refresh.code, 0, "{}", refresh.text());
        assert!(refresh.shows("drifted: box=v1"), "{}", refresh.text());
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "the plan must redeploy v2:\n{}", plan.text());
        assert!(
            plan.shows("\"drifted: box=v1\" -> \"v2\""),
            "{}",
            plan.text()
        );
        wd.apply_ok();
        assert!(live().ends_with("releases/v2"), "{}", live());
        assert_eq!(readiness(&url).as_deref(), Some("ready"));
        wd.destroy_ok();
    }
}
