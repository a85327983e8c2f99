//! The two ways `artifortress_migration` plans: from the refreshed state and what Read found
//! (database inputs unchanged), or by reading the database and the directory itself.

use std::collections::{BTreeMap, BTreeSet};

use super::private::Private;
use super::{MigrationModel, PendingModel, known};
use crate::clients::migrations::{
    self, MigrationClass, MigrationPlan, PendingMigration, PlanInputs,
};
use crate::clients::pg;
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::ModifyPlanResponse;
use crate::protocol::model::{Maybe, Planned, ToValue};
use crate::protocol::types::Type;
use crate::settings::Settings;
use crate::shared::migrations::{Observation, load_files, problem_diagnostic};

/// Plan from the refreshed prior state and what Read found (database inputs unchanged).
pub(super) fn from_refresh(
    prior: &MigrationModel,
    inputs: &PlanInputs,
    private: &Private,
    planned: &mut MigrationModel<Planned>,
    resp: &mut ModifyPlanResponse,
) {
    for p in &private.problems {
        resp.diagnostics.push(p.diagnostic());
    }
    if !private.problems.is_empty() {
        return;
    }
    let pending: Vec<PendingMigration> = prior
        .pending
        .iter()
        .flatten()
        .map(PendingModel::migration)
        .collect();
    check_policy(inputs, &pending, resp);
    planned.id = known(prior.id.clone());
    planned.connection_url = known(prior.connection_url.clone());
    planned.applied_versions = known(prior.applied_versions.clone());
    planned.pending = known(prior.pending.clone());
    planned.head = known(prior.head.clone());
    planned.checksums = known(prior.checksums.clone());
    planned.applied_classes = known(prior.applied_classes.clone());
    planned.last_applied_at = known(prior.last_applied_at.clone());
    if let Some(after) = &private.after {
        let unchanged = pending.is_empty()
            && prior.head.as_deref() == after.head.as_deref()
            && prior.applied_versions.as_ref() == Some(&after.applied_versions)
            && prior.checksums.as_ref() == Some(&after.checksums)
            // A state or private state from before `applied_classes` existed: the next
            // refresh fills it in; it is no reason to plan a change.
            && (prior.applied_classes.is_none()
                || after.applied_classes.is_none()
                || prior.applied_classes == after.applied_classes);
        if !unchanged {
            after.write(planned, prior.last_applied_at.clone());
        }
    }
}

/// Plan by reading the database and the directory (create, or changed database inputs).
pub(super) async fn by_reading(
    config: &MigrationModel<Planned>,
    prior: Option<&MigrationModel>,
    settings: &Settings,
    inputs: &PlanInputs,
    classes: &BTreeMap<String, MigrationClass>,
    planned: &mut MigrationModel<Planned>,
    resp: &mut ModifyPlanResponse,
) {
    let url = match settings.database_url_for(&config.database_url.to_value(&Type::String)) {
        Ok(u) => u,
        Err(d) => return resp.diagnostics.push(d.at_attr("database_url")),
    };
    if let Some(u) = &url
        && let Ok(id) = pg::database_identity(u)
    {
        planned.id = Maybe::Known(Some(id));
    }
    planned.connection_url = match url.as_deref().map(pg::without_password) {
        Some(Ok(u)) => Maybe::Known(Some(u)),
        _ => Maybe::Unknown,
    };
    let known = !config.dir.is_unknown()
        && !config.database_url.is_unknown()
        && !config.target_version.is_unknown()
        && !config.baseline_version.is_unknown()
        && wholly_known(&config.accept_checksums)
        && wholly_known(&config.classes);
    let Some(url) = url.filter(|_| known) else {
        tracing::debug!("migration inputs not known yet; results known after apply");
        return;
    };
    let dir = config.dir.known().cloned().flatten();
    let files = match load_files(dir.as_deref(), classes) {
        Ok(files) => files,
        Err(f) => return resp.diagnostics.extend(f.diagnostics),
    };
    let obs = match Observation::take(&url, files, inputs, settings.request_timeout).await {
        Ok(obs) => obs,
        Err(f) if f.unreachable && prior.is_none() => {
            // Typical for a database created in the same apply under a known URL.
            let detail = f
                .diagnostics
                .0
                .iter()
                .map(|d| d.detail.clone())
                .collect::<Vec<_>>()
                .join("; ");
            resp.diagnostics.push(
                Diagnostic::warning(
                    "Database not reachable at plan time",
                    format!(
                        "{detail}. Which migrations will run is known after apply; the apply \
                     connects again and fails if the database is still unreachable."
                    ),
                )
                .at_attr("database_url"),
            );
            return;
        }
        Err(f) => return resp.diagnostics.extend(f.diagnostics),
    };
    let after = match &obs.plan {
        Ok(_) => obs.after(),
        Err(problems) => {
            for p in problems {
                resp.diagnostics.push(problem_diagnostic(p, Some(&obs.url)));
            }
            return;
        }
    };
    if let Some(d) = drift_since_state(prior, &obs) {
        resp.diagnostics.push(d);
    }
    check_policy(inputs, obs.pending(), resp);
    planned.id = Maybe::Known(Some(obs.id.clone()));
    if let Some(after) = after {
        after.write(planned, obs.last_applied_at());
    }
}

/// A map with no unknown value.
fn wholly_known(map: &Maybe<Option<BTreeMap<String, Maybe<String>>>>) -> bool {
    match map {
        Maybe::Unknown => false,
        Maybe::Null => true,
        Maybe::Known(m) => m.iter().flatten().all(|(_, v)| !v.is_unknown()),
    }
}

/// The ledger no longer holds what the state records (a row deleted or added out of band):
/// said at plan time, for a plan that read the database because refresh could not.
fn drift_since_state(prior: Option<&MigrationModel>, obs: &Observation) -> Option<Diagnostic> {
    let prior = prior?;
    let recorded: BTreeSet<String> = prior.applied_versions.as_ref()?.iter().cloned().collect();
    if prior.id.as_deref() != Some(obs.id.as_str()) {
        return None;
    }
    let now: BTreeSet<String> = obs.applied_versions().into_iter().collect();
    let gone: Vec<&String> = recorded.difference(&now).collect();
    let added: Vec<&String> = now.difference(&recorded).collect();
    if gone.is_empty() && added.is_empty() {
        return None;
    }
    let list = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut what = Vec::new();
    if !gone.is_empty() {
        what.push(format!(
            "recorded as applied but no longer in the ledger: {}",
            list(&gone)
        ));
    }
    if !added.is_empty() {
        what.push(format!("applied outside Terraform: {}", list(&added)));
    }
    Some(Diagnostic::warning(
        "Migrations changed outside Terraform",
        format!(
            "The ledger of {} differs from the state: {}. The plan is made from what the \
             database holds now.",
            obs.id,
            what.join("; ")
        ),
    ))
}

/// Plan-time refusals: class C without `allow_contract`, production without `backup_id`.
fn check_policy(inputs: &PlanInputs, pending: &[PendingMigration], resp: &mut ModifyPlanResponse) {
    let plan = MigrationPlan {
        pending: pending.to_vec(),
        ..MigrationPlan::default()
    };
    for p in migrations::policy_problems(&plan, inputs) {
        resp.diagnostics.push(problem_diagnostic(&p, None));
    }
}
