//! `#[derive(Emits)]` for diesel-emitter.
//!
//! Use it through the facade crate, `diesel_emitter`, next to Diesel's own derives:
//! `#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]` with
//! `#[diesel(table_name = users)]`. The examples live on the facade's re-export,
//! `diesel_emitter::Emits`, and run as its doctests: a proc-macro crate cannot
//! depend on the crate that re-exports it for its own tests.
//!
//! The derive reads the `#[diesel(...)]` attributes that Diesel's derives already
//! require, so a model states its table and columns once:
//!
//! - `table_name = path` (required) names the table's `table!` module; its last
//!   segment is `Emits::TABLE`.
//! - `column_name = x` on a field renames its column, as in `Selectable`.
//! - `primary_key(a, b)` names the key columns; `id` when absent.
//! - `check_for_backend(diesel::pg::Pg, ...)` registers the model with the listed
//!   backends only (Pg, Sqlite and Mysql); without it the model is registered with every
//!   backend the facade is built with.
//!
//! Every column is named through the table's own column type
//! (`<users::email as Column>::NAME`), so a field that is not a column of the table
//! fails to compile at that field, and `Emits::COLUMNS` holds the names the
//! database uses even when the schema renames a column with `sql_name`.
//!
//! `#[emits(skip)]` on a field (a password hash, a token) keeps its value out of
//! every payload that leaves the process: the row is published with that field reset
//! to its type's `Default`, which is what remote listeners see. Local listeners, in
//! the process that committed the write, see the row as the database returned it.
//! The field's type must implement `Default`; the error points at it otherwise.
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
