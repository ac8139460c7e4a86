//! Outbound HTTP through `http` sources: the allowlist, redirects, the host-added credentials,
//! the address checks, the limits and the audit records. Every test runs the real binary and the
//! real plugins against servers on 127.0.0.1 that the test starts, and names one enforcement
//! point: it fails if that check were removed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Run;
use crate::workspace::{AUDIT_TAIL_JSON, Workspace, audit_records};

/// The credential a source adds; it must reach the server and never the plugin.
const TOKEN: &str = "Bearer s3cret-from-the-host-env";
/// The environment variable the source reads it from.
const TOKEN_VAR: &str = "WARDEN_TEST_HTTP_TOKEN";

/// What the test server answers on one path.
enum Reply {
    /// 200 with a `text/plain` body.
    Text(&'static str),
    /// 302 to the given location.
    Redirect(String),
    /// A body of this many bytes, its length declared in `Content-Length`.
    Declared(usize),
    /// A body of this many bytes with no declared length, ended by closing the connection.
    Streamed(usize),
    /// Reads the request and never answers.
    Silence,
    /// Sends the head and the first bytes of a 100-byte body, then nothing more.
    Stall,
    /// 200, echoing the request's `Authorization` in a header and in the body, as a debugging
    /// endpoint or a reflecting error page would.
    EchoAuthorization,
}

/// One request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1: one thread per connection, one request per connection,
/// every request recorded. It stops when dropped.
struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(route: impl Fn(&str) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let route = Arc::new(route);
        let accept = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (seen, stop, route) = (seen.clone(), stop.clone(), route.clone());
                            std::thread::spawn(move || serve(conn, &seen, &stop, &*route));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TestServer {
            addr,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(
    mut conn: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    route: &(dyn Fn(&str) -> Reply + Send + Sync),
) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let authorization = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers,
    });
    let response = match route(&path) {
        Reply::Text(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        Reply::Redirect(location) => format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Reply::Declared(n) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{}",
            "x".repeat(n)
        ),
        Reply::Streamed(n) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{}",
            "x".repeat(n)
        ),
        Reply::EchoAuthorization => {
            let body = format!(
                "you sent: Authorization: {authorization}; token={}",
                authorization.rsplit(' ').next().unwrap_or_default()
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Echo-Authorization: {authorization}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Reply::Stall => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nfirst bytes";
            let _ = conn.write_all(head.as_bytes());
            wait_for_stop(stop);
            return;
        }
        Reply::Silence => {
            wait_for_stop(stop);
            return;
        }
    };
    let _ = conn.write_all(response.as_bytes());
}

