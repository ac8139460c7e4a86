//! The `memory` interface. Its store comes with sessions; until then a namespace the call was
//! not granted is denied naming the grant, a granted one fails as not served yet, and no
//! namespace handle is ever created. Both are audited.

use wasmtime::component::Resource;

use crate::bindings::memory::{Entry, Host, HostNamespace, MemoryError, Namespace, Page};
use crate::policy::Outcome;
use crate::sandbox::CallState;

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
        if let Err(denial) = self.grants.rights.check_memory(&name, false) {
            // Denied either way; a failed record is kept on the call, which is then refused.
            let _ = self.audit("memory", &name, Outcome::Denied, &denial).await;
            return Ok(Err(MemoryError::Denied(denial)));
        }
        let reason = "this host does not serve memory yet";
        if let Err(failure) = self.audit("memory", &name, Outcome::Failed, reason).await {
            return Ok(Err(MemoryError::Failed(failure.to_string())));
        }
        Ok(Err(MemoryError::Failed(format!(
            "memory namespace `{name}`: {reason}"
        ))))
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
