//! The API tests' harness: a site (a folder with a `warden.toml` naming two tenants, a SQLite
//! ledger the `counter` plugin writes its executions to, and a state store: a SQLite file or a
//! fresh schema of the PostgreSQL named by `WARDEN_TEST_POSTGRES_URL`), a real `warden serve`
//! process on it, a real HTTP client, raw HTTP/1.1 over a `TcpStream` for what a client library
//! would not send, and a reader of server-sent events.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;
use sha2::{Digest, Sha256};
use warden::state::testing::PgTestSchema;

use crate::common::{WARDEN, plugin_path, shared_cache_dir};
use crate::model::FakeModel;
use crate::site::{Execution, Store, read_executions};

/// The agent every site configures, with the counter's and text-tools' tools.
pub const AGENT: &str = "counting";
/// The model alias of the agent.
pub const MODEL_ALIAS: &str = "fast";
/// The first tenant.
pub const ACME: &str = "acme";
/// The second tenant, with the same agent.
pub const GLOBEX: &str = "globex";
/// The extra Host name every site allows.
pub const ALLOWED_HOST: &str = "warden.example";
/// The session lease TTL, short so a restart after a kill does not wait long.
pub const LEASE_MS: u64 = 1_500;
/// The variable holding the model's (fake) API key.
const MODEL_KEY_ENV: &str = "WARDEN_TEST_MODEL_KEY";
/// The variable a PostgreSQL site's `[state] url_env` names.
const STATE_URL_ENV: &str = "WARDEN_TEST_API_STATE_URL";
/// How long `warden serve` may take to print its first line (it may compile plugins).
const START_DEADLINE: Duration = Duration::from_secs(240);

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

/// How a site is configured.
#[derive(Debug, Clone)]
pub struct Options {
    /// The state store.
    pub store: Store,
    /// Lines of the `[serve]` section besides `allowed_hosts`.
    pub serve: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            store: Store::Sqlite,
            serve: String::new(),
        }
    }
}

impl Options {
    /// The default options on `store`.
    pub fn on(store: Store) -> Options {
        Options {
            store,
            ..Options::default()
        }
    }

    /// The default options with these `[serve]` lines.
    pub fn serve(lines: &str) -> Options {
        Options {
            serve: lines.to_string(),
            ..Options::default()
        }
    }
}

/// One operator's site.
pub struct Site {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    state_section: String,
    options: Options,
    base_url: String,
    /// Tenant `acme`.
    pub acme: Tenant,
    /// Tenant `globex`.
    pub globex: Tenant,
    // Dropped after the site: the schema outlives every process that used it.
    _schema: Option<PgTestSchema>,
}

/// What a config adds to the base one (for the reload tests).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// TOML appended to the config.
    pub toml: String,
    /// More agents tenant `acme` may use.
    pub acme_agents: Vec<String>,
}

