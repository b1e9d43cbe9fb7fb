//! MySQL and MariaDB: capture without `UPDATE ... RETURNING`.
//!
//! MariaDB 10.5+ has `INSERT ... RETURNING` and `DELETE ... RETURNING`, MySQL has
//! no RETURNING at all. So, inside the statement's own transaction (an implicit
//! one under autocommit):
//!
//! - **UPDATE** whose WHERE compares columns with values and reads none of the
//!   columns it sets: run it, then read its rows with the same WHERE as a locking
//!   read; its own locks keep exactly its rows matching, and the row count proves it.
//! - **Other UPDATEs**: lock the keys the statement's own `WHERE` selects (`SELECT
//!   key FROM t WHERE ... FOR UPDATE`), run it (checked by its row count), and read
//!   the rows back by key. The locked rows cannot change or vanish before the commit.
//! - **DELETE**: MariaDB appends RETURNING. MySQL reads and locks the rows
//!   (`SELECT key, columns ... FOR UPDATE`), then deletes exactly those keys.
//! - **INSERT**: MariaDB appends RETURNING. MySQL reads the rows back by the keys
//!   the statement gives, or, for generated keys, from `LAST_INSERT_ID()` over the
//!   row count when InnoDB hands the statement consecutive keys (one row, or
//!   `innodb_autoinc_lock_mode` 0 or 1); other shapes run untouched and are counted.
//! - **ON DUPLICATE KEY UPDATE**: the statement's keys that already exist are
//!   locked first; a row whose key was among them is an `Update`. With keys in the
//!   statement it runs as written and is read back by key on both servers (its row
//!   count is then the server's); `... UPDATE k = k`, Diesel's
//!   `on_conflict_do_nothing()`, reports only the rows it inserted.
//!
//! `docs/how-it-works.md` gives the reasoning and the costs.

mod by_key;
mod insert;
mod server;
pub(crate) mod sql;

use crate::classify::WriteKind;
use crate::connection::EmittingConnection;
use crate::frames::Captured as Written;
use crate::model::{MysqlDecode, MysqlRow};
use crate::plan::Plan;
use diesel::connection::{Connection, DefaultLoadingMode, LoadConnection};
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::row::{Field, Row};
use emitter_core::{Action, Audience};
use server::{server, Server};
use sql::{scan, Bind, KeyPart, Kind, Raw, Token};
pub use sql::{RawQuery, Typed};
use std::sync::Arc;

type MysqlPlan = Plan<Mysql, MysqlDecode>;

/// Keys per statement when rows are updated, deleted or read by key: well under
/// MySQL's 65,535 placeholders per prepared statement.
const KEYS_PER_STATEMENT: usize = 10_000;

/// The MySQL capture's per-connection state.
#[derive(Debug, Default)]
pub struct CaptureState {
    server: Option<Server>,
    /// Per table: whether its key is AUTO_INCREMENT (`insert::auto_increment`).
    auto_increment: std::collections::HashMap<String, bool>,
    /// Tables whose upserts were reported as updates only (logged once each).
    ambiguous_upserts: std::collections::HashSet<String>,
    /// Set by [`EmittingConnection::capture_without_returning`].
    without_returning: bool,
}

/// A statement as rendered, its tokens and its binds.
struct Statement {
    sql: String,
    tokens: Vec<Token>,
    binds: Vec<Bind>,
}

impl Statement {
    fn read<T: QueryFragment<Mysql>>(source: &T) -> QueryResult<Option<Statement>> {
        let mut builder = <Mysql as diesel::backend::Backend>::QueryBuilder::default();
        source.to_sql(&mut builder, &Mysql)?;
        let sql = builder.finish();
        let mut collector = RawBytesBindCollector::<Mysql>::new();
        source.collect_binds(&mut collector, &mut (), &Mysql)?;
        let binds: Vec<Bind> = collector
            .metadata
            .into_iter()
            .zip(collector.binds)
            .map(|(ty, value)| Bind {
                ty,
                value: value.map(Raw),
            })
            .collect();
        let Some(tokens) = scan(&sql) else {
            return Ok(None);
        };
        let placeholders = tokens
            .iter()
            .filter(|t| matches!(t.kind, Kind::Bind(_)))
            .count();
        Ok((placeholders == binds.len()).then_some(Statement { sql, tokens, binds }))
    }

    fn push(&self, query: &mut RawQuery, range: std::ops::Range<usize>) -> Option<()> {
        query.push_source(&self.sql, &self.tokens, range, &self.binds)
    }

    /// The table's text: from token `from` up to (excluding) token `to`.
    fn text(&self, from: usize, to: usize) -> &str {
        match (self.tokens.get(from), self.tokens.get(to.saturating_sub(1))) {
            (Some(a), Some(b)) if from < to => &self.sql[a.span.start..b.span.end],
            _ => "",
        }
    }
}

