//! The error a tool returns, and how the host imports' errors turn into it.

use std::fmt;

use crate::data::DataError;
use crate::memory::MemoryError;
use crate::model::ModelError;

/// Why a tool call did not succeed. The message is shown to the caller (often a model), so say
/// what was wrong and, where possible, how to get it right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolError {
    /// The input was well-formed JSON but not acceptable.
    InvalidInput(String),
    /// The tool needed something it was not granted.
    Denied(String),
    /// The tool tried and failed.
    Failed(String),
}

impl ToolError {
    /// [`ToolError::InvalidInput`] with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        ToolError::InvalidInput(message.into())
    }

    /// [`ToolError::Denied`] with `message`.
    pub fn denied(message: impl Into<String>) -> Self {
        ToolError::Denied(message.into())
    }

    /// [`ToolError::Failed`] with `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        ToolError::Failed(message.into())
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::InvalidInput(message) => write!(f, "invalid input: {message}"),
            ToolError::Denied(message) => write!(f, "denied: {message}"),
            ToolError::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}

impl std::error::Error for ToolError {}

impl From<MemoryError> for ToolError {
    fn from(error: MemoryError) -> Self {
        match error {
            MemoryError::Denied(message) => ToolError::Denied(message),
            MemoryError::Invalid(message) => ToolError::InvalidInput(message),
            other @ (MemoryError::Conflict { .. } | MemoryError::Failed(_)) => {
                ToolError::Failed(other.to_string())
            }
        }
    }
}

impl From<DataError> for ToolError {
    fn from(error: DataError) -> Self {
        match error {
            DataError::Denied(message) => ToolError::Denied(message),
            DataError::Invalid(message) => ToolError::InvalidInput(message),
            other @ (DataError::Timeout(_) | DataError::Failed(_) | DataError::Mismatch(_)) => {
                ToolError::Failed(other.to_string())
            }
        }
    }
}

impl From<ModelError> for ToolError {
    fn from(error: ModelError) -> Self {
        match error {
            ModelError::Denied(message) => ToolError::Denied(message),
            ModelError::Invalid(message) => ToolError::InvalidInput(message),
            other @ (ModelError::QuotaExceeded { .. } | ModelError::Backend(_)) => {
                ToolError::Failed(other.to_string())
            }
        }
    }
}
