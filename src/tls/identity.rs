//! Who holds a certificate the cluster CA signed: the manager, or the node it names.

use x509_parser::prelude::{FromDer, X509Certificate};

use super::ca::{MANAGER_NAME, OU_MANAGER, OU_WORKER};

/// The identity a CA-signed certificate proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The manager's certificate.
    Manager,
    /// A worker's node certificate: the node's name.
    Node(String),
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Manager => f.write_str("the manager"),
            Identity::Node(name) => write!(f, "node {name:?}"),
        }
    }
}

/// The identity in a certificate's subject (OU and CN); None when it names neither.
///
/// Only the subject is read: the TLS layer has already checked that the CA signed it.
pub fn of_der(der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let ou = subject.iter_organizational_unit().next()?.as_str().ok()?;
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    match ou {
        OU_MANAGER if cn == MANAGER_NAME => Some(Identity::Manager),
        OU_WORKER if !cn.is_empty() => Some(Identity::Node(cn.to_string())),
        _ => None,
    }
}

/// The identity of the first certificate in `pem`.
pub fn of_pem(pem: &str) -> Option<Identity> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    of_der(&CertificateDer::from_pem_slice(pem.as_bytes()).ok()?)
}
