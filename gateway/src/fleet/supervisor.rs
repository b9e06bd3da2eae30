//! Starts and stops the worker processes of a fleet (`mig-gateway up`).
//!
//! Each worker is a child `mig-worker serve` process, pinned to its slice by
//! its own command line and environment (never by changing the gateway's
//! environment): `CUDA_VISIBLE_DEVICES=MIG-<uuid>` for a GPU slice, CPU
//! affinity and thread count for a CPU slice. It reports readiness with one
//! line on stdout that names the port it bound.
//!
//! A worker that dies is restarted with exponential backoff; its handle is
//! unhealthy meanwhile, so routing skips it, and the restarted process is
//! swapped in behind the same handle. On shutdown each child gets SIGTERM, a
//! grace period, then SIGKILL; a child also gets SIGTERM from the kernel if
//! the gateway dies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mig_proto::inference::v1::WorkerOrigin;
use mig_slices::SliceId;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use mig_serve::secret::Secret;
use mig_serve::{ReadyLine, WorkerFlags};

use crate::fleet::placement::Launch;
use crate::fleet::scrape_targets::ScrapeTargets;
use crate::registry::WorkerHandle;

/// First wait before restarting a dead worker; doubles per failed restart.
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A worker that ran this long before dying restarts after the initial wait
/// again: it was a crash, not a crash loop.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

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
    #[error(
        "`{model}` on the GPU slice `{slice}` needs the CUDA worker: build it with `make cuda` \
         and pass `--cuda-worker-bin target/cuda/mig-worker-cuda-sm90` (this CPU-only \
         worker cannot use a GPU, and the CUDA one cannot start without a driver)"
    )]
    NoCudaWorker { model: String, slice: String },
    #[error("worker for `{model}` on `{slice}` was not ready after {timeout:?}")]
    NotReady {
        model: String,
        slice: String,
        timeout: Duration,
    },
    #[error("worker for `{model}` on `{slice}` reported `{address}`, which is not a valid URI: {source}")]
    Address {
        model: String,
        slice: String,
        address: String,
        source: tonic::transport::Error,
    },
}

/// A running child and its stdout, after its ready line.
struct Running {
    child: Child,
    pid: u32,
    address: String,
    /// The token this start of the worker accepts calls with.
    token: Secret,
    /// Read to the end after the ready line, so the child never blocks on a
    /// full pipe.
    stdout: BufReader<ChildStdout>,
}

struct ChildTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// The slice the launch named (a MIG device even when a CPU stand-in
    /// runs it).
    slice: SliceId,
    handle: Arc<WorkerHandle>,
}

/// How workers are started: shared by the supervisor and each keeper task.
#[derive(Debug, Clone)]
struct Launcher {
    /// The CPU worker, for CPU slices.
    bin: PathBuf,
    /// The CUDA worker (`make cuda`), for MIG and GPU slices; kept apart
    /// because it does not start where no driver is installed.
    cuda_bin: Option<PathBuf>,
    grace: Duration,
    ready_timeout: Duration,
    /// `--worker-token-file`: the token every worker accepts; without it,
    /// a fresh random one per start.
    worker_token: Option<Secret>,
    /// Set by `--worker-metrics-sd`: workers serve `/metrics` on a free port,
    /// listed here for Prometheus.
    scrape_targets: Option<Arc<ScrapeTargets>>,
    /// Set with a simulated MIG device: the CPU slice every MIG or GPU
    /// launch runs on instead, with the CPU worker.
    stand_in: Option<SliceId>,
}

/// The CUDA worker next to the running executable, if one was put there;
/// else `--cuda-worker-bin` names it. See [`cuda_worker_in`].
pub fn default_cuda_worker_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    cuda_worker_in(exe.parent()?)
}

/// The CUDA worker in `dir`: `mig-worker-cuda`, else the one binary named for
/// its compute capability, `mig-worker-cuda-sm<CAP>`, as `make cuda` builds
/// it and `scripts/gpu-pack.sh` packs it. With several capabilities there
/// and no plain name, none is guessed: a binary for another GPU fails only
/// at its first kernel, so `--cuda-worker-bin` must say which.
pub fn cuda_worker_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("mig-worker-cuda");
    if plain.is_file() {
        return Some(plain);
    }
    let mut by_capability = std::fs::read_dir(dir).ok()?.filter_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name().into_string().ok()?;
        let capability = name.strip_prefix("mig-worker-cuda-sm")?;
        let is_capability =
            !capability.is_empty() && capability.bytes().all(|b| b.is_ascii_digit());
        (is_capability && entry.path().is_file()).then(|| entry.path())
    });
    let first = by_capability.next()?;
    match by_capability.next() {
        None => Some(first),
        Some(second) => {
            tracing::warn!(
                first = %first.display(),
                second = %second.display(),
                "several CUDA workers for different GPUs: pass `--cuda-worker-bin`"
            );
            None
        }
    }
}

