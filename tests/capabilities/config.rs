//! The operator's config: `warden config check`, and how `warden call` uses it.
