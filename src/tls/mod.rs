//! Cube's security, Swarm's way: a cluster CA made on the manager's first start, join and
//! client tokens that pin it, node certificates whose identity is the node's name, mTLS on
//! every hop, and a door on each service.
//!
//! # Layout
//! - [`files`]: the `tls/` folder's files, written 0600 in 0700 folders.
//! - [`ca`]: the cluster CA: the manager's certificate, node certificates from CSRs.
//! - [`token`]: `CUBE-1-<CA digest>-<secret>` tokens per role, rotation.
//! - [`identity`]: who holds a certificate (the manager, or node NAME).
//! - [`dial`]: rustls clients that trust the CA by file or by a token's digest; the bearer.
//! - [`guard`]: the doors of ManagerService and WorkerService, and the [`Caller`].
//! - [`node`]: a worker's certificate: loaded, or got by joining.

pub mod ca;
pub mod dial;
pub mod files;
pub mod guard;
pub mod identity;
pub mod node;
pub mod token;

use std::path::Path;

use tonic::transport::{Certificate, Identity as TonicIdentity, ServerTlsConfig};

pub use self::{
    ca::{ClusterCa, Issued},
    dial::{AuthChannel, Bearer, ClientTls, Trust},
    guard::{caller_of, Caller, Guarded},
    identity::Identity,
    node::NodeTls,
    token::{Role, Token, Tokens},
};

/// Everything a manager serving TLS holds: its server config, its tokens, the CA that signs
/// node certificates, and the client TLS it dials workers with.
#[derive(Clone)]
pub struct ManagerTls {
    /// What the server presents and whom it asks for a certificate.
    pub server: ServerTlsConfig,
    /// The role tokens.
    pub tokens: Tokens,
    /// The cluster CA.
    pub ca: std::sync::Arc<ClusterCa>,
    /// TLS to workers, showing the manager's certificate.
    pub dial: ClientTls,
}

impl std::fmt::Debug for ManagerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerTls").field("ca", &self.ca).finish()
    }
}

impl ManagerTls {
    /// The CA in `<data_dir>/tls/` (made on the first start), a fresh manager certificate
    /// naming `sans` too, and the tokens.
    pub fn init(data_dir: &Path, sans: &[String]) -> Result<ManagerTls, ca::CaError> {
        let ca = ClusterCa::load_or_create(data_dir)?;
        let manager = ca.issue_manager(sans)?;
        let tokens = Tokens::open(ca.dir(), ca.digest())?;
        // The CA goes with the manager's certificate, so a client that knows only the
        // digest finds it in the handshake.
        let chain = format!("{}{}", manager.cert_pem, ca.cert_pem());
        let server = server_config(&chain, &manager.key_pem, ca.cert_pem(), true);
        let trust = Trust::from_pem(ca.cert_pem(), "ca.pem")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let dial = ClientTls::new(trust, Some(&manager), false)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(ManagerTls {
            server,
            tokens,
            ca: std::sync::Arc::new(ca),
            dial,
        })
    }
}

/// A server config presenting `chain`, asking clients for a certificate the CA signed
/// (`optional`: clients with a token have none).
fn server_config(chain: &str, key: &str, ca: &str, optional: bool) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(TonicIdentity::from_pem(chain, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(optional)
}

/// Whether every address a server binds is on loopback, where plaintext is allowed.
pub fn is_loopback(address: &std::net::SocketAddr) -> bool {
    address.ip().is_loopback()
}
