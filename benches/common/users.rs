//! The `users` table the database benches write, its model, its insertable row, and
//! an emitter whose one listener counts its events.

use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

diesel::table! { users (id) { id -> Int4, name -> Text, email -> Text, active -> Bool } }

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub active: bool,
}

#[derive(Insertable, Clone)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub active: bool,
}

/// An emitter with one listener that counts `User` events.
pub fn counting_emitter(stay_awake: Duration) -> (Emitter, Arc<AtomicU64>) {
    let emitter = Emitter::builder()
        .node_id("bench")
        .build()
        .expect("build emitter");
    let counted = Arc::new(AtomicU64::new(0));
    let c = counted.clone();
    // The listener is kept for the emitter's lifetime.
    let _sub = emitter
        .on::<User>()
        .stay_awake(stay_awake)
        .listen(move |ev: &Event<User>| {
            black_box(&ev.row);
            c.fetch_add(1, Relaxed);
        });
    (emitter, counted)
}
