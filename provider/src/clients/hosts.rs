//! Hosts: run commands on a machine, over SSH ([`SshTransport`], russh) or on this machine
//! ([`LocalTransport`]), and the release-directory operations a deploy is made of (deploy lock,
//! release install with an on-host checksum, env files, atomic `current` switch, revisions log,
//! pruning). Knows nothing of Terraform.
//!
//! # The release directory
//! ```text
//! <deploy_dir>/
//!   .deploy-lock/owner        owner=<owner> / expires=<epoch seconds> / token=<random>
//!   releases/<version>/       one unpacked artifact each (a tarball holding a single top
//!                             directory is unpacked as that directory's contents)
//!   releases/<version>/.artifact-sha256   the sha256 of the artifact it came from
//!   current -> releases/<version>          switched atomically (rename of a symlink)
//!   revisions.log             one line appended per deploy
//! ```
//! Every remote operation is a `/bin/sh` command in which every argument is quoted with
//! [`shell_quote`]; data that may be secret (env files) travels on the command's stdin, never on
//! its command line, and is never logged. Timestamps (lock expiry) come from the host's clock.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Preferred};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The lock directory inside a deploy directory.
pub const LOCK_DIR: &str = ".deploy-lock";
/// Where releases are unpacked, one directory per version.
pub const RELEASES_DIR: &str = "releases";
/// The symlink naming the live release.
pub const CURRENT_LINK: &str = "current";
/// The append-only log of deploys.
pub const REVISIONS_LOG: &str = "revisions.log";
/// Inside each release: the sha256 of the artifact it was unpacked from.
pub const ARTIFACT_SHA256_FILE: &str = ".artifact-sha256";

/// At most this much stdout is kept per command (the rest is read and dropped).
const STDOUT_LIMIT: usize = 8 << 20;
/// At most this much stderr is kept per command.
const STDERR_LIMIT: usize = 64 << 10;
/// After a command exited, how long to wait for its output to close: a daemon started by a
/// restart command may keep the pipes open forever.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// After the remote side finished, how long a still-blocked stdin writer may take.
const WRITER_GRACE: Duration = Duration::from_secs(2);
/// Rounds of the lock protocol before giving up on a lock that keeps changing hands.
const LOCK_ATTEMPTS: usize = 4;
/// Temporary entries in `releases/` older than this (minutes) are removed by [`prune`].
const STALE_TEMP_MINUTES: u32 = 60;

// ------------------------------------------------------------------------------------------
// Errors and results
// ------------------------------------------------------------------------------------------

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
    fn in_op(mut self, new_op: &'static str) -> Self {
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

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> HostError {
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

// ------------------------------------------------------------------------------------------
// Transport
// ------------------------------------------------------------------------------------------

/// Somewhere commands run: a host over SSH, or this machine.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// The host's name in errors and logs.
    fn host(&self) -> &str;

    /// The timeouts release operations use.
    fn timeouts(&self) -> Timeouts;

    /// Runs `command` with `/bin/sh` (SSH: the login user's shell, `sh`-compatible), feeding
    /// it `stdin`. A non-zero exit is an `Ok` [`Output`]; errors are for commands that could not
    /// run, lost connections and timeouts (after which the command is killed, best effort over
    /// SSH).
    async fn run(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> Result<Output, HostError>;

    /// [`Transport::run`] with optional stdin bytes.
    async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, HostError> {
        self.run(command, stdin.map_or(Stdin::Null, Stdin::Bytes), timeout)
            .await
    }

    /// Streams local file `local` to `remote` (through a temporary file next to it, then a
    /// rename) with permissions `mode`. The parent directory must exist. Returns the size.
    async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<u64, HostError> {
        check_path("remote path", remote)?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|e| HostError::Io {
                host: self.host().to_string(),
                op: "upload",
                message: format!("{}: {e}", local.display()),
            })?
            .len();
        let cmd = atomic_write_command(remote, mode, size, None)?;
        run_ok(
            self,
            "upload",
            &cmd,
            Stdin::File(local),
            self.timeouts().transfer,
        )
        .await?;
        Ok(size)
    }

    /// The sha256 (lowercase hex) of a file on the host.
    async fn sha256(&self, remote: &str) -> Result<String, HostError> {
        check_path("remote path", remote)?;
        let out = run_ok(
            self,
            "sha256",
            &sha256_command(remote),
            Stdin::Null,
            self.timeouts().transfer,
        )
        .await?;
        parse_sha256_output(self.host(), &out)
    }

    /// Ends the session, if there is one.
    async fn close(&self) {}
}

/// Runs a command and turns a non-zero exit into [`HostError::Command`]; returns stdout.
async fn run_ok<T: Transport + ?Sized>(
    t: &T,
    op: &'static str,
    command: &str,
    stdin: Stdin<'_>,
    timeout: Duration,
) -> Result<String, HostError> {
    let started = Instant::now();
    let out = t
        .run(command, stdin, timeout)
        .await
        .map_err(|e| e.in_op(op))?;
    tracing::debug!(
        host = t.host(),
        op,
        status = %out.status_text(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "host command"
    );
    if !out.success() {
        return Err(HostError::Command {
            host: t.host().to_string(),
            op,
            status: out.status_text(),
            stderr: out.stderr_text(),
        });
    }
    Ok(out.stdout_text())
}

/// `sh` that writes its stdin to `path` via a temporary file next to it (mode 0600 while
/// written), checks that exactly `size` bytes arrived (a broken stream never replaces the
/// file), sets `mode` and renames it into place; optionally creates `parent` (0755) first.
fn atomic_write_command(
    path: &str,
    mode: u32,
    size: u64,
    parent: Option<&str>,
) -> Result<String, HostError> {
    if mode > 0o7777 {
        return Err(invalid(
            "file mode",
            &format!("{mode:o}"),
            "must be at most 7777",
        ));
    }
    let mkdir = parent.map_or_else(String::new, |p| {
        format!("(umask 022 && mkdir -p -- {}) && ", shell_quote(p))
    });
    Ok(format!(
        "{mkdir}umask 077 && cat > {t} && n=$(wc -c < {t}) \
         && if [ \"$n\" -ne {size} ]; then echo \"received $n bytes of {size}\" >&2; false; fi \
         && chmod {mode:o} -- {t} && mv -f -- {t} {p} || {{ rc=$?; rm -f -- {t}; exit $rc; }}",
        t = shell_quote(&format!("{path}.tmp-{}", token())),
        p = shell_quote(path),
    ))
}

fn sha256_command(path: &str) -> String {
    let p = shell_quote(path);
    format!(
        "if command -v sha256sum >/dev/null 2>&1; then sha256sum < {p}; \
         else shasum -a 256 < {p}; fi"
    )
}

/// sha256 of standard input, as `sha256sum` prints it, on hosts with either tool.
const SHA256_STDIN: &str =
    "{ if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }";

fn parse_sha256_output(host: &str, out: &str) -> Result<String, HostError> {
    let first = out.split_whitespace().next().unwrap_or_default();
    if first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(first.to_ascii_lowercase())
    } else {
        Err(HostError::UnexpectedOutput {
            host: host.to_string(),
            op: "sha256",
            output: out.trim().to_string(),
        })
    }
}

/// 16 random hex digits, for temporary names and lock tokens.
fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Appends `data` to `buf` up to `limit` bytes in all.
fn push_limited(buf: &mut Vec<u8>, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

async fn read_limited<R: AsyncRead + Unpin>(mut r: R, buf: &mut Vec<u8>, limit: usize) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => push_limited(buf, &chunk[..n], limit),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Local transport
// ------------------------------------------------------------------------------------------

/// Commands on this machine (`/bin/sh -c`), each in its own process group so that a timeout
/// kills everything it started.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    label: String,
    timeouts: Timeouts,
}

impl LocalTransport {
    pub fn new(timeouts: Timeouts) -> Self {
        LocalTransport {
            label: "localhost".to_string(),
            timeouts,
        }
    }
}

impl Default for LocalTransport {
    fn default() -> Self {
        LocalTransport::new(Timeouts::default())
    }
}

fn kill_process_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the process
    // group we created for this command (process_group(0) makes the child its leader).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.label
    }

    fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    async fn run(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> Result<Output, HostError> {
        let io_err = |message: String| HostError::Io {
            host: self.label.clone(),
            op: "exec",
            message,
        };
        let file = match stdin {
            Stdin::File(p) => Some(
                tokio::fs::File::open(p)
                    .await
                    .map_err(|e| io_err(format!("{}: {e}", p.display())))?,
            ),
            _ => None,
        };
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(match stdin {
                Stdin::Null => Stdio::null(),
                _ => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| io_err(format!("cannot start /bin/sh: {e}")))?;
        let pid = child.id();
        let child_stdin = child.stdin.take();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(io_err("the child's output pipes are missing".to_string()));
        };

        let mut out = Output::default();
        let outcome = {
            let feed = async move {
                let Some(mut w) = child_stdin else {
                    return Ok(());
                };
                let res = match (stdin, file) {
                    (Stdin::Bytes(b), _) => w.write_all(b).await,
                    (Stdin::File(_), Some(mut f)) => {
                        tokio::io::copy(&mut f, &mut w).await.map(drop)
                    }
                    _ => Ok(()),
                };
                let shut = w.shutdown().await;
                res.and(shut)
            };
            let reading = async {
                tokio::join!(
                    read_limited(stdout, &mut out.stdout, STDOUT_LIMIT),
                    read_limited(stderr, &mut out.stderr, STDERR_LIMIT)
                )
            };
            let waiting = async { tokio::join!(feed, child.wait()) };
            let work = async {
                tokio::pin!(reading);
                tokio::pin!(waiting);
                let mut read_done = false;
                let (fed, status) = loop {
                    tokio::select! {
                        _ = &mut reading, if !read_done => read_done = true,
                        r = &mut waiting => break r,
                    }
                };
                if !read_done {
                    let _ = tokio::time::timeout(DRAIN_GRACE, &mut reading).await;
                }
                (fed, status)
            };
            tokio::time::timeout(timeout, work).await
        };
        match outcome {
            Err(_) => {
                if let Some(pid) = pid {
                    kill_process_group(pid);
                }
                let _ = child.kill().await;
                Err(HostError::Timeout {
                    host: self.label.clone(),
                    op: "exec",
                    after: timeout,
                })
            }
            Ok((fed, status)) => {
                let status = status.map_err(|e| io_err(format!("waiting for /bin/sh: {e}")))?;
                use std::os::unix::process::ExitStatusExt;
                out.status = status.code();
                out.signal = status.signal().map(|s| s.to_string());
                // A command may ignore bytes given on stdin; a file it was to receive whole.
                if out.success()
                    && matches!(stdin, Stdin::File(_))
                    && let Err(e) = fed
                {
                    return Err(io_err(format!("stdin was not fully delivered: {e}")));
                }
                Ok(out)
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// SSH transport
// ------------------------------------------------------------------------------------------

/// A private key's text (OpenSSH or PEM). Never printed.
#[derive(Clone)]
pub struct PrivateKeyText(String);

impl PrivateKeyText {
    pub fn new(text: impl Into<String>) -> Self {
        PrivateKeyText(text.into())
    }

    /// Parses the key (to validate configuration early). Errors never include the key.
    pub fn parse(&self) -> Result<PrivateKey, HostError> {
        russh::keys::decode_secret_key(&self.0, None).map_err(|e| HostError::PrivateKey {
            message: match e {
                russh::keys::Error::KeyIsEncrypted => {
                    "the key is encrypted with a passphrase; decrypt it or load it into an SSH \
                     agent"
                        .to_string()
                }
                other => other.to_string(),
            },
        })
    }
}

impl fmt::Debug for PrivateKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyText(<redacted>)")
    }
}

/// How to reach hosts over SSH.
#[derive(Clone)]
pub struct SshConfig {
    pub user: String,
    /// `None`: authenticate with the SSH agent.
    pub private_key: Option<PrivateKeyText>,
    /// The agent's socket; `None`: `$SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// known_hosts text (OpenSSH format: `host`, `[host]:port`, patterns, hashed names,
    /// `@revoked`). Host keys are verified against it unless `insecure_ignore_host_key`.
    pub known_hosts: String,
    pub insecure_ignore_host_key: bool,
    /// TCP connect, key exchange and authentication together.
    pub connect_timeout: Duration,
    /// Keepalives detect a dead connection (3 missed: the session is closed).
    pub keepalive_interval: Duration,
    pub timeouts: Timeouts,
}

impl SshConfig {
    pub fn new(user: impl Into<String>) -> Self {
        SshConfig {
            user: user.into(),
            private_key: None,
            agent_socket: None,
            known_hosts: String::new(),
            insecure_ignore_host_key: false,
            connect_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
            timeouts: Timeouts::default(),
        }
    }
}

impl fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConfig")
            .field("user", &self.user)
            .field("private_key", &self.private_key)
            .field("agent_socket", &self.agent_socket)
            .field("known_hosts_lines", &self.known_hosts.lines().count())
            .field("insecure_ignore_host_key", &self.insecure_ignore_host_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// Parsed known_hosts.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<KnownHostEntry>,
}

#[derive(Debug, Clone)]
struct KnownHostEntry {
    line: usize,
    marker: Option<Marker>,
    patterns: Vec<HostPattern>,
    key: PublicKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    CertAuthority,
    Revoked,
}

#[derive(Debug, Clone)]
enum HostPattern {
    /// Lowercased; `*` and `?` wildcards.
    Plain { pattern: String, negated: bool },
    /// `|1|salt|hash`: HMAC-SHA1(salt, name).
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// What known_hosts says about a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// Listed for this host (at this line).
    Trusted { line: usize },
    /// Nothing listed for this host.
    Unknown,
    /// Other keys are listed for this host: "algorithm fingerprint (line N)".
    Mismatch { known: Vec<String> },
    /// The key is `@revoked`.
    Revoked { line: usize },
}

/// The name known_hosts uses for a host: `host` on port 22, else `[host]:port`; lowercased.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `ssh-ed25519 SHA256:...`.
fn describe_key(key: &PublicKey) -> (String, String) {
    (
        key.algorithm().as_str().to_string(),
        key.fingerprint(HashAlg::Sha256).to_string(),
    )
}

fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative glob with single-star backtracking: `*` any run, `?` one byte.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

fn hashed_match(salt: &[u8], hash: &[u8], name: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
}

impl HostPattern {
    fn parse(s: &str) -> Result<HostPattern, String> {
        if let Some(rest) = s.strip_prefix("|1|") {
            use base64::Engine;
            let (salt, hash) = rest
                .split_once('|')
                .ok_or_else(|| format!("malformed hashed host name {s:?}"))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            let salt = b64
                .decode(salt)
                .map_err(|e| format!("hashed host name salt: {e}"))?;
            let hash = b64
                .decode(hash)
                .map_err(|e| format!("hashed host name hash: {e}"))?;
            return Ok(HostPattern::Hashed { salt, hash });
        }
        let (negated, pattern) = match s.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, s),
        };
        if pattern.is_empty() {
            return Err("empty host pattern".to_string());
        }
        Ok(HostPattern::Plain {
            pattern: pattern.to_ascii_lowercase(),
            negated,
        })
    }
}

