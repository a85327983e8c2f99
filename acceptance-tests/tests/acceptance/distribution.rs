//! Distribution: what `scripts/release` (`make release`) produces is verifiable, and
//! `terraform init` installs it the way users install providers, from a filesystem mirror and
//! from a network mirror served over HTTPS with a test CA, with `required_providers` pinning the
//! version. The lock file records the hash the release computed; a zip tampered with after the
//! release was written is refused.
//!
//! The release packages the provider under test (`ARTIFORTRESS_PROVIDER_BIN`, the debug build)
//! with the crate's version instead of building a release binary, so `make test` builds nothing
//! more; `make release` runs the same script on the release build.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{Run, Terraform, required_env, terraforms};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const ADDRESS: &str = "registry.terraform.io/artifortress/artifortress";
const NAME: &str = "terraform-provider-artifortress";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One run of `scripts/release` into a temporary directory.
struct Release {
    _tmp: tempfile::TempDir,
    /// `<DIST_DIR>/<version>`
    dir: PathBuf,
    zip_name: String,
    /// What the script computed (`hashes.json`).
    h1: String,
    zh: String,
}

impl Release {
    fn build() -> Release {
        let tmp = tempfile::Builder::new()
            .prefix("af-dist-")
            .tempdir()
            .unwrap();
        let out = Command::new(repo().join("scripts/release"))
            .env("DIST_DIR", tmp.path())
            .env("VERSION", VERSION)
            .env("PROVIDER_BIN", required_env("ARTIFORTRESS_PROVIDER_BIN"))
            .env_remove("GPG_PRIVATE_KEY")
            .env_remove("GPG_FINGERPRINT")
            .output()
            .expect("scripts/release runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/release failed:\n{stderr}");
        assert!(
            stderr.contains("THROWAWAY"),
            "without a key from the environment the script says the key is a throwaway:\n{stderr}"
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(dir, tmp.path().canonicalize().unwrap().join(VERSION));
        let hashes: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("hashes.json")).unwrap()).unwrap();
        let amd64 = &hashes["linux_amd64"];
        let zip_name = format!("{NAME}_{VERSION}_linux_amd64.zip");
        assert_eq!(amd64["zip"], zip_name.as_str());
        Release {
            _tmp: tmp,
            dir,
            zip_name,
            h1: amd64["h1"].as_str().unwrap().to_string(),
            zh: amd64["zh"].as_str().unwrap().to_string(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn fs_mirror(&self) -> PathBuf {
        self.dir.join("mirror")
    }

    fn net_mirror(&self) -> PathBuf {
        self.dir.join("network-mirror")
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces `zip` by a valid zip whose binary differs by a few bytes at the end (a build that is
/// not the released one, as a compromised mirror would serve it). Written beside and renamed,
/// so the other copies of the zip stay as they were.
fn tamper(zip: &Path) {
    let tmp = zip.with_extension("tampered");
    let out = Command::new("python3")
        .args([
            "-c",
            r#"
import sys, zipfile
src, dst = sys.argv[1:3]
with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as t:
    for info in z.infolist():
        t.writestr(info, z.read(info.filename) + b"\0tampered\0")
"#,
            &zip.display().to_string(),
            &tmp.display().to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, zip).unwrap();
}

/// The hashes the lock file records for our provider.
fn locked_hashes(lock: &str) -> Vec<String> {
    let block = lock
        .split(&format!("provider \"{ADDRESS}\" {{"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {ADDRESS} in the lock file:\n{lock}"));
    let block = block.split("\n}").next().unwrap();
    let hashes = block
        .split("hashes = [")
        .nth(1)
        .unwrap_or_else(|| panic!("no hashes in the lock file:\n{lock}"));
    hashes
        .split(']')
        .next()
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn hcl(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A working directory with its own CLI configuration (no dev overrides, no plugin cache).
struct Dir {
    tf: Terraform,
    dir: tempfile::TempDir,
    cli_config: PathBuf,
    env: Vec<(String, String)>,
}

const CONFIG: &str = r#"
terraform {
  required_providers {
    artifortress = {
      source  = "artifortress/artifortress"
      version = "= VERSION"
    }
  }
}

provider "artifortress" {}
"#;

impl Dir {
    fn new(tf: &Terraform, installation: &str, env: &[(&str, String)]) -> Dir {
        let dir = tempfile::Builder::new()
            .prefix("af-dist-wd-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("main.tf"),
            CONFIG.replace("VERSION", VERSION),
        )
        .unwrap();
        let cli_config = dir.path().join("terraformrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n{installation}\n  direct {{\n    exclude = [{a}]\n  }}\n}}\n",
                a = hcl(ADDRESS)
            ),
        )
        .unwrap();
        Dir {
            tf: tf.clone(),
            dir,
            cli_config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.tf.bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env_remove("TF_PLUGIN_CACHE_DIR")
            .env_remove("TF_LOG")
            .env_remove("TF_LOG_PROVIDER")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tf.bin.display()))
            .into()
    }

    fn init(&self) -> Run {
        self.run(&["init", "-input=false", "-no-color"])
    }

    /// `init` succeeds, installs the pinned version, records the release's `h1:` hash (and no
    /// hash the release did not compute), and the installed binary serves its schema.
    fn assert_installs(&self, release: &Release, how: &str) {
        let init = self.init();
        assert_eq!(
            init.code,
            0,
            "terraform {} init from the {how} failed:\n{}",
            self.tf.version,
            init.text()
        );
        assert!(
            init.stdout
                .contains(&format!("Installed artifortress/artifortress v{VERSION}")),
            "terraform {}: init from the {how} did not install v{VERSION}:\n{}",
            self.tf.version,
            init.text()
        );
        let lock = std::fs::read_to_string(self.path(".terraform.lock.hcl")).unwrap();
        assert!(
            lock.contains(&format!("version     = \"{VERSION}\"")),
            "the lock file pins {VERSION}:\n{lock}"
        );
        let hashes = locked_hashes(&lock);
        assert!(
            hashes.contains(&release.h1),
            "terraform {}: the lock file from the {how} lacks the release's {} (has {hashes:?})",
            self.tf.version,
            release.h1
        );
        for h in &hashes {
            assert!(
                *h == release.h1 || *h == release.zh,
                "terraform {}: the lock file from the {how} records {h}, which is not a hash of \
                 the release ({} / {})",
                self.tf.version,
                release.h1,
                release.zh
            );
        }
        // The installed package is the released binary, and it runs.
        let installed = self.path(&format!(
            ".terraform/providers/{ADDRESS}/{VERSION}/linux_amd64/{NAME}_v{VERSION}"
        ));
        let out = Command::new(&installed)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", installed.display()));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{NAME} v{VERSION}")
        );
        let validate = self.run(&["validate", "-no-color"]);
        assert_eq!(
            validate.code,
            0,
            "terraform {} validate with the installed provider failed:\n{}",
            self.tf.version,
            validate.text()
        );
    }

    /// `init` fails on the checksum.
    fn assert_refused(&self, what: &str) {
        let init = self.init();
        let text = init.text();
        assert_ne!(
            init.code, 0,
            "terraform {}: init accepted {what}:\n{text}",
            self.tf.version
        );
        let lower = text.to_lowercase();
        let reason = text
            .lines()
            .skip_while(|l| !l.starts_with("Error while installing"))
            .take_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("terraform {} refused {what}: {reason}", self.tf.version);
        assert!(
            lower.contains("doesn't match") && lower.contains("checksums"),
            "terraform {}: init refused {what}, but not for its checksum:\n{text}",
            self.tf.version
        );
        assert!(
            !self
                .path(&format!(
                    ".terraform/providers/{ADDRESS}/{VERSION}/linux_amd64/{NAME}_v{VERSION}"
                ))
                .exists(),
            "terraform {}: {what} was installed although init failed",
            self.tf.version
        );
    }
}

fn fs_mirror_block(path: &Path) -> String {
    format!(
        "  filesystem_mirror {{\n    path    = {}\n    include = [{}]\n  }}",
        hcl(&path.display().to_string()),
        hcl(ADDRESS)
    )
}

fn net_mirror_block(url: &str) -> String {
    format!(
        "  network_mirror {{\n    url     = {}\n    include = [{}]\n  }}",
        hcl(url),
        hcl(ADDRESS)
    )
}

#[test]
fn release_artifacts_are_signed_summed_and_laid_out_for_both_mirrors() {
    let release = Release::build();
    let sums_name = format!("{NAME}_{VERSION}_SHA256SUMS");
    let manifest_name = format!("{NAME}_{VERSION}_manifest.json");

    // SHA256SUMS: the zip and the manifest, each line true.
    let sums = std::fs::read_to_string(release.file(&sums_name)).unwrap();
    let lines: BTreeMap<String, String> = sums
        .lines()
        .map(|l| {
            let (sum, file) = l.split_once("  ").expect("'<sha256>  <file>' lines");
            (file.to_string(), sum.to_string())
        })
        .collect();
    assert_eq!(
        lines.keys().cloned().collect::<Vec<_>>(),
        vec![release.zip_name.clone(), manifest_name.clone()],
        "{sums}"
    );
    for (file, sum) in &lines {
        assert_eq!(
            *sum,
            sha256_hex(&std::fs::read(release.file(file)).unwrap()),
            "{file}"
        );
    }
    assert_eq!(
        release.zh,
        format!("zh:{}", lines[&release.zip_name]),
        "zh: is the zip's sha256"
    );

    // The registry manifest: plugin protocol 6.0.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(release.file(&manifest_name)).unwrap()).unwrap();
    assert_eq!(
        manifest,
        serde_json::json!({"version": 1, "metadata": {"protocol_versions": ["6.0"]}})
    );

    // The signature verifies with the exported public key in a keyring holding nothing else,
    // and does not verify a SHA256SUMS that names other bytes.
    let gnupg = tempfile::Builder::new()
        .prefix("af-gpg-")
        .tempdir_in("/tmp")
        .unwrap();
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", gnupg.path())
            .arg("--batch")
            .args(args)
            .output()
            .expect("gpg runs")
    };
    let import = gpg(&[
        "--import",
        &release.file("signing-key.asc").display().to_string(),
    ]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let sig = release.file(&format!("{sums_name}.sig"));
    let verify = gpg(&[
        "--verify",
        &sig.display().to_string(),
        &release.file(&sums_name).display().to_string(),
    ]);
    assert!(
        verify.status.success(),
        "the signature does not verify:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let forged = gnupg.path().join("forged_SHA256SUMS");
    std::fs::write(
        &forged,
        sums.replacen(&lines[&release.zip_name], &"0".repeat(64), 1),
    )
    .unwrap();
    let verify = gpg(&[
        "--verify",
        &sig.display().to_string(),
        &forged.display().to_string(),
    ]);
    assert!(
        !verify.status.success(),
        "a forged SHA256SUMS verified:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", gnupg.path())
        .args(["--kill", "gpg-agent"])
        .output();

    // The zip holds exactly the binary, named as Terraform expects, executable.
    let listing = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(i.filename, oct(i.external_attr >> 16), i.date_time)",
            &release.file(&release.zip_name).display().to_string(),
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let entries: Vec<&str> = listing.lines().collect();
    assert_eq!(entries.len(), 1, "{listing}");
    assert!(
        entries[0].starts_with(&format!("{NAME}_v{VERSION} 0o100755 ")),
        "{listing}"
    );

    // The binary is stripped of symbols and debug information both, as Go providers ship
    // (`-s -w`): Terraform hashes the provider's file before every command (issue 19).
    let unzipped = release.dir.join("unzipped-provider");
    let extract = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nopen(sys.argv[2], 'wb').write(z.read(z.namelist()[0]))",
            &release.file(&release.zip_name).display().to_string(),
            &unzipped.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        extract.status.success(),
        "{}",
        String::from_utf8_lossy(&extract.stderr)
    );
    let sections = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(&unzipped)
        .output()
        .expect("readelf runs (binutils, scripts/install-deps)");
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(" .text "), "{sections}");
    // (`.debug_gdb_scripts` is loaded with the program, so it stays, as with any strip.)
    for section in [" .symtab ", " .strtab ", " .debug_info ", " .debug_line "] {
        assert!(
            !sections.contains(section),
            "the packaged binary still has {section}:\n{sections}"
        );
    }
    std::fs::remove_file(&unzipped).unwrap();

    // Both mirrors hold the very same zip; the network mirror's JSON follows the protocol.
    let zip = std::fs::read(release.file(&release.zip_name)).unwrap();
    let fs_zip = release.fs_mirror().join(ADDRESS).join(&release.zip_name);
    assert_eq!(std::fs::read(fs_zip).unwrap(), zip);
    let net = release.net_mirror().join(ADDRESS);
    assert_eq!(std::fs::read(net.join(&release.zip_name)).unwrap(), zip);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net.join("index.json")).unwrap()).unwrap();
    assert_eq!(index, serde_json::json!({"versions": {VERSION: {}}}));
    let version: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net.join(format!("{VERSION}.json"))).unwrap())
            .unwrap();
    assert_eq!(
        version,
        serde_json::json!({"archives": {"linux_amd64": {
            "url": release.zip_name,
            "hashes": [release.h1, release.zh],
        }}})
    );

    // Packaging is deterministic: the same binary gives the same bytes.
    let again = Release::build();
    assert_eq!(
        std::fs::read(again.file(&again.zip_name)).unwrap(),
        zip,
        "two releases of one binary differ"
    );
    assert_eq!(
        (again.h1, again.zh),
        (release.h1.clone(), release.zh.clone())
    );
}

#[test]
fn terraform_init_installs_the_release_from_a_filesystem_mirror() {
    let release = Release::build();
    let mirror = release.fs_mirror();
    for tf in terraforms() {
        let wd = Dir::new(&tf, &fs_mirror_block(&mirror), &[]);
        wd.assert_installs(&release, "filesystem mirror");
        let lock = std::fs::read_to_string(wd.path(".terraform.lock.hcl")).unwrap();

        // A filesystem mirror carries no checksums of its own; what guards a team against a
        // swapped zip is the lock file they committed. With it, a tampered zip is refused.
        let copy = tempfile::Builder::new()
            .prefix("af-dist-mirror-")
            .tempdir()
            .unwrap();
        let tampered_zip = copy.path().join(ADDRESS).join(&release.zip_name);
        std::fs::create_dir_all(tampered_zip.parent().unwrap()).unwrap();
        std::fs::copy(mirror.join(ADDRESS).join(&release.zip_name), &tampered_zip).unwrap();
        tamper(&tampered_zip);
        let wd = Dir::new(&tf, &fs_mirror_block(copy.path()), &[]);
        std::fs::write(wd.path(".terraform.lock.hcl"), &lock).unwrap();
        wd.assert_refused("a tampered zip in the filesystem mirror (lock file present)");
        // …and the same lock file with the untampered mirror installs.
        let wd = Dir::new(&tf, &fs_mirror_block(&mirror), &[]);
        std::fs::write(wd.path(".terraform.lock.hcl"), &lock).unwrap();
        wd.assert_installs(&release, "filesystem mirror with the lock file");
    }
}

#[test]
fn terraform_init_installs_the_release_from_a_network_mirror_over_https() {
    let release = Release::build();
    let ca = TestCa::new();
    let server = HttpsDir::serve(&release.net_mirror(), &ca);
    let url = format!("https://127.0.0.1:{}/", server.port);
    let env = [("SSL_CERT_FILE", ca.cert_file.display().to_string())];
    let zip_path = format!("/{ADDRESS}/{}", release.zip_name);
    for tf in terraforms() {
        server.requests.lock().unwrap().clear();
        let wd = Dir::new(&tf, &net_mirror_block(&url), &env);
        wd.assert_installs(&release, "network mirror");
        let requests = server.requests.lock().unwrap().clone();
        assert!(
            requests.contains(&format!("GET /{ADDRESS}/index.json"))
                && requests.contains(&format!("GET /{ADDRESS}/{VERSION}.json"))
                && requests.contains(&format!("GET {zip_path}")),
            "terraform {}: the mirror was not read as the protocol says: {requests:?}",
            tf.version
        );

        // Without the test CA, the mirror is not trusted.
        let untrusted = Dir::new(&tf, &net_mirror_block(&url), &[]);
        let init = untrusted.init();
        assert_ne!(
            init.code,
            0,
            "terraform {}: init trusted a certificate from an unknown CA:\n{}",
            tf.version,
            init.text()
        );
        assert!(
            init.shows("certificate"),
            "terraform {}: {}",
            tf.version,
            init.text()
        );
    }

    // The zip replaced after the index was written: refused on its checksum, by every
    // Terraform, with no lock file to help.
    tamper(&release.net_mirror().join(ADDRESS).join(&release.zip_name));
    for tf in terraforms() {
        server.requests.lock().unwrap().clear();
        let wd = Dir::new(&tf, &net_mirror_block(&url), &env);
        wd.assert_refused("a tampered zip on the network mirror");
        assert!(
            server
                .requests
                .lock()
                .unwrap()
                .contains(&format!("GET {zip_path}")),
            "terraform {}: the tampered zip was never downloaded",
            tf.version
        );
        assert!(
            !wd.path(".terraform.lock.hcl").exists(),
            "terraform {}: a lock file was written for a refused package",
            tf.version
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A test CA and a static HTTPS file server on 127.0.0.1 (what any web server does for a network
// mirror: GET and HEAD of files, 404 otherwise).

struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM), for SSL_CERT_FILE.
    cert_file: PathBuf,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "artifortress distribution test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("af-dist-ca-")
            .tempdir()
            .unwrap();
        let cert_file = dir.path().join("ca.pem");
        std::fs::write(&cert_file, ca_cert.pem()).unwrap();
        TestCa {
            _dir: dir,
            cert_file,
            server_chain: vec![cert.der().clone(), ca_cert.der().clone()],
            server_key: key.serialize_der(),
        }
    }
}

struct HttpsDir {
    port: u16,
    /// "METHOD /path" of every request, in order.
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpsDir {
    fn serve(root: &Path, ca: &TestCa) -> HttpsDir {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                ca.server_chain.clone(),
                rustls::pki_types::PrivatePkcs8KeyDer::from(ca.server_key.clone()).into(),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, log, halt) = (root.to_path_buf(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let (root, log, config) = (root.clone(), log.clone(), config.clone());
                std::thread::spawn(move || {
                    let _ = serve_connection(tcp, config, &root, &log);
                });
            }
        });
        HttpsDir {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpsDir {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection (`Connection: close`).
fn serve_connection(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    root: &Path,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request_line = String::new();
    {
        let mut reader = BufReader::new(&mut tls);
        reader.read_line(&mut request_line)?;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
                break;
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    log.lock().unwrap().push(format!("{method} {target}"));
    let path = target.split('?').next().unwrap_or_default();
    let file = (!path.split('/').any(|c| c == ".." || c == "."))
        .then(|| root.join(path.trim_start_matches('/')))
        .filter(|f| f.is_file());
    let (status, body, content_type) = match (&*method, file) {
        ("GET" | "HEAD", Some(f)) => {
            let mut body = Vec::new();
            std::fs::File::open(&f)?.read_to_end(&mut body)?;
            let ct = if f.extension().is_some_and(|e| e == "json") {
                "application/json"
            } else {
                "application/zip"
            };
            ("200 OK", body, ct)
        }
        ("GET" | "HEAD", None) => ("404 Not Found", b"not found\n".to_vec(), "text/plain"),
        _ => (
            "405 Method Not Allowed",
            b"method not allowed\n".to_vec(),
            "text/plain",
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    if method != "HEAD" {
        tls.write_all(&body)?;
    }
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}
