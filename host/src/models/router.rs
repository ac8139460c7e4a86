//! The [`ModelRouter`]: the one way to a model, for plugins and for Warden's own agent loop.
//!
//! One call goes: alias known? → alias granted? → request well-formed? → quota reserved →
//! the alias's backend, then its fallbacks, with retries → quota settled (or released) →
//! one audit record. Every step that refuses says why, in the kind the caller branches on.
//!
//! Retries and fallbacks:
//! - a **429** moves on to the next fallback at once; on the last backend it is retried once,
//!   no sooner than its `Retry-After`;
//! - a **5xx** or a connection that cannot be made is retried once on the same backend after a
//!   backoff (or its `Retry-After`), then the next fallback is tried;
//! - a **timeout** moves on to the next fallback: that backend already had its time;
//! - any other refusal (a bad key, a bad request) or a malformed answer ends the call: another
//!   backend would not fix it, and the operator needs to see it.
//!
//! No wait is longer than [`MAX_RETRY_WAIT`]: a backend that asks for more is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::anthropic::{self, AnthropicBackend};
use super::backend::{BackendFailure, BackendReply, Endpoint, ModelBackend};
use super::openai::{self, OpenAiBackend};
use super::quota::{QuotaLedger, QuotaScope, Reservation, ReserveError};
use super::types::{ChatRequest, Completion, ModelError, Usage, estimate_tokens};
use crate::capabilities::AuditFailure;
use crate::config::{ModelConfig, WardenConfig};
use crate::policy::audit::NewRecord;
use crate::policy::{AuditLog, CallRights, Outcome};
use crate::sandbox::CallIdentity;
use crate::state::StateStore;

/// How long one attempt may take unless the alias's `timeout_ms` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Attempts at one backend before the next fallback is tried.
pub const ATTEMPTS_PER_BACKEND: u32 = 2;
/// The first backoff after a failure; it doubles with each attempt.
pub const BASE_BACKOFF: Duration = Duration::from_millis(200);
/// The longest the router waits before a retry, whatever `Retry-After` asks.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Which model aliases a caller may use: a plugin call's effective rights, or (for the agent
/// loop) an agent's grants.
pub trait ModelGrants: Sync {
    /// `Ok` if `alias` may be used; otherwise a denial that names the grant that would allow it.
    fn check_model(&self, alias: &str) -> Result<(), String>;
}

impl ModelGrants for CallRights {
    fn check_model(&self, alias: &str) -> Result<(), String> {
        CallRights::check_model(self, alias).map_err(|denial| denial.to_string())
    }
}

/// Who asks for a completion: the identity and plugin tool for the audit log and quotas, and
/// the grants that decide which aliases it may use.
#[derive(Clone, Copy)]
pub struct ModelCaller<'a> {
    /// Tenant, agent, session and call id.
    pub identity: &'a CallIdentity,
    /// The plugin, or empty for Warden's own agent loop.
    pub plugin: &'a str,
    /// The plugin's tool, or empty.
    pub tool: &'a str,
    /// The aliases the caller may use.
    pub grants: &'a dyn ModelGrants,
}

/// What a streaming caller is told while a completion is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// Text from the attempt in progress.
    Text(&'a str),
    /// The attempt failed and another begins, at this alias: text shown so far is void.
    Retry {
        /// The alias of the new attempt.
        alias: &'a str,
    },
}

/// One configured alias, ready to serve.
struct AliasRoute {
    name: String,
    backend: Arc<dyn ModelBackend>,
    model: String,
    timeout: Duration,
    fallbacks: Vec<String>,
}

/// Routes completions to backends by alias, with fallbacks, quotas and audit.
pub struct ModelRouter {
    config: Arc<WardenConfig>,
    routes: BTreeMap<String, AliasRoute>,
    ledger: QuotaLedger,
    audit: AuditLog,
}