/// Owns the worker processes; [`Supervisor::shutdown`] stops them all.
pub struct Supervisor {
    launcher: Launcher,
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
            launcher: Launcher {
                bin,
                cuda_bin: None,
                grace,
                ready_timeout,
                worker_token: None,
                scrape_targets: None,
                stand_in: None,
            },
            children: Vec::new(),
        }
    }

    /// Every worker accepts `token` (`--worker-token-file`) instead of a
    /// fresh random one per start.
    pub fn with_worker_token(mut self, token: Secret) -> Self {
        self.launcher.worker_token = Some(token);
        self
    }

    /// Workers serve `/metrics` on a free port each, listed in `targets`.
    pub fn with_scrape_targets(mut self, targets: Arc<ScrapeTargets>) -> Self {
        self.launcher.scrape_targets = Some(targets);
        self
    }

    /// The worker binary for MIG and GPU slices (`--cuda-worker-bin`).
    pub fn with_cuda_bin(mut self, bin: Option<PathBuf>) -> Self {
        self.launcher.cuda_bin = bin;
        self
    }

    /// Workers of MIG and GPU slices run on `slice` (a CPU slice) with the
    /// CPU worker: what a simulated MIG device's slices are served by.
    pub fn with_stand_in(mut self, slice: SliceId) -> Self {
        self.launcher.stand_in = Some(slice);
        self
    }

    /// The running workers and the slice each was launched on.
    pub fn workers(&self) -> Vec<(SliceId, Arc<WorkerHandle>)> {
        self.children
            .iter()
            .map(|c| (c.slice.clone(), c.handle.clone()))
            .collect()
    }

    /// Stops one worker (SIGTERM, the grace period, SIGKILL) and returns
    /// once it has exited; false if the supervisor does not run it.
    pub async fn stop(&mut self, handle: &Arc<WorkerHandle>) -> bool {
        let Some(at) = self
            .children
            .iter()
            .position(|c| Arc::ptr_eq(&c.handle, handle))
        else {
            return false;
        };
        let child = self.children.swap_remove(at);
        let _ = child.stop.send(());
        let _ = child.task.await;
        true
    }

    pub fn worker_bin(&self) -> &Path {
        &self.launcher.bin
    }

    pub fn cuda_worker_bin(&self) -> Option<&Path> {
        self.launcher.cuda_bin.as_deref()
    }

    /// Starts one worker, waits for its ready line, and keeps it running
    /// (restarting it if it dies) until [`Supervisor::shutdown`]. The handle
    /// is what the registry routes to.
    pub async fn start(&mut self, launch: Launch) -> Result<Arc<WorkerHandle>, SupervisorError> {
        let running = self.launcher.start(&launch).await?;
        let handle = WorkerHandle::with_token(
            launch.model.clone(),
            running.address.clone(),
            WorkerOrigin::Supervised,
            Some(running.token.clone()),
        )
        .map_err(|source| SupervisorError::Address {
            model: launch.model.clone(),
            slice: launch.slice.to_string(),
            address: running.address.clone(),
            source,
        })?;
        let handle = Arc::new(handle);
        let (stop, stopped) = oneshot::channel();
        let slice = launch.slice.clone();
        let task = tokio::spawn(keep(
            self.launcher.clone(),
            launch,
            handle.clone(),
            running,
            stopped,
        ));
        self.children.push(ChildTask {
            stop,
            task,
            slice,
            handle: handle.clone(),
        });
        Ok(handle)
    }

    /// SIGTERM to every worker, then SIGKILL to those still running after the
    /// grace period; returns when all have exited.
    pub async fn shutdown(&mut self) {
        let mut tasks = Vec::new();
        for child in std::mem::take(&mut self.children) {
            let _ = child.stop.send(());
            tasks.push(child.task);
        }
        futures::future::join_all(tasks).await;
    }
}

