//! `warden session list|show|delete` against real stores: each case fills a real SQLite file
//! (or, with `WARDEN_TEST_POSTGRES_URL`, a PostgreSQL schema of its own) through the library's
//! store API, the way the agent loop writes it, then drives the real `warden` binary on it.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

mod fixture;

mod delete;
mod list;
mod show;
