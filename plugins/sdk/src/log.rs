//! Writes to the host's log, tagged with the plugin, tool and call.
//!
//! The host caps how much one call may log. A plugin's stdout and stderr also go to the log.

use crate::__private::bindings::warden::plugin::log::{Level, log};

/// Logs a message at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs a message at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs a message at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs a message at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs a message at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
