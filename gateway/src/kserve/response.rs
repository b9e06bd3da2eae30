//! The project's answers written as KServe v2 responses: the text or the
//! vectors in `raw_output_contents` (what tritonclient reads), and what the
//! project's own API says besides (usage, finish reason, the slice that
//! served) as response parameters named in `super::inputs`.

use std::collections::HashMap;

use mig_proto::inference::v1::{
    EmbedResponse, FinishReason, GenerateResponse, GenerateStreamResponse, ServedBy, Usage,
};
use mig_proto::kserve::infer_parameter::ParameterChoice;
use mig_proto::kserve::model_infer_response::InferOutputTensor;
use mig_proto::kserve::{InferParameter, ModelInferResponse, ModelStreamInferResponse};
use tonic::Status;

use super::inputs::{
    COMPLETION_TOKENS, EMBEDDING, FINAL, FINISH_REASON, PROFILE, PROMPT_TOKENS, SLICE, TEXT_OUTPUT,
    TRUNCATED_INPUTS, WORKER_ID,
};
use super::tensors::{encode_bytes, encode_fp32, Datatype};

/// The one version of every model.
pub const VERSION: &str = "1";

/// Which request a response answers: its model and its `id`, repeated in
/// every response.
#[derive(Debug, Clone)]
pub struct Answering {
    pub model: String,
    pub id: String,
    /// `text_input`'s shape, which `text_output` takes (`[1]` or `[1, 1]`).
    pub shape: Vec<i64>,
}

fn parameter(choice: ParameterChoice) -> InferParameter {
    InferParameter {
        parameter_choice: Some(choice),
    }
}

/// The `finish_reason` parameter's value.
pub fn finish_name(reason: FinishReason) -> Option<&'static str> {
    match reason {
        FinishReason::Unspecified => None,
        FinishReason::Length => Some("length"),
        FinishReason::Stop => Some("stop"),
        FinishReason::Eos => Some("eos"),
        FinishReason::Cancelled => Some("cancelled"),
    }
}

/// Usage, finish reason and serving slice as response parameters.
fn summary(
    usage: Option<&Usage>,
    finish: Option<FinishReason>,
    served_by: Option<&ServedBy>,
) -> HashMap<String, InferParameter> {
    let mut parameters = HashMap::new();
    if let Some(usage) = usage {
        parameters.insert(
            PROMPT_TOKENS.into(),
            parameter(ParameterChoice::Int64Param(usage.prompt_tokens.into())),
        );
        if finish.is_some() {
            parameters.insert(
                COMPLETION_TOKENS.into(),
                parameter(ParameterChoice::Int64Param(usage.completion_tokens.into())),
            );
        }
    }
    if let Some(name) = finish.and_then(finish_name) {
        parameters.insert(
            FINISH_REASON.into(),
            parameter(ParameterChoice::StringParam(name.into())),
        );
    }
    if let Some(s) = served_by {
        for (name, value) in [
            (WORKER_ID, &s.worker_id),
            (SLICE, &s.slice),
            (PROFILE, &s.profile),
        ] {
            parameters.insert(
                name.into(),
                parameter(ParameterChoice::StringParam(value.clone())),
            );
        }
    }
    parameters
}

impl Answering {
    fn response(&self, parameters: HashMap<String, InferParameter>) -> ModelInferResponse {
        ModelInferResponse {
            model_name: self.model.clone(),
            model_version: VERSION.into(),
            id: self.id.clone(),
            parameters,
            ..Default::default()
        }
    }

    /// A response holding `text` as `text_output`.
    fn text(&self, text: &str, parameters: HashMap<String, InferParameter>) -> ModelInferResponse {
        ModelInferResponse {
            outputs: vec![InferOutputTensor {
                name: TEXT_OUTPUT.into(),
                datatype: Datatype::Bytes.name().into(),
                shape: self.shape.clone(),
                ..Default::default()
            }],
            raw_output_contents: vec![encode_bytes([text.as_bytes()])],
            ..self.response(parameters)
        }
    }

    /// ModelInfer's answer to a generation: the whole text.
    pub fn generated(&self, answer: &GenerateResponse) -> ModelInferResponse {
        self.text(
            &answer.text,
            summary(
                answer.usage.as_ref(),
                Some(answer.finish_reason()),
                answer.served_by.as_ref(),
            ),
        )
    }

    /// One chunk of a stream that goes on.
    pub fn chunk(&self, text: &str) -> ModelInferResponse {
        let mut parameters = HashMap::new();
        parameters.insert(FINAL.into(), parameter(ParameterChoice::BoolParam(false)));
        self.text(text, parameters)
    }

    /// The stream's last message: its text, flagged final, with the
    /// summary. `text` is the whole text when the request asked for one
    /// response (`stream` false), the last chunk otherwise.
    pub fn last(&self, text: &str, last: &GenerateStreamResponse) -> ModelInferResponse {
        let mut parameters = summary(
            last.usage.as_ref(),
            Some(last.finish_reason()),
            last.served_by.as_ref(),
        );
        parameters.insert(FINAL.into(), parameter(ParameterChoice::BoolParam(true)));
        self.text(text, parameters)
    }

    /// With `triton_enable_empty_final_response`: the final flag and the
    /// summary on a response without outputs, after the last text.
    pub fn empty_final(&self, last: &GenerateStreamResponse) -> ModelInferResponse {
        let mut parameters = summary(
            last.usage.as_ref(),
            Some(last.finish_reason()),
            last.served_by.as_ref(),
        );
        parameters.insert(FINAL.into(), parameter(ParameterChoice::BoolParam(true)));
        self.response(parameters)
    }

