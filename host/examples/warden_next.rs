//! Warden "version N+1", for the rolling-upgrade test: the same command line as `warden`, built
//! from the same library, shipping one more additive PostgreSQL migration. A fleet on version N
//! keeps serving after this binary migrated their database; a host on N started afterwards
//! refuses, naming the schema version.

use warden::state::postgres::migrations::{MIGRATIONS, ship_more};
use warden::state::{Migration, latest_version};

/// An additive change, as a release would ship: a new table and a new nullable column, which
/// hosts on version N neither read nor write. Its version follows the built-in ones.
fn next() -> &'static [Migration] {
    Box::leak(Box::new([Migration {
        version: latest_version(MIGRATIONS) + 1,
        name: "(warden_next) session labels",
        sql: "CREATE TABLE IF NOT EXISTS warden_next_labels (
              session_id TEXT NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
              label TEXT NOT NULL,
              PRIMARY KEY (session_id, label)
          );
          ALTER TABLE agent_sessions ADD COLUMN IF NOT EXISTS next_note TEXT;",
    }]))
}

fn main() -> std::process::ExitCode {
    let shipped = ship_more(next());
    assert!(shipped, "migrations shipped twice");
    warden::cli::main()
}
