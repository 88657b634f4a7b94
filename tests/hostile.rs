//! Hostile requests to a running daemon's HTTP API over a real socket: a huge declared body, a
//! CSV with a million columns, a single enormous field, invalid UTF-8, deeply nested JSON. Each
//! gets a clear 4xx answer, and the daemon stays up and healthy.

mod common;

use common::{http, http_get};
use faultline::model::Model;
use faultline::pipeline as app;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes as one request; returns the status code and body.
async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before taking the whole body.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    // Bounded: the answer must come without the body that was never sent.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_answers_and_the_daemon_stays_up() {
    let cfg = common::embedded_config();
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    let addr = app.web_addr;

    // A declared 2 GB body: refused from the header, before any of it is read.
    let head = "POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: 2147483648\r\nConnection: close\r\n\r\n";
    let (code, body) = raw(addr, head, b"id,Sensor-1\n").await;
    assert_eq!(code, 413, "{body}");

    // A million columns (12 MB of header, inside the 64 MB body limit): the header is refused.
    let mut csv = String::from("id");
    for i in 0..1_000_000 {
        csv.push_str(&format!(",X{i}"));
    }
    csv.push_str("\nW-1\n");
    let (code, body) = http(
        addr,
        "POST",
        "/api/score",
        &[("Content-Type", "text/csv")],
        &csv,
    )
    .await;
    assert_eq!(code, 400, "{}", &body[..body.len().min(500)]);
    assert!(
        body.contains("header line is longer"),
        "{}",
        &body[..body.len().min(500)]
    );
    assert!(
        body.len() < 10_000,
        "the error must not echo the whole header: {} bytes",
        body.len()
    );

    // One 40 MB field in a valid header.
    let header: Vec<String> = std::iter::once("id".to_string())
        .chain(model.features().iter().cloned())
        .collect();
    let csv = format!("{}\nW-1,{}\n", header.join(","), "9".repeat(40 << 20));
    let (code, body) = http(
        addr,
        "POST",
        "/api/score",
        &[("Content-Type", "text/csv")],
        &csv,
    )
    .await;
    assert!(
        code == 400 || code == 422,
        "{code}: {}",
        &body[..body.len().min(500)]
    );
    assert!(
        body.len() < 10_000,
        "the error must not echo the field: {} bytes",
        body.len()
    );

    // Invalid UTF-8 in a CSV, and JSON nested 100,000 deep.
    let mut bytes = format!("{}\nW-1,", header.join(",")).into_bytes();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let head = format!(
        "POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    let (code, body) = raw(addr, &head, &bytes).await;
    assert!((400..500).contains(&code), "{code}: {body}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, body) = http(
        addr,
        "POST",
        "/api/score",
        &[("Content-Type", "application/json")],
        &deep,
    )
    .await;
    assert!(
        (400..500).contains(&code),
        "{code}: {}",
        &body[..body.len().min(500)]
    );

    // Still up, still scoring.
    assert!(http_get(addr, "/healthz").await.contains("200 OK"));
    let (_, _, good) = common::rows(&model, 0);
    let (code, body) = http(
        addr,
        "POST",
        "/api/score",
        &[("Content-Type", "application/json")],
        &format!("[{good}]"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    app.shutdown().await.unwrap();
}
