//! Requests to prompt token ids.
//!
//! Users' text never becomes a control token: `<|im_end|>` typed in a prompt
//! or a message is tokenized as the characters it is. Only the text the chat
//! template itself writes is parsed for control tokens.

use tokenizers::Tokenizer;

use super::chat_template::{ChatTemplate, Segment};
use crate::error::InferenceError;

/// Tokenizes prompts and chats for one text-generation model.
#[derive(Debug)]
pub struct TextPrompter {
    /// Matches control tokens whole: used for template text and to decode.
    special: Tokenizer,
    /// Control tokens are plain text here: used for everything users write.
    plain: Tokenizer,
    template: Option<ChatTemplate>,
}

impl TextPrompter {
    pub fn new(special: Tokenizer, template: Option<ChatTemplate>) -> Self {
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);
        TextPrompter {
            special,
            plain,
            template,
        }
    }

    /// The tokenizer to decode generated ids with.
    pub fn decoder(&self) -> &Tokenizer {
        &self.special
    }

    /// Raw text, tokenized as plain text.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, InferenceError> {
        encode(&self.plain, text)
    }

    /// Chat turns rendered with the model's template plus the assistant's
    /// generation prompt.
    pub fn encode_chat(&self, turns: &[(&str, &str)]) -> Result<Vec<u32>, InferenceError> {
        let template = self.template.as_ref().ok_or_else(|| {
            InferenceError::Invalid(
                "`messages`: this model has no chat template; send `prompt` instead".into(),
            )
        })?;
        let roles: Vec<&str> = turns.iter().map(|(role, _)| *role).collect();
        let segments = template.render(&roles).map_err(InferenceError::Invalid)?;
        let mut ids = Vec::new();
        for segment in segments {
            match segment {
                Segment::Template(text) => ids.extend(encode(&self.special, &text)?),
                Segment::Content(i) => {
                    let (_, content) = turns.get(i).ok_or_else(|| {
                        InferenceError::model(format!("chat template referred to message {i}"))
                    })?;
                    ids.extend(encode(&self.plain, content)?);
                }
            }
        }
        Ok(ids)
    }
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, InferenceError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    tokenizer
        .encode_fast(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| InferenceError::model(format!("tokenizer: {e}")))
}
