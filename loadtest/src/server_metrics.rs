//! The server's side of the story: `/metrics` of the gateway (or a worker)
//! read before and after a load point, so the report can put the tokens/s
//! the server counted per slice beside the client's figure.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::error::LoadtestError;

/// The counters that count generated tokens, as each process exports them.
const TOKEN_COUNTERS: &[&str] = &[
    "mig_gateway_generated_tokens_total",
    "mig_worker_generated_tokens_total",
];

/// Generated tokens per slice, as one scrape saw them.
pub type TokensBySlice = BTreeMap<String, f64>;

/// Reads `url` (`http://host:port/metrics`) and sums the token counters by
/// their `slice` label.
pub async fn tokens_by_slice(url: &str) -> Result<TokensBySlice, LoadtestError> {
    let text = get(url).await.map_err(|reason| LoadtestError::Metrics {
        url: url.to_string(),
        reason,
    })?;
    Ok(parse_tokens_by_slice(&text))
}

/// Tokens per second per slice between two scrapes `elapsed` apart.
pub fn rate(before: &TokensBySlice, after: &TokensBySlice, elapsed: Duration) -> TokensBySlice {
    let secs = elapsed.as_secs_f64().max(1e-9);
    after
        .iter()
        .map(|(slice, n)| {
            let delta = n - before.get(slice).copied().unwrap_or(0.0);
            (slice.clone(), delta.max(0.0) / secs)
        })
        .filter(|(_, r)| *r > 0.0)
        .collect()
}

/// Sums the samples of the token counters by `slice` in Prometheus' text
/// format (`name{a="x",slice="cpu:0"} 42 [timestamp]`).
fn parse_tokens_by_slice(text: &str) -> TokensBySlice {
    let mut out = TokensBySlice::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, labels, rest) = match (line.find('{'), line.rfind('}')) {
            (Some(open), Some(close)) if open < close => {
                (&line[..open], &line[open + 1..close], &line[close + 1..])
            }
            _ => match line.split_once(char::is_whitespace) {
                Some((name, rest)) => (name, "", rest),
                None => continue,
            },
        };
        if !TOKEN_COUNTERS.contains(&name) {
            continue;
        }
        // The value is the first field after the series; a timestamp may follow.
        let Some(Ok(value)) = rest.split_whitespace().next().map(str::parse::<f64>) else {
            continue;
        };
        let slice = label(labels, "slice").unwrap_or_else(|| "-".into());
        *out.entry(slice).or_default() += value;
    }
    out
}

/// The value of label `key` in `a="1",key="v"`: names match whole, values
/// may hold escaped quotes.
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        if name.trim().trim_start_matches(',').trim() == key {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

/// One HTTP/1.1 GET; the body as text.
async fn get(url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only `http://host:port/path` is supported".into());
    }
    let host = uri.host().ok_or("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)),
    )
    .await
    .map_err(|_| "connect timed out after 5 s".to_string())?
    .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host, |a| a.as_str()),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    })
    .await
    .map_err(|_| "no answer within 10 s".to_string())?
    .map_err(|e| e.to_string())?;
    if !response.0.is_success() {
        return Err(format!("HTTP {}", response.0));
    }
    String::from_utf8(response.1.to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_token_counters_by_slice_and_rates_the_difference() {
        let before = parse_tokens_by_slice(
            "# HELP mig_gateway_generated_tokens_total Tokens.\n\
             # TYPE mig_gateway_generated_tokens_total counter\n\
             mig_gateway_generated_tokens_total{model=\"a\",slice=\"cpu:0\",profile=\"cpu-1c\"} 10\n\
             mig_gateway_generated_tokens_total{model=\"b\",slice=\"cpu:0\",profile=\"cpu-1c\"} 5\n\
             mig_gateway_prompt_tokens_total{model=\"a\",slice=\"cpu:1\"} 99\n\
             mig_gateway_generated_tokens_total{gpu_slice=\"x\",model=\"q\\\"\",slice=\"cpu:2\"} 1 1700000000000\n",
        );
        assert_eq!(
            before.get("cpu:2"),
            Some(&1.0),
            "timestamps and look-alike names"
        );
        let before: TokensBySlice = before.into_iter().filter(|(s, _)| s != "cpu:2").collect();
        assert_eq!(before, BTreeMap::from([("cpu:0".to_string(), 15.0)]));
        let after = parse_tokens_by_slice(
            "mig_gateway_generated_tokens_total{model=\"a\",slice=\"cpu:0\"} 35\n\
             mig_gateway_generated_tokens_total{model=\"a\",slice=\"cpu:1\"} 8\n",
        );
        let r = rate(&before, &after, Duration::from_secs(2));
        assert_eq!(
            r,
            BTreeMap::from([("cpu:0".into(), 10.0), ("cpu:1".into(), 4.0)])
        );
    }
}
