//! State stores. SQLite is the embedded default: one file, WAL, created on first use. The audit
//! log lives here now; memory and session journals join it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

/// How long one write waits for another process's lock on the store before it gives up, in
/// milliseconds. An audit append holds the write lock for well under a millisecond, so this
/// covers a crowd of concurrent writers; a store locked for longer is stuck (or held on purpose),
/// and the capability use is then refused (fail closed). A call makes several audit writes (one
/// per directory it opens, one per capability use, one for the call), each of which may wait
/// this long, so the bound stays small next to the default 10 s call limit: the 5 s it used to
/// be let a locked store eat a whole call's time.
pub const BUSY_TIMEOUT_MS: u64 = 500;

/// Where state is kept: parsed with the config, whose data it is.
pub use crate::config::StateUrl;

/// An open state store, shared by every part of the host.
#[derive(Clone)]
pub struct StateStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl StateStore {
    /// Opens (creating if needed) the store at `url`.
    pub fn open(url: &StateUrl) -> Result<StateStore, String> {
        match url {
            StateUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        format!("cannot create the state folder {}: {e}", dir.display())
                    })?;
                }
                // A plugin with a read-write directory grant over the store's folder could replace
                // the file with a link to something else; the store is never opened through one.
                let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
                let conn = Connection::open_with_flags(path, flags).map_err(|e| {
                    if path
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                    {
                        format!(
                            "cannot open the state store {}: it is a symbolic link, which Warden \
                             does not follow; point [state] url at the database file itself",
                            path.display()
                        )
                    } else {
                        format!("cannot open the state store {}: {e}", path.display())
                    }
                })?;
                conn.execute_batch(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
                ))
                .map_err(|e| format!("cannot configure the state store {}: {e}", path.display()))?;
                Ok(StateStore {
                    conn: Arc::new(Mutex::new(conn)),
                    path: path.clone(),
                })
            }
            StateUrl::Postgres(_) => {
                Err("a PostgreSQL state store is not supported yet; use sqlite://PATH".into())
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection. Callers keep the closure short: it holds the store's lock.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_store_behind_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        StateStore::open(&StateUrl::Sqlite(real.clone())).unwrap();
        let link = dir.path().join("state.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = StateStore::open(&StateUrl::Sqlite(link)).err().unwrap();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
