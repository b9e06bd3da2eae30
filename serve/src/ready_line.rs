//! The one line a worker prints on stdout once its model is loaded and its
//! port bound: how a supervisor (the gateway's `up`, a test, a script)
//! learns where it listens.
//!
//! ```text
//! mig-worker ready listen=127.0.0.1:40123 model=smollm2-135m slice=cpu:0 profile=cpu-1c metrics=127.0.0.1:40124
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// What every ready line starts with.
pub const PREFIX: &str = "mig-worker ready ";

/// A worker's ready line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyLine {
    /// The bound gRPC address.
    pub listen: SocketAddr,
    pub model: String,
    pub slice: String,
    pub profile: String,
    /// The bound `/metrics` address, when the worker serves one.
    pub metrics: Option<SocketAddr>,
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}listen={} model={} slice={} profile={}",
            self.listen, self.model, self.slice, self.profile
        )?;
        if let Some(metrics) = self.metrics {
            write!(f, " metrics={metrics}")?;
        }
        Ok(())
    }
}

/// Why a line is not a ready line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyLineError {
    /// Some other line (a worker prints nothing else on stdout, but a wrapper
    /// might).
    NotReady,
    /// A field is missing.
    Missing(&'static str),
    /// A field's value does not parse (it is not echoed: it may be long).
    Invalid { field: &'static str, bytes: usize },
}

impl fmt::Display for ReadyLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyLineError::NotReady => write!(f, "not a ready line (no `{}`)", PREFIX.trim_end()),
            ReadyLineError::Missing(field) => write!(f, "the ready line has no `{field}=`"),
            ReadyLineError::Invalid { field, bytes } => {
                write!(
                    f,
                    "the ready line's `{field}` ({bytes} bytes) is not an address"
                )
            }
        }
    }
}

impl std::error::Error for ReadyLineError {}

impl FromStr for ReadyLine {
    type Err = ReadyLineError;

    /// Fields are `key=value` words in any order; unknown keys are skipped,
    /// so a newer worker can add some.
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let rest = line
            .trim_end()
            .strip_prefix(PREFIX)
            .ok_or(ReadyLineError::NotReady)?;
        let field = |key: &'static str| {
            rest.split_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        };
        let required = |key: &'static str| field(key).ok_or(ReadyLineError::Missing(key));
        let address = |key: &'static str, value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| ReadyLineError::Invalid {
                    field: key,
                    bytes: value.len(),
                })
        };
        Ok(ReadyLine {
            listen: address("listen", required("listen")?)?,
            model: required("model")?.to_string(),
            slice: required("slice")?.to_string(),
            profile: required("profile")?.to_string(),
            metrics: field("metrics")
                .map(|m| address("metrics", m))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(metrics: Option<&str>) -> ReadyLine {
        ReadyLine {
            listen: "127.0.0.1:40123".parse().unwrap(),
            model: "smollm2-135m".into(),
            slice: "MIG-4f8e1c2a-0000-4000-8000-000000000001".into(),
            profile: "1g.18gb".into(),
            metrics: metrics.map(|m| m.parse().unwrap()),
        }
    }

    #[test]
    fn round_trips_with_and_without_metrics() {
        for ready in [line(None), line(Some("127.0.0.1:40124"))] {
            let text = ready.to_string();
            assert!(text.starts_with(PREFIX), "{text}");
            assert_eq!(text.parse::<ReadyLine>().unwrap(), ready);
        }
        assert_eq!(
            line(Some("[::1]:9")).to_string(),
            "mig-worker ready listen=127.0.0.1:40123 model=smollm2-135m \
             slice=MIG-4f8e1c2a-0000-4000-8000-000000000001 profile=1g.18gb metrics=[::1]:9"
        );
    }

    #[test]
    fn other_lines_and_bad_fields_are_named_not_echoed() {
        assert_eq!("hello".parse::<ReadyLine>(), Err(ReadyLineError::NotReady));
        assert_eq!(
            "mig-worker ready model=m slice=cpu:0 profile=cpu-1c".parse::<ReadyLine>(),
            Err(ReadyLineError::Missing("listen"))
        );
        let long = "x".repeat(10_000);
        let e = format!("mig-worker ready listen={long} model=m slice=s profile=p")
            .parse::<ReadyLine>()
            .unwrap_err();
        assert_eq!(
            e,
            ReadyLineError::Invalid {
                field: "listen",
                bytes: 10_000
            }
        );
        assert!(e.to_string().len() < 100, "{e}");
        // A key that only starts like a known one is not that key.
        let newer =
            "mig-worker ready listener=1 listen=127.0.0.1:1 model=m slice=s profile=p gpu=GPU-1";
        assert_eq!(newer.parse::<ReadyLine>().unwrap().listen.port(), 1);
    }
}
