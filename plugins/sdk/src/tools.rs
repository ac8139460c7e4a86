//! The registry of a plugin's tools: what `list-tools` reports and what `call` dispatches to.

use std::borrow::Cow;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Context, ToolError};

/// A tool that takes and returns JSON text.
type RunFn = Box<dyn Fn(&Context, &str) -> Result<String, ToolError>>;

/// The tools a plugin offers, built by the function given to [`export_plugin!`](crate::export_plugin).
///
/// The host runs every call in a fresh instance, so this registry is built again for each call:
/// adding a tool only stores its function, and JSON Schemas are generated only by
/// [`Tools::specs`], which the host calls once when it loads the plugin.
#[derive(Default)]
pub struct Tools {
    tools: Vec<Tool>,
}

struct Tool {
    name: Cow<'static, str>,
    description: Cow<'static, str>,
    schemas: Schemas,
    run: RunFn,
}

enum Schemas {
    /// Derived from the Rust types, when the host asks for them.
    Derived {
        input: fn() -> String,
        output: fn() -> String,
    },
    /// Given by the author of a raw tool.
    Raw { input: Cow<'static, str> },
}

/// One tool, as the host's `list-tools` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSpec {
    /// Unique within the plugin, and matching [`TOOL_NAME_RULE`].
    pub name: String,
    /// What the tool does, for a model choosing among tools.
    pub description: String,
    /// JSON Schema (draft 2020-12) of the input.
    pub input_schema: String,
    /// JSON Schema (draft 2020-12) of the output, when the tool declares one.
    pub output_schema: Option<String>,
}

impl Tools {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool whose input and output are Rust types.
    ///
    /// `name` must be unique within the plugin and match [`TOOL_NAME_RULE`]. The
    /// description, and the doc comments on the input type and its fields, end up in the JSON
    /// Schema that a model reads to choose and call the tool: write them for that reader.
    ///
    /// An input that does not deserialize into `I` is answered with
    /// [`ToolError::InvalidInput`], naming the field that was wrong.
    ///
    /// `f` is a function or a closure. Its error is a [`ToolError`] or anything that converts
    /// into one ([`DataError`](crate::data::DataError), [`MemoryError`](crate::memory::MemoryError),
    /// [`ModelError`](crate::model::ModelError)), so `?` works on every host import.
    pub fn tool<I, O, E, F>(
        mut self,
        name: impl Into<Cow<'static, str>>,
        description: impl Into<Cow<'static, str>>,
        f: F,
    ) -> Self
    where
        I: DeserializeOwned + JsonSchema,
        O: Serialize + JsonSchema,
        E: Into<ToolError>,
        F: Fn(&Context, I) -> Result<O, E> + 'static,
    {
        let name = name.into();
        // A function item is zero-sized, so boxing this closure does not allocate.
        let run = move |ctx: &Context, input: &str| {
            let input: I = parse_input(input)?;
            let output = f(ctx, input).map_err(Into::into)?;
            serde_json::to_string(&output).map_err(|error| {
                ToolError::Failed(format!(
                    "the tool's output could not be serialized: {error}"
                ))
            })
        };
        self.tools.push(Tool {
            name,
            description: description.into(),
            schemas: Schemas::Derived {
                input: input_schema::<I>,
                output: output_schema::<O>,
            },
            run: Box::new(run),
        });
        self
    }

    /// Adds a tool that parses its input and writes its output as JSON text itself.
    ///
    /// `input_schema_json` is the JSON Schema of the input; the host validates every input
    /// against it before the call. The tool declares no output schema. The output should be
    /// JSON; the host refuses one that is not.
    pub fn raw_tool(
        mut self,
        name: impl Into<Cow<'static, str>>,
        description: impl Into<Cow<'static, str>>,
        input_schema_json: impl Into<Cow<'static, str>>,
        f: fn(&Context, &str) -> Result<String, ToolError>,
    ) -> Self {
        self.tools.push(Tool {
            name: name.into(),
            description: description.into(),
            schemas: Schemas::Raw {
                input: input_schema_json.into(),
            },
            run: Box::new(f),
        });
        self
    }

