//! A `ModelInferRequest` read into the project's own request: a
//! `GenerateRequest` for a generation model, an `EmbedRequest` for an
//! embedding model. Everything the KServe wire allows and the model does
//! not take is refused here, naming the tensor or parameter: an unknown or
//! repeated input, a wrong element type or shape, raw contents that do not
//! add up, text that is not UTF-8, more than one prompt. What the project's
//! own API checks (sizes, sampling ranges, the model's context) it still
//! checks, on the shared path.

use std::collections::HashMap;

use mig_proto::inference::v1::{EmbedRequest, GenerateRequest};
use mig_proto::kserve::infer_parameter::ParameterChoice;
use mig_proto::kserve::{InferParameter, ModelInferRequest};
use mig_serve::fields::{MAX_EMBED_INPUTS, MAX_STOP_STRINGS};

use super::error::KserveError;
use super::inputs::{
    input_names, Arity, InputSpec, EMBEDDING, EMBED_INPUTS, EMPTY_FINAL, GENERATE_INPUTS,
    TEXT_INPUT, TEXT_OUTPUT,
};
use super::tensors::{self, shape_text, Datatype, Values};

/// Longest request `id`, in bytes (it is repeated in every response).
pub const MAX_ID_BYTES: usize = 256;

/// A generation read from the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub request: GenerateRequest,
    /// `stream`: ModelStreamInfer answers chunk by chunk unless false.
    pub stream: Option<bool>,
    /// `text_input`'s shape (`[1]` or `[1, 1]`), which `text_output` takes.
    pub shape: Vec<i64>,
    /// `triton_enable_empty_final_response`.
    pub empty_final: bool,
}

/// An embedding call read from the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub request: EmbedRequest,
}

/// The inputs of a request, checked against the model's, by name.
struct Inputs {
    values: HashMap<&'static str, (Values, Vec<i64>)>,
    parameters: HashMap<String, InferParameter>,
}

