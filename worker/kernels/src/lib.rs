//! The worker's CPU kernels, in their own crate so that they are optimised
//! even in debug builds (tests run real models through them).

pub mod attention;
pub mod qmatmul;