impl ModelRouter {
    /// Builds a backend for every `[models.ALIAS]`, reading keys from the host's environment,
    /// and opens the quota ledger in `store`.
    pub fn configure(
        config: &Arc<WardenConfig>,
        store: StateStore,
        audit: AuditLog,
    ) -> Result<ModelRouter, String> {
        let mut routes = BTreeMap::new();
        // The client (and its TLS roots) is built only when there is a model to reach.
        if !config.models.is_empty() {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot start the HTTP client for model backends: {e}"))?;
            for (name, alias) in &config.models {
                let route =
                    build_route(&client, name, alias).map_err(|e| format!("models.{name}: {e}"))?;
                routes.insert(name.clone(), route);
            }
        }
        Ok(ModelRouter {
            config: config.clone(),
            routes,
            ledger: QuotaLedger::open(&store),
            audit,
        })
    }

    /// The quota ledger, to read what a scope has used.
    pub fn ledger(&self) -> &QuotaLedger {
        &self.ledger
    }

    /// The aliases `grants` allow, in order.
    pub fn allowed_aliases(&self, grants: &dyn ModelGrants) -> Vec<String> {
        self.routes
            .keys()
            .filter(|alias| grants.check_model(alias).is_ok())
            .cloned()
            .collect()
    }

    /// One completion for `caller`.
    pub async fn complete(
        &self,
        caller: &ModelCaller<'_>,
        request: ChatRequest,
    ) -> Result<Completion, ModelError> {
        self.complete_streaming(caller, request, &mut |_| {}).await
    }

