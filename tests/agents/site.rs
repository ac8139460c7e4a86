//! One operator's site per test: a temporary folder with a `warden.toml`, a SQLite ledger the
//! `counter` plugin writes its executions to, a state store (a SQLite file, or a fresh schema of
//! the PostgreSQL named by `WARDEN_TEST_POSTGRES_URL`), and ways to run `warden agent` on it,
//! read the ledger, and read a session's journal straight from the store.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use warden::state::journal::JournalEntry;
use warden::state::sessions::SessionId;
use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl};

use crate::common::{Run, run_command, warden_command};
use crate::model::{FakeModel, Wire};

/// The agent every site configures.
pub const AGENT: &str = "counting";
/// Its instructions, which the model must see as the system prompt.
pub const INSTRUCTIONS: &str = "You count things with the counter tools. Be brief.";
/// The tenant `warden agent` uses when `--tenant` is not given.
pub const TENANT: &str = "local";
/// The lease TTL the sites configure, short so a resume after a kill does not wait long.
pub const LEASE_MS: u64 = 1_500;
/// The variable holding the model's (fake) API key.
const MODEL_KEY_ENV: &str = "WARDEN_TEST_MODEL_KEY";
/// The variable a PostgreSQL site's `[state] url_env` names.
const STATE_URL_ENV: &str = "WARDEN_TEST_AGENT_STATE_URL";

/// Which state store a site uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A SQLite file in the site's folder.
    Sqlite,
    /// A fresh schema of the test PostgreSQL (`WARDEN_TEST_POSTGRES_URL`).
    Postgres,
}

/// How a site is configured.
pub struct Options {
    /// The state store.
    pub store: Store,
    /// The model protocol of alias `fast`.
    pub wire: Wire,
    /// The agent's `limits.max_steps`.
    pub max_steps: u32,
    /// The agent's `tools`, as a TOML array.
    pub tools: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            store: Store::Sqlite,
            wire: Wire::OpenAi,
            max_steps: 8,
            tools: r#"["counter/*"]"#,
        }
    }
}

/// Fails the test, saying why, when this binary has no `warden agent run` yet.
pub fn require_agent_cli() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let run = run_command(warden_command(&["agent", "run", "--help"]), None);
        if run.code == 0 {
            Ok(())
        } else {
            Err(format!(
                "this `warden` binary has no `agent run` command yet (issue 11: the agent loop and \
                 its CLI); `warden agent run --help` exited {}:\n{}",
                run.code, run.stderr
            ))
        }
    });
    if let Err(why) = checked {
        panic!("{why}");
    }
}

/// A site: its folder, config, ledger and store.
pub struct Site {
    dir: tempfile::TempDir,
    store: Store,
    state_url: StateUrl,
    env: Vec<(String, String)>,
    // Dropped after the site: the schema outlives every process that used it.
    _schema: Option<PgTestSchema>,
}

/// One row of the ledger: one execution of `counter/count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The call id the host gave the call.
    pub call_id: String,
    /// The session the call ran for.
    pub session: String,
    /// The agent the call ran for.
    pub agent: String,
    /// The label it was given.
    pub label: String,
    /// When it started, by the guest's wall clock.
    pub started_ms: i64,
    /// When it finished; `None` while it runs, or if it never did.
    pub finished_ms: Option<i64>,
}

impl Site {
    /// A SQLite-backed site whose model alias points at `model`.
    pub fn new(model: &FakeModel, options: Options) -> Site {
        assert_eq!(
            options.store,
            Store::Sqlite,
            "use Site::open for a PostgreSQL site (it may be skipped)"
        );
        Site::open("sqlite", model, options).expect("a SQLite site is never skipped")
    }

    /// A site on `options.store`; `None` (with a printed message) when that is PostgreSQL and
    /// `WARDEN_TEST_POSTGRES_URL` is not set.
    pub fn open(label: &str, model: &FakeModel, options: Options) -> Option<Site> {
        let site = Site::configure(label, model, options)?;
        require_agent_cli();
        Some(site)
    }

