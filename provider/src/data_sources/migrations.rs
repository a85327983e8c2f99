//! `data "artifortress_migrations"`: the migration state of a database (applied, pending, head,
//! dirty, problems) without changing anything, for `check` blocks, gates and CI.

use async_trait::async_trait;

use crate::clients::migrations::SMOKE_TABLES;
use crate::clients::pg;
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::model::Maybe;
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::migrations::{
    Observation, classes_attribute, config_classes, load_files, plan_inputs, validate_classes,
    view_attributes,
};

pub const TYPE_NAME: &str = "artifortress_migrations";

crate::model! {
    /// `data "artifortress_migrations"` as configured and read, without the attributes of the
    /// database view it shares with `resource "artifortress_migration"` (those are written by
    /// [`Observation::write_now`]).
    pub(crate) struct MigrationsModel {
        dir: Option<String> = Attribute::optional("dir", Type::String)
            .description("Directory of the migration files. Without it only the ledger is read: `pending` is empty and edited or missing files are not detected."),
        database_url: Option<String> = Attribute::optional("database_url", Type::String)
            .description("PostgreSQL URL of the database, **without password**: a data source's arguments are stored in the state, so a URL with a password (`user:password@` or a `password=` parameter) is refused at validate. The password comes from `PGPASSWORD` or `~/.pgpass`. Default: the provider's `database_url` (which may carry a password: provider arguments are never stored); for another database with a password, use an aliased provider (`provider = artifortress.other`)."),
        target_version: Option<String> = Attribute::optional("target_version", Type::String)
            .description("Count files up to and including this version as pending. Default: the newest file."),
        baseline_version: Option<String> = Attribute::optional("baseline_version", Type::String)
            .description("As in `artifortress_migration`: on a non-empty database without ledger rows, the files up to this version count as applied."),
        accept_checksums: Value =
            Attribute::optional("accept_checksums", Type::map(Type::String))
                .description("As in `artifortress_migration`: accepted checksums of deliberately edited applied files."),
        classes: Value = classes_attribute(),
        required_tables: Option<Vec<String>> = Attribute::computed("required_tables", Type::list(Type::String))
            .description("The tables the service's schema smoke check requires, in its order: `scripts/db-smoke.sh` of Artifortress (`make db-smoke`, run after `make db-migrate`): `schema_migrations`, `tenants`, `repos`, `packages`, `blobs`, `package_versions`, `artifact_entries`, `audit_log`, `outbox_events`."),
        missing_tables: Option<Vec<String>> = Attribute::computed("missing_tables", Type::list(Type::String))
            .description("Which of `required_tables` the database lacks now, checked as the script does (`to_regclass('public.<table>') is not null`). Reported, never a read error (as `problems` are): empty once the service's migrations are applied; where the script would fail (`Missing required table: …`), assert `length(…missing_tables) == 0` in a `check` or a `postcondition`. Not part of `problems` nor `up_to_date`, which are about the migrations."),
        dirty: Option<Vec<String>> = Attribute::computed("dirty", Type::list(Type::String))
            .description("Versions run outside a transaction that started and did not finish (the sidecar's dirty marker). Each is also a problem."),
        problems: Option<Vec<Problem>> =
            Attribute::computed("problems", Type::list(Problem::object_type()))
                .description("Why `artifortress_migration` would refuse to plan: edited applied files, applied versions without a file, dirty versions, a non-empty database without ledger."),
        up_to_date: Option<bool> = Attribute::computed("up_to_date", Type::Bool)
            .description("Nothing pending and no problem: the database is at the target."),
    }
}

crate::model! {
    /// One element of `problems`.
    pub(crate) struct Problem {
        summary: String = Attribute::computed("summary", Type::String),
        detail: String = Attribute::computed("detail", Type::String),
    }
}

pub struct Migrations;

#[async_trait]
impl DataSource<Settings> for Migrations {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        let mut attributes = MigrationsModel::attributes();
        attributes.extend(view_attributes());
        Schema::new(
            0,
            "Reads the migration state of the service's database without changing anything: \
             the ledger, what would run, edited or missing files, dirty markers. Never fails on \
             those (they are reported in `problems`), only when the database or the directory \
             cannot be read, or when the configuration is wrong (a bad `classes` entry), so it \
             suits `check` blocks and CI gates. Also runs the service's schema smoke check \
             (`scripts/db-smoke.sh`): `missing_tables`.",
            attributes,
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = validate_classes(config);
        match MigrationsModel::planned(config) {
            Ok(m) => {
                if let Maybe::Known(Some(url)) = &m.database_url
                    && pg::carries_password(url)
                {
                    diags.push(password_refused());
                }
            }
            Err(e) => diags.push(e.diagnostic("Validating data \"artifortress_migrations\"")),
        }
        diags
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let mut model = match MigrationsModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => return resp.diagnostics.push(e.diagnostic("Reading migrations")),
        };
        // Validate refuses it already; a value only known at read (from another resource) is
        // refused here, before it is stored.
        if model
            .database_url
            .as_deref()
            .is_some_and(pg::carries_password)
        {
            return resp.diagnostics.push(password_refused());
        }
        let url = match req.provider.need_database_url(
            &Value::opt_string(model.database_url.clone()),
            "database_url",
        ) {
            Ok(u) => u,
            Err(d) => return resp.diagnostics.push(d),
        };
        // Shared with `resource "artifortress_migration"`, which reads the same arguments.
        let inputs = plan_inputs(req.config);
        let files = match load_files(model.dir.as_deref(), &config_classes(req.config)) {
            Ok(files) => files,
            Err(f) => return resp.diagnostics.extend(f.diagnostics),
        };
        let obs = tokio::select! {
            o = Observation::take_with_missing_tables(
                &url,
                files,
                &inputs,
                req.provider.request_timeout,
                &SMOKE_TABLES,
            ) => o,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error(
                    "Reading migrations cancelled",
                    "Terraform was interrupted while reading the migration ledger.",
                ));
            }
        };
        let (obs, missing_tables) = match obs {
            Ok(o) => o,
            Err(f) => return resp.diagnostics.extend(f.diagnostics),
        };
        let problems: Vec<Problem> = match &obs.plan {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .iter()
                .map(|p| Problem {
                    summary: p.summary(),
                    detail: p.detail(),
                })
                .collect(),
        };
        model.up_to_date = Some(problems.is_empty() && obs.pending().is_empty());
        model.dirty = Some(obs.dirty_versions());
        model.problems = Some(problems);
        model.required_tables = Some(SMOKE_TABLES.iter().map(|t| t.to_string()).collect());
        model.missing_tables = Some(missing_tables);
        let mut state = model.to_object();
        obs.write_now(&mut state);
        resp.state = state;
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(Migrations.schema().check().is_empty());
    }
}
