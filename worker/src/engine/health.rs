//! The engine thread's state, published on a `watch` channel: the server
//! turns NOT_SERVING and the process exits non-zero the moment the thread
//! fails (so a supervisor restarts it), and a request whose generation ended
//! without its last event learns why.

use std::any::Any;

use tokio::sync::watch;

/// Where the engine thread stands once its model is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It takes and runs requests.
    Serving,
    /// Its queue was closed (the worker is stopping) and it returned.
    Stopped,
    /// It panicked or ended on its own: why, in a sentence.
    Failed(String),
}

/// The engine thread's side: set once, when the thread ends.
#[derive(Debug)]
pub struct Reporter(watch::Sender<Health>);

impl Reporter {
    pub fn new() -> (Reporter, watch::Receiver<Health>) {
        let (tx, rx) = watch::channel(Health::Serving);
        (Reporter(tx), rx)
    }

    /// The loop returned: its queue was closed (the loops return only then).
    pub fn stopped(&self) {
        self.0.send_replace(Health::Stopped);
    }

    /// The loop panicked; `payload` is what `catch_unwind` caught.
    pub fn panicked(&self, payload: Box<dyn Any + Send>) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".into());
        // Bounded: a status message travels in an HTTP/2 trailer.
        let message: String = message.chars().take(200).collect();
        tracing::error!(reason = %message, "engine thread panicked; the worker stops");
        self.0
            .send_replace(Health::Failed(format!("panicked: {message}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_reported_with_its_message_bounded() {
        let (reporter, health) = Reporter::new();
        assert_eq!(*health.borrow(), Health::Serving);
        let payload = std::panic::catch_unwind(|| panic!("{}", "x".repeat(1000))).unwrap_err();
        reporter.panicked(payload);
        let Health::Failed(why) = health.borrow().clone() else {
            panic!("not failed")
        };
        assert!(why.starts_with("panicked: xxx") && why.len() < 220, "{why}");
        reporter.stopped();
        assert_eq!(*health.borrow(), Health::Stopped);
    }
}
