//! The `text-tools` plugin: small, pure tools over text. It imports nothing from the host.

use regex::RegexBuilder;
use warden_sdk::prelude::*;

/// The most memory a compiled `regex-extract` pattern may take. Large enough for any pattern a
/// person writes; a pathological one (say `\w{1000}{1000}`) is refused instead of eating the
/// call's time and memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Input of `echo`.
#[derive(Deserialize, JsonSchema)]
struct EchoInput {
    /// The text to return, unchanged.
    text: String,
}

/// Output of `echo`.
#[derive(Serialize, JsonSchema)]
struct EchoOutput {
    /// The text that was given.
    text: String,
}

fn echo(_ctx: &Context, input: EchoInput) -> Result<EchoOutput, ToolError> {
    Ok(EchoOutput { text: input.text })
}

/// Input of `word-count`.
#[derive(Deserialize, JsonSchema)]
struct WordCountInput {
    /// The text whose words to count.
    text: String,
}

/// Output of `word-count`.
#[derive(Serialize, JsonSchema)]
struct WordCountOutput {
    /// How many words the text has: runs of characters separated by whitespace.
    words: u64,
}

fn word_count(_ctx: &Context, input: WordCountInput) -> Result<WordCountOutput, ToolError> {
    let words = input.text.split_whitespace().count() as u64;
    Ok(WordCountOutput { words })
}

/// Input of `regex-extract`.
#[derive(Deserialize, JsonSchema)]
struct RegexExtractInput {
    /// The text to search.
    text: String,
    /// A regular expression in Rust `regex` syntax (like RE2: no backreferences or look-around),
    /// e.g. `[A-Z]{2,}-\d+` for ticket ids. Flags go inline, e.g. `(?i)` for case-insensitive.
    pattern: String,
}

/// Output of `regex-extract`.
#[derive(Serialize, JsonSchema)]
struct RegexExtractOutput {
    /// Every non-overlapping match, in order of appearance; empty when nothing matched.
    matches: Vec<String>,
}

fn regex_extract(
    _ctx: &Context,
    input: RegexExtractInput,
) -> Result<RegexExtractOutput, ToolError> {
    let regex = RegexBuilder::new(&input.pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|error| ToolError::InvalidInput(format!("`pattern` is not usable: {error}")))?;
    let matches = regex
        .find_iter(&input.text)
        .map(|found| found.as_str().to_string())
        .collect();
    Ok(RegexExtractOutput { matches })
}

fn tools() -> Tools {
    Tools::new()
        .tool(
            "echo",
            "Returns the text it is given, unchanged. Useful to test that tool calls work.",
            echo,
        )
        .tool(
            "word-count",
            "Counts the words in a text, where a word is a run of non-whitespace characters.",
            word_count,
        )
        .tool(
            "regex-extract",
            "Finds every non-overlapping match of a regular expression in a text and returns \
             the matched substrings in order. Use it to pull ids, emails, dates or numbers out \
             of text.",
            regex_extract,
        )
}

warden_sdk::export_plugin!(tools);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, input: &str) -> Result<String, ToolError> {
        tools().call(&Context::default(), name, input)
    }

    #[test]
    fn echo_returns_its_text() {
        assert_eq!(
            call("echo", r#"{"text":"hi"}"#).unwrap(),
            r#"{"text":"hi"}"#
        );
    }

    #[test]
    fn word_count_counts_whitespace_separated_words() {
        let out = call("word-count", r#"{"text":"  one two\tthree\nfour  "}"#).unwrap();
        assert_eq!(out, r#"{"words":4}"#);
    }

    #[test]
    fn regex_extract_returns_all_matches() {
        let out = call(
            "regex-extract",
            r#"{"text":"see ABC-12 and XY-7, not a-1","pattern":"[A-Z]{2,}-\\d+"}"#,
        )
        .unwrap();
        assert_eq!(out, r#"{"matches":["ABC-12","XY-7"]}"#);
    }

    #[test]
    fn regex_extract_refuses_an_invalid_pattern() {
        let err = call("regex-extract", r#"{"text":"x","pattern":"("}"#).unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidInput(ref m) if m.contains("pattern")),
            "{err:?}"
        );
    }

    #[test]
    fn regex_extract_refuses_a_pathological_pattern() {
        let err = call(
            "regex-extract",
            r#"{"text":"x","pattern":"\\w{1000}{1000}"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidInput(ref m) if m.contains("size limit")),
            "{err:?}"
        );
    }
}
