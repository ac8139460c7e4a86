//! Test plugin: `recurse` recurses without bound with 16 KiB frames. Rust keeps such frames on
//! its own stack in linear memory (1 MiB by default), so that stack overflows long before the
//! wasm stack does, and the guest traps with an out-of-bounds memory access rather than the
//! host's stack limit. The host must still say what happened and how to raise that stack.

use std::hint::black_box;

use warden_sdk::Empty;
use warden_sdk::prelude::*;

const FRAME: usize = 16 * 1024;

#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64) -> u64 {
    let mut frame = [0u8; FRAME];
    frame[(depth as usize) % FRAME] = depth as u8;
    let frame = black_box(&mut frame);
    let below = descend(black_box(depth.wrapping_add(1)));
    black_box(u64::from(frame[0]) ^ below)
}

fn recurse(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    black_box(descend(black_box(0)));
    Ok(Empty {})
}

fn tools() -> Tools {
    Tools::new().tool(
        "recurse",
        "Recurses with large frames until the plugin's own stack in linear memory runs out.",
        recurse,
    )
}

warden_sdk::export_plugin!(tools);
