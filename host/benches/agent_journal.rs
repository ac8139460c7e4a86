//! Durable journal commits per second: agent loops, each holding its session's lease, append one
//! step at a time and wait for it to be committed before the next (as the agent loop does), on
//! SQLite (a real file, `synchronous = FULL`) and on PostgreSQL (when `WARDEN_TEST_POSTGRES_URL`
//! names one; in a schema of its own). DESIGN.md's target: at least 5,000 steps/s on SQLite.
//!
//! `cargo bench --bench agent_journal`; `JOURNAL_BENCH_STEPS` sets the steps per run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;
use warden::state::agents::AgentStore;
use warden::state::journal::{NewStep, StepKind};
use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl};

/// Steps per second with `loops` sessions appending at once, `total` steps in all.
async fn steps_per_second(store: &Arc<dyn AgentStore>, loops: usize, total: usize) -> f64 {
    let per_loop = total / loops;
    let mut sessions = Vec::new();
    for i in 0..loops {
        let session = store
            .create_session("bench", "agent")
            .await
            .expect("session");
        let lease = store
            .acquire_lease(
                "bench",
                session.id,
                &format!("loop-{i}"),
                Duration::from_secs(600),
            )
            .await
            .expect("lease");
        sessions.push((session.id, lease.token));
    }
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|(id, token)| {
            let store = store.clone();
            tokio::spawn(async move {
                let task = Uuid::now_v7();
                for n in 0..per_loop as u64 {
                    let step = NewStep {
                        task,
                        kind: StepKind::ToolResult,
                        call_id: Some(format!("call-{n}")),
                        payload: json!({ "output": "a typical short tool result", "n": n }),
                    };
                    store
                        .append_steps("bench", id, n, token, &[step])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("loop");
    }
    (per_loop * loops) as f64 / started.elapsed().as_secs_f64()
}

async fn run(name: &str, store: &StateStore, total: usize) {
    let agents = store.agent_state();
    for loops in [1, 8, 64] {
        let rate = steps_per_second(&agents, loops, total).await;
        println!("{name:<10} journal steps  {loops:>2} loop(s): {rate:>9.0} /s");
    }
}

fn main() {
    let total: usize = std::env::var("JOURNAL_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StateUrl::Sqlite(dir.path().join("state.db"));
        let store = StateStore::open(&url).await.expect("sqlite store");
        run("sqlite", &store, total).await;
        if let Some(schema) = PgTestSchema::create("agent_journal_bench") {
            let url = StateUrl::Postgres(schema.url().to_string());
            let store = StateStore::open(&url).await.expect("postgres store");
            run("postgres", &store, total / 4).await;
        }
    });
}
