//! `[memory]`: the size limits of the `memory` capability. Both have defaults; the value limit
//! cannot exceed what the state store holds in one entry.

use serde::Deserialize;

use super::ConfigProblem;

/// One value's limit when `[memory] max_value_kb` is not set (64 KiB).
pub const DEFAULT_MAX_VALUE_KB: u64 = 64;
/// One namespace's limit when `[memory] max_namespace_mb` is not set (16 MiB).
pub const DEFAULT_MAX_NAMESPACE_MB: u64 = 16;
/// The largest `max_value_kb`: the state store's hard bound on one value
/// (`crate::state::memory::MAX_VALUE_BYTES`, 256 KiB; a test keeps the two equal).
pub const HARD_MAX_VALUE_KB: u64 = 256;
/// The largest `max_namespace_mb` (1 TiB): beyond any store's reach, and far from overflow.
pub const HARD_MAX_NAMESPACE_MB: u64 = 1 << 20;

/// `[memory]`: how big one value and one namespace may grow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// The largest value one `put` may write, in KiB of JSON text (default 64, at most 256).
    pub max_value_kb: Option<u64>,
    /// The most one namespace may hold (keys plus values of its entries), in MiB (default 16).
    pub max_namespace_mb: Option<u64>,
}

impl MemoryConfig {
    /// The value limit in bytes.
    pub fn max_value_bytes(&self) -> u64 {
        self.max_value_kb
            .unwrap_or(DEFAULT_MAX_VALUE_KB)
            .min(HARD_MAX_VALUE_KB)
            * 1024
    }

    /// The namespace limit in bytes.
    pub fn max_namespace_bytes(&self) -> u64 {
        self.max_namespace_mb
            .unwrap_or(DEFAULT_MAX_NAMESPACE_MB)
            .min(HARD_MAX_NAMESPACE_MB)
            << 20
    }

    /// Reports limits that are zero or past what the store can hold.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if let Some(kb) = self.max_value_kb
            && !(1..=HARD_MAX_VALUE_KB).contains(&kb)
        {
            problems.push(ConfigProblem {
                key: "memory.max_value_kb".into(),
                message: format!(
                    "is {kb}; write 1 to {HARD_MAX_VALUE_KB} (KiB): the state store holds at \
                     most {HARD_MAX_VALUE_KB} KiB in one value, and a bigger value belongs in a \
                     data source"
                ),
            });
        }
        if let Some(mb) = self.max_namespace_mb
            && !(1..=HARD_MAX_NAMESPACE_MB).contains(&mb)
        {
            problems.push(ConfigProblem {
                key: "memory.max_namespace_mb".into(),
                message: format!("is {mb}; write 1 to {HARD_MAX_NAMESPACE_MB} (MiB)"),
            });
        }
        if let (Some(kb), Some(mb)) = (self.max_value_kb, self.max_namespace_mb)
            && kb > mb.saturating_mul(1024)
        {
            problems.push(ConfigProblem {
                key: "memory.max_value_kb".into(),
                message: format!(
                    "is {kb} KiB, more than the whole namespace may hold (max_namespace_mb = \
                     {mb}); lower it or raise max_namespace_mb"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &MemoryConfig) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn the_defaults_are_64_kib_and_16_mib() {
        let config = MemoryConfig::default();
        assert_eq!(config.max_value_bytes(), 64 * 1024);
        assert_eq!(config.max_namespace_bytes(), 16 << 20);
        assert!(problems(&config).is_empty());
    }

    #[test]
    fn a_value_limit_past_the_stores_is_a_problem_at_its_key() {
        let config = MemoryConfig {
            max_value_kb: Some(HARD_MAX_VALUE_KB + 1),
            max_namespace_mb: None,
        };
        let found = problems(&config);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "memory.max_value_kb");
        assert!(found[0].message.contains("256"), "{}", found[0].message);
        // Never more than the store's bound, even unchecked.
        assert_eq!(config.max_value_bytes(), HARD_MAX_VALUE_KB * 1024);
    }

    #[test]
    fn zero_limits_are_problems() {
        let config = MemoryConfig {
            max_value_kb: Some(0),
            max_namespace_mb: Some(0),
        };
        let keys: Vec<String> = problems(&config).into_iter().map(|p| p.key).collect();
        assert!(
            keys.contains(&"memory.max_value_kb".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"memory.max_namespace_mb".to_string()),
            "{keys:?}"
        );
    }
}
