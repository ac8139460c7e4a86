//! WIT-typed components as tools: a component that exports ordinary typed functions, instead of
//! `warden:plugin/tool`, is served too. Each exported function becomes a tool whose JSON Schema
//! is derived from its WIT types; calls convert JSON to WIT values and back.
//!
//! Tool names: a top-level function `f` is the tool `f`; a function `f` of an exported interface
//! `ns:pkg/iface@1.0.0` (or of an inline interface `iface`) is the tool `iface_f`. Two functions
//! with one tool name, or a name past 64 bytes, refuse the plugin.
//!
//! Exports in the `wasi:` namespace are interfaces the host calls in other worlds, not tools;
//! they are left out (and a `wasi:cli/run` command is refused as one), and so is
//! componentize-py's build-time hook `exports#init`.

mod convert;
mod schema;

use std::collections::HashMap;

use serde_json::Value;
use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Val};
use wasmtime::{AsContextMut, Store};

use super::{CONTRACT_VERSION, TOOL_EXPORT, is_valid_tool_name};
use crate::bindings::types::ToolSpec;
use crate::error::CallError;
use crate::sandbox::CallState;
use schema::{MAX_TYPE_DEPTH, Names};

/// The longest description the host writes for a typed tool.
const MAX_DESCRIPTION: usize = 2048;

/// One exported function served as a tool.
pub(super) struct TypedFunc {
    /// The tool's name.
    tool: String,
    /// Where the function sits in the component, for a fresh instance's lookup.
    export: ComponentExportIndex,
    params: Vec<(String, Type)>,
    result: Option<Type>,
}

/// A component of typed functions, linked and ready for fresh-instance calls.
pub(super) struct TypedPlugin {
    pub(super) pre: InstancePre<CallState>,
    funcs: Vec<TypedFunc>,
}

/// What discovery found: the functions, and their tool specs in the same order.
pub(super) struct Discovered {
    funcs: Vec<TypedFunc>,
    /// The specs, checked and compiled like a contract plugin's `list-tools`.
    pub(super) specs: Vec<ToolSpec>,
}

impl Discovered {
    /// Pairs the discovery with the linked component.
    pub(super) fn link(self, pre: InstancePre<CallState>) -> TypedPlugin {
        TypedPlugin {
            pre,
            funcs: self.funcs,
        }
    }
}

/// The interface's short name: `iface` of `ns:pkg/iface@1.0.0`, or the whole inline name.
fn short_name(export: &str) -> &str {
    let name = export.rsplit_once('/').map_or(export, |(_, n)| n);
    name.split_once('@').map_or(name, |(n, _)| n)
}

fn listed(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out: Vec<String> = items.iter().take(SHOWN).map(|e| format!("`{e}`")).collect();
    if items.len() > SHOWN {
        out.push(format!("and {} more", items.len() - SHOWN));
    }
    out.join(", ")
}

/// What Warden serves, for the refusals.
fn served() -> String {
    format!(
        "Warden serves a component that exports `{TOOL_EXPORT}` (the `tool-plugin` world of \
         warden:plugin@{CONTRACT_VERSION} in wit/) or ordinary typed functions, top-level or in an \
         exported interface, each of which becomes a tool"
    )
}

/// Refuses a component that is a `wasi:cli` command: it has nothing to offer as a tool.
pub(super) fn refuse_command(plugin: &str, exports: &[String]) -> Option<CallError> {
    let run = exports.iter().find(|e| e.starts_with("wasi:cli/run@"))?;
    Some(CallError::unusable(format!(
        "plugin `{plugin}` is a wasi:cli command (it exports `{run}`), not a tool plugin; it does \
         not export `{TOOL_EXPORT}`. {}",
        served()
    )))
}

