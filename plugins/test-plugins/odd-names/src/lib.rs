//! Test plugin: tool names at the edges of the rule `^[a-zA-Z0-9_-]{1,64}$` (uppercase, `_`, 64
//! characters), which the contract, the host and the SDK all accept.

use warden_sdk::Empty;
use warden_sdk::prelude::*;

/// 64 characters: the longest name the rule allows.
const LONGEST: &str = "a234567890123456789012345678901234567890123456789012345678901234";

fn noop(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    Ok(Empty {})
}

fn tools() -> Tools {
    Tools::new()
        .tool(
            "Get_Weather",
            "Does nothing; its name has uppercase and `_`.",
            noop,
        )
        .tool(LONGEST, "Does nothing; its name has 64 characters.", noop)
}

warden_sdk::export_plugin!(tools);
