//! Sessions, the step journal, memory entries and session leases on SQLite. Each write runs as
//! one transaction on the store's writer thread, so a check (a compare-and-swap, a fencing
//! token, a live lease) and the write it guards are one atomic step; the decisions themselves
//! are the backend-neutral ones in [`crate::state::leases`], [`crate::state::memory`] and
//! [`crate::state::journal`], shared with PostgreSQL. Times come from this host's clock: one
//! SQLite file is served by one host.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
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
use crate::state::{StoreError, now_ms};

/// The tables, as one migration appended to the store's list.
pub(crate) const MIGRATION_SQL: &str = "
CREATE TABLE agent_sessions (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    agent         TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX agent_sessions_by_tenant ON agent_sessions (tenant, id);
CREATE INDEX agent_sessions_by_agent ON agent_sessions (tenant, agent, id);
CREATE TABLE agent_leases (
    session_id    TEXT PRIMARY KEY REFERENCES agent_sessions (id) ON DELETE CASCADE,
    holder        TEXT,
    token         INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE agent_journal (
    session_id     TEXT NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    step           INTEGER NOT NULL,
    task_id        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    call_id        TEXT,
    payload        TEXT NOT NULL,
    token          INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, step)
) WITHOUT ROWID;
CREATE TABLE agent_memory (
    tenant           TEXT NOT NULL,
    ns_kind          TEXT NOT NULL,
    ns_name          TEXT NOT NULL,
    key              TEXT NOT NULL,
    value            TEXT,
    version          INTEGER NOT NULL,
    written_by_agent TEXT NOT NULL,
    written_by_tool  TEXT NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant, ns_kind, ns_name, key)
) WITHOUT ROWID;
";

/// Migration 4: each namespace's usage (bytes of keys and values, live entries), kept in the
/// same transaction as every memory write so the namespace limit holds; counted from the
/// entries already stored. `CAST(... AS BLOB)` makes `length` count bytes, not characters.
pub(crate) const MEMORY_USAGE_SQL: &str = "
CREATE TABLE agent_memory_usage (
    tenant  TEXT NOT NULL,
    ns_kind TEXT NOT NULL,
    ns_name TEXT NOT NULL,
    bytes   INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    PRIMARY KEY (tenant, ns_kind, ns_name)
) WITHOUT ROWID;
INSERT INTO agent_memory_usage (tenant, ns_kind, ns_name, bytes, entries)
SELECT tenant, ns_kind, ns_name,
       SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), COUNT(*)
FROM agent_memory WHERE value IS NOT NULL
GROUP BY tenant, ns_kind, ns_name;
";

/// A stored integer the schema keeps non-negative.
fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// A row this build cannot read: a newer binary wrote it, or the file was edited by hand.
fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Database(format!(
        "the store holds {what} `{value}`, which this Warden cannot read"
    ))
}

const SESSION_COLUMNS: &str = "id, tenant, agent, status, created_at_ms, updated_at_ms";

fn session_row(row: &Row<'_>) -> rusqlite::Result<[String; 4]> {
    Ok([row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?])
}

fn session_from(cols: [String; 4], created: i64, updated: i64) -> Result<Session, StoreError> {
    let [id, tenant, agent, status] = cols;
    Ok(Session {
        id: id.parse().map_err(|_| corrupt("the session id", &id))?,
        status: SessionStatus::parse(&status).ok_or_else(|| corrupt("session status", &status))?,
        tenant,
        agent,
        created_at_ms: u(created),
        updated_at_ms: u(updated),
    })
}

