//! Shutdown signals, for both servers.
//!
//! SIGINT comes from a person pressing Ctrl-C in the terminal that runs the
//! gateway (`make run`) or a worker (the terminal signals the whole process
//! group); SIGTERM from whoever supervises the process: the gateway's
//! supervisor for its workers, systemd or the kubelet. Both start a graceful
//! drain; a gateway running `up` then stops its workers.

/// Completes when the process receives SIGINT or SIGTERM, and logs which.
pub async fn signal() {
    let name = shutdown_signal().await;
    tracing::info!(signal = name, "shutting down");
}

/// Completes when the process receives SIGINT or SIGTERM, and names which.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Installing a handler fails only if the signal driver cannot be
        // registered at all, which leaves nothing sensible to do but panic.
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
