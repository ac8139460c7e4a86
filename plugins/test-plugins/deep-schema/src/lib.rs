//! Test plugin, written against the contract directly: it lists a tool whose input schema is nested 5,000 levels deep (under the size cap), to test that the host parses it without overflowing its stack.

wit_bindgen::generate!({ world: "tool-plugin", path: "../../../wit" });

use exports::warden::plugin::tool::{CallContext, Guest, ToolError, ToolSpec};

struct Plugin;

impl Guest for Plugin {
    fn list_tools() -> Vec<ToolSpec> {
        let depth = 5_000;
        vec![ToolSpec {
            name: "deep".into(),
            description: "A tool with a deeply nested input schema.".into(),
            input_schema: format!("{}{{}}{}", r#"{"items":"#.repeat(depth), "}".repeat(depth)),
            output_schema: None,
        }]
    }

    fn call(_ctx: CallContext, name: String, _input: String) -> Result<String, ToolError> {
        Ok(format!("{{\"tool\":{name:?}}}"))
    }
}

export!(Plugin);
