//! The repository and the demo models in it.

use std::path::PathBuf;

/// The repository root (fleet files' relative paths start there).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is inside the repository")
        .to_path_buf()
}

/// SmolLM2's file under `models/`.
pub const SMOLLM2: &str = "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";
/// MiniLM's folder under `models/`.
pub const MINILM: &str = "minilm-l6";

/// A file or folder under `models/`, fetched by `make models`.
pub fn demo_model(relative: &str) -> PathBuf {
    let p = repo_root().join("models").join(relative);
    assert!(
        p.exists(),
        "{} is missing: run `make models` first",
        p.display()
    );
    p
}

/// The SmolLM2 GGUF file.
pub fn smollm2() -> PathBuf {
    demo_model(SMOLLM2)
}

/// The MiniLM folder (BERT safetensors and tokenizer).
pub fn minilm() -> PathBuf {
    let p = demo_model(MINILM);
    assert!(
        p.join("model.safetensors").is_file(),
        "{} has no model.safetensors: run `make models` first",
        p.display()
    );
    p
}
