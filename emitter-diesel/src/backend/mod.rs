//! The per-backend glue: which registry a connection type reads, how its rows are
//! decoded, and how an upsert tells inserted rows from updated ones. The traits are
//! here, each backend's implementations in a file of its own.

use crate::connection::EmittingConnection;
use crate::model::{DecodeArgs, Registry};
use crate::plan::Plan;
use diesel::backend::Backend;
use diesel::connection::{Connection, DefaultLoadingMode, LoadConnection};
use diesel::deserialize;
use diesel::expression::QueryMetadata;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::Untyped;
use emitter_core::integration::PendingEvent;
use std::sync::Arc;

/// A Diesel connection that `EmittingConnection` can wrap: `PgConnection` (feature
/// `postgres`), `SqliteConnection` (feature `sqlite`) and `MysqlConnection` (feature
/// `mysql`, for MySQL 8.0+ and MariaDB 10.5+).
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// use diesel_emitter::connection::EmittingBackend;
///
/// // Code that serves both backends names the bound once.
/// fn waiting<C: EmittingBackend>(conn: &EmittingConnection<C>) -> usize {
///     conn.pending_events()
/// }
/// assert_eq!(waiting(&conn), 0);
/// # Ok(())
/// # }
/// ```
pub trait EmittingBackend:
    Connection<Backend: QueryMetadata<Untyped>>
    + DecodeRows<DefaultLoadingMode>
    + crate::outbox::OutboxBackend
    + 'static
{
    /// A fresh query builder, to render statements for classification.
    fn query_builder() -> <Self::Backend as Backend>::QueryBuilder;

    /// The backend value that rendering needs.
    fn backend() -> Self::Backend;

    /// Per-connection state of the backend's capture (on MySQL: what the server
    /// supports, read at the first captured write).
    #[doc(hidden)]
    type CaptureState: Default + Send + 'static;

    /// Whether a write that returns rows through `load` is captured by appending
    /// RETURNING; where it is not, such writes run untouched.
    #[doc(hidden)]
    const CAPTURE_LOADS: bool = true;

    /// Whether a repeated write that Diesel would have the server parse and plan
    /// each time runs as a statement Diesel keeps prepared instead
    /// (`plan::worth_preparing`). On PostgreSQL, where parsing and planning the
    /// capture's `RETURNING` costs the server about 13 µs a statement. Not on
    /// SQLite, where preparing is in-process and cheap: keeping its inserts prepared
    /// gained nothing measurable (`cargo bench --bench sqlite`).
    #[doc(hidden)]
    const PREPARE_REPEATED_WRITES: bool = false;

    /// Captures a write another way than by appending RETURNING to it and running
    /// it through `load`; `None` leaves it to that default.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn capture_write<T>(
        conn: &mut EmittingConnection<Self>,
        source: &T,
        plan: &Arc<Plan<Self::Backend, Self::Decode>>,
    ) -> Option<QueryResult<usize>>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        let _ = (conn, source, plan);
        None
    }
}

/// How a backend tells an upsert's inserted rows from its updated ones: SQL
/// appended to the capture columns.
#[derive(Clone, Copy, Debug)]
pub struct UpsertFlag {
    /// One boolean field, true when the row was inserted.
    pub inserted: &'static str,
    /// One integer field before it, the row's key, where the flag alone is not
    /// enough: SQLite's flag compares the rowid with the last inserted one, which is
    /// still the same when a later `VALUES` row of the same statement updates a row
    /// an earlier one inserted. A key seen before in the statement is an update.
    pub row_key: Option<&'static str>,
}

/// The `Emits` models of a connection type's backend.
pub trait ModelsOf: Connection + 'static {
    /// The backend's decode function type.
    type Decode: Copy + Send + Sync + 'static;

    /// Every `Emits` model registered for this backend.
    fn registry() -> &'static Registry<Self::Backend, Self::Decode>;

    /// SQL appended to an upsert's capture columns to tell inserted rows from
    /// updated ones. `None` when the backend cannot tell.
    const INSERTED_FLAG: Option<UpsertFlag>;

    /// The column names of `table` (rendered as in statements) as this connection
    /// sees it; `None` when there is no such table.
    fn table_columns(&mut self, table: &str) -> QueryResult<Option<Vec<String>>>;

    /// Whether the table's column `have` is the model's column `want`.
    fn same_column(have: &str, want: &str) -> bool {
        have == want
    }

    /// Whether a statement that fails inside a transaction aborts the whole
    /// transaction (PostgreSQL: its `COMMIT` then rolls back), rather than only
    /// undoing itself (SQLite).
    const FAILED_STATEMENT_ABORTS_TRANSACTION: bool = false;

    /// Runs before an upsert that carries [`INSERTED_FLAG`](Self::INSERTED_FLAG).
    fn before_flagged_upsert(&mut self) -> QueryResult<()> {
        Ok(())
    }

    /// Whether [`INSERTED_FLAG`](Self::INSERTED_FLAG) works on `table` (rendered as in
    /// statements). Asked once per table and process.
    fn supports_inserted_flag(&mut self, _table: &str) -> QueryResult<bool> {
        Ok(true)
    }
}

