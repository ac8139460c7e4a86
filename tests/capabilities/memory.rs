//! The `memory` capability through the real host service: the `memory-probe` plugin's tools
//! (get, put, delete, list, a compare-and-swap `increment`, `open-many`) called for agents of a
//! config, in sessions created in the same state store the host uses. Namespaces, grants and
//! their denials, compare-and-swap, the `[memory]` limits, listing with a cursor, and two agents
//! incrementing one counter concurrently on SQLite and on PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use warden::config::WardenConfig;
use warden::host::{CallId, CallRequest, HostOptions, WardenHost};
use warden::state::memory::Namespace;
use warden::state::sessions::SessionId;
use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl};

use crate::common::{engine, metric};

const TENANT: &str = "local";

/// The plugin under test: the probe with memory in its max, and the same file without.
fn config_text(state_url: &str, memory_section: &str) -> String {
    let plugins = Path::new(env!("WARDEN_BUILT_PLUGINS")).display();
    format!(
        r#"
        [state]
        url = "{state_url}"
        [plugins.memory-probe]
        path = "{plugins}/memory-probe.wasm"
        max = ["memory:session:rw", "memory:agent:rw", "memory:team:rw", "memory:board:rw"]
        [plugins.bare]
        path = "{plugins}/memory-probe.wasm"
        max = ["memory:team:rw"]
        [agents.alice]
        tools = ["memory-probe/*", "bare/*"]
        grants = ["memory:team:rw", "memory:board:ro"]
        [agents.bob]
        tools = ["memory-probe/*"]
        grants = ["memory:team:rw"]
        {memory_section}
        "#
    )
}

/// A host and a second handle on its state store, for sessions and for reading what the
/// plugin wrote.
struct Site {
    host: WardenHost,
    store: StateStore,
    _dir: tempfile::TempDir,
    _schema: Option<PgTestSchema>,
}

impl Site {
    async fn sqlite(memory_section: &str) -> Site {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("state.db");
        let url = format!("sqlite://{}", db.display());
        let store = StateStore::open(&StateUrl::Sqlite(db)).await.unwrap();
        Site::start(dir, None, &url, store, memory_section).await
    }

