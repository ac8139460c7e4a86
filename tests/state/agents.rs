//! The agent-state conformance suite: every behaviour of sessions, the step journal, memory and
//! leases, each case run against SQLite (a real file) and PostgreSQL (a schema of its own per
//! test; skipped, saying so, without `WARDEN_TEST_POSTGRES_URL`). Races run on a multi-threaded
//! runtime, so the contenders really overlap.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use warden::state::agents::AgentStore;
use warden::state::journal::{
    MAX_CALL_ID_BYTES, MAX_ENTRIES_PER_APPEND, MAX_PAYLOAD_BYTES, NewStep, StepKind,
};
use warden::state::leases::{FencingToken, Lease, MAX_LEASE_TTL};
use warden::state::memory::{
    MAX_KEY_BYTES, MAX_VALUE_BYTES, MemoryLimits, MemoryUsage, Namespace, Writer,
};
use warden::state::sessions::{MAX_NAME_BYTES, Session, SessionId, SessionQuery, SessionStatus};
use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl, StoreError};

type Store = Arc<dyn AgentStore>;

/// Keeps a test's database for as long as its store is open (dropped after the store).
#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Schema(PgTestSchema),
}

/// Both open through [`StateStore::open`], the path the host takes.
async fn sqlite() -> (Store, Keep) {
    let dir = tempfile::tempdir().unwrap();
    let url = StateUrl::Sqlite(dir.path().join("state.db"));
    let store = StateStore::open(&url).await.unwrap();
    (store.agent_state(), Keep::Dir(dir))
}

async fn postgres(label: &str) -> Option<(Store, Keep)> {
    let schema = PgTestSchema::create(label)?;
    let url = StateUrl::Postgres(schema.url().to_string());
    let store = StateStore::open(&url).await.unwrap();
    Some((store.agent_state(), Keep::Schema(schema)))
}

/// Runs each case once per backend, as `sqlite::CASE` and `postgres::CASE`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _keep) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some((store, _keep)) = super::postgres(stringify!($case)).await else {
                        return;
                    };
                    super::$case(store).await;
                }
            )*
        }
    };
}

conformance!(
    creates_gets_and_lists_sessions_in_pages,
    another_tenants_session_is_not_found,
    a_status_change_is_stored_with_its_time,
    deleting_a_session_removes_its_journal_memory_and_lease,
    malformed_session_requests_are_refused,
    the_journal_reads_back_in_order,
    an_append_at_a_taken_step_is_a_conflict_naming_the_next_step,
    an_append_under_a_taken_over_lease_is_fenced,
    an_append_without_a_live_lease_is_fenced,
    the_same_holder_acquiring_again_fences_its_earlier_token,
    concurrent_appends_at_one_step_let_exactly_one_win,
    oversized_or_empty_appends_are_refused_whole,
    memory_round_trips_with_its_version_and_writer,
    a_lost_compare_and_swap_is_a_conflict_carrying_the_current_version,
    deletes_take_an_expected_version_and_versions_are_never_reused,
    namespaces_and_tenants_keep_memory_apart,
    session_memory_needs_its_session,
    listing_pages_through_a_prefix_in_key_order,
    memory_sizes_are_bounded_at_exactly_their_limits,
    malformed_memory_requests_are_refused,
    concurrent_compare_and_swaps_on_one_key_let_exactly_one_win,
    a_namespace_limit_refuses_growth_past_it_counting_rewrites_and_deletes,
    concurrent_writers_cannot_both_squeeze_past_a_namespace_limit,
    a_value_limit_below_the_stores_refuses_a_bigger_value,
    a_live_lease_is_refused_to_another_holder_naming_it,
    a_lapsed_lease_is_taken_over_with_a_larger_token,
    renewing_keeps_a_lease_from_lapsing,
    a_released_lease_is_free_at_once_and_tokens_keep_growing,
    concurrent_acquires_let_exactly_one_win,
    lease_requests_out_of_bounds_are_refused,
    only_running_sessions_without_a_live_lease_are_orphans,
);

const T: &str = "acme";
const OTHER: &str = "globex";
/// Long enough never to lapse during a test.
const TTL: Duration = Duration::from_secs(60);
/// Short enough to lapse during one; tests wait [`LAPSE`] for it.
const SHORT: Duration = Duration::from_millis(60);
const LAPSE: Duration = Duration::from_millis(150);
/// Only the store's own bounds: the cases that are not about the `[memory]` limits.
const NO_LIMITS: MemoryLimits = MemoryLimits::STORE_BOUNDS;
/// How many contenders each race starts.
const RACERS: usize = 8;

fn writer() -> Writer<'static> {
    Writer {
        agent: "researcher",
        tool: "notes/save",
    }
}

fn step(task: Uuid, kind: StepKind, n: u64) -> NewStep {
    NewStep {
        task,
        kind,
        call_id: Some(format!("call-{n}")),
        payload: json!({ "n": n }),
    }
}

async fn leased(s: &Store) -> (Session, Lease) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let lease = s.acquire_lease(T, session.id, "host-a", TTL).await.unwrap();
    (session, lease)
}

fn is_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Invalid(_)))
}

// ---- sessions ----

