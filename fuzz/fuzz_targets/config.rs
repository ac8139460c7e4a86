//! `warden.toml` text as an operator (or an attacker who can write it) might write it: parsing
//! and checking it never panics, whatever it holds.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use warden::config::WardenConfig;

fuzz_target!(|text: &str| {
    // A folder with nothing in it: the check may look for files and find none.
    let _ = WardenConfig::parse(text, Path::new("/nonexistent/warden-fuzz"));
});
