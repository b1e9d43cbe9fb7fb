use diesel::prelude::*;
use serde::{Deserialize, Serialize};

// The facade reached under another name, as a crate re-exporting it would.
mod reexport {
    pub use diesel_emitter as emitter;
}

use reexport::emitter::Emits;

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
#[emits(crate = "reexport::emitter")]
struct User {
    id: i32,
    name: String,
}

fn main() {
    assert_eq!(<User as reexport::emitter::Emits>::TABLE, "users");
    assert_eq!(<User as reexport::emitter::Emits>::COLUMNS, &["id", "name"]);
}