async fn creates_gets_and_lists_sessions_in_pages(s: Store) {
    let a = s.create_session(T, "researcher").await.unwrap();
    let b = s.create_session(T, "writer").await.unwrap();
    let c = s.create_session(T, "researcher").await.unwrap();
    s.create_session(OTHER, "researcher").await.unwrap();
    assert_eq!(a.id.0.get_version_num(), 7);
    assert_eq!((a.tenant.as_str(), a.agent.as_str()), (T, "researcher"));
    assert_eq!(a.status, SessionStatus::Idle);
    assert_eq!(a.created_at_ms, a.updated_at_ms);
    assert!(a.created_at_ms > 0);
    assert_eq!(s.get_session(T, b.id).await.unwrap(), Some(b.clone()));

    let all = s.list_sessions(T, &SessionQuery::default()).await.unwrap();
    assert_eq!(all.sessions, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(all.next_cursor, None);

    let researcher = SessionQuery {
        agent: Some("researcher"),
        ..Default::default()
    };
    let theirs = s.list_sessions(T, &researcher).await.unwrap();
    assert_eq!(theirs.sessions, vec![a.clone(), c.clone()]);

    let first = s
        .list_sessions(
            T,
            &SessionQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.sessions, vec![a, b.clone()]);
    assert_eq!(first.next_cursor, Some(b.id));
    let second = s
        .list_sessions(
            T,
            &SessionQuery {
                limit: 2,
                after: first.next_cursor,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.sessions, vec![c]);
    assert_eq!(second.next_cursor, None);
}

async fn another_tenants_session_is_not_found(s: Store) {
    let (session, lease) = leased(&s).await;
    let id = session.id;
    assert_eq!(s.get_session(OTHER, id).await.unwrap(), None);
    let listed = s.list_sessions(OTHER, &SessionQuery::default()).await;
    assert!(listed.unwrap().sessions.is_empty());
    let not_found = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound(_)));
    assert!(not_found(
        s.set_session_status(OTHER, id, SessionStatus::Closed)
            .await
            .map(|_| ())
    ));
    assert!(not_found(s.read_journal(OTHER, id, 0, 0).await.map(|_| ())));
    assert!(not_found(
        s.acquire_lease(OTHER, id, "host-b", TTL).await.map(|_| ())
    ));
    assert!(not_found(s.current_lease(OTHER, id).await.map(|_| ())));
    assert!(not_found(
        s.append_steps(
            OTHER,
            id,
            0,
            lease.token,
            &[step(Uuid::now_v7(), StepKind::TaskStarted, 0)]
        )
        .await
        .map(|_| ())
    ));
    assert!(not_found(
        s.put_memory(
            OTHER,
            &Namespace::Session(id),
            "k",
            "1",
            None,
            &writer(),
            &NO_LIMITS
        )
        .await
        .map(|_| ())
    ));
    assert!(!s.delete_session(OTHER, id).await.unwrap());
    // Nothing the other tenant tried touched the session.
    assert_eq!(s.get_session(T, id).await.unwrap(), Some(session));
    assert_eq!(s.current_lease(T, id).await.unwrap(), Some(lease));
}

