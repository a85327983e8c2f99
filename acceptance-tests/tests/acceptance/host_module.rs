//! `examples/modules/hosts`: the cloud-init user data it renders, checked with the real tools.
//!
//! The module is rendered by the real Terraform (every Terraform under test; a configuration
//! that only calls the module and outputs what it made: no cloud, no resources). Then, per host:
//!
//! - `cloud-init schema --config-file` (Debian package `cloud-init`) accepts the user data;
//! - `systemd-analyze verify` (package `systemd`) has nothing to say about the units it writes;
//! - `visudo -c -f` (package `sudo`) accepts the sudoers rule it writes;
//!
//! and the pieces fit the provider and the service: the units run the service's dlls from
//! `<deploy_dir>/current` with the env files `artifortress_release` writes, the sudoers rule allows
//! exactly the module's release commands, the deploy user has the given key and no password.
//! Each tool is also shown a broken copy, which it must reject: the checks have teeth.
//!
//! The tools are required: when one is missing the test fails saying how to install it
//! (`scripts/install-deps` installs all three).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::examples::examples_dir;
use crate::harness::{Workdir, terraforms};

const DEPLOY_DIR: &str = "/opt/artifortress";

/// A tool from PATH (or /usr/sbin, /sbin: visudo lives there), or a panic saying how to get it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: the host module check needs it \
                 (apt-get install {package}; scripts/install-deps installs it)"
            )
        })
}

/// Runs a tool: exit code and stdout + stderr.
fn run(bin: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `systemd-analyze verify` of unit files: its complaints, one a line. It exits 0 on most
/// complaints (an unknown key, a bad value: "ignoring"), so its output is what counts. On a
/// machine without the .NET runtime it also says `/usr/bin/dotnet` is not executable (the path
/// Microsoft's `dotnet-host` package installs, which the user data installs): that one line is
/// expected there, and only there.
fn systemd_complaints(analyze: &Path, units: &[PathBuf]) -> Vec<String> {
    let args: Vec<&str> = units.iter().map(|p| p.to_str().unwrap()).collect();
    let mut cmd = Command::new(analyze);
    cmd.arg("verify").args(&args);
    let out = cmd.output().expect("systemd-analyze runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let no_runtime = !Path::new("/usr/bin/dotnet").exists();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(no_runtime
                && l.ends_with(
                    ": Command /usr/bin/dotnet is not executable: No such file or directory",
                ))
        })
        .map(str::to_string)
        .collect()
}

fn ssh_public_key(dir: &Path) -> String {
    let key = dir.join("deploy_ed25519");
    let keygen = tool("ssh-keygen", "openssh-client");
    let (code, out) = run(
        &keygen,
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "deploy@host-module-test",
            "-f",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "ssh-keygen: {out}");
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn config(module: &Path, public_key: &str) -> String {
    format!(
        r#"
module "hosts" {{
  source = "{module}"
  hosts = {{
    "api-1"    = {{ address = "10.0.1.5", role = "api" }}
    "api-2"    = {{ address = "10.0.1.6", port = 2222, role = "api" }}
    "worker-1" = {{ address = "10.0.1.7", role = "worker" }}
  }}
  deploy_authorized_keys = ["{public_key}"]
  worker_processes       = 3
}}

output "user_data" {{ value = module.hosts.user_data }}
output "commands"  {{ value = module.hosts.commands }}
output "hosts"     {{ value = module.hosts.hosts }}
output "api_urls"  {{ value = module.hosts.api_urls }}
# What cloud-init will read, as Terraform's own YAML parser reads it.
output "parsed" {{ value = {{ for name, ud in module.hosts.user_data : name => yamldecode(ud) }} }}
"#,
        module = module.display(),
    )
}

/// The commands a sudoers rule allows (its `Cmnd_Alias`, continuation lines joined).
fn sudoers_commands(sudoers: &str) -> Vec<String> {
    let joined = sudoers.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("Cmnd_Alias ARTIFORTRESS_UNITS = "))
        .unwrap_or_else(|| panic!("no Cmnd_Alias in:\n{sudoers}"));
    line.split_once(" = ")
        .unwrap()
        .1
        .split(',')
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// `Key=value` of a unit file (the first one).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in:\n{unit}"))
}