    async fn postgres(label: &str, memory_section: &str) -> Option<Site> {
        let schema = PgTestSchema::create(label)?;
        let url = schema.url().to_string();
        let store = StateStore::open(&StateUrl::Postgres(url.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().expect("a temp dir");
        Some(Site::start(dir, Some(schema), &url, store, memory_section).await)
    }

    async fn start(
        dir: tempfile::TempDir,
        schema: Option<PgTestSchema>,
        url: &str,
        store: StateStore,
        memory_section: &str,
    ) -> Site {
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, config_text(url, memory_section)).unwrap();
        let config = WardenConfig::load(&path).unwrap_or_else(|e| panic!("the config: {e}"));
        let host = WardenHost::start(engine(), Arc::new(config), &path, HostOptions::default())
            .await
            .unwrap_or_else(|e| panic!("start the host: {e}"));
        Site {
            host,
            store,
            _dir: dir,
            _schema: schema,
        }
    }

    async fn session(&self, agent: &str) -> String {
        let session = self
            .store
            .agent_state()
            .create_session(TENANT, agent)
            .await
            .unwrap();
        session.id.to_string()
    }

    /// Calls `plugin/tool` for `agent` in `session`; the probe's report.
    async fn call_plugin(
        &self,
        plugin: &str,
        agent: &str,
        session: &str,
        tool: &str,
        input: Value,
    ) -> Report {
        let output = self
            .host
            .call(CallRequest {
                tenant: TENANT.into(),
                agent: agent.into(),
                session: session.into(),
                call_id: CallId::new(),
                plugin: plugin.into(),
                tool: tool.into(),
                input: input.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("{agent} calling {plugin}/{tool}: {e}"));
        let value: Value = serde_json::from_str(&output).unwrap();
        Report {
            result: value["result"].clone(),
            error: value["error"].clone(),
        }
    }

    async fn call(&self, agent: &str, session: &str, tool: &str, input: Value) -> Report {
        self.call_plugin("memory-probe", agent, session, tool, input)
            .await
    }
}

/// What a probe tool returned: its result, or the memory error (`{kind, message,
/// current_version}`).
#[derive(Debug)]
struct Report {
    result: Value,
    error: Value,
}

impl Report {
    fn ok(self) -> Value {
        assert!(self.error.is_null(), "expected success, got {self:#?}");
        self.result
    }

    /// The error's message, asserting its kind.
    fn failed(self, kind: &str) -> String {
        assert_eq!(self.error["kind"], kind, "{self:#?}");
        self.error["message"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn one_session_cannot_read_another_sessions_memory() {
    let site = Site::sqlite("").await;
    let (a, b) = (site.session("alice").await, site.session("alice").await);
    let put = json!({"ns": "session", "key": "draft", "value": "only mine"});
    assert_eq!(site.call("alice", &a, "put", put).await.ok(), 1);
    let get = json!({"ns": "session", "key": "draft"});
    let own = site.call("alice", &a, "get", get.clone()).await.ok();
    assert_eq!(own["value"], "only mine");
    assert_eq!(
        site.call("alice", &b, "get", get.clone()).await.ok(),
        Value::Null
    );
    let listed = site
        .call("alice", &b, "list", json!({"ns": "session"}))
        .await
        .ok();
    assert_eq!(listed["entries"], json!([]));
    // Another agent cannot borrow the session by naming its id.
    let message = site
        .call("bob", &a, "get", get.clone())
        .await
        .failed("denied");
    assert!(message.contains("belongs to agent `alice`"), "{message}");
    // A session the store does not have is refused, saying how to run in one.
    let message = site
        .call("alice", &SessionId::new().to_string(), "get", get.clone())
        .await
        .failed("denied");
    assert!(message.contains("does not exist"), "{message}");
    let message = site.call("alice", "cli", "get", get).await.failed("denied");
    assert!(
        message.contains("--session") && message.contains("warden agent run"),
        "{message}"
    );
    // Deleting the session deletes its memory.
    let id: SessionId = a.parse().unwrap();
    assert!(
        site.store
            .agent_state()
            .delete_session(TENANT, id)
            .await
            .unwrap()
    );
    let gone = site
        .store
        .agent_state()
        .get_memory(TENANT, &Namespace::Session(id), "draft")
        .await
        .unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn one_agent_cannot_read_another_agents_memory() {
    let site = Site::sqlite("").await;
    let (first, second) = (site.session("alice").await, site.session("alice").await);
    let bobs = site.session("bob").await;
    let put = json!({"ns": "agent", "key": "style", "value": {"tone": "brief"}});
    assert_eq!(site.call("alice", &first, "put", put).await.ok(), 1);
    let get = json!({"ns": "agent", "key": "style"});
    // It spans the agent's sessions...
    let seen = site.call("alice", &second, "get", get.clone()).await.ok();
    assert_eq!(seen["value"], json!({"tone": "brief"}));
    // ...and no other agent's.
    assert_eq!(site.call("bob", &bobs, "get", get).await.ok(), Value::Null);
    let stored = site
        .store
        .agent_state()
        .get_memory(TENANT, &Namespace::Agent("bob".into()), "style")
        .await
        .unwrap();
    assert_eq!(stored, None);
}

#[tokio::test]
async fn a_read_only_shared_namespace_cannot_be_written() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    assert_eq!(
        site.call("alice", &s, "get", json!({"ns": "board", "key": "k"}))
            .await
            .ok(),
        Value::Null
    );
    let put = json!({"ns": "board", "key": "k", "value": 1});
    let message = site.call("alice", &s, "put", put).await.failed("denied");
    assert!(
        message.contains("\"memory:board:rw\"") && message.contains("agents.alice.grants"),
        "{message}"
    );
    let delete = json!({"ns": "board", "key": "k"});
    let message = site
        .call("alice", &s, "delete", delete)
        .await
        .failed("denied");
    assert!(message.contains("memory:board:rw"), "{message}");
    let stored = site
        .store
        .agent_state()
        .get_memory(TENANT, &Namespace::Shared("board".into()), "k")
        .await
        .unwrap();
    assert_eq!(stored, None);
}

#[tokio::test]
async fn an_ungranted_namespace_is_denied_naming_the_grant() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let get = json!({"ns": "payroll", "key": "k"});
    let message = site.call("alice", &s, "get", get).await.failed("denied");
    assert!(
        message.contains("\"memory:payroll:ro\"") && message.contains("agents.alice.grants"),
        "{message}"
    );
    // Granted to bob's fleet but not to him.
    let b = site.session("bob").await;
    let message = site
        .call("bob", &b, "get", json!({"ns": "board", "key": "k"}))
        .await
        .failed("denied");
    assert!(message.contains("agents.bob.grants"), "{message}");
    // The agent's own namespaces still need the plugin's max.
    let message = site
        .call_plugin(
            "bare",
            "alice",
            &s,
            "get",
            json!({"ns": "session", "key": "k"}),
        )
        .await
        .failed("denied");
    assert!(
        message.contains("\"memory:session:ro\"") && message.contains("plugins.bare.max"),
        "{message}"
    );
    // Each denial is in the audit log, with the namespace as its target.
    let records = site.store.audit().tail(50).await.unwrap();
    let denied: Vec<&str> = records
        .iter()
        .filter(|r| r.capability == "memory" && r.outcome == "denied")
        .map(|r| r.target.as_str())
        .collect();
    for target in ["payroll", "board", "session"] {
        assert!(denied.contains(&target), "{target} not in {denied:?}");
    }
}

#[tokio::test]
async fn a_denied_namespace_counts_as_a_memory_denial() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let denials = || metric(r#"warden_denials_total{capability="memory"}"#);
    let before = denials();
    site.call("alice", &s, "get", json!({"ns": "payroll", "key": "k"}))
        .await
        .failed("denied");
    assert!(denials() > before, "the denial is not counted");
    // The call itself ran: the probe reports the denial as its result.
    let ok = metric(
        r#"warden_tool_call_duration_seconds_count{plugin="memory-probe",tool="get",outcome="ok"}"#,
    );
    assert!(ok >= 1.0, "the call is not timed");
}

#[tokio::test]
async fn opens_and_writes_are_audited_and_reads_are_not() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let put = json!({"ns": "team", "key": "k", "value": 1});
    site.call("alice", &s, "put", put).await.ok();
    let memory_records = |records: &[warden::policy::audit::AuditRecord]| {
        records.iter().filter(|r| r.capability == "memory").count()
    };
    let before = memory_records(&site.store.audit().tail(1000).await.unwrap());
    site.call("alice", &s, "get", json!({"ns": "team", "key": "k"}))
        .await
        .ok();
    let records = site.store.audit().tail(1000).await.unwrap();
    // The open is recorded; the read itself adds nothing.
    assert_eq!(memory_records(&records), before + 1, "{records:#?}");
    let memory: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.capability == "memory")
        .map(|r| (r.detail.as_str(), r.outcome.as_str()))
        .collect();
    assert!(memory.contains(&("open (rw)", "allowed")), "{memory:?}");
    assert!(memory.contains(&("put \"k\"", "allowed")), "{memory:?}");
}

#[tokio::test]
async fn a_stale_write_gets_a_conflict_with_the_current_version() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let put = |value: i64, expected: Option<u64>| json!({"ns": "team", "key": "plan", "value": value, "expected_version": expected});
    assert_eq!(site.call("alice", &s, "put", put(1, Some(0))).await.ok(), 1);
    assert_eq!(site.call("alice", &s, "put", put(2, Some(1))).await.ok(), 2);
    let stale = site.call("alice", &s, "put", put(3, Some(1))).await;
    assert_eq!(stale.error["kind"], "conflict", "{stale:#?}");
    assert_eq!(stale.error["current_version"], 2);
    // Creating a key that exists, and expecting a key that does not.
    let exists = site.call("alice", &s, "put", put(4, Some(0))).await;
    assert_eq!(exists.error["current_version"], 2, "{exists:#?}");
    let absent = json!({"ns": "team", "key": "nothing", "value": 1, "expected_version": 3});
    let absent = site.call("alice", &s, "put", absent).await;
    assert_eq!(absent.error["kind"], "conflict", "{absent:#?}");
    assert_eq!(absent.error["current_version"], Value::Null);
    // Deletes compare too.
    let delete = json!({"ns": "team", "key": "plan", "expected_version": 1});
    let lost = site.call("alice", &s, "delete", delete).await;
    assert_eq!(lost.error["current_version"], 2, "{lost:#?}");
    let delete = json!({"ns": "team", "key": "plan", "expected_version": 2});
    assert_eq!(site.call("alice", &s, "delete", delete).await.ok(), true);
    let get = json!({"ns": "team", "key": "plan"});
    assert_eq!(site.call("alice", &s, "get", get).await.ok(), Value::Null);
}

#[tokio::test]
async fn every_entry_records_its_version_agent_tool_and_time() {
    let site = Site::sqlite("").await;
    let (a, b) = (site.session("alice").await, site.session("bob").await);
    let before = warden::state::now_ms();
    let put = json!({"ns": "team", "key": "k", "value": "first"});
    site.call("alice", &a, "put", put).await.ok();
    let written = site
        .call("alice", &a, "get", json!({"ns": "team", "key": "k"}))
        .await
        .ok();
    assert_eq!(written["version"], 1);
    assert_eq!(written["written_by_agent"], "alice");
    assert_eq!(written["written_by_tool"], "memory-probe/put");
    let put = json!({"ns": "team", "key": "k", "value": "second"});
    site.call("bob", &b, "put", put).await.ok();
    let after = warden::state::now_ms();
    let entry = site
        .store
        .agent_state()
        .get_memory(TENANT, &Namespace::Shared("team".into()), "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.value, "\"second\"");
    assert_eq!(entry.version, 2);
    assert_eq!(entry.written_by_agent, "bob");
    assert_eq!(entry.written_by_tool, "memory-probe/put");
    assert!(
        (before..=after).contains(&entry.updated_at_ms),
        "{before} <= {} <= {after}",
        entry.updated_at_ms
    );
}

/// A JSON string whose text is `bytes` long.
fn value_of(bytes: usize) -> String {
    format!("\"{}\"", "v".repeat(bytes - 2))
}

#[tokio::test]
async fn a_value_over_the_configured_limit_is_refused_naming_it() {
    let site = Site::sqlite("[memory]\nmax_value_kb = 1").await;
    let s = site.session("alice").await;
    let at = json!({"ns": "team", "key": "at", "raw": value_of(1024)});
    assert_eq!(site.call("alice", &s, "put", at).await.ok(), 1);
    let over = json!({"ns": "team", "key": "over", "raw": value_of(1025)});
    let message = site.call("alice", &s, "put", over).await.failed("invalid");
    assert!(
        message.contains("max_value_kb") && message.contains("1024 bytes"),
        "{message}"
    );
    let stored = site
        .store
        .agent_state()
        .get_memory(TENANT, &Namespace::Shared("team".into()), "over")
        .await
        .unwrap();
    assert_eq!(stored, None, "never truncated: not written at all");
}

#[tokio::test]
async fn the_default_value_limit_is_64_kib() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let at = json!({"ns": "team", "key": "at", "raw": value_of(64 * 1024)});
    assert_eq!(site.call("alice", &s, "put", at).await.ok(), 1);
    let over = json!({"ns": "team", "key": "over", "raw": value_of(64 * 1024 + 1)});
    let message = site.call("alice", &s, "put", over).await.failed("invalid");
    assert!(message.contains("max_value_kb"), "{message}");
}

