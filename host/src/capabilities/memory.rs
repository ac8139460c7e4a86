//! The `memory` interface. Its store and grants come with the state store; until then every
//! namespace is denied, naming the grant, and no namespace handle is ever created.

use wasmtime::component::Resource;

use super::not_granted;
use crate::bindings::memory::{Entry, Host, HostNamespace, MemoryError, Namespace, Page};
use crate::sandbox::CallState;

fn denied(name: &str) -> MemoryError {
    MemoryError::Denied(not_granted(
        &format!("memory namespace `{name}`"),
        &format!("memory:{name}:rw"),
    ))
}

/// A handle can only come from `open`, which never succeeds yet, so a method call on one is a
/// forged handle: trap rather than answer.
fn forged() -> wasmtime::Error {
    wasmtime::format_err!("memory namespace handle that the host never issued")
}

impl Host for CallState {}

impl HostNamespace for CallState {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Namespace>, MemoryError>> {
        Ok(Err(denied(&name)))
    }

    async fn get(
        &mut self,
        _ns: Resource<Namespace>,
        _key: String,
    ) -> wasmtime::Result<Result<Option<Entry>, MemoryError>> {
        Err(forged())
    }

    async fn put(
        &mut self,
        _ns: Resource<Namespace>,
        _key: String,
        _value: String,
        _expected_version: Option<u64>,
    ) -> wasmtime::Result<Result<u64, MemoryError>> {
        Err(forged())
    }

    async fn delete(
        &mut self,
        _ns: Resource<Namespace>,
        _key: String,
        _expected_version: Option<u64>,
    ) -> wasmtime::Result<Result<bool, MemoryError>> {
        Err(forged())
    }

    async fn list(
        &mut self,
        _ns: Resource<Namespace>,
        _prefix: String,
        _cursor: Option<String>,
        _limit: u32,
    ) -> wasmtime::Result<Result<Page, MemoryError>> {
        Err(forged())
    }

    async fn drop(&mut self, _ns: Resource<Namespace>) -> wasmtime::Result<()> {
        Ok(())
    }
}
