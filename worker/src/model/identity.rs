//! The identity model: echoes the prompt and computes nothing, so a load test
//! against it measures the serving path alone (gRPC, gateway, queue, engine
//! loop, detokenizer), as Triton's identity models do for perf_analyzer.
//!
//! Its tokenizer is byte-level: each UTF-8 byte of the text is one token (ids
//! 0-255 are the byte values). Generation returns the prompt's tokens in
//! order and starts over at the end, so the answer to `abc` with
//! `max_tokens = 7` is `abcabca`. It never produces an end-of-sequence token
//! and its chat template writes each turn's text on a line of its own, so
//! the same chat workload runs against it and a real model.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

use super::chat_template::ChatTemplate;
use super::kv_store::{KvFormat, KvShape, KvStore};
use super::prompt::TextPrompter;
use super::{BatchSeq, Generator, SeqId, TextCodec};

/// What computes the answers, as `Info` reports it.
pub const ENGINE: &str = "identity (echo, no model)";
/// Prompt plus generated tokens (bytes), as a real model's context would be.
pub const CONTEXT_LENGTH: usize = 4096;
/// One token per byte value.
const VOCAB: usize = 256;
/// Each turn's text and a newline: no roles, no control tokens.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}";

/// What the echo keeps per sequence.
#[derive(Debug, Default)]
struct Echo {
    prompt: Vec<u32>,
    /// Tokens produced so far; the next is `prompt[emitted % prompt.len()]`.
    emitted: usize,
}

/// The echo generator: any number of sequences per step, no KV store.
#[derive(Debug, Default)]
pub struct IdentityModel {
    sequences: HashMap<SeqId, Echo>,
}

impl IdentityModel {
    /// Logits that leave the sampler one choice: the next prompt token. The
    /// others are -inf, so no temperature, top-p, top-k or repetition
    /// penalty can pick them (a penalty multiplies -inf, a temperature
    /// divides it, and both stay -inf).
    fn emit(echo: &mut Echo, logits: &mut Vec<f32>) -> candle_core::Result<()> {
        if echo.prompt.is_empty() {
            candle_core::bail!("identity model: no prompt to echo");
        }
        let wanted = echo.prompt[echo.emitted % echo.prompt.len()] as usize;
        echo.emitted += 1;
        if wanted >= VOCAB {
            candle_core::bail!("token {wanted} is not a byte");
        }
        let start = logits.len();
        logits.resize(start + VOCAB, f32::NEG_INFINITY);
        logits[start + wanted] = 0.0;
        Ok(())
    }
}

impl Generator for IdentityModel {
    fn kv_shape(&self) -> KvShape {
        KvShape {
            layers: 0,
            kv_dim: 0,
            format: KvFormat::Dense(DType::F32),
        }
    }

    fn forward(&mut self, batch: &[BatchSeq], _: &mut KvStore) -> candle_core::Result<Tensor> {
        let mut logits = Vec::new();
        for seq in batch {
            let echo = self.sequences.entry(seq.id).or_default();
            // Until the first answer, tokens fed are the prompt (possibly in
            // chunks); after it, they are the echo coming back.
            if echo.emitted == 0 {
                echo.prompt.extend_from_slice(seq.tokens);
            }
            if seq.logits {
                Self::emit(echo, &mut logits)?;
            }
        }
        let rows = logits.len() / VOCAB;
        Tensor::from_vec(logits, (rows, VOCAB), &Device::Cpu)
    }

    fn release(&mut self, id: SeqId) {
        self.sequences.remove(&id);
    }
}

/// GPT-2's byte-to-character table: the 188 printable bytes stand for
/// themselves, the others for the characters from U+0100 on.
fn byte_chars() -> [char; VOCAB] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars = ['\0'; VOCAB];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        chars[b as usize] = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("U+0100..U+0143 are characters")
        };
    }
    chars
}

/// A byte-level BPE with no merges: every byte is its own token, id = byte.
/// No prefix space is added and none is trimmed, so decoding gives back the
/// exact bytes.
pub fn byte_tokenizer() -> Tokenizer {
    sized_byte_tokenizer(VOCAB)
}

/// [`byte_tokenizer`] with ids up to `vocab`: ids from 256 on decode as
/// `<t123>` and are never produced by encoding (for synthetic models, whose
/// random weights pick any id of their vocabulary).
pub fn sized_byte_tokenizer(vocab: usize) -> Tokenizer {
    let vocab: Vocab = byte_chars()
        .iter()
        .enumerate()
        .map(|(id, c)| (c.to_string(), id as u32))
        .chain((VOCAB..vocab).map(|id| (format!("<t{id}>"), id as u32)))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .expect("single-character and placeholder tokens with no merges form a valid BPE");
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
}

