//! Warden: a stateful runtime for AI agents.
//!
//! A native host runs third-party tool plugins as sandboxed WebAssembly components, each call in
//! a fresh instance with its own limits, and grants them only the capabilities the operator
//! allows. The tree shows the architecture:
//!
//! - [`engine`]: the one wasmtime engine, its epoch ticker and the on-disk compile cache;
//! - [`sandbox`]: per-call limits and the state of one call's store (no ambient authority);
//! - [`config`]: the operator's `warden.toml`, checked with every problem reported;
//! - [`policy`]: grants, each call's effective rights, and the hash-chained audit log;
//! - [`capabilities`]: the host side of each capability (log, files, sql, http, memory, model);
//! - [`models`]: the model router (aliases, fallbacks, quotas) and the provider backends;
//! - [`state`]: the state store (SQLite by default);
//! - [`agents`]: sessions and the agent loop, journaled step by step so a task survives a
//!   crash;
//! - [`plugins`]: loading, inspecting and calling a plugin;
//! - [`host`]: the host service, built once from a config: one async call path for every
//!   front end;
//! - [`metrics`]: the Prometheus metrics every call records, rendered for `/metrics`;
//! - [`error`]: what a call can fail with, and the CLI's exit code for each kind;
//! - [`cli`]: the `warden` command line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warden::error::CallError> {
//! use warden::engine::{EngineOptions, WardenEngine};
//! use warden::plugins::Plugin;
//! use warden::sandbox::CallLimits;
//!
//! let engine = WardenEngine::new(&EngineOptions::default())?;
//! let plugin = Plugin::load(&engine, "target/plugins/text-tools.wasm".as_ref()).await?;
//! let out = plugin
//!     .call("echo", r#"{"text":"hi"}"#, &Default::default(), &CallLimits::default())
//!     .await?;
//! assert_eq!(out, r#"{"text":"hi"}"#);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod agents;
pub mod api;
mod bindings;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod host;
pub mod mcp;
pub mod metrics;
pub mod models;
pub mod plugins;
pub mod policy;
pub mod sandbox;
pub mod state;
