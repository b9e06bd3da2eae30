//! Compiles `proto/mig/**.proto` and `proto/kserve/*.proto` with protox
//! (pure Rust, no system `protoc`) and generates tonic clients and servers
//! from the resulting descriptors.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "mig/inference/v1/inference.proto",
        "mig/worker/v1/worker.proto",
        "mig/admin/v1/admin.proto",
    ];
    // KServe v2 (`inference.GRPCInferenceService`), Triton's wire.
    let kserve = ["kserve/grpc_service.proto", "kserve/model_config.proto"];
    for proto in protos.iter().chain(&kserve) {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Served by gRPC reflection so grpcurl can discover the API.
    std::fs::write(out.join("mig_descriptor.bin"), fds.encode_to_vec())?;
    // KServe v2 alone (with the model configuration it imports), for the
    // public port's reflection beside the public API.
    let kserve_fds = protox::compile([kserve[0]], ["."])?;
    std::fs::write(
        out.join("kserve_descriptor.bin"),
        kserve_fds.encode_to_vec(),
    )?;
    // The public API alone: what a gateway's public port may describe.
    let public = protox::compile([protos[0]], ["."])?;
    std::fs::write(out.join("inference_descriptor.bin"), public.encode_to_vec())?;
    let mut all = fds;
    all.file.extend(kserve_fds.file);
    tonic_prost_build::configure().compile_fds(all)?;
    Ok(())
}
