//! The MCP tests' harness: a site (a folder with a `warden.toml` naming two tenants with tokens,
//! the plugins under test, a SQLite source, and a state store: a SQLite file or a fresh schema of
//! the PostgreSQL named by `WARDEN_TEST_POSTGRES_URL`), a real `warden mcp` process spoken to
//! line by line over its stdio, a real `warden serve` process, raw HTTP/1.1 over a `TcpStream`,
//! and the audit log as `warden audit tail --json` prints it.
//!
//! Every read has a deadline and every child process is killed when its handle is dropped, so a
//! server that hangs or dies fails the test instead of hanging the suite.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden::state::testing::PgTestSchema;

use crate::common::{WARDEN, plugin_path, shared_cache_dir};

/// The agent most tests use: echo, session memory, the spinner (2 s limit) and SQL queries on
/// a source it is not granted.
pub const HELPER: &str = "helper";
/// An agent with a long time limit (60 s), for cancellation.
pub const SLOW: &str = "slow";
/// The only agent of tenant `globex`.
pub const OTHER: &str = "other";
/// Tenant `acme`: agents `helper` and `slow`.
pub const ACME: &str = "acme";
/// Tenant `globex`: agent `other` alone.
pub const GLOBEX: &str = "globex";
/// The extra Host name every site allows.
pub const ALLOWED_HOST: &str = "warden.example";
/// `helper`'s time limit per call.
pub const HELPER_TIMEOUT_MS: u64 = 2_000;
/// `slow`'s time limit per call.
pub const SLOW_TIMEOUT_MS: u64 = 60_000;
/// `[serve] max_body_kb` of every site.
pub const MAX_BODY_KB: usize = 64;
/// How long a process may take to come up (it may compile plugins on a cold cache).
const START_DEADLINE: Duration = Duration::from_secs(240);
/// The longest any single read of a reply waits, unless a test says otherwise.
pub const READ_DEADLINE: Duration = Duration::from_secs(30);
/// The variable a PostgreSQL site's `[state] url_env` names.
const STATE_URL_ENV: &str = "WARDEN_TEST_MCP_STATE_URL";
/// The protocol versions of the initialize handshake the server must support.
pub const HANDSHAKE_VERSIONS: [&str; 2] = ["2025-06-18", "2025-11-25"];
/// The `_meta` key of the 2026-07-28 per-request envelope that names the protocol version.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// The lowercase hex sha256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A tenant and its bearer token.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its name in the config.
    pub name: String,
    /// Its token, whose sha256 the config holds.
    pub token: String,
}

impl Tenant {
    fn new(name: &str) -> Tenant {
        Tenant {
            name: name.to_string(),
            token: format!("wt-{name}-{}", uuid::Uuid::now_v7().simple()),
        }
    }
}

/// Which state store a site uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `state.db` in the site's folder.
    Sqlite,
    /// A fresh schema of `WARDEN_TEST_POSTGRES_URL`.
    Postgres,
}

/// One operator's site: a temp folder with `warden.toml`, `crm.db` and the state store.
pub struct Site {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    state_section: String,
    /// Tenant `acme`.
    pub acme: Tenant,
    /// Tenant `globex`.
    pub globex: Tenant,
    // Dropped after every process that used it (the handles hold no reference to the site, so
    // tests keep the site alive longer than their processes by declaring it first).
    _schema: Option<PgTestSchema>,
}

impl Site {
    /// A site on `store`; `None` (with a printed message) when it is PostgreSQL and
    /// `WARDEN_TEST_POSTGRES_URL` is not set.
    pub fn open(label: &str, store: Store) -> Option<Site> {
        let schema = match store {
            Store::Sqlite => None,
            Store::Postgres => Some(PgTestSchema::create(label)?),
        };
        let dir = tempfile::tempdir().expect("a temp dir for the site");
        // The SQL source the helper's `sql/query` is denied: it must exist for the config to load.
        rusqlite::Connection::open(dir.path().join("crm.db"))
            .and_then(|c| c.execute_batch("CREATE TABLE customers (name TEXT);"))
            .expect("create crm.db");
        let mut env = Vec::new();
        let state_section = match &schema {
            None => format!(
                "url = \"sqlite://{}\"",
                dir.path().join("state.db").display()
            ),
            Some(schema) => {
                env.push((STATE_URL_ENV.to_string(), schema.url().to_string()));
                format!("url_env = \"{STATE_URL_ENV}\"")
            }
        };
        let site = Site {
            dir,
            env,
            state_section,
            acme: Tenant::new(ACME),
            globex: Tenant::new(GLOBEX),
            _schema: schema,
        };
        site.write_config(&site.config(&helper_tools_default()));
        Some(site)
    }