fn read_sessions(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Session>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |row| {
        Ok((
            session_row(row)?,
            row.get::<_, i64>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;
    rows.map(|r| {
        let (cols, c, u) = r?;
        session_from(cols, c, u)
    })
    .collect()
}

/// Creates an idle session.
pub(crate) fn create_session(
    conn: &Connection,
    tenant: &str,
    agent: &str,
) -> Result<Session, StoreError> {
    sessions::check_name("tenant", tenant)?;
    sessions::check_name("agent", agent)?;
    let now = now_ms();
    let session = Session {
        id: SessionId::new(),
        tenant: tenant.to_string(),
        agent: agent.to_string(),
        status: SessionStatus::Idle,
        created_at_ms: now,
        updated_at_ms: now,
    };
    conn.prepare_cached(
        "INSERT INTO agent_sessions (id, tenant, agent, status, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        session.id.to_string(),
        tenant,
        agent,
        session.status.as_str(),
        now as i64
    ])?;
    Ok(session)
}

/// The tenant's session with that id.
pub(crate) fn get_session(
    conn: &Connection,
    tenant: &str,
    id: SessionId,
) -> Result<Option<Session>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE id = ?1 AND tenant = ?2");
    Ok(read_sessions(conn, &sql, &[&id.to_string(), &tenant])?
        .into_iter()
        .next())
}

/// A page of the tenant's sessions.
pub(crate) fn list_sessions(
    conn: &Connection,
    tenant: &str,
    query: &SessionQuery<'_>,
) -> Result<SessionPage, StoreError> {
    let limit = sessions::page_limit(query.limit);
    // The cursor is an id; ids are v7 UUIDs, whose text sorts by creation time.
    let after = query.after.map(|id| id.to_string()).unwrap_or_default();
    let fetch = i64::from(limit) + 1;
    let mut found = match query.agent {
        Some(agent) => read_sessions(
            conn,
            &format!(
                "SELECT {SESSION_COLUMNS} FROM agent_sessions
                 WHERE tenant = ?1 AND agent = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
            ),
            &[&tenant, &agent, &after, &fetch],
        )?,
        None => read_sessions(
            conn,
            &format!(
                "SELECT {SESSION_COLUMNS} FROM agent_sessions
                 WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ),
            &[&tenant, &after, &fetch],
        )?,
    };
    Ok(sessions::page(&mut found, limit))
}

/// Sets a session's status.
pub(crate) fn set_session_status(
    conn: &Connection,
    tenant: &str,
    id: SessionId,
    status: SessionStatus,
) -> Result<Session, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE agent_sessions SET status = ?1, updated_at_ms = ?2
             WHERE id = ?3 AND tenant = ?4",
        )?
        .execute(params![
            status.as_str(),
            now_ms() as i64,
            id.to_string(),
            tenant
        ])?;
    if changed == 0 {
        return Err(sessions::not_found(id));
    }
    get_session(conn, tenant, id)?.ok_or_else(|| sessions::not_found(id))
}

/// Deletes a session and everything that is only its own.
pub(crate) fn delete_session(
    conn: &Connection,
    tenant: &str,
    id: SessionId,
) -> Result<bool, StoreError> {
    if !session_exists(conn, tenant, id)? {
        return Ok(false);
    }
    let id = id.to_string();
    // Explicit deletes rather than ON DELETE CASCADE: that needs `PRAGMA foreign_keys` on the
    // writer's connection, which this module does not own.
    conn.prepare_cached("DELETE FROM agent_journal WHERE session_id = ?1")?
        .execute([&id])?;
    conn.prepare_cached("DELETE FROM agent_leases WHERE session_id = ?1")?
        .execute([&id])?;
    conn.prepare_cached(
        "DELETE FROM agent_memory WHERE tenant = ?1 AND ns_kind = 'session' AND ns_name = ?2",
    )?
    .execute([tenant, &id])?;
    conn.prepare_cached(
        "DELETE FROM agent_memory_usage
         WHERE tenant = ?1 AND ns_kind = 'session' AND ns_name = ?2",
    )?
    .execute([tenant, &id])?;
    conn.prepare_cached("DELETE FROM agent_sessions WHERE id = ?1 AND tenant = ?2")?
        .execute([&id, tenant])?;
    Ok(true)
}

