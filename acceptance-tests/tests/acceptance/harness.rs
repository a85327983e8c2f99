//! Drives the real Terraform CLI in temporary directories, against the dev environment
//! (`scripts/dev-env up`), with every Terraform listed in `ARTIFORTRESS_TEST_TERRAFORMS`.
//!
//! The provider is installed the way users install it: into a filesystem mirror that
//! `terraform init` reads, not through dev overrides. After every successful apply,
//! [`Workdir::apply_ok`] checks that a second `plan -detailed-exitcode` is empty.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use acceptance_tests::support::api::{TestbedApi, api_env};

/// The environment variable, or a panic naming `scripts/dev-env up`.
pub fn required_env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set: acceptance tests need the dev environment \
             (`eval \"$(scripts/dev-env up)\"`, or `make test`)"
            )
        })
}

/// One Terraform CLI to test with.
#[derive(Clone, Debug)]
pub struct Terraform {
    pub bin: PathBuf,
    pub version: String,
}

impl Terraform {
    /// Whether this is Terraform `major.minor` or later (1.12: resource identity; 1.14:
    /// actions and `terraform query`).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }
}

/// The Terraforms under test that are `major.minor` or later; fails when there is none, so a
/// feature of newer Terraform never goes untested silently.
pub fn terraforms_at_least(major: u32, minor: u32, feature: &str) -> Vec<Terraform> {
    let all = terraforms();
    let picked: Vec<Terraform> = all
        .iter()
        .filter(|tf| tf.at_least(major, minor))
        .cloned()
        .collect();
    assert!(
        !picked.is_empty(),
        "no Terraform >= {major}.{minor} under test ({:?}): {feature} would go untested",
        all.iter().map(|t| &t.version).collect::<Vec<_>>()
    );
    picked
}

/// Every Terraform CLI named in `ARTIFORTRESS_TEST_TERRAFORMS` (colon-separated).
pub fn terraforms() -> Vec<Terraform> {
    static ALL: OnceLock<Vec<Terraform>> = OnceLock::new();
    ALL.get_or_init(|| {
        required_env("ARTIFORTRESS_TEST_TERRAFORMS")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(|bin| {
                let out = Command::new(bin)
                    .arg("version")
                    .env("CHECKPOINT_DISABLE", "1")
                    .env("TF_CLI_CONFIG_FILE", cli_config())
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
                let text = String::from_utf8_lossy(&out.stdout);
                let version = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("Terraform v"))
                    .unwrap_or_else(|| panic!("{bin} version printed {text:?}"))
                    .to_string();
                Terraform {
                    bin: PathBuf::from(bin),
                    version,
                }
            })
            .collect()
    })
    .clone()
}

/// A CLI configuration whose filesystem mirror holds the provider under test.
///
/// Every test process (nextest runs one per test) shares one mirror per provider binary under
/// Cargo's `target/tmp`, built in a scratch directory and renamed into place, so concurrent
/// processes agree on it and nothing is left in `/tmp`.
pub fn cli_config() -> PathBuf {
    static CONFIG: OnceLock<PathBuf> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = PathBuf::from(required_env("ARTIFORTRESS_PROVIDER_BIN"));
            assert!(provider.exists(), "{} does not exist", provider.display());
            let version = env!("CARGO_PKG_VERSION");
            let key = {
                use sha2::Digest;
                hex::encode(&sha2::Sha256::digest(provider.as_os_str().as_encoded_bytes())[..8])
            };
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let home = tmp.join(format!("af-tf-mirror-{version}-{key}"));
            let rc = home.join("terraformrc");
            if rc.exists() {
                return rc;
            }
            std::fs::create_dir_all(&tmp).unwrap();
            let scratch = tempfile::Builder::new()
                .prefix("af-tf-building-")
                .tempdir_in(&tmp)
                .unwrap();
            let platform = scratch.path().join(format!(
                "mirror/registry.terraform.io/artifortress/artifortress/{version}/linux_amd64"
            ));
            std::fs::create_dir_all(&platform).unwrap();
            std::os::unix::fs::symlink(
                &provider,
                platform.join(format!("terraform-provider-artifortress_v{version}")),
            )
            .unwrap();
            std::fs::write(
                scratch.path().join("terraformrc"),
                format!(
                    "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/artifortress/artifortress\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/artifortress/artifortress\"]\n  }}\n}}\n",
                    home.join("mirror").display()
                ),
            )
            .unwrap();
            // Another process may have won the race: then its identical mirror is used and
            // ours is removed.
            let built = scratch.keep();
            if std::fs::rename(&built, &home).is_err() {
                let _ = std::fs::remove_dir_all(&built);
                assert!(rc.exists(), "no mirror at {}", home.display());
            }
            rc
        })
        .clone()
}

