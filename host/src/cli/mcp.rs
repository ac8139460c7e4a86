//! `warden mcp`: one agent's tools for an MCP client over stdio, in one Warden session.
//!
//! stdout carries only JSON-RPC; what the operator reads goes to stderr, starting with one line
//! naming the agent, the tenant and the session (to pass as `--session` next time, so the
//! session's memory carries over). SIGHUP reloads the config and tells the client when the
//! agent's tools changed.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::serve::{ConfigSource, reload};
use super::{EngineArgs, PluginFileArgs, compile_progress};
use crate::config::WardenConfig;
use crate::error::{CallError, ErrorKind};
use crate::host::{HostOptions, WardenHost, shown};
use crate::mcp::stdio::DEFAULT_MAX_MESSAGE_KB;
use crate::mcp::{Caller, McpHub, WardenMcp};
use crate::state::sessions::{SessionId, SessionStatus};

#[derive(Debug, Args)]
pub(super) struct McpArgs {
    /// The operator's config. Without it, embedded defaults (as `warden serve`): the shipped
    /// text tools for agent `assistant`, state in STATE_DIR.
    #[arg(long, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// The agent whose tools, grants and limits the client gets; may be left out when the
    /// tenant has one agent.
    #[arg(long)]
    agent: Option<String>,
    /// Continue this session (its memory carries over); a new one when not given.
    #[arg(long)]
    session: Option<String>,
    /// The tenant the session belongs to.
    #[arg(long, default_value = "local")]
    tenant: String,
    /// Where the embedded defaults keep their state.
    #[arg(long, default_value = ".warden")]
    state_dir: PathBuf,
    /// The largest message taken from the client, in KiB; a longer line is answered with an
    /// error and skipped.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_KB,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_message_kb: u64,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    plugin_file: PluginFileArgs,
}

pub(super) async fn run(args: McpArgs) -> Result<(), CallError> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::embedded(&args.state_dir),
    };
    let (config, config_path) = source.load()?;
    let agent = pick_agent(&config, &args.tenant, args.agent.as_deref())?;
    let engine = args.engine.engine()?;
    let options = HostOptions {
        max_plugin_bytes: args.plugin_file.max_bytes(),
        on_compile: Some(Arc::new(compile_progress)),
        ..HostOptions::default()
    };
    let host = Arc::new(WardenHost::start(engine, Arc::new(config), &config_path, options).await?);
    let generation = host.generation();
    let store = generation
        .capabilities()
        .map(|c| c.store.agent_state())
        .ok_or_else(|| CallError::new(ErrorKind::Config, "the config has no state store"))?;
    let (session, how) = match &args.session {
        Some(text) => {
            let no_session = || {
                CallError::invalid_input(format!(
                    "there is no open session `{}` of agent `{agent}` for tenant `{}`; leave \
                     --session out to start one (`warden session list` lists them)",
                    shown(text),
                    args.tenant
                ))
            };
            let id = text.parse::<SessionId>().map_err(|_| no_session())?;
            match store.get_session(&args.tenant, id).await {
                Ok(Some(s)) if s.agent == agent && s.status != SessionStatus::Closed => {
                    (id, "existing")
                }
                Ok(_) => return Err(no_session()),
                Err(e) => return Err(CallError::new(ErrorKind::Internal, e.to_string())),
            }
        }
        None => {
            let made = store
                .create_session(&args.tenant, &agent)
                .await
                .map_err(|e| CallError::new(ErrorKind::Internal, e.to_string()))?;
            (made.id, "new")
        }
    };
    let tools = crate::mcp::tools::shown(&generation, &agent).len();
    drop(generation);
    // Before the start line: a client that reads it may signal at once.
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot listen for signals: {e}"),
        )
    })?;
    eprintln!(
        "warden mcp: agent {agent} (tenant {}), session {session} ({how}), {tools} tools",
        args.tenant
    );

    let hub = McpHub::new();
    let caller = Caller {
        tenant: args.tenant.clone(),
        agent,
    };
    let server = WardenMcp::fixed(host.clone(), hub.clone(), caller, session);
    let max_bytes = (args.max_message_kb * 1024) as usize;
    let serving = crate::mcp::stdio::serve(server, max_bytes);
    tokio::pin!(serving);
    loop {
        tokio::select! {
            ended = &mut serving => {
                return ended.map_err(|e| CallError::new(ErrorKind::Internal, e));
            }
            _ = hangup.recv() => reload(&host, &source, &hub).await,
        }
    }
}

/// The agent the client gets: `--agent`, which must be the tenant's, or the tenant's only
/// agent. A tenant the config does not list may use any of its agents: stdio is the local
/// operator's own, and no token is involved.
fn pick_agent(
    config: &WardenConfig,
    tenant: &str,
    asked: Option<&str>,
) -> Result<String, CallError> {
    let agents: Vec<&String> = config
        .tenant_agents(tenant)
        .unwrap_or_else(|| config.agents.keys().collect());
    let listed = || {
        if agents.is_empty() {
            "(none)".to_string()
        } else {
            agents
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match asked {
        Some(name) if agents.iter().any(|a| *a == name) => Ok(name.to_string()),
        Some(name) => Err(CallError::invalid_input(format!(
            "tenant `{tenant}` has no agent `{}`; its agents are: {}",
            shown(name),
            listed()
        ))),
        None => match agents.as_slice() {
            [only] => Ok((*only).clone()),
            _ => Err(CallError::invalid_input(format!(
                "tenant `{tenant}` has {} agents; name one with --agent: {}",
                agents.len(),
                listed()
            ))),
        },
    }
}