fn session_exists(conn: &Connection, tenant: &str, id: SessionId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM agent_sessions WHERE id = ?1 AND tenant = ?2")?
        .exists([&id.to_string(), tenant])?)
}

/// The session's lease row, after checking the session is the tenant's.
fn lease_row(
    conn: &Connection,
    tenant: &str,
    session: SessionId,
) -> Result<Option<LeaseRow>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT l.holder, l.token, l.expires_at_ms
             FROM agent_sessions s LEFT JOIN agent_leases l ON l.session_id = s.id
             WHERE s.id = ?1 AND s.tenant = ?2",
        )?
        .query_row([&session.to_string(), tenant], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .optional()?;
    match row {
        None => Err(sessions::not_found(session)),
        Some((holder, Some(token), Some(expires))) => Ok(Some(LeaseRow {
            holder,
            token: u(token),
            expires_at_ms: u(expires),
        })),
        Some(_) => Ok(None),
    }
}

fn write_lease(
    conn: &Connection,
    session: SessionId,
    holder: Option<&str>,
    token: u64,
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO agent_leases (session_id, holder, token, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (session_id) DO UPDATE
         SET holder = excluded.holder, token = excluded.token, expires_at_ms = excluded.expires_at_ms",
    )?
    .execute(params![
        session.to_string(),
        holder,
        token as i64,
        expires_at_ms as i64
    ])?;
    Ok(())
}

/// Grants the session's lease, or says who holds it.
pub(crate) fn acquire_lease(
    conn: &Connection,
    tenant: &str,
    session: SessionId,
    holder: &str,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    let current = lease_row(conn, tenant, session)?;
    let now = now_ms();
    let token = leases::grant(current.as_ref(), holder, now)?;
    let expires_at_ms = now + ttl_ms;
    write_lease(conn, session, Some(holder), token.0, expires_at_ms)?;
    Ok(Lease {
        session,
        holder: holder.to_string(),
        token,
        expires_at_ms,
    })
}

/// Extends a held lease.
pub(crate) fn renew_lease(
    conn: &Connection,
    tenant: &str,
    lease: &Lease,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    let current = lease_row(conn, tenant, lease.session)?;
    leases::check_holder(current.as_ref(), lease)?;
    let expires_at_ms = now_ms() + ttl_ms;
    write_lease(
        conn,
        lease.session,
        Some(&lease.holder),
        lease.token.0,
        expires_at_ms,
    )?;
    Ok(Lease {
        expires_at_ms,
        ..lease.clone()
    })
}

/// Releases a held lease, keeping its token so the next grant's is larger.
pub(crate) fn release_lease(
    conn: &Connection,
    tenant: &str,
    lease: &Lease,
) -> Result<bool, StoreError> {
    let current = lease_row(conn, tenant, lease.session)?;
    if leases::check_holder(current.as_ref(), lease).is_err() {
        return Ok(false);
    }
    write_lease(conn, lease.session, None, lease.token.0, 0)?;
    Ok(true)
}

/// The session's lease as it stands.
pub(crate) fn current_lease(
    conn: &Connection,
    tenant: &str,
    session: SessionId,
) -> Result<Option<Lease>, StoreError> {
    Ok(lease_row(conn, tenant, session)?.and_then(|row| {
        Some(Lease {
            session,
            holder: row.holder?,
            token: FencingToken(row.token),
            expires_at_ms: row.expires_at_ms,
        })
    }))
}

/// Sessions left `running` with no live lease, least recently updated first.
pub(crate) fn orphaned_sessions(conn: &Connection, limit: u32) -> Result<Vec<Orphan>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT s.tenant, s.id FROM agent_sessions s
         LEFT JOIN agent_leases l ON l.session_id = s.id
         WHERE s.status = 'running' AND (l.holder IS NULL OR l.expires_at_ms <= ?1)
         ORDER BY s.updated_at_ms, s.id LIMIT ?2",
    )?;
    let rows = statement.query_map(
        rusqlite::params![now_ms() as i64, limit.min(MAX_ORPHANS)],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
    )?;
    let mut found = Vec::new();
    for row in rows {
        let (tenant, id) = row?;
        found.push(Orphan {
            tenant,
            session: id.parse()?,
        });
    }
    Ok(found)
}

