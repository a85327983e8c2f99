//! Run the `artifortress-testbed-api` binary as a child process.
//!
//! Integration tests of this package get the path with
//! `env!("CARGO_BIN_EXE_artifortress-testbed-api")`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Environment prefixes that are never inherited by the child (keeps tests hermetic).
const SCRUBBED_PREFIXES: &[&str] = &[
    "ASPNETCORE_",
    "ConnectionStrings__",
    "Auth__",
    "ObjectStorage__",
    "Worker__",
    "TESTBED_",
];

/// Remove the service's settings inherited from the test process's environment.
pub fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let ks = k.to_string_lossy();
        if SCRUBBED_PREFIXES.iter().any(|p| ks.starts_with(p)) {
            cmd.env_remove(&k);
        }
    }
}

/// `ConnectionStrings__Postgres`, `Auth__BootstrapToken`, `ASPNETCORE_ENVIRONMENT=Testing`
/// plus the given `ObjectStorage__*` settings.
pub fn api_env(
    npgsql_connection_string: &str,
    bootstrap_token: &str,
    object_storage: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut v = vec![
        (
            "ConnectionStrings__Postgres".to_string(),
            npgsql_connection_string.to_string(),
        ),
        (
            "Auth__BootstrapToken".to_string(),
            bootstrap_token.to_string(),
        ),
        ("ASPNETCORE_ENVIRONMENT".to_string(), "Testing".to_string()),
    ];
    v.extend(object_storage);
    v
}

/// `ObjectStorage__*` pointing at a closed port (for tests that do not care about S3).
pub fn unreachable_object_storage_env() -> Vec<(String, String)> {
    let port = super::free_port().unwrap_or(9);
    [
        (
            "ObjectStorage__Endpoint",
            format!("http://127.0.0.1:{port}"),
        ),
        (
            "ObjectStorage__AccessKey",
            "GK000000000000000000000000".into(),
        ),
        ("ObjectStorage__SecretKey", "0".repeat(64)),
        ("ObjectStorage__Bucket", "artifortress".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A running test bed API. Killed (SIGTERM, then SIGKILL) on drop.
pub struct TestbedApi {
    child: Option<Child>,
    url: String,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestbedApi {
    /// Start `bin` with `env` (plus `ASPNETCORE_URLS=http://127.0.0.1:0` unless given) and wait
    /// for its `Now listening on: URL` line (20 s max). Stderr goes to a log file, see
    /// [`TestbedApi::log`].
    pub fn start(bin: &Path, env: &[(String, String)]) -> Result<TestbedApi> {
        let dir = tempfile::Builder::new().prefix("af-api-").tempdir()?;
        let log_path = dir.path().join("api.log");
        let mut cmd = Command::new(bin);
        scrub_env(&mut cmd);
        cmd.env("ASPNETCORE_URLS", "http://127.0.0.1:0");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log_path)?);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("Now listening on: ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let mut api = TestbedApi {
            child: Some(child),
            url: String::new(),
            log_path,
            _dir: dir,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => api.url = url,
            Err(_) => {
                let status = api.stop().ok();
                bail!(
                    "test bed API did not report 'Now listening on:' (exit: {status:?}); log:\n{}",
                    api.log()
                );
            }
        }
        Ok(api)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the API logged to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut c = self.child.take().context("already stopped")?;
        super::send_signal(c.id(), libc::SIGTERM);
        if let Some(st) = super::wait_for(Duration::from_secs(10), || c.try_wait().ok().flatten()) {
            return Ok(st);
        }
        c.kill()?;
        Ok(c.wait()?)
    }
}

impl Drop for TestbedApi {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
