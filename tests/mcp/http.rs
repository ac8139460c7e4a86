//! MCP over streamable HTTP in `warden serve`, spoken to over raw sockets: the bearer token,
//! one tenant's token on another tenant's agent, `/mcp` for a tenant with one agent, the Host
//! and Origin checks against DNS rebinding, the body size limit, and `?session=`.

use serde_json::{Value, json};

use crate::harness::{
    ALLOWED_HOST, HELPER, MAX_BODY_KB, OTHER, RawResp, SLOW, Serve, Site, expect_error,
    initialize_body, post_mcp, raw_http,
};

/// An initialized legacy MCP session at `path` with `token`: its `Mcp-Session-Id`.
fn legacy_session(serve: &Serve, path: &str, token: &str) -> String {
    let init = post_mcp(serve, path, Some(token), &[], &initialize_body(1));
    assert_eq!(init.status, 200, "{init:#?}");
    let result = &init.reply(1)["result"];
    assert!(result["protocolVersion"].is_string(), "{init:#?}");
    let id = init
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("no Mcp-Session-Id on the initialize response: {init:#?}"));
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let sent = post_mcp(
        serve,
        path,
        Some(token),
        &[
            ("Mcp-Session-Id", id.as_str()),
            ("MCP-Protocol-Version", "2025-06-18"),
        ],
        note.to_string().as_bytes(),
    );
    assert_eq!(sent.status, 202, "notifications/initialized: {sent:#?}");
    id
}

/// A request in legacy MCP session `session` at `path` with `token`.
fn in_session(
    serve: &Serve,
    path: &str,
    token: &str,
    session: &str,
    id: i64,
    method: &str,
    params: Value,
) -> RawResp {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    post_mcp(
        serve,
        path,
        Some(token),
        &[
            ("Mcp-Session-Id", session),
            ("MCP-Protocol-Version", "2025-06-18"),
        ],
        body.to_string().as_bytes(),
    )
}

fn put_params(key: &str) -> Value {
    json!({
        "name": "memory-probe__put",
        "arguments": {"ns": "session", "key": key, "value": "written"}
    })
}

#[test]
fn no_token_or_a_wrong_one_is_401_with_www_authenticate() {
    let site = Site::sqlite();
    let serve = site.serve();
    for token in [None, Some("not-a-token")] {
        let resp = post_mcp(&serve, "/mcp/helper", token, &[], &initialize_body(1));
        assert_eq!(resp.status, 401, "token {token:?}: {resp:#?}");
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("no WWW-Authenticate: {resp:#?}"));
        assert!(challenge.to_lowercase().starts_with("bearer"), "{resp:#?}");
    }
    // The tenant's own token passes.
    let resp = post_mcp(
        &serve,
        "/mcp/helper",
        Some(&site.acme.token),
        &[],
        &initialize_body(1),
    );
    assert_eq!(resp.status, 200, "{resp:#?}");
}

#[test]
fn one_tenants_token_cannot_reach_another_tenants_agent() {
    let site = Site::sqlite();
    let serve = site.serve();
    // globex's token on acme's agents, and acme's on globex's: not found, as if they did not
    // exist.
    for (path, token) in [
        ("/mcp/helper", &site.globex.token),
        ("/mcp/slow", &site.globex.token),
        ("/mcp/other", &site.acme.token),
        ("/mcp/nobody", &site.acme.token),
    ] {
        let resp = post_mcp(&serve, path, Some(token), &[], &initialize_body(1));
        assert_eq!(resp.status, 404, "{path}: {resp:#?}");
    }
    // acme's live MCP session, with globex's token instead of acme's: still not found, and no
    // tool runs.
    let session = legacy_session(&serve, "/mcp/helper", &site.acme.token);
    let stolen = in_session(
        &serve,
        "/mcp/helper",
        &site.globex.token,
        &session,
        2,
        "tools/call",
        put_params("stolen"),
    );
    assert_eq!(stolen.status, 404, "{stolen:#?}");
    assert!(
        site.call_records("memory-probe/put").is_empty(),
        "a tool ran for a foreign token: {:#?}",
        site.call_records("memory-probe/put")
    );
    // The same call with acme's own token runs (so the check above is not vacuous).
    let own = in_session(
        &serve,
        "/mcp/helper",
        &site.acme.token,
        &session,
        3,
        "tools/call",
        put_params("own"),
    );
    assert_eq!(own.status, 200, "{own:#?}");
    let result = &own.reply(3)["result"];
    assert_ne!(result["isError"], true, "{own:#?}");
    assert_eq!(
        result["structuredContent"]["error"],
        Value::Null,
        "{own:#?}"
    );
    assert_eq!(site.call_records("memory-probe/put").len(), 1);
    let record = &site.call_records("memory-probe/put")[0];
    assert_eq!(record["tenant"], "acme", "{record:#}");
    assert_eq!(record["agent"], HELPER, "{record:#}");
}

