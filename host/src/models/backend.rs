//! What a backend is to the router: one small trait, the failures it reports (which the router
//! sorts into retry, fall back or give up), and the HTTP plumbing both providers share: the
//! endpoint, the credentials the host adds, and redaction of those credentials from anything
//! that could reach a plugin.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::types::{ChatMessage, ChatRequest, Usage};

/// The most bytes of a response body the host reads.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// How much of an error body goes into a message.
const ERROR_BODY_PREVIEW: usize = 300;

/// What a backend answered.
#[derive(Debug, Clone)]
pub struct BackendReply {
    /// The assistant's message.
    pub message: ChatMessage,
    /// The usage the provider reported, if it did.
    pub usage: Option<Usage>,
    /// The provider's model name, as the provider reported it.
    pub model: String,
    /// `stop`, `length`, `tool-calls` or `content-filter` (others pass through).
    pub finish_reason: String,
}

/// How a backend failed. The router retries, falls back or gives up by the kind.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendFailure {
    /// HTTP 429: the provider wants fewer requests, perhaps saying when to come back.
    RateLimited {
        /// `Retry-After` (or `retry-after-ms`), if sent.
        retry_after: Option<Duration>,
        /// The provider's words.
        message: String,
    },
    /// HTTP 5xx (529, Anthropic's "overloaded", included).
    Server {
        /// The status.
        status: u16,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// The provider's words.
        message: String,
    },
    /// The connection could not be made, so nothing of the request reached the provider.
    ConnectFailed(String),
    /// The connection broke after the request went out, before a whole response.
    Unreachable(String),
    /// No answer within the alias's timeout (set by the router).
    Timeout(Duration),
    /// Any other HTTP error: the request itself is refused (a bad key, a bad request).
    Rejected {
        /// The status.
        status: u16,
        /// The provider's words.
        message: String,
    },
    /// A success status with a body that is not a completion.
    Malformed(String),
}

impl BackendFailure {
    /// Says what happened, for the error a caller reads and for the audit log.
    pub fn describe(&self) -> String {
        match self {
            BackendFailure::RateLimited {
                retry_after,
                message,
            } => format!(
                "rate limited (HTTP 429{}){}",
                retry_after
                    .map(|d| format!(", retry after {} ms", d.as_millis()))
                    .unwrap_or_default(),
                colon(message)
            ),
            BackendFailure::Server {
                status, message, ..
            } => format!("server error (HTTP {status}){}", colon(message)),
            BackendFailure::ConnectFailed(e) | BackendFailure::Unreachable(e) => {
                format!("cannot reach the endpoint: {e}")
            }
            BackendFailure::Timeout(after) => {
                format!(
                    "no answer within {} ms (the alias's timeout_ms)",
                    after.as_millis()
                )
            }
            BackendFailure::Rejected { status, message } => {
                format!("refused the request (HTTP {status}){}", colon(message))
            }
            BackendFailure::Malformed(e) => {
                format!("answered something that is not a completion: {e}")
            }
        }
    }

    /// Whether the request may have reached the provider, which may then bill for it.
    pub fn request_went_out(&self) -> bool {
        !matches!(self, BackendFailure::ConnectFailed(_))
    }

    /// A short word for the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendFailure::RateLimited { .. } => "rate-limited",
            BackendFailure::Server { .. } => "server-error",
            BackendFailure::ConnectFailed(_) | BackendFailure::Unreachable(_) => "unreachable",
            BackendFailure::Timeout(_) => "timeout",
            BackendFailure::Rejected { .. } => "rejected",
            BackendFailure::Malformed(_) => "malformed",
        }
    }
}

fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// Text as a backend streams it, for a caller that shows progress.
pub type TextSink<'a> = dyn FnMut(&str) + Send + 'a;

/// A model provider's wire protocol. Implementations turn a request into the provider's JSON,
/// send it through their [`Endpoint`] and read the answer; the router owns timeouts, retries,
/// fallbacks, quotas and the audit.
#[async_trait]
pub trait ModelBackend: Send + Sync {
    /// `openai` or `anthropic`.
    fn kind(&self) -> &'static str;

    /// One attempt at a completion, generating at most `max_tokens`. Text is passed to `on_text`
    /// as it arrives, where the backend streams.
    async fn complete(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
        on_text: &mut TextSink<'_>,
    ) -> Result<BackendReply, BackendFailure>;
}

