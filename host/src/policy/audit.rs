//! The audit log: one record for every capability use and every denial, append-only and
//! hash-chained. Each record carries the hash of the one before it, so an edited or deleted
//! record breaks the chain, and `warden audit verify` names the first bad one. Triggers refuse
//! UPDATE and DELETE, so editing needs deliberate tampering, which the chain then reveals.
//!
//! A chain kept only in the database proves little against someone who can write the database:
//! they can drop the triggers, delete records, renumber and rehash the rest. Two anchors outside
//! the store close that:
//!
//! - an [`AuditKey`] (from `[state] audit_key_env` or `audit_key_file`) makes every record's
//!   hash an HMAC-SHA256, which nobody without the key can recompute;
//! - a [`Checkpoint`] (`warden audit checkpoint`) exports the head to a file outside the store,
//!   and [`AuditLog::check_checkpoint`] finds a chain rewritten or cut short since.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::WardenConfig;
use crate::state::{AuditSealer, AuditStore, StateStore, StoreError};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How the hash of a record signed with the audit key starts; a plain sha256 is bare hex.
pub const SIGNED_PREFIX: &str = "hmac-sha256:";

/// The shortest audit key accepted: 32 bytes, the HMAC-SHA256 block's worth of guessing.
pub const MIN_KEY_BYTES: usize = 32;

/// HMAC-SHA256 over the sha2 version the `hmac` crate is built on.
type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// A secret from outside the state store that signs every audit record (HMAC-SHA256), so a
/// rewrite by someone who can write the store but has not got the key is caught.
#[derive(Clone)]
pub struct AuditKey(Arc<[u8]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// A key from its bytes; refused when shorter than [`MIN_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Result<AuditKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the audit key is {} bytes; it needs at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                bytes.len()
            ));
        }
        Ok(AuditKey(bytes.into()))
    }

    /// The key the config names in `[state] audit_key_env` or `audit_key_file`, if any. Errors
    /// name the key to fix and never show the key itself.
    pub fn from_config(config: &WardenConfig) -> Result<Option<AuditKey>, String> {
        let state = &config.state;
        if let Some(var) = &state.audit_key_env {
            if !crate::config::is_env_var_name(var) {
                return Err(
                    "state.audit_key_env: this looks like a value, not the name of an environment \
                     variable; put the key in a variable and write its name, e.g. \"WARDEN_AUDIT_KEY\""
                        .into(),
                );
            }
            let value = std::env::var_os(var).ok_or_else(|| {
                format!("state.audit_key_env: the environment variable `{var}` is not set")
            })?;
            return AuditKey::new(value.as_encoded_bytes())
                .map(Some)
                .map_err(|e| format!("state.audit_key_env: `{var}`: {e}"));
        }
        if let Some(path) = &state.audit_key_file {
            let path = config.resolve(path);
            let bytes = read_key_file(&path).map_err(|e| {
                format!(
                    "state.audit_key_file: cannot read the audit key file {}: {e}",
                    path.display()
                )
            })?;
            // A trailing newline from `echo` or an editor is not part of the key.
            let trimmed = bytes.trim_ascii_end();
            return AuditKey::new(trimmed)
                .map(Some)
                .map_err(|e| format!("state.audit_key_file: {}: {e}", path.display()));
        }
        Ok(None)
    }

    /// A short digest that tells two keys apart without revealing either: the MAC of a fixed
    /// text. Hosts of one fleet must share the key, and compare this to check.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.mac();
        mac.update(b"warden audit key fingerprint");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

/// The largest audit key file read: a key is a few dozen bytes, and a config naming a device or
/// a huge file must not hang or fill memory.
const MAX_KEY_FILE_BYTES: u64 = 4096;

fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "it is larger than {MAX_KEY_FILE_BYTES} bytes, too large for a key"
        ));
    }
    Ok(bytes)
}

/// The head of the chain at one moment, kept outside the store (one JSON line in a file), so a
/// later rewrite or truncation of the log can be seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The newest record's sequence number (0 for an empty log).
    pub seq: i64,
    /// The newest record's hash.
    pub hash: String,
    /// When the newest record was written, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// When the checkpoint was taken, in milliseconds since the Unix epoch.
    pub taken_at_ms: i64,
}

