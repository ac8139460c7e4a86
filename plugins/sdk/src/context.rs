//! Who is calling: the context the host attaches to every call.

/// Who is calling. The host sets it; the caller cannot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The tenant the calling agent belongs to.
    pub tenant: String,
    /// The calling agent.
    pub agent: String,
    /// The calling agent's session.
    pub session: String,
    /// The id of this call. It stays the same when the host retries the same step after a
    /// restart, so use it as an idempotency key for side effects.
    pub call_id: String,
}
