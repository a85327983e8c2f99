//! The go-plugin side of the process: magic cookie, version negotiation, unix socket, AutoMTLS,
//! the one handshake line on stdout, and the lifecycle (`GRPCController.Shutdown` ends the
//! process promptly, SIGINT is ignored because Terraform sends `StopProvider` instead).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::framework::Provider;
use super::proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use super::proto::plugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use super::proto::plugin::{Empty, StdioData};
use super::proto::tfplugin6::provider_server::ProviderServer;
use super::server::ProviderService;
use super::tls;

pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
const PROTOCOL_VERSION: u32 = 6;
const MAX_MESSAGE_SIZE: usize = 256 << 20;
/// Longest unix socket path we create (sun_path is 104–108 bytes).
const MAX_SOCKET_PATH: usize = 100;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Full provider address, e.g. `registry.terraform.io/artifortress/artifortress`.
    pub address: &'static str,
    /// Serve without cookie or TLS and print `TF_REATTACH_PROVIDERS` (for debuggers and tests).
    pub debug: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "This binary is a plugin. These are not meant to be executed directly.\n\
         Please execute the program that consumes these plugins, which will\n\
         load any plugins automatically (for this provider: terraform or tofu)."
    )]
    NotLaunchedByTerraform,
    #[error("could not listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error("could not write the handshake line: {0}")]
    Handshake(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `provider` until Terraform shuts the process down.
pub async fn serve<P: Provider>(provider: P, options: ServeOptions) -> Result<(), ServeError> {
    if !options.debug && std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        return Err(ServeError::NotLaunchedByTerraform);
    }
    if !options.debug {
        ignore_sigint();
    }
    negotiate_version();

    let socket_path = socket_path();
    let _ = std::fs::remove_file(&socket_path);
    let listener = UnixListener::bind(&socket_path).map_err(|source| ServeError::Listen {
        path: socket_path.clone(),
        source,
    })?;
    let _cleanup = RemoveOnDrop(socket_path.clone());

    let shutdown = CancellationToken::new();
    let client_cert = std::env::var("PLUGIN_CLIENT_CERT")
        .ok()
        .filter(|s| !s.trim().is_empty() && !options.debug);

    let (provider_service, health_service) = services(provider, options.address).await;
    let router = tonic::transport::Server::builder()
        .add_service(provider_service)
        .add_service(GrpcControllerServer::new(Controller {
            shutdown: shutdown.clone(),
            debug: options.debug,
        }))
        .add_service(GrpcStdioServer::new(Stdio {
            shutdown: shutdown.clone(),
        }))
        .add_service(health_service);

    spawn_exit_watchdog(shutdown.clone(), socket_path.clone());
    spawn_sigterm_handler(shutdown.clone());
    let until_shutdown = {
        let s = shutdown.clone();
        async move { s.cancelled().await }
    };

    match client_cert {
        Some(pem) => {
            let identity = tls::generate_server_identity()?;
            let config = tls::server_config(&identity, tls::parse_client_cert(&pem)?)?;
            let cert_b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&identity.cert);
            announce(&socket_path, &cert_b64, &options)?;
            let incoming = tls_incoming(listener, Arc::new(config), shutdown.clone());
            tracing::debug!(socket = %socket_path.display(), "serving with AutoMTLS");
            router
                .serve_with_incoming_shutdown(incoming, until_shutdown)
                .await?;
        }
        None => {
            announce(&socket_path, "", &options)?;
            tracing::debug!(socket = %socket_path.display(), "serving without TLS");
            router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), until_shutdown)
                .await?;
        }
    }
    tracing::debug!("gRPC server stopped");
    Ok(())
}

async fn services<P: Provider>(
    provider: P,
    address: &'static str,
) -> (
    ProviderServer<ProviderService<P>>,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let provider_service = ProviderServer::new(ProviderService::new(provider, address))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    (provider_service, health)
}

