//! Prometheus metrics: one process-wide registry, the few functions the host calls to record,
//! and [`render`] for `GET /metrics`.
//!
//! What is recorded, and where:
//!
//! - `warden_tool_call_duration_seconds{plugin,tool,outcome}`: every tool call, in
//!   [`WardenHost::call`](crate::host::WardenHost::call), the one call path of every front end;
//! - `warden_model_call_duration_seconds{alias,outcome}`: every attempt at a model backend, in
//!   the [`ModelRouter`](crate::models::ModelRouter), labelled with the alias whose backend was
//!   tried;
//! - `warden_model_tokens_total{alias,agent,direction}`: the tokens of every answered model
//!   call (the figure quotas count), by the alias that served it;
//! - `warden_denials_total{capability}`: every denied audit record, counted by
//!   [`AuditLog`](crate::policy::AuditLog) as it is appended, so each denial counts once;
//! - `warden_sessions_active`, `warden_tasks_running`, `warden_task_steps_total`: set by the
//!   front ends and the agent loop through [`session_active`], [`task_started`] /
//!   [`task_ended`] (or [`running_task`]) and [`task_steps`].
//!
//! Label values can come from callers, so no label set grows from their input: a plugin or tool
//! the host does not serve is recorded as [`UNKNOWN`], a capability outside the known set as
//! `other`, and every value is cut to [`MAX_LABEL_BYTES`]. Recording takes no allocation beyond
//! the tool-call label lookup and constructs no error.
//!
//! ```
//! warden::metrics::task_steps(1);
//! assert!(warden::metrics::render().contains("warden_task_steps_total"));
//! ```

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ErrorKind;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label value of a plugin or tool the host does not serve.
pub const UNKNOWN: &str = "(unknown)";

/// The longest label value kept; a longer one is cut at a character boundary.
pub const MAX_LABEL_BYTES: usize = 64;

