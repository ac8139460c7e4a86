//! MCP tests: written in this session.