/// OpenSSH's rule: a matching negated pattern excludes, else any matching pattern includes.
fn patterns_match(patterns: &[HostPattern], name: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p {
            HostPattern::Plain { pattern, negated } => {
                if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                    if *negated {
                        return false;
                    }
                    matched = true;
                }
            }
            HostPattern::Hashed { salt, hash } => {
                if hashed_match(salt, hash, name) {
                    matched = true;
                }
            }
        }
    }
    matched
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

impl KnownHosts {
    /// Parses known_hosts text. Blank lines and `#` comments are skipped; any other line that
    /// is not `[@marker] patterns keytype base64 [comment]` is an error naming the line.
    pub fn parse(text: &str) -> Result<KnownHosts, HostError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| HostError::KnownHosts { line, message };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut fields = l.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let marker = if first.starts_with('@') {
                let m = match first {
                    "@cert-authority" => Marker::CertAuthority,
                    "@revoked" => Marker::Revoked,
                    other => return Err(err(format!("unknown marker {other}"))),
                };
                first = fields
                    .next()
                    .ok_or_else(|| err("missing host patterns".to_string()))?;
                Some(m)
            } else {
                None
            };
            let key_type = fields
                .next()
                .ok_or_else(|| err("missing key type".to_string()))?;
            let key_b64 = fields
                .next()
                .ok_or_else(|| err("missing key".to_string()))?;
            let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}"))
                .map_err(|e| err(format!("cannot parse the {key_type} key: {e}")))?;
            let patterns = first
                .split(',')
                .map(HostPattern::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            entries.push(KnownHostEntry {
                line,
                marker,
                patterns,
                key,
            });
        }
        Ok(KnownHosts { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Judges `key` presented by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let name = known_hosts_name(host, port);
        let mut trusted = None;
        let mut known = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| patterns_match(&e.patterns, &name))
        {
            match e.marker {
                Some(Marker::Revoked) if same_key(&e.key, key) => {
                    return HostKeyStatus::Revoked { line: e.line };
                }
                Some(_) => {}
                None if same_key(&e.key, key) => trusted = trusted.or(Some(e.line)),
                None => {
                    let (alg, fp) = describe_key(&e.key);
                    known.push(format!("{alg} {fp} (line {})", e.line));
                }
            }
        }
        match trusted {
            Some(line) => HostKeyStatus::Trusted { line },
            None if known.is_empty() => HostKeyStatus::Unknown,
            None => HostKeyStatus::Mismatch { known },
        }
    }

    /// The key algorithms listed (unmarked) for a host, in file order.
    fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = known_hosts_name(host, port);
        self.entries
            .iter()
            .filter(|e| e.marker.is_none() && patterns_match(&e.patterns, &name))
            .map(|e| e.key.algorithm())
            .collect()
    }
}

/// The client's host-key algorithm preference: those known_hosts lists for the host first (as
/// OpenSSH does), so a host with several keys presents one we can verify.
fn host_key_preference(known: &[Algorithm]) -> Vec<Algorithm> {
    let same_family = |a: &Algorithm, b: &Algorithm| {
        matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. })) || a == b
    };
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = Preferred::DEFAULT
        .key
        .iter()
        .cloned()
        .partition(|a| known.iter().any(|k| same_family(k, a)));
    first.extend(rest);
    first
}

#[derive(Debug, Clone)]
enum HostKeyPolicy {
    Verify(Arc<KnownHosts>),
    Ignore,
}

/// The session handler's error: russh's, or our verdict on the host key.
#[derive(Debug)]
enum SessionError {
    Ssh(russh::Error),
    HostKey(Box<HostError>),
}

impl From<russh::Error> for SessionError {
    fn from(e: russh::Error) -> Self {
        SessionError::Ssh(e)
    }
}

struct ClientHandler {
    label: String,
    address: String,
    port: u16,
    policy: HostKeyPolicy,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = SessionError;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            return Err(SessionError::HostKey(Box::new(
                HostError::HostKeyUnsupported {
                    host: self.label.clone(),
                    message: "the host presented a certificate; list its plain host key in \
                              known_hosts"
                        .to_string(),
                },
            )));
        };
        let (algorithm, fingerprint) = describe_key(key);
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(format!("{algorithm} {fingerprint}"));
        }
        let known = match &self.policy {
            HostKeyPolicy::Ignore => {
                tracing::warn!(
                    host = %self.label,
                    key = %format!("{algorithm} {fingerprint}"),
                    "host key NOT verified (insecure_ignore_host_key)"
                );
                return Ok(true);
            }
            HostKeyPolicy::Verify(k) => k,
        };
        let host = self.label.clone();
        let rejection = match known.check(&self.address, self.port, key) {
            HostKeyStatus::Trusted { .. } => return Ok(true),
            HostKeyStatus::Unknown => HostError::HostKeyUnknown {
                host,
                algorithm,
                fingerprint,
            },
            HostKeyStatus::Mismatch { known } => HostError::HostKeyMismatch {
                host,
                algorithm,
                fingerprint,
                known,
            },
            HostKeyStatus::Revoked { line } => HostError::HostKeyRevoked {
                host,
                algorithm,
                fingerprint,
                line,
            },
        };
        Err(SessionError::HostKey(Box::new(rejection)))
    }
}

