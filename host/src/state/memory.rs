//! Versioned memory entries: the store behind the `memory` capability. Each tenant has
//! namespaces of three kinds: a session's private memory, an agent's memory across its sessions,
//! and shared namespaces a fleet of agents reads and writes by name. Every write bumps the
//! entry's version and records which agent and tool made it; writes may name the version they
//! expect (compare-and-swap), so concurrent writers never lose an update.
//!
//! A deleted entry leaves a tombstone that keeps its version, and recreating the key continues
//! from there: a writer holding version 3 of a key that was deleted and written again cannot
//! mistake the new entry for the one it read (no ABA).

use async_trait::async_trait;

use super::StoreError;
use super::sessions::SessionId;

/// The longest key, in bytes. Keys are names, not data; the bound keeps every key in one index
/// page.
pub const MAX_KEY_BYTES: usize = 512;

/// The largest value, in bytes of JSON text. Memory holds notes and context, not files; a bigger
/// value belongs in a data source.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

/// The longest shared namespace name, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;

/// The most entries one [`MemoryStore::list_memory`] page returns.
pub const MAX_MEMORY_PAGE: u32 = 1000;

/// The limits one write is held to, from the operator's `[memory]` section: a value's size, and
/// the size of the namespace it lands in. The store enforces the namespace limit in the write's
/// own transaction, against a usage row it keeps beside the entries, so two concurrent writers
/// cannot both squeeze past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// The largest value, in bytes of JSON text; at most [`MAX_VALUE_BYTES`] (a larger figure
    /// counts as [`MAX_VALUE_BYTES`]).
    pub max_value_bytes: usize,
    /// The most bytes (keys plus values of live entries) one namespace may hold.
    pub max_namespace_bytes: u64,
}

impl MemoryLimits {
    /// Only the store's own hard bounds: no namespace limit.
    pub const STORE_BOUNDS: MemoryLimits = MemoryLimits {
        max_value_bytes: MAX_VALUE_BYTES,
        max_namespace_bytes: u64::MAX,
    };

    /// The value limit this store applies: the operator's, within [`MAX_VALUE_BYTES`].
    pub fn value_bytes(&self) -> usize {
        self.max_value_bytes.min(MAX_VALUE_BYTES)
    }
}

/// What one entry counts against its namespace's limit: its key and its value, in bytes.
pub(crate) fn entry_bytes(key: &str, value: &str) -> u64 {
    (key.len() + value.len()) as u64
}

/// Refuses a write that would take a namespace from `used` bytes past its limit by `grow`
/// bytes. Only growth is refused: a write that shrinks a namespace over a lowered limit goes.
pub(crate) fn check_namespace_room(
    ns: &Namespace,
    used: u64,
    grow: i64,
    limits: &MemoryLimits,
) -> Result<(), StoreError> {
    if grow <= 0 {
        return Ok(());
    }
    let after = used.saturating_add(grow as u64);
    if after <= limits.max_namespace_bytes {
        return Ok(());
    }
    Err(namespace_full(ns, used, grow as u64, limits))
}

/// The refusal of a write that does not fit its namespace.
pub(crate) fn namespace_full(
    ns: &Namespace,
    used: u64,
    grow: u64,
    limits: &MemoryLimits,
) -> StoreError {
    StoreError::invalid(format!(
        "memory namespace {} holds {used} bytes and this write would add {grow}, past its limit \
         of {} bytes (`max_namespace_mb` in the config's [memory] section); delete entries \
         first, or ask the operator to raise the limit",
        ns.describe(),
        limits.max_namespace_bytes
    ))
}

/// Which namespace an operation is in; always together with the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// One session's private memory (`session`); deleted with the session.
    Session(SessionId),
    /// One agent's memory across all its sessions (`agent`).
    Agent(String),
    /// A shared namespace, by name, that the operator grants to agents (`memory:NAME`).
    Shared(String),
}