    /// [`Site::open`] without the check that the binary has `warden agent` (for the tests of
    /// the site's config itself).
    pub fn configure(label: &str, model: &FakeModel, options: Options) -> Option<Site> {
        let schema = match options.store {
            Store::Sqlite => None,
            Store::Postgres => Some(PgTestSchema::create(label)?),
        };
        let dir = tempfile::tempdir().expect("a temp dir for the site");
        let ledger = dir.path().join("ledger.db");
        let conn = Connection::open(&ledger).expect("create the ledger database");
        // WAL, so the test reads the ledger while a call writes it.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .expect("put the ledger in WAL mode");
        assert_eq!(mode, "wal", "the ledger's journal mode");
        drop(conn);

        let mut env = vec![(MODEL_KEY_ENV.to_string(), "test-key".to_string())];
        let (state_section, state_url) = match &schema {
            None => {
                let path = dir.path().join("state.db");
                (
                    format!("url = \"sqlite://{}\"", path.display()),
                    StateUrl::Sqlite(path),
                )
            }
            Some(schema) => {
                env.push((STATE_URL_ENV.to_string(), schema.url().to_string()));
                (
                    format!("url_env = \"{STATE_URL_ENV}\""),
                    StateUrl::Postgres(schema.url().to_string()),
                )
            }
        };
        let backend = match options.wire {
            Wire::OpenAi => "openai",
            Wire::Anthropic => "anthropic",
        };
        let counter = crate::common::plugin_path("counter");
        let text_tools = crate::common::plugin_path("text-tools");
        let config = format!(
            r#"
[state]
{state_section}
session_lease_ms = {LEASE_MS}

[plugins.counter]
path = "{counter}"
max = ["sql:ledger:rw"]

# Loaded, but not among the agent's tools: a call of it must be refused.
[plugins.text-tools]
path = "{text_tools}"

[sources.ledger]
kind = "sqlite"
path = "{ledger}"

[models.fast]
backend = "{backend}"
base_url = "{base_url}"
api_key_env = "{MODEL_KEY_ENV}"
model = "fake-model"

[agents.{AGENT}]
model = "fast"
instructions = "{INSTRUCTIONS}"
tools = {tools}
grants = ["ledger:rw", "model:fast"]
limits = {{ max_steps = {max_steps} }}
"#,
            counter = counter.display(),
            text_tools = text_tools.display(),
            ledger = ledger.display(),
            base_url = model.base_url(),
            tools = options.tools,
            max_steps = options.max_steps,
        );
        std::fs::write(dir.path().join("warden.toml"), config).expect("write warden.toml");
        Some(Site {
            dir,
            store: options.store,
            state_url,
            env,
            _schema: schema,
        })
    }

    /// The site's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The state store this site uses.
    pub fn store(&self) -> Store {
        self.store
    }

    /// The ledger database file.
    pub fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    /// `warden ARGS` in the site's folder, with its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = warden_command(args);
        cmd.current_dir(self.dir.path())
            .env_remove("WARDEN_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs `warden ARGS` to completion.
    pub fn warden(&self, args: &[&str]) -> Run {
        run_command(self.command(args), None)
    }

    /// `warden agent run --config warden.toml AGENT TASK EXTRA...`.
    pub fn run_args<'a>(task: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["agent", "run", "--config", "warden.toml", AGENT, task];
        args.extend_from_slice(extra);
        args
    }

    /// Runs `warden agent run --config warden.toml AGENT TASK --json EXTRA...`.
    pub fn run_task(&self, task: &str, extra: &[&str]) -> Run {
        let mut args = Site::run_args(task, &["--json"]);
        args.extend_from_slice(extra);
        self.warden(&args)
    }

    /// Runs `warden agent resume --config warden.toml --session ID --json --wait`.
    pub fn resume(&self, session: &str) -> Run {
        self.warden(&[
            "agent",
            "resume",
            "--config",
            "warden.toml",
            "--session",
            session,
            "--json",
            "--wait",
        ])
    }