type Session = client::Handle<ClientHandler>;

/// A host over SSH: one session, opened by [`SshTransport::connect`], shared by every command
/// (each command is a channel) and re-opened if it closes.
pub struct SshTransport {
    label: String,
    address: String,
    port: u16,
    config: SshConfig,
    policy: HostKeyPolicy,
    presented: Arc<Mutex<Option<String>>>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTransport")
            .field("host", &self.label)
            .field("user", &self.config.user)
            .finish_non_exhaustive()
    }
}

fn host_label(address: &str, port: u16) -> String {
    match (port, address.contains(':')) {
        (22, _) => address.to_string(),
        (_, true) => format!("[{address}]:{port}"),
        (_, false) => format!("{address}:{port}"),
    }
}

impl SshTransport {
    /// Connects, verifies the host key and authenticates.
    pub async fn connect(
        address: &str,
        port: u16,
        config: &SshConfig,
    ) -> Result<SshTransport, HostError> {
        let policy = if config.insecure_ignore_host_key {
            HostKeyPolicy::Ignore
        } else {
            HostKeyPolicy::Verify(Arc::new(KnownHosts::parse(&config.known_hosts)?))
        };
        let t = SshTransport {
            label: host_label(address, port),
            address: address.to_string(),
            port,
            config: config.clone(),
            policy,
            presented: Arc::new(Mutex::new(None)),
            session: tokio::sync::Mutex::new(None),
        };
        t.session().await?;
        Ok(t)
    }

    /// The host key the host presented ("algorithm SHA256:fingerprint").
    pub fn host_key(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|k| k.clone())
    }

    /// False when the host key was accepted without verification.
    pub fn host_key_verified(&self) -> bool {
        matches!(self.policy, HostKeyPolicy::Verify(_))
    }

    async fn session(&self) -> Result<Arc<Session>, HostError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
            tracing::info!(host = %self.label, "SSH session closed; reconnecting");
        }
        let s = Arc::new(self.open_session().await?);
        *slot = Some(s.clone());
        Ok(s)
    }

    async fn open_session(&self) -> Result<Session, HostError> {
        let known_algorithms = match &self.policy {
            HostKeyPolicy::Verify(k) => k.algorithms_for(&self.address, self.port),
            HostKeyPolicy::Ignore => Vec::new(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(self.config.keepalive_interval),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            preferred: Preferred {
                key: Cow::Owned(host_key_preference(&known_algorithms)),
                ..Preferred::default()
            },
            ..client::Config::default()
        });
        let handler = ClientHandler {
            label: self.label.clone(),
            address: self.address.clone(),
            port: self.port,
            policy: self.policy.clone(),
            presented: self.presented.clone(),
        };
        let connecting = async {
            let mut session =
                match client::connect(config, (self.address.as_str(), self.port), handler).await {
                    Ok(s) => s,
                    Err(SessionError::HostKey(e)) => return Err(*e),
                    Err(SessionError::Ssh(e)) => {
                        tracing::debug!(host = %self.label, error = ?e, "SSH connect failed");
                        return Err(HostError::Connect {
                            host: self.label.clone(),
                            message: match &e {
                                russh::Error::IO(io) => super::words::io_error_words(io),
                                other => super::words::io_words(other)
                                    .unwrap_or_else(|| other.to_string()),
                            },
                        });
                    }
                };
            self.authenticate(&mut session).await?;
            Ok(session)
        };
        let started = Instant::now();
        let session = tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .map_err(|_| HostError::ConnectTimeout {
                host: self.label.clone(),
                after: self.config.connect_timeout,
            })??;
        tracing::info!(
            host = %self.label,
            user = %self.config.user,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "SSH session open"
        );
        Ok(session)
    }

    /// A channel running `command`. A session found dead before the command was sent is
    /// re-opened once (nothing ran yet, so retrying is safe).
    async fn open_channel(&self, command: &str) -> Result<russh::Channel<client::Msg>, HostError> {
        let mut retried = false;
        loop {
            let session = self.session().await?;
            let opened = async {
                let channel = session.channel_open_session().await?;
                channel.exec(true, command.as_bytes()).await?;
                Ok::<_, russh::Error>(channel)
            }
            .await;
            match opened {
                Ok(channel) => return Ok(channel),
                Err(e) if !retried && session.is_closed() => {
                    tracing::info!(host = %self.label, error = %e, "SSH session lost; reconnecting");
                    retried = true;
                }
                Err(e) => return Err(self.ssh_err("exec", e)),
            }
        }
    }

    fn ssh_err(&self, op: &'static str, e: impl fmt::Display) -> HostError {
        HostError::Ssh {
            host: self.label.clone(),
            op,
            message: e.to_string(),
        }
    }

    async fn rsa_hash(&self, session: &Session) -> Result<Option<HashAlg>, HostError> {
        Ok(session
            .best_supported_rsa_hash()
            .await
            .map_err(|e| self.ssh_err("authenticate", e))?
            // The server did not say: every OpenSSH since 7.2 takes rsa-sha2-256.
            .unwrap_or(Some(HashAlg::Sha256)))
    }

    async fn authenticate(&self, session: &mut Session) -> Result<(), HostError> {
        let user = self.config.user.clone();
        let failed = |method: String, remaining: &russh::MethodSet| HostError::AuthFailed {
            host: self.label.clone(),
            user: user.clone(),
            method,
            remaining: remaining
                .iter()
                .map(<&'static str>::from)
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some(text) = &self.config.private_key {
            let key = text.parse()?;
            let (_, fingerprint) = describe_key(key.public_key());
            let hash = if key.algorithm().is_rsa() {
                self.rsa_hash(session).await?
            } else {
                None
            };
            let result = session
                .authenticate_publickey(
                    user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| self.ssh_err("authenticate", e))?;
            return match result {
                client::AuthResult::Success => Ok(()),
                client::AuthResult::Failure {
                    remaining_methods, ..
                } => Err(failed(
                    format!("the private key {fingerprint}"),
                    &remaining_methods,
                )),
            };
        }

        let socket = self
            .config
            .agent_socket
            .clone()
            .or_else(|| std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty());
        let Some(socket) = socket else {
            return Err(HostError::NoCredentials {
                host: self.label.clone(),
            });
        };
        let agent_err = |message: String| HostError::Agent {
            host: self.label.clone(),
            socket: socket.display().to_string(),
            message,
        };
        let mut agent = AgentClient::connect_uds(&socket)
            .await
            .map_err(|e| agent_err(e.to_string()))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| agent_err(e.to_string()))?;
        let mut tried = Vec::new();
        let none: &[russh::MethodKind] = &[];
        let mut remaining = russh::MethodSet::from(none);
        for identity in identities {
            let AgentIdentity::PublicKey { key, .. } = identity else {
                continue;
            };
            let (_, fingerprint) = describe_key(&key);
            let hash = if key.algorithm().is_rsa() {
                self.rsa_hash(session).await?
            } else {
                None
            };
            match session
                .authenticate_publickey_with(user.clone(), key, hash, &mut agent)
                .await
            {
                Ok(client::AuthResult::Success) => return Ok(()),
                Ok(client::AuthResult::Failure {
                    remaining_methods, ..
                }) => {
                    remaining = remaining_methods;
                    tried.push(fingerprint);
                }
                Err(e) => tried.push(format!("{fingerprint} (agent: {e})")),
            }
        }
        if tried.is_empty() {
            return Err(agent_err("the agent holds no usable key".to_string()));
        }
        Err(failed(
            format!("the agent's keys {}", tried.join(", ")),
            &remaining,
        ))
    }
}

