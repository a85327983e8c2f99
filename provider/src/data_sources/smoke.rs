//! `data "artifortress_smoke"`: the service's minimal smoke flow after a deploy (D1 exit
//! criterion "auth, repo read, draft/publish happy path"; docs/29 step 8), run by
//! [`crate::clients::smoke`] with the provider's admin token.

use async_trait::async_trait;

use crate::clients::smoke::{self, Report, Status};
use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{DataSource, ReadDataRequest, ReadDataResponse};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::settings::Settings;

pub const TYPE_NAME: &str = "artifortress_smoke";

pub const WRITE_NOTE: &str = "A data source is read on every `plan` and `apply` (and `refresh`): with `write = true` every one of those runs the whole happy path again. Each run leaves behind, in the service: one new scratch repository `smoke-<UTC time>-<random>` holding the published version `artifortress-smoke` `1.0.0` (the service refuses to delete a repository that still has packages, so the `cleanup` step reports `warning` and names it), its blob (a few dozen bytes) in object storage, one `version.published` outbox event, and a dozen audit rows. Put `write = true` behind a variable you set only for post-deploy runs, or run it from a separate configuration; keep the read-only form for every plan.";

crate::model! {
    /// `data "artifortress_smoke"` as configured and read.
    pub(crate) struct SmokeModel {
        write: bool = Attribute::optional_computed("write", Type::Bool)
            .default_value(false)
            .description(&format!("Also run the happy path: create a scratch repository, a draft version, upload a small blob through an upload session (the API presigns the part; the bytes go straight to object storage), commit it, add it as an entry, set the manifest, publish, read the published version back, then try to delete the repository. Without it only the read-only part runs (`whoami`, `list_repositories`, `read_repository`), which writes nothing. {WRITE_NOTE}")),
        fail_on_error: bool = Attribute::optional_computed("fail_on_error", Type::Bool)
            .default_value(true)
            .description("Fail the read when a step fails, with an error naming the step and the service's answer. `false`: only report, through `passed` and `steps`. In a `check` block the failure becomes a warning."),
        passed: Option<bool> = Attribute::computed("passed", Type::Bool)
            .description("No step failed (`warning` and `skipped` steps do not count)."),
        steps: Option<Vec<StepModel>> = Attribute::computed("steps", Type::list(StepModel::object_type()))
            .description("Every step in the order it ran: `name`, `status` (`passed`, `failed`, `skipped` after a failure or with nothing to do, `warning` for a clean-up the service refused), `duration` (e.g. `12.5ms`) and `detail` (what the step saw, or the service's error)."),
    }
}

crate::model! {
    /// One element of `steps`.
    pub(crate) struct StepModel {
        name: String = Attribute::computed("name", Type::String),
        status: String = Attribute::computed("status", Type::String),
        duration: String = Attribute::computed("duration", Type::String),
        detail: String = Attribute::computed("detail", Type::String),
    }
}

pub struct Smoke;

#[async_trait]
impl DataSource<Settings> for Smoke {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Runs the service's minimal smoke flow with the provider's admin token (`admin_token`, a PAT with scope `repo:*:admin`): `whoami`, list the repositories and read one; with `write = true` also the draft → upload → publish happy path in a scratch repository. Each step is timed. A failed step fails the read unless `fail_on_error = false`. The read-only form writes nothing; see `write` for what the full path leaves behind on every plan.",
            SmokeModel::attributes(),
        )
    }

    async fn read(&self, req: ReadDataRequest<'_, Settings>, resp: &mut ReadDataResponse) {
        let mut model = match SmokeModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Reading the smoke flow"));
            }
        };
        let settings = req.provider;
        let token = match settings.admin_token() {
            Ok(t) => t,
            Err(d) => return resp.diagnostics.push(d),
        };
        let client = match settings.api_client(None) {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let report = tokio::select! {
            r = smoke::run(&client, &token, model.write) => r,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error(
                    "Smoke flow cancelled",
                    "Terraform was interrupted; with `write = true` a scratch repository may be left half-built.",
                ));
            }
        };
        tracing::info!(
            passed = report.passed(),
            steps = report.steps.len(),
            write = model.write,
            "smoke flow ran"
        );
        write_into(&report, &mut model);
        if model.fail_on_error
            && let Some(d) = failure(&report)
        {
            resp.diagnostics.push(d);
        }
        resp.state = model.to_object();
    }
}

fn write_into(report: &Report, model: &mut SmokeModel) {
    model.passed = Some(report.passed());
    model.steps = Some(
        report
            .steps
            .iter()
            .map(|s| StepModel {
                name: s.name.to_string(),
                status: s.status.as_str().to_string(),
                duration: crate::duration::format(s.duration),
                detail: s.detail.clone(),
            })
            .collect(),
    );
}

/// The error for the first failed step: its name in the summary, the service's answer in the
/// detail, with what was left behind when the clean-up could not finish.
pub fn failure(report: &Report) -> Option<Diagnostic> {
    let step = report.first_failure()?;
    let mut detail = format!(
        "Step {:?} failed after {}: {}",
        step.name,
        crate::duration::format(step.duration),
        step.detail
    );
    if let Some(c) = report
        .steps
        .iter()
        .find(|s| s.name == "cleanup" && s.status != Status::Skipped)
    {
        detail.push_str(&format!(
            "\n\nClean-up ({}): {}",
            c.status.as_str(),
            c.detail
        ));
    }
    detail.push_str(
        "\n\nSet fail_on_error = false to report the failure in `passed` and `steps` instead.",
    );
    Some(
        Diagnostic::error(format!("Smoke flow failed at step {:?}", step.name), detail)
            .at_attr("write"),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clients::smoke::Step;

    #[test]
    fn failure_names_the_step_and_the_remote_error() {
        let report = Report {
            steps: vec![
                Step {
                    name: "whoami",
                    status: Status::Passed,
                    duration: Duration::from_millis(3),
                    detail: "subject \"ops\"".into(),
                },
                Step {
                    name: "create_upload_session",
                    status: Status::Failed,
                    duration: Duration::from_millis(40),
                    detail: "http://x/v1/repos/r/uploads answered HTTP 503 service_unavailable: object storage: down".into(),
                },
                Step {
                    name: "cleanup",
                    status: Status::Warning,
                    duration: Duration::from_millis(5),
                    detail: "repository \"smoke-1\" left in place".into(),
                },
            ],
        };
        let d = failure(&report).expect("a failure");
        assert!(d.summary.contains("create_upload_session"), "{}", d.summary);
        assert!(
            d.detail.contains("HTTP 503 service_unavailable"),
            "{}",
            d.detail
        );
        assert!(d.detail.contains("Clean-up (warning)"), "{}", d.detail);
        let ok = Report {
            steps: report.steps[..1].to_vec(),
        };
        assert!(failure(&ok).is_none());
    }
}
