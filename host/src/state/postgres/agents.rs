//! Sessions, the step journal, memory entries and session leases on PostgreSQL, for several
//! hosts sharing one store. Each operation is one transaction; the decisions are the
//! backend-neutral ones in [`crate::state::leases`], [`crate::state::memory`] and
//! [`crate::state::journal`], shared with SQLite.
//!
//! Everything that touches a session's lease or journal first locks the session's row, so lease
//! grants, renewals and journal appends on one session happen one at a time across every host,
//! and read what they decide on in a later statement (under READ COMMITTED each statement sees
//! what committed before it; a join read in the locking statement itself could be stale). Times
//! come from the database server's clock, so hosts with skewed clocks agree on lease expiry.

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::PgStore;
use super::audit::bound_locks;
use crate::state::StoreError;
use crate::state::journal::{self, EncodedStep, JournalEntry, NewStep, SessionJournal};
use crate::state::leases::{
    self, FencingToken, Lease, LeaseRow, MAX_ORPHANS, Orphan, SessionLeases,
};
use crate::state::memory::{
    self, MemoryEntry, MemoryLimits, MemoryPage, MemoryStore, MemoryUsage, Namespace, Writer,
};
use crate::state::sessions::{
    self, Session, SessionId, SessionPage, SessionQuery, SessionStatus, SessionStore,
};

/// The tables, as one migration appended to the store's list. Ids and keys compare bytewise
/// (`COLLATE "C"`), as in SQLite, so listings page the same on both.
pub(crate) const MIGRATION_SQL: &str = r#"
CREATE TABLE agent_sessions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant        TEXT NOT NULL,
    agent         TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX agent_sessions_by_tenant ON agent_sessions (tenant, id);
CREATE INDEX agent_sessions_by_agent ON agent_sessions (tenant, agent, id);
CREATE TABLE agent_leases (
    session_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES agent_sessions (id) ON DELETE CASCADE,
    holder        TEXT,
    token         BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE agent_journal (
    session_id     TEXT COLLATE "C" NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    step           BIGINT NOT NULL,
    task_id        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    call_id        TEXT,
    payload        TEXT NOT NULL,
    token          BIGINT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (session_id, step)
);
CREATE TABLE agent_memory (
    tenant           TEXT NOT NULL,
    ns_kind          TEXT NOT NULL,
    ns_name          TEXT NOT NULL,
    key              TEXT COLLATE "C" NOT NULL,
    value            TEXT,
    version          BIGINT NOT NULL,
    written_by_agent TEXT NOT NULL,
    written_by_tool  TEXT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (tenant, ns_kind, ns_name, key)
);
"#;

/// Migration 4: each namespace's usage (bytes of keys and values, live entries), kept in the
/// same transaction as every memory write so the namespace limit holds; counted from the
/// entries already stored.
pub(crate) const MEMORY_USAGE_SQL: &str = "
CREATE TABLE agent_memory_usage (
    tenant  TEXT NOT NULL,
    ns_kind TEXT NOT NULL,
    ns_name TEXT NOT NULL,
    bytes   BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    PRIMARY KEY (tenant, ns_kind, ns_name)
);
INSERT INTO agent_memory_usage (tenant, ns_kind, ns_name, bytes, entries)
SELECT tenant, ns_kind, ns_name, SUM(octet_length(key) + octet_length(value)), COUNT(*)
FROM agent_memory WHERE value IS NOT NULL
GROUP BY tenant, ns_kind, ns_name;
";

/// The server's clock in milliseconds since the Unix epoch; `clock_timestamp()`, not `now()`,
/// because `now()` stops at the transaction's start, before any lock wait.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A stored integer the schema keeps non-negative.
fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// How many times a memory write retries after losing a race to create the same key; the
/// second attempt finds the row and locks it, so two suffice.
const CREATE_RACE_RETRIES: usize = 3;

const SESSION_COLUMNS: &str = "id, tenant, agent, status, created_at_ms, updated_at_ms";

fn session_from(row: &tokio_postgres::Row) -> Result<Session, StoreError> {
    let id: String = row.try_get(0)?;
    let status: String = row.try_get(3)?;
    Ok(Session {
        id: id.parse().map_err(|_| {
            StoreError::Database(format!("the store holds the unreadable session id `{id}`"))
        })?,
        tenant: row.try_get(1)?,
        agent: row.try_get(2)?,
        status: SessionStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(format!(
                "the store holds the unknown session status `{status}`"
            ))
        })?,
        created_at_ms: u(row.try_get(4)?),
        updated_at_ms: u(row.try_get(5)?),
    })
}

