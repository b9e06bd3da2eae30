//! Which wire a call came in on. Every front (the project's own gRPC API,
//! the OpenAI-compatible HTTP front, KServe v2 gRPC) turns its calls into
//! the same `Inference` calls and leaves a [`Protocol`] in their
//! extensions; the request counter carries it as its `protocol` label, so
//! dashboards see who calls how. A call without one came on the project's
//! own API.

/// The front a call came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `mig.inference.v1.Inference`.
    #[default]
    Grpc,
    /// `--http-listen`: `/v1/chat/completions` and its siblings.
    OpenAi,
    /// `inference.GRPCInferenceService` (Triton, KServe).
    Kserve,
}

impl Protocol {
    /// The `protocol` label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::OpenAi => "openai",
            Protocol::Kserve => "kserve",
        }
    }

    /// The protocol a front left on a request; the project's own otherwise.
    pub fn of<T>(request: &tonic::Request<T>) -> Protocol {
        request
            .extensions()
            .get::<Protocol>()
            .copied()
            .unwrap_or_default()
    }
}
