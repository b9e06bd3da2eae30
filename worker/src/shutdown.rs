//! Shutdown signals.
//!
//! SIGINT comes from a person pressing Ctrl-C in the terminal that runs the
//! worker (or the gateway in front of it: the terminal signals the whole
//! process group); SIGTERM from whoever supervises it: the gateway's
//! supervisor, systemd or the kubelet. Both start a graceful drain.

/// Completes when the process receives SIGINT or SIGTERM.
pub async fn signal() {
    let name = mig_proto::serve::shutdown_signal().await;
    tracing::info!(signal = name, "shutting down");
}