#[test]
fn bare_mcp_serves_a_tenants_only_agent_and_is_404_naming_them_otherwise() {
    let site = Site::sqlite();
    let serve = site.serve();
    // globex has one agent: /mcp is it.
    let session = legacy_session(&serve, "/mcp", &site.globex.token);
    let listed = in_session(
        &serve,
        "/mcp",
        &site.globex.token,
        &session,
        2,
        "tools/list",
        json!({}),
    );
    assert_eq!(listed.status, 200, "{listed:#?}");
    let mut names: Vec<String> = listed.reply(2)["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed:#?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "text-tools__echo",
            "text-tools__regex-extract",
            "text-tools__word-count"
        ],
        "agent {OTHER}'s tools"
    );
    // acme has two: /mcp does not guess, and names them.
    let resp = post_mcp(
        &serve,
        "/mcp",
        Some(&site.acme.token),
        &[],
        &initialize_body(1),
    );
    assert_eq!(resp.status, 404, "{resp:#?}");
    assert!(
        resp.body.contains(HELPER) && resp.body.contains(SLOW),
        "the 404 names the tenant's agents: {resp:#?}"
    );
}

#[test]
fn a_foreign_host_header_is_403_and_an_allowed_one_is_served() {
    let site = Site::sqlite();
    let serve = site.serve();
    let port = serve.addr.port().to_string();
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let resp = post_mcp(
            &serve,
            "/mcp/helper",
            Some(&site.acme.token),
            &[("Host", host.as_str())],
            &initialize_body(1),
        );
        assert_eq!(resp.status, 403, "Host: {host}: {resp:#?}");
    }
    for host in [
        ALLOWED_HOST.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
    ] {
        let resp = post_mcp(
            &serve,
            "/mcp/helper",
            Some(&site.acme.token),
            &[("Host", host.as_str())],
            &initialize_body(1),
        );
        assert_eq!(resp.status, 200, "Host: {host}: {resp:#?}");
    }
}

#[test]
fn a_foreign_origin_is_403_and_a_loopback_or_allowed_one_is_served() {
    let site = Site::sqlite();
    let serve = site.serve();
    for origin in [
        "http://evil.example",
        "https://evil.example:8443",
        "null",
        "http://localhost.evil.example",
        "file://",
    ] {
        let resp = post_mcp(
            &serve,
            "/mcp/helper",
            Some(&site.acme.token),
            &[("Origin", origin)],
            &initialize_body(1),
        );
        assert_eq!(resp.status, 403, "Origin: {origin}: {resp:#?}");
    }
    let warden_origin = format!("https://{ALLOWED_HOST}");
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:6274",
        warden_origin.as_str(),
    ] {
        let resp = post_mcp(
            &serve,
            "/mcp/helper",
            Some(&site.acme.token),
            &[("Origin", origin)],
            &initialize_body(1),
        );
        assert_eq!(resp.status, 200, "Origin: {origin}: {resp:#?}");
    }
}

#[test]
fn a_body_over_max_body_kb_is_413() {
    let site = Site::sqlite();
    let serve = site.serve();
    let session = legacy_session(&serve, "/mcp/helper", &site.acme.token);
    let call = |id: i64, size: usize| {
        let params = json!({
            "name": "text-tools__echo",
            "arguments": {"text": "x".repeat(size)}
        });
        in_session(
            &serve,
            "/mcp/helper",
            &site.acme.token,
            &session,
            id,
            "tools/call",
            params,
        )
    };
    let over = call(2, MAX_BODY_KB * 1024 + 1024);
    assert_eq!(over.status, 413, "{over:#?}");
    // Under the limit: served, and the session survived the refusal.
    let under = call(3, MAX_BODY_KB * 1024 - 1024);
    assert_eq!(under.status, 200, "{under:#?}");
    let text = under.reply(3)["result"]["structuredContent"]["text"]
        .as_str()
        .map(str::len);
    assert_eq!(text, Some(MAX_BODY_KB * 1024 - 1024), "{under:#?}");
    assert_eq!(site.call_records("text-tools/echo").len(), 1);
}