/// Holds a connection open until the server stops (or 30 s pass).
fn wait_for_stop(stop: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A workspace with `http-get` and `header-echo`, one http source `api` with the given extra
/// lines, and agent `agent` granted `grants`.
fn workspace(allow: &[String], source_extra: &str, grants: &str, max: &str) -> Workspace {
    let ws = Workspace::new();
    let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    ws.config(&format!(
        r#"
        [state]
        url = "sqlite://state.db"
        [plugins.http-get]
        path = "{{plugins}}/http-get.wasm"
        max = [{max}]
        [plugins.header-echo]
        path = "{{plugins}}/header-echo.wasm"
        max = [{max}]
        [sources.api]
        kind = "http"
        allow = [{allow}]
        {source_extra}
        [sources.elsewhere]
        kind = "http"
        allow = ["https://elsewhere.example.com/*"]
        [agents.agent]
        tools = ["http-get/*", "header-echo/*"]
        grants = [{grants}]
        "#,
        allow = allow.join(", ")
    ));
    ws
}

/// A workspace whose source `api` allows `/v2/*` on `server`, private addresses allowed (the
/// server is on loopback), granted to the agent.
fn api_workspace(server: &TestServer, source_extra: &str) -> Workspace {
    let allow = [format!("http://127.0.0.1:{}/v2/*", server.port())];
    workspace(
        &allow,
        &format!("allow_private_addresses = true\n{source_extra}"),
        r#""api""#,
        r#""http:*""#,
    )
}

/// Runs `warden ARGS` in the workspace with the source's token in the environment.
fn warden(ws: &Workspace, args: &[&str]) -> Run {
    ws.warden_with_env(args, &[(TOKEN_VAR, TOKEN)])
}

/// `warden call` of `PLUGIN TOOL` for the agent.
fn call(ws: &Workspace, plugin: &str, tool: &str, input: &str) -> Run {
    let args = [
        "call",
        "--config",
        "warden.toml",
        "--agent",
        "agent",
        plugin,
        tool,
        "--input",
        input,
    ];
    warden(ws, &args)
}

/// `http-get get` through source `api`.
fn get(ws: &Workspace, url: &str) -> Run {
    call(
        ws,
        "http-get",
        "get",
        &json!({"source": "api", "url": url}).to_string(),
    )
}

/// A workspace like [`api_workspace`] whose source adds the token as `Authorization`.
fn token_workspace(server: &TestServer) -> Workspace {
    api_workspace(
        server,
        &format!(r#"headers = {{ Authorization = "env:{TOKEN_VAR}" }}"#),
    )
}

fn audit(ws: &Workspace) -> Vec<Value> {
    audit_records(&warden(ws, &AUDIT_TAIL_JSON))
        .into_iter()
        .filter(|r| r["capability"] == "http")
        .collect()
}

/// The outcomes of the http audit records, in order.
fn outcomes(ws: &Workspace) -> Vec<Value> {
    audit(ws)
        .into_iter()
        .map(|r| r["outcome"].clone())
        .collect()
}

fn only_record(ws: &Workspace) -> Value {
    let records = audit(ws);
    assert_eq!(records.len(), 1, "{records:#?}");
    records.into_iter().next().unwrap()
}

/// Asserts that `url` was refused before any byte left the host: exit 3 with `needle` in the
/// error, nothing reached `server`, and one `denied` audit record for it. Returns its detail.
fn assert_refused(ws: &Workspace, server: &TestServer, url: &str, needle: &str) -> String {
    get(ws, url).assert_fails_with(3, needle);
    assert!(server.requests().is_empty(), "the request left the host");
    let record = only_record(ws);
    assert_eq!(record["outcome"], "denied", "{record:#?}");
    assert_eq!(record["target"], url, "{record:#?}");
    record["detail"].as_str().unwrap().to_string()
}

/// A server that records requests and must not get any.
fn untouchable() -> TestServer {
    TestServer::start(|_| Reply::Text("must not be reached"))
}

#[test]
fn allowed_get_returns_the_body_and_is_audited() {
    let server = TestServer::start(|_| Reply::Text("hello from the API"));
    let ws = api_workspace(&server, "");
    let url = server.url("/v2/tickets?page=1");
    let run = get(&ws, &url);
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["status"], 200);
    assert_eq!(out["text"], "hello from the API");
    assert_eq!(out["content_type"], "text/plain; charset=utf-8");
    assert_eq!(server.requests()[0].path, "/v2/tickets?page=1");
    // Committed before the request was sent, so it names the method, source and address, not
    // the status.
    let record = only_record(&ws);
    assert_eq!(record["outcome"], "allowed");
    assert_eq!(record["target"], url);
    let detail = record["detail"].as_str().unwrap();
    assert!(
        detail.contains("GET via source `api` to 127.0.0.1:"),
        "{record:#?}"
    );
}

#[test]
fn host_not_on_the_allowlist_is_denied() {
    let server = untouchable();
    let ws = api_workspace(&server, "");
    // Same server, named differently: the allowlist names 127.0.0.1, not localhost.
    let url = format!("http://localhost:{}/v2/tickets", server.port());
    let detail = assert_refused(
        &ws,
        &server,
        &url,
        "\"api\" in the agent's grants and \"http:api\"",
    );
    let wanted = format!(
        "\"http://localhost:{}/v2/*\" to sources.api.allow",
        server.port()
    );
    assert!(detail.contains(&wanted), "{detail}");
}

#[test]
fn path_outside_the_allowed_prefix_is_denied() {
    let server = untouchable();
    let ws = api_workspace(&server, "");
    assert_refused(
        &ws,
        &server,
        &server.url("/v20/tickets"),
        "the host refused",
    );
}

#[test]
fn dot_segments_cannot_climb_out_of_the_prefix() {
    let server = untouchable();
    let ws = api_workspace(&server, "");
    // The plugin resolves `..` itself, so this is a request for /admin; an encoded `..` is refused.
    get(&ws, &server.url("/v2/../admin")).assert_fails_with(3, "the host refused");
    get(&ws, &server.url("/v2/%2e%2e/admin")).assert_fails_with(3, "the host refused");
    assert!(server.requests().is_empty(), "the request left the host");
}

#[test]
fn redirect_within_the_allowlist_is_followed() {
    let server = TestServer::start(|path| match path {
        "/v2/old" => Reply::Redirect("/v2/new".into()),
        _ => Reply::Text("moved here"),
    });
    let ws = api_workspace(&server, "");
    let run = get(&ws, &server.url("/v2/old"));
    run.assert_code(0);
    assert_eq!(run.json()["text"], "moved here");
    assert_eq!(run.json()["url"], server.url("/v2/new"));
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/v2/old", "/v2/new"]);
    assert_eq!(outcomes(&ws), ["allowed", "allowed"]);
}

#[test]
fn redirect_to_a_host_off_the_allowlist_is_denied() {
    let elsewhere = TestServer::start(|_| Reply::Text("internal secrets"));
    let target = elsewhere.url("/v2/secrets");
    let server = TestServer::start(move |_| Reply::Redirect(target.clone()));
    let ws = api_workspace(&server, "");
    let run = get(&ws, &server.url("/v2/start"));
    run.assert_fails_with(3, "redirected to");
    assert!(
        run.error_line().contains(&elsewhere.url("/v2/secrets")),
        "{run:#?}"
    );
    assert_eq!(server.requests().len(), 1);
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed past the allowlist"
    );
    assert_eq!(outcomes(&ws), ["allowed", "denied"]);
}

