//! AutoMTLS as go-plugin does it: Terraform passes its client certificate in
//! `PLUGIN_CLIENT_CERT`; we answer with a fresh self-signed certificate for `localhost` (sent in
//! the handshake line) and accept exactly Terraform's certificate, byte for byte.
//!
//! Two traps (see the protocol notes): Terraform's certificate is P-521 / SHA-512, which only
//! aws-lc-rs verifies, and it is a CA certificate used as a leaf, which webpki's client verifier
//! refuses. So the verifier below pins the DER and checks handshake signatures itself; ring does
//! the rest of TLS (cheaper start-up than aws-lc-rs for the whole provider).
//!
//! The server key is generated and used with ring explicitly, not through rcgen's `KeyPair`:
//! rcgen picks aws-lc-rs whenever that feature is on, and a build that unifies dev-dependency
//! features (`cargo bench`, `cargo test`) turns it on. aws-lc-rs then seeds its random generator
//! with jitterentropy at every start: 422 M instructions (~45 ms) instead of ~3 M (issue 19).
//! With ring named here, every build of the binary starts the same way.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("PLUGIN_CLIENT_CERT holds no PEM certificate: {0}")]
    ClientCert(String),
    #[error("could not generate the server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("could not generate the server key: {0}")]
    Key(String),
    #[error("could not build the TLS configuration: {0}")]
    Config(#[from] TlsError),
}

/// The server's certificate and key.
pub struct ServerIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// A self-signed P-256 certificate for `localhost` (Go's client checks the SAN, not the CN).
pub fn generate_server_identity() -> Result<ServerIdentity, TlsSetupError> {
    let key = RingP256::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    Ok(ServerIdentity {
        cert: cert.der().clone(),
        key: key.pkcs8,
    })
}

/// An ECDSA P-256 key generated, and certificates signed, by ring (see the module comment).
struct RingP256 {
    pair: ring::signature::EcdsaKeyPair,
    pkcs8: PrivatePkcs8KeyDer<'static>,
    rng: ring::rand::SystemRandom,
}

impl RingP256 {
    fn generate() -> Result<RingP256, TlsSetupError> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|e| TlsSetupError::Key(e.to_string()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| TlsSetupError::Key(e.to_string()))?;
        Ok(RingP256 {
            pair,
            pkcs8: PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()),
            rng,
        })
    }
}

impl rcgen::PublicKeyData for RingP256 {
    fn der_bytes(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RingP256 {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.pair
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

pub fn parse_client_cert(pem: &str) -> Result<CertificateDer<'static>, TlsSetupError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsSetupError::ClientCert(e.to_string()))
}

/// The server TLS configuration: TLS 1.2+, ALPN `h2`, client certificate required and pinned.
pub fn server_config(
    identity: &ServerIdentity,
    pinned_client: CertificateDer<'static>,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedClientCert {
        pinned: pinned_client,
        algorithms: handshake_algorithms(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )?;
    // grpc-go (Terraform >= 1.12) refuses a TLS peer that does not select h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// ring's signature algorithms plus aws-lc-rs's ECDSA P-521 / SHA-512 for Terraform's key.
fn handshake_algorithms() -> WebPkiSupportedAlgorithms {
    static ALGS: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *ALGS.get_or_init(|| {
        let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        static P521: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] =
            &[webpki::aws_lc_rs::ECDSA_P521_SHA512];
        let p521 = P521;
        let mut all = ring.all.to_vec();
        all.extend_from_slice(p521);
        let mut mapping = ring.mapping.to_vec();
        mapping.push((SignatureScheme::ECDSA_NISTP521_SHA512, p521));
        // Built once per process and needed for its whole life.
        WebPkiSupportedAlgorithms {
            all: Vec::leak(all),
            mapping: Vec::leak(mapping),
        }
    })
}

#[derive(Debug)]
struct PinnedClientCert {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!("refused a TLS client whose certificate is not Terraform's");
            Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}
