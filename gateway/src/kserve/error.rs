//! What the KServe front refuses before a call reaches the shared request
//! path, and the gRPC code each refusal has. Every message names the
//! tensor, parameter or field, and says what was expected; a client's
//! names and values are repeated only bounded ([`shown`]).

use mig_serve::limits::shown;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum KserveError {
    /// A required input is absent.
    #[error("input `{name}` is missing: model `{}` takes {inputs}", shown(model))]
    MissingInput {
        name: &'static str,
        model: String,
        /// The model's inputs, listed.
        inputs: String,
    },
    /// An input name the model does not take.
    #[error(
        "input `{}` is not an input of model `{}`; its inputs: {inputs}",
        shown(name),
        shown(model)
    )]
    UnknownInput {
        name: String,
        model: String,
        inputs: String,
    },
    /// The same input twice.
    #[error(
        "input `{}` is sent {count} times; each input is sent once",
        shown(name)
    )]
    DuplicateInput { name: String, count: usize },
    /// An input of another element type than the model's.
    #[error(
        "input `{}` is `{}`; expected {expected}",
        shown(name),
        shown(datatype)
    )]
    Datatype {
        name: String,
        datatype: String,
        expected: String,
    },
    /// An input whose shape is not one the model takes.
    #[error("input `{}` has shape {shape}; expected {expected}", shown(name))]
    Shape {
        name: String,
        shape: String,
        expected: String,
    },
    /// More than one text for a generation model, which takes no batch.
    #[error("input `{name}` has shape {shape}: model `{}` generates from one text per request (max_batch_size 0); send one request per text", shown(model))]
    Batch {
        name: &'static str,
        shape: String,
        model: String,
    },
    /// The elements of an input do not match its type or shape, or are not
    /// what the input needs (text that is not UTF-8, a value out of range).
    #[error("input `{}`: {detail}", shown(name))]
    Data { name: String, detail: String },
    /// `raw_input_contents` and the inputs do not pair up.
    #[error("{0}")]
    RawContents(String),
    /// A request or tensor parameter this front does not take.
    #[error("{what} `{}` is not supported here; {supported}", shown(name))]
    UnknownParameter {
        /// `parameter` or `parameter of input `x``.
        what: String,
        name: String,
        /// What is taken instead.
        supported: String,
    },
    /// A parameter of another type than its option's.
    #[error("parameter `{name}` is {found}; expected {expected}")]
    ParameterType {
        name: &'static str,
        found: &'static str,
        expected: &'static str,
    },
    /// A parameter whose value is out of its option's range.
    #[error("parameter `{name}` is {value}; expected {expected}")]
    ParameterRange {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The same option as an input and as a parameter.
    #[error("`{name}` is sent both as an input and as a request parameter; send it once")]
    Twice { name: &'static str },
    /// An output the model does not produce, or asked in an unsupported way.
    #[error("{0}")]
    Output(String),
    /// A request field past its limit (`id`).
    #[error("`{field}` is {bytes} bytes, limit {limit}")]
    TooLong {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    /// A model the caller may not see, or that is not served.
    #[error("model `{}` is not served here (or not to this caller); ModelMetadata lists only models it may call", shown(model))]
    ModelNotFound { model: String },
    /// A version other than the one served.
    #[error(
        "model `{}` has one version, `1`; version `{}` is not served",
        shown(model),
        shown(version)
    )]
    Version { model: String, version: String },
    /// The model's workers have not said yet what kind of model it is.
    #[error("model `{}` has no worker that has answered yet, so its inputs are not known; try again when it is ready (ModelReady)", shown(model))]
    KindUnknown { model: String },
}

impl From<KserveError> for Status {
    fn from(e: KserveError) -> Self {
        let message = e.to_string();
        match e {
            KserveError::ModelNotFound { .. } | KserveError::Version { .. } => {
                Status::not_found(message)
            }
            KserveError::KindUnknown { .. } => Status::unavailable(message),
            _ => Status::invalid_argument(message),
        }
    }
}

/// The answer of an RPC this front does not serve.
pub fn unimplemented(rpc: &str, instead: &str) -> Status {
    Status::unimplemented(format!(
        "inference.GRPCInferenceService/{rpc} is not served by mig-gateway: {instead}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_codes_and_never_repeat_long_names() {
        let s: Status = KserveError::UnknownInput {
            name: "x".repeat(10_000),
            model: "m".into(),
            inputs: "`text_input`".into(),
        }
        .into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().len() < 300, "{}", s.message());
        assert!(s.message().contains("(10000 bytes)"), "{}", s.message());
        let s: Status = KserveError::ModelNotFound { model: "m".into() }.into();
        assert_eq!(s.code(), tonic::Code::NotFound);
        let s: Status = KserveError::KindUnknown { model: "m".into() }.into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s = unimplemented("RepositoryIndex", "the fleet file lists the models");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
    }
}
