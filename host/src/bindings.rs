//! Generated bindings for the `warden:plugin` contract. They stay private: the rest of the host
//! works with the typed surface in `plugins` and `capabilities`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "warden:plugin/tool-plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub(crate) use self::exports::warden::plugin::tool::{CallContext, ToolError};
pub(crate) use self::warden::plugin::{data, log, memory, model, types};