    /// A SQLite site.
    pub fn sqlite() -> Site {
        Site::open("sqlite", Store::Sqlite).expect("a SQLite site is never skipped")
    }

    /// The site's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The config's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("warden.toml")
    }

    /// The config text, with `helper_tools` as the helper's `tools` list (TOML array items).
    pub fn config(&self, helper_tools: &str) -> String {
        format!(
            r#"
[state]
{state}

[serve]
allowed_hosts = ["{ALLOWED_HOST}"]
max_body_kb = {MAX_BODY_KB}

[plugins.text-tools]
path = "{text_tools}"

[plugins.memory-probe]
path = "{memory_probe}"
max = ["memory:session:rw"]

[plugins.spin-forever]
path = "{spin_forever}"

[plugins.sql]
path = "{sql}"
max = ["sql:crm:ro"]

[sources.crm]
kind = "sqlite"
path = "crm.db"

[agents.{HELPER}]
tools = [{helper_tools}]
grants = []
limits = {{ call_timeout_ms = {HELPER_TIMEOUT_MS} }}

[agents.{SLOW}]
tools = ["spin-forever/*", "text-tools/echo"]
limits = {{ call_timeout_ms = {SLOW_TIMEOUT_MS} }}

[agents.{OTHER}]
tools = ["text-tools/*"]

[tenants.{ACME}]
token_sha256 = "{acme_sha}"
agents = ["{HELPER}", "{SLOW}"]

[tenants.{GLOBEX}]
token_sha256 = "{globex_sha}"
agents = ["{OTHER}"]
"#,
            state = self.state_section,
            text_tools = plugin_path("text-tools").display(),
            memory_probe = plugin_path("memory-probe").display(),
            spin_forever = plugin_path("spin-forever").display(),
            sql = plugin_path("sql").display(),
            acme_sha = sha256_hex(&self.acme.token),
            globex_sha = sha256_hex(&self.globex.token),
        )
    }

    /// Writes `text` as the site's `warden.toml`.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write warden.toml");
    }

    /// The site's environment (the state URL of a PostgreSQL site).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// `warden ARGS` in the site's folder, with its environment and the shared compile cache.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(WARDEN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WARDEN_CACHE_DIR", shared_cache_dir())
            .env_remove("WARDEN_LOG")
            .env_remove("WARDEN_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // For debugging a failure: MCP_TEST_WARDEN_LOG=debug passes a log filter on.
        if let Some(filter) = std::env::var_os("MCP_TEST_WARDEN_LOG") {
            cmd.env("WARDEN_LOG", filter);
        }
        cmd
    }

    /// The args of `warden mcp` on this site for `agent`, as a client's config would hold them.
    pub fn mcp_args(&self, agent: &str) -> Vec<String> {
        vec![
            "mcp".to_string(),
            "--config".to_string(),
            self.config_path().display().to_string(),
            "--agent".to_string(),
            agent.to_string(),
        ]
    }

    /// Runs `warden ARGS` in the site's folder to completion (stdin empty, output captured),
    /// within `deadline`.
    pub fn run(&self, args: &[&str], deadline: Duration) -> crate::common::Run {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::common::run_command_within(cmd, None, deadline)
    }

    /// Starts `warden mcp --config warden.toml --agent AGENT EXTRA...`.
    pub fn mcp(&self, agent: &str, extra: &[&str]) -> Mcp {
        let mut args = vec!["mcp", "--config", "warden.toml", "--agent", agent];
        args.extend_from_slice(extra);
        Mcp::start(self.command(&args))
    }

    /// Starts `warden serve --config warden.toml --listen 127.0.0.1:0`.
    pub fn serve(&self) -> Serve {
        let args = [
            "serve",
            "--config",
            "warden.toml",
            "--listen",
            "127.0.0.1:0",
        ];
        Serve::start(self.command(&args))
    }

    /// The audit log, oldest first (`warden audit tail --json -n 1000`).
    pub fn audit(&self) -> Vec<Value> {
        let run = self.run(
            &[
                "audit",
                "tail",
                "--config",
                "warden.toml",
                "--json",
                "-n",
                "1000",
            ],
            Duration::from_secs(60),
        );
        run.assert_code(0);
        run.stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("an audit record is JSON"))
            .collect()
    }

    /// The audit log's `call` records of `plugin/tool`.
    pub fn call_records(&self, target: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["capability"] == "call" && r["target"] == target)
            .collect()
    }

    /// Polls the audit log (at most `deadline`) until a `call` record of `target` matches.
    pub fn wait_call_record(
        &self,
        target: &str,
        deadline: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let records = self.call_records(target);
            if let Some(found) = records.iter().find(|r| matches(r)) {
                return found.clone();
            }
            assert!(
                start.elapsed() < deadline,
                "no matching audit record of {target} within {} ms; its records:\n{records:#?}",
                deadline.as_millis()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The helper's tools in the default config.
pub fn helper_tools_default() -> String {
    r#""text-tools/echo", "memory-probe/*", "spin-forever/*", "sql/query""#.to_string()
}

type Shared = Arc<Mutex<String>>;

fn text_of(shared: &Shared) -> String {
    shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Copies `pipe` into `into`, line by line, until EOF.
fn drain_into(pipe: impl Read + Send + 'static, into: Shared) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
}

/// The session id in `warden mcp`'s start line (`... session <36 chars of [0-9a-f-]> ...`).
pub fn session_in(line: &str) -> Option<String> {
    line.match_indices("session ").find_map(|(at, word)| {
        let id: String = line[at + word.len()..].chars().take(36).collect();
        (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(id)
    })
}

/// What the stdout reader thread saw.
enum Line {
    Json(Value),
    NotJson(String),
}

/// A running `warden mcp`, spoken to one JSON-RPC message per line. Dropping it kills it.
pub struct Mcp {
    child: Option<Child>,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    lines: Receiver<Line>,
    /// Messages read while looking for another one, in arrival order.
    pending: VecDeque<Value>,
    /// Every message read so far, for failure messages.
    seen: Vec<Value>,
    stderr: Shared,
    /// The session of the start line.
    pub session: String,
    /// The whole start line.
    pub start_line: String,
    next_id: i64,
}

impl Mcp {
    /// Spawns `cmd` (a `warden mcp` command) and waits for its start line on stderr.
    pub fn start(mut cmd: Command) -> Mcp {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn warden mcp");
        let stderr: Shared = Arc::default();
        drain_into(child.stderr.take().expect("piped stderr"), stderr.clone());
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if std::env::var_os("MCP_TEST_TRACE").is_some() {
                    eprintln!("< {}", &text[..text.len().min(200)]);
                }
                line.clear();
                let parsed = match serde_json::from_str::<Value>(&text) {
                    Ok(v) => Line::Json(v),
                    Err(_) => Line::NotJson(text),
                };
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        });
        let stdin = Arc::new(Mutex::new(child.stdin.take()));
        let mut mcp = Mcp {
            child: Some(child),
            stdin,
            lines,
            pending: VecDeque::new(),
            seen: Vec::new(),
            stderr,
            session: String::new(),
            start_line: String::new(),
            next_id: 1,
        };
        let started = Instant::now();
        loop {
            let text = text_of(&mcp.stderr);
            if let Some(line) = text.lines().find(|l| l.starts_with("warden mcp:")) {
                mcp.session = session_in(line).unwrap_or_else(|| {
                    panic!("the start line names no session id: {line:?}\nstderr:\n{text}")
                });
                mcp.start_line = line.to_string();
                return mcp;
            }
            if !mcp.running() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "warden mcp exited before its start line; stderr:\n{}",
                    text_of(&mcp.stderr)
                );
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "warden mcp printed no `warden mcp: ...` start line in {} s; stderr:\n{text}",
                START_DEADLINE.as_secs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("still ours").id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        text_of(&self.stderr)
    }

    /// A fresh request id.
    pub fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Writes `bytes` and a newline to its stdin.
    pub fn send_line(&mut self, bytes: &[u8]) {
        if std::env::var_os("MCP_TEST_TRACE").is_some() {
            eprintln!(
                "> {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            );
        }
        let mut guard = self.stdin.lock().unwrap();
        let pipe = guard.as_mut().expect("stdin is still open");
        pipe.write_all(bytes)
            .and_then(|_| pipe.write_all(b"\n"))
            .and_then(|_| pipe.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "writing to warden mcp: {e}; stderr:\n{}",
                    text_of(&self.stderr)
                )
            });
    }

    /// Writes one message.
    pub fn send(&mut self, message: &Value) {
        self.send_line(message.to_string().as_bytes());
    }

    /// Sends a request and returns its id.
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.id();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Writes `total` bytes made by `chunk(i)` (then a newline) from another thread, since the
    /// server may stop reading; returns when it is written or `deadline` passes (then fails).
    pub fn send_big_line(&mut self, head: &[u8], filler: u8, total: usize, tail: &[u8]) {
        let stdin = self.stdin.clone();
        let head = head.to_vec();
        let tail = tail.to_vec();
        let (done, written) = channel();
        std::thread::spawn(move || {
            let mut guard = stdin.lock().unwrap();
            let Some(pipe) = guard.as_mut() else {
                let _ = done.send(Err("stdin closed".to_string()));
                return;
            };
            let block = vec![filler; 1 << 20];
            let result = (|| {
                pipe.write_all(&head)?;
                let mut left = total;
                while left > 0 {
                    let n = left.min(block.len());
                    pipe.write_all(&block[..n])?;
                    left -= n;
                }
                pipe.write_all(&tail)?;
                pipe.write_all(b"\n")?;
                pipe.flush()
            })();
            let _ = done.send(result.map_err(|e| e.to_string()));
        });
        match written.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "writing the big line: {e} (did warden mcp exit?); stderr:\n{}",
                self.stderr()
            ),
            Err(_) => panic!(
                "warden mcp did not read a {total}-byte line within 120 s: it stopped reading \
                 its stdin; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// The next message from the channel (not from `pending`), or None at `deadline`.
    fn read_one(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(Line::Json(v)) => {
                self.seen.push(v.clone());
                Some(v)
            }
            Ok(Line::NotJson(text)) => panic!(
                "warden mcp wrote a stdout line that is not JSON (stdout must carry only \
                 JSON-RPC): {text:?}\nstderr:\n{}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                // EOF on stdout: give the exit status a moment to be reaped.
                std::thread::sleep(Duration::from_millis(100));
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "warden mcp closed its stdout (exit status {status:?}) while the test \
                     waited for a message; the connection must stay open.\nmessages so far:\n\
                     {:#?}\nstderr:\n{}",
                    self.seen,
                    self.stderr()
                )
            }
        }
    }

    /// The first message (pending ones first) that `matches`, within `timeout`; others are
    /// kept for later. Fails naming `what` when none comes.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        self.try_wait_for(timeout, &matches).unwrap_or_else(|| {
            panic!(
                "no {what} within {} ms; messages so far:\n{:#?}\nstderr:\n{}",
                timeout.as_millis(),
                self.seen,
                self.stderr()
            )
        })
    }

    /// Like [`Mcp::wait_for`], but None at the deadline.
    pub fn try_wait_for(
        &mut self,
        timeout: Duration,
        matches: &dyn Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(at) = self.pending.iter().position(matches) {
            return self.pending.remove(at);
        }
        let deadline = Instant::now() + timeout;
        while let Some(v) = self.read_one(deadline) {
            if matches(&v) {
                return Some(v);
            }
            self.pending.push_back(v);
        }
        None
    }

    /// The response to request `id` (a result or an error), within `timeout`.
    pub fn response(&mut self, id: &Value, timeout: Duration) -> Value {
        let wanted = id.clone();
        self.wait_for(&format!("response to id {id}"), timeout, move |v| {
            v.get("method").is_none() && v.get("id") == Some(&wanted)
        })
    }

    /// Sends a request and returns its whole response message.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.response(&json!(id), READ_DEADLINE)
    }

    /// Sends a request and returns its `result`, failing on an error reply.
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let reply = self.request(method, params.clone());
        assert!(
            reply.get("error").is_none(),
            "{method} {params} got an error reply: {reply:#}\nstderr:\n{}",
            self.stderr()
        );
        reply["result"].clone()
    }

    /// Sends a request and returns its JSON-RPC error (code and message), failing on a result.
    pub fn error(&mut self, method: &str, params: Value) -> (i64, String, Value) {
        let reply = self.request(method, params.clone());
        expect_error(&reply, &format!("{method} {params}"))
    }

    /// The initialize handshake at `version`: asserts the server agreed to it and announced
    /// tools, then sends `notifications/initialized`. Returns the initialize result.
    pub fn initialize(&mut self, version: &str) -> Value {
        let result = self.result(
            "initialize",
            json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "warden-mcp-tests", "version": "1.0.0"}
            }),
        );
        assert_eq!(
            result["protocolVersion"], version,
            "the server should agree to {version}: {result:#}"
        );
        assert!(
            result["capabilities"]["tools"].is_object(),
            "the server announces no tools capability: {result:#}"
        );
        self.notify("notifications/initialized", json!({}));
        result
    }

    /// `tools/list`: the tools, by name.
    pub fn tools(&mut self) -> Vec<Value> {
        let result = self.result("tools/list", json!({}));
        result["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools/list has no tools array: {result:#}"))
            .clone()
    }

    /// The names `tools/list` gives, sorted.
    pub fn tool_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tools()
            .iter()
            .map(|t| t["name"].as_str().expect("a tool name").to_string())
            .collect();
        names.sort();
        names
    }

    /// `tools/call NAME ARGUMENTS`: the result (failing on a protocol error).
    pub fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.result("tools/call", json!({"name": name, "arguments": arguments}))
    }

    /// The peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in:\n{status}"))
    }

    /// Resets its peak resident set size to the current one (`5` into `/proc/PID/clear_refs`),
    /// so that a later [`Mcp::peak_rss_kb`] measures what happened since, not the start-up.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .expect("reset the peak RSS through /proc/PID/clear_refs");
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Closes its stdin (EOF) and waits at most `deadline` for it to exit.
    pub fn close(&mut self, deadline: Duration) -> ExitStatus {
        self.stdin.lock().unwrap().take();
        let start = Instant::now();
        let child = self.child.as_mut().expect("still ours");
        loop {
            if let Some(status) = child.try_wait().expect("wait for warden mcp") {
                self.child = None;
                return status;
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "warden mcp did not exit within {} ms of EOF on stdin; stderr:\n{}",
                    deadline.as_millis(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asserts that `reply` is a JSON-RPC error and returns its code, message and id.
pub fn expect_error(reply: &Value, what: &str) -> (i64, String, Value) {
    assert!(
        reply.get("result").is_none(),
        "{what} should get an error reply, got a result: {reply:#}"
    );
    assert_eq!(reply["jsonrpc"], "2.0", "{what}: {reply:#}");
    let code = reply["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: no error.code in {reply:#}"));
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error.message in {reply:#}"))
        .to_string();
    (code, message, reply["id"].clone())
}

/// The text of a tools/call result's first content block, asserting it is `text`.
pub fn text_content(result: &Value) -> String {
    let block = &result["content"][0];
    assert_eq!(block["type"], "text", "content[0] is not text: {result:#}");
    block["text"]
        .as_str()
        .unwrap_or_else(|| panic!("content[0].text is not a string: {result:#}"))
        .to_string()
}

/// Asserts a tool error result (`isError: true`, a message, `_meta["warden/error"]` = `kind`)
/// and returns the message.
pub fn expect_tool_error(result: &Value, kind: &str) -> String {
    assert_eq!(
        result["isError"], true,
        "expected an isError result: {result:#}"
    );
    let message = text_content(result);
    assert!(!message.is_empty(), "an empty error message: {result:#}");
    assert_eq!(
        result["_meta"]["warden/error"], kind,
        "_meta[\"warden/error\"]: {result:#}"
    );
    message
}

/// A running `warden serve`. Dropping it kills the process.
pub struct Serve {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://IP:PORT`.
    pub base: String,
    stderr: Shared,
}

impl Serve {
    fn start(mut cmd: Command) -> Serve {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn warden serve");
        let stderr: Shared = Arc::default();
        drain_into(child.stderr.take().expect("piped stderr"), stderr.clone());
        let (first, first_line) = channel::<String>();
        let pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = String::new();
            let mut sent = false;
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                if !sent {
                    let _ = first.send(line.clone());
                    sent = true;
                }
                line.clear();
            }
        });
        let line = match first_line.recv_timeout(START_DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "warden serve printed no first line ({e:?}); status {status:?}\nstderr:\n{}",
                    text_of(&stderr)
                );
            }
        };
        let base = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the first stdout line is not `listening on ...`: {line:?}"))
            .to_string();
        let addr: SocketAddr = base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("`{base}` is not http://IP:PORT"));
        Serve {
            child: Some(child),
            addr,
            base,
            stderr,
        }
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        text_of(&self.stderr)
    }

    /// Its state line in `/proc/PID/status` (`Z (zombie)` once it died, with the wait status
    /// from `/proc/PID/stat`), for failure messages.
    pub fn state(&self) -> String {
        let pid = self.child.as_ref().expect("still ours").id();
        let state = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("State: unknown")
            .to_string();
        // The last field of /proc/PID/stat is the wait status: signal in the low 7 bits.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let status: i64 = stat
            .split_whitespace()
            .last()
            .and_then(|f| f.parse().ok())
            .unwrap_or(-1);
        format!(
            "{state}, wait status {status} (signal {}, exit code {})",
            status & 0x7f,
            (status >> 8) & 0xff
        )
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("still ours").id() as i32;
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// The MCP URL of `agent` (`/mcp/AGENT`).
    pub fn mcp_url(&self, agent: &str) -> String {
        format!("{}/mcp/{agent}", self.base)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResp {
    /// The request sent (its head, and the body's first bytes).
    pub request: String,
    /// The status code.
    pub status: u16,
    /// The head (status line and headers).
    pub head: String,
    /// The body (de-chunked).
    pub body: String,
}

impl RawResp {
    /// The value of header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The JSON-RPC messages of the body: the JSON body itself, or the `data:` of each
    /// server-sent event.
    pub fn messages(&self) -> Vec<Value> {
        let sse = self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if sse {
            sse_messages(&self.body)
        } else if self.body.trim().is_empty() {
            Vec::new()
        } else {
            vec![
                serde_json::from_str(&self.body).unwrap_or_else(|e| {
                    panic!("the body is neither SSE nor JSON ({e}):\n{self:#?}")
                }),
            ]
        }
    }

    /// The response to request `id` among [`RawResp::messages`].
    pub fn reply(&self, id: i64) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no JSON-RPC response to id {id} in:\n{self:#?}"))
    }
}

/// The JSON `data:` of each event of a `text/event-stream` body.
fn sse_messages(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if !data.is_empty() {
                if let Ok(v) = serde_json::from_str(&data.join("\n")) {
                    out.push(v);
                }
                data.clear();
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if !data.is_empty()
        && let Ok(v) = serde_json::from_str(&data.join("\n"))
    {
        out.push(v);
    }
    out
}

/// Whether `body` (so far) holds a whole JSON-RPC response, as JSON or as an SSE event.
fn has_response(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok()
        || sse_messages(body)
            .iter()
            .any(|m| m.get("id").is_some() && m.get("method").is_none())
}

/// Sends an HTTP/1.1 request to `addr` and reads the response: to the end, or, for a stream
/// that stays open (SSE), until it holds a JSON-RPC response; at most `READ_DEADLINE`.
pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResp {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{}\r\n", addr.port()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let described = format!(
        "{head}{}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    let mut stream = TcpStream::connect(addr).expect("connect to warden serve");
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    stream.write_all(head.as_bytes()).expect("send the head");
    // A server may answer (413) and close before it has read a large body: not an error here.
    let _ = stream.write_all(body);
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                assert!(
                    !bytes.is_empty(),
                    "reading the response to {described}: {e}"
                );
                break;
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            let body = if text
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                dechunk(body)
            } else {
                body.to_string()
            };
            if has_response(&body) {
                break;
            }
        }
        assert!(
            start.elapsed() < READ_DEADLINE,
            "no whole response within {} s to:\n{described}\nread so far:\n{text}",
            READ_DEADLINE.as_secs()
        );
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head_text, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?} to:\n{described}"));
    let status = head_text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head_text:?}"));
    let chunked = head_text.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    RawResp {
        request: described,
        status,
        head: head_text.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            // A chunk still arriving: keep what there is.
            out.push_str(&after[..after.len().min(size)]);
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

/// An initialize request body at 2025-06-18 with `id`.
pub fn initialize_body(id: i64) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "warden-mcp-tests", "version": "1.0.0"}
        }
    })
    .to_string()
    .into_bytes()
}

/// The headers a streamable HTTP client sends with a POST, plus `token`'s bearer header.
pub fn mcp_headers(token: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("Accept", "application/json, text/event-stream".to_string()),
    ];
    if let Some(token) = token {
        headers.push(("Authorization", format!("Bearer {token}")));
    }
    headers
}

/// POSTs `body` to `path` with [`mcp_headers`] and `extra` headers.
pub fn post_mcp(
    serve: &Serve,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> RawResp {
    let base = mcp_headers(token);
    let mut headers: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.extend_from_slice(extra);
    raw_http(serve.addr, "POST", path, &headers, body)
}
