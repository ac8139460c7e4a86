//! The `log` interface: a plugin's log lines go to the host log under the `plugin` target,
//! tagged with the plugin, tool and call id. One call may log at most [`MAX_LOG_BYTES`].

use crate::bindings::log::{Host, Level};
use crate::sandbox::CallState;

/// How much one call may log; further lines are dropped, with one warning.
pub const MAX_LOG_BYTES: usize = 256 * 1024;

impl Host for CallState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let before = self.logged_bytes;
        self.logged_bytes = before.saturating_add(message.len());
        if self.logged_bytes > MAX_LOG_BYTES {
            if before <= MAX_LOG_BYTES {
                tracing::warn!(target: "plugin", plugin = %self.plugin, tool = %self.tool,
                    "the plugin logged more than {MAX_LOG_BYTES} bytes in one call; further lines are dropped");
            }
            return Ok(());
        }
        let (plugin, tool, call) = (&self.plugin, &self.tool, &self.identity.call_id);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", %plugin, %tool, %call, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", %plugin, %tool, %call, "{message}"),
            Level::Info => tracing::info!(target: "plugin", %plugin, %tool, %call, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", %plugin, %tool, %call, "{message}"),
            Level::Error => tracing::error!(target: "plugin", %plugin, %tool, %call, "{message}"),
        }
        Ok(())
    }
}
