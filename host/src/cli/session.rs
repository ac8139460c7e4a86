//! `warden session list|show|delete`: what the operator sees of the agents' sessions in the
//! state store. `show` rebuilds a session's conversation from its journal (user inputs, the
//! model's turns, each tool call with its result and time, answers, summaries) and adds its
//! memory, its lease and the raw journal. Everything a session stores was written by a model or
//! a plugin, so the text view escapes control characters and clips long values; `--json` gives
//! every byte, with the characters that could drive a terminal written as JSON escapes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::config::{ConfigArg, load};
use super::print_stdout;
use crate::capabilities::log::escape_log_line;
use crate::error::{CallError, ErrorKind};
use crate::state::agents::AgentStore;
use crate::state::journal::{JournalEntry, MAX_READ_ENTRIES};
use crate::state::leases::Lease;
use crate::state::memory::{MemoryEntry, Namespace};
use crate::state::sessions::{MAX_SESSION_PAGE, Session, SessionId, SessionQuery};
use crate::state::{StateStore, StateUrl, StoreError, now_ms};

/// The longest text the text view shows of one value, in characters; `--full` or `--json`
/// show the rest.
const CLIP_CHARS: usize = 2000;

/// The most lines the text view shows of one value.
const CLIP_LINES: usize = 40;

/// The longest one-line rendering of a journal payload in the text view, in characters.
const JOURNAL_LINE_CHARS: usize = 160;

/// How long `delete` holds the session's lease while it deletes: long enough for the delete, short
/// enough that a crash in between leaves the session free again soon.
const DELETE_LEASE_TTL: Duration = Duration::from_secs(60);

/// Subcommands of `warden session`.
#[derive(Debug, Subcommand)]
pub(super) enum SessionCommand {
    /// List a tenant's sessions, oldest first.
    List(ListArgs),
    /// Show a session: its conversation, tool calls, memory, lease and journal.
    Show(ShowArgs),
    /// Delete a session with its journal, memory and lease (its audit records stay).
    Delete(DeleteArgs),
}

/// Flags every `warden session` command takes.
#[derive(Debug, Args)]
pub(super) struct CommonArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The tenant whose sessions these are.
    #[arg(long, default_value = "local")]
    tenant: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `warden session list`.
#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only this agent's sessions.
    #[arg(long)]
    agent: Option<String>,
    /// At most this many sessions (default: all of them).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

/// Arguments of `warden session show`.
#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The session's id (a UUID, as `warden session list` shows it).
    id: String,
    /// Show long values whole in the text view instead of clipping them.
    #[arg(long)]
    full: bool,
}

/// Arguments of `warden session delete`.
#[derive(Debug, Args)]
pub(super) struct DeleteArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The session's id (a UUID, as `warden session list` shows it).
    id: String,
    /// Delete without asking (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Delete even while a task holds the session's lease; that task fails at its next step.
    #[arg(long)]
    force: bool,
}

pub(super) async fn run(command: SessionCommand) -> Result<(), CallError> {
    match command {
        SessionCommand::List(args) => list(args).await,
        SessionCommand::Show(args) => show(args).await,
        SessionCommand::Delete(args) => delete(args).await,
    }
}

/// Opens the state store the config names.
async fn open(arg: &ConfigArg) -> Result<Arc<dyn AgentStore>, CallError> {
    let config = load(&arg.config)?;
    let url = StateUrl::from_config(&config).map_err(store_failed)?;
    let store = StateStore::open(&url).await.map_err(store_failed)?;
    Ok(store.agent_state())
}

/// A store failure as a CLI error: a malformed request is the caller's to fix (exit 2), the
/// rest is the host's (exit 1).
fn store_failed(e: StoreError) -> CallError {
    match e {
        StoreError::Invalid(_) | StoreError::NotFound(_) => CallError::invalid_input(e.to_string()),
        e => CallError::new(ErrorKind::Internal, e.to_string()),
    }
}

/// Parses an id from the command line; a malformed one is bad input (exit 2).
fn parse_id(text: &str) -> Result<SessionId, CallError> {
    text.parse::<SessionId>().map_err(|_| {
        CallError::invalid_input(format!(
            "`{}` is not a session id: ids are UUIDs such as \
             0192f5a4-7b1e-7c3d-9a2b-3c4d5e6f7a8b; `warden session list` shows them",
            escape_log_line(&clip_chars(text, 64))
        ))
    })
}

