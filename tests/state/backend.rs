//! One store per test on each backend, and raw SQL on it (to install a refusing trigger, or to
//! play a newer binary).

use warden::state::testing::PgTestSchema;
use warden::state::{StateStore, StateUrl};

/// A store for one test, and what must outlive it (the file's folder, or the schema).
pub struct TestStore {
    pub store: StateStore,
    pub url: StateUrl,
    /// The `[state]` URL for a `warden.toml`.
    pub config_url: String,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<PgTestSchema>,
}

/// Which backend a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl TestStore {
    /// A fresh store of `kind`; `None` when PostgreSQL is asked for and not configured (the
    /// helper has printed why).
    pub async fn new(kind: Kind, label: &str) -> Option<TestStore> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("state.db");
                let url = StateUrl::Sqlite(path.clone());
                Some(TestStore {
                    store: StateStore::open(&url).await.unwrap(),
                    url,
                    config_url: format!("sqlite://{}", path.display()),
                    _dir: Some(dir),
                    _schema: None,
                })
            }
            Kind::Postgres => {
                let schema = PgTestSchema::create(label)?;
                let url = StateUrl::Postgres(schema.url().to_string());
                Some(TestStore {
                    store: StateStore::open(&url).await.unwrap(),
                    url,
                    config_url: schema.url().to_string(),
                    _dir: None,
                    _schema: Some(schema),
                })
            }
        }
    }

    /// Another handle on the same store, as a second process would open it.
    pub async fn reopen(&self) -> StateStore {
        StateStore::open(&self.url).await.unwrap()
    }

    /// Runs `sqlite` or `postgres` (SQL text) on the store.
    pub async fn exec(&self, sqlite: &str, postgres: &str) {
        if let Some(s) = self.store.sqlite() {
            let sql = sqlite.to_string();
            s.write(move |tx| {
                tx.execute_batch(&sql)?;
                Ok(())
            })
            .await
            .unwrap();
        } else {
            let pg = self.store.postgres().unwrap();
            pg.connection()
                .await
                .unwrap()
                .batch_execute(postgres)
                .await
                .unwrap();
        }
    }
}

/// Runs `$body` (an async block over `store: TestStore`) on SQLite and on PostgreSQL, as two
/// tests named `$name::sqlite` and `$name::postgres`.
#[macro_export]
macro_rules! conformance {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($store: $crate::backend::TestStore) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let store = $crate::backend::TestStore::new(
                    $crate::backend::Kind::Sqlite,
                    stringify!($name),
                )
                .await
                .unwrap();
                case(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(store) = $crate::backend::TestStore::new(
                    $crate::backend::Kind::Postgres,
                    stringify!($name),
                )
                .await
                else {
                    return;
                };
                case(store).await;
            }
        }
    };
}
