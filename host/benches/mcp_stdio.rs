//! The MCP stdio bench: written in this session.
fn main() {}