/// Appends steps under a fencing token at the expected position.
pub(crate) fn append_steps(
    conn: &Connection,
    tenant: &str,
    session: SessionId,
    expected_step: u64,
    token: FencingToken,
    steps: &[EncodedStep],
) -> Result<u64, StoreError> {
    let current = lease_row(conn, tenant, session)?;
    let now = now_ms();
    leases::check_fence(current.as_ref(), token, now)?;
    let id = session.to_string();
    let next: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(step) + 1, 0) FROM agent_journal WHERE session_id = ?1",
        )?
        .query_row([&id], |row| row.get(0))?;
    journal::check_next_step(u(next), expected_step)?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO agent_journal
         (session_id, step, task_id, kind, call_id, payload, token, recorded_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (i, step) in steps.iter().enumerate() {
        insert.execute(params![
            id,
            (expected_step + i as u64) as i64,
            step.task,
            step.kind,
            step.call_id,
            step.payload,
            token.0 as i64,
            now as i64
        ])?;
    }
    Ok(expected_step + steps.len() as u64)
}

/// Reads a session's journal from a step on.
pub(crate) fn read_journal(
    conn: &Connection,
    tenant: &str,
    session: SessionId,
    from: u64,
    limit: u32,
) -> Result<Vec<JournalEntry>, StoreError> {
    if !session_exists(conn, tenant, session)? {
        return Err(sessions::not_found(session));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT step, task_id, kind, call_id, payload, token, recorded_at_ms FROM agent_journal
         WHERE session_id = ?1 AND step >= ?2 ORDER BY step LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            session.to_string(),
            from.min(i64::MAX as u64) as i64,
            i64::from(journal::read_limit(limit))
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
            ))
        },
    )?;
    rows.map(|r| {
        let (step, task, kind, call_id, payload, token, at) = r?;
        journal::decode_entry(step, &task, &kind, call_id, &payload, token, at)
    })
    .collect()
}

/// What a write finds of its key: the entry's version if it exists, the version its row
/// (perhaps a tombstone) is at, and the bytes the live entry counts against its namespace.
struct KeyState {
    live: Option<u64>,
    row_version: u64,
    live_bytes: u64,
}

