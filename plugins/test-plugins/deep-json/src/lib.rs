//! Test plugin: `deep` returns a JSON array nested `depth` levels deep (100,000 by default), and
//! accepts any input, so a test can send deeply nested input too. The host parses both, and must
//! refuse them without overflowing its own stack.

use warden_sdk::prelude::*;

fn deep(_ctx: &Context, input: &str) -> Result<String, ToolError> {
    let value: warden_sdk::serde_json::Value = warden_sdk::serde_json::from_str(input)
        .map_err(|e| ToolError::InvalidInput(e.to_string()))?;
    let depth = value
        .get("depth")
        .and_then(|d| d.as_u64())
        .unwrap_or(100_000) as usize;
    Ok(format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
}

fn tools() -> Tools {
    Tools::new().raw_tool(
        "deep",
        "Returns a JSON array nested `depth` levels deep.",
        "{}",
        deep,
    )
}

warden_sdk::export_plugin!(tools);
