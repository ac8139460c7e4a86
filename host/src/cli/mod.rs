//! The `warden` command line. Output meant for scripts goes to stdout (JSON where asked);
//! errors and progress go to stderr; the exit code says what kind of failure happened.

mod agent;
mod audit;
mod build;
mod call;
mod config;
mod fleet;
mod inspect;
mod list;
mod mcp;
pub mod new;
mod serve;
mod session;
mod tenant;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::{DEFAULT_STACK_KB, EngineOptions, WardenEngine};
use crate::error::{CallError, ErrorKind};
use crate::host::LimitOverrides;
use crate::plugins::DEFAULT_MAX_PLUGIN_MB;

/// Warden: a stateful runtime for AI agents, running tools as sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None)]
pub struct Cli {
    /// Log filter for stderr, e.g. `debug` or `warn,plugin=debug` (also WARDEN_LOG); rmcp logs
    /// each error reply it sends at warn, so it is kept to errors by default.
    #[arg(
        long,
        global = true,
        env = "WARDEN_LOG",
        default_value = "warn,plugin=info,rmcp=error"
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API: sessions, tasks with their events, tool calls, audit, metrics.
    Serve(Box<serve::ServeArgs>),
    /// Serve one agent's tools to an MCP client over stdio, in one Warden session.
    Mcp(Box<mcp::McpArgs>),
    /// Manage tenants' bearer tokens.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Call one tool of a plugin in a fresh sandboxed instance and print its JSON output.
    Call(call::CallArgs),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Check the operator's config.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run an agent's task in a session, or resume an interrupted one.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// List, show and delete agent sessions.
    #[command(subcommand)]
    Session(session::SessionCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Show a plugin's tools, what it imports (all it could ever do) and its sha256.
    Inspect(inspect::InspectArgs),
    /// Start the host on a config, load every plugin, and list which serve and which failed.
    List(list::ListArgs),
    /// Create a plugin project (Rust, Python or JS) with one example tool, ready to build.
    New(new::NewArgs),
    /// Build a plugin project (Rust, Python or JS) with its toolchain; print the .wasm's path.
    Build(build::BuildArgs),
    /// Build a plugin project, then call one of its tools as `warden call` does.
    Test(Box<build::TestArgs>),
}

/// Engine settings shared by the commands that run plugins.
#[derive(Debug, Args)]
struct EngineArgs {
    /// Wasm stack limit in KiB.
    #[arg(long, default_value_t = DEFAULT_STACK_KB as u64, value_parser = clap::value_parser!(u64).range(16..=65536))]
    stack_kb: u64,
    /// Where compiled plugins are cached (default: $WARDEN_CACHE_DIR, else ~/.cache/warden).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile the plugin without reading or writing the compile cache.
    #[arg(long)]
    no_cache: bool,
}

impl EngineArgs {
    fn engine(&self) -> Result<WardenEngine, CallError> {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(crate::engine::CompileCache::default_dir)
        };
        WardenEngine::new(&EngineOptions {
            stack_kb: self.stack_kb as usize,
            cache_dir,
        })
    }
}

/// The cap on plugin files, for the commands that read them.
#[derive(Debug, Args)]
struct PluginFileArgs {
    /// The largest plugin file read, in MiB; a bigger one is refused before it is read.
    #[arg(long, env = "WARDEN_MAX_PLUGIN_MB", default_value_t = DEFAULT_MAX_PLUGIN_MB,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_plugin_mb: u64,
}

impl PluginFileArgs {
    fn max_bytes(&self) -> u64 {
        self.max_plugin_mb << 20
    }
}

/// Per-call limits as flags. A flag overrides the agent's `limits`, which override the defaults.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Wall-clock limit for the call, in milliseconds [default: 10000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    timeout_ms: Option<u64>,
    /// Linear-memory limit for the call, in MiB [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_mb: Option<u64>,
    /// Limit on the tool's output, in KiB [default: 1024].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_output_kb: Option<u64>,
    /// Limit on the tool's input, in KiB [default: 1024].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_input_kb: Option<u64>,
}

impl LimitArgs {
    fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            max_output_kb: self.max_output_kb,
            max_input_kb: self.max_input_kb,
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors are bad input (2); --help and --version are not errors.
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(ErrorKind::Internal.exit_code());
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Mcp(args) => mcp::run(*args).await,
            Command::Tenant(command) => tenant::run(command),
            Command::Call(args) => call::run(args).await,
            Command::Plugin(PluginCommand::Inspect(args)) => inspect::run(args).await,
            Command::Plugin(PluginCommand::List(args)) => list::run(args).await,
            Command::Plugin(PluginCommand::New(args)) => new::run(args),
            Command::Plugin(PluginCommand::Build(args)) => build::run(args),
            Command::Plugin(PluginCommand::Test(args)) => build::test(*args).await,
            Command::Config(command) => config::run(command),
            Command::Audit(command) => audit::run(command).await,
            Command::Agent(command) => agent::run(command).await,
            Command::Session(command) => session::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.kind().exit_code())
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: ignoring log filter `{filter}` ({e})");
        tracing_subscriber::EnvFilter::new("warn,plugin=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Writes `text` and a newline to stdout. A reader that went away (`warden call … | head -c0`)
/// is not an error of the call, so a broken pipe ends quietly instead of panicking.
fn print_stdout(text: &str) -> Result<(), CallError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CallError::new(
            ErrorKind::Internal,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

/// Says on stderr that a plugin is being compiled. The engine calls it only for a compile that
/// is still running after a second ([`crate::engine::SLOW_COMPILE`]), so it is printed whether
/// or not stderr is a terminal: a script or an MCP client's log then shows why a start took
/// seconds, and a fast or cached start prints nothing. Never stdout, which `warden mcp` speaks
/// its protocol on.
fn compile_progress(name: &str, size: usize) {
    eprintln!(
        "compiling plugin `{name}` ({}); this happens once, later starts use the cache",
        human_size(size as u64)
    );
}

/// A size for people: `84.3 KB`, `18.2 MB` (decimal units).
fn human_size(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} KB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}
