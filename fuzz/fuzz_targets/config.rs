//! `warden.toml` text as an operator (or an attacker who can write it) might write it: parsing
//! and checking it never panics, whatever it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = warden::capabilities::check::check_text(text);
});
