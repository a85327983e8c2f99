//! The dev environment's SSH deploy hosts (`scripts/dev-env up --hosts N`: each an sshd on
//! 127.0.0.K+1 in its own mount namespace, with its own `/opt/artifortress`), the test bed's
//! release tarballs, and the dev object storage, as the release tests use them.

use std::collections::BTreeMap;
use std::process::Command;

use super::harness::required_env;

/// A deploy host of the dev environment.
#[derive(Clone, Debug)]
pub struct DevHost {
    pub address: String,
    pub port: u16,
}

/// `host-K` from `ARTIFORTRESS_TEST_HOSTS`, or a panic saying how to start it.
pub fn dev_host(name: &str) -> DevHost {
    let json: serde_json::Value = serde_json::from_str(&required_env("ARTIFORTRESS_TEST_HOSTS"))
        .expect("ARTIFORTRESS_TEST_HOSTS is JSON");
    let h = &json[name];
    assert!(
        h.is_object(),
        "{name} is not running: the release tests need `scripts/dev-env up --hosts 4` (make test starts it)"
    );
    DevHost {
        address: h["address"].as_str().unwrap().to_string(),
        port: h["port"].as_u64().unwrap() as u16,
    }
}

/// The layout of the examples' deployments: `api-1` and `api-2` on host-1 and host-2,
/// `worker-1` on host-3 (name, host, role).
pub fn example_layout() -> [(&'static str, DevHost, &'static str); 3] {
    [
        ("api-1", dev_host("host-1"), "api"),
        ("api-2", dev_host("host-2"), "api"),
        ("worker-1", dev_host("host-3"), "worker"),
    ]
}

/// Runs a command on a dev host over OpenSSH (independently of the provider), as its login user
/// (`ARTIFORTRESS_SSH_USER`: `deploy`, not root): exit code and stdout + stderr.
pub fn ssh(h: &DevHost, cmd: &str) -> (i32, String) {
    let out = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            &format!(
                "UserKnownHostsFile={}",
                required_env("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE")
            ),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "-i",
            &required_env("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE"),
            "-p",
            &h.port.to_string(),
            &format!("{}@{}", required_env("ARTIFORTRESS_SSH_USER"), h.address),
            cmd,
        ])
        .output()
        .expect("ssh runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The shell command that stops what an earlier run left running in `deploy_dir` (from a release
/// of one archive, or of one archive per role: `current/<role>/bin/`) and removes it.
pub fn reset_command(deploy_dir: &str) -> String {
    let d = deploy_dir;
    format!(
        "for r in api worker; do for c in {d}/current/bin/artifortress {d}/current/$r/bin/artifortress; do [ -x $c ] && $c stop $r >/dev/null 2>&1; done; done; for f in {d}/run/worker-*.pid; do [ -f \"$f\" ] || continue; i=${{f##*/worker-}}; for c in {d}/current/bin/artifortress {d}/current/worker/bin/artifortress; do [ -x $c ] && $c stop worker ${{i%.pid}} >/dev/null 2>&1; done; done; rm -rf {d}"
    )
}

/// Leftovers of an earlier run of the same test (same `deploy_dir`) on these hosts are stopped
/// and removed.
pub fn reset(hosts: &[(&str, &DevHost)], deploy_dir: &str) {
    for (name, h) in hosts {
        let (code, out) = ssh(h, &reset_command(deploy_dir));
        assert_eq!(code, 0, "{name}: reset of {deploy_dir} failed: {out}");
    }
}

/// The release tarballs' directory and version (`v1`) → sha256, from its SHA256SUMS.
pub fn artifacts() -> (String, BTreeMap<String, String>) {
    let dir = required_env("ARTIFORTRESS_TEST_ARTIFACTS");
    let sums = std::fs::read_to_string(format!("{dir}/SHA256SUMS"))
        .expect("SHA256SUMS of ARTIFORTRESS_TEST_ARTIFACTS")
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            let (sha, file) = (p.next()?, p.next()?);
            let version = file
                .strip_prefix("artifortress-")?
                .strip_suffix(".tar.gz")?;
            Some((version.to_string(), sha.to_string()))
        })
        .collect();
    (dir, sums)
}

/// The versions the API on `h` was started with, oldest first, from the release control
/// script's log (`=== <time> starting api <version>` lines), and the log itself.
pub fn api_start_history(h: &DevHost, deploy_dir: &str) -> (Vec<String>, String) {
    let (_, log) = ssh(h, &format!("cat {deploy_dir}/run/api.log"));
    let starts = log
        .lines()
        .filter_map(|l| {
            l.strip_prefix("=== ")
                .and_then(|l| l.split_once(" starting api "))
                .map(|x| x.1.to_string())
        })
        .collect();
    (starts, log)
}

/// An S3 client for the dev environment's object storage.
pub fn dev_s3_client() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ))
        .endpoint_url(required_env("ARTIFORTRESS_S3_ENDPOINT"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            required_env("AWS_ACCESS_KEY_ID"),
            required_env("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