#[test]
fn configured_header_reaches_the_server_but_never_the_plugin() {
    let server = TestServer::start(|_| Reply::Text("ok"));
    let ws = token_workspace(&server);
    let input = json!({"scheme": "http", "authority": format!("127.0.0.1:{}", server.port()), "path": "/v2/me"}).to_string();
    let run = call(&ws, "header-echo", "send", &input);
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["status"], 200, "{out:#?}");
    assert_eq!(server.requests()[0].header("authorization"), [TOKEN]);
    for side in ["request_headers", "response_headers"] {
        let names: Vec<&str> = out[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("authorization")),
            "{side}: {names:?}"
        );
    }
    assert!(
        !run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"),
        "{run:#?}"
    );
    assert!(
        !std::fs::read(ws.path().join("state.db"))
            .unwrap()
            .windows(6)
            .any(|w| w == b"s3cret")
    );
}

#[test]
fn a_plugin_cannot_replace_the_configured_header() {
    let server = TestServer::start(|_| Reply::Text("ok"));
    let ws = token_workspace(&server);
    let input = json!({
        "scheme": "http",
        "authority": format!("127.0.0.1:{}", server.port()),
        "path": "/v2/me",
        "headers": [["Authorization", "Bearer forged-by-the-plugin"]],
    })
    .to_string();
    let run = call(&ws, "header-echo", "send", &input);
    run.assert_code(0);
    // The plugin sees only what it set itself; the server gets only the host's value.
    let seen_by_plugin = &run.json()["request_headers"];
    assert_eq!(
        seen_by_plugin,
        &json!([["authorization", "Bearer forged-by-the-plugin"]])
    );
    assert_eq!(server.requests()[0].header("authorization"), [TOKEN]);
}