/// Creates an idle session.
pub(crate) async fn create_session(
    tx: &Transaction<'_>,
    tenant: &str,
    agent: &str,
) -> Result<Session, StoreError> {
    sessions::check_name("tenant", tenant)?;
    sessions::check_name("agent", agent)?;
    let id = SessionId::new();
    let row = tx
        .query_one(
            &format!(
                // The clock is read once: a new session's two times are the same instant.
                "INSERT INTO agent_sessions (id, tenant, agent, status, created_at_ms, updated_at_ms)
                 SELECT $1, $2, $3, $4, now_ms, now_ms FROM (SELECT {NOW_MS} AS now_ms) AS clock
                 RETURNING {SESSION_COLUMNS}"
            ),
            &[&id.to_string(), &tenant, &agent, &SessionStatus::Idle.as_str()],
        )
        .await?;
    session_from(&row)
}

/// The tenant's session with that id.
pub(crate) async fn get_session(
    tx: &Transaction<'_>,
    tenant: &str,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    tx.query_opt(
        &format!("SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE id = $1 AND tenant = $2"),
        &[&id.to_string(), &tenant],
    )
    .await?
    .as_ref()
    .map(session_from)
    .transpose()
}

/// A page of the tenant's sessions.
pub(crate) async fn list_sessions(
    tx: &Transaction<'_>,
    tenant: &str,
    query: &SessionQuery<'_>,
) -> Result<SessionPage, StoreError> {
    let limit = sessions::page_limit(query.limit);
    let after = query.after.map(|id| id.to_string()).unwrap_or_default();
    let fetch = i64::from(limit) + 1;
    let rows = match query.agent {
        Some(agent) => {
            tx.query(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM agent_sessions
                     WHERE tenant = $1 AND agent = $2 AND id > $3 ORDER BY id LIMIT $4"
                ),
                &[&tenant, &agent, &after, &fetch],
            )
            .await?
        }
        None => {
            tx.query(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM agent_sessions
                     WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3"
                ),
                &[&tenant, &after, &fetch],
            )
            .await?
        }
    };
    let mut found = rows
        .iter()
        .map(session_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sessions::page(&mut found, limit))
}

/// Sets a session's status.
pub(crate) async fn set_session_status(
    tx: &Transaction<'_>,
    tenant: &str,
    id: SessionId,
    status: SessionStatus,
) -> Result<Session, StoreError> {
    tx.query_opt(
        &format!(
            "UPDATE agent_sessions SET status = $1, updated_at_ms = {NOW_MS}
             WHERE id = $2 AND tenant = $3 RETURNING {SESSION_COLUMNS}"
        ),
        &[&status.as_str(), &id.to_string(), &tenant],
    )
    .await?
    .as_ref()
    .map(session_from)
    .transpose()?
    .ok_or_else(|| sessions::not_found(id))
}

/// Deletes a session; its journal and lease go by cascade, its private memory explicitly.
pub(crate) async fn delete_session(
    tx: &Transaction<'_>,
    tenant: &str,
    id: SessionId,
) -> Result<bool, StoreError> {
    let id = id.to_string();
    let deleted = tx
        .execute(
            "DELETE FROM agent_sessions WHERE id = $1 AND tenant = $2",
            &[&id, &tenant],
        )
        .await?;
    if deleted == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM agent_memory WHERE tenant = $1 AND ns_kind = 'session' AND ns_name = $2",
        &[&tenant, &id],
    )
    .await?;
    tx.execute(
        "DELETE FROM agent_memory_usage
         WHERE tenant = $1 AND ns_kind = 'session' AND ns_name = $2",
        &[&tenant, &id],
    )
    .await?;
    Ok(true)
}

