//! What a plugin call can fail with. Callers branch on [`ErrorKind`]; the CLI turns each kind
//! into its documented exit code.

use std::fmt;

/// Which per-call limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Wall-clock time (`--timeout-ms`).
    Time,
    /// Linear memory (`--memory-mb`).
    Memory,
    /// Wasm stack depth (`--stack-kb`).
    Stack,
    /// Size of the tool's output (`--max-output-kb`).
    Output,
    /// Size of the tool's input (`--max-input-kb`).
    Input,
    /// Model steps of one agent task (`limits.max_steps`).
    Steps,
}

impl Limit {
    /// The word used in messages, and the flag that raises the limit.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Limit::Time => ("time", "--timeout-ms"),
            Limit::Memory => ("memory", "--memory-mb"),
            Limit::Stack => ("stack", "--stack-kb"),
            Limit::Output => ("output", "--max-output-kb"),
            Limit::Input => ("input", "--max-input-kb"),
            Limit::Steps => ("steps", "limits.max_steps"),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe().0)
    }
}

/// The kind of a failed call; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON, a schema violation, an unknown tool, an oversized input.
    InvalidInput,
    /// The plugin needed a capability it was not granted.
    Denied,
    /// The tool reported a failure, panicked or trapped.
    ToolFailed,
    /// A per-call limit was exceeded.
    LimitExceeded(Limit),
    /// The plugin cannot be used at all: missing, not a component, wrong world, a pin mismatch.
    Unusable,
    /// The operator's config has problems.
    Config,
    /// The host itself failed (an I/O error, a bug).
    Internal,
    /// The session is busy: another task holds its lease.
    Busy,
    /// An agent task stopped before its end (a model backend or the store failed) and can be
    /// resumed from its journal.
    Interrupted,
    /// The caller cancelled the call before it ended (MCP's `notifications/cancelled`).
    Cancelled,
}

impl ErrorKind {
    /// The process exit code `warden call` uses for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidInput => 2,
            ErrorKind::Denied => 3,
            ErrorKind::ToolFailed => 4,
            ErrorKind::LimitExceeded(Limit::Input) => 2,
            ErrorKind::LimitExceeded(_) => 5,
            ErrorKind::Unusable => 6,
            ErrorKind::Config => 7,
            ErrorKind::Internal => 1,
            ErrorKind::Busy => 8,
            ErrorKind::Interrupted => 9,
            ErrorKind::Cancelled => 10,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput | ErrorKind::LimitExceeded(Limit::Input) => "invalid input",
            ErrorKind::Denied => "denied",
            ErrorKind::ToolFailed => "tool failed",
            ErrorKind::LimitExceeded(_) => "limit exceeded",
            ErrorKind::Unusable => "plugin unusable",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal error",
            ErrorKind::Busy => "session busy",
            ErrorKind::Interrupted => "task interrupted",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

/// A failed call: its kind and a message that says what went wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    kind: ErrorKind,
    message: String,
    /// Refused because its audit record could not be committed (the store was down): the
    /// host's trouble, not the call's, so an agent task retries it instead of keeping it.
    unaudited: bool,
}

impl CallError {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallError {
            kind,
            message: message.into(),
            unaudited: false,
        }
    }

    /// A call refused because its audit record could not be committed (an
    /// [`ErrorKind::Internal`] error).
    pub fn unaudited(message: impl Into<String>) -> Self {
        CallError {
            unaudited: true,
            ..Self::new(ErrorKind::Internal, message)
        }
    }

    /// Whether [`CallError::unaudited`] made it.
    pub fn is_unaudited(&self) -> bool {
        self.unaudited
    }

    /// Invalid input.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The plugin cannot be used.
    pub fn unusable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unusable, message)
    }

    /// The tool failed.
    pub fn tool_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ToolFailed, message)
    }

    /// A limit was exceeded.
    pub fn limit(limit: Limit, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded(limit), message)
    }

    /// The kind, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message alone, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::LimitExceeded(Limit::Input) => {
                write!(f, "{}: {}", self.kind.label(), self.message)
            }
            ErrorKind::LimitExceeded(limit) => {
                write!(f, "{}: {limit}: {}", self.kind.label(), self.message)
            }
            kind => write!(f, "{}: {}", kind.label(), self.message),
        }
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_cli_contract() {
        assert_eq!(ErrorKind::InvalidInput.exit_code(), 2);
        assert_eq!(ErrorKind::LimitExceeded(Limit::Input).exit_code(), 2);
        assert_eq!(ErrorKind::Denied.exit_code(), 3);
        assert_eq!(ErrorKind::ToolFailed.exit_code(), 4);
        for limit in [Limit::Time, Limit::Memory, Limit::Stack, Limit::Output] {
            assert_eq!(ErrorKind::LimitExceeded(limit).exit_code(), 5);
        }
        assert_eq!(ErrorKind::Unusable.exit_code(), 6);
        assert_eq!(ErrorKind::Config.exit_code(), 7);
        assert_eq!(ErrorKind::LimitExceeded(Limit::Steps).exit_code(), 5);
        assert_eq!(ErrorKind::Busy.exit_code(), 8);
        assert_eq!(ErrorKind::Interrupted.exit_code(), 9);
    }

    #[test]
    fn limit_messages_name_the_limit() {
        let e = CallError::limit(Limit::Memory, "the call grew past 64 MiB");
        assert_eq!(
            e.to_string(),
            "limit exceeded: memory: the call grew past 64 MiB"
        );
    }
}
