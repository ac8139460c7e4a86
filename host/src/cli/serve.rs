//! `warden serve`: the host service, the agent loop and the HTTP API in one process.
//!
//! Without `--config` it serves embedded defaults: the shipped plugins from inside the binary,
//! state in `./.warden/state.db`, and one tenant, `local`, whose token is made on first start
//! and kept in `./.warden/token`, readable only by its owner. SIGHUP reloads the config (a
//! config with problems is refused, and the old one keeps serving); SIGTERM drains.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::{EngineArgs, PluginFileArgs, compile_progress, print_stdout};
use crate::agents::AgentRunner;
use crate::api::tenants::{new_token, token_digest};
use crate::api::{ApiServer, ApiState, ServeOptions};
use crate::config::WardenConfig;
use crate::error::{CallError, ErrorKind};
use crate::host::{HostOptions, PluginStatus, WardenHost};
use crate::mcp::McpHub;

/// How long a drain waits for running tasks to finish their current step.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// How long open connections get to finish once the tasks are done.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The operator's config. Without it, embedded defaults: the shipped plugins, state in
    /// STATE_DIR, one tenant `local` with its token in STATE_DIR/token.
    #[arg(long)]
    config: Option<PathBuf>,
    /// IP:PORT to listen on [default: `[serve] listen`, else 127.0.0.1:8420]; port 0 picks a
    /// free port. The first line printed names the address.
    #[arg(long)]
    listen: Option<String>,
    /// Where the embedded defaults keep their state and token.
    #[arg(long, default_value = ".warden")]
    state_dir: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    plugin_file: PluginFileArgs,
}

/// Where the served config comes from, so that SIGHUP can read it again.
pub(super) enum ConfigSource {
    File(PathBuf),
    Embedded { dir: PathBuf, token_file: PathBuf },
}

impl ConfigSource {
    /// The embedded defaults, with their state and token in `state_dir`.
    pub(super) fn embedded(state_dir: &Path) -> ConfigSource {
        ConfigSource::Embedded {
            dir: absolute(state_dir),
            token_file: absolute(state_dir).join("token"),
        }
    }

    /// The config's text as it stands now, for the fleet's config fingerprint.
    pub(super) fn text(&self) -> Result<String, CallError> {
        match self {
            ConfigSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                CallError::new(
                    ErrorKind::Config,
                    format!("cannot read {}: {e}", path.display()),
                )
            }),
            ConfigSource::Embedded { dir, token_file } => {
                let token = read_or_make_token(token_file)?;
                Ok(embedded_config(dir, &token_digest(&token)))
            }
        }
    }

    /// The config, checked as every command checks it, and the path messages name.
    pub(super) fn load(&self) -> Result<(WardenConfig, PathBuf), CallError> {
        match self {
            ConfigSource::File(path) => Ok((super::config::load(path)?, path.clone())),
            ConfigSource::Embedded { dir, token_file } => {
                let token = read_or_make_token(token_file)?;
                let text = embedded_config(dir, &token_digest(&token));
                let config = WardenConfig::parse(&text, dir).map_err(|problems| {
                    CallError::new(
                        ErrorKind::Config,
                        format!("the embedded defaults: {}", problems.to_string().trim_end()),
                    )
                })?;
                Ok((config, dir.join("(embedded defaults)")))
            }
        }
    }
}

/// The embedded defaults: the shipped text tools for agent `assistant`, whose loop uses an
/// OpenAI-compatible endpoint (a local Ollama unless `WARDEN_MODEL_BASE_URL` says otherwise).
fn embedded_config(dir: &Path, token_sha256: &str) -> String {
    let base_url = std::env::var("WARDEN_MODEL_BASE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:11434/v1".into());
    let model = std::env::var("WARDEN_MODEL").unwrap_or_else(|_| "llama3.2".into());
    // Named only when set: a named key variable that is missing is a config error.
    let api_key = if std::env::var_os("WARDEN_MODEL_API_KEY").is_some() {
        "api_key_env = \"WARDEN_MODEL_API_KEY\"\n"
    } else {
        ""
    };
    let state = dir.join("state.db");
    format!(
        r#"[state]
url = "sqlite://{state}"

[plugins.text-tools]
path = "builtin:text-tools"

[models.local]
backend = "openai"
base_url = {base_url:?}
model = {model:?}
{api_key}
[agents.assistant]
model = "local"
instructions = "You are a helpful assistant. Use the text tools when they help."
tools = ["text-tools/*"]

[tenants.local]
token_sha256 = "{token_sha256}"
agents = ["assistant"]
"#,
        state = state.display(),
    )
}

