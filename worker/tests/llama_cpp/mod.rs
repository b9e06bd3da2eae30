//! What llama.cpp made of the SmolLM2 file
//! (`scripts/reference/llama_cpp_reference.py`): token ids of texts and
//! chats, and greedy generations, to compare the worker's with.

use std::path::PathBuf;

use serde_json::Value;

/// The recorded fixture.
pub fn reference() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}
