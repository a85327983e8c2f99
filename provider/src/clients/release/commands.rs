//! The commands run on the hosts: `{{variable}}` templates, their checking and rendering
//! (values shell-quoted), and running one on a host.

use std::collections::BTreeMap;

use super::{Deployment, Host, ReleaseError, Role};
use crate::clients::hosts;

/// Commands run on the hosts, templated with `{{release_dir}}`, `{{version}}`, `{{host}}`,
/// `{{role}}`, `{{address}}`, `{{deploy_dir}}` and `{{instance}}` (each substituted
/// shell-quoted). A worker's commands run once per process, `{{instance}}` 1 to
/// `worker_processes`; everything else runs once, with `{{instance}}` 1.
#[derive(Clone, Debug, Default)]
pub struct Commands {
    pub restart: BTreeMap<Role, String>,
    pub stop: BTreeMap<Role, String>,
    pub worker_status: Option<String>,
}

pub const TEMPLATE_VARIABLES: [&str; 7] = [
    "release_dir",
    "version",
    "host",
    "role",
    "address",
    "deploy_dir",
    "instance",
];

/// The `{{variables}}` an env value may use: what is fixed per host and role, expanded when the
/// host's env file is written (so a per-host listen address needs no command prefix). Not the
/// version or release dir: the env file outlives a release (a rollback keeps it).
pub const ENV_TEMPLATE_VARIABLES: [&str; 4] = ["host", "role", "address", "deploy_dir"];

/// Checks that a command only uses known `{{variables}}`.
pub fn check_template(command: &str) -> Result<(), ReleaseError> {
    let mut rest = command;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err(ReleaseError::UnclosedTemplate);
        };
        let name = after[..j].trim();
        if !TEMPLATE_VARIABLES.contains(&name) {
            return Err(ReleaseError::UnknownTemplateVariable {
                name: name.to_string(),
            });
        }
        rest = &after[j + 2..];
    }
    Ok(())
}

/// Checks that an env value only uses the `{{variables}}` of [`ENV_TEMPLATE_VARIABLES`]. Values
/// are secrets: only `{{name}}` with an identifier inside is a template (anything else, an
/// unclosed `{{` included, is literal text a password may hold), and the error names the
/// variable only when it is a command variable (not secret), never other text of the value.
pub fn check_env_template(value: &str) -> Result<(), ReleaseError> {
    let is_ident = |n: &str| {
        n.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let mut rest = value;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Ok(());
        };
        let name = after[..j].trim();
        if is_ident(name) && !ENV_TEMPLATE_VARIABLES.contains(&name) {
            return Err(ReleaseError::UnknownEnvTemplateVariable {
                name: if TEMPLATE_VARIABLES.contains(&name) {
                    name.to_string()
                } else {
                    "...".to_string()
                },
            });
        }
        rest = &after[j + 2..];
    }
    Ok(())
}

/// Whether `template` uses the variable `name` (`{{name}}`, spaces inside the braces allowed).
pub fn template_uses(template: &str, name: &str) -> bool {
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return false;
        };
        if after[..j].trim() == name {
            return true;
        }
        rest = &after[j + 2..];
    }
    false
}

/// Substitutes the template variables (values shell-quoted).
pub fn render(command: &str, vars: &[(&str, &str)]) -> String {
    substitute(command, vars, true)
}

/// `role`'s env for `host`: each value with the [`ENV_TEMPLATE_VARIABLES`] substituted as they
/// are (an env file takes values literally; no shell reads them).
pub fn host_env(
    env: &BTreeMap<String, String>,
    deploy_dir: &str,
    host: &str,
    address: &str,
    role: Role,
) -> BTreeMap<String, String> {
    let vars = [
        ("host", host),
        ("role", role.as_str()),
        ("address", address),
        ("deploy_dir", deploy_dir.trim_end_matches('/')),
    ];
    env.iter()
        .map(|(k, v)| (k.clone(), substitute(v, &vars, false)))
        .collect()
}

