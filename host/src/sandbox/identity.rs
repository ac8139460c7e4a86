//! The id of a call: unique across hosts, or derived from an agent's step.

use std::fmt;

/// A call's id: unique across hosts, and stable across a retry of the same step, so a plugin can
/// use it as an idempotency key. A fresh call gets a UUIDv7 (time-ordered, so audit records sort
/// by it); an agent step gets one derived from its session and step, so a resumed step that
/// runs again carries the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(String);

impl CallId {
    /// A new, globally unique id (UUIDv7).
    #[allow(clippy::new_without_default)]
    pub fn new() -> CallId {
        CallId(uuid::Uuid::now_v7().to_string())
    }

    /// The id of step `step` of task `task` in session `session`: the same inputs give the same
    /// id on every host, so a step retried after a crash keeps its id.
    pub fn for_step(session: &str, task: &str, step: u64) -> CallId {
        // Length-prefixed, so no two (session, task) pairs give the same text.
        CallId(format!(
            "step:{}:{session}:{}:{task}:{step}",
            session.len(),
            task.len()
        ))
    }

    /// The id of tool call `index` that the model asked for in journal step `step` of task
    /// `task`: the same on every host and on every retry of that step.
    pub fn for_tool_call(session: &str, task: &str, step: u64, index: usize) -> CallId {
        let mut id = CallId::for_step(session, task, step);
        id.0.push_str(&format!(":{index}"));
        id
    }

    /// An id chosen by a caller (an idempotency key it passes in). Refused when empty, longer
    /// than [`MAX_CALL_ID_BYTES`], or holding anything but printable ASCII: ids go into the audit
    /// log and into plugins, and a control character there could forge a log line.
    pub fn from_caller(id: &str) -> Result<CallId, String> {
        if id.is_empty() || id.len() > MAX_CALL_ID_BYTES {
            return Err(format!(
                "a call id is 1 to {MAX_CALL_ID_BYTES} bytes; this one is {}",
                id.len()
            ));
        }
        if let Some(bad) = id.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "a call id is printable ASCII without spaces; this one holds {bad:?}"
            ));
        }
        Ok(CallId(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as text, without a copy.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The longest call id a caller may choose.
pub const MAX_CALL_ID_BYTES: usize = 128;

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_uuid_v7_and_distinct() {
        let (a, b) = (CallId::new(), CallId::new());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.as_str()).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        // Time-ordered: a later id sorts after an earlier one.
        assert!(a < b, "{a} then {b}");
    }

    #[test]
    fn step_ids_are_stable_and_do_not_collide() {
        assert_eq!(
            CallId::for_step("s1", "t1", 3),
            CallId::for_step("s1", "t1", 3)
        );
        assert_ne!(
            CallId::for_step("s1", "t1", 3),
            CallId::for_step("s1", "t1", 4)
        );
        assert_ne!(
            CallId::for_tool_call("s1", "t1", 3, 0),
            CallId::for_tool_call("s1", "t1", 3, 1)
        );
        assert_eq!(
            CallId::for_tool_call("s1", "t1", 3, 1),
            CallId::for_tool_call("s1", "t1", 3, 1)
        );
        // Without the length prefixes these two would both read `s:1:t:1`.
        assert_ne!(
            CallId::for_step("s:1", "t", 1),
            CallId::for_step("s", "1:t", 1)
        );
    }

    #[test]
    fn caller_ids_are_bounded_and_printable() {
        assert!(CallId::from_caller("retry-42").is_ok());
        assert!(CallId::from_caller("").is_err());
        assert!(CallId::from_caller(&"x".repeat(MAX_CALL_ID_BYTES)).is_ok());
        assert!(CallId::from_caller(&"x".repeat(MAX_CALL_ID_BYTES + 1)).is_err());
        assert!(CallId::from_caller("a\nforged line").is_err());
        assert!(CallId::from_caller("a b").is_err());
    }
}
