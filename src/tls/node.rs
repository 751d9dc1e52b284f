//! A worker's TLS: its node certificate, loaded from `<data-dir>/tls/` or got by joining the
//! cluster with a worker token (a certificate signing request the manager signs), then kept
//! there so later starts need no token.

use std::path::Path;

use tonic::transport::ServerTlsConfig;

use super::{
    ca::{self, Issued},
    dial::{Bearer, ClientTls, Trust},
    files::{self, CA_CERT, NODE_CERT, NODE_KEY, TLS_DIR},
    identity::{self, Identity},
    server_config,
    token::Token,
};
use crate::{error::Error, pb};

/// How long a join may take.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A worker's TLS: the server it serves (to the manager only) and the client it registers
/// and heartbeats with.
#[derive(Clone, Debug)]
pub struct NodeTls {
    /// WorkerService's TLS: the node certificate; clients must show a CA-signed one.
    pub server: ServerTlsConfig,
    /// TLS to the manager, trusting the CA and showing the node certificate.
    pub dial: ClientTls,
}

impl NodeTls {
    fn from_parts(issued: &Issued, ca_pem: &str) -> Result<NodeTls, Error> {
        let server = server_config(&issued.cert_pem, &issued.key_pem, ca_pem, false);
        let dial = ClientTls::new(Trust::from_pem(ca_pem, CA_CERT)?, Some(issued), true)?;
        Ok(NodeTls { server, dial })
    }

    /// The node certificate kept in `<data_dir>/tls/`, if there is one; it must be `name`'s.
    pub fn load(data_dir: &Path, name: &str) -> Result<Option<NodeTls>, Error> {
        let dir = data_dir.join(TLS_DIR);
        if !dir.join(NODE_CERT).exists() {
            return Ok(None);
        }
        let read = |file| files::read(&dir.join(file)).map_err(|e| Error::Internal(e.to_string()));
        let issued = Issued {
            cert_pem: read(NODE_CERT)?,
            key_pem: read(NODE_KEY)?,
        };
        match identity::of_pem(&issued.cert_pem) {
            Some(Identity::Node(held)) if held == name => {}
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "the node certificate in {} is for {}, not node {name:?}; start with \
                     --name matching it, or another --data-dir",
                    dir.display(),
                    other.map_or("no Cube node".to_string(), |i| i.to_string()),
                )))
            }
        }
        Self::from_parts(&issued, &read(CA_CERT)?).map(Some)
    }

    /// Joins the cluster at `manager` as `name` with a worker `token`: verifies the manager by
    /// the token's CA digest, sends a certificate signing request, and keeps the node
    /// certificate, its key and the CA in `<data_dir>/tls/`.
    pub async fn join(
        data_dir: &Path,
        name: &str,
        manager: &str,
        token: &str,
    ) -> Result<NodeTls, Error> {
        let parsed = Token::parse(token).map_err(|e| Error::invalid("join_token", e))?;
        let tls = ClientTls::new(Trust::Digest(parsed.ca_digest), None, true)?;
        let channel = tls.channel(manager, JOIN_TIMEOUT)?;
        let mut client = pb::manager_service_client::ManagerServiceClient::with_interceptor(
            channel,
            Bearer::new(Some(token))?,
        );
        let (csr, key_pem) = ca::node_request(name).map_err(|e| Error::Internal(e.to_string()))?;
        let answer = client
            .join_cluster(pb::JoinClusterRequest {
                name: name.to_string(),
                csr_pem: csr,
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown => Error::Unavailable(format!(
                    "joining the manager at {manager}: {}",
                    status.message()
                )),
                _ => Error::Unauthenticated(format!(
                    "the manager at {manager} refused the join: {}",
                    status.message()
                )),
            })?
            .into_inner();
        if ca::digest_of_pem(&answer.ca_pem) != Some(parsed.ca_digest) {
            return Err(Error::Unauthenticated(
                "the manager sent a CA whose digest is not the token's".into(),
            ));
        }
        let issued = Issued {
            cert_pem: answer.cert_pem,
            key_pem,
        };
        let dir = data_dir.join(TLS_DIR);
        let io = |e: std::io::Error| Error::Internal(format!("keeping the node certificate: {e}"));
        write_node(&dir, &issued, &answer.ca_pem).map_err(io)?;
        tracing::info!(node = %name, dir = %dir.display(), "joined the cluster; node certificate kept");
        Self::from_parts(&issued, &answer.ca_pem)
    }
}

/// Writes a node's certificate, key and CA into `tls_dir` (0700; files 0600).
pub fn write_node(tls_dir: &Path, issued: &Issued, ca_pem: &str) -> std::io::Result<()> {
    if let Some(parent) = tls_dir.parent() {
        files::private_dir(parent)?;
    }
    files::private_dir(tls_dir)?;
    files::write_private(&tls_dir.join(NODE_KEY), issued.key_pem.as_bytes())?;
    files::write_private(&tls_dir.join(NODE_CERT), issued.cert_pem.as_bytes())?;
    files::write_private(&tls_dir.join(CA_CERT), ca_pem.as_bytes())
}
