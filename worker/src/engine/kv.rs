//! Sizing and allocating the KV store of a generation model, and what it
//! holds as `Info` reports it.

use crate::error::StartupError;
use crate::model::kv_store::{pages_for, KvShape, KvStore, PAGE_TOKENS};
use crate::model::Codec;

/// What the loaded engine can hold, reported by `Info` and the ready log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Tokens (prompt plus generated, all sequences) the KV store holds.
    pub kv_tokens: usize,
    pub kv_bytes: u64,
    /// `KvFormat::name` of the store.
    pub kv_type: &'static str,
}

/// KV store bytes when `--kv-cache-mib` is not given: 1 GiB on a CPU slice
/// (the host's memory is shared by every slice), 90% of what the device has
/// free after loading the weights on a GPU.
pub fn default_kv_bytes(device: &candle_core::Device) -> u64 {
    const CPU_DEFAULT: u64 = 1 << 30;
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(d) => match d.cuda_stream().context().mem_get_info() {
            Ok((free, _total)) => free as u64 / 10 * 9,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read free GPU memory; KV store gets 1 GiB");
                CPU_DEFAULT
            }
        },
        _ => CPU_DEFAULT,
    }
}

/// Sizes and allocates the KV store: `kv_bytes` or the device's default, but
/// for a model that keeps nothing per token (identity), room for a full
/// batch of whole contexts.
pub fn allocate(
    shape: KvShape,
    codec: &Codec,
    kv_bytes: Option<u64>,
    max_batch_size: usize,
    device: &candle_core::Device,
) -> Result<KvStore, StartupError> {
    let context_pages = pages_for(codec.context_length());
    let pages = if shape.bytes_per_token() == 0 {
        context_pages * max_batch_size
    } else {
        let bytes = kv_bytes.unwrap_or_else(|| default_kv_bytes(device));
        let pages = shape.pages_in(bytes);
        if pages == 0 {
            return Err(StartupError::Config(format!(
                "`--kv-cache-mib` ({} MiB) holds less than one KV page ({} bytes)",
                bytes >> 20,
                shape.bytes_per_token() * PAGE_TOKENS
            )));
        }
        pages
    };
    KvStore::new(shape, pages, device)
        .map_err(|e| StartupError::Engine(format!("allocating the KV store ({pages} pages): {e}")))
}

/// What an allocated store holds.
pub fn capacity(kv: &KvStore) -> Capacity {
    let tokens = kv.pages() * PAGE_TOKENS;
    Capacity {
        kv_tokens: tokens,
        kv_bytes: (tokens * kv.shape().bytes_per_token()) as u64,
        kv_type: kv.shape().format.name(),
    }
}
