//! `data "artifortress_migrations"`: the migration state of a database (applied, pending, head,
//! dirty, problems) without changing anything, for `check` blocks, gates and CI.

use async_trait::async_trait;

use crate::clients::pg;
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::migrations::{Observation, load_files, plan_inputs, view_attributes};

pub const TYPE_NAME: &str = "artifortress_migrations";

pub struct Migrations;

/// A data source's arguments are saved in the state (whatever `sensitive` says), so its URL
/// may not carry a password.
fn password_refused() -> Diagnostic {
    Diagnostic::error(
        "Password in a data source argument",
        "database_url of data \"artifortress_migrations\" carries a password (user:password@ \
         or a password= parameter). Terraform stores a data source's arguments in the state, \
         so the password would be saved there. Instead: leave database_url unset to use the \
         provider's database_url (provider arguments are never stored); or, for another \
         database, set provider = an aliased artifortress provider whose database_url has the \
         password; or give the URL without its password and put the password in PGPASSWORD \
         or ~/.pgpass.",
    )
    .at_attr("database_url")
}

#[async_trait]
impl DataSource<Settings> for Migrations {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        let mut attributes = vec![
            Attribute::optional("dir", Type::String)
                .description("Directory of the migration files. Without it only the ledger is read: `pending` is empty and edited or missing files are not detected."),
            Attribute::optional("database_url", Type::String)
                .description("PostgreSQL URL of the database, **without password**: a data source's arguments are stored in the state, so a URL with a password (`user:password@` or a `password=` parameter) is refused at validate. The password comes from `PGPASSWORD` or `~/.pgpass`. Default: the provider's `database_url` (which may carry a password: provider arguments are never stored); for another database with a password, use an aliased provider (`provider = artifortress.other`)."),
            Attribute::optional("target_version", Type::String)
                .description("Count files up to and including this version as pending. Default: the newest file."),
            Attribute::optional("baseline_version", Type::String)
                .description("As in `artifortress_migration`: on a non-empty database without ledger rows, the files up to this version count as applied."),
            Attribute::optional("accept_checksums", Type::map(Type::String))
                .description("As in `artifortress_migration`: accepted checksums of deliberately edited applied files."),
            Attribute::computed("dirty", Type::list(Type::String))
                .description("Versions run outside a transaction that started and did not finish (the sidecar's dirty marker). Each is also a problem."),
            Attribute::computed("problems", Type::list(Type::object([("summary", Type::String), ("detail", Type::String)])))
                .description("Why `artifortress_migration` would refuse to plan: edited applied files, applied versions without a file, dirty versions, a non-empty database without ledger."),
            Attribute::computed("up_to_date", Type::Bool)
                .description("Nothing pending and no problem: the database is at the target."),
        ];
        attributes.extend(view_attributes());
        Schema::new(
            0,
            "Reads the migration state of the service's database without changing anything: \
             the ledger, what would run, edited or missing files, dirty markers. Never fails on \
             those (they are reported in `problems`), only when the database or the directory \
             cannot be read, so it suits `check` blocks and CI gates.",
            attributes,
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(url) = config.attr("database_url").as_str()
            && pg::carries_password(url)
        {
            diags.push(password_refused());
        }
        diags
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let config = req.config;
        // Validate refuses it already; a value only known at read (from another resource) is
        // refused here, before it is stored.
        if config
            .attr("database_url")
            .as_str()
            .is_some_and(pg::carries_password)
        {
            return resp.diagnostics.push(password_refused());
        }
        let url = match req
            .provider
            .need_database_url(config.attr("database_url"), "database_url")
        {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        let inputs = plan_inputs(config);
        let files = match load_files(config.attr("dir").as_str()) {
            Ok(files) => files,
            Err(f) => return resp.diagnostics.extend(f.diagnostics),
        };
        let obs = tokio::select! {
            o = Observation::take(&url, files, &inputs, req.provider.request_timeout) => o,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error(
                    "Reading migrations cancelled",
                    "Terraform was interrupted while reading the migration ledger.",
                ));
            }
        };
        let obs = match obs {
            Ok(o) => o,
            Err(f) => return resp.diagnostics.extend(f.diagnostics),
        };
        let state = &mut resp.state;
        obs.write_now(state);
        let problems: Vec<Value> = match &obs.plan {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .iter()
                .map(|p| {
                    Value::object([
                        ("summary", Value::String(p.summary())),
                        ("detail", Value::String(p.detail())),
                    ])
                })
                .collect(),
        };
        state.set_attr(
            "up_to_date",
            Value::Bool(problems.is_empty() && obs.pending().is_empty()),
        );
        state.set_attr(
            "dirty",
            Value::List(
                obs.dirty_versions()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        );
        state.set_attr("problems", Value::List(problems));
    }
}
