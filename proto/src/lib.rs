//! Protocol buffers of mig-gateway and their generated Rust code.
//!
//! # Layout
//! - [`inference::v1`]: the public API (`mig.inference.v1.Inference`).
//! - [`worker::v1`]: the gateway-to-worker API (`mig.worker.v1.Worker`).
//! - [`admin::v1`]: operations on a running gateway (`mig.admin.v1.Admin`,
//!   re-partitioning), on its loopback admin listener only.
//! - [`kserve`]: the KServe v2 protocol as Triton speaks it (proto package
//!   `inference`: `inference.GRPCInferenceService` and the part of Triton's
//!   model configuration it reports), served beside the public API.
//! - [`FILE_DESCRIPTOR_SET`]: `mig.inference.v1`, `mig.worker.v1` and `mig.admin.v1`,
//!   encoded, for gRPC reflection; [`INFERENCE_FILE_DESCRIPTOR_SET`]: the
//!   public API alone, for a port that must not describe the internal
//!   services; [`KSERVE_FILE_DESCRIPTOR_SET`]: KServe v2.
//!
//! Generated code only: serving lives in `mig-serve`, and conversions to and
//! from domain types belong to the crates that own them.

pub mod inference {
    pub mod v1 {
        tonic::include_proto!("mig.inference.v1");
    }
}

pub mod worker {
    pub mod v1 {
        tonic::include_proto!("mig.worker.v1");
    }
}

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("mig.admin.v1");
    }
}

/// KServe v2 / Triton (`inference.GRPCInferenceService`): field names and
/// numbers are Triton's, so its clients (tritonclient, perf_analyzer) read
/// and write the same bytes.
pub mod kserve {
    tonic::include_proto!("inference");
}

/// The encoded `FileDescriptorSet` of `mig.inference.v1` and
/// `mig.worker.v1`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mig_descriptor");

/// The encoded `FileDescriptorSet` of `mig.inference.v1` alone.
pub const INFERENCE_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("inference_descriptor");

/// The encoded `FileDescriptorSet` of KServe v2 (`inference`), with the
/// model configuration it imports.
pub const KSERVE_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("kserve_descriptor");
