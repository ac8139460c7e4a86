//! Test plugin: `recurse` recurses without bound, so only the host's wasm stack limit can stop
//! it. The recursive call is not in tail position and its operands pass through `black_box`, so
//! the optimiser can turn it neither into a loop nor into nothing.

use std::hint::black_box;

use warden_sdk::Empty;
use warden_sdk::prelude::*;

#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64) -> u64 {
    let below = descend(black_box(depth.wrapping_add(1)));
    black_box(below ^ depth)
}

fn recurse(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    black_box(descend(black_box(0)));
    Ok(Empty {})
}

fn tools() -> Tools {
    Tools::new().tool(
        "recurse",
        "Recurses until the stack runs out. For testing the host's stack limit.",
        recurse,
    )
}

warden_sdk::export_plugin!(tools);
