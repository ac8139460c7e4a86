//! One tool of a plugin: its spec from `list-tools`, and the compiled validator of its input
//! schema, so that bad input is refused before any wasm runs.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;

use crate::bindings::types::ToolSpec;
use crate::error::CallError;

/// The rule every tool name follows, as the contract (`wit/types.wit`) and the Rust SDK state it:
/// what the model providers and MCP accept.
pub const TOOL_NAME_RULE: &str = "^[a-zA-Z0-9_-]{1,64}$";
/// The most tools one plugin may offer.
pub const MAX_TOOLS: usize = 1024;
/// The longest tool name, in bytes (part of [`TOOL_NAME_RULE`]).
pub const MAX_TOOL_NAME_BYTES: usize = 64;
/// The largest tool description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 16 * 1024;
/// The largest input or output schema of one tool, in bytes of JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The most bytes of names, descriptions and schemas one plugin may list, all tools together.
/// With [`MAX_TOOLS`] this bounds the host's work after `list-tools` (copying, parsing and
/// compiling schemas), which no time limit of the guest covers.
pub const MAX_TOOL_METADATA_BYTES: usize = 4 << 20;

/// The caps on plugin metadata, in words, for the messages that refuse a plugin over one.
pub(crate) fn metadata_caps() -> String {
    format!(
        "at most {MAX_TOOLS} tools, names matching {TOOL_NAME_RULE}, descriptions of at most {} \
         KiB, schemas of at most {} KiB each, and {} MiB of names, descriptions and schemas in all",
        MAX_DESCRIPTION_BYTES / 1024,
        MAX_SCHEMA_BYTES / 1024,
        MAX_TOOL_METADATA_BYTES >> 20
    )
}

/// Whether `name` follows [`TOOL_NAME_RULE`].
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks what a plugin's `list-tools` returned against the caps, in time linear in its size,
/// and compiles each tool's schema. Every check on sizes runs before anything is parsed.
pub(crate) fn tools_from_specs(plugin: &str, specs: Vec<ToolSpec>) -> Result<Vec<Tool>, CallError> {
    if specs.is_empty() {
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` offers no tools"
        )));
    }
    if specs.len() > MAX_TOOLS {
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` offers {} tools; this host takes at most {MAX_TOOLS} per plugin \
             (the caps on plugin metadata: {})",
            specs.len(),
            metadata_caps()
        )));
    }
    let total: usize = specs
        .iter()
        .map(|s| {
            s.name.len()
                + s.description.len()
                + s.input_schema.len()
                + s.output_schema.as_ref().map_or(0, String::len)
        })
        .sum();
    if total > MAX_TOOL_METADATA_BYTES {
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` lists {total} bytes of tool names, descriptions and schemas; this \
             host takes at most {} MiB (the caps on plugin metadata: {})",
            MAX_TOOL_METADATA_BYTES >> 20,
            metadata_caps()
        )));
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(specs.len());
    for spec in &specs {
        check_spec_sizes(plugin, spec)?;
        if !seen.insert(spec.name.as_str()) {
            return Err(CallError::unusable(format!(
                "plugin `{plugin}` declares tool `{}` twice",
                spec.name
            )));
        }
    }
    specs
        .into_iter()
        .map(|spec| {
            Tool::from_spec(
                plugin,
                spec.name,
                spec.description,
                &spec.input_schema,
                spec.output_schema.as_deref(),
            )
        })
        .collect()
}

fn check_spec_sizes(plugin: &str, spec: &ToolSpec) -> Result<(), CallError> {
    if !is_valid_tool_name(&spec.name) {
        // The name is the plugin's: show a bounded, escaped preview of it.
        let preview: String = spec.name.chars().take(MAX_TOOL_NAME_BYTES).collect();
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` declares a tool named {preview:?} ({} bytes), which does not match \
             {TOOL_NAME_RULE} (letters, digits, `_` and `-`, at most {MAX_TOOL_NAME_BYTES})",
            spec.name.len()
        )));
    }
    let name = &spec.name;
    if spec.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(CallError::unusable(format!(
            "plugin `{plugin}` declares tool `{name}` with a description of {} bytes; this host \
             takes at most {} KiB",
            spec.description.len(),
            MAX_DESCRIPTION_BYTES / 1024
        )));
    }
    for (which, schema) in [
        ("input", Some(&spec.input_schema)),
        ("output", spec.output_schema.as_ref()),
    ] {
        if let Some(schema) = schema
            && schema.len() > MAX_SCHEMA_BYTES
        {
            return Err(CallError::unusable(format!(
                "plugin `{plugin}` declares tool `{name}` with an {which} schema of {} bytes; \
                 this host takes at most {} KiB",
                schema.len(),
                MAX_SCHEMA_BYTES / 1024
            )));
        }
    }
    Ok(())
}

