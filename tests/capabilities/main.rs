//! Integration tests of the capabilities: the operator's config, grants and their denials,
//! directory sources, SQL sources, outbound HTTP, memory and the audit log. They drive the real binary
//! and the real plugins, with real files, a real SQLite database and the local PostgreSQL.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

mod audit;
mod config;
mod examples;
mod files;
mod http;
mod memory;
mod sql;
mod workspace;