pub const PROVIDER_BLOCK: &str = r#"
terraform {
  required_providers {
    artifortress = { source = "artifortress/artifortress" }
  }
}
"#;

/// A Terraform working directory holding one configuration.
pub struct Workdir {
    pub tf: Terraform,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    removed: Vec<String>,
}

/// What a Terraform command printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Whether the output (stdout and stderr) shows `needle`, line breaks aside: see [`shows`].
    pub fn shows(&self, needle: &str) -> bool {
        shows(&self.text(), needle)
    }
}

/// Whether `needle` occurs in `haystack` when every run of whitespace in both counts as one space,
/// and the rule Terraform draws left of a diagnostic (`╷ │ ╵`, without `-no-color`) as whitespace.
/// Terraform wraps diagnostics at the terminal width, so where a phrase breaks depends on the
/// length of what precedes it (a random id one digit shorter moved a break into an expected
/// phrase once).
pub fn shows(haystack: &str, needle: &str) -> bool {
    let flat = |s: &str| {
        s.split(|c: char| c.is_whitespace() || matches!(c, '╷' | '│' | '╵'))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    flat(haystack).contains(&flat(needle))
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Workdir {
    /// A directory with `main.tf` = the required_providers block + `config`, initialised.
    pub fn new(tf: &Terraform, config: &str) -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("af-acc-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("main.tf"),
            format!("{PROVIDER_BLOCK}\n{config}"),
        )
        .unwrap();
        let wd = Workdir {
            tf: tf.clone(),
            dir,
            env: Vec::new(),
            removed: Vec::new(),
        };
        let init = wd.run(&["init", "-input=false", "-no-color"]);
        assert_eq!(
            init.code,
            0,
            "terraform {} init failed:\n{}",
            tf.version,
            init.text()
        );
        wd
    }

    /// Sets a variable in Terraform's (and so the provider's) environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// A file in the working directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Removes an inherited variable from Terraform's (and so the provider's) environment.
    pub fn without_env(mut self, name: &str) -> Self {
        self.removed.push(name.to_string());
        self
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tf.bin.display()))
            .into()
    }

    /// Starts a Terraform command without waiting (stdout and stderr captured).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tf.bin.display()))
    }

    /// Replaces `main.tf` (the required_providers block stays).
    pub fn set_config(&self, config: &str) {
        std::fs::write(self.file("main.tf"), format!("{PROVIDER_BLOCK}\n{config}")).unwrap();
    }

    /// `plan -out` then `show -json` of that plan; panics unless the plan succeeded.
    pub fn plan_json(&self) -> serde_json::Value {
        let plan = self.run(&["plan", "-out=tfplan", "-input=false", "-no-color"]);
        assert_eq!(
            plan.code,
            0,
            "terraform {} plan failed:\n{}",
            self.tf.version,
            plan.text()
        );
        let show = self.run(&["show", "-json", "tfplan"]);
        assert_eq!(show.code, 0, "show -json failed:\n{}", show.text());
        serde_json::from_str(&show.stdout).expect("show -json is JSON")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tf.bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", cli_config())
            .env_remove("TF_LOG")
            .env_remove("TF_LOG_PROVIDER");
        if let Ok(level) = std::env::var("ARTIFORTRESS_TEST_TF_LOG") {
            cmd.env("TF_LOG", level);
        }
        for name in &self.removed {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// Applies, asserts success, then asserts that a second plan is empty.
    pub fn apply_ok(&self) -> Run {
        let run = self.apply();
        assert_eq!(
            run.code,
            0,
            "terraform {} apply failed:\n{}",
            self.tf.version,
            run.text()
        );
        self.assert_plan_empty();
        run
    }

    /// `plan -detailed-exitcode` must exit 0: no changes, no perpetual diff.
    pub fn assert_plan_empty(&self) {
        let plan = self.plan_detailed();
        assert_eq!(
            plan.code,
            0,
            "terraform {}: the plan after apply is not empty (exit {}):\n{}",
            self.tf.version,
            plan.code,
            plan.text()
        );
    }

    pub fn plan_detailed(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"])
    }

    pub fn outputs(&self) -> serde_json::Value {
        let run = self.run(&["output", "-json"]);
        assert_eq!(run.code, 0, "output -json failed:\n{}", run.text());
        serde_json::from_str(&run.stdout).expect("output -json is JSON")
    }

    /// The value of a root output.
    pub fn output(&self, name: &str) -> serde_json::Value {
        self.outputs()[name]["value"].clone()
    }

    pub fn destroy_ok(&self) {
        let run = self.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        assert_eq!(run.code, 0, "destroy failed:\n{}", run.text());
    }
}

/// A test bed API of its own for one test, against the dev environment's PostgreSQL and
/// object storage, with test-only fault switches (`TESTBED_FAULT_*`).
pub fn testbed(faults: &[(&str, &str)]) -> TestbedApi {
    testbed_on(&required_env("ARTIFORTRESS_DATABASE_URL"), faults)
}

/// [`testbed`] on another database (of the dev environment's PostgreSQL).
pub fn testbed_on(database_url: &str, faults: &[(&str, &str)]) -> TestbedApi {
    let mut env = api_env(
        &npgsql(database_url),
        &required_env("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
        vec![
            (
                "ObjectStorage__Endpoint".into(),
                required_env("ARTIFORTRESS_S3_ENDPOINT"),
            ),
            (
                "ObjectStorage__AccessKey".into(),
                required_env("AWS_ACCESS_KEY_ID"),
            ),
            (
                "ObjectStorage__SecretKey".into(),
                required_env("AWS_SECRET_ACCESS_KEY"),
            ),
            (
                "ObjectStorage__Bucket".into(),
                required_env("ARTIFORTRESS_S3_BUCKET"),
            ),
        ],
    );
    env.extend(faults.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_artifortress-testbed-api"));
    TestbedApi::start(&bin, &env).expect("test bed API starts")
}

/// `postgres://user:pass@host:port/db` → Npgsql's `Host=…;Port=…;Username=…;Password=…;Database=…`.
pub fn npgsql(database_url: &str) -> String {
    let u = url::Url::parse(database_url).expect("ARTIFORTRESS_DATABASE_URL is a URL");
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    format!(
        "Host={};Port={};Username={};Password={};Database={}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432),
        decode(u.username()),
        decode(u.password().unwrap_or("")),
        u.path().trim_start_matches('/'),
    )
}

/// A TCP port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    acceptance_tests::support::free_port().unwrap()
}

/// Runs one SQL command with psql (`ARTIFORTRESS_DEV_PG_BIN`'s when set, else PATH's) and
/// returns its unaligned output; panics with psql's stderr on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let bin = std::env::var("ARTIFORTRESS_DEV_PG_BIN")
        .map(|d| PathBuf::from(d).join("psql"))
        .unwrap_or_else(|_| PathBuf::from("psql"));
    let out = Command::new(&bin)
        .arg(url)
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The same PostgreSQL URL naming database `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

#[test]
fn shows_matches_across_terraform_line_wraps_only() {
    let wrapped =
        "│ backup backup-7f3a is 30h old; a production release\n│ needs one younger than 24h";
    assert!(shows(
        wrapped,
        "a production release needs one younger than"
    ));
    assert!(shows(wrapped, "release\nneeds"));
    assert!(!shows(wrapped, "a production release needs one older than"));
    // Whitespace separates words; it is never removed.
    assert!(!shows("a production release", "productionrelease"));
}
