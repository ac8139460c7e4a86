//! The HTTP API under load: a real `warden serve` process serving `text-tools` from a SQLite
//! state store, and a load generator in this process (hyper's HTTP/1.1 client over tokio
//! TcpStreams, keep-alive, one request in flight per connection) calling
//! `POST /v1/sessions/{id}/tools/text-tools/echo` at 1, 16 and 64 concurrent connections.
//!
//! Each level runs a warm-up, then a measured window; reported per level: calls/s, the p50 and
//! p99 latency seen by the client, the server's CPU time over the window (`/proc/PID/stat`,
//! utime + stime) and per call, this process's CPU time (the client shares the machine), and the
//! server's peak resident set (`VmHWM` in `/proc/PID/status`). Targets: p50 ≤ 50 µs at one
//! connection, ≥ 40,000 calls/s at 64.
//!
//! `cargo bench --bench http_api`; `HTTP_API_SECONDS` sets the window (5), `HTTP_API_WARMUP`
//! the warm-up (1), `HTTP_API_LEVELS` the connection counts (`1,16,64`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;

#[path = "common/mod.rs"]
mod common;
use common::{Stopped, cpu_time, env_secs, new_token, percentile, warden};

const INPUT: &str = r#"{"text":"hello from the load generator"}"#;
const AGENT: &str = "bench";
const TENANT: &str = "bench";

/// A `warden serve` process, ended (SIGTERM, then a kill) when dropped.
struct Server {
    child: Stopped,
    addr: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.pid()
    }
}

fn write_config(dir: &Path, token_sha256: &str) -> PathBuf {
    let plugin = Path::new(env!("WARDEN_BUILT_PLUGINS")).join("text-tools.wasm");
    assert!(plugin.is_file(), "{} is missing", plugin.display());
    let path = dir.join("warden.toml");
    let db = dir.join("state.db");
    std::fs::write(
        &path,
        format!(
            r#"
            [state]
            url = "sqlite://{db}"
            [plugins.text-tools]
            path = "{plugin}"
            [tenants.{TENANT}]
            token_sha256 = "{token_sha256}"
            agents = ["{AGENT}"]
            [agents.{AGENT}]
            tools = ["text-tools/*"]
            "#,
            db = db.display(),
            plugin = plugin.display(),
        ),
    )
    .expect("write the config");
    path
}

/// Starts `warden serve` on a free port and reads its address from the first stdout line.
fn serve(config: &Path) -> Server {
    let mut child = warden()
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn warden serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read its first line");
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    // Drained so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Server {
        child: Stopped(child),
        addr,
    }
}

/// What each request carries besides its body.
struct Target {
    addr: String,
    authorization: String,
}

async fn connect(target: &Target) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(&target.addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("the HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// One request; the status and the body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    path: &str,
    body: &'static str,
) -> (u16, Bytes) {
    sender.ready().await.expect("the connection stays open");
    let request = hyper::Request::post(path)
        .header("host", &target.addr)
        .header("authorization", &target.authorization)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (status, body)
}

async fn create_session(target: &Target) -> String {
    let mut sender = connect(target).await;
    let body: &'static str = Box::leak(format!(r#"{{"agent":"{AGENT}"}}"#).into_boxed_str());
    let (status, body) = send(&mut sender, target, "/v1/sessions", body).await;
    assert_eq!(
        status,
        201,
        "POST /v1/sessions: {}",
        String::from_utf8_lossy(&body)
    );
    let session: serde_json::Value = serde_json::from_slice(&body).expect("a session");
    session["id"].as_str().expect("its id").to_string()
}

/// Calls from one connection until `end`; the latencies, in nanoseconds, of those that started
/// at or after `measured_from` and ended by `end`.
async fn connection_loop(
    target: Arc<Target>,
    path: Arc<str>,
    measured_from: Instant,
    end: Instant,
) -> Vec<u32> {
    let mut sender = connect(&target).await;
    let mut samples = Vec::with_capacity(1 << 16);
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let (status, body) = send(&mut sender, &target, &path, INPUT).await;
        let ended = Instant::now();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        if started >= measured_from && ended <= end {
            samples.push((ended - started).as_nanos().min(u128::from(u32::MAX)) as u32);
        }
    }
    samples
}

