//! Plain HTTP/1.1 on loopback: what Prometheus and a curl user do.

/// `GET path` on `addr` (`127.0.0.1:PORT`): the status code, the head and
/// the body (chunked bodies reassembled); `None` if nothing answers.
pub async fn get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, head.to_string(), body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A `/metrics` scrape: fails unless it answers 200 in Prometheus' text
/// format.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let (code, head, body) = get(&addr.to_string(), "/metrics")
        .await
        .expect("/metrics answers");
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body
}

/// The value of the series `name{...}` or `name` (the first one written).
pub fn value(exposition: &str, name: &str) -> f64 {
    let line = exposition
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no `{name}` in:\n{exposition}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
