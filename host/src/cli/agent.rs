//! `warden agent run` and `warden agent resume`: one task of an agent, in a session that keeps
//! its history, with progress on stderr and the answer (or `--json`) on stdout.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{EngineArgs, PluginFileArgs, compile_progress, config, print_stdout};
use crate::agents::{AgentEvent, AgentRunner, EventSink, TaskReport, TaskRequest, TaskStatus};
use crate::error::{CallError, Limit};
use crate::host::{HostOptions, WardenHost};
use crate::state::sessions::SessionId;

/// `warden agent …`.
#[derive(Debug, Subcommand)]
pub(super) enum AgentCommand {
    /// Run one task: the model answers, calling the agent's tools, until a final answer or
    /// the agent's max_steps.
    Run(RunArgs),
    /// Finish a session's interrupted task from its journal (after a crash, a failed model
    /// backend, or a lost database): completed tool calls do not run again.
    Resume(ResumeArgs),
}

/// What both commands share.
#[derive(Debug, Args)]
struct Common {
    /// The operator's config file.
    #[arg(long, env = "WARDEN_CONFIG", default_value = "warden.toml")]
    config: PathBuf,
    /// The tenant the session belongs to.
    #[arg(long, default_value = "local")]
    tenant: String,
    /// Print `{"session", "task", "status", "answer", "steps"}` on stdout.
    #[arg(long)]
    json: bool,
    /// Wait for a session that another task is using, instead of refusing.
    #[arg(long)]
    wait: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    plugin_file: PluginFileArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Arguments of `warden agent run`.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The agent, by its name in [agents].
    agent: String,
    /// The task; `-` reads it from stdin.
    task: String,
    /// Run in this session (its history is the model's context); a new one when not given.
    #[arg(long)]
    session: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `warden agent resume`.
#[derive(Debug, Args)]
pub(super) struct ResumeArgs {
    /// The session whose unfinished task to finish.
    #[arg(long)]
    session: String,
    #[command(flatten)]
    common: Common,
}

pub(super) async fn run(command: AgentCommand) -> Result<(), CallError> {
    match command {
        AgentCommand::Run(args) => {
            let input = read_task(&args.task)?;
            let session = args.session.as_deref().map(parse_session).transpose()?;
            let (runner, events) = start(&args.common).await?;
            let request = TaskRequest {
                tenant: args.common.tenant.clone(),
                agent: args.agent,
                session,
                input,
                wait: args.common.wait,
            };
            let report = runner.run(request, &events).await?;
            finish(&args.common, report)
        }
        AgentCommand::Resume(args) => {
            let session = parse_session(&args.session)?;
            let (runner, events) = start(&args.common).await?;
            let report = runner
                .resume(&args.common.tenant, session, args.common.wait, &events)
                .await?;
            finish(&args.common, report)
        }
    }
}

async fn start(common: &Common) -> Result<(AgentRunner, EventSink), CallError> {
    let engine = common.engine.engine()?;
    let config = Arc::new(config::load(&common.config)?);
    let options = HostOptions {
        max_plugin_bytes: common.plugin_file.max_bytes(),
        on_compile: Some(Arc::new(compile_progress)),
        ..HostOptions::default()
    };
    let host = Arc::new(WardenHost::start(engine, config, &common.config, options).await?);
    let events: EventSink = if common.quiet {
        crate::agents::no_events()
    } else {
        Arc::new(progress)
    };
    Ok((AgentRunner::new(host), events))
}

/// Prints the answer or the report; a task stopped at `max_steps` exits 5 after it.
fn finish(common: &Common, report: TaskReport) -> Result<(), CallError> {
    if common.json {
        let steps: Vec<serde_json::Value> = report
            .steps
            .iter()
            .map(|e| {
                json!({
                    "step": e.step,
                    "kind": e.kind.as_str(),
                    "call_id": e.call_id,
                    "payload": e.payload,
                    "recorded_at_ms": e.recorded_at_ms,
                })
            })
            .collect();
        print_stdout(
            &json!({
                "session": report.session.to_string(),
                "task": report.task.to_string(),
                "status": report.status,
                "answer": report.answer,
                "steps": steps,
            })
            .to_string(),
        )?;
    } else if let Some(answer) = &report.answer {
        print_stdout(answer)?;
    }
    match report.status {
        TaskStatus::Answered => Ok(()),
        TaskStatus::MaxSteps => Err(CallError::limit(
            Limit::Steps,
            format!(
                "the task stopped at the agent's max_steps without a final answer; its work is \
                 kept in session {} (`warden session show {}`)",
                report.session, report.session
            ),
        )),
    }
}

fn parse_session(text: &str) -> Result<SessionId, CallError> {
    text.parse()
        .map_err(|e: crate::state::StoreError| CallError::invalid_input(e.to_string()))
}

fn read_task(arg: &str) -> Result<String, CallError> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    let mut text = String::new();
    // One byte past the limit is enough to refuse an oversized task without reading it all.
    std::io::stdin()
        .take(crate::agents::runner::MAX_TASK_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| CallError::invalid_input(format!("cannot read the task from stdin: {e}")))?;
    Ok(text)
}

/// One progress line per event, on stderr. Model and tool text is hostile: control characters
/// are escaped so a line cannot be rewritten or forged.
fn progress(event: &AgentEvent) {
    let line = match event {
        AgentEvent::Session { session, created } => {
            format!("session {session}{}", if *created { " (new)" } else { "" })
        }
        AgentEvent::Waiting { holder, until_ms } => format!(
            "waiting: session held by {} for up to {} ms",
            shown(holder),
            until_ms.saturating_sub(crate::state::now_ms())
        ),
        AgentEvent::TaskStarted { task, resumed } => {
            format!(
                "task {task} {}",
                if *resumed { "resumed" } else { "started" }
            )
        }
        AgentEvent::ModelTurn {
            model_step,
            served_by,
            input_tokens,
            output_tokens,
            elapsed_ms,
            tool_calls,
        } => format!(
            "model step {model_step} ({}): {elapsed_ms} ms, {input_tokens} + {output_tokens} \
             tokens, {tool_calls} tool call{}",
            shown(served_by),
            if *tool_calls == 1 { "" } else { "s" }
        ),
        AgentEvent::ToolStarted { name, .. } => format!("  tool {} …", shown(name)),
        AgentEvent::ToolFinished {
            name,
            ok,
            elapsed_ms,
            error,
            ..
        } => match (ok, error) {
            (true, _) => format!("  tool {} ok, {elapsed_ms} ms", shown(name)),
            (false, e) => format!(
                "  tool {} failed, {elapsed_ms} ms: {}",
                shown(name),
                shown(e.as_deref().unwrap_or("no reason given"))
            ),
        },
        AgentEvent::Compacted { through_step } => {
            format!("context: turns up to step {through_step} summarised")
        }
        AgentEvent::CompactionFailed { message } => {
            format!("context: compaction failed: {}", shown(message))
        }
        AgentEvent::Answer { .. } => "answered".to_string(),
        AgentEvent::Stopped { message, .. } => format!("stopped: {}", shown(message)),
    };
    eprintln!("{line}");
}

/// At most 300 characters, control characters escaped.
fn shown(text: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}
