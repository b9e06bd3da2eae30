//! Marks and limits that the gateway and the worker must agree on.

/// A worker serving the identity model (it echoes the prompt, computes
/// nothing) must have this in its model name, so that its figures are never
/// taken for a real model's in metrics and reports. The fleet file and the
/// worker's command line both check it.
pub const IDENTITY_MARK: &str = "identity";

/// The same for a synthetic model (a public shape with random weights).
pub use mig_slices::synthetic::NAME_MARK as SYNTHETIC_MARK;

/// Longest `profile` a request may name, in bytes (MIG profiles are like
/// `7g.80gb`, CPU ones `cpu-16c`): the gateway checks it before routing,
/// the worker again for callers that reach it straight.
pub const MAX_PROFILE_BYTES: usize = 64;
