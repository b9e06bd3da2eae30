//! What stops a load test before or between runs. Failed requests are not
//! errors of the tool: they are counted by status code in the results.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("cannot reach `{target}`: {reason}")]
    Connect { target: String, reason: String },
    #[error("model `{model}` is not served at `{target}`; it serves: {}", known.join(", "))]
    UnknownModel {
        model: String,
        target: String,
        known: Vec<String>,
    },
    #[error("model `{model}` is a {kind} model: load tests need a text-generation model")]
    NotGenerate { model: String, kind: String },
    #[error("model `{model}` has no healthy worker at `{target}`")]
    NoHealthyWorker { model: String, target: String },
    #[error("{0}")]
    Usage(String),
    #[error("`--prompts` {path}, line {line}: {reason}")]
    Prompts {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("reading `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the report to `{path}`: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("reading server metrics from `{url}`: {reason}")]
    Metrics { url: String, reason: String },
}

impl LoadtestError {
    pub fn write(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        LoadtestError::Write {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
