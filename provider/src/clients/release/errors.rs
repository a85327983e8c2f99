//! What goes wrong in a release, in the words users read: the phase a failure happened in,
//! deployment and command errors, and artifact errors.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{Role, TEMPLATE_VARIABLES};
use crate::clients::hosts::HostError;

/// Where in a deployment something went wrong. `Display` gives the name the state's
/// `last_failure.phase` and the messages show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Connect,
    Lock,
    Inspect,
    Upload,
    Env,
    Switch,
    Restart,
    Ready,
    Watch,
    Rehearse,
    Interrupted,
    Rollback,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::Connect,
        Phase::Lock,
        Phase::Inspect,
        Phase::Upload,
        Phase::Env,
        Phase::Switch,
        Phase::Restart,
        Phase::Ready,
        Phase::Watch,
        Phase::Rehearse,
        Phase::Interrupted,
        Phase::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Lock => "lock",
            Phase::Inspect => "inspect",
            Phase::Upload => "upload",
            Phase::Env => "env",
            Phase::Switch => "switch",
            Phase::Restart => "restart",
            Phase::Ready => "ready",
            Phase::Watch => "watch",
            Phase::Rehearse => "rehearse",
            Phase::Interrupted => "interrupted",
            Phase::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong in a deployment step (or a stop, or a command template). The text is what
/// users read, in diagnostics and in the state's `last_failure.detail`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A host operation failed (its own words: host, operation, stderr).
    #[error(transparent)]
    Host(#[from] HostError),
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        /// How it ended (`exit status 3`, `killed by signal 9`).
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A command template uses a variable that has no value on the host (no release known
    /// there), so it is not run.
    #[error(
        "the command `{template}` uses {{{{{variable}}}}}, which has no value on {host}: no release is known there, so the command is not run"
    )]
    CommandWithoutValue {
        template: String,
        variable: String,
        host: String,
    },
    /// A command template has `{{` without `}}`.
    #[error("has a `{{{{` without a closing `}}}}`")]
    UnclosedTemplate,
    /// A command template uses an unknown variable.
    #[error(
        "uses {{{{{name}}}}}; the variables are {}",
        TEMPLATE_VARIABLES.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownTemplateVariable { name: String },
    /// An env value uses a variable env files do not have.
    #[error(
        "uses {{{{{name}}}}}; env values may use {}",
        super::commands::ENV_TEMPLATE_VARIABLES.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownEnvTemplateVariable { name: String },
    /// A rollback that would put `version` back in service against a schema it does not know.
    #[error("{version} is not put back in service: {reason}")]
    RollbackRefused { version: String, reason: String },
    /// A rollback on demand found no release to go back to.
    #[error(
        "no previous release to roll back to: {}",
        match current {
            Some(c) => format!("revisions.log records no rollout of {c} with a release before it"),
            None => "no release is live (`current` is missing)".to_string(),
        }
    )]
    NoPreviousRelease { current: Option<String> },
    #[error("no restart command for role {role}")]
    NoRestartCommand { role: Role },
    #[error("the host has the api role but no api_url")]
    NoApiUrl,
    #[error("no worker_status command")]
    NoWorkerStatusCommand,
    /// The API did not become ready in time.
    #[error(
        "not ready within {}: {url} ({}); last: {last}",
        crate::duration::format(*within),
        if *live { "live" } else { "not live" }
    )]
    ApiNotReady {
        within: Duration,
        url: String,
        /// Whether `/health/live` had answered `ok`.
        live: bool,
        /// The last answer that was not `ready`.
        last: String,
    },
    /// The service's smoke flow (auth, repository read, draft/publish happy path: its
    /// docs/29-deployment-howto-production.md step 8) failed on a ready API.
    #[error("ready, but the smoke flow failed at step {step:?} on {url}: {detail}")]
    SmokeFailed {
        url: String,
        step: String,
        detail: String,
    },
    /// The worker's status command did not succeed often enough in time.
    #[error("worker not running within {}; last: {last}", crate::duration::format(*within))]
    WorkerNotRunning {
        within: Duration,
        /// The status command's last failure (empty when it never failed).
        last: String,
    },
    /// A readiness wait was interrupted.
    #[error("interrupted while waiting; last: {last}")]
    WaitInterrupted { last: String },
    /// The deployment was interrupted before a host was deployed.
    #[error("the deployment was interrupted")]
    DeploymentInterrupted,
    /// The deployment was interrupted during the watch window.
    #[error("interrupted during the watch window")]
    WatchInterrupted,
    /// An API host was not ready for longer than the watch window allows.
    #[error(
        "not ready for longer than {} during the watch window: {last}",
        crate::duration::format(*limit)
    )]
    NotReadyDuringWatch { limit: Duration, last: String },
    /// The backlog grew past critical thresholds during the watch window.
    #[error(
        "backlog regressed past critical thresholds during the watch window: {}",
        .regressions.join("; ")
    )]
    BacklogRegressed { regressions: Vec<String> },
    /// Putting a host back on `version` failed after the switch back.
    #[error("{version} after rollback: {error}")]
    AfterRollback {
        version: String,
        error: Box<ReleaseError>,
    },
}

