//! Integration tests of a fleet (issue 14): several real `warden serve` processes on loopback
//! ports sharing one PostgreSQL database, with the real `counter` plugin counting its own
//! executions by call id in a PostgreSQL table, against the fake OpenAI-compatible model (a real
//! HTTP server on 127.0.0.1).
//!
//! - `failover`: three hosts, 30 tasks; one host is killed with SIGKILL, another is stopped
//!   past its lease and continued. Every task completes, no tool call whose result was journaled
//!   runs again, the paused host starts nothing after it wakes, the audit chain verifies, and
//!   the hosts' own folders hold nothing but their compile caches.
//! - `pg_restart`: two hosts on a private PostgreSQL cluster that is restarted mid-run.
//! - `configs`: hosts whose configs differ say so, naming the keys; hosts that agree say nothing.
//! - `upgrade`: a rolling upgrade to `warden_next` (version N+1) while N hosts keep serving; a
//!   new N host refuses the newer schema.
//!
//! Every case needs `WARDEN_TEST_POSTGRES_URL` (each test makes a fresh database of its own and
//! drops it afterwards); without it they say they are skipped, and pass. The cases run one at a
//! time (they time leases and signals, and this machine has 2 cores).

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

#[allow(dead_code)]
#[path = "../agents/model.rs"]
mod model;

#[allow(dead_code)]
mod harness;

mod configs;
mod failover;
mod pg_restart;
mod upgrade;
