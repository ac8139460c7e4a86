//! Plugins: loading a component (checking what it is, compiling it through the cache, checking
//! its imports and exports), asking it for its tools, and calling them.
//!
//! A plugin is of one of two kinds: a component of the `tool-plugin` contract, which lists its
//! own tools, or a component that exports ordinary typed functions, each of which becomes a tool
//! with a schema derived from its WIT types ([`typed`]).
//!
//! Loading refuses, with a message that says what is wrong, anything that is not a component,
//! a component of another world, and a component importing what this host does not provide.

pub mod builtin;
mod call;
mod guest_errors;
pub mod inspect;
mod tools;
mod typed;

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

pub use tools::{
    MAX_DESCRIPTION_BYTES, MAX_SCHEMA_BYTES, MAX_TOOL_METADATA_BYTES, MAX_TOOL_NAME_BYTES,
    MAX_TOOLS, TOOL_NAME_RULE, Tool, check_tool_input, is_valid_tool_name,
};

use crate::bindings::ToolPluginPre;
use crate::capabilities::{self, CallGrants, CallSite};
use crate::engine::WardenEngine;
use crate::error::{CallError, ErrorKind};
use crate::policy::Outcome;
use crate::sandbox::{CallIdentity, CallLimits, CallState};
use tokio_util::sync::CancellationToken;

/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The export every plugin must have.
pub const TOOL_EXPORT: &str = "warden:plugin/tool@0.1.0";

/// A loaded plugin: compiled, linked and ready for fresh-instance calls. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("tools", &self.inner.tools.len())
            .finish_non_exhaustive()
    }
}

struct PluginInner {
    name: String,
    sha256: String,
    engine: WardenEngine,
    kind: Kind,
    tools: Vec<Tool>,
    imports: Vec<String>,
}

/// How the host calls a plugin's tools.
enum Kind {
    /// A component of the contract: `call(ctx, tool, input)`.
    Contract(ToolPluginPre<CallState>),
    /// A component of typed functions, one per tool.
    Typed(typed::TypedPlugin),
}

/// A component's imports and exports, read without running it.
#[derive(Debug, Clone)]
pub struct ComponentShape {
    /// Every import, by full name.
    pub imports: Vec<String>,
    /// Every export, by full name.
    pub exports: Vec<String>,
}

impl Plugin {
    /// Loads the component at `path`, named after the file, listing its tools under the
    /// default limits.
    pub async fn load(engine: &WardenEngine, path: &Path) -> Result<Plugin, CallError> {
        Self::load_with_limits(engine, path, &CallLimits::default()).await
    }

    /// Loads the component at `path`, named after the file; its `list-tools` runs under
    /// `limits`, as its calls will.
    pub async fn load_with_limits(
        engine: &WardenEngine,
        path: &Path,
        limits: &CallLimits,
    ) -> Result<Plugin, CallError> {
        let bytes = read_plugin_file(path)?;
        Self::from_bytes_with_limits(engine, &plugin_name(path), &bytes, None, limits, |_| {}).await
    }

    /// Loads a component from its bytes. `on_compile` is told the plugin's size when a compile
    /// the cache could not spare is still running after a second
    /// ([`crate::engine::SLOW_COMPILE`]), so a front end can say why it waits.
    pub async fn from_bytes(
        engine: &WardenEngine,
        name: &str,
        bytes: &[u8],
        on_compile: impl FnOnce(usize),
    ) -> Result<Plugin, CallError> {
        Self::from_pinned_bytes(engine, name, bytes, None, on_compile).await
    }

    /// As [`Plugin::from_bytes`], but with `pin` (the file's path and its pinned sha256) the
    /// bytes are refused before anything is compiled or run unless their sha256 matches.
    pub async fn from_pinned_bytes(
        engine: &WardenEngine,
        name: &str,
        bytes: &[u8],
        pin: Option<(&Path, &str)>,
        on_compile: impl FnOnce(usize),
    ) -> Result<Plugin, CallError> {
        Self::from_bytes_with_limits(engine, name, bytes, pin, &CallLimits::default(), on_compile)
            .await
    }

