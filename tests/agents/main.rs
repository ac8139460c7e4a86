//! Integration tests of the agent loop (issue 11): `warden agent run` and `warden agent resume`
//! driven as real processes, with the real `counter` plugin counting its own executions in a real
//! SQLite ledger, on both state stores, against a fake model provider that is a real HTTP server
//! on 127.0.0.1 (OpenAI chat completions and the Anthropic Messages API).
//!
//! The PostgreSQL cases need `WARDEN_TEST_POSTGRES_URL`; without it they say they are skipped,
//! and pass.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

#[allow(dead_code)]
mod model;
#[allow(dead_code)]
mod site;

mod bad_input;
mod config;
mod counter;
mod crash;
mod in_process;
mod sessions;
mod tasks;
mod wire;
