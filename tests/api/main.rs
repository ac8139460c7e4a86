//! Integration tests of the HTTP API (issue 12): `warden serve --config F --listen 127.0.0.1:0`
//! run as a real process, driven by a real HTTP client (and raw sockets where a client library
//! would not misbehave on purpose), with the real `counter` and `text-tools` plugins, against a
//! fake OpenAI-compatible model that is a real HTTP server on 127.0.0.1, on a SQLite state store
//! and, when `WARDEN_TEST_POSTGRES_URL` is set, a PostgreSQL twin (each test its own schema).
//!
//! The contract under test is the one of `docs` / the issue: paths, shapes, error kinds and
//! statuses, signals (SIGHUP reloads, SIGTERM drains), resumption at start, and the server's
//! own limits (Host header, body size, header timeout).

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

#[allow(dead_code)]
#[path = "../agents/model.rs"]
mod model;

#[allow(dead_code)]
#[path = "../agents/site.rs"]
mod site;

#[allow(dead_code)]
mod harness;
#[allow(dead_code)]
mod scripts;

mod durability;
mod endpoints;
mod errors;
mod limits;
mod openapi;
mod reload;
mod security;
mod stream;
mod tokens;
