//! Test plugin, written against the contract directly: it lists one tool whose description is 10 MB, to test the host's cap on descriptions.

wit_bindgen::generate!({ world: "tool-plugin", path: "../../../wit" });

use exports::warden::plugin::tool::{CallContext, Guest, ToolError, ToolSpec};

struct Plugin;

impl Guest for Plugin {
    fn list_tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "verbose".into(),
            description: "x".repeat(10_000_000),
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
        }]
    }

    fn call(_ctx: CallContext, name: String, _input: String) -> Result<String, ToolError> {
        Ok(format!("{{\"tool\":{name:?}}}"))
    }
}

export!(Plugin);
