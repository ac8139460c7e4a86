//! The MCP `tools/call` round trip over stdio: a real `warden mcp` process (SQLite state store
//! in a temp dir, `text-tools`) answering `text-tools__echo`, against a floor measured in the
//! same run: a minimal JSON-RPC responder without wasm, over the same kind of pipe.
//!
//! The floor is this bench binary itself, re-executed with `MCP_BENCH_FLOOR` set. `std`, the
//! floor the target is measured against: blocking std I/O on one thread (read a line, parse it
//! with serde_json, write a `tools/call`-shaped result of the same size as Warden's, flush).
//! For comparison, `tokio`: the same on a multi-thread tokio runtime through
//! `tokio::io::stdin`/`stdout`, which hand every read to a blocking thread; and `tokio-fd`: the
//! same runtime reading the pipes itself (`O_NONBLOCK`, `AsyncFd`). Every target is driven by
//! the same client code: the `initialize` handshake (protocol 2025-11-25),
//! `notifications/initialized`, `tools/list`, a warm-up, then sequential calls with one in
//! flight, each timed from the write of its request line to the read of its whole response
//! line. The targets take turns in rounds (their order rotating), so noise from the rest of the
//! machine falls on all of them alike.
//!
//! Reported per target: p50, p99 and mean round trip, calls/s, the server's CPU per call (on-CPU
//! time of its threads over the measured calls, `/proc/PID/task/*/schedstat`, cross-checked with
//! utime + stime from `/proc/PID/stat`) and its peak resident set (`VmHWM`). Then
//! p50(warden) − p50(floor) against the target p50 ≤ floor + 20 µs. A second `warden mcp` keeps
//! its state store on tmpfs (`/dev/shm`, where fsync costs nothing), which shows how much of a
//! call is the durable commit of its audit record (`synchronous = FULL` has no knob).
//!
//! `cargo bench --bench mcp_stdio`; `MCP_BENCH_CALLS` sets the measured calls per target
//! (5000), `MCP_BENCH_WARMUP` the warm-up calls (500), `MCP_BENCH_ROUNDS` the rounds (10),
//! `MCP_BENCH_FLOORS` the floors (`std,tokio,tokio-fd`; the first is the target's),
//! `MCP_BENCH_TMPFS=0` skips the tmpfs server and `MCP_BENCH_FLOOR_ONLY=1` measures the floors
//! alone.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const AGENT: &str = "bench";
const TOOL: &str = "text-tools__echo";
const TEXT: &str = "hello from the mcp_stdio bench";
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Set in the re-executed bench binary: which floor to serve (`std` or `tokio`).
const FLOOR_ENV: &str = "MCP_BENCH_FLOOR";
/// Set in the floor: whether its results carry `structuredContent`, as Warden's do when the
/// tool declares an object output schema (so both answers are the same size).
const FLOOR_STRUCTURED_ENV: &str = "MCP_BENCH_FLOOR_STRUCTURED";
/// How long a server may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The floor: a minimal JSON-RPC responder, run in a re-executed copy of this binary.
mod floor {
    use std::io::{BufRead, Write};

    use serde_json::{Value, json};

    /// Stands in for Warden's session id, so the floor's answers have the same length.
    const SESSION: &str = "00000000-0000-7000-8000-000000000000";

