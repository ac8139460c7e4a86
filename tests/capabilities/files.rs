//! Directory sources: preopens, and what the sandbox refuses.
