//! The embedded SQLite store: one file in WAL mode with `synchronous = FULL`, so a committed
//! record survives power loss.
//!
//! No connection is ever locked on a tokio worker. Every write runs on one **writer thread**,
//! fed by a channel: it takes everything queued, runs each item inside its own savepoint (one
//! failing item is rolled back alone) and commits them all in one transaction, one fsync for
//! the lot (group commit). Other processes on the same file take turns through SQLite's write
//! lock; the writer waits for it up to [`BUSY_TIMEOUT_MS`] and the items then fail as
//! [`StoreError::Busy`], so a store held by someone else refuses quickly (fail closed). Reads
//! run on a few read connections on the blocking pool.

mod agents;
mod audit;
pub mod migrations;
mod quota;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use super::{BUSY_TIMEOUT_MS, Migration, StoreError, latest_version};

/// The most writes one group commit takes from the queue.
const MAX_BATCH: usize = 512;
/// The longest the writer waits for more writes to join a group commit.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(500);
/// The most reads run at once, each on its own connection, kept open between reads: a read
/// beyond these waits for a connection instead of opening (and parsing the schema of) a new one,
/// which under 64 concurrent requests cost more than the reads themselves.
const MAX_READERS: usize = 8;

/// One queued write: run inside the batch's transaction, then told how the commit went.
trait QueuedWrite: Send {
    /// Runs the write; whether it succeeded (a failed one is rolled back to its savepoint).
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Reports the result: the commit's error if it failed, else the write's own result.
    fn finish(self: Box<Self>, commit: Option<&StoreError>);
}

struct Write<T, F, D> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    done: D,
}

impl<T, F, D> QueuedWrite for Write<T, F, D>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send,
    D: FnOnce(Result<T, StoreError>) + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(tx))).unwrap_or_else(|_| {
            Err(StoreError::Database(
                "a state store write panicked; it was rolled back".into(),
            ))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Option<&StoreError>) {
        let this = *self;
        (this.done)(match (commit, this.result) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::Closed),
        })
    }
}

type Job = Box<dyn QueuedWrite>;

/// The SQLite backend: the writer thread's queue and the read connections.
pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection that may be open at once.
    reader_slots: tokio::sync::Semaphore,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store file at `path`, and starts its writer.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the state folder {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let mut conn = open_connection(path, false)?;
        migrate(&mut conn, migrations::MIGRATIONS).map_err(|e| match e {
            StoreError::SchemaTooNew { .. } => e,
            other => StoreError::Unavailable(format!(
                "cannot prepare the state store {}: {other}",
                path.display()
            )),
        })?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("warden-state-writer".into())
            .spawn(move || run_writer(conn, queue))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the state store's writer: {e}"))
            })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            jobs,
            readers: Mutex::new(Vec::new()),
            reader_slots: tokio::sync::Semaphore::new(MAX_READERS),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer thread, inside a savepoint of the next group commit, and returns
    /// its result once that commit is durable. An error from `f` rolls back `f`'s changes only.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(f, move |result| {
            let _ = tx.send(result);
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `f` like [`SqliteStore::write`] without waiting: `done` gets its result.
    pub fn enqueue<T, F>(
        &self,
        f: F,
        done: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let job: Job = Box::new(Write {
            f: Some(f),
            result: None,
            done,
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)
    }

    /// Runs `f` on a read connection, on the blocking pool. It sees the last committed state.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _slot = self
            .reader_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let path = self.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            // Opening a connection reads the file: on the blocking pool, like the read.
            let conn = match idle {
                Some(conn) => conn,
                None => match open_connection(&path, true) {
                    Ok(conn) => conn,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = f(&conn);
            (Some(conn), result)
        })
        .await
        .map_err(|e| StoreError::Database(format!("a state store read failed: {e}")))?;
        if let Some(conn) = conn {
            let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_READERS {
                idle.push(conn);
            }
        }
        result
    }
}

/// Opens one connection to the store file, never through a symbolic link.
fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    // A plugin with a read-write directory grant over the store's folder could replace the file
    // with a link to something else; the store is never opened through one.
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
    } else {
        OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            StoreError::Unavailable(format!(
                "cannot open the state store {}: it is a symbolic link, which Warden does not \
                 follow; point [state] url at the database file itself",
                path.display()
            ))
        } else {
            StoreError::Unavailable(format!(
                "cannot open the state store {}: {e}",
                path.display()
            ))
        }
    })?;
    let pragmas = if read_only {
        format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};")
    } else {
        format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
        )
    };
    conn.execute_batch(&pragmas).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot configure the state store {}: {e}",
            path.display()
        ))
    })?;
    Ok(conn)
}

