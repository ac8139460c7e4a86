//! Durable key-value memory that outlives a call.
//!
//! Namespaces: `session` is the calling session's private memory, `agent` spans all sessions of
//! the calling agent, and any other name is a shared namespace that the operator must grant
//! (`memory:NAME:ro` or `memory:NAME:rw`). Values are JSON text; [`Namespace::get_json`] and
//! [`Namespace::put_json`] convert them to and from Rust types.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::warden::plugin::memory as wit;

/// Why a memory operation did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The namespace, or writing to it, was not granted; the message names the grant.
    Denied(String),
    /// A compare-and-swap lost the race.
    Conflict {
        /// The entry's version now (`None`: the entry does not exist).
        current_version: Option<u64>,
    },
    /// The request was malformed (an empty key, a value that is not JSON, ...).
    Invalid(String),
    /// The state store failed.
    Failed(String),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Denied(message) => write!(f, "memory access denied: {message}"),
            MemoryError::Conflict {
                current_version: Some(version),
            } => write!(
                f,
                "memory write conflict: the entry changed meanwhile and is now at version {version}"
            ),
            MemoryError::Conflict {
                current_version: None,
            } => write!(f, "memory write conflict: the entry no longer exists"),
            MemoryError::Invalid(message) => write!(f, "invalid memory request: {message}"),
            MemoryError::Failed(message) => write!(f, "memory failed: {message}"),
        }
    }
}

impl std::error::Error for MemoryError {}

impl From<wit::MemoryError> for MemoryError {
    fn from(error: wit::MemoryError) -> Self {
        match error {
            wit::MemoryError::Denied(message) => MemoryError::Denied(message),
            wit::MemoryError::Conflict(current_version) => {
                MemoryError::Conflict { current_version }
            }
            wit::MemoryError::Invalid(message) => MemoryError::Invalid(message),
            wit::MemoryError::Failed(message) => MemoryError::Failed(message),
        }
    }
}

/// One stored value and who wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's key.
    pub key: String,
    /// The value, as JSON text.
    pub value: String,
    /// Starts at 1 and grows by one with each write; pass it to `put` or `delete` for a
    /// compare-and-swap.
    pub version: u64,
    /// The agent whose call last wrote the entry.
    pub written_by_agent: String,
    /// The plugin and tool (`plugin/tool`) that last wrote the entry.
    pub written_by_tool: String,
    /// When the entry was last written, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

impl Entry {
    /// Parses the value into a Rust type.
    pub fn value_as<T: DeserializeOwned>(&self) -> Result<T, MemoryError> {
        serde_json::from_str(&self.value).map_err(|error| {
            MemoryError::Invalid(format!(
                "the value of `{}` does not fit the expected type: {error}",
                self.key
            ))
        })
    }
}

impl From<wit::Entry> for Entry {
    fn from(entry: wit::Entry) -> Self {
        Entry {
            key: entry.key,
            value: entry.value,
            version: entry.version,
            written_by_agent: entry.written_by_agent,
            written_by_tool: entry.written_by_tool,
            updated_at_ms: entry.updated_at_ms,
        }
    }
}

/// A page of a listing, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The entries of this page, in key order.
    pub entries: Vec<Entry>,
    /// Pass it to [`Namespace::list`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A value read with [`Namespace::get_versioned`], and the entry's version, to pass back to
/// [`Namespace::put_json`] for a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The entry's version when it was read.
    pub version: u64,
}

/// What a [`Namespace::update`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updated<T> {
    /// The value written.
    pub value: T,
    /// The entry's version after the write.
    pub version: u64,
    /// How many read-and-write rounds it took (1 when no other writer got in between).
    pub attempts: u32,
}

/// An open memory namespace.
#[derive(Debug)]
pub struct Namespace {
    inner: wit::Namespace,
}

impl Namespace {
    /// Opens a namespace by name. Denied unless it is `session`, `agent` or a granted name.
    pub fn open(name: &str) -> Result<Namespace, MemoryError> {
        let inner = wit::Namespace::open(name)?;
        Ok(Namespace { inner })
    }

    /// Opens the calling session's private memory.
    pub fn session() -> Result<Namespace, MemoryError> {
        Self::open("session")
    }

    /// Opens the memory shared by all sessions of the calling agent.
    pub fn agent() -> Result<Namespace, MemoryError> {
        Self::open("agent")
    }