/// Reads a channel until it closes (or, once the command exited, until it stays quiet for
/// [`DRAIN_GRACE`]).
async fn read_channel(
    read: &mut russh::ChannelReadHalf,
    out: &mut Output,
) -> Result<(), &'static str> {
    let mut exited = false;
    loop {
        let msg = if exited {
            match tokio::time::timeout(DRAIN_GRACE, read.wait()).await {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            read.wait().await
        };
        match msg {
            None | Some(ChannelMsg::Close) => break,
            Some(ChannelMsg::Data { data }) => push_limited(&mut out.stdout, &data, STDOUT_LIMIT),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                push_limited(&mut out.stderr, &data, STDERR_LIMIT);
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                out.status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
                exited = true;
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                out.signal = Some(match signal_name {
                    russh::Sig::Custom(name) => name,
                    other => format!("{other:?}"),
                });
                exited = true;
            }
            Some(ChannelMsg::Failure) => return Err("the server refused to run the command"),
            Some(_) => {}
        }
    }
    Ok(())
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.label
    }

    fn timeouts(&self) -> Timeouts {
        self.config.timeouts
    }

    async fn run(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> Result<Output, HostError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || HostError::Timeout {
            host: self.label.clone(),
            op: "exec",
            after: timeout,
        };
        let mut file = match stdin {
            Stdin::File(p) => Some(tokio::fs::File::open(p).await.map_err(|e| HostError::Io {
                host: self.label.clone(),
                op: "exec",
                message: format!("{}: {e}", p.display()),
            })?),
            _ => None,
        };
        let channel = tokio::time::timeout_at(deadline, self.open_channel(command))
            .await
            .map_err(|_| timed_out())??;
        let (mut read, write) = channel.split();

        let mut out = Output::default();
        let outcome = {
            let feed = async {
                let sent = match (stdin, file.as_mut()) {
                    (Stdin::Bytes(b), _) => write.data(b).await,
                    (Stdin::File(_), Some(f)) => write.data(f).await,
                    _ => Ok(()),
                };
                let eof = write.eof().await;
                sent.and(eof)
            };
            let reading = read_channel(&mut read, &mut out);
            let work = async {
                tokio::pin!(feed);
                tokio::pin!(reading);
                let mut fed = None;
                let read_result = loop {
                    tokio::select! {
                        r = &mut reading => break r,
                        f = &mut feed, if fed.is_none() => fed = Some(f),
                    }
                };
                if fed.is_none() {
                    // The command is done; a writer still blocked on the window will not finish.
                    fed = tokio::time::timeout(WRITER_GRACE, &mut feed).await.ok();
                }
                (fed, read_result)
            };
            tokio::time::timeout_at(deadline, work).await
        };
        match outcome {
            Err(_) => {
                // Best effort: OpenSSH honours "signal" requests; closing the channel hangs up.
                let _ = write.signal(russh::Sig::KILL).await;
                let _ = write.close().await;
                Err(timed_out())
            }
            Ok((fed, read_result)) => {
                read_result.map_err(|m| self.ssh_err("exec", m))?;
                if out.status.is_none() && out.signal.is_none() {
                    return Err(self.ssh_err(
                        "exec",
                        "the channel closed without an exit status (connection lost?)",
                    ));
                }
                // A command may ignore bytes given on stdin; a file it was to receive whole.
                if out.success() && matches!(stdin, Stdin::File(_)) {
                    match fed {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            return Err(
                                self.ssh_err("exec", format!("stdin was not fully delivered: {e}"))
                            );
                        }
                        None => {
                            return Err(self.ssh_err(
                                "exec",
                                "the command exited before reading all of its stdin",
                            ));
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    async fn close(&self) {
        if let Some(s) = self.session.lock().await.take() {
            let _ = s
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Quoting and validation
// ------------------------------------------------------------------------------------------

/// Quotes `s` as one `sh` word: unchanged when made only of characters no shell treats
/// specially, else in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:@,+%".contains(&b));
    if plain {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// Rejects what a command line or our line-based outputs cannot carry.
fn check_text(what: &'static str, s: &str) -> Result<(), HostError> {
    if s.contains(['\0', '\n', '\r']) {
        return Err(invalid(what, s, "contains a NUL or line break"));
    }
    Ok(())
}

fn check_path(what: &'static str, s: &str) -> Result<(), HostError> {
    if s.is_empty() {
        return Err(invalid(what, s, "is empty"));
    }
    check_text(what, s)
}

/// A deploy directory: absolute, without trailing slashes.
fn deploy_dir_arg(dir: &str) -> Result<String, HostError> {
    check_path("deploy_dir", dir)?;
    if !dir.starts_with('/') {
        return Err(invalid("deploy_dir", dir, "must be an absolute path"));
    }
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(invalid("deploy_dir", dir, "must not be /"));
    }
    Ok(trimmed.to_string())
}

/// A version is one path component: letters, digits, `.`, `_`, `+`, `-`, not starting with a
/// dot or dash, at most 128 bytes.
pub fn check_version(version: &str) -> Result<(), HostError> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        && !version.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "version",
            version,
            "must be 1-128 of A-Z a-z 0-9 . _ + - and not start with . or -",
        ))
    }
}

fn normalize_sha256(s: &str) -> Result<String, HostError> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(invalid("sha256", &s, "must be 64 hexadecimal digits"))
    }
}

fn parent_dir(path: &str) -> Option<&str> {
    match path.rsplit_once('/') {
        Some(("", _)) => Some("/"),
        Some((parent, _)) => Some(parent),
        None => None,
    }
}

/// The version a `current` target names: its last path component.
fn version_of_target(target: &str) -> Option<String> {
    let t = target.trim().trim_end_matches('/');
    let last = t.rsplit('/').next().unwrap_or(t);
    (!last.is_empty()).then(|| last.to_string())
}

// ------------------------------------------------------------------------------------------
// Deploy lock
// ------------------------------------------------------------------------------------------

/// The content of a lock's owner file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: String,
    /// Epoch seconds, host clock.
    pub expires_at: u64,
    /// Random, per acquisition: releases and renewals only touch the lock holding it.
    pub token: String,
}

impl LockInfo {
    #[cfg(test)]
    fn render(&self) -> String {
        format!(
            "owner={}\nexpires={}\ntoken={}\n",
            self.owner, self.expires_at, self.token
        )
    }
}

/// Parses an owner file (`key=value` lines; unknown keys ignored).
pub fn parse_lock_file(text: &str) -> Result<LockInfo, String> {
    let (mut owner, mut expires, mut token) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "owner" => owner = Some(v.to_string()),
            "expires" => {
                expires = Some(
                    v.trim()
                        .parse::<u64>()
                        .map_err(|e| format!("expires {v:?}: {e}"))?,
                );
            }
            "token" => token = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Ok(LockInfo {
        owner: owner.ok_or("no owner")?,
        expires_at: expires.ok_or("no expires")?,
        token: token.ok_or("no token")?,
    })
}

/// A deploy lock we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployLock {
    pub deploy_dir: String,
    pub owner: String,
    pub token: String,
    /// Epoch seconds, host clock.
    pub expires_at: u64,
}

/// What [`release_lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockRelease {
    Released,
    /// No lock at all (removed by hand).
    AlreadyGone,
    /// Ours expired and another owner took it over; left alone.
    TakenOver(LockInfo),
}

/// Takes the deploy lock of `deploy_dir` for `owner` until `ttl` from now (host clock),
/// creating the directory if needed. A lock held by `owner` itself, or expired, is taken over;
/// a live lock of another owner is [`HostError::LockHeld`].
///
/// The lock is a directory, created complete (owner file inside) under a temporary name and
/// renamed into place, so it never exists without its owner file; a takeover renames the old
/// lock away and checks that what it moved is what it judged expired.
pub async fn acquire_lock(
    t: &dyn Transport,
    deploy_dir: &str,
    owner: &str,
    ttl: Duration,
) -> Result<DeployLock, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_path("lock owner", owner)?;
    let ttl_secs = ttl.as_secs().max(1);
    let timeout = t.timeouts().command;
    let lock = format!("{d}/{LOCK_DIR}");
    for _ in 0..LOCK_ATTEMPTS {
        let tok = token();
        let new = format!("{lock}.new.{tok}");
        let cmd = format!(
            "d={d}; l={l}; n={n}\n\
             mkdir -p -- \"$d\" || exit 1\n\
             now=$(date +%s) || exit 1\n\
             rm -rf -- \"$n\"; mkdir -- \"$n\" || exit 1\n\
             printf 'owner=%s\\nexpires=%s\\ntoken=%s\\n' {owner} \"$((now + {ttl_secs}))\" {tok} \
             > \"$n/owner\" || {{ rm -rf -- \"$n\"; exit 1; }}\n\
             if err=$(mv -T -- \"$n\" \"$l\" 2>&1); then echo acquired; cat -- \"$l/owner\"; exit 0; fi\n\
             rm -rf -- \"$n\"\n\
             if [ ! -d \"$l\" ]; then printf '%s\\n' \"$err\" >&2; exit 1; fi\n\
             echo \"held $now $(stat -c %Y -- \"$l\" 2>/dev/null || echo 0)\"\n\
             cat -- \"$l/owner\" 2>/dev/null\n\
             exit 0",
            d = shell_quote(&d),
            l = shell_quote(&lock),
            n = shell_quote(&new),
            owner = shell_quote(owner),
        );
        let out = run_ok(t, "acquire deploy lock", &cmd, Stdin::Null, timeout).await?;
        let unexpected = || HostError::UnexpectedOutput {
            host: t.host().to_string(),
            op: "acquire deploy lock",
            output: out.clone(),
        };
        let (head, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
        if head == "acquired" {
            let info = parse_lock_file(rest).map_err(|_| unexpected())?;
            if info.token != tok {
                continue;
            }
            tracing::info!(host = t.host(), deploy_dir = %d, owner, expires_at = info.expires_at, "deploy lock acquired");
            return Ok(DeployLock {
                deploy_dir: d,
                owner: owner.to_string(),
                token: tok,
                expires_at: info.expires_at,
            });
        }
        let mut words = head.split_whitespace();
        let (Some("held"), Some(now), Some(mtime)) = (words.next(), words.next(), words.next())
        else {
            return Err(unexpected());
        };
        let now: u64 = now.parse().map_err(|_| unexpected())?;
        let mtime: u64 = mtime.parse().unwrap_or(0);
        match parse_lock_file(rest) {
            Ok(info) if info.expires_at > now && info.owner != owner => {
                return Err(HostError::LockHeld {
                    host: t.host().to_string(),
                    deploy_dir: d,
                    holder: info.owner,
                    expires_at: info.expires_at,
                    remaining_secs: info.expires_at - now,
                });
            }
            Ok(info) => {
                tracing::info!(
                    host = t.host(), deploy_dir = %d, holder = %info.owner, expires_at = info.expires_at,
                    "taking over a deploy lock (expired, or our own)"
                );
            }
            // Not written by us (or damaged): judged by its age.
            Err(_) if mtime + ttl_secs > now => {
                return Err(HostError::LockHeld {
                    host: t.host().to_string(),
                    deploy_dir: d,
                    holder: "(unreadable owner file)".to_string(),
                    expires_at: mtime + ttl_secs,
                    remaining_secs: mtime + ttl_secs - now,
                });
            }
            Err(_) => {}
        }
        take_over(t, &d, &lock, rest, timeout).await?;
    }
    Err(HostError::LockContention {
        host: t.host().to_string(),
        deploy_dir: d,
    })
}

