//! What every backend must do, each case run on SQLite and on PostgreSQL.

use std::sync::Arc;

use warden::capabilities::{CallGrants, CallSite, Capabilities};
use warden::config::{ModelQuota, WardenConfig};
use warden::models::quota::{QuotaLedger, QuotaScope, RESERVATION_TTL_MS, ReserveError, Window};
use warden::policy::audit::NewRecord;
use warden::policy::{AuditLog, CallRights, Outcome};
use warden::sandbox::CallIdentity;
use warden::state::{StateStore, StoreError};

use crate::conformance;

fn rec(target: &str) -> NewRecord<'_> {
    NewRecord {
        capability: "sql",
        target,
        ..NewRecord::default()
    }
}

const DAY_MS: u64 = 86_400_000;
/// Noon on some day: far from a window's edge.
const NOON: u64 = 1_750_000_000_000 - 1_750_000_000_000 % DAY_MS + DAY_MS / 2;

fn scope(limits: ModelQuota) -> QuotaScope {
    QuotaScope {
        key: "agent:a".into(),
        label: "agent `a`".into(),
        config_key: "agents.a.limits.quota".into(),
        limits,
    }
}

/// The trigger both backends get to refuse audit records whose target is `refused`.
const REFUSE_SQLITE: &str = "CREATE TRIGGER refuse_some BEFORE INSERT ON audit_log \
    WHEN NEW.target = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;";
const REFUSE_POSTGRES: &str = "CREATE FUNCTION refuse_some() RETURNS trigger LANGUAGE plpgsql AS $$ \
    BEGIN IF NEW.target = 'refused' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; \
    CREATE TRIGGER refuse_some BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_some();";

conformance!(appends_form_a_chain_that_verifies, |t| {
    let log = AuditLog::open(&t.store);
    for target in ["a", "b", "c"] {
        log.append(&rec(target), Outcome::Allowed).await.unwrap();
    }
    let report = log.verify().await.unwrap().unwrap();
    assert_eq!(report.records, 3);
    let tail: Vec<String> = log
        .tail(2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(tail, ["b", "c"]);
    let head = log.head().await.unwrap();
    assert_eq!(head.seq, 3);
    assert_eq!(log.check_checkpoint(&head).await.unwrap(), Ok(()));
});

conformance!(concurrent_appends_from_two_stores_stay_one_chain, |t| {
    // Two opens of one store behave as two processes: each has its own writer and pool.
    let logs = [AuditLog::open(&t.store), AuditLog::open(&t.reopen().await)];
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let log = logs[writer % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let target = format!("w{writer}-{i}");
                log.append(&rec(&target), Outcome::Allowed).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = logs[0].verify().await.unwrap().unwrap();
    assert_eq!(report.records, 200);
});

conformance!(the_audit_log_refuses_updates_and_deletes, |t| {
    let log = AuditLog::open(&t.store);
    log.append(&rec("a"), Outcome::Allowed).await.unwrap();
    for (sqlite, postgres) in [
        (
            "UPDATE audit_log SET outcome = 'x'",
            "UPDATE audit_log SET outcome = 'x'",
        ),
        ("DELETE FROM audit_log", "DELETE FROM audit_log"),
        ("DELETE FROM audit_log", "TRUNCATE audit_log"),
    ] {
        let err = match t.store.sqlite() {
            Some(s) => {
                let sql = sqlite.to_string();
                s.write(move |tx| Ok(tx.execute_batch(&sql)?))
                    .await
                    .unwrap_err()
            }
            None => {
                let pg = t.store.postgres().unwrap();
                let client = pg.connection().await.unwrap();
                StoreError::from(client.batch_execute(postgres).await.unwrap_err())
            }
        };
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(log.verify().await.unwrap().unwrap().records, 1);
});

conformance!(
    a_refused_record_fails_alone_and_the_chain_stays_whole,
    |t| {
        t.exec(REFUSE_SQLITE, REFUSE_POSTGRES).await;
        let log = AuditLog::open(&t.store);
        // Queued together, so on SQLite they share group commits.
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let target = if i % 5 == 0 {
                        "refused".to_string()
                    } else {
                        format!("ok-{i}")
                    };
                    (i, log.append(&rec(&target), Outcome::Allowed).await)
                })
            })
            .collect();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            if i % 5 == 0 {
                let err = result.unwrap_err();
                assert!(matches!(err, StoreError::Refused(_)), "{err:?}");
            } else {
                result.unwrap();
            }
        }
        assert_eq!(log.verify().await.unwrap().unwrap().records, 32);
    }
);

