//! `warden audit tail`, `warden audit verify` and `warden audit checkpoint`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::config::{ConfigArg, load};
use super::print_stdout;
use crate::error::{CallError, ErrorKind};
use crate::policy::AuditLog;
use crate::policy::audit::{append_checkpoint, read_checkpoints};
use crate::state::{StateStore, StateUrl, StoreError};

/// Subcommands of `warden audit`.
#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Show the last records of the audit log.
    Tail(TailArgs),
    /// Check the hash chain (and the signatures, with an audit key); exits nonzero naming the
    /// first bad record.
    Verify(VerifyArgs),
    /// Export the head of the chain (sequence, hash, time) outside the state store, so that
    /// `audit verify --checkpoint` can later find a log rewritten or cut short.
    Checkpoint(CheckpointArgs),
}

/// Arguments of `warden audit verify`.
#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also check the log against every checkpoint in this file (written by
    /// `warden audit checkpoint --out FILE`).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

/// Arguments of `warden audit checkpoint`.
#[derive(Debug, Args)]
pub(super) struct CheckpointArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Append the checkpoint to this file (one JSON line each) instead of printing it. Keep
    /// the file where whoever can write the state store cannot.
    #[arg(long)]
    out: Option<PathBuf>,
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

async fn open(arg: &ConfigArg) -> Result<AuditLog, CallError> {
    let config = load(&arg.config)?;
    let internal = |e: String| CallError::new(ErrorKind::Internal, e);
    let url = StateUrl::from_config(&config).map_err(|e| internal(e.to_string()))?;
    let store = StateStore::open(&url)
        .await
        .map_err(|e| internal(e.to_string()))?;
    AuditLog::open_configured(&store, &config).map_err(internal)
}

fn store_failed(e: StoreError) -> CallError {
    CallError::new(ErrorKind::Internal, e.to_string())
}

fn broken(broken: crate::policy::audit::ChainBreak) -> CallError {
    CallError::new(
        ErrorKind::Internal,
        format!(
            "the audit log is broken at record {}: {}",
            broken.seq, broken.reason
        ),
    )
}

pub(super) async fn run(command: AuditCommand) -> Result<(), CallError> {
    match command {
        AuditCommand::Tail(args) => {
            let log = open(&args.config).await?;
            let records = log.tail(args.lines).await.map_err(store_failed)?;
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
        AuditCommand::Verify(args) => {
            let log = open(&args.config).await?;
            let internal = |e: String| CallError::new(ErrorKind::Internal, e);
            let report = log.verify().await.map_err(store_failed)?.map_err(broken)?;
            let mut line = format!("audit log ok: {} records, chain intact", report.records);
            if report.signatures_checked {
                let _ = write!(line, ", {} signed with the audit key", report.signed);
                if report.signed < report.records {
                    let _ = write!(
                        line,
                        " (the {} before were written before the key was configured)",
                        report.records - report.signed
                    );
                }
            } else if report.signed > 0 {
                let _ = write!(
                    line,
                    "; {} records are signed, but their signatures were not checked: no audit key \
                     is configured (state.audit_key_env or state.audit_key_file)",
                    report.signed
                );
            }
            if let Some(path) = &args.checkpoint {
                let checkpoints = read_checkpoints(path).map_err(internal)?;
                let mut sorted: Vec<_> = checkpoints.iter().collect();
                sorted.sort_by_key(|cp| cp.seq);
                for cp in &sorted {
                    log.check_checkpoint(cp)
                        .await
                        .map_err(store_failed)?
                        .map_err(broken)?;
                }
                let _ = write!(
                    line,
                    "; matches {} checkpoint{} in {}",
                    sorted.len(),
                    if sorted.len() == 1 { "" } else { "s" },
                    path.display()
                );
            }
            print_stdout(&line)
        }
        AuditCommand::Checkpoint(args) => {
            let log = open(&args.config).await?;
            let internal = |e: String| CallError::new(ErrorKind::Internal, e);
            let head = log.head().await.map_err(store_failed)?;
            match &args.out {
                Some(path) => {
                    append_checkpoint(path, &head).map_err(internal)?;
                    print_stdout(&format!(
                        "checkpoint of record {} appended to {}",
                        head.seq,
                        path.display()
                    ))
                }
                None => print_stdout(&serde_json::to_string(&head).unwrap_or_default()),
            }
        }
    }
}