/// The session, or the same refusal whether the tenant has no such session or another tenant
/// has it: which tenants exist is not said.
async fn find(store: &dyn AgentStore, tenant: &str, id: SessionId) -> Result<Session, CallError> {
    store
        .get_session(tenant, id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| not_found(tenant, id))
}

fn not_found(tenant: &str, id: SessionId) -> CallError {
    CallError::invalid_input(format!(
        "tenant `{}` has no session {id}; `warden session list --tenant {}` lists its sessions",
        escape_log_line(tenant),
        escape_log_line(tenant)
    ))
}

async fn list(args: ListArgs) -> Result<(), CallError> {
    let store = open(&args.common.config).await?;
    let tenant = args.common.tenant.as_str();
    let wanted = args.limit.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let mut after = None;
    let mut more = false;
    if args.common.json {
        print_stdout("[")?;
    } else {
        print_stdout(&format!(
            "{:<36}  {:<16}  {:<11}  {:<24}  {}",
            "ID", "AGENT", "STATUS", "CREATED", "UPDATED"
        ))?;
    }
    // One page at a time, printed as it comes, so a tenant with a long history is never held
    // in memory whole.
    loop {
        let page_size = (wanted - shown).min(u64::from(MAX_SESSION_PAGE)) as u32;
        let page = store
            .list_sessions(
                tenant,
                &SessionQuery {
                    agent: args.agent.as_deref(),
                    after,
                    limit: page_size,
                },
            )
            .await
            .map_err(store_failed)?;
        let mut lines = Vec::with_capacity(page.sessions.len());
        for s in &page.sessions {
            lines.push(if args.common.json {
                let sep = if shown == 0 { "" } else { "," };
                format!("{sep}{}", json_text(&session_json(s)))
            } else {
                format!(
                    "{:<36}  {:<16}  {:<11}  {:<24}  {}",
                    s.id,
                    escape_log_line(&s.agent),
                    s.status,
                    timestamp(s.created_at_ms),
                    timestamp(s.updated_at_ms)
                )
            });
            shown += 1;
        }
        if !lines.is_empty() {
            print_stdout(&lines.join("\n"))?;
        }
        match page.next_cursor {
            Some(cursor) if shown < wanted => after = Some(cursor),
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    if args.common.json {
        return print_stdout("]");
    }
    let agent = match &args.agent {
        Some(agent) => format!(" of agent `{}`", escape_log_line(agent)),
        None => String::new(),
    };
    let plural = if shown == 1 { "" } else { "s" };
    if more {
        print_stdout(&format!(
            "{shown} session{plural}{agent} shown (tenant `{}`); more exist: raise --limit",
            escape_log_line(tenant)
        ))
    } else {
        print_stdout(&format!(
            "{shown} session{plural}{agent} (tenant `{}`)",
            escape_log_line(tenant)
        ))
    }
}

async fn show(args: ShowArgs) -> Result<(), CallError> {
    let id = parse_id(&args.id)?;
    let store = open(&args.common.config).await?;
    let tenant = args.common.tenant.as_str();
    let session = find(store.as_ref(), tenant, id).await?;
    let journal = read_all_journal(store.as_ref(), tenant, id).await?;
    let session_memory = read_all_memory(store.as_ref(), tenant, &Namespace::Session(id)).await?;
    let agent_memory = read_all_memory(
        store.as_ref(),
        tenant,
        &Namespace::Agent(session.agent.clone()),
    )
    .await?;
    let lease = store
        .current_lease(tenant, id)
        .await
        .map_err(store_failed)?;
    let view = SessionView::build(&journal);
    let now = now_ms();
    if args.common.json {
        let doc = json!({
            "session": session_json(&session),
            "conversation": view.conversation,
            "tool_calls": view.tool_calls(),
            "memory": {
                "session": session_memory.iter().map(memory_json).collect::<Vec<_>>(),
                "agent": agent_memory.iter().map(memory_json).collect::<Vec<_>>(),
            },
            "lease": lease.as_ref().map(|l| lease_json(l, now)),
            "journal": journal.iter().map(journal_json).collect::<Vec<_>>(),
        });
        return print_stdout(&json_text(&doc));
    }
    let text = Text {
        full: args.full,
        now,
    };
    let mut out = String::new();
    text.session(&mut out, &session, lease.as_ref());
    text.conversation(&mut out, &view.conversation);
    text.tool_calls(&mut out, &view.tool_calls());
    text.memory(&mut out, "session", &session_memory);
    text.memory(
        &mut out,
        &format!("agent `{}`", escape_log_line(&session.agent)),
        &agent_memory,
    );
    text.journal(&mut out, &journal);
    print_stdout(out.trim_end())
}

async fn delete(args: DeleteArgs) -> Result<(), CallError> {
    let id = parse_id(&args.id)?;
    let store = open(&args.common.config).await?;
    let tenant = args.common.tenant.as_str();
    let session = find(store.as_ref(), tenant, id).await?;
    let now = now_ms();
    let live = store
        .current_lease(tenant, id)
        .await
        .map_err(store_failed)?
        .filter(|l| l.expires_at_ms > now);
    match (&live, args.force) {
        (Some(lease), false) => return Err(busy(id, &lease.holder, lease.expires_at_ms)),
        (Some(lease), true) => eprintln!(
            "warning: deleting session {id} while `{}` holds its lease (--force); its task fails \
             at its next step",
            escape_log_line(&lease.holder)
        ),
        (None, _) => {}
    }
    if !args.yes {
        confirm(&session)?;
    }
    // Without --force, take the session's lease before deleting: the store grants it only when
    // no task holds it, so a task that started after the check above is still refused, and no
    // task can start while the delete runs.
    let holder = format!("warden session delete (pid {})", std::process::id());
    let held = if args.force {
        None
    } else {
        match store
            .acquire_lease(tenant, id, &holder, DELETE_LEASE_TTL)
            .await
        {
            Ok(lease) => Some(lease),
            Err(StoreError::LeaseHeld { holder, until_ms }) => {
                return Err(busy(id, &holder, until_ms));
            }
            Err(StoreError::NotFound(_)) => return Err(not_found(tenant, id)),
            Err(e) => return Err(store_failed(e)),
        }
    };
    match store.delete_session(tenant, id).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found(tenant, id)),
        Err(e) => {
            if let Some(lease) = &held {
                // Give the session back rather than block it until the lease lapses.
                let _ = store.release_lease(tenant, lease).await;
            }
            return Err(store_failed(e));
        }
    }
    if args.common.json {
        print_stdout(&json_text(&json!({
            "deleted": session_json(&session),
        })))
    } else {
        print_stdout(&format!(
            "deleted session {id} (agent `{}`) with its journal, memory and lease; its audit \
             records are kept",
            escape_log_line(&session.agent)
        ))
    }
}