/// Checks a hostile tool spec (`name`, `description`, `input_schema` as JSON text) as a plugin's
/// `list-tools` would send it, then parses `input` and validates it against the schema, as a
/// call would. For fuzzing: whatever the texts, it returns an error and never panics or
/// overflows the stack.
pub fn check_tool_input(
    name: &str,
    description: &str,
    input_schema: &str,
    input: &str,
) -> Result<(), CallError> {
    let spec = ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        input_schema: input_schema.to_string(),
        output_schema: None,
    };
    let tool = tools_from_specs("fuzz", vec![spec])?.remove(0);
    let value: Value = serde_json::from_str(input)
        .map_err(|e| CallError::invalid_input(format!("the input is not valid JSON: {e}")))?;
    tool.validate(&value)
}

/// The error for a call of a tool the plugin does not offer: the count and a few close names,
/// never the whole list, which a plugin controls.
pub(crate) fn unknown_tool(plugin: &str, tool: &str, tools: &[Tool]) -> CallError {
    const SHOWN: usize = 5;
    let wanted = tool.to_ascii_lowercase();
    let mut close: Vec<(usize, &str)> = tools
        .iter()
        .map(|t| {
            (
                edit_distance(&wanted, &t.name.to_ascii_lowercase()),
                t.name.as_str(),
            )
        })
        .collect();
    close.sort();
    let names: Vec<String> = close
        .iter()
        .take(SHOWN)
        .map(|(_, name)| format!("`{name}`"))
        .collect();
    let shown: String = tool.chars().take(MAX_TOOL_NAME_BYTES).collect();
    let list = if tools.len() <= SHOWN {
        format!("it offers {}", names.join(", "))
    } else {
        format!(
            "the closest of its {} tools are {}; `warden plugin inspect` lists them all",
            tools.len(),
            names.join(", ")
        )
    };
    CallError::invalid_input(format!(
        "unknown tool {shown:?} in plugin `{plugin}`; {list}"
    ))
}

/// Levenshtein distance over bytes, with the two rows it needs; names are at most 64 bytes, and
/// the caller's input is cut to that before it gets here.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (
        &a.as_bytes()[..a.len().min(MAX_TOOL_NAME_BYTES)],
        &b.as_bytes()[..b.len().min(MAX_TOOL_NAME_BYTES)],
    );
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// A tool a plugin offers.
#[derive(Debug, Serialize)]
pub struct Tool {
    /// The tool's name, unique within the plugin.
    pub name: String,
    /// What the tool does.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output, if the plugin declared one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(skip)]
    validator: jsonschema::Validator,
    /// The compiled output schema: what a plugin returns is checked against what it declared.
    #[serde(skip)]
    output_validator: Option<jsonschema::Validator>,
}

