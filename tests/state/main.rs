//! The state store's conformance suite: every trait's behaviour, run against both backends (a
//! real SQLite file, and the real PostgreSQL named by `WARDEN_TEST_POSTGRES_URL`, each test in
//! a schema of its own), and several real `warden` processes sharing one store.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

mod agents;
mod backend;
mod conformance;
mod dead_reservation;
mod processes;
