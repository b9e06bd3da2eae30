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

/// The public listener's configuration for the HTTP front: the same
/// certificate, offering HTTP/1.1 beside HTTP/2 (the gRPC listeners offer
/// `h2` only), kept current as the certificate is reloaded.
pub fn with_http1(
    public: watch::Receiver<Arc<ServerConfig>>,
) -> watch::Receiver<Arc<ServerConfig>> {
    let offer = |config: &Arc<ServerConfig>| {
        let mut config = ServerConfig::clone(config);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    };
    let (tx, rx) = watch::channel(offer(&public.borrow()));
    let mut public = public;
    tokio::spawn(async move {
        while public.changed().await.is_ok() {
            let config = offer(&public.borrow_and_update());
            if tx.send(config).is_err() {
                return;
            }
        }
    });
    rx
}
