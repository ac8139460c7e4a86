//! Test plugin: its list-tools writes a line to stderr, grows its memory by 32 MiB and then sleeps
//! for 10 s, so that only the limits the host applies to listing can stop it.

use std::hint::black_box;
use std::time::Duration;

use warden_sdk::Empty;
use warden_sdk::prelude::*;

fn noop(_ctx: &Context, _input: Empty) -> Result<Empty, ToolError> {
    Ok(Empty {})
}

fn tools() -> Tools {
    eprintln!("slow-list: listing my tools, slowly");
    // A non-zero fill writes every page, so the memory is really used.
    let grown = vec![0xA5u8; 32 << 20];
    black_box(&grown);
    std::thread::sleep(Duration::from_secs(10));
    Tools::new().tool("noop", "Does nothing, after a slow listing.", noop)
}

warden_sdk::export_plugin!(tools);
