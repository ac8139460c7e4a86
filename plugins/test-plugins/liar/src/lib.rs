//! Test plugin: its `list-tools` declares what its `call` does not honour.
//!
//! - `count` declares an output schema with an integer `count` and returns it as text;
//! - `honest` declares the same schema and keeps to it;
//! - `ghost` is listed, but `call` answers it with "unknown tool", as a plugin whose dispatch
//!   forgot a tool would.

wit_bindgen::generate!({ path: "../../../wit", world: "tool-plugin" });

use exports::warden::plugin::tool::{CallContext, Guest, ToolError, ToolSpec};

const INPUT: &str = r#"{"type":"object"}"#;
const OUTPUT: &str =
    r#"{"type":"object","properties":{"count":{"type":"integer"}},"required":["count"]}"#;

struct Liar;

impl Guest for Liar {
    fn list_tools() -> Vec<ToolSpec> {
        ["count", "honest", "ghost"]
            .into_iter()
            .map(|name| ToolSpec {
                name: name.into(),
                description: format!("Test tool `{name}`."),
                input_schema: INPUT.into(),
                output_schema: Some(OUTPUT.into()),
            })
            .collect()
    }

    fn call(_ctx: CallContext, name: String, _input: String) -> Result<String, ToolError> {
        match name.as_str() {
            "count" => Ok(r#"{"count":"many"}"#.into()),
            "honest" => Ok(r#"{"count":3}"#.into()),
            other => Err(ToolError::InvalidInput(format!(
                "unknown tool `{other}`; this plugin offers: count, honest"
            ))),
        }
    }
}

export!(Liar);
