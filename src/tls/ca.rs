//! The cluster CA: made on a manager's first start, it signs the manager's certificate and
//! every node's. A certificate's subject says who holds it: OU `manager` or `worker`, and the
//! CN is the node's name (`cube-manager` for the manager).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use super::files::{self, CA_CERT, CA_KEY, MANAGER_CERT, MANAGER_KEY, TLS_DIR};

/// The OU of the manager's certificate.
pub const OU_MANAGER: &str = "manager";
/// The OU of a worker's node certificate.
pub const OU_WORKER: &str = "worker";
/// The CN of the manager's certificate.
pub const MANAGER_NAME: &str = "cube-manager";

/// Why the CA could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file of the tls folder could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A certificate or key could not be made or read.
    #[error("{what}: {source}")]
    Cert {
        /// What was being done.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
}

fn cert_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CaError {
    let what = what.into();
    move |source| CaError::Cert { what, source }
}

/// SHA-256 of a certificate's DER: what a token pins.
pub fn digest_of_der(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// SHA-256 of the first certificate in `pem`.
pub fn digest_of_pem(pem: &str) -> Option<[u8; 32]> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| digest_of_der(&der))
}

/// The cluster CA of one manager, loaded from (or made in) `<data-dir>/tls/`.
pub struct ClusterCa {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    digest: [u8; 32],
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").field("dir", &self.dir).finish()
    }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (never logged).
    pub key_pem: String,
}

impl ClusterCa {
    /// The CA in `<data_dir>/tls/`, made there (0700 folder, 0600 files) when absent.
    pub fn load_or_create(data_dir: &Path) -> Result<ClusterCa, CaError> {
        let dir = data_dir.join(TLS_DIR);
        files::private_dir(data_dir)?;
        files::private_dir(&dir)?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !cert_path.exists() {
            let key = KeyPair::generate().map_err(cert_error("making the CA key"))?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "Cube cluster CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params
                .self_signed(&key)
                .map_err(cert_error("signing the CA"))?;
            files::write_private(&key_path, key.serialize_pem().as_bytes())?;
            files::write_private(&cert_path, cert.pem().as_bytes())?;
            tracing::info!(dir = %dir.display(), "cluster CA created");
        }
        let cert_pem = files::read(&cert_path)?;
        let key = KeyPair::from_pem(&files::read(&key_path)?)
            .map_err(cert_error(format!("reading {}", key_path.display())))?;
        let digest = digest_of_pem(&cert_pem).ok_or_else(|| {
            std::io::Error::other(format!("{} holds no certificate", cert_path.display()))
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(cert_error(format!("reading {}", cert_path.display())))?;
        Ok(ClusterCa {
            dir,
            cert_pem,
            issuer,
            digest,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The `tls/` folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Signs a new manager certificate naming `localhost`, `127.0.0.1`, `::1`, this host's
    /// name and `extra` (addresses or host names; a `host:port` counts as its host), and
    /// writes it to `manager.pem`/`manager.key`. Made on every start, so a new `--san` counts.
    pub fn issue_manager(&self, extra: &[String]) -> Result<Issued, CaError> {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        names.push(gethostname::gethostname().to_string_lossy().into_owned());
        names.extend(extra.iter().map(|name| host_of(name)));
        names.retain(|n| !n.is_empty());
        names.dedup();
        let key = KeyPair::generate().map_err(cert_error("making the manager key"))?;
        let mut params = leaf_params(MANAGER_NAME, OU_MANAGER);
        params.subject_alt_names = names.iter().filter_map(|n| san(n)).collect();
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_error("signing the manager certificate"))?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        files::write_private(&self.dir.join(MANAGER_KEY), issued.key_pem.as_bytes())?;
        files::write_private(&self.dir.join(MANAGER_CERT), issued.cert_pem.as_bytes())?;
        Ok(issued)
    }

    /// Signs the public key of a worker's certificate signing request for node `name`; the
    /// request's own subject and names are ignored: the manager decides the identity.
    pub fn sign_node(&self, csr_pem: &str, name: &str) -> Result<String, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(cert_error("reading the certificate signing request"))?;
        let params = node_params(name);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(cert_error("signing the node certificate"))?;
        Ok(cert.pem())
    }

    /// A node certificate and key for `name`, made here (for a worker listed with
    /// `--workers`, which never joins).
    pub fn issue_node(&self, name: &str) -> Result<Issued, CaError> {
        let key = KeyPair::generate().map_err(cert_error("making a node key"))?;
        let cert = node_params(name)
            .signed_by(&key, &self.issuer)
            .map_err(cert_error("signing the node certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate signing request for node `name`, with its new private key.
pub fn node_request(name: &str) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(cert_error("making the node key"))?;
    let csr = node_params(name)
        .serialize_request(&key)
        .map_err(cert_error("making the certificate signing request"))?;
    let pem = csr
        .pem()
        .map_err(cert_error("encoding the certificate signing request"))?;
    Ok((pem, key.serialize_pem()))
}

fn leaf_params(cn: &str, ou: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

fn node_params(name: &str) -> CertificateParams {
    let mut params = leaf_params(name, OU_WORKER);
    params.subject_alt_names = san(name).into_iter().collect();
    params
}

/// `name` as a subject alternative name: an IP address or a DNS name; None if it is neither.
fn san(name: &str) -> Option<SanType> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(SanType::IpAddress(ip)),
        Err(_) => name.to_string().try_into().ok().map(SanType::DnsName),
    }
}

/// The host of `host:port`, `[v6]:port`, a URL, or a bare host.
fn host_of(name: &str) -> String {
    let name = name.split_once("://").map_or(name, |(_, rest)| rest);
    let name = name.split('/').next().unwrap_or(name);
    if let Some(v6) = name.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host.into(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.5:5555"), "10.0.0.5");
        assert_eq!(host_of("https://m1.example:5555/"), "m1.example");
        assert_eq!(host_of("[fd00::1]:5555"), "fd00::1");
        assert_eq!(host_of("fd00::1"), "fd00::1");
        assert_eq!(host_of("m1"), "m1");
    }

    #[test]
    fn the_ca_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("m");
        let first = ClusterCa::load_or_create(&data).unwrap();
        let again = ClusterCa::load_or_create(&data).unwrap();
        assert_eq!(first.digest(), again.digest());
        first.issue_manager(&["10.1.2.3:5555".into()]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(first.dir()), 0o700);
        for file in [CA_CERT, CA_KEY, MANAGER_CERT, MANAGER_KEY] {
            assert_eq!(mode(&first.dir().join(file)), 0o600, "{file}");
        }
    }

    #[test]
    fn a_node_certificate_names_the_node_the_manager_chose() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let (csr, _key) = node_request("asked-for").unwrap();
        let pem = ca.sign_node(&csr, "w1").unwrap();
        let identity = super::super::identity::of_pem(&pem).unwrap();
        assert_eq!(identity, super::super::Identity::Node("w1".into()));
    }
}