impl Namespace {
    /// The namespace as a plugin names it, for messages: `session`, `agent` or the shared name.
    pub fn describe(&self) -> String {
        match self {
            Namespace::Session(id) => format!("`session` (session {id})"),
            Namespace::Agent(agent) => format!("`agent` (agent {agent})"),
            Namespace::Shared(name) => format!("`{name}`"),
        }
    }

    /// The kind and name the database keys the namespace by.
    pub(crate) fn columns(&self) -> Result<(&'static str, String), StoreError> {
        Ok(match self {
            Namespace::Session(id) => ("session", id.to_string()),
            Namespace::Agent(agent) => {
                super::sessions::check_name("agent", agent)?;
                ("agent", agent.clone())
            }
            Namespace::Shared(name) => {
                if name.is_empty() || name.len() > MAX_NAMESPACE_BYTES || name.contains('\0') {
                    return Err(StoreError::invalid(format!(
                        "a shared namespace name is 1 to {MAX_NAMESPACE_BYTES} bytes without \
                         NUL; got {} bytes",
                        name.len()
                    )));
                }
                ("shared", name.clone())
            }
        })
    }
}

/// Who makes a write: recorded on the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer<'a> {
    /// The agent whose call writes.
    pub agent: &'a str,
    /// The plugin and tool (`plugin/tool`) that writes.
    pub tool: &'a str,
}

/// One stored entry and who last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEntry {
    /// Its key.
    pub key: String,
    /// Its value, JSON text exactly as written.
    pub value: String,
    /// Starts at 1 and grows by one with each write (a delete counts as one).
    pub version: u64,
    /// The agent whose call last wrote it.
    pub written_by_agent: String,
    /// The plugin and tool that last wrote it.
    pub written_by_tool: String,
    /// When it was last written, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// What one namespace holds, as counted against its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes of keys plus values of its live entries.
    pub bytes: u64,
    /// Its live entries.
    pub entries: u64,
}

/// A page of a listing, in key order (bytewise), and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPage {
    /// The entries on this page.
    pub entries: Vec<MemoryEntry>,
    /// Pass this as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Memory entries. `expected_version` is the compare-and-swap: `Some(0)` means "only if the key
/// does not exist", `Some(n)` "only if it is at version n"; a mismatch is
/// [`StoreError::Conflict`] carrying the current version (`None` when the key does not exist).
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// The entry, or `None` if the key does not exist.
    async fn get_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
    ) -> Result<Option<MemoryEntry>, StoreError>;

    /// Writes `value` (JSON text) and returns the entry's new version. A value over
    /// `limits.max_value_bytes`, or a write that would take the namespace past
    /// `limits.max_namespace_bytes`, is [`StoreError::Invalid`], and nothing is written.
    #[allow(clippy::too_many_arguments)]
    async fn put_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
        writer: &Writer<'_>,
        limits: &MemoryLimits,
    ) -> Result<u64, StoreError>;

    /// How many bytes (keys plus values) and live entries the namespace holds.
    async fn memory_usage(&self, tenant: &str, ns: &Namespace) -> Result<MemoryUsage, StoreError>;

    /// Deletes the entry; returns whether it existed.
    async fn delete_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
        expected_version: Option<u64>,
        writer: &Writer<'_>,
    ) -> Result<bool, StoreError>;

    /// Entries whose key starts with `prefix`, after `cursor`, at most `limit` (0 or more than
    /// [`MAX_MEMORY_PAGE`] means [`MAX_MEMORY_PAGE`]).
    async fn list_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemoryPage, StoreError>;
}

/// Refuses an empty, oversized or NUL-carrying key.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::invalid("a memory key is empty"));
    }
    check_key_like("key", key)
}