    /// The vectors of an embedding call as `embedding`, FP32 `[N, dim]`.
    pub fn embedded(&self, answer: &EmbedResponse) -> ModelInferResponse {
        let count = answer.embeddings.len();
        let dim = answer.embeddings.first().map_or(0, |e| e.values.len());
        let mut parameters = summary(answer.usage.as_ref(), None, answer.served_by.as_ref());
        parameters.insert(
            TRUNCATED_INPUTS.into(),
            parameter(ParameterChoice::Int64Param(answer.truncated_inputs.into())),
        );
        ModelInferResponse {
            outputs: vec![InferOutputTensor {
                name: EMBEDDING.into(),
                datatype: Datatype::Fp32.name().into(),
                shape: vec![count as i64, dim as i64],
                ..Default::default()
            }],
            raw_output_contents: vec![encode_fp32(
                answer
                    .embeddings
                    .iter()
                    .flat_map(|e| e.values.iter().copied()),
            )],
            ..self.response(parameters)
        }
    }

    /// A failed request of a stream, in-band: its code and message in
    /// `error_message`, and the response it would have had, empty and
    /// flagged final, so that a client waiting for that flag stops
    /// waiting. The stream goes on with the next request.
    pub fn failed(&self, status: &Status) -> ModelStreamInferResponse {
        let mut parameters = HashMap::new();
        parameters.insert(FINAL.into(), parameter(ParameterChoice::BoolParam(true)));
        ModelStreamInferResponse {
            error_message: stream_error(status),
            infer_response: Some(self.response(parameters)),
        }
    }
}

/// `error_message` of a failed request: the gRPC code's name, then the
/// message (`NOT_FOUND: model ...`), as the unary call would have said it.
pub fn stream_error(status: &Status) -> String {
    format!(
        "{}: {}",
        mig_serve::status::code_name(status.code()),
        status.message()
    )
}

/// `response` flagged as its request's last on a stream (an embedding
/// call's one response).
pub fn flagged_final(mut response: ModelInferResponse) -> ModelInferResponse {
    response
        .parameters
        .insert(FINAL.into(), parameter(ParameterChoice::BoolParam(true)));
    response
}

/// A stream message holding a response.
pub fn streamed(response: ModelInferResponse) -> ModelStreamInferResponse {
    ModelStreamInferResponse {
        error_message: String::new(),
        infer_response: Some(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::Embedding;

    fn answering() -> Answering {
        Answering {
            model: "smollm2-135m".into(),
            id: "r1".into(),
            shape: vec![1, 1],
        }
    }

    fn flag(r: &ModelInferResponse) -> Option<bool> {
        match r.parameters.get(FINAL)?.parameter_choice {
            Some(ParameterChoice::BoolParam(b)) => Some(b),
            _ => None,
        }
    }

    fn last_message() -> GenerateStreamResponse {
        GenerateStreamResponse {
            text: "!".into(),
            finish_reason: FinishReason::Length as i32,
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
            }),
            served_by: Some(ServedBy {
                worker_id: "w0".into(),
                slice: "cpu:0".into(),
                profile: "cpu-1c".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn text_goes_in_raw_output_contents_with_the_input_shape() {
        let r = answering().chunk("Hel");
        assert_eq!(r.outputs[0].name, TEXT_OUTPUT);
        assert_eq!(r.outputs[0].datatype, "BYTES");
        assert_eq!(r.outputs[0].shape, [1, 1]);
        assert_eq!(r.raw_output_contents, [b"\x03\0\0\0Hel".to_vec()]);
        assert_eq!((r.id.as_str(), r.model_version.as_str()), ("r1", "1"));
        assert_eq!(flag(&r), Some(false));
    }

    #[test]
    fn the_last_response_carries_the_flag_and_the_summary() {
        let r = answering().last("!", &last_message());
        assert_eq!(flag(&r), Some(true));
        let string = |name: &str| match &r.parameters[name].parameter_choice {
            Some(ParameterChoice::StringParam(s)) => s.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(string(FINISH_REASON), "length");
        assert_eq!(string(SLICE), "cpu:0");
        assert_eq!(string(PROFILE), "cpu-1c");
        assert_eq!(string(WORKER_ID), "w0");
        assert_eq!(
            r.parameters[COMPLETION_TOKENS].parameter_choice,
            Some(ParameterChoice::Int64Param(4))
        );
        let empty = answering().empty_final(&last_message());
        assert!(empty.outputs.is_empty() && empty.raw_output_contents.is_empty());
        assert_eq!(flag(&empty), Some(true));
        assert!(empty.parameters.contains_key(PROMPT_TOKENS));
    }

    #[test]
    fn embeddings_are_fp32_n_by_dim() {
        let answer = EmbedResponse {
            embeddings: vec![
                Embedding {
                    values: vec![1.0, 0.0],
                },
                Embedding {
                    values: vec![0.0, -1.0],
                },
            ],
            ..Default::default()
        };
        let r = answering().embedded(&answer);
        assert_eq!(r.outputs[0].shape, [2, 2]);
        assert_eq!(r.outputs[0].datatype, "FP32");
        assert_eq!(r.raw_output_contents[0].len(), 16);
        assert!(!r.parameters.contains_key(COMPLETION_TOKENS));
    }

    #[test]
    fn a_failed_request_says_its_code_and_ends_its_responses() {
        let m = answering().failed(&Status::not_found("model `x` is not served here"));
        assert_eq!(m.error_message, "NOT_FOUND: model `x` is not served here");
        assert_eq!(flag(m.infer_response.as_ref().unwrap()), Some(true));
    }
}
