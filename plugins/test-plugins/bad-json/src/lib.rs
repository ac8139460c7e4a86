//! Test plugin: `bad-json` answers with text that is not JSON; the host must refuse it.

use warden_sdk::prelude::*;

/// What `bad-json` returns: unbalanced, unquoted, not JSON by any reading.
const NOT_JSON: &str = "this is not JSON {";

fn bad_json(_ctx: &Context, _input: &str) -> Result<String, ToolError> {
    Ok(NOT_JSON.to_string())
}

fn tools() -> Tools {
    Tools::new().raw_tool(
        "bad-json",
        "Returns text that is not JSON. For testing that the host checks outputs.",
        r#"{"type":"object"}"#,
        bad_json,
    )
}

warden_sdk::export_plugin!(tools);