/// The refusal to delete a session a task is running in.
fn busy(id: SessionId, holder: &str, until_ms: u64) -> CallError {
    CallError::new(
        ErrorKind::Denied,
        format!(
            "session {id} is busy: `{}` holds its lease until {} (a task is running in it); wait \
             for the task to finish, or pass --force to delete it anyway (the task then fails at \
             its next step)",
            escape_log_line(holder),
            timestamp(until_ms)
        ),
    )
}

/// Asks on the terminal before deleting; without a terminal, --yes is required.
fn confirm(session: &Session) -> Result<(), CallError> {
    if !std::io::stdin().is_terminal() {
        return Err(CallError::invalid_input(format!(
            "deleting session {} needs confirmation and stdin is not a terminal; pass --yes",
            session.id
        )));
    }
    eprint!(
        "delete session {} of agent `{}` with its journal and memory? [y/N] ",
        session.id,
        escape_log_line(&session.agent)
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CallError::new(ErrorKind::Internal, format!("cannot read stdin: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CallError::invalid_input(format!(
            "session {} was not deleted (not confirmed)",
            session.id
        )))
    }
}

/// The whole journal, read [`MAX_READ_ENTRIES`] at a time.
async fn read_all_journal(
    store: &dyn AgentStore,
    tenant: &str,
    id: SessionId,
) -> Result<Vec<JournalEntry>, CallError> {
    let mut entries: Vec<JournalEntry> = Vec::new();
    loop {
        let from = entries.last().map_or(0, |e| e.step + 1);
        let page = store
            .read_journal(tenant, id, from, MAX_READ_ENTRIES)
            .await
            .map_err(|e| match e {
                // Deleted between the lookup and this read.
                StoreError::NotFound(_) => not_found(tenant, id),
                e => store_failed(e),
            })?;
        let last_page = page.len() < MAX_READ_ENTRIES as usize;
        entries.extend(page);
        if last_page {
            return Ok(entries);
        }
    }
}

