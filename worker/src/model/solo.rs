//! One sequence at a time through the batched [`Generator`] interface: what
//! `mig-worker bench`, `mig-worker agree` and the tests use to run a model
//! without the engine.

use candle_core::{Device, Tensor};

use super::kv_store::{pages_for, KvStore, PAGE_TOKENS};
use super::{BatchSeq, Generator};

/// A model with a KV store of its own, sized for one sequence.
pub struct Solo<'m> {
    model: &'m mut dyn Generator,
    kv: KvStore,
    pages: Vec<u32>,
}

impl<'m> Solo<'m> {
    /// Room for `max_tokens` positions.
    pub fn new(
        model: &'m mut dyn Generator,
        max_tokens: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let pages = pages_for(max_tokens.max(PAGE_TOKENS));
        let kv = KvStore::new(model.kv_shape(), pages, device)?;
        Ok(Solo {
            model,
            kv,
            pages: (0..pages as u32).collect(),
        })
    }

    /// Runs `prompt` from position 0 (forgetting any previous sequence) and
    /// returns the next token's logits, `(1, vocab)`.
    pub fn prefill(&mut self, prompt: &[u32]) -> candle_core::Result<Tensor> {
        self.model.release(0);
        self.run(0, prompt)
    }

    /// Feeds `token` at position `pos` and returns the next logits.
    pub fn step(&mut self, token: u32, pos: usize) -> candle_core::Result<Tensor> {
        self.run(pos, &[token])
    }

    fn run(&mut self, start: usize, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let seq = BatchSeq {
            id: 0,
            start,
            tokens,
            pages: &self.pages,
            logits: true,
        };
        self.model.forward(&[seq], &mut self.kv)
    }
}
