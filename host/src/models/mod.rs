//! Model backends: the one [`ModelRouter`] through which every model call goes, whether a
//! plugin makes it (the WIT `model` interface, in `capabilities::model`) or Warden's own agent
//! loop does.
//!
//! - [`router`]: aliases to backends, grants, fallbacks with retries and backoff, quotas
//!   reserved and settled, one audit record per call;
//! - [`openai`]: OpenAI-compatible chat completions, streamed, with tool calls;
//! - [`anthropic`]: the Anthropic Messages API, with tool use;
//! - [`quota`]: calls and tokens per minute and per day, per agent and per plugin, atomic
//!   across threads and processes;
//! - [`sse`]: the server-sent events parser the streams go through;
//! - [`backend`]: the backend trait, its failures, and the HTTP plumbing that adds the keys.
//!
//! Keys are read from the host's environment (`api_key_env`, `headers = { X = "env:NAME" }`)
//! and added to the outbound request by the host. Nothing a plugin receives carries them: the
//! request a plugin builds has no place for them, and every message that comes back from a
//! backend has them redacted.
//!
//! ```no_run
//! # async fn demo(router: &warden::models::ModelRouter, rights: &warden::policy::CallRights)
//! # -> Result<(), warden::models::ModelError> {
//! use warden::models::{ChatMessage, ChatRequest, ModelCaller, Role};
//! use warden::sandbox::CallIdentity;
//!
//! let identity = CallIdentity::default();
//! let caller = ModelCaller { identity: &identity, plugin: "summarize", tool: "summarize", grants: rights };
//! let request = ChatRequest::new("fast", vec![ChatMessage::new(Role::User, "Say hi.")]);
//! let completion = router.complete(&caller, request).await?;
//! println!("{} (served by {})", completion.message.content, completion.served_by);
//! # Ok(()) }
//! ```

pub mod anthropic;
pub mod backend;
pub mod openai;
pub mod quota;
pub mod router;
pub mod sse;
mod types;

pub use quota::{QuotaLedger, QuotaScope, Window};
pub use router::{ModelCaller, ModelGrants, ModelRouter, StreamEvent};
pub use types::{
    ChatMessage, ChatRequest, Completion, DEFAULT_MAX_TOKENS, ModelError, Role, ToolCall,
    ToolDefinition, Usage,
};

use crate::config::{ConfigProblem, ConfigProblems, ModelConfig, WardenConfig};

/// Checks every `[models.ALIAS]` as the router will use it (see [`check_alias`]): what
/// `warden config check` and start-up run before any model is reached. Every problem is
/// returned, each at its key.
pub fn configure(config: &WardenConfig) -> Result<(), ConfigProblems> {
    let problems: Vec<ConfigProblem> = config
        .models
        .iter()
        .flat_map(|(name, alias)| {
            check_alias(alias)
                .into_iter()
                .map(move |(field, message)| ConfigProblem {
                    key: format!("models.{name}.{field}"),
                    message,
                })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigProblems(problems))
    }
}

/// The smallest context budget an alias may set: instructions, a summary and one turn fit.
pub const MIN_CONTEXT_TOKENS: u64 = 256;

/// Checks the keys of one `[models.ALIAS]` that the backends need: the problems, each with the
/// field it is at (the config check adds the section).
pub fn check_alias(alias: &ModelConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if alias.model.trim().is_empty() {
        problems.push((
            "model".into(),
            "name the provider's model, e.g. \"gpt-4.1-mini\" or \"claude-sonnet-4-5\"".into(),
        ));
    }
    if let Some(url) = &alias.base_url {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => problems.push((
                "base_url".into(),
                format!("`{url}` is not an http(s) URL; write e.g. \"https://api.openai.com/v1\""),
            )),
        }
    }
    if let Some(var) = &alias.api_key_env {
        match std::env::var(var) {
            Err(_) => problems.push((
                "api_key_env".into(),
                format!("the environment variable `{var}` is not set"),
            )),
            // The key goes into a header (`Authorization: Bearer KEY`, `x-api-key: KEY`), where
            // a stray newline from `echo` would refuse every request: say so now, never the key.
            Ok(key)
                if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() =>
            {
                problems.push((
                    "api_key_env".into(),
                    format!(
                        "the value of `{var}` cannot be sent in a header (a line break or another \
                         control character?); set it to the key alone"
                    ),
                ))
            }
            Ok(_) => {}
        }
    }
    for (name, value) in &alias.headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push((
                format!("headers.{name}"),
                format!("`{name}` is not a valid header name"),
            ));
            continue;
        }
        match router::resolve_header(value) {
            Err(e) => problems.push((format!("headers.{name}"), e)),
            Ok((resolved, true)) => {
                if reqwest::header::HeaderValue::from_str(&resolved).is_err() {
                    problems.push((
                        format!("headers.{name}"),
                        "the value of its environment variable is not a valid header value (a \
                         line break or another control character?)"
                            .into(),
                    ));
                }
            }
            Ok((literal, false)) => {
                if reqwest::header::HeaderValue::from_str(&literal).is_err() {
                    problems.push((
                        format!("headers.{name}"),
                        "not a valid header value; secrets go in the environment, as \"env:NAME\""
                            .into(),
                    ));
                }
            }
        }
    }
    if alias.timeout_ms == Some(0) {
        problems.push((
            "timeout_ms".into(),
            "must be at least 1 (milliseconds)".into(),
        ));
    }
    if let Some(tokens) = alias.context_tokens
        && tokens < MIN_CONTEXT_TOKENS
    {
        problems.push((
            "context_tokens".into(),
            format!(
                "is {tokens}; the agent loop needs a context budget of at least \
                 {MIN_CONTEXT_TOKENS} tokens"
            ),
        ));
    }
    problems
}