/// Every entry of a memory namespace, a page at a time.
async fn read_all_memory(
    store: &dyn AgentStore,
    tenant: &str,
    ns: &Namespace,
) -> Result<Vec<MemoryEntry>, CallError> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_memory(tenant, ns, "", cursor.as_deref(), 0)
            .await
            .map_err(store_failed)?;
        entries.extend(page.entries);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(entries),
        }
    }
}

/// A session's journal read as a conversation: one item per user input, model turn, tool call
/// (with its result merged in), answer, failure and summary, in journal order.
struct SessionView {
    conversation: Vec<Value>,
}

impl SessionView {
    fn build(journal: &[JournalEntry]) -> SessionView {
        let mut conversation: Vec<Value> = Vec::new();
        // A tool call's item, by task and call id, so its result lands on it.
        let mut calls: HashMap<(Uuid, String), usize> = HashMap::new();
        for entry in journal {
            let p = &entry.payload;
            let mut item = Map::new();
            item.insert("step".into(), json!(entry.step));
            item.insert("task".into(), json!(entry.task.to_string()));
            item.insert("at_ms".into(), json!(entry.recorded_at_ms));
            // By the stored word rather than the enum, so kinds this build's `StepKind` gained
            // later (context summaries) fall through to the generic rendering, not a compile
            // error.
            match entry.kind.as_str() {
                "task_started" => {
                    item.insert("type".into(), json!("user"));
                    item.insert("text".into(), field(p, "input"));
                }
                "model_response" => {
                    item.insert("type".into(), json!("assistant"));
                    for key in [
                        "text",
                        "tool_calls",
                        "usage",
                        "model",
                        "served_by",
                        "finish_reason",
                        "model_step",
                    ] {
                        item.insert(key.into(), field(p, key));
                    }
                }
                "tool_call" => {
                    let key = (entry.task, entry.call_id.clone().unwrap_or_default());
                    if let Some(&at) = calls.get(&key) {
                        // The same call journaled again: the step was retried after a crash
                        // with its recorded call id.
                        let attempts = conversation[at]["attempts"].as_u64().unwrap_or(1) + 1;
                        conversation[at]["attempts"] = json!(attempts);
                        continue;
                    }
                    item.insert("type".into(), json!("tool"));
                    item.insert("call_id".into(), json!(entry.call_id));
                    for name in [
                        "index",
                        "model_call_id",
                        "name",
                        "plugin",
                        "tool",
                        "arguments",
                    ] {
                        item.insert(name.into(), field(p, name));
                    }
                    item.insert("attempts".into(), json!(1));
                    item.insert("status".into(), json!("pending"));
                    for name in ["ok", "output", "error", "elapsed_ms", "result_step"] {
                        item.insert(name.into(), Value::Null);
                    }
                    item.insert("finished_at_ms".into(), Value::Null);
                    calls.insert(key, conversation.len());
                }
                "tool_result" => {
                    let key = (entry.task, entry.call_id.clone().unwrap_or_default());
                    let at = match calls.get(&key) {
                        Some(&at) => at,
                        None => {
                            // A result whose call entry is missing: shown on its own.
                            item.insert("type".into(), json!("tool"));
                            item.insert("call_id".into(), json!(entry.call_id));
                            for name in ["index", "model_call_id"] {
                                item.insert(name.into(), field(p, name));
                            }
                            for name in ["name", "plugin", "tool", "arguments"] {
                                item.insert(name.into(), Value::Null);
                            }
                            item.insert("attempts".into(), json!(1));
                            calls.insert(key, conversation.len());
                            conversation.push(Value::Object(item));
                            conversation.len() - 1
                        }
                    };
                    let call = &mut conversation[at];
                    let ok = p.get("ok").and_then(Value::as_bool);
                    call["status"] = json!(match ok {
                        Some(true) => "ok",
                        Some(false) => "error",
                        None => "unknown",
                    });
                    call["ok"] = json!(ok);
                    for name in ["output", "error", "elapsed_ms"] {
                        call[name] = field(p, name);
                    }
                    call["result_step"] = json!(entry.step);
                    call["finished_at_ms"] = json!(entry.recorded_at_ms);
                    continue;
                }
                "final_answer" => {
                    item.insert("type".into(), json!("answer"));
                    item.insert("text".into(), field(p, "text"));
                }
                "task_failed" => {
                    item.insert("type".into(), json!("failed"));
                    item.insert("reason".into(), field(p, "reason"));
                    item.insert("message".into(), field(p, "message"));
                }
                "context_summary" => {
                    item.insert("type".into(), json!("summary"));
                    item.insert("summary".into(), field(p, "summary"));
                    item.insert("through_step".into(), field(p, "through_step"));
                }
                other => {
                    item.insert("type".into(), json!("other"));
                    item.insert("kind".into(), json!(other));
                    item.insert("payload".into(), p.clone());
                }
            }
            conversation.push(Value::Object(item));
        }
        SessionView { conversation }
    }

