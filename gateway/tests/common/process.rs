//! Real `mig-gateway up` processes and what `/proc` says about their workers.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the gateway if a test fails half-way (its workers follow it, by
/// their parent-death signal).
pub struct Gateway(pub Child, pub std::path::PathBuf);

impl Gateway {
    /// What the gateway (and its workers) logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mig-gateway up` on a fleet file with this text, from the
/// repository root; returns it and its `http://` address once it printed its
/// listening line (all workers ready). `expect_models` must appear in that line.
pub fn start_up(name: &str, fleet: &str, expect_models: &str) -> (Gateway, String) {
    start_up_with(name, fleet, expect_models, &[])
}

/// [`start_up`] with more `mig-gateway up` flags.
pub fn start_up_with(
    name: &str,
    fleet: &str,
    expect_models: &str,
    extra: &[&str],
) -> (Gateway, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let fleet_path = dir.join(format!("fleet-{name}-{}.toml", std::process::id()));
    std::fs::write(&fleet_path, fleet).unwrap();
    let log_path = dir.join(format!("gateway-{name}-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mig-gateway"))
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
        .args(extra)
        .current_dir(super::repo_root())
        .stdout(Stdio::piped())
        .stderr(log)
        // Its own process group, as a shell gives a job: a test can then
        // send Ctrl-C's SIGINT to the whole group without hitting itself.
        .process_group(0)
        .spawn()
        .expect("start mig-gateway up");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "mig-gateway listening on 127.0.0.1:PORT; models: smollm2-135m (1/1 workers)"
    let addr = line
        .strip_prefix("mig-gateway listening on ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let gateway = Gateway(child, log_path);
    assert!(line.contains(expect_models), "{line}\n{}", gateway.log());
    (gateway, format!("http://{addr}"))
}

/// Direct children of a process.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
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

/// Sends SIGTERM and waits (at most 20 s) for a clean exit.
pub fn terminate(gateway: &mut Gateway) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_exit(gateway);
}

/// Ctrl-C in the terminal: SIGINT to the gateway's whole process group.
pub fn interrupt_group(gateway: &mut Gateway) {
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(gateway.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    wait_exit(gateway);
}

fn wait_exit(gateway: &mut Gateway) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not stop\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "gateway exit: {status}\n{}",
        gateway.log()
    );
}