/// A release artifact that could not be made a verified local file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot create a temporary file: {0}")]
    TempFile(#[source] std::io::Error),
    /// The download failed (transport errors in words).
    #[error("GET {artifact}: {detail}")]
    Download { artifact: String, detail: String },
    /// The server answered with an error status.
    #[error("GET {artifact}: HTTP {status}")]
    Status {
        artifact: String,
        status: reqwest::StatusCode,
    },
    /// Nothing arrived for `after`.
    #[error("GET {artifact}: nothing received for {}; gave up", crate::duration::format(*after))]
    Stalled { artifact: String, after: Duration },
    /// Past the size limit.
    #[error(
        "{artifact}: {what} larger than {}, the limit for release artifacts; stopped there",
        crate::clients::http::format_size(*limit)
    )]
    TooLarge {
        artifact: String,
        what: Oversize,
        limit: u64,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// The checksum is not the one configured.
    #[error("{artifact}: sha256 is {actual}, the configuration says {expected}")]
    Checksum {
        artifact: String,
        actual: String,
        expected: String,
    },
}

/// What was found larger than the artifact size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oversize {
    /// The server's `Content-Length`.
    Announced,
    /// The bytes downloaded.
    Download,
    /// The local file.
    File,
}

impl fmt::Display for Oversize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Oversize::Announced => "the server announces a file",
            Oversize::Download => "the download is",
            Oversize::File => "the file is",
        })
    }
}

/// The texts users read in diagnostics and in `last_failure`: pinned per variant.
#[cfg(test)]
mod error_text_tests {
    use super::*;
    use crate::clients::release::ARTIFACT_MAX_SIZE;
    use crate::clients::release::artifact::ARTIFACT_STALL_TIMEOUT;

