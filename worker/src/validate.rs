//! Checks every field of a request against its limit and turns it into the
//! engine's parameters. Each error names the field in backticks and the limit.

use mig_proto::inference::v1::{EmbedRequest, GenerateRequest};

use mig_serve::limits::shown;

use crate::error::InferenceError;
use crate::sampling::SamplingParams;

/// Most tokens generated when `max_tokens` is unset.
pub const DEFAULT_MAX_TOKENS: u32 = 128;
/// Largest accepted repetition penalty.
pub const MAX_REPETITION_PENALTY: f32 = 10.0;

/// What the worker's model allows.
#[derive(Debug, Clone)]
pub struct Limits {
    pub model: String,
    /// The slice profile this worker runs on: a request that names another
    /// one is not for it.
    pub profile: String,
    /// Prompt plus generated tokens.
    pub context_length: usize,
    pub max_embed_inputs: usize,
}

/// The prompt as sent: raw text or chat turns.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    Text(String),
    Chat(Vec<(String, String)>),
}

/// A generate request, checked.
#[derive(Debug, Clone)]
pub struct ValidGenerate {
    pub prompt: PromptInput,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Alternatives to report log-probabilities of per token; 0: none.
    pub logprobs: u32,
}

fn invalid(msg: impl Into<String>) -> InferenceError {
    InferenceError::Invalid(msg.into())
}

fn check_model(requested: &str, limits: &Limits) -> Result<(), InferenceError> {
    // A gateway always names the model; a client calling the worker directly
    // may leave it empty.
    if !requested.is_empty() && requested != limits.model {
        return Err(invalid(format!(
            "`model` is `{}`, but this worker serves `{}`",
            shown(requested),
            limits.model
        )));
    }
    Ok(())
}

fn finite_in(
    field: &str,
    value: Option<f32>,
    default: f32,
    ok: impl Fn(f32) -> bool,
    range: &str,
) -> Result<f32, InferenceError> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && ok(v) => Ok(v),
        Some(v) => Err(invalid(format!("`{field}` must be {range} (got {v})"))),
    }
}

/// An empty `profile` means any; a set one must be this worker's, so that a
/// client calling a worker directly gets the gateway's meaning.
fn check_profile(requested: &str, limits: &Limits) -> Result<(), InferenceError> {
    if !requested.is_empty() && requested != limits.profile {
        return Err(InferenceError::OtherProfile {
            asked: requested.to_string(),
            serves: limits.profile.clone(),
        });
    }
    Ok(())
}

/// Checks a generate request; whether its tokens fit is the engine's
/// admission rule (`engine::admission`), once they are counted.
pub fn generate(req: &GenerateRequest, limits: &Limits) -> Result<ValidGenerate, InferenceError> {
    // Sizes, counts and roles first: nothing is copied or tokenized before.
    mig_serve::fields::generate(req, Some(limits.context_length)).map_err(invalid)?;
    check_model(&req.model, limits)?;
    check_profile(&req.profile, limits)?;
    let prompt = match (req.prompt.is_empty(), req.messages.is_empty()) {
        (false, false) => {
            return Err(invalid(
                "`prompt` and `messages` are mutually exclusive: send one of them",
            ))
        }
        (true, true) => return Err(invalid("`prompt` is empty and no `messages` were sent")),
        (false, true) => PromptInput::Text(req.prompt.clone()),
        (true, false) => PromptInput::Chat(
            req.messages
                .iter()
                .map(|m| (m.role.clone(), m.content.clone()))
                .collect(),
        ),
    };

    let context = limits.context_length as u32;
    let max_tokens = req
        .max_tokens
        .unwrap_or(DEFAULT_MAX_TOKENS.min(context - 1));
    if max_tokens == 0 {
        return Err(invalid("`max_tokens` must be at least 1"));
    }
    if max_tokens >= context {
        return Err(invalid(format!(
            "`max_tokens` is {max_tokens}, above the model's context of {context} tokens \
             (limit {} with a one-token prompt)",
            context - 1
        )));
    }

    let temperature = finite_in(
        "temperature",
        req.temperature,
        1.0,
        |v| v >= 0.0,
        "a finite number >= 0",
    )?;
    let top_p = finite_in(
        "top_p",
        req.top_p,
        1.0,
        |v| v > 0.0 && v <= 1.0,
        "in (0, 1]",
    )?;
    let repetition_penalty = finite_in(
        "repetition_penalty",
        req.repetition_penalty,
        1.0,
        |v| v > 0.0 && v <= MAX_REPETITION_PENALTY,
        "in (0, 10]",
    )?;

    Ok(ValidGenerate {
        prompt,
        max_tokens,
        sampling: SamplingParams {
            temperature: temperature as f64,
            top_p: (top_p < 1.0).then_some(top_p as f64),
            top_k: req.top_k.filter(|k| *k > 0).map(|k| k as usize),
            seed: req.seed,
            repetition_penalty,
        },
        stop: req.stop.clone(),
        ignore_eos: req.ignore_eos,
        logprobs: req.logprobs.unwrap_or(0),
    })
}

