//! The hosts client (`clients::hosts`) against real OpenSSH servers — throw-away `sshd`s on
//! 127.0.0.2 and 127.0.0.3, each in a temp dir with generated ed25519 host and client keys —
//! and against this machine (`LocalTransport`).
//!
//! Needs Debian's openssh-server (`apt-get install -y --no-install-recommends openssh-server`);
//! `scripts/install-deps` (run by `make test` and CI) installs it, and under CI (`CI` set) a
//! missing sshd fails the tests; elsewhere they are skipped with a message. The "hosts" share this
//! machine's filesystem, so every test works in temp dirs of its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use artifortress_provider::clients::hosts::{
    self, HostError, LocalTransport, LockRelease, PrivateKeyText, SshConfig, SshTransport,
    Timeouts, Transport,
};
use sha2::Digest;
use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
const T: Duration = Duration::from_secs(30);

fn sh(cmd: &str) -> String {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn q(p: &Path) -> String {
    hosts::shell_quote(&p.display().to_string())
}

fn keygen(path: &Path, comment: &str) {
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -C {comment} -f {}",
        q(path)
    ));
}

/// `SHA256:...` of a public key file, as ssh-keygen prints it.
fn fingerprint(pub_file: &Path) -> String {
    sh(&format!("ssh-keygen -lf {}", q(pub_file)))
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

fn sha256_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")))
}

/// A throw-away sshd, killed on drop.
struct Sshd {
    dir: TempDir,
    child: Child,
    address: String,
    port: u16,
}

