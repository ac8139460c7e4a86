//! A reservation held by a process that died: the process really dies (it aborts, so no
//! destructor and no release runs), and its reservation, whose request never went out, counts
//! until it expires and then stops counting.

use std::process::Command;

use warden::config::ModelQuota;
use warden::models::quota::{QuotaLedger, QuotaScope, RESERVATION_TTL_MS, Window};
use warden::state::{StateStore, StateUrl};

/// Where the child process finds the store it reserves in.
const CHILD_STORE: &str = "WARDEN_TEST_DEAD_RESERVATION_STORE";

const DAY_MS: u64 = 86_400_000;
/// Noon on some day: far from a window's edge.
const NOON: u64 = 1_750_000_000_000 - 1_750_000_000_000 % DAY_MS + DAY_MS / 2;

fn one_call_a_day() -> [QuotaScope; 1] {
    [QuotaScope {
        key: "agent:a".into(),
        label: "agent `a`".into(),
        config_key: "agents.a.limits.quota".into(),
        limits: ModelQuota {
            calls_per_day: Some(1),
            ..ModelQuota::default()
        },
    }]
}

async fn ledger(path: &std::path::Path) -> (StateStore, QuotaLedger) {
    let store = StateStore::open(&StateUrl::Sqlite(path.to_path_buf()))
        .await
        .expect("open the store");
    let ledger = QuotaLedger::open(&store);
    (store, ledger)
}

/// Not a test on its own: the child that `a_reservation_of_a_process_that_died_expires` runs.
/// It reserves the day's one call, then dies before any request could go out.
#[tokio::test]
#[ignore = "run as a child process by a_reservation_of_a_process_that_died_expires"]
async fn child_reserves_then_dies() {
    let path = std::env::var_os(CHILD_STORE).expect("run only as the child");
    let (_store, ledger) = ledger(path.as_ref()).await;
    let reservation = ledger
        .reserve(&one_call_a_day(), 10, NOON)
        .await
        .expect("the child's reservation");
    assert_eq!(reservation.tokens(), 10);
    // A crash: no destructor runs, so nothing gives the reservation back.
    std::process::abort();
}

#[tokio::test]
async fn a_reservation_of_a_process_that_died_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dead_reservation::child_reserves_then_dies",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_STORE, &path)
        .status()
        .expect("run the child");
    assert!(!status.success(), "the child should have died: {status}");

    let (_store, ledger) = ledger(&path).await;
    let used = ledger
        .usage("agent:a", Window::Day, NOON + 1)
        .await
        .unwrap();
    assert_eq!(
        used.calls, 1,
        "the dead process's reservation is still live"
    );
    assert!(
        ledger
            .reserve(&one_call_a_day(), 10, NOON + 1)
            .await
            .is_err(),
        "while it is live, the day's one call is taken"
    );
    let later = NOON + RESERVATION_TTL_MS;
    let used = ledger.usage("agent:a", Window::Day, later).await.unwrap();
    assert_eq!(used.calls, 0, "once expired, it no longer counts");
    ledger
        .reserve(&one_call_a_day(), 10, later)
        .await
        .expect("the day's call is free again")
        .settle(10)
        .await;
}