/// Finds the typed functions a component exports, with their tool specs, or refuses the
/// component naming the function and the type that cannot be mapped.
pub(super) fn discover(
    engine: &Engine,
    plugin: &str,
    component: &Component,
    exports: &[String],
) -> Result<Discovered, CallError> {
    let ty = component.component_type();
    let mut names = Names::default();
    // (export, function name in it, function type)
    let mut found = Vec::new();
    for (export, item) in ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => found.push((None, export.to_string(), func)),
            ComponentItem::ComponentInstance(instance) if !export.starts_with("wasi:") => {
                for (name, inner) in instance.exports(engine) {
                    match inner.ty {
                        // componentize-py leaves its build-time hook `exports#init` in every
                        // component; calling it would re-initialise the interpreter.
                        ComponentItem::ComponentFunc(_)
                            if export == "exports" && name == "init" => {}
                        ComponentItem::ComponentFunc(func) => {
                            found.push((Some(export.to_string()), name.to_string(), func));
                        }
                        ComponentItem::Type(t) => names.add_type(name, t),
                        ComponentItem::Resource(r) => names.add_resource(name, r),
                        _ => {}
                    }
                }
            }
            ComponentItem::Type(t) => names.add_type(export, t),
            ComponentItem::Resource(r) => names.add_resource(export, r),
            _ => {}
        }
    }
    if found.is_empty() {
        let what = if exports.is_empty() {
            "it exports nothing".to_string()
        } else {
            format!(
                "it exports {}, with no function that is not a wasi: interface",
                listed(exports)
            )
        };
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` exports neither `{TOOL_EXPORT}` nor any function ({what}); {}",
            served()
        )));
    }

    let mut funcs = Vec::with_capacity(found.len());
    let mut specs = Vec::with_capacity(found.len());
    let mut by_tool: HashMap<String, String> = HashMap::new();
    for (interface, name, func) in found {
        let (tool, source) = match &interface {
            None => (name.clone(), format!("`{name}`")),
            Some(i) => (
                format!("{}_{name}", short_name(i)),
                format!("`{name}` of `{i}`"),
            ),
        };
        let refuse = |why: String| {
            CallError::unusable(format!(
                "plugin `{plugin}`: function {source} {why}; a typed tool takes and returns plain \
                 data (no resource, stream, future or error-context), nested at most \
                 {MAX_TYPE_DEPTH} levels"
            ))
        };
        if func.async_() {
            return Err(refuse("is async, which this host does not call".into()));
        }
        let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_string(), t)).collect();
        let result = func.results().next();
        let typed = params
            .iter()
            .map(|(n, t)| (Some(n.as_str()), t))
            .chain(result.iter().map(|t| (None, t)));
        for (param, t) in typed {
            let place = match param {
                Some(p) => format!("parameter `{p}`"),
                None => "its result".to_string(),
            };
            if schema::depth(t) > MAX_TYPE_DEPTH {
                return Err(refuse(format!(
                    "nests types more than {MAX_TYPE_DEPTH} levels deep in {place}"
                )));
            }
            if let Some((bad, what)) = schema::unmappable(t, &names) {
                let verb = if param.is_some() { "takes" } else { "returns" };
                let whole = schema::wit_text(t, &names);
                let within = if whole == bad {
                    String::new()
                } else {
                    format!(", of type `{whole}`")
                };
                return Err(refuse(format!(
                    "{verb} a `{bad}` {what} ({place}{within}), which cannot be passed as JSON"
                )));
            }
        }
        if !is_valid_tool_name(&tool) {
            let preview: String = tool.chars().take(80).collect();
            return Err(CallError::unusable(format!(
                "plugin `{plugin}`: function {source} would be the tool `{preview}` ({} bytes), \
                 which does not match {} (letters, digits, `_` and `-`, at most {} bytes); \
                 rename the function or its interface",
                tool.len(),
                super::TOOL_NAME_RULE,
                super::MAX_TOOL_NAME_BYTES
            )));
        }
        if let Some(other) = by_tool.get(&tool) {
            return Err(CallError::unusable(format!(
                "plugin `{plugin}`: functions {other} and {source} both map to the tool name \
                 `{tool}`; rename one of them"
            )));
        }
        by_tool.insert(tool.clone(), source.clone());
        let export = match &interface {
            None => component.get_export_index(None, name.as_str()),
            Some(i) => component
                .get_export_index(None, i.as_str())
                .and_then(|parent| component.get_export_index(Some(&parent), name.as_str())),
        }
        .ok_or_else(|| {
            CallError::unusable(format!(
                "plugin `{plugin}`: function {source} is listed in the component's type but \
                 cannot be found among its exports"
            ))
        })?;
        specs.push(ToolSpec {
            name: tool.clone(),
            description: describe(&source, &name, &params, result.as_ref(), &names),
            input_schema: schema::input_schema(&params, &names).to_string(),
            output_schema: Some(schema::output_schema(result.as_ref(), &names).to_string()),
        });
        funcs.push(TypedFunc {
            tool,
            export,
            params,
            result,
        });
    }
    Ok(Discovered { funcs, specs })
}

/// `WIT function `f` of `ns:pkg/iface@1.0.0`: f(a: u32) -> result<point, string>`, and what an
/// `err` does.
fn describe(
    source: &str,
    name: &str,
    params: &[(String, Type)],
    result: Option<&Type>,
    names: &Names,
) -> String {
    let args: Vec<String> = params
        .iter()
        .map(|(n, t)| format!("{n}: {}", schema::wit_text(t, names)))
        .collect();
    let mut text = format!("WIT function {source}: {name}({})", args.join(", "));
    if let Some(result) = result {
        text.push_str(" -> ");
        text.push_str(&schema::wit_text(result, names));
        if matches!(result, Type::Result(_)) {
            text.push_str(". The output is the `ok` value; an `err` fails the call");
        }
    }
    if text.len() > MAX_DESCRIPTION {
        text.truncate(text.floor_char_boundary(MAX_DESCRIPTION));
        text.push('…');
    }
    text
}

/// What a call hands the guest: the function and its converted arguments.
pub(super) struct TypedCall<'a> {
    func: &'a TypedFunc,
    args: Vec<Val>,
}

/// The longest rendering of an `err` value in a message.
const MAX_ERROR_TEXT: usize = 2000;

impl TypedPlugin {
    /// Converts a validated JSON input into the arguments of `tool`, before any wasm runs.
    pub(super) fn prepare(&self, tool: &str, input: &Value) -> Result<TypedCall<'_>, CallError> {
        let func = self
            .funcs
            .iter()
            .find(|f| f.tool == tool)
            .ok_or_else(|| CallError::invalid_input(format!("unknown tool `{tool}`")))?;
        let args = convert::args(&func.params, input).map_err(|e| {
            CallError::invalid_input(format!(
                "the input does not match the parameters of tool `{tool}`: {e}"
            ))
        })?;
        Ok(TypedCall { func, args })
    }

    /// Instantiates the component in `store` and calls the function. The outer error is
    /// wasmtime's (a trap, a limit); the inner one is the tool's own answer (an `err` result, a
    /// value with no JSON form).
    pub(super) async fn call(
        &self,
        mut store: &mut Store<CallState>,
        call: TypedCall<'_>,
    ) -> wasmtime::Result<Result<String, CallError>> {
        let instance = self.pre.instantiate_async(store.as_context_mut()).await?;
        let Some(func) = instance.get_func(store.as_context_mut(), call.func.export) else {
            wasmtime::bail!("the function of tool `{}` is not exported", call.func.tool);
        };
        let mut results = vec![Val::Bool(false); usize::from(call.func.result.is_some())];
        func.call_async(&mut store, &call.args, &mut results)
            .await?;
        // wasmtime 48 runs the function's post-return itself (`post_return_async` is a no-op).
        Ok(render(call.func, results.pop()))
    }
}

/// The output JSON of a result: the `ok` value of a `result`, the value itself otherwise.
fn render(func: &TypedFunc, result: Option<Val>) -> Result<String, CallError> {
    let bad = |e: String| CallError::tool_failed(e);
    let value = match (result, &func.result) {
        (None, _) => Value::Null,
        (Some(Val::Result(Ok(ok))), Some(Type::Result(_))) => match ok {
            Some(v) => convert::to_json(&v).map_err(bad)?,
            None => Value::Null,
        },
        (Some(Val::Result(Err(err))), Some(Type::Result(_))) => {
            let text = match err.as_deref() {
                None => "no detail".to_string(),
                Some(Val::String(s)) => s.clone(),
                Some(v) => convert::to_json(v).map_err(bad)?.to_string(),
            };
            let cut = text.floor_char_boundary(MAX_ERROR_TEXT);
            let more = if cut < text.len() { "…" } else { "" };
            return Err(CallError::tool_failed(format!(
                "tool `{}` returned an error: {}{more}",
                func.tool,
                &text[..cut]
            )));
        }
        (Some(v), _) => convert::to_json(&v).map_err(bad)?,
    };
    Ok(value.to_string())
}

#[cfg(test)]
mod tests;
