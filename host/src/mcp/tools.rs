//! An agent's tools as MCP lists them, and a Warden call's outcome as MCP returns it.
//!
//! Names are the agent loop's model names (`plugin__tool`, see [`ToolNames`]): valid MCP tool
//! names, one per `(plugin, tool)`, the same for the same tool set on every host. Schemas come
//! from the plugin, which is untrusted: they were size-checked and compiled when it loaded, and
//! here only an object schema is passed on where MCP requires one.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, ErrorData, JsonObject, MetaObject, Tool};
use serde_json::{Value, json};

use crate::agents::names::ToolNames;
use crate::error::{CallError, ErrorKind};
use crate::host::Generation;

/// The `_meta` key of the session a call ran in.
pub const META_SESSION: &str = "warden/session";
/// The `_meta` key of a call's id in the audit log.
pub const META_CALL_ID: &str = "warden/call_id";
/// The `_meta` key of a failed call's kind.
pub const META_ERROR: &str = "warden/error";

/// The tool a `tools/call` names, as the host service calls it.
#[derive(Debug, Clone)]
pub struct Called {
    /// The plugin's name in the config.
    pub plugin: String,
    /// The tool's name in the plugin.
    pub name: String,
    /// Whether the tool declared an object output schema, so its results carry
    /// `structuredContent`.
    pub structured: bool,
}

/// The tool `agent` may call by the MCP name `name`, or, when there is none, how many tools
/// `tools/list` shows it. Only names are compared: no schema is copied on the call path.
pub fn resolve(generation: &Generation, agent: &str, name: &str) -> Result<Called, usize> {
    let tools = generation.agent_tools(agent);
    let (names, _) = ToolNames::assign(tools.iter().map(|t| (t.plugin, t.tool.name.as_str())));
    let found = names.resolve(name).and_then(|(plugin, tool)| {
        tools
            .iter()
            .find(|t| t.plugin == plugin && t.tool.name == tool)
    });
    match found {
        Some(t) if takes_object(&t.tool.input_schema) => Ok(Called {
            plugin: t.plugin.to_string(),
            name: t.tool.name.clone(),
            structured: t.tool.output_schema.as_ref().is_some_and(takes_object),
        }),
        _ => Err(tools
            .iter()
            .filter(|t| takes_object(&t.tool.input_schema))
            .count()),
    }
}

/// The tools `agent` may call in `generation`, as `tools/list` shows them, in plugin and tool
/// order: also what a reload compares to decide whether to send
/// `notifications/tools/list_changed`.
///
/// A tool whose input schema does not describe an object cannot take MCP's `arguments` (an
/// object), so it is left out, with a warning naming it.
pub fn shown(generation: &Generation, agent: &str) -> Vec<Tool> {
    let tools = generation.agent_tools(agent);
    let (_, offered) = ToolNames::assign(tools.iter().map(|t| (t.plugin, t.tool.name.as_str())));
    let mut out = Vec::with_capacity(offered.len());
    for offer in offered {
        let Some(agent_tool) = tools
            .iter()
            .find(|t| t.plugin == offer.plugin && t.tool.name == offer.tool)
        else {
            continue;
        };
        let spec = agent_tool.tool;
        let Some(input) = object_schema(&spec.input_schema) else {
            tracing::warn!(
                "MCP does not list {}/{}: its input schema does not describe a JSON object, and \
                 MCP passes arguments as one",
                offer.plugin,
                offer.tool
            );
            continue;
        };
        let output = spec.output_schema.as_ref().and_then(object_schema);
        let mut tool = Tool::new(offer.model_name, spec.description.clone(), Arc::new(input))
            .with_title(format!("{}/{}", offer.plugin, offer.tool));
        if let Some(output) = output {
            tool = tool.with_raw_output_schema(Arc::new(output));
        }
        out.push(tool);
    }
    out
}

