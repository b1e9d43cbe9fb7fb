use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Emits)]
enum User {
    Active { id: i32, name: String },
    Disabled { id: i32 },
}

fn main() {}
