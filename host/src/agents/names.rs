//! The names the model sees for an agent's tools. Both providers accept tool names matching
//! `^[a-zA-Z0-9_-]{1,64}$`, while Warden names a tool `plugin/tool`; each tool gets a model name
//! that maps back to exactly one `(plugin, tool)`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::plugins::is_valid_tool_name;

/// Joins plugin and tool in a model name: a plugin name may hold `-` and `_`, but rarely two
/// underscores, so the readable form is also the unambiguous one in practice; a collision
/// falls back to the hashed form.
const SEPARATOR: &str = "__";

/// The longest model name the providers accept.
const MAX_MODEL_NAME: usize = 64;

/// Hex digits of the hash a sanitised name ends with.
const HASH_DIGITS: usize = 10;

/// One tool as the model is offered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTool {
    /// The name the model calls it by.
    pub model_name: String,
    /// The plugin's name in the config.
    pub plugin: String,
    /// The tool's name in the plugin.
    pub tool: String,
}

/// The model names of one agent's tools, both ways.
#[derive(Debug, Clone, Default)]
pub struct ToolNames {
    by_model_name: BTreeMap<String, (String, String)>,
}

impl ToolNames {
    /// Names every `(plugin, tool)` in `tools`, in order. The readable `plugin__tool` is used
    /// when it is a valid name that no earlier tool took; otherwise a sanitised name ending in
    /// a hash of `plugin/tool`, so the same tool set always gets the same names.
    pub fn assign<'a>(
        tools: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (ToolNames, Vec<OfferedTool>) {
        let mut names = ToolNames::default();
        let mut offered = Vec::new();
        for (plugin, tool) in tools {
            let readable = format!("{plugin}{SEPARATOR}{tool}");
            let model_name =
                if is_valid_tool_name(&readable) && !names.by_model_name.contains_key(&readable) {
                    readable
                } else {
                    hashed_name(plugin, tool)
                };
            if names.by_model_name.contains_key(&model_name) {
                // The same (plugin, tool) twice: offered once.
                continue;
            }
            names
                .by_model_name
                .insert(model_name.clone(), (plugin.to_string(), tool.to_string()));
            offered.push(OfferedTool {
                model_name,
                plugin: plugin.to_string(),
                tool: tool.to_string(),
            });
        }
        (names, offered)
    }

    /// The `(plugin, tool)` a model name stands for.
    pub fn resolve(&self, model_name: &str) -> Option<(&str, &str)> {
        self.by_model_name
            .get(model_name)
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }
}

/// `plugin__tool` with every character outside `[a-zA-Z0-9_-]` replaced by `_`, cut so that
/// `_` and the hash fit in 64 characters.
fn hashed_name(plugin: &str, tool: &str) -> String {
    let digest = Sha256::digest(format!("{plugin}/{tool}").as_bytes());
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_DIGITS)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let room = MAX_MODEL_NAME - HASH_DIGITS - 1;
    let mut stem: String = format!("{plugin}{SEPARATOR}{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(room)
        .collect();
    stem.push('_');
    stem.push_str(&hash);
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_names_map_back_to_their_tool() {
        let (names, offered) = ToolNames::assign([("text-tools", "echo"), ("sql", "query")]);
        assert_eq!(offered[0].model_name, "text-tools__echo");
        assert_eq!(names.resolve("sql__query"), Some(("sql", "query")));
        assert_eq!(names.resolve("sql/query"), None);
    }

    #[test]
    fn names_that_would_collide_or_not_fit_are_hashed_and_stay_valid() {
        let long = "p".repeat(70);
        let (names, offered) = ToolNames::assign([
            ("a__b", "c"),
            ("a", "b__c"),
            (long.as_str(), "t"),
            ("dé", "x"),
        ]);
        assert_eq!(offered.len(), 4);
        let unique: std::collections::BTreeSet<_> =
            offered.iter().map(|o| o.model_name.as_str()).collect();
        assert_eq!(unique.len(), 4, "{offered:?}");
        for o in &offered {
            assert!(is_valid_tool_name(&o.model_name), "{}", o.model_name);
            assert_eq!(
                names.resolve(&o.model_name),
                Some((o.plugin.as_str(), o.tool.as_str()))
            );
        }
        assert_eq!(offered[0].model_name, "a__b__c");
        assert_ne!(offered[1].model_name, "a__b__c");
    }

    #[test]
    fn the_same_tools_always_get_the_same_names() {
        let tools = [("a__b", "c"), ("a", "b__c"), ("x.y", "z")];
        let (_, first) = ToolNames::assign(tools);
        let (_, second) = ToolNames::assign(tools);
        assert_eq!(first, second);
    }
}
