//! Integration tests of Warden's MCP server (issue 13): `warden mcp` over stdio and MCP over
//! streamable HTTP in `warden serve`, run as real processes with the real plugins built by
//! `host/build.rs`, driven line by line (raw JSON-RPC, for what a client would never send), by
//! the official Python SDK (`mcp` 2.x, auto and legacy handshakes) and by the MCP Inspector's
//! CLI. The clients are installed by `.ci/mcp-clients` into `target/mcp-clients/`; the tests
//! run it themselves when they are missing, and fail with its output when it fails.
//!
//! The contract under test: the handshake (with the SDK's server/discover pitfall), tools/list
//! and tools/call shapes, tool errors as results, protocol errors for bad input with the
//! connection kept, cancellation, progress, list_changed on reload, session memory across calls
//! and reconnects (SQLite, and PostgreSQL when `WARDEN_TEST_POSTGRES_URL` is set), and the HTTP
//! side's tenant isolation, Host/Origin checks and size limits.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

#[allow(dead_code)]
mod clients;
#[allow(dead_code)]
mod harness;

mod bad_input;
mod http;
mod inspector;
mod python;
mod stdio;
