//! Sequences run through the batched [`Generator`] interface without the
//! engine: what `mig-worker bench`, `mig-worker agree` and the tests use to
//! run a model. Usually one sequence; `bench --batch` decodes several in
//! lock step.

use candle_core::{Device, Tensor};

use super::kv_store::{pages_for, KvStore, PAGE_TOKENS};
use super::{BatchSeq, Generator};

/// A model with a KV store of its own, sized for `slots` sequences.
pub struct Solo<'m> {
    model: &'m mut dyn Generator,
    kv: KvStore,
    /// Each slot's page table.
    pages: Vec<Vec<u32>>,
}

impl<'m> Solo<'m> {
    /// Room for one sequence of `max_tokens` positions.
    pub fn new(
        model: &'m mut dyn Generator,
        max_tokens: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Self::with_slots(model, max_tokens, 1, device)
    }

    /// Room for `slots` sequences of `max_tokens` positions each.
    pub fn with_slots(
        model: &'m mut dyn Generator,
        max_tokens: usize,
        slots: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let per_slot = pages_for(max_tokens.max(PAGE_TOKENS));
        let kv = KvStore::new(model.kv_shape(), per_slot * slots, device)?;
        let pages = (0..slots)
            .map(|s| ((s * per_slot) as u32..((s + 1) * per_slot) as u32).collect())
            .collect();
        Ok(Solo { model, kv, pages })
    }

    /// Runs `prompt` from position 0 (forgetting any previous sequence) and
    /// returns the next token's logits, `(1, vocab)`.
    pub fn prefill(&mut self, prompt: &[u32]) -> candle_core::Result<Tensor> {
        self.prefill_in(0, prompt)
    }

    /// [`Solo::prefill`] in slot `slot`.
    pub fn prefill_in(&mut self, slot: usize, prompt: &[u32]) -> candle_core::Result<Tensor> {
        self.model.release(slot as u64);
        self.run(&[(slot, 0, prompt)])
    }

    /// Feeds `token` at position `pos` and returns the next logits.
    pub fn step(&mut self, token: u32, pos: usize) -> candle_core::Result<Tensor> {
        self.run(&[(0, pos, &[token])])
    }

    /// Feeds `tokens[s]` to slot `s`, every slot at position `pos`, in one
    /// step; returns the logits, `(slots, vocab)`.
    pub fn step_all(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let parts: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(slot, t)| (slot, pos, std::slice::from_ref(t)))
            .collect();
        self.run(&parts)
    }

    /// `(slot, start, tokens)` per sequence of the step.
    fn run(&mut self, parts: &[(usize, usize, &[u32])]) -> candle_core::Result<Tensor> {
        let batch: Vec<BatchSeq> = parts
            .iter()
            .map(|&(slot, start, tokens)| BatchSeq {
                id: slot as u64,
                start,
                tokens,
                pages: &self.pages[slot],
                logits: true,
            })
            .collect();
        self.model.forward(&batch, &mut self.kv)
    }
}