/// Why a write runs untouched.
struct Uncapturable(&'static str);

/// Captures `source` per the module's design, or runs it untouched (counted as a
/// capture error) when that cannot be done exactly.
pub(crate) fn capture_write<T>(
    conn: &mut EmittingConnection<MysqlConnection>,
    source: &T,
    plan: &Arc<MysqlPlan>,
) -> QueryResult<usize>
where
    T: QueryFragment<Mysql> + QueryId,
{
    let server = match server(conn) {
        Ok(mut server) => {
            server.returning &= !conn.capture_state.without_returning;
            server
        }
        Err(error) => {
            tracing::debug!(table = %plan.table, %error, "cannot read the server's version");
            conn.emitter
                .record_uncaptured_write(&plan.table, "the server's version could not be read");
            return conn.inner.execute_returning_count(source);
        }
    };
    let Some(depth) = conn.depth() else {
        // A broken transaction manager: Diesel reports it on the statement.
        return conn.inner.execute_returning_count(source);
    };
    let upsert = plan.ambiguous_upsert;
    let returning_alone =
        server.returning && !upsert && matches!(plan.kind, WriteKind::Insert | WriteKind::Delete);
    let outbox = conn.emit.reaches_remote() && conn.emitter.outbox_table().is_some();
    if depth == 0 && (!returning_alone || outbox) {
        return conn.transaction(|conn| capture_write(conn, source, plan));
    }
    if returning_alone {
        return capture_returning(conn, source, plan, depth);
    }
    let Some(statement) = Statement::read(source)? else {
        return uncaptured(conn, source, plan, Uncapturable("statement not understood"));
    };
    let result = match plan.kind {
        WriteKind::Update => by_key::update(conn, source, &statement, plan),
        WriteKind::Delete => by_key::delete(conn, source, &statement, plan),
        WriteKind::Insert => insert::insert(conn, &statement, plan, server),
    }?;
    match result {
        Ok((count, events)) => {
            conn.frames.record(depth, events, &conn.emitter);
            Ok(count)
        }
        Err(why) => uncaptured(conn, source, plan, why),
    }
}

fn uncaptured<T>(
    conn: &mut EmittingConnection<MysqlConnection>,
    source: &T,
    plan: &MysqlPlan,
    why: Uncapturable,
) -> QueryResult<usize>
where
    T: QueryFragment<Mysql> + QueryId,
{
    let count = conn.inner.execute_returning_count(source)?;
    conn.emitter.record_uncaptured_write(&plan.table, why.0);
    Ok(count)
}

/// MariaDB: INSERT or DELETE with RETURNING, as on the other backends.
fn capture_returning<T>(
    conn: &mut EmittingConnection<MysqlConnection>,
    source: &T,
    plan: &MysqlPlan,
    depth: usize,
) -> QueryResult<usize>
where
    T: QueryFragment<Mysql> + QueryId,
{
    let Some(statement) = Statement::read(source)? else {
        return uncaptured(conn, source, plan, Uncapturable("statement not understood"));
    };
    let mut query = RawQuery::default();
    if statement
        .push(&mut query, 0..statement.tokens.len())
        .is_none()
    {
        return uncaptured(conn, source, plan, Uncapturable("bind mismatch"));
    }
    query.push_sql(&plan.appended);
    let action = plan.action(None);
    let (count, events) = load_returning(conn, plan, query, &|_| action)?;
    conn.frames.record(depth, events, &conn.emitter);
    Ok(count)
}

/// Appends the events of `row`, whose last fields are the plan's columns; a row
/// that does not decode is kept as a failure, reported if its transaction commits.
fn decode_into(
    emit: Audience,
    plan: &MysqlPlan,
    row: &MysqlRow,
    action: Action,
    out: &mut Written,
) {
    for (model, args) in plan.decode_args(row.field_count(), action, emit) {
        match (model.entry.decode.decode)(row, args) {
            Ok(event) => out.events.push(event),
            Err(error) => out.fail(&plan.table, &error),
        }
    }
}

/// The first `width` fields of `row`, as binds.
fn key_of(row: &MysqlRow, width: usize) -> Vec<Bind> {
    (0..width).map(|i| field_bind(row, i)).collect()
}

fn key_sql(plan: &MysqlPlan) -> QueryResult<String> {
    let model = plan.models.first().ok_or(diesel::result::Error::NotFound)?;
    (model.entry.decode.render_key)()
}

/// The plan's columns as a select list.
fn columns(plan: &MysqlPlan) -> &str {
    plan.appended
        .trim_start_matches(" RETURNING ")
        .trim_start_matches(", ")
}

/// Calls `f` with each row of `query`, read by the server's column metadata.
///
/// Rows are handled one at a time, never kept: Diesel copies a MySQL row that is
/// still alive when the cursor moves on, and with libmariadb its copy of a DATETIME
/// is too short for Diesel to read (Diesel 2.4 panics on it).
fn each_row(
    inner: &mut MysqlConnection,
    query: RawQuery,
    f: &mut dyn FnMut(&MysqlRow),
) -> QueryResult<usize> {
    let mut count = 0;
    for row in LoadConnection::<DefaultLoadingMode>::load(inner, query)? {
        f(&row?);
        count += 1;
    }
    Ok(count)
}

/// [`each_row`] for a query that selects exactly the plan's columns: typed by the
/// model when the table has one (see `model::load_typed`).
fn each_plan_row(
    inner: &mut MysqlConnection,
    plan: &MysqlPlan,
    query: RawQuery,
    f: &mut dyn FnMut(&MysqlRow),
) -> QueryResult<usize> {
    match plan.models.as_slice() {
        [model] => (model.entry.decode.load)(inner, query, f),
        _ => each_row(inner, query, f),
    }
}

/// The events of the rows of `query`, which selects exactly the plan's columns,
/// and how many rows it returned.
fn load_events(
    conn: &mut EmittingConnection<MysqlConnection>,
    plan: &MysqlPlan,
    query: RawQuery,
    action: &dyn Fn(&MysqlRow) -> Action,
) -> QueryResult<(usize, Written)> {
    let emit = conn.emit;
    let mut written = Written::default();
    let count = each_plan_row(&mut conn.inner, plan, query, &mut |row| {
        decode_into(emit, plan, row, action(row), &mut written)
    })?;
    Ok((count, written))
}

/// [`load_events`] for a write with RETURNING (MariaDB).
///
/// libmariadb cannot run a prepared statement again once an execution of it that
/// returns rows failed (a duplicate key, say): the next execution waits for ever
/// for an answer the server never sends. Diesel keeps the statement in its cache,
/// so after such a failure the cache is emptied (and left unbounded, Diesel's
/// default); the next write prepares its statement afresh.
fn load_returning(
    conn: &mut EmittingConnection<MysqlConnection>,
    plan: &MysqlPlan,
    query: RawQuery,
    action: &dyn Fn(&MysqlRow) -> Action,
) -> QueryResult<(usize, Written)> {
    let result = load_events(conn, plan, query, action);
    if result.is_err() {
        conn.inner
            .set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        conn.inner
            .set_prepared_statement_cache_size(diesel::connection::CacheSize::Unbounded);
    }
    result
}

/// The events of the rows of `keys` (read back with the plan's columns), and how
/// many rows there were.
fn read_back(
    conn: &mut EmittingConnection<MysqlConnection>,
    plan: &MysqlPlan,
    table: &str,
    key: &str,
    keys: &[Vec<Bind>],
    action: &dyn Fn(&MysqlRow) -> Action,
) -> QueryResult<(usize, Written)> {
    let (mut count, mut events) = (0, Written::default());
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let mut query =
            RawQuery::default().sql(&format!("SELECT {} FROM {table} WHERE ", columns(plan)));
        query.push_key_list(key, chunk);
        let (n, more) = load_events(conn, plan, query, action)?;
        count += n;
        events.absorb(more);
    }
    Ok((count, events))
}