/// Removes the lock at `lock` if its owner file still reads `expected`.
async fn take_over(
    t: &dyn Transport,
    d: &str,
    lock: &str,
    expected: &str,
    timeout: Duration,
) -> Result<(), HostError> {
    let stale = format!("{lock}.stale.{}", token());
    let cmd = format!(
        "l={l}; s={s}\n\
         if ! mv -T -- \"$l\" \"$s\" 2>/dev/null; then echo gone; exit 0; fi\n\
         cur=$(cat -- \"$s/owner\" 2>/dev/null; echo x)\n\
         want=$(cat; echo x)\n\
         if [ \"$cur\" = \"$want\" ]; then rm -rf -- \"$s\"; echo removed; exit 0; fi\n\
         if mv -T -- \"$s\" \"$l\" 2>/dev/null; then echo restored; else rm -rf -- \"$s\"; echo lost; fi",
        l = shell_quote(lock),
        s = shell_quote(&stale),
    );
    let out = run_ok(
        t,
        "take over deploy lock",
        &cmd,
        Stdin::Bytes(expected.as_bytes()),
        timeout,
    )
    .await?;
    match out.trim() {
        "gone" | "removed" | "restored" => Ok(()),
        "lost" => Err(HostError::LockContention {
            host: t.host().to_string(),
            deploy_dir: d.to_string(),
        }),
        other => Err(HostError::UnexpectedOutput {
            host: t.host().to_string(),
            op: "take over deploy lock",
            output: other.to_string(),
        }),
    }
}