#[test]
fn host_module_user_data_passes_cloud_init_schema_systemd_analyze_and_visudo() {
    let cloud_init = tool("cloud-init", "cloud-init");
    let analyze = tool("systemd-analyze", "systemd");
    let visudo = tool("visudo", "sudo");
    let module = examples_dir().join("modules/hosts").canonicalize().unwrap();

    for tf in terraforms() {
        let v = tf.version.clone();
        let scratch = tempfile::Builder::new()
            .prefix("af-host-module-")
            .tempdir()
            .unwrap();
        let public_key = ssh_public_key(scratch.path());
        let wd = Workdir::new(&tf, &config(&module, &public_key));
        wd.apply_ok();

        // The outputs other examples consume keep their shape.
        assert_eq!(
            wd.output("api_urls"),
            serde_json::json!({"api-1": "http://10.0.1.5:8086", "api-2": "http://10.0.1.6:8086"}),
            "terraform {v}"
        );
        assert_eq!(
            wd.output("hosts")["api-2"],
            serde_json::json!({"address": "10.0.1.6", "port": 2222, "roles": ["api"], "api_url": "http://10.0.1.6:8086"}),
            "terraform {v}"
        );
        assert_eq!(
            wd.output("hosts")["worker-1"]["api_url"],
            Value::Null,
            "terraform {v}"
        );

        let user_data = wd.output("user_data");
        let parsed = wd.output("parsed");
        let commands = wd.output("commands");
        let command = |k: &str| commands[k].as_str().unwrap().to_string();
        assert_eq!(
            command("worker_status"),
            "systemctl is-active --quiet artifortress-worker@1 && systemctl is-active --quiet \
             artifortress-worker@2 && systemctl is-active --quiet artifortress-worker@3",
            "terraform {v}"
        );

        for (name, role) in [("api-1", "api"), ("api-2", "api"), ("worker-1", "worker")] {
            let ud = user_data[name].as_str().unwrap();
            assert!(
                ud.starts_with("#cloud-config\n"),
                "terraform {v}: {name}:\n{ud}"
            );
            let host_dir = scratch.path().join(name);
            std::fs::create_dir_all(&host_dir).unwrap();

            // cloud-init's own schema check of the whole user data.
            let ud_file = host_dir.join("user-data.yaml");
            std::fs::write(&ud_file, ud).unwrap();
            let (code, out) = run(
                &cloud_init,
                &["schema", "--config-file", ud_file.to_str().unwrap()],
            );
            assert!(
                // 22.4 (Debian 12) says "Valid cloud-config: <file>"; 23.x and later "Valid schema".
                code == 0 && (out.contains("Valid cloud-config") || out.contains("Valid schema")),
                "terraform {v}: cloud-init schema of {name}'s user data: exit {code}:\n{out}\n{ud}"
            );

            // The deploy user: the key, no password, /bin/sh, owner of the deploy dir.
            let p = &parsed[name];
            let deploy = p["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == "deploy")
                .unwrap_or_else(|| panic!("terraform {v}: {name}: no deploy user: {p}"));
            assert_eq!(
                deploy["ssh_authorized_keys"],
                serde_json::json!([public_key])
            );
            assert_eq!(deploy["lock_passwd"], true, "{deploy}");
            assert_eq!(deploy["shell"], "/bin/sh", "{deploy}");
            assert!(
                deploy.get("passwd").is_none() && deploy.get("sudo").is_none(),
                "{deploy}"
            );
            let runcmd = p["runcmd"].to_string();
            assert!(
                runcmd.contains(&format!(
                    r#"["install","-d","-o","deploy","-g","deploy","-m","0755","{DEPLOY_DIR}"]"#
                )),
                "terraform {v}: {name}: {runcmd}"
            );
            // The service targets net10.0 (src/Artifortress.Api/Artifortress.Api.fsproj and
            // src/Artifortress.Worker/Artifortress.Worker.fsproj, line 4 of each) and publishes
            // framework-dependent: the ASP.NET Core 10.0 runtime, from Microsoft's feed.
            assert!(
                runcmd.contains(
                    "https://packages.microsoft.com/config/debian/12/packages-microsoft-prod.deb"
                ) && runcmd.contains("apt-get install -y aspnetcore-runtime-10.0"),
                "terraform {v}: {name}: {runcmd}"
            );

            // Every file it writes, at its own name in a directory of this host.
            let mut units = Vec::new();
            let mut sudoers = None;
            for f in p["write_files"].as_array().unwrap() {
                let path = f["path"].as_str().unwrap();
                let file = host_dir.join(Path::new(path).file_name().unwrap());
                std::fs::write(&file, f["content"].as_str().unwrap()).unwrap();
                if path.starts_with("/etc/systemd/system/") {
                    assert_eq!(f["permissions"], "0644", "{path}");
                    units.push(file);
                } else if path == "/etc/sudoers.d/artifortress-deploy" {
                    assert_eq!(f["permissions"], "0440", "{path}");
                    sudoers = Some(file);
                } else {
                    panic!("terraform {v}: {name} writes an unexpected file {path}");
                }
            }
            let complaints = systemd_complaints(&analyze, &units);
            assert!(
                complaints.is_empty(),
                "terraform {v}: systemd-analyze verify of {name}'s units:\n{}",
                complaints.join("\n")
            );
            let sudoers =
                sudoers.unwrap_or_else(|| panic!("terraform {v}: {name}: no sudoers rule"));
            let (code, out) = run(&visudo, &["-c", "-f", sudoers.to_str().unwrap()]);
            assert_eq!(
                code, 0,
                "terraform {v}: visudo -c of {name}'s sudoers rule: {out}"
            );

            // The units and the rule fit the release: its commands, dlls and env files.
            let read = |f: &str| std::fs::read_to_string(host_dir.join(f)).unwrap();
            let allowed = sudoers_commands(&read("artifortress-deploy"));
            let (role_units, role_commands) = if role == "api" {
                (
                    vec!["artifortress-api.service"],
                    ["restart_api", "stop_api"],
                )
            } else {
                (
                    vec!["artifortress-worker@.service", "artifortress-worker.target"],
                    ["restart_worker", "stop_worker"],
                )
            };
            let mut written: Vec<String> = units
                .iter()
                .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            written.sort();
            let mut expected: Vec<String> = role_units.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(written, expected, "terraform {v}: {name}'s units");
            for k in role_commands {
                let c = command(k);
                let systemctl = c
                    .strip_prefix("sudo -n systemctl ")
                    .unwrap_or_else(|| panic!("{k}: {c}"));
                assert!(
                    allowed.contains(&format!("/usr/bin/systemctl {systemctl}")),
                    "terraform {v}: {name}: `{c}` ({k}) is not allowed by {allowed:?}"
                );
            }
            assert!(
                allowed.iter().all(|c| c.starts_with("/usr/bin/systemctl ")
                    && c.split(' ')
                        .nth(2)
                        .is_some_and(|u| u.starts_with("artifortress-"))
                    && c.split(' ').count() == 3),
                "terraform {v}: {name}: the rule allows more than the units: {allowed:?}"
            );
            if role == "api" {
                let unit = read("artifortress-api.service");
                assert_eq!(
                    unit_value(&unit, "ExecStart"),
                    format!("/usr/bin/dotnet {DEPLOY_DIR}/current/api/Artifortress.Api.dll")
                );
                // Where artifortress_release writes the API's env file (clients/release env_path).
                assert_eq!(
                    unit_value(&unit, "EnvironmentFile"),
                    format!("{DEPLOY_DIR}/shared/api.env")
                );
                let address = wd.output("hosts")[name]["address"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert_eq!(
                    unit_value(&unit, "Environment"),
                    format!("ASPNETCORE_URLS=http://{address}:8086")
                );
                assert_eq!(unit_value(&unit, "User"), "artifortress");
            } else {
                let unit = read("artifortress-worker@.service");
                assert_eq!(
                    unit_value(&unit, "ExecStart"),
                    format!("/usr/bin/dotnet {DEPLOY_DIR}/current/worker/Artifortress.Worker.dll")
                );
                assert_eq!(
                    unit_value(&unit, "EnvironmentFile"),
                    format!("{DEPLOY_DIR}/shared/worker.env")
                );
                assert_eq!(unit_value(&unit, "PartOf"), "artifortress-worker.target");
                assert_eq!(
                    unit_value(&read("artifortress-worker.target"), "Wants"),
                    "artifortress-worker@1.service artifortress-worker@2.service artifortress-worker@3.service"
                );
            }

            // Each tool rejects a broken copy: a wrong type for cloud-init, an unknown unit
            // setting for systemd, a rule for a user without a command for sudo.
            let bad_ud = host_dir.join("bad-user-data.yaml");
            std::fs::write(&bad_ud, format!("{ud}\npackage_update: maybe\n")).unwrap();
            let (code, out) = run(
                &cloud_init,
                &["schema", "--config-file", bad_ud.to_str().unwrap()],
            );
            assert_ne!(code, 0, "cloud-init schema accepted a broken copy: {out}");
            let bad_unit = host_dir.join("broken.service");
            std::fs::write(
                &bad_unit,
                format!(
                    "{}\nNoSuchSetting=1\n",
                    std::fs::read_to_string(&units[0]).unwrap()
                ),
            )
            .unwrap();
            assert!(
                !systemd_complaints(&analyze, &[bad_unit]).is_empty(),
                "systemd-analyze verify had nothing to say about a broken unit"
            );
            let bad_sudoers = host_dir.join("bad-sudoers");
            std::fs::write(&bad_sudoers, "deploy ALL=(root) NOPASSWD:\n").unwrap();
            let (code, out) = run(&visudo, &["-c", "-f", bad_sudoers.to_str().unwrap()]);
            assert_ne!(code, 0, "visudo accepted a broken rule: {out}");
        }
    }
}