#[tokio::test]
async fn a_namespace_over_its_limit_is_refused_naming_it() {
    let site = Site::sqlite("[memory]\nmax_namespace_mb = 1\nmax_value_kb = 256").await;
    let s = site.session("alice").await;
    // Four entries of 250 KiB fit in 1 MiB; a fifth does not.
    for n in 0..4 {
        let put = json!({"ns": "team", "key": format!("k{n}"), "raw": value_of(250 * 1024)});
        assert_eq!(site.call("alice", &s, "put", put).await.ok(), 1);
    }
    let put = json!({"ns": "team", "key": "k4", "raw": value_of(250 * 1024)});
    let message = site.call("alice", &s, "put", put).await.failed("invalid");
    assert!(
        message.contains("max_namespace_mb") && message.contains("`team`"),
        "{message}"
    );
    // Other namespaces have room of their own, and a delete makes room.
    let own = json!({"ns": "agent", "key": "k", "raw": value_of(250 * 1024)});
    assert_eq!(site.call("alice", &s, "put", own).await.ok(), 1);
    let delete = json!({"ns": "team", "key": "k0"});
    assert_eq!(site.call("alice", &s, "delete", delete).await.ok(), true);
    let put = json!({"ns": "team", "key": "k4", "raw": value_of(250 * 1024)});
    assert_eq!(site.call("alice", &s, "put", put).await.ok(), 1);
}