/// What [`AuditLog::verify`] found in an intact chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainReport {
    /// How many records the log holds.
    pub records: u64,
    /// How many of them are signed with an audit key.
    pub signed: u64,
    /// Whether the signatures were checked (an audit key is configured).
    pub signatures_checked: bool,
}

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    store: Arc<dyn AuditStore>,
    location: Arc<str>,
    /// Shared by every clone, so a key set once after opening signs every writer's records.
    key: Arc<OnceLock<AuditKey>>,
}

impl AuditLog {
    /// The log in `store` (whose migrations created its table).
    pub fn open(store: &StateStore) -> AuditLog {
        AuditLog {
            store: store.audit(),
            location: Arc::from(store.location()),
            key: Arc::new(OnceLock::new()),
        }
    }

    /// Signs every record appended from now on with `key`, and checks signatures in
    /// [`AuditLog::verify`]; this log and all its clones. Set once: a second key is refused.
    pub fn use_key(&self, key: AuditKey) -> Result<(), String> {
        let set = self.key.get_or_init(|| key.clone());
        if set.0 != key.0 {
            return Err("the audit log already signs with another key".into());
        }
        Ok(())
    }

    /// Opens the log of `config`'s state store, with the audit key the config names.
    pub fn open_configured(store: &StateStore, config: &WardenConfig) -> Result<AuditLog, String> {
        let log = AuditLog::open(store);
        if let Some(key) = AuditKey::from_config(config)? {
            log.use_key(key)?;
        }
        Ok(log)
    }

    /// Where the log is stored (the file, or the URL without password), for messages.
    pub fn store_location(&self) -> &str {
        &self.location
    }

    /// The function that hashes (or signs) a record once the store has chained it.
    fn sealer(&self) -> AuditSealer {
        let key = self.key.clone();
        Arc::new(move |r: &AuditRecord| record_hash(r, key.get()))
    }