#[test]
fn a_session_in_the_url_must_be_the_tenants_and_agents() {
    let site = Site::sqlite();
    let serve = site.serve();
    // A session of acme's `slow`, named on `helper`'s endpoint: no session.
    let auth = format!("Bearer {}", site.acme.token);
    let created = raw_http(
        serve.addr,
        "POST",
        "/v1/sessions",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        json!({"agent": SLOW}).to_string().as_bytes(),
    );
    assert_eq!(created.status, 201, "{created:#?}");
    let slow_session = created.messages()[0]["id"].as_str().unwrap().to_string();
    let path = format!("/mcp/helper?session={slow_session}");
    // The server may refuse the session at initialize or at the first call; either way it is
    // -32602 "no session" and nothing runs.
    let init = post_mcp(
        &serve,
        &path,
        Some(&site.acme.token),
        &[],
        &initialize_body(1),
    );
    let reply = if init.reply(1).get("error").is_some() {
        init.reply(1)
    } else {
        let mcp = init
            .header("mcp-session-id")
            .unwrap_or_else(|| panic!("no Mcp-Session-Id: {init:#?}"));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        post_mcp(
            &serve,
            &path,
            Some(&site.acme.token),
            &[
                ("Mcp-Session-Id", mcp.as_str()),
                ("MCP-Protocol-Version", "2025-06-18"),
            ],
            note.to_string().as_bytes(),
        );
        let resp = in_session(
            &serve,
            &path,
            &site.acme.token,
            &mcp,
            2,
            "tools/call",
            json!({"name": "text-tools__echo", "arguments": {"text": "x"}}),
        );
        resp.reply(2)
    };
    let (code, message, _) = expect_error(&reply, "a session of another agent");
    assert_eq!(code, -32602, "{reply:#}");
    // "no session": the message says there is no (open) session of that id for the agent.
    assert!(
        message.contains("no") && message.contains(&slow_session),
        "the message names the session it does not have: {reply:#}"
    );
    assert!(site.call_records("text-tools/echo").is_empty());
}

#[test]
fn a_reload_that_changes_the_tools_notifies_live_legacy_sessions_on_their_get_stream() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let site = Site::sqlite();
    let serve = site.serve();
    let session = legacy_session(&serve, "/mcp/helper", &site.acme.token);
    // The session's GET stream, where the server sends what is not a response. The server may
    // close it after its priming event (`retry:`); a client then reconnects, with the last
    // event id it saw, and the server replays what it missed: so does this test.
    let open = |last_event: Option<&str>| {
        let mut stream = std::net::TcpStream::connect(serve.addr).unwrap_or_else(|e| {
            std::thread::sleep(Duration::from_millis(500));
            panic!(
                "connecting for the GET stream: {e}; warden serve: {}; stderr:\n{}",
                serve.state(),
                serve.stderr()
            )
        });
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let resume = last_event
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /mcp/helper HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
             Accept: text/event-stream\r\nMcp-Session-Id: {session}\r\n\
             MCP-Protocol-Version: 2025-06-18\r\n{resume}\r\n",
            serve.addr.port(),
            site.acme.token
        )
        .unwrap();
        stream
    };
    let last_id = |text: &str| {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("id:"))
            .map(|id| id.trim().to_string())
    };
    let mut stream = open(None);
    let mut seen = Vec::new();
    let mut all = String::new();
    let mut reconnects = 0;
    let mut reloaded = false;
    let start = Instant::now();
    let mut buf = [0u8; 8192];
    while !all.contains("notifications/tools/list_changed") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no list_changed on the GET stream within 30 s ({reconnects} reconnects); it \
             said:\n{all}\nwarden serve: {}; stderr:\n{}",
            serve.state(),
            serve.stderr()
        );
        if !reloaded && String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "the GET stream: {head}");
            site.write_config(&site.config(r#""text-tools/*""#));
            serve.signal(libc::SIGHUP);
            reloaded = true;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                // Closed: reconnect after a moment, resuming after the last event seen.
                reconnects += 1;
                assert!(reconnects <= 20, "the GET stream keeps closing:\n{all}");
                std::thread::sleep(Duration::from_millis(100));
                let resume = last_id(&all);
                stream = open(resume.as_deref());
                if !reloaded {
                    seen.clear();
                }
            }
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            Err(_) => {}
        }
    }
    // And tools/list now shows the new list.
    let listed = in_session(
        &serve,
        "/mcp/helper",
        &site.acme.token,
        &session,
        5,
        "tools/list",
        json!({}),
    );
    let mut names: Vec<String> = listed.reply(5)["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed:#?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "text-tools__echo",
            "text-tools__regex-extract",
            "text-tools__word-count"
        ]
    );
}
