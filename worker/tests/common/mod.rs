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

/// `GET /metrics` over plain HTTP/1.1, as Prometheus scrapes.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The value of the series `name{...}` (all its labels are the slice's) or
/// `name` with no labels.
pub fn value(exposition: &str, name: &str) -> f64 {
    let line = exposition
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no `{name}` in:\n{exposition}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