    /// One completion for `caller`, telling `on_event` about text as it arrives.
    pub async fn complete_streaming(
        &self,
        caller: &ModelCaller<'_>,
        request: ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
    ) -> Result<Completion, ModelError> {
        let mut record = CallRecord::new(self, caller, &request.alias);
        let Some(route) = self.routes.get(&request.alias) else {
            let allowed = self.allowed_aliases(caller.grants);
            let error = ModelError::Invalid(format!(
                "`{}` is not a model alias; this call may use: {}",
                request.alias,
                if allowed.is_empty() {
                    "none (no model alias is granted to it)".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
            return Err(record.refused(Outcome::Failed, error).await);
        };
        record.backend = route.backend.kind();
        record.model = route.model.clone();
        if let Err(denial) = caller.grants.check_model(&request.alias) {
            return Err(record
                .refused(Outcome::Denied, ModelError::Denied(denial))
                .await);
        }
        if let Err(problem) = request.validate() {
            return Err(record
                .refused(Outcome::Failed, ModelError::Invalid(problem))
                .await);
        }
        let max_tokens = request.output_limit();
        let reserved = request.reserved_tokens();
        record.reserved_tokens = reserved;
        let mut reservation = match self.reserve(caller, reserved).await {
            Ok(r) => r,
            Err(ReserveError::Exceeded(e)) => {
                let error = ModelError::QuotaExceeded {
                    message: e.message,
                    resets_at_ms: e.resets_at_ms,
                };
                return Err(record.refused(Outcome::Denied, error).await);
            }
            Err(ReserveError::Store(e)) => {
                let error = ModelError::Backend(format!(
                    "cannot reserve the model quota in the state store: {e}"
                ));
                return Err(record.refused(Outcome::Failed, error).await);
            }
        };
        // Fail closed: no request goes out that the audit log cannot show was made.
        if let Err(failure) = record.write_request().await {
            reservation.finish_unanswered().await;
            return Err(failure);
        }
        match self
            .route(
                route,
                &request,
                max_tokens,
                on_event,
                &mut record,
                &mut reservation,
            )
            .await
        {
            Ok((served, reply)) => {
                let (usage, estimated) = match reply.usage {
                    Some(usage) => (usage, false),
                    None => (estimate_usage(&request, &reply), true),
                };
                reservation.settle(usage.total()).await;
                crate::metrics::model_tokens(
                    &served.name,
                    &caller.identity.agent,
                    usage.input_tokens,
                    usage.output_tokens,
                );
                let completion = Completion {
                    message: reply.message,
                    usage,
                    served_by: served.name.clone(),
                    model: if reply.model.is_empty() {
                        served.model.clone()
                    } else {
                        reply.model
                    },
                    finish_reason: reply.finish_reason,
                };
                record
                    .served(&completion, served.backend.kind(), estimated)
                    .await?;
                Ok(completion)
            }
            Err(error) => {
                // A request that went out counts at what was reserved: the provider may bill it.
                reservation.finish_unanswered().await;
                Err(record.refused(Outcome::Failed, error).await)
            }
        }
    }

    async fn reserve(
        &self,
        caller: &ModelCaller<'_>,
        tokens: u64,
    ) -> Result<Reservation, ReserveError> {
        let mut scopes = Vec::new();
        scopes.extend(QuotaScope::agent(&self.config, &caller.identity.agent));
        if !caller.plugin.is_empty() {
            scopes.extend(QuotaScope::plugin(&self.config, caller.plugin));
        }
        self.ledger.reserve(&scopes, tokens, now_ms()).await
    }

    /// The alias and then its fallbacks, each once.
    fn chain<'r>(&'r self, first: &'r AliasRoute) -> Vec<&'r AliasRoute> {
        let mut chain = vec![first];
        for name in &first.fallbacks {
            if let Some(route) = self.routes.get(name)
                && !chain.iter().any(|r| r.name == route.name)
            {
                chain.push(route);
            }
        }
        chain
    }

    /// Tries the chain until one backend answers. The reservation is marked spent before each
    /// request goes out, so a caller that stops waiting (its call timed out) cannot hand back
    /// what a backend may already be serving.
    async fn route<'r>(
        &'r self,
        first: &'r AliasRoute,
        request: &ChatRequest,
        max_tokens: u32,
        on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
        record: &mut CallRecord<'_>,
        reservation: &mut Reservation,
    ) -> Result<(&'r AliasRoute, BackendReply), ModelError> {
        let chain = self.chain(first);
        let mut went_out = false;
        let mut started_any = false;
        for (position, route) in chain.iter().enumerate() {
            let has_next = position + 1 < chain.len();
            for attempt in 1..=ATTEMPTS_PER_BACKEND {
                if started_any {
                    on_event(StreamEvent::Retry { alias: &route.name });
                }
                started_any = true;
                let started = Instant::now();
                let mut sink = |text: &str| on_event(StreamEvent::Text(text));
                // Durable before the request goes out: a process that dies mid-request still
                // counts the call. A store that cannot record it sends nothing.
                if let Err(e) = reservation.mark_spent(true).await {
                    return Err(ModelError::Backend(format!(
                        "cannot record the model quota in the state store, so no request was \
                         sent: {e}"
                    )));
                }
                let outcome = tokio::time::timeout(
                    route.timeout,
                    route.backend.complete(request, max_tokens, &mut sink),
                )
                .await
                .unwrap_or(Err(BackendFailure::Timeout(route.timeout)));
                let latency = started.elapsed();
                let failure = match outcome {
                    Ok(reply) => {
                        record.attempt(route, latency, None);
                        return Ok((route, reply));
                    }
                    Err(failure) => failure,
                };
                went_out |= failure.request_went_out();
                if let Err(e) = reservation.mark_spent(went_out).await {
                    tracing::error!("cannot record the model quota in the state store: {e}");
                }
                record.attempt(route, latency, Some(&failure));
                match next_step(&failure, attempt, has_next) {
                    Step::RetryAfter(wait) => tokio::time::sleep(wait).await,
                    Step::NextBackend => break,
                    Step::GiveUp => return Err(ModelError::Backend(record.failures())),
                }
            }
        }
        Err(ModelError::Backend(record.failures()))
    }
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq)]
enum Step {
    RetryAfter(Duration),
    NextBackend,
    GiveUp,
}

fn next_step(failure: &BackendFailure, attempt: u32, has_next: bool) -> Step {
    let retry = |asked: Option<Duration>| {
        if attempt >= ATTEMPTS_PER_BACKEND {
            return Step::NextBackend;
        }
        let wait = asked.unwrap_or_else(|| backoff(attempt));
        if wait > MAX_RETRY_WAIT {
            Step::NextBackend
        } else {
            Step::RetryAfter(wait)
        }
    };
    match failure {
        BackendFailure::RateLimited { retry_after, .. } => {
            if has_next {
                Step::NextBackend
            } else {
                retry(*retry_after)
            }
        }
        BackendFailure::Server { retry_after, .. } => retry(*retry_after),
        BackendFailure::ConnectFailed(_) | BackendFailure::Unreachable(_) => retry(None),
        BackendFailure::Timeout(_) => Step::NextBackend,
        BackendFailure::Rejected { .. } | BackendFailure::Malformed(_) => Step::GiveUp,
    }
}

/// `BASE_BACKOFF` doubled per attempt, plus up to half of it again at random, so that many
/// callers do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = BASE_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
    base + jitter
}

