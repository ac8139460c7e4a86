//! `[sources.NAME]` as it loads. Each kind is its own type with only its own keys, and serde
//! alone would say "unknown field" about a key of another kind, at the source and not at the
//! key. So before serde reads a source, this says what an operator needs: the key that does not
//! apply to the source's kind, and that it must go; the key the kind needs, and what it holds.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::ConfigProblem;
use super::model::{
    DirSourceConfig, HttpSourceConfig, PostgresSourceConfig, SourceConfig, SourceKind,
    SqliteSourceConfig,
};

/// Every kind, in the order `kind = "…"` lists them.
const KINDS: [SourceKind; 4] = [
    SourceKind::Dir,
    SourceKind::Sqlite,
    SourceKind::Postgres,
    SourceKind::Http,
];

/// The keys a source of `kind` takes, read from its type so the list cannot drift from it.
fn keys_of(kind: SourceKind) -> &'static [&'static str] {
    match kind {
        SourceKind::Dir => struct_fields::<DirSourceConfig>(),
        SourceKind::Sqlite => struct_fields::<SqliteSourceConfig>(),
        SourceKind::Postgres => struct_fields::<PostgresSourceConfig>(),
        SourceKind::Http => struct_fields::<HttpSourceConfig>(),
    }
}

/// The key a kind cannot do without, and what the operator writes there.
fn required(kind: SourceKind) -> Option<(&'static str, &'static str)> {
    match kind {
        SourceKind::Dir => Some(("path", "a dir source needs `path`, the directory to share")),
        SourceKind::Sqlite => Some(("path", "a sqlite source needs `path`, the database file")),
        SourceKind::Postgres => Some((
            "url_env",
            "a postgres source needs `url_env`, the environment variable that holds its URL \
             (secrets never go in the file)",
        )),
        SourceKind::Http => None,
    }
}

/// Reads one source at `key`. Keys of another kind and a missing required key are reported
/// here, each at its own key; the rest (types, unknown keys, an unknown kind) by serde.
pub(super) fn source(
    key: &str,
    value: &toml::Value,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SourceConfig> {
    let kind = value
        .get("kind")
        .and_then(toml::Value::as_str)
        .and_then(|k| KINDS.into_iter().find(|kind| kind.name() == k));
    let (Some(kind), Some(table)) = (kind, value.as_table()) else {
        // No table, no kind or an unknown one: serde says which, and lists the kinds.
        return deserialize(key, value.clone(), problems);
    };
    let own = keys_of(kind);
    let mut table = table.clone();
    let mut complete = true;
    let foreign: Vec<String> = table
        .keys()
        .filter(|k| *k != "kind" && !own.contains(&k.as_str()))
        .filter(|k| {
            KINDS
                .iter()
                .any(|other| keys_of(*other).contains(&k.as_str()))
        })
        .cloned()
        .collect();
    for field in foreign {
        table.remove(&field);
        problems.push(ConfigProblem {
            key: format!("{key}.{field}"),
            message: format!(
                "`{field}` does not apply to a {} source; remove it",
                kind.name()
            ),
        });
    }
    if let Some((field, message)) = required(kind)
        && !table.contains_key(field)
    {
        problems.push(ConfigProblem {
            key: format!("{key}.{field}"),
            message: message.into(),
        });
        complete = false;
    }
    // A source missing its required key is not read further: serde's "missing field" would
    // only repeat the problem just reported.
    if !complete {
        return None;
    }
    deserialize(key, toml::Value::Table(table), problems)
}

fn deserialize(
    key: &str,
    value: toml::Value,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SourceConfig> {
    match value.try_into::<SourceConfig>() {
        Ok(source) => Some(source),
        Err(e) => {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message: e.to_string().trim().to_string(),
            });
            None
        }
    }
}

/// The field names serde's derive gives a struct: its `Deserialize` hands them to
/// `deserialize_struct`, where this deserializer keeps them and stops.
fn struct_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields read")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<SourceConfig>, Vec<String>) {
        let value: toml::Value = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let source = source("sources.s", &value, &mut problems);
        (source, problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn each_kind_knows_its_keys() {
        assert_eq!(keys_of(SourceKind::Dir), ["path"]);
        assert!(keys_of(SourceKind::Postgres).contains(&"pool_size"));
        assert!(keys_of(SourceKind::Http).contains(&"allow_private_addresses"));
        assert!(!keys_of(SourceKind::Sqlite).contains(&"url_env"));
    }

    #[test]
    fn a_key_of_another_kind_is_named_with_the_fix_and_the_rest_still_loads() {
        let (source, problems) =
            read("kind = \"dir\"\npath = \"x\"\nurl_env = \"X\"\nallow = []\n");
        assert_eq!(
            problems,
            [
                "sources.s.allow: `allow` does not apply to a dir source; remove it",
                "sources.s.url_env: `url_env` does not apply to a dir source; remove it",
            ]
        );
        assert!(matches!(source, Some(SourceConfig::Dir(_))));
    }

    #[test]
    fn a_missing_required_key_is_named_once_with_what_it_holds() {
        let (source, problems) = read("kind = \"postgres\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("sources.s.url_env: a postgres source needs `url_env`"));
        assert!(source.is_none());
    }

    #[test]
    fn unknown_keys_and_kinds_are_left_to_serde() {
        let (_, problems) = read("kind = \"dir\"\npath = \"x\"\ncolour = \"blue\"\n");
        assert!(
            problems.len() == 1 && problems[0].contains("colour"),
            "{problems:?}"
        );
        let (_, problems) = read("kind = \"ftp\"\n");
        assert!(
            problems.len() == 1 && problems[0].contains("ftp") && problems[0].contains("http"),
            "{problems:?}"
        );
        let (_, problems) = read("path = \"x\"\n");
        assert!(
            problems.len() == 1 && problems[0].contains("kind"),
            "{problems:?}"
        );
    }
}
