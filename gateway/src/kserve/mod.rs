//! KServe v2 over gRPC (`inference.GRPCInferenceService`): the protocol
//! Triton and KServe speak, and with it their clients (tritonclient,
//! perf_analyzer, genai-perf), served beside `mig.inference.v1.Inference`
//! on the public listener, through the same layers (the call's arrival and
//! deadline, its API key from `authorization: Bearer <key>`, a request that
//! does not decode answered `INVALID_ARGUMENT`).
//!
//! It is a front, not a second request path: each call is read into the
//! project's own `GenerateRequest` or `EmbedRequest` and handed to the
//! shared `Inference` service with the call's extensions, marked
//! `Protocol::Kserve`; admission, routing, quotas, relay and metrics are
//! the same for every front (`protocol="kserve"` on the request counter).
//!
//! Tensors and parameters are named as Triton's LLM backends name them:
//! `text_input` (BYTES) in, `text_output` (BYTES) out for a generation
//! model; `text_input` `[N]` in, `embedding` FP32 `[N, dim]` out for an
//! embedding model. Usage, finish reason and serving slice come back as
//! response parameters.
//!
//! # Layout
//! - [`service`]: the RPCs; the ones not served answer `UNIMPLEMENTED`.
//! - [`stream`]: ModelStreamInfer, decoupled: a response per chunk of
//!   text, the last flagged `triton_final_response`; errors in-band.
//! - [`inputs`]: the tensors and parameters of each kind of model, and the
//!   response parameters: one table for reading requests and describing
//!   models.
//! - [`request`]: a `ModelInferRequest` read into the project's request.
//! - [`response`]: the project's answers written as KServe responses.
//! - [`tensors`]: element types, an input's elements read from raw or
//!   typed contents, outputs written as raw contents.
//! - [`metadata`]: server and model metadata, model configuration,
//!   readiness.
//! - [`error`]: what this front refuses, and each refusal's code.

pub mod error;
pub mod inputs;
pub mod metadata;
pub mod request;
pub mod response;
pub mod service;
mod stream;
pub mod tensors;

pub use service::KserveService;