    fn draft(record: &NewRecord<'_>, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at_ms: now_ms(),
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
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// Appends one record, chained to the last one; returns its sequence number once the
    /// record is durably committed.
    pub async fn append(
        &self,
        record: &NewRecord<'_>,
        outcome: Outcome,
    ) -> Result<i64, StoreError> {
        count_denial(record, outcome);
        self.store
            .append(Self::draft(record, outcome), self.sealer())
            .await
    }

    /// Queues one record without waiting for its commit, for paths that cannot wait (Drop);
    /// a failure is logged.
    pub fn append_detached(&self, record: &NewRecord<'_>, outcome: Outcome) {
        count_denial(record, outcome);
        self.store
            .append_detached(Self::draft(record, outcome), self.sealer());
    }

    /// The last `n` records, oldest first.
    pub async fn tail(&self, n: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.store.tail(n).await
    }

    /// The last `n` records of `tenant`, oldest first.
    pub async fn tail_for_tenant(
        &self,
        tenant: &str,
        n: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.store.tail_for_tenant(tenant, n).await
    }

    /// Checks every record's hash and link; returns what it found, or the first break.
    ///
    /// Without an audit key, a signed record's contents cannot be checked (only its link). With
    /// one, every signature is checked, and once one record is signed every later record must
    /// be: an unsigned record after a signed one was written by someone without the key. Records
    /// from before the key was configured may be unsigned, but the newest must be signed, or a
    /// whole rewrite without the key would pass.
    pub async fn verify(&self) -> Result<Result<ChainReport, ChainBreak>, StoreError> {
        let records = self.store.range(i64::MIN, i64::MAX).await?;
        Ok(self.verify_records(&records))
    }

    fn verify_records(&self, records: &[AuditRecord]) -> Result<ChainReport, ChainBreak> {
        let key = self.key.get();
        let mut prev = GENESIS.to_string();
        let mut first_signed: Option<i64> = None;
        let mut signed = 0u64;
        for (expected_seq, r) in (1..).zip(records.iter()) {
            let broken = |reason: String| Err(ChainBreak { seq: r.seq, reason });
            if r.seq != expected_seq {
                return Err(ChainBreak {
                    seq: expected_seq,
                    reason: format!(
                        "record {expected_seq} is missing (the next one is {})",
                        r.seq
                    ),
                });
            }
            if r.prev_hash != prev {
                return broken(
                    "its link to the record before does not match: a record was deleted or edited"
                        .into(),
                );
            }
            let is_signed = r.hash.starts_with(SIGNED_PREFIX);
            if is_signed {
                signed += 1;
                first_signed.get_or_insert(r.seq);
                if let Some(key) = key
                    && record_hash(r, Some(key)) != r.hash
                {
                    return broken(
                        "its signature does not match its contents: the record was edited, or \
                         signed with another audit key"
                            .into(),
                    );
                }
            } else {
                if let (Some(_), Some(first)) = (key, first_signed) {
                    return broken(format!(
                        "it is not signed with the audit key, though record {first} before it is: \
                         it was written or rewritten by someone without the key"
                    ));
                }
                if record_hash(r, None) != r.hash {
                    return broken(if r.seq > 1 {
                        format!(
                            "its contents do not match its hash: this record was edited, or its \
                             link was changed to fit an edited record {}",
                            r.seq - 1
                        )
                    } else {
                        "its contents do not match its hash: the record was edited".into()
                    });
                }
            }
            prev = r.hash.clone();
        }
        if key.is_some() && first_signed.is_none() && !records.is_empty() {
            return Err(ChainBreak {
                seq: 1,
                reason: format!(
                    "none of the {} records is signed with the audit key: either no call was \
                     audited since the key was configured (the next audited call signs its \
                     record), or the log was rewritten without the key",
                    records.len()
                ),
            });
        }
        Ok(ChainReport {
            records: records.len() as u64,
            signed,
            signatures_checked: key.is_some(),
        })
    }

    /// The head of the chain now, for a checkpoint: sequence 0 and the genesis hash when empty.
    pub async fn head(&self) -> Result<Checkpoint, StoreError> {
        let last = self.store.tail(1).await?;
        let taken_at_ms = now_ms();
        Ok(match last.first() {
            Some(r) => Checkpoint {
                seq: r.seq,
                hash: r.hash.clone(),
                at_ms: r.at_ms,
                taken_at_ms,
            },
            None => Checkpoint {
                seq: 0,
                hash: GENESIS.into(),
                at_ms: 0,
                taken_at_ms,
            },
        })
    }

    /// Checks the log against a checkpoint taken earlier: the checkpointed record must still be
    /// there with the same hash. A log that ends before it was cut short; a record that differs
    /// means the chain was rewritten at or before it.
    pub async fn check_checkpoint(
        &self,
        cp: &Checkpoint,
    ) -> Result<Result<(), ChainBreak>, StoreError> {
        let head = self.head().await?;
        if head.seq < cp.seq {
            return Ok(Err(ChainBreak {
                seq: head.seq + 1,
                reason: format!(
                    "the log was cut short: a checkpoint taken at {} ms saw record {}, but the log \
                     now ends at record {}; records {} to {} were deleted",
                    cp.taken_at_ms,
                    cp.seq,
                    head.seq,
                    head.seq + 1,
                    cp.seq
                ),
            }));
        }
        if cp.seq == 0 {
            return Ok(Ok(()));
        }
        let found = self.store.range(cp.seq, cp.seq).await?;
        match found.first() {
            Some(r) if r.hash == cp.hash => Ok(Ok(())),
            _ => Ok(Err(ChainBreak {
                seq: cp.seq,
                reason: format!(
                    "it does not match the checkpoint taken at {} ms (hash {}): the log was \
                     rewritten at or before this record",
                    cp.taken_at_ms, cp.hash
                ),
            })),
        }
    }
}

/// Every denial reaches the audit log, and only here is it counted: once, by its capability,
/// whether or not its record then commits.
fn count_denial(record: &NewRecord<'_>, outcome: Outcome) {
    if outcome == Outcome::Denied {
        crate::metrics::denial(record.capability);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The record's hash: sha256, or with `key` HMAC-SHA256 (written with [`SIGNED_PREFIX`]), over
/// the previous hash and every field, each length-prefixed so that no two different records
/// hash the same input.
fn record_hash(r: &AuditRecord, key: Option<&AuditKey>) -> String {
    match key {
        None => {
            let mut h = Sha256::new();
            feed_fields(r, |bytes| h.update(bytes));
            hex::encode(h.finalize())
        }
        Some(key) => {
            let mut mac = key.mac();
            feed_fields(r, |bytes| mac.update(bytes));
            format!(
                "{SIGNED_PREFIX}{}",
                hex::encode(mac.finalize().into_bytes())
            )
        }
    }
}

fn feed_fields(r: &AuditRecord, mut update: impl FnMut(&[u8])) {
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
        update(&(field.len() as u64).to_le_bytes());
        update(field.as_bytes());
    }
}

/// Reads a checkpoint file (one JSON [`Checkpoint`] a line, as `warden audit checkpoint --out`
/// appends them); a line that is not one is an error naming its number.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the checkpoint file {}: {e}", path.display()))?;
    let mut checkpoints = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cp: Checkpoint = serde_json::from_str(line).map_err(|e| {
            format!(
                "{} line {}: not a checkpoint ({e}); `warden audit checkpoint --out FILE` writes them",
                path.display(),
                i + 1
            )
        })?;
        checkpoints.push(cp);
    }
    if checkpoints.is_empty() {
        return Err(format!(
            "{} holds no checkpoint; `warden audit checkpoint --out {}` writes one",
            path.display(),
            path.display()
        ));
    }
    Ok(checkpoints)
}