async fn a_status_change_is_stored_with_its_time(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let running = s
        .set_session_status(T, session.id, SessionStatus::Running)
        .await
        .unwrap();
    assert_eq!(running.status, SessionStatus::Running);
    assert!(running.updated_at_ms > session.updated_at_ms);
    assert_eq!(running.created_at_ms, session.created_at_ms);
    assert_eq!(s.get_session(T, session.id).await.unwrap(), Some(running));
    let missing = s
        .set_session_status(T, SessionId::new(), SessionStatus::Idle)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

async fn deleting_a_session_removes_its_journal_memory_and_lease(s: Store) {
    let (session, lease) = leased(&s).await;
    let keep = s.create_session(T, "researcher").await.unwrap();
    let task = Uuid::now_v7();
    s.append_steps(
        T,
        session.id,
        0,
        lease.token,
        &[step(task, StepKind::TaskStarted, 0)],
    )
    .await
    .unwrap();
    let private = Namespace::Session(session.id);
    let agent = Namespace::Agent("researcher".into());
    s.put_memory(T, &private, "k", "1", None, &writer(), &NO_LIMITS)
        .await
        .unwrap();
    s.put_memory(
        T,
        &Namespace::Session(keep.id),
        "k",
        "2",
        None,
        &writer(),
        &NO_LIMITS,
    )
    .await
    .unwrap();
    s.put_memory(T, &agent, "k", "3", None, &writer(), &NO_LIMITS)
        .await
        .unwrap();

    assert_ne!(
        s.memory_usage(T, &private).await.unwrap(),
        MemoryUsage::default()
    );
    assert!(s.delete_session(T, session.id).await.unwrap());
    assert_eq!(s.get_session(T, session.id).await.unwrap(), None);
    // Its usage row goes with its memory.
    assert_eq!(
        s.memory_usage(T, &private).await.unwrap(),
        MemoryUsage::default()
    );
    assert!(matches!(
        s.read_journal(T, session.id, 0, 0).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.get_memory(T, &private, "k").await.unwrap(), None);
    assert!(
        s.list_memory(T, &private, "", None, 0)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    // What was not only the session's stays.
    let kept = s.get_memory(T, &Namespace::Session(keep.id), "k").await;
    assert_eq!(kept.unwrap().unwrap().value, "2");
    assert_eq!(
        s.get_memory(T, &agent, "k").await.unwrap().unwrap().value,
        "3"
    );
    assert!(!s.delete_session(T, session.id).await.unwrap());
}

async fn malformed_session_requests_are_refused(s: Store) {
    assert!(is_invalid(s.create_session(T, "").await));
    assert!(is_invalid(s.create_session("", "researcher").await));
    let long = "a".repeat(MAX_NAME_BYTES + 1);
    assert!(is_invalid(s.create_session(T, &long).await));
    assert!(is_invalid(s.create_session(T, "a\0b").await));
    assert!(s.create_session(T, &long[1..]).await.is_ok());
    assert!(matches!(
        "not-a-uuid".parse::<SessionId>(),
        Err(StoreError::Invalid(_))
    ));
}

// ---- the journal ----

async fn the_journal_reads_back_in_order(s: Store) {
    let (session, lease) = leased(&s).await;
    let task = Uuid::now_v7();
    let next = s
        .append_steps(
            T,
            session.id,
            0,
            lease.token,
            &[step(task, StepKind::TaskStarted, 0)],
        )
        .await
        .unwrap();
    assert_eq!(next, 1);
    let batch = [
        step(task, StepKind::ModelResponse, 1),
        step(task, StepKind::ToolCall, 2),
        NewStep {
            call_id: None,
            ..step(task, StepKind::ToolResult, 3)
        },
    ];
    let next = s
        .append_steps(T, session.id, 1, lease.token, &batch)
        .await
        .unwrap();
    assert_eq!(next, 4);

    let all = s.read_journal(T, session.id, 0, 0).await.unwrap();
    assert_eq!(all.len(), 4);
    let kinds: Vec<StepKind> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            StepKind::TaskStarted,
            StepKind::ModelResponse,
            StepKind::ToolCall,
            StepKind::ToolResult
        ]
    );
    for (i, entry) in all.iter().enumerate() {
        assert_eq!(entry.step, i as u64);
        assert_eq!(entry.task, task);
        assert_eq!(entry.payload, json!({ "n": i }));
        assert_eq!(entry.token, lease.token);
        assert!(entry.recorded_at_ms > 0);
    }
    assert_eq!(all[2].call_id.as_deref(), Some("call-2"));
    assert_eq!(all[3].call_id, None);

    let middle = s.read_journal(T, session.id, 2, 1).await.unwrap();
    assert_eq!(middle, vec![all[2].clone()]);
    assert!(
        s.read_journal(T, session.id, 9, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_append_at_a_taken_step_is_a_conflict_naming_the_next_step(s: Store) {
    let (session, lease) = leased(&s).await;
    let task = Uuid::now_v7();
    let first = [step(task, StepKind::TaskStarted, 0)];
    s.append_steps(T, session.id, 0, lease.token, &first)
        .await
        .unwrap();
    for expected in [0, 2, 7] {
        let again = s
            .append_steps(T, session.id, expected, lease.token, &first)
            .await;
        assert_eq!(again, Err(StoreError::Conflict { current_version: 1 }));
    }
    assert_eq!(s.read_journal(T, session.id, 0, 0).await.unwrap().len(), 1);
}

async fn an_append_under_a_taken_over_lease_is_fenced(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let old = s
        .acquire_lease(T, session.id, "host-a", SHORT)
        .await
        .unwrap();
    tokio::time::sleep(LAPSE).await;
    let new = s.acquire_lease(T, session.id, "host-b", TTL).await.unwrap();
    assert!(new.token > old.token);
    let task = Uuid::now_v7();
    let stale = s
        .append_steps(
            T,
            session.id,
            0,
            old.token,
            &[step(task, StepKind::ToolResult, 0)],
        )
        .await;
    assert_eq!(
        stale,
        Err(StoreError::Fenced {
            token: old.token.0,
            current: Some(new.token.0)
        })
    );
    s.append_steps(
        T,
        session.id,
        0,
        new.token,
        &[step(task, StepKind::ToolResult, 1)],
    )
    .await
    .unwrap();
    let journal = s.read_journal(T, session.id, 0, 0).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].token, new.token);
    assert_eq!(journal[0].payload, json!({ "n": 1 }));
}

async fn an_append_without_a_live_lease_is_fenced(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let task = Uuid::now_v7();
    let one = [step(task, StepKind::TaskStarted, 0)];
    let fenced = |r: Result<u64, StoreError>| matches!(r, Err(StoreError::Fenced { .. }));
    // Never leased: no token is current.
    assert!(fenced(
        s.append_steps(T, session.id, 0, FencingToken(1), &one)
            .await
    ));
    // Released.
    let lease = s.acquire_lease(T, session.id, "host-a", TTL).await.unwrap();
    assert!(s.release_lease(T, &lease).await.unwrap());
    assert!(fenced(
        s.append_steps(T, session.id, 0, lease.token, &one).await
    ));
    // Lapsed: refused until renewed, then accepted (nobody took it over meanwhile).
    let lease = s
        .acquire_lease(T, session.id, "host-a", SHORT)
        .await
        .unwrap();
    tokio::time::sleep(LAPSE).await;
    assert!(fenced(
        s.append_steps(T, session.id, 0, lease.token, &one).await
    ));
    let renewed = s.renew_lease(T, &lease, TTL).await.unwrap();
    assert_eq!(renewed.token, lease.token);
    assert_eq!(
        s.append_steps(T, session.id, 0, renewed.token, &one).await,
        Ok(1)
    );
}

async fn the_same_holder_acquiring_again_fences_its_earlier_token(s: Store) {
    let (session, first) = leased(&s).await;
    let second = s.acquire_lease(T, session.id, "host-a", TTL).await.unwrap();
    assert!(second.token > first.token);
    let one = [step(Uuid::now_v7(), StepKind::TaskStarted, 0)];
    assert!(matches!(
        s.append_steps(T, session.id, 0, first.token, &one).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        s.append_steps(T, session.id, 0, second.token, &one).await,
        Ok(1)
    );
}

async fn concurrent_appends_at_one_step_let_exactly_one_win(s: Store) {
    let (session, lease) = leased(&s).await;
    let task = Uuid::now_v7();
    let racers: Vec<_> = (0..RACERS as u64)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                s.append_steps(
                    T,
                    session.id,
                    0,
                    lease.token,
                    &[step(task, StepKind::ToolResult, n)],
                )
                .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (n, racer) in racers.into_iter().enumerate() {
        match racer.await.unwrap() {
            Ok(next) => {
                assert_eq!(next, 1);
                won.push(n as u64);
            }
            Err(e) => assert_eq!(e, StoreError::Conflict { current_version: 1 }),
        }
    }
    assert_eq!(won.len(), 1, "exactly one append wins");
    let journal = s.read_journal(T, session.id, 0, 0).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].payload, json!({ "n": won[0] }));
}

async fn oversized_or_empty_appends_are_refused_whole(s: Store) {
    let (session, lease) = leased(&s).await;
    let task = Uuid::now_v7();
    let append = |steps: Vec<NewStep>| {
        let s = s.clone();
        async move { s.append_steps(T, session.id, 0, lease.token, &steps).await }
    };
    assert!(is_invalid(append(vec![]).await));
    let many = (0..=MAX_ENTRIES_PER_APPEND as u64)
        .map(|n| step(task, StepKind::ToolResult, n))
        .collect();
    assert!(is_invalid(append(many).await));
    let payload_of = |bytes: usize| NewStep {
        // A JSON string's text is its characters plus two quotes.
        payload: json!("x".repeat(bytes - 2)),
        ..step(task, StepKind::ModelResponse, 0)
    };
    // One oversized step refuses the whole batch, the good step before it included.
    let batch = vec![
        step(task, StepKind::TaskStarted, 0),
        payload_of(MAX_PAYLOAD_BYTES + 1),
    ];
    assert!(is_invalid(append(batch).await));
    let long_call = NewStep {
        call_id: Some("c".repeat(MAX_CALL_ID_BYTES + 1)),
        ..step(task, StepKind::ToolCall, 0)
    };
    assert!(is_invalid(append(vec![long_call]).await));
    assert!(
        s.read_journal(T, session.id, 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // Exactly at the bounds is fine.
    let full: Vec<NewStep> = (0..MAX_ENTRIES_PER_APPEND as u64)
        .map(|n| step(task, StepKind::ToolResult, n))
        .collect();
    assert_eq!(append(full).await, Ok(MAX_ENTRIES_PER_APPEND as u64));
    let big = s
        .append_steps(
            T,
            session.id,
            MAX_ENTRIES_PER_APPEND as u64,
            lease.token,
            &[payload_of(MAX_PAYLOAD_BYTES)],
        )
        .await;
    assert_eq!(big, Ok(MAX_ENTRIES_PER_APPEND as u64 + 1));
}

// ---- memory ----

async fn memory_round_trips_with_its_version_and_writer(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    assert_eq!(s.get_memory(T, &ns, "plan").await.unwrap(), None);
    let v1 = s
        .put_memory(
            T,
            &ns,
            "plan",
            r#"{"step": 1}"#,
            None,
            &writer(),
            &NO_LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(v1, 1);
    let entry = s.get_memory(T, &ns, "plan").await.unwrap().unwrap();
    assert_eq!(entry.key, "plan");
    assert_eq!(
        entry.value, r#"{"step": 1}"#,
        "the value comes back as written"
    );
    assert_eq!(entry.version, 1);
    assert_eq!(entry.written_by_agent, "researcher");
    assert_eq!(entry.written_by_tool, "notes/save");
    assert!(entry.updated_at_ms > 0);
    let other = Writer {
        agent: "writer",
        tool: "drafts/edit",
    };
    let v2 = s
        .put_memory(T, &ns, "plan", "2", None, &other, &NO_LIMITS)
        .await
        .unwrap();
    assert_eq!(v2, 2);
    let entry = s.get_memory(T, &ns, "plan").await.unwrap().unwrap();
    assert_eq!((entry.value.as_str(), entry.version), ("2", 2));
    assert_eq!(entry.written_by_agent, "writer");
    assert_eq!(entry.written_by_tool, "drafts/edit");
}

async fn a_lost_compare_and_swap_is_a_conflict_carrying_the_current_version(s: Store) {
    let ns = Namespace::Agent("researcher".into());
    let put = |key: &'static str, value: &'static str, expected: Option<u64>| {
        let (s, ns) = (s.clone(), ns.clone());
        async move {
            s.put_memory(T, &ns, key, value, expected, &writer(), &NO_LIMITS)
                .await
        }
    };
    assert_eq!(put("k", "1", Some(0)).await, Ok(1));
    assert_eq!(
        put("k", "2", Some(0)).await,
        Err(StoreError::Conflict { current_version: 1 })
    );
    assert_eq!(put("k", "2", Some(1)).await, Ok(2));
    assert_eq!(
        put("k", "3", Some(1)).await,
        Err(StoreError::Conflict { current_version: 2 })
    );
    assert_eq!(
        put("absent", "3", Some(4)).await,
        Err(StoreError::Conflict { current_version: 0 })
    );
    let entry = s.get_memory(T, &ns, "k").await.unwrap().unwrap();
    assert_eq!((entry.value.as_str(), entry.version), ("2", 2));
    assert_eq!(s.get_memory(T, &ns, "absent").await.unwrap(), None);
}

async fn deletes_take_an_expected_version_and_versions_are_never_reused(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    let w = writer();
    assert_eq!(
        s.put_memory(T, &ns, "k", "1", None, &w, &NO_LIMITS).await,
        Ok(1)
    );
    assert_eq!(
        s.delete_memory(T, &ns, "k", Some(3), &w).await,
        Err(StoreError::Conflict { current_version: 1 })
    );
    assert_eq!(
        s.delete_memory(T, &ns, "k", Some(0), &w).await,
        Err(StoreError::Conflict { current_version: 1 })
    );
    assert_eq!(s.delete_memory(T, &ns, "k", Some(1), &w).await, Ok(true));
    assert_eq!(s.get_memory(T, &ns, "k").await.unwrap(), None);
    assert_eq!(s.delete_memory(T, &ns, "k", None, &w).await, Ok(false));
    assert_eq!(
        s.delete_memory(T, &ns, "k", Some(1), &w).await,
        Err(StoreError::Conflict { current_version: 0 })
    );
    // Recreated, the key continues past its tombstone: a writer still holding version 1 from
    // before the delete cannot mistake the new entry for the one it read.
    assert_eq!(
        s.put_memory(T, &ns, "k", "\"new\"", Some(0), &w, &NO_LIMITS)
            .await,
        Ok(3)
    );
    assert_eq!(
        s.put_memory(T, &ns, "k", "\"stale\"", Some(1), &w, &NO_LIMITS)
            .await,
        Err(StoreError::Conflict { current_version: 3 })
    );
    assert_eq!(
        s.get_memory(T, &ns, "k").await.unwrap().unwrap().value,
        "\"new\""
    );
}

async fn namespaces_and_tenants_keep_memory_apart(s: Store) {
    let one = s.create_session(T, "researcher").await.unwrap();
    let two = s.create_session(T, "researcher").await.unwrap();
    let spaces = [
        (T, Namespace::Session(one.id)),
        (T, Namespace::Session(two.id)),
        (T, Namespace::Agent("researcher".into())),
        (T, Namespace::Agent("writer".into())),
        (T, Namespace::Shared("fleet".into())),
        (T, Namespace::Shared("researcher".into())),
        (OTHER, Namespace::Shared("fleet".into())),
        (OTHER, Namespace::Agent("researcher".into())),
    ];
    for (i, (tenant, ns)) in spaces.iter().enumerate() {
        let v = s
            .put_memory(tenant, ns, "k", &i.to_string(), None, &writer(), &NO_LIMITS)
            .await
            .unwrap();
        assert_eq!(v, 1, "{tenant} {ns:?} starts its own version");
    }
    for (i, (tenant, ns)) in spaces.iter().enumerate() {
        let entry = s.get_memory(tenant, ns, "k").await.unwrap().unwrap();
        assert_eq!(entry.value, i.to_string(), "{tenant} {ns:?}");
        let page = s.list_memory(tenant, ns, "", None, 0).await.unwrap();
        assert_eq!(page.entries, vec![entry]);
    }
}

async fn session_memory_needs_its_session(s: Store) {
    let ns = Namespace::Session(SessionId::new());
    let put = s
        .put_memory(T, &ns, "k", "1", None, &writer(), &NO_LIMITS)
        .await;
    assert!(matches!(put, Err(StoreError::NotFound(_))), "{put:?}");
    assert_eq!(s.get_memory(T, &ns, "k").await.unwrap(), None);
}

async fn listing_pages_through_a_prefix_in_key_order(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    // Inserted out of order; listed in bytewise key order.
    let keys = [
        "note/\u{10FFFF}",
        "note/é",
        "note0",
        "note/3",
        "a",
        "note/1",
        "note/gone",
        "notf",
        "note/2",
        "note",
    ];
    for key in keys {
        s.put_memory(T, &ns, key, "true", None, &writer(), &NO_LIMITS)
            .await
            .unwrap();
    }
    s.delete_memory(T, &ns, "note/gone", None, &writer())
        .await
        .unwrap();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .list_memory(T, &ns, "note/", cursor.as_deref(), 2)
            .await
            .unwrap();
        let keys: Vec<String> = page.entries.iter().map(|e| e.key.clone()).collect();
        pages.push(keys);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages.len() < 10, "the listing ends");
    }
    assert_eq!(
        pages,
        vec![
            vec!["note/1", "note/2"],
            vec!["note/3", "note/é"],
            vec!["note/\u{10FFFF}"]
        ]
    );
    let everything = s.list_memory(T, &ns, "", None, 0).await.unwrap();
    let all: Vec<&str> = everything.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        all,
        [
            "a",
            "note",
            "note/1",
            "note/2",
            "note/3",
            "note/é",
            "note/\u{10FFFF}",
            "note0",
            "notf"
        ]
    );
    assert_eq!(everything.next_cursor, None);
    let none = s.list_memory(T, &ns, "zzz", None, 5).await.unwrap();
    assert!(none.entries.is_empty() && none.next_cursor.is_none());
}

async fn memory_sizes_are_bounded_at_exactly_their_limits(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    let w = writer();
    let key_at_limit = "k".repeat(MAX_KEY_BYTES);
    let key_over = "k".repeat(MAX_KEY_BYTES + 1);
    // A JSON string's text is its characters plus two quotes.
    let value_at_limit = format!("\"{}\"", "v".repeat(MAX_VALUE_BYTES - 2));
    let value_over = format!("\"{}\"", "v".repeat(MAX_VALUE_BYTES - 1));
    assert_eq!(
        s.put_memory(T, &ns, &key_at_limit, &value_at_limit, None, &w, &NO_LIMITS)
            .await,
        Ok(1)
    );
    assert!(is_invalid(
        s.put_memory(T, &ns, &key_over, "1", None, &w, &NO_LIMITS)
            .await
    ));
    assert!(is_invalid(
        s.put_memory(T, &ns, "big", &value_over, None, &w, &NO_LIMITS)
            .await
    ));
    assert!(is_invalid(s.get_memory(T, &ns, &key_over).await));
    assert!(is_invalid(
        s.delete_memory(T, &ns, &key_over, None, &w).await
    ));
    assert!(is_invalid(s.list_memory(T, &ns, &key_over, None, 1).await));
    assert_eq!(s.get_memory(T, &ns, "big").await.unwrap(), None);
    let stored = s.get_memory(T, &ns, &key_at_limit).await.unwrap().unwrap();
    assert_eq!(stored.value.len(), MAX_VALUE_BYTES);
}

async fn malformed_memory_requests_are_refused(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    let w = writer();
    assert!(is_invalid(
        s.put_memory(T, &ns, "", "1", None, &w, &NO_LIMITS).await
    ));
    assert!(is_invalid(
        s.put_memory(T, &ns, "a\0b", "1", None, &w, &NO_LIMITS)
            .await
    ));
    assert!(is_invalid(
        s.put_memory(T, &ns, "k", "not json", None, &w, &NO_LIMITS)
            .await
    ));
    let unnamed = Namespace::Shared(String::new());
    assert!(is_invalid(
        s.put_memory(T, &unnamed, "k", "1", None, &w, &NO_LIMITS)
            .await
    ));
    let nobody = Writer {
        agent: "",
        tool: "notes/save",
    };
    assert!(is_invalid(
        s.put_memory(T, &ns, "k", "1", None, &nobody, &NO_LIMITS)
            .await
    ));
    let bad_tool = Writer {
        agent: "researcher",
        tool: "notes\0save",
    };
    assert!(is_invalid(
        s.put_memory(T, &ns, "k", "1", None, &bad_tool, &NO_LIMITS)
            .await
    ));
    assert_eq!(s.get_memory(T, &ns, "k").await.unwrap(), None);
}

async fn concurrent_compare_and_swaps_on_one_key_let_exactly_one_win(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    // Racing to create a key, then racing to update it from one version.
    for (expected, winner_version) in [(Some(0), 1), (Some(1), 2)] {
        let racers: Vec<_> = (0..RACERS)
            .map(|n| {
                let (s, ns) = (s.clone(), ns.clone());
                tokio::spawn(async move {
                    s.put_memory(T, &ns, "k", &n.to_string(), expected, &writer(), &NO_LIMITS)
                        .await
                })
            })
            .collect();
        let mut won = Vec::new();
        for (n, racer) in racers.into_iter().enumerate() {
            match racer.await.unwrap() {
                Ok(version) => {
                    assert_eq!(version, winner_version);
                    won.push(n);
                }
                Err(e) => assert_eq!(
                    e,
                    StoreError::Conflict {
                        current_version: winner_version as i64
                    }
                ),
            }
        }
        assert_eq!(won.len(), 1, "exactly one compare-and-swap wins");
        let entry = s.get_memory(T, &ns, "k").await.unwrap().unwrap();
        assert_eq!(entry.value, won[0].to_string());
        assert_eq!(entry.version, winner_version);
    }
}

/// A JSON string value whose text is exactly `bytes` long.
fn value_of(bytes: usize) -> String {
    format!("\"{}\"", "v".repeat(bytes - 2))
}

fn namespace_limit(bytes: u64) -> MemoryLimits {
    MemoryLimits {
        max_namespace_bytes: bytes,
        ..NO_LIMITS
    }
}

async fn a_namespace_limit_refuses_growth_past_it_counting_rewrites_and_deletes(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    let w = writer();
    let limits = namespace_limit(100);
    // Keys count too: "k1" plus 48 bytes of value is 50.
    assert_eq!(
        s.put_memory(T, &ns, "k1", &value_of(48), None, &w, &limits)
            .await,
        Ok(1)
    );
    assert_eq!(
        s.put_memory(T, &ns, "k2", &value_of(48), None, &w, &limits)
            .await,
        Ok(1)
    );
    assert_eq!(
        s.memory_usage(T, &ns).await.unwrap(),
        MemoryUsage {
            bytes: 100,
            entries: 2
        }
    );
    // Exactly at the limit: one more byte does not fit, and nothing is written.
    let over = s.put_memory(T, &ns, "k3", "1", None, &w, &limits).await;
    match over {
        Err(StoreError::Invalid(message)) => assert!(
            message.contains("max_namespace_mb") && message.contains("100 bytes"),
            "{message}"
        ),
        other => panic!("a write past the namespace limit must be refused: {other:?}"),
    }
    assert_eq!(s.get_memory(T, &ns, "k3").await.unwrap(), None);
    // A rewrite counts the difference: shrinking k1 to "1" frees 47 bytes.
    assert_eq!(
        s.put_memory(T, &ns, "k1", "1", None, &w, &limits).await,
        Ok(2)
    );
    assert_eq!(
        s.put_memory(T, &ns, "k3", "1", None, &w, &limits).await,
        Ok(1)
    );
    // Growing an entry past the limit is refused like a new one.
    assert!(is_invalid(
        s.put_memory(T, &ns, "k1", &value_of(50), None, &w, &limits)
            .await
    ));
    // A delete frees its entry's bytes.
    assert!(s.delete_memory(T, &ns, "k2", None, &w).await.unwrap());
    assert_eq!(
        s.memory_usage(T, &ns).await.unwrap(),
        MemoryUsage {
            bytes: 6,
            entries: 2
        }
    );
    assert_eq!(
        s.put_memory(T, &ns, "k2", &value_of(90), None, &w, &limits)
            .await,
        Ok(3)
    );
    // Another namespace, or another tenant's, has a limit of its own.
    let other = Namespace::Shared("other".into());
    assert_eq!(
        s.put_memory(T, &other, "k", &value_of(99), None, &w, &limits)
            .await,
        Ok(1)
    );
    assert_eq!(
        s.put_memory(OTHER, &ns, "k", &value_of(99), None, &w, &limits)
            .await,
        Ok(1)
    );
    // A lowered limit still lets a namespace over it shrink.
    let lowered = namespace_limit(10);
    assert_eq!(
        s.put_memory(T, &ns, "k2", "2", None, &w, &lowered).await,
        Ok(4)
    );
}

async fn concurrent_writers_cannot_both_squeeze_past_a_namespace_limit(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    // Each entry is 40 bytes ("kN" and 38 of value): two fit in 100, a third does not.
    let limits = namespace_limit(100);
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let (s, ns) = (s.clone(), ns.clone());
            tokio::spawn(async move {
                s.put_memory(
                    T,
                    &ns,
                    &format!("k{n}"),
                    &value_of(38),
                    None,
                    &writer(),
                    &limits,
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(1) => won += 1,
            Err(StoreError::Invalid(_)) => {}
            other => panic!("a racer got {other:?}"),
        }
    }
    assert_eq!(won, 2, "exactly two 40-byte entries fit in 100 bytes");
    assert_eq!(
        s.memory_usage(T, &ns).await.unwrap(),
        MemoryUsage {
            bytes: 80,
            entries: 2
        }
    );
    let listed = s.list_memory(T, &ns, "", None, 0).await.unwrap().entries;
    assert_eq!(listed.len(), 2);
}

async fn a_value_limit_below_the_stores_refuses_a_bigger_value(s: Store) {
    let ns = Namespace::Shared("fleet".into());
    let limits = MemoryLimits {
        max_value_bytes: 64,
        ..NO_LIMITS
    };
    assert_eq!(
        s.put_memory(T, &ns, "k", &value_of(64), None, &writer(), &limits)
            .await,
        Ok(1)
    );
    match s
        .put_memory(T, &ns, "k", &value_of(65), None, &writer(), &limits)
        .await
    {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains("max_value_kb"), "{message}")
        }
        other => panic!("a value over the limit must be refused: {other:?}"),
    }
    // A limit above the store's own counts as the store's.
    let above = MemoryLimits {
        max_value_bytes: MAX_VALUE_BYTES * 2,
        ..NO_LIMITS
    };
    assert!(is_invalid(
        s.put_memory(
            T,
            &ns,
            "big",
            &value_of(MAX_VALUE_BYTES + 1),
            None,
            &writer(),
            &above
        )
        .await
    ));
}

