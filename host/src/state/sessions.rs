//! Agent sessions as the store keeps them: one row per session, owned by one tenant and one
//! agent, with a status and its times. The conversation itself lives in the
//! [journal](super::journal), the session's private memory in [memory](super::memory), and who
//! may drive it right now in its [lease](super::leases).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;

/// The most sessions one [`SessionStore::list_sessions`] page returns; a bigger limit is
/// lowered to this, so a listing never loads a tenant's whole history at once.
pub const MAX_SESSION_PAGE: u32 = 500;

/// The longest tenant or agent name the store accepts, in bytes. Config names are far shorter;
/// the bound keeps a malformed caller from filling index pages with one name.
pub const MAX_NAME_BYTES: usize = 128;

/// A session's id: a UUIDv7, so ids sort by creation time and index well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub Uuid);

impl SessionId {
    /// A fresh, time-ordered id.
    pub fn new() -> SessionId {
        SessionId(Uuid::now_v7())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        SessionId::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for SessionId {
    type Err = StoreError;

    /// Parses an id as a client sends it (in a URL path, say); anything else is invalid input.
    fn from_str(s: &str) -> Result<SessionId, StoreError> {
        Uuid::parse_str(s)
            .map(SessionId)
            .map_err(|_| StoreError::invalid(format!("`{s}` is not a session id (a UUID)")))
    }
}

/// What a session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// No task is running; a new one may start.
    Idle,
    /// A task is running (its host holds the session's lease).
    Running,
    /// A task was cut off (its host died, or it failed) and waits to be resumed.
    Interrupted,
    /// Closed by its owner: kept for reading, no new tasks.
    Closed,
}

impl SessionStatus {
    /// The word stored in the database and shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Idle => "idle",
            SessionStatus::Running => "running",
            SessionStatus::Interrupted => "interrupted",
            SessionStatus::Closed => "closed",
        }
    }

    /// The status a stored word names; `None` for a word this build does not know.
    pub fn parse(word: &str) -> Option<SessionStatus> {
        [
            SessionStatus::Idle,
            SessionStatus::Running,
            SessionStatus::Interrupted,
            SessionStatus::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str() == word)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// The tenant that owns it; no other tenant ever sees it.
    pub tenant: String,
    /// The agent it belongs to.
    pub agent: String,
    /// What it is doing.
    pub status: SessionStatus,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed status, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// A page of sessions, oldest first, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    /// The sessions on this page.
    pub sessions: Vec<Session>,
    /// Pass this as `after` for the next page; `None` on the last page.
    pub next_cursor: Option<SessionId>,
}

/// Which sessions a listing returns.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery<'a> {
    /// Only this agent's sessions, if set.
    pub agent: Option<&'a str>,
    /// Only sessions created after this one (the previous page's `next_cursor`).
    pub after: Option<SessionId>,
    /// At most this many (0 or more than [`MAX_SESSION_PAGE`] means [`MAX_SESSION_PAGE`]).
    pub limit: u32,
}

/// Sessions, per tenant. Every method takes the tenant, and a session of another tenant is
/// simply not found: the HTTP API answers 404 for it, never 403.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates an idle session for `agent` and returns it.
    async fn create_session(&self, tenant: &str, agent: &str) -> Result<Session, StoreError>;

    /// The session, or `None` when this tenant has no session with that id.
    async fn get_session(&self, tenant: &str, id: SessionId)
    -> Result<Option<Session>, StoreError>;

    /// The tenant's sessions (optionally one agent's), oldest first, a page at a time.
    async fn list_sessions(
        &self,
        tenant: &str,
        query: &SessionQuery<'_>,
    ) -> Result<SessionPage, StoreError>;

    /// Sets the session's status and returns it updated; [`StoreError::NotFound`] when the
    /// tenant has no such session.
    async fn set_session_status(
        &self,
        tenant: &str,
        id: SessionId,
        status: SessionStatus,
    ) -> Result<Session, StoreError>;

    /// Deletes the session with its journal, its private memory and its lease; returns whether
    /// it existed.
    async fn delete_session(&self, tenant: &str, id: SessionId) -> Result<bool, StoreError>;
}

/// Refuses an empty or oversized tenant or agent name before it reaches SQL.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::invalid(format!("the {what} name is empty")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::invalid(format!(
            "the {what} name is {} bytes; the most is {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(StoreError::invalid(format!(
            "the {what} name contains a NUL character"
        )));
    }
    Ok(())
}

/// The page size a query asks for, within [`MAX_SESSION_PAGE`].
pub(crate) fn page_limit(limit: u32) -> u32 {
    if limit == 0 || limit > MAX_SESSION_PAGE {
        MAX_SESSION_PAGE
    } else {
        limit
    }
}

/// Cuts a listing fetched with one row too many down to `limit`, and says where the next page
/// starts.
pub(crate) fn page(found: &mut Vec<Session>, limit: u32) -> SessionPage {
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    SessionPage {
        next_cursor: if more {
            found.last().map(|s| s.id)
        } else {
            None
        },
        sessions: std::mem::take(found),
    }
}

/// The refusal for a session this tenant does not have (whether another tenant does is not
/// said).
pub(crate) fn not_found(id: SessionId) -> StoreError {
    StoreError::NotFound(format!("no session {id}"))
}

impl StoreError {
    /// A malformed or oversized request, with what to change.
    pub(crate) fn invalid(message: impl Into<String>) -> StoreError {
        StoreError::Invalid(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip() {
        for s in [
            SessionStatus::Idle,
            SessionStatus::Running,
            SessionStatus::Interrupted,
            SessionStatus::Closed,
        ] {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(SessionStatus::parse("bogus"), None);
    }

    #[test]
    fn session_ids_are_v7_and_parse_back() {
        let id = SessionId::new();
        assert_eq!(id.0.get_version_num(), 7);
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        assert!("not-a-uuid".parse::<SessionId>().is_err());
    }
}
