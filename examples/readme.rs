//! The README's example, kept compiling and runnable: `cargo run --example readme`.
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use serde::{Deserialize, Serialize};

diesel::table! { users (id) { id -> Integer, name -> Text, active -> Bool } }

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
    active: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emitter = Emitter::builder().node_id("api-1").build()?;
    let sub = emitter
        .on::<User>()
        .actions([Action::Insert, Action::Update])
        .filter(|ev| ev.row.active)
        .listen(|ev: &Event<User>| println!("{} {:?}", ev.action, ev.row));

    let path = std::env::temp_dir().join("readme-example.db");
    let mut conn = EmittingConnection::new(
        SqliteConnection::establish(&path.to_string_lossy())?,
        emitter.clone(),
    );
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN NOT NULL)",
    )?;
    diesel::insert_into(users::table)
        .values((users::name.eq("Ada"), users::active.eq(true)))
        .execute(&mut conn)?; // the listener runs once this has committed
    sub.unsubscribe();
    emitter.shutdown(std::time::Duration::from_secs(5))?;
    Ok(())
}