impl Site {
    /// A site whose model alias points at `model`; `None` (with a printed message) when the
    /// store is PostgreSQL and `WARDEN_TEST_POSTGRES_URL` is not set.
    pub fn open(label: &str, model: &FakeModel, options: Options) -> Option<Site> {
        let schema = match options.store {
            Store::Sqlite => None,
            Store::Postgres => Some(PgTestSchema::create(label)?),
        };
        let dir = tempfile::tempdir().expect("a temp dir for the site");
        let conn = Connection::open(dir.path().join("ledger.db")).expect("create the ledger");
        // WAL, so the test reads the ledger while a call writes it.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .expect("put the ledger in WAL mode");
        assert_eq!(mode, "wal", "the ledger's journal mode");
        drop(conn);
        let mut env = vec![(MODEL_KEY_ENV.to_string(), "test-key".to_string())];
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
            options,
            base_url: model.base_url(),
            acme: Tenant::new(ACME),
            globex: Tenant::new(GLOBEX),
            _schema: schema,
        };
        site.write_config(&site.config(&Extra::default()));
        Some(site)
    }

    /// A SQLite site (never skipped).
    pub fn sqlite(model: &FakeModel, options: Options) -> Site {
        assert_eq!(
            options.store,
            Store::Sqlite,
            "use Site::open for PostgreSQL"
        );
        Site::open("sqlite", model, options).expect("a SQLite site is never skipped")
    }

    /// The config text: the base config plus `extra`.
    pub fn config(&self, extra: &Extra) -> String {
        let mut acme_agents = vec![format!("\"{AGENT}\"")];
        acme_agents.extend(extra.acme_agents.iter().map(|a| format!("\"{a}\"")));
        format!(
            r#"
[state]
{state}
session_lease_ms = {LEASE_MS}

[serve]
allowed_hosts = ["{ALLOWED_HOST}"]
{serve}

[plugins.counter]
path = "{counter}"
max = ["sql:ledger:rw"]

[plugins.text-tools]
path = "{text_tools}"

[sources.ledger]
kind = "sqlite"
path = "ledger.db"

[models.{MODEL_ALIAS}]
backend = "openai"
base_url = "{base_url}"
api_key_env = "{MODEL_KEY_ENV}"
model = "fake-model"

[agents.{AGENT}]
model = "{MODEL_ALIAS}"
instructions = "You count and echo things with your tools. Be brief."
tools = ["counter/*", "text-tools/*"]
grants = ["ledger:rw", "model:{MODEL_ALIAS}"]
limits = {{ max_steps = 8 }}

[tenants.{ACME}]
token_sha256 = "{acme_sha}"
agents = [{acme_agents}]

[tenants.{GLOBEX}]
token_sha256 = "{globex_sha}"
agents = ["{AGENT}"]
{extra}
"#,
            state = self.state_section,
            serve = self.options.serve,
            counter = plugin_path("counter").display(),
            text_tools = plugin_path("text-tools").display(),
            base_url = self.base_url,
            acme_sha = sha256_hex(&self.acme.token),
            globex_sha = sha256_hex(&self.globex.token),
            acme_agents = acme_agents.join(", "),
            extra = extra.toml,
        )
    }

    /// Writes `text` as the site's `warden.toml`.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.dir.path().join("warden.toml"), text).expect("write warden.toml");
    }

    /// The site's `warden.toml`, as written.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("warden.toml")).unwrap_or_default()
    }

    /// `warden ARGS` in the site's folder, with its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(WARDEN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WARDEN_CACHE_DIR", shared_cache_dir())
            .env_remove("WARDEN_LOG")
            .env_remove("WARDEN_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Starts `warden serve --config warden.toml --listen 127.0.0.1:0` on the site.
    pub fn serve(&self) -> Serve {
        let args = [
            "serve",
            "--config",
            "warden.toml",
            "--listen",
            "127.0.0.1:0",
        ];
        Serve::start(self.command(&args), &self.config_text())
    }

    /// Every execution the counter recorded, in the order they started.
    pub fn executions(&self) -> Vec<Execution> {
        read_executions(&self.dir.path().join("ledger.db"))
    }

    /// The executions with `label`.
    pub fn executions_of(&self, label: &str) -> Vec<Execution> {
        self.executions()
            .into_iter()
            .filter(|e| e.label == label)
            .collect()
    }

    /// How many times each call id ran.
    pub fn runs_per_call_id(&self) -> std::collections::BTreeMap<String, usize> {
        let mut runs = std::collections::BTreeMap::new();
        for e in self.executions() {
            *runs.entry(e.call_id).or_insert(0) += 1;
        }
        runs
    }
}

type Shared = Arc<Mutex<String>>;

fn drain_into(pipe: impl Read + Send + 'static, into: Shared) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            line.clear();
        }
    });
}

/// A running `warden serve`. Dropping it kills the process.
pub struct Serve {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://IP:PORT`.
    pub base: String,
    stdout: Shared,
    stderr: Shared,
}

