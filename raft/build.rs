//! Compiles the peer service, `proto/peer.proto`, with prost/tonic.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate (as in `proto/build.rs`),
//! so nothing has to be installed on the machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include = manifest_dir.join("proto");
    let proto = include.join("peer.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // `bytes` fields become `bytes::Bytes`: payloads are decoded from the
        // transport buffer without a copy.
        .bytes(".")
        .compile_protos(&[proto], &[include])?;

    Ok(())
}