#[tokio::test]
async fn listing_pages_through_a_prefix_with_a_cursor() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    for n in 0..25 {
        let put = json!({"ns": "team", "key": format!("notes/{n:02}"), "value": n});
        site.call("alice", &s, "put", put).await.ok();
    }
    for key in ["notes", "notez", "other/1"] {
        let put = json!({"ns": "team", "key": key, "value": 0});
        site.call("alice", &s, "put", put).await.ok();
    }
    let (mut keys, mut pages, mut cursor) = (Vec::new(), Vec::new(), Value::Null);
    loop {
        let list = json!({"ns": "team", "prefix": "notes/", "cursor": cursor, "limit": 10});
        let page = site.call("alice", &s, "list", list).await.ok();
        let entries = page["entries"].as_array().unwrap().clone();
        pages.push(entries.len());
        keys.extend(
            entries
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_string()),
        );
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, [10, 10, 5]);
    let expected: Vec<String> = (0..25).map(|n| format!("notes/{n:02}")).collect();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn a_page_is_cut_to_the_hosts_byte_budget_at_the_value_limit() {
    // At 256 KiB a value, 31 entries fill the 8 MiB page budget, whatever the plugin asks.
    let site = Site::sqlite("[memory]\nmax_value_kb = 256").await;
    let s = site.session("alice").await;
    for n in 0..40 {
        let put = json!({"ns": "team", "key": format!("k{n:02}"), "value": n});
        site.call("alice", &s, "put", put).await.ok();
    }
    let list = json!({"ns": "team", "limit": 1000});
    let page = site.call("alice", &s, "list", list).await.ok();
    let fits = warden::capabilities::memory::MAX_LIST_PAGE_BYTES / (256 * 1024 + 512);
    assert_eq!(page["entries"].as_array().unwrap().len(), fits);
    assert_eq!(page["next_cursor"], format!("k{:02}", fits - 1));
}