impl Serve {
    fn start(mut cmd: Command, config: &str) -> Serve {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn warden serve");
        let stderr: Shared = Arc::default();
        drain_into(child.stderr.take().expect("piped stderr"), stderr.clone());
        let stdout: Shared = Arc::default();
        let (first, first_line) = mpsc::channel::<String>();
        {
            let pipe = child.stdout.take().expect("piped stdout");
            let into = stdout.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                let mut sent = false;
                while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                    into.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&line);
                    if !sent {
                        let _ = first.send(line.clone());
                        sent = true;
                    }
                    line.clear();
                }
            });
        }
        let line = match first_line.recv_timeout(START_DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "warden serve printed no first line ({e:?}); status {status:?}\nstderr:\n{}\n\
                     config:\n{config}",
                    stderr.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        let base = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!("the first stdout line is not `listening on http://IP:PORT`: {line:?}")
            })
            .to_string();
        let addr: SocketAddr = base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("`{base}` is not http://IP:PORT (first line {line:?})"));
        assert!(addr.ip().is_loopback(), "{line:?}");
        assert_ne!(addr.port(), 0, "{line:?}");
        Serve {
            child: Some(child),
            addr,
            base,
            stdout,
            stderr,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the process is still ours").id() as i32
    }

    /// Sends it `signal` (libc::SIGHUP, libc::SIGTERM).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits (at most `deadline`) until stderr has `count` lines satisfying `matches`.
    pub fn wait_stderr(&mut self, what: &str, count: usize, matches: impl Fn(&str) -> bool) {
        let deadline = Duration::from_secs(30);
        let start = Instant::now();
        loop {
            let text = self.stderr();
            if text.lines().filter(|l| matches(l)).count() >= count {
                return;
            }
            assert!(
                self.running(),
                "warden serve exited while the test waited for {what} on stderr:\n{text}"
            );
            assert!(
                start.elapsed() < deadline,
                "waited {} ms for {what} on stderr; it says:\n{text}",
                deadline.as_millis()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `deadline`) for it to exit; fails the test after that.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("the process is still ours");
        loop {
            if let Some(status) = child.try_wait().expect("wait for warden serve") {
                self.child = None;
                // Let the drain threads read what is left.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "warden serve did not exit within {} ms; stderr:\n{}",
                    deadline.as_millis(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the process is still ours");
        child.kill().expect("kill -9 warden serve");
        let status = child.wait().expect("reap warden serve");
        assert!(
            status.code().is_none(),
            "warden serve exited ({status:?}) before it could be killed; stderr:\n{}",
            self.stderr()
        );
    }

    /// A client with `tenant`'s token.
    pub fn api(&self, tenant: &Tenant) -> Api {
        Api::new(&self.base, Some(&tenant.token))
    }

    /// A client that sends no token.
    pub fn anonymous(&self) -> Api {
        Api::new(&self.base, None)
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

/// A response, with the request it answers (for failure messages).
pub struct Resp {
    /// `METHOD PATH` and a preview of the body sent.
    pub request: String,
    /// The status code.
    pub status: u16,
    /// The headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request: {}\nresponse: {} {:?}\n{}",
            self.request, self.status, self.headers, self.body
        )
    }
}

impl Resp {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}):\n{self:?}"))
    }

    /// Asserts the status and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status:\n{self:?}");
        self.json()
    }

    /// Asserts an error response: the status, `{"error": {"kind", "message"}}` with a kind among
    /// `kinds`, and a JSON content type. Returns the message.
    pub fn expect_error(&self, status: u16, kinds: &[&str]) -> String {
        assert_eq!(self.status, status, "unexpected status:\n{self:?}");
        let body = self.json();
        let kind = body["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.kind:\n{self:?}"));
        assert!(
            kinds.contains(&kind),
            "error kind {kind:?}, expected one of {kinds:?}:\n{self:?}"
        );
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message:\n{self:?}"));
        assert!(!message.is_empty(), "an empty error message:\n{self:?}");
        message.to_string()
    }
}