/// Locks the tenant's session row for the rest of the transaction, then reads its lease and
/// the server's clock.
async fn lock_lease(
    tx: &Transaction<'_>,
    tenant: &str,
    session: SessionId,
) -> Result<(Option<LeaseRow>, u64), StoreError> {
    let id = session.to_string();
    let locked = tx
        .query_opt(
            "SELECT 1 FROM agent_sessions WHERE id = $1 AND tenant = $2 FOR NO KEY UPDATE",
            &[&id, &tenant],
        )
        .await?;
    if locked.is_none() {
        return Err(sessions::not_found(session));
    }
    let row = tx
        .query_one(
            &format!(
                "SELECT {NOW_MS}, l.holder, l.token, l.expires_at_ms
                 FROM (VALUES (1)) AS one LEFT JOIN agent_leases l ON l.session_id = $1"
            ),
            &[&id],
        )
        .await?;
    let now: i64 = row.try_get(0)?;
    let token: Option<i64> = row.try_get(2)?;
    let lease = match token {
        Some(token) => Some(LeaseRow {
            holder: row.try_get(1)?,
            token: u(token),
            expires_at_ms: u(row.try_get(3)?),
        }),
        None => None,
    };
    Ok((lease, u(now)))
}

async fn write_lease(
    tx: &Transaction<'_>,
    session: SessionId,
    holder: Option<&str>,
    token: u64,
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO agent_leases (session_id, holder, token, expires_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_id) DO UPDATE
         SET holder = excluded.holder, token = excluded.token, expires_at_ms = excluded.expires_at_ms",
        &[
            &session.to_string(),
            &holder,
            &(token as i64),
            &(expires_at_ms as i64),
        ],
    )
    .await?;
    Ok(())
}

/// Grants the session's lease, or says who holds it.
pub(crate) async fn acquire_lease(
    tx: &Transaction<'_>,
    tenant: &str,
    session: SessionId,
    holder: &str,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    let (current, now) = lock_lease(tx, tenant, session).await?;
    let token = leases::grant(current.as_ref(), holder, now)?;
    let expires_at_ms = now + ttl_ms;
    write_lease(tx, session, Some(holder), token.0, expires_at_ms).await?;
    Ok(Lease {
        session,
        holder: holder.to_string(),
        token,
        expires_at_ms,
    })
}

/// Extends a held lease.
pub(crate) async fn renew_lease(
    tx: &Transaction<'_>,
    tenant: &str,
    lease: &Lease,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    let (current, now) = lock_lease(tx, tenant, lease.session).await?;
    leases::check_holder(current.as_ref(), lease)?;
    let expires_at_ms = now + ttl_ms;
    write_lease(
        tx,
        lease.session,
        Some(&lease.holder),
        lease.token.0,
        expires_at_ms,
    )
    .await?;
    Ok(Lease {
        expires_at_ms,
        ..lease.clone()
    })
}

/// Releases a held lease, keeping its token so the next grant's is larger.
pub(crate) async fn release_lease(
    tx: &Transaction<'_>,
    tenant: &str,
    lease: &Lease,
) -> Result<bool, StoreError> {
    let (current, _) = lock_lease(tx, tenant, lease.session).await?;
    if leases::check_holder(current.as_ref(), lease).is_err() {
        return Ok(false);
    }
    write_lease(tx, lease.session, None, lease.token.0, 0).await?;
    Ok(true)
}

