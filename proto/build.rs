//! Compiles the etcd v3 protobuf definitions under `etcd/` with prost/tonic.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so nothing has to be
//! installed on the machine.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let include = manifest_dir.join("etcd");
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| include.join(p)).collect();

    println!("cargo:rerun-if-changed={}", include.display());
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Every protobuf `bytes` field becomes `bytes::Bytes` (cheap clones,
        // zero-copy decoding from the transport buffer).
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("etcd_descriptor.bin"))
        .compile_protos(&protos, &[include])?;

    Ok(())
}