/// `schema` as a JSON object schema MCP accepts: an object with `"type": "object"`, or with no
/// `type` at all (which admits objects too; MCP wants it said, so it is added).
fn object_schema(schema: &Value) -> Option<JsonObject> {
    let Value::Object(map) = schema else {
        return None;
    };
    if !takes_object(schema) {
        return None;
    }
    let mut map = map.clone();
    map.entry("type").or_insert_with(|| Value::from("object"));
    Some(map)
}

/// Whether `schema` is one [`object_schema`] passes on.
fn takes_object(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => match map.get("type") {
            Some(Value::String(t)) => t == "object",
            None => true,
            Some(_) => false,
        },
        _ => false,
    }
}

/// The `_meta` every tools/call result carries.
fn meta(session: &str, call_id: &str) -> MetaObject {
    let mut map = JsonObject::new();
    map.insert(META_SESSION.into(), Value::from(session));
    map.insert(META_CALL_ID.into(), Value::from(call_id));
    MetaObject(map)
}

/// A call's output as a result: the JSON text as text content, and as `structuredContent`
/// when the tool declared an output schema and returned an object.
pub fn success(output: String, structured: bool, session: &str, call_id: &str) -> CallToolResult {
    let structured_content = if structured {
        match serde_json::from_str::<Value>(&output) {
            Ok(value @ Value::Object(_)) => Some(value),
            _ => None,
        }
    } else {
        None
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(output)]);
    result.structured_content = structured_content;
    result.meta = Some(meta(session, call_id));
    result
}

/// A failed call: an invalid input is the client's error (JSON-RPC -32602); everything else —
/// a denial, a limit, a failure of the tool or of the host — is a tool result with `isError`,
/// so the model reading it sees the message.
pub fn failure(
    error: &CallError,
    session: &str,
    call_id: &str,
) -> Result<CallToolResult, ErrorData> {
    if matches!(error.kind(), ErrorKind::InvalidInput)
        || error.kind() == ErrorKind::LimitExceeded(crate::error::Limit::Input)
    {
        return Err(ErrorData::invalid_params(
            error.message().to_string(),
            Some(json!({ META_CALL_ID: call_id })),
        ));
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(error.to_string())]);
    let mut meta = meta(session, call_id);
    meta.0.insert(
        META_ERROR.into(),
        Value::from(crate::metrics::kind_word(error.kind())),
    );
    result.meta = Some(meta);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_schemas_are_passed_on() {
        assert!(object_schema(&json!({"type": "object"})).is_some());
        let added = object_schema(&json!({"properties": {}})).unwrap();
        assert_eq!(added["type"], "object");
        assert!(object_schema(&json!({"type": "string"})).is_none());
        assert!(object_schema(&json!({"type": ["object", "null"]})).is_none());
        assert!(object_schema(&json!(true)).is_none());
    }

    #[test]
    fn structured_content_is_an_object_output_of_a_tool_that_declared_a_schema() {
        let r = success(r#"{"a":1}"#.into(), true, "s", "c");
        assert_eq!(r.structured_content, Some(json!({"a": 1})));
        assert_eq!(r.meta.unwrap().0[META_SESSION], "s");
        assert!(
            success(r#"{"a":1}"#.into(), false, "s", "c")
                .structured_content
                .is_none()
        );
        assert!(
            success("[1]".into(), true, "s", "c")
                .structured_content
                .is_none()
        );
    }

    #[test]
    fn only_invalid_input_is_a_protocol_error() {
        let invalid = CallError::invalid_input("bad");
        assert_eq!(
            failure(&invalid, "s", "c").unwrap_err().code,
            rmcp::model::ErrorCode::INVALID_PARAMS
        );
        for kind in [
            ErrorKind::Denied,
            ErrorKind::ToolFailed,
            ErrorKind::LimitExceeded(crate::error::Limit::Time),
            ErrorKind::Internal,
            ErrorKind::Cancelled,
        ] {
            let r = failure(&CallError::new(kind, "no"), "s", "c").unwrap();
            assert_eq!(r.is_error, Some(true));
            assert_eq!(
                r.meta.unwrap().0[META_ERROR],
                crate::metrics::kind_word(kind)
            );
        }
    }
}
