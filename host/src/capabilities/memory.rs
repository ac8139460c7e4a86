//! The `memory` interface: durable, versioned key-value memory in the state store
//! ([`crate::state::memory`]).
//!
//! `open(name)` resolves the name (`session`: the calling session's private memory; `agent`:
//! the calling agent's across its sessions; anything else: a shared namespace), checks the
//! call's rights ([`crate::policy::CallRights::check_memory`]: the agent's own namespaces need
//! only the plugin's `max`, a shared one also the agent's `memory:NAME:ro|rw`), and puts a
//! [`MemoryHandle`] in the call's resource table. Every operation on a handle goes to the
//! store's [`MemoryStore`] with the calling agent and `plugin/tool` as the writer.
//!
//! Everything the guest sends is bounded before any store work: the name, keys, prefixes and
//! cursors (the store's byte bounds), values (the `[memory] max_value_kb` limit), page sizes,
//! and how many handles one call holds. The namespace limit (`[memory] max_namespace_mb`) is
//! enforced by the store, atomically with the write.
//!
//! Audit: each open, each denial, and each write (put, delete) is recorded. Reads (get, list)
//! are not recorded one by one: the open that allowed them is, with its access, and a read
//! changes nothing. One record per read would put a hash-chained, durable write on every
//! lookup, so a plugin that reads in a loop would spend its time waiting on the audit log, and
//! the log would be mostly reads.

use wasmtime::component::Resource;
use wasmtime_wasi::WasiView;

use crate::bindings::memory::{Entry, Host, HostNamespace, MemoryError, Namespace, Page};
use crate::capabilities::Capabilities;
use crate::policy::Outcome;
use crate::policy::grants::Access;
use crate::sandbox::{CallIdentity, CallState};
use crate::state::StoreError;
use crate::state::memory::{
    self as store, MAX_KEY_BYTES, MAX_MEMORY_PAGE, MAX_NAMESPACE_BYTES, MemoryEntry, MemoryLimits,
    Namespace as StoreNamespace, Writer,
};
use crate::state::sessions::SessionId;

/// The most memory handles one call may hold open at once. A handle holds no connection, but
/// each is an entry in the call's resource table in host memory (which
/// [`crate::sandbox::MAX_RESOURCES`] bounds as a whole); one handle serves any number of
/// operations, so a plugin needs a handful at most.
pub const MAX_MEMORY_HANDLES_PER_CALL: usize = 64;

/// The most bytes of entries one `list` page may bring into host memory: the page size is cut
/// so that even entries at the value limit fit (a page may hold fewer entries than asked; its
/// `next-cursor` says where the rest begins).
pub const MAX_LIST_PAGE_BYTES: usize = 8 << 20;

/// What a plugin's `namespace` handle stands for: the namespace it opened, checked at `open`.
pub(crate) struct MemoryHandle {
    /// The name the plugin opened it by (`session`, `agent` or the shared name).
    name: String,
    /// Where its entries are in the store.
    namespace: StoreNamespace,
    /// Whether the call's rights allow writing to it.
    writable: bool,
}

/// A handle can only come from `open`; one the host never issued traps the guest.
fn forged(e: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::format_err!("memory namespace handle that the host never issued: {e}")
}

/// The memory handles a call holds, counted in its own resource table (see the SQL handles).
fn open_handles(table: &mut wasmtime::component::ResourceTable) -> usize {
    table
        .iter_mut()
        .filter(|entry| entry.is::<MemoryHandle>())
        .count()
}

/// The limits `[memory]` sets, as the store applies them.
fn limits(caps: &Capabilities) -> MemoryLimits {
    let memory = &caps.config.memory;
    MemoryLimits {
        max_value_bytes: usize::try_from(memory.max_value_bytes()).unwrap_or(usize::MAX),
        max_namespace_bytes: memory.max_namespace_bytes(),
    }
}