    #[test]
    fn phases_read_as_the_state_names_them() {
        let names: Vec<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            [
                "connect",
                "lock",
                "inspect",
                "upload",
                "env",
                "switch",
                "restart",
                "ready",
                "watch",
                "rehearse",
                "interrupted",
                "rollback",
            ]
        );
        for p in Phase::ALL {
            assert_eq!(p.as_str(), p.to_string());
        }
        assert_eq!(Role::Worker.to_string(), "worker");
    }

    #[test]
    fn release_errors_read_as_before() {
        let host = HostError::Connect {
            host: "api-1".into(),
            message: "connection refused".into(),
        };
        let cases: Vec<(ReleaseError, &str)> = vec![
            (
                ReleaseError::Host(host.clone()),
                "api-1: cannot connect: connection refused",
            ),
            (
                ReleaseError::CommandFailed {
                    command: "systemctl restart af-api".into(),
                    status: "exit status 3".into(),
                    stderr: "unit not found".into(),
                },
                "`systemctl restart af-api` failed (exit status 3): unit not found",
            ),
            (
                ReleaseError::CommandWithoutValue {
                    template: "{{release_dir}}/bin/af stop".into(),
                    variable: "release_dir".into(),
                    host: "api-2".into(),
                },
                "the command `{{release_dir}}/bin/af stop` uses {{release_dir}}, which has no value on api-2: no release is known there, so the command is not run",
            ),
            (
                ReleaseError::UnclosedTemplate,
                "has a `{{` without a closing `}}`",
            ),
            (
                ReleaseError::UnknownTemplateVariable {
                    name: "nope".into(),
                },
                "uses {{nope}}; the variables are {{release_dir}}, {{version}}, {{host}}, {{role}}, {{address}}, {{deploy_dir}}, {{instance}}",
            ),
            (
                ReleaseError::RollbackRefused {
                    version: "v1".into(),
                    reason: "contract migration 0002.sql".into(),
                },
                "v1 is not put back in service: contract migration 0002.sql",
            ),
            (
                ReleaseError::NoRestartCommand { role: Role::Worker },
                "no restart command for role worker",
            ),
            (
                ReleaseError::NoApiUrl,
                "the host has the api role but no api_url",
            ),
            (
                ReleaseError::NoWorkerStatusCommand,
                "no worker_status command",
            ),
            (
                ReleaseError::ApiNotReady {
                    within: Duration::from_secs(90),
                    url: "http://10.0.0.1:8080".into(),
                    live: true,
                    last: "status degraded (HTTP 200): db not_ready".into(),
                },
                "not ready within 1m30s: http://10.0.0.1:8080 (live); last: status degraded (HTTP 200): db not_ready",
            ),
            (
                ReleaseError::ApiNotReady {
                    within: Duration::from_secs(5),
                    url: "http://10.0.0.1:8080".into(),
                    live: false,
                    last: "no answer yet".into(),
                },
                "not ready within 5s: http://10.0.0.1:8080 (not live); last: no answer yet",
            ),
            (
                ReleaseError::WorkerNotRunning {
                    within: Duration::from_secs(300),
                    last: "`af status` failed (exit status 1): down".into(),
                },
                "worker not running within 5m0s; last: `af status` failed (exit status 1): down",
            ),
            (
                ReleaseError::WaitInterrupted {
                    last: "no answer yet".into(),
                },
                "interrupted while waiting; last: no answer yet",
            ),
            (
                ReleaseError::DeploymentInterrupted,
                "the deployment was interrupted",
            ),
            (
                ReleaseError::WatchInterrupted,
                "interrupted during the watch window",
            ),
            (
                ReleaseError::NotReadyDuringWatch {
                    limit: Duration::from_secs(30),
                    last: "status not_ready (HTTP 503)".into(),
                },
                "not ready for longer than 30s during the watch window: status not_ready (HTTP 503)",
            ),
            (
                ReleaseError::BacklogRegressed {
                    regressions: vec!["a grew".into(), "b grew".into()],
                },
                "backlog regressed past critical thresholds during the watch window: a grew; b grew",
            ),
            (
                ReleaseError::AfterRollback {
                    version: "v1".into(),
                    error: Box::new(ReleaseError::NoApiUrl),
                },
                "v1 after rollback: the host has the api role but no api_url",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text, "{e:?}");
        }
        assert_eq!(
            ReleaseError::from(host.clone()).to_string(),
            host.to_string()
        );
    }

    #[test]
    fn artifact_errors_read_as_before() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cases: Vec<(ArtifactError, String)> = vec![
            (
                ArtifactError::TempFile(io()),
                format!("cannot create a temporary file: {}", io()),
            ),
            (
                ArtifactError::Download {
                    artifact: "http://h/a.tar.gz".into(),
                    detail: "cannot connect to h:80: connection refused".into(),
                },
                "GET http://h/a.tar.gz: cannot connect to h:80: connection refused".into(),
            ),
            (
                ArtifactError::Status {
                    artifact: "http://h/a.tar.gz".into(),
                    status: reqwest::StatusCode::NOT_FOUND,
                },
                "GET http://h/a.tar.gz: HTTP 404 Not Found".into(),
            ),
            (
                ArtifactError::Stalled {
                    artifact: "http://h/a.tar.gz".into(),
                    after: ARTIFACT_STALL_TIMEOUT,
                },
                "GET http://h/a.tar.gz: nothing received for 1m0s; gave up".into(),
            ),
            (
                ArtifactError::TooLarge {
                    artifact: "http://h/a.tar.gz".into(),
                    what: Oversize::Announced,
                    limit: ARTIFACT_MAX_SIZE,
                },
                "http://h/a.tar.gz: the server announces a file larger than 2 GiB, the limit for release artifacts; stopped there".into(),
            ),
            (
                ArtifactError::TooLarge {
                    artifact: "http://h/a.tar.gz".into(),
                    what: Oversize::Download,
                    limit: 1 << 20,
                },
                "http://h/a.tar.gz: the download is larger than 1 MiB, the limit for release artifacts; stopped there".into(),
            ),
            (
                ArtifactError::TooLarge {
                    artifact: "/tmp/a.tar.gz".into(),
                    what: Oversize::File,
                    limit: 1 << 20,
                },
                "/tmp/a.tar.gz: the file is larger than 1 MiB, the limit for release artifacts; stopped there".into(),
            ),
            (
                ArtifactError::Io {
                    path: "/tmp/a.tar.gz".into(),
                    error: io(),
                },
                format!("/tmp/a.tar.gz: {}", io()),
            ),
            (
                ArtifactError::Checksum {
                    artifact: "/tmp/a.tar.gz".into(),
                    actual: "ab".into(),
                    expected: "cd".into(),
                },
                "/tmp/a.tar.gz: sha256 is ab, the configuration says cd".into(),
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text, "{e:?}");
        }
    }
}