/// The schema version recorded in the store; 0 for a new (or pre-migration) store.
fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'warden_schema'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(0);
    }
    let v: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM warden_schema", [], |r| r.get(0))?;
    Ok(v.unwrap_or(0).max(0) as u32)
}

/// Applies the migrations the store lacks, in one transaction; refuses a newer store.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let binary = latest_version(migrations);
    // A read first: an up-to-date store needs no write lock, so opening works while another
    // process holds the store (its uses are then refused one by one, not the whole start).
    let found = schema_version(conn)?;
    if found > binary {
        return Err(StoreError::SchemaTooNew {
            store: found,
            binary,
        });
    }
    if found == binary {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS warden_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    )?;
    // Read again under the lock: another process may have migrated meanwhile.
    let current = schema_version(&tx)?;
    if current > binary {
        return Err(StoreError::SchemaTooNew {
            store: current,
            binary,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Database(format!("migration {} ({}) failed: {e}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO warden_schema (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, crate::state::now_ms() as i64],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The writer thread: group commits until every sender is gone.
fn run_writer(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    let mut last_batch = 1;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        // When the last commit served several writers, they are about to queue their next
        // writes: wait a moment for as many (never long), so one fsync serves them all. A lone
        // writer never waits.
        let deadline = std::time::Instant::now() + GATHER_WAIT;
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    let now = std::time::Instant::now();
                    if batch.len() >= last_batch || now >= deadline {
                        break;
                    }
                    match queue.recv_timeout(deadline - now) {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        last_batch = batch.len();
        commit_batch(&mut conn, batch);
    }
}

fn commit_batch(conn: &mut Connection, mut batch: Vec<Job>) {
    // BEGIN IMMEDIATE takes the write lock now, waiting for other processes up to the busy
    // timeout (SQLite retries SQLITE_BUSY itself within it).
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let error = StoreError::from(e);
            for job in batch {
                job.finish(Some(&error));
            }
            return;
        }
    };
    let mut failed: Vec<Option<StoreError>> = Vec::with_capacity(batch.len());
    for job in &mut batch {
        // Each write in its own savepoint: one that fails is undone alone, the rest commit.
        if let Err(e) = tx
            .prepare_cached("SAVEPOINT item")
            .and_then(|mut s| s.execute([]))
        {
            failed.push(Some(StoreError::from(e)));
            continue;
        }
        let ok = job.run(&tx);
        let end = if ok {
            "RELEASE item"
        } else {
            "ROLLBACK TO item; RELEASE item"
        };
        failed.push(tx.execute_batch(end).err().map(StoreError::from));
    }
    let commit = tx.commit().err().map(StoreError::from);
    for (job, own) in batch.into_iter().zip(failed) {
        job.finish(commit.as_ref().or(own.as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("s.db")).unwrap()
    }

    #[test]
    fn a_state_store_behind_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        SqliteStore::open(&real).unwrap();
        let link = dir.path().join("state.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = SqliteStore::open(&link).err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[tokio::test]
    async fn writes_are_durable_with_synchronous_full_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let (sync, mode) = s
            .write(|tx| {
                let sync: i64 = tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let mode: String = tx.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                Ok((sync, mode))
            })
            .await
            .unwrap();
        assert_eq!((sync, mode.as_str()), (2, "wal"), "2 is FULL");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_undone_alone_and_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(store(&dir));
        s.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.write(move |tx| {
                        tx.execute("INSERT INTO t VALUES (?1)", [i])?;
                        if i % 7 == 0 {
                            // Wrote, then failed: its row must not survive.
                            return Err(StoreError::Refused(format!("item {i}")));
                        }
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 8);
        let (rows, bad): (i64, i64) = s
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE v % 7 = 0) FROM t",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!((rows, bad), (42, 0));
    }

    #[test]
    fn an_up_to_date_store_opens_while_another_process_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(store(&dir));
        let holder = Connection::open(dir.path().join("s.db")).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // Its uses are refused one by one (fail closed), but the host starts.
        let s = store(&dir);
        drop(s);
        holder.execute_batch("ROLLBACK").unwrap();
    }

    #[tokio::test]
    async fn a_store_held_by_another_process_refuses_writes_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let holder = Connection::open(dir.path().join("s.db")).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = std::time::Instant::now();
        let err = s
            .write(|tx| Ok(tx.execute_batch("CREATE TABLE x (v)")?))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
        let waited = started.elapsed().as_millis() as u64;
        assert!(
            (BUSY_TIMEOUT_MS / 2..BUSY_TIMEOUT_MS * 4).contains(&waited),
            "{waited} ms"
        );
        holder.execute_batch("ROLLBACK").unwrap();
        s.write(|tx| Ok(tx.execute_batch("CREATE TABLE x (v)")?))
            .await
            .unwrap();
    }
}