conformance!(a_capability_use_whose_record_is_refused_is_refused, |t| {
    t.exec(REFUSE_SQLITE, REFUSE_POSTGRES).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[state]\nurl = \"{}\"\n", t.config_url);
    let config = WardenConfig::parse(&text, dir.path()).unwrap();
    let caps = Arc::new(Capabilities::configure(Arc::new(config)).unwrap());
    let grants = CallGrants {
        rights: CallRights::none("p"),
        capabilities: Some(caps),
    };
    let identity = CallIdentity::default();
    let site = CallSite {
        identity: &identity,
        plugin: "p",
        tool: "t",
    };
    grants
        .audit(&site, "sql", "fine", Outcome::Allowed, "")
        .await
        .unwrap();
    let failure = grants
        .audit(&site, "sql", "refused", Outcome::Allowed, "")
        .await
        .unwrap_err();
    assert!(
        failure.message().contains("refused by the test")
            && failure.message().contains(t.store.location()),
        "{failure}"
    );
    assert!(!failure.message().contains("password"), "{failure}");
});

conformance!(
    a_store_newer_than_the_binary_is_refused_naming_both_versions,
    |t| {
        t.exec(
        "INSERT INTO warden_schema (version, name, applied_at_ms) VALUES (999, 'from the future', 0)",
        "INSERT INTO warden_schema (version, name, applied_at_ms) VALUES (999, 'from the future', 0)",
    )
    .await;
        let err = StateStore::open(&t.url).await.err().unwrap();
        let StoreError::SchemaTooNew { store, binary } = err else {
            panic!("{err:?}");
        };
        assert_eq!(store, 999);
        assert!((2..999).contains(&binary));
        let message = err.to_string();
        assert!(
            message.contains("999") && message.contains(&binary.to_string()),
            "{message}"
        );
        // From synchronous code too (Capabilities::configure opens the store this way).
        let blocking = t.url.clone();
        let err = tokio::task::spawn_blocking(move || StateStore::open_blocking(&blocking).err())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(err, StoreError::SchemaTooNew { store: 999, .. }),
            "{err:?}"
        );
    }
);

conformance!(opening_twice_migrates_once, |t| {
    let again = t.reopen().await;
    let log = AuditLog::open(&again);
    log.append(&rec("a"), Outcome::Allowed).await.unwrap();
    assert_eq!(
        AuditLog::open(&t.store)
            .verify()
            .await
            .unwrap()
            .unwrap()
            .records,
        1
    );
});

conformance!(
    quotas_refuse_past_the_limit_and_settle_to_actual_usage,
    |t| {
        let ledger = QuotaLedger::open(&t.store);
        let s = [scope(ModelQuota {
            calls_per_minute: Some(2),
            tokens_per_day: Some(100),
            ..ModelQuota::default()
        })];
        let a = ledger.reserve(&s, 40, NOON).await.unwrap();
        let b = ledger.reserve(&s, 40, NOON + 1).await.unwrap();
        let Err(ReserveError::Exceeded(e)) = ledger.reserve(&s, 10, NOON + 2).await else {
            panic!("a third call was allowed");
        };
        assert!(
            e.message.contains("2 of its 2 model calls per minute"),
            "{}",
            e.message
        );
        a.settle(5).await;
        b.finish_unanswered().await;
        let used = ledger.usage("agent:a", Window::Day, NOON).await.unwrap();
        assert_eq!((used.calls, used.tokens), (1, 5));
        ledger
            .reserve(&s, 95, NOON + 3)
            .await
            .unwrap()
            .settle(95)
            .await;
        assert!(
            ledger.reserve(&s, 1, NOON + 4).await.is_err(),
            "100 of 100 tokens used"
        );
    }
);

