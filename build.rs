//! Compiles `proto/cube.proto` with the pure-Rust `protox` (no system `protoc`), generates the
//! tonic clients and servers from its descriptor set, and writes the encoded set to OUT_DIR so
//! the servers can offer it through gRPC server reflection and cubectl can print proto3 JSON.
//! Also records the git commit being built (`CUBE_BUILD_COMMIT`) for GetVersion.

use std::{env, fs, path::PathBuf, process::Command};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cube.proto");
    println!("cargo:rustc-env=CUBE_BUILD_COMMIT={}", build_commit());
    let descriptors = protox::compile(["proto/cube.proto"], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("cube_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// The commit being built: `CUBE_BUILD_COMMIT` when the builder sets it (a build from a
/// tarball), else what git says of the checkout, else "unknown". A new commit reruns this
/// script through the checkout's HEAD log, when there is one.
fn build_commit() -> String {
    println!("cargo:rerun-if-env-changed=CUBE_BUILD_COMMIT");
    if let Ok(commit) = env::var("CUBE_BUILD_COMMIT") {
        return commit;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    if let Some(log) = git(&["rev-parse", "--git-path", "logs/HEAD"]) {
        if PathBuf::from(&log).exists() {
            println!("cargo:rerun-if-changed={log}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
}
