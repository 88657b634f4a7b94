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
    status_and_body(&out)
}

/// An HTTP answer's status code (0 if there is none) and body.
fn status_and_body(answer: &[u8]) -> (u16, String) {
    let out = String::from_utf8_lossy(answer).into_owned();
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

/// Posts `body` whole to `path` on `addr` (the request's `extra` header lines included) and
/// reads the answer: its status code and body. Panics if the server stops reading the body
/// before its end, as a client still sending sees it (a broken pipe or a reset connection,
/// and no answer).
async fn sent_whole(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    if let Err(e) = s.write_all(body).await {
        panic!("{path}: the server stopped reading the body before its end: {e}");
    }
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("no answer within 30 s")
        .unwrap_or_else(|e| panic!("{path}: the answer did not arrive whole: {e}"));
    status_and_body(&out)
}

/// A request refused before its body is read (no token, a type it cannot score, every upload
/// slot taken) still reaches a client that is sending a large body: the server reads the rest
/// and drops it before answering. It used to answer and close without reading, and the client,
/// still writing, got a broken pipe or a reset connection instead of the reason (Python's
/// `requests` raises `ConnectionResetError`). A client that asks before sending (`Expect:
/// 100-continue`) gets the refusal at once, without being asked for its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_is_read_reaches_a_client_still_sending_it() {
    let broker = common::free_port();
    let cfg = faultline::config::RawConfig::load_with_env(
        None,
        [
            ("FAULTLINE_BROKER__LISTEN", format!("127.0.0.1:{broker}")),
            ("FAULTLINE_WEB__LISTEN", "127.0.0.1:0".into()),
            ("FAULTLINE_WEB__TOKEN", "s3cret".into()),
            ("FAULTLINE_WEB__MAX_CONCURRENT", "1".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .unwrap()
    .validate()
    .unwrap();
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    let addr = app.web_addr;
    // 24 MB: far more than the socket buffers of both sides hold, within the 64 MB limit.
    let body = "W-1,1.5\n".repeat(3 << 20).into_bytes();
    let token = "Authorization: Bearer s3cret\r\n";

    // Asked first, the server refuses without asking for the body.
    let mut asking = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    asking.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        asking.read_to_end(&mut out),
    )
    .await
    .expect("no answer within 30 s")
    .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");

    let (code, text) = sent_whole(addr, "/api/score", "text/csv", "", &body).await;
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("requires a token"), "{text}");
    // hyper reads the last Expect header: this client does not wait to be asked.
    let expects = "Expect: 100-continue\r\nExpect: x-later\r\n";
    let (code, text) = sent_whole(addr, "/api/score", "text/csv", expects, &body).await;
    assert_eq!(code, 401, "{text}");
    // A body declared past the 64 MiB limit is not read: the answer comes at once.
    let head = "POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n\
                Content-Length: 2147483648\r\nConnection: close\r\n\r\n";
    let (code, text) = raw(addr, head, b"id,Sensor-1\n").await;
    assert_eq!(code, 401, "{text}");
    let (code, text) = sent_whole(addr, "/api/labels", "text/csv", "", &body).await;
    assert_eq!(code, 401, "{text}");
    let (code, text) = sent_whole(addr, "/api/score", "text/plain", token, &body).await;
    assert_eq!(code, 415, "{text}");

    // The one slot, held by an upload that sent part of its header line and stopped.
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n{token}\
         Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    );
    held.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("100 Continue") {
        let mut buf = [0u8; 256];
        let n = held.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    held.write_all(b"id,Sensor-1,Sen").await.unwrap();
    let (code, text) = sent_whole(addr, "/api/score", "text/csv", token, &body).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("already handling 1 upload(s)"), "{text}");

    drop(held);
    app.shutdown().await.unwrap();
}
