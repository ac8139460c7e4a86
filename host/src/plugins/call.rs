//! One call in a fresh instance: a new store with its limits, instantiation from the
//! `InstancePre`, the typed call, and the translation of whatever happened into a [`CallError`].

use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::typed::{TypedCall, TypedPlugin};
use super::{PluginInner, Tool, tools};
use crate::bindings::{CallContext, ToolError, ToolPluginPre};
use crate::capabilities::CallGrants;
use crate::engine::WardenEngine;
use crate::error::{CallError, ErrorKind, Limit};
use crate::sandbox::{CallIdentity, CallLimits, CallState, MAX_OUTPUT_KB};

/// Extra wall time past the epoch deadline before the host gives up on a call that is waiting
/// in host code (where epochs do not interrupt).
const HOST_WAIT_GRACE: Duration = Duration::from_millis(100);

/// What `list-tools` may hand the host: the metadata caps, plus the lifted records themselves.
const LIST_TOOLS_FUEL: usize = tools::MAX_TOOL_METADATA_BYTES
    + tools::MAX_TOOLS * (std::mem::size_of::<crate::bindings::types::ToolSpec>() + 64);

/// wasmtime's error when a guest hands the host more bytes in one go than the store's hostcall
/// fuel allows; its type is private, so it is known by its message.
fn hostcall_fuel_exhausted(e: &wasmtime::Error) -> bool {
    e.chain()
        .any(|cause| cause.to_string().contains("fuel allocated for hostcalls"))
}

async fn new_store(
    engine: &WardenEngine,
    plugin: &str,
    tool: &str,
    identity: CallIdentity,
    limits: &CallLimits,
    grants: CallGrants,
) -> Store<CallState> {
    let mut store = Store::new(
        engine.engine(),
        CallState::new(plugin, tool, identity, limits, grants).await,
    );
    store.limiter(|state| &mut state.limiter);
    // At every epoch tick the guest yields to tokio, so a call whose future is dropped (a
    // cancelled MCP request, a client that went away) stops within a tick even while it spins
    // in wasm; at the deadline it traps with `Interrupt`, which is the time limit. The deadline
    // is wall-clock, so ticks the ticker caught up in a burst are not lost.
    let deadline = Instant::now() + Duration::from_millis(limits.timeout_ms);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Asks a freshly linked plugin for its tools, under the limits its calls run with: the same
/// time and memory, and a hostcall fuel that bounds what the host copies out of the guest to
/// the caps on plugin metadata. Its stdout and stderr are forwarded whatever happens.
pub(super) async fn list_tools(
    engine: &WardenEngine,
    pre: &ToolPluginPre<CallState>,
    plugin: &str,
    limits: &CallLimits,
) -> Result<Vec<Tool>, CallError> {
    let mut store = new_store(
        engine,
        plugin,
        "",
        CallIdentity::default(),
        limits,
        CallGrants::none(plugin),
    )
    .await;
    store.set_hostcall_fuel(LIST_TOOLS_FUEL);
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
    forward_stdio(&store);
    let specs = match outcome {
        Ok(Ok(specs)) => specs,
        Ok(Err(e)) if hostcall_fuel_exhausted(&e) => {
            return Err(CallError::unusable(format!(
                "plugin `{plugin}` lists more tool metadata than this host takes; it takes {}",
                tools::metadata_caps()
            )));
        }
        Ok(Err(e)) => {
            let cause = trap_error(e, &store, limits, engine);
            let message = format!(
                "plugin `{plugin}` failed while listing its tools: {}",
                cause.message()
            );
            // A limit stays a limit (exit 5, naming its flag); anything else makes the plugin
            // unusable.
            return Err(match cause.kind() {
                ErrorKind::LimitExceeded(limit) => CallError::limit(limit, message),
                _ => CallError::unusable(message),
            });
        }
        Err(_) => {
            return Err(CallError::limit(
                Limit::Time,
                format!(
                    "plugin `{plugin}` did not list its tools within its {} ms limit (raise it \
                     with --timeout-ms)",
                    limits.timeout_ms
                ),
            ));
        }
    };
    tools::tools_from_specs(plugin, specs)
}

/// What one call runs: the contract's `call` with the input text, or a typed function with its
/// converted arguments.
pub(super) enum Invocation<'a> {
    /// `call(ctx, tool, input)` of a contract plugin.
    Contract(&'a ToolPluginPre<CallState>, &'a str),
    /// A typed function.
    Typed(&'a TypedPlugin, TypedCall<'a>),
}