/// Each turn's text on a line: the template of models without their own.
pub fn plain_chat_template() -> ChatTemplate {
    ChatTemplate::new(CHAT_TEMPLATE, "", "").expect("the constant template compiles")
}

/// The generator and its codec: no stop ids, the plain chat template.
pub fn load() -> (IdentityModel, TextCodec) {
    let template = plain_chat_template();
    (
        IdentityModel::default(),
        TextCodec {
            prompter: TextPrompter::new(byte_tokenizer(), Some(template)),
            stop_ids: Vec::new(),
            context_length: CONTEXT_LENGTH,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::solo::Solo;
    use crate::sampling::{Sampler, SamplingParams};

    #[test]
    fn every_byte_is_one_token_and_decodes_back_exactly() {
        let tokenizer = byte_tokenizer();
        for text in [
            "Hello, world!",
            " leading and trailing spaces ",
            "tabs\tand\nnewlines\r\n",
            "héllo wörld: 1 € 🦀 日本",
            "\u{0}\u{7f}",
        ] {
            let ids = tokenizer
                .encode_fast(text, false)
                .unwrap()
                .get_ids()
                .to_vec();
            let bytes: Vec<u32> = text.bytes().map(u32::from).collect();
            assert_eq!(ids, bytes, "{text:?}");
            assert_eq!(tokenizer.decode(&ids, true).unwrap(), text);
        }
    }

    #[test]
    fn streamed_decoding_releases_whole_characters_only() {
        let tokenizer = byte_tokenizer();
        let text = "a€b";
        let mut stream = tokenizer.decode_stream(true);
        let pieces: Vec<Option<String>> = text
            .bytes()
            .map(|b| stream.step(u32::from(b)).unwrap())
            .collect();
        assert_eq!(
            pieces,
            [
                Some("a".into()),
                None,
                None,
                Some("€".into()),
                Some("b".into())
            ]
        );
    }

    #[test]
    fn generation_cycles_through_the_prompt_whatever_the_sampling() {
        let prompt = [b'a' as u32, b'b' as u32, b'c' as u32];
        for params in [
            SamplingParams::greedy(),
            SamplingParams {
                temperature: 2.0,
                top_p: Some(0.5),
                top_k: Some(3),
                seed: Some(1),
                repetition_penalty: 10.0,
            },
            SamplingParams {
                temperature: 1e-30,
                top_p: None,
                top_k: None,
                seed: None,
                repetition_penalty: 0.1,
            },
        ] {
            let (mut model, _) = load();
            let mut solo = Solo::new(&mut model, 64, &Device::Cpu).unwrap();
            let mut sampler = Sampler::new(&params);
            let mut history = prompt.to_vec();
            let logits = solo.prefill(&history).unwrap();
            assert_eq!(logits.dims(), [1, VOCAB]);
            let mut out = vec![sampler.sample(&logits, &history).unwrap()];
            for _ in 0..6 {
                history.push(*out.last().unwrap());
                let logits = solo.step(*out.last().unwrap(), history.len() - 1).unwrap();
                out.push(sampler.sample(&logits, &history).unwrap());
            }
            let text: String = out.iter().map(|&b| char::from(b as u8)).collect();
            assert_eq!(text, "abcabca", "{params:?}");
        }
    }

    #[test]
    fn sequences_of_one_batch_echo_their_own_prompts_read_in_chunks() {
        let (mut model, _) = load();
        let mut kv = KvStore::new(model.kv_shape(), 0, &Device::Cpu).unwrap();
        let seq = |id, tokens: &'static [u32], logits| BatchSeq {
            id,
            start: 0,
            tokens,
            pages: &[],
            logits,
        };
        let argmax = |t: &Tensor| t.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        // Sequence 1's prompt comes in two chunks; 2's in one.
        let l = model
            .forward(&[seq(1, &[10, 11], false), seq(2, &[20], true)], &mut kv)
            .unwrap();
        assert_eq!(argmax(&l), [20]);
        let l = model
            .forward(&[seq(1, &[12], true), seq(2, &[20], true)], &mut kv)
            .unwrap();
        assert_eq!(argmax(&l), [10, 20]);
        let l = model.forward(&[seq(1, &[10], true)], &mut kv).unwrap();
        assert_eq!(argmax(&l), [11]);
        model.release(1);
        let l = model.forward(&[seq(1, &[30], true)], &mut kv).unwrap();
        assert_eq!(argmax(&l), [30], "a released id starts over");
    }
}