/// A guest-given text as it may appear in a message or an audit record: at most 64 characters,
/// escaped.
fn shown(text: &str) -> String {
    const MOST: usize = 64;
    match text.char_indices().nth(MOST) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// The plugin's answer for a store error.
fn store_error(name: &str, e: StoreError) -> MemoryError {
    match e {
        StoreError::Conflict { current_version } => {
            MemoryError::Conflict((current_version > 0).then_some(current_version as u64))
        }
        StoreError::Invalid(message) => MemoryError::Invalid(message),
        StoreError::NotFound(what) => MemoryError::Failed(format!(
            "memory namespace `{name}`: {what}; the session was deleted while this call ran"
        )),
        other => MemoryError::Failed(format!(
            "memory namespace `{name}`: the state store failed: {other}"
        )),
    }
}

fn entry_to_wit(entry: MemoryEntry) -> Entry {
    Entry {
        key: entry.key,
        value: entry.value,
        version: entry.version,
        written_by_agent: entry.written_by_agent,
        written_by_tool: entry.written_by_tool,
        updated_at_ms: entry.updated_at_ms,
    }
}

/// A bounded key, or why it is refused.
fn check_key(key: &str) -> Result<(), MemoryError> {
    store::check_key(key).map_err(|e| MemoryError::Invalid(invalid_message(e)))
}

fn invalid_message(e: StoreError) -> String {
    match e {
        StoreError::Invalid(message) => message,
        other => other.to_string(),
    }
}

/// The page size a `list` gets: what the guest asked for, within [`MAX_MEMORY_PAGE`] and
/// [`MAX_LIST_PAGE_BYTES`] at the configured value limit.
fn page_size(asked: u32, max_value_bytes: usize) -> u32 {
    let asked = if asked == 0 || asked > MAX_MEMORY_PAGE {
        MAX_MEMORY_PAGE
    } else {
        asked
    };
    let fits = MAX_LIST_PAGE_BYTES / (max_value_bytes + MAX_KEY_BYTES).max(1);
    asked.min(u32::try_from(fits.max(1)).unwrap_or(u32::MAX))
}

/// Where `name` is in the store for a call by `identity`: its session, its agent, or the shared
/// namespace. `session` needs a stored session of the calling agent.
async fn resolve_namespace(
    caps: &Capabilities,
    identity: &CallIdentity,
    name: &str,
) -> Result<StoreNamespace, MemoryError> {
    match name {
        "agent" => Ok(StoreNamespace::Agent(identity.agent.clone())),
        "session" => {
            let session = &identity.session;
            let agent = &identity.agent;
            let how = format!(
                "run the tool in a session: through the agent loop (`warden agent run`), or \
                 with `warden call --config F --agent {agent} --session ID` and the id of a \
                 session of agent `{agent}`"
            );
            let Ok(id) = session.parse::<SessionId>() else {
                return Err(MemoryError::Denied(format!(
                    "memory namespace `session` needs the call to run in a stored session, \
                     and this call's session {} is not a session id; {how}",
                    shown(session)
                )));
            };
            let stored = caps
                .store
                .agent_state()
                .get_session(&identity.tenant, id)
                .await
                .map_err(|e| store_error(name, e))?;
            match stored {
                None => Err(MemoryError::Denied(format!(
                    "memory namespace `session` needs the call to run in a stored session, \
                     and session {id} does not exist for tenant `{}`; {how}",
                    identity.tenant
                ))),
                Some(s) if s.agent != *agent => Err(MemoryError::Denied(format!(
                    "memory namespace `session`: session {id} belongs to agent `{}`, not to \
                     `{agent}`, and one agent never reads another's session memory; {how}",
                    s.agent
                ))),
                Some(_) => Ok(StoreNamespace::Session(id)),
            }
        }
        shared => Ok(StoreNamespace::Shared(shared.to_string())),
    }
}

impl CallState {
    /// The handle behind a resource the host issued; a handle it never issued traps the guest.
    fn memory_handle(
        &mut self,
        ns: &Resource<Namespace>,
    ) -> wasmtime::Result<(String, StoreNamespace, bool)> {
        let handle = Resource::<MemoryHandle>::new_borrow(ns.rep());
        let handle = self.ctx().table.get(&handle).map_err(forged)?;
        Ok((
            handle.name.clone(),
            handle.namespace.clone(),
            handle.writable,
        ))
    }

    /// Records a refusal or failure of a memory use, and returns the error the plugin gets:
    /// its own, or the audit store's when even this record cannot be committed.
    async fn memory_audit_error(
        &mut self,
        target: &str,
        what: &str,
        error: MemoryError,
    ) -> MemoryError {
        let (outcome, why) = match &error {
            MemoryError::Denied(m) => (Outcome::Denied, m.clone()),
            MemoryError::Conflict(v) => (
                Outcome::Failed,
                format!("conflict: the entry is at version {}", v.unwrap_or(0)),
            ),
            MemoryError::Invalid(m) | MemoryError::Failed(m) => (Outcome::Failed, m.clone()),
        };
        match self
            .audit("memory", target, outcome, &format!("{what} — {why}"))
            .await
        {
            Ok(()) => error,
            Err(failure) => MemoryError::Failed(failure.to_string()),
        }
    }

    /// A write's answer: its result, or its error, recorded in the audit log after the record
    /// of the attempt.
    async fn memory_written<T>(
        &mut self,
        name: &str,
        what: &str,
        result: Result<T, StoreError>,
    ) -> Result<T, MemoryError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => {
                let error = store_error(name, e);
                Err(self.memory_audit_error(name, what, error).await)
            }
        }
    }

    /// The writer recorded on every entry this call writes.
    fn memory_writer(&self) -> (String, String) {
        (
            self.identity.agent.clone(),
            format!("{}/{}", self.plugin, self.tool),
        )
    }

    /// Refuses a write through a read-only handle, naming the grant that would allow it.
    fn check_writable(&self, name: &str, writable: bool) -> Result<(), MemoryError> {
        if writable {
            return Ok(());
        }
        Err(MemoryError::Denied(
            match self.grants.rights.check_memory(name, true) {
                Err(denial) => denial.to_string(),
                // The rights allow it now but did not at open: the handle keeps what open saw.
                Ok(_) => format!(
                    "memory namespace `{name}` was opened read-only; open it again to write (it needs \
                 \"memory:{name}:rw\")"
                ),
            },
        ))
    }
}