    /// The answer to one request line, newline-terminated; `None` for a notification.
    fn answer(line: &str, calls: &mut u64, structured: bool) -> Option<Vec<u8>> {
        let reply = match serde_json::from_str::<Value>(line) {
            Err(_) => json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": -32700, "message": "parse error"},
            }),
            Ok(request) => {
                let id = request.get("id")?.clone();
                match request["method"].as_str().unwrap_or("") {
                    "initialize" => json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "result": {
                            "protocolVersion": request["params"]["protocolVersion"],
                            "capabilities": {"tools": {}},
                            "serverInfo": {"name": "mcp-bench-floor", "version": "0"},
                        },
                    }),
                    "tools/list" => json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "result": {"tools": [{
                            "name": super::TOOL,
                            "inputSchema": {"type": "object"},
                        }]},
                    }),
                    "tools/call" => {
                        *calls += 1;
                        let arguments = &request["params"]["arguments"];
                        let mut result = json!({
                            "content": [{"type": "text", "text": arguments.to_string()}],
                            "_meta": {
                                "warden/session": SESSION,
                                "warden/call_id":
                                    format!("00000000-0000-7000-8000-{:012x}", *calls),
                            },
                        });
                        if structured {
                            result["structuredContent"] = arguments.clone();
                        }
                        json!({"jsonrpc": "2.0", "id": id, "result": result})
                    }
                    _ => json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {"code": -32601, "message": "method not found"},
                    }),
                }
            }
        };
        let mut out = serde_json::to_vec(&reply).expect("a JSON value serialises");
        out.push(b'\n');
        Some(out)
    }

    fn structured() -> bool {
        std::env::var(super::FLOOR_STRUCTURED_ENV).as_deref() != Ok("0")
    }

    /// Blocking std I/O on one thread: the least a responder can do per message.
    pub fn serve_std() {
        let structured = structured();
        let mut stdin = std::io::stdin().lock();
        let mut stdout = std::io::stdout().lock();
        let mut line = String::new();
        let mut calls = 0;
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some(out) = answer(&line, &mut calls, structured) {
                stdout.write_all(&out).expect("write stdout");
                stdout.flush().expect("flush stdout");
            }
        }
    }

    /// The same on a multi-thread tokio runtime (as `warden` builds its own), reading and
    /// writing through tokio's stdio handles, which hand each read to a blocking thread.
    pub fn serve_tokio() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let structured = structured();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let mut stdout = tokio::io::stdout();
            let mut line = String::new();
            let mut calls = 0;
            loop {
                line.clear();
                match stdin.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if let Some(out) = answer(&line, &mut calls, structured) {
                    stdout.write_all(&out).await.expect("write stdout");
                    stdout.flush().await.expect("flush stdout");
                }
            }
        });
    }

    /// The same runtime reading and writing the pipes itself: `O_NONBLOCK` on fds 0 and 1,
    /// readiness from tokio's reactor (`AsyncFd`, epoll), no blocking thread in between. What
    /// an async server can get over stdio when it avoids `tokio::io::stdin`'s hand-offs.
    pub fn serve_tokio_fd() {
        use std::os::fd::{AsRawFd, RawFd};
        use tokio::io::Interest;
        use tokio::io::unix::AsyncFd;

        /// A borrowed descriptor: fds 0 and 1 stay open for the process's life.
        struct Fd(RawFd);
        impl AsRawFd for Fd {
            fn as_raw_fd(&self) -> RawFd {
                self.0
            }
        }
        /// read(2) or write(2) on one descriptor, as an io::Result.
        fn sys(n: isize) -> std::io::Result<usize> {
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }

        for fd in [0, 1] {
            // SAFETY: fcntl(2) on descriptors this process owns; only the status flags change.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        let structured = structured();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            // SAFETY: fds 0 and 1 are open for the process's life and `Fd` always returns the
            // same one.
            let input = unsafe { AsyncFd::register_with_interest(Fd(0), Interest::READABLE) }
                .unwrap_or_else(|_| panic!("register fd 0"));
            // SAFETY: as above.
            let output = unsafe { AsyncFd::register_with_interest(Fd(1), Interest::WRITABLE) }
                .unwrap_or_else(|_| panic!("register fd 1"));
            let mut pending: Vec<u8> = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            let mut calls = 0;
            loop {
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let text = std::str::from_utf8(&line).unwrap_or("");
                    let Some(out) = answer(text, &mut calls, structured) else {
                        continue;
                    };
                    let mut written = 0;
                    while written < out.len() {
                        let mut guard = output.writable().await.expect("fd 1 writable");
                        let rest = &out[written..];
                        // SAFETY: write(2) from a live buffer of `rest.len()` bytes.
                        if let Ok(n) = guard.try_io(|fd| {
                            sys(unsafe {
                                libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len())
                            })
                        }) {
                            written += n.expect("write stdout");
                        }
                    }
                }
                let mut guard = input.readable().await.expect("fd 0 readable");
                // SAFETY: read(2) into a live buffer of `chunk.len()` bytes.
                match guard.try_io(|fd| {
                    sys(unsafe {
                        libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len())
                    })
                }) {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => pending.extend_from_slice(&chunk[..n]),
                    Err(_would_block) => {}
                }
            }
        });
    }
}

