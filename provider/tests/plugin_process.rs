//! The provider binary as Terraform sees it: handshake line, AutoMTLS with the client
//! certificate pinned, plaintext when TLS is off, Shutdown ending the process, and the
//! message for people who run it by hand. A real gRPC client plays Terraform.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use artifortress_provider::protocol::serve::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use base64::Engine;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

mod pb {
    #![allow(clippy::all, dead_code)]
    pub mod tfplugin6 {
        tonic::include_proto!("tfplugin6");
    }
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-artifortress");

/// A certificate shaped like Terraform's: P-521, self-signed, CA:TRUE, SAN localhost.
struct ClientIdentity {
    pem: String,
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn terraform_like_cert() -> ClientIdentity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = params.self_signed(&key).unwrap();
    ClientIdentity {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

struct Plugin {
    child: Child,
    socket: String,
    server_cert: Option<CertificateDer<'static>>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(client_cert_pem: Option<&str>) -> Plugin {
    let mut cmd = Command::new(BIN);
    cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env_remove("PLUGIN_CLIENT_CERT")
        .env_remove("TF_LOG")
        .env_remove("TF_LOG_PROVIDER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(pem) = client_cert_pem {
        cmd.env("PLUGIN_CLIENT_CERT", pem);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(parts.len(), 6, "handshake line {line:?}");
    assert_eq!(&parts[..3], ["1", "6", "unix"]);
    assert_eq!(parts[4], "grpc");
    let server_cert = if parts[5].is_empty() {
        None
    } else {
        let der = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(parts[5])
            .expect("the certificate is raw standard base64, as go-plugin decodes it");
        Some(CertificateDer::from(der))
    };
    Plugin {
        child,
        socket: parts[3].to_string(),
        server_cert,
    }
}

/// Accepts exactly the certificate from the handshake line, as go-plugin's client does.
#[derive(Debug)]
struct PinnedServer(CertificateDer<'static>);

fn client_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the announced certificate".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &client_algorithms())
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &client_algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        client_algorithms().supported_schemes()
    }
}

async fn tls_channel(plugin: &Plugin, client: Option<&ClientIdentity>) -> Result<Channel, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer(
            plugin.server_cert.clone().expect("TLS is on"),
        )));
    let mut config = match client {
        Some(id) => builder
            .with_client_auth_cert(
                vec![id.der.clone()],
                PrivateKeyDer::Pkcs8(id.key.clone_key()),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = plugin.socket.clone();
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, stream).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn plain_channel(plugin: &Plugin) -> Channel {
    let socket = plugin.socket.clone();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .unwrap()
}

async fn get_schema(
    channel: Channel,
) -> Result<pb::tfplugin6::get_provider_schema::Response, tonic::Status> {
    pb::tfplugin6::provider_client::ProviderClient::new(channel)
        .get_provider_schema(pb::tfplugin6::get_provider_schema::Request {})
        .await
        .map(|r| r.into_inner())
}

/// A TLS client that is refused either fails the handshake (connect error) or, with TLS 1.3,
/// learns of the refusal on its first request. Either way the RPC must not succeed.
async fn schema_call_refused(plugin: &Plugin, client: Option<&ClientIdentity>) -> bool {
    match tls_channel(plugin, client).await {
        Err(_) => true,
        Ok(ch) => get_schema(ch).await.is_err(),
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn a_grpc_client_without_terraforms_certificate_is_refused() {
    let terraform = terraform_like_cert();
    let plugin = start(Some(&terraform.pem));

    assert!(
        schema_call_refused(&plugin, None).await,
        "a client with no certificate got an answer"
    );
    // Another P-521 certificate, shaped exactly like Terraform's but not the pinned one.
    let impostor = terraform_like_cert();
    assert!(
        schema_call_refused(&plugin, Some(&impostor)).await,
        "a client with another certificate got an answer"
    );

    // Terraform's own certificate works, so the refusals above were about the certificate.
    let channel = tls_channel(&plugin, Some(&terraform)).await.unwrap();
    let schema = get_schema(channel).await.unwrap();
    assert!(
        schema
            .data_source_schemas
            .contains_key("artifortress_readiness")
    );
    let caps = schema.server_capabilities.unwrap();
    assert!(caps.get_provider_schema_optional && caps.plan_destroy);
}

#[tokio::test]
async fn shutdown_ends_the_process_and_removes_the_socket() {
    let terraform = terraform_like_cert();
    let mut plugin = start(Some(&terraform.pem));
    let channel = tls_channel(&plugin, Some(&terraform)).await.unwrap();
    pb::plugin::grpc_controller_client::GrpcControllerClient::new(channel)
        .shutdown(pb::plugin::Empty {})
        .await
        .unwrap();
    // Terraform kills a plugin that has not exited 2 s after Shutdown.
    let status = wait_exit(&mut plugin.child, Duration::from_secs(2))
        .expect("the process exits after Shutdown");
    assert!(status.success(), "{status:?}");
    assert!(!std::path::Path::new(&plugin.socket).exists());
}

#[tokio::test]
async fn plaintext_without_a_client_certificate_and_stop_provider_does_not_exit() {
    let mut plugin = start(None);
    assert!(
        plugin.server_cert.is_none(),
        "TLS off: the cert field is empty"
    );
    let channel = plain_channel(&plugin).await;
    let mut client = pb::tfplugin6::provider_client::ProviderClient::new(channel.clone());
    let stop = client
        .stop_provider(pb::tfplugin6::stop_provider::Request {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stop.error, "");
    // Still serving after StopProvider.
    let schema = get_schema(channel).await.unwrap();
    assert!(schema.provider.is_some());
    assert!(plugin.child.try_wait().unwrap().is_none());
}

#[tokio::test]
async fn every_rpc_works_without_a_prior_schema_call_and_errors_are_diagnostics() {
    let plugin = start(None);
    let channel = plain_channel(&plugin).await;
    let mut client = pb::tfplugin6::provider_client::ProviderClient::new(channel);
    // An unknown data source type: a diagnostic, not a gRPC error.
    let resp = client
        .validate_data_resource_config(pb::tfplugin6::validate_data_resource_config::Request {
            type_name: "artifortress_nope".into(),
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.diagnostics.len(), 1);
    assert!(
        resp.diagnostics[0]
            .summary
            .contains("Unknown data source type")
    );
    // Garbage msgpack: a diagnostic naming the problem.
    let resp = client
        .validate_provider_config(pb::tfplugin6::validate_provider_config::Request {
            config: Some(pb::tfplugin6::DynamicValue {
                msgpack: vec![0xc1],
                json: vec![],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.diagnostics[0]
            .detail
            .contains("reserved msgpack marker"),
        "{:?}",
        resp.diagnostics
    );
    // Identity schemas: one per resource, over the real process.
    let ids = client
        .get_resource_identity_schemas(pb::tfplugin6::get_resource_identity_schemas::Request {})
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<_> = ids.identity_schemas.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "artifortress_backup",
            "artifortress_bootstrap",
            "artifortress_migration",
            "artifortress_release",
            "artifortress_restore_drill"
        ]
    );
    let migration: Vec<_> = ids.identity_schemas["artifortress_migration"]
        .identity_attributes
        .iter()
        .map(|a| (a.name.as_str(), a.required_for_import))
        .collect();
    assert_eq!(
        migration,
        [("host", true), ("port", true), ("database", true)]
    );
}

#[test]
fn run_by_hand_it_explains_and_exits_1() {
    let out = Command::new(BIN)
        .env_remove(MAGIC_COOKIE_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(String::from_utf8_lossy(&out.stderr).contains("This binary is a plugin"));
}

#[test]
fn debug_mode_prints_reattach_instructions() {
    let mut child = Command::new(BIN)
        .arg("--debug")
        .env_remove(MAGIC_COOKIE_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains("TF_REATTACH_PROVIDERS='") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let json = text
        .split("TF_REATTACH_PROVIDERS='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("reattach JSON");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let p = &v["registry.terraform.io/artifortress/artifortress"];
    assert_eq!(p["ProtocolVersion"], 6);
    assert_eq!(p["Test"], true);
    assert_eq!(p["Addr"]["Network"], "unix");
}

#[tokio::test]
async fn sigint_is_ignored_because_terraform_sends_stop_provider_instead() {
    let mut plugin = start(None);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(plugin.child.id() as i32, libc::SIGINT);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        plugin.child.try_wait().unwrap().is_none(),
        "SIGINT ended the plugin"
    );
    let schema = get_schema(plain_channel(&plugin).await).await.unwrap();
    assert!(schema.provider.is_some());
}

#[tokio::test]
async fn stop_provider_cancels_an_in_flight_read() {
    use artifortress_provider::protocol::framework::Provider;
    use artifortress_provider::protocol::msgpack;
    use artifortress_provider::protocol::value::Value;
    use artifortress_provider::provider::ArtifortressProvider;

    // An API that accepts connections and never answers: the read would wait 10 minutes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });

    let plugin = start(None);
    let channel = plain_channel(&plugin).await;
    let mut client = pb::tfplugin6::provider_client::ProviderClient::new(channel.clone());
    let provider_ty = ArtifortressProvider.schema().value_type();
    let mut config = Value::null_object(&provider_ty);
    config.set_attr("request_timeout", "10m".into());
    let configured = client
        .configure_provider(pb::tfplugin6::configure_provider::Request {
            terraform_version: "1.15.5".into(),
            config: Some(pb::tfplugin6::DynamicValue {
                msgpack: msgpack::encode(&config, &provider_ty).unwrap(),
                json: vec![],
            }),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        configured.diagnostics.is_empty(),
        "{:?}",
        configured.diagnostics
    );

    let ds = ArtifortressProvider
        .data_sources()
        .into_iter()
        .find(|d| d.type_name() == "artifortress_readiness")
        .unwrap();
    let ds_ty = ds.schema().value_type();
    let mut ds_config = Value::null_object(&ds_ty);
    ds_config.set_attr("url", url.into());
    ds_config.set_attr("require_status", "ready".into());
    ds_config.set_attr("wait_timeout", "10m".into());
    let read = {
        let mut client = client.clone();
        let bytes = msgpack::encode(&ds_config, &ds_ty).unwrap();
        tokio::spawn(async move {
            client
                .read_data_source(pb::tfplugin6::read_data_source::Request {
                    type_name: "artifortress_readiness".into(),
                    config: Some(pb::tfplugin6::DynamicValue {
                        msgpack: bytes,
                        json: vec![],
                    }),
                    provider_meta: None,
                    client_capabilities: None,
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!read.is_finished(), "the read should still be waiting");
    let started = Instant::now();
    client
        .stop_provider(pb::tfplugin6::stop_provider::Request {})
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("StopProvider ends the read")
        .unwrap()
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(resp.diagnostics.len(), 1, "{:?}", resp.diagnostics);
    assert_eq!(resp.diagnostics[0].summary, "Readiness probe cancelled");
    assert!(resp.state.is_none());
}

/// The most instructions a start may cost, from exec to exit after the handshake line (issue 19:
/// "<= 30 M instructions for every build Terraform may start"; the shipped build takes ~3 M).
const START_UP_INSTRUCTIONS_MAX: u64 = 30_000_000;

/// Instructions of one start as Terraform starts it (AutoMTLS: the server key and certificate
/// are generated), counted by callgrind, which repeats to the instruction where wall time on a
/// shared machine does not: spawn, handshake line, SIGTERM, exit.
///
/// This binary is the test build's, whose dependencies carry the dev-dependencies' features
/// (aws-lc-rs in rcgen and rustls), as `cargo bench` builds the binary it leaves in
/// `target/release`. With rcgen choosing the backend by feature, every start seeded aws-lc-rs's
/// random generator with jitterentropy: 422 M instructions in the release build.
#[test]
fn a_start_costs_at_most_30_m_instructions_whatever_features_the_build_unified() {
    let valgrind = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("valgrind"))
            .find(|p| p.is_file())
    });
    let Some(valgrind) = valgrind else {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind not found: CI must run scripts/install-deps (it installs valgrind)"
        );
        eprintln!("SKIP: valgrind not found; `apt-get install -y valgrind`");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("callgrind.out");
    let client = terraform_like_cert();
    let mut child = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(BIN)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_CLIENT_CERT", &client.pem)
        .env("PLUGIN_UNIX_SOCKET_DIR", dir.path())
        .env_remove("TF_LOG")
        .env_remove("TF_LOG_PROVIDER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("1|6|unix|"), "handshake line {line:?}");
    assert!(
        !line.trim_end().ends_with('|'),
        "no certificate in the handshake line {line:?}: AutoMTLS was not exercised"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let profile = std::fs::read_to_string(&out).unwrap();
    let instructions: u64 = profile
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {}", out.display()));
    eprintln!("start-up: {instructions} instructions (callgrind)");
    assert!(
        instructions <= START_UP_INSTRUCTIONS_MAX,
        "a start cost {instructions} instructions (> {START_UP_INSTRUCTIONS_MAX}); \
         `callgrind_annotate` of a profile says where"
    );
}