fn memory_versions(
    conn: &Connection,
    tenant: &str,
    kind: &str,
    name: &str,
    key: &str,
) -> Result<KeyState, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT value IS NOT NULL, version,
                    CASE WHEN value IS NULL THEN 0
                         ELSE length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) END
             FROM agent_memory
             WHERE tenant = ?1 AND ns_kind = ?2 AND ns_name = ?3 AND key = ?4",
        )?
        .query_row([tenant, kind, name, key], |row| {
            Ok((
                row.get::<_, bool>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    Ok(match row {
        Some((live, version, bytes)) => KeyState {
            live: live.then_some(u(version)),
            row_version: u(version),
            live_bytes: u(bytes),
        },
        None => KeyState {
            live: None,
            row_version: 0,
            live_bytes: 0,
        },
    })
}

/// A namespace's usage row (zero when it has none).
fn read_usage(
    conn: &Connection,
    tenant: &str,
    kind: &str,
    name: &str,
) -> Result<MemoryUsage, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT bytes, entries FROM agent_memory_usage
             WHERE tenant = ?1 AND ns_kind = ?2 AND ns_name = ?3",
        )?
        .query_row([tenant, kind, name], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    Ok(
        row.map_or(MemoryUsage::default(), |(bytes, entries)| MemoryUsage {
            bytes: u(bytes),
            entries: u(entries),
        }),
    )
}

/// Charges a write to its namespace's usage row, refusing growth past `limits` (a delete
/// passes `None`: it only shrinks). One transaction on the one writer thread holds both the
/// check and the entry's write, so no concurrent writer slips in between.
#[allow(clippy::too_many_arguments)]
fn charge_usage(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
    kind: &str,
    name: &str,
    grow_bytes: i64,
    grow_entries: i64,
    limits: Option<&MemoryLimits>,
) -> Result<(), StoreError> {
    let used = read_usage(conn, tenant, kind, name)?;
    if let Some(limits) = limits {
        memory::check_namespace_room(ns, used.bytes, grow_bytes, limits)?;
    }
    let bytes = (used.bytes as i64).saturating_add(grow_bytes).max(0);
    let entries = (used.entries as i64).saturating_add(grow_entries).max(0);
    conn.prepare_cached(
        "INSERT INTO agent_memory_usage (tenant, ns_kind, ns_name, bytes, entries)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, ns_kind, ns_name) DO UPDATE
         SET bytes = excluded.bytes, entries = excluded.entries",
    )?
    .execute(params![tenant, kind, name, bytes, entries])?;
    Ok(())
}

/// Reads a namespace's usage.
pub(crate) fn memory_usage(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
) -> Result<MemoryUsage, StoreError> {
    let (kind, name) = ns.columns()?;
    read_usage(conn, tenant, kind, &name)
}

/// Session-private memory exists only while its session does.
fn check_namespace_owner(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
) -> Result<(), StoreError> {
    match ns {
        Namespace::Session(id) if !session_exists(conn, tenant, *id)? => {
            Err(sessions::not_found(*id))
        }
        _ => Ok(()),
    }
}

/// Reads one entry.
pub(crate) fn get_memory(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
    key: &str,
) -> Result<Option<MemoryEntry>, StoreError> {
    memory::check_key(key)?;
    let (kind, name) = ns.columns()?;
    Ok(conn
        .prepare_cached(
            "SELECT key, value, version, written_by_agent, written_by_tool, updated_at_ms
             FROM agent_memory
             WHERE tenant = ?1 AND ns_kind = ?2 AND ns_name = ?3 AND key = ?4
               AND value IS NOT NULL",
        )?
        .query_row([tenant, kind, &name, key], memory_entry)
        .optional()?)
}

fn memory_entry(row: &Row<'_>) -> rusqlite::Result<MemoryEntry> {
    Ok(MemoryEntry {
        key: row.get(0)?,
        value: row.get(1)?,
        version: u(row.get(2)?),
        written_by_agent: row.get(3)?,
        written_by_tool: row.get(4)?,
        updated_at_ms: u(row.get(5)?),
    })
}

/// Writes one entry if its version is as expected (its bounds are checked by the caller).
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_memory(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
    key: &str,
    value: &str,
    expected_version: Option<u64>,
    writer: &memory::Writer<'_>,
    limits: &MemoryLimits,
) -> Result<u64, StoreError> {
    let (kind, name) = ns.columns()?;
    check_namespace_owner(conn, tenant, ns)?;
    let found = memory_versions(conn, tenant, kind, &name, key)?;
    memory::check_expected(found.live, expected_version)?;
    let grow = memory::entry_bytes(key, value) as i64 - found.live_bytes as i64;
    let new_entry = i64::from(found.live.is_none());
    charge_usage(conn, tenant, ns, kind, &name, grow, new_entry, Some(limits))?;
    let version = found.row_version + 1;
    write_memory(conn, tenant, kind, &name, key, Some(value), version, writer)?;
    Ok(version)
}

/// Deletes one entry (leaving a tombstone at the next version) if its version is as expected
/// (its bounds are checked by the caller).
pub(crate) fn delete_memory(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
    key: &str,
    expected_version: Option<u64>,
    writer: &memory::Writer<'_>,
) -> Result<bool, StoreError> {
    let (kind, name) = ns.columns()?;
    let found = memory_versions(conn, tenant, kind, &name, key)?;
    memory::check_expected(found.live, expected_version)?;
    if found.live.is_none() {
        return Ok(false);
    }
    charge_usage(
        conn,
        tenant,
        ns,
        kind,
        &name,
        -(found.live_bytes as i64),
        -1,
        None,
    )?;
    write_memory(
        conn,
        tenant,
        kind,
        &name,
        key,
        None,
        found.row_version + 1,
        writer,
    )?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn write_memory(
    conn: &Connection,
    tenant: &str,
    kind: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
    version: u64,
    writer: &memory::Writer<'_>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO agent_memory
         (tenant, ns_kind, ns_name, key, value, version, written_by_agent, written_by_tool,
          updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant, ns_kind, ns_name, key) DO UPDATE
         SET value = excluded.value, version = excluded.version,
             written_by_agent = excluded.written_by_agent,
             written_by_tool = excluded.written_by_tool, updated_at_ms = excluded.updated_at_ms",
    )?
    .execute(params![
        tenant,
        kind,
        name,
        key,
        value,
        version as i64,
        writer.agent,
        writer.tool,
        now_ms() as i64
    ])?;
    Ok(())
}

/// A page of entries under a prefix.
pub(crate) fn list_memory(
    conn: &Connection,
    tenant: &str,
    ns: &Namespace,
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<MemoryPage, StoreError> {
    let (kind, name) = ns.columns()?;
    let scan = memory::ListScan::new(prefix, cursor, limit)?;
    let mut stmt = conn.prepare_cached(
        "SELECT key, value, version, written_by_agent, written_by_tool, updated_at_ms
         FROM agent_memory
         WHERE tenant = ?1 AND ns_kind = ?2 AND ns_name = ?3
           AND key >= ?4 AND (?5 IS NULL OR key < ?5) AND key > ?6 AND value IS NOT NULL
         ORDER BY key LIMIT ?7",
    )?;
    let mut entries = stmt
        .query_map(
            params![
                tenant,
                kind,
                name,
                prefix,
                scan.upper,
                scan.after,
                i64::from(scan.limit) + 1
            ],
            memory_entry,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(scan.page(&mut entries))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, tenant: &str, agent: &str) -> Result<Session, StoreError> {
        let (tenant, agent) = (tenant.to_string(), agent.to_string());
        self.write(move |tx| create_session(tx, &tenant, &agent))
            .await
    }

    async fn get_session(
        &self,
        tenant: &str,
        id: SessionId,
    ) -> Result<Option<Session>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |conn| get_session(conn, &tenant, id)).await
    }

    async fn list_sessions(
        &self,
        tenant: &str,
        query: &SessionQuery<'_>,
    ) -> Result<SessionPage, StoreError> {
        let tenant = tenant.to_string();
        let agent = query.agent.map(str::to_string);
        let (after, limit) = (query.after, query.limit);
        self.read(move |conn| {
            let query = SessionQuery {
                agent: agent.as_deref(),
                after,
                limit,
            };
            list_sessions(conn, &tenant, &query)
        })
        .await
    }

    async fn set_session_status(
        &self,
        tenant: &str,
        id: SessionId,
        status: SessionStatus,
    ) -> Result<Session, StoreError> {
        let tenant = tenant.to_string();
        self.write(move |tx| set_session_status(tx, &tenant, id, status))
            .await
    }

    async fn delete_session(&self, tenant: &str, id: SessionId) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.write(move |tx| delete_session(tx, &tenant, id)).await
    }
}

