//! The files of a node's `tls/` folder, and how they are written: folders 0700, files 0600,
//! each file replaced whole (written aside, then renamed) so a crash leaves the old or the new.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// The folder under a data dir that holds the certificates, keys and tokens.
pub const TLS_DIR: &str = "tls";
/// The cluster CA's certificate (on the manager, and a copy on every worker).
pub const CA_CERT: &str = "ca.pem";
/// The cluster CA's private key (on the manager only).
pub const CA_KEY: &str = "ca.key";
/// The manager's certificate, signed by the CA.
pub const MANAGER_CERT: &str = "manager.pem";
/// The manager's private key.
pub const MANAGER_KEY: &str = "manager.key";
/// A worker's node certificate, whose identity is its name.
pub const NODE_CERT: &str = "node.pem";
/// A worker's private key.
pub const NODE_KEY: &str = "node.key";
/// The manager's token secrets, one line per role.
pub const TOKENS: &str = "tokens";

/// Creates `dir` (and its parents) and makes it 0700: only its owner reads it.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` as a 0600 file, replacing it whole.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension("new");
    let _ = std::fs::remove_file(&aside);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)
}

/// Reads a file of the tls folder, saying which one when it cannot.
pub fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
}
