//! Compiles the vendored Kubernetes protos under `proto/` into one
//! FileDescriptorSet (`$OUT_DIR/k8s.bin`), which `src/proto/` reads at start
//! to convert between stored JSON and protobuf for every built-in kind.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate (as in the workspace's
//! other proto builds), so nothing has to be installed on the machine.

use std::path::PathBuf;
use std::process::Command;

const PROTOS: &[&str] = &[
    "api/core/v1/generated.proto",
    "api/apps/v1/generated.proto",
    "api/batch/v1/generated.proto",
    "api/coordination/v1/generated.proto",
    "api/discovery/v1/generated.proto",
    "api/autoscaling/v1/generated.proto",
    "apiextensions-apiserver/pkg/apis/apiextensions/v1/generated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let include = manifest_dir.join("proto");
    println!("cargo:rerun-if-changed={}", include.display());
    let status = Command::new(protoc_bin_vendored::protoc_bin_path()?)
        .arg(format!("--proto_path={}", include.display()))
        .arg(format!(
            "--descriptor_set_out={}",
            out_dir.join("k8s.bin").display()
        ))
        .arg("--include_imports")
        .args(PROTOS)
        .current_dir(&include)
        .status()?;
    if !status.success() {
        return Err(format!("protoc failed: {status}").into());
    }
    Ok(())
}
