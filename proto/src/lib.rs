//! Protocol buffers of mig-gateway and their generated Rust code.
//!
//! # Layout
//! - [`inference::v1`]: the public API (`mig.inference.v1.Inference`).
//! - [`worker::v1`]: the gateway-to-worker API (`mig.worker.v1.Worker`).
//! - [`FILE_DESCRIPTOR_SET`]: both, encoded, for gRPC reflection.
//! - [`deadline`]: the `grpc-timeout` header, the one piece of wire format
//!   both servers read.
//! - [`status`]: gRPC codes by their canonical names.
//! - [`serve`]: gRPC routes on a listener, without tonic's timeout layer
//!   (which answers CANCELLED where gRPC says DEADLINE_EXCEEDED), and the
//!   shutdown signals both servers wait for.
//!
//! Conversions to and from domain types belong to the crates that own them.

pub mod deadline;
pub mod serve;
pub mod status;

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
