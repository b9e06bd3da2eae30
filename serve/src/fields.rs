//! The request fields whose size and shape cost nothing to check: counts,
//! byte lengths, chat roles. The gateway checks them at its edge, before
//! routing (so an oversized field never reaches a worker's connection, where
//! an error that repeats it could reset other clients' streams); the worker
//! checks them again for callers that reach it straight, before tokenizing.
//! Every message names the field and its limit and repeats a value only
//! through [`shown`] (bounded, printable).

use mig_proto::inference::v1::{EmbedRequest, GenerateRequest};

use crate::limits::{shown, MAX_PROFILE_BYTES};

/// Longest `model` name, in bytes.
pub const MAX_MODEL_BYTES: usize = 256;
/// Most chat turns per request.
pub const MAX_MESSAGES: usize = 256;
/// Most stop strings per request.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Most alternatives a generation may ask log-probabilities of, per token
/// (OpenAI's `top_logprobs` limit).
pub const MAX_LOGPROBS: u32 = 20;
/// The chat roles a turn may have.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];
/// A prompt may hold at most this many bytes per token of the model's
/// context (no tokenizer here makes tokens this long), so a prompt that
/// cannot fit is refused before anyone tokenizes it.
pub const PROMPT_BYTES_PER_TOKEN: usize = 32;
/// Longest embedding input, in bytes (with `truncate`, longer texts are cut
/// to the model's limit; without, they are refused by token count).
pub const MAX_EMBED_INPUT_BYTES: usize = 64 * 1024;
/// Most inputs of one Embed call at the gateway (the proto's limit; the
/// gateway sends them to workers a few at a time).
pub const MAX_EMBED_INPUTS: usize = 64;

fn check_model(model: &str) -> Result<(), String> {
    if model.len() > MAX_MODEL_BYTES {
        return Err(format!(
            "`model` is {} bytes, limit {MAX_MODEL_BYTES}",
            model.len()
        ));
    }
    Ok(())
}

/// Sizes, counts and roles of a generate request. `context_length` is the
/// model's, when known (it bounds the prompt's bytes).
pub fn generate(req: &GenerateRequest, context_length: Option<usize>) -> Result<(), String> {
    check_model(&req.model)?;
    if req.profile.len() > MAX_PROFILE_BYTES {
        return Err(format!(
            "`profile` is {} bytes, limit {MAX_PROFILE_BYTES}",
            req.profile.len()
        ));
    }
    if req.messages.len() > MAX_MESSAGES {
        return Err(format!(
            "`messages` has {} turns, limit {MAX_MESSAGES}",
            req.messages.len()
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(format!(
                "`messages[{i}].role` is `{}`; expected `system`, `user` or `assistant`",
                shown(&m.role)
            ));
        }
    }
    if req.stop.len() > MAX_STOP_STRINGS {
        return Err(format!(
            "`stop` has {} strings, limit {MAX_STOP_STRINGS}",
            req.stop.len()
        ));
    }
    for (i, s) in req.stop.iter().enumerate() {
        if s.is_empty() {
            return Err(format!("`stop[{i}]` is empty"));
        }
        if s.len() > MAX_STOP_BYTES {
            return Err(format!(
                "`stop[{i}]` is {} bytes, limit {MAX_STOP_BYTES}",
                s.len()
            ));
        }
    }
    if let Some(n) = req.logprobs.filter(|&n| n > MAX_LOGPROBS) {
        return Err(format!("`logprobs` is {n}, limit {MAX_LOGPROBS}"));
    }
    if let Some(context) = context_length {
        let limit = context.saturating_mul(PROMPT_BYTES_PER_TOKEN);
        let bytes = req.prompt.len() + req.messages.iter().map(|m| m.content.len()).sum::<usize>();
        if bytes > limit {
            let field = if req.messages.is_empty() {
                "`prompt`"
            } else {
                "`messages` (their contents together)"
            };
            return Err(format!(
                "{field} is {bytes} bytes, limit {limit} ({PROMPT_BYTES_PER_TOKEN} bytes per token of the model's context of {context})"
            ));
        }
    }
    Ok(())
}

/// Sizes and counts of an embed request; `max_inputs` is the worker's, when
/// known.
pub fn embed(req: &EmbedRequest, max_inputs: Option<usize>) -> Result<(), String> {
    check_model(&req.model)?;
    if req.inputs.is_empty() {
        return Err("`inputs` is empty".into());
    }
    if let Some(max) = max_inputs {
        if req.inputs.len() > max {
            return Err(format!(
                "`inputs` has {} entries, limit {max}",
                req.inputs.len()
            ));
        }
    }
    for (i, input) in req.inputs.iter().enumerate() {
        if input.len() > MAX_EMBED_INPUT_BYTES {
            return Err(format!(
                "`inputs[{i}]` is {} bytes, limit {MAX_EMBED_INPUT_BYTES}",
                input.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::ChatMessage;

    fn chat(role: &str, content: &str) -> GenerateRequest {
        GenerateRequest {
            model: "m".into(),
            messages: vec![ChatMessage {
                role: role.into(),
                content: content.into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn oversized_fields_are_named_with_their_limits_and_never_repeated_whole() {
        let role = "r".repeat(65_536);
        let e = generate(&chat(&role, "hi"), Some(4096)).unwrap_err();
        assert!(e.starts_with("`messages[0].role` is `rrr"), "{e}");
        assert!(e.contains("(65536 bytes)") && e.len() < 200, "{}", e.len());
        let e = generate(
            &GenerateRequest {
                model: "m".repeat(65_536),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e, "`model` is 65536 bytes, limit 256");
        let e = generate(&chat("user", &"x".repeat(131_073)), Some(4096)).unwrap_err();
        assert_eq!(
            e,
            "`messages` (their contents together) is 131073 bytes, limit 131072 (32 bytes per token of the model's context of 4096)"
        );
        assert!(generate(&chat("user", &"x".repeat(131_072)), Some(4096)).is_ok());
        // Without a known context, no byte bound on the prompt.
        assert!(generate(&chat("user", &"x".repeat(131_073)), None).is_ok());
        let e = embed(
            &EmbedRequest {
                model: "m".into(),
                inputs: vec!["a".into(), "b".repeat(70_000)],
                ..Default::default()
            },
            Some(64),
        )
        .unwrap_err();
        assert_eq!(e, "`inputs[1]` is 70000 bytes, limit 65536");
    }

    #[test]
    fn logprobs_are_bounded_at_twenty() {
        let mut req = chat("user", "hi");
        for n in [None, Some(0), Some(5), Some(20)] {
            req.logprobs = n;
            assert!(generate(&req, None).is_ok(), "{n:?}");
        }
        req.logprobs = Some(21);
        assert_eq!(
            generate(&req, None).unwrap_err(),
            "`logprobs` is 21, limit 20"
        );
    }
}