/// Usage guessed from the text, for a backend that reports none.
fn estimate_usage(request: &ChatRequest, reply: &BackendReply) -> Usage {
    let output: usize = reply.message.content.len()
        + reply
            .message
            .tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum::<usize>();
    let clamp = |n: u64| n.min(u64::from(u32::MAX)) as u32;
    Usage {
        input_tokens: clamp(request.estimated_input_tokens()),
        output_tokens: clamp(estimate_tokens(output)),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn build_route(
    client: &reqwest::Client,
    name: &str,
    alias: &ModelConfig,
) -> Result<AliasRoute, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut secrets = Vec::new();
    let key = match &alias.api_key_env {
        Some(var) => {
            let key = std::env::var(var).map_err(|_| {
                format!("the environment variable `{var}` (api_key_env) is not set")
            })?;
            secrets.push(key.clone());
            Some(key)
        }
        None => None,
    };
    let (base, path) = match alias.backend.as_str() {
        "openai" => {
            if let Some(key) = &key {
                headers.push(("authorization".into(), format!("Bearer {key}")));
            }
            (openai::DEFAULT_BASE_URL, "/chat/completions")
        }
        "anthropic" => {
            if let Some(key) = &key {
                headers.push(("x-api-key".into(), key.clone()));
            }
            headers.push(("anthropic-version".into(), anthropic::API_VERSION.into()));
            (anthropic::DEFAULT_BASE_URL, "/messages")
        }
        other => return Err(format!("`{other}` is not a backend")),
    };
    for (header, value) in &alias.headers {
        let (value, secret) =
            resolve_header(value).map_err(|e| format!("headers.{header}: {e}"))?;
        if secret {
            secrets.push(value.clone());
        }
        headers.push((header.to_ascii_lowercase(), value));
    }
    let base = alias.base_url.as_deref().unwrap_or(base);
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let endpoint = Endpoint::new(client.clone(), url, headers, secrets)?;
    let backend: Arc<dyn ModelBackend> = match alias.backend.as_str() {
        "anthropic" => Arc::new(AnthropicBackend::new(endpoint, alias.model.clone())),
        _ => Arc::new(OpenAiBackend::new(endpoint, alias.model.clone())),
    };
    Ok(AliasRoute {
        name: name.to_string(),
        backend,
        model: alias.model.clone(),
        timeout: Duration::from_millis(alias.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1)),
        fallbacks: alias.fallbacks.clone(),
    })
}

/// A header value from the config: `env:NAME` is read from the host's environment (and is a
/// secret), anything else is a literal.
pub(super) fn resolve_header(value: &str) -> Result<(String, bool), String> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .map(|v| (v, true))
            .map_err(|_| format!("the environment variable `{var}` is not set")),
        None => Ok((value.to_string(), false)),
    }
}