/// Decoding of the rows of one loading mode `B`.
pub trait DecodeRows<B>: ModelsOf + LoadConnection<B> {
    /// Decodes a model from a row.
    fn decode<'c, 'q>(
        decode: Self::Decode,
        row: &<Self as LoadConnection<B>>::Row<'c, 'q>,
        args: DecodeArgs<'_>,
    ) -> deserialize::Result<PendingEvent>
    where
        Self: 'c;

    /// Reads an upsert's row key (`UpsertFlag::row_key`) at field `index`.
    fn read_row_key<'c, 'q>(
        row: &<Self as LoadConnection<B>>::Row<'c, 'q>,
        index: usize,
    ) -> deserialize::Result<i64>
    where
        Self: 'c;

    /// Reads the upsert flag at field `index`.
    fn read_flag<'c, 'q>(
        row: &<Self as LoadConnection<B>>::Row<'c, 'q>,
        index: usize,
    ) -> deserialize::Result<bool>
    where
        Self: 'c;

    /// Whether rows stay readable after the connection runs another statement,
    /// which an implicit transaction's COMMIT is ([`detach`](Self::detach)).
    const DETACHED_ROWS: bool;

    /// Frees `rows` from the borrow of the connection that read them; `None` where
    /// rows keep borrowing it (`DETACHED_ROWS` is false).
    fn detach<'c, 'q>(
        rows: Vec<<Self as LoadConnection<B>>::Row<'c, 'q>>,
    ) -> Option<Vec<<Self as LoadConnection<B>>::Row<'static, 'static>>>
    where
        Self: 'c;

    /// The rows [`detach`](Self::detach) freed, as the cursor hands them out.
    fn attach<'c, 'q>(
        rows: Vec<<Self as LoadConnection<B>>::Row<'static, 'static>>,
    ) -> Vec<<Self as LoadConnection<B>>::Row<'c, 'q>>
    where
        Self: 'c;
}

/// A row of a backend's `table_columns` query: one per column, or a single row
/// with no name for a table without columns or none at all.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
#[derive(diesel::QueryableByName)]
struct ColumnName {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
}

#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
fn columns_found(rows: Vec<ColumnName>) -> Option<Vec<String>> {
    if !rows.first().is_some_and(|r| r.found) {
        return None;
    }
    Some(rows.into_iter().filter_map(|r| r.name).collect())
}

/// Every backend decodes through the function its registry entries hold (on
/// MySQL, the entry's `decode` field: `call: decode`), over the concrete row type
/// of the loading mode.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
macro_rules! decode_rows {
    ($conn:ty, $mode:ty, $decode:ty $(, call: $field:ident)?, detached: true) => {
        decode_rows!(@impl $conn, $mode, $decode, [$($field)?], true, |rows| Some(rows), |rows| rows);
    };
    // The rows borrow the statement, which the connection owns: they cannot be
    // detached, and so are never attached either.
    ($conn:ty, $mode:ty, $decode:ty $(, call: $field:ident)?, detached: false) => {
        decode_rows!(
            @impl $conn,
            $mode,
            $decode,
            [$($field)?],
            false,
            |_rows| None,
            |_rows| Vec::new()
        );
    };
    (@impl $conn:ty, $mode:ty, $decode:ty, [$($field:ident)?], $detached:expr, $detach:expr, $attach:expr) => {
        impl DecodeRows<$mode> for $conn {
            fn decode<'c, 'q>(
                decode: $decode,
                row: &<Self as LoadConnection<$mode>>::Row<'c, 'q>,
                args: DecodeArgs<'_>,
            ) -> deserialize::Result<PendingEvent>
            where
                Self: 'c,
            {
                (decode $(.$field)?)(row, args)
            }

            fn read_row_key<'c, 'q>(
                row: &<Self as LoadConnection<$mode>>::Row<'c, 'q>,
                index: usize,
            ) -> deserialize::Result<i64>
            where
                Self: 'c,
            {
                diesel::row::Row::get_value::<diesel::sql_types::BigInt, i64, usize>(row, index)
            }

            fn read_flag<'c, 'q>(
                row: &<Self as LoadConnection<$mode>>::Row<'c, 'q>,
                index: usize,
            ) -> deserialize::Result<bool>
            where
                Self: 'c,
            {
                diesel::row::Row::get_value::<diesel::sql_types::Bool, bool, usize>(row, index)
            }

            const DETACHED_ROWS: bool = $detached;

            fn detach<'c, 'q>(
                rows: Vec<<Self as LoadConnection<$mode>>::Row<'c, 'q>>,
            ) -> Option<Vec<<Self as LoadConnection<$mode>>::Row<'static, 'static>>>
            where
                Self: 'c,
            {
                ($detach)(rows)
            }

            fn attach<'c, 'q>(
                rows: Vec<<Self as LoadConnection<$mode>>::Row<'static, 'static>>,
            ) -> Vec<<Self as LoadConnection<$mode>>::Row<'c, 'q>>
            where
                Self: 'c,
            {
                ($attach)(rows)
            }
        }
    };
}

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;
