//! One tool of a plugin: its spec from `list-tools`, and the compiled validator of its input
//! schema, so that bad input is refused before any wasm runs.

use serde::Serialize;
use serde_json::Value;

use crate::error::CallError;

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
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "a name that is not made of letters, digits, `-` and `_`".into(),
            ));
        }
        let input_schema: Value = serde_json::from_str(input_schema)
            .map_err(|e| bad(format!("an input schema that is not JSON: {e}")))?;
        let validator = jsonschema::validator_for(&input_schema).map_err(|e| {
            bad(format!(
                "an input schema that is not a valid JSON Schema: {e}"
            ))
        })?;
        let output_schema = output_schema
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad(format!("an output schema that is not JSON: {e}")))?;
        Ok(Tool {
            name,
            description,
            input_schema,
            output_schema,
            validator,
        })
    }

    /// Validates an input against the tool's schema; the error names each offending field.
    pub fn validate(&self, input: &Value) -> Result<(), CallError> {
        if self.validator.is_valid(input) {
            return Ok(());
        }
        let problems: Vec<String> = self
            .validator
            .iter_errors(input)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "the input".to_string()
                } else {
                    format!("field `{path}`")
                };
                format!("{at}: {e}")
            })
            .collect();
        Err(CallError::invalid_input(format!(
            "the input does not match the schema of tool `{}`: {}",
            self.name,
            problems.join("; ")
        )))
    }
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

    #[test]
    fn a_schema_that_is_not_json_makes_the_plugin_unusable() {
        let err = Tool::from_spec("p", "t".into(), "d".into(), "{nope", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unusable);
    }
}