impl Host for CallState {}

impl HostNamespace for CallState {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Namespace>, MemoryError>> {
        // Bounded before it is looked up, echoed or audited.
        if name.is_empty() || name.len() > MAX_NAMESPACE_BYTES || name.contains('\0') {
            let error = MemoryError::Invalid(format!(
                "a memory namespace name is 1 to {MAX_NAMESPACE_BYTES} bytes without NUL; got {} \
                 bytes: open `session`, `agent` or a shared namespace granted as memory:NAME",
                name.len()
            ));
            return Ok(Err(self
                .memory_audit_error(&shown(&name), "open", error)
                .await));
        }
        let access = match self.grants.rights.check_memory(&name, false) {
            Ok(access) => access,
            Err(denial) => {
                let error = MemoryError::Denied(denial.to_string());
                return Ok(Err(self.memory_audit_error(&name, "open", error).await));
            }
        };
        let Some(caps) = self.grants.capabilities.clone() else {
            // Rights come only with a config, so this is a host bug, not a policy answer.
            let error = MemoryError::Failed(format!(
                "memory namespace `{name}` is granted but this host has no state store"
            ));
            return Ok(Err(self.memory_audit_error(&name, "open", error).await));
        };
        let namespace = match resolve_namespace(&caps, &self.identity, &name).await {
            Ok(namespace) => namespace,
            Err(error) => return Ok(Err(self.memory_audit_error(&name, "open", error).await)),
        };
        if open_handles(self.ctx().table) >= MAX_MEMORY_HANDLES_PER_CALL {
            let error = MemoryError::Denied(format!(
                "this call already holds {MAX_MEMORY_HANDLES_PER_CALL} open memory namespaces, \
                 the most one call may hold: drop one before opening another (one handle serves \
                 any number of operations)"
            ));
            return Ok(Err(self.memory_audit_error(&name, "open", error).await));
        }
        let detail = format!("open ({})", access.suffix());
        if let Err(failure) = self.audit("memory", &name, Outcome::Allowed, &detail).await {
            return Ok(Err(MemoryError::Failed(failure.to_string())));
        }
        let handle = self.ctx().table.push(MemoryHandle {
            name,
            namespace,
            writable: access == Access::ReadWrite,
        })?;
        Ok(Ok(Resource::new_own(handle.rep())))
    }

