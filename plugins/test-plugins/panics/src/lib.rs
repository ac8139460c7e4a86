//! Test plugin: `panic` panics, which traps the instance; the host must fail that call only.

use warden_sdk::Empty;
use warden_sdk::prelude::*;

fn panic(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    panic!("deliberate panic from the panics test plugin");
}

fn tools() -> Tools {
    Tools::new().tool(
        "panic",
        "Panics. For testing that the host survives a trapping plugin.",
        panic,
    )
}

warden_sdk::export_plugin!(tools);