    /// Starts `warden ARGS` without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        Spawned::start(self.command(args), args)
    }

    /// Every execution the counter recorded, in the order they started.
    pub fn executions(&self) -> Vec<Execution> {
        read_executions(&self.ledger())
    }

    /// The executions with `label`.
    pub fn executions_of(&self, label: &str) -> Vec<Execution> {
        self.executions()
            .into_iter()
            .filter(|e| e.label == label)
            .collect()
    }

    /// How many times each call id ran.
    pub fn runs_per_call_id(&self) -> BTreeMap<String, usize> {
        let mut runs = BTreeMap::new();
        for e in self.executions() {
            *runs.entry(e.call_id).or_insert(0) += 1;
        }
        runs
    }

    /// The session's whole journal, read from the store (as another process would), for tenant
    /// `local`.
    pub fn journal(&self, session: &str) -> Vec<JournalEntry> {
        let id: SessionId = session
            .parse()
            .unwrap_or_else(|e| panic!("`{session}` is not a session id: {e}"));
        let url = self.state_url.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to read the journal");
        runtime.block_on(async move {
            let store = StateStore::open(&url)
                .await
                .unwrap_or_else(|e| panic!("open the site's state store: {e}"));
            store
                .agent_state()
                .read_journal(TENANT, id, 0, 0)
                .await
                .unwrap_or_else(|e| panic!("read the journal of session {session}: {e}"))
        })
    }
}

/// Every execution the counter recorded in the ledger at `path`, in the order they started
/// (none before the table exists).
pub fn read_executions(path: &Path) -> Vec<Execution> {
    // Read-write (never created): a read-only connection cannot always open a WAL database.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .unwrap_or_else(|e| panic!("open the ledger {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'executions'",
            [],
            |row| row.get(0),
        )
        .expect("read the ledger's schema");
    if exists == 0 {
        return Vec::new();
    }
    let mut stmt = conn
        .prepare(
            "SELECT call_id, session, agent, label, started_ms, finished_ms FROM executions \
             ORDER BY started_ms, id",
        )
        .expect("the ledger's executions table has the counter's columns");
    stmt.query_map([], |row| {
        Ok(Execution {
            call_id: row.get(0)?,
            session: row.get(1)?,
            agent: row.get(2)?,
            label: row.get(3)?,
            started_ms: row.get(4)?,
            finished_ms: row.get(5)?,
        })
    })
    .expect("read the ledger")
    .collect::<Result<_, _>>()
    .expect("read a ledger row")
}