#[test]
fn loopback_is_refused_unless_the_source_allows_private_addresses() {
    let server = untouchable();
    let allow = [format!("http://127.0.0.1:{}/v2/*", server.port())];
    let ws = workspace(&allow, "", r#""api""#, r#""http:*""#);
    let needle = "allow_private_addresses = true in sources.api";
    let detail = assert_refused(&ws, &server, &server.url("/v2/tickets"), needle);
    assert!(
        detail.contains("`127.0.0.1` is a loopback address"),
        "{detail}"
    );
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused() {
    let server = untouchable();
    let allow = [format!("http://localhost:{}/v2/*", server.port())];
    let ws = workspace(&allow, "", r#""api""#, r#""http:*""#);
    let url = format!("http://localhost:{}/v2/tickets", server.port());
    let detail = assert_refused(&ws, &server, &url, "resolves to a loopback");
    assert!(
        detail.contains("`localhost` resolves to") && detail.contains("loopback"),
        "{detail}"
    );
}

#[test]
fn declared_response_over_max_bytes_fails_clearly() {
    let server = TestServer::start(|_| Reply::Declared(5000));
    let ws = api_workspace(&server, "max_bytes = 1000");
    let run = get(&ws, &server.url("/v2/big"));
    run.assert_fails_with(
        4,
        "5000 bytes, is larger than http source `api` allows (its max_bytes)",
    );
    assert_eq!(outcomes(&ws), ["allowed", "failed"]);
    let record = audit(&ws).pop().unwrap();
    assert!(
        record["detail"]
            .as_str()
            .unwrap()
            .contains("1000-byte limit"),
        "{record:#?}"
    );
}

#[test]
fn streamed_response_over_max_bytes_is_cut() {
    let server = TestServer::start(|_| Reply::Streamed(200_000));
    let ws = api_workspace(&server, "max_bytes = 1000");
    let run = get(&ws, &server.url("/v2/big"));
    run.assert_fails_with(4, "max_bytes");
    assert!(run.error_line().contains("1000"), "{run:#?}");
    assert_eq!(outcomes(&ws), ["allowed", "failed"]);
}

#[test]
fn a_server_that_never_answers_times_out() {
    let server = TestServer::start(|path| match path {
        "/v2/slow" => Reply::Silence,
        _ => Reply::Text("still here"),
    });
    let ws = api_workspace(&server, "timeout_ms = 500");
    let started = Instant::now();
    let run = get(&ws, &server.url("/v2/slow"));
    run.assert_fails_with(
        4,
        "did not answer in time (the timeout_ms of http source `api`)",
    );
    run.assert_no_panic();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcomes(&ws), ["allowed", "failed"]);
    let record = audit(&ws).pop().unwrap();
    assert!(
        record["detail"].as_str().unwrap().contains("500 ms"),
        "{record:#?}"
    );
    // The next call is served as usual.
    get(&ws, &server.url("/v2/fast")).assert_code(0);
}

#[test]
fn a_body_that_stalls_times_out() {
    let server = TestServer::start(|_| Reply::Stall);
    let ws = api_workspace(&server, "timeout_ms = 500");
    let started = Instant::now();
    let run = get(&ws, &server.url("/v2/stalls"));
    run.assert_fails_with(
        4,
        "did not finish its answer in time (the timeout_ms of http source `api`)",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcomes(&ws), ["allowed", "failed"]);
}

#[test]
fn https_to_a_server_that_does_not_speak_tls_fails_clearly() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    let allow = [format!("https://127.0.0.1:{port}/v2/*")];
    let ws = workspace(
        &allow,
        "allow_private_addresses = true",
        r#""api""#,
        r#""http:*""#,
    );
    let run = get(&ws, &format!("https://127.0.0.1:{port}/v2/x"));
    run.assert_fails_with(4, "TlsProtocolError");
    server.join().unwrap();
    assert_eq!(outcomes(&ws), ["allowed", "failed"]);
    let record = audit(&ws).pop().unwrap();
    assert!(
        record["detail"]
            .as_str()
            .unwrap()
            .contains("TLS with `127.0.0.1` failed"),
        "{record:#?}"
    );
}

#[test]
fn a_call_granted_no_http_source_is_refused_everything() {
    let server = untouchable();
    let allow = [format!("http://127.0.0.1:{}/v2/*", server.port())];
    let ws = workspace(&allow, "allow_private_addresses = true", "", r#""http:*""#);
    let detail = assert_refused(&ws, &server, &server.url("/v2/tickets"), "the host refused");
    assert!(
        detail.contains("\"api\" to agents.agent.grants"),
        "{detail}"
    );
}

#[test]
fn a_source_outside_the_plugins_max_is_refused() {
    let server = untouchable();
    let allow = [format!("http://127.0.0.1:{}/v2/*", server.port())];
    let max = r#""http:elsewhere""#;
    let ws = workspace(&allow, "allow_private_addresses = true", r#""api""#, max);
    let detail = assert_refused(&ws, &server, &server.url("/v2/tickets"), "the host refused");
    assert!(
        detail.contains("\"http:api\" to plugins.http-get.max"),
        "{detail}"
    );
}

#[test]
fn the_audit_chain_holds_the_http_records() {
    let server = TestServer::start(|_| Reply::Text("ok"));
    let ws = api_workspace(&server, "");
    get(&ws, &server.url("/v2/a")).assert_code(0);
    get(&ws, &server.url("/v3/b")).assert_code(3);
    let records = audit(&ws);
    let summary: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().into(),
                r["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("allowed".to_string(), server.url("/v2/a")),
            ("denied".to_string(), server.url("/v3/b"))
        ]
    );
    for record in &records {
        assert_eq!(record["plugin"], "http-get");
        assert_eq!(record["tool"], "get");
        assert_eq!(record["agent"], "agent");
    }
    warden(&ws, &["audit", "verify", "--config", "warden.toml"]).assert_code(0);
}

/// `header-echo send` of `method` to `path` on `server`, with `headers` set by the plugin.
fn echo(ws: &Workspace, server: &TestServer, method: &str, path: &str, headers: Value) -> Run {
    let input = json!({
        "scheme": "http",
        "authority": format!("127.0.0.1:{}", server.port()),
        "path": path,
        "method": method,
        "headers": headers,
    });
    call(ws, "header-echo", "send", &input.to_string())
}

#[test]
fn an_echoed_credential_is_masked_in_the_response_headers_and_body() {
    let server = TestServer::start(|_| Reply::EchoAuthorization);
    let ws = token_workspace(&server);
    let run = echo(&ws, &server, "GET", "/v2/debug", json!([]));
    run.assert_code(0);
    assert_eq!(server.requests()[0].header("authorization"), [TOKEN]);
    let out = run.json();
    assert_eq!(out["status"], 200, "{out:#?}");
    let echoed = out["response_headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-echo-authorization")
        .expect("the echo header reaches the plugin")[1]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(echoed, "*".repeat(TOKEN.len()), "{out:#?}");
    let body = out["body"].as_str().unwrap();
    assert!(body.starts_with("you sent: Authorization: ***"), "{body}");
    assert!(!run.stdout.contains("s3cret"), "{run:#?}");
    assert!(!run.stderr.contains("s3cret"), "{run:#?}");
}

#[test]
fn a_method_the_source_does_not_list_is_refused() {
    let server = untouchable();
    let ws = token_workspace(&server);
    for method in ["DELETE", "POST", "TRACE"] {
        let run = echo(&ws, &server, method, "/v2/tickets/1", json!([]));
        run.assert_code(0);
        assert_eq!(
            run.json()["error"],
            "ErrorCode::HttpRequestDenied",
            "{run:#?}"
        );
    }
    assert!(server.requests().is_empty(), "the request left the host");
    let records = audit(&ws);
    assert_eq!(records.len(), 3, "{records:#?}");
    for record in &records {
        assert_eq!(record["outcome"], "denied");
        let detail = record["detail"].as_str().unwrap();
        assert!(
            detail.contains("sends GET, HEAD only") && detail.contains("to sources.api.methods"),
            "{detail}"
        );
    }
}

#[test]
fn a_method_the_source_lists_is_sent() {
    let server = TestServer::start(|_| Reply::Text("deleted"));
    let ws = api_workspace(&server, r#"methods = ["GET", "DELETE"]"#);
    let run = echo(&ws, &server, "DELETE", "/v2/tickets/1", json!([]));
    run.assert_code(0);
    assert_eq!(run.json()["status"], 200, "{run:#?}");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "DELETE");
    // HEAD is in the default, not in this list.
    let run = echo(&ws, &server, "HEAD", "/v2/tickets/1", json!([]));
    assert_eq!(
        run.json()["error"],
        "ErrorCode::HttpRequestDenied",
        "{run:#?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn headers_that_reroute_a_request_are_refused() {
    let server = untouchable();
    let ws = token_workspace(&server);
    let rerouting = [
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Host", "admin.internal"),
        ("X-Forwarded-Prefix", "/admin"),
        ("Forwarded", "for=127.0.0.1;host=admin.internal"),
    ];
    for (name, value) in rerouting {
        let run = echo(&ws, &server, "GET", "/v2/me", json!([[name, value]]));
        run.assert_code(0);
        assert_eq!(
            run.json()["error"],
            "ErrorCode::HttpRequestDenied",
            "{name}: {run:#?}"
        );
    }
    assert!(server.requests().is_empty(), "the request left the host");
    let records = audit(&ws);
    assert_eq!(records.len(), rerouting.len(), "{records:#?}");
    for (record, (name, _)) in records.iter().zip(rerouting) {
        assert_eq!(record["outcome"], "denied");
        let detail = record["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("it sets `{}`", name.to_ascii_lowercase())),
            "{detail}"
        );
    }
}

#[test]
fn dot_segments_with_parameters_or_double_encoding_are_refused() {
    let server = untouchable();
    let ws = token_workspace(&server);
    for path in [
        "/v2/..;/admin",
        "/v2/%252e%252e/admin",
        "/v2/.%2e/admin",
        "/v2/%2e%2E;x=1/admin",
    ] {
        get(&ws, &server.url(path)).assert_fails_with(3, "the host refused");
    }
    assert!(server.requests().is_empty(), "the request left the host");
    assert_eq!(outcomes(&ws), ["denied", "denied", "denied", "denied"]);
}

#[test]
fn requests_past_max_requests_in_one_call_are_refused() {
    let server = TestServer::start(|path| {
        let hop: u32 = path.trim_start_matches("/v2/hop").parse().unwrap_or(0);
        Reply::Redirect(format!("/v2/hop{}", hop + 1))
    });
    let ws = api_workspace(&server, "max_requests = 3");
    let run = get(&ws, &server.url("/v2/hop0"));
    run.assert_fails_with(3, "the host refused");
    assert_eq!(server.requests().len(), 3, "{:#?}", server.requests());
    assert_eq!(outcomes(&ws), ["allowed", "allowed", "allowed", "denied"]);
    let denial = audit(&ws).pop().unwrap();
    assert!(
        denial["detail"].as_str().unwrap().contains(
            "sent its 3 requests through source `api`; an operator raises sources.api.max_requests"
        ),
        "{denial:#?}"
    );
    // The count is per call: the next call starts from zero.
    get(&ws, &server.url("/v2/hop0")).assert_code(3);
    assert_eq!(server.requests().len(), 6);
}

/// Makes files unwritable for as long as it lives, even through the handles a running `warden`
/// already has open (`chattr +i`, which tests running as root can use), and writable again when
/// dropped, so the temp dir can be removed. Not root: `chmod 0444` on the files and their folder,
/// which only stops new handles.
struct Unwritable {
    paths: Vec<std::path::PathBuf>,
    chattr: bool,
}

impl Unwritable {
    fn new(paths: &[std::path::PathBuf]) -> Unwritable {
        use std::os::unix::fs::PermissionsExt;
        let paths: Vec<_> = paths.iter().filter(|p| p.exists()).cloned().collect();
        let chattr = std::process::Command::new("chattr")
            .arg("+i")
            .args(&paths)
            .status()
            .is_ok_and(|s| s.success());
        if !chattr {
            for p in &paths {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o444));
            }
            if let Some(dir) = paths.first().and_then(|p| p.parent()) {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555));
            }
        }
        Unwritable { paths, chattr }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.chattr {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .args(&self.paths)
                .status();
        } else {
            if let Some(dir) = self.paths.first().and_then(|p| p.parent()) {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
            for p in &self.paths {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
            }
        }
    }
}