/// The tool's own refusal or failure, as the caller sees it.
fn tool_error(error: ToolError) -> CallError {
    match error {
        ToolError::InvalidInput(m) => CallError::invalid_input(m),
        ToolError::Denied(m) => CallError::new(ErrorKind::Denied, m),
        ToolError::Failed(m) => CallError::tool_failed(m),
    }
}

/// Instantiates a contract plugin in `store` and runs its `call`. The outer error is wasmtime's
/// (a trap, a limit); the inner one is the tool's own answer.
async fn call_contract(
    pre: &ToolPluginPre<CallState>,
    store: &mut Store<CallState>,
    identity: &CallIdentity,
    tool: &str,
    input: &str,
) -> wasmtime::Result<Result<String, CallError>> {
    let ctx = CallContext {
        tenant: identity.tenant.clone(),
        agent: identity.agent.clone(),
        session: identity.session.clone(),
        call_id: identity.call_id.clone(),
    };
    // The bindings take the contract's `json` alias as a `String`.
    let input = input.to_string();
    let instance = pre.instantiate_async(&mut *store).await?;
    let answer = instance
        .warden_plugin_tool()
        .call_call(&mut *store, &ctx, tool, &input)
        .await?;
    Ok(answer.map_err(tool_error))
}

/// Runs one validated call in a fresh instance.
pub(super) async fn invoke(
    target: &PluginInner,
    tool: &str,
    invocation: Invocation<'_>,
    identity: &CallIdentity,
    limits: &CallLimits,
    grants: &CallGrants,
) -> Result<String, CallError> {
    let (engine, plugin) = (&target.engine, target.name.as_str());
    let mut store = new_store(
        engine,
        plugin,
        tool,
        identity.clone(),
        limits,
        grants.clone(),
    )
    .await;
    store.set_hostcall_fuel(limits.hostcall_fuel());
    let outcome = tokio::time::timeout(
        Duration::from_millis(limits.timeout_ms) + HOST_WAIT_GRACE,
        async {
            match invocation {
                Invocation::Contract(pre, input) => {
                    call_contract(pre, &mut store, identity, tool, input).await
                }
                Invocation::Typed(typed, call) => typed.call(&mut store, call).await,
            }
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
        Ok(Err(e)) if hostcall_fuel_exhausted(&e) => Err(CallError::limit(
            Limit::Output,
            format!(
                "the plugin handed the host more than {} bytes at once, which is past its output \
                 limit of {} KiB; no output over that is copied out (raise it with \
                 --max-output-kb, up to {MAX_OUTPUT_KB})",
                limits.hostcall_fuel(),
                limits.max_output_kb
            ),
        )),
        Ok(Err(e)) => Err(trap_error(e, &store, limits, engine)),
        Ok(Ok(Err(refused))) => Err(refused),
        Ok(Ok(Ok(output))) => check_output(output, limits),
    };
    forward_stdio(&store);
    // The accounting runs at each host call; this last pass covers what happened after the
    // guest's last one (an HTTP audit failure on a request's own task, resources it made last).
    store.data_mut().account_host_resources();
    // Fail closed: a capability use the audit log could not record was refused, and whatever
    // the plugin made of that refusal is not handed back.
    if let Some(failure) = &store.data().audit_failure {
        return Err(CallError::unaudited(failure.to_string()));
    }
    if result.is_ok() && store.data().limiter.host_refused() {
        return Err(memory_limit_error(store.data(), limits));
    }
    result
}

/// The memory limit, saying which side went over it.
fn memory_limit_error(state: &CallState, limits: &CallLimits) -> CallError {
    let what = if state.limiter.host_refused() {
        format!(
            "the plugin made the host hold more than its memory limit allows: WASI and HTTP \
             resources (header fields, requests, bodies; at most {} at once) count against \
             the same budget as linear memory",
            crate::sandbox::MAX_RESOURCES
        )
    } else {
        "the plugin tried to grow its linear memory past the limit".to_string()
    };
    CallError::limit(
        Limit::Memory,
        format!(
            "{what}; the limit is {} MiB (raise it with --memory-mb)",
            limits.memory_mb
        ),
    )
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
    // serde_json skips ignored values without recursing, so depth is checked apart: whoever
    // reads the output next (an agent, a terminal, serde_json's default parser) stops at 128.
    if nested_deeper_than(&output, MAX_JSON_DEPTH) {
        return Err(CallError::tool_failed(format!(
            "the plugin returned JSON nested more than {MAX_JSON_DEPTH} levels deep, which the \
             host does not hand on"
        )));
    }
    Ok(output)
}

/// The deepest JSON the host takes from a plugin or hands on: serde_json's own recursion limit.
const MAX_JSON_DEPTH: usize = 128;

/// Whether valid JSON `text` nests arrays and objects deeper than `max`, found in one pass over
/// its bytes, without recursion or allocation.
fn nested_deeper_than(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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
            _ if state.limiter.memory_refused() => return memory_limit_error(state, limits),
            _ => {}
        }
    }
    if state.limiter.memory_refused() {
        return memory_limit_error(state, limits);
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
    if let Some(exception) = super::guest_errors::uncaught_exception(&stderr) {
        return CallError::tool_failed(format!("the plugin raised {exception}"));
    }
    match panic_message(&stderr) {
        Some(panic) => CallError::tool_failed(format!("the plugin panicked: {panic}")),
        None => CallError::tool_failed(format!("the plugin trapped: {}", trap_cause(&e))),
    }
}