    /// The tool calls alone, in the order they were made.
    fn tool_calls(&self) -> Vec<Value> {
        self.conversation
            .iter()
            .filter(|item| item["type"] == "tool")
            .map(|item| {
                let mut call = item.clone();
                if let Some(map) = call.as_object_mut() {
                    map.remove("type");
                }
                call
            })
            .collect()
    }
}

/// A payload's field, or null when the writer left it out.
fn field(payload: &Value, key: &str) -> Value {
    payload.get(key).cloned().unwrap_or(Value::Null)
}

fn session_json(s: &Session) -> Value {
    json!({
        "id": s.id.to_string(),
        "tenant": s.tenant,
        "agent": s.agent,
        "status": s.status.as_str(),
        "created_at_ms": s.created_at_ms,
        "updated_at_ms": s.updated_at_ms,
        "created": timestamp(s.created_at_ms),
        "updated": timestamp(s.updated_at_ms),
    })
}

fn memory_json(e: &MemoryEntry) -> Value {
    json!({
        "key": e.key,
        // The stored text is JSON (the store checks it on write); shown as the value it is.
        "value": serde_json::from_str::<Value>(&e.value).unwrap_or_else(|_| json!(e.value)),
        "version": e.version,
        "written_by_agent": e.written_by_agent,
        "written_by_tool": e.written_by_tool,
        "updated_at_ms": e.updated_at_ms,
    })
}

fn lease_json(l: &Lease, now: u64) -> Value {
    json!({
        "holder": l.holder,
        "token": l.token.0,
        "expires_at_ms": l.expires_at_ms,
        "expires": timestamp(l.expires_at_ms),
        "live": l.expires_at_ms > now,
    })
}

fn journal_json(e: &JournalEntry) -> Value {
    json!({
        "step": e.step,
        "task": e.task.to_string(),
        "kind": e.kind.as_str(),
        "call_id": e.call_id,
        "payload": e.payload,
        "token": e.token.0,
        "recorded_at_ms": e.recorded_at_ms,
    })
}