#[async_trait]
impl SessionLeases for SqliteStore {
    async fn acquire_lease(
        &self,
        tenant: &str,
        session: SessionId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let ttl_ms = leases::check_grant(holder, ttl)?;
        let (tenant, holder) = (tenant.to_string(), holder.to_string());
        self.write(move |tx| acquire_lease(tx, &tenant, session, &holder, ttl_ms))
            .await
    }

    async fn renew_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let ttl_ms = leases::check_grant(&lease.holder, ttl)?;
        let (tenant, lease) = (tenant.to_string(), lease.clone());
        self.write(move |tx| renew_lease(tx, &tenant, &lease, ttl_ms))
            .await
    }

    async fn release_lease(&self, tenant: &str, lease: &Lease) -> Result<bool, StoreError> {
        let (tenant, lease) = (tenant.to_string(), lease.clone());
        self.write(move |tx| release_lease(tx, &tenant, &lease))
            .await
    }

    async fn current_lease(
        &self,
        tenant: &str,
        session: SessionId,
    ) -> Result<Option<Lease>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |conn| current_lease(conn, &tenant, session))
            .await
    }

    async fn orphaned_sessions(&self, limit: u32) -> Result<Vec<Orphan>, StoreError> {
        self.read(move |conn| orphaned_sessions(conn, limit)).await
    }
}