impl Launcher {
    /// The binary for a slice: the CUDA worker on MIG and GPU slices.
    fn bin_for(&self, launch: &Launch) -> Result<&Path, SupervisorError> {
        match launch.slice {
            SliceId::Cpu(_) => Ok(&self.bin),
            _ => self
                .cuda_bin
                .as_deref()
                .ok_or_else(|| SupervisorError::NoCudaWorker {
                    model: launch.model.clone(),
                    slice: launch.slice.to_string(),
                }),
        }
    }

    /// What runs for `launch`: itself, or on the stand-in CPU slice.
    fn run_as(&self, launch: &Launch) -> Launch {
        match (&self.stand_in, &launch.slice) {
            (Some(stand_in), SliceId::Mig(_) | SliceId::Gpu(_)) => Launch {
                slice: stand_in.clone(),
                ..launch.clone()
            },
            _ => launch.clone(),
        }
    }

    /// The worker's flags, as the contract with `mig-worker serve` types them.
    fn flags(&self, launch: &Launch, token: &Secret) -> WorkerFlags {
        WorkerFlags {
            model_name: launch.model.clone(),
            source: launch.source.clone(),
            slice: launch.slice.clone(),
            profile: launch.profile.clone(),
            threads: launch
                .threads
                .or_else(|| launch.slice.cores().map(|c| c.len()))
                .unwrap_or(1),
            metrics: self.scrape_targets.is_some(),
            extra: launch.args.clone(),
            caller_token: Some(token.clone()),
        }
    }

    fn command(&self, launch: &Launch, token: &Secret) -> Result<Command, SupervisorError> {
        let flags = self.flags(launch, token);
        let mut cmd = Command::new(self.bin_for(launch)?);
        cmd.args(flags.args())
            // The worker sees its slice as CUDA device 0 and nothing else, and
            // candle's matrix kernels size their parallelism to the slice.
            .envs(flags.environment())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: a Ctrl-C in the terminal reaches the
            // gateway only, which drains and then stops its workers itself,
            // instead of every worker dying (and being restarted) mid-drain.
            .process_group(0)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        Ok(cmd)
    }

    /// Spawns a worker and reads its stdout until the ready line, within the
    /// ready timeout. On error the child is dropped, which kills it.
    async fn start(&self, launch: &Launch) -> Result<Running, SupervisorError> {
        let named = launch;
        let launch = &self.run_as(named);
        let token = self.worker_token.clone().unwrap_or_else(Secret::random);
        let mut child =
            self.command(launch, &token)?
                .spawn()
                .map_err(|source| SupervisorError::Spawn {
                    bin: self
                        .bin_for(launch)
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                    source,
                })?;
        let slice = named.slice.to_string();
        let Some(pid) = child.id() else {
            return Err(SupervisorError::ExitedEarly {
                model: launch.model.clone(),
                slice,
                status: "gone right after spawn".into(),
            });
        };
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        // Bytes, not `lines()`: a line that is not UTF-8 must not end the
        // reading (and with it the wait for the ready line).
        let wait_ready = async {
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
                // Other lines (none today) are not the contract: skipped.
                if let Ok(ready) = String::from_utf8_lossy(&line).parse::<ReadyLine>() {
                    return Some((
                        format!("http://{}", ready.listen),
                        ready.metrics.map(|m| m.to_string()),
                    ));
                }
            }
        };
        let (address, metrics) = match tokio::time::timeout(self.ready_timeout, wait_ready).await {
            Ok(Some(ready)) => ready,
            Ok(None) => {
                // stdout closed: the child is exiting. Bounded, in case it
                // closed stdout and lives on (dropping it then kills it).
                let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "closed its stdout without a ready line".into(),
                };
                return Err(SupervisorError::ExitedEarly {
                    model: launch.model.clone(),
                    slice,
                    status,
                });
            }
            Err(_) => {
                return Err(SupervisorError::NotReady {
                    model: launch.model.clone(),
                    slice,
                    timeout: self.ready_timeout,
                })
            }
        };
        tracing::info!(model = %launch.model, %slice, pid, %address, metrics = ?metrics, "worker ready");
        if let (Some(targets), Some(metrics)) = (&self.scrape_targets, &metrics) {
            // By worker, not slice: `shared = true` puts several on one slice.
            targets.set(&format!("{}@{slice}", launch.model), metrics);
        }
        Ok(Running {
            child,
            pid,
            address,
            token,
            stdout,
        })
    }
}