/// Checks an embed request's shape; token limits are checked by the tokenizer.
pub fn embed(req: &EmbedRequest, limits: &Limits) -> Result<(), InferenceError> {
    mig_serve::fields::embed(req, Some(limits.max_embed_inputs)).map_err(invalid)?;
    check_model(&req.model, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::ChatMessage;

    fn limits() -> Limits {
        Limits {
            model: "m".into(),
            profile: "cpu-1c".into(),
            context_length: 100,
            max_embed_inputs: 4,
        }
    }

    fn req() -> GenerateRequest {
        GenerateRequest {
            model: "m".into(),
            prompt: "hi".into(),
            ..Default::default()
        }
    }

    fn err(r: GenerateRequest) -> String {
        match generate(&r, &limits()) {
            Err(InferenceError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let v = generate(&req(), &limits()).unwrap();
        assert_eq!(v.max_tokens, 99.min(DEFAULT_MAX_TOKENS));
        assert_eq!(v.sampling.temperature, 1.0);
        assert_eq!(v.sampling.top_p, None);
        assert_eq!(v.sampling.top_k, None);
        assert_eq!(v.prompt, PromptInput::Text("hi".into()));
    }

    #[test]
    fn every_bad_field_is_named_with_its_limit() {
        let mut r = req();
        r.prompt.clear();
        assert!(err(r).contains("`prompt` is empty"));

        let mut r = req();
        r.messages = vec![ChatMessage {
            role: "user".into(),
            content: "x".into(),
        }];
        assert!(err(r).contains("`prompt` and `messages`"));

        let mut r = req();
        r.prompt.clear();
        r.messages = vec![ChatMessage {
            role: "robot".into(),
            content: "x".into(),
        }];
        assert!(err(r).contains("`messages[0].role`"));

        let mut r = req();
        r.max_tokens = Some(0);
        assert!(err(r).contains("`max_tokens` must be at least 1"));

        let mut r = req();
        r.max_tokens = Some(100);
        let m = err(r);
        assert!(
            m.contains("`max_tokens`") && m.contains("context of 100"),
            "{m}"
        );

        for t in [-0.5, f32::NAN, f32::INFINITY] {
            let mut r = req();
            r.temperature = Some(t);
            assert!(err(r).contains("`temperature` must be a finite number >= 0"));
        }

        for p in [0.0, 1.5, f32::NAN] {
            let mut r = req();
            r.top_p = Some(p);
            assert!(err(r).contains("`top_p` must be in (0, 1]"));
        }

        let mut r = req();
        r.stop = (0..17).map(|i| i.to_string()).collect();
        assert!(err(r).contains("`stop` has 17 strings, limit 16"));

        let mut r = req();
        r.stop = vec!["ok".into(), String::new()];
        assert!(err(r).contains("`stop[1]` is empty"));

        let mut r = req();
        r.repetition_penalty = Some(0.0);
        assert!(err(r).contains("`repetition_penalty`"));

        let mut r = req();
        r.model = "other".into();
        assert!(err(r).contains("`model` is `other`"));
    }

    #[test]
    fn profile_is_this_workers_or_empty() {
        let mut r = req();
        r.ignore_eos = true;
        assert!(generate(&r, &limits()).unwrap().ignore_eos);
        r.profile = "cpu-1c".into();
        assert!(generate(&r, &limits()).is_ok());
        r.profile = "cpu-2c".into();
        let e = generate(&r, &limits()).unwrap_err();
        assert_eq!(
            e,
            InferenceError::OtherProfile {
                asked: "cpu-2c".into(),
                serves: "cpu-1c".into()
            }
        );
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.message(),
            "`profile` is `cpu-2c`, but this worker runs on a `cpu-1c` slice"
        );
        r.profile = "x".repeat(65);
        assert_eq!(err(r), "`profile` is 65 bytes, limit 64");
    }

    #[test]
    fn embed_limits() {
        let mut r = EmbedRequest {
            model: "m".into(),
            ..Default::default()
        };
        assert!(embed(&r, &limits())
            .unwrap_err()
            .to_string()
            .contains("`inputs` is empty"));
        r.inputs = vec!["a".into(); 5];
        assert!(embed(&r, &limits())
            .unwrap_err()
            .to_string()
            .contains("`inputs` has 5 entries, limit 4"));
    }
}
