//! A store for one test with a `warden.toml` pointing at it, and sessions written into it
//! through the library's store API with the entries the agent loop journals.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use warden::policy::audit::NewRecord;
use warden::policy::{AuditLog, Outcome};
use warden::state::agents::AgentStore;
use warden::state::journal::{NewStep, StepKind};
use warden::state::leases::Lease;
use warden::state::memory::{MemoryLimits, Namespace, Writer};
use warden::state::sessions::Session;
use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl};

use crate::common::{Run, run_command, warden_command};

/// The variable the PostgreSQL configs name in `[state] url_env`, set on each `warden` run.
const STATE_URL_VAR: &str = "WARDEN_SESSIONS_TEST_STATE_URL";

/// Which backend a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Runs the async case `$name(kind)` once per backend, as `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::fixture::Kind::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::fixture::Kind::Postgres).await;
                }
            }
        )*
    };
}

/// One test's store, opened as the host opens it, and a config file for `warden`.
pub struct Fixture {
    /// The store, as the library opens it.
    pub store: StateStore,
    /// Its agent state.
    pub agents: Arc<dyn AgentStore>,
    /// The `warden.toml` whose `[state]` names the store.
    pub config: PathBuf,
    /// `STATE_URL_VAR`'s value for PostgreSQL runs.
    url_env: Option<String>,
    // Dropped after the store: the folder of the file, or the schema.
    _dir: tempfile::TempDir,
    _schema: Option<PgTestSchema>,
}

/// What [`Fixture::task`] wrote.
pub struct Written {
    /// The session.
    pub session: Session,
    /// The task's id.
    pub task: Uuid,
    /// The two tool calls' Warden call ids.
    pub call_ids: [String; 2],
}

/// The input of the task [`Fixture::task`] writes.
pub const INPUT: &str = "Summarise the handbook";
/// Its final answer.
pub const ANSWER: &str = "The handbook says alpha.";
/// The first model turn's text.
pub const FIRST_TURN: &str = "Reading both pages.";

