//! State stores. SQLite is the embedded default: one file, WAL, created on first use. The audit
//! log lives here now; memory and session journals join it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// Where state is kept, parsed from `[state] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateUrl {
    /// `sqlite://PATH`, relative to the config's folder.
    Sqlite(PathBuf),
    /// `postgres://…`.
    Postgres(String),
}

impl StateUrl {
    /// Parses a state URL; relative SQLite paths resolve against `base_dir`.
    pub fn parse(url: &str, base_dir: &Path) -> Result<StateUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("`sqlite://` needs a path, e.g. sqlite://.warden/state.db".into());
            }
            let path = Path::new(path);
            return Ok(StateUrl::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                base_dir.join(path)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StateUrl::Postgres(url.to_string()));
        }
        Err(format!(
            "`{url}` is not a state URL; write sqlite://PATH (the default) or postgres://…"
        ))
    }
}

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
                let conn = Connection::open(path)
                    .map_err(|e| format!("cannot open the state store {}: {e}", path.display()))?;
                conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
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
