//! `#[derive(Emits)]` for diesel-emitter.
//!
//! Use it through the facade crate, `diesel_emitter`, next to Diesel's own derives:
//!
//! ```ignore
//! use diesel::prelude::*;
//! use diesel_emitter::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! diesel::table! { users (id) { id -> Int4, name -> Text, email -> Text } }
//!
//! #[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
//! #[diesel(table_name = users)]
//! struct User {
//!     id: i32,
//!     name: String,
//!     #[diesel(column_name = email)]
//!     mail: String,
//! }
//! ```
//!
//! The derive reads the `#[diesel(...)]` attributes that Diesel's derives already
//! require, so a model states its table and columns once:
//!
//! - `table_name = path` (required) names the table's `table!` module; its last
//!   segment is `Emits::TABLE`.
//! - `column_name = x` on a field renames its column, as in `Selectable`.
//! - `primary_key(a, b)` names the key columns; `id` when absent.
//! - `check_for_backend(diesel::pg::Pg, ...)` registers the model with the listed
//!   backends only (Pg and Sqlite); without it the model is registered with every
//!   backend the facade is built with.
//!
//! Every column is named through the table's own column type
//! (`<users::email as Column>::NAME`), so a field that is not a column of the table
//! fails to compile at that field, and `Emits::COLUMNS` holds the names the
//! database uses even when the schema renames a column with `sql_name`.
//!
//! `#[emits(crate = "path")]` on the struct tells the derive where the facade is when
//! it is re-exported under another name, as `#[serde(crate = "...")]` does for serde.

mod attr;
mod expand;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `diesel_emitter::Emits` for a Diesel model and registers the model with
/// the connection wrapper, so that writes on its table become `Event`s of it.
///
/// The model must also derive (or implement) `Queryable`, `Selectable`, `Serialize`,
/// `Deserialize` and `Clone`: events are decoded with the first two and sent over MQTT
/// with serde. See the [crate documentation](crate) for the attributes it reads.
#[proc_macro_derive(Emits, attributes(emits))]
pub fn derive_emits(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
