//! The server's own limits: a body over `[serve] max_body_kb` is 413, and a client that sends
//! half a request line and stalls has its connection closed once `header_timeout_ms` passes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{AGENT, Options, Site, raw_request};
use crate::model::{Conversation, FakeModel};
use crate::scripts;

#[test]
fn a_body_over_max_body_kb_is_413() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::serve("max_body_kb = 4"));
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let echo = format!("/v1/sessions/{session}/tools/text-tools/echo");

    // Under the limit: served.
    let small = "s".repeat(2 * 1024);
    let resp = api.post(&echo, &json!({ "text": small }));
    assert_eq!(
        resp.expect(200)["text"],
        small.as_str(),
        "a 2 KiB body is under 4 KiB"
    );

    // Over it: 413, on every JSON body endpoint, with a length and without one (chunked).
    let big = "b".repeat(8 * 1024);
    for path in [
        echo.clone(),
        "/v1/sessions".to_string(),
        format!("/v1/sessions/{session}/tasks"),
    ] {
        let body = json!({ "agent": AGENT, "input": big, "text": big }).to_string();
        let resp = api.post(&path, &serde_json::from_str(&body).unwrap());
        resp.expect_error(413, &["limit_exceeded", "too_large"]);

        let raw = raw_request(
            serve.addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n{size:x}\r\n{body}\r\n0\r\n\r\n",
                token = site.acme.token,
                size = body.len(),
            ),
        );
        assert_eq!(raw.status, 413, "a chunked body over the limit:\n{raw:#?}");
    }
    // Nothing over the limit made a session or reached the model.
    let resp = api.get("/v1/sessions");
    assert_eq!(
        resp.expect(200)["sessions"].as_array().unwrap().len(),
        1,
        "{resp:?}"
    );
    assert!(model.received().is_empty(), "{}", model.describe());
}

#[test]
fn a_stalled_half_request_line_has_its_connection_closed_after_header_timeout_ms() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::serve("header_timeout_ms = 500"));
    let serve = site.serve();

    let mut stalled = TcpStream::connect(serve.addr).expect("connect");
    stalled
        .write_all(b"GET /heal")
        .expect("send half a request line");
    // Far longer than the timeout under test, and shorter than the default (10 s): a server
    // that ignored header_timeout_ms would leave the connection open past it.
    let patience = Duration::from_secs(6);
    stalled.set_read_timeout(Some(patience)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match stalled.read(&mut buf) {
            Ok(0) => break Ok(()),
            // A server may say 408 before it closes; read on to the close.
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        }
        if start.elapsed() > patience {
            break Err(std::io::Error::new(ErrorKind::TimedOut, "still open"));
        }
    };
    assert!(
        closed.is_ok(),
        "the stalled connection was still open after {} ms ({closed:?}); header_timeout_ms = 500; \
         it received {:?}",
        start.elapsed().as_millis(),
        String::from_utf8_lossy(&got)
    );
    if !got.is_empty() {
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 4"),
            "anything sent before the close is a 4xx response: {text:?}"
        );
    }

    // The server still serves a client that sends its request at once.
    let resp = raw_request(
        serve.addr,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{resp:#?}");
    assert_eq!(resp.json(), json!({"status": "ok"}));
}

#[test]
fn a_stalled_body_is_refused_after_body_timeout_ms() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::serve("body_timeout_ms = 500"));
    let serve = site.serve();
    let token = site.acme.token.clone();

    let mut stalled = TcpStream::connect(serve.addr).expect("connect");
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"agent\":"
    );
    stalled
        .write_all(head.as_bytes())
        .expect("send the head and a tenth of the body");
    // Far longer than the timeout under test, and shorter than the default (30 s).
    let patience = Duration::from_secs(6);
    stalled.set_read_timeout(Some(patience)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let ended = loop {
        match stalled.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        }
        if start.elapsed() > patience {
            break Err(std::io::Error::new(ErrorKind::TimedOut, "no answer"));
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert!(
        ended.is_ok(),
        "the stalled body still held the request after {} ms ({ended:?}); body_timeout_ms = 500; \
         it received {text:?}",
        start.elapsed().as_millis()
    );
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 4"),
        "a stalled body gets a 4xx or a close, never a session: {text:?}"
    );
    let resp = serve.api(&site.acme).get("/v1/sessions");
    assert_eq!(
        resp.expect(200)["sessions"].as_array().map(Vec::len),
        Some(0),
        "{resp:?}"
    );
}