    /// Describes every tool, with its JSON Schemas; this is the plugin's `list-tools`.
    ///
    /// # Panics
    ///
    /// When a tool name does not match [`TOOL_NAME_RULE`], or is used twice,
    /// or when a raw tool's input schema is not JSON. These are mistakes in the plugin, and the
    /// host reports the panic message when it loads the plugin.
    pub fn specs(&self) -> Vec<ToolSpec> {
        // A set, not a scan of the names before each one: a plugin may offer many tools.
        let mut seen = std::collections::HashSet::with_capacity(self.tools.len());
        self.tools
            .iter()
            .map(|tool| {
                check_name(&tool.name);
                assert!(
                    seen.insert(tool.name.as_ref()),
                    "the tool name `{}` is used twice; each tool needs its own name",
                    tool.name
                );
                let (input_schema, output_schema) = match &tool.schemas {
                    Schemas::Derived { input, output } => (input(), Some(output())),
                    Schemas::Raw { input } => {
                        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(input) {
                            panic!(
                                "the input schema of raw tool `{}` is not JSON: {error}",
                                tool.name
                            );
                        }
                        (input.to_string(), None)
                    }
                };
                ToolSpec {
                    name: tool.name.to_string(),
                    description: tool.description.to_string(),
                    input_schema,
                    output_schema,
                }
            })
            .collect()
    }

    /// Runs tool `name` on `input` (JSON text) and returns its output as JSON text; this is the
    /// plugin's `call`. Plugin tests can use it to call their tools without a host.
    pub fn call(&self, ctx: &Context, name: &str, input: &str) -> Result<String, ToolError> {
        match self.tools.iter().find(|tool| tool.name == name) {
            Some(tool) => (tool.run)(ctx, input),
            None => Err(ToolError::InvalidInput(format!(
                "unknown tool `{name}`; this plugin offers: {}",
                self.names().join(", ")
            ))),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.tools.iter().map(|tool| tool.name.as_ref()).collect()
    }
}

/// Parses a tool's input, and names the offending field when it does not fit.
fn parse_input<I: DeserializeOwned>(input: &str) -> Result<I, ToolError> {
    let deserializer = &mut serde_json::Deserializer::from_str(input);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        ToolError::InvalidInput(if path == "." {
            format!("the input does not fit the tool's schema: {inner}")
        } else {
            format!("the input does not fit the tool's schema at `{path}`: {inner}")
        })
    })
}

pub(crate) fn input_schema<I: JsonSchema>() -> String {
    schema_json::<I>(SchemaSettings::draft2020_12().for_deserialize())
}

fn output_schema<O: JsonSchema>() -> String {
    schema_json::<O>(SchemaSettings::draft2020_12().for_serialize())
}

fn schema_json<T: JsonSchema>(settings: SchemaSettings) -> String {
    let schema = settings.into_generator().into_root_schema_for::<T>();
    serde_json::to_string(&schema).expect("a JSON Schema always serializes")
}

/// The rule every tool name follows, as the contract (`wit/types.wit`) and the host state it:
/// what the model providers and MCP accept.
pub const TOOL_NAME_RULE: &str = "^[a-zA-Z0-9_-]{1,64}$";