/// Extends a lock we hold to `ttl` from now; [`HostError::LockLost`] if it is no longer ours.
pub async fn renew_lock(
    t: &dyn Transport,
    lock: &DeployLock,
    ttl: Duration,
) -> Result<DeployLock, HostError> {
    let d = deploy_dir_arg(&lock.deploy_dir)?;
    let ttl_secs = ttl.as_secs().max(1);
    let l = format!("{d}/{LOCK_DIR}");
    let cmd = format!(
        "l={l}\n\
         if ! grep -qxF -- {tokline} \"$l/owner\" 2>/dev/null; then echo lost; cat -- \"$l/owner\" 2>/dev/null; exit 0; fi\n\
         now=$(date +%s) || exit 1\n\
         exp=$((now + {ttl_secs}))\n\
         printf 'owner=%s\\nexpires=%s\\ntoken=%s\\n' {owner} \"$exp\" {tok} > \"$l/owner.tmp\" \
         && mv -f -- \"$l/owner.tmp\" \"$l/owner\" && echo \"renewed $exp\"",
        l = shell_quote(&l),
        tokline = shell_quote(&format!("token={}", lock.token)),
        owner = shell_quote(&lock.owner),
        tok = shell_quote(&lock.token),
    );
    let out = run_ok(
        t,
        "renew deploy lock",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    let (head, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    if let Some(exp) = head.strip_prefix("renewed ")
        && let Ok(expires_at) = exp.trim().parse()
    {
        return Ok(DeployLock {
            expires_at,
            ..lock.clone()
        });
    }
    if head == "lost" {
        let info = parse_lock_file(rest).ok();
        return Err(HostError::LockLost {
            host: t.host().to_string(),
            deploy_dir: d,
            holder: info
                .as_ref()
                .map_or_else(|| "(nobody)".to_string(), |i| i.owner.clone()),
            expires_at: info.map_or(0, |i| i.expires_at),
        });
    }
    Err(HostError::UnexpectedOutput {
        host: t.host().to_string(),
        op: "renew deploy lock",
        output: out,
    })
}

/// Releases a lock we hold (only if it still carries our token).
pub async fn release_lock(t: &dyn Transport, lock: &DeployLock) -> Result<LockRelease, HostError> {
    let d = deploy_dir_arg(&lock.deploy_dir)?;
    let l = format!("{d}/{LOCK_DIR}");
    let cmd = format!(
        "l={l}; s={s}\n\
         [ -d \"$l\" ] || {{ echo absent; exit 0; }}\n\
         if grep -qxF -- {tokline} \"$l/owner\" 2>/dev/null; then\n\
           mv -T -- \"$l\" \"$s\" && rm -rf -- \"$s\" && echo released\n\
         else echo other; cat -- \"$l/owner\" 2>/dev/null; fi",
        s = shell_quote(&format!("{l}.released.{}", token())),
        l = shell_quote(&l),
        tokline = shell_quote(&format!("token={}", lock.token)),
    );
    let out = run_ok(
        t,
        "release deploy lock",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    let (head, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    match head.trim() {
        "released" => {
            tracing::info!(host = t.host(), deploy_dir = %d, "deploy lock released");
            Ok(LockRelease::Released)
        }
        "absent" => Ok(LockRelease::AlreadyGone),
        "other" => match parse_lock_file(rest) {
            Ok(info) => Ok(LockRelease::TakenOver(info)),
            Err(_) => Ok(LockRelease::AlreadyGone),
        },
        _ => Err(HostError::UnexpectedOutput {
            host: t.host().to_string(),
            op: "release deploy lock",
            output: out,
        }),
    }
}

// ------------------------------------------------------------------------------------------
// Releases
// ------------------------------------------------------------------------------------------

/// A release on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRelease {
    /// `<deploy_dir>/releases/<version>`.
    pub path: String,
    pub sha256: String,
    /// Bytes uploaded (0 when it was already there).
    pub uploaded_bytes: u64,
    /// It was already installed from the same artifact: nothing was done.
    pub already_present: bool,
}

/// Installs `artifact` (a local `.tar.gz`) as `releases/<version>`: uploaded under a temporary
/// name, its sha256 checked on the host against `expected_sha256`, unpacked into a temporary
/// directory, then renamed into place. Already installed from the same artifact: nothing to
/// do. Installed from another artifact: replaced, unless it is the live release
/// ([`HostError::ReleaseConflict`]). Nothing is left behind on failure.
pub async fn install_release(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
    artifact: &Path,
    expected_sha256: &str,
) -> Result<InstalledRelease, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let expected = normalize_sha256(expected_sha256)?;
    let timeouts = t.timeouts();
    let releases = format!("{d}/{RELEASES_DIR}");
    let release = format!("{releases}/{version}");

    let probe = format!(
        "r={r}\n\
         (umask 022 && mkdir -p -- {rs}) || exit 1\n\
         if [ -d \"$r\" ]; then printf 'present '; cat -- \"$r/{ARTIFACT_SHA256_FILE}\" 2>/dev/null || echo; \
         else echo absent; fi\n\
         readlink -- {cur} 2>/dev/null || echo",
        r = shell_quote(&release),
        rs = shell_quote(&releases),
        cur = shell_quote(&format!("{d}/{CURRENT_LINK}")),
    );
    let out = run_ok(t, "install release", &probe, Stdin::Null, timeouts.command).await?;
    let mut lines = out.lines();
    let state = lines.next().unwrap_or_default().trim();
    let current = lines.next().and_then(version_of_target);
    if let Some(installed) = state.strip_prefix("present") {
        let installed = installed.trim();
        if installed == expected {
            return Ok(InstalledRelease {
                path: release,
                sha256: expected,
                uploaded_bytes: 0,
                already_present: true,
            });
        }
        if current.as_deref() == Some(version) {
            return Err(HostError::ReleaseConflict {
                host: t.host().to_string(),
                deploy_dir: d,
                version: version.to_string(),
                installed: (!installed.is_empty()).then(|| installed.to_string()),
                expected,
            });
        }
        tracing::warn!(
            host = t.host(),
            version,
            "release present with another artifact; replacing it"
        );
    }

    let tok = token();
    let incoming = format!("{releases}/.incoming-{version}-{tok}.tar.gz");
    let started = Instant::now();
    let uploaded_bytes = t
        .upload(artifact, &incoming, 0o600)
        .await
        .map_err(|e| e.in_op("upload artifact"))?;
    let remove_incoming = format!("rm -f -- {}", shell_quote(&incoming));
    let actual = match t.sha256(&incoming).await {
        Ok(s) => s,
        Err(e) => {
            let _ = t.exec(&remove_incoming, None, timeouts.command).await;
            return Err(e.in_op("verify artifact"));
        }
    };
    if actual != expected {
        let _ = t.exec(&remove_incoming, None, timeouts.command).await;
        return Err(HostError::ChecksumMismatch {
            host: t.host().to_string(),
            path: format!("{} (uploaded from {})", incoming, artifact.display()),
            expected,
            actual,
        });
    }
    tracing::info!(
        host = t.host(),
        version,
        bytes = uploaded_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "artifact uploaded and verified"
    );

    let unpack = format!(
        "set -e; umask 022\n\
         r={r}; inc={inc}; u={u}; old={old}\n\
         trap 'rm -rf -- \"$u\" \"$inc\" \"$old\"' EXIT\n\
         mkdir -- \"$u\"\n\
         tar -xzf \"$inc\" -C \"$u\" --no-same-owner\n\
         src=$u; n=0; one=\n\
         for e in \"$u\"/* \"$u\"/.[!.]* \"$u\"/..?*; do\n\
           if [ -e \"$e\" ] || [ -L \"$e\" ]; then n=$((n + 1)); one=$e; fi\n\
         done\n\
         if [ \"$n\" -eq 0 ]; then echo 'the artifact is an empty archive' >&2; exit 1; fi\n\
         if [ \"$n\" -eq 1 ] && [ -d \"$one\" ] && [ ! -L \"$one\" ]; then src=$one; fi\n\
         printf '%s\\n' {sha} > \"$src/{ARTIFACT_SHA256_FILE}\"\n\
         touch -- \"$src\"\n\
         if [ -e \"$r\" ] || [ -L \"$r\" ]; then mv -T -- \"$r\" \"$old\"; fi\n\
         mv -T -- \"$src\" \"$r\"",
        r = shell_quote(&release),
        inc = shell_quote(&incoming),
        u = shell_quote(&format!("{releases}/.unpack-{version}-{tok}")),
        old = shell_quote(&format!("{releases}/.replaced-{version}-{tok}")),
        sha = shell_quote(&expected),
    );
    run_ok(t, "unpack release", &unpack, Stdin::Null, timeouts.transfer).await?;
    tracing::info!(host = t.host(), version, path = %release, "release installed");
    Ok(InstalledRelease {
        path: release,
        sha256: expected,
        uploaded_bytes,
        already_present: false,
    })
}

/// The sha256 of the artifact `releases/<version>` was unpacked from; `None` when the release
/// is absent or has no record.
pub async fn release_sha256(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
) -> Result<Option<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let cmd = format!(
        "cat -- {} 2>/dev/null || true",
        shell_quote(&format!(
            "{d}/{RELEASES_DIR}/{version}/{ARTIFACT_SHA256_FILE}"
        ))
    );
    let out = run_ok(
        t,
        "read release checksum",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    Ok(normalize_sha256(&out).ok())
}

/// Points `current` at `releases/<version>` atomically (a new symlink renamed over the old
/// one). Returns the version it pointed to before.
pub async fn switch_current(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
) -> Result<Option<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let cmd = format!(
        "d={d}; r={r}; tmp={tmp}\n\
         [ -d \"$d/$r\" ] || {{ echo missing; exit 0; }}\n\
         prev=$(readlink -- \"$d/{CURRENT_LINK}\" 2>/dev/null || true)\n\
         ln -sfn -- \"$r\" \"$tmp\" && mv -T -- \"$tmp\" \"$d/{CURRENT_LINK}\" \
         || {{ rc=$?; rm -f -- \"$tmp\"; exit $rc; }}\n\
         echo switched; printf '%s\\n' \"$prev\"",
        d = shell_quote(&d),
        r = shell_quote(&format!("{RELEASES_DIR}/{version}")),
        tmp = shell_quote(&format!("{d}/.{CURRENT_LINK}.{}", token())),
    );
    let out = run_ok(t, "switch current", &cmd, Stdin::Null, t.timeouts().command).await?;
    let mut lines = out.lines();
    match lines.next().map(str::trim) {
        Some("switched") => {
            let previous = lines.next().and_then(version_of_target);
            tracing::info!(host = t.host(), version, previous = ?previous, "current switched");
            Ok(previous)
        }
        Some("missing") => Err(HostError::ReleaseMissing {
            host: t.host().to_string(),
            deploy_dir: d,
            version: version.to_string(),
        }),
        _ => Err(HostError::UnexpectedOutput {
            host: t.host().to_string(),
            op: "switch current",
            output: out,
        }),
    }
}

/// The version `current` points to, or `None` when there is no `current`.
pub async fn current(t: &dyn Transport, deploy_dir: &str) -> Result<Option<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let cmd = format!(
        "c={c}\n\
         if [ -L \"$c\" ]; then readlink -- \"$c\"; \
         elif [ -e \"$c\" ]; then echo \"$c is not a symbolic link\" >&2; exit 1; fi",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
    );
    let out = run_ok(t, "read current", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(version_of_target(&out))
}

/// Appends one line to `revisions.log`.
pub async fn append_revision(
    t: &dyn Transport,
    deploy_dir: &str,
    line: &str,
) -> Result<(), HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_text("revision line", line)?;
    let cmd = format!(
        "(umask 022 && mkdir -p -- {d}) && printf '%s\\n' {line} >> {log}",
        d = shell_quote(&d),
        line = shell_quote(line),
        log = shell_quote(&format!("{d}/{REVISIONS_LOG}")),
    );
    run_ok(
        t,
        "append revision",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    Ok(())
}

/// The last `n` lines of `revisions.log` (oldest first); empty when there is none.
pub async fn revisions(
    t: &dyn Transport,
    deploy_dir: &str,
    n: usize,
) -> Result<Vec<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let log = shell_quote(&format!("{d}/{REVISIONS_LOG}"));
    let cmd = format!("if [ -f {log} ]; then tail -n {n} -- {log}; fi");
    let out = run_ok(t, "read revisions", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Removes releases beyond the `keep` most recently installed, never `current`'s nor those
/// in `protect`; also temporary entries older than an hour. Returns the versions removed.
pub async fn prune(
    t: &dyn Transport,
    deploy_dir: &str,
    keep: usize,
    protect: &[&str],
) -> Result<Vec<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let releases = format!("{d}/{RELEASES_DIR}");
    let list = format!(
        "cd -- {rs} 2>/dev/null || exit 0\n\
         printf 'current %s\\n' \"$(readlink -- ../{CURRENT_LINK} 2>/dev/null)\"\n\
         find . -mindepth 1 -maxdepth 1 \\( -name '.incoming-*' -o -name '.unpack-*' -o -name '.replaced-*' \\) \
         -mmin +{STALE_TEMP_MINUTES} -exec rm -rf -- {{}} + 2>/dev/null || true\n\
         find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\\n'",
        rs = shell_quote(&releases),
    );
    let out = run_ok(
        t,
        "prune releases",
        &list,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    let mut current = None;
    let mut installed: Vec<(f64, String)> = Vec::new();
    for line in out.lines() {
        if let Some(target) = line.strip_prefix("current ") {
            current = version_of_target(target);
        } else if let Some((mtime, name)) = line.split_once(' ')
            && let Ok(mtime) = mtime.parse::<f64>()
            && check_version(name).is_ok()
        {
            installed.push((mtime, name.to_string()));
        }
    }
    let doomed = releases_to_prune(installed, keep, current.as_deref(), protect);
    if doomed.is_empty() {
        return Ok(doomed);
    }
    let cmd = format!(
        "cd -- {rs} && rm -rf -- {names}",
        rs = shell_quote(&releases),
        names = doomed
            .iter()
            .map(|v| shell_quote(v))
            .collect::<Vec<_>>()
            .join(" "),
    );
    run_ok(
        t,
        "prune releases",
        &cmd,
        Stdin::Null,
        t.timeouts().transfer,
    )
    .await?;
    tracing::info!(host = t.host(), removed = ?doomed, "releases pruned");
    Ok(doomed)
}

/// Newest first by install time (ties: version name, descending); the first `keep`, the
/// current one and the protected ones stay.
fn releases_to_prune(
    mut installed: Vec<(f64, String)>,
    keep: usize,
    current: Option<&str>,
    protect: &[&str],
) -> Vec<String> {
    installed.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    installed
        .into_iter()
        .enumerate()
        .filter(|(i, (_, v))| {
            *i >= keep && Some(v.as_str()) != current && !protect.contains(&v.as_str())
        })
        .map(|(_, (_, v))| v)
        .collect()
}

// ------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------

/// The sha256 of a file on the host; `None` when it does not exist.
pub async fn file_sha256(t: &dyn Transport, path: &str) -> Result<Option<String>, HostError> {
    check_path("path", path)?;
    let cmd = format!(
        "if [ -f {p} ]; then {sha}; elif [ -e {p} ]; then echo {msg} >&2; exit 1; \
         else echo missing; fi",
        p = shell_quote(path),
        sha = sha256_command(path),
        msg = shell_quote(&format!("{path} is not a regular file")),
    );
    let out = run_ok(t, "sha256", &cmd, Stdin::Null, t.timeouts().transfer).await?;
    if out.trim() == "missing" {
        return Ok(None);
    }
    parse_sha256_output(t.host(), &out).map(Some)
}

/// Writes `content` to `path` with permissions `mode` through a temporary file and a rename
/// (readers see the old or the new file, never a partial one); the parent is created (0755).
/// The content travels on stdin and is never logged.
pub async fn write_file(
    t: &dyn Transport,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<(), HostError> {
    check_path("path", path)?;
    let parent = parent_dir(path).ok_or_else(|| invalid("path", path, "must be absolute"))?;
    let cmd = atomic_write_command(path, mode, content.len() as u64, Some(parent))?;
    run_ok(
        t,
        "write file",
        &cmd,
        Stdin::Bytes(content),
        t.timeouts().command,
    )
    .await?;
    Ok(())
}

/// The env file for `env`: a header comment, then `KEY=value` lines in key order. Keys are
/// `[A-Za-z_][A-Za-z0-9_]*`; values are taken literally and may not contain line breaks or NUL.
/// Errors name the key, never the value.
pub fn env_file_content(env: &BTreeMap<String, String>) -> Result<String, HostError> {
    let mut s = String::from("# Managed by terraform-provider-artifortress; edits are reverted.\n");
    for (k, v) in env {
        let key_ok = k
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(invalid("env key", k, "must match [A-Za-z_][A-Za-z0-9_]*"));
        }
        if v.contains(['\0', '\n', '\r']) {
            return Err(invalid(
                "env value of",
                k,
                "contains a NUL or line break, which env files cannot hold",
            ));
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    }
    Ok(s)
}

/// Where a deployment's env-fingerprint key lives, below the deploy dir.
pub const ENV_KEY_FILE: &str = "shared/env-fingerprint.key";

/// The deployment's env-fingerprint key: 32 random bytes, kept as 64 hex digits in
/// [`ENV_KEY_FILE`] (mode 0600) on every host of the deployment and nowhere else (never in
/// state, plan or logs). Fingerprints keyed with it let drift detection compare env files
/// without handing anyone who reads the state a plain sha256 to test guessed secrets against.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvKey(String);

impl EnvKey {
    pub fn generate() -> EnvKey {
        EnvKey(hex::encode(rand::random::<[u8; 32]>()))
    }

    /// The key from its file's content (64 hex digits, surrounding white space ignored).
    pub fn parse(text: &str) -> Option<EnvKey> {
        let t = text.trim();
        (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| EnvKey(t.to_ascii_lowercase()))
    }

    /// What the key file holds: the hex digits and a newline.
    fn file_content(&self) -> String {
        format!("{}\n", self.0)
    }
}

impl fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvKey(..)")
    }
}

/// Where the key file of `deploy_dir` lives.
pub fn env_key_path(deploy_dir: &str) -> String {
    format!("{}/{ENV_KEY_FILE}", deploy_dir.trim_end_matches('/'))
}

/// The keyed fingerprint of the env file [`write_env`] writes for `env`: the sha256 of the key
/// file's content followed by the env file's, which is what a host computes with
/// `cat <key file> <env file> | sha256sum` (see [`inspect`]). Without the key, which never
/// leaves the hosts, it confirms no guess.
pub fn env_fingerprint(key: &EnvKey, env: &BTreeMap<String, String>) -> Result<String, HostError> {
    let mut h = sha2::Sha256::new();
    h.update(key.file_content().as_bytes());
    h.update(env_file_content(env)?.as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// The plain sha256 of the env file for `env`: what provider versions before the keyed
/// fingerprints kept in state. Only compared against such old states, never stored.
pub fn env_sha256(env: &BTreeMap<String, String>) -> Result<String, HostError> {
    Ok(hex::encode(sha2::Sha256::digest(
        env_file_content(env)?.as_bytes(),
    )))
}

/// Writes an env file, mode 0600, atomically.
pub async fn write_env(
    t: &dyn Transport,
    path: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), HostError> {
    let content = env_file_content(env)?;
    write_file(t, path, content.as_bytes(), 0o600)
        .await
        .map_err(|e| e.in_op("write env file"))?;
    tracing::info!(host = t.host(), path, keys = env.len(), "env file written");
    Ok(())
}

/// Writes the deployment's env-fingerprint key (mode 0600, atomically).
pub async fn write_env_key(
    t: &dyn Transport,
    deploy_dir: &str,
    key: &EnvKey,
) -> Result<(), HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    write_file(t, &env_key_path(&d), key.file_content().as_bytes(), 0o600)
        .await
        .map_err(|e| e.in_op("write env fingerprint key"))?;
    tracing::info!(host = t.host(), "env fingerprint key written");
    Ok(())
}

/// A file's checksums as a host computed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSums {
    /// sha256 of the file.
    pub sha256: String,
    /// sha256 of the deployment key file followed by the file ([`env_fingerprint`]); `None`
    /// when the host has no key file.
    pub keyed: Option<String>,
}

/// What a host has now: the release `current` names, the artifact that release came from,
/// the deployment's env-fingerprint key, and the checksums of each file asked about (`None`:
/// no such file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub version: Option<String>,
    pub artifact_sha256: Option<String>,
    pub env_key: Option<EnvKey>,
    pub files: BTreeMap<String, Option<FileSums>>,
}