/// Refuses a prefix or cursor no key could match.
pub(crate) fn check_key_like(what: &str, text: &str) -> Result<(), StoreError> {
    if text.len() > MAX_KEY_BYTES {
        return Err(StoreError::invalid(format!(
            "a memory {what} is {} bytes; the most is {MAX_KEY_BYTES}",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(StoreError::invalid(format!(
            "a memory {what} contains a NUL character"
        )));
    }
    Ok(())
}

/// Refuses a value that is too big or not JSON, and a writer the entry could not record.
pub(crate) fn check_value(
    value: &str,
    writer: &Writer<'_>,
    limits: &MemoryLimits,
) -> Result<(), StoreError> {
    let most = limits.value_bytes();
    if value.len() > most {
        return Err(StoreError::invalid(format!(
            "a memory value is {} bytes; the most is {most} (`max_value_kb` in the config's \
             [memory] section)",
            value.len()
        )));
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(value) {
        return Err(StoreError::invalid(format!(
            "a memory value must be JSON: {e}"
        )));
    }
    check_writer(writer)
}

/// Refuses a writer whose names the entry could not record.
pub(crate) fn check_writer(writer: &Writer<'_>) -> Result<(), StoreError> {
    super::sessions::check_name("agent", writer.agent)?;
    // `plugin/tool`: two names and the slash.
    let most = 2 * super::sessions::MAX_NAME_BYTES + 1;
    if writer.tool.is_empty() || writer.tool.len() > most || writer.tool.contains('\0') {
        return Err(StoreError::invalid(format!(
            "the writing tool is named by 1 to {most} bytes without NUL (`plugin/tool`); got {} \
             bytes",
            writer.tool.len()
        )));
    }
    Ok(())
}

/// The smallest string above every string that starts with `prefix` (`None` when there is none,
/// or the prefix is empty): the listing scans `prefix <= key < bound` in the key index. Bytewise
/// order of UTF-8 is code point order, so bumping the last char that can grow is exact.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The page size a caller asks for, within [`MAX_MEMORY_PAGE`].
pub(crate) fn memory_page_limit(limit: u32) -> u32 {
    if limit == 0 || limit > MAX_MEMORY_PAGE {
        MAX_MEMORY_PAGE
    } else {
        limit
    }
}

/// Decides a compare-and-swap: `live` is the entry's version if it exists (a tombstone does
/// not), and the mismatch carries it as `current_version` (0: no such entry).
pub(crate) fn check_expected(live: Option<u64>, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        None => Ok(()),
        Some(want) if live.unwrap_or(0) == want => Ok(()),
        Some(_) => Err(StoreError::Conflict {
            current_version: live.unwrap_or(0) as i64,
        }),
    }
}

/// A listing's bounds, checked: the scan is `prefix <= key < upper`, after the cursor.
pub(crate) struct ListScan {
    /// Just above every key with the prefix (`None`: no bound).
    pub upper: Option<String>,
    /// The cursor (empty: from the start; every key is longer).
    pub after: String,
    /// The page size.
    pub limit: u32,
}

impl ListScan {
    /// Checks a listing's prefix and cursor.
    pub fn new(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListScan, StoreError> {
        check_key_like("prefix", prefix)?;
        if let Some(cursor) = cursor {
            check_key_like("cursor", cursor)?;
        }
        Ok(ListScan {
            upper: prefix_upper_bound(prefix),
            after: cursor.unwrap_or_default().to_string(),
            limit: memory_page_limit(limit),
        })
    }

    /// Cuts entries fetched with one row too many down to a page.
    pub fn page(&self, entries: &mut Vec<MemoryEntry>) -> MemoryPage {
        let more = entries.len() > self.limit as usize;
        entries.truncate(self.limit as usize);
        MemoryPage {
            next_cursor: if more {
                entries.last().map(|e| e.key.clone())
            } else {
                None
            },
            entries: std::mem::take(entries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_bound_sits_just_above_the_prefix() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(
            prefix_upper_bound("x\u{D7FF}").as_deref(),
            Some("x\u{E000}")
        );
        for key in ["ab", "ab\u{10FFFF}", "abzzz", "ab\u{0}"] {
            assert!(key.as_bytes() < prefix_upper_bound("ab").unwrap().as_bytes());
        }
    }
}