/// Whether `name` follows [`TOOL_NAME_RULE`].
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_name(name: &str) {
    assert!(
        is_valid_tool_name(name),
        "the tool name `{name}` is not valid: it must match {TOOL_NAME_RULE} (letters, digits, \
         `_` and `-`, at most 64), e.g. `word-count`"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Input of `greet`.
    #[derive(Deserialize, JsonSchema)]
    struct GreetInput {
        /// Who to greet.
        name: String,
        #[serde(default)]
        times: u32,
    }

    #[derive(Serialize, JsonSchema)]
    struct GreetOutput {
        greeting: String,
    }

    fn greet(_ctx: &Context, input: GreetInput) -> Result<GreetOutput, ToolError> {
        Ok(GreetOutput {
            greeting: format!("hello {} x{}", input.name, input.times),
        })
    }

    fn raw(_ctx: &Context, input: &str) -> Result<String, ToolError> {
        Ok(input.to_string())
    }

    fn tools() -> Tools {
        Tools::new()
            .tool("greet", "Greets someone.", greet)
            .raw_tool("raw", "Returns its input.", r#"{"type":"object"}"#, raw)
    }

    #[test]
    fn calls_a_typed_tool_with_json_in_and_out() {
        let out = tools()
            .call(&Context::default(), "greet", r#"{"name":"ann","times":2}"#)
            .unwrap();
        assert_eq!(out, r#"{"greeting":"hello ann x2"}"#);
    }

    #[test]
    fn a_closure_is_a_tool_and_its_error_converts() {
        let suffix = String::from("!");
        let tools = Tools::new()
            .tool(
                "shout",
                "Shouts.",
                move |_ctx: &Context, input: GreetInput| {
                    Ok::<_, ToolError>(GreetOutput {
                        greeting: format!("{}{suffix}", input.name),
                    })
                },
            )
            .tool(
                "lookup",
                "Fails as a data error.",
                |_ctx: &Context, _: crate::Empty| {
                    Err::<crate::Empty, _>(crate::data::DataError::Denied("grant crm:ro".into()))
                },
            );
        let out = tools
            .call(&Context::default(), "shout", r#"{"name":"ann"}"#)
            .unwrap();
        assert_eq!(out, r#"{"greeting":"ann!"}"#);
        let err = tools.call(&Context::default(), "lookup", "{}").unwrap_err();
        assert_eq!(err, ToolError::Denied("grant crm:ro".into()));
    }

    #[test]
    fn calls_a_raw_tool_with_its_text() {
        let out = tools().call(&Context::default(), "raw", "[1, 2]").unwrap();
        assert_eq!(out, "[1, 2]");
    }

    #[test]
    fn unknown_tool_lists_the_tools_offered() {
        let err = tools().call(&Context::default(), "nope", "{}").unwrap_err();
        assert_eq!(
            err,
            ToolError::InvalidInput("unknown tool `nope`; this plugin offers: greet, raw".into())
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = tools()
            .call(
                &Context::default(),
                "greet",
                r#"{"name":"ann","times":"x"}"#,
            )
            .unwrap_err();
        let ToolError::InvalidInput(message) = err else {
            panic!("expected InvalidInput, got {err:?}");
        };
        assert!(message.contains("at `times`"), "{message}");
    }

    #[test]
    fn missing_field_is_invalid_input() {
        let err = tools()
            .call(&Context::default(), "greet", "{}")
            .unwrap_err();
        let ToolError::InvalidInput(message) = err else {
            panic!("expected InvalidInput, got {err:?}");
        };
        assert!(message.contains("missing field `name`"), "{message}");
    }

    #[test]
    fn specs_carry_derived_schemas_with_doc_comments() {
        let specs = tools().specs();
        assert_eq!(specs.len(), 2);
        let input: serde_json::Value = serde_json::from_str(&specs[0].input_schema).unwrap();
        assert_eq!(input["description"], "Input of `greet`.");
        assert_eq!(input["properties"]["name"]["description"], "Who to greet.");
        assert_eq!(input["required"], serde_json::json!(["name"]));
        assert!(specs[0].output_schema.is_some());
        assert_eq!(specs[1].input_schema, r#"{"type":"object"}"#);
        assert_eq!(specs[1].output_schema, None);
    }

    #[test]
    #[should_panic(expected = "is not valid")]
    fn specs_refuse_an_invalid_name() {
        Tools::new().tool("greet.v2", "x", greet).specs();
    }

    #[test]
    #[should_panic(expected = "is not valid")]
    fn specs_refuse_a_name_longer_than_64() {
        Tools::new().tool("a".repeat(65), "x", greet).specs();
    }

    #[test]
    fn tool_names_follow_the_contracts_rule() {
        for ok in ["Get_Weather", "word-count", "a", &"a".repeat(64)] {
            assert!(is_valid_tool_name(ok), "{ok}");
        }
        for bad in ["", "greet.v2", "two words", "ünï", &"a".repeat(65)] {
            assert!(!is_valid_tool_name(bad), "{bad}");
        }
        Tools::new().tool("Get_Weather", "x", greet).specs();
    }

    #[test]
    #[should_panic(expected = "used twice")]
    fn specs_refuse_a_duplicate_name() {
        Tools::new()
            .tool("greet", "x", greet)
            .tool("greet", "y", greet)
            .specs();
    }
}
