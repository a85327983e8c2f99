//! `action "artifortress_run_smoke"`: the service's smoke flow on demand (D1 exit criterion
//! "auth, repo read, draft/publish happy path"; docs/29 step 8), run by
//! [`crate::clients::smoke`] with the provider's admin token, as `data "artifortress_smoke"`
//! with `write = true` runs it, but only when invoked (a data source runs on every plan).
//! Each step is a progress event as soon as it has ended; a failed step fails the invocation.

use async_trait::async_trait;

use crate::clients::smoke::{self, Report, Status, Step};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{Action, InvokeActionRequest, PlanActionRequest};
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::settings::Settings;

pub const TYPE_NAME: &str = "artifortress_run_smoke";

crate::model! {
    /// `action "artifortress_run_smoke"` as configured.
    pub(crate) struct RunSmokeModel {
        write: bool = Attribute::optional_computed("write", Type::Bool)
            .default_value(true)
            .description("Run the happy path after the read-only part (the default): a scratch repository `smoke-<UTC time>-<random>`, a small blob through an upload session (the API presigns the part; the bytes go straight to object storage), commit, a draft version, the blob as its entry, manifest, publish, the published version read back, then an attempt to delete the repository, which the service refuses while it holds a package (the `cleanup` step then reports `warning` and names the repository left behind, with `artifortress-smoke` `1.0.0` published in it). `false`: only `whoami`, `list_repositories` and `read_repository`, which write nothing."),
    }
}

pub struct RunSmoke;

#[async_trait]
impl Action<Settings> for RunSmoke {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Runs the service's smoke flow now with the provider's admin token (`admin_token`, \
             a PAT with scope `repo:*:admin`): `whoami`, list the repositories and read one, \
             then the draft → upload → publish happy path in a scratch repository. Each step \
             is printed as it ends, with its duration and what it saw; a failed step fails the \
             invocation, naming the step and the service's answer. The same flow as `data \
             \"artifortress_smoke\"` with `write = true`, but only when invoked (`terraform \
             apply -invoke=action.artifortress_run_smoke.<name>`, or an `action_trigger` after \
             a release changes), never on a plan. Needs Terraform 1.14 or later.",
            RunSmokeModel::attributes(),
        )
    }

    async fn plan(&self, req: PlanActionRequest<'_, Settings>) -> Diagnostics {
        // Without a token or an API URL nothing can run: say so before the apply starts.
        let mut diags = Diagnostics::new();
        if let Err(d) = req.provider.admin_token() {
            diags.push(d);
        }
        if let Err(d) = req.provider.api_client(None) {
            diags.push(d);
        }
        diags
    }

    async fn invoke(&self, req: InvokeActionRequest<'_, Settings>) -> Diagnostics {
        let config = match RunSmokeModel::from_config(req.config) {
            Ok(c) => c,
            Err(e) => return e.diagnostic("Invalid smoke configuration").into(),
        };
        let settings = req.provider;
        let token = match settings.admin_token() {
            Ok(t) => t,
            Err(d) => return d.into(),
        };
        let client = match settings.api_client(None) {
            Ok(c) => c,
            Err(d) => return d.into(),
        };
        req.progress.send(format!(
            "smoke flow against {}{}",
            client.base_url(),
            if config.write {
                " (read-only part, then the happy path in a scratch repository)"
            } else {
                " (read-only part)"
            }
        ));
        let progress = req.progress;
        let on_step = |s: &Step| progress.send(step_message(s));
        let started = std::time::Instant::now();
        let report = tokio::select! {
            r = smoke::run_watched(&client, &token, config.write, &on_step) => r,
            _ = req.ctx.cancel.cancelled() => {
                return Diagnostic::error(
                    "Smoke flow cancelled",
                    "Terraform was interrupted; with `write = true` a scratch repository may be left half-built.",
                )
                .at_attr("write")
                .into();
            }
        };
        match failure(&report) {
            Some(d) => d.into(),
            None => {
                progress.send(format!(
                    "smoke flow passed: {} step(s) in {}",
                    report.steps.len(),
                    crate::duration::format(started.elapsed())
                ));
                Diagnostics::new()
            }
        }
    }
}

/// `publish: passed in 12.5ms — version 1.0.0 published`.
fn step_message(s: &Step) -> String {
    format!(
        "{}: {} in {} — {}",
        s.name,
        s.status.as_str(),
        crate::duration::format(s.duration),
        s.detail
    )
}

/// The error for the first failed step: its name in the summary, the service's answer in the
/// detail, with what the clean-up left behind.
fn failure(report: &Report) -> Option<Diagnostic> {
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
    Some(
        Diagnostic::error(format!("Smoke flow failed at step {:?}", step.name), detail)
            .at_attr("write"),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::framework;

    #[test]
    fn the_schema_is_valid() {
        let schema = RunSmoke.schema();
        assert!(schema.check().is_empty(), "{:?}", schema.check());
        assert!(framework::check_action_schema(TYPE_NAME, &schema).is_empty());
    }

    #[test]
    fn steps_read_as_progress_lines_and_a_failure_names_its_step() {
        let steps = vec![
            Step {
                name: "whoami",
                status: Status::Passed,
                duration: Duration::from_millis(3),
                detail: "subject \"ops\" (pat), 1 scope(s)".into(),
            },
            Step {
                name: "publish",
                status: Status::Failed,
                duration: Duration::from_millis(40),
                detail: "HTTP 409 conflict: version already published".into(),
            },
            Step {
                name: "cleanup",
                status: Status::Warning,
                duration: Duration::from_millis(5),
                detail: "repository \"smoke-1\" left in place".into(),
            },
        ];
        assert_eq!(
            step_message(&steps[0]),
            "whoami: passed in 0.003s — subject \"ops\" (pat), 1 scope(s)"
        );
        let d = failure(&Report {
            steps: steps.clone(),
        })
        .expect("a failure");
        assert_eq!(d.summary, "Smoke flow failed at step \"publish\"");
        assert!(d.detail.contains("HTTP 409 conflict"), "{}", d.detail);
        assert!(d.detail.contains("Clean-up (warning)"), "{}", d.detail);
        assert!(
            failure(&Report {
                steps: steps[..1].to_vec()
            })
            .is_none()
        );
    }
}
