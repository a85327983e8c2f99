//! Errors and results: [`HostError`], what a command left behind ([`Output`]), what it reads
//! ([`Stdin`]) and the [`Timeouts`] of a transport.

use std::path::Path;
use std::time::Duration;

use super::lock::LOCK_DIR;

/// A failed host operation. Every variant that concerns a host names it; command failures
/// carry the operation and the command's stderr.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("{host}: cannot connect: {message}")]
    Connect { host: String, message: String },
    #[error("{host}: no SSH session within {} (connect timeout)", crate::duration::format(*after))]
    ConnectTimeout { host: String, after: Duration },
    #[error(
        "{host}: host key {algorithm} {fingerprint} is not in known_hosts: add the host's key \
         (after checking its fingerprint) or set insecure_ignore_host_key"
    )]
    HostKeyUnknown {
        host: String,
        algorithm: String,
        fingerprint: String,
    },
    #[error(
        "{host}: HOST KEY MISMATCH: the host presented {algorithm} {fingerprint}, known_hosts has \
         {}; refusing to connect (the host was re-installed, or someone is in the middle)",
        known.join("; ")
    )]
    HostKeyMismatch {
        host: String,
        algorithm: String,
        fingerprint: String,
        /// The keys known_hosts lists for this host: "algorithm fingerprint (line N)".
        known: Vec<String>,
    },
    #[error("{host}: host key {algorithm} {fingerprint} is @revoked in known_hosts (line {line})")]
    HostKeyRevoked {
        host: String,
        algorithm: String,
        fingerprint: String,
        line: usize,
    },
    #[error("{host}: host key not accepted: {message}")]
    HostKeyUnsupported { host: String, message: String },
    #[error("known_hosts line {line}: {message}")]
    KnownHosts { line: usize, message: String },
    #[error("invalid SSH private key: {message}")]
    PrivateKey { message: String },
    #[error(
        "{host}: authentication as {user:?} failed with {method}; the server accepts: {remaining}"
    )]
    AuthFailed {
        host: String,
        user: String,
        method: String,
        remaining: String,
    },
    #[error(
        "{host}: no SSH credentials: set a private key, or run an SSH agent (SSH_AUTH_SOCK) \
         holding the key"
    )]
    NoCredentials { host: String },
    #[error("{host}: SSH agent {socket}: {message}")]
    Agent {
        host: String,
        socket: String,
        message: String,
    },
    #[error("{host}: {op}: SSH: {message}")]
    Ssh {
        host: String,
        op: &'static str,
        message: String,
    },
    #[error("{host}: {op}: {message}")]
    Io {
        host: String,
        op: &'static str,
        message: String,
    },
    #[error("{host}: {op}: timed out after {after:?}")]
    Timeout {
        host: String,
        op: &'static str,
        after: Duration,
    },
    #[error("{host}: {op} failed ({status}): {stderr}")]
    Command {
        host: String,
        op: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{host}: {op}: unexpected output: {output:?}")]
    UnexpectedOutput {
        host: String,
        op: &'static str,
        output: String,
    },
    #[error("{host}: {path}: sha256 is {actual}, expected {expected}")]
    ChecksumMismatch {
        host: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{host}: {deploy_dir} is locked by {holder:?} until {expires_at} (epoch seconds, \
         {remaining_secs} s from now); wait for it, or remove {deploy_dir}/{LOCK_DIR} if that \
         deploy is known to be dead"
    )]
    LockHeld {
        host: String,
        deploy_dir: String,
        holder: String,
        expires_at: u64,
        remaining_secs: u64,
    },
    #[error("{host}: {deploy_dir}: the deploy lock kept changing hands; retry")]
    LockContention { host: String, deploy_dir: String },
    #[error(
        "{host}: {deploy_dir}: our deploy lock expired and is now held by {holder:?} (until \
         {expires_at})"
    )]
    LockLost {
        host: String,
        deploy_dir: String,
        holder: String,
        expires_at: u64,
    },
    #[error("{host}: release {version} is not installed in {deploy_dir}")]
    ReleaseMissing {
        host: String,
        deploy_dir: String,
        version: String,
    },
    #[error(
        "{host}: release {version} in {deploy_dir} is live and holds another artifact ({}), \
         expected sha256 {expected}: deploy this artifact under a new version",
        installed.as_deref().map_or_else(|| "no recorded checksum".to_string(), |s| format!("sha256 {s}"))
    )]
    ReleaseConflict {
        host: String,
        deploy_dir: String,
        version: String,
        installed: Option<String>,
        expected: String,
    },
    #[error("{what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        /// Never a secret: for env values this is the variable's name.
        value: String,
        reason: String,
    },
}

impl HostError {
    /// The host the error concerns, when it concerns one.
    pub fn host(&self) -> Option<&str> {
        use HostError::*;
        match self {
            Connect { host, .. }
            | ConnectTimeout { host, .. }
            | HostKeyUnknown { host, .. }
            | HostKeyMismatch { host, .. }
            | HostKeyRevoked { host, .. }
            | HostKeyUnsupported { host, .. }
            | AuthFailed { host, .. }
            | NoCredentials { host }
            | Agent { host, .. }
            | Ssh { host, .. }
            | Io { host, .. }
            | Timeout { host, .. }
            | Command { host, .. }
            | UnexpectedOutput { host, .. }
            | ChecksumMismatch { host, .. }
            | LockHeld { host, .. }
            | LockContention { host, .. }
            | LockLost { host, .. }
            | ReleaseMissing { host, .. }
            | ReleaseConflict { host, .. } => Some(host),
            KnownHosts { .. } | PrivateKey { .. } | InvalidArgument { .. } => None,
        }
    }

    /// True when the host could not be reached or the connection broke (as opposed to a
    /// command that ran and failed).
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            HostError::Connect { .. } | HostError::ConnectTimeout { .. } | HostError::Ssh { .. }
        )
    }

    /// The same error attributed to operation `op`.
    #[must_use]
    pub(super) fn in_op(mut self, new_op: &'static str) -> Self {
        match &mut self {
            HostError::Ssh { op, .. }
            | HostError::Io { op, .. }
            | HostError::Timeout { op, .. }
            | HostError::Command { op, .. }
            | HostError::UnexpectedOutput { op, .. } => *op = new_op,
            _ => {}
        }
        self
    }
}

pub(super) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> HostError {
    HostError::InvalidArgument {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit code; `None` when the command was killed by a signal.
    pub status: Option<i32>,
    /// The signal that ended the command, if one did.
    pub signal: Option<String>,
    /// At most 8 MiB of stdout.
    pub stdout: Vec<u8>,
    /// At most 64 KiB of stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr, lossily decoded and trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// "exit status 3", "signal KILL".
    pub fn status_text(&self) -> String {
        match (&self.status, &self.signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "no exit status".to_string(),
        }
    }
}

/// What a command reads on stdin.
#[derive(Debug, Clone, Copy)]
pub enum Stdin<'a> {
    /// Nothing (immediate end of file).
    Null,
    Bytes(&'a [u8]),
    /// A local file, streamed (bounded memory).
    File(&'a Path),
}

/// Timeouts a transport applies to the release operations built on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Small commands (lock, switch, env files, reads).
    pub command: Duration,
    /// Uploading and unpacking an artifact.
    pub transfer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(60),
            transfer: Duration::from_secs(30 * 60),
        }
    }
}
