//! One call in a fresh instance: a new store with its limits, instantiation from the
//! `InstancePre`, the typed call, and the translation of whatever happened into a [`CallError`].

use std::time::Duration;

use wasmtime::{Store, Trap};

use super::{PluginInner, Tool};
use crate::bindings::{CallContext, ToolError, ToolPluginPre};
use crate::capabilities::CallGrants;
use crate::engine::{EPOCH_TICK_MS, WardenEngine};
use crate::error::{CallError, ErrorKind, Limit};
use crate::sandbox::{CallIdentity, CallLimits, CallState};

/// Extra wall time past the epoch deadline before the host gives up on a call that is waiting
/// in host code (where epochs do not interrupt).
const HOST_WAIT_GRACE: Duration = Duration::from_millis(100);

fn new_store(
    engine: &WardenEngine,
    plugin: &str,
    tool: &str,
    identity: CallIdentity,
    limits: &CallLimits,
    grants: CallGrants,
) -> Store<CallState> {
    let mut store = Store::new(
        engine.engine(),
        CallState::new(plugin, tool, identity, limits, grants),
    );
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(limits.timeout_ms.div_ceil(EPOCH_TICK_MS) + 1);
    store.epoch_deadline_trap();
    store
}

/// Asks a freshly linked plugin for its tools.
pub(super) async fn list_tools(
    engine: &WardenEngine,
    pre: &ToolPluginPre<CallState>,
    plugin: &str,
) -> Result<Vec<Tool>, CallError> {
    let limits = CallLimits::default();
    let mut store = new_store(
        engine,
        plugin,
        "",
        CallIdentity::default(),
        &limits,
        CallGrants::none(plugin),
    );
    let outcome = tokio::time::timeout(
        Duration::from_millis(limits.timeout_ms) + HOST_WAIT_GRACE,
        async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .warden_plugin_tool()
                .call_list_tools(&mut store)
                .await
        },
    )
    .await;
    let specs = match outcome {
        Ok(Ok(specs)) => specs,
        Ok(Err(e)) => {
            let cause = trap_error(e, &store, &limits, engine);
            return Err(CallError::unusable(format!(
                "plugin `{plugin}` failed while listing its tools: {cause}"
            )));
        }
        Err(_) => {
            return Err(CallError::unusable(format!(
                "plugin `{plugin}` did not list its tools within {} ms",
                limits.timeout_ms
            )));
        }
    };
    forward_stdio(&store);
    if specs.is_empty() {
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` offers no tools"
        )));
    }
    let mut tools: Vec<Tool> = Vec::with_capacity(specs.len());
    for spec in specs {
        if tools.iter().any(|t| t.name == spec.name) {
            return Err(CallError::unusable(format!(
                "plugin `{plugin}` declares tool `{}` twice",
                spec.name
            )));
        }
        tools.push(Tool::from_spec(
            plugin,
            spec.name,
            spec.description,
            &spec.input_schema,
            spec.output_schema.as_deref(),
        )?);
    }
    Ok(tools)
}

/// Runs one validated call in a fresh instance.
pub(super) async fn invoke(
    target: &PluginInner,
    tool: &str,
    input: &str,
    identity: &CallIdentity,
    limits: &CallLimits,
    grants: &CallGrants,
) -> Result<String, CallError> {
    let (engine, pre, plugin) = (&target.engine, &target.pre, target.name.as_str());
    let ctx = CallContext {
        tenant: identity.tenant.clone(),
        agent: identity.agent.clone(),
        session: identity.session.clone(),
        call_id: identity.call_id.clone(),
    };
    let (tool_name, input_text) = (tool.to_string(), input.to_string());
    let mut store = new_store(
        engine,
        plugin,
        tool,
        identity.clone(),
        limits,
        grants.clone(),
    );
    let outcome = tokio::time::timeout(
        Duration::from_millis(limits.timeout_ms) + HOST_WAIT_GRACE,
        async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .warden_plugin_tool()
                .call_call(&mut store, &ctx, &tool_name, &input_text)
                .await
        },
    )
    .await;
    let result = match outcome {
        Err(_) => Err(CallError::limit(
            Limit::Time,
            format!(
                "the call ran past its {} ms limit while waiting on the host (raise it with --timeout-ms)",
                limits.timeout_ms
            ),
        )),
        Ok(Err(e)) => Err(trap_error(e, &store, limits, engine)),
        Ok(Ok(Err(tool_error))) => Err(match tool_error {
            ToolError::InvalidInput(m) => CallError::invalid_input(m),
            ToolError::Denied(m) => CallError::new(ErrorKind::Denied, m),
            ToolError::Failed(m) => CallError::tool_failed(m),
        }),
        Ok(Ok(Ok(output))) => check_output(output, limits),
    };
    forward_stdio(&store);
    // Fail closed: a capability use the audit log could not record was refused, and whatever
    // the plugin made of that refusal is not handed back.
    if let Some(failure) = &store.data().audit_failure {
        return Err(CallError::new(ErrorKind::Internal, failure.to_string()));
    }
    result
}

fn check_output(output: String, limits: &CallLimits) -> Result<String, CallError> {
    if output.len() > limits.output_bytes() {
        return Err(CallError::limit(
            Limit::Output,
            format!(
                "the tool returned {} bytes; the limit is {} KiB (raise it with --max-output-kb)",
                output.len(),
                limits.max_output_kb
            ),
        ));
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&output) {
        let preview: String = output.chars().take(80).collect();
        return Err(CallError::tool_failed(format!(
            "the plugin returned output that is not JSON ({e}): {preview:?}"
        )));
    }
    Ok(output)
}

/// Explains a call that ended in a wasmtime error: a limit, a trap, an exit, a host failure.
fn trap_error(
    e: wasmtime::Error,
    store: &Store<CallState>,
    limits: &CallLimits,
    engine: &WardenEngine,
) -> CallError {
    let state = store.data();
    if let Some(trap) = e.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => {
                return CallError::limit(
                    Limit::Time,
                    format!(
                        "the call ran past its {} ms limit (raise it with --timeout-ms)",
                        limits.timeout_ms
                    ),
                );
            }
            Trap::StackOverflow => {
                return CallError::limit(
                    Limit::Stack,
                    format!(
                        "the plugin overflowed its {} KiB wasm stack (raise it with --stack-kb)",
                        engine.stack_kb()
                    ),
                );
            }
            _ if state.limiter.memory_refused() => {
                return CallError::limit(
                    Limit::Memory,
                    format!(
                        "the plugin tried to grow past its {} MiB memory limit (raise it with --memory-mb)",
                        limits.memory_mb
                    ),
                );
            }
            _ => {}
        }
    }
    if state.limiter.memory_refused() {
        return CallError::limit(
            Limit::Memory,
            format!(
                "the plugin tried to grow past its {} MiB memory limit (raise it with --memory-mb)",
                limits.memory_mb
            ),
        );
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::tool_failed(format!(
            "the plugin exited with code {} instead of returning",
            exit.0
        ));
    }
    let message = format!("{e:#}");
    if message.contains("concurrent") && message.contains("limit") {
        return CallError::new(
            ErrorKind::Internal,
            format!("the host is running as many calls as its pool allows: {message}"),
        );
    }
    let (stderr, _) = state.stderr.text();
    match panic_message(&stderr) {
        Some(panic) => CallError::tool_failed(format!("the plugin panicked: {panic}")),
        None => CallError::tool_failed(format!("the plugin trapped: {}", first_line(&message))),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Rust guests print `panicked at FILE:LINE:COL:\nMESSAGE` to stderr before they abort.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at")?;
    let text: String = stderr[start..]
        .lines()
        .take_while(|line| !line.starts_with("note: run with"))
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    Some(text.chars().take(500).collect())
}

/// The guest's stdout and stderr go to the host log, under the `plugin` target.
fn forward_stdio(store: &Store<CallState>) {
    let state = store.data();
    for (stream, captured) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
        let (text, dropped) = captured.text();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "plugin", plugin = %state.plugin, tool = %state.tool, stream, "{line}");
        }
        if dropped > 0 {
            tracing::warn!(target: "plugin", plugin = %state.plugin, stream, "{dropped} more bytes were dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_rust_panic_message() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:5:5:\ndeliberate panic\nnote: run with ...";
        let msg = panic_message(stderr).unwrap();
        assert!(msg.contains("deliberate panic"), "{msg}");
        assert!(!msg.contains("RUST_BACKTRACE"), "{msg}");
    }

    #[test]
    fn output_that_is_not_json_is_a_tool_failure() {
        let err = check_output("not json".into(), &CallLimits::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ToolFailed);
    }

    #[test]
    fn output_past_the_limit_names_the_output_limit() {
        let limits = CallLimits {
            max_output_kb: 1,
            ..CallLimits::default()
        };
        let err = check_output(format!("\"{}\"", "x".repeat(2000)), &limits).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded(Limit::Output));
    }
}
