//! OpenAI's request bodies turned into the project's own messages. Only the
//! shape is checked here (what OpenAI's API allows that this gateway does
//! not serve, refused naming the field); sizes, ranges and the model's
//! context are checked by the shared request path, as for every front.

use mig_proto::inference::v1::{ChatMessage, EmbedRequest, GenerateRequest};
use serde_json::Value;

use super::error::ApiError;
use super::wire::{
    ChatRequest, CompletionRequest, Content, EmbeddingRequest, OneOrMany, RequestExtension,
    Sampling,
};

/// Longest `user` a request may carry, in bytes.
pub const MAX_USER_BYTES: usize = 256;

/// How the answer is shaped, beside the generation itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Server-sent events, ending in `data: [DONE]`.
    pub stream: bool,
    /// A last event with the usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Log-probabilities per token, with this many alternatives each.
    pub logprobs: Option<u32>,
}

/// A chat completion as a generation.
pub fn chat(request: ChatRequest) -> Result<(GenerateRequest, Answer), ApiError> {
    refuse_set("tools", &request.tools)?;
    refuse_set("functions", &request.functions)?;
    if let Some(choice) = &request.tool_choice {
        if !(choice.is_null() || choice == "none") {
            return Err(ApiError::unsupported(
                "tool_choice",
                "tool calls are not served here: `tool_choice` may only be \"none\"",
            ));
        }
    }
    if let Some(format) = &request.response_format {
        if !(format.is_null() || format.get("type").is_some_and(|t| t == "text")) {
            return Err(ApiError::unsupported(
                "response_format",
                "only `{\"type\": \"text\"}` is served here",
            ));
        }
    }
    let logprobs = match (request.logprobs, request.top_logprobs) {
        (Some(true), top) => Some(top.unwrap_or(0)),
        (_, None | Some(0)) => None,
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
    };
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.into_iter().enumerate() {
        let role = match message.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::unsupported(
                    &format!("messages[{i}].role"),
                    format!(
                        "role `{}` is not served here: system, developer, user or assistant",
                        mig_serve::limits::shown(other)
                    ),
                ))
            }
        };
        let content = match message.content {
            None => String::new(),
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut texts = Vec::with_capacity(parts.len());
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(text)) => texts.push(text),
                        _ => {
                            return Err(ApiError::unsupported(
                                &format!("messages[{i}].content[{j}]"),
                                "only text parts (`{\"type\": \"text\", \"text\": ...}`) are served here",
                            ))
                        }
                    }
                }
                texts.join("\n")
            }
        };
        messages.push(ChatMessage {
            role: role.to_string(),
            content,
        });
    }
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` is empty: send at least one",
        ));
    }
    let mut generate = GenerateRequest {
        model: request.model,
        messages,
        ..Default::default()
    };
    let answer = sampling(
        &request.sampling,
        request.mig.as_ref(),
        logprobs,
        &mut generate,
    )?;
    Ok((generate, answer))
}

/// A (legacy) completion as a generation.
pub fn completion(request: CompletionRequest) -> Result<(GenerateRequest, Answer), ApiError> {
    if request.echo == Some(true) {
        return Err(ApiError::unsupported("echo", "`echo` is not served here"));
    }
    if request.best_of.is_some_and(|b| b > 1) {
        return Err(ApiError::unsupported(
            "best_of",
            "`best_of` may only be 1 here",
        ));
    }
    if request.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported(
            "suffix",
            "`suffix` (insertion) is not served here",
        ));
    }
    let prompt = match request.prompt {
        OneOrMany::One(prompt) => prompt,
        OneOrMany::Many(mut prompts) => match prompts.len() {
            1 => match prompts.pop() {
                Some(Value::String(prompt)) => prompt,
                _ => {
                    return Err(ApiError::unsupported(
                        "prompt",
                        "`prompt` must be text; token ids are not served here",
                    ))
                }
            },
            n => {
                return Err(ApiError::unsupported(
                    "prompt",
                    format!("`prompt` holds {n} prompts; one per request is served here"),
                ))
            }
        },
    };
    let mut generate = GenerateRequest {
        model: request.model,
        prompt,
        ..Default::default()
    };
    let answer = sampling(
        &request.sampling,
        request.mig.as_ref(),
        request.logprobs,
        &mut generate,
    )?;
    Ok((generate, answer))
}

/// The sampling fields both generations share, into `generate`.
fn sampling(
    s: &Sampling,
    extension: Option<&RequestExtension>,
    logprobs: Option<u32>,
    generate: &mut GenerateRequest,
) -> Result<Answer, ApiError> {
    if s.n.is_some_and(|n| n != 1) {
        return Err(ApiError::unsupported(
            "n",
            "`n` may only be 1 here: send one request per choice",
        ));
    }
    for (param, value) in [
        ("presence_penalty", s.presence_penalty),
        ("frequency_penalty", s.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(ApiError::unsupported(
                param,
                format!("`{param}` is not served here (`repetition_penalty` is)"),
            ));
        }
    }
    if let Some(bias) = &s.logit_bias {
        if !(bias.is_null() || bias.as_object().is_some_and(|o| o.is_empty())) {
            return Err(ApiError::unsupported(
                "logit_bias",
                "`logit_bias` is not served here",
            ));
        }
    }
    if let Some(user) = &s.user {
        if user.len() > MAX_USER_BYTES {
            return Err(ApiError::invalid(
                "user",
                format!("`user` is {} bytes, limit {MAX_USER_BYTES}", user.len()),
            ));
        }
    }
    generate.max_tokens = match (s.max_completion_tokens, s.max_tokens) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "max_completion_tokens",
                format!("`max_completion_tokens` ({a}) and `max_tokens` ({b}) differ: send one"),
            ))
        }
        (a, b) => a.or(b),
    };
    generate.temperature = s.temperature;
    generate.top_p = s.top_p;
    generate.top_k = s.top_k;
    generate.repetition_penalty = s.repetition_penalty;
    generate.ignore_eos = s.ignore_eos.unwrap_or(false);
    // OpenAI's seed is any integer; the sampler's is 64 bits either way.
    generate.seed = s.seed.map(|seed| seed as u64);
    generate.stop = match &s.stop {
        None => Vec::new(),
        Some(OneOrMany::One(stop)) => vec![stop.clone()],
        Some(OneOrMany::Many(stops)) => stops
            .iter()
            .enumerate()
            .map(|(i, stop)| match stop {
                Value::String(stop) => Ok(stop.clone()),
                _ => Err(ApiError::invalid(
                    &format!("stop[{i}]"),
                    format!("`stop[{i}]` is not a string"),
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    // The project's API reports no log-probability at 0: ask for one
    // alternative and show none.
    generate.logprobs = logprobs.map(|n| n.max(1));
    if let Some(extension) = extension {
        generate.profile = extension.profile.clone().unwrap_or_default();
    }
    let stream = s.stream.unwrap_or(false);
    let include_usage = s
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if include_usage && !stream {
        return Err(ApiError::invalid(
            "stream_options",
            "`stream_options` needs `stream: true`",
        ));
    }
    Ok(Answer {
        stream,
        include_usage,
        logprobs,
    })
}

/// How an embedding is written: a list of numbers, or base64 of
/// little-endian f32 (what OpenAI's Python SDK asks for by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

/// An embeddings request as the project's own.
pub fn embedding(request: EmbeddingRequest) -> Result<(EmbedRequest, Encoding), ApiError> {
    let encoding = match request.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!(
                    "`encoding_format` is `{}`: float or base64",
                    mig_serve::limits::shown(other)
                ),
            ))
        }
    };
    if let Some(user) = &request.user {
        if user.len() > MAX_USER_BYTES {
            return Err(ApiError::invalid(
                "user",
                format!("`user` is {} bytes, limit {MAX_USER_BYTES}", user.len()),
            ));
        }
    }
    let inputs = match request.input {
        OneOrMany::One(input) => vec![input],
        OneOrMany::Many(inputs) => inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| match input {
                Value::String(input) => Ok(input),
                _ => Err(ApiError::unsupported(
                    &format!("input[{i}]"),
                    format!("`input[{i}]` is not text; token ids are not served here"),
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("input", "`input` is empty"));
    }
    Ok((
        EmbedRequest {
            model: request.model,
            inputs,
            truncate: false,
        },
        encoding,
    ))
}

/// Refuses a field this front does not serve, when it is set to anything.
fn refuse_set(param: &str, value: &Option<Value>) -> Result<(), ApiError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(_) => Err(ApiError::unsupported(
            param,
            format!("`{param}` is not served here"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_of(body: Value) -> Result<(GenerateRequest, Answer), ApiError> {
        chat(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_chat_request_carries_its_sampling_fields() {
        let (g, a) = chat_of(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}
            ],
            "max_completion_tokens": 9, "temperature": 0, "top_p": 0.5, "seed": -1,
            "stop": ["a", "b"], "stream": true, "stream_options": {"include_usage": true},
            "logprobs": true, "top_logprobs": 0, "user": "u1", "n": 1,
            "mig": {"profile": "cpu-1c"}
        }))
        .unwrap();
        assert_eq!(g.messages[0].role, "system");
        assert_eq!(g.messages[1].content, "hi");
        assert_eq!(g.max_tokens, Some(9));
        assert_eq!(g.temperature, Some(0.0));
        assert_eq!(g.seed, Some(u64::MAX));
        assert_eq!(g.stop, ["a", "b"]);
        assert_eq!(g.profile, "cpu-1c");
        assert_eq!(g.logprobs, Some(1), "one asked, none shown");
        assert_eq!(
            a,
            Answer {
                stream: true,
                include_usage: true,
                logprobs: Some(0)
            }
        );
    }

    #[test]
    fn what_is_not_served_is_refused_naming_the_field() {
        for (body, param) in [
            (serde_json::json!({"n": 2}), "n"),
            (
                serde_json::json!({"presence_penalty": 0.5}),
                "presence_penalty",
            ),
            (
                serde_json::json!({"tools": [{"type": "function"}]}),
                "tools",
            ),
            (serde_json::json!({"top_logprobs": 3}), "top_logprobs"),
            (
                serde_json::json!({"max_tokens": 3, "max_completion_tokens": 4}),
                "max_completion_tokens",
            ),
            (serde_json::json!({"stop": ["a", 3]}), "stop[1]"),
            (
                serde_json::json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (serde_json::json!({"user": "u".repeat(300)}), "user"),
            (
                serde_json::json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
        ] {
            let mut request = serde_json::json!({
                "model": "m", "messages": [{"role": "user", "content": "hi"}]
            });
            for (k, v) in body.as_object().unwrap() {
                request[k] = v.clone();
            }
            let e = chat_of(request).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        }
        let e = chat_of(serde_json::json!({
            "model": "m", "messages": [{"role": "tool", "content": "x"}]
        }))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn a_completion_takes_one_text_prompt() {
        let one = |prompt: Value| {
            completion(
                serde_json::from_value(serde_json::json!({"model": "m", "prompt": prompt}))
                    .unwrap(),
            )
        };
        assert_eq!(one(serde_json::json!(["hello"])).unwrap().0.prompt, "hello");
        assert_eq!(
            one(serde_json::json!(["a", "b"]))
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
        assert_eq!(
            one(serde_json::json!([[1, 2]]))
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
    }

    #[test]
    fn embeddings_take_text_and_say_their_encoding() {
        let (e, encoding) = embedding(
            serde_json::from_value(serde_json::json!({
                "model": "m", "input": ["a", "b"], "encoding_format": "base64"
            }))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(e.inputs, ["a", "b"]);
        assert_eq!(encoding, Encoding::Base64);
        let bad = embedding(
            serde_json::from_value(serde_json::json!({"model": "m", "input": [[1, 2]]})).unwrap(),
        )
        .unwrap_err();
        assert_eq!(bad.param.as_deref(), Some("input[0]"));
    }
}
