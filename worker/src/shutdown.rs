//! Shutdown signals.
//!
//! SIGINT comes from a person pressing Ctrl-C in the terminal that runs the
//! worker; SIGTERM from whoever supervises it: the gateway's supervisor,
//! systemd or the kubelet. Both start a graceful drain.

/// Completes when the process receives SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Installing a handler fails only if the signal driver cannot be
        // registered at all, which leaves nothing sensible to do but panic.
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received; shutting down");
    }
}