/// An HTTP client for one server, with one tenant's token (or none).
pub struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client for `base` sending `token`.
    pub fn new(base: &str, token: Option<&str>) -> Api {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the HTTP client");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(180))
            .build()
            .expect("an HTTP client");
        Api {
            runtime,
            client,
            base: base.to_string(),
            token: token.map(str::to_string),
        }
    }

    /// The same server with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api::new(&self.base, token)
    }

    /// Sends `method path` with `headers` and `body`, and the token unless a header says
    /// `authorization` already.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let url = format!("{}{path}", self.base);
        let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.client.request(method_value, &url);
        if let Some(token) = &self.token
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let preview = body
            .as_ref()
            .map(|b| {
                let text = String::from_utf8_lossy(b);
                if text.chars().count() > 300 {
                    format!(
                        " {}… ({} bytes)",
                        text.chars().take(300).collect::<String>(),
                        b.len()
                    )
                } else {
                    format!(" {text}")
                }
            })
            .unwrap_or_default();
        if let Some(body) = body {
            request = request.body(body);
        }
        let described = format!("{method} {path} {headers:?}{preview}");
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{described}: {e:?}"));
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let bytes = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{described}: reading the body: {e:?}"));
            Resp {
                request: described,
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], None)
    }

    /// `POST path` with `body` as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, &[], None)
    }

    /// Creates a session of `agent` and returns its id (asserting 201 and the Session shape).
    pub fn create_session(&self, agent: &str) -> String {
        let resp = self.post("/v1/sessions", &serde_json::json!({ "agent": agent }));
        let session = resp.expect(201);
        assert_session_shape(&session, &resp);
        assert_eq!(session["agent"], agent, "{resp:?}");
        session["id"].as_str().unwrap().to_string()
    }

    /// Starts a task in `session` (asserting 202) and returns its id.
    pub fn start_task(&self, session: &str, input: &str) -> String {
        let resp = self.post(
            &format!("/v1/sessions/{session}/tasks"),
            &serde_json::json!({ "input": input }),
        );
        let started = resp.expect(202);
        assert_eq!(started["session"], session, "{resp:?}");
        let task = started["task"]
            .as_str()
            .unwrap_or_else(|| panic!("no task id:\n{resp:?}"));
        uuid::Uuid::parse_str(task).unwrap_or_else(|e| panic!("task id {task:?}: {e}\n{resp:?}"));
        task.to_string()
    }

    /// `GET /v1/sessions/{session}/tasks/{task}`, asserting 200 and the TaskStatus shape.
    pub fn task(&self, session: &str, task: &str) -> Value {
        let resp = self.get(&format!("/v1/sessions/{session}/tasks/{task}"));
        let status = resp.expect(200);
        assert_task_shape(&status, &resp);
        assert_eq!(status["task"], task, "{resp:?}");
        assert_eq!(status["session"], session, "{resp:?}");
        status
    }

    /// Polls the task until it has ended: `answered` or `max_steps` (at most `deadline`). For a
    /// server that resumes interrupted tasks at start, `interrupted` is not an end.
    pub fn wait_task_end(&self, session: &str, task: &str, deadline: Duration) -> Value {
        let start = Instant::now();
        loop {
            let status = self.task(session, task);
            if status["status"] == "answered" || status["status"] == "max_steps" {
                return status;
            }
            if start.elapsed() >= deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the task until its status is no longer `running` (at most `deadline`).
    pub fn wait_task(&self, session: &str, task: &str, deadline: Duration) -> Value {
        let start = Instant::now();
        loop {
            let status = self.task(session, task);
            if status["status"] != "running" {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "task {task} still running after {} ms: {status:#}",
                deadline.as_millis()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Asserts that `v` is a Session: id, agent, status, created_at_ms, updated_at_ms.
pub fn assert_session_shape(v: &Value, resp: &Resp) {
    let id = v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a session without an id:\n{resp:?}"));
    assert!(!id.is_empty(), "{resp:?}");
    assert!(v["agent"].is_string(), "session.agent:\n{resp:?}");
    let status = v["status"].as_str().unwrap_or("");
    assert!(
        ["idle", "running", "interrupted", "closed"].contains(&status),
        "session.status {status:?}:\n{resp:?}"
    );
    let created = v["created_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("session.created_at_ms:\n{resp:?}"));
    let updated = v["updated_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("session.updated_at_ms:\n{resp:?}"));
    // Milliseconds since the epoch: after 2020 and no earlier than creation.
    assert!(
        created > 1_577_836_800_000,
        "created_at_ms {created}:\n{resp:?}"
    );
    assert!(updated >= created, "updated before created:\n{resp:?}");
}

/// Asserts that `v` is a TaskStatus.
pub fn assert_task_shape(v: &Value, resp: &Resp) {
    for field in ["task", "session", "input"] {
        assert!(v[field].is_string(), "TaskStatus.{field}:\n{resp:?}");
    }
    let status = v["status"].as_str().unwrap_or("");
    assert!(
        ["running", "answered", "max_steps", "interrupted"].contains(&status),
        "TaskStatus.status {status:?}:\n{resp:?}"
    );
    assert!(
        v["answer"].is_null() || v["answer"].is_string(),
        "TaskStatus.answer:\n{resp:?}"
    );
    assert!(
        v.get("answer").is_some(),
        "TaskStatus has an answer field (null while there is none):\n{resp:?}"
    );
    assert!(
        v["model_steps"].is_u64(),
        "TaskStatus.model_steps:\n{resp:?}"
    );
    assert!(v["tool_calls"].is_u64(), "TaskStatus.tool_calls:\n{resp:?}");
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResp {
    /// The request sent, as text.
    pub request: String,
    /// The status code.
    pub status: u16,
    /// The head (status line and headers).
    pub head: String,
    /// The body (de-chunked).
    pub body: String,
}

impl RawResp {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}):\n{self:#?}"))
    }

    /// The error's kind.
    pub fn error_kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.kind:\n{self:#?}"))
            .to_string()
    }
}

/// Sends `request` (whole, as written; it should say `Connection: close`) to `addr` and reads
/// the response to the end.
pub fn raw_request(addr: SocketAddr, request: &str) -> RawResp {
    let mut stream = TcpStream::connect(addr).expect("connect to warden serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(request.as_bytes())
        .expect("send a request");
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        // A reset after a whole response is still a response.
        assert!(
            !bytes.is_empty(),
            "reading the response to {request:?}: {e}"
        );
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?} (request {request:?})"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    RawResp {
        request: request.to_string(),
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its `event:` name (`message` when it has none).
    pub name: String,
    /// Its `data:` lines, joined.
    pub data: String,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| {
            panic!(
                "event {}'s data is not JSON ({e}): {:?}",
                self.name, self.data
            )
        })
    }
}

/// Parses a `text/event-stream` body into its events (comments and ids skipped).
pub fn parse_sse(text: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let mut name = String::new();
    let mut data: Vec<String> = Vec::new();
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if !data.is_empty() || !name.is_empty() {
                events.push(Event {
                    name: if name.is_empty() {
                        "message".to_string()
                    } else {
                        std::mem::take(&mut name)
                    },
                    data: data.join("\n"),
                });
                data.clear();
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_string(),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
    if !data.is_empty() {
        events.push(Event {
            name: if name.is_empty() {
                "message".to_string()
            } else {
                name
            },
            data: data.join("\n"),
        });
    }
    events
}

/// Polls `check` every 20 ms until it gives a value, failing after `deadline` or when `serve`
/// exits first.
pub fn wait_for<T>(
    serve: &mut Serve,
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            serve.running(),
            "warden serve exited while the test waited for {what}; stderr:\n{}",
            serve.stderr()
        );
        assert!(
            start.elapsed() < deadline,
            "waited {} ms for {what}; stderr:\n{}",
            deadline.as_millis(),
            serve.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