/// One attempt at one backend, for the audit record.
struct Attempt {
    alias: String,
    backend: &'static str,
    latency: Duration,
    failure: Option<(&'static str, String)>,
}

/// The audit record of one model call, written once: when the call ends, or, if the caller
/// goes away mid-call (a plugin call that ran out of time), when it is dropped.
struct CallRecord<'a> {
    router: &'a ModelRouter,
    identity: &'a CallIdentity,
    plugin: &'a str,
    tool: &'a str,
    alias: String,
    backend: &'static str,
    model: String,
    started: Instant,
    reserved_tokens: u64,
    attempts: Vec<Attempt>,
    written: bool,
}

impl<'a> CallRecord<'a> {
    fn new(router: &'a ModelRouter, caller: &ModelCaller<'a>, alias: &str) -> Self {
        CallRecord {
            router,
            identity: caller.identity,
            plugin: caller.plugin,
            tool: caller.tool,
            alias: alias.to_string(),
            backend: "",
            model: String::new(),
            started: Instant::now(),
            reserved_tokens: 0,
            attempts: Vec::new(),
            written: false,
        }
    }

    /// Notes one attempt for the record, and times it in the metrics: where a backend call ends.
    fn attempt(&mut self, route: &AliasRoute, latency: Duration, failure: Option<&BackendFailure>) {
        crate::metrics::model_attempt(&route.name, failure.map(BackendFailure::kind), latency);
        self.attempts.push(Attempt {
            alias: route.name.clone(),
            backend: route.backend.kind(),
            latency,
            failure: failure.map(|f| (f.kind(), f.describe())),
        });
    }

    /// Every failed attempt, in order, for the `backend` error.
    fn failures(&self) -> String {
        let parts: Vec<String> = self
            .attempts
            .iter()
            .filter_map(|a| {
                let (_, why) = a.failure.as_ref()?;
                Some(format!("`{}` ({}): {why}", a.alias, a.backend))
            })
            .collect();
        format!(
            "every backend for model alias `{}` failed: {}",
            self.alias,
            parts.join("; then ")
        )
    }