/// A statement's row count and what it wrote, or why it could not be captured.
type Outcome = Result<(usize, Written), Uncapturable>;

/// The unqualified column names of a rendered key (`` `t`.`a`, `t`.`b` ``).
fn key_columns(key: &str) -> Vec<String> {
    let Some(tokens) = scan(key) else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    let mut last = None;
    for token in tokens {
        match token.kind {
            Kind::Ident(name) => last = Some(name),
            Kind::Comma => columns.extend(last.take()),
            _ => {}
        }
    }
    columns.extend(last);
    columns
}

fn key_parts(key: &[Bind]) -> Vec<KeyPart> {
    key.iter().map(KeyPart::of).collect()
}

/// Where the key columns are among the first model's columns; `None` when the
/// model lacks one.
fn key_field_indexes(plan: &MysqlPlan, key_columns: &[String]) -> Option<Vec<usize>> {
    let model = plan.models.first()?;
    key_columns
        .iter()
        .map(|k| model.entry.columns.iter().position(|c| c == k))
        .collect()
}

/// The key of a row whose last fields are the plan's columns.
fn key_parts_at(row: &MysqlRow, plan: &MysqlPlan, indexes: &[usize]) -> Vec<KeyPart> {
    key_parts(&key_at(row, plan, indexes))
}

/// The key of a row whose last fields are the plan's columns, as binds.
fn key_at(row: &MysqlRow, plan: &MysqlPlan, indexes: &[usize]) -> Vec<Bind> {
    let offset = row.field_count().saturating_sub(plan.appended_fields);
    indexes
        .iter()
        .map(|&i| field_bind(row, offset + i))
        .collect()
}

/// Field `index` of `row`, as a bind.
fn field_bind(row: &MysqlRow, index: usize) -> Bind {
    let field = row.get(index);
    match field.as_ref().and_then(|f| f.value()) {
        Some(value) => Bind {
            ty: value.value_type(),
            value: Some(Raw(value.as_bytes().to_vec())),
        },
        None => Bind {
            ty: diesel::mysql::MysqlType::String,
            value: None,
        },
    }
}

update_then_find!(MysqlConnection);
