//! Builds a `tokenizers::Tokenizer` from the vocabulary stored in a GGUF file.
//!
//! candle's own GGUF tokenizer helper has no `smollm` pre-tokenizer and adds a
//! leading space, so it disagrees with llama.cpp on most tricky strings. What
//! matches llama.cpp for `tokenizer.ggml.model = gpt2` (checked against
//! llama.cpp in `tests/tokenizer.rs`):
//! - byte-level BPE from `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`,
//! - digits split one by one (llama.cpp's `\p{N}` pre-split), then the GPT-2
//!   regex, byte-level, without a prefix space,
//! - control and user-defined tokens (`token_type` 3 and 4) registered as
//!   special tokens, so they are matched whole in trusted template text.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The tokenizer and the special ids a generation loop needs.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// Parses control tokens (`<|im_start|>`) as single ids: for trusted
    /// template text only.
    pub tokenizer: Tokenizer,
    /// Ids that end a generation: the eos token and, if present, id 0 when
    /// it is a control token (`<|endoftext|>` for SmolLM2).
    pub stop_ids: Vec<u32>,
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub vocab_size: usize,
}

fn get<'a>(ct: &'a Content, key: &str) -> Result<&'a Value, String> {
    ct.metadata
        .get(key)
        .ok_or_else(|| format!("GGUF metadata has no `{key}`"))
}

fn strings(ct: &Content, key: &str) -> Result<Vec<String>, String> {
    get(ct, key)?
        .to_vec()
        .map_err(|e| format!("`{key}`: {e}"))?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| format!("`{key}`: {e}")))
        .collect()
}

/// Reads the vocabulary of a `gpt2`-model GGUF file.
pub fn from_gguf(ct: &Content) -> Result<GgufVocab, String> {
    let model = get(ct, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| e.to_string())?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)"
        ));
    }
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let merges = strings(ct, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|t| t.to_i32().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
        None => vec![1; tokens.len()],
    };

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, tok)| (tok.clone(), id as u32))
        .collect();
    let merges: Merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("merge `{m}` is not two tokens separated by a space"))
        })
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| format!("BPE: {e}"))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ]))));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);

    let id_of = |key: &str| ct.metadata.get(key).and_then(|v| v.to_u32().ok());
    let token_of = |id: Option<u32>| id.and_then(|id| tokens.get(id as usize).cloned());
    let eos_id = id_of("tokenizer.ggml.eos_token_id");
    let mut stop_ids: Vec<u32> = eos_id.into_iter().collect();
    if types.first() == Some(&TOKEN_TYPE_CONTROL) && !stop_ids.contains(&0) {
        stop_ids.push(0);
    }
    Ok(GgufVocab {
        stop_ids,
        bos: token_of(id_of("tokenizer.ggml.bos_token_id")),
        eos: token_of(eos_id),
        vocab_size: tokens.len(),
        tokenizer,
    })
}