    /// Reads one entry; `None` when the key is not set.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, MemoryError> {
        Ok(self.inner.get(key)?.map(Entry::from))
    }

    /// Writes one entry (`value` is JSON text) and returns its new version. With
    /// `expected_version`, the write happens only if the entry is at that version (0: only if it
    /// does not exist yet); otherwise it fails with [`MemoryError::Conflict`].
    pub fn put(
        &self,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, MemoryError> {
        Ok(self.inner.put(key, value, expected_version)?)
    }

    /// Deletes one entry and returns whether it existed. `expected_version` as for [`Self::put`].
    pub fn delete(&self, key: &str, expected_version: Option<u64>) -> Result<bool, MemoryError> {
        Ok(self.inner.delete(key, expected_version)?)
    }

    /// Lists entries whose key starts with `prefix`, in key order, at most `limit` a page.
    /// Start with `cursor` `None`, then pass the previous page's `next_cursor`.
    pub fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, MemoryError> {
        let page = self.inner.list(prefix, cursor, limit)?;
        Ok(Page {
            entries: page.entries.into_iter().map(Entry::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Reads one entry's value as a Rust type; `None` when the key is not set.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, MemoryError> {
        self.get(key)?.map(|entry| entry.value_as()).transpose()
    }

    /// Reads one entry's value as a Rust type, with its version; `None` when the key is not set.
    ///
    /// ```ignore
    /// let memory = Namespace::session()?;
    /// let seen = memory.get_versioned::<Vec<String>>("seen")?;
    /// let (mut list, version) = seen.map_or((vec![], 0), |v| (v.value, v.version));
    /// list.push(input.id);
    /// memory.put_json("seen", &list, Some(version))?; // MemoryError::Conflict if it changed
    /// ```
    pub fn get_versioned<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, MemoryError> {
        self.get(key)?
            .map(|entry| {
                Ok(Versioned {
                    value: entry.value_as()?,
                    version: entry.version,
                })
            })
            .transpose()
    }

    /// Updates one entry with compare-and-swap: reads it, computes the new value from the
    /// current one with `change` (`None` when the key is not set), and writes it only if no
    /// other writer changed the entry meanwhile. On a conflict it reads again and retries, up to
    /// `max_attempts` rounds in all (at least one); then the last [`MemoryError::Conflict`] is
    /// returned. `change` may run several times, so it should only compute.
    ///
    /// ```ignore
    /// let counter = Namespace::open("team")?.update("visits", 10, |n: Option<u64>| n.unwrap_or(0) + 1)?;
    /// ```
    pub fn update<T, F>(
        &self,
        key: &str,
        max_attempts: u32,
        mut change: F,
    ) -> Result<Updated<T>, MemoryError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (expected, current) = match self.get(key)? {
                Some(entry) => (entry.version, Some(entry.value_as::<T>()?)),
                None => (0, None),
            };
            let value = change(current);
            match self.put_json(key, &value, Some(expected)) {
                Ok(version) => {
                    return Ok(Updated {
                        value,
                        version,
                        attempts,
                    });
                }
                Err(MemoryError::Conflict { .. }) if attempts < max_attempts.max(1) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes a Rust value as JSON and returns the entry's new version. `expected_version` as
    /// for [`Self::put`].
    pub fn put_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        expected_version: Option<u64>,
    ) -> Result<u64, MemoryError> {
        let json = serde_json::to_string(value).map_err(|error| {
            MemoryError::Invalid(format!(
                "the value for `{key}` is not serializable: {error}"
            ))
        })?;
        self.put(key, &json, expected_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str) -> Entry {
        Entry {
            key: "k".into(),
            value: value.into(),
            version: 3,
            written_by_agent: "a".into(),
            written_by_tool: "p/t".into(),
            updated_at_ms: 0,
        }
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Note {
        text: String,
    }

    #[test]
    fn a_value_reads_as_its_type() {
        let note: Note = entry(r#"{"text":"hi"}"#).value_as().unwrap();
        assert_eq!(note, Note { text: "hi".into() });
    }

    #[test]
    fn a_value_of_another_shape_names_the_key() {
        let err = entry(r#"{"txt":"hi"}"#).value_as::<Note>().unwrap_err();
        let MemoryError::Invalid(message) = &err else {
            panic!("{err:?}");
        };
        assert!(
            message.contains("`k`") && message.contains("text"),
            "{message}"
        );
    }

    #[test]
    fn memory_errors_become_tool_errors() {
        use crate::ToolError;
        let denied: ToolError = MemoryError::Denied("grant memory:team:rw".into()).into();
        assert_eq!(denied, ToolError::Denied("grant memory:team:rw".into()));
        let conflict: ToolError = MemoryError::Conflict {
            current_version: Some(4),
        }
        .into();
        assert!(matches!(conflict, ToolError::Failed(m) if m.contains("version 4")));
    }
}
