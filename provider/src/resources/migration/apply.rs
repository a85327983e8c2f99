//! Create and update of `artifortress_migration`: lock, re-plan under the lock, run what is
//! pending, record the truth.

use std::time::Duration;

use super::{DEFAULT_APPLY_TIMEOUT, MigrationModel, resource_inputs};
use crate::clients::migrations::{self, MigrationError, Migrator};
use crate::clients::pg;
use crate::duration;
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{self, ApplyRequest, ApplyResponse, Stopped};
use crate::protocol::model::ModelError;
use crate::protocol::value::Value;
use crate::settings::Settings;
use crate::shared::edits::write_changes;
use crate::shared::migrations::{Observation, config_classes, error_diagnostic, load_files};

/// Create and update: lock, re-plan under the lock, run what is pending, record the truth.
pub(super) async fn apply(
    req: ApplyRequest<'_, Settings>,
    resp: &mut ApplyResponse,
    operation: &str,
) {
    let (config, settings) = (req.config, req.provider);
    let models = (|| {
        Ok::<_, ModelError>((
            MigrationModel::from_config(config)?,
            MigrationModel::planned(config)?,
        ))
    })();
    let (cfg, planned_cfg) = match models {
        Ok(m) => m,
        Err(e) => {
            return resp
                .diagnostics
                .push(e.diagnostic("Invalid migration configuration"));
        }
    };
    let url = match settings
        .need_database_url(&Value::opt_string(cfg.database_url.clone()), "database_url")
    {
        Ok(u) => u,
        Err(d) => return resp.diagnostics.push(d),
    };
    let files = match load_files(cfg.dir.as_deref(), &config_classes(config)) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return resp.diagnostics.push(Diagnostic::provider_bug(
                "No migration directory",
                "dir is null",
            ));
        }
        Err(f) => return resp.diagnostics.extend(f.diagnostics),
    };
    let id = match pg::database_identity(&url).map_err(MigrationError::from) {
        Ok(id) => id,
        Err(e) => {
            return resp
                .diagnostics
                .extend(error_diagnostic("Invalid database URL", &e));
        }
    };
    // Validated by the attribute, so it parses.
    let lock_timeout = match duration::parse(&cfg.lock_timeout) {
        Ok(d) => d,
        Err(e) => {
            return resp.diagnostics.push(
                Diagnostic::provider_bug(
                    "Invalid lock_timeout",
                    format!("{:?} is not a duration: {e}", cfg.lock_timeout),
                )
                .at_attr("lock_timeout"),
            );
        }
    };
    let inputs = resource_inputs(config, &planned_cfg, settings);
    let mut migrator = match Migrator::connect(&url, settings.request_timeout).await {
        Ok(m) => m,
        Err(e) => {
            return resp
                .diagnostics
                .extend(error_diagnostic("Cannot connect to the database", &e));
        }
    };
    let limit = framework::timeout(config, operation, DEFAULT_APPLY_TIMEOUT);
    let pid = migrator.backend_pid();
    let by = applied_by();
    let (session, files_ref, inputs_ref, by_ref, url_ref) =
        (&mut migrator, &files, &inputs, &by, &url);
    let (result, stopped) = framework::run_bounded(
        req.ctx,
        limit,
        |stop| async move {
            session
                .apply(files_ref, inputs_ref, lock_timeout, by_ref, &stop)
                .await
        },
        |why| async move {
            // Stop between files, and cancel the statement running now: its transaction
            // rolls back (a no-transaction file keeps its dirty marker).
            let reason = stop_reason(why, operation, limit);
            tracing::warn!(reason = reason.as_str(), pid, "stopping the migration");
            if let Err(e) = migrations::cancel_backend(url_ref, pid, settings.request_timeout).await
            {
                tracing::warn!(error = %e, "could not cancel the running statement");
            }
        },
    )
    .await;
    let stopped = stopped.map(|why| stop_reason(why, operation, limit));
    let observed = Observation::with(&mut migrator, id, Some(files), &inputs).await;
    migrator.close().await;
    match result {
        Ok(report) => {
            tracing::info!(
                applied = report.applied.len(),
                adopted = report.adopted.len(),
                accepted = report.accepted.len(),
                baselined = report.baselined.len(),
                head = report.head.as_deref().unwrap_or(""),
                "migrations applied"
            );
        }
        Err(e) => {
            let summary = match (&e, &stopped) {
                (_, Some(_)) => "Migration stopped",
                (MigrationError::MigrationFailed(_), _) => "Migration failed",
                (MigrationError::LockTimeout { .. }, _) => "Migration lock not acquired",
                (MigrationError::Plan { .. }, _) => "Migrations cannot be applied",
                _ => "Applying migrations failed",
            };
            let mut diags = error_diagnostic(summary, &e);
            if let Some(reason) = &stopped {
                for d in &mut diags.0 {
                    d.detail = format!("Stopped by {reason}. {}", d.detail);
                }
            }
            resp.diagnostics.extend(diags);
        }
    }
    match observed {
        Ok(obs) => {
            // On a failed create nothing is kept in state: the next plan reads the database
            // again. A failed update records what the database now holds.
            if !(resp.diagnostics.has_errors() && req.prior_state.is_null()) {
                let mut state = req.planned_state.clone();
                obs.write_now(&mut state);
                if let Ok(u) = pg::without_password(&url) {
                    let before = match MigrationModel::from_config(&state) {
                        Ok(m) => m,
                        Err(e) => {
                            return resp
                                .diagnostics
                                .push(e.diagnostic("Invalid migration state"));
                        }
                    };
                    let mut after = before.clone();
                    after.connection_url = Some(u);
                    write_changes(&mut state, &MigrationModel::object_type(), &before, &after);
                }
                resp.new_state = state;
                resp.private = obs.private().encode();
            }
        }
        Err(e) => resp.diagnostics.extend(error_diagnostic(
            "Cannot read the migration ledger after apply",
            &e,
        )),
    }
}

/// Why an apply was stopped, in the words of its error.
fn stop_reason(why: Stopped, operation: &str, limit: Duration) -> String {
    match why {
        Stopped::TimedOut => format!("the {operation} timeout ({})", duration::format(limit)),
        Stopped::Interrupted => "an interrupt (Terraform was cancelled)".to_string(),
    }
}

fn applied_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{user}@{host} (terraform-provider-artifortress {})",
        env!("CARGO_PKG_VERSION")
    )
}