impl Fixture {
    /// A fresh store of `kind`; `None` for PostgreSQL when `WARDEN_TEST_POSTGRES_URL` is not
    /// set (the helper has printed that the case is skipped).
    pub async fn new(kind: Kind, label: &str) -> Option<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("warden.toml");
        let (url, state, url_env, schema) = match kind {
            Kind::Sqlite => {
                let path = dir.path().join("state.db");
                let state = format!("url = \"sqlite://{}\"", path.display());
                (StateUrl::Sqlite(path), state, None, None)
            }
            Kind::Postgres => {
                let schema = PgTestSchema::create(label)?;
                let url = schema.url().to_string();
                // The URL through url_env, as an operator with a password in it would configure.
                let state = format!("url_env = \"{STATE_URL_VAR}\"");
                (
                    StateUrl::Postgres(url.clone()),
                    state,
                    Some(url),
                    Some(schema),
                )
            }
        };
        std::fs::write(&config, format!("[state]\n{state}\n")).unwrap();
        let store = StateStore::open(&url).await.unwrap();
        Some(Fixture {
            agents: store.agent_state(),
            store,
            config,
            url_env,
            _dir: dir,
            _schema: schema,
        })
    }

    /// Runs `warden ARGS... --config CONFIG` on this store.
    pub fn warden(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.config.to_str().unwrap();
        all.extend(["--config", config]);
        let mut cmd = warden_command(&all);
        cmd.env_remove("WARDEN_CONFIG");
        if let Some(url) = &self.url_env {
            cmd.env(STATE_URL_VAR, url);
        }
        run_command(cmd, None)
    }

    /// Creates a session of `agent` for `tenant` and journals one whole task in it as the
    /// loop does: the input, a model turn asking for two tool calls, both calls and their
    /// results (one ok, one failed), the model's last turn and the final answer. Also writes
    /// one entry in the session's memory and one in the agent's, and an audit record of the
    /// first call. The lease it wrote under is released.
    pub async fn task(&self, tenant: &str, agent: &str) -> Written {
        let session = self.agents.create_session(tenant, agent).await.unwrap();
        let task = Uuid::now_v7();
        let call_ids = [Uuid::now_v7().to_string(), Uuid::now_v7().to_string()];
        let steps = vec![
            step(task, StepKind::TaskStarted, None, json!({"input": INPUT})),
            step(
                task,
                StepKind::ModelResponse,
                None,
                json!({
                    "text": FIRST_TURN,
                    "tool_calls": [
                        {"id": "call_a", "name": "files_read", "arguments": {"path": "a.md"}},
                        {"id": "call_b", "name": "files_read", "arguments": {"path": "secret.md"}},
                    ],
                    "usage": {"input_tokens": 120, "output_tokens": 30},
                    "served_by": "local-openai",
                    "model": "gpt-test",
                    "finish_reason": "tool_calls",
                    "model_step": 0,
                }),
            ),
            step(
                task,
                StepKind::ToolCall,
                Some(&call_ids[0]),
                json!({"index": 0, "model_call_id": "call_a", "name": "files_read",
                       "plugin": "files", "tool": "read", "arguments": {"path": "a.md"}}),
            ),
            step(
                task,
                StepKind::ToolCall,
                Some(&call_ids[1]),
                json!({"index": 1, "model_call_id": "call_b", "name": "files_read",
                       "plugin": "files", "tool": "read", "arguments": {"path": "secret.md"}}),
            ),
            step(
                task,
                StepKind::ToolResult,
                Some(&call_ids[0]),
                json!({"index": 0, "model_call_id": "call_a", "ok": true,
                       "output": {"text": "alpha"}, "error": null, "elapsed_ms": 12}),
            ),
            step(
                task,
                StepKind::ToolResult,
                Some(&call_ids[1]),
                json!({"index": 1, "model_call_id": "call_b", "ok": false, "output": null,
                       "error": {"kind": "denied", "message": "no grant covers secret.md"},
                       "elapsed_ms": 3}),
            ),
            step(
                task,
                StepKind::ModelResponse,
                None,
                json!({
                    "text": ANSWER,
                    "tool_calls": [],
                    "usage": {"input_tokens": 200, "output_tokens": 12},
                    "served_by": "local-openai",
                    "model": "gpt-test",
                    "finish_reason": "stop",
                    "model_step": 1,
                }),
            ),
            step(task, StepKind::FinalAnswer, None, json!({"text": ANSWER})),
        ];
        let lease = self.lease(tenant, &session, "test-host/writer").await;
        self.append(tenant, &session, &lease, 0, &steps).await;
        assert!(self.agents.release_lease(tenant, &lease).await.unwrap());
        let writer = Writer {
            agent,
            tool: "notes/remember",
        };
        self.agents
            .put_memory(
                tenant,
                &Namespace::Session(session.id),
                "summary",
                r#"{"text":"alpha"}"#,
                None,
                &writer,
                &MemoryLimits::STORE_BOUNDS,
            )
            .await
            .unwrap();
        self.agents
            .put_memory(
                tenant,
                &Namespace::Agent(agent.to_string()),
                "style",
                r#""terse""#,
                None,
                &writer,
                &MemoryLimits::STORE_BOUNDS,
            )
            .await
            .unwrap();
        let id = session.id.to_string();
        AuditLog::open(&self.store)
            .append(
                &NewRecord {
                    tenant,
                    agent,
                    session: &id,
                    plugin: "files",
                    tool: "read",
                    call_id: &call_ids[0],
                    capability: "call",
                    target: "files/read",
                    detail: "",
                },
                Outcome::Allowed,
            )
            .await
            .unwrap();
        Written {
            session,
            task,
            call_ids,
        }
    }

    /// Takes the session's lease for a minute as `holder`.
    pub async fn lease(&self, tenant: &str, session: &Session, holder: &str) -> Lease {
        self.agents
            .acquire_lease(tenant, session.id, holder, Duration::from_secs(60))
            .await
            .unwrap()
    }

    /// Appends `steps` from step `from` on, in appends as large as the store takes.
    pub async fn append(
        &self,
        tenant: &str,
        session: &Session,
        lease: &Lease,
        from: u64,
        steps: &[NewStep],
    ) {
        let mut next = from;
        for chunk in steps.chunks(warden::state::journal::MAX_ENTRIES_PER_APPEND) {
            next = self
                .agents
                .append_steps(tenant, session.id, next, lease.token, chunk)
                .await
                .unwrap();
        }
    }

    /// How many audit records the store holds.
    pub async fn audit_records(&self) -> usize {
        self.store
            .audit()
            .range(i64::MIN, i64::MAX)
            .await
            .unwrap()
            .len()
    }
}

/// One journal entry to append.
pub fn step(task: Uuid, kind: StepKind, call_id: Option<&str>, payload: Value) -> NewStep {
    NewStep {
        task,
        kind,
        call_id: call_id.map(String::from),
        payload,
    }
}