/// Where a backend sends its requests, and what the host adds to each.
pub struct Endpoint {
    client: reqwest::Client,
    /// The full URL requests go to.
    pub url: String,
    headers: HeaderMap,
    /// Credential values: never shown to a plugin, redacted from whatever could reach one.
    secrets: Vec<String>,
}

impl Endpoint {
    /// An endpoint at `url`, sending `headers`; values in `secrets` are redacted from messages.
    pub fn new(
        client: reqwest::Client,
        url: String,
        headers: Vec<(String, String)>,
        secrets: Vec<String>,
    ) -> Result<Endpoint, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
            value.set_sensitive(true);
            map.insert(header, value);
        }
        Ok(Endpoint {
            client,
            url,
            headers: map,
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
        })
    }

    /// POSTs `body` as JSON. A 2xx response is returned for the backend to read; anything else
    /// becomes the matching [`BackendFailure`], with the provider's error message.
    pub async fn post(
        &self,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, BackendFailure> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| BackendFailure::Malformed(format!("cannot encode the request: {e}")))?;
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await
            .map_err(|e| {
                let why = self.redact(&error_chain(&e));
                if e.is_connect() {
                    BackendFailure::ConnectFailed(why)
                } else {
                    BackendFailure::Unreachable(why)
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = read_capped(response, 64 * 1024).await.unwrap_or_default();
        let message = self.redact(&provider_message(&body));
        let status = status.as_u16();
        Err(match status {
            429 => BackendFailure::RateLimited {
                retry_after,
                message,
            },
            500..=599 => BackendFailure::Server {
                status,
                retry_after,
                message,
            },
            _ => BackendFailure::Rejected { status, message },
        })
    }

    /// Reads a whole (non-streamed) body as JSON.
    pub async fn read_json(
        &self,
        response: reqwest::Response,
    ) -> Result<serde_json::Value, BackendFailure> {
        let body = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| BackendFailure::Unreachable(self.redact(&e)))?;
        serde_json::from_slice(&body).map_err(|e| {
            BackendFailure::Malformed(self.redact(&format!(
                "the body is not JSON ({e}); it starts with {:?}",
                preview(&body)
            )))
        })
    }

    /// A reply with every credential value redacted from its text and tool calls: an endpoint
    /// that echoes what it was sent must not hand the key to the plugin.
    pub fn redact_reply(&self, mut reply: BackendReply) -> BackendReply {
        if self.secrets.is_empty() {
            return reply;
        }
        reply.message.content = self.redact(&reply.message.content);
        for call in &mut reply.message.tool_calls {
            call.id = self.redact(&call.id);
            call.name = self.redact(&call.name);
            call.arguments = self.redact(&call.arguments);
        }
        reply.model = self.redact(&reply.model);
        reply.finish_reason = self.redact(&reply.finish_reason);
        reply
    }

    /// Replaces every credential value in `text` with `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// Whether a response is a stream of server-sent events.
pub fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Reads at most `cap` bytes of a body; more is an error.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the response broke off: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(format!("the response is larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The provider's own error message: `{"error": {"message": …}}` (both providers), or the
/// start of the body.
fn provider_message(body: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = json.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
    });
    match message {
        Some(m) => m.chars().take(ERROR_BODY_PREVIEW).collect(),
        None => preview(body),
    }
}

/// The first bytes of a body, as text, for a message.
pub fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(ERROR_BODY_PREVIEW).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// `Retry-After` in seconds (fractions allowed), or OpenAI's `retry-after-ms`. An HTTP date is
/// not understood and counts as absent.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let secs = get("retry-after")?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// An error and its causes, on one line: reqwest's top error alone says little.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut date = HeaderMap::new();
        date.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&date), None);
    }

    #[test]
    fn provider_messages_are_found_in_either_shape() {
        assert_eq!(
            provider_message(br#"{"error":{"message":"slow down","type":"rate_limit"}}"#),
            "slow down"
        );
        assert_eq!(
            provider_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded"
        );
        assert_eq!(provider_message(b"<html>502</html>"), "<html>502</html>");
    }

    #[test]
    fn secrets_are_redacted() {
        let endpoint = Endpoint::new(
            reqwest::Client::new(),
            "http://127.0.0.1/".into(),
            vec![],
            vec!["sk-secret-123".into()],
        )
        .unwrap();
        assert_eq!(
            endpoint.redact("Incorrect API key provided: sk-secret-123."),
            "Incorrect API key provided: [redacted]."
        );
    }
}
