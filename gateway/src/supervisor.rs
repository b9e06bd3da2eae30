//! Starts and stops the worker processes of a fleet (`mig-gateway up`).
//!
//! Each worker is a child `mig-worker serve` process, pinned to its slice by
//! its own command line and environment (never by changing the gateway's
//! environment). It reports readiness with one line on stdout that names the
//! port it bound. On shutdown each child gets SIGTERM, a grace period, then
//! SIGKILL; a child also gets SIGTERM from the kernel if the gateway dies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mig_slices::SliceId;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The worker's ready line starts with this; `listen=ADDR` follows.
const READY_PREFIX: &str = "mig-worker ready ";

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start `{bin}`: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("worker for `{model}` on `{slice}` exited before it was ready ({status})")]
    ExitedEarly {
        model: String,
        slice: String,
        status: String,
    },
    #[error("worker for `{model}` on `{slice}` was not ready after {timeout:?}")]
    NotReady {
        model: String,
        slice: String,
        timeout: Duration,
    },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    pub model: String,
    pub path: PathBuf,
    pub slice: SliceId,
    pub threads: Option<usize>,
    pub args: Vec<String>,
}

/// A started worker: where it listens, and its process id.
#[derive(Debug, Clone)]
pub struct Started {
    pub model: String,
    pub address: String,
    pub pid: u32,
}

struct ChildTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Owns the worker processes; [`Supervisor::shutdown`] stops them all.
pub struct Supervisor {
    bin: PathBuf,
    grace: Duration,
    ready_timeout: Duration,
    children: Vec<ChildTask>,
}

/// The `mig-worker` binary next to the running executable (both come out of
/// the same `cargo build`), else the one on `PATH`.
pub fn default_worker_bin() -> PathBuf {
    let sibling = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        // Test binaries live in target/<profile>/deps, the worker one level up.
        [dir.join("mig-worker"), dir.parent()?.join("mig-worker")]
            .into_iter()
            .find(|p| p.is_file())
    });
    sibling.unwrap_or_else(|| PathBuf::from("mig-worker"))
}

impl Supervisor {
    pub fn new(bin: PathBuf, grace: Duration, ready_timeout: Duration) -> Self {
        Supervisor {
            bin,
            grace,
            ready_timeout,
            children: Vec::new(),
        }
    }

    pub fn worker_bin(&self) -> &Path {
        &self.bin
    }

    fn command(&self, launch: &WorkerLaunch) -> Command {
        let threads = launch
            .threads
            .or_else(|| launch.slice.cores().map(|c| c.len()))
            .unwrap_or(1);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--model-name")
            .arg(&launch.model)
            .arg("--model-path")
            .arg(&launch.path)
            .arg("--slice")
            .arg(launch.slice.to_string())
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(&launch.args)
            // candle's matrix kernels size their parallelism from this.
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let SliceId::Mig(uuid) | SliceId::Gpu(uuid) = &launch.slice {
            cmd.env("CUDA_VISIBLE_DEVICES", uuid);
        }
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Starts one worker and waits for its ready line.
    pub async fn start(&mut self, launch: WorkerLaunch) -> Result<Started, SupervisorError> {
        let mut child = self
            .command(&launch)
            .spawn()
            .map_err(|source| SupervisorError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let slice = launch.slice.to_string();
        let wait_ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                    if let Some(addr) = rest
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("listen="))
                    {
                        return Some(format!("http://{addr}"));
                    }
                }
            }
            None
        };
        let address = match tokio::time::timeout(self.ready_timeout, wait_ready).await {
            Ok(Some(address)) => address,
            Ok(None) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                return Err(SupervisorError::ExitedEarly {
                    model: launch.model,
                    slice,
                    status,
                });
            }
            Err(_) => {
                return Err(SupervisorError::NotReady {
                    model: launch.model,
                    slice,
                    timeout: self.ready_timeout,
                })
            }
        };
        tracing::info!(model = %launch.model, %slice, pid, %address, "worker ready");

        let (stop, stopped) = oneshot::channel();
        let grace = self.grace;
        let model = launch.model.clone();
        let task = tokio::spawn(async move {
            // Keep reading stdout so the child never blocks on a full pipe.
            let drain = async { while let Ok(Some(_)) = lines.next_line().await {} };
            tokio::select! {
                status = async { drain.await; child.wait().await } => {
                    tracing::warn!(%model, %slice, pid, status = ?status, "worker exited");
                }
                _ = stopped => terminate(&mut child, pid, grace).await,
            }
        });
        self.children.push(ChildTask { stop, task });
        Ok(Started {
            model: launch.model,
            address,
            pid,
        })
    }

    /// SIGTERM to every worker, then SIGKILL to those still running after the
    /// grace period; returns when all have exited.
    pub async fn shutdown(self) {
        let mut tasks = Vec::new();
        for child in self.children {
            let _ = child.stop.send(());
            tasks.push(child.task);
        }
        futures::future::join_all(tasks).await;
    }
}

async fn terminate(child: &mut Child, pid: u32, grace: Duration) {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    if let Err(e) = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
        tracing::debug!(pid, error = %e, "SIGTERM failed (already gone?)");
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => tracing::info!(pid, status = ?status, "worker stopped"),
        Err(_) => {
            tracing::warn!(pid, ?grace, "worker ignored SIGTERM; killing it");
            let _ = child.kill().await;
        }
    }
}
