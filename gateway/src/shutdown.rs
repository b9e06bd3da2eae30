//! Shutdown signals.
//!
//! SIGINT comes from a person pressing Ctrl-C in the terminal that runs the
//! gateway (`make run`); SIGTERM from systemd or the kubelet. Both start a
//! graceful drain, and `up` then stops its workers.

/// Completes when the process receives SIGINT or SIGTERM.
pub async fn signal() {
    let name = mig_proto::serve::shutdown_signal().await;
    tracing::info!(signal = name, "shutting down");
}
