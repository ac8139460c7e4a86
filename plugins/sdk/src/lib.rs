//! Write Warden tool plugins in Rust.
//!
//! A plugin is a WebAssembly component that offers one or more tools. With this crate a tool is a
//! plain function from a typed input to a typed output; the SDK derives the JSON Schemas the host
//! shows to models, parses each call's input, serializes the output, and exports the
//! `warden:plugin/tool` interface. The generated WIT bindings stay inside the SDK.
//!
//! ```no_run
//! use warden_sdk::prelude::*;
//!
//! /// Input of `echo`.
//! #[derive(Deserialize, JsonSchema)]
//! struct EchoInput {
//!     /// The text to return.
//!     text: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct EchoOutput {
//!     text: String,
//! }
//!
//! fn echo(_ctx: &Context, input: EchoInput) -> Result<EchoOutput, ToolError> {
//!     Ok(EchoOutput { text: input.text })
//! }
//!
//! fn tools() -> Tools {
//!     Tools::new().tool("echo", "Returns the text it is given.", echo)
//! }
//!
//! warden_sdk::export_plugin!(tools);
//! ```
//!
//! The plugin crate is a `cdylib` built for `wasm32-wasip2`, and lists two dependencies besides
//! this one, because serde's derive expands to code that names the `serde` crate:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! warden-sdk = { git = "https://github.com/warden-dev/warden" }   # or { path = "..." }
//! serde = "1"
//! ```
//!
//! `warden plugin new NAME --lang rust` writes such a project, with the dependency by path when
//! it is made inside a Warden checkout.
//!
//! The derive macros themselves come from the [`prelude`]; `schemars` (re-exported by the
//! prelude under its own name) needs no dependency of its own.
//!
//! # What a call costs
//!
//! The host runs every call in a fresh instance, so the [`Tools`] registry is built again for each
//! call. Building it only stores function pointers; the JSON Schemas are generated only when the
//! host asks for the tool list, once when it loads the plugin.
//!
//! # Host capabilities
//!
//! [`log`], [`memory`], [`data`] and [`model`] wrap the host's imports, with serde types: SQL
//! rows read into structs ([`data::Sql::query_as`]), memory values with their versions
//! ([`memory::Namespace::get_versioned`]), model answers as JSON ([`model::Response::json`]). Their
//! errors convert into [`ToolError`], so `?` works in a tool. A built component imports
//! only the interfaces its code calls, so an operator can see from the `.wasm` alone what a plugin
//! could ever reach.

#![deny(missing_docs)]

// The generated bindings name this crate by its public name, so that the export macro works from
// a plugin crate; this makes the same paths resolve inside the SDK itself.
extern crate self as warden_sdk;

mod context;
mod error;
mod tools;

pub mod data;
pub mod log;
pub mod memory;
pub mod model;

pub use context::Context;
pub use error::ToolError;
pub use tools::{TOOL_NAME_RULE, ToolSpec, Tools, is_valid_tool_name};

pub use schemars;
pub use serde;
pub use serde_json;

/// An empty JSON object (`{}`): the input of a tool that takes no parameters, or the output of
/// one that has nothing to return.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
// What a model reads in the schema, instead of the doc comment above, which speaks to authors.
#[schemars(description = "An empty object: no fields.")]
pub struct Empty {}

/// Everything a plugin usually needs: `use warden_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::data::{Sql, SqlValue};
    pub use crate::memory::Namespace;
    pub use crate::{Context, Empty, ToolError, Tools};
    pub use crate::{log, model};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};

    // `#[derive(JsonSchema)]` expands to paths that start with `schemars::`; this name lets them
    // resolve without the plugin depending on schemars itself.
    #[doc(hidden)]
    pub use crate::schemars;
}

/// Exports a plugin's tools as the `warden:plugin/tool` interface of the component.
///
/// The argument is a function (or any expression callable with no arguments) that returns the
/// plugin's [`Tools`]. Invoke it once, at the top level of the plugin crate.
///
/// ```no_run
/// use warden_sdk::prelude::*;
///
/// fn tools() -> Tools {
///     Tools::new()
/// }
///
/// warden_sdk::export_plugin!(tools);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($tools:expr) => {
        #[doc(hidden)]
        pub struct __WardenExportedPlugin;

        impl $crate::__private::ExportedPlugin for __WardenExportedPlugin {
            fn tools() -> $crate::Tools {
                ($tools)()
            }
        }

        $crate::__private::bindings::__export_tool_plugin!(
            __WardenExportedPlugin with_types_in $crate::__private::bindings
        );
    };
}

/// Support for [`export_plugin!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use bindings::exports::warden::plugin::tool::{CallContext, Guest, ToolError, ToolSpec};

    /// The bindings generated from `wit/`, the plugin contract.
    #[allow(missing_docs, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "tool-plugin",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "__export_tool_plugin",
            default_bindings_module: "warden_sdk::__private::bindings",
            runtime_path: "warden_sdk::__private::wit_bindgen::rt",
        });
    }

    /// Implemented by [`export_plugin!`] for a type of the plugin crate.
    pub trait ExportedPlugin {
        /// The plugin's tools.
        fn tools() -> crate::Tools;
    }

    impl<P: ExportedPlugin> Guest for P {
        fn list_tools() -> Vec<ToolSpec> {
            P::tools()
                .specs()
                .into_iter()
                .map(|spec| ToolSpec {
                    name: spec.name,
                    description: spec.description,
                    input_schema: spec.input_schema,
                    output_schema: spec.output_schema,
                })
                .collect()
        }

        fn call(ctx: CallContext, name: String, input: String) -> Result<String, ToolError> {
            let ctx = crate::Context {
                tenant: ctx.tenant,
                agent: ctx.agent,
                session: ctx.session,
                call_id: ctx.call_id,
            };
            P::tools()
                .call(&ctx, &name, &input)
                .map_err(|error| match error {
                    crate::ToolError::InvalidInput(message) => ToolError::InvalidInput(message),
                    crate::ToolError::Denied(message) => ToolError::Denied(message),
                    crate::ToolError::Failed(message) => ToolError::Failed(message),
                })
        }
    }
}