/// The token in `path`, made (and written readable only by its owner) when there is none.
/// A token file others can read is refused: anyone who reads it is the tenant.
fn read_or_make_token(path: &Path) -> Result<String, CallError> {
    let fail = |what: &str, e: std::io::Error| {
        CallError::new(ErrorKind::Config, format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("cannot create the folder of", e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let token = new_token().map_err(|e| fail("cannot make a token for", e))?;
            writeln!(file, "{token}")
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("cannot write", e))?;
            return Ok(token);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail("cannot create", e)),
    }
    let meta = std::fs::metadata(path).map_err(|e| fail("cannot read", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CallError::new(
            ErrorKind::Config,
            format!(
                "{} can be read by other users; the token in it admits anyone who reads it. Run \
                 `chmod 600 {}`, or delete it to get a new token",
                path.display(),
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail("cannot read", e))?;
    let token = text.trim().to_string();
    if token.len() < 16 || token.len() > 256 {
        return Err(CallError::new(
            ErrorKind::Config,
            format!(
                "{} does not hold a token; delete it and start again to get a new one",
                path.display()
            ),
        ));
    }
    Ok(token)
}

pub(super) async fn run(args: ServeArgs) -> Result<(), CallError> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::embedded(&args.state_dir),
    };
    let (config, config_path) = source.load()?;
    let serve_options = ServeOptions::from_config(&config.serve, args.listen.as_deref())?;
    let engine = args.engine.engine()?;
    let options = HostOptions {
        max_plugin_bytes: args.plugin_file.max_bytes(),
        on_compile: Some(Arc::new(compile_progress)),
        ..HostOptions::default()
    };
    // Before anything slow, and before the first line is printed: a supervisor may signal at
    // once, a SIGHUP with no handler yet would end the process, and as PID 1 in a container a
    // SIGTERM with no handler would be ignored while plugins compile.
    let signal_error = |e: std::io::Error| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot listen for signals: {e}"),
        )
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let starting = WardenHost::start(engine, Arc::new(config), &config_path, options);
    let host = tokio::select! {
        host = starting => Arc::new(host?),
        _ = terminate.recv() => return stopped_while_starting(),
        _ = interrupt.recv() => return stopped_while_starting(),
    };
    let runner = Arc::new(AgentRunner::new(host.clone()));
    let state = Arc::new(ApiState::new(runner.clone()));
    let server = ApiServer::start(state.clone(), serve_options).await?;
    print_stdout(&format!("listening on http://{}", server.local_addr()))?;
    describe(&host, &source)?;

    let tenants: Vec<String> = host
        .generation()
        .config()
        .map(|c| c.tenants.keys().cloned().collect())
        .unwrap_or_default();
    let membership = super::fleet::Membership::join(
        &host,
        &source,
        runner.holder_id(),
        &server.local_addr().to_string(),
    )
    .await;
    let resumed = crate::api::resume_interrupted(&state, &tenants).await;
    if resumed > 0 {
        eprintln!("resuming {resumed} interrupted task(s) from their journals");
    }
    let rescuer = crate::api::spawn_rescuer(state.clone());

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                reload(&host, &source, &state.mcp.hub).await;
                if let Some(m) = &membership {
                    m.reloaded(&host, &source).await;
                }
            }
        }
    }
    runner.drain();
    rescuer.abort();
    let running = state.tasks.running();
    if running > 0 {
        eprintln!(
            "shutting down: {running} task(s) finish the step they are on, then stop; they \
             resume from their journals when `warden serve` starts again"
        );
    }
    let left = state.tasks.wait_idle(DRAIN_LIMIT).await;
    if left > 0 {
        eprintln!(
            "{left} task(s) still running after {DRAIN_LIMIT:?}; stopping anyway (their \
             journals keep every finished step)"
        );
    }
    // MCP clients hold streams open; ending their sessions lets the connections close.
    state.mcp.shutdown.cancel();
    server.shutdown(CLOSE_GRACE).await;
    if let Some(m) = membership {
        m.leave().await;
    }
    eprintln!("stopped");
    Ok(())
}

/// A stop signal before the host was up: nothing was served, so nothing needs draining.
fn stopped_while_starting() -> Result<(), CallError> {
    eprintln!("stopped while starting");
    Ok(())
}

/// SIGHUP: reads the config again and swaps it in; a config with problems is refused and the
/// serving one stays. MCP clients whose agent's tools changed are told.
pub(super) async fn reload(host: &WardenHost, source: &ConfigSource, hub: &McpHub) {
    let before = host.generation();
    let result = match source.load() {
        Ok((config, path)) => host.reload(Arc::new(config), &path).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            eprintln!("reloaded the config");
            let told = hub.tools_changed(&before, &host.generation()).await;
            if told > 0 {
                eprintln!("  told {told} MCP client(s) that their tools changed");
            }
            for status in host.plugins() {
                if let PluginStatus::Failed { name, error } = status {
                    eprintln!("  plugin `{name}` is not served: {error}");
                }
            }
        }
        Err(e) => eprintln!("reload refused: {e}; the previous config keeps serving"),
    }
}

/// Prints what is served: the agents and their tools, the plugins that failed, and where the
/// embedded tenant's token is.
fn describe(host: &WardenHost, source: &ConfigSource) -> Result<(), CallError> {
    let generation = host.generation();
    let Some(config) = generation.config() else {
        return Ok(());
    };
    match source {
        ConfigSource::File(path) => print_stdout(&format!("config: {}", path.display()))?,
        ConfigSource::Embedded { token_file, .. } => print_stdout(&format!(
            "embedded defaults; tenant `local`, token in {} (send it as `Authorization: Bearer \
             $(cat {})`)",
            token_file.display(),
            token_file.display()
        ))?,
    }
    // The store as opened (after `url_env`), without its password.
    let state = generation.capabilities().map_or_else(
        || config.state.url.clone(),
        |c| c.store.location().to_string(),
    );
    print_stdout(&format!("state: {state}"))?;
    for (name, agent) in &config.agents {
        let tools: Vec<String> = generation
            .agent_tools(name)
            .iter()
            .map(|t| format!("{}/{}", t.plugin, t.tool.name))
            .collect();
        print_stdout(&format!(
            "agent `{name}` (model {}): {}",
            agent.model.as_deref().unwrap_or("none"),
            if tools.is_empty() {
                "no tools".to_string()
            } else {
                tools.join(", ")
            }
        ))?;
    }
    for status in host.plugins() {
        if let PluginStatus::Failed { name, error } = status {
            print_stdout(&format!("plugin `{name}` is not served: {error}"))?;
        }
    }
    if config.tenants.is_empty() {
        eprintln!(
            "warning: the config has no [tenants]: every /v1 request is refused. Make a token \
             with `warden tenant token NAME`"
        );
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
