//! Writes to the host's log, tagged with the plugin, tool and call.
//!
//! The host caps how much one call may log. A plugin's stdout and stderr also go to the log.
//!
//! ```ignore
//! log::info(format!("greeting {}", input.name));
//! log::with_fields(log::Level::Warn, "slow lookup", &json!({ "ms": 812, "id": 7 }));
//! ```

use serde::Serialize;

use crate::__private::bindings::warden::plugin::log as wit;

/// How much a log line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Detail for whoever debugs the plugin.
    Debug,
    /// What the plugin did.
    Info,
    /// Something unexpected that the plugin got past.
    Warn,
    /// Something that failed.
    Error,
}

/// Logs `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message.as_ref());
}

/// Logs `message` followed by `fields` as one line of JSON, e.g. `slow lookup {"ms":812}`.
/// Fields that cannot be serialized are logged as the serializer's error, not dropped silently.
pub fn with_fields<T: Serialize + ?Sized>(level: Level, message: impl AsRef<str>, fields: &T) {
    log(level, line_with_fields(message.as_ref(), fields));
}

fn line_with_fields<T: Serialize + ?Sized>(message: &str, fields: &T) -> String {
    match serde_json::to_string(fields) {
        Ok(json) => format!("{message} {json}"),
        Err(error) => format!("{message} (fields not serializable: {error})"),
    }
}

/// Logs a message at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Logs a message at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Logs a message at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Logs a message at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Logs a message at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_message_as_json() {
        let line = line_with_fields("slow lookup", &serde_json::json!({ "ms": 812 }));
        assert_eq!(line, r#"slow lookup {"ms":812}"#);
    }

    #[test]
    fn fields_that_do_not_serialize_say_so() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let line = line_with_fields("x", &map);
        assert!(line.starts_with("x (fields not serializable: "), "{line}");
    }
}