/// Runs `http-get` on `/v2/start`, which the server answers only after `spoil` has made the
/// state store refuse writes, with a redirect to `/v2/next`. The first request was recorded and
/// sent; the second one's record cannot be committed, so it must never reach the server, and
/// the call must fail naming the audit store. (The store is spoiled mid-call because `warden`
/// also writes to it as it starts.) `undo` runs right after the call.
fn assert_an_unrecordable_request_is_not_sent(
    spoil: impl Fn(&std::path::Path) + Send + Sync + 'static,
    undo: impl FnOnce(),
) {
    let store: Arc<OnceLock<std::path::PathBuf>> = Arc::default();
    let server = {
        let store = store.clone();
        TestServer::start(move |path| match path {
            "/v2/start" => {
                spoil(store.get().expect("the store's path"));
                Reply::Redirect("/v2/next".into())
            }
            _ => Reply::Text("must not be reached"),
        })
    };
    // A request deadline well past the store's busy wait (5 s): the request must be stopped by
    // its missing record, not by running out of time while the record was tried.
    let ws = api_workspace(
        &server,
        &format!("timeout_ms = 30000\nheaders = {{ Authorization = \"env:{TOKEN_VAR}\" }}"),
    );
    store.set(ws.path().join("state.db")).unwrap();
    let run = get(&ws, &server.url("/v2/start"));
    undo();
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["/v2/start"],
        "a request left the host without its audit record: {run:#?}"
    );
    // The store as the config names it.
    run.assert_fails_with(1, "could not be committed to the audit store ./state.db");
}

