//! Continuous batching: which sequences run in the next forward step, and
//! how many of their tokens.
//!
//! A plain struct with no model and no clock. Every step:
//!
//! 1. each running sequence that is decoding gets its one token, so running
//!    streams keep flowing whatever arrives;
//! 2. sequences still reading their prompt get a chunk of it (at most
//!    `prefill_chunk` tokens each) from what is left of the step's token
//!    budget;
//! 3. waiting sequences are admitted in arrival order while the batch has
//!    room (`max_batch_size`), the budget has tokens and the KV store has
//!    pages for the whole request (prompt and every token it may generate),
//!    each with its first chunk.
//!
//! A finished or cancelled sequence leaves with [`Scheduler::remove`] and its
//! pages are free for the next step.

use std::collections::VecDeque;

use super::admission::{kv_fits, Refusal};
use crate::model::kv_store::{pages_for, PagePool};
pub use crate::model::SeqId;

/// The batching knobs (CLI flags of `mig-worker serve`, reported by `Info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Sequences in the running batch.
    pub max_batch_size: usize,
    /// Tokens fed to the model in one forward step (decode tokens plus
    /// prefill chunks).
    pub max_batch_tokens: usize,
    /// Prompt tokens of one sequence in one step: long prompts are read in
    /// chunks of this size between decode steps of the others.
    pub prefill_chunk: usize,
    /// Requests waiting for a place in the batch; more are refused.
    pub max_waiting: usize,
}

impl SchedulerConfig {
    /// Names the flag at fault when the knobs cannot work together.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, value) in [
            ("--max-batch-size", self.max_batch_size),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--prefill-chunk", self.prefill_chunk),
            ("--max-waiting", self.max_waiting),
        ] {
            if value == 0 {
                return Err(format!("`{flag}` must be at least 1"));
            }
        }
        if self.max_batch_tokens < self.max_batch_size {
            return Err(format!(
                "`--max-batch-tokens` ({}) must be at least `--max-batch-size` ({}): \
                 every running sequence needs a token per step",
                self.max_batch_tokens, self.max_batch_size
            ));
        }
        Ok(())
    }
}

/// One sequence's share of a step: feed its tokens `start..start + len`
/// (positions in the sequence), and sample from the last one's logits when
/// `logits` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    pub id: SeqId,
    pub start: usize,
    pub len: usize,
    pub logits: bool,
}

/// Why a sequence was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Even an empty KV store could not hold it (the admission rule's own
    /// refusal).
    #[error(transparent)]
    Capacity(Refusal),
    #[error("sequence {0} is already scheduled")]
    Duplicate(SeqId),
}

#[derive(Debug)]
struct Seq {
    id: SeqId,
    prompt: usize,
    /// Tokens reserved in the KV store (prompt plus every token it may
    /// generate).
    reserve: usize,
    /// Tokens known: the prompt and those sampled so far.
    known: usize,
    /// Tokens whose keys and values are in the store (or scheduled to be).
    fed: usize,
    pages: Vec<u32>,
}