/// The session's lease as it stands.
pub(crate) async fn current_lease(
    tx: &Transaction<'_>,
    tenant: &str,
    session: SessionId,
) -> Result<Option<Lease>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT l.holder, l.token, l.expires_at_ms
             FROM agent_sessions s LEFT JOIN agent_leases l ON l.session_id = s.id
             WHERE s.id = $1 AND s.tenant = $2",
            &[&session.to_string(), &tenant],
        )
        .await?
        .ok_or_else(|| sessions::not_found(session))?;
    let holder: Option<String> = row.try_get(0)?;
    let Some(holder) = holder else {
        return Ok(None);
    };
    Ok(Some(Lease {
        session,
        holder,
        token: FencingToken(u(row.try_get(1)?)),
        expires_at_ms: u(row.try_get(2)?),
    }))
}

/// Sessions left `running` with no live lease, least recently updated first, by the server's
/// clock.
pub(crate) async fn orphaned_sessions(
    client: &tokio_postgres::Client,
    limit: u32,
) -> Result<Vec<Orphan>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT s.tenant, s.id FROM agent_sessions s
                 LEFT JOIN agent_leases l ON l.session_id = s.id
                 WHERE s.status = 'running' AND (l.holder IS NULL OR l.expires_at_ms <= {NOW_MS})
                 ORDER BY s.updated_at_ms, s.id LIMIT $1"
            ),
            &[&i64::from(limit.min(MAX_ORPHANS))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(1)?;
            Ok(Orphan {
                tenant: row.try_get(0)?,
                session: id.parse()?,
            })
        })
        .collect()
}

/// Appends steps under a fencing token at the expected position.
pub(crate) async fn append_steps(
    tx: &Transaction<'_>,
    tenant: &str,
    session: SessionId,
    expected_step: u64,
    token: FencingToken,
    steps: &[EncodedStep],
) -> Result<u64, StoreError> {
    let (current, now) = lock_lease(tx, tenant, session).await?;
    leases::check_fence(current.as_ref(), token, now)?;
    let id = session.to_string();
    let next: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(step) + 1, 0) FROM agent_journal WHERE session_id = $1",
            &[&id],
        )
        .await?
        .try_get(0)?;
    journal::check_next_step(u(next), expected_step)?;
    // One statement for the whole batch: parallel arrays, unnested.
    let count = steps.len() as i64;
    let tasks: Vec<&str> = steps.iter().map(|s| s.task.as_str()).collect();
    let kinds: Vec<&str> = steps.iter().map(|s| s.kind).collect();
    let call_ids: Vec<Option<&str>> = steps.iter().map(|s| s.call_id.as_deref()).collect();
    let payloads: Vec<&str> = steps.iter().map(|s| s.payload.as_str()).collect();
    let params: [&(dyn ToSql + Sync); 9] = [
        &id,
        &(expected_step as i64),
        &count,
        &tasks,
        &kinds,
        &call_ids,
        &payloads,
        &(token.0 as i64),
        &(now as i64),
    ];
    tx.execute(
        "INSERT INTO agent_journal
         (session_id, step, task_id, kind, call_id, payload, token, recorded_at_ms)
         SELECT $1, $2 + i - 1, ($4::text[])[i], ($5::text[])[i], ($6::text[])[i],
                ($7::text[])[i], $8, $9
         FROM generate_series(1, $3::bigint) AS i",
        &params,
    )
    .await?;
    Ok(expected_step + steps.len() as u64)
}

/// Reads a session's journal from a step on.
pub(crate) async fn read_journal(
    tx: &Transaction<'_>,
    tenant: &str,
    session: SessionId,
    from: u64,
    limit: u32,
) -> Result<Vec<JournalEntry>, StoreError> {
    let id = session.to_string();
    if tx
        .query_opt(
            "SELECT 1 FROM agent_sessions WHERE id = $1 AND tenant = $2",
            &[&id, &tenant],
        )
        .await?
        .is_none()
    {
        return Err(sessions::not_found(session));
    }
    let rows = tx
        .query(
            "SELECT step, task_id, kind, call_id, payload, token, recorded_at_ms
             FROM agent_journal WHERE session_id = $1 AND step >= $2 ORDER BY step LIMIT $3",
            &[
                &id,
                &(from.min(i64::MAX as u64) as i64),
                &i64::from(journal::read_limit(limit)),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let task: String = row.try_get(1)?;
            let kind: String = row.try_get(2)?;
            let payload: String = row.try_get(4)?;
            journal::decode_entry(
                row.try_get(0)?,
                &task,
                &kind,
                row.try_get(3)?,
                &payload,
                row.try_get(5)?,
                row.try_get(6)?,
            )
        })
        .collect()
}

