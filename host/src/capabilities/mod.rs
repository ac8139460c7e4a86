//! The host side of every interface a plugin may import. Each capability lives in its own
//! module, which implements the generated host trait and decides, per call, what is allowed.
//!
//! - [`log`]: the plugin's log lines, tagged and capped.
//! - `memory`, `data`, `model`: defined by the contract; until their stores and grants exist,
//!   every use is denied with a message that names the grant an operator would add.
//!
//! WASI is linked too, but its context grants nothing (see [`crate::sandbox`]).

mod data;
pub mod log;
mod memory;
mod model;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{ToolPlugin, types};
use crate::sandbox::CallState;

/// Interfaces a component may import from this host, by `namespace:package/interface`, with
/// what each one gives a plugin here. Anything else is refused at load.
pub const PROVIDED_INTERFACES: &[(&str, &str)] = &[
    ("warden:plugin/types", "shared types"),
    ("warden:plugin/log", "writes to the host log"),
    (
        "warden:plugin/memory",
        "durable memory; denied unless a namespace is granted",
    ),
    (
        "warden:plugin/data",
        "SQL sources; denied unless a source is granted",
    ),
    (
        "warden:plugin/model",
        "model completions; denied unless an alias is granted",
    ),
    (
        "wasi:cli/environment",
        "environment and arguments: always empty",
    ),
    ("wasi:cli/exit", "exits the call"),
    ("wasi:cli/stdin", "standard input: always empty"),
    ("wasi:cli/stdout", "standard output: captured to the log"),
    ("wasi:cli/stderr", "standard error: captured to the log"),
    (
        "wasi:cli/terminal-input",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-output",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-stdin",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-stdout",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-stderr",
        "terminal detection: never a terminal",
    ),
    ("wasi:clocks/monotonic-clock", "a monotonic clock"),
    ("wasi:clocks/wall-clock", "the wall clock"),
    (
        "wasi:filesystem/types",
        "files: only directories granted as preopens",
    ),
    (
        "wasi:filesystem/preopens",
        "files: only directories granted as preopens",
    ),
    ("wasi:io/error", "stream errors"),
    ("wasi:io/poll", "waiting on streams"),
    ("wasi:io/streams", "byte streams"),
    ("wasi:random/random", "random bytes"),
    ("wasi:random/insecure", "random bytes"),
    ("wasi:random/insecure-seed", "random bytes"),
    ("wasi:sockets/network", "network: no address is granted"),
    (
        "wasi:sockets/instance-network",
        "network: no address is granted",
    ),
    ("wasi:sockets/tcp", "network: no address is granted"),
    (
        "wasi:sockets/tcp-create-socket",
        "network: no address is granted",
    ),
    ("wasi:sockets/udp", "network: no address is granted"),
    (
        "wasi:sockets/udp-create-socket",
        "network: no address is granted",
    ),
    ("wasi:sockets/ip-name-lookup", "name lookups: denied"),
];

/// Looks up an import by its full name (`wasi:cli/stdout@0.2.6`): what the host gives for it,
/// or `None` when this host does not provide it.
pub fn provided(import: &str) -> Option<&'static str> {
    let (unversioned, version) = import.split_once('@').unwrap_or((import, ""));
    let (_, what) = PROVIDED_INTERFACES
        .iter()
        .find(|(name, _)| *name == unversioned)?;
    let compatible = if unversioned.starts_with("wasi:") {
        version.is_empty() || version.starts_with("0.2.")
    } else {
        version.is_empty() || version.starts_with("0.1.")
    };
    compatible.then_some(*what)
}

/// The linker every plugin is instantiated against: WASI plus the Warden interfaces.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    ToolPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(linker)
}

impl types::Host for CallState {}

/// The message of a denial for a capability that has no grant in this call.
pub(crate) fn not_granted(what: &str, grant: &str) -> String {
    format!(
        "{what} is not granted to this call; an operator allows it by adding the grant `{grant}` \
         to the agent in warden.toml"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_02_minor_versions_are_provided() {
        assert!(provided("wasi:cli/stdout@0.2.6").is_some());
        assert!(provided("wasi:io/streams@0.2.0").is_some());
    }

    #[test]
    fn other_interfaces_and_versions_are_not() {
        assert!(provided("wasi:http/outgoing-handler@0.2.6").is_none());
        assert!(provided("wasi:cli/stdout@0.3.0").is_none());
        assert!(provided("warden:plugin/log@0.2.0").is_none());
        assert!(provided("warden:plugin/log@0.1.0").is_some());
    }
}
