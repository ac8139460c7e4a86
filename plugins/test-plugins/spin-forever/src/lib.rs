//! Test plugin: `spin` never returns and never yields, so only the host's CPU time limit (the
//! epoch deadline) can stop it.

use std::hint::black_box;

use warden_sdk::Empty;
use warden_sdk::prelude::*;

fn spin(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn tools() -> Tools {
    Tools::new().tool(
        "spin",
        "Loops forever. For testing the host's time limit.",
        spin,
    )
}

warden_sdk::export_plugin!(tools);
