//! `warden session list`: every session of the tenant, oldest first, across the store's pages.

use std::sync::Arc;

use serde_json::Value;

use crate::fixture::{Fixture, Kind};
use crate::on_both_stores;

/// More than two of the store's pages (500 each), so the listing must follow cursors.
const SESSIONS: usize = 1_100;

on_both_stores!(
    lists_every_session_oldest_first_across_pages,
    the_text_view_is_a_table_and_says_when_more_exist
);

/// Creates `n` sessions, every third one of `billing` and the rest of `support`, in parallel
/// (the SQLite writer commits them in groups); returns their ids as the CLI prints them.
async fn create_many(fx: &Fixture, tenant: &str, n: usize) -> Vec<(String, String)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = Arc::clone(&fx.agents);
        let tenant = tenant.to_string();
        tasks.push(tokio::spawn(async move {
            let agent = if i % 3 == 0 { "billing" } else { "support" };
            let s = store.create_session(&tenant, agent).await.unwrap();
            (s.id.to_string(), agent.to_string())
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.push(t.await.unwrap());
    }
    made
}

fn ids(listing: &Value) -> Vec<String> {
    listing
        .as_array()
        .expect("the listing is an array")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

async fn lists_every_session_oldest_first_across_pages(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "list_pages").await else {
        return;
    };
    let mut made = create_many(&fx, "local", SESSIONS).await;
    // Another tenant's sessions never show up in this tenant's listing.
    let others = create_many(&fx, "acme", 5).await;
    // Ids are UUIDv7 and the store lists by id; the oldest first is the smallest first.
    made.sort();

    let all = fx.warden(&["session", "list", "--json"]);
    all.assert_code(0);
    let listing = all.json();
    let listed = ids(&listing);
    let expected: Vec<String> = made.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(listed, expected, "every session once, oldest first");
    let first = &listing[0];
    assert_eq!(first["tenant"], "local");
    assert_eq!(first["agent"], made[0].1.as_str());
    assert_eq!(first["status"], "idle");
    assert!(first["created_at_ms"].as_u64().unwrap() > 0);
    assert!(first["created"].as_str().unwrap().ends_with('Z'));
    for (id, _) in &others {
        assert!(
            !listed.contains(id),
            "tenant acme's session {id} was listed"
        );
    }

    let limited = fx.warden(&["session", "list", "--json", "--limit", "700"]);
    limited.assert_code(0);
    assert_eq!(ids(&limited.json()), expected[..700].to_vec());

    let billing = fx.warden(&["session", "list", "--json", "--agent", "billing"]);
    billing.assert_code(0);
    let billing_ids = ids(&billing.json());
    let expected_billing: Vec<String> = made
        .iter()
        .filter(|(_, agent)| agent == "billing")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(billing_ids, expected_billing);

    let acme = fx.warden(&["session", "list", "--json", "--tenant", "acme"]);
    acme.assert_code(0);
    let mut acme_expected: Vec<String> = others.iter().map(|(id, _)| id.clone()).collect();
    acme_expected.sort();
    assert_eq!(ids(&acme.json()), acme_expected);

    let nobody = fx.warden(&["session", "list", "--json", "--tenant", "nobody"]);
    nobody.assert_code(0);
    assert_eq!(nobody.json(), serde_json::json!([]));
}

async fn the_text_view_is_a_table_and_says_when_more_exist(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "list_text").await else {
        return;
    };
    let mut made = create_many(&fx, "local", 12).await;
    made.sort();
    let run = fx.warden(&["session", "list", "--limit", "10"]);
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 12, "a header, 10 rows and a footer: {run:#?}");
    for word in ["ID", "AGENT", "STATUS", "CREATED", "UPDATED"] {
        assert!(
            lines[0].contains(word),
            "header {:?} lacks {word}",
            lines[0]
        );
    }
    for (line, (id, agent)) in lines[1..11].iter().zip(&made) {
        assert!(
            line.starts_with(id.as_str()),
            "row {line:?} should start with {id}"
        );
        assert!(line.contains(agent.as_str()) && line.contains("idle"));
    }
    assert!(
        lines[11].contains("10 sessions") && lines[11].contains("more exist"),
        "the footer should say the listing stopped at the limit: {:?}",
        lines[11]
    );

    let all = fx.warden(&["session", "list"]);
    all.assert_code(0);
    assert_eq!(all.stdout.lines().count(), 14);
    assert!(
        all.stdout
            .trim_end()
            .ends_with("12 sessions (tenant `local`)")
    );
}
