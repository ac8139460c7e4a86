//! Integration tests for plugin authors: plugins written in Python and JavaScript, built with
//! the real componentize-py and componentize-js, called through the real `warden` binary and
//! compared with the Rust plugin; `warden plugin new` projects built in each language; and the
//! refusals an author meets (an import the host does not provide, a newer contract, a component
//! too big for the instance pool).
//!
//! The toolchains are installed on first use under `target/authors/` (see [`toolchains`]); the
//! first run downloads componentize-py from PyPI and componentize-js from npm, and takes
//! minutes: each big component is built and then compiled by wasmtime once. Later runs reuse
//! the installs, the builds and the compile cache.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

#[allow(dead_code)]
mod toolchains;

mod build;
mod docs;
mod examples;
mod exceptions;
mod new_project;
mod refusals;
mod rust_sdk;
mod typed;
mod workspace;
