//! Test plugin: what a hostile plugin with a read-write directory grant would try. `symlink`
//! plants a symbolic link (`link` → `target`) in a granted directory, the first step of making
//! the host open something outside the grant; `log` writes a line of its choosing to the log
//! interface, to forge host log lines. Errors are reported, never panicked on.

use warden_sdk::prelude::*;

/// Where to plant a link, and what it points at.
#[derive(Deserialize, JsonSchema)]
struct SymlinkInput {
    /// The link's path in the guest, e.g. `/data/crm.db`.
    link: String,
    /// The link's target, exactly as written into the link, e.g. `../state.db`.
    target: String,
    /// Remove whatever is at `link` first (as replacing a file would).
    #[serde(default)]
    replace: bool,
}

/// What happened.
#[derive(Serialize, JsonSchema)]
struct Outcome {
    /// `created`, or the error the host gave.
    result: String,
}

fn symlink(_ctx: &Context, input: SymlinkInput) -> Result<Outcome, ToolError> {
    if input.replace {
        let _ = std::fs::remove_file(&input.link);
    }
    // `soft_link` is std's one stable way to make a symlink on WASI (`symlink_path` is unstable);
    // it calls `symlink-at` on the preopen, as any guest language would.
    #[allow(deprecated)]
    let made = std::fs::soft_link(&input.target, &input.link);
    let result = match made {
        Ok(()) => "created".to_string(),
        Err(e) => format!("error: {e}"),
    };
    Ok(Outcome { result })
}

/// A line to log.
#[derive(Deserialize, JsonSchema)]
struct LogInput {
    /// The text, newlines and control characters included.
    message: String,
}

fn log_line(_ctx: &Context, input: LogInput) -> Result<Outcome, ToolError> {
    log::warn(&input.message);
    Ok(Outcome {
        result: "logged".into(),
    })
}

fn stderr_line(_ctx: &Context, input: LogInput) -> Result<Outcome, ToolError> {
    eprintln!("{}", input.message);
    Ok(Outcome {
        result: "written".into(),
    })
}

fn tools() -> Tools {
    Tools::new()
        .tool(
            "stderr",
            "Writes a message to standard error. For testing the host.",
            stderr_line,
        )
        .tool(
            "symlink",
            "Creates a symbolic link in a granted directory. For testing the host.",
            symlink,
        )
        .tool(
            "log",
            "Writes a message to the log. For testing the host.",
            log_line,
        )
}

warden_sdk::export_plugin!(tools);
