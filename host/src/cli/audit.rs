//! `warden audit tail` and `warden audit verify`.

use std::fmt::Write as _;

use clap::{Args, Subcommand};

use super::config::{ConfigArg, load};
use super::print_stdout;
use crate::error::{CallError, ErrorKind};
use crate::policy::AuditLog;
use crate::state::{StateStore, StateUrl};

/// Subcommands of `warden audit`.
#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Show the last records of the audit log.
    Tail(TailArgs),
    /// Check the hash chain; exits nonzero naming the first bad record.
    Verify(ConfigArg),
}

/// Arguments of `warden audit tail`.
#[derive(Debug, Args)]
pub(super) struct TailArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// How many records.
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: usize,
    /// One JSON object per record, one per line.
    #[arg(long)]
    json: bool,
}

fn open(arg: &ConfigArg) -> Result<AuditLog, CallError> {
    let config = load(&arg.config)?;
    let internal = |e: String| CallError::new(ErrorKind::Internal, e);
    let url = StateUrl::parse(&config.state.url, &config.base_dir).map_err(internal)?;
    AuditLog::open(StateStore::open(&url).map_err(internal)?).map_err(internal)
}

pub(super) fn run(command: AuditCommand) -> Result<(), CallError> {
    match command {
        AuditCommand::Tail(args) => {
            let log = open(&args.config)?;
            let records = log
                .tail(args.lines)
                .map_err(|e| CallError::new(ErrorKind::Internal, e))?;
            let mut out = String::new();
            for r in &records {
                if args.json {
                    let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
                } else {
                    let _ = writeln!(
                        out,
                        "{:>6}  {}  {:<8} {:<20} {:<7} agent={} plugin={} tool={} call={} {}",
                        r.seq,
                        r.at_ms,
                        r.capability,
                        r.target,
                        r.outcome,
                        r.agent,
                        r.plugin,
                        r.tool,
                        r.call_id,
                        r.detail
                    );
                }
            }
            if out.is_empty() {
                return Ok(());
            }
            print_stdout(out.trim_end())
        }
        AuditCommand::Verify(arg) => {
            let log = open(&arg)?;
            match log
                .verify()
                .map_err(|e| CallError::new(ErrorKind::Internal, e))?
            {
                Ok(n) => print_stdout(&format!("audit log ok: {n} records, chain intact")),
                Err(broken) => Err(CallError::new(
                    ErrorKind::Internal,
                    format!(
                        "the audit log is broken at record {}: {}",
                        broken.seq, broken.reason
                    ),
                )),
            }
        }
    }
}
