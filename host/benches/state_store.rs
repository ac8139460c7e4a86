//! State store throughput: durable audit appends per second and quota reserve-and-settle cycles
//! per second, on SQLite (a real file, `synchronous = FULL`) and on PostgreSQL (when
//! `WARDEN_TEST_POSTGRES_URL` names one; in a schema of its own), with 1 and 8 concurrent
//! writers. Every append is committed before it returns.
//!
//! `cargo bench --bench state_store`; `STATE_BENCH_OPS` sets the operations per writer.

use std::time::Instant;

use warden::config::ModelQuota;
use warden::models::quota::{QuotaLedger, QuotaScope};
use warden::policy::audit::NewRecord;
use warden::policy::{AuditLog, Outcome};
use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl};

async fn appends_per_second(store: &StateStore, writers: usize, per_writer: usize) -> f64 {
    let log = AuditLog::open(store);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let target = format!("bench-{w}-{i}");
                    let record = NewRecord {
                        capability: "bench",
                        target: &target,
                        detail: "a typical detail line of an audit record",
                        ..NewRecord::default()
                    };
                    log.append(&record, Outcome::Allowed).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (writers * per_writer) as f64 / started.elapsed().as_secs_f64()
}

async fn reserves_per_second(store: &StateStore, writers: usize, per_writer: usize) -> f64 {
    let ledger = QuotaLedger::open(store);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let scope = [QuotaScope {
                    key: format!("agent:bench-{w}"),
                    label: "bench".into(),
                    config_key: "bench".into(),
                    limits: ModelQuota {
                        calls_per_day: Some(u64::MAX / 2),
                        tokens_per_day: Some(u64::MAX / 2),
                        ..ModelQuota::default()
                    },
                }];
                for _ in 0..per_writer {
                    let r = ledger
                        .reserve(&scope, 100, warden::state::now_ms())
                        .await
                        .expect("reserve");
                    r.settle(90).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (writers * per_writer) as f64 / started.elapsed().as_secs_f64()
}

async fn run(name: &str, store: &StateStore, ops: usize) {
    for writers in [1, 8] {
        let per_writer = if writers == 1 { ops } else { ops / 2 };
        let appends = appends_per_second(store, writers, per_writer).await;
        println!("{name:<10} audit appends     {writers} writer(s): {appends:>9.0} /s");
    }
    for writers in [1, 8] {
        let per_writer = if writers == 1 { ops / 2 } else { ops / 4 };
        let reserves = reserves_per_second(store, writers, per_writer).await;
        println!("{name:<10} quota reserve+settle {writers} writer(s): {reserves:>6.0} /s");
    }
}

fn main() {
    let ops: usize = std::env::var("STATE_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = StateStore::open(&StateUrl::Sqlite(dir.path().join("bench.db")))
            .await
            .expect("sqlite store");
        run("sqlite", &sqlite, ops).await;
        match PgTestSchema::create("bench") {
            Some(schema) => {
                let pg = StateStore::open(&StateUrl::Postgres(schema.url().to_string()))
                    .await
                    .expect("postgres store");
                run("postgres", &pg, ops / 4).await;
                drop(pg);
                drop(schema);
            }
            None => println!("postgres   skipped: WARDEN_TEST_POSTGRES_URL is not set"),
        }
    });
}
