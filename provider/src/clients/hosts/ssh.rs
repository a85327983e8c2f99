//! [`SshTransport`] (russh): configuration and private keys, host-key verification against
//! known_hosts, key or agent authentication, one session per host, commands as channels.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, Preferred};

use super::error::{HostError, Output, Stdin, Timeouts};
use super::known_hosts::{HostKeyStatus, KnownHosts, describe_key, host_key_preference};
use super::transport::{DRAIN_GRACE, STDERR_LIMIT, STDOUT_LIMIT, Transport, push_limited};

/// After the remote side finished, how long a still-blocked stdin writer may take.
const WRITER_GRACE: Duration = Duration::from_secs(2);

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
    /// Channels opened for commands ([`Transport::commands_started`]).
    started: AtomicU64,
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
            started: AtomicU64::new(0),
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
                            message: connect_words(&e),
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
                Ok(channel) => {
                    self.started.fetch_add(1, Ordering::Relaxed);
                    return Ok(channel);
                }
                Err(e) if !retried && session.is_closed() => {
                    tracing::info!(host = %self.label, error = %e, "SSH session lost; reconnecting");
                    retried = true;
                }
                Err(e) => return Err(self.ssh_err("exec", e)),
            }
        }
    }

    /// Runs `command`, filling `out` as its output arrives: what was read before an error
    /// stays in `out`.
    async fn run_into(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
        out: &mut Output,
    ) -> Result<(), HostError> {
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
            let reading = read_channel(&mut read, out);
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
                Ok(())
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

    fn commands_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    async fn run_partial(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> (Output, Result<(), HostError>) {
        let mut out = Output::default();
        let r = self.run_into(command, stdin, timeout, &mut out).await;
        (out, r)
    }

    async fn close(&self) {
        if let Some(s) = self.session.lock().await.take() {
            let _ = s
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }
}

/// Why an SSH connection failed, as an operator says it (`connection refused`); the SSH
/// library's own error is logged at debug level by the caller.
fn connect_words(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => crate::clients::words::io_error_words(io),
        other => crate::clients::words::io_words(other).unwrap_or_else(|| other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connection failures read as causes, never as the library's debug text; the host is
    /// named first, and a timeout says which limit ran out.
    #[test]
    fn connect_errors_read_as_causes() {
        let refused = russh::Error::IO(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let words = connect_words(&refused);
        assert_eq!(words, "connection refused");
        let e = HostError::Connect {
            host: "api-1".into(),
            message: words,
        };
        assert_eq!(e.to_string(), "api-1: cannot connect: connection refused");
        let other = connect_words(&russh::Error::Disconnect);
        assert!(
            !other.is_empty() && !other.contains("Disconnect {"),
            "{other}"
        );
        let late = HostError::ConnectTimeout {
            host: "api-2".into(),
            after: std::time::Duration::from_millis(500),
        };
        assert_eq!(
            late.to_string(),
            "api-2: no SSH session within 0.5s (connect timeout)"
        );
        let auth = HostError::AuthFailed {
            host: "worker-1".into(),
            user: "deploy".into(),
            method: "publickey".into(),
            remaining: "password".into(),
        };
        assert_eq!(
            auth.to_string(),
            "worker-1: authentication as \"deploy\" failed with publickey; the server accepts: password"
        );
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
}
