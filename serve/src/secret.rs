//! Shared secrets: the registration token of the internal listener, the
//! per-start token a supervised worker accepts only from its gateway. A
//! secret is never printed (its `Debug` and `Display` say `<redacted>`), is
//! compared in constant time, and travels as `authorization: Bearer ...`.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tonic::metadata::{MetadataMap, MetadataValue};

/// Longest secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 4096;
/// Shortest secret accepted from a file, in bytes (a guessable token
/// protects nothing).
pub const MIN_SECRET_BYTES: usize = 16;

/// A shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    /// A secret from its text: printable ASCII with no space, within the
    /// limits (the message names the problem, never the text).
    pub fn new(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        if text.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                text.len()
            ));
        }
        if text.len() > MAX_SECRET_BYTES {
            return Err(format!("is {} bytes, limit {MAX_SECRET_BYTES}", text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("holds a character that is not printable ASCII".into());
        }
        Ok(Secret(text.to_string()))
    }

    /// The secret in a file (one line; surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
        Secret::new(&text).map_err(|e| format!("the secret in `{}` {e}", path.display()))
    }

    /// A fresh random secret (256 bits, hex).
    pub fn random() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time that does not depend on
    /// where they differ (both are hashed first, so not on their lengths
    /// either).
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (
            Sha256::digest(self.0.as_bytes()),
            Sha256::digest(presented.as_bytes()),
        );
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// Whether the request's `authorization: Bearer` header carries it.
    pub fn authorizes(&self, metadata: &MetadataMap) -> bool {
        bearer(metadata).is_some_and(|token| self.matches(token))
    }

    /// Sets `authorization: Bearer <secret>` on outgoing metadata.
    pub fn attach(&self, metadata: &mut MetadataMap) {
        // Printable ASCII without spaces: always a valid header value.
        if let Ok(value) = MetadataValue::try_from(format!("Bearer {}", self.0)) {
            metadata.insert("authorization", value);
        }
    }
}

/// A client interceptor that sends `authorization: Bearer <secret>` on
/// every call, when there is a secret: a gateway's caller token to its
/// workers, a tenant's API key to a gateway.
#[derive(Debug, Clone, Default)]
pub struct SendBearer(pub Option<Secret>);

impl tonic::service::Interceptor for SendBearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.0 {
            secret.attach(request.metadata_mut());
        }
        Ok(request)
    }
}

/// The token of an `authorization: Bearer TOKEN` header.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_checked_never_shown_and_compared_whole() {
        assert!(Secret::new("short").unwrap_err().contains("at least 16"));
        assert!(Secret::new("sixteen-bytes-ok with a space").is_err());
        let s = Secret::new("  0123456789abcdef-token\n").unwrap();
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
        assert!(s.matches("0123456789abcdef-token"));
        assert!(!s.matches("0123456789abcdef-tokeN"));
        assert!(!s.matches("0123456789abcdef-token-longer"));
        assert!(!s.matches(""));

        let mut metadata = MetadataMap::new();
        assert!(!s.authorizes(&metadata));
        s.attach(&mut metadata);
        assert!(s.authorizes(&metadata));
        assert_eq!(bearer(&metadata), Some("0123456789abcdef-token"));
        let other = Secret::random();
        assert_eq!(other.expose().len(), 64);
        assert!(!other.authorizes(&metadata));
    }
}
