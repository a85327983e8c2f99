//! `api_env_wo` / `worker_env_wo` checked against the service's configuration at plan, with the
//! real Terraform CLIs. Plan only: the checks run at validate, before any host is contacted
//! (`transport = "local"`, hosts that nothing connects to), so no deploy hosts are needed.

use crate::harness::{Workdir, terraforms};

/// A secret that must never show in Terraform's output.
const SECRET: &str = "s3cret-value-never-shown";

/// The release with `api_env_wo` set to the standard keys, `extra` added and `drop` left out,
/// the API host's api_url on `api_port`.
fn config(extra: &[(&str, &str)], drop: &str, api_port: u16) -> String {
    let mut env: Vec<(String, String)> = [
        (
            "ConnectionStrings__Postgres",
            format!("Host=db;Password={SECRET}"),
        ),
        ("ObjectStorage__Endpoint", "http://s3.internal:3900".into()),
        ("ObjectStorage__AccessKey", "GKaccess".into()),
        ("ObjectStorage__SecretKey", SECRET.into()),
        ("ObjectStorage__Bucket", "artifortress".into()),
        ("Auth__BootstrapToken", SECRET.into()),
        ("ASPNETCORE_URLS", "http://{{address}}:8086".into()),
    ]
    .into_iter()
    .filter(|(k, _)| *k != drop)
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env = env
        .iter()
        .map(|(k, v)| {
            // Secrets come from a sensitive variable, as in a real configuration (Terraform
            // shows literal values of the configuration in its diagnostics' source snippets).
            let v = format!("{v:?}").replace(SECRET, "${var.secret}");
            format!("    {k} = {v}\n")
        })
        .collect::<String>();
    format!(
        r#"
provider "artifortress" {{}}

variable "secret" {{
  type      = string
  sensitive = true
  default   = "{SECRET}"
}}

resource "artifortress_release" "r" {{
  version    = "v1"
  artifact   = {{ source = "/nonexistent/artifortress-v1.tar.gz", sha256 = "{sha}" }}
  deploy_dir = "/nonexistent/af-env-check"
  transport  = "local"
  hosts = {{
    "api-1"    = {{ address = "127.0.0.1", roles = ["api"], api_url = "http://127.0.0.1:{api_port}" }}
    "worker-1" = {{ address = "127.0.0.1", roles = ["worker"] }}
  }}
  api_env_wo = {{
{env}  }}
  worker_env_wo = {{ ConnectionStrings__Postgres = "Host=db;Password=${{var.secret}}" }}
  commands = {{
    restart_api    = "true"
    restart_worker = "true"
    worker_status  = "true"
  }}
}}
"#,
        sha = "0".repeat(64),
    )
}

#[test]
fn release_env_is_checked_against_the_service_configuration_at_plan() {
    for tf in terraforms() {
        let wd = Workdir::new(&tf, &config(&[], "", 8086));
        let v = &tf.version;
        let plan = |cfg: String| {
            wd.set_config(&cfg);
            let run = wd.plan_detailed();
            // The default of the variable is in main.tf, never in the output.
            assert!(
                !run.text().contains(SECRET),
                "terraform {v}: a secret in the output:\n{}",
                run.text()
            );
            run
        };
        // The complete env plans (a create: exit 2), without warnings about it.
        let ok = plan(config(&[], "", 8086));
        assert_eq!(ok.code, 2, "terraform {v}:\n{}", ok.text());
        assert!(!ok.shows("does not read"), "terraform {v}:\n{}", ok.text());

        // Required keys: ObjectStorage.fs:103 falls back to a development bucket.
        let run = plan(config(&[], "ObjectStorage__Bucket", 8086));
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Error: The API env misses ObjectStorage__Bucket"),
            "terraform {v}:\n{}",
            run.text()
        );

        // Out of range: ObjectStorage.fs:94-97 takes 60..3600.
        let run = plan(config(
            &[("ObjectStorage__PresignPartTtlSeconds", "7200")],
            "",
            8086,
        ));
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Error: ObjectStorage__PresignPartTtlSeconds = 7200 is out of range")
                && run.shows("The API accepts 60..3600"),
            "terraform {v}:\n{}",
            run.text()
        );

        // appsettings.json:23's bootstrap token.
        let mut cfg = config(&[], "Auth__BootstrapToken", 8086);
        cfg = cfg.replace(
            "  api_env_wo = {\n",
            "  api_env_wo = {\n    Auth__BootstrapToken = \"artifortress-bootstrap\"\n",
        );
        let run = plan(cfg);
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Error: Auth__BootstrapToken is the well-known default"),
            "terraform {v}:\n{}",
            run.text()
        );

        // A misspelt key: a warning naming the key meant; the plan goes on.
        let run = plan(config(&[("ObjectStorage__Bukcet", "other")], "", 8086));
        assert_eq!(run.code, 2, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Warning: The API does not read ObjectStorage__Bukcet")
                && run.shows("did you mean ObjectStorage__Bucket?"),
            "terraform {v}:\n{}",
            run.text()
        );

        // The listen port against the API host's api_url.
        let run = plan(config(&[], "", 9000));
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Error: ASPNETCORE_URLS does not listen on api-1's api_url port")
                && run.shows("api_url is on port 9000")
                && run.shows("listen on port 8086"),
            "terraform {v}:\n{}",
            run.text()
        );

        // A template env files do not have.
        let run = plan(config(&[("Probe", "{{version}}")], "", 8086));
        assert_eq!(run.code, 1, "terraform {v}:\n{}", run.text());
        assert!(
            run.shows("Error: Invalid env template") && run.shows("uses {{version}}"),
            "terraform {v}:\n{}",
            run.text()
        );
    }
}
