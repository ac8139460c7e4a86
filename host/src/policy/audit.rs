//! The audit log: one record for every capability use and every denial, append-only and
//! hash-chained. Each record carries the hash of the one before it, so an edited or deleted
//! record breaks the chain, and `warden audit verify` names the first bad one. Triggers refuse
//! UPDATE and DELETE, so editing needs deliberate tampering, which the chain then reveals.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::state::StateStore;

const SCHEMA: &str = "
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
";

/// The hash before the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a capability use ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Allowed and done.
    Allowed,
    /// Refused by policy.
    Denied,
    /// Allowed, but it failed.
    Failed,
}

impl Outcome {
    /// The word stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The tenant.
    pub tenant: String,
    /// The agent.
    pub agent: String,
    /// The session.
    pub session: String,
    /// The plugin.
    pub plugin: String,
    /// The tool.
    pub tool: String,
    /// The call id.
    pub call_id: String,
    /// The capability: `call`, `dir`, `sql`, `http`, `model`, `memory`.
    pub capability: String,
    /// What was used: a source, a URL, an alias.
    pub target: String,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// More: the statement, the denial's reason, the error.
    pub detail: String,
    /// The hash of the record before.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// What a caller provides for a new record; the log adds the sequence, time and hashes.
#[derive(Debug, Clone, Default)]
pub struct NewRecord<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The agent.
    pub agent: &'a str,
    /// The session.
    pub session: &'a str,
    /// The plugin.
    pub plugin: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// The call id.
    pub call_id: &'a str,
    /// The capability.
    pub capability: &'a str,
    /// The target.
    pub target: &'a str,
    /// More detail.
    pub detail: &'a str,
}

/// A failure of the chain, found by [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first record that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// The audit log in a state store.
#[derive(Clone)]
pub struct AuditLog {
    store: StateStore,
}

impl AuditLog {
    /// Opens the log, creating its table on first use.
    pub fn open(store: StateStore) -> Result<AuditLog, String> {
        store
            .with_conn(|c| c.execute_batch(SCHEMA))
            .map_err(|e| format!("cannot create the audit log: {e}"))?;
        Ok(AuditLog { store })
    }

    /// The database file the log lives in, for messages.
    pub fn store_path(&self) -> &std::path::Path {
        self.store.path()
    }