const ENTRY_COLUMNS: &str = "key, value, version, written_by_agent, written_by_tool, updated_at_ms";

fn entry_from(row: &tokio_postgres::Row) -> Result<MemoryEntry, StoreError> {
    Ok(MemoryEntry {
        key: row.try_get(0)?,
        value: row.try_get(1)?,
        version: u(row.try_get(2)?),
        written_by_agent: row.try_get(3)?,
        written_by_tool: row.try_get(4)?,
        updated_at_ms: u(row.try_get(5)?),
    })
}

/// Reads one entry.
pub(crate) async fn get_memory(
    tx: &Transaction<'_>,
    tenant: &str,
    ns: &Namespace,
    key: &str,
) -> Result<Option<MemoryEntry>, StoreError> {
    memory::check_key(key)?;
    let (kind, name) = ns.columns()?;
    tx.query_opt(
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM agent_memory
             WHERE tenant = $1 AND ns_kind = $2 AND ns_name = $3 AND key = $4
               AND value IS NOT NULL"
        ),
        &[&tenant, &kind, &name, &key],
    )
    .await?
    .as_ref()
    .map(entry_from)
    .transpose()
}

/// What a memory write found, under the row's lock: the live version, the row's version, and
/// the bytes the live entry counts against its namespace.
async fn lock_entry(
    tx: &Transaction<'_>,
    tenant: &str,
    kind: &str,
    name: &str,
    key: &str,
) -> Result<Option<(Option<u64>, u64, u64)>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT value IS NOT NULL, version,
                    COALESCE(octet_length(key) + octet_length(value), 0)::bigint
             FROM agent_memory
             WHERE tenant = $1 AND ns_kind = $2 AND ns_name = $3 AND key = $4 FOR UPDATE",
            &[&tenant, &kind, &name, &key],
        )
        .await?;
    Ok(match row {
        Some(row) => {
            let live: bool = row.try_get(0)?;
            let version = u(row.try_get(1)?);
            let bytes = u(row.try_get(2)?);
            Some((live.then_some(version), version, bytes))
        }
        None => None,
    })
}

/// Charges a write to its namespace's usage row in one statement, which locks the row: growth
/// past `limits` is refused (a delete passes `None`), and a concurrent writer waits for this
/// transaction and then sees its usage, so two cannot both squeeze past the limit.
#[allow(clippy::too_many_arguments)]
async fn charge_usage(
    tx: &Transaction<'_>,
    tenant: &str,
    ns: &Namespace,
    kind: &str,
    name: &str,
    grow_bytes: i64,
    grow_entries: i64,
    limits: Option<&MemoryLimits>,
) -> Result<(), StoreError> {
    let most = limits.map_or(i64::MAX, |l| {
        i64::try_from(l.max_namespace_bytes).unwrap_or(i64::MAX)
    });
    if let Some(limits) = limits {
        // A write bigger than the whole limit never fits, whatever the namespace holds.
        memory::check_namespace_room(ns, 0, grow_bytes, limits)?;
    }
    let charged = tx
        .query_opt(
            "INSERT INTO agent_memory_usage AS u (tenant, ns_kind, ns_name, bytes, entries)
             VALUES ($1, $2, $3, GREATEST($4::bigint, 0), GREATEST($5::bigint, 0))
             ON CONFLICT (tenant, ns_kind, ns_name) DO UPDATE
             SET bytes = GREATEST(u.bytes + $4::bigint, 0),
                 entries = GREATEST(u.entries + $5::bigint, 0)
             WHERE $4::bigint <= 0 OR u.bytes + $4::bigint <= $6::bigint
             RETURNING bytes",
            &[&tenant, &kind, &name, &grow_bytes, &grow_entries, &most],
        )
        .await?;
    if charged.is_some() {
        return Ok(());
    }
    let used: i64 = tx
        .query_one(
            "SELECT bytes FROM agent_memory_usage
             WHERE tenant = $1 AND ns_kind = $2 AND ns_name = $3",
            &[&tenant, &kind, &name],
        )
        .await?
        .try_get(0)?;
    let limits = limits.copied().unwrap_or(MemoryLimits::STORE_BOUNDS);
    Err(memory::namespace_full(
        ns,
        u(used),
        grow_bytes.max(0) as u64,
        &limits,
    ))
}

