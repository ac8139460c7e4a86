//! Integration tests of stateful agents: the agent loop, its journal, crash and resume.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

mod in_process;
