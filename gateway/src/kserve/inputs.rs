//! The tensors and parameters of each kind of model, named as Triton's LLM
//! backends (TensorRT-LLM, vLLM) name them, so that clients written for
//! those work unchanged. One table serves both reading requests
//! (`super::request`) and describing models (`super::metadata`).

use super::tensors::Datatype;

/// The prompt of a generation, or the texts of an embedding call.
pub const TEXT_INPUT: &str = "text_input";
/// The generated text (the whole of it, or one chunk of a stream).
pub const TEXT_OUTPUT: &str = "text_output";
/// One vector per input text, `[N, dim]`.
pub const EMBEDDING: &str = "embedding";

/// How many elements an input holds, and in what shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// `text_input`: one text, `[1]` or `[1, 1]`, for a generation model
    /// (which takes no batch); `N` texts, `[N]` or `[N, 1]`, for an
    /// embedding model.
    Texts,
    /// One value, `[1]` or `[1, 1]`.
    One,
    /// Any number of values, `[N]`, `[1, N]` or `[N, 1]`.
    Many,
}

/// One input a kind of model takes.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    pub name: &'static str,
    /// The element types taken; the first is the one metadata reports.
    pub datatypes: &'static [Datatype],
    pub arity: Arity,
    pub required: bool,
}

impl InputSpec {
    /// The types taken, as a message lists them: `INT32, UINT32 or INT64`.
    pub fn expected_types(&self) -> String {
        listed(self.datatypes.iter().map(|d| d.name()))
    }
}

const fn optional(name: &'static str, datatypes: &'static [Datatype], arity: Arity) -> InputSpec {
    InputSpec {
        name,
        datatypes,
        arity,
        required: false,
    }
}

const TEXTS: InputSpec = InputSpec {
    name: TEXT_INPUT,
    datatypes: &[Datatype::Bytes],
    arity: Arity::Texts,
    required: true,
};

const INTEGER: &[Datatype] = &[Datatype::Int32, Datatype::Uint32, Datatype::Int64];

/// A generation model's inputs: the prompt, and the sampling options (each
/// also taken as a request parameter of the same name).
pub const GENERATE_INPUTS: [InputSpec; 9] = [
    TEXTS,
    optional("max_tokens", INTEGER, Arity::One),
    // ModelStreamInfer: true (unset) answers a response per chunk of
    // text; false answers the whole text in one response.
    optional("stream", &[Datatype::Bool], Arity::One),
    optional("temperature", &[Datatype::Fp32], Arity::One),
    optional("top_p", &[Datatype::Fp32], Arity::One),
    optional("top_k", INTEGER, Arity::One),
    optional(
        "random_seed",
        &[Datatype::Uint64, Datatype::Int64],
        Arity::One,
    ),
    optional("stop_words", &[Datatype::Bytes], Arity::Many),
    optional("ignore_eos", &[Datatype::Bool], Arity::One),
];

/// An embedding model's inputs: the texts, and whether texts longer than
/// the model's limit are cut (`truncate`, also a request parameter).
pub const EMBED_INPUTS: [InputSpec; 2] =
    [TEXTS, optional("truncate", &[Datatype::Bool], Arity::One)];

/// Request parameter of ModelStreamInfer (tritonclient's
/// `enable_empty_final_response`): the final flag comes on an extra
/// response without outputs, after the last chunk of text.
pub const EMPTY_FINAL: &str = "triton_enable_empty_final_response";

/// Response parameter of ModelStreamInfer: true on the last response of a
/// request, false on the others.
pub const FINAL: &str = "triton_final_response";

/// Response parameters of a request's last response (ModelInfer's only
/// one): tokens of the prompt (for an embedding call, of all its texts).
pub const PROMPT_TOKENS: &str = "prompt_tokens";
/// Tokens generated.
pub const COMPLETION_TOKENS: &str = "completion_tokens";
/// Why the generation ended: `length`, `stop`, `eos` or `cancelled`.
pub const FINISH_REASON: &str = "finish_reason";
/// The worker that served the request, its slice (`MIG-<uuid>`,
/// `cpu:0-1`) and the slice's profile (`1g.10gb`, `cpu-1c`).
pub const WORKER_ID: &str = "worker_id";
pub const SLICE: &str = "slice";
pub const PROFILE: &str = "profile";
/// Texts of an embedding call cut to the model's limit (with `truncate`).
pub const TRUNCATED_INPUTS: &str = "truncated_inputs";

/// Names as a message lists them: `` `a`, `b` or `c` ``.
pub fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Inputs as a message lists them: `` `text_input` (required), `max_tokens`, ... ``.
pub fn input_names(specs: &[InputSpec]) -> String {
    specs
        .iter()
        .map(|s| {
            if s.required {
                format!("`{}` (required)", s.name)
            } else {
                format!("`{}`", s.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(
            GENERATE_INPUTS[1].expected_types(),
            "INT32, UINT32 or INT64"
        );
        assert_eq!(GENERATE_INPUTS[0].expected_types(), "BYTES");
        assert_eq!(
            input_names(&EMBED_INPUTS),
            "`text_input` (required), `truncate`"
        );
    }
}
