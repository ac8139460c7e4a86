//! A config's fingerprint: one digest per setting, keyed by its dotted path
//! (`agents.bot.tools`), so two hosts of a fleet can tell which settings differ without either
//! showing the other its values. Arrays are one setting each; tables are walked.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The key under which the audit key's fingerprint is kept (not a config path: the key itself
/// comes from the environment or a file, and hosts must share it for one audit chain).
pub const AUDIT_KEY_SETTING: &str = "audit key";

/// The fingerprint of the config text `text` (TOML), plus the audit key's, if any. Text that
/// does not parse is one setting, `(config)`: the host would not have started with it.
pub fn fingerprint(text: &str, audit_key: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match text.parse::<toml::Table>() {
        Ok(table) => walk("", &toml::Value::Table(table), &mut out),
        Err(_) => {
            out.insert("(config)".into(), digest(text.as_bytes()));
        }
    }
    out.insert(
        AUDIT_KEY_SETTING.into(),
        audit_key.unwrap_or("none").to_string(),
    );
    out
}

fn walk(path: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) if !table.is_empty() => {
            for (key, value) in table {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(&path, value, out);
            }
        }
        leaf => {
            // serde_json keeps the value's type in its text, so 1 and "1" differ.
            let text = serde_json::to_string(leaf).unwrap_or_else(|_| leaf.to_string());
            out.insert(path.to_string(), digest(text.as_bytes()));
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_has_its_own_digest_and_values_stay_hidden() {
        let a = fingerprint(
            "[state]\nsession_lease_ms = 1500\n[agents.bot]\ntools = [\"a/*\"]\n",
            Some("k1"),
        );
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            ["agents.bot.tools", "audit key", "state.session_lease_ms"]
        );
        assert!(
            a.values()
                .all(|v| !v.contains("1500") && !v.contains("a/*"))
        );
        let b = fingerprint(
            "[agents.bot]\ntools = [\"a/*\", \"b/*\"]\n[state]\nsession_lease_ms = 1500\n",
            Some("k1"),
        );
        assert_eq!(a["state.session_lease_ms"], b["state.session_lease_ms"]);
        assert_ne!(a["agents.bot.tools"], b["agents.bot.tools"]);
        let typed = fingerprint("[state]\nsession_lease_ms = \"1500\"\n", Some("k1"));
        assert_ne!(a["state.session_lease_ms"], typed["state.session_lease_ms"]);
        assert_ne!(a["audit key"], fingerprint("", None)["audit key"]);
    }
}