/// Reads `current`, its artifact checksum, the env-fingerprint key and the checksums of
/// `files` (plain, and keyed where the key exists) in one command.
pub async fn inspect(
    t: &dyn Transport,
    deploy_dir: &str,
    files: &[String],
) -> Result<Inspection, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let mut cmd = format!(
        "c={c}; k={k}\n\
         if [ -L \"$c\" ]; then printf 'current %s\\n' \"$(readlink -- \"$c\")\"; \
         printf 'artifact %s\\n' \"$(cat -- \"$c/{ARTIFACT_SHA256_FILE}\" 2>/dev/null)\"; \
         elif [ -e \"$c\" ]; then echo \"$c is not a symbolic link\" >&2; exit 1; fi\n\
         if [ -f \"$k\" ]; then printf 'key %s\\n' \"$(cat -- \"$k\")\"; fi\n",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
        k = shell_quote(&env_key_path(&d)),
    );
    for (i, f) in files.iter().enumerate() {
        check_path("path", f)?;
        let p = shell_quote(f);
        cmd.push_str(&format!(
            "if [ -f {p} ]; then printf 'file {i} '; {sha}; \
             if [ -f \"$k\" ]; then printf 'keyed {i} '; cat -- \"$k\" {p} | {stdin_sha}; fi; \
             else echo 'file {i} missing'; fi\n",
            sha = sha256_command(f),
            stdin_sha = SHA256_STDIN,
        ));
    }
    let out = run_ok(t, "inspect host", &cmd, Stdin::Null, t.timeouts().transfer).await?;
    let mut found = Inspection::default();
    let mut keyed = BTreeMap::new();
    for line in out.lines() {
        if let Some(target) = line.strip_prefix("current ") {
            found.version = version_of_target(target);
        } else if let Some(sha) = line.strip_prefix("artifact ") {
            found.artifact_sha256 = normalize_sha256(sha).ok();
        } else if let Some(key) = line.strip_prefix("key ") {
            found.env_key = EnvKey::parse(key);
        } else if let Some(rest) = line.strip_prefix("file ")
            && let Some((i, sha)) = rest.split_once(' ')
            && let Some(f) = i.parse::<usize>().ok().and_then(|i| files.get(i))
        {
            let sums = if sha.trim() == "missing" {
                None
            } else {
                Some(FileSums {
                    sha256: parse_sha256_output(t.host(), sha)?,
                    keyed: None,
                })
            };
            found.files.insert(f.clone(), sums);
        } else if let Some(rest) = line.strip_prefix("keyed ")
            && let Some((i, sha)) = rest.split_once(' ')
            && let Some(f) = i.parse::<usize>().ok().and_then(|i| files.get(i))
        {
            keyed.insert(f.clone(), parse_sha256_output(t.host(), sha)?);
        }
    }
    if found.env_key.is_some() {
        for (f, sums) in found.files.iter_mut() {
            if let Some(s) = sums {
                s.keyed = keyed.remove(f);
            }
        }
    }
    Ok(found)
}