/// Frames of one function in a trap's backtrace from which the trap is put down to recursion.
const RECURSION_FRAMES: usize = 8;

/// Names what stopped the guest. wasmtime's error starts with its backtrace header ("error
/// while executing at wasm backtrace:"), so its first line says nothing; the trap code or the
/// first other cause does. A Rust guest's own stack lives in its linear memory, below its data:
/// when deep recursion runs it out, the stack pointer wraps and the next store is out of bounds.
fn trap_cause(e: &wasmtime::Error) -> String {
    let Some(trap) = e.downcast_ref::<Trap>() else {
        let cause = e
            .chain()
            .map(|c| c.to_string())
            .find(|c| !c.starts_with("error while executing at wasm backtrace"))
            .unwrap_or_else(|| "an error with no message".into());
        return first_line(&cause).to_string();
    };
    let words = trap.to_string();
    let words = words
        .strip_prefix("wasm trap: ")
        .unwrap_or(&words)
        .to_string();
    if *trap != Trap::MemoryOutOfBounds {
        return words;
    }
    match recursion(e) {
        Some((function, frames)) => format!(
            "{words}, after {frames} nested calls of `{function}`: most likely the plugin's own \
             stack in its linear memory overflowed (this is not the host's --stack-kb). Recurse \
             less, or give the plugin a bigger stack when building it: for Rust, \
             `-C link-arg=-zstack-size=<bytes>` in RUSTFLAGS (the default is 1 MiB)"
        ),
        None => format!(
            "{words} (if the plugin recursed deeply, its own stack in linear memory may have \
             overflowed: for Rust, build it with `-C link-arg=-zstack-size=<bytes>`)"
        ),
    }
}

/// The function that fills most of the trap's backtrace, if it recursed.
fn recursion(e: &wasmtime::Error) -> Option<(String, usize)> {
    let backtrace = e.downcast_ref::<wasmtime::WasmBacktrace>()?;
    let mut counts: std::collections::HashMap<u32, (usize, Option<&str>)> =
        std::collections::HashMap::new();
    for frame in backtrace.frames() {
        let entry = counts
            .entry(frame.func_index())
            .or_insert((0, frame.func_name()));
        entry.0 += 1;
    }
    let (index, (frames, name)) = counts.into_iter().max_by_key(|(_, (n, _))| *n)?;
    if frames < RECURSION_FRAMES {
        return None;
    }
    let name = name.map_or_else(|| format!("function #{index}"), str::to_string);
    Some((name.chars().take(120).collect(), frames))
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
            // What the guest wrote cannot forge or hide a host log line.
            let line = crate::capabilities::log::escape_log_line(line);
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
    fn output_nested_past_the_depth_limit_is_refused() {
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        let err = check_output(deep, &CallLimits::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ToolFailed);
        assert!(err.message().contains("nested"), "{err}");
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        check_output(ok, &CallLimits::default()).unwrap();
        // Brackets inside strings, escaped quotes included, do not count.
        let text = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(500));
        check_output(text, &CallLimits::default()).unwrap();
    }

    #[test]
    fn a_trap_is_named_in_words_not_by_the_backtrace_header() {
        let e = wasmtime::Error::new(Trap::IntegerDivisionByZero)
            .context("error while executing at wasm backtrace:\n    0: 0x1 - f");
        assert_eq!(trap_cause(&e), "integer divide by zero");
        let e = wasmtime::Error::new(Trap::MemoryOutOfBounds);
        assert!(
            trap_cause(&e).contains("-zstack-size"),
            "{}",
            trap_cause(&e)
        );
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