/// One server process and the client's end of its pipes.
struct Peer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Dropped once the handshake is done; until then a thread kills a server that hangs.
    watchdog: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    line: String,
    request: Vec<u8>,
    next_id: u64,
    /// Round-trip times of the measured calls, in nanoseconds.
    samples: Vec<u32>,
    /// The median of each round, in nanoseconds.
    round_p50: Vec<u32>,
    /// Wall time of the measured segments, the client's own per-call checks included.
    busy: Duration,
    response_bytes: usize,
    request_bytes: usize,
    cpu_before: (u64, Duration),
    cpu_after: (u64, Duration),
    peak_rss_kib: u64,
    /// Whether `tools/list` gave the echo tool an output schema.
    has_output_schema: bool,
}

impl Peer {
    /// Starts `cmd` with piped stdio. The first stderr line that starts with `banner` comes
    /// back on the channel; every other stderr line is passed on, prefixed with the label.
    fn spawn(label: &str, mut cmd: Command, banner: &str) -> (Peer, mpsc::Receiver<String>) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        let stderr = child.stderr.take().expect("its stderr");
        let (banner_tx, banner_rx) = mpsc::channel();
        let prefix = banner.to_string();
        let name = label.to_string();
        // Drained on a thread of its own so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut banner_tx = Some(banner_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(prefix.as_str())
                    && let Some(tx) = banner_tx.take()
                {
                    let _ = tx.send(line);
                    continue;
                }
                eprintln!("[{name}] {line}");
            }
        });
        let pid = child.id() as libc::pid_t;
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(HANDSHAKE_TIMEOUT) {
                // SAFETY: kill(2) on a child that is not reaped before this thread is joined.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let stdin = child.stdin.take();
        let peer = Peer {
            label: label.to_string(),
            child,
            stdin,
            stdout,
            watchdog: Some((stop_tx, watchdog)),
            line: String::new(),
            request: Vec::with_capacity(256),
            next_id: 1,
            samples: Vec::new(),
            round_p50: Vec::new(),
            busy: Duration::ZERO,
            response_bytes: 0,
            request_bytes: 0,
            cpu_before: (0, Duration::ZERO),
            cpu_after: (0, Duration::ZERO),
            peak_rss_kib: 0,
            has_output_schema: false,
        };
        (peer, banner_rx)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).expect("a JSON value serialises");
        line.push(b'\n');
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(&line).expect("write the server's stdin");
    }

    /// Reads lines until the response with `id`, skipping notifications.
    fn reply(&mut self, id: u64) -> Value {
        loop {
            self.line.clear();
            let n = self
                .stdout
                .read_line(&mut self.line)
                .expect("read the server's stdout");
            if n == 0 {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{}: stdout closed while waiting for response {id} (exit status: {status:?})",
                    self.label
                );
            }
            let message: Value = serde_json::from_str(&self.line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.label, self.line));
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                return message;
            }
            assert!(
                message.get("id").is_none(),
                "{}: a response to another request: {message}",
                self.label
            );
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let reply = self.reply(id);
        reply
            .get("result")
            .unwrap_or_else(|| panic!("{}: {method} failed: {reply}", self.label))
            .clone()
    }

    /// `initialize`, `notifications/initialized` and `tools/list`; then the watchdog stops.
    fn handshake(&mut self) {
        let init = self.request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp_stdio-bench", "version": "0"},
            }),
        );
        assert_eq!(
            init["protocolVersion"], PROTOCOL_VERSION,
            "{}: the negotiated version: {init}",
            self.label
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        let list = self.request("tools/list", json!({}));
        let tool = list["tools"]
            .as_array()
            .and_then(|tools| tools.iter().find(|t| t["name"] == TOOL))
            .unwrap_or_else(|| panic!("{}: no {TOOL} in tools/list: {list}", self.label));
        self.has_output_schema = tool.get("outputSchema").is_some();
        if let Some((stop, thread)) = self.watchdog.take() {
            drop(stop);
            let _ = thread.join();
        }
    }

    /// One `tools/call` of the echo tool: its round trip, from the write of the request line to
    /// the read of the whole response line. The response is checked after the clock stops.
    fn call(&mut self) -> Duration {
        let id = self.next_id;
        self.next_id += 1;
        self.request.clear();
        write!(
            self.request,
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{TOOL}","arguments":{{"text":"{TEXT}"}}}}}}"#
        )
        .expect("write to a Vec");
        self.request.push(b'\n');
        self.line.clear();
        let stdin = self.stdin.as_mut().expect("stdin open");
        let started = Instant::now();
        stdin
            .write_all(&self.request)
            .expect("write the server's stdin");
        let mut n;
        loop {
            n = self
                .stdout
                .read_line(&mut self.line)
                .expect("read the server's stdout");
            // A notification in between (none is expected) is read past, inside the clock:
            // the client could not have had its answer sooner.
            if n == 0 || self.line.contains("\"id\"") {
                break;
            }
            self.line.clear();
        }
        let elapsed = started.elapsed();
        assert!(n > 0, "{}: stdout closed during call {id}", self.label);
        self.request_bytes = self.request.len();
        self.response_bytes = n;
        self.check(id);
        elapsed
    }

    fn check(&self, id: u64) {
        let reply: Value = serde_json::from_str(&self.line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.label, self.line));
        let ok = reply["id"].as_u64() == Some(id)
            && reply["result"]["isError"].as_bool() != Some(true)
            && reply["result"]["content"][0]["text"]
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                == Some(json!({"text": TEXT}));
        assert!(
            ok,
            "{}: unexpected answer to call {id}: {reply}",
            self.label
        );
    }

    fn calls(&mut self, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| self.call().as_nanos().min(u128::from(u32::MAX)) as u32)
            .collect()
    }

    fn read_cpu(&self) -> (u64, Duration) {
        let pid = self.pid().to_string();
        (thread_cpu_ns(&pid), cpu_time(&pid))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.watchdog.take() {
            drop(stop);
            let _ = thread.join();
        }
        // EOF on stdin ends the server (contract: exit 0).
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && !std::thread::panicking() {
                        eprintln!("{}: exited with {status} after EOF", self.label);
                    }
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        eprintln!("{}: still running 10 s after EOF; killed", self.label);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-cache"))
}

