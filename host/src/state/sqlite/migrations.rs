//! The SQLite schema, one numbered migration at a time. Append new migrations; never edit one
//! that has shipped. Migration 1 uses `IF NOT EXISTS` so stores written before migrations
//! existed (which had the audit and quota tables already) are adopted as they are.

use crate::state::Migration;

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit log and quota usage",
        sql: "
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    tenant     TEXT NOT NULL,
    agent      TEXT NOT NULL,
    session    TEXT NOT NULL,
    plugin     TEXT NOT NULL,
    tool       TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    capability TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS model_quota_usage (
    scope           TEXT NOT NULL,
    window          TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    calls           INTEGER NOT NULL,
    tokens          INTEGER NOT NULL,
    PRIMARY KEY (scope, window, window_start_ms)
) WITHOUT ROWID;
",
    },
    Migration {
        version: 2,
        name: "quota reservations that expire",
        sql: "
CREATE TABLE quota_reservations (
    id            INTEGER PRIMARY KEY,
    tokens        INTEGER NOT NULL,
    spent         INTEGER NOT NULL DEFAULT 0,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE quota_reservation_windows (
    reservation     INTEGER NOT NULL REFERENCES quota_reservations(id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    window          TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    PRIMARY KEY (reservation, scope, window, window_start_ms)
) WITHOUT ROWID;
CREATE INDEX quota_reservation_windows_by_window
    ON quota_reservation_windows (scope, window, window_start_ms);
CREATE INDEX quota_reservations_by_expiry ON quota_reservations (expires_at_ms);
",
    },
    Migration {
        version: 3,
        name: "agent sessions, step journal, memory entries and session leases",
        sql: super::agents::MIGRATION_SQL,
    },
    Migration {
        version: 4,
        name: "memory usage per namespace, for its size limit",
        sql: super::agents::MEMORY_USAGE_SQL,
    },
    Migration {
        version: 5,
        name: "audit records by tenant, for the HTTP API's audit listing",
        sql: "CREATE INDEX IF NOT EXISTS audit_log_tenant ON audit_log (tenant, seq);",
    },
    Migration {
        version: 6,
        name: "running sessions, for the rescuer that resumes tasks no host holds",
        sql: "CREATE INDEX IF NOT EXISTS agent_sessions_running ON agent_sessions (updated_at_ms) \
              WHERE status = 'running';",
    },
];
