// The setup shared by the workspace's doc examples, as Diesel does with its own
// `doctest_setup.rs`. Not a module of the crate: a doc example pulls it in with a
// hidden line, `# include!("doctest_setup.rs");`, the path relative to the file
// that holds the doc comment (`../../src/doctest_setup.rs` from `emitter-core/src`,
// which runs its doc examples against this facade as a dev-dependency).
//
// It gives an example the imports it reads as written, the `users` table, its
// model `User`, and `setup()`: an emitter of node "api-1" and an
// `EmittingConnection` on an in-memory SQLite database where `users` exists.
// Examples that build their own emitter or connection use only the items.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
// Not in the prelude (generic words an application may use itself), but named by
// many examples.
#[allow(unused_imports)]
use diesel_emitter::{Event, EventMeta, Source, Subscription};

diesel::table! { users (id) { id -> Integer, name -> Text } }

#[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
}

/// An emitter of node "api-1" and a connection of it with an empty `users` table.
fn setup() -> Result<(Emitter, EmittingConnection<SqliteConnection>), Box<dyn std::error::Error>> {
    let emitter = Emitter::builder().node_id("api-1").build()?;
    let mut conn =
        EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    Ok((emitter, conn))
}
