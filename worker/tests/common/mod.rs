//! Shared by the worker's integration tests: the demo model paths and the
//! llama.cpp reference figures.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SmolLM2 file fetched by `make models`.
pub fn smollm2() -> PathBuf {
    let p = repo_root().join("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run `make models` first",
        p.display()
    );
    p
}

/// The MiniLM folder fetched by `make models`.
pub fn minilm() -> PathBuf {
    let p = repo_root().join("models/minilm-l6");
    assert!(
        p.join("model.safetensors").is_file(),
        "{} is missing: run `make models` first",
        p.display()
    );
    p
}

/// What llama.cpp made of the same file (scripts/reference/llama_cpp_reference.py).
pub fn reference() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// A worker served in-process on `127.0.0.1:0` with these `serve` flags;
/// returns its `http://` address.
pub async fn start_worker(flags: &[&str]) -> String {
    use clap::Parser;
    let args =
        mig_worker::ServeArgs::parse_from(std::iter::once("serve").chain(flags.iter().copied()));
    let ready = mig_worker::load(&args).await.expect("worker starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mig_worker::run(ready, listener, std::future::pending()));
    format!("http://{addr}")
}