/// Checks what every request must satisfy whatever its model: its `id`,
/// how raw contents pair with the inputs, the names, types and shapes of
/// its inputs, the outputs it asks for and its parameters; then reads each
/// input's elements.
fn read_inputs(
    request: ModelInferRequest,
    specs: &[InputSpec],
    outputs: &[&str],
    generation: bool,
) -> Result<Inputs, KserveError> {
    if request.id.len() > MAX_ID_BYTES {
        return Err(KserveError::TooLong {
            field: "id",
            bytes: request.id.len(),
            limit: MAX_ID_BYTES,
        });
    }
    let model = request.model_name.as_str();
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(KserveError::RawContents(format!(
            "`raw_input_contents` has {} entries for {} inputs: send one per input, in the order of `inputs`, or none (then each input's `contents`)",
            raw.len(),
            request.inputs.len()
        )));
    }
    for asked in &request.outputs {
        if !outputs.contains(&asked.name.as_str()) {
            return Err(KserveError::Output(format!(
                "output `{}` is not an output of model `{}`; its output: `{}`",
                mig_serve::limits::shown(&asked.name),
                mig_serve::limits::shown(model),
                outputs.join("`, `")
            )));
        }
        if let Some(name) = asked.parameters.keys().next() {
            return Err(KserveError::UnknownParameter {
                what: format!("parameter of output `{}`", asked.name),
                name: name.clone(),
                supported: "outputs take no parameters (no classification)".into(),
            });
        }
    }
    let mut values = HashMap::new();
    for (i, input) in request.inputs.iter().enumerate() {
        let Some(spec) = specs.iter().find(|s| s.name == input.name) else {
            return Err(KserveError::UnknownInput {
                name: input.name.clone(),
                model: model.to_string(),
                inputs: input_names(specs),
            });
        };
        let count = request
            .inputs
            .iter()
            .filter(|other| other.name == input.name)
            .count();
        if count > 1 {
            return Err(KserveError::DuplicateInput {
                name: input.name.clone(),
                count,
            });
        }
        if let Some(name) = input.parameters.keys().next() {
            return Err(KserveError::UnknownParameter {
                what: format!("parameter of input `{}`", spec.name),
                name: name.clone(),
                supported: "an input's elements travel in the request (`contents` or `raw_input_contents`); shared memory is not served".into(),
            });
        }
        let datatype = Datatype::parse(&input.datatype)
            .filter(|d| spec.datatypes.contains(d))
            .ok_or_else(|| KserveError::Datatype {
                name: spec.name.to_string(),
                datatype: input.datatype.clone(),
                expected: spec.expected_types(),
            })?;
        check_shape(spec, &input.shape, model, generation)?;
        let raw_entry = if raw.is_empty() {
            None
        } else {
            if tensors::has_contents(input) {
                return Err(KserveError::RawContents(format!(
                    "input `{}` has both `contents` and an entry in `raw_input_contents`; send its elements once",
                    spec.name
                )));
            }
            Some(raw[i].as_slice())
        };
        let decoded = tensors::decode(input, datatype, raw_entry)?;
        values.insert(spec.name, (decoded, input.shape.clone()));
    }
    if let Some(missing) = specs
        .iter()
        .find(|s| s.required && !values.contains_key(s.name))
    {
        return Err(KserveError::MissingInput {
            name: missing.name,
            model: model.to_string(),
            inputs: input_names(specs),
        });
    }
    let parameters = request.parameters;
    for name in parameters.keys() {
        if name != EMPTY_FINAL && !specs.iter().any(|s| !s.required && s.name == name) {
            return Err(KserveError::UnknownParameter {
                what: "request parameter".into(),
                name: name.clone(),
                supported: format!(
                    "request parameters: {}, `{EMPTY_FINAL}`",
                    specs
                        .iter()
                        .filter(|s| !s.required)
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    Ok(Inputs { values, parameters })
}

/// The shapes each arity takes.
fn check_shape(
    spec: &InputSpec,
    shape: &[i64],
    model: &str,
    generation: bool,
) -> Result<(), KserveError> {
    let bad = |expected: &str| KserveError::Shape {
        name: spec.name.to_string(),
        shape: shape_text(shape),
        expected: expected.to_string(),
    };
    let count = tensors::element_count(spec.name, shape)?;
    let ok = match (spec.arity, shape) {
        (Arity::Texts, [n] | [n, 1]) if generation && *n > 1 => {
            return Err(KserveError::Batch {
                name: TEXT_INPUT,
                shape: shape_text(shape),
                model: model.to_string(),
            })
        }
        (Arity::Texts, [1] | [1, 1]) if generation => true,
        (Arity::Texts, _) if generation => return Err(bad("[1] or [1, 1] (one text)")),
        (Arity::Texts, [_] | [_, 1]) => count >= 1,
        (Arity::Texts, _) => return Err(bad("[N] or [N, 1], N texts, N ≥ 1")),
        (Arity::One, [_] | [_, _]) => count == 1,
        (Arity::One, _) => false,
        (Arity::Many, [_] | [1, _] | [_, 1]) => true,
        (Arity::Many, _) => return Err(bad("[N], [1, N] or [N, 1]")),
    };
    if !ok {
        return Err(match spec.arity {
            Arity::One => bad("[1] or [1, 1] (one value)"),
            _ => bad("[N] or [N, 1], N texts, N ≥ 1"),
        });
    }
    Ok(())
}

impl Inputs {
    /// An option given as an input or as a request parameter, never both.
    fn option(
        &mut self,
        name: &'static str,
    ) -> Result<Option<Result<Values, InferParameter>>, KserveError> {
        let input = self.values.remove(name).map(|(v, _)| v);
        let parameter = self.parameters.remove(name);
        match (input, parameter) {
            (Some(_), Some(_)) => Err(KserveError::Twice { name }),
            (Some(v), None) => Ok(Some(Ok(v))),
            (None, Some(p)) => Ok(Some(Err(p))),
            (None, None) => Ok(None),
        }
    }

    /// A whole number as sent, tensor or parameter (0 for an empty
    /// tensor).
    fn integer(&mut self, name: &'static str) -> Result<Option<i128>, KserveError> {
        let value = match self.option(name)? {
            None => return Ok(None),
            Some(Ok(Values::Int(v))) => v.first().map(|&v| v as i128),
            Some(Ok(Values::Uint(v))) => v.first().map(|&v| v as i128),
            Some(Ok(_)) => None,
            Some(Err(p)) => Some(parameter_integer(name, &p)?),
        };
        Ok(Some(value.unwrap_or_default()))
    }

    /// A whole number of at most `u32::MAX` (`max_tokens`, `top_k`).
    fn count(&mut self, name: &'static str) -> Result<Option<u32>, KserveError> {
        self.integer(name)?
            .map(|value| {
                u32::try_from(value).map_err(|_| out_of_range(name, value, u32::MAX.into()))
            })
            .transpose()
    }

    /// A sampler seed: any whole number from 0 to `u64::MAX`.
    fn seed(&mut self, name: &'static str) -> Result<Option<u64>, KserveError> {
        self.integer(name)?
            .map(|value| {
                u64::try_from(value).map_err(|_| out_of_range(name, value, u64::MAX.into()))
            })
            .transpose()
    }

    /// A number (`temperature`, `top_p`); its range is the shared path's
    /// to check.
    fn number(&mut self, name: &'static str) -> Result<Option<f32>, KserveError> {
        Ok(match self.option(name)? {
            None => None,
            Some(Ok(Values::Fp32(v))) => v.first().copied(),
            Some(Ok(_)) => None,
            Some(Err(p)) => Some(match p.parameter_choice {
                Some(ParameterChoice::DoubleParam(v)) => v as f32,
                Some(ParameterChoice::Int64Param(v)) => v as f32,
                Some(ParameterChoice::Uint64Param(v)) => v as f32,
                other => {
                    return Err(KserveError::ParameterType {
                        name,
                        found: parameter_type(&other),
                        expected: "a number (`double_param`)",
                    })
                }
            }),
        })
    }

    fn flag(&mut self, name: &'static str) -> Result<Option<bool>, KserveError> {
        Ok(match self.option(name)? {
            None => None,
            Some(Ok(Values::Bool(v))) => v.first().copied(),
            Some(Ok(_)) => None,
            Some(Err(p)) => Some(match p.parameter_choice {
                Some(ParameterChoice::BoolParam(v)) => v,
                other => {
                    return Err(KserveError::ParameterType {
                        name,
                        found: parameter_type(&other),
                        expected: "true or false (`bool_param`)",
                    })
                }
            }),
        })
    }

    /// Texts: a BYTES input's elements, or one string parameter.
    fn texts(&mut self, name: &'static str) -> Result<Vec<String>, KserveError> {
        Ok(match self.option(name)? {
            None => Vec::new(),
            Some(Ok(Values::Bytes(v))) => tensors::utf8(name, v)?,
            Some(Ok(_)) => Vec::new(),
            Some(Err(p)) => match p.parameter_choice {
                Some(ParameterChoice::StringParam(s)) => vec![s],
                other => {
                    return Err(KserveError::ParameterType {
                        name,
                        found: parameter_type(&other),
                        expected: "one text (`string_param`)",
                    })
                }
            },
        })
    }

    /// `text_input`'s texts and shape.
    fn text_input(&mut self) -> Result<(Vec<String>, Vec<i64>), KserveError> {
        match self.values.remove(TEXT_INPUT) {
            Some((Values::Bytes(v), shape)) => Ok((tensors::utf8(TEXT_INPUT, v)?, shape)),
            _ => Ok((Vec::new(), vec![0])),
        }
    }

    fn empty_final(&mut self) -> Result<bool, KserveError> {
        Ok(match self.parameters.remove(EMPTY_FINAL) {
            None => false,
            Some(p) => match p.parameter_choice {
                Some(ParameterChoice::BoolParam(v)) => v,
                other => {
                    return Err(KserveError::ParameterType {
                        name: EMPTY_FINAL,
                        found: parameter_type(&other),
                        expected: "true or false (`bool_param`)",
                    })
                }
            },
        })
    }
}

/// The refusal of a whole number outside 0..=`max`.
fn out_of_range(name: &str, value: i128, max: u128) -> KserveError {
    KserveError::Data {
        name: name.to_string(),
        detail: format!("{value} is out of range; expected 0 to {max}"),
    }
}

/// A whole-number parameter.
fn parameter_integer(name: &'static str, p: &InferParameter) -> Result<i128, KserveError> {
    match p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => Ok(v as i128),
        Some(ParameterChoice::Uint64Param(v)) => Ok(v as i128),
        ref other => Err(KserveError::ParameterType {
            name,
            found: parameter_type(other),
            expected: "a whole number (`int64_param` or `uint64_param`)",
        }),
    }
}

fn parameter_type(p: &Option<ParameterChoice>) -> &'static str {
    match p {
        None => "empty",
        Some(ParameterChoice::BoolParam(_)) => "a `bool_param`",
        Some(ParameterChoice::Int64Param(_)) => "an `int64_param`",
        Some(ParameterChoice::StringParam(_)) => "a `string_param`",
        Some(ParameterChoice::DoubleParam(_)) => "a `double_param`",
        Some(ParameterChoice::Uint64Param(_)) => "a `uint64_param`",
    }
}

/// At most `limit` elements in input `name` (the shared path checks the
/// same limit, but under its own field's name).
fn at_most(name: &str, count: usize, limit: usize, what: &str) -> Result<(), KserveError> {
    if count > limit {
        return Err(KserveError::Data {
            name: name.to_string(),
            detail: format!("{count} {what}, limit {limit}"),
        });
    }
    Ok(())
}

/// A request to a generation model.
pub fn generation(request: ModelInferRequest) -> Result<Generation, KserveError> {
    let model = request.model_name.clone();
    let mut inputs = read_inputs(request, &GENERATE_INPUTS, &[TEXT_OUTPUT], true)?;
    let (mut texts, shape) = inputs.text_input()?;
    let prompt = texts.pop().unwrap_or_default();
    let stop = inputs.texts("stop_words")?;
    at_most("stop_words", stop.len(), MAX_STOP_STRINGS, "stop words")?;
    let request = GenerateRequest {
        model,
        prompt,
        max_tokens: inputs.count("max_tokens")?,
        temperature: inputs.number("temperature")?,
        top_p: inputs.number("top_p")?,
        top_k: inputs.count("top_k")?,
        seed: inputs.seed("random_seed")?,
        stop,
        ignore_eos: inputs.flag("ignore_eos")?.unwrap_or(false),
        ..Default::default()
    };
    Ok(Generation {
        request,
        stream: inputs.flag("stream")?,
        shape,
        empty_final: inputs.empty_final()?,
    })
}

/// A request to an embedding model.
pub fn embedding(request: ModelInferRequest) -> Result<Embedding, KserveError> {
    let model = request.model_name.clone();
    let mut inputs = read_inputs(request, &EMBED_INPUTS, &[EMBEDDING], false)?;
    let (texts, _) = inputs.text_input()?;
    at_most(TEXT_INPUT, texts.len(), MAX_EMBED_INPUTS, "texts")?;
    let truncate = inputs.flag("truncate")?.unwrap_or(false);
    // Meaningless for one response, but not wrong.
    inputs.empty_final()?;
    Ok(Embedding {
        request: EmbedRequest {
            model,
            inputs: texts,
            truncate,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::kserve::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
    use mig_proto::kserve::InferTensorContents;

    fn bytes_input(name: &str, shape: &[i64], texts: &[&[u8]]) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: shape.to_vec(),
            contents: Some(InferTensorContents {
                bytes_contents: texts.iter().map(|t| t.to_vec()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn scalar(name: &str, datatype: &str, raw: &[u8]) -> (InferInputTensor, Vec<u8>) {
        (
            InferInputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape: vec![1],
                ..Default::default()
            },
            raw.to_vec(),
        )
    }

    fn prompt(text: &str) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "smollm2-135m".into(),
            inputs: vec![bytes_input(TEXT_INPUT, &[1], &[text.as_bytes()])],
            ..Default::default()
        }
    }

    /// As tritonclient sends them: every input in raw contents.
    fn raw_request(inputs: Vec<(InferInputTensor, Vec<u8>)>) -> ModelInferRequest {
        let (inputs, raw): (Vec<_>, Vec<_>) = inputs.into_iter().unzip();
        ModelInferRequest {
            model_name: "smollm2-135m".into(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    fn raw_text(text: &str, shape: &[i64]) -> (InferInputTensor, Vec<u8>) {
        (
            InferInputTensor {
                name: TEXT_INPUT.into(),
                datatype: "BYTES".into(),
                shape: shape.to_vec(),
                ..Default::default()
            },
            tensors::encode_bytes([text.as_bytes()]),
        )
    }

    fn param(choice: ParameterChoice) -> InferParameter {
        InferParameter {
            parameter_choice: Some(choice),
        }
    }

    fn refused(request: ModelInferRequest) -> String {
        generation(request).unwrap_err().to_string()
    }

    #[test]
    fn tritonclient_raw_inputs_become_a_generate_request() {
        let request = raw_request(vec![
            raw_text("Hello", &[1, 1]),
            scalar("max_tokens", "INT32", &8i32.to_le_bytes()),
            scalar("temperature", "FP32", &0f32.to_le_bytes()),
            scalar("top_k", "INT64", &40i64.to_le_bytes()),
            scalar("random_seed", "UINT64", &7u64.to_le_bytes()),
            scalar("ignore_eos", "BOOL", &[1]),
            scalar("stream", "BOOL", &[0]),
            (
                InferInputTensor {
                    name: "stop_words".into(),
                    datatype: "BYTES".into(),
                    shape: vec![1, 2],
                    ..Default::default()
                },
                tensors::encode_bytes([b"\n".as_slice(), b"User:".as_slice()]),
            ),
        ]);
        let g = generation(request).unwrap();
        assert_eq!(
            g.request,
            GenerateRequest {
                model: "smollm2-135m".into(),
                prompt: "Hello".into(),
                max_tokens: Some(8),
                temperature: Some(0.0),
                top_k: Some(40),
                seed: Some(7),
                stop: vec!["\n".into(), "User:".into()],
                ignore_eos: true,
                ..Default::default()
            }
        );
        assert_eq!(g.stream, Some(false));
        assert_eq!(g.shape, [1, 1]);
        assert!(!g.empty_final);
    }

    #[test]
    fn options_come_as_parameters_too_but_not_twice() {
        let mut request = prompt("Hi");
        request.parameters = HashMap::from([
            ("max_tokens".into(), param(ParameterChoice::Int64Param(4))),
            (
                "temperature".into(),
                param(ParameterChoice::DoubleParam(0.5)),
            ),
            (
                "stop_words".into(),
                param(ParameterChoice::StringParam("!".into())),
            ),
            (EMPTY_FINAL.into(), param(ParameterChoice::BoolParam(true))),
        ]);
        let g = generation(request.clone()).unwrap();
        assert_eq!(g.request.max_tokens, Some(4));
        assert_eq!(g.request.temperature, Some(0.5));
        assert_eq!(g.request.stop, ["!"]);
        assert!(g.empty_final);

        request.inputs.push(InferInputTensor {
            name: "max_tokens".into(),
            datatype: "INT32".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                int_contents: vec![4],
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            refused(request),
            "`max_tokens` is sent both as an input and as a request parameter; send it once"
        );

        let mut request = prompt("Hi");
        request.parameters = HashMap::from([(
            "max_tokens".into(),
            param(ParameterChoice::StringParam("8".into())),
        )]);
        assert_eq!(
            refused(request),
            "parameter `max_tokens` is a `string_param`; expected a whole number (`int64_param` or `uint64_param`)"
        );
        let mut request = prompt("Hi");
        request.parameters =
            HashMap::from([("sequence_id".into(), param(ParameterChoice::Int64Param(1)))]);
        let e = refused(request);
        assert!(
            e.starts_with("request parameter `sequence_id` is not supported here; request parameters: `max_tokens`, `stream`"),
            "{e}"
        );
    }

    #[test]
    fn hostile_tensors_are_refused_naming_the_input() {
        let mut r = prompt("Hi");
        r.inputs.clear();
        assert!(refused(r).starts_with("input `text_input` is missing: model `smollm2-135m` takes `text_input` (required), `max_tokens`"));

        let mut r = prompt("Hi");
        r.inputs[0].datatype = "FP32".into();
        assert_eq!(refused(r), "input `text_input` is `FP32`; expected BYTES");

        let r = ModelInferRequest {
            inputs: vec![bytes_input(TEXT_INPUT, &[2], &[b"a", b"b"])],
            ..prompt("")
        };
        assert_eq!(
            refused(r),
            "input `text_input` has shape [2]: model `smollm2-135m` generates from one text per request (max_batch_size 0); send one request per text"
        );

        let r = ModelInferRequest {
            inputs: vec![bytes_input(TEXT_INPUT, &[1, 1, 1], &[b"a"])],
            ..prompt("")
        };
        assert_eq!(
            refused(r),
            "input `text_input` has shape [1, 1, 1]; expected [1] or [1, 1] (one text)"
        );

        let r = ModelInferRequest {
            inputs: vec![bytes_input(TEXT_INPUT, &[1], &[b"\xff\xfe"])],
            ..prompt("")
        };
        assert_eq!(
            refused(r),
            "input `text_input`: element 0 is not UTF-8 (invalid at byte 0)"
        );

        let mut r = prompt("Hi");
        r.inputs.push(r.inputs[0].clone());
        assert_eq!(
            refused(r),
            "input `text_input` is sent 2 times; each input is sent once"
        );

        let mut r = prompt("Hi");
        r.inputs
            .push(bytes_input("sampling_parameters", &[1], &[b"{}"]));
        assert!(refused(r).starts_with(
            "input `sampling_parameters` is not an input of model `smollm2-135m`; its inputs: `text_input` (required)"
        ));

        let mut r = raw_request(vec![raw_text("Hi", &[1])]);
        r.raw_input_contents[0].truncate(5);
        assert_eq!(
            refused(r),
            "input `text_input`: `raw_input_contents` element 0 says 2 bytes; 1 remain"
        );

        let mut r = raw_request(vec![raw_text("Hi", &[1])]);
        r.raw_input_contents.push(vec![]);
        assert!(refused(r).starts_with("`raw_input_contents` has 2 entries for 1 inputs"));

        let mut r = raw_request(vec![raw_text("Hi", &[1])]);
        r.inputs[0].contents = Some(InferTensorContents {
            bytes_contents: vec![b"x".to_vec()],
            ..Default::default()
        });
        assert!(refused(r).contains("has both `contents` and an entry in `raw_input_contents`"));

        let r = raw_request(vec![
            raw_text("Hi", &[1]),
            scalar("max_tokens", "INT32", &(-1i32).to_le_bytes()),
        ]);
        assert_eq!(
            refused(r),
            "input `max_tokens`: -1 is out of range; expected 0 to 4294967295"
        );

        let mut r = raw_request(vec![
            raw_text("Hi", &[1]),
            scalar("max_tokens", "INT32", &[0; 8]),
        ]);
        r.inputs[1].shape = vec![2];
        assert_eq!(
            refused(r),
            "input `max_tokens` has shape [2]; expected [1] or [1, 1] (one value)"
        );

        let mut r = prompt("Hi");
        r.outputs.push(InferRequestedOutputTensor {
            name: "logits".into(),
            ..Default::default()
        });
        assert_eq!(
            refused(r),
            "output `logits` is not an output of model `smollm2-135m`; its output: `text_output`"
        );

        let mut r = prompt("Hi");
        r.id = "i".repeat(MAX_ID_BYTES + 1);
        assert_eq!(refused(r), "`id` is 257 bytes, limit 256");

        let mut r = prompt("Hi");
        r.inputs[0].parameters.insert(
            "shared_memory_region".into(),
            param(ParameterChoice::StringParam("r".into())),
        );
        assert!(refused(r).contains("shared memory is not served"));
    }

    #[test]
    fn an_embedding_request_takes_n_texts() {
        let mut request = ModelInferRequest {
            model_name: "minilm-l6".into(),
            inputs: vec![bytes_input(TEXT_INPUT, &[3, 1], &[b"a", b"b", b"c"])],
            ..Default::default()
        };
        let e = embedding(request.clone()).unwrap();
        assert_eq!(e.request.inputs, ["a", "b", "c"]);
        assert!(!e.request.truncate);
        request.parameters =
            HashMap::from([("truncate".into(), param(ParameterChoice::BoolParam(true)))]);
        assert!(embedding(request.clone()).unwrap().request.truncate);

        let many: Vec<&[u8]> = vec![b"t"; MAX_EMBED_INPUTS + 1];
        request.inputs = vec![bytes_input(TEXT_INPUT, &[many.len() as i64], &many)];
        assert_eq!(
            embedding(request.clone()).unwrap_err().to_string(),
            "input `text_input`: 65 texts, limit 64"
        );
        request.inputs = vec![bytes_input(TEXT_INPUT, &[0], &[])];
        assert_eq!(
            embedding(request.clone()).unwrap_err().to_string(),
            "input `text_input` has shape [0]; expected [N] or [N, 1], N texts, N ≥ 1"
        );
        request.inputs = vec![bytes_input(TEXT_INPUT, &[1], &[b"a"])];
        request.inputs.push(InferInputTensor {
            name: "max_tokens".into(),
            datatype: "INT32".into(),
            shape: vec![1],
            ..Default::default()
        });
        assert!(embedding(request)
            .unwrap_err()
            .to_string()
            .starts_with("input `max_tokens` is not an input of model `minilm-l6`"));
    }
}
