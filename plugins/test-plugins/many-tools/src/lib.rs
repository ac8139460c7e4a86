//! Test plugin, written against the contract directly: it lists 100,000 tools, each small and valid, to test the host's cap on the tool count and the time loading takes.

wit_bindgen::generate!({ world: "tool-plugin", path: "../../../wit" });

use exports::warden::plugin::tool::{CallContext, Guest, ToolError, ToolSpec};

struct Plugin;

impl Guest for Plugin {
    fn list_tools() -> Vec<ToolSpec> {
        (0..100_000)
            .map(|i| ToolSpec {
                name: format!("tool-{i}"),
                description: format!("Tool number {i}."),
                input_schema: r#"{"type":"object"}"#.into(),
                output_schema: None,
            })
            .collect()
    }

    fn call(_ctx: CallContext, name: String, _input: String) -> Result<String, ToolError> {
        Ok(format!("{{\"tool\":{name:?}}}"))
    }
}

export!(Plugin);
