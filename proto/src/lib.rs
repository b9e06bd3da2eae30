//! Protocol buffers of mig-gateway and their generated Rust code.
//!
//! # Layout
//! - [`inference::v1`]: the public API (`mig.inference.v1.Inference`).
//! - [`worker::v1`]: the gateway-to-worker API (`mig.worker.v1.Worker`).
//! - [`FILE_DESCRIPTOR_SET`]: both, encoded, for gRPC reflection;
//!   [`INFERENCE_FILE_DESCRIPTOR_SET`]: the public API alone, for a port
//!   that must not describe the internal services.
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

/// The encoded `FileDescriptorSet` of every `.proto` in this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mig_descriptor");

/// The encoded `FileDescriptorSet` of `mig.inference.v1` alone.
pub const INFERENCE_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("inference_descriptor");