    /// As [`Plugin::from_pinned_bytes`], with the plugin's `list-tools` run under `limits`, the
    /// limits its calls will run with: a plugin cannot spend more listing its tools than a call.
    pub async fn from_bytes_with_limits(
        engine: &WardenEngine,
        name: &str,
        bytes: &[u8],
        pin: Option<(&Path, &str)>,
        limits: &CallLimits,
        on_compile: impl FnOnce(usize),
    ) -> Result<Plugin, CallError> {
        let sha256 = sha256_hex(bytes);
        if let Some((path, pin)) = pin {
            check_pin(name, path, &sha256, pin)?;
        }
        let component = compile(engine, name, bytes, &sha256, on_compile)?;
        Self::from_component(engine, name, sha256, &component, limits).await
    }

    /// Checks and links a compiled component, and asks it for its tools under `limits`.
    pub(crate) async fn from_component(
        engine: &WardenEngine,
        name: &str,
        sha256: String,
        component: &Component,
        limits: &CallLimits,
    ) -> Result<Plugin, CallError> {
        let shape = shape(engine, component);
        let typed = match check_exports(name, &shape) {
            Ok(()) => None,
            Err(refusal) => Some(typed_or(engine, name, component, &shape, refusal)?),
        };
        check_imports(name, &shape)?;
        let instance_pre = engine.linker().instantiate_pre(component).map_err(|e| {
            CallError::unusable(format!(
                "plugin `{name}` cannot be linked against this host: {e:#}"
            ))
        })?;
        let (kind, tools) = match typed {
            None => {
                let pre = ToolPluginPre::new(instance_pre).map_err(|e| {
                    CallError::unusable(format!(
                        "plugin `{name}` exports `{TOOL_EXPORT}` with a shape that does not match the contract: {e:#}"
                    ))
                })?;
                let tools = call::list_tools(engine, &pre, name, limits).await?;
                (Kind::Contract(pre), tools)
            }
            Some(mut found) => {
                // The specs go through the same caps and schema compilation as a `list-tools`.
                let tools = tools::tools_from_specs(name, std::mem::take(&mut found.specs))?;
                (Kind::Typed(found.link(instance_pre)), tools)
            }
        };
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: name.to_string(),
                sha256,
                engine: engine.clone(),
                kind,
                tools,
                imports: shape.imports,
            }),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The sha256 of the component file, in hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The tools the plugin offers.
    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    /// The interfaces the component imports: everything it could ever do.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// One tool by name.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.inner.tools.iter().find(|t| t.name == name)
    }

    /// Calls `tool` with a JSON `input` in a fresh instance, with nothing granted, and returns
    /// its JSON output. See [`Plugin::call_granted`].
    pub async fn call(
        &self,
        tool: &str,
        input: &str,
        identity: &CallIdentity,
        limits: &CallLimits,
    ) -> Result<String, CallError> {
        self.call_granted(
            tool,
            input,
            identity,
            limits,
            &CallGrants::none(&self.inner.name),
            &CancellationToken::new(),
        )
        .await
    }

    /// Calls `tool` with a JSON `input` in a fresh instance that may use what `grants` allow,
    /// and returns its JSON output. The call and its outcome go into the audit log, if the
    /// grants come with one.
    ///
    /// The input is checked against the size limit, parsed and validated against the tool's
    /// schema before any wasm runs.
    pub async fn call_granted(
        &self,
        tool: &str,
        input: &str,
        identity: &CallIdentity,
        limits: &CallLimits,
        grants: &CallGrants,
        cancel: &CancellationToken,
    ) -> Result<String, CallError> {
        // Dropping the call's future drops its instance: the guest yields at every epoch tick
        // (plugins/call.rs), so even a spinning one stops within a tick.
        let result = tokio::select! {
            biased;
            result = self.checked_call(tool, input, identity, limits, grants) => result,
            () = cancel.cancelled() => Err(CallError::new(
                ErrorKind::Cancelled,
                "the caller cancelled the call before it ended",
            )),
        };
        if grants.capabilities.is_none() {
            return result;
        }
        let (outcome, detail) = match &result {
            Ok(_) => (Outcome::Allowed, String::new()),
            Err(e) if e.kind() == ErrorKind::Denied => (Outcome::Denied, e.to_string()),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        let target = format!("{}/{tool}", self.inner.name);
        let site = CallSite {
            identity,
            plugin: &self.inner.name,
            tool,
        };
        // Fail closed: an output whose call record is not committed is withheld.
        grants
            .audit(&site, "call", &target, outcome, &detail)
            .await
            .map_err(|failure| CallError::unaudited(failure.to_string()))?;
        result
    }

    async fn checked_call(
        &self,
        tool: &str,
        input: &str,
        identity: &CallIdentity,
        limits: &CallLimits,
        grants: &CallGrants,
    ) -> Result<String, CallError> {
        let spec = self.checked_tool(tool)?;
        if input.len() > limits.input_bytes() {
            return Err(CallError::limit(
                crate::error::Limit::Input,
                format!(
                    "the input is {} bytes; the limit is {} KiB (raise it with --max-input-kb)",
                    input.len(),
                    limits.max_input_kb
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(input)
            .map_err(|e| CallError::invalid_input(format!("the input is not valid JSON: {e}")))?;
        spec.validate(&value)?;
        let invocation = match &self.inner.kind {
            Kind::Contract(pre) => call::Invocation::Contract(pre, input),
            Kind::Typed(plugin) => call::Invocation::Typed(plugin, plugin.prepare(tool, &value)?),
        };
        let output = call::invoke(&self.inner, tool, invocation, identity, limits, grants)
            .await
            .map_err(|e| blame_unhandled_tool(&self.inner.name, tool, e))?;
        spec.check_output(&self.inner.name, &output)?;
        Ok(output)
    }

    fn checked_tool(&self, tool: &str) -> Result<&Tool, CallError> {
        self.tool(tool)
            .ok_or_else(|| tools::unknown_tool(&self.inner.name, tool, &self.inner.tools))
    }
}

/// A plugin that lists `tool` and then answers a call of it with "unknown tool" has a bug: the
/// caller named a tool the plugin itself offered. That is the plugin's failure (exit 4), not the
/// caller's invalid input (exit 2), and the message says so.
fn blame_unhandled_tool(plugin: &str, tool: &str, error: CallError) -> CallError {
    if error.kind() != ErrorKind::InvalidInput || !rejects_tool_as_unknown(error.message(), tool) {
        return error;
    }
    // The plugin's own words, bounded: they are guest text.
    let answer: String = error.message().chars().take(200).collect();
    CallError::tool_failed(format!(
        "plugin `{plugin}` lists tool `{tool}` but its `call` does not handle it (it answered \
         {answer:?}): this is a bug in the plugin; make its `call` handle `{tool}`, or drop the \
         tool from what `list-tools` returns"
    ))
}

/// Whether a plugin's invalid-input message says that `tool` is not one of its tools: a phrase
/// such as "unknown tool" followed by that very name. A message that names some other unknown
/// tool (a tool whose input names tools, and which then lists what the plugin offers) is not one.
fn rejects_tool_as_unknown(message: &str, tool: &str) -> bool {
    const PHRASES: &[&str] = &[
        "unknown tool",
        "no such tool",
        "tool not found",
        "unsupported tool",
        "no tool named",
    ];
    let lower = message.to_ascii_lowercase();
    PHRASES.iter().any(|phrase| {
        lower.match_indices(phrase).any(|(at, _)| {
            let rest = message[at + phrase.len()..].trim_start_matches([' ', ':', '`', '\'', '"']);
            rest.strip_prefix(tool).is_some_and(|after| {
                !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
    })
}

/// Refuses plugin `name`, read from `path` with sha256 `actual`, unless that is its `pin`.
pub fn check_pin(name: &str, path: &Path, actual: &str, pin: &str) -> Result<(), CallError> {
    if pin.eq_ignore_ascii_case(actual) {
        return Ok(());
    }
    Err(CallError::unusable(format!(
        "plugin `{name}` is refused: `{}` has sha256 {actual}, but plugins.{name}.sha256 pins {pin}; \
         if the new file is trusted, update the pin (`warden plugin inspect` prints it)",
        path.display()
    )))
}

/// The default cap on a plugin file's size, in MiB: a componentize-py plugin (about 18 MB) fits
/// with room to spare.
pub const DEFAULT_MAX_PLUGIN_MB: u64 = 256;

/// Reads a component file, refusing it under the default size cap; see
/// [`read_plugin_file_within`].
pub fn read_plugin_file(path: &Path) -> Result<Vec<u8>, CallError> {
    read_plugin_file_within(path, DEFAULT_MAX_PLUGIN_MB << 20)
}

/// Reads a component file of at most `max_bytes`. The header is checked on the first 8 bytes,
/// and the size on the file's metadata, before the rest is read, so a file that is not a
/// component or is too big costs no memory. A file that cannot be read makes the plugin
/// unusable.
pub fn read_plugin_file_within(path: &Path, max_bytes: u64) -> Result<Vec<u8>, CallError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        CallError::unusable(format!("cannot read plugin file `{}`: {e}", path.display()))
    };
    // A plugin file is never reached through a symlink: a link planted where a plugin is
    // expected (say, by a plugin with a read-write grant on that folder) is refused.
    let file = crate::capabilities::files::open_no_follow(path).map_err(cannot)?;
    let mut header = Vec::with_capacity(8);
    (&file).take(8).read_to_end(&mut header).map_err(cannot)?;
    check_header(&plugin_name(path), &header)?;
    let too_big = |size: u64| {
        CallError::unusable(format!(
            "plugin file `{}` is {size} bytes, over the {} MiB cap on plugin files; if it is \
             trusted, raise the cap with --max-plugin-mb (or WARDEN_MAX_PLUGIN_MB)",
            path.display(),
            max_bytes >> 20
        ))
    };
    let size = file.metadata().map_err(cannot)?.len();
    if size > max_bytes {
        return Err(too_big(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    bytes.extend_from_slice(&header);
    // The file may grow after the size check: read no more than the cap allows.
    (&file)
        .take(max_bytes.saturating_sub(8).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The plugin name for a file: its stem, with `_` written as `-`.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "plugin".into())
}

/// The sha256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the header, then compiles through the engine's cache.
pub(crate) fn compile(
    engine: &WardenEngine,
    name: &str,
    bytes: &[u8],
    sha256: &str,
    on_compile: impl FnOnce(usize),
) -> Result<Component, CallError> {
    check_header(name, bytes)?;
    engine
        .compile(bytes, sha256, || on_compile(bytes.len()))
        .map_err(|e| CallError::unusable(format!("plugin `{name}`: {}", e.message())))
}

fn check_header(name: &str, bytes: &[u8]) -> Result<(), CallError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
    const COMPONENT_LAYER: &[u8] = &[0x0d, 0, 1, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(CallError::unusable(format!(
            "plugin `{name}` is not a WebAssembly file (it does not start with the `\\0asm` magic bytes)"
        )));
    }
    match &bytes[4..8] {
        v if v == COMPONENT_LAYER => Ok(()),
        v if v == CORE_VERSION => Err(CallError::unusable(format!(
            "plugin `{name}` is a core WebAssembly module, not a component; build it for the \
             wasm32-wasip2 target (or wrap it with `wasm-tools component new`) against the \
             `tool-plugin` world of warden:plugin@{CONTRACT_VERSION}"
        ))),
        other => Err(CallError::unusable(format!(
            "plugin `{name}` has an unknown WebAssembly version/layer {other:02x?}; this host reads \
             components of the component model (layer 1)"
        ))),
    }
}

/// Reads a compiled component's imports and exports.
pub(crate) fn shape(engine: &WardenEngine, component: &Component) -> ComponentShape {
    let ty = component.component_type();
    let engine = engine.engine();
    ComponentShape {
        imports: ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect(),
        exports: ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect(),
    }
}

fn check_exports(name: &str, shape: &ComponentShape) -> Result<(), CallError> {
    if shape.exports.iter().any(|e| e == TOOL_EXPORT) {
        return Ok(());
    }
    if let Some(other) = shape
        .exports
        .iter()
        .find(|e| e.starts_with("warden:plugin/tool@"))
    {
        return Err(CallError::unusable(format!(
            "plugin `{name}` was built against `{other}`, but this host supports warden:plugin@{CONTRACT_VERSION} \
             only; rebuild it against warden:plugin@{CONTRACT_VERSION}, or run it on a Warden that supports its version"
        )));
    }
    let found = if shape.exports.is_empty() {
        "nothing".to_string()
    } else {
        shape.exports.join(", ")
    };
    Err(CallError::unusable(format!(
        "plugin `{name}` does not export `{TOOL_EXPORT}` (it exports {found}); a Warden plugin is a \
         component of the `tool-plugin` world in wit/"
    )))
}

/// A component without the contract's export: served as typed functions unless it is a
/// component of a wrong contract version (`refusal`, kept as it is) or a `wasi:cli` command.
fn typed_or(
    engine: &WardenEngine,
    name: &str,
    component: &Component,
    shape: &ComponentShape,
    refusal: CallError,
) -> Result<typed::Discovered, CallError> {
    if shape
        .exports
        .iter()
        .any(|e| e.starts_with("warden:plugin/tool@"))
    {
        return Err(refusal);
    }
    if let Some(command) = typed::refuse_command(name, &shape.exports) {
        return Err(command);
    }
    typed::discover(engine.engine(), name, component, &shape.exports)
}

fn check_imports(name: &str, shape: &ComponentShape) -> Result<(), CallError> {
    let missing: Vec<&str> = shape
        .imports
        .iter()
        .map(String::as_str)
        .filter(|i| capabilities::provided(i).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CallError::unusable(format!(
        "plugin `{name}` imports {}, which this host does not provide; `warden plugin inspect` lists \
         what a plugin may import",
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_tool_answer_for_a_listed_tool_blames_the_plugin() {
        for answer in [
            "unknown tool `ghost`",
            "Unknown tool: ghost",
            "no such tool \"ghost\"",
            "tool not found: ghost",
        ] {
            let err = blame_unhandled_tool("p", "ghost", CallError::invalid_input(answer));
            assert_eq!(err.kind(), ErrorKind::ToolFailed, "{answer}");
            assert!(
                err.message()
                    .contains("plugin `p` lists tool `ghost` but its `call` does not handle it"),
                "{err}"
            );
        }
    }

    #[test]
    fn other_answers_are_left_as_they_are() {
        for (kind, answer) in [
            (ErrorKind::InvalidInput, "`pattern` is not a valid regex"),
            // About another tool: a tool whose input names tools may say so, and then list
            // what the plugin offers, this tool included.
            (ErrorKind::InvalidInput, "unknown tool `other`"),
            (
                ErrorKind::InvalidInput,
                "unknown tool `nope`; this plugin offers: `ghost`, `echo`",
            ),
            (ErrorKind::InvalidInput, "unknown tool `ghost-2`"),
            (ErrorKind::Denied, "unknown tool `ghost`"),
        ] {
            let err = blame_unhandled_tool("p", "ghost", CallError::new(kind, answer));
            assert_eq!(err.kind(), kind, "{answer}");
            assert_eq!(err.message(), answer);
        }
    }

    #[test]
    fn the_plugins_answer_is_quoted_bounded() {
        let answer = format!("unknown tool `ghost` {}", "x".repeat(100_000));
        let err = blame_unhandled_tool("p", "ghost", CallError::invalid_input(answer));
        assert!(err.message().len() < 1000, "{} bytes", err.message().len());
    }
}