/// Waiting and running sequences and the KV pages they hold.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    pool: PagePool,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, pool: PagePool) -> Self {
        Scheduler {
            config,
            pool,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Queues a sequence of `prompt` tokens that may generate `max_new`
    /// more. Refused when even an empty KV store could not hold it.
    pub fn add(&mut self, id: SeqId, prompt: usize, max_new: usize) -> Result<(), Refused> {
        if self.find(id).is_some() {
            return Err(Refused::Duplicate(id));
        }
        // Counted as admission counts; the store is whole pages.
        let needed =
            kv_fits(prompt, max_new, self.pool.capacity_tokens()).map_err(Refused::Capacity)?;
        self.waiting.push_back(Seq {
            id,
            prompt,
            reserve: needed,
            known: prompt,
            fed: 0,
            pages: Vec::new(),
        });
        Ok(())
    }

    /// The next step's work within `budget` tokens, in running order
    /// (admission order). Marks the scheduled tokens as fed.
    pub fn next_batch(&mut self, budget: usize) -> Vec<Scheduled> {
        let mut batch = Vec::new();
        let mut left = budget;
        // Decoding sequences first: one token each.
        for seq in self.running.iter_mut().filter(|s| s.fed >= s.prompt) {
            if left == 0 {
                break;
            }
            if let Some(item) = take(seq, 1) {
                left -= item.len;
                batch.push(item);
            }
        }
        // Then the rest of the prompts already started.
        let chunk = self.config.prefill_chunk;
        for seq in self.running.iter_mut().filter(|s| s.fed < s.prompt) {
            if left == 0 {
                break;
            }
            if let Some(item) = take(seq, chunk.min(left)) {
                left -= item.len;
                batch.push(item);
            }
        }
        // Then newcomers, first come first served: one that does not fit
        // yet holds back those behind it, so a long request is not starved.
        while left > 0 && self.running.len() < self.config.max_batch_size {
            let Some(head) = self.waiting.front() else {
                break;
            };
            let Some(pages) = self.pool.allocate(pages_for(head.reserve)) else {
                break;
            };
            let mut seq = self.waiting.pop_front().expect("front exists");
            seq.pages = pages;
            if let Some(item) = take(&mut seq, chunk.min(left)) {
                left -= item.len;
                batch.push(item);
            }
            self.running.push(seq);
        }
        // Keep the batch in running order, as the model reads page tables.
        batch.sort_by_key(|item| self.position(item.id));
        batch
    }

    /// A token was sampled for `id`: it is the next to feed.
    pub fn append(&mut self, id: SeqId) {
        if let Some(seq) = self.running.iter_mut().find(|s| s.id == id) {
            debug_assert!(seq.known < seq.reserve + 1, "beyond the reservation");
            seq.known += 1;
        }
    }

    /// `id` is finished or cancelled, running or waiting: it leaves now and
    /// its pages are free. Unknown ids are ignored.
    pub fn remove(&mut self, id: SeqId) {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let seq = self.running.remove(i);
            self.pool.release(seq.pages);
        } else if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i);
        }
    }

    /// Ids of waiting sequences, oldest first.
    pub fn waiting_ids(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.waiting.iter().map(|s| s.id)
    }

    /// The page table of a running sequence (empty for others).
    pub fn pages(&self, id: SeqId) -> &[u32] {
        self.running
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.pages.as_slice())
            .unwrap_or(&[])
    }

    /// Free KV pages.
    pub fn free_pages(&self) -> usize {
        self.pool.free()
    }

    fn find(&self, id: SeqId) -> Option<&Seq> {
        self.running
            .iter()
            .chain(self.waiting.iter())
            .find(|s| s.id == id)
    }

    fn position(&self, id: SeqId) -> usize {
        self.running
            .iter()
            .position(|s| s.id == id)
            .unwrap_or(usize::MAX)
    }
}

