//! The workers' `/metrics` addresses as a Prometheus `file_sd` file
//! (`up --worker-metrics-sd FILE`). Workers started by `up` bind a free port
//! each, and a restart changes it; Prometheus re-reads the file when it
//! changes, so it always scrapes the live processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct ScrapeTargets {
    path: PathBuf,
    /// Worker (`model@slice`) to `host:port` of its `/metrics`.
    targets: Mutex<BTreeMap<String, String>>,
}

impl ScrapeTargets {
    /// Starts with an empty file, so Prometheus finds one at once.
    pub fn create(path: &Path) -> std::io::Result<Arc<ScrapeTargets>> {
        let targets = Arc::new(ScrapeTargets {
            path: path.to_path_buf(),
            targets: Mutex::new(BTreeMap::new()),
        });
        targets.write(&BTreeMap::new())?;
        Ok(targets)
    }

    /// Records `worker`'s `/metrics` at `addr` (a restart replaces it) and
    /// rewrites the file.
    pub fn set(&self, worker: &str, addr: &str) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.insert(worker.to_string(), addr.to_string());
        if let Err(e) = self.write(&targets) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the worker scrape targets");
        }
    }

    /// The file's form: one group, every worker a target. No extra labels:
    /// the workers' series carry `model` and `slice` themselves.
    fn write(&self, targets: &BTreeMap<String, String>) -> std::io::Result<()> {
        let addrs: Vec<&String> = targets.values().collect();
        let json = serde_json::json!([{ "targets": addrs }]);
        // Written aside and renamed: Prometheus never reads half a file.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, format!("{json:#}\n"))?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lists_one_target_per_worker_and_follows_restarts() {
        let path = std::env::temp_dir().join(format!("mig-sd-{}.json", std::process::id()));
        let targets = ScrapeTargets::create(&path).unwrap();
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        assert_eq!(read(), serde_json::json!([{ "targets": [] }]));
        targets.set("a@cpu:0", "127.0.0.1:1000");
        targets.set("b@cpu:1", "127.0.0.1:1001");
        targets.set("a@cpu:0", "127.0.0.1:2000");
        assert_eq!(
            read(),
            serde_json::json!([{ "targets": ["127.0.0.1:2000", "127.0.0.1:1001"] }])
        );
        let _ = std::fs::remove_file(&path);
    }
}