    async fn get(
        &mut self,
        ns: Resource<Namespace>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Entry>, MemoryError>> {
        let (name, namespace, _) = self.memory_handle(&ns)?;
        if let Err(error) = check_key(&key) {
            return Ok(Err(error));
        }
        let Some(caps) = self.grants.capabilities.clone() else {
            return Err(forged("no state store"));
        };
        let found = caps
            .store
            .agent_state()
            .get_memory(&self.identity.tenant, &namespace, &key)
            .await;
        Ok(found
            .map(|entry| entry.map(entry_to_wit))
            .map_err(|e| store_error(&name, e)))
    }

    async fn put(
        &mut self,
        ns: Resource<Namespace>,
        key: String,
        value: String,
        expected_version: Option<u64>,
    ) -> wasmtime::Result<Result<u64, MemoryError>> {
        let (name, namespace, writable) = self.memory_handle(&ns)?;
        let Some(caps) = self.grants.capabilities.clone() else {
            return Err(forged("no state store"));
        };
        let what = format!("put {}", shown(&key));
        if let Err(error) = self.check_writable(&name, writable) {
            return Ok(Err(self.memory_audit_error(&name, &what, error).await));
        }
        let limits = limits(&caps);
        let checked = check_key(&key).and_then(|()| {
            if value.len() > limits.value_bytes() {
                Err(MemoryError::Invalid(format!(
                    "the value for key {} is {} bytes, over the limit of {} bytes per value \
                     (`max_value_kb` in the config's [memory] section); store less, or split it \
                     over several keys",
                    shown(&key),
                    value.len(),
                    limits.value_bytes()
                )))
            } else {
                Ok(())
            }
        });
        if let Err(error) = checked {
            return Ok(Err(self.memory_audit_error(&name, &what, error).await));
        }
        let what = match expected_version {
            Some(v) => format!("{what} (expecting version {v})"),
            None => what,
        };
        if let Err(failure) = self.audit("memory", &name, Outcome::Allowed, &what).await {
            return Ok(Err(MemoryError::Failed(failure.to_string())));
        }
        let (agent, tool) = self.memory_writer();
        let writer = Writer {
            agent: &agent,
            tool: &tool,
        };
        let result = caps
            .store
            .agent_state()
            .put_memory(
                &self.identity.tenant,
                &namespace,
                &key,
                &value,
                expected_version,
                &writer,
                &limits,
            )
            .await;
        Ok(self.memory_written(&name, &what, result).await)
    }

    async fn delete(
        &mut self,
        ns: Resource<Namespace>,
        key: String,
        expected_version: Option<u64>,
    ) -> wasmtime::Result<Result<bool, MemoryError>> {
        let (name, namespace, writable) = self.memory_handle(&ns)?;
        let Some(caps) = self.grants.capabilities.clone() else {
            return Err(forged("no state store"));
        };
        let what = format!("delete {}", shown(&key));
        if let Err(error) = self
            .check_writable(&name, writable)
            .and_then(|()| check_key(&key))
        {
            return Ok(Err(self.memory_audit_error(&name, &what, error).await));
        }
        if let Err(failure) = self.audit("memory", &name, Outcome::Allowed, &what).await {
            return Ok(Err(MemoryError::Failed(failure.to_string())));
        }
        let (agent, tool) = self.memory_writer();
        let writer = Writer {
            agent: &agent,
            tool: &tool,
        };
        let result = caps
            .store
            .agent_state()
            .delete_memory(
                &self.identity.tenant,
                &namespace,
                &key,
                expected_version,
                &writer,
            )
            .await;
        Ok(self.memory_written(&name, &what, result).await)
    }

    async fn list(
        &mut self,
        ns: Resource<Namespace>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Page, MemoryError>> {
        let (name, namespace, _) = self.memory_handle(&ns)?;
        let bounded = store::check_key_like("prefix", &prefix).and_then(|()| match &cursor {
            Some(cursor) => store::check_key_like("cursor", cursor),
            None => Ok(()),
        });
        if let Err(e) = bounded {
            return Ok(Err(MemoryError::Invalid(invalid_message(e))));
        }
        let Some(caps) = self.grants.capabilities.clone() else {
            return Err(forged("no state store"));
        };
        let size = page_size(limit, limits(&caps).value_bytes());
        let page = caps
            .store
            .agent_state()
            .list_memory(
                &self.identity.tenant,
                &namespace,
                &prefix,
                cursor.as_deref(),
                size,
            )
            .await;
        Ok(page
            .map(|page| Page {
                entries: page.entries.into_iter().map(entry_to_wit).collect(),
                next_cursor: page.next_cursor,
            })
            .map_err(|e| store_error(&name, e)))
    }

    async fn drop(&mut self, ns: Resource<Namespace>) -> wasmtime::Result<()> {
        self.ctx()
            .table
            .delete(Resource::<MemoryHandle>::new_own(ns.rep()))
            .map_err(forged)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configs_hard_value_limit_is_the_stores() {
        assert_eq!(
            crate::config::memory::HARD_MAX_VALUE_KB as usize * 1024,
            store::MAX_VALUE_BYTES
        );
    }

    #[test]
    fn a_page_is_cut_so_entries_at_the_value_limit_fit_its_byte_budget() {
        assert_eq!(page_size(10, 64 * 1024), 10);
        let at_default = page_size(0, 64 * 1024) as usize;
        assert!(at_default * (64 * 1024 + MAX_KEY_BYTES) <= MAX_LIST_PAGE_BYTES);
        assert!(at_default > 100, "{at_default}");
        assert_eq!(page_size(5000, 10), MAX_MEMORY_PAGE);
        assert!(page_size(1, usize::MAX / 2) >= 1);
    }

    #[test]
    fn a_lost_compare_and_swap_carries_the_current_version_or_none() {
        let lost = |v| store_error("team", StoreError::Conflict { current_version: v });
        assert!(matches!(lost(3), MemoryError::Conflict(Some(3))));
        assert!(matches!(lost(0), MemoryError::Conflict(None)));
    }

    #[test]
    fn guest_text_in_messages_is_bounded_and_escaped() {
        let long = "x".repeat(10_000);
        assert!(shown(&long).len() < 80);
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }
}