/// Up to `most` of the tokens `seq` has not fed yet.
fn take(seq: &mut Seq, most: usize) -> Option<Scheduled> {
    let len = (seq.known - seq.fed).min(most);
    if len == 0 {
        return None;
    }
    let start = seq.fed;
    seq.fed += len;
    Some(Scheduled {
        id: seq.id,
        start,
        len,
        logits: seq.fed == seq.known,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            max_batch_size: 4,
            max_batch_tokens: 64,
            prefill_chunk: 16,
            max_waiting: 8,
        }
    }

    fn scheduler(pages: usize) -> Scheduler {
        Scheduler::new(config(), PagePool::new(pages))
    }

    fn item(id: SeqId, start: usize, len: usize, logits: bool) -> Scheduled {
        Scheduled {
            id,
            start,
            len,
            logits,
        }
    }

    /// Runs a step as the engine does: every sequence whose logits came
    /// back gets a token.
    fn step(s: &mut Scheduler, budget: usize) -> Vec<Scheduled> {
        let batch = s.next_batch(budget);
        for b in batch.iter().filter(|b| b.logits) {
            s.append(b.id);
        }
        batch
    }

    #[test]
    fn a_short_prompt_is_read_in_one_step_then_decoded_a_token_at_a_time() {
        let mut s = scheduler(16);
        s.add(1, 5, 10).unwrap();
        assert_eq!(step(&mut s, 64), [item(1, 0, 5, true)]);
        assert_eq!(step(&mut s, 64), [item(1, 5, 1, true)]);
        assert_eq!(step(&mut s, 64), [item(1, 6, 1, true)]);
    }

    #[test]
    fn a_newcomer_joins_between_decode_steps_and_the_others_keep_decoding() {
        let mut s = scheduler(64);
        s.add(1, 4, 100).unwrap();
        step(&mut s, 64);
        step(&mut s, 64);
        // A 40-token prompt arrives: read in chunks of 16 while 1 decodes.
        s.add(2, 40, 10).unwrap();
        assert_eq!(
            step(&mut s, 64),
            [item(1, 5, 1, true), item(2, 0, 16, false)]
        );
        assert_eq!(
            step(&mut s, 64),
            [item(1, 6, 1, true), item(2, 16, 16, false)]
        );
        assert_eq!(
            step(&mut s, 64),
            [item(1, 7, 1, true), item(2, 32, 8, true)]
        );
        assert_eq!(
            step(&mut s, 64),
            [item(1, 8, 1, true), item(2, 40, 1, true)]
        );
    }

    #[test]
    fn the_token_budget_bounds_a_step_and_decodes_come_first() {
        let mut s = scheduler(64);
        for id in 1..=2 {
            s.add(id, 2, 50).unwrap();
        }
        step(&mut s, 64);
        s.add(3, 30, 5).unwrap();
        // Budget 10: two decode tokens, then 8 of the new prompt.
        let batch = step(&mut s, 10);
        assert_eq!(
            batch,
            [
                item(1, 2, 1, true),
                item(2, 2, 1, true),
                item(3, 0, 8, false)
            ]
        );
        assert_eq!(batch.iter().map(|b| b.len).sum::<usize>(), 10);
    }

    #[test]
    fn the_batch_holds_at_most_max_batch_size_sequences() {
        let mut s = scheduler(64);
        for id in 0..6 {
            s.add(id, 3, 5).unwrap();
        }
        let batch = step(&mut s, 64);
        assert_eq!(batch.len(), 4);
        assert_eq!((s.running(), s.waiting()), (4, 2));
        assert_eq!(s.waiting_ids().collect::<Vec<_>>(), [4, 5]);
        // One leaves: the next waiting one is admitted in the same step as
        // the others decode.
        s.remove(0);
        let batch = step(&mut s, 64);
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.last().unwrap(), &item(4, 0, 3, true));
    }

    #[test]
    fn admission_waits_for_kv_pages_and_takes_them_back_on_remove() {
        let mut s = scheduler(4);
        // 3 pages: prompt 20 + 20 new - 1 = 39 tokens.
        s.add(1, 20, 20).unwrap();
        s.add(2, 20, 20).unwrap();
        step(&mut s, 64);
        assert_eq!((s.running(), s.waiting(), s.free_pages()), (1, 1, 1));
        assert_eq!(s.pages(1).len(), 3);
        s.remove(1);
        assert_eq!(s.free_pages(), 4);
        let batch = step(&mut s, 64);
        assert_eq!(batch, [item(2, 0, 16, false)]);
        assert_eq!(s.free_pages(), 1);
    }

    #[test]
    fn a_request_larger_than_the_whole_store_is_refused_with_its_numbers() {
        let mut s = scheduler(2);
        let err = s.add(1, 30, 10).unwrap_err();
        assert_eq!(
            err,
            Refused::Capacity(Refusal::KvCapacity {
                prompt: 30,
                max_tokens: 10,
                needed: 39,
                capacity: 32
            })
        );
        assert!(err.to_string().contains("`max_tokens`"), "{err}");
        // Exactly the capacity fits.
        s.add(2, 30, 3).unwrap();
        assert_eq!(s.add(2, 1, 1), Err(Refused::Duplicate(2)));
    }

    #[test]
    fn a_waiting_sequence_can_be_removed_before_it_runs() {
        let mut s = scheduler(1);
        s.add(1, 10, 5).unwrap();
        s.add(2, 10, 5).unwrap();
        step(&mut s, 64);
        s.remove(2);
        assert!(s.waiting_ids().next().is_none());
        s.remove(1);
        assert!(s.is_idle());
        assert_eq!(s.free_pages(), 1);
        assert!(s.next_batch(64).is_empty());
    }

    #[test]
    fn a_long_head_of_line_request_is_not_overtaken() {
        let mut s = scheduler(4);
        s.add(1, 40, 10).unwrap(); // 4 pages: all of them
        s.add(2, 2, 2).unwrap();
        s.add(3, 2, 2).unwrap();
        let batch = step(&mut s, 64);
        assert_eq!(batch, [item(1, 0, 16, false)]);
        assert_eq!(s.waiting(), 2, "1 holds every page; 2 and 3 wait in order");
    }

    #[test]
    fn knobs_that_cannot_work_together_are_refused_by_flag() {
        let mut c = config();
        assert_eq!(c.validate(), Ok(()));
        c.max_batch_tokens = 2;
        assert!(c
            .validate()
            .unwrap_err()
            .contains("`--max-batch-tokens` (2)"));
        c.max_batch_tokens = 64;
        c.prefill_chunk = 0;
        assert_eq!(
            c.validate().unwrap_err(),
            "`--prefill-chunk` must be at least 1"
        );
    }
}