#[tokio::test]
async fn hostile_keys_prefixes_cursors_and_names_are_refused_before_the_store() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let long = "k".repeat(513);
    let cases = [
        ("get", json!({"ns": "team", "key": long})),
        ("get", json!({"ns": "team", "key": ""})),
        ("get", json!({"ns": "team", "key": "a\u{0}b"})),
        ("put", json!({"ns": "team", "key": long, "value": 1})),
        ("put", json!({"ns": "team", "key": "k", "raw": "not json"})),
        ("delete", json!({"ns": "team", "key": long})),
        ("list", json!({"ns": "team", "prefix": long})),
        ("list", json!({"ns": "team", "cursor": long})),
        ("list", json!({"ns": "team", "prefix": "a\u{0}"})),
    ];
    for (tool, input) in cases {
        let report = site.call("alice", &s, tool, input.clone()).await;
        assert_eq!(
            report.error["kind"], "invalid",
            "{tool} {input}: {report:#?}"
        );
    }
    // A huge namespace name is refused without being echoed back.
    let name = "n".repeat(100_000);
    let message = site
        .call("alice", &s, "get", json!({"ns": name, "key": "k"}))
        .await
        .failed("invalid");
    assert!(message.len() < 300, "{}", message.len());
}

#[tokio::test]
async fn one_call_holds_a_bounded_number_of_handles() {
    let site = Site::sqlite("").await;
    let s = site.session("alice").await;
    let most = warden::capabilities::memory::MAX_MEMORY_HANDLES_PER_CALL;
    let report = site
        .call(
            "alice",
            &s,
            "open-many",
            json!({"ns": "team", "count": most + 10}),
        )
        .await;
    assert_eq!(report.result, most, "{report:#?}");
    let message = report.failed("denied");
    assert!(message.contains("drop one"), "{message}");
}