conformance!(quotas_are_reserved_atomically_across_stores, |t| {
    let ledgers = [
        QuotaLedger::open(&t.store),
        QuotaLedger::open(&t.reopen().await),
    ];
    let s = scope(ModelQuota {
        calls_per_day: Some(25),
        ..ModelQuota::default()
    });
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let ledger = ledgers[i % 2].clone();
            let s = [s.clone()];
            tokio::spawn(async move {
                let mut granted = 0;
                for _ in 0..10 {
                    if let Ok(r) = ledger.reserve(&s, 1, NOON).await {
                        r.settle(1).await;
                        granted += 1;
                    }
                }
                granted
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert_eq!(granted, 25);
});

conformance!(
    an_abandoned_reservation_expires_but_a_spent_one_keeps_counting,
    |t| {
        let ledger = QuotaLedger::open(&t.store);
        let s = [scope(ModelQuota {
            calls_per_day: Some(2),
            ..ModelQuota::default()
        })];
        // Abandoned before its request went out (the process died): no release ever comes.
        std::mem::forget(ledger.reserve(&s, 10, NOON).await.unwrap());
        // Abandoned after its request may have gone out.
        let mut spent = ledger.reserve(&s, 10, NOON).await.unwrap();
        spent.mark_spent(true).await.unwrap();
        std::mem::forget(spent);
        assert!(ledger.reserve(&s, 10, NOON + 1).await.is_err());
        let later = NOON + RESERVATION_TTL_MS;
        let used = ledger.usage("agent:a", Window::Day, later).await.unwrap();
        assert_eq!(
            (used.calls, used.tokens),
            (1, 10),
            "only the spent one still counts"
        );
        ledger
            .reserve(&s, 10, later)
            .await
            .unwrap()
            .settle(10)
            .await;
        assert!(ledger.reserve(&s, 10, later).await.is_err());
    }
);

conformance!(a_dropped_reservation_is_given_back, |t| {
    let ledger = QuotaLedger::open(&t.store);
    let s = [scope(ModelQuota {
        calls_per_day: Some(1),
        ..ModelQuota::default()
    })];
    drop(ledger.reserve(&s, 10, NOON).await.unwrap());
    // Drop cannot wait: the release is queued, so allow it a moment to land.
    let mut given_back = false;
    for _ in 0..100 {
        if ledger
            .usage("agent:a", Window::Day, NOON)
            .await
            .unwrap()
            .calls
            == 0
        {
            given_back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(given_back);
    ledger.reserve(&s, 10, NOON).await.unwrap().settle(10).await;
});

/// A database that is down, or refuses the login, is a clear error at start that names the URL
/// without its password.
#[tokio::test]
async fn an_unreachable_postgres_store_is_a_clear_error_without_the_password() {
    for url in [
        "postgres://warden:hunter2-secret@127.0.0.1:1/state",
        "postgres://no_such_role_here:hunter2-secret@127.0.0.1:5432/test",
    ] {
        let parsed = warden::state::StateUrl::parse(url, std::path::Path::new("/")).unwrap();
        let err = StateStore::open(&parsed).await.err().unwrap();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.contains("127.0.0.1") && message.contains("***"),
            "{message}"
        );
        let err = tokio::task::spawn_blocking(move || StateStore::open_blocking(&parsed).err())
            .await
            .unwrap()
            .unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn the_state_url_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = WardenConfig::parse(
        "[state]\nurl_env = \"WARDEN_STATE_TEST_UNSET_VARIABLE\"\n",
        dir.path(),
    )
    .unwrap();
    let err = warden::state::StateUrl::from_config(&config).unwrap_err();
    assert!(
        err.to_string().contains("WARDEN_STATE_TEST_UNSET_VARIABLE"),
        "{err}"
    );
    let path_var = "PATH";
    let config =
        WardenConfig::parse(&format!("[state]\nurl_env = \"{path_var}\"\n"), dir.path()).unwrap();
    assert!(
        warden::state::StateUrl::from_config(&config).is_err(),
        "PATH is no state URL"
    );
}