impl Tool {
    /// Checks a spec from `list-tools` and compiles its input schema.
    pub(crate) fn from_spec(
        plugin: &str,
        name: String,
        description: String,
        input_schema: &str,
        output_schema: Option<&str>,
    ) -> Result<Tool, CallError> {
        let bad = |what: String| {
            CallError::unusable(format!(
                "plugin `{plugin}` declares tool `{name}` with {what}"
            ))
        };
        if !is_valid_tool_name(&name) {
            return Err(bad(format!("a name that does not match {TOOL_NAME_RULE}")));
        }
        let input_schema: Value = serde_json::from_str(input_schema)
            .map_err(|e| bad(format!("an input schema that is not JSON: {e}")))?;
        let validator = jsonschema::validator_for(&input_schema).map_err(|e| {
            bad(format!(
                "an input schema that is not a valid JSON Schema: {e}"
            ))
        })?;
        let output_schema: Option<Value> = output_schema
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad(format!("an output schema that is not JSON: {e}")))?;
        let output_validator = output_schema
            .as_ref()
            .map(jsonschema::validator_for)
            .transpose()
            .map_err(|e| {
                bad(format!(
                    "an output schema that is not a valid JSON Schema: {e}"
                ))
            })?;
        Ok(Tool {
            name,
            description,
            input_schema,
            output_schema,
            validator,
            output_validator,
        })
    }

    /// Checks what the tool returned (JSON text the host has already checked is JSON) against
    /// the output schema it declared. A mismatch is the plugin's fault: the tool failed, and the
    /// error names each offending field.
    pub fn check_output(&self, plugin: &str, output: &str) -> Result<(), CallError> {
        let Some(validator) = &self.output_validator else {
            return Ok(());
        };
        let value: Value = serde_json::from_str(output).map_err(|e| {
            CallError::tool_failed(format!("the plugin returned output that is not JSON: {e}"))
        })?;
        if validator.is_valid(&value) {
            return Ok(());
        }
        let problems = describe_errors(validator.iter_errors(&value), "the output");
        Err(CallError::tool_failed(format!(
            "plugin `{plugin}` returned output that does not match the output schema tool `{}` \
             declares: {problems}; the plugin must return what its schema says (or declare the \
             schema it really returns)",
            self.name
        )))
    }

    /// Validates an input against the tool's schema; the error names each offending field.
    pub fn validate(&self, input: &Value) -> Result<(), CallError> {
        if self.validator.is_valid(input) {
            return Ok(());
        }
        let problems = describe_errors(self.validator.iter_errors(input), "the input");
        Err(CallError::invalid_input(format!(
            "the input does not match the schema of tool `{}`: {problems}",
            self.name
        )))
    }
}

