//! The `log` interface: a plugin's log lines go to the host log under the `plugin` target,
//! tagged with the plugin, tool and call id. One call may log at most [`MAX_LOG_BYTES`].
//!
//! A plugin's text is hostile: a newline in it would start what looks like a host log line, and
//! a carriage return or a terminal escape could hide one. [`escape_log_line`] makes every such
//! character visible before the text reaches the log.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::bindings::log::{Host, Level};
use crate::sandbox::CallState;

/// How much one call may log; further lines are dropped, with one warning.
pub const MAX_LOG_BYTES: usize = 256 * 1024;

impl Host for CallState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        // Counted as written to the log, escapes included, so escaping cannot outgrow the cap.
        let message = escape_log_line(&message);
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

/// Whether `c` could forge or hide a log line: control characters (newlines, carriage returns,
/// tabs, escapes, C1 controls), Unicode line and paragraph separators, and the bidirectional
/// overrides that reorder what a terminal shows.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A plugin's log text made safe for one host log line: `\n`, `\r` and `\t` are written as
/// those two characters, and every other character [`needs_escape`] as `\u{…}`, so nothing a
/// plugin writes can start or rewrite a line. A backslash is doubled, so an escape a plugin
/// typed itself cannot pass for one the host made. Borrowed when there is nothing to escape.
pub fn escape_log_line(line: &str) -> Cow<'_, str> {
    if !line.chars().any(|c| needs_escape(c) || c == '\\') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_log_line("all fine: 42 é ✓"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn newlines_and_controls_are_made_visible() {
        assert_eq!(
            escape_log_line("a\nERROR forged\r\x1b[2K\u{85}\u{2028}\u{202e}\\n"),
            "a\\nERROR forged\\r\\u{1b}[2K\\u{85}\\u{2028}\\u{202e}\\\\n"
        );
    }

    proptest! {
        /// Whatever a plugin sends, the escaped text is one line with no control character.
        #[test]
        fn escaped_text_is_one_line_without_controls(text in any::<String>()) {
            let escaped = escape_log_line(&text);
            prop_assert!(!escaped.chars().any(needs_escape), "{escaped:?}");
            prop_assert_eq!(escaped.lines().count().max(1), 1);
        }
    }
}