impl Sshd {
    /// `None` (after saying so) when openssh-server is not installed.
    fn start(address: &str) -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{SSHD} not found: CI must run scripts/install-deps (it installs openssh-server)"
            );
            eprintln!(
                "SKIP: {SSHD} not found; install it with \
                 `apt-get install -y --no-install-recommends openssh-server`"
            );
            return None;
        }
        if !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))
                .expect("chmod /run/sshd");
        }
        let dir = tempfile::Builder::new()
            .prefix("hosts-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        keygen(&d.join("host_ed25519"), "host");
        keygen(&d.join("client_ed25519"), "client");
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).expect("copy");
        std::fs::set_permissions(
            d.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        for _ in 0..5 {
            let port = TcpListener::bind((address, 0))
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress {address}\nHostKey {d}/host_ed25519\n\
                     PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPrintMotd no\nLogLevel VERBOSE\n",
                    d = d.display()
                ),
            )
            .expect("write sshd_config");
            sh(&format!("{SSHD} -t -f {}", q(&config)));
            let log = std::fs::File::create(d.join("sshd.log")).expect("log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect((address, port)).is_ok() {
                    return Some(Sshd {
                        dir,
                        child,
                        address: address.to_string(),
                        port,
                    });
                }
                if child.try_wait().expect("try_wait").is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break; // probably lost the port race: try another port
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "sshd did not start on {address}: {}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn label(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// `[address]:port keytype base64`.
    fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.path("host_ed25519.pub")).expect("host key");
        let mut f = public.split_whitespace();
        format!(
            "[{}]:{} {} {}",
            self.address,
            self.port,
            f.next().expect("type"),
            f.next().expect("key")
        )
    }

    fn host_fingerprint(&self) -> String {
        fingerprint(&self.path("host_ed25519.pub"))
    }

    fn config(&self) -> SshConfig {
        let mut c = SshConfig::new(sh("id -un"));
        c.private_key = Some(PrivateKeyText::new(
            std::fs::read_to_string(self.path("client_ed25519")).expect("client key"),
        ));
        c.known_hosts = format!("# test\n{}\n", self.known_hosts_line());
        c.connect_timeout = Duration::from_secs(20);
        c.timeouts = Timeouts {
            command: T,
            transfer: Duration::from_secs(120),
        };
        c
    }

    async fn connect(&self) -> SshTransport {
        SshTransport::connect(&self.address, self.port, &self.config())
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.label()))
    }

    /// Sessions accepted so far (one "Accepted publickey" log line each).
    fn logins(&self) -> usize {
        std::fs::read_to_string(self.path("sshd.log"))
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Kills the per-connection sshd processes (not the listener): every session drops.
    fn kill_sessions(&self) {
        let listener = self.child.id();
        let mut doomed = Vec::new();
        let mut frontier = vec![listener];
        while let Some(parent) = frontier.pop() {
            for pid in children_of(parent) {
                doomed.push(pid);
                frontier.push(pid);
            }
        }
        for pid in doomed {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Release tarballs built with `tar`, in a temp dir.
struct Artifacts {
    dir: TempDir,
}

impl Artifacts {
    fn new() -> Artifacts {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for v in ["v1", "v2", "v3", "v4"] {
            let top = d.join("stage").join(format!("artifortress-{v}"));
            std::fs::create_dir_all(top.join("bin")).expect("mkdir");
            std::fs::write(top.join("VERSION"), format!("{v}\n")).expect("write");
            std::fs::write(top.join("bin/run"), "#!/bin/sh\necho running\n").expect("write");
            std::fs::set_permissions(top.join("bin/run"), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            sh(&format!(
                "tar -czf {} -C {} artifortress-{v}",
                q(&d.join(format!("{v}.tar.gz"))),
                q(&d.join("stage"))
            ));
        }
        // A tarball without a single top directory is unpacked as it is.
        let flat = d.join("flat");
        std::fs::create_dir_all(&flat).expect("mkdir");
        std::fs::write(flat.join("a.txt"), "a").expect("write");
        std::fs::write(flat.join("b.txt"), "b").expect("write");
        sh(&format!(
            "tar -czf {} -C {} a.txt b.txt",
            q(&d.join("flat.tar.gz")),
            q(&flat)
        ));
        Artifacts { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.tar.gz"))
    }

    fn sha(&self, name: &str) -> String {
        sha256_file(&self.path(name))
    }
}

async fn stdout(t: &dyn Transport, cmd: &str) -> String {
    let out = t.exec(cmd, None, T).await.expect("exec");
    assert!(out.success(), "{cmd}: {}", out.stderr_text());
    out.stdout_text().trim().to_string()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A release from one archive per role (`api_artifact` / `worker_artifact`): each unpacked as
/// `releases/<v>/<role>/` with its own checksum record, read back by `inspect`; only the parts
/// given are installed; the live release is not replaced by other archives.
async fn role_release_flow(t: &dyn Transport, root: &Path, art: &Artifacts) {
    let deploy = root.join("deploy-roles");
    let d = deploy.display().to_string();
    let releases = deploy.join("releases");
    let paths: BTreeMap<&str, PathBuf> = ["v1", "v2", "v4"].map(|v| (v, art.path(v))).into();
    let shas: BTreeMap<&str, String> = ["v1", "v2", "v4"].map(|v| (v, art.sha(v))).into();
    let part = |dir: &'static str, v: &str, sha: &'static str| hosts::RolePart {
        dir,
        artifact: paths[v].as_path(),
        sha256: shas.get(sha).map(String::as_str).unwrap_or(sha),
    };

    // The worker archive's checksum is wrong: refused on the host, nothing left behind.
    let e = hosts::install_role_release(
        t,
        &d,
        "v1",
        &[part("api", "v1", "v1"), part("worker", "v2", "v1")],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, HostError::ChecksumMismatch { path, expected, .. }
            if path.contains("the worker artifact") && expected == &shas["v1"]),
        "{e}"
    );
    assert!(entries(&releases).is_empty(), "{:?}", entries(&releases));

    let both = [part("api", "v1", "v1"), part("worker", "v2", "v2")];
    let v1 = hosts::install_role_release(t, &d, "v1", &both)
        .await
        .unwrap();
    assert!(!v1.already_present);
    assert_eq!(entries(&releases.join("v1")), vec!["api", "worker"]);
    for (role, v) in [("api", "v1"), ("worker", "v2")] {
        let dir = releases.join("v1").join(role);
        // The single top directory of each archive is stripped.
        assert_eq!(
            std::fs::read_to_string(dir.join("VERSION")).unwrap(),
            format!("{v}\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".artifact-sha256")).unwrap(),
            format!("{}\n", shas[v])
        );
    }
    assert_eq!(
        stdout(t, &format!("{d}/releases/v1/worker/bin/run")).await,
        "running"
    );
    assert!(
        hosts::install_role_release(t, &d, "v1", &both)
            .await
            .unwrap()
            .already_present
    );
    hosts::switch_current(t, &d, "v1").await.unwrap();
    let found = hosts::inspect(t, &d, &[]).await.unwrap();
    assert_eq!(found.version.as_deref(), Some("v1"));
    assert_eq!(found.artifact_sha256, None);
    assert_eq!(
        found.role_artifact_sha256,
        BTreeMap::from([
            ("api".to_string(), shas["v1"].clone()),
            ("worker".to_string(), shas["v2"].clone())
        ])
    );

    // Another worker archive under the live version: refused (a new version is needed).
    let e = hosts::install_role_release(
        t,
        &d,
        "v1",
        &[part("api", "v1", "v1"), part("worker", "v4", "v4")],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, HostError::ReleaseConflict { version, .. } if version == "v1"),
        "{e}"
    );
    // An API-only host gets the API archive only; an idle release from a single archive is
    // replaced by the role archives.
    hosts::install_release(t, &d, "v2", &paths["v2"], &shas["v2"])
        .await
        .unwrap();
    let v2 = hosts::install_role_release(t, &d, "v2", &[part("api", "v4", "v4")])
        .await
        .unwrap();
    assert!(!v2.already_present);
    assert_eq!(entries(&releases.join("v2")), vec!["api"]);
    assert!(
        !entries(&releases)
            .iter()
            .any(|e| e.starts_with(".incoming") || e.starts_with(".unpack")),
        "temporary files left: {:?}",
        entries(&releases)
    );
    let e = hosts::install_role_release(t, &d, "v3", &[part("cron", "v1", "v1")])
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::InvalidArgument { .. }), "{e}");
}

/// Install, verify, switch, env files, revisions and prune, through any transport.
async fn release_flow(t: &dyn Transport, root: &Path, art: &Artifacts) {
    let deploy = root.join("deploy");
    let d = deploy.display().to_string();
    let releases = deploy.join("releases");

    assert_eq!(hosts::current(t, &d).await.unwrap(), None);

    // A wrong checksum: refused on the host, nothing left behind.
    let e = hosts::install_release(t, &d, "v1", &art.path("v1"), &art.sha("v2"))
        .await
        .unwrap_err();
    match &e {
        HostError::ChecksumMismatch {
            host,
            expected,
            actual,
            ..
        } => {
            assert_eq!(host, t.host());
            assert_eq!(expected, &art.sha("v2"));
            assert_eq!(actual, &art.sha("v1"));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(entries(&releases).is_empty(), "{:?}", entries(&releases));

    let v1 = hosts::install_release(t, &d, "v1", &art.path("v1"), &art.sha("v1"))
        .await
        .unwrap();
    assert!(!v1.already_present);
    assert_eq!(v1.path, format!("{d}/releases/v1"));
    assert_eq!(
        v1.uploaded_bytes,
        std::fs::metadata(art.path("v1")).unwrap().len()
    );
    // The single top directory is stripped.
    assert_eq!(
        std::fs::read_to_string(releases.join("v1/VERSION")).unwrap(),
        "v1\n"
    );
    assert_eq!(
        stdout(t, &format!("{d}/releases/v1/bin/run")).await,
        "running"
    );
    assert_eq!(
        hosts::release_sha256(t, &d, "v1").await.unwrap(),
        Some(art.sha("v1"))
    );
    assert_eq!(hosts::release_sha256(t, &d, "v9").await.unwrap(), None);
    // Again: nothing to do.
    let again = hosts::install_release(t, &d, "v1", &art.path("v1"), &art.sha("v1").to_uppercase())
        .await
        .unwrap();
    assert!(again.already_present);
    assert_eq!(again.uploaded_bytes, 0);

    assert_eq!(hosts::switch_current(t, &d, "v1").await.unwrap(), None);
    assert_eq!(hosts::current(t, &d).await.unwrap().as_deref(), Some("v1"));
    assert_eq!(
        std::fs::read_link(deploy.join("current")).unwrap(),
        PathBuf::from("releases/v1")
    );

    hosts::install_release(t, &d, "v2", &art.path("v2"), &art.sha("v2"))
        .await
        .unwrap();
    assert_eq!(
        hosts::switch_current(t, &d, "v2").await.unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(hosts::current(t, &d).await.unwrap().as_deref(), Some("v2"));
    assert_eq!(
        std::fs::read_to_string(deploy.join("current/VERSION")).unwrap(),
        "v2\n"
    );

    // The live release cannot be replaced by another artifact under the same version...
    let e = hosts::install_release(t, &d, "v2", &art.path("v1"), &art.sha("v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HostError::ReleaseConflict { version, .. } if version == "v2"),
        "{e}"
    );
    // ...an idle one can.
    let replaced = hosts::install_release(t, &d, "v1", &art.path("v4"), &art.sha("v4"))
        .await
        .unwrap();
    assert!(!replaced.already_present);
    assert_eq!(
        std::fs::read_to_string(releases.join("v1/VERSION")).unwrap(),
        "v4\n"
    );
    hosts::install_release(t, &d, "v1", &art.path("v1"), &art.sha("v1"))
        .await
        .unwrap();

    let e = hosts::switch_current(t, &d, "v9").await.unwrap_err();
    assert!(matches!(e, HostError::ReleaseMissing { .. }), "{e}");
    let e = hosts::switch_current(t, &d, "../v1").await.unwrap_err();
    assert!(matches!(e, HostError::InvalidArgument { .. }), "{e}");

    let flat = hosts::install_release(t, &d, "v3", &art.path("flat"), &art.sha("flat"))
        .await
        .unwrap();
    assert_eq!(
        entries(Path::new(&flat.path)),
        vec![".artifact-sha256", "a.txt", "b.txt"]
    );
    hosts::install_release(t, &d, "v4", &art.path("v4"), &art.sha("v4"))
        .await
        .unwrap();

    // Env files: 0600, atomic, hash reported; values with quotes, spaces and `$` kept literally.
    let env_path = deploy.join("shared/api.env");
    let env = BTreeMap::from([
        (
            "ConnectionStrings__Postgres".to_string(),
            "Host=db;Password='it''s $ecret'".to_string(),
        ),
        ("Worker__BatchSize".to_string(), "100".to_string()),
    ]);
    let ep = env_path.display().to_string();
    assert_eq!(hosts::file_sha256(t, &ep).await.unwrap(), None);
    hosts::write_env(t, &ep, &env).await.unwrap();
    let sha = hosts::env_sha256(&env).unwrap();
    assert_eq!(hosts::file_sha256(t, &ep).await.unwrap(), Some(sha.clone()));
    assert_eq!(sha256_file(&env_path), sha);
    let meta = std::fs::metadata(&env_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let content = std::fs::read_to_string(&env_path).unwrap();
    assert!(content.contains("ConnectionStrings__Postgres=Host=db;Password='it''s $ecret'\n"));
    assert!(content.contains("Worker__BatchSize=100\n"));
    // Without a key file the host reports no keyed fingerprint; with one, the host's
    // `cat key env | sha256sum` equals the provider's env_fingerprint (0600 key file).
    let found = hosts::inspect(t, &d, std::slice::from_ref(&ep))
        .await
        .unwrap();
    assert_eq!(found.env_key, None);
    let sums = found.files[&ep].clone().unwrap();
    assert_eq!((sums.sha256.as_str(), sums.keyed), (sha.as_str(), None));
    let key = hosts::EnvKey::generate();
    hosts::write_env_key(t, &d, &key).await.unwrap();
    let key_path = deploy.join(hosts::ENV_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let found = hosts::inspect(t, &d, std::slice::from_ref(&ep))
        .await
        .unwrap();
    assert_eq!(found.env_key.as_ref(), Some(&key));
    let keyed = hosts::env_fingerprint(&key, &env).unwrap();
    assert_ne!(keyed, sha);
    assert_eq!(found.files[&ep].clone().unwrap().keyed, Some(keyed));
    std::fs::remove_file(&key_path).unwrap();
    // Rewritten with other values: still 0600, no temp file left.
    let env2 = BTreeMap::from([("A".to_string(), "1".to_string())]);
    hosts::write_env(t, &ep, &env2).await.unwrap();
    let sha2 = hosts::env_sha256(&env2).unwrap();
    assert_ne!(sha2, sha);
    assert_eq!(hosts::file_sha256(t, &ep).await.unwrap(), Some(sha2));
    assert_eq!(entries(&deploy.join("shared")), vec!["api.env"]);
    let e = hosts::write_env(
        t,
        &ep,
        &BTreeMap::from([("K".to_string(), "a\nb".to_string())]),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HostError::InvalidArgument { .. }), "{e}");

    for i in 1..=3 {
        hosts::append_revision(t, &d, &format!("rev {i} deployed v{i} by 'ci'"))
            .await
            .unwrap();
    }
    assert_eq!(
        hosts::revisions(t, &d, 2).await.unwrap(),
        vec!["rev 2 deployed v2 by 'ci'", "rev 3 deployed v3 by 'ci'"]
    );

    // Installed in the order v2, v1, v3, v4 (v1 was re-installed); current is v2.
    // keep 1 → v4; current v2 stays; v3 protected; v1 goes.
    let removed = hosts::prune(t, &d, 1, &["v3"]).await.unwrap();
    assert_eq!(removed, vec!["v1"]);
    assert_eq!(
        entries(&releases),
        vec!["v2".to_string(), "v3".to_string(), "v4".to_string()]
    );
    assert!(hosts::prune(t, &d, 1, &["v3"]).await.unwrap().is_empty());
    let removed = hosts::prune(t, &d, 1, &[]).await.unwrap();
    assert_eq!(removed, vec!["v3"]);
    assert_eq!(hosts::current(t, &d).await.unwrap().as_deref(), Some("v2"));
    // No temporary entries anywhere.
    assert_eq!(
        entries(&deploy),
        vec!["current", "releases", "revisions.log", "shared"]
    );
}

/// The deploy lock: exclusion, re-entry, expiry and takeover, token-guarded release.
async fn lock_flow(t: &dyn Transport, root: &Path) {
    let deploy = root.join("locked");
    let d = deploy.display().to_string();
    let minute = Duration::from_secs(60);

    let a = hosts::acquire_lock(t, &d, "deployer A (run 1)", minute)
        .await
        .unwrap();
    let lock_file = std::fs::read_to_string(deploy.join(".deploy-lock/owner")).unwrap();
    assert!(
        lock_file.starts_with("owner=deployer A (run 1)\n"),
        "{lock_file}"
    );

    let e = hosts::acquire_lock(t, &d, "deployer B", minute)
        .await
        .unwrap_err();
    match &e {
        HostError::LockHeld {
            host,
            holder,
            expires_at,
            remaining_secs,
            ..
        } => {
            assert_eq!(host, t.host());
            assert_eq!(holder, "deployer A (run 1)");
            assert_eq!(*expires_at, a.expires_at);
            assert!((50..=60).contains(remaining_secs), "{remaining_secs}");
        }
        other => panic!("expected LockHeld, got {other}"),
    }
    assert!(e.to_string().contains("deployer A (run 1)"), "{e}");

    // The same owner takes it again (a retried run); the first token is then stale.
    let a2 = hosts::acquire_lock(t, &d, "deployer A (run 1)", minute)
        .await
        .unwrap();
    assert_ne!(a2.token, a.token);
    assert!(matches!(
        hosts::release_lock(t, &a).await.unwrap(),
        LockRelease::TakenOver(info) if info.token == a2.token
    ));
    assert_eq!(
        hosts::release_lock(t, &a2).await.unwrap(),
        LockRelease::Released
    );
    assert_eq!(
        hosts::release_lock(t, &a2).await.unwrap(),
        LockRelease::AlreadyGone
    );

    // A killed run's lock expires and is taken over.
    let dead = hosts::acquire_lock(t, &d, "killed run", Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let b = hosts::acquire_lock(t, &d, "deployer B", minute)
        .await
        .unwrap();
    assert!(matches!(
        hosts::release_lock(t, &dead).await.unwrap(),
        LockRelease::TakenOver(info) if info.owner == "deployer B"
    ));
    let e = hosts::renew_lock(t, &dead, minute).await.unwrap_err();
    assert!(
        matches!(&e, HostError::LockLost { holder, .. } if holder == "deployer B"),
        "{e}"
    );
    let renewed = hosts::renew_lock(t, &b, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(renewed.expires_at > b.expires_at);
    assert_eq!(
        hosts::release_lock(t, &renewed).await.unwrap(),
        LockRelease::Released
    );

    // Racing owners: exactly one wins.
    let results = futures::future::join_all((0..4).map(|i| {
        let d = d.clone();
        async move { hosts::acquire_lock(t, &d, &format!("racer {i}"), minute).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    HostError::LockHeld { .. } | HostError::LockContention { .. }
                ),
                "{e}"
            );
        }
    }
    hosts::release_lock(t, winners[0]).await.unwrap();
    assert!(entries(&deploy).is_empty(), "{:?}", entries(&deploy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_exec_upload_and_sha256() {
    let Some(sshd) = Sshd::start("127.0.0.2") else {
        return;
    };
    let t = sshd.connect().await;
    assert_eq!(t.host(), sshd.label());
    assert!(t.host_key_verified());
    assert_eq!(
        t.host_key(),
        Some(format!("ssh-ed25519 {}", sshd.host_fingerprint()))
    );

    let out = t
        .exec("echo out; echo err >&2; exit 3", None, T)
        .await
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err");
    // The server's side of the connection is the address we asked for.
    let conn = stdout(&t, "echo $SSH_CONNECTION").await;
    assert_eq!(conn.split_whitespace().nth(2), Some("127.0.0.2"), "{conn}");

    // Stdin and stdout larger than the channel windows, both ways at once.
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = t.exec("cat", Some(&input), T).await.unwrap();
    assert!(out.success());
    assert!(out.stdout == input, "echoed {} bytes", out.stdout.len());
    let out = t.exec("head -c 5000000 /dev/zero", None, T).await.unwrap();
    assert_eq!(out.stdout.len(), 5_000_000);

    // Killed by a signal.
    let out = t.exec("kill -KILL $$", None, T).await.unwrap();
    assert_eq!(out.status, None);
    assert_eq!(out.signal.as_deref(), Some("KILL"));

    // A timeout, after which the session still works.
    let started = Instant::now();
    let e = t
        .exec("sleep 30", None, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A background process holding stdout does not hold the command.
    let started = Instant::now();
    assert_eq!(stdout(&t, "sleep 10 & echo started").await, "started");
    assert!(started.elapsed() < Duration::from_secs(6));

    // Upload a multi-MiB file; its sha256 is computed on the host.
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("artifact.bin");
    {
        let mut f = std::fs::File::create(&file).unwrap();
        let mut block = vec![0u8; 1 << 20];
        for i in 0..9u8 {
            block.iter_mut().enumerate().for_each(|(j, b)| {
                *b = (j as u8).wrapping_mul(31).wrapping_add(i);
            });
            f.write_all(&block).unwrap();
        }
        f.write_all(b"tail").unwrap();
    }
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path().join("uploaded.bin").display().to_string();
    let size = t.upload(&file, &remote, 0o640).await.unwrap();
    assert_eq!(size, 9 * (1 << 20) + 4);
    assert_eq!(t.sha256(&remote).await.unwrap(), sha256_file(&file));
    assert_eq!(stdout(&t, &format!("stat -c %a {remote}")).await, "640");
    assert_eq!(entries(remote_dir.path()), vec!["uploaded.bin"]);

    // Errors carry the host, the operation and the remote stderr.
    let e = t
        .upload(&file, "/nonexistent-dir/x.bin", 0o600)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, HostError::Command { op: "upload", .. }),
        "{msg}"
    );
    assert!(msg.contains(&sshd.label()), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    let e = t.sha256("/nonexistent-file").await.unwrap_err();
    assert!(e.to_string().contains("nonexistent-file"), "{e}");
    let e = t
        .upload(Path::new("/nonexistent-local"), &remote, 0o600)
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::Io { .. }), "{e}");

    // Commands in parallel on the one session.
    let outs = futures::future::join_all((0..6).map(|i| {
        let t = &t;
        async move { stdout(t, &format!("sleep 0.2; echo {i}")).await }
    }))
    .await;
    assert_eq!(outs, vec!["0", "1", "2", "3", "4", "5"]);
    assert_eq!(sshd.logins(), 1, "every command above shared one session");

    // The session dies (per-connection sshd killed): the running command fails as a lost
    // connection; the next command reconnects.
    let running = t.exec("sleep 20", None, T);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sshd.kill_sessions();
    };
    let (res, ()) = tokio::join!(running, killer);
    let e = res.unwrap_err();
    assert!(e.is_connection_failure(), "{e}");
    assert_eq!(e.host(), Some(sshd.label().as_str()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stdout(&t, "echo back").await, "back");
    assert_eq!(sshd.logins(), 2);
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_release_operations_on_two_hosts() {
    let Some(a) = Sshd::start("127.0.0.2") else {
        return;
    };
    let Some(b) = Sshd::start("127.0.0.3") else {
        return;
    };
    let (ta, tb) = tokio::join!(a.connect(), b.connect());
    assert_eq!(
        stdout(&tb, "echo $SSH_CONNECTION")
            .await
            .split_whitespace()
            .nth(2),
        Some("127.0.0.3")
    );
    let art = Artifacts::new();
    let (ra, rb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tokio::join!(
        release_flow(&ta, ra.path(), &art),
        release_flow(&tb, rb.path(), &art)
    );
    role_release_flow(&ta, ra.path(), &art).await;
    tokio::join!(lock_flow(&ta, ra.path()), lock_flow(&tb, rb.path()));
    assert_eq!(a.logins(), 1);
    assert_eq!(b.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_key_verification_and_authentication() {
    let Some(sshd) = Sshd::start("127.0.0.2") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let fp = sshd.host_fingerprint();

    // Another key listed for the host: refused, naming the host and the presented key.
    keygen(&keys.path().join("other"), "other");
    let other = std::fs::read_to_string(keys.path().join("other.pub")).unwrap();
    let other_fp = fingerprint(&keys.path().join("other.pub"));
    let mut cfg = sshd.config();
    cfg.known_hosts = format!(
        "[{}]:{} {}",
        sshd.address,
        sshd.port,
        other
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let e = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap_err();
    match &e {
        HostError::HostKeyMismatch {
            host,
            algorithm,
            fingerprint,
            known,
        } => {
            assert_eq!(host, &sshd.label());
            assert_eq!(algorithm, "ssh-ed25519");
            assert_eq!(fingerprint, &fp);
            assert_eq!(known, &vec![format!("ssh-ed25519 {other_fp} (line 1)")]);
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    assert!(e.to_string().contains(&fp), "{e}");

    // Nothing listed (empty known_hosts, or the key listed for port 22 only): unknown.
    for known_hosts in [
        String::new(),
        sshd.known_hosts_line()
            .replace(&format!("[{}]:{}", sshd.address, sshd.port), &sshd.address),
    ] {
        let mut cfg = sshd.config();
        cfg.known_hosts = known_hosts;
        let e = SshTransport::connect(&sshd.address, sshd.port, &cfg)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, HostError::HostKeyUnknown { host, fingerprint, .. }
                if host == &sshd.label() && fingerprint == &fp),
            "{e}"
        );
    }

    // The opt-out connects, and says which key it did not check.
    let mut cfg = sshd.config();
    cfg.known_hosts = String::new();
    cfg.insecure_ignore_host_key = true;
    let t = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap();
    assert!(!t.host_key_verified());
    assert_eq!(t.host_key(), Some(format!("ssh-ed25519 {fp}")));
    assert_eq!(stdout(&t, "echo ok").await, "ok");

    // Hashed known_hosts (ssh-keygen -H), with other lines around it.
    let kh = keys.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "other.example.org {}\n{}\n",
            other
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            sshd.known_hosts_line()
        ),
    )
    .unwrap();
    sh(&format!("ssh-keygen -q -H -f {} 2>/dev/null", q(&kh)));
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(!hashed.contains("127.0.0.2"), "{hashed}");
    let mut cfg = sshd.config();
    cfg.known_hosts = hashed;
    let t = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap();
    assert_eq!(stdout(&t, "echo hashed").await, "hashed");

    // A client key the server does not accept.
    keygen(&keys.path().join("stranger"), "stranger");
    let mut cfg = sshd.config();
    cfg.private_key = Some(PrivateKeyText::new(
        std::fs::read_to_string(keys.path().join("stranger")).unwrap(),
    ));
    let e = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HostError::AuthFailed { host, remaining, .. }
            if host == &sshd.label() && remaining.contains("publickey")),
        "{e}"
    );
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");

    // A malformed private key: a typed error that does not echo the key.
    let mut cfg = sshd.config();
    cfg.private_key = Some(PrivateKeyText::new(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n",
    ));
    let e = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::PrivateKey { .. }), "{e}");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");

    // No key and an agent socket that is not there.
    let mut cfg = sshd.config();
    cfg.private_key = None;
    cfg.agent_socket = Some(keys.path().join("no-agent.sock"));
    let e = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::Agent { .. }), "{e}");

    // Nobody listening; and a listener that never speaks SSH (connect timeout).
    let port = TcpListener::bind(("127.0.0.2", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = SshTransport::connect("127.0.0.2", port, &sshd.config())
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::Connect { .. }), "{e}");
    // In words, without Rust's `(os error 111)`.
    assert!(
        e.to_string()
            .ends_with("cannot connect: connection refused"),
        "{e}"
    );
    let mute = TcpListener::bind(("127.0.0.2", 0)).unwrap();
    let mut cfg = sshd.config();
    cfg.connect_timeout = Duration::from_millis(500);
    let e = SshTransport::connect("127.0.0.2", mute.local_addr().unwrap().port(), &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::ConnectTimeout { .. }), "{e}");
    assert!(e.to_string().contains("no SSH session within 0.5s"), "{e}");
}

/// An ssh-agent of our own, killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_agent_authentication() {
    let Some(sshd) = Sshd::start("127.0.0.3") else {
        return;
    };
    let socket = sshd.path("agent.sock");
    let agent = Agent {
        child: Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent"),
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.socket.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.path("client_ed25519"))
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");

    let mut cfg = sshd.config();
    cfg.private_key = None;
    cfg.agent_socket = Some(agent.socket.clone());
    let t = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap();
    assert_eq!(stdout(&t, "echo via-agent").await, "via-agent");

    // The agent's keys are tried and named when none is accepted.
    let stranger = sshd.path("stranger");
    keygen(&stranger, "stranger");
    let removed = Command::new("ssh-add")
        .arg("-D")
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let added = Command::new("ssh-add")
        .arg(&stranger)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let e = SshTransport::connect(&sshd.address, sshd.port, &cfg)
        .await
        .unwrap_err();
    let stranger_fp = fingerprint(&sshd.path("stranger.pub"));
    assert!(
        matches!(&e, HostError::AuthFailed { method, .. } if method.contains(&stranger_fp)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_release_operations() {
    let t = LocalTransport::new(Timeouts {
        command: T,
        transfer: Duration::from_secs(120),
    });
    assert_eq!(t.host(), "localhost");
    let art = Artifacts::new();
    let root = tempfile::tempdir().unwrap();
    release_flow(&t, root.path(), &art).await;
    role_release_flow(&t, root.path(), &art).await;
    lock_flow(&t, root.path()).await;

    // Upload + sha256 locally as well.
    let remote = root.path().join("copy.tar.gz").display().to_string();
    t.upload(&art.path("v1"), &remote, 0o644).await.unwrap();
    assert_eq!(t.sha256(&remote).await.unwrap(), art.sha("v1"));
    assert_eq!(stdout(&t, &format!("stat -c %a {remote}")).await, "644");
    let e = t.sha256("/nonexistent-file").await.unwrap_err();
    assert!(
        matches!(&e, HostError::Command { host, op: "sha256", stderr, .. }
            if host == "localhost" && stderr.contains("nonexistent-file")),
        "{e}"
    );
}