#[test]
fn a_locked_audit_store_stops_the_request_and_withholds_the_result() {
    let lock: Arc<Mutex<Option<rusqlite::Connection>>> = Arc::default();
    let held = lock.clone();
    assert_an_unrecordable_request_is_not_sent(
        move |state| {
            let conn = rusqlite::Connection::open(state).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            *held.lock().unwrap() = Some(conn);
        },
        move || {
            let conn = lock.lock().unwrap().take().expect("the store was locked");
            conn.execute_batch("ROLLBACK").unwrap();
        },
    );
}

#[test]
fn an_unwritable_audit_store_stops_the_request_and_withholds_the_result() {
    let guard: Arc<Mutex<Option<Unwritable>>> = Arc::default();
    let held = guard.clone();
    assert_an_unrecordable_request_is_not_sent(
        move |state| {
            let wal = state.with_extension("db-wal");
            *held.lock().unwrap() = Some(Unwritable::new(&[state.to_path_buf(), wal]));
        },
        move || {
            drop(
                guard
                    .lock()
                    .unwrap()
                    .take()
                    .expect("the store was made unwritable"),
            );
        },
    );
}

#[test]
fn an_http_audit_failure_alone_withholds_the_result() {
    // The store is locked for a little longer than one busy wait (5 s): the record of the second
    // request fails, and the lock is gone by the time the call's own record is written. The
    // plugin would make a result of the refusal; the host must still withhold it.
    let unlocked: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let held = unlocked.clone();
    assert_an_unrecordable_request_is_not_sent(
        move |state| {
            let conn = rusqlite::Connection::open(state).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            *held.lock().unwrap() = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(6500));
                conn.execute_batch("ROLLBACK").unwrap();
            }));
        },
        move || {
            let unlock = unlocked
                .lock()
                .unwrap()
                .take()
                .expect("the store was locked");
            unlock.join().unwrap();
        },
    );
}