    /// Appends one record, chained to the last one, in one transaction.
    pub fn append(&self, record: &NewRecord<'_>, outcome: Outcome) -> Result<i64, String> {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        self.store
            .with_conn(|conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let last: Option<(i64, String)> = tx
                    .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let (seq, prev_hash) = match last {
                    Some((seq, hash)) => (seq + 1, hash),
                    None => (1, GENESIS.to_string()),
                };
                let mut full = AuditRecord {
                    seq,
                    at_ms,
                    tenant: record.tenant.into(),
                    agent: record.agent.into(),
                    session: record.session.into(),
                    plugin: record.plugin.into(),
                    tool: record.tool.into(),
                    call_id: record.call_id.into(),
                    capability: record.capability.into(),
                    target: record.target.into(),
                    outcome: outcome.as_str().into(),
                    detail: record.detail.into(),
                    prev_hash,
                    hash: String::new(),
                };
                full.hash = record_hash(&full);
                tx.execute(
                    "INSERT INTO audit_log (seq, at_ms, tenant, agent, session, plugin, tool, call_id, capability, \
                     target, outcome, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        full.seq, full.at_ms, full.tenant, full.agent, full.session, full.plugin, full.tool, full.call_id,
                        full.capability, full.target, full.outcome, full.detail, full.prev_hash, full.hash
                    ],
                )?;
                tx.commit()?;
                Ok(seq)
            })
            .map_err(|e| format!("cannot write the audit log: {e}"))
    }

    /// The last `n` records, oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<AuditRecord>, String> {
        let mut records = self.query(
            "SELECT * FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            n as i64,
        )?;
        records.sort_by_key(|r| r.seq);
        Ok(records)
    }

    /// Checks every record's hash and link; returns the number of records, or the first break.
    pub fn verify(&self) -> Result<Result<u64, ChainBreak>, String> {
        let records = self.query("SELECT * FROM audit_log WHERE ?1 >= 0 ORDER BY seq", 0)?;
        let mut prev = GENESIS.to_string();
        for (expected_seq, r) in (1..).zip(records.iter()) {
            if r.seq != expected_seq {
                return Ok(Err(ChainBreak {
                    seq: expected_seq,
                    reason: format!(
                        "record {expected_seq} is missing (the next one is {})",
                        r.seq
                    ),
                }));
            }
            if r.prev_hash != prev {
                return Ok(Err(ChainBreak { seq: r.seq, reason: "its link to the record before does not match: a record was deleted or edited".into() }));
            }
            if record_hash(r) != r.hash {
                return Ok(Err(ChainBreak {
                    seq: r.seq,
                    reason: "its contents do not match its hash: the record was edited".into(),
                }));
            }
            prev = r.hash.clone();
        }
        Ok(Ok(records.len() as u64))
    }

    fn query(&self, sql: &str, arg: i64) -> Result<Vec<AuditRecord>, String> {
        self.store
            .with_conn(|conn| {
                let mut stmt = conn.prepare(sql)?;
                let rows = stmt.query_map([arg], |r| {
                    Ok(AuditRecord {
                        seq: r.get("seq")?,
                        at_ms: r.get("at_ms")?,
                        tenant: r.get("tenant")?,
                        agent: r.get("agent")?,
                        session: r.get("session")?,
                        plugin: r.get("plugin")?,
                        tool: r.get("tool")?,
                        call_id: r.get("call_id")?,
                        capability: r.get("capability")?,
                        target: r.get("target")?,
                        outcome: r.get("outcome")?,
                        detail: r.get("detail")?,
                        prev_hash: r.get("prev_hash")?,
                        hash: r.get("hash")?,
                    })
                })?;
                rows.collect()
            })
            .map_err(|e| format!("cannot read the audit log: {e}"))
    }
}

/// sha256 over the previous hash and every field, each length-prefixed so that no two
/// different records hash the same input.
fn record_hash(r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    let seq = r.seq.to_string();
    let at = r.at_ms.to_string();
    for field in [
        r.prev_hash.as_str(),
        &seq,
        &at,
        &r.tenant,
        &r.agent,
        &r.session,
        &r.plugin,
        &r.tool,
        &r.call_id,
        &r.capability,
        &r.target,
        &r.outcome,
        &r.detail,
    ] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateUrl;

    fn log() -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&StateUrl::Sqlite(dir.path().join("s.db"))).unwrap();
        (dir, AuditLog::open(store).unwrap())
    }

    fn rec(target: &str) -> NewRecord<'_> {
        NewRecord {
            capability: "sql",
            target,
            ..NewRecord::default()
        }
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_d, log) = log();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Allowed).unwrap();
        }
        assert_eq!(log.verify().unwrap(), Ok(3));
        assert_eq!(
            log.tail(2)
                .unwrap()
                .iter()
                .map(|r| r.target.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn updates_and_deletes_are_refused() {
        let (_d, log) = log();
        log.append(&rec("a"), Outcome::Allowed).unwrap();
        let err = log
            .store
            .with_conn(|c| c.execute("UPDATE audit_log SET outcome = 'x'", []))
            .unwrap_err();
        assert!(err.to_string().contains("append-only"));
        assert!(
            log.store
                .with_conn(|c| c.execute("DELETE FROM audit_log", []))
                .is_err()
        );
    }

    #[test]
    fn an_edited_record_is_named() {
        let (_d, log) = log();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Denied).unwrap();
        }
        log.store
            .with_conn(|c| c.execute_batch("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'allowed' WHERE seq = 2;"))
            .unwrap();
        let broken = log.verify().unwrap().unwrap_err();
        assert_eq!(broken.seq, 2);
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (_d, log) = log();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Allowed).unwrap();
        }
        log.store
            .with_conn(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;",
                )
            })
            .unwrap();
        assert_eq!(log.verify().unwrap().unwrap_err().seq, 2);
    }
}