// ---- leases ----

async fn a_live_lease_is_refused_to_another_holder_naming_it(s: Store) {
    let (session, lease) = leased(&s).await;
    assert_eq!(lease.holder, "host-a");
    assert_eq!(lease.session, session.id);
    let busy = s.acquire_lease(T, session.id, "host-b", TTL).await;
    assert_eq!(
        busy,
        Err(StoreError::LeaseHeld {
            holder: "host-a".into(),
            until_ms: lease.expires_at_ms
        })
    );
    assert_eq!(s.current_lease(T, session.id).await.unwrap(), Some(lease));
}

async fn a_lapsed_lease_is_taken_over_with_a_larger_token(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let old = s
        .acquire_lease(T, session.id, "host-a", SHORT)
        .await
        .unwrap();
    assert!(matches!(
        s.acquire_lease(T, session.id, "host-b", TTL).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    tokio::time::sleep(LAPSE).await;
    let new = s.acquire_lease(T, session.id, "host-b", TTL).await.unwrap();
    assert_eq!(new.token.0, old.token.0 + 1);
    assert!(matches!(
        s.renew_lease(T, &old, TTL).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(!s.release_lease(T, &old).await.unwrap());
    assert_eq!(s.current_lease(T, session.id).await.unwrap(), Some(new));
}

async fn renewing_keeps_a_lease_from_lapsing(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let lease = s
        .acquire_lease(T, session.id, "host-a", SHORT)
        .await
        .unwrap();
    let renewed = s.renew_lease(T, &lease, TTL).await.unwrap();
    assert_eq!(renewed.token, lease.token);
    assert!(renewed.expires_at_ms >= lease.expires_at_ms + TTL.as_millis() as u64 / 2);
    tokio::time::sleep(LAPSE).await;
    assert!(matches!(
        s.acquire_lease(T, session.id, "host-b", TTL).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    let stranger = Lease {
        holder: "host-b".into(),
        ..renewed.clone()
    };
    assert!(matches!(
        s.renew_lease(T, &stranger, TTL).await,
        Err(StoreError::Fenced { .. })
    ));
}

async fn a_released_lease_is_free_at_once_and_tokens_keep_growing(s: Store) {
    let (session, first) = leased(&s).await;
    assert!(s.release_lease(T, &first).await.unwrap());
    assert_eq!(s.current_lease(T, session.id).await.unwrap(), None);
    assert!(!s.release_lease(T, &first).await.unwrap());
    let second = s.acquire_lease(T, session.id, "host-b", TTL).await.unwrap();
    assert_eq!(second.token.0, first.token.0 + 1);
    assert!(matches!(
        s.renew_lease(T, &first, TTL).await,
        Err(StoreError::Fenced { .. })
    ));
}

async fn only_running_sessions_without_a_live_lease_are_orphans(s: Store) {
    let running = |tenant: &'static str| {
        let s = s.clone();
        async move {
            let session = s.create_session(tenant, "researcher").await.unwrap();
            s.set_session_status(tenant, session.id, SessionStatus::Running)
                .await
                .unwrap();
            session.id
        }
    };
    let held = running(T).await;
    s.acquire_lease(T, held, "host-a", TTL).await.unwrap();
    let lapsed = running(T).await;
    s.acquire_lease(T, lapsed, "host-a", SHORT).await.unwrap();
    let released = running(T).await;
    let lease = s.acquire_lease(T, released, "host-a", TTL).await.unwrap();
    assert!(s.release_lease(T, &lease).await.unwrap());
    let never_leased = running(T).await;
    let elsewhere = running(OTHER).await;
    let idle = s.create_session(T, "researcher").await.unwrap();
    let interrupted = s.create_session(T, "researcher").await.unwrap();
    s.set_session_status(T, interrupted.id, SessionStatus::Interrupted)
        .await
        .unwrap();
    tokio::time::sleep(LAPSE).await;

    let found = s.orphaned_sessions(100).await.unwrap();
    let ids: std::collections::BTreeSet<SessionId> = found.iter().map(|o| o.session).collect();
    let expected: std::collections::BTreeSet<SessionId> =
        [lapsed, released, never_leased, elsewhere].into();
    assert_eq!(ids, expected, "orphans: {found:?}");
    assert!(!ids.contains(&held) && !ids.contains(&idle.id));
    let other = found.iter().find(|o| o.session == elsewhere).unwrap();
    assert_eq!(other.tenant, OTHER);
    assert_eq!(s.orphaned_sessions(2).await.unwrap().len(), 2);

    // Taken over again, a session is no orphan.
    s.acquire_lease(T, lapsed, "host-b", TTL).await.unwrap();
    let after: Vec<SessionId> = s
        .orphaned_sessions(100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.session)
        .collect();
    assert!(!after.contains(&lapsed), "{after:?}");
    assert_eq!(after.len(), 3);
}

async fn concurrent_acquires_let_exactly_one_win(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                s.acquire_lease(T, session.id, &format!("host-{n}"), TTL)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    let winners: Vec<&Lease> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one acquire wins: {outcomes:?}");
    let winner = winners[0].clone();
    assert_eq!(winner.token, FencingToken(1));
    for outcome in &outcomes {
        if let Err(e) = outcome {
            assert_eq!(
                *e,
                StoreError::LeaseHeld {
                    holder: winner.holder.clone(),
                    until_ms: winner.expires_at_ms
                }
            );
        }
    }
    assert_eq!(s.current_lease(T, session.id).await.unwrap(), Some(winner));
}

async fn lease_requests_out_of_bounds_are_refused(s: Store) {
    let session = s.create_session(T, "researcher").await.unwrap();
    let id = session.id;
    assert!(is_invalid(
        s.acquire_lease(T, id, "host-a", Duration::ZERO).await
    ));
    let too_long = MAX_LEASE_TTL + Duration::from_secs(1);
    assert!(is_invalid(s.acquire_lease(T, id, "host-a", too_long).await));
    assert!(is_invalid(s.acquire_lease(T, id, "", TTL).await));
    assert_eq!(s.current_lease(T, id).await.unwrap(), None);
    assert!(
        s.acquire_lease(T, id, "host-a", MAX_LEASE_TTL)
            .await
            .is_ok()
    );
}

// ---- across restarts and hosts ----

/// What a restarted host, or a second host on the same store, sees: the journal and memory the
/// first one committed, and its lease still held.
async fn a_second_handle_sees_committed_state_and_the_lease(url: StateUrl) {
    let first = StateStore::open(&url).await.unwrap().agent_state();
    let (session, lease) = leased(&first).await;
    let task = Uuid::now_v7();
    first
        .append_steps(
            T,
            session.id,
            0,
            lease.token,
            &[step(task, StepKind::ToolResult, 0)],
        )
        .await
        .unwrap();
    let ns = Namespace::Session(session.id);
    first
        .put_memory(T, &ns, "k", "1", None, &writer(), &NO_LIMITS)
        .await
        .unwrap();

    let second = StateStore::open(&url).await.unwrap().agent_state();
    let journal = second.read_journal(T, session.id, 0, 0).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].call_id.as_deref(), Some("call-0"));
    assert_eq!(
        second
            .get_memory(T, &ns, "k")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        second.acquire_lease(T, session.id, "host-b", TTL).await,
        Err(StoreError::LeaseHeld {
            holder: "host-a".into(),
            until_ms: lease.expires_at_ms
        })
    );
    drop(first);
    // The first handle's lease outlives the handle: only time or a release frees it.
    assert_eq!(
        second.current_lease(T, session.id).await.unwrap(),
        Some(lease)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_second_handle_sees_committed_state_and_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    a_second_handle_sees_committed_state_and_the_lease(StateUrl::Sqlite(
        dir.path().join("state.db"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_second_handle_sees_committed_state_and_the_lease() {
    let Some(schema) = PgTestSchema::create("a_second_handle") else {
        return;
    };
    a_second_handle_sees_committed_state_and_the_lease(StateUrl::Postgres(
        schema.url().to_string(),
    ))
    .await;
}

/// Undoes migration 4 (the usage table) and the ones after it, with their records, as a store
/// written before migration 4 had.
const BEFORE_MIGRATION_4: &str = "DROP TABLE agent_memory_usage; DROP INDEX audit_log_tenant; \
     DROP INDEX IF EXISTS agent_sessions_running; DROP TABLE IF EXISTS warden_hosts; \
     DELETE FROM warden_schema WHERE version >= 4;";

/// Writes entries, takes the store back to before migration 4 with `undo`, reopens it, and
/// checks that the migration counted what was stored: live entries' keys and values in bytes
/// (a multi-byte character counts its bytes), tombstones not at all.
async fn migration_4_counts_the_entries_already_stored(url: StateUrl, undo: impl FnOnce()) {
    let ns = Namespace::Shared("fleet".into());
    let other = Namespace::Agent("researcher".into());
    {
        let s = StateStore::open(&url).await.unwrap().agent_state();
        s.put_memory(T, &ns, "a", "\"é\"", None, &writer(), &NO_LIMITS)
            .await
            .unwrap();
        s.put_memory(T, &ns, "bb", "12345", None, &writer(), &NO_LIMITS)
            .await
            .unwrap();
        s.put_memory(T, &ns, "gone", "1", None, &writer(), &NO_LIMITS)
            .await
            .unwrap();
        assert!(
            s.delete_memory(T, &ns, "gone", None, &writer())
                .await
                .unwrap()
        );
        s.put_memory(T, &other, "k", "true", None, &writer(), &NO_LIMITS)
            .await
            .unwrap();
    }
    undo();
    let s = StateStore::open(&url).await.unwrap().agent_state();
    // "a" + "\"é\"" is 1 + 4 bytes; "bb" + "12345" is 7.
    assert_eq!(
        s.memory_usage(T, &ns).await.unwrap(),
        MemoryUsage {
            bytes: 12,
            entries: 2
        }
    );
    assert_eq!(
        s.memory_usage(T, &other).await.unwrap(),
        MemoryUsage {
            bytes: 5,
            entries: 1
        }
    );
    // And the limit holds against what was counted.
    let full = MemoryLimits {
        max_namespace_bytes: 12,
        ..NO_LIMITS
    };
    assert!(is_invalid(
        s.put_memory(T, &ns, "c", "1", None, &writer(), &full).await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_migration_4_counts_the_entries_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let undo = || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(BEFORE_MIGRATION_4).unwrap();
    };
    migration_4_counts_the_entries_already_stored(StateUrl::Sqlite(path.clone()), undo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migration_4_counts_the_entries_already_stored() {
    let Some(schema) = PgTestSchema::create("migration_4") else {
        return;
    };
    let url = schema.url().to_string();
    let undo = || warden::state::testing::run_admin(&url, BEFORE_MIGRATION_4);
    migration_4_counts_the_entries_already_stored(StateUrl::Postgres(url.clone()), undo).await;
}

/// A host stopped (SIGSTOP) inside a transaction that holds the audit chain's advisory lock
/// must not stall every other host: PostgreSQL ends the idle transaction
/// (`idle_in_transaction_session_timeout`) before the others' lock timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_host_stopped_inside_the_audit_lock_does_not_stall_the_others() {
    use warden::policy::audit::NewRecord;
    use warden::policy::{AuditLog, Outcome};
    use warden::state::Backend;
    use warden::state::postgres::{LOCK_AUDIT, PG_TIMEOUT};

    let Some(schema) = PgTestSchema::create("stalled_audit_lock") else {
        return;
    };
    let url = StateUrl::Postgres(schema.url().to_string());
    let stalled = StateStore::open(&url).await.unwrap();
    let other = StateStore::open(&url).await.unwrap();
    let Backend::Postgres(pg) = stalled.backend() else {
        panic!("a PostgreSQL URL opened another backend");
    };
    let mut conn = pg.connection().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_AUDIT])
        .await
        .unwrap();
    // From here the stalled host sends nothing, as a stopped process would.
    let started = std::time::Instant::now();
    let record = NewRecord {
        capability: "sql",
        target: "after the stall",
        ..NewRecord::default()
    };
    AuditLog::open(&other)
        .append(&record, Outcome::Allowed)
        .await
        .expect("another host's audit append waited out the stalled transaction's lock");
    assert!(
        started.elapsed() < PG_TIMEOUT,
        "the append took {:?}",
        started.elapsed()
    );
    assert!(
        tx.execute("SELECT 1", &[]).await.is_err(),
        "the stalled transaction was not ended by the server"
    );
}
