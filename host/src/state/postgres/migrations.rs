//! The PostgreSQL schema, one numbered migration at a time. Append new migrations; never edit
//! one that has shipped.

use std::sync::OnceLock;

use crate::state::Migration;

/// Migrations a build of Warden adds after [`MIGRATIONS`] (see [`ship_more`]).
static MORE: OnceLock<&'static [Migration]> = OnceLock::new();

/// Makes this process a build that ships `more` migrations after the built-in ones: how a newer
/// Warden is made from this library (the rolling-upgrade test's "version N+1",
/// `examples/warden_next.rs`). Call it before any store opens; it returns false if some were
/// shipped already. Versions must continue the built-in ones.
pub fn ship_more(more: &'static [Migration]) -> bool {
    MORE.set(more).is_ok()
}

/// The migrations this process applies: the built-in ones and any it ships more of.
pub fn all() -> Vec<Migration> {
    let mut all = MIGRATIONS.to_vec();
    all.extend_from_slice(MORE.get().copied().unwrap_or_default());
    all
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit log and quota usage",
        sql: "
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
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
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TABLE model_quota_usage (
    scope           TEXT NOT NULL,
    window_name     TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    calls           BIGINT NOT NULL,
    tokens          BIGINT NOT NULL,
    PRIMARY KEY (scope, window_name, window_start_ms)
);
",
    },
    Migration {
        version: 2,
        name: "quota reservations that expire",
        sql: "
CREATE TABLE quota_reservations (
    id            BIGSERIAL PRIMARY KEY,
    tokens        BIGINT NOT NULL,
    spent         BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE quota_reservation_windows (
    reservation     BIGINT NOT NULL REFERENCES quota_reservations(id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    window_name     TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    PRIMARY KEY (reservation, scope, window_name, window_start_ms)
);
CREATE INDEX quota_reservation_windows_by_window
    ON quota_reservation_windows (scope, window_name, window_start_ms);
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
    Migration {
        version: 7,
        name: "the hosts of a fleet, with their config fingerprints",
        sql: super::hosts::MIGRATION_SQL,
    },
];
