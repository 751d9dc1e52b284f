//! Dialling a Cube server over TLS: rustls with a verifier that trusts the cluster CA, known
//! either from a file or by the SHA-256 digest a token carries (the server sends the CA with
//! its certificate, and the one whose digest matches becomes the only root, as Swarm does).
//! A bearer token, when there is one, rides on every call as `authorization: Bearer ...`.

use std::{sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Channel, Endpoint},
    Request, Status,
};

use super::ca::{digest_of_der, Issued};
use crate::{error::Error, grpc::CONNECT_TIMEOUT};

/// How a client knows the cluster CA.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The SHA-256 of the CA certificate (from a token).
    Digest([u8; 32]),
    /// The CA certificate itself (`ca.pem`).
    Ca(CertificateDer<'static>),
}

impl Trust {
    /// The CA in a PEM file's text.
    pub fn from_pem(pem: &str, what: &str) -> Result<Trust, Error> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .map(Trust::Ca)
            .map_err(|e| Error::invalid("ca_cert", format!("{what} holds no certificate: {e}")))
    }
}

/// Checks a server's certificate against the cluster CA, with or without its name.
#[derive(Debug)]
struct CaVerifier {
    trust: Trust,
    /// Whether the certificate must name the host dialled. The manager dials workers by the
    /// address they registered and checks only that the CA signed their certificate: a node
    /// certificate names the node, not its addresses.
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl CaVerifier {
    fn root<'a>(
        &'a self,
        intermediates: &'a [CertificateDer<'a>],
    ) -> Result<&'a CertificateDer<'a>, rustls::Error> {
        match &self.trust {
            Trust::Ca(ca) => Ok(ca),
            Trust::Digest(digest) => intermediates
                .iter()
                .find(|c| &digest_of_der(c) == digest)
                .ok_or_else(|| {
                    rustls::Error::General(
                        "the server's CA is not the one the token names (wrong cluster, or \
                         someone in the middle)"
                            .into(),
                    )
                }),
        }
    }
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = self.root(intermediates)?;
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        match webpki.verify_server_cert(end_entity, &[], server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client's TLS: whom it trusts, and the certificate it shows (a node's or the manager's).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// The manager's TLS as its files in `<data_dir>/tls/` hold it: trusting the cluster CA,
    /// and showing the manager's certificate when `as_manager` (what a worker asks of its
    /// caller). For tools and tests that dial a cluster from the manager's machine.
    pub fn from_manager_dir(data_dir: &std::path::Path, as_manager: bool) -> Result<Self, Error> {
        use super::files::{CA_CERT, MANAGER_CERT, MANAGER_KEY, TLS_DIR};
        let tls = data_dir.join(TLS_DIR);
        let read = |name: &str| {
            super::files::read(&tls.join(name)).map_err(|e| {
                Error::Unavailable(format!("cannot read {}: {e}", tls.join(name).display()))
            })
        };
        let trust = Trust::from_pem(&read(CA_CERT)?, CA_CERT)?;
        let manager = if as_manager {
            Some(Issued {
                cert_pem: read(MANAGER_CERT)?,
                key_pem: read(MANAGER_KEY)?,
            })
        } else {
            None
        };
        ClientTls::new(trust, manager.as_ref(), false)
    }

    /// TLS trusting `trust`, showing `identity` when given, checking the server's name when
    /// `check_name`.
    pub fn new(trust: Trust, identity: Option<&Issued>, check_name: bool) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(CaVerifier {
            trust,
            check_name,
            provider: provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(issued) => {
                let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Error::Internal(format!("reading a certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
                    .map_err(|e| Error::Internal(format!("reading a private key: {e}")))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| Error::Internal(format!("client certificate: {e}")))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// A lazily connecting TLS channel to `address` (`host:port` or `https://host:port`),
    /// with a default per-call deadline of `timeout`.
    pub fn channel(&self, address: &str, timeout: Duration) -> Result<Channel, Error> {
        let host_port = match address.split_once("://") {
            None => address,
            Some(("https", rest)) => rest.trim_end_matches('/'),
            Some((scheme, _)) => {
                return Err(Error::invalid(
                    "address",
                    format!(
                        "{address:?}: this cluster speaks TLS, so the address is https:// \
                         or host:port, not {scheme}://"
                    ),
                ))
            }
        };
        let endpoint = Endpoint::from_shared(format!("http://{host_port}"))
            .map_err(|e| Error::invalid("address", format!("{address:?}: {e}")))?
            .timeout(timeout);
        let endpoint = crate::grpc::keepalive(endpoint);
        let config = self.config.clone();
        let connector = tower::service_fn(move |uri: http::Uri| {
            let config = config.clone();
            async move { connect(uri, config).await }
        });
        Ok(endpoint.connect_with_connector_lazy(connector))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// TCP (no Nagle: see `grpc::serve`) then the TLS handshake, each within [`CONNECT_TIMEOUT`].
async fn connect(
    uri: http::Uri,
    config: Arc<ClientConfig>,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, BoxError> {
    let host = uri
        .host()
        .ok_or("the address has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().ok_or("the address has no port")?;
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "tcp connect timed out")??;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host)?;
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out")??;
    Ok(TokioIo::new(tls))
}

/// Adds `authorization: Bearer <token>` to every call when there is a token.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<token>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    /// The header for `token`; a token with characters a header cannot carry is refused.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        token
            .map(|t| {
                let mut value = MetadataValue::try_from(format!("Bearer {}", t.trim()))
                    .map_err(|_| Error::invalid("token", "holds characters a header cannot"))?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()
            .map(Bearer)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the bearer token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;
