//! Compiles the etcd v3 protobuf definitions under `etcd/` with prost/tonic.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so nothing has to be
//! installed on the machine.
//!
//! pbjson-build then generates serde impls for every message from the same
//! descriptors, in protobuf's JSON mapping as etcd's JSON gateway speaks it
//! (grpc-gateway's `JSONPb{OrigName: true}`): proto field names out, proto or
//! lowerCamelCase names in, 64-bit integers as strings, bytes as base64,
//! enums by name, default values left out, unknown fields ignored.

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

    let descriptor_path = out_dir.join("etcd_descriptor.bin");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Every protobuf `bytes` field becomes `bytes::Bytes` (cheap clones,
        // zero-copy decoding from the transport buffer).
        .bytes(".")
        .file_descriptor_set_path(&descriptor_path)
        .compile_protos(&protos, &[include])?;

    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .preserve_proto_field_names()
        // grpc-gateway v1 ignores fields it does not know (etcd's e2e tests
        // send Go's json.Marshal output, with oneof wrappers such as
        // "TargetUnion": null).
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;

    Ok(())
}
