//! The `artifortress` provider: its configuration schema and the registry of types. The
//! settings it configures, and the clients built lazily from them, are in [`crate::settings`].

use std::sync::Arc;

use async_trait::async_trait;

use crate::protocol::diagnostics::Diagnostics;
use crate::protocol::framework::{
    Action, ConfigureRequest, DataSource, EphemeralResource, ListResource, Provider, Resource,
};
use crate::protocol::schema::{Attribute, Constraint, Nesting, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::settings::Settings;
use crate::{actions, data_sources, ephemeral_resources, resources};

pub struct ArtifortressProvider;

#[async_trait]
impl Provider for ArtifortressProvider {
    type Data = Settings;

    fn name(&self) -> &'static str {
        "artifortress"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Drives the deployment of the Artifortress artifact repository: migrations, backups, \
             releases, readiness and backlog gates. Every setting is optional and falls back to \
             an environment variable; a missing setting is reported only by the resource or data \
             source that needs it.",
            vec![
                Attribute::optional("environment", Type::String)
                    .description("The environment this configuration deploys: `staging` or `production`. Production turns on the release gates.")
                    .validate(Validator::OneOf(&["staging", "production"])),
                Attribute::optional("api_url", Type::String)
                    .description("Base URL of the Artifortress API, e.g. `http://127.0.0.1:8086`. Environment: `ARTIFORTRESS_API_URL`.")
                    .validate(Validator::HttpUrl),
                Attribute::optional("admin_token", Type::String)
                    .sensitive()
                    .description("Admin bearer token (a PAT with scope `repo:*:admin`) for the admin endpoints. Environment: `ARTIFORTRESS_ADMIN_TOKEN`."),
                Attribute::optional("admin_token_expires_at", Type::String)
                    .description("When `admin_token` expires (RFC 3339), e.g. `ephemeral.artifortress_admin_token.run.expires_at` beside its `token`. A release whose rollout and watch window could outlast the token is then refused at plan time, with the arithmetic, instead of losing its backlog checks midway."),
                Attribute::optional("bootstrap_token", Type::String)
                    .sensitive()
                    .description("The service's bootstrap token (`Auth__BootstrapToken`), used to mint short-lived tokens. Environment: `ARTIFORTRESS_BOOTSTRAP_TOKEN`."),
                Attribute::optional("database_url", Type::String)
                    .sensitive()
                    .description("PostgreSQL URL (`postgres://user:password@host:5432/db`) of the service's database. Environment: `ARTIFORTRESS_DATABASE_URL`."),
                Attribute::nested(
                    "object_storage",
                    Nesting::Single,
                    Constraint::Optional,
                    vec![
                        Attribute::optional("endpoint", Type::String)
                            .description("S3 endpoint URL. Environment: `ARTIFORTRESS_S3_ENDPOINT`.")
                            .validate(Validator::HttpUrl),
                        Attribute::optional("region", Type::String)
                            .description("S3 region. Environment: `AWS_REGION`; default `us-east-1`."),
                        Attribute::optional("bucket", Type::String)
                            .description("Bucket of this environment. Environment: `ARTIFORTRESS_S3_BUCKET`."),
                        Attribute::optional("access_key_id", Type::String)
                            .description("Access key ID. Environment: `AWS_ACCESS_KEY_ID`."),
                        Attribute::optional("secret_access_key", Type::String)
                            .sensitive()
                            .description("Secret access key. Environment: `AWS_SECRET_ACCESS_KEY`."),
                        Attribute::optional("force_path_style", Type::Bool)
                            .description("Use path-style bucket addressing (default `true`, what most S3-compatible servers need)."),
                    ],
                )
                .description("S3-compatible object storage holding the service's blobs and the backups."),
                Attribute::nested(
                    "ssh",
                    Nesting::Single,
                    Constraint::Optional,
                    vec![
                        Attribute::optional("user", Type::String)
                            .description("Login user on the deploy hosts. Environment: `ARTIFORTRESS_SSH_USER`; default: `$USER`."),
                        Attribute::optional("private_key", Type::String)
                            .sensitive()
                            .description("Private key (OpenSSH or PEM text, unencrypted). Environment: `ARTIFORTRESS_SSH_PRIVATE_KEY`. Unset: the SSH agent at `SSH_AUTH_SOCK` is used."),
                        Attribute::optional("known_hosts", Type::String)
                            .description("known_hosts text (`file(\"known_hosts\")`) the hosts' keys are verified against: `host` and `[host]:port` names, patterns, hashed names, `@revoked`. Environment: `ARTIFORTRESS_SSH_KNOWN_HOSTS`; default: `~/.ssh/known_hosts`. A host whose key is not listed is refused."),
                        Attribute::optional("insecure_ignore_host_key", Type::Bool)
                            .description("Accept any host key (throw-away hosts only): every operation that connects warns."),
                        Attribute::optional("connect_timeout", Type::String)
                            .validate(Validator::Duration { min_millis: 100 })
                            .description("Time limit for connecting, key exchange and authentication (default `30s`)."),
                    ],
                )
                .description("SSH access to the deploy hosts of `artifortress_release` (transport `ssh`). Credentials belong to the provider so that refresh and import, which get no resource configuration, can reach the hosts."),
                Attribute::optional("request_timeout", Type::String)
                    .description("Time limit for one HTTP request to the API, as a duration (default `30s`). Health probes have their own limit instead (`probe_timeout` of `data \"artifortress_readiness\"`, default 5 s; 5 s in release readiness waits). Any answer's body, error bodies included, is read up to 1 MiB (the service's JSON answers are a few KiB); a larger one is an error naming the limit and the URL.")
                    .validate(Validator::Duration { min_millis: 100 }),
            ],
        )
    }

    async fn configure(&self, req: ConfigureRequest<'_>) -> (Option<Settings>, Diagnostics) {
        match Settings::from_config(req.config) {
            Ok(settings) => {
                tracing::debug!(
                    terraform_version = req.terraform_version,
                    api_url = ?settings.api_url,
                    environment = ?settings.environment,
                    "provider configured"
                );
                (Some(settings), Diagnostics::new())
            }
            Err(d) => (None, d.into()),
        }
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource<Settings>>> {
        vec![
            Arc::new(data_sources::backups::Backups),
            Arc::new(data_sources::migrations::Migrations),
            Arc::new(data_sources::ops_summary::OpsSummary),
            Arc::new(data_sources::preflight::Preflight),
            Arc::new(data_sources::readiness::Readiness),
            Arc::new(data_sources::smoke::Smoke),
        ]
    }

    fn resources(&self) -> Vec<Arc<dyn Resource<Settings>>> {
        vec![
            Arc::new(resources::backup::Backup),
            Arc::new(resources::bootstrap::Bootstrap),
            Arc::new(resources::migration::Migration),
            Arc::new(resources::release::Release),
            Arc::new(resources::restore_drill::RestoreDrill),
        ]
    }

    fn ephemeral_resources(&self) -> Vec<Arc<dyn EphemeralResource<Settings>>> {
        vec![Arc::new(ephemeral_resources::admin_token::AdminToken)]
    }

    fn actions(&self) -> Vec<Arc<dyn Action<Settings>>> {
        vec![
            Arc::new(actions::restore_database::RestoreDatabase),
            Arc::new(actions::rollback_release::RollbackRelease),
            Arc::new(actions::run_restore_drill::RunRestoreDrill),
            Arc::new(actions::run_smoke::RunSmoke),
            Arc::new(actions::take_backup::TakeBackup),
        ]
    }

    fn list_resources(&self) -> Vec<Arc<dyn ListResource<Settings>>> {
        vec![
            Arc::new(resources::backup::BackupList),
            Arc::new(resources::release::ReleaseList),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::value::Value;
    use crate::settings::{DATABASE_URL, Setting, require};

    fn config(pairs: &[(&str, Value)]) -> Value {
        let mut v = Value::null_object(&ArtifortressProvider.schema().value_type());
        for (k, val) in pairs {
            v.set_attr(k, val.clone());
        }
        v
    }

    #[test]
    fn the_schema_is_valid() {
        assert!(ArtifortressProvider.schema().check().is_empty());
    }

    #[test]
    fn missing_settings_name_attribute_and_environment_variable() {
        let s = Settings::from_config(&config(&[])).unwrap();
        // The test environment may export the variable; only check the wording when unset.
        if std::env::var("ARTIFORTRESS_DATABASE_URL").is_err() {
            let d = require(&s.database_url, DATABASE_URL, "the database").unwrap_err();
            assert!(d.detail.contains("`database_url`"));
            assert!(d.detail.contains("ARTIFORTRESS_DATABASE_URL"));
        }
    }

    #[test]
    fn unknown_settings_do_not_fail_configure_and_say_why_when_needed() {
        let s = Settings::from_config(&config(&[("api_url", Value::unknown())])).unwrap();
        assert_eq!(s.api_url, Setting::Unknown);
        let d = s.api_client(None).unwrap_err();
        assert!(d.summary.contains("not known yet"), "{}", d.summary);
        // A resource's own URL still works.
        assert!(s.api_client(Some("http://127.0.0.1:1")).is_ok());
    }

    /// Every configurable attribute of a block, with its path, nested attributes and blocks
    /// included.
    fn inputs<'a>(
        block: &'a crate::protocol::schema::Block,
        path: &str,
        out: &mut Vec<(String, &'a crate::protocol::schema::Attribute)>,
    ) {
        fn walk<'a>(
            a: &'a crate::protocol::schema::Attribute,
            path: String,
            out: &mut Vec<(String, &'a crate::protocol::schema::Attribute)>,
        ) {
            if !a.constraint.is_configurable() {
                return;
            }
            if let crate::protocol::schema::AttributeType::Nested { attributes, .. } = &a.ty {
                for n in attributes {
                    walk(n, format!("{path}.{}", n.name), out);
                }
            }
            out.push((path, a));
        }
        for a in &block.attributes {
            walk(a, format!("{path}{}", a.name), out);
        }
        for b in &block.blocks {
            inputs(&b.block, &format!("{path}{}.", b.type_name), out);
        }
    }

    /// Terraform stores a data source's arguments in the state whatever `sensitive` says, and
    /// write-only is not available to data sources: no argument of one may be a secret.
    #[test]
    fn no_data_source_takes_a_secret_argument() {
        let sources = ArtifortressProvider.data_sources();
        assert_eq!(sources.len(), 6, "every data source is checked");
        let mut checked = 0;
        for ds in sources {
            let schema = ds.schema();
            let mut found = Vec::new();
            inputs(&schema.block, "", &mut found);
            assert!(!found.is_empty(), "{} has arguments", ds.type_name());
            for (path, a) in found {
                assert!(
                    !a.sensitive && !a.write_only,
                    "data \"{}\" argument {path} is sensitive or write-only: data source \
                     arguments are stored in the state",
                    ds.type_name()
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "{checked} arguments checked");
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::from_config(&config(&[("admin_token", "hunter2".into())])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