/// Reads a namespace's usage.
pub(crate) async fn memory_usage(
    tx: &Transaction<'_>,
    tenant: &str,
    ns: &Namespace,
) -> Result<MemoryUsage, StoreError> {
    let (kind, name) = ns.columns()?;
    let row = tx
        .query_opt(
            "SELECT bytes, entries FROM agent_memory_usage
             WHERE tenant = $1 AND ns_kind = $2 AND ns_name = $3",
            &[&tenant, &kind, &name],
        )
        .await?;
    Ok(match row {
        Some(row) => MemoryUsage {
            bytes: u(row.try_get(0)?),
            entries: u(row.try_get(1)?),
        },
        None => MemoryUsage::default(),
    })
}

/// Why one attempt at a memory write did not land.
enum MemoryRace {
    /// Refused or failed: the caller's answer.
    Store(StoreError),
    /// Another writer created the key between this one's read and its insert: roll back and
    /// try again (the key's row then exists and is locked by the read).
    LostCreateRace,
}

impl From<StoreError> for MemoryRace {
    fn from(e: StoreError) -> Self {
        MemoryRace::Store(e)
    }
}

impl From<tokio_postgres::Error> for MemoryRace {
    fn from(e: tokio_postgres::Error) -> Self {
        MemoryRace::Store(e.into())
    }
}

/// Writes (or, with `value` `None`, deletes) one entry in one attempt; returns the new version,
/// or `None` for a delete that found nothing. Bounds are checked by the caller, once.
#[allow(clippy::too_many_arguments)]
async fn write_memory_once(
    tx: &Transaction<'_>,
    tenant: &str,
    ns: &Namespace,
    key: &str,
    value: Option<&str>,
    expected_version: Option<u64>,
    writer: &memory::Writer<'_>,
    limits: &MemoryLimits,
) -> Result<Option<u64>, MemoryRace> {
    let (kind, name) = ns.columns()?;
    if let Namespace::Session(id) = ns {
        // Holds off a concurrent delete of the session until this write commits, so no entry
        // outlives its session.
        let owner = tx
            .query_opt(
                "SELECT 1 FROM agent_sessions WHERE id = $1 AND tenant = $2 FOR KEY SHARE",
                &[&id.to_string(), &tenant],
            )
            .await?;
        if owner.is_none() && value.is_some() {
            return Err(sessions::not_found(*id).into());
        }
    }
    let found = lock_entry(tx, tenant, kind, &name, key).await?;
    let (live, row_version, live_bytes) = found.unwrap_or((None, 0, 0));
    memory::check_expected(live, expected_version)?;
    if value.is_none() && live.is_none() {
        return Ok(None);
    }
    let (grow_bytes, grow_entries) = match value {
        Some(value) => (
            memory::entry_bytes(key, value) as i64 - live_bytes as i64,
            i64::from(live.is_none()),
        ),
        None => (-(live_bytes as i64), -1),
    };
    let version = (row_version + 1) as i64;
    let params: [&(dyn ToSql + Sync); 8] = [
        &tenant,
        &kind,
        &name,
        &key,
        &value,
        &version,
        &writer.agent,
        &writer.tool,
    ];
    if found.is_some() {
        tx.execute(
            &format!(
                "UPDATE agent_memory
                 SET value = $5, version = $6, written_by_agent = $7, written_by_tool = $8,
                     updated_at_ms = {NOW_MS}
                 WHERE tenant = $1 AND ns_kind = $2 AND ns_name = $3 AND key = $4"
            ),
            &params,
        )
        .await?;
    } else {
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO agent_memory
                     (tenant, ns_kind, ns_name, key, value, version, written_by_agent,
                      written_by_tool, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {NOW_MS})
                     ON CONFLICT DO NOTHING"
                ),
                &params,
            )
            .await?;
        if inserted == 0 {
            return Err(MemoryRace::LostCreateRace);
        }
    }
    // After the entry's row is locked (or inserted), always in that order, so two writers in
    // one namespace never wait on each other's locks the other way round.
    let limits = value.is_some().then_some(limits);
    charge_usage(
        tx,
        tenant,
        ns,
        kind,
        &name,
        grow_bytes,
        grow_entries,
        limits,
    )
    .await?;
    Ok(Some(version as u64))
}

