//! This build's binaries run as a user runs them: `mig-gateway up` with its
//! workers, one `mig-worker serve`, each on `127.0.0.1:0`, from the
//! repository root; and what `/proc` says about a process.
//!
//! Nothing here may hang CI: every wait has a deadline, and a process is
//! killed when its handle is dropped (workers follow a killed gateway by
//! their parent-death signal).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::repo_root;

/// How long a server may take to print its ready line (a model loads first).
pub const START_LIMIT: Duration = Duration::from_secs(120);

/// A binary of this build (`cargo build --bins`, which `make test` runs
/// before the tests): the test binary lives in `target/<profile>/deps`, the
/// binaries one level up.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("target/<profile>/deps");
    let bin = [dir.join(name), dir.parent().unwrap_or(dir).join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing next to {}: build the workspace first \
                 (`cargo build --bins`, as `make test` does)",
                exe.display()
            )
        });
    bin
}

/// A running server process: its ready address and its log (stderr).
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
    /// `127.0.0.1:PORT`, from its ready line.
    pub address: String,
    /// The ready line itself (a gateway's names its models and workers).
    pub ready_line: String,
}

impl Process {
    /// What it (and, for a gateway, its workers) logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address its ready line names after `label`: `127.0.0.1:PORT`
    /// for `"openai: http://"` in `...; openai: http://127.0.0.1:PORT/v1`.
    pub fn address_after(&self, label: &str) -> String {
        self.ready_line
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split(['/', ';']).next())
            .unwrap_or_else(|| panic!("no `{label}` in {:?}", self.ready_line))
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (at most 20 s) for a clean exit.
    pub fn terminate(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.wait_clean_exit();
    }

    /// Ctrl-C in the terminal: SIGINT to the whole process group.
    pub fn interrupt_group(&mut self) {
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        self.wait_clean_exit();
    }

    fn wait_clean_exit(&mut self) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "process did not stop\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "exit: {status}\n{}", self.log());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log file for one process of one test binary.
fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mig-test-{name}-{}.log", std::process::id()))
}

/// Starts `command` from the repository root, in its own process group (as
/// a shell starts a job, so a test can signal the group without hitting
/// itself), and waits (bounded) for the first stdout line that
/// `address_of` accepts.
fn start(name: &str, mut command: Command, address_of: fn(&str) -> Option<String>) -> Process {
    let log = log_path(name);
    let mut child = command
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(address) = address_of(&line) {
                let _ = tx.send(Ok((address, line)));
                return;
            }
            let _ = tx.send(Err(line));
        }
    });
    let mut process = Process {
        child,
        log,
        address: String::new(),
        ready_line: String::new(),
    };
    let deadline = Instant::now() + START_LIMIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok((address, line))) => {
                process.address = address;
                process.ready_line = line;
                return process;
            }
            Ok(Err(line)) => seen.push(line),
            Err(_) => panic!(
                "{name}: no ready line within {START_LIMIT:?} (stdout: {seen:?})\n{}",
                process.log()
            ),
        }
    }
}

/// `mig-gateway up --listen 127.0.0.1:0` on a fleet file with this text,
/// with short health, drain and grace periods and `extra` flags; returns
/// once it printed its listening line (every worker ready).
pub fn gateway_up(name: &str, fleet: &str, extra: &[&str]) -> Process {
    let fleet_path =
        std::env::temp_dir().join(format!("mig-test-fleet-{name}-{}.toml", std::process::id()));
    std::fs::write(&fleet_path, fleet).unwrap();
    let mut command = Command::new(bin("mig-gateway"));
    command
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--grace-seconds",
            "5",
            "--drain-seconds",
            "3",
            "--health-interval",
            "0.2",
        ])
        .arg("--fleet")
        .arg(&fleet_path)
        .args(extra);
    // "mig-gateway listening on 127.0.0.1:PORT; models: smollm2-135m (1/1 workers)"
    start(&format!("gateway-{name}"), command, |line| {
        line.strip_prefix("mig-gateway listening on ")
            .and_then(|rest| rest.split(';').next())
            .map(str::to_string)
    })
}

/// `mig-gateway serve --listen 127.0.0.1:0` (no workers of its own) with
/// short health and drain periods and `extra` flags; returns once it
/// printed its listening line.
pub fn gateway_serve(name: &str, extra: &[&str]) -> Process {
    let mut command = Command::new(bin("mig-gateway"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--drain-seconds",
            "3",
            "--health-interval",
            "0.2",
        ])
        .args(extra);
    start(&format!("gateway-{name}"), command, |line| {
        line.strip_prefix("mig-gateway listening on ")
            .and_then(|rest| rest.split(';').next())
            .map(str::to_string)
    })
}

/// One `mig-worker serve --listen 127.0.0.1:0` with these flags; returns
/// once it printed its ready line.
pub fn worker(name: &str, flags: &[&str]) -> Process {
    let mut command = Command::new(bin("mig-worker"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags);
    start(&format!("worker-{name}"), command, |line| {
        line.parse::<mig_serve::ReadyLine>()
            .ok()
            .map(|ready| ready.listen.to_string())
    })
}

/// Runs `command` to its end, in its own process group, with its output
/// captured; past `limit` the whole group is killed (a script and what it
/// started) and the test fails.
pub fn run_to_end(mut command: Command, limit: Duration) -> std::process::Output {
    let what = format!("{:?}", command.get_program());
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what} ran past {limit:?}");
        }
    }
}

/// Direct children of a process.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return pids;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

/// Running (a zombie, exited and not yet reaped, counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.split_whitespace()
                .nth(2)
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The value after `flag` on a process's command line.
pub fn arg_of(pid: u32, flag: &str) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `Cpus_allowed_list` of `/proc/<pid>/status`: the cores the kernel lets it use.
pub fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

/// An environment variable of a running process.
pub fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{name}=")).map(str::to_string)
    })
}