/// A `warden` process started in the background. Its output is drained as it comes; dropping it
/// kills the process, so a failed test leaves nothing running.
pub struct Spawned {
    child: Option<Child>,
    args: String,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

impl Spawned {
    /// Starts `cmd` (a `warden` command whose arguments were `args`) in the background.
    pub fn start(mut cmd: Command, args: &[&str]) -> Spawned {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the warden binary");
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Spawned {
            child: Some(child),
            args: format!("{args:?}"),
            stdout,
            stderr,
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        let child = self.child.as_mut().expect("the process is still ours");
        matches!(child.try_wait(), Ok(None))
    }

    fn collect(&mut self, code: i32) -> Run {
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.map(|h| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned())
                .unwrap_or_default()
        };
        Run {
            code,
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }

    /// Waits for it to exit (at most `deadline`, after which it is killed and the test fails)
    /// and returns what it did.
    pub fn finish(mut self, deadline: Duration) -> Run {
        let mut child = self.child.take().expect("the process is still ours");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for warden") {
                break status;
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let run = self.collect(-1);
                panic!(
                    "warden {} ran past {} ms and was killed; the run was {run:#?}",
                    self.args,
                    deadline.as_millis()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let code = status.code().unwrap_or_else(|| {
            let run = self.collect(-1);
            panic!(
                "warden {} was killed by a signal ({status:?}); the run was {run:#?}",
                self.args
            )
        });
        self.collect(code)
    }

    /// Kills it with SIGKILL (kill -9), reaps it, and returns what it had written.
    pub fn kill9(mut self) -> Run {
        let mut child = self.child.take().expect("the process is still ours");
        // Child::kill sends SIGKILL on Unix: no handler runs, nothing is flushed or released.
        child.kill().expect("kill -9 the warden process");
        let status = child.wait().expect("reap the killed process");
        assert!(
            status.code().is_none(),
            "warden {} exited ({status:?}) before it could be killed",
            self.args
        );
        self.collect(-9)
    }

    /// Polls `check` every 20 ms until it gives a value. Fails the test if the process exits
    /// first, or after `deadline`, saying `what` was awaited.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = check() {
                return value;
            }
            if !self.running() {
                let mut child = self.child.take().unwrap();
                let status = child.wait().unwrap();
                let run = self.collect(status.code().unwrap_or(-1));
                panic!(
                    "warden {} exited ({status:?}) while the test waited for {what}; the run was {run:#?}",
                    self.args
                );
            }
            if start.elapsed() > deadline {
                panic!(
                    "waited {} ms for {what} while warden {} ran",
                    deadline.as_millis(),
                    self.args
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What `warden agent run|resume --json` printed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The session's id.
    pub session: String,
    /// The task's id.
    pub task: String,
    /// `answered`, `max_steps` or `interrupted`.
    pub status: String,
    /// The final answer, if there is one.
    pub answer: Option<String>,
    /// The task's journal entries.
    pub steps: Vec<Step>,
    /// The whole object.
    pub json: Value,
}

/// One journal entry of `--json`'s `steps`.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its position in the session's journal.
    pub step: u64,
    /// `task_started`, `model_response`, `tool_call`, `tool_result`, `final_answer`, ...
    pub kind: String,
    /// The Warden call id, for tool calls and results.
    pub call_id: Option<String>,
    /// What it records.
    pub payload: Value,
}

impl Outcome {
    /// Reads `--json`'s object from a run's stdout, failing with the run when it is not one.
    pub fn of(run: &Run) -> Outcome {
        let json = run.json();
        let field = |name: &str| -> &Value {
            json.get(name)
                .unwrap_or_else(|| panic!("--json output has no `{name}`: {json:#}\n{run:#?}"))
        };
        let text = |name: &str| -> String {
            field(name)
                .as_str()
                .unwrap_or_else(|| panic!("--json `{name}` is not a string: {json:#}"))
                .to_string()
        };
        let steps = field("steps")
            .as_array()
            .unwrap_or_else(|| panic!("--json `steps` is not a list: {json:#}"))
            .iter()
            .map(|s| Step {
                step: s["step"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("a step without a number: {s}")),
                kind: s["kind"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a step without a kind: {s}"))
                    .to_string(),
                call_id: s["call_id"].as_str().map(str::to_string),
                payload: s
                    .get("payload")
                    .cloned()
                    .unwrap_or_else(|| panic!("a step without a payload: {s}")),
            })
            .collect();
        Outcome {
            session: text("session"),
            task: text("task"),
            status: text("status"),
            answer: match field("answer") {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => panic!("--json `answer` is neither a string nor null: {other}"),
            },
            steps,
            json,
        }
    }

    /// The steps of `kind`, in order.
    pub fn of_kind(&self, kind: &str) -> Vec<&Step> {
        self.steps.iter().filter(|s| s.kind == kind).collect()
    }

    /// The kinds, in order.
    pub fn kinds(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.kind.as_str()).collect()
    }

    /// The tool result for the model's call `model_call_id`.
    pub fn result_for(&self, model_call_id: &str) -> &Step {
        self.steps
            .iter()
            .find(|s| s.kind == "tool_result" && s.payload["model_call_id"] == model_call_id)
            .unwrap_or_else(|| {
                panic!(
                    "the journal has no tool_result for the model's call `{model_call_id}`: {:#}",
                    self.json
                )
            })
    }
}

/// A tool result's `output`, parsed (it is JSON text).
pub fn output_of(result: &Step) -> Value {
    let text = result.payload["output"]
        .as_str()
        .unwrap_or_else(|| panic!("tool_result has no output text: {}", result.payload));
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("tool_result output is not JSON ({e}): {text}"))
}

/// Asserts `run` exited `code`, showing the run and everything the model was asked when not.
pub fn expect_code(run: &Run, code: i32, model: &FakeModel) {
    assert_eq!(
        run.code,
        code,
        "warden exited {} where {code} was expected; the run was {run:#?}\n{}",
        run.code,
        model.describe()
    );
}

/// Asserts `run` answered (exit 0, status `answered`) and returns its `--json` output.
pub fn expect_answered(run: &Run, model: &FakeModel) -> Outcome {
    expect_code(run, 0, model);
    let outcome = Outcome::of(run);
    assert_eq!(outcome.status, "answered", "{:#}", outcome.json);
    model.assert_script_ok();
    outcome
}