#[async_trait]
impl SessionJournal for SqliteStore {
    async fn append_steps(
        &self,
        tenant: &str,
        session: SessionId,
        expected_step: u64,
        token: FencingToken,
        steps: &[NewStep],
    ) -> Result<u64, StoreError> {
        // Encoded here, off the writer thread: the writer only runs SQL.
        let steps = journal::encode_steps(steps)?;
        let tenant = tenant.to_string();
        self.write(move |tx| append_steps(tx, &tenant, session, expected_step, token, &steps))
            .await
    }

    async fn read_journal(
        &self,
        tenant: &str,
        session: SessionId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |conn| read_journal(conn, &tenant, session, from, limit))
            .await
    }
}

/// The parts of a write that move to the writer thread.
struct OwnedWriter {
    agent: String,
    tool: String,
}

impl OwnedWriter {
    fn new(w: &Writer<'_>) -> Self {
        OwnedWriter {
            agent: w.agent.to_string(),
            tool: w.tool.to_string(),
        }
    }

    fn borrow(&self) -> Writer<'_> {
        Writer {
            agent: &self.agent,
            tool: &self.tool,
        }
    }
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn get_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        key: &str,
    ) -> Result<Option<MemoryEntry>, StoreError> {
        let (tenant, ns, key) = (tenant.to_string(), ns.clone(), key.to_string());
        self.read(move |conn| get_memory(conn, &tenant, &ns, &key))
            .await
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
        // Bounds first, on the caller's thread: a refused value never reaches the writer.
        memory::check_key(key)?;
        memory::check_value(value, writer, limits)?;
        let limits = *limits;
        let (tenant, ns, key, value) = (
            tenant.to_string(),
            ns.clone(),
            key.to_string(),
            value.to_string(),
        );
        let writer = OwnedWriter::new(writer);
        self.write(move |tx| {
            put_memory(
                tx,
                &tenant,
                &ns,
                &key,
                &value,
                expected_version,
                &writer.borrow(),
                &limits,
            )
        })
        .await
    }

    async fn memory_usage(&self, tenant: &str, ns: &Namespace) -> Result<MemoryUsage, StoreError> {
        let (tenant, ns) = (tenant.to_string(), ns.clone());
        self.read(move |conn| memory_usage(conn, &tenant, &ns))
            .await
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
        let (tenant, ns, key) = (tenant.to_string(), ns.clone(), key.to_string());
        let writer = OwnedWriter::new(writer);
        self.write(move |tx| {
            delete_memory(tx, &tenant, &ns, &key, expected_version, &writer.borrow())
        })
        .await
    }

    async fn list_memory(
        &self,
        tenant: &str,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemoryPage, StoreError> {
        let (tenant, ns, prefix) = (tenant.to_string(), ns.clone(), prefix.to_string());
        let cursor = cursor.map(str::to_string);
        self.read(move |conn| list_memory(conn, &tenant, &ns, &prefix, cursor.as_deref(), limit))
            .await
    }
}
