//! The project's answers written as OpenAI's JSON: whole completions,
//! stream chunks, log-probabilities, embeddings. What this gateway adds
//! (which slice served, the finish reason in full) goes in a `mig` object,
//! never in OpenAI's own names:
//!
//! ```json
//! "mig": {"served_by": {"worker_id": "...", "slice": "cpu:0", "profile": "cpu-1c", "gpu": ""},
//!         "finish_reason": "eos"}
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use mig_proto::inference::v1::{EmbedResponse, FinishReason, ServedBy, TokenLogprob, Usage};
use serde_json::{json, Value};

/// Which endpoint an answer is for: they name their objects differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// What every object of one answer repeats.
#[derive(Debug, Clone)]
pub struct Head {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Alternatives shown per token, when log-probabilities were asked.
    pub logprobs: Option<u32>,
}

impl Head {
    pub fn new(kind: Kind, model: &str, logprobs: Option<u32>) -> Head {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Head {
            kind,
            id: format!("{prefix}-{:032x}", rand::random::<u128>()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_string(),
            logprobs,
        }
    }

    /// A whole (non-streamed) answer.
    pub fn whole(
        &self,
        text: &str,
        finish: FinishReason,
        logprobs: &[TokenLogprob],
        usage: Option<&Usage>,
        served_by: Option<&ServedBy>,
    ) -> Value {
        let mut choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
            }),
            Kind::Completion => json!({"index": 0, "text": text}),
        };
        choice["finish_reason"] = finish_reason(finish);
        choice["logprobs"] = self.logprobs_of(logprobs, 0);
        json!({
            "id": self.id,
            "object": match self.kind {
                Kind::Chat => "chat.completion",
                Kind::Completion => "text_completion",
            },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_of(usage),
            "mig": extension(served_by, finish),
        })
    }

    /// One stream chunk: text since the previous chunk, its
    /// log-probabilities, and on the last one the finish reason.
    /// `first` chunks of a chat carry the assistant's role; `offset` is
    /// where `text` starts in the whole completion.
    pub fn chunk(
        &self,
        text: &str,
        logprobs: &[TokenLogprob],
        finish: Option<(FinishReason, Option<&ServedBy>)>,
        first: bool,
        offset: usize,
    ) -> Value {
        let mut choice = match self.kind {
            Kind::Chat if first => json!({
                "index": 0,
                "delta": {"role": "assistant", "content": text},
            }),
            Kind::Chat => json!({"index": 0, "delta": {"content": text}}),
            Kind::Completion => json!({"index": 0, "text": text}),
        };
        choice["logprobs"] = self.logprobs_of(logprobs, offset);
        choice["finish_reason"] = finish.map_or(Value::Null, |(f, _)| finish_reason(f));
        let mut chunk = self.chunk_head();
        chunk["choices"] = json!([choice]);
        if let Some((finish, served_by)) = finish {
            chunk["mig"] = extension(served_by, finish);
        }
        chunk
    }

    /// The last chunk with `stream_options.include_usage`: no choice, the
    /// usage.
    pub fn usage_chunk(&self, usage: Option<&Usage>) -> Value {
        let mut chunk = self.chunk_head();
        chunk["choices"] = json!([]);
        chunk["usage"] = usage_of(usage);
        chunk
    }

    fn chunk_head(&self) -> Value {
        json!({
            "id": self.id,
            "object": match self.kind {
                Kind::Chat => "chat.completion.chunk",
                Kind::Completion => "text_completion",
            },
            "created": self.created,
            "model": self.model,
        })
    }

    /// Log-probabilities in the endpoint's shape: chat's `content` list,
    /// or the completions API's parallel lists.
    fn logprobs_of(&self, logprobs: &[TokenLogprob], offset: usize) -> Value {
        let Some(top) = self.logprobs else {
            return Value::Null;
        };
        let top = top as usize;
        match self.kind {
            Kind::Chat => json!({
                "content": logprobs.iter().map(|t| json!({
                    "token": t.text,
                    "logprob": t.logprob,
                    "bytes": t.text.as_bytes(),
                    "top_logprobs": t.top.iter().take(top).map(|a| json!({
                        "token": a.text,
                        "logprob": a.logprob,
                        "bytes": a.text.as_bytes(),
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
            Kind::Completion => {
                let mut at = offset;
                let offsets: Vec<usize> = logprobs
                    .iter()
                    .map(|t| {
                        let start = at;
                        at += t.text.len();
                        start
                    })
                    .collect();
                json!({
                    "tokens": logprobs.iter().map(|t| &t.text).collect::<Vec<_>>(),
                    "token_logprobs": logprobs.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": logprobs.iter().map(|t| {
                        t.top.iter().take(top).map(|a| (a.text.clone(), json!(a.logprob)))
                            .collect::<serde_json::Map<_, _>>()
                    }).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
        }
    }
}

/// OpenAI's finish reason: the end-of-sequence token and a stop string are
/// both `stop` there (the `mig` object tells them apart).
fn finish_reason(finish: FinishReason) -> Value {
    match finish {
        FinishReason::Length => json!("length"),
        FinishReason::Unspecified => Value::Null,
        FinishReason::Stop | FinishReason::Eos | FinishReason::Cancelled => json!("stop"),
    }
}

fn usage_of(usage: Option<&Usage>) -> Value {
    let usage = usage.cloned().unwrap_or_default();
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// The `mig` extension object.
fn extension(served_by: Option<&ServedBy>, finish: FinishReason) -> Value {
    let finish = match finish {
        FinishReason::Length => "length",
        FinishReason::Stop => "stop",
        FinishReason::Eos => "eos",
        FinishReason::Cancelled => "cancelled",
        FinishReason::Unspecified => "unspecified",
    };
    json!({
        "served_by": served_by_of(served_by),
        "finish_reason": finish,
    })
}

fn served_by_of(served_by: Option<&ServedBy>) -> Value {
    let s = served_by.cloned().unwrap_or_default();
    json!({
        "worker_id": s.worker_id,
        "slice": s.slice,
        "profile": s.profile,
        "gpu": s.gpu,
    })
}

/// An embeddings answer, each vector as numbers or as base64 of
/// little-endian f32.
pub fn embeddings(model: &str, response: &EmbedResponse, base64: bool) -> Value {
    let data: Vec<Value> = response
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e.values)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt = response.usage.as_ref().map_or(0, |u| u.prompt_tokens);
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        "mig": {"served_by": served_by_of(response.served_by.as_ref())},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::{Embedding, TopLogprob};

    fn token(text: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            id: 1,
            text: text.into(),
            logprob,
            top: vec![
                TopLogprob {
                    id: 1,
                    text: text.into(),
                    logprob,
                },
                TopLogprob {
                    id: 2,
                    text: "x".into(),
                    logprob: -3.0,
                },
            ],
        }
    }

    #[test]
    fn chat_logprobs_show_as_many_alternatives_as_asked() {
        let head = Head::new(Kind::Chat, "m", Some(1));
        let v = head.whole(
            "ab",
            FinishReason::Eos,
            &[token("a", -0.5), token("b", -0.25)],
            None,
            None,
        );
        let content = &v["choices"][0]["logprobs"]["content"];
        assert_eq!(content[1]["token"], "b");
        assert_eq!(content[1]["logprob"], -0.25);
        assert_eq!(content[1]["top_logprobs"].as_array().unwrap().len(), 1);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["mig"]["finish_reason"], "eos");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }

    #[test]
    fn completion_logprobs_are_parallel_lists_with_offsets() {
        let head = Head::new(Kind::Completion, "m", Some(2));
        let v = head.chunk(
            "ab",
            &[token("a", -0.5), token("b", -0.25)],
            None,
            false,
            10,
        );
        let l = &v["choices"][0]["logprobs"];
        assert_eq!(l["tokens"], json!(["a", "b"]));
        assert_eq!(l["text_offset"], json!([10, 11]));
        assert_eq!(l["top_logprobs"][0]["x"], -3.0);
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
    }

    #[test]
    fn base64_embeddings_are_little_endian_f32() {
        let response = EmbedResponse {
            embeddings: vec![Embedding {
                values: vec![1.0, -0.5],
            }],
            ..Default::default()
        };
        let v = embeddings("e", &response, true);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-0.5f32).to_le_bytes()].concat()
        );
        assert_eq!(
            embeddings("e", &response, false)["data"][0]["embedding"],
            json!([1.0, -0.5])
        );
    }
}
