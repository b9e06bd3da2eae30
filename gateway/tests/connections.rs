//! Connection hygiene on a real gateway's public port: a flood of silent
//! TCP connections does not lock out a client that speaks, silent ones are
//! closed after the handshake timeout, and an idle HTTP/2 connection is
//! sent GOAWAY after the idle timeout; on the HTTP/1.1 front, a request
//! head that never ends is closed after the handshake timeout.

use std::time::{Duration, Instant};

use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::GenerateRequest;
use mig_testkit::process::gateway_up;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes);
/// returns what it sent and whether it closed.
async fn read_to_close(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// The HTTP/2 frame types in `bytes`, read frame by frame.
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_and_a_flood_locks_no_one_out() {
    let mut gateway = gateway_up(
        "connections",
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n",
        &[
            "--handshake-timeout",
            "1",
            "--idle-timeout",
            "2",
            "--max-connections-per-client",
            "64",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let addr = gateway.url().trim_start_matches("http://").to_string();

    // 200 connections that never send a byte: past the per-client cap of
    // 64, each new one makes the oldest silent one close.
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A client that speaks is served while the flood is open.
    let started = Instant::now();
    let mut client = InferenceClient::connect(gateway.url()).await.unwrap();
    let answer = client
        .generate(GenerateRequest {
            model: "identity".into(),
            prompt: "hello".into(),
            max_tokens: Some(4),
            ..Default::default()
        })
        .await
        .expect("served beside 200 silent connections")
        .into_inner();
    assert!(!answer.text.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Every silent connection is closed by the handshake timeout (1 s; the
    // check runs every quarter of it).
    let mut closed = 0;
    for tcp in &mut silent {
        let (_, did) = read_to_close(tcp, Duration::from_secs(4)).await;
        closed += usize::from(did);
    }
    assert_eq!(closed, 200, "silent connections still open");

    // An HTTP/2 connection that sends the preface and its settings, then
    // nothing: GOAWAY after the idle timeout, then closed.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame.
    idle.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let opened = Instant::now();
    let (bytes, did_close) = read_to_close(&mut idle, Duration::from_secs(8)).await;
    assert!(did_close, "an idle connection stayed open");
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        opened.elapsed()
    );
    assert!(
        frame_types(&bytes).contains(&7),
        "no GOAWAY frame before the close: {:?}",
        frame_types(&bytes)
    );

    // The client's own connection went idle too; it reconnects and is served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
        .generate(GenerateRequest {
            model: "identity".into(),
            prompt: "again".into(),
            max_tokens: Some(2),
            ..Default::default()
        })
        .await
        .expect("served again after its idle connection was closed");
    // The HTTP/1.1 front: a request head that never ends is closed after
    // the handshake timeout; a whole one is answered.
    let http = gateway.address_after("openai: http://");
    let mut trickle = TcpStream::connect(&http).await.unwrap();
    trickle
        .write_all(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_to_close(&mut trickle, Duration::from_secs(10)).await;
    assert!(closed, "an unfinished HTTP/1.1 head kept its connection");
    let mut whole = TcpStream::connect(&http).await.unwrap();
    whole
        .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_to_close(&mut whole, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    gateway.terminate();
}
