//! Integration tests of the host core: the real `warden` binary and the real plugins built from
//! `plugins/` by `host/build.rs`, plus in-process tests of the library for what a single process
//! must survive (every misbehaving plugin on one engine, concurrent calls, the time bound).
//!
//! Every spawned `warden` and every in-process engine shares one compile cache under
//! `target/test-cache`, so each plugin is compiled once per suite.

mod common;

mod bad_input;
mod cache;
mod calls;
mod hostile;
mod inspect;
mod misbehaviour;
mod refusals;
mod service;