/// A page of entries under a prefix.
pub(crate) async fn list_memory(
    tx: &Transaction<'_>,
    tenant: &str,
    ns: &Namespace,
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<MemoryPage, StoreError> {
    let (kind, name) = ns.columns()?;
    let scan = memory::ListScan::new(prefix, cursor, limit)?;
    let rows = tx
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM agent_memory
                 WHERE tenant = $1 AND ns_kind = $2 AND ns_name = $3
                   AND key >= $4 AND ($5::text IS NULL OR key < $5) AND key > $6
                   AND value IS NOT NULL
                 ORDER BY key LIMIT $7"
            ),
            &[
                &tenant,
                &kind,
                &name,
                &prefix,
                &scan.upper,
                &scan.after,
                &(i64::from(scan.limit) + 1),
            ],
        )
        .await?;
    let mut entries = rows.iter().map(entry_from).collect::<Result<Vec<_>, _>>()?;
    Ok(scan.page(&mut entries))
}

/// Runs one operation in a transaction of its own on a pooled connection, with the store's lock
/// timeout (a session locked for longer is refused as busy, not waited on forever), and commits
/// it.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut conn = $store.connection().await?;
        let $tx = conn.transaction().await?;
        bound_locks(&$tx).await?;
        let out = $body.await?;
        $tx.commit().await?;
        Ok(out)
    }};
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, tenant: &str, agent: &str) -> Result<Session, StoreError> {
        in_transaction!(self, |tx| create_session(&tx, tenant, agent))
    }

    async fn get_session(
        &self,
        tenant: &str,
        id: SessionId,
    ) -> Result<Option<Session>, StoreError> {
        in_transaction!(self, |tx| get_session(&tx, tenant, id))
    }

    async fn list_sessions(
        &self,
        tenant: &str,
        query: &SessionQuery<'_>,
    ) -> Result<SessionPage, StoreError> {
        in_transaction!(self, |tx| list_sessions(&tx, tenant, query))
    }

    async fn set_session_status(
        &self,
        tenant: &str,
        id: SessionId,
        status: SessionStatus,
    ) -> Result<Session, StoreError> {
        in_transaction!(self, |tx| set_session_status(&tx, tenant, id, status))
    }

    async fn delete_session(&self, tenant: &str, id: SessionId) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| delete_session(&tx, tenant, id))
    }
}

#[async_trait]
impl SessionLeases for PgStore {
    async fn acquire_lease(
        &self,
        tenant: &str,
        session: SessionId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let ttl_ms = leases::check_grant(holder, ttl)?;
        in_transaction!(self, |tx| acquire_lease(
            &tx, tenant, session, holder, ttl_ms
        ))
    }

