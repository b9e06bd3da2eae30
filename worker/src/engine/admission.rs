//! The one rule that decides whether a request enters the engine, and the one
//! error type that says why not: it must fit the model's context, the KV
//! store must be able to hold it at all, and the waiting line must have room.
//!
//! The engine handle applies it when a request is submitted; the scheduler
//! reserves KV pages by the same count ([`kv_tokens_needed`]) and refuses
//! with the same error should anything reach it that the rule let through.

pub use crate::error::Refusal;

/// KV positions a generation may fill: the prompt and every generated token
/// but the last, which is sampled and never fed back.
pub fn kv_tokens_needed(prompt: usize, max_tokens: usize) -> usize {
    prompt + max_tokens.saturating_sub(1)
}

/// Whether a generation fits a KV store of `capacity` tokens at all;
/// returns the tokens it reserves.
pub fn kv_fits(prompt: usize, max_tokens: usize, capacity: usize) -> Result<usize, Refusal> {
    let needed = kv_tokens_needed(prompt, max_tokens);
    if needed > capacity {
        return Err(Refusal::KvCapacity {
            prompt,
            max_tokens,
            needed,
            capacity,
        });
    }
    Ok(needed)
}

/// The limits of one loaded engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Prompt plus generated tokens the model serves.
    pub context: usize,
    /// Tokens the KV store holds (all sequences together).
    pub kv_tokens: usize,
    /// Requests that may wait for the running batch (`--max-waiting`).
    pub max_waiting: usize,
}

impl Admission {
    /// Whether a generation of `prompt` tokens and up to `max_tokens` more
    /// may ever run here.
    pub fn fits(&self, prompt: usize, max_tokens: u32) -> Result<(), Refusal> {
        if prompt == 0 {
            return Err(Refusal::EmptyPrompt);
        }
        if prompt + max_tokens as usize > self.context {
            return Err(Refusal::TooLong {
                prompt,
                max_tokens,
                context: self.context,
            });
        }
        kv_fits(prompt, max_tokens as usize, self.kv_tokens).map(drop)
    }

    /// Whether one more request may wait, with `waiting` waiting already.
    pub fn has_room(&self, waiting: usize) -> Result<(), Refusal> {
        if waiting >= self.max_waiting {
            return Err(Refusal::QueueFull {
                limit: self.max_waiting,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const A: Admission = Admission {
        context: 100,
        kv_tokens: 64,
        max_waiting: 2,
    };

    #[test]
    fn a_request_must_fit_the_context_then_the_kv_store() {
        assert_eq!(A.fits(0, 10), Err(Refusal::EmptyPrompt));
        let long = A.fits(51, 50).unwrap_err();
        assert_eq!(long.code(), Code::InvalidArgument);
        assert_eq!(
            long.to_string(),
            "`max_tokens` (50) plus the prompt (51 tokens) exceed the model's context of 100 tokens"
        );
        // Within the context (80), but 79 KV positions against 64.
        let kv = A.fits(40, 40).unwrap_err();
        assert_eq!(
            kv,
            Refusal::KvCapacity {
                prompt: 40,
                max_tokens: 40,
                needed: 79,
                capacity: 64
            }
        );
        assert_eq!(kv.code(), Code::ResourceExhausted);
        // The last token is never fed: 40 + 25 - 1 = 64 fits exactly.
        assert_eq!(A.fits(40, 25), Ok(()));
        assert_eq!(kv_tokens_needed(40, 25), 64);
    }

    #[test]
    fn the_waiting_line_is_bounded_by_max_waiting() {
        assert_eq!(A.has_room(1), Ok(()));
        let full = A.has_room(2).unwrap_err();
        assert_eq!(full, Refusal::QueueFull { limit: 2 });
        assert_eq!(full.code(), Code::ResourceExhausted);
        assert_eq!(full.error_type(), "overloaded");
    }
}