/// Keeps a copy of `path` beside it (`<path>.rollback`) for [`restore_stash`]; returns whether
/// `path` existed (when it did not, restoring removes it).
pub async fn stash_file(t: &dyn Transport, path: &str) -> Result<bool, HostError> {
    check_path("path", path)?;
    let cmd = format!(
        "p={p}; s={s}\n\
         if [ -f \"$p\" ]; then cp -p -- \"$p\" \"$s.tmp\" && mv -f -- \"$s.tmp\" \"$s\" && echo present; \
         else rm -f -- \"$s\" && echo absent; fi",
        p = shell_quote(path),
        s = shell_quote(&format!("{path}.rollback")),
    );
    let out = run_ok(t, "stash file", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(out.trim() == "present")
}

/// Puts back what [`stash_file`] kept (or removes `path` when there was nothing). With `keep`,
/// the copy stays for another restore; else it is removed.
pub async fn restore_stash(
    t: &dyn Transport,
    path: &str,
    existed: bool,
    keep: bool,
) -> Result<(), HostError> {
    check_path("path", path)?;
    let s = shell_quote(&format!("{path}.rollback"));
    let p = shell_quote(path);
    let cmd = match (existed, keep) {
        (true, true) => format!("cp -p -- {s} {p}.tmp && mv -f -- {p}.tmp {p}"),
        (true, false) => format!("mv -f -- {s} {p}"),
        (false, _) => format!("rm -f -- {p} {s}"),
    };
    run_ok(t, "restore file", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(())
}

/// Removes the copy [`stash_file`] kept.
pub async fn drop_stash(t: &dyn Transport, path: &str) -> Result<(), HostError> {
    check_path("path", path)?;
    let cmd = format!("rm -f -- {}", shell_quote(&format!("{path}.rollback")));
    run_ok(t, "drop stash", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(())
}

/// Removes `current` (when it is a symbolic link) and `releases/<version>`: what a failed
/// first deploy leaves behind.
pub async fn remove_release(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
) -> Result<(), HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let cmd = format!(
        "c={c}; r={r}\n\
         if [ -L \"$c\" ] && [ \"$(basename -- \"$(readlink -- \"$c\")\")\" = {v} ]; then rm -f -- \"$c\"; fi\n\
         rm -rf -- \"$r\"",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
        r = shell_quote(&format!("{d}/{RELEASES_DIR}/{version}")),
        v = shell_quote(version),
    );
    run_ok(
        t,
        "remove release",
        &cmd,
        Stdin::Null,
        t.timeouts().transfer,
    )
    .await?;
    tracing::info!(host = t.host(), version, "release removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(
            shell_quote("/opt/artifortress/releases/1.4.2"),
            "/opt/artifortress/releases/1.4.2"
        );
        assert_eq!(shell_quote("a=b,c:d@e+f%g"), "a=b,c:d@e+f%g");
    }

    #[test]
    fn quoting_wraps_everything_else() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("~"), "'~'");
    }

    #[test]
    fn quoted_words_round_trip_through_sh() {
        let cases = [
            "",
            "plain",
            "two words",
            "it's",
            "''",
            "'",
            "$HOME $(id) `id` ${x:-y}",
            "a\\b\\\\c",
            "line\nbreak",
            "tab\there",
            "*?[a-z]",
            "-rf",
            "; rm -rf / #",
            "\"double\"",
            "é ü 日本",
            "!event",
            "a'b'c'",
        ];
        for case in cases {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_quote(case)))
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), case, "case {case:?}");
        }
    }

    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPQ0iol2Janq3Yi/dCf6i/+I6g3qhSzY79dOjW3QNfpC";
    const K1_FP: &str = "SHA256:cXsb2puYkjK8p9c56o+8NjCpxY1sy85zailLY4dLMs8";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIMKfVOkhK4ScUvlQ8Nhm1vXNd5S3qZmKDyvImlR0lQjs";
    const K3: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKJyTu3a+W+i6JRW9+cMZMhjJMpO2gnz4ZhJQVAbiUnh1wx/mFSDXyi65bSdQjSO4yOwrDK18/fAJNmaKZdVpBQ=";

    fn key(b64: &str) -> PublicKey {
        let kt = if b64 == K3 {
            "ecdsa-sha2-nistp256"
        } else {
            "ssh-ed25519"
        };
        PublicKey::from_openssh(&format!("{kt} {b64}")).expect("test key")
    }

    #[test]
    fn known_hosts_plain_and_bracketed_entries() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\n[127.0.0.2]:2222 ssh-ed25519 {K1} host-a\n\
             web.example.org,10.0.0.5 ssh-ed25519 {K1}\n"
        ))
        .unwrap();
        assert_eq!(kh.len(), 2);
        assert_eq!(
            kh.check("127.0.0.2", 2222, &key(K1)),
            HostKeyStatus::Trusted { line: 3 }
        );
        // A non-22 port matches only its bracketed form.
        assert_eq!(kh.check("127.0.0.2", 22, &key(K1)), HostKeyStatus::Unknown);
        assert_eq!(
            kh.check("127.0.0.2", 2223, &key(K1)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            kh.check("WEB.example.org", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 4 }
        );
        assert_eq!(
            kh.check("10.0.0.5", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 4 }
        );
        assert_eq!(kh.check("10.0.0.5", 2222, &key(K1)), HostKeyStatus::Unknown);
    }

    #[test]
    fn known_hosts_mismatch_names_the_known_keys() {
        let kh = KnownHosts::parse(&format!("[127.0.0.2]:2222 ssh-ed25519 {K1}\n")).unwrap();
        match kh.check("127.0.0.2", 2222, &key(K2)) {
            HostKeyStatus::Mismatch { known } => {
                assert_eq!(known, vec![format!("ssh-ed25519 {K1_FP} (line 1)")]);
            }
            other => panic!("{other:?}"),
        }
        // Another algorithm listed for the host: still a mismatch (fail closed).
        assert!(matches!(
            kh.check("127.0.0.2", 2222, &key(K3)),
            HostKeyStatus::Mismatch { .. }
        ));
        assert_eq!(
            kh.algorithms_for("127.0.0.2", 2222),
            vec![key(K1).algorithm()]
        );
    }

    #[test]
    fn known_hosts_hashed_entries() {
        // `ssh-keygen -H` of "[127.0.0.2]:2222 …" and "example.org …".
        let kh = KnownHosts::parse(&format!(
            "|1|vtVQWcU0THjECatdhVllmGmAzKU=|jDo7TxrGfxaGsceGJycNbKQYLok= ssh-ed25519 {K1}\n\
             |1|sdofHY//zgSFYylp86qbjBdIqwo=|sNm602cHXLYRJxCzIvm3Z+Me7kQ= ssh-ed25519 {K1}\n"
        ))
        .unwrap();
        assert_eq!(
            kh.check("127.0.0.2", 2222, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            kh.check("example.org", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 2 }
        );
        assert_eq!(
            kh.check("example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn known_hosts_wildcards_negation_and_markers() {
        let kh = KnownHosts::parse(&format!(
            "*.prod.example.org,!bastion.prod.example.org ssh-ed25519 {K1}\n\
             [10.0.1.?]:2200\tssh-ed25519\t{K2}\n\
             @revoked * ssh-ed25519 {K2}\n\
             @cert-authority *.example.com ssh-ed25519 {K1}\n"
        ))
        .unwrap();
        assert_eq!(
            kh.check("api-1.prod.example.org", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            kh.check("bastion.prod.example.org", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
        // K2 is @revoked everywhere, which wins over line 2 trusting it.
        assert_eq!(
            kh.check("10.0.1.7", 2200, &key(K2)),
            HostKeyStatus::Revoked { line: 3 }
        );
        assert!(matches!(
            kh.check("10.0.1.7", 2200, &key(K1)),
            HostKeyStatus::Mismatch { .. }
        ));
        assert_eq!(kh.check("10.0.2.7", 2200, &key(K1)), HostKeyStatus::Unknown);
        // An @cert-authority line is not a host key.
        assert_eq!(
            kh.check("x.example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn known_hosts_errors_name_the_line() {
        let e = KnownHosts::parse(&format!("ok ssh-ed25519 {K1}\nbroken-line\n")).unwrap_err();
        assert!(matches!(e, HostError::KnownHosts { line: 2, .. }), "{e}");
        let e = KnownHosts::parse("h ssh-ed25519 AAAA!!notbase64\n").unwrap_err();
        assert!(matches!(e, HostError::KnownHosts { line: 1, .. }), "{e}");
        let e = KnownHosts::parse(&format!("@weird h ssh-ed25519 {K1}\n")).unwrap_err();
        assert!(e.to_string().contains("unknown marker"), "{e}");
        assert!(KnownHosts::parse("").unwrap().is_empty());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b"anything"));
        assert!(wildcard_match(b"a*c", b"abbbc"));
        assert!(wildcard_match(b"a*b*c", b"aXbYbZc"));
        assert!(!wildcard_match(b"a*c", b"abcd"));
        assert!(wildcard_match(b"h?st", b"host"));
        assert!(!wildcard_match(b"h?st", b"hst"));
        assert!(wildcard_match(b"", b""));
        assert!(!wildcard_match(b"", b"x"));
    }

    #[test]
    fn preferred_host_keys_put_known_algorithms_first() {
        let order = host_key_preference(&[key(K3).algorithm()]);
        assert_eq!(order[0], key(K3).algorithm());
        assert_eq!(order.len(), Preferred::DEFAULT.key.len());
        let rsa = host_key_preference(&[Algorithm::Rsa { hash: None }]);
        assert!(rsa[..3].iter().all(|a| matches!(a, Algorithm::Rsa { .. })));
    }

    #[test]
    fn lock_file_round_trip_and_errors() {
        let info = LockInfo {
            owner: "terraform@ci-7 run=42 a=b".to_string(),
            expires_at: 1_700_000_000,
            token: "00ff00ff00ff00ff".to_string(),
        };
        assert_eq!(parse_lock_file(&info.render()).unwrap(), info);
        assert_eq!(
            parse_lock_file("token=t\nextra=1\nowner=me\nexpires=5").unwrap(),
            LockInfo {
                owner: "me".to_string(),
                expires_at: 5,
                token: "t".to_string()
            }
        );
        assert!(parse_lock_file("").is_err());
        assert!(parse_lock_file("owner=a\ntoken=t\n").is_err());
        assert!(parse_lock_file("owner=a\nexpires=soon\ntoken=t\n").is_err());
    }

    #[test]
    fn versions_and_paths() {
        for ok in ["1.4.2", "v1", "2024.01.02-rc1+build.5", "broken"] {
            check_version(ok).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "a\nb", "ä"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        assert_eq!(deploy_dir_arg("/opt/af/").unwrap(), "/opt/af");
        assert!(deploy_dir_arg("relative").is_err());
        assert!(deploy_dir_arg("/").is_err());
        assert!(deploy_dir_arg("/a\nb").is_err());
        assert_eq!(
            version_of_target("releases/1.4.2\n"),
            Some("1.4.2".to_string())
        );
        assert_eq!(
            version_of_target("/opt/af/releases/v2/"),
            Some("v2".to_string())
        );
        assert_eq!(version_of_target("\n"), None);
        assert_eq!(parent_dir("/opt/af/shared/api.env"), Some("/opt/af/shared"));
        assert_eq!(parent_dir("/x"), Some("/"));
        assert_eq!(parent_dir("x"), None);
    }

    #[test]
    fn prune_selection() {
        let installed = vec![
            (10.0, "v1".to_string()),
            (30.0, "v3".to_string()),
            (20.0, "v2".to_string()),
            (40.0, "v4".to_string()),
        ];
        assert_eq!(
            releases_to_prune(installed.clone(), 2, Some("v4"), &[]),
            vec!["v2", "v1"]
        );
        assert_eq!(
            releases_to_prune(installed.clone(), 1, Some("v2"), &["v1"]),
            vec!["v3"]
        );
        assert!(releases_to_prune(installed, 10, None, &[]).is_empty());
    }

    #[test]
    fn env_files() {
        let env = BTreeMap::from([
            ("Worker__BatchSize".to_string(), "100".to_string()),
            (
                "ConnectionStrings__Postgres".to_string(),
                "Host=db;Password='p w'=x".to_string(),
            ),
        ]);
        let content = env_file_content(&env).unwrap();
        assert!(content.ends_with(
            "ConnectionStrings__Postgres=Host=db;Password='p w'=x\nWorker__BatchSize=100\n"
        ));
        assert_eq!(env_sha256(&env).unwrap().len(), 64);
        // Keyed: differs from the plain sha256, per key; the key never prints.
        let (k1, k2) = (EnvKey::generate(), EnvKey::generate());
        let f1 = env_fingerprint(&k1, &env).unwrap();
        assert_eq!(f1.len(), 64);
        assert_ne!(f1, env_sha256(&env).unwrap());
        assert_ne!(f1, env_fingerprint(&k2, &env).unwrap());
        assert_eq!(f1, env_fingerprint(&k1, &env).unwrap());
        let mut h = sha2::Sha256::new();
        h.update(format!("{}\n", k1.0));
        h.update(env_file_content(&env).unwrap());
        assert_eq!(
            f1,
            hex::encode(h.finalize()),
            "sha256(key file || env file)"
        );
        assert_eq!(format!("{k1:?}"), "EnvKey(..)");
        assert_eq!(
            EnvKey::parse(&format!(" {}\n", k1.0.to_uppercase())),
            Some(k1.clone())
        );
        assert_eq!(EnvKey::parse("abc"), None);
        assert_eq!(EnvKey::parse(&"g".repeat(64)), None);
        let bad = BTreeMap::from([("1X".to_string(), "v".to_string())]);
        assert!(env_file_content(&bad).is_err());
        let secret = BTreeMap::from([("K".to_string(), "s3cr3t\nx".to_string())]);
        let e = env_file_content(&secret).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut cfg = SshConfig::new("deploy");
        cfg.private_key = Some(PrivateKeyText::new(
            "-----BEGIN OPENSSH PRIVATE KEY-----xyz",
        ));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        let e = PrivateKeyText::new("not a key")
            .parse()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("not a key"), "{e}");
    }

    #[test]
    fn sha256_output() {
        let h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_sha256_output("h", &format!("{h}  -\n")).unwrap(), h);
        assert_eq!(
            parse_sha256_output("h", &h.to_ascii_uppercase()).unwrap(),
            h
        );
        assert!(parse_sha256_output("h", "sha256sum: x: No such file").is_err());
    }

    #[tokio::test]
    async fn a_short_stream_never_replaces_the_file() {
        let t = LocalTransport::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f").display().to_string();
        std::fs::write(&path, "old").unwrap();
        let cmd = atomic_write_command(&path, 0o600, 10, None).unwrap();
        let out = t
            .exec(&cmd, Some(b"abc"), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!out.success());
        assert_eq!(out.stderr_text(), "received 3 bytes of 10");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(atomic_write_command(&path, 0o10000, 1, None).is_err());
    }

    #[tokio::test]
    async fn local_exec_status_stdin_and_timeout() {
        let t = LocalTransport::default();
        let out = t
            .exec(
                "cat; echo err >&2; exit 3",
                Some(b"in"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr_text(), "err");
        let started = Instant::now();
        let e = t
            .exec("sleep 30", None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, HostError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A background process holding the pipes does not hold us past the drain grace.
        let started = Instant::now();
        let out = t
            .exec("sleep 10 & echo started", None, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout_text().trim(), "started");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