/// A config with one agent that may call text-tools, its SQLite store in `dir`.
fn write_config(dir: &Path) -> PathBuf {
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

fn warden_mcp(label: &str, config: &Path) -> Peer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.arg("mcp")
        .arg("--config")
        .arg(config)
        .args(["--agent", AGENT])
        .env("WARDEN_CACHE_DIR", cache_dir())
        .env("WARDEN_LOG", "error");
    let (mut peer, banner) = Peer::spawn(label, cmd, "warden mcp:");
    peer.handshake();
    // The contract prints it before the first request is read, so it is there by now.
    match banner.recv_timeout(Duration::from_secs(2)) {
        Ok(line) => println!("{label}: {line}"),
        Err(_) => println!("{label}: (no `warden mcp:` start-up line on stderr)"),
    }
    peer
}

fn floor_peer(kind: &str, structured: bool) -> Peer {
    let exe = std::env::current_exe().expect("this bench's path");
    let mut cmd = Command::new(exe);
    cmd.env(FLOOR_ENV, kind)
        .env(FLOOR_STRUCTURED_ENV, if structured { "1" } else { "0" });
    let (mut peer, _) = Peer::spawn(&format!("floor ({kind})"), cmd, "floor:");
    peer.handshake();
    peer
}

/// On-CPU time of `pid`'s live threads, in nanoseconds (`/proc/PID/task/*/schedstat`):
/// precise enough for the floor's few milliseconds, which clock ticks are not.
fn thread_cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// utime + stime of process `pid` (`self` for this one), dead threads included.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
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

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    Duration::from_nanos(u64::from(sorted[rank - 1]))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: a number"))
        })
        .unwrap_or(default)
}

fn env_flag(name: &str, default: bool) -> bool {
    match std::env::var(name).as_deref() {
        Ok("0") | Ok("") | Ok("false") | Ok("no") => false,
        Ok(_) => true,
        Err(_) => default,
    }
}