/// Appends one checkpoint line to `path` (created 0600 if missing) and flushes it to disk.
pub fn append_checkpoint(path: &Path, cp: &Checkpoint) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let line = serde_json::to_string(cp).map_err(|e| e.to_string())? + "\n";
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open the checkpoint file {}: {e}", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot write the checkpoint file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateUrl;
    use rusqlite::params;

    fn log() -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open_blocking(&StateUrl::Sqlite(dir.path().join("s.db"))).unwrap();
        (dir, AuditLog::open(&store))
    }

    /// A connection of its own to the log's file, as someone tampering with it would open.
    fn raw(dir: &tempfile::TempDir) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.path().join("s.db")).unwrap()
    }

    async fn all(log: &AuditLog) -> Vec<AuditRecord> {
        log.store.range(i64::MIN, i64::MAX).await.unwrap()
    }

    fn rec(target: &str) -> NewRecord<'_> {
        NewRecord {
            capability: "sql",
            target,
            ..NewRecord::default()
        }
    }

    #[tokio::test]
    async fn an_intact_chain_verifies() {
        let (_d, log) = log();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        assert_eq!(log.verify().await.unwrap().unwrap().records, 3);
        assert_eq!(
            log.tail(2)
                .await
                .unwrap()
                .iter()
                .map(|r| r.target.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[tokio::test]
    async fn updates_and_deletes_are_refused() {
        let (d, log) = log();
        log.append(&rec("a"), Outcome::Allowed).await.unwrap();
        let err = raw(&d)
            .call_with(|c| c.execute("UPDATE audit_log SET outcome = 'x'", []))
            .unwrap_err();
        assert!(err.to_string().contains("append-only"));
        assert!(
            raw(&d)
                .call_with(|c| c.execute("DELETE FROM audit_log", []))
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_edited_record_is_named() {
        let (d, log) = log();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Denied).await.unwrap();
        }
        raw(&d).call_with(|c| c.execute_batch("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'allowed' WHERE seq = 2;"))
            .unwrap();
        let broken = log.verify().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 2);
    }

    #[tokio::test]
    async fn a_deleted_record_is_named() {
        let (d, log) = log();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        raw(&d)
            .call_with(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;",
                )
            })
            .unwrap();
        assert_eq!(log.verify().await.unwrap().unwrap_err().seq, 2);
    }

    /// Rewrites the log as an attacker who can write the store but has no key would: drops
    /// the triggers, deletes `victims`, renumbers the rest and rehashes from the first change
    /// with plain sha256.
    async fn rewrite_without_key(log: &AuditLog, d: &tempfile::TempDir, victims: &[i64]) {
        let mut records = all(log).await;
        let first = *victims.iter().min().unwrap();
        records.retain(|r| !victims.contains(&r.seq));
        let mut prev = GENESIS.to_string();
        for (i, r) in records.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
            if r.seq >= first {
                r.prev_hash = prev.clone();
                r.hash = record_hash(r, None);
            }
            prev = r.hash.clone();
        }
        raw(d).call_with(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log;",
                )?;
                for r in &records {
                    c.execute(
                        "INSERT INTO audit_log VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                        params![
                            r.seq, r.at_ms, r.tenant, r.agent, r.session, r.plugin, r.tool, r.call_id,
                            r.capability, r.target, r.outcome, r.detail, r.prev_hash, r.hash
                        ],
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }

    fn key(byte: u8) -> AuditKey {
        AuditKey::new(&[byte; 32]).unwrap()
    }

    /// The same store opened again, as a later `warden audit verify` would, with or without the
    /// key.
    fn reopen(log: &AuditLog, key: Option<AuditKey>) -> AuditLog {
        // A fresh cell: the same store, not the key.
        let again = AuditLog {
            key: Arc::new(OnceLock::new()),
            ..log.clone()
        };
        if let Some(key) = key {
            again.use_key(key).unwrap();
        }
        again
    }

    #[tokio::test]
    async fn an_edited_record_rehashed_with_the_next_link_fixed_is_caught() {
        let (d, log) = log();
        for t in ["a", "b", "c", "d"] {
            log.append(&rec(t), Outcome::Denied).await.unwrap();
        }
        let mut records = all(&log).await;
        // Record 2 says "allowed" now, with a hash that fits, and record 3 links to it.
        records[1].outcome = "allowed".into();
        records[1].hash = record_hash(&records[1], None);
        records[2].prev_hash = records[1].hash.clone();
        raw(&d).call_with(|c| {
                c.execute_batch("DROP TRIGGER audit_log_no_update;")?;
                for r in &records[1..3] {
                    c.execute(
                        "UPDATE audit_log SET outcome = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                        params![r.outcome, r.prev_hash, r.hash, r.seq],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let broken = log.verify().await.unwrap().unwrap_err();
        // Record 3's hash covers the link it was written with, so the changed link shows there.
        assert_eq!(broken.seq, 3, "{broken:?}");
        assert!(broken.reason.contains("record 2"), "{broken:?}");
    }

    #[tokio::test]
    async fn signed_records_verify_with_the_key_and_link_without_it() {
        let (_d, log) = log();
        log.use_key(key(7)).unwrap();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        let report = log.verify().await.unwrap().unwrap();
        assert_eq!((report.records, report.signed), (3, 3));
        assert!(report.signatures_checked);
        assert!(
            log.tail(1).await.unwrap()[0]
                .hash
                .starts_with(SIGNED_PREFIX)
        );
        let plain = reopen(&log, None).verify().await.unwrap().unwrap();
        assert_eq!((plain.records, plain.signed), (3, 3));
        assert!(!plain.signatures_checked);
    }

    #[tokio::test]
    async fn a_rewrite_without_the_key_passes_plain_verify_but_not_the_keyed_one() {
        let (d, log) = log();
        log.use_key(key(7)).unwrap();
        for t in ["a", "b", "c", "d", "e"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        rewrite_without_key(&log, &d, &[3]).await;
        assert_eq!(
            reopen(&log, None).verify().await.unwrap().unwrap().records,
            4,
            "without the key the rewrite is not visible"
        );
        let broken = log.verify().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 3, "{broken:?}");
        assert!(broken.reason.contains("not signed"), "{broken:?}");
    }

    #[tokio::test]
    async fn a_whole_rewrite_without_the_key_is_caught() {
        let (d, log) = log();
        log.use_key(key(7)).unwrap();
        for t in ["a", "b", "c"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        rewrite_without_key(&log, &d, &[1]).await;
        let broken = log.verify().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 1, "{broken:?}");
        assert!(
            broken.reason.contains("none of the 2 records"),
            "{broken:?}"
        );
    }

    #[tokio::test]
    async fn a_record_signed_with_another_key_is_named() {
        let (_d, log) = log();
        log.use_key(key(7)).unwrap();
        for t in ["a", "b"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        let broken = reopen(&log, Some(key(8)))
            .verify()
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(broken.seq, 1, "{broken:?}");
        assert!(broken.reason.contains("signature"), "{broken:?}");
    }

    #[tokio::test]
    async fn records_from_before_the_key_may_be_unsigned() {
        let (_d, log) = log();
        log.append(&rec("old"), Outcome::Allowed).await.unwrap();
        let keyed = reopen(&log, Some(key(7)));
        let broken = keyed.verify().await.unwrap().unwrap_err();
        assert!(
            broken.reason.contains("no call was audited since"),
            "{broken:?}"
        );
        keyed.append(&rec("new"), Outcome::Allowed).await.unwrap();
        let report = keyed.verify().await.unwrap().unwrap();
        assert_eq!((report.records, report.signed), (2, 1));
    }

    #[tokio::test]
    async fn a_second_key_is_refused() {
        let (_d, log) = log();
        log.use_key(key(7)).unwrap();
        assert!(log.use_key(key(7)).is_ok());
        assert!(log.use_key(key(8)).is_err());
        assert!(AuditKey::new(b"short").unwrap_err().contains("at least 32"));
    }

    #[tokio::test]
    async fn a_checkpoint_catches_a_log_cut_short() {
        let (d, log) = log();
        for t in ["a", "b", "c", "d"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        let cp = log.head().await.unwrap();
        assert_eq!(cp.seq, 4);
        assert_eq!(log.check_checkpoint(&cp).await.unwrap(), Ok(()));
        raw(&d)
            .call_with(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq >= 3;",
                )
            })
            .unwrap();
        assert!(
            log.verify().await.unwrap().is_ok(),
            "the chain alone cannot see it"
        );
        let broken = log.check_checkpoint(&cp).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 3, "{broken:?}");
        assert!(broken.reason.contains("cut short"), "{broken:?}");
    }

    #[tokio::test]
    async fn a_checkpoint_catches_a_rewritten_chain() {
        let (d, log) = log();
        for t in ["a", "b", "c", "d"] {
            log.append(&rec(t), Outcome::Allowed).await.unwrap();
        }
        let cp = log.head().await.unwrap();
        log.append(&rec("e"), Outcome::Allowed).await.unwrap();
        rewrite_without_key(&log, &d, &[2]).await;
        log.append(&rec("f"), Outcome::Allowed).await.unwrap();
        assert!(
            log.verify().await.unwrap().is_ok(),
            "the chain alone cannot see it"
        );
        let broken = log.check_checkpoint(&cp).await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 4, "{broken:?}");
        assert!(broken.reason.contains("rewritten"), "{broken:?}");
    }

    #[tokio::test]
    async fn checkpoints_round_trip_through_their_file() {
        let (dir, log) = log();
        log.append(&rec("a"), Outcome::Allowed).await.unwrap();
        let path = dir.path().join("checkpoints.jsonl");
        append_checkpoint(&path, &log.head().await.unwrap()).unwrap();
        log.append(&rec("b"), Outcome::Allowed).await.unwrap();
        append_checkpoint(&path, &log.head().await.unwrap()).unwrap();
        let read = read_checkpoints(&path).unwrap();
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
        std::fs::write(&path, "{\"seq\": 1}\n").unwrap();
        assert!(read_checkpoints(&path).unwrap_err().contains("line 1"));
    }

    #[test]
    fn the_key_comes_from_a_file_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("audit.key"),
            format!("{}\n", "k".repeat(32)),
        )
        .unwrap();
        let text = "[state]\naudit_key_file = \"audit.key\"\n";
        let config = WardenConfig::parse(text, dir.path()).unwrap();
        let key = AuditKey::from_config(&config).unwrap().unwrap();
        assert_eq!(&*key.0, "k".repeat(32).as_bytes());
        std::fs::write(dir.path().join("audit.key"), "k".repeat(31)).unwrap();
        let err = crate::capabilities::check::parse(text, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state.audit_key_file") && err.contains("at least 32"),
            "{err}"
        );
    }

    /// Runs a closure on a raw connection, for the tamper tests.
    trait CallWith {
        fn call_with<T>(
            self,
            f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
        ) -> rusqlite::Result<T>;
    }

    impl CallWith for rusqlite::Connection {
        fn call_with<T>(
            mut self,
            f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
        ) -> rusqlite::Result<T> {
            f(&mut self)
        }
    }
}
