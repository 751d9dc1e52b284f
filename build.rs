//! Compiles `proto/cube.proto` with the pure-Rust `protox` (no system `protoc`), generates the
//! tonic clients and servers from its descriptor set, and writes the encoded set to OUT_DIR so
//! the servers can offer it through gRPC server reflection and cubectl can print proto3 JSON.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cube.proto");
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
