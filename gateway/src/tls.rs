//! The gateway's certificates: read at start (an error stops the start),
//! read again with the tenants file (`crate::reload`); a certificate that
//! does not load is refused and the one in force stays.

use std::path::PathBuf;
use std::sync::Arc;

use mig_serve::tls::ServerFiles;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

use crate::reload::Reload;

/// A listener's certificate files and where their configuration goes.
pub struct TlsFiles {
    /// `public` or `internal`, for the log.
    listener: &'static str,
    files: ServerFiles,
    tx: watch::Sender<Arc<ServerConfig>>,
}

/// Loads `files` once and returns the configuration's receiver (for the
/// listener) and the files (for the reload loop).
pub fn watch_tls(
    listener: &'static str,
    files: ServerFiles,
) -> Result<(watch::Receiver<Arc<ServerConfig>>, TlsFiles), String> {
    let config = files.load()?;
    let (tx, rx) = watch::channel(config);
    Ok((
        rx,
        TlsFiles {
            listener,
            files,
            tx,
        },
    ))
}

impl Reload for TlsFiles {
    fn what(&self) -> &'static str {
        match self.listener {
            "internal" => "internal TLS certificate",
            _ => "TLS certificate",
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        self.files.paths()
    }

    fn reload(&mut self) -> Result<(), String> {
        let config = self.files.load()?;
        tracing::info!(
            listener = self.listener,
            cert = %self.files.cert.display(),
            "TLS certificate reloaded; new connections use it"
        );
        self.tx.send_replace(config);
        Ok(())
    }
}