/// Picks protocol 6, the only one we speak. If Terraform does not offer it, we still answer 6 so
/// that Terraform prints its own "incompatible API version" message naming both sides.
fn negotiate_version() {
    if let Ok(offered) = std::env::var("PLUGIN_PROTOCOL_VERSIONS") {
        let speaks_6 = offered
            .split(',')
            .any(|v| v.trim() == PROTOCOL_VERSION.to_string());
        if !speaks_6 {
            tracing::error!(offered = %offered, "Terraform does not offer plugin protocol 6; this provider needs Terraform >= 1.0");
        }
    }
}

/// `CORE|APP|NETWORK|ADDR|PROTOCOL|CERT`, or the reattach instructions in debug mode.
fn announce(socket: &Path, cert_b64: &str, options: &ServeOptions) -> Result<(), ServeError> {
    let mut out = std::io::stdout().lock();
    if options.debug {
        let reattach = serde_json::json!({
            options.address: {
                "Protocol": "grpc",
                "ProtocolVersion": PROTOCOL_VERSION,
                "Pid": std::process::id(),
                "Test": true,
                "Addr": { "Network": "unix", "String": socket.display().to_string() },
            }
        });
        writeln!(
            out,
            "Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n\tTF_REATTACH_PROVIDERS='{reattach}'\n"
        )
        .map_err(ServeError::Handshake)?;
    } else {
        writeln!(
            out,
            "1|{PROTOCOL_VERSION}|unix|{}|grpc|{cert_b64}",
            socket.display()
        )
        .map_err(ServeError::Handshake)?;
    }
    out.flush().map_err(ServeError::Handshake)
}

fn socket_path() -> PathBuf {
    let dir = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("plugin{}{nanos:09}", std::process::id());
    let path = dir.join(&name);
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        path
    } else {
        // A long TMPDIR makes bind fail with an error Terraform cannot show; /tmp always fits.
        PathBuf::from("/tmp").join(name)
    }
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ignore_sigint() {
    // Ctrl-C reaches the whole process group; Terraform answers it with StopProvider and must
    // still be able to talk to us afterwards.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// The handler is registered here, before the handshake line is printed: registered inside the
/// spawned task, a SIGTERM arriving before that task first ran (a loaded machine) took the
/// default action and killed the process without its shutdown.
fn spawn_sigterm_handler(shutdown: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    tokio::spawn(async move {
        term.recv().await;
        tracing::debug!("SIGTERM received, shutting down");
        shutdown.cancel();
    });
}

/// After Shutdown, connections get a moment to finish, then the process ends regardless:
/// Terraform waits only 2 s before killing a plugin, and a client that keeps its connection open
/// would otherwise hold the graceful shutdown forever. `exit` skips destructors, so the socket
/// is removed here too.
fn spawn_exit_watchdog(shutdown: CancellationToken, socket: PathBuf) {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        tracing::debug!("exiting after shutdown grace period");
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    });
}

// -------------------------------------------------------------- go-plugin services

struct Controller {
    shutdown: CancellationToken,
    debug: bool,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        if self.debug {
            // A debug server outlives the Terraform commands that attach to it.
            tracing::debug!("Shutdown ignored in debug mode");
        } else {
            tracing::debug!("Shutdown requested by Terraform");
            self.shutdown.cancel();
        }
        Ok(Response::new(Empty {}))
    }
}

struct Stdio {
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    /// We log to our real stderr (which go-plugin reads), so this stream carries nothing; it
    /// ends at shutdown so that it never holds the server open.
    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<tonic::codegen::BoxStream<StdioData>>, Status> {
        let shutdown = self.shutdown.clone();
        let stream = futures::stream::once(async move {
            shutdown.cancelled_owned().await;
        })
        .filter_map(|()| async { None });
        Ok(Response::new(Box::pin(stream)))
    }
}

use futures::StreamExt as _;

// ------------------------------------------------------------------ TLS incoming

/// A TLS connection on the unix socket, as tonic wants it.
pub struct TlsConn(tokio_rustls::server::TlsStream<UnixStream>);

impl Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts connections and runs each TLS handshake in its own task, so one slow or hostile
/// client cannot hold up the others. Refused handshakes are logged and dropped.
pub fn tls_incoming(
    listener: UnixListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsConn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, _) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConn(tls))).await;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