    async fn renew_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let ttl_ms = leases::check_grant(&lease.holder, ttl)?;
        in_transaction!(self, |tx| renew_lease(&tx, tenant, lease, ttl_ms))
    }

    async fn release_lease(&self, tenant: &str, lease: &Lease) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| release_lease(&tx, tenant, lease))
    }

    async fn current_lease(
        &self,
        tenant: &str,
        session: SessionId,
    ) -> Result<Option<Lease>, StoreError> {
        in_transaction!(self, |tx| current_lease(&tx, tenant, session))
    }

    async fn orphaned_sessions(&self, limit: u32) -> Result<Vec<Orphan>, StoreError> {
        let client = self.connection().await?;
        orphaned_sessions(&client, limit).await
    }
}

#[async_trait]
impl SessionJournal for PgStore {
    async fn append_steps(
        &self,
        tenant: &str,
        session: SessionId,
        expected_step: u64,
        token: FencingToken,
        steps: &[NewStep],
    ) -> Result<u64, StoreError> {
        let steps = journal::encode_steps(steps)?;
        in_transaction!(self, |tx| append_steps(
            &tx,
            tenant,
            session,
            expected_step,
            token,
            &steps
        ))
    }

    async fn read_journal(
        &self,
        tenant: &str,
        session: SessionId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        in_transaction!(self, |tx| read_journal(&tx, tenant, session, from, limit))
    }
}

impl PgStore {
    /// One memory write, retried when it loses the race to create its key.
    #[allow(clippy::too_many_arguments)]
    async fn write_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
        value: Option<&str>,
        expected_version: Option<u64>,
        writer: &Writer<'_>,
        limits: &MemoryLimits,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.connection().await?;
        for _ in 0..CREATE_RACE_RETRIES {
            let tx = conn.transaction().await?;
            bound_locks(&tx).await?;
            let once = write_memory_once(
                &tx,
                tenant,
                ns,
                key,
                value,
                expected_version,
                writer,
                limits,
            );
            match once.await {
                Ok(version) => {
                    tx.commit().await?;
                    return Ok(version);
                }
                Err(MemoryRace::Store(e)) => return Err(e),
                // Dropping the transaction rolls it back; the next attempt reads the new row.
                Err(MemoryRace::LostCreateRace) => {}
            }
        }
        Err(StoreError::Busy(format!(
            "memory key `{key}` kept being created by other writers; try again"
        )))
    }
}

#[async_trait]
impl MemoryStore for PgStore {
    async fn get_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
    ) -> Result<Option<MemoryEntry>, StoreError> {
        in_transaction!(self, |tx| get_memory(&tx, tenant, ns, key))
    }

    async fn put_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
        writer: &Writer<'_>,
        limits: &MemoryLimits,
    ) -> Result<u64, StoreError> {
        memory::check_key(key)?;
        memory::check_value(value, writer, limits)?;
        let version = self
            .write_memory(
                tenant,
                ns,
                key,
                Some(value),
                expected_version,
                writer,
                limits,
            )
            .await?;
        version.ok_or_else(|| StoreError::Database("a memory write stored no version".into()))
    }

    async fn delete_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
        expected_version: Option<u64>,
        writer: &Writer<'_>,
    ) -> Result<bool, StoreError> {
        memory::check_key(key)?;
        memory::check_writer(writer)?;
        let deleted = self
            .write_memory(
                tenant,
                ns,
                key,
                None,
                expected_version,
                writer,
                &MemoryLimits::STORE_BOUNDS,
            )
            .await?;
        Ok(deleted.is_some())
    }

    async fn memory_usage(&self, tenant: &str, ns: &Namespace) -> Result<MemoryUsage, StoreError> {
        in_transaction!(self, |tx| memory_usage(&tx, tenant, ns))
    }

    async fn list_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemoryPage, StoreError> {
        in_transaction!(self, |tx| list_memory(
            &tx, tenant, ns, prefix, cursor, limit
        ))
    }
}
