//! Integration tests of the model capability: the router, both providers' wire protocols,
//! fallbacks and retries, quotas, the audit trail, keys that never reach a plugin, and the
//! `summarize` plugin. Every backend is a real HTTP server on 127.0.0.1 (wiremock, or a raw
//! TCP server where the chunking itself is under test); no test reaches the internet.

#[allow(dead_code)]
#[path = "../host_core/common.rs"]
mod common;

mod mock;
mod site;

mod anthropic;
mod audit;
mod keys;
mod openai;
mod quotas;
mod routing;
mod summarize;