/// Bucket bounds of a tool call, in seconds: 10 µs (a cached pure call) to 30 s (a call at a
/// raised time limit).
const TOOL_CALL_BUCKETS: [f64; 20] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of one model backend attempt, in seconds: 10 ms to the default 60 s timeout
/// and past it.
const MODEL_CALL_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The capabilities the audit log records; a denial of anything else counts as `other`.
const CAPABILITIES: [&str; 7] = ["call", "dir", "sql", "http", "model", "memory", "other"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolCallLabels {
    plugin: String,
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelCallLabels {
    alias: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    alias: String,
    agent: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    capability: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The registry and a handle to each metric in it.
struct Metrics {
    registry: Registry,
    tool_calls: HistogramFamily<ToolCallLabels>,
    model_calls: HistogramFamily<ModelCallLabels>,
    model_tokens: Family<TokenLabels, Counter>,
    /// One counter per entry of [`CAPABILITIES`], made up front: a denial takes no lookup.
    denials: [Counter; CAPABILITIES.len()],
    sessions_active: Gauge,
    tasks_running: Gauge,
    task_steps: Counter,
}

fn tool_call_histogram() -> Histogram {
    Histogram::new(TOOL_CALL_BUCKETS)
}

fn model_call_histogram() -> Histogram {
    Histogram::new(MODEL_CALL_BUCKETS)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let tool_calls: HistogramFamily<ToolCallLabels> =
            Family::new_with_constructor(tool_call_histogram);
        registry.register_with_unit(
            "tool_call_duration",
            "Tool calls through the host, by plugin, tool and outcome (ok or the error kind)",
            Unit::Seconds,
            tool_calls.clone(),
        );
        let model_calls: HistogramFamily<ModelCallLabels> =
            Family::new_with_constructor(model_call_histogram);
        registry.register_with_unit(
            "model_call_duration",
            "Attempts at a model backend, by the alias tried and outcome (ok or the failure)",
            Unit::Seconds,
            model_calls.clone(),
        );
        let model_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "model_tokens",
            "Tokens of answered model calls (what quotas count), by serving alias, agent and \
             direction",
            model_tokens.clone(),
        );
        let denial_family = Family::<CapabilityLabels, Counter>::default();
        registry.register(
            "denials",
            "Denied capability uses and tool calls, by capability, as the audit log records them",
            denial_family.clone(),
        );
        let denials = CAPABILITIES
            .map(|capability| denial_family.get_or_create_owned(&CapabilityLabels { capability }));
        let sessions_active = Gauge::default();
        registry.register(
            "sessions_active",
            "Sessions whose lease this process holds for a running task",
            sessions_active.clone(),
        );
        let tasks_running = Gauge::default();
        registry.register(
            "tasks_running",
            "Agent tasks running in this process",
            tasks_running.clone(),
        );
        let task_steps = Counter::default();
        registry.register(
            "task_steps",
            "Steps taken by agent tasks",
            task_steps.clone(),
        );
        Metrics {
            registry,
            tool_calls,
            model_calls,
            model_tokens,
            denials,
            sessions_active,
            tasks_running,
            task_steps,
        }
    }

    fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; the encoder fails only on metric kinds not used here.
        if let Err(e) = encode(&mut text, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        text
    }

    fn tool_call(&self, plugin: &str, tool: &str, outcome: &'static str, elapsed: Duration) {
        let labels = ToolCallLabels {
            plugin: capped(plugin).to_owned(),
            tool: capped(tool).to_owned(),
            outcome,
        };
        self.tool_calls
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn denial(&self, capability: &str) {
        let index = CAPABILITIES
            .iter()
            .position(|c| *c == capability)
            .unwrap_or(CAPABILITIES.len() - 1);
        self.denials[index].inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The OpenMetrics text of every metric, for `GET /metrics` (served as [`CONTENT_TYPE`]).
pub fn render() -> String {
    METRICS.render()
}

/// Records one tool call that took `elapsed` and ended with `outcome`. The caller passes
/// [`UNKNOWN`] for a plugin or tool it does not serve.
pub fn tool_call(plugin: &str, tool: &str, outcome: Result<(), ErrorKind>, elapsed: Duration) {
    METRICS.tool_call(plugin, tool, outcome_word(outcome), elapsed);
}

/// Records one attempt at the backend of model alias `alias`: `failure` is `None` when it
/// answered, else the failure's kind word.
pub fn model_attempt(alias: &str, failure: Option<&'static str>, elapsed: Duration) {
    let labels = ModelCallLabels {
        alias: capped(alias).to_owned(),
        outcome: failure.unwrap_or("ok"),
    };
    METRICS
        .model_calls
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}

/// Adds the tokens of one answered model call, served by `alias` for `agent`.
pub fn model_tokens(alias: &str, agent: &str, input: u32, output: u32) {
    for (direction, tokens) in [("input", input), ("output", output)] {
        let labels = TokenLabels {
            alias: capped(alias).to_owned(),
            agent: capped(agent).to_owned(),
            direction,
        };
        METRICS
            .model_tokens
            .get_or_create(&labels)
            .inc_by(u64::from(tokens));
    }
}

/// Counts one denial of `capability` (`call`, `dir`, `sql`, `http`, `model`, `memory`; any
/// other counts as `other`). Called by the audit log for each denied record it appends, and
/// by nothing else, so a denial counts once.
pub fn denial(capability: &str) {
    METRICS.denial(capability);
}

/// Adds `delta` to the sessions this process holds: `1` when a task takes up its session's
/// lease, `-1` when it gives it back. (`warden_tasks_running` also counts tasks still waiting
/// for a busy session.)
pub fn session_active(delta: i64) {
    METRICS.sessions_active.inc_by(delta);
}

/// Counts an agent task as running; pair it with [`task_ended`], or use [`running_task`].
pub fn task_started() {
    METRICS.tasks_running.inc();
}

/// Counts an agent task, counted by [`task_started`], as no longer running, however it ended.
pub fn task_ended() {
    METRICS.tasks_running.dec();
}

/// Counts `n` more steps taken by agent tasks (a model turn or a tool call each).
pub fn task_steps(n: u64) {
    METRICS.task_steps.inc_by(n);
}

/// Counts a task as running until the returned guard is dropped: a task that returns early,
/// panics or is cancelled is still counted as ended.
pub fn running_task() -> RunningTask {
    task_started();
    RunningTask { _private: () }
}

/// A task counted in `warden_tasks_running` while it lives; see [`running_task`].
#[must_use = "the task counts as running only while the guard lives"]
#[derive(Debug)]
pub struct RunningTask {
    _private: (),
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        task_ended();
    }
}

/// The outcome label of a call: `ok`, or its error kind as the HTTP API names it.
fn outcome_word(outcome: Result<(), ErrorKind>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(kind) => kind_word(kind),
    }
}

/// An error kind as the HTTP API's `error.kind`, the metrics and MCP's `_meta` name it.
pub fn kind_word(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Denied => "denied",
        ErrorKind::ToolFailed => "tool_failed",
        ErrorKind::LimitExceeded(_) => "limit_exceeded",
        ErrorKind::Unusable => "unusable",
        ErrorKind::Config => "config",
        ErrorKind::Internal => "internal",
        ErrorKind::Busy => "busy",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Cancelled => "cancelled",
    }
}

/// `value` cut to at most [`MAX_LABEL_BYTES`], at a character boundary.
fn capped(value: &str) -> &str {
    &value[..value.floor_char_boundary(MAX_LABEL_BYTES)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::audit::NewRecord;
    use crate::policy::{AuditLog, Outcome};
    use crate::state::{StateStore, StateUrl};

    /// The value of the sample `name{labels}` in `text`, or 0 when it is absent.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().expect("a number"))
    }

    #[test]
    fn render_shows_a_recorded_tool_call() {
        let metrics = Metrics::new();
        metrics.tool_call("text-tools", "echo", "ok", Duration::from_micros(30));
        let text = metrics.render();
        let series = r#"{plugin="text-tools",tool="echo",outcome="ok"}"#;
        assert_eq!(
            sample(
                &text,
                &format!("warden_tool_call_duration_seconds_count{series}")
            ),
            1.0,
            "{text}"
        );
        // 30 µs falls in the 50 µs bucket and above, not in the 25 µs one.
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    "warden_tool_call_duration_seconds_bucket{{le=\"{le}\",plugin=\"text-tools\",tool=\"echo\",outcome=\"ok\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.000025"), 0.0, "{text}");
        assert_eq!(bucket("0.00005"), 1.0, "{text}");
        assert!(text.contains("# TYPE warden_tool_call_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn every_capability_shows_from_the_start_and_unknown_ones_share_one_series() {
        let metrics = Metrics::new();
        let text = metrics.render();
        for capability in CAPABILITIES {
            let series = format!("warden_denials_total{{capability=\"{capability}\"}}");
            assert_eq!(sample(&text, &series), 0.0, "{text}");
            assert!(text.contains(&series), "{text}");
        }
        metrics.denial("file-of-the-attacker");
        metrics.denial("another");
        let text = metrics.render();
        assert_eq!(
            sample(&text, r#"warden_denials_total{capability="other"}"#),
            2.0
        );
        assert!(!text.contains("attacker"), "{text}");
    }

    #[test]
    fn label_values_are_capped() {
        let long = "é".repeat(100);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_LABEL_BYTES && cut.len() >= MAX_LABEL_BYTES - 1);
        assert!(long.starts_with(cut));
        assert_eq!(capped("echo"), "echo");
    }

    #[test]
    fn the_outcome_is_ok_or_the_error_kind() {
        assert_eq!(outcome_word(Ok(())), "ok");
        assert_eq!(outcome_word(Err(ErrorKind::Denied)), "denied");
        assert_eq!(
            outcome_word(Err(ErrorKind::LimitExceeded(crate::error::Limit::Time))),
            "limit_exceeded"
        );
    }

    #[tokio::test]
    async fn a_denied_audit_record_counts_once_under_its_capability() {
        // The global registry, as the audit log records into it. No other unit test denies
        // `model` through the audit log, so the figure moves only by what this test appends.
        let dir = tempfile::tempdir().unwrap();
        let store =
            StateStore::open_blocking(&StateUrl::Sqlite(dir.path().join("s.db"))).expect("a store");
        let log = AuditLog::open(&store);
        let record = NewRecord {
            capability: "model",
            target: "fast",
            ..Default::default()
        };
        let denied = || sample(&render(), r#"warden_denials_total{capability="model"}"#);
        let before = denied();
        log.append(&record, Outcome::Denied)
            .await
            .expect("appended");
        assert_eq!(denied() - before, 1.0);
        log.append(&record, Outcome::Allowed)
            .await
            .expect("appended");
        log.append(&record, Outcome::Failed)
            .await
            .expect("appended");
        assert_eq!(denied() - before, 1.0);
        log.append_detached(&record, Outcome::Denied);
        assert_eq!(denied() - before, 2.0);
    }
}
