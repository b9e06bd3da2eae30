//! What the gateway reads again on SIGHUP, or when its files change on
//! disk: the tenants file and the TLS certificates. A file that does not
//! load is refused (the tenants file's error names its line and field) and
//! what is in force stays; a reload never touches a running call.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::tenancy::file::Tenants;

/// How often the file's modification time and size are looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// Something read again with the tenants file (the TLS certificate).
pub trait Reload: Send + 'static {
    /// What is reloaded, for the log.
    fn what(&self) -> &'static str;
    /// The files it reads (looked at for changes).
    fn files(&self) -> Vec<PathBuf>;
    /// Reads them again; an error keeps what is in force.
    fn reload(&mut self) -> Result<(), String>;
}

/// Loads the tenants file at `path` once (an error here stops the start)
/// and keeps it current.
pub fn watch_tenants(
    path: PathBuf,
) -> Result<(watch::Receiver<Arc<Tenants>>, TenantsFile), String> {
    let tenants = Tenants::load(&path)?;
    let (tx, rx) = watch::channel(Arc::new(tenants));
    Ok((rx, TenantsFile { path, tx }))
}

/// The tenants file, and where its new contents go.
pub struct TenantsFile {
    path: PathBuf,
    tx: watch::Sender<Arc<Tenants>>,
}

impl Reload for TenantsFile {
    fn what(&self) -> &'static str {
        "tenants file"
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn reload(&mut self) -> Result<(), String> {
        let tenants = Tenants::load(&self.path)?;
        tracing::info!(
            file = %self.path.display(),
            tenants = tenants.len(),
            keys = tenants.keys(),
            "tenants file reloaded"
        );
        self.tx.send_replace(Arc::new(tenants));
        Ok(())
    }
}

/// A file's modification time and size, to notice a change.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reloads each of `parts` on SIGHUP, and each whose files changed, until
/// the task is dropped.
pub async fn reload_loop(mut parts: Vec<Box<dyn Reload>>, poll: Duration) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler; reloading on file changes only");
            None
        }
    };
    let mut seen: Vec<Vec<_>> = parts
        .iter()
        .map(|p| p.files().iter().map(stamp).collect())
        .collect();
    loop {
        let hung_up = tokio::select! {
            Some(()) = async { match &mut hangup { Some(h) => h.recv().await, None => None } } => true,
            () = tokio::time::sleep(poll) => false,
        };
        for (part, seen) in parts.iter_mut().zip(seen.iter_mut()) {
            let now: Vec<_> = part.files().iter().map(stamp).collect();
            if !hung_up && now == *seen {
                continue;
            }
            *seen = now;
            if let Err(e) = part.reload() {
                tracing::warn!(error = %e, "{} refused; the one in force stays", part.what());
            }
        }
    }
}
