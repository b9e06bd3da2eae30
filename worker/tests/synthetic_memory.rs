//! A synthetic model takes the memory its estimate says: the process's
//! resident memory grows by the weights' bytes (its own process, so no other
//! test's allocations count).

use candle_core::Device;
use mig_worker::model::synthetic::{self, SyntheticSpec};

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn resident_memory_grows_by_the_estimated_weight_bytes() {
    let spec: SyntheticSpec = "llama-135m:f32".parse().unwrap();
    let before = rss();
    let model = synthetic::build(spec, &Device::Cpu, 1).unwrap();
    let grown = rss().saturating_sub(before) as f64;
    let estimate = spec.weight_bytes() as f64;
    assert_eq!(model.weight_bytes, spec.weight_bytes());
    let off = (grown - estimate).abs() / estimate;
    eprintln!(
        "llama-135m:f32: resident memory grew {:.1} MiB, estimate {:.1} MiB",
        grown / 1048576.0,
        estimate / 1048576.0
    );
    assert!(
        off < 0.05,
        "grew {:.1} MiB, estimate {:.1} MiB ({:.1} % off)",
        grown / 1048576.0,
        estimate / 1048576.0,
        off * 100.0
    );
}