/// Keeps one worker running until `stopped` fires: waits for it to exit,
/// marks its handle unhealthy, restarts it with backoff and points the handle
/// at the new process. On `stopped`, terminates the current process.
async fn keep(
    launcher: Launcher,
    launch: Launch,
    handle: Arc<WorkerHandle>,
    mut running: Running,
    mut stopped: oneshot::Receiver<()>,
) {
    let slice = launch.slice.to_string();
    let model = launch.model.clone();
    let mut delay = BACKOFF_INITIAL;
    loop {
        let started = Instant::now();
        let Running {
            mut child,
            pid,
            mut stdout,
            ..
        } = running;
        let exited = async {
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
            child.wait().await
        };
        tokio::select! {
            status = exited => {
                handle.mark_unhealthy();
                let status = match status {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("unknown ({e})"),
                };
                tracing::warn!(%model, %slice, pid, %status, "worker exited; restarting it");
            }
            _ = &mut stopped => {
                terminate(&mut child, pid, launcher.grace).await;
                return;
            }
        }
        if started.elapsed() >= BACKOFF_RESET_AFTER {
            delay = BACKOFF_INITIAL;
        }
        running = loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut stopped => return,
            }
            let attempt = tokio::select! {
                attempt = launcher.start(&launch) => attempt,
                // Dropping the half-started child kills it.
                _ = &mut stopped => return,
            };
            delay = (delay * 2).min(BACKOFF_MAX);
            match attempt {
                Ok(next) => break next,
                Err(e) => {
                    tracing::warn!(%model, %slice, error = %e, next_try = ?delay, "worker restart failed")
                }
            }
        };
        match handle.reconnect(&running.address, Some(running.token.clone())) {
            Ok(()) => {
                handle.probe().await;
                tracing::info!(%model, %slice, pid = running.pid, address = %running.address,
                    restarts = handle.restarts(), "worker restarted");
            }
            Err(e) => {
                tracing::error!(%model, %slice, error = %e, "restarted worker has a bad address")
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ModelSource;

    /// What the launcher would run.
    struct LaunchCommand {
        program: String,
        args: Vec<String>,
        envs: Vec<(String, String)>,
    }

    fn command_for(slice: &str, profile: Option<&str>) -> LaunchCommand {
        command_with(ModelSource::File("m.gguf".into()), slice, profile)
    }

    /// A launcher of `mig-worker` (and `cuda`, when given) with short
    /// timeouts, its MIG slices on `stand_in` when given.
    fn test_launcher(cuda: Option<&str>, stand_in: Option<&str>) -> Launcher {
        Launcher {
            bin: "mig-worker".into(),
            cuda_bin: cuda.map(PathBuf::from),
            grace: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(1),
            worker_token: None,
            scrape_targets: None,
            stand_in: stand_in.map(|s| s.parse().unwrap()),
        }
    }

    fn command_with(source: ModelSource, slice: &str, profile: Option<&str>) -> LaunchCommand {
        let launcher = test_launcher(Some("mig-worker-cuda"), None);
        let launch = Launch {
            model: "m".into(),
            source,
            slice: slice.parse().unwrap(),
            profile: profile.map(str::to_string),
            threads: None,
            args: vec!["--weights".into(), "native".into()],
        };
        let cmd = launcher.command(&launch, &Secret::random()).unwrap();
        let std = cmd.as_std();
        let program = std.get_program().to_string_lossy().into_owned();
        let args = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let envs = std
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        LaunchCommand {
            program,
            args,
            envs,
        }
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn a_mig_slice_is_the_only_cuda_device_the_worker_sees() {
        let uuid = "MIG-5c1e3b34-0d8f-5a8e-9c41-2f5b7d6a1e90";
        let LaunchCommand {
            program,
            args,
            envs,
        } = command_for(uuid, Some("1g.10gb"));
        assert!(
            envs.contains(&("CUDA_VISIBLE_DEVICES".into(), uuid.into())),
            "{envs:?}"
        );
        assert_eq!(value_of(&args, "--slice"), Some(uuid));
        assert_eq!(value_of(&args, "--device"), Some("cuda"));
        // The CUDA build, not the CPU one (which cannot use a GPU).
        assert_eq!(program, "mig-worker-cuda");
        assert_eq!(value_of(&args, "--profile"), Some("1g.10gb"));
        assert_eq!(value_of(&args, "--threads"), Some("1"));
        assert_eq!(value_of(&args, "--weights"), Some("native"));
    }

    #[test]
    fn the_identity_model_is_started_without_a_file() {
        let args = command_for("cpu:0", None).args;
        assert_eq!(value_of(&args, "--model-path"), Some("m.gguf"));
        assert!(!args.contains(&"--identity".to_string()));
        let args = command_with(ModelSource::Identity, "cpu:0", None).args;
        assert!(args.contains(&"--identity".to_string()), "{args:?}");
        let spec = "llama-1b:bf16".parse().unwrap();
        let args = command_with(ModelSource::Synthetic { spec, seed: 0 }, "cpu:0", None).args;
        assert_eq!(value_of(&args, "--synthetic"), Some("llama-1b:bf16"));
        assert_eq!(value_of(&args, "--model-path"), None);
        assert_eq!(value_of(&args, "--model-path"), None);
        assert_eq!(value_of(&args, "--model-name"), Some("m"));
        assert_eq!(value_of(&args, "--slice"), Some("cpu:0"));
    }

    #[test]
    fn a_cpu_slice_sizes_threads_to_its_cores_and_hides_gpus() {
        let LaunchCommand {
            program,
            args,
            envs,
        } = command_for("cpu:2-3", None);
        assert_eq!(program, "mig-worker");
        assert_eq!(value_of(&args, "--slice"), Some("cpu:2-3"));
        assert_eq!(value_of(&args, "--threads"), Some("2"));
        assert_eq!(value_of(&args, "--device"), None);
        assert!(
            envs.contains(&("RAYON_NUM_THREADS".into(), "2".into())),
            "{envs:?}"
        );
        assert!(
            envs.contains(&("CUDA_VISIBLE_DEVICES".into(), String::new())),
            "{envs:?}"
        );
    }

    #[test]
    fn a_gpu_slice_without_the_cuda_worker_is_refused_with_the_way_to_build_it() {
        let launcher = test_launcher(None, None);
        let launch = Launch {
            model: "m".into(),
            source: ModelSource::Identity,
            slice: "GPU-1".parse().unwrap(),
            profile: None,
            threads: None,
            args: Vec::new(),
        };
        let e = launcher
            .command(&launch, &Secret::random())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`make cuda`") && e.contains("--cuda-worker-bin"),
            "{e}"
        );
        let cpu = Launch {
            slice: "cpu:0".parse().unwrap(),
            ..launch
        };
        assert!(launcher.command(&cpu, &Secret::random()).is_ok());
    }

    #[test]
    fn a_simulated_mig_slice_runs_on_its_stand_in_with_the_cpu_worker() {
        let launcher = test_launcher(None, Some("cpu:1"));
        let launch = Launch {
            model: "m".into(),
            source: ModelSource::Identity,
            slice: "MIG-sim-0-1-1".parse().unwrap(),
            profile: Some("3g.40gb".into()),
            threads: None,
            args: Vec::new(),
        };
        let run = launcher.run_as(&launch);
        assert_eq!(run.slice.to_string(), "cpu:1");
        assert_eq!(run.profile.as_deref(), Some("3g.40gb"));
        let command = launcher.command(&run, &Secret::random()).unwrap();
        assert_eq!(command.as_std().get_program(), "mig-worker");
        let cpu = Launch {
            slice: "cpu:0".parse().unwrap(),
            ..launch
        };
        assert_eq!(launcher.run_as(&cpu), cpu);
    }

    /// `make cuda` and `gpu-pack.sh` name the CUDA worker for its compute
    /// capability; the gateway takes it from beside itself as it is.
    #[test]
    fn the_cuda_worker_beside_the_gateway_is_found_by_its_packed_name() {
        let dir = std::env::temp_dir().join(format!("mig-cuda-bin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let touch = |name: &str| std::fs::write(dir.join(name), b"").unwrap();
        touch("mig-worker");
        touch("mig-worker-cuda-smoke.log");
        assert_eq!(cuda_worker_in(&dir), None, "no CUDA worker yet");
        touch("mig-worker-cuda-sm90");
        assert_eq!(cuda_worker_in(&dir), Some(dir.join("mig-worker-cuda-sm90")));
        touch("mig-worker-cuda-sm80");
        assert_eq!(cuda_worker_in(&dir), None, "two GPUs' builds: no guess");
        touch("mig-worker-cuda");
        assert_eq!(cuda_worker_in(&dir), Some(dir.join("mig-worker-cuda")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
