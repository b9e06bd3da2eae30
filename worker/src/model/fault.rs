//! A test-only fault switch (`mig-worker serve --identity --fault-panic-on
//! TEXT`): the model panics in its forward step when a prompt holds TEXT, so
//! a test can show what the worker does when its engine thread dies (the
//! request in flight ends with one clear status, the worker exits non-zero,
//! its supervisor restarts it). The command line allows it only with the
//! identity model, which serves no real traffic.

use candle_core::Tensor;

use super::kv_store::{KvShape, KvStore};
use super::{Backend, BatchSeq, Codec, Generator, Loaded, SeqId};
use crate::error::StartupError;

/// A generator that panics when a fed chunk of tokens holds the marker.
pub struct PanicOn {
    inner: Box<dyn Generator>,
    marker: Vec<u32>,
}

impl PanicOn {
    /// Wraps a loaded text generator; the marker is tokenized as a prompt.
    pub fn wrap(loaded: Loaded, marker: &str) -> Result<Loaded, StartupError> {
        let Loaded {
            backend,
            codec,
            engine,
        } = loaded;
        let (Backend::Generate(inner), Codec::Text(text)) = (backend, &codec) else {
            return Err(StartupError::Config(
                "`--fault-panic-on` needs a text-generation model".into(),
            ));
        };
        let marker = text
            .prompter
            .encode_prompt(marker)
            .map_err(|e| StartupError::Config(format!("`--fault-panic-on`: {e}")))?;
        if marker.is_empty() {
            return Err(StartupError::Config(
                "`--fault-panic-on` tokenizes to no token".into(),
            ));
        }
        Ok(Loaded {
            backend: Backend::Generate(Box::new(PanicOn { inner, marker })),
            codec,
            engine,
        })
    }
}

impl Generator for PanicOn {
    fn kv_shape(&self) -> KvShape {
        self.inner.kv_shape()
    }

    fn forward(&mut self, batch: &[BatchSeq], kv: &mut KvStore) -> candle_core::Result<Tensor> {
        for seq in batch {
            if seq
                .tokens
                .windows(self.marker.len())
                .any(|w| w == self.marker)
            {
                panic!("fault switch: a prompt holds the `--fault-panic-on` marker");
            }
        }
        self.inner.forward(batch, kv)
    }

    fn release(&mut self, id: SeqId) {
        self.inner.release(id)
    }
}
