//! What a hostile plugin declares (a tool's name, description and input schema) and what a
//! caller sends it: the host's checks of both never panic and never overflow its stack.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &str, &str)| {
    let (name, description, schema, json) = input;
    let _ = warden::plugins::check_tool_input(name, description, schema, json);
});
