//! A throw-away Garage (S3-compatible) server on free ports of 127.0.0.1, single node,
//! region `us-east-1`, path-style, with one key and one bucket. Stopped and removed on drop.
//!
//! The binary is `$ARTIFORTRESS_GARAGE_BIN`, else
//! `/root/.cache/artifortress-dev/garage-2.5.0/bin/garage`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::RngCore;

pub const DEFAULT_GARAGE_BIN: &str = "/root/.cache/artifortress-dev/garage-2.5.0/bin/garage";
pub const GARAGE_REGION: &str = "us-east-1";
pub const DEFAULT_BUCKET: &str = "artifortress";
const KEY_NAME: &str = "artifortress-test";

fn random_hex(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub struct GarageServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    bin: PathBuf,
    s3_port: u16,
    access_key: String,
    secret_key: String,
    bucket: String,
}

impl GarageServer {
    /// The garage binary to use, if it exists.
    pub fn binary() -> Option<PathBuf> {
        let p = std::env::var_os("ARTIFORTRESS_GARAGE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_GARAGE_BIN));
        p.is_file().then_some(p)
    }

    /// Start with a bucket named [`DEFAULT_BUCKET`].
    pub fn start() -> Result<GarageServer> {
        Self::start_with_bucket(DEFAULT_BUCKET)
    }

    /// Start (config, server, layout, key, bucket: ≈1 s).
    pub fn start_with_bucket(bucket: &str) -> Result<GarageServer> {
        let bin = Self::binary().with_context(|| {
            format!(
                "garage binary not found: set ARTIFORTRESS_GARAGE_BIN or install it at {DEFAULT_GARAGE_BIN}"
            )
        })?;
        let dir = tempfile::Builder::new().prefix("af-garage-").tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("meta"))?;
        std::fs::create_dir_all(d.join("data"))?;
        let (s3_port, rpc_port, admin_port) = (
            super::free_port()?,
            super::free_port()?,
            super::free_port()?,
        );
        let config = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
consistency_mode = "consistent"
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{GARAGE_REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin}"
"#,
            meta = d.join("meta").display(),
            data = d.join("data").display(),
            secret = random_hex(32),
            admin = random_hex(16),
        );
        let cfg_path = d.join("garage.toml");
        std::fs::write(&cfg_path, config)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o600))?;
        }
        let child = spawn_server(&bin, d)?;
        let mut g = GarageServer {
            dir,
            child: Some(child),
            bin,
            s3_port,
            access_key: format!("GK{}", random_hex(12)),
            secret_key: random_hex(32),
            bucket: bucket.to_string(),
        };
        g.bootstrap()
            .with_context(|| format!("garage bootstrap; log:\n{}", g.log()))?;
        Ok(g)
    }

    fn bootstrap(&mut self) -> Result<()> {
        let up = super::wait_for(Duration::from_secs(20), || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Some(Err(anyhow::anyhow!("garage server exited: {st}")));
            }
            self.cli(&["status"]).ok().map(|_| Ok(()))
        });
        match up {
            None => bail!("garage did not come up within 20 s"),
            Some(r) => r?,
        }
        let node = self.cli(&["node", "id", "-q"])?;
        let node = node
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        self.cli(&["layout", "apply", "--version", "1"])?;
        let (ak, sk) = (self.access_key.clone(), self.secret_key.clone());
        self.cli(&["key", "import", "--yes", "-n", KEY_NAME, &ak, &sk])?;
        self.cli(&["key", "allow", "--create-bucket", KEY_NAME])?;
        let bucket = self.bucket.clone();
        self.create_bucket(&bucket)?;
        Ok(())
    }

    /// Run the garage CLI against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .context("run garage cli")?;
        if !out.status.success() {
            bail!(
                "garage {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Create a bucket the test key may read, write and own.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        self.cli(&["bucket", "create", name])?;
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", KEY_NAME,
        ])?;
        Ok(())
    }

    /// Delete an (empty) bucket.
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        self.cli(&["bucket", "delete", "--yes", name])?;
        Ok(())
    }

    /// `http://127.0.0.1:PORT` (path-style S3 endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }
    pub fn region(&self) -> &'static str {
        GARAGE_REGION
    }
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }
    /// An S3 client for this server with its key (path-style).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region()))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                self.access_key(),
                self.secret_key(),
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `ObjectStorage__*` environment for the test bed API / the real service.
    pub fn object_storage_env(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("ObjectStorage__Endpoint", self.endpoint()),
            ("ObjectStorage__AccessKey", self.access_key.clone()),
            ("ObjectStorage__SecretKey", self.secret_key.clone()),
            ("ObjectStorage__Bucket", bucket.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL the server (a crash), keeping its data; see [`GarageServer::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the stopped or killed server again with the same data, ports and keys.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("garage is already running");
        }
        self.child = Some(spawn_server(&self.bin, self.dir.path())?);
        let up = super::wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.s3_port))
                .ok()
                .map(|_| ())
        });
        if up.is_none() {
            bail!(
                "garage did not listen again within 20 s; log:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// SIGTERM and wait (≈1.5 s), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::send_signal(c.id(), libc::SIGTERM);
            let done = super::wait_for(Duration::from_secs(10), || c.try_wait().ok().flatten());
            if done.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for GarageServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `garage -c DIR/garage.toml server`, logging to DIR/server.log (appending).
fn spawn_server(bin: &Path, dir: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    Command::new(bin)
        .arg("-c")
        .arg(dir.join("garage.toml"))
        .arg("server")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn garage server")
}