/// The median of per-round differences `a − b`, in µs: the round pairs ran seconds apart at
/// most, so this is the difference with the slow drift of the machine's load taken out.
fn median_round_difference(a: &Peer, b: &Peer) -> f64 {
    let mut d: Vec<f64> = a
        .round_p50
        .iter()
        .zip(&b.round_p50)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)) / 1e3)
        .collect();
    d.sort_by(f64::total_cmp);
    if d.is_empty() { 0.0 } else { d[d.len() / 2] }
}

fn p50(peer: &Peer) -> Duration {
    percentile(&peer.samples, 0.50)
}

fn main() {
    match std::env::var(FLOOR_ENV).as_deref() {
        Ok("std") => return floor::serve_std(),
        Ok("tokio") => return floor::serve_tokio(),
        Ok("tokio-fd") => return floor::serve_tokio_fd(),
        Ok(other) => panic!("{FLOOR_ENV}={other}: std, tokio or tokio-fd"),
        Err(_) => {}
    }

    let calls = env_usize("MCP_BENCH_CALLS", 5000).max(1);
    let warmup = env_usize("MCP_BENCH_WARMUP", 500);
    let rounds = env_usize("MCP_BENCH_ROUNDS", 10).clamp(1, calls);
    let floor_only = env_flag("MCP_BENCH_FLOOR_ONLY", false);
    let tmpfs = Path::new("/dev/shm");
    let with_tmpfs = !floor_only && env_flag("MCP_BENCH_TMPFS", true) && tmpfs.is_dir();
    let floor_kinds: Vec<String> = std::env::var("MCP_BENCH_FLOORS")
        .unwrap_or_else(|_| "std,tokio,tokio-fd".into())
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    assert!(
        !floor_kinds.is_empty(),
        "MCP_BENCH_FLOORS names no floor (std, tokio, tokio-fd)"
    );

    let dir = tempfile::tempdir().expect("a temp dir");
    let shm_dir = with_tmpfs.then(|| tempfile::tempdir_in(tmpfs).expect("a temp dir in /dev/shm"));

    // Warden first: whether its echo has an output schema decides the floor's answer shape.
    let mut peers: Vec<Peer> = Vec::new();
    let mut warden_index = None;
    let mut tmpfs_index = None;
    if !floor_only {
        warden_index = Some(peers.len());
        peers.push(warden_mcp("warden mcp", &write_config(dir.path())));
        if let Some(shm) = &shm_dir {
            tmpfs_index = Some(peers.len());
            peers.push(warden_mcp("warden mcp (tmpfs)", &write_config(shm.path())));
        }
    }
    // The contract: Warden's echo declares an object output schema, so structuredContent.
    let structured = warden_index.is_none_or(|i| peers[i].has_output_schema);
    let first_floor = peers.len();
    for kind in &floor_kinds {
        peers.push(floor_peer(kind, structured));
    }

    for peer in &mut peers {
        peer.calls(warmup.max(1));
    }
    println!(
        "{} cores here (the client is one thread beside the servers); tools/call {TOOL} \
         {{\"text\":\"{TEXT}\"}}, one call in flight: {warmup} warm-up calls, then {calls} \
         measured per target in {rounds} rounds, the targets taking turns",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if !floor_only {
        println!(
            "warden's state store: SQLite in {}{}",
            dir.path().display(),
            shm_dir
                .as_ref()
                .map(|d| format!("; the tmpfs one in {}", d.path().display()))
                .unwrap_or_default()
        );
    }
    for peer in &peers {
        println!(
            "  {:<20} request {} B, response {} B: {}",
            peer.label,
            peer.request_bytes,
            peer.response_bytes,
            peer.line.trim_end()
        );
    }

    let client_before = cpu_time("self");
    for peer in &mut peers {
        peer.cpu_before = peer.read_cpu();
    }
    let started = Instant::now();
    let count = peers.len();
    for round in 0..rounds {
        let n = calls / rounds + usize::from(round < calls % rounds);
        for k in 0..count {
            let peer = &mut peers[(round + k) % count];
            let segment = Instant::now();
            let mut samples = peer.calls(n);
            peer.busy += segment.elapsed();
            samples.sort_unstable();
            peer.round_p50
                .push((percentile(&samples, 0.5).as_nanos()) as u32);
            peer.samples.extend(samples);
        }
    }
    let wall = started.elapsed();
    for peer in &mut peers {
        peer.cpu_after = peer.read_cpu();
        peer.peak_rss_kib = peak_rss_kib(peer.pid());
        peer.samples.sort_unstable();
    }
    let client_cpu = cpu_time("self").saturating_sub(client_before);

    println!(
        "{:<20} {:>6} {:>9} {:>9} {:>9} {:>9} {:>14} {:>12}",
        "target",
        "calls",
        "p50 µs",
        "p99 µs",
        "mean µs",
        "calls/s",
        "server µs/call",
        "server VmHWM"
    );
    let tick = Duration::from_nanos(1_000_000_000 / clock_ticks_per_second());
    let mut any_ended = false;
    for peer in &peers {
        let n = peer.samples.len();
        let mean = peer.samples.iter().map(|&s| u64::from(s)).sum::<u64>() / n.max(1) as u64;
        let precise = Duration::from_nanos(peer.cpu_after.0.saturating_sub(peer.cpu_before.0));
        let ticks = peer.cpu_after.1.saturating_sub(peer.cpu_before.1);
        // Threads that ended within the window (tokio's blocking threads end after 10 s idle,
        // as they do while the other targets take their turns) are missing from schedstat;
        // utime + stime keeps them, to a clock tick. Past that error, it is the better figure.
        let threads_ended = ticks > precise + 2 * tick + precise / 20;
        let cpu = if threads_ended { ticks } else { precise };
        println!(
            "{:<20} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {:>13.1}{} {:>8.1} MiB",
            peer.label,
            n,
            micros(p50(peer)),
            micros(percentile(&peer.samples, 0.99)),
            mean as f64 / 1e3,
            n as f64 / peer.busy.as_secs_f64(),
            micros(cpu) / n.max(1) as f64,
            if threads_ended { "*" } else { " " },
            peer.peak_rss_kib as f64 / 1024.0,
        );
        any_ended |= threads_ended;
    }
    if any_ended {
        println!(
            "  * from utime + stime (threads ended during the window; their schedstat is gone)"
        );
    }
    println!(
        "client (this process): {:.2} s CPU over {:.2} s",
        client_cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
    print!("p50 per round, µs:");
    for peer in &peers {
        print!(
            " {} [{}]",
            peer.label,
            peer.round_p50
                .iter()
                .map(|p| format!("{:.0}", f64::from(*p) / 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!();

    let floor = &peers[first_floor];
    let Some(w) = warden_index else {
        println!(
            "warden mcp not measured (MCP_BENCH_FLOOR_ONLY); floor ({}) p50 {:.1} µs: \
             the target for warden is p50 ≤ {:.1} µs",
            floor_kinds[0],
            micros(p50(floor)),
            micros(p50(floor)) + 20.0
        );
        return;
    };
    let warden = &peers[w];
    for other in &peers[first_floor..] {
        println!(
            "p50(warden mcp) − p50({}) = {:.1} µs (median of the rounds' differences {:.1} µs), \
             ratio {:.2}",
            other.label,
            micros(p50(warden)) - micros(p50(other)),
            median_round_difference(warden, other),
            p50(warden).as_secs_f64() / p50(other).as_secs_f64().max(1e-9),
        );
    }
    if let Some(t) = tmpfs_index {
        let fast = &peers[t];
        println!(
            "the durable audit commit (state on disk vs on tmpfs): p50 {:.1} µs of {:.1} µs; \
             p50(warden mcp (tmpfs)) − p50({}) = {:.1} µs",
            micros(p50(warden)) - micros(p50(fast)),
            micros(p50(warden)),
            floor.label,
            micros(p50(fast)) - micros(p50(floor)),
        );
    }
    let difference = micros(p50(warden)) - micros(p50(floor));
    println!(
        "target p50 ≤ floor + 20 µs ({}: p50 ≤ {:.1} µs): warden mcp p50 {:.1} µs, {}",
        floor.label,
        micros(p50(floor)) + 20.0,
        micros(p50(warden)),
        if difference <= 20.0 { "met" } else { "NOT met" }
    );
    // The server processes end (EOF, then a kill) before the temp dirs go.
    drop(peers);
}