/// The peak resident set of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One level's figures.
struct Level {
    connections: usize,
    calls: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
    window: Duration,
    peak_rss_kib: u64,
}

async fn run_level(
    server: &Server,
    target: &Arc<Target>,
    path: &Arc<str>,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Level {
    let measured_from = Instant::now() + warmup;
    let end = measured_from + window;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(connection_loop(
                target.clone(),
                path.clone(),
                measured_from,
                end,
            ))
        })
        .collect();
    tokio::time::sleep_until(measured_from.into()).await;
    let pid = server.pid().to_string();
    let (server_before, client_before) = (cpu_time(&pid), cpu_time("self"));
    tokio::time::sleep_until(end.into()).await;
    let (server_after, client_after) = (cpu_time(&pid), cpu_time("self"));
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("a connection's loop"));
    }
    samples.sort_unstable();
    Level {
        connections,
        calls: samples.len(),
        per_second: samples.len() as f64 / window.as_secs_f64(),
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        server_cpu: server_after.saturating_sub(server_before),
        client_cpu: client_after.saturating_sub(client_before),
        window,
        peak_rss_kib: peak_rss_kib(server.pid()),
    }
}

fn main() {
    let warmup = env_secs("HTTP_API_WARMUP", 1.0);
    let window = env_secs("HTTP_API_SECONDS", 5.0);
    let levels: Vec<usize> = std::env::var("HTTP_API_LEVELS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(|n| n.trim().parse().expect("HTTP_API_LEVELS: numbers"))
        .collect();

    let dir = tempfile::tempdir().expect("a temp dir");
    let (token, token_sha256) = new_token(TENANT);
    let config = write_config(dir.path(), &token_sha256);
    let server = serve(&config);

    // The client runs on one thread: it shares the machine with the server, and one core of
    // it is all it may take.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let target = Arc::new(Target {
        addr: server.addr.clone(),
        authorization: format!("Bearer {token}"),
    });
    let session = rt.block_on(create_session(&target));
    let path: Arc<str> = format!("/v1/sessions/{session}/tools/text-tools/echo").into();
    rt.block_on(async {
        let mut sender = connect(&target).await;
        let (status, body) = send(&mut sender, &target, &path, INPUT).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(&body[..], INPUT.as_bytes(), "echo answers its input");
    });

    println!(
        "warden serve at {} ({} cores here; the load generator runs on one thread beside it), \
         POST {path}: {:.0} s warm-up, {:.0} s measured per level",
        server.addr,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        warmup.as_secs_f64(),
        window.as_secs_f64()
    );
    println!(
        "{:>5} {:>9} {:>10} {:>9} {:>9} {:>11} {:>13} {:>11} {:>12}",
        "conns",
        "calls",
        "calls/s",
        "p50 µs",
        "p99 µs",
        "server CPU",
        "server µs/call",
        "client CPU",
        "server VmHWM"
    );
    let mut results = Vec::new();
    for connections in levels {
        let level = rt.block_on(run_level(
            &server,
            &target,
            &path,
            connections,
            warmup,
            window,
        ));
        let wall = level.window.as_secs_f64();
        println!(
            "{:>5} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>6.2} s {:>3.0}% {:>13.1} {:>6.2} s {:>3.0}% {:>8.1} MiB",
            level.connections,
            level.calls,
            level.per_second,
            micros(level.p50),
            micros(level.p99),
            level.server_cpu.as_secs_f64(),
            100.0 * level.server_cpu.as_secs_f64() / wall,
            micros(level.server_cpu) / level.calls.max(1) as f64,
            level.client_cpu.as_secs_f64(),
            100.0 * level.client_cpu.as_secs_f64() / wall,
            level.peak_rss_kib as f64 / 1024.0,
        );
        results.push(level);
    }
    for level in &results {
        if level.connections == 1 {
            let met = if level.p50 <= Duration::from_micros(50) {
                "met"
            } else {
                "NOT met"
            };
            println!(
                "target p50 ≤ 50 µs at 1 connection: {:.1} µs, {met}",
                micros(level.p50)
            );
        }
        if level.connections == 64 {
            let met = if level.per_second >= 40_000.0 {
                "met"
            } else {
                "NOT met"
            };
            println!(
                "target ≥ 40,000 calls/s at 64 connections: {:.0}, {met}",
                level.per_second
            );
        }
    }
    drop(server);
}
