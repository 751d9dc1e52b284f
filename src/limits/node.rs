//! The bounds of a worker's registration: a node is kept as long as the cluster knows it, and
//! every `ListNodes` answer carries every node (a 1 MB node name once padded `cubectl nodes` to
//! 8 MB).

use super::spec::{check_labels, shown};
use crate::{
    error::{Error, Result},
    proto::pb,
};

/// The longest node name at `RegisterWorker` (a DNS name).
pub const MAX_NODE_NAME_LEN: usize = 253;
/// The longest worker address at `RegisterWorker` (`host:port` or an `http://` URL).
pub const MAX_ADDRESS_LEN: usize = 512;
/// The most bytes of a worker's labels together: every `ListNodes` answer carries every
/// node's labels, in one message.
pub const MAX_NODE_LABELS_BYTES: usize = 16 * 1024;

/// Checks a worker's registration: a name like a DNS name of at most
/// [`MAX_NODE_NAME_LEN`] (letters, digits, '-', '_', '.'), an address of at most
/// [`MAX_ADDRESS_LEN`] without spaces, and labels like a spec's.
pub fn check_registration(request: &pb::RegisterWorkerRequest) -> Result<()> {
    check_node_name("name", &request.name)?;
    let address = &request.address;
    if address.is_empty() {
        return Err(Error::invalid("address", "is required"));
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err(Error::invalid(
            "address",
            format!(
                "is {} characters; the limit is {MAX_ADDRESS_LEN}",
                address.len()
            ),
        ));
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "address",
            "must be host:port, without spaces or control characters",
        ));
    }
    if request.instance_id.len() > 128 {
        return Err(Error::invalid(
            "instance_id",
            format!(
                "is {} characters; the limit is 128",
                request.instance_id.len()
            ),
        ));
    }
    check_labels("labels", &request.labels)?;
    let bytes: usize = request.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_NODE_LABELS_BYTES {
        return Err(Error::invalid(
            "labels",
            format!("hold {bytes} bytes; the limit is {MAX_NODE_LABELS_BYTES} (16 KiB) together"),
        ));
    }
    Ok(())
}

/// Checks a node name as `RegisterWorker` and `Heartbeat` carry it.
pub fn check_node_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} characters; the limit is {MAX_NODE_NAME_LEN}",
                name.len()
            ),
        ));
    }
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(Error::invalid(
            field,
            format!(
                "{} must start with a letter or digit and hold only letters, digits, '-', '_' \
                 and '.'",
                shown(name)
            ),
        ));
    }
    Ok(())
}