/// Two agents, each incrementing one shared counter `PER_AGENT` times with compare-and-swap,
/// at once: no increment is lost.
async fn two_agents_increment_one_counter_without_losing_an_update(site: Site) {
    const PER_AGENT: u64 = 500;
    /// Increments per call: each is its own compare-and-swap, racing the other agent's.
    const PER_CALL: u64 = 10;
    let site = Arc::new(site);
    let mut agents = Vec::new();
    for agent in ["alice", "bob"] {
        let site = site.clone();
        agents.push(tokio::spawn(async move {
            let session = site.session(agent).await;
            let mut attempts = 0;
            for _ in 0..PER_AGENT / PER_CALL {
                let input = json!({"ns": "team", "key": "counter", "times": PER_CALL});
                let done = site.call(agent, &session, "increment", input).await.ok();
                attempts += done["attempts"].as_u64().unwrap();
            }
            attempts
        }));
    }
    let mut attempts = 0;
    for agent in agents {
        attempts += agent.await.unwrap();
    }
    let counter = site
        .store
        .agent_state()
        .get_memory(TENANT, &Namespace::Shared("team".into()), "counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counter.value, (2 * PER_AGENT).to_string());
    assert_eq!(counter.version, 2 * PER_AGENT);
    assert!(attempts >= 2 * PER_AGENT, "{attempts}");
    eprintln!(
        "{} increments took {attempts} compare-and-swap attempts",
        2 * PER_AGENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_agents_increment_one_counter_without_losing_an_update() {
    two_agents_increment_one_counter_without_losing_an_update(Site::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_agents_increment_one_counter_without_losing_an_update() {
    let Some(site) = Site::postgres("memory_increments", "").await else {
        eprintln!("skipped: set WARDEN_TEST_POSTGRES_URL to run this test on PostgreSQL");
        return;
    };
    two_agents_increment_one_counter_without_losing_an_update(site).await;
}

#[tokio::test]
async fn warden_call_runs_in_the_session_it_is_given() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("state.db");
    let config = dir.path().join("warden.toml");
    std::fs::write(&config, config_text("sqlite://state.db", "")).unwrap();
    let store = StateStore::open(&StateUrl::Sqlite(db)).await.unwrap();
    let session = store
        .agent_state()
        .create_session(TENANT, "alice")
        .await
        .unwrap();
    let id = session.id.to_string();
    let input = json!({"ns": "session", "key": "k", "value": "kept"}).to_string();
    let args = |extra: &[&str]| {
        let mut args = vec![
            "call",
            "memory-probe",
            "put",
            "--config",
            config.to_str().unwrap(),
            "--agent",
            "alice",
            "--input",
            &input,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = crate::common::warden(&args(&["--session", &id]));
    run.assert_code(0);
    assert_eq!(run.json()["result"], 1, "{run:#?}");
    let stored = store
        .agent_state()
        .get_memory(TENANT, &Namespace::Session(session.id), "k")
        .await
        .unwrap()
        .expect("written in the given session");
    assert_eq!(stored.value, "\"kept\"");
    // Without --session there is no session memory, and the plugin is told how to get one.
    let run = crate::common::warden(&args(&[]));
    run.assert_code(0);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("--session ID"), "{message}");
    // A --session that is not an id is refused before the call.
    let run = crate::common::warden(&args(&["--session", "yesterday"]));
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("--session takes a session id"),
        "{run:#?}"
    );
}