/// The `warden` run of `args` under `/usr/bin/time -v`, and its peak RSS in KiB.
fn timed(ws: &Workspace, args: &[&str]) -> (Run, u64) {
    let report = ws.path().join("time.txt");
    let inner = crate::common::warden_command(args);
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(ws.path())
        .env_remove("WARDEN_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let run = crate::common::run_command(cmd, None);
    let text = std::fs::read_to_string(&report).expect("the time report");
    let kib = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {text}"));
    (run, kib)
}

/// `fields-hog hog` with no grant at all: `count` fields of `bytes` each.
fn hog(count: u32, bytes: u32) -> (Run, u64) {
    hog_with(json!({"count": count, "bytes": bytes}))
}

fn hog_with(input: serde_json::Value) -> (Run, u64) {
    let ws = Workspace::new();
    ws.config(
        r#"
        [state]
        url = "sqlite://state.db"
        [plugins.fields-hog]
        path = "{plugins}/fields-hog.wasm"
        [agents.agent]
        tools = ["fields-hog/*"]
        "#,
    );
    let input = input.to_string();
    timed(
        &ws,
        &[
            "call",
            "--config",
            "warden.toml",
            "--agent",
            "agent",
            "fields-hog",
            "hog",
            "--input",
            &input,
        ],
    )
}

#[test]
fn header_fields_a_plugin_creates_are_charged_to_its_memory_limit() {
    // 20,000 fields of 120 KB took the host to 2.4 GB when only linear memory was counted.
    let (run, peak_kib) = hog(20_000, 120_000);
    run.assert_fails_with(5, "limit exceeded: memory");
    assert!(
        peak_kib < 300 * 1024,
        "the host peaked at {} MiB",
        peak_kib / 1024
    );
    // A plugin well inside its budget is not disturbed.
    let (run, _) = hog(100, 1_000);
    run.assert_code(0);
    assert_eq!(run.json()["created"], 100, "{run:#?}");
}

#[test]
fn too_many_resources_in_one_call_is_the_memory_limit() {
    // Tiny fields: the bytes stay far under 64 MiB, the count does not.
    let (run, _) = hog(5_000, 1);
    run.assert_fails_with(5, "limit exceeded: memory");
    let (run, _) = hog(4_000, 1);
    run.assert_code(0);
    assert_eq!(run.json()["created"], 4_000, "{run:#?}");
}

#[test]
fn a_plugin_that_goes_over_with_its_last_host_call_still_fails() {
    // The 4096th resource is made by the plugin's last host call: it then returns without
    // dropping them, so only the host's last accounting after the call can see it went over.
    let (run, _) = hog_with(json!({"count": 4096, "bytes": 1, "leak": true}));
    run.assert_fails_with(5, "limit exceeded: memory");
    assert!(run.error_line().contains("resources"), "{run:#?}");
    let (run, _) = hog_with(json!({"count": 4000, "bytes": 1, "leak": true}));
    run.assert_code(0);
}

#[test]
fn config_check_refuses_a_method_no_source_may_send() {
    let server = untouchable();
    let ws = api_workspace(&server, r#"methods = ["GET", "TRACE"]"#);
    let run = warden(&ws, &["config", "check", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("sources.api.methods")
            && all.contains("`TRACE` is not a method a source may send"),
        "{run:#?}"
    );
    let ws = api_workspace(&server, "max_requests = 0");
    let run = warden(&ws, &["config", "check", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("sources.api.max_requests"), "{run:#?}");
}
