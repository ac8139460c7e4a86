//! `warden plugin inspect FILE`: what a plugin offers and what it could ever do.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{EngineArgs, PluginFileArgs, compile_progress, print_stdout};
use crate::error::CallError;
use crate::plugins::inspect::{Inspection, inspect_within};
use crate::plugins::plugin_name;

/// Arguments of `warden plugin inspect`.
#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// The plugin's .wasm file.
    plugin: PathBuf,
    /// Print JSON: {"tools": [...], "imports": [...], "sha256": ...}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    plugin_file: PluginFileArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(super) async fn run(args: InspectArgs) -> Result<(), CallError> {
    let engine = args.engine.engine()?;
    let name = plugin_name(&args.plugin);
    let report = inspect_within(
        &engine,
        &args.plugin,
        args.plugin_file.max_bytes(),
        |size| compile_progress(&name, size),
    )
    .await?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CallError::new(crate::error::ErrorKind::Internal, e.to_string()))?;
        print_stdout(&text)?;
    } else {
        print_stdout(human(&report).trim_end())?;
    }
    match report.problem {
        Some(problem) => Err(CallError::unusable(problem)),
        None => Ok(()),
    }
}

fn human(r: &Inspection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plugin   {}", r.name);
    let _ = writeln!(out, "sha256   {}", r.sha256);
    let _ = writeln!(out, "size     {} bytes", r.size_bytes);
    let _ = writeln!(out, "\ntools ({})", r.tools.len());
    for tool in &r.tools {
        let _ = writeln!(out, "  {}  {}", tool.name, tool.description);
        let schema = serde_json::to_string(&tool.input_schema).unwrap_or_default();
        let _ = writeln!(out, "      input: {schema}");
    }
    let _ = writeln!(
        out,
        "\nimports ({}): everything this plugin could ever do",
        r.imports.len()
    );
    for import in &r.imports {
        let mark = if import.supported { "ok" } else { "NO" };
        let _ = writeln!(out, "  [{mark}] {:<44} {}", import.name, import.grants);
    }
    let network = r
        .imports
        .iter()
        .any(|i| i.name.starts_with("wasi:sockets/") || i.name.starts_with("wasi:http/"));
    let model = r
        .imports
        .iter()
        .any(|i| i.name.starts_with("warden:plugin/model"));
    let files = r
        .imports
        .iter()
        .any(|i| i.name.starts_with("wasi:filesystem/"));
    let _ = writeln!(
        out,
        "\nsummary: {} network, {} model, {} files",
        if network { "imports" } else { "no" },
        if model { "imports" } else { "no" },
        if files { "imports" } else { "no" },
    );
    out
}
