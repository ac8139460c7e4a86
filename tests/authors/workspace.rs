//! The operator's side of the SQL tests: a `warden.toml` that configures a plugin, a SQLite
//! source `crm` at `crm.db`, and an agent `support` that may call the plugin's tools.

use std::path::Path;

/// The config text: plugin `name` at `component`, capped at `sql:crm:ro`, and agent `support`
/// with `grants` (a TOML array, e.g. `["crm:ro"]` or `[]`).
pub fn crm_config(name: &str, component: &Path, grants: &str) -> String {
    format!(
        r#"
        [plugins.{name}]
        path = "{}"
        max = ["sql:crm:ro"]
        [sources.crm]
        kind = "sqlite"
        path = "crm.db"
        [agents.support]
        tools = ["{name}/*"]
        grants = {grants}
        "#,
        component.display()
    )
}