fn substitute(command: &str, vars: &[(&str, &str)], quote: bool) -> String {
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                let name = after[..j].trim();
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) if quote => out.push_str(&hosts::shell_quote(v)),
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[i..i + 2 + j + 2]),
                }
                rest = &after[j + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl Deployment {
    /// The template variables for a command; a variable that has no value (no version known
    /// for the host) is empty.
    fn vars<'a>(
        &'a self,
        host: &'a Host,
        version: &'a str,
        role: Role,
        instance: u32,
    ) -> Vec<(&'a str, String)> {
        let d = self.deploy_dir.trim_end_matches('/');
        vec![
            (
                "release_dir",
                if version.is_empty() {
                    String::new()
                } else {
                    format!("{d}/{}/{version}", hosts::RELEASES_DIR)
                },
            ),
            ("version", version.to_string()),
            ("host", host.name.clone()),
            ("role", role.as_str().to_string()),
            ("address", host.address.clone()),
            ("deploy_dir", d.to_string()),
            ("instance", instance.to_string()),
        ]
    }

    /// The command `template` stands for on `host`; an error instead of a command built from
    /// an empty value (`releases//bin/...` on a host with no release).
    #[cfg(test)]
    pub(super) fn command(
        &self,
        template: &str,
        host: &Host,
        version: &str,
        role: Role,
    ) -> Result<String, ReleaseError> {
        self.instance_command(template, host, version, role, 1)
    }

    /// The commands `template` stands for on `host` for `role`: one per worker process
    /// (`{{instance}}` 1 to `worker_processes`), one for the API.
    pub(super) fn role_commands(
        &self,
        template: &str,
        host: &Host,
        version: &str,
        role: Role,
    ) -> Result<Vec<String>, ReleaseError> {
        let n = match role {
            Role::Api => 1,
            Role::Worker => self.worker_processes.max(1),
        };
        (1..=n)
            .map(|i| self.instance_command(template, host, version, role, i))
            .collect()
    }

    /// Runs commands one after the other, stopping at the first that fails: one command on
    /// the host (a stopping [`hosts::Batch`]) whatever their number (`worker_processes`).
    pub(super) async fn run_all(
        &self,
        host: &Host,
        commands: &[String],
    ) -> Result<(), ReleaseError> {
        match commands {
            [] => Ok(()),
            [one] => self.run(host, one).await.map(drop),
            many => {
                let t = &*host.transport;
                let mut batch = hosts::Batch::stopping_at_failure();
                for c in many {
                    batch.push(
                        "command",
                        super::deploy::user_command(c),
                        t.timeouts().command,
                    );
                }
                let ran = batch.run(t).await;
                for (i, c) in many.iter().enumerate() {
                    match ran.output(i) {
                        None => break,
                        Some(Err(e)) => return Err(ReleaseError::Host(e)),
                        Some(Ok(out)) if !out.success() => {
                            return Err(ReleaseError::CommandFailed {
                                command: c.clone(),
                                status: out.status_text(),
                                stderr: out.stderr_text(),
                            });
                        }
                        Some(Ok(_)) => {}
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) fn instance_command(
        &self,
        template: &str,
        host: &Host,
        version: &str,
        role: Role,
        instance: u32,
    ) -> Result<String, ReleaseError> {
        let vars = self.vars(host, version, role, instance);
        if let Some((name, _)) = vars
            .iter()
            .find(|(k, v)| v.is_empty() && template_uses(template, k))
        {
            return Err(ReleaseError::CommandWithoutValue {
                template: template.to_string(),
                variable: name.to_string(),
                host: host.name.clone(),
            });
        }
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ok(render(template, &refs))
    }

    /// Runs a command; a non-zero exit is an error with its stderr.
    pub(super) async fn run(&self, host: &Host, command: &str) -> Result<String, ReleaseError> {
        let t = &host.transport;
        match t.exec(command, None, t.timeouts().command).await {
            Ok(out) if out.success() => Ok(out.stdout_text()),
            Ok(out) => Err(ReleaseError::CommandFailed {
                command: command.to_string(),
                status: out.status_text(),
                stderr: out.stderr_text().trim().to_string(),
            }),
            Err(e) => Err(ReleaseError::Host(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::clients::release::Strategy;

    #[test]
    fn templates_substitute_known_variables_quoted() {
        let cmd = render(
            "{{release_dir}}/bin/artifortress restart {{role}} # {{host}} {{nope}}",
            &[
                ("release_dir", "/opt/a b/releases/v1"),
                ("role", "api"),
                ("host", "api-1"),
            ],
        );
        assert_eq!(
            cmd,
            "'/opt/a b/releases/v1'/bin/artifortress restart api # api-1 {{nope}}"
        );
        assert!(check_template("x {{ version }} {{address}}").is_ok());
        assert!(
            check_template("x {{nope}}")
                .unwrap_err()
                .to_string()
                .contains("{{nope}}")
        );
        assert!(check_template("x {{version").is_err());
    }

    #[test]
    fn env_values_expand_per_host_unquoted() {
        let env = BTreeMap::from([
            (
                "ASPNETCORE_URLS".to_string(),
                "http://{{ address }}:8086".to_string(),
            ),
            (
                "Other".to_string(),
                "{{host}}/{{role}} in {{deploy_dir}}".to_string(),
            ),
        ]);
        let e = host_env(&env, "/opt/a b/", "api-1", "10.0.0.1", Role::Api);
        assert_eq!(e["ASPNETCORE_URLS"], "http://10.0.0.1:8086");
        assert_eq!(e["Other"], "api-1/api in /opt/a b");
        assert!(check_env_template("http://{{address}}:1").is_ok());
        let err = check_env_template("{{release_dir}}/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("{{release_dir}}"), "{err}");
        // Text of a secret is never echoed; braces that are no template are literal.
        let err = check_env_template("pw{{s3cret}}").unwrap_err().to_string();
        assert!(!err.contains("s3cret") && err.contains("{{...}}"), "{err}");
        assert!(check_env_template("{{address").is_ok());
        assert!(check_env_template("a{{!x y}}b{{").is_ok());
        let e = host_env(
            &BTreeMap::from([("K".to_string(), "a{{!x}}b{{".to_string())]),
            "/d",
            "h",
            "1.2.3.4",
            Role::Api,
        );
        assert_eq!(e["K"], "a{{!x}}b{{");
    }

    #[test]
    fn commands_are_never_built_from_an_empty_version() {
        let d = Deployment {
            deploy_dir: "/opt/af".into(),
            hosts: Vec::new(),
            commands: Commands::default(),
            strategy: Strategy::default(),
            lock_owner: "test".into(),
            cancel: CancellationToken::new(),
            worker_processes: 3,
            smoke_token: None,
        };
        let host = Host {
            name: "api-2".into(),
            address: "10.0.0.2".into(),
            transport: Arc::new(hosts::LocalTransport::new(hosts::Timeouts::default())),
            roles: vec![Role::Api],
            api: None,
        };
        let stop = "{{release_dir}}/bin/artifortress stop {{role}}";
        assert_eq!(
            d.command(stop, &host, "v1", Role::Api).unwrap(),
            "/opt/af/releases/v1/bin/artifortress stop api"
        );
        let e = d
            .command(stop, &host, "", Role::Api)
            .unwrap_err()
            .to_string();
        assert!(e.contains("{{release_dir}}") && e.contains("api-2"), "{e}");
        let e = d
            .command("systemctl stop af@{{ version }}", &host, "", Role::Api)
            .unwrap_err()
            .to_string();
        assert!(e.contains("{{version}}"), "{e}");
        // A template that does not use the version runs without one.
        assert_eq!(
            d.command("systemctl stop artifortress-{{role}}", &host, "", Role::Api)
                .unwrap(),
            "systemctl stop artifortress-api"
        );
        assert!(template_uses("a {{ version }} b", "version"));
        // A worker's commands run once per process.
        assert_eq!(
            d.role_commands("stop af-{{role}}@{{instance}}", &host, "v1", Role::Worker)
                .unwrap(),
            ["stop af-worker@1", "stop af-worker@2", "stop af-worker@3"]
        );
        assert_eq!(
            d.role_commands("stop af-{{role}}@{{instance}}", &host, "v1", Role::Api)
                .unwrap(),
            ["stop af-api@1"]
        );
        assert!(!template_uses("a {{versions}} {{version", "version"));
    }
}
