//! Test support, not part of Warden's interface: a PostgreSQL schema of its own for each test,
//! made from `WARDEN_TEST_POSTGRES_URL` and dropped afterwards, so runs never collide.

use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that names the test database; tests needing PostgreSQL skip without it.
pub const POSTGRES_URL_VAR: &str = "WARDEN_TEST_POSTGRES_URL";

/// A fresh schema in the test database, dropped (with everything in it) when this is dropped.
pub struct PgTestSchema {
    base_url: String,
    schema: String,
    url: String,
}

impl PgTestSchema {
    /// Creates a schema named after `label`; `None` (with a printed message) when
    /// `WARDEN_TEST_POSTGRES_URL` is not set, so the test can skip.
    pub fn create(label: &str) -> Option<PgTestSchema> {
        let Ok(base_url) = std::env::var(POSTGRES_URL_VAR) else {
            println!("skipped: set {POSTGRES_URL_VAR} to run the PostgreSQL half of {label}");
            return None;
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let schema = format!(
            "wt_{clean}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_admin(&base_url, &format!("CREATE SCHEMA \"{schema}\""));
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}options=-c%20search_path%3D{schema}");
        Some(PgTestSchema {
            base_url,
            schema,
            url,
        })
    }

    /// A URL whose connections use the schema (through `search_path`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Drop for PgTestSchema {
    fn drop(&mut self) {
        run_admin(
            &self.base_url,
            &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
        );
    }
}

/// Runs `sql` on the test database from a thread of its own, so it works in sync and async
/// tests alike. Panics (it is a test helper) when the database cannot be reached.
pub fn run_admin(url: &str, sql: &str) {
    let url = url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the test database");
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot reach {POSTGRES_URL_VAR}: {e}"));
            let driver = tokio::spawn(connection);
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("`{sql}` failed on the test database: {e}"));
            drop(client);
            let _ = driver.await;
        })
    })
    .join()
    .expect("the test database helper panicked");
}
