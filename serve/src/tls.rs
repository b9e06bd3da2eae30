//! TLS for the servers (rustls) and for their clients (tonic's rustls).
//!
//! The servers' configuration comes from a `watch` channel
//! (`crate::connections` does each handshake in the connection's own task,
//! bounded by the handshake timeout): a reload takes effect for the next
//! connection, and open connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// The PEM files of a server's certificate (and, for mTLS, the CA its
/// clients' certificates must chain to).
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl ServerFiles {
    /// Every file read, to notice changes.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }

    /// Reads the files into a server configuration that speaks HTTP/2 only
    /// (gRPC). An error names the file and never shows a key.
    pub fn load(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = roots(ca)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("`{}`: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("`{}`: no private key in PEM: {e}", self.key.display()))?;
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "`{}` and `{}` do not make a certificate and its key: {e}",
                self.cert.display(),
                self.key.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(chain)
}

/// A CA file as a root store.
fn roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
    }
    Ok(Arc::new(store))
}

/// A client endpoint for `address`: TLS trusting the CA in `ca` when one is
/// given (an `http://` address becomes `https://`), plain otherwise.
pub fn client_endpoint(
    address: &str,
    ca: Option<&Path>,
) -> Result<tonic::transport::Endpoint, String> {
    client_endpoint_with_identity(address, ca, None)
}

/// [`client_endpoint`], showing the client certificate `(cert, key)` (PEM
/// files) to a server that asks for one (mTLS).
pub fn client_endpoint_with_identity(
    address: &str,
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Endpoint, String> {
    client_endpoint_named(address, ca, identity, None)
}

/// [`client_endpoint_with_identity`] dialing `address` but checking the
/// server's certificate for `name` (an address found by resolving `name`).
pub fn client_endpoint_named(
    address: &str,
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    name: Option<&str>,
) -> Result<tonic::transport::Endpoint, String> {
    let address = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let Some(ca) = ca else {
        if address.starts_with("https://") {
            return Err(
                "an `https://` target needs `--tls-ca` (the CA that signed the gateway's certificate)"
                    .into(),
            );
        }
        return tonic::transport::Endpoint::from_shared(address).map_err(|e| e.to_string());
    };
    let address = match address.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => address,
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("`{}`: {e}", path.display()));
    let mut config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    if let Some(name) = name {
        config = config.domain_name(name);
    }
    if let Some((cert, key)) = identity {
        config = config.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    tonic::transport::Endpoint::from_shared(address)
        .map_err(|e| e.to_string())?
        .tls_config(config)
        .map_err(|e| format!("TLS: {e}"))
}
