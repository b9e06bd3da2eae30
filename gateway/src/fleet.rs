//! The fleet file (TOML): which model is served by which worker.
//!
//! Each `[[worker]]` either names an `address` (a worker that runs already,
//! started by hand or elsewhere) or a model `path` and a `slice` (a worker that
//! `mig-gateway up` starts as a child process):
//!
//! ```toml
//! [[worker]]
//! model = "smollm2-135m"
//! path = "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
//! slice = "cpu:0"
//!
//! [[worker]]
//! model = "minilm-l6"
//! address = "http://127.0.0.1:50061"
//! ```

use std::path::{Path, PathBuf};

use mig_slices::SliceId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    #[serde(default, rename = "worker")]
    pub workers: Vec<WorkerEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkerEntry {
    /// The name clients route by.
    pub model: String,
    /// A running worker's gRPC address (`http://host:port`).
    pub address: Option<String>,
    /// The model file or folder for a worker that `up` starts; relative paths
    /// are taken from the directory the gateway runs in.
    pub path: Option<PathBuf>,
    /// The slice a started worker is pinned to (default `cpu:0`).
    pub slice: Option<String>,
    /// Compute threads of a started worker (default: the slice's core count).
    pub threads: Option<usize>,
    /// Extra `mig-worker serve` arguments, for example `["--weights", "native"]`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// How the gateway reaches a worker of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Already running at this address.
    Remote { address: String },
    /// To be started by the supervisor.
    Spawn {
        path: PathBuf,
        slice: SliceId,
        threads: Option<usize>,
        args: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read fleet file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fleet file `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("fleet file `{path}`, `worker[{index}]`: {message}")]
    Entry {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

impl Fleet {
    pub fn load(path: &Path) -> Result<Fleet, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let fleet: Fleet = toml::from_str(&text).map_err(|e| FleetError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        fleet.placements(path)?;
        Ok(fleet)
    }

    /// Each entry's model and placement, checked.
    pub fn placements(&self, path: &Path) -> Result<Vec<(String, Placement)>, FleetError> {
        if self.workers.is_empty() {
            return Err(FleetError::Parse {
                path: path.to_path_buf(),
                message: "no `[[worker]]` entry".into(),
            });
        }
        self.workers
            .iter()
            .enumerate()
            .map(|(index, w)| {
                let err = |message: String| FleetError::Entry {
                    path: path.to_path_buf(),
                    index,
                    message,
                };
                if w.model.trim().is_empty() {
                    return Err(err("`model` is empty".into()));
                }
                let placement = match (&w.address, &w.path) {
                    (Some(_), Some(_)) => {
                        return Err(err("set either `address` or `path`, not both".into()))
                    }
                    (None, None) => {
                        return Err(err(
                            "set `address` (a running worker) or `path` (a model to start)".into(),
                        ))
                    }
                    (Some(address), None) => Placement::Remote {
                        address: address.clone(),
                    },
                    (None, Some(model_path)) => Placement::Spawn {
                        path: model_path.clone(),
                        slice: w.slice.as_deref().unwrap_or("cpu:0").parse().map_err(
                            |e: mig_slices::SliceParseError| err(format!("`slice`: {e}")),
                        )?,
                        threads: w.threads,
                        args: w.args.clone(),
                    },
                };
                Ok((w.model.clone(), placement))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(String, Placement)>, FleetError> {
        let fleet: Fleet = toml::from_str(text).map_err(|e| FleetError::Parse {
            path: "f.toml".into(),
            message: e.to_string(),
        })?;
        fleet.placements(Path::new("f.toml"))
    }

    #[test]
    fn reads_remote_and_spawned_workers() {
        let p = parse(
            r#"
            [[worker]]
            model = "a"
            address = "http://127.0.0.1:1"
            [[worker]]
            model = "b"
            path = "m.gguf"
            slice = "cpu:1"
            threads = 1
            args = ["--weights", "native"]
            "#,
        )
        .unwrap();
        assert_eq!(
            p[0].1,
            Placement::Remote {
                address: "http://127.0.0.1:1".into()
            }
        );
        match &p[1].1 {
            Placement::Spawn {
                slice,
                threads,
                args,
                ..
            } => {
                assert_eq!(slice.to_string(), "cpu:1");
                assert_eq!(*threads, Some(1));
                assert_eq!(args.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let e = parse("[[worker]]\nmodel = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`worker[0]`") && e.contains("`address`"), "{e}");
        let e = parse("[[worker]]\nmodel = \"a\"\npath = \"x\"\nslice = \"gpu0\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`slice`"), "{e}");
        let e = parse("[[worker]]\nmodel = \"a\"\naddress = \"x\"\nfoo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("foo"), "{e}");
        assert!(parse("")
            .unwrap_err()
            .to_string()
            .contains("no `[[worker]]`"));
    }
}
