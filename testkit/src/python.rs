//! The project's Python test clients (the official `openai` SDK,
//! `tritonclient`, `grpcio-reflection`), run as a user runs them: from the
//! pinned virtual environment `scripts/client-venv.sh` makes (`make tools`
//! runs it) in `target/client-venv`, against a real gateway.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::paths::repo_root;
use crate::process::run_to_end;

/// How long one client script may run.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(300);

/// The virtual environment's Python (`MIG_CLIENT_VENV` names another
/// environment); a clear failure when it is missing.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("MIG_CLIENT_VENV")
        .map_or_else(|| repo_root().join("target/client-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make tools` (scripts/client-venv.sh) first",
        python.display()
    );
    python
}

/// Runs `gateway/tests/clients/<script>` with `args` to its end and returns
/// its standard output; fails the test, with the script's output, when it
/// exits non-zero.
pub fn run_client(script: &str, args: &[&str]) -> String {
    let path = repo_root().join("gateway/tests/clients").join(script);
    let mut command = Command::new(python());
    command
        .arg(&path)
        .args(args)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let output = run_to_end(command, CLIENT_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}
