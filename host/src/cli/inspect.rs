//! `warden plugin inspect FILE`: what a plugin offers and what it could ever do.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{EngineArgs, PluginFileArgs, compile_progress, print_stdout};
use crate::error::CallError;
use crate::plugins::inspect::{CapabilityInfo, Inspection, inspect_within};
use crate::plugins::plugin_name;

/// Arguments of `warden plugin inspect`.
#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// The plugin's .wasm file.
    plugin: PathBuf,
    /// Print JSON: {"tools": [...], "imports": [...], "capabilities": [...], "sha256": ...}.
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
        let _ = writeln!(out, "      input:  {schema}");
        match &tool.output_schema {
            Some(schema) => {
                let schema = serde_json::to_string(schema).unwrap_or_default();
                let _ = writeln!(out, "      output: {schema}");
            }
            None => {
                let _ = writeln!(out, "      output: (no schema declared: any JSON)");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nimports ({}): the interfaces this plugin links against",
        r.imports.len()
    );
    for import in &r.imports {
        let mark = if import.supported { "ok" } else { "NO" };
        let _ = writeln!(out, "  [{mark}] {:<44} {}", import.name, import.grants);
    }
    let _ = writeln!(
        out,
        "\ncapabilities: what those imports could reach on this host, and what needs a grant"
    );
    for c in &r.capabilities {
        match c.reach {
            Some(reach) => {
                let _ = writeln!(out, "  {:<8} {reach}", c.name);
            }
            None => {
                let _ = writeln!(out, "  {:<8} not imported: never", c.name);
            }
        }
    }
    let _ = writeln!(out, "\nsummary: {}", summary(&r.capabilities));
    out
}

/// One line: what the plugin can never use, what it can use without a grant, and what only
/// with one.
fn summary(capabilities: &[CapabilityInfo]) -> String {
    let names = |keep: &dyn Fn(&CapabilityInfo) -> bool| -> String {
        let picked: Vec<&str> = capabilities
            .iter()
            .filter(|c| keep(c))
            .map(|c| c.name)
            .collect();
        if picked.is_empty() {
            "nothing".into()
        } else {
            picked.join(", ")
        }
    };
    format!(
        "never {}; without a grant {}; only with a grant {}",
        names(&|c| c.reach.is_none()),
        names(&|c| c.without_grant),
        names(&|c| c.reach.is_some() && !c.without_grant),
    )
}