/// The first few schema violations, each with the field it is at; `whole` names the document
/// when the violation is at its root. A violation's text quotes the value, which may come from a
/// plugin, so each is cut short.
fn describe_errors<'a>(
    errors: impl Iterator<Item = jsonschema::ValidationError<'a>>,
    whole: &str,
) -> String {
    const MAX_PROBLEM_CHARS: usize = 300;
    errors
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            let at = if path.is_empty() {
                whole.to_string()
            } else {
                format!("field `{path}`")
            };
            let text: String = e.to_string().chars().take(MAX_PROBLEM_CHARS).collect();
            format!("{at}: {text}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn echo() -> Tool {
        let schema =
            r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#;
        Tool::from_spec("p", "echo".into(), "d".into(), schema, None).unwrap()
    }

    #[test]
    fn valid_input_passes() {
        echo().validate(&serde_json::json!({"text": "hi"})).unwrap();
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let err = echo()
            .validate(&serde_json::json!({"text": 5}))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("/text"), "{err}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = echo().validate(&serde_json::json!({})).unwrap_err();
        assert!(err.message().contains("text"), "{err}");
    }

    fn counter() -> Tool {
        let output = r#"{"type":"object","properties":{"count":{"type":"integer"},"items":{"type":"array","items":{"type":"string"}}},"required":["count"]}"#;
        Tool::from_spec("p", "counter".into(), "d".into(), "{}", Some(output)).unwrap()
    }

    #[test]
    fn output_that_keeps_to_the_declared_schema_passes() {
        counter()
            .check_output("p", r#"{"count":2,"items":["a"]}"#)
            .unwrap();
        // A tool with no output schema may return any JSON.
        echo().check_output("p", r#"[1,"x"]"#).unwrap();
    }

    #[test]
    fn output_that_breaks_the_declared_schema_is_a_tool_failure_naming_the_field() {
        let err = counter()
            .check_output("p", r#"{"count":"many"}"#)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ToolFailed);
        assert!(err.message().contains("field `/count`"), "{err}");
        assert!(err.message().contains("tool `counter`"), "{err}");
        let err = counter()
            .check_output("p", r#"{"count":1,"items":[1]}"#)
            .unwrap_err();
        assert!(err.message().contains("field `/items/0`"), "{err}");
        let err = counter().check_output("p", r#"{}"#).unwrap_err();
        assert!(err.message().contains("the output: "), "{err}");
        assert!(err.message().contains("count"), "{err}");
    }

    #[test]
    fn a_violation_quoting_a_huge_value_is_cut_short() {
        let huge = format!(r#"{{"count":"{}"}}"#, "x".repeat(1 << 20));
        let err = counter().check_output("p", &huge).unwrap_err();
        assert!(err.message().len() < 2000, "{} bytes", err.message().len());
    }

    #[test]
    fn an_output_schema_that_is_not_a_json_schema_makes_the_plugin_unusable() {
        let err =
            Tool::from_spec("p", "t".into(), "d".into(), "{}", Some(r#"{"type":7}"#)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unusable);
        assert!(err.message().contains("output schema"), "{err}");
    }

    #[test]
    fn a_schema_that_is_not_json_makes_the_plugin_unusable() {
        let err = Tool::from_spec("p", "t".into(), "d".into(), "{nope", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unusable);
    }

    fn spec(name: &str, description: &str, schema: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            input_schema: schema.into(),
            output_schema: None,
        }
    }

    fn small(i: usize) -> ToolSpec {
        spec(&format!("tool-{i}"), "d", "{}")
    }

    #[test]
    fn more_tools_than_the_cap_are_refused_naming_the_cap() {
        let specs: Vec<ToolSpec> = (0..=MAX_TOOLS).map(small).collect();
        let err = tools_from_specs("p", specs).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unusable);
        assert!(err.message().contains("1025 tools"), "{err}");
        assert!(err.message().contains("at most 1024"), "{err}");
        let specs: Vec<ToolSpec> = (0..MAX_TOOLS).map(small).collect();
        assert_eq!(tools_from_specs("p", specs).unwrap().len(), MAX_TOOLS);
    }

    #[test]
    fn a_duplicate_among_many_tools_is_found() {
        let mut specs: Vec<ToolSpec> = (0..MAX_TOOLS - 1).map(small).collect();
        specs.push(small(7));
        let err = tools_from_specs("p", specs).unwrap_err();
        assert!(err.message().contains("`tool-7` twice"), "{err}");
    }

    #[test]
    fn a_description_over_the_cap_is_refused_naming_the_cap() {
        let big = "x".repeat(MAX_DESCRIPTION_BYTES + 1);
        let err = tools_from_specs("p", vec![spec("t", &big, "{}")]).unwrap_err();
        assert!(
            err.message().contains("description of 16385 bytes"),
            "{err}"
        );
        assert!(err.message().contains("16 KiB"), "{err}");
        let fits = "x".repeat(MAX_DESCRIPTION_BYTES);
        tools_from_specs("p", vec![spec("t", &fits, "{}")]).unwrap();
    }

    #[test]
    fn a_schema_over_the_cap_is_refused_before_it_is_parsed() {
        // Not JSON at all: the size is what refuses it.
        let big = "x".repeat(MAX_SCHEMA_BYTES + 1);
        let err = tools_from_specs("p", vec![spec("t", "d", &big)]).unwrap_err();
        assert!(
            err.message().contains("input schema of 65537 bytes"),
            "{err}"
        );
        let mut with_output = spec("t", "d", "{}");
        with_output.output_schema = Some(big);
        let err = tools_from_specs("p", vec![with_output]).unwrap_err();
        assert!(err.message().contains("output schema"), "{err}");
    }

    #[test]
    fn metadata_over_the_total_cap_is_refused() {
        let schema = format!(r#"{{"description":"{}"}}"#, "x".repeat(60 * 1024));
        let specs: Vec<ToolSpec> = (0..80)
            .map(|i| spec(&format!("t{i}"), "d", &schema))
            .collect();
        let err = tools_from_specs("p", specs).unwrap_err();
        assert!(err.message().contains("at most 4 MiB"), "{err}");
    }

    #[test]
    fn tool_names_follow_the_rule_of_the_contract() {
        assert_eq!(TOOL_NAME_RULE, "^[a-zA-Z0-9_-]{1,64}$");
        for ok in ["Get_Weather", "word-count", "a", &"a".repeat(64)] {
            tools_from_specs("p", vec![spec(ok, "d", "{}")]).unwrap();
        }
        for bad in ["", "greet.v2", "two words", "ünï", &"a".repeat(65)] {
            let err = tools_from_specs("p", vec![spec(bad, "d", "{}")]).unwrap_err();
            assert!(err.message().contains(TOOL_NAME_RULE), "{bad}: {err}");
        }
    }

    #[test]
    fn an_unknown_tool_error_shows_a_few_close_names_and_the_count() {
        let tools: Vec<Tool> = tools_from_specs("p", (0..MAX_TOOLS).map(small).collect()).unwrap();
        let err = unknown_tool("p", "tool-12x", &tools);
        let message = err.message();
        assert!(message.contains("`tool-12`"), "{message}");
        assert!(message.contains("1024 tools"), "{message}");
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
        let hostile = "x".repeat(100_000);
        assert!(unknown_tool("p", &hostile, &tools).message().len() < 600);
    }

    #[test]
    fn hostile_schemas_and_inputs_never_overflow_the_stack() {
        let deep_schema = format!(
            "{}{{}}{}",
            r#"{"items":"#.repeat(100_000),
            "}".repeat(100_000)
        );
        let deep_input = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases: &[(&str, &str)] = &[
            (&deep_schema, "{}"),
            ("{}", &deep_input),
            (r##"{"$ref":"#"}"##, "{}"),
            (r##"{"allOf":[{"$ref":"#"}]}"##, "[1]"),
            (
                r##"{"items":{"$ref":"#"}}"##,
                "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]",
            ),
            (r#"{"$ref":"http://127.0.0.1:9/x.json"}"#, "{}"),
            (
                r##"{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}"##,
                "1",
            ),
            (
                r#"{"type":"string","pattern":"(a+)+$"}"#,
                r#""aaaaaaaaaaaaaaaaaaaaaaaaaaaa!""#,
            ),
            ("not json", "{}"),
        ];
        for (schema, input) in cases {
            // Any result will do; the test is that this returns.
            let _ = check_tool_input("t", "d", schema, input);
        }
        let err = check_tool_input("t", "d", &deep_schema, "{}").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unusable);
        let err = check_tool_input("t", "d", "{}", &deep_input).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        check_tool_input("t", "d", r#"{"type":"object"}"#, "{}").unwrap();
    }

    #[test]
    fn loading_at_every_cap_takes_bounded_host_time() {
        // The most a plugin can list: 1024 tools whose schemas fill the 4 MiB in all, each
        // with many properties and patterns to compile.
        let properties: String = (0..60)
            .map(|i| format!(r#""p{i}":{{"type":"string","pattern":"^(a|b)*c{{1,9}}$"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        let schema = format!(r#"{{"type":"object","properties":{{{properties}}}}}"#);
        let per_tool = MAX_TOOL_METADATA_BYTES / MAX_TOOLS - 16;
        assert!(schema.len() <= per_tool, "{} bytes", schema.len());
        let specs: Vec<ToolSpec> = (0..MAX_TOOLS)
            .map(|i| spec(&format!("t{i}"), "d", &schema))
            .collect();
        let started = std::time::Instant::now();
        assert_eq!(tools_from_specs("p", specs).unwrap().len(), MAX_TOOLS);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    }
}
