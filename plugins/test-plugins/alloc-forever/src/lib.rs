//! Test plugin: `alloc` allocates and writes 1 MiB chunks and keeps them all, so only the host's
//! memory limit can stop it.

use std::hint::black_box;

use warden_sdk::Empty;
use warden_sdk::prelude::*;

const CHUNK: usize = 1 << 20;

fn alloc(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page, so the memory is really used, not just reserved.
        let chunk = vec![0xA5u8; CHUNK];
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

fn tools() -> Tools {
    Tools::new().tool(
        "alloc",
        "Allocates memory until it runs out. For testing the host's memory limit.",
        alloc,
    )
}

warden_sdk::export_plugin!(tools);