    fn base_detail(&self, outcome: &str) -> serde_json::Map<String, Value> {
        let attempts: Vec<Value> = self
            .attempts
            .iter()
            .map(|a| {
                let mut v = json!({
                    "alias": a.alias,
                    "backend": a.backend,
                    "latency_ms": a.latency.as_millis() as u64,
                    "outcome": a.failure.as_ref().map_or("ok", |(kind, _)| kind),
                });
                if let Some((_, why)) = &a.failure {
                    v["error"] = json!(why);
                }
                v
            })
            .collect();
        let detail = json!({
            "alias": self.alias,
            "backend": self.backend,
            "model": self.model,
            "outcome": outcome,
            "latency_ms": self.started.elapsed().as_millis() as u64,
            "reserved_tokens": self.reserved_tokens,
            "attempts": attempts,
        });
        match detail {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// The record of a request about to go out: what is asked of which backend.
    async fn write_request(&mut self) -> Result<(), ModelError> {
        let detail = json!({
            "phase": "request",
            "alias": self.alias,
            "backend": self.backend,
            "model": self.model,
            "reserved_tokens": self.reserved_tokens,
        });
        let result = self.write(Outcome::Allowed, detail).await;
        // The outcome record is still owed once the request goes out; if this record failed,
        // nothing goes out and the store would refuse the outcome record as well.
        self.written = result.is_err();
        result
    }

    /// Fails when the record cannot be committed: the completion is then withheld.
    async fn served(
        &mut self,
        completion: &Completion,
        backend: &'static str,
        estimated: bool,
    ) -> Result<(), ModelError> {
        let mut detail = self.base_detail("ok");
        detail.insert("served_by".into(), json!(completion.served_by));
        detail.insert("fallback".into(), json!(completion.served_by != self.alias));
        detail.insert("backend".into(), json!(backend));
        detail.insert("model".into(), json!(completion.model));
        detail.insert("tokens_in".into(), json!(completion.usage.input_tokens));
        detail.insert("tokens_out".into(), json!(completion.usage.output_tokens));
        detail.insert("usage_estimated".into(), json!(estimated));
        detail.insert("finish_reason".into(), json!(completion.finish_reason));
        self.write(Outcome::Allowed, Value::Object(detail)).await
    }

    /// The record of a call that ended without an answer; an audit failure replaces `error`.
    async fn refused(&mut self, outcome: Outcome, error: ModelError) -> ModelError {
        let mut detail = self.base_detail(error.kind());
        detail.insert("served_by".into(), Value::Null);
        detail.insert("error".into(), json!(error.message()));
        if let ModelError::QuotaExceeded { resets_at_ms, .. } = &error {
            detail.insert("resets_at_ms".into(), json!(resets_at_ms));
        }
        match self.write(outcome, Value::Object(detail)).await {
            Ok(()) => error,
            Err(failure) => failure,
        }
    }

    async fn write(&mut self, outcome: Outcome, detail: Value) -> Result<(), ModelError> {
        self.written = true;
        let detail = detail.to_string();
        let record = self.record(&detail);
        self.router
            .audit
            .append(&record, outcome)
            .await
            .map(|_| ())
            .map_err(|e| {
                let failure = AuditFailure::new(self.router.audit.store_location(), &e.to_string());
                tracing::error!("{failure}");
                ModelError::AuditUnavailable(failure.to_string())
            })
    }

    fn record<'r>(&'r self, detail: &'r str) -> NewRecord<'r> {
        NewRecord {
            tenant: &self.identity.tenant,
            agent: &self.identity.agent,
            session: &self.identity.session,
            plugin: self.plugin,
            tool: self.tool,
            call_id: &self.identity.call_id,
            capability: "model",
            target: &self.alias,
            detail,
        }
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        if !self.written {
            let mut detail = self.base_detail("cancelled");
            detail.insert("served_by".into(), Value::Null);
            detail.insert(
                "error".into(),
                json!("the caller stopped waiting (its call ran out of time) before the model answered"),
            );
            // Nobody is left to wait for the commit or hand a failure to: queued, and a failure
            // is logged.
            self.written = true;
            let detail = Value::Object(detail).to_string();
            self.router
                .audit
                .append_detached(&self.record(&detail), Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status: u16, retry_after: Option<u64>) -> BackendFailure {
        BackendFailure::Server {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            message: String::new(),
        }
    }

    #[test]
    fn a_429_falls_back_at_once_when_it_can() {
        let limited = BackendFailure::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            message: String::new(),
        };
        assert_eq!(next_step(&limited, 1, true), Step::NextBackend);
        assert_eq!(
            next_step(&limited, 1, false),
            Step::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(next_step(&limited, 2, false), Step::NextBackend);
    }

    #[test]
    fn a_5xx_is_retried_once_honouring_retry_after() {
        assert_eq!(
            next_step(&server(503, Some(2)), 1, true),
            Step::RetryAfter(Duration::from_secs(2))
        );
        assert!(
            matches!(next_step(&server(500, None), 1, true), Step::RetryAfter(d) if d >= BASE_BACKOFF && d < BASE_BACKOFF * 2)
        );
        assert_eq!(next_step(&server(500, None), 2, true), Step::NextBackend);
    }

    #[test]
    fn a_wait_past_the_cap_skips_the_backend() {
        assert_eq!(
            next_step(&server(503, Some(3600)), 1, true),
            Step::NextBackend
        );
    }

    #[test]
    fn timeouts_move_on_and_refusals_give_up() {
        assert_eq!(
            next_step(&BackendFailure::Timeout(Duration::from_secs(1)), 1, true),
            Step::NextBackend
        );
        let rejected = BackendFailure::Rejected {
            status: 401,
            message: "bad key".into(),
        };
        assert_eq!(next_step(&rejected, 1, true), Step::GiveUp);
        assert_eq!(
            next_step(&BackendFailure::Malformed("x".into()), 1, true),
            Step::GiveUp
        );
    }
}
