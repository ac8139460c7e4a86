//! The exception a Python or JavaScript guest printed to its stderr before its call trapped.
//!
//! componentize-py prints a Python traceback and then traps with "Python function threw an
//! unexpected exception"; componentize-js prints the thrown error's `Type: message` (not its
//! stack) and then traps with nothing but a wasm backtrace. Neither trap says what went wrong, and the guest's stderr only
//! reaches the log at `--log info`, so the host reads the exception out of the captured stderr
//! and puts it in the error the user sees: `Type: message (at FILE:LINE, in FUNCTION)`.
//!
//! The text is the guest's, so it is hostile: at most [`MAX_EXCEPTION_CHARS`] characters, one
//! line, control characters escaped.

use crate::capabilities::log::escape_log_line;

/// The most characters of guest text an exception message may carry.
pub const MAX_EXCEPTION_CHARS: usize = 500;

/// The most characters of the `Type: message` part, so that the location always fits.
const MAX_MESSAGE_CHARS: usize = 380;

/// How many characters of one line of the guest's stderr are read at most.
const MAX_LINE_CHARS: usize = 2_000;

/// The exception a guest printed last, as `Type: message (at FILE:LINE, in FUNCTION)`.
pub fn uncaught_exception(stderr: &str) -> Option<String> {
    python_exception(stderr)
        .or_else(|| js_exception(stderr))
        .map(|text| one_safe_line(&text))
}

/// The last Python traceback: its innermost frame, and the `Type: message` line that ends it.
fn python_exception(stderr: &str) -> Option<String> {
    let start = stderr.rfind("Traceback (most recent call last):")?;
    let mut frame: Option<(String, String, String)> = None;
    let mut exception = None;
    for line in stderr[start..].lines().skip(1) {
        let line = clip(line);
        if let Some(parsed) = python_frame(line) {
            frame = Some(parsed);
        } else if line.starts_with(' ') || line.is_empty() {
            // Source lines and carets under a frame.
        } else {
            exception = Some(line.to_string());
            break;
        }
    }
    let exception = first_chars(&exception?, MAX_MESSAGE_CHARS);
    Some(match frame {
        Some((file, line, function)) => {
            format!("{exception} (at {file}:{line}, in {function})")
        }
        None => exception,
    })
}

/// `  File "PATH", line N, in FUNCTION` as (the file's name, N, FUNCTION).
fn python_frame(line: &str) -> Option<(String, String, String)> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (path, rest) = rest.rsplit_once("\", line ")?;
    let (number, function) = rest.split_once(", in ")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((file_name(path), number.to_string(), function.to_string()))
}

/// What componentize-js printed when `call` threw something other than a `tool-error`: its glue
/// tried to lower the thrown value as one and wrote
/// ``invalid variant tag value `undefined` (received `TypeError: message`) specified for
/// `ToolError` ``. The stack it prints next is the glue's own, not the error's, so the author's
/// line is not known here.
fn js_exception(stderr: &str) -> Option<String> {
    const RECEIVED: &str = "(received `";
    const SPECIFIED: &str = "`) specified for `";
    let line = stderr
        .lines()
        .map(clip)
        .rfind(|line| line.contains(RECEIVED) && line.contains(SPECIFIED))?;
    let start = line.find(RECEIVED)? + RECEIVED.len();
    let end = line.rfind(SPECIFIED)?;
    let thrown = line.get(start..end)?.trim();
    if thrown.is_empty() {
        return None;
    }
    let thrown = first_chars(thrown, MAX_MESSAGE_CHARS);
    Some(format!(
        "{thrown} (componentize-js prints no file and line for an exception that escapes \
         `call`; the template's warden-tools.js adds them)"
    ))
}

/// A path's last component: the author's `app.py`, not the folder it was built in.
fn file_name(path: &str) -> String {
    let path = path
        .strip_prefix("file://")
        .unwrap_or(path)
        .trim_end_matches(['/', '\\']);
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_string()
}

fn first_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn clip(line: &str) -> &str {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

/// At most [`MAX_EXCEPTION_CHARS`] characters, control characters escaped.
fn one_safe_line(text: &str) -> String {
    let text: String = text.chars().take(MAX_EXCEPTION_CHARS).collect();
    let escaped = escape_log_line(&text);
    if escaped.chars().count() <= MAX_EXCEPTION_CHARS {
        return escaped.into_owned();
    }
    let mut cut: String = escaped.chars().take(MAX_EXCEPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_exception() {
        for stderr in [
            "",
            "hello\nworld",
            "Traceback (most recent call last):\n",
            "foo@bar\nbaz@qux",
            "invalid variant tag value `undefined` (received ``) specified for `ToolError`",
        ] {
            assert_eq!(uncaught_exception(stderr), None, "{stderr:?}");
        }
    }

    #[test]
    fn hostile_text_is_one_capped_line() {
        let stderr = format!(
            "Traceback (most recent call last):\n  File \"/x/app.py\", line 3, in f\nValueError: \x1b[2K{}\r\nforged",
            "a".repeat(10_000)
        );
        let message = uncaught_exception(&stderr).expect("an exception");
        assert!(message.chars().count() <= MAX_EXCEPTION_CHARS, "{message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.starts_with("ValueError: \\u{1b}[2K"), "{message}");
        assert!(message.ends_with("… (at app.py:3, in f)"), "{message}");
    }

    /// Captured from a componentize-py 0.25.1 plugin whose `call` let a `KeyError` escape.
    const PYTHON_STDERR: &str = "Traceback (most recent call last):
  File \"/0/app.py\", line 18, in call
  File \"/0/app.py\", line 6, in inner
KeyError: 'missing'
thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:
Python function threw an unexpected exception
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
";

    /// Captured from a componentize-js 0.23.0 plugin whose `call` let a `TypeError` escape.
    const JS_STDERR: &str = "invalid variant tag value `undefined` (received `TypeError: can't access property \"deeper\", x.missing is undefined`) specified for `ToolError`
Stack:
  export_tool_0_1_0$call@/tmp/3eba08b28b2f/sources/initializer.js:879:17
Redirecting call to abort() to mozalloc_abort
";

    #[test]
    fn a_python_traceback_gives_the_innermost_frame_and_the_exception() {
        assert_eq!(
            uncaught_exception(PYTHON_STDERR).as_deref(),
            Some("KeyError: 'missing' (at app.py:6, in inner)")
        );
    }

    #[test]
    fn a_python_traceback_with_source_lines_and_a_chained_exception_gives_the_last_one() {
        let stderr = "Traceback (most recent call last):
  File \"/0/app.py\", line 3, in f
    int(x)
ValueError: first

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/0/app.py\", line 9, in call
    return helper()
           ^^^^^^^^
  File \"/0/lib/util.py\", line 4, in helper
    raise LookupError(\"no customer 42\")
LookupError: no customer 42
";
        assert_eq!(
            uncaught_exception(stderr).as_deref(),
            Some("LookupError: no customer 42 (at util.py:4, in helper)")
        );
    }

    #[test]
    fn a_js_error_that_escaped_call_gives_its_type_and_message() {
        let message = uncaught_exception(JS_STDERR).expect("an exception");
        assert!(
            message.starts_with(
                "TypeError: can't access property \"deeper\", x.missing is undefined ("
            ),
            "{message}"
        );
        assert!(!message.contains("initializer.js"), "{message}");
    }

    #[test]
    fn a_rust_panic_is_not_an_exception() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:5:5:\ndeliberate panic\n";
        assert_eq!(uncaught_exception(stderr), None);
    }
}