/// JSON text safe to print on a terminal. serde_json escapes only the C0 controls; C1 controls,
/// line separators and bidirectional overrides can only occur inside strings, and written as
/// `\uXXXX` escapes they mean the same JSON.
fn json_text(value: &Value) -> String {
    let text = value.to_string();
    if !text.chars().any(terminal_unsafe) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if terminal_unsafe(c) {
            // Every such character is in the Basic Multilingual Plane: one escape each.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters a terminal may act on rather than show (serde_json has escaped C0 already).
fn terminal_unsafe(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The text view of `show`.
struct Text {
    /// Show long values whole.
    full: bool,
    /// Now, for "lapses in" and "lapsed ago".
    now: u64,
}

impl Text {
    fn session(&self, out: &mut String, s: &Session, lease: Option<&Lease>) {
        let _ = writeln!(out, "session  {}", s.id);
        let _ = writeln!(out, "tenant   {}", escape_log_line(&s.tenant));
        let _ = writeln!(out, "agent    {}", escape_log_line(&s.agent));
        let _ = writeln!(out, "status   {}", s.status);
        let _ = writeln!(out, "created  {}", timestamp(s.created_at_ms));
        let _ = writeln!(out, "updated  {}", timestamp(s.updated_at_ms));
        match lease {
            None => {
                let _ = writeln!(out, "lease    none");
            }
            Some(l) => {
                let when = if l.expires_at_ms > self.now {
                    format!(
                        "live, lapses in {}",
                        duration_text(l.expires_at_ms - self.now)
                    )
                } else {
                    format!("lapsed {} ago", duration_text(self.now - l.expires_at_ms))
                };
                let _ = writeln!(
                    out,
                    "lease    held by `{}`, token {}, until {} ({when})",
                    escape_log_line(&l.holder),
                    l.token.0,
                    timestamp(l.expires_at_ms)
                );
            }
        }
    }

    fn conversation(&self, out: &mut String, items: &[Value]) {
        let _ = writeln!(
            out,
            "\nconversation ({})",
            count(items.len(), "item", "items")
        );
        let mut task = None;
        for item in items {
            let this_task = item["task"].as_str();
            if this_task != task {
                task = this_task;
                let _ = writeln!(
                    out,
                    "  task {} (from {})",
                    this_task.unwrap_or("?"),
                    timestamp(item["at_ms"].as_u64().unwrap_or(0))
                );
            }
            let head = format!(
                "    #{:<4} {}",
                item["step"].as_u64().unwrap_or_default(),
                clock(item["at_ms"].as_u64().unwrap_or(0))
            );
            match item["type"].as_str().unwrap_or_default() {
                "user" => {
                    let _ = writeln!(out, "{head}  user");
                    self.block(out, 8, &item["text"]);
                }
                "assistant" => {
                    let mut about = Vec::new();
                    if let Some(model) = item["model"].as_str() {
                        about.push(format!("model {}", escape_log_line(model)));
                    }
                    if let Some(by) = item["served_by"].as_str() {
                        about.push(format!("via {}", escape_log_line(by)));
                    }
                    let usage = &item["usage"];
                    if let (Some(i), Some(o)) = (
                        usage["input_tokens"].as_u64(),
                        usage["output_tokens"].as_u64(),
                    ) {
                        about.push(format!("{i} in / {o} out tokens"));
                    }
                    if let Some(finish) = item["finish_reason"].as_str() {
                        about.push(format!("finish {}", escape_log_line(finish)));
                    }
                    let _ = writeln!(out, "{head}  assistant  {}", about.join(", "));
                    if item["text"].as_str().is_some_and(|t| !t.is_empty()) {
                        self.block(out, 8, &item["text"]);
                    }
                    if let Some(asked) = item["tool_calls"].as_array() {
                        for call in asked {
                            let _ = writeln!(
                                out,
                                "        asks for {} {}",
                                escape_log_line(call["name"].as_str().unwrap_or("?")),
                                self.one_line(&call["arguments"], JOURNAL_LINE_CHARS)
                            );
                        }
                    }
                }
                "tool" => {
                    let _ = writeln!(out, "{head}  tool {}", tool_summary(item));
                    let _ = writeln!(
                        out,
                        "        call id {}",
                        escape_log_line(item["call_id"].as_str().unwrap_or("?"))
                    );
                    self.labelled(out, "arguments", &item["arguments"]);
                    if !item["output"].is_null() {
                        self.labelled(out, "output", &item["output"]);
                    }
                    if !item["error"].is_null() {
                        self.labelled(out, "error", &item["error"]);
                    }
                }
                "answer" => {
                    let _ = writeln!(out, "{head}  answer");
                    self.block(out, 8, &item["text"]);
                }
                "failed" => {
                    let _ = writeln!(
                        out,
                        "{head}  failed ({})",
                        escape_log_line(item["reason"].as_str().unwrap_or("?"))
                    );
                    self.block(out, 8, &item["message"]);
                }
                "summary" => {
                    let _ = writeln!(
                        out,
                        "{head}  summary of the turns through step {}",
                        item["through_step"]
                    );
                    self.block(out, 8, &item["summary"]);
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{head}  {}",
                        escape_log_line(item["kind"].as_str().unwrap_or("?"))
                    );
                    self.block(out, 8, &item["payload"]);
                }
            }
        }
    }

    fn tool_calls(&self, out: &mut String, calls: &[Value]) {
        let _ = writeln!(out, "\ntool calls ({})", calls.len());
        for call in calls {
            let _ = writeln!(
                out,
                "  #{:<4} {}  {}  call id {}",
                call["step"].as_u64().unwrap_or_default(),
                clock(call["at_ms"].as_u64().unwrap_or(0)),
                tool_summary(call),
                escape_log_line(call["call_id"].as_str().unwrap_or("?"))
            );
        }
    }

    fn memory(&self, out: &mut String, what: &str, entries: &[MemoryEntry]) {
        let _ = writeln!(
            out,
            "\nmemory: {what} ({})",
            count(entries.len(), "entry", "entries")
        );
        for e in entries {
            let _ = writeln!(
                out,
                "  {}  v{}  by {} with {} at {}",
                escape_log_line(&clip_chars(&e.key, 120)),
                e.version,
                escape_log_line(&e.written_by_agent),
                escape_log_line(&e.written_by_tool),
                timestamp(e.updated_at_ms)
            );
            let value = serde_json::from_str::<Value>(&e.value).unwrap_or_else(|_| json!(e.value));
            let line = self.one_line(&value, JOURNAL_LINE_CHARS);
            if line.chars().count() < JOURNAL_LINE_CHARS {
                let _ = writeln!(out, "    {line}");
            } else {
                self.block(out, 4, &value);
            }
        }
    }

    fn journal(&self, out: &mut String, journal: &[JournalEntry]) {
        let _ = writeln!(
            out,
            "\njournal ({})",
            count(journal.len(), "entry", "entries")
        );
        for e in journal {
            let call = match &e.call_id {
                Some(id) => format!(" call {}", escape_log_line(id)),
                None => String::new(),
            };
            let width = if self.full {
                usize::MAX
            } else {
                JOURNAL_LINE_CHARS
            };
            let _ = writeln!(
                out,
                "  #{:<4} {}  {:<14} token {}{call}  {}",
                e.step,
                timestamp(e.recorded_at_ms),
                e.kind.as_str(),
                e.token.0,
                self.one_line(&e.payload, width)
            );
        }
    }

    /// `label: value` on one line when the value is short, else the label and the value
    /// indented below it.
    fn labelled(&self, out: &mut String, label: &str, value: &Value) {
        let line = self.one_line(value, JOURNAL_LINE_CHARS);
        if line.chars().count() < JOURNAL_LINE_CHARS
            && !matches!(value, Value::String(s) if s.contains('\n'))
        {
            let _ = writeln!(out, "        {label}: {line}");
        } else {
            let _ = writeln!(out, "        {label}:");
            self.block(out, 10, value);
        }
    }

    /// A value as indented lines: a string as its text, anything else as pretty JSON; control
    /// characters escaped, clipped unless --full.
    fn block(&self, out: &mut String, indent: usize, value: &Value) {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => return,
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        let (shown, clipped) = if self.full {
            (text.as_str(), None)
        } else {
            clip(&text)
        };
        let pad = " ".repeat(indent);
        // Split on `\n` alone: a `\r` stays in the line, where it is escaped, so stored text
        // cannot return the cursor and overwrite what was printed.
        for line in shown.strip_suffix('\n').unwrap_or(shown).split('\n') {
            let _ = writeln!(out, "{pad}{}", escape_log_line(line));
        }
        if let Some(rest) = clipped {
            let _ = writeln!(
                out,
                "{pad}[… {rest} more characters; --full or --json shows all]"
            );
        }
    }

    /// A value on one line (compact JSON, or a string's text), escaped, at most `width`
    /// characters unless --full.
    fn one_line(&self, value: &Value, width: usize) -> String {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let escaped = escape_log_line(&text);
        let total = escaped.chars().count();
        if self.full || total <= width {
            return escaped.into_owned();
        }
        let mut cut: String = escaped.chars().take(width).collect();
        let _ = write!(cut, "… [+{} chars]", total - width);
        cut
    }
}

/// `1 entry`, `2 entries`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `plugin/tool ok in 12 ms` for a tool item.
fn tool_summary(item: &Value) -> String {
    let name = match (item["plugin"].as_str(), item["tool"].as_str()) {
        (Some(plugin), Some(tool)) => format!("{plugin}/{tool}"),
        _ => item["name"].as_str().unwrap_or("?").to_string(),
    };
    let mut text = escape_log_line(&name).into_owned();
    let status = item["status"].as_str().unwrap_or("pending");
    match item["elapsed_ms"].as_u64() {
        Some(ms) => {
            let _ = write!(text, "  {status} in {ms} ms");
        }
        None if status == "pending" => text.push_str("  pending (no result journaled)"),
        None => {
            let _ = write!(text, "  {status}");
        }
    }
    if let Some(kind) = item["error"]["kind"].as_str() {
        let _ = write!(text, " ({})", escape_log_line(kind));
    }
    if let Some(n) = item["attempts"].as_u64().filter(|n| *n > 1) {
        let _ = write!(text, ", {n} attempts");
    }
    text
}

/// `text` cut to [`CLIP_CHARS`] characters and [`CLIP_LINES`] lines, and how many characters
/// were left out.
fn clip(text: &str) -> (&str, Option<usize>) {
    let mut end = text.len();
    for (n, (at, _)) in text.char_indices().enumerate() {
        if n == CLIP_CHARS {
            end = at;
            break;
        }
    }
    if let Some((at, _)) = text[..end].match_indices('\n').nth(CLIP_LINES - 1) {
        end = at;
    }
    if end == text.len() {
        (text, None)
    } else {
        (&text[..end], Some(text[end..].chars().count()))
    }
}

/// The first `n` characters of `text`, with `…` when there were more.
fn clip_chars(text: &str, n: usize) -> String {
    let mut out: String = text.chars().take(n).collect();
    if text.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// Milliseconds since the epoch as an RFC 3339 UTC time, to the millisecond.
fn timestamp(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let (year, month, day) = civil(days);
    format!("{year:04}-{month:02}-{day:02}T{}Z", clock(ms))
}

/// The time of day of `ms`, `HH:MM:SS.mmm` UTC.
fn clock(ms: u64) -> String {
    let in_day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's days-to-civil).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A span in the largest unit that keeps it readable.
fn duration_text(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=119_999 => format!("{} s", ms / 1000),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::journal::StepKind;
    use crate::state::leases::FencingToken;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(1_796_203_201_005), "2026-12-02T09:20:01.005Z");
    }

    #[test]
    fn clipping_keeps_the_head_and_counts_the_rest() {
        let long = "é".repeat(CLIP_CHARS + 5);
        let (shown, rest) = clip(&long);
        assert_eq!(shown.chars().count(), CLIP_CHARS);
        assert_eq!(rest, Some(5));
        let many_lines = "x\n".repeat(CLIP_LINES + 3);
        let (shown, rest) = clip(&many_lines);
        assert_eq!(shown.lines().count(), CLIP_LINES);
        assert_eq!(rest, Some(many_lines.len() - shown.len()));
        assert_eq!(clip("short"), ("short", None));
    }

    #[test]
    fn json_output_escapes_what_a_terminal_would_act_on() {
        let v = json!({"t": "a\u{1b}[2J\u{9b}31m\u{202e}b\u{2028}"});
        let text = json_text(&v);
        assert_eq!(text, r#"{"t":"a\u001b[2J\u009b31m\u202eb\u2028"}"#);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    fn entry(step: u64, kind: StepKind, call_id: Option<&str>, payload: Value) -> JournalEntry {
        JournalEntry {
            step,
            task: Uuid::nil(),
            kind,
            call_id: call_id.map(String::from),
            payload,
            token: FencingToken(1),
            recorded_at_ms: 1000 + step,
        }
    }

    #[test]
    fn a_tool_result_lands_on_its_call_and_a_retried_call_counts_attempts() {
        let journal = [
            entry(0, StepKind::TaskStarted, None, json!({"input": "hi"})),
            entry(
                1,
                StepKind::ToolCall,
                Some("c1"),
                json!({"name": "files_read", "plugin": "files", "tool": "read", "arguments": {}}),
            ),
            entry(
                2,
                StepKind::ToolCall,
                Some("c1"),
                json!({"name": "files_read", "plugin": "files", "tool": "read", "arguments": {}}),
            ),
            entry(
                3,
                StepKind::ToolResult,
                Some("c1"),
                json!({"ok": false, "output": null, "error": {"kind": "denied", "message": "no"}, "elapsed_ms": 7}),
            ),
            entry(4, StepKind::FinalAnswer, None, json!({"text": "done"})),
        ];
        let view = SessionView::build(&journal);
        let types: Vec<&str> = view
            .conversation
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["user", "tool", "answer"]);
        let calls = view.tool_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["status"], "error");
        assert_eq!(calls[0]["attempts"], 2);
        assert_eq!(calls[0]["result_step"], 3);
        assert_eq!(calls[0]["error"]["kind"], "denied");
        assert_eq!(
            tool_summary(&calls[0]),
            "files/read  error in 7 ms (denied), 2 attempts"
        );
    }
}
