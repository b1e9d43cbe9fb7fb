//! INSERT on MySQL and MariaDB: the keys a statement gives, and its capture by
//! RETURNING (MariaDB) or by reading its rows back (MySQL), upserts included.

use super::sql::{group_end, top_level, Bind, KeyPart, Kind, RawQuery, Token};
use super::{
    columns, each_row, key_columns, key_field_indexes, key_of, key_parts, key_parts_at, key_sql,
    load_events, load_returning, read_back, MysqlPlan, Outcome, Server, Statement, Uncapturable,
    KEYS_PER_STATEMENT,
};
use crate::connection::EmittingConnection;
use crate::frames::Captured as Written;
use diesel::connection::Connection;
use diesel::mysql::MysqlConnection;
use diesel::result::QueryResult;
use diesel::row::Row;
use diesel::RunQueryDsl;
use emitter_core::Action;
use std::collections::HashSet;

/// The keys an INSERT gives: per row, the binds of the key columns.
enum InsertKeys {
    /// Every row names every key column with a bind.
    Explicit(Vec<Vec<Bind>>),
    /// No row names a key column: the server generates the (single) key.
    Generated,
    /// Some rows do, some do not, or not with plain binds.
    Unknown,
}

fn insert_keys(statement: &Statement, key_columns: &[String]) -> (InsertKeys, usize) {
    let tokens = &statement.tokens;
    // INSERT [IGNORE] INTO <table> (<columns>) VALUES (<row>), ...
    let Some(open) = tokens.iter().position(|t| t.kind == Kind::Open) else {
        return (InsertKeys::Unknown, 0);
    };
    let Some(close) = group_end(tokens, open) else {
        return (InsertKeys::Unknown, 0);
    };
    let names: Vec<&str> = tokens[open + 1..close - 1]
        .iter()
        .filter_map(|t| match &t.kind {
            Kind::Ident(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let positions: Vec<Option<usize>> = key_columns
        .iter()
        .map(|k| names.iter().position(|n| n == k))
        .collect();
    let Some(values) = top_level(tokens, close, "VALUES") else {
        return (InsertKeys::Unknown, 0);
    };
    let end = top_level(tokens, values, "ON").unwrap_or(tokens.len());
    let mut rows = Vec::new();
    let mut at = values + 1;
    while at < end {
        if tokens[at].kind != Kind::Open {
            at += 1;
            continue;
        }
        let Some(row_end) = group_end(tokens, at) else {
            return (InsertKeys::Unknown, 0);
        };
        // The row's elements, split at top-level commas.
        let mut elements: Vec<&[Token]> = Vec::new();
        let mut depth = 0usize;
        let mut start = at + 1;
        for i in at + 1..row_end - 1 {
            match tokens[i].kind {
                Kind::Open => depth += 1,
                Kind::Close => depth = depth.saturating_sub(1),
                Kind::Comma if depth == 0 => {
                    elements.push(&tokens[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        elements.push(&tokens[start..row_end - 1]);
        rows.push(elements);
        at = row_end;
    }
    let count = rows.len();
    if positions.iter().all(Option::is_none) {
        return (
            if key_columns.len() == 1 {
                InsertKeys::Generated
            } else {
                InsertKeys::Unknown
            },
            count,
        );
    }
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut key = Vec::with_capacity(positions.len());
        for position in &positions {
            let bind = position
                .and_then(|p| row.get(p))
                .and_then(|element| match element {
                    [Token {
                        kind: Kind::Bind(n),
                        ..
                    }] => statement.binds.get(*n),
                    _ => None,
                });
            match bind {
                Some(bind) if bind.value.is_some() => key.push(bind.clone()),
                _ => return (InsertKeys::Unknown, count),
            }
        }
        keys.push(key);
    }
    (InsertKeys::Explicit(keys), count)
}

/// INSERT by key: upserts on both servers, every insert on MySQL.
pub(super) fn insert(
    conn: &mut EmittingConnection<MysqlConnection>,
    statement: &Statement,
    plan: &MysqlPlan,
    server: Server,
) -> QueryResult<Outcome> {
    let tokens = &statement.tokens;
    let ignore = matches!(tokens.get(1).map(|t| &t.kind), Some(Kind::Word(w)) if w == "IGNORE");
    let key = key_sql(plan)?;
    // Diesel's `on_conflict_do_nothing()` is `ON DUPLICATE KEY UPDATE k = k` on MySQL:
    // a row that exists is left as it was, as INSERT IGNORE leaves it.
    let do_nothing =
        plan.ambiguous_upsert && assigns_keys_to_themselves(tokens, &key_columns(&key));
    let upsert = plan.ambiguous_upsert && !do_nothing;
    let ignore = ignore || do_nothing;
    let into = top_level(tokens, 0, "INTO").unwrap_or(0);
    let open = tokens
        .iter()
        .position(|t| t.kind == Kind::Open)
        .unwrap_or(into + 1);
    let table = statement.text(into + 1, open).to_owned();
    let (keys, rows_given) = insert_keys(statement, &key_columns(&key));
    // Keys of the statement that exist already, locked: their rows are updated
    // (an upsert) or left alone (INSERT IGNORE), never inserted.
    let existing: HashSet<Vec<KeyPart>> =
        match (&keys, upsert || ignore) {
            (InsertKeys::Explicit(keys), true) => {
                let mut existing = HashSet::new();
                for chunk in keys.chunks(KEYS_PER_STATEMENT) {
                    let mut query =
                        RawQuery::default().sql(&format!("SELECT {key} FROM {table} WHERE "));
                    query.push_key_list(&key, chunk);
                    query.push_sql(" FOR UPDATE");
                    each_row(&mut conn.inner, query, &mut |row| {
                        existing.insert(key_parts(&key_of(row, row.field_count())));
                    })?;
                }
                existing
            }
            (_, true) if !server.returning => return Ok(Err(Uncapturable(
                "an upsert or INSERT IGNORE without explicit keys on a server without RETURNING",
            ))),
            _ => HashSet::new(),
        };
    // With keys of its own, an upsert is run as written and read back by key, also
    // on MariaDB: its row count is then the server's (2 for a row it updated, 1 for a
    // row it left as it was), which RETURNING would replace by the number of rows.
    let by_key = (upsert || do_nothing) && matches!(keys, InsertKeys::Explicit(_));
    if do_nothing && !by_key {
        // RETURNING would return the rows left as they were too, as if inserted.
        return Ok(Err(Uncapturable(
            "an insert ignoring conflicts without explicit keys (rows inserted and rows left alone cannot be told apart)",
        )));
    }
    if server.returning && !by_key {
        // MariaDB: the rows come back with the statement.
        let mut query = RawQuery::default();
        if statement.push(&mut query, 0..tokens.len()).is_none() {
            return Ok(Err(Uncapturable("bind mismatch")));
        }
        query.push_sql(&plan.appended);
        let indexes = key_field_indexes(plan, &key_columns(&key));
        let known = matches!(keys, InsertKeys::Explicit(_)) && indexes.is_some();
        if upsert && !known {
            // Once per table and connection: the same statement would say it each time.
            if conn
                .capture_state
                .ambiguous_upserts
                .insert(plan.table.to_string())
            {
                tracing::warn!(table = %plan.table, "an upsert whose statement gives no primary key (or whose model lacks it): its rows are reported as Update");
            }
        }
        let indexes = indexes.unwrap_or_default();
        let (count, events) = load_returning(conn, plan, query, &|row| {
            let updated =
                upsert && (!known || existing.contains(&key_parts_at(row, plan, &indexes)));
            if updated {
                Action::Update
            } else {
                Action::Insert
            }
        })?;
        return Ok(Ok((count, events)));
    }
    // MySQL: run the insert, then read its rows back.
    let mut query = RawQuery::default();
    if statement.push(&mut query, 0..tokens.len()).is_none() {
        return Ok(Err(Uncapturable("bind mismatch")));
    }
    match keys {
        InsertKeys::Explicit(keys) => {
            let count = conn.inner.execute_returning_count(&query)?;
            // INSERT IGNORE wrote none of the rows that existed; an upsert updated them.
            let keys: Vec<Vec<Bind>> = keys
                .into_iter()
                .filter(|k| upsert || !existing.contains(&key_parts(k)))
                .collect();
            let Some(indexes) = key_field_indexes(plan, &key_columns(&key)) else {
                return Ok(Err(Uncapturable("the model lacks a primary key column")));
            };
            let (found, events) = read_back(conn, plan, &table, &key, &keys, &|row| {
                if existing.contains(&key_parts_at(row, plan, &indexes)) {
                    Action::Update
                } else {
                    Action::Insert
                }
            })?;
            if upsert && found < keys.len() {
                // A row that conflicted on another unique key was updated under a
                // key of its own, which only RETURNING could name.
                tracing::debug!(table = %plan.table, rows = keys.len() - found, "upserted rows conflicted on another unique key");
                conn.emitter.record_uncaptured_write(
                    &plan.table,
                    "upserted rows conflicted on a unique key other than the primary key; not reported",
                );
            }
            Ok(Ok((count, events)))
        }
        InsertKeys::Generated if !auto_increment(conn, plan, &key_columns(&key))? => Ok(Err(
            Uncapturable("the key the server fills in is not an AUTO_INCREMENT column"),
        )),
        InsertKeys::Generated if rows_given == 1 || server.consecutive_keys => {
            let count = conn.inner.execute_returning_count(&query)?;
            let mut query = RawQuery::default().sql(&format!(
                "SELECT {} FROM {table} WHERE {key} >= LAST_INSERT_ID() AND {key} < LAST_INSERT_ID() + ",
                columns(plan)
            ));
            query.push_sql(&count.to_string());
            if count == 0 {
                return Ok(Ok((0, Written::default())));
            }
            let (_, events) = load_events(conn, plan, query, &|_| Action::Insert)?;
            Ok(Ok((count, events)))
        }
        InsertKeys::Generated => Ok(Err(Uncapturable(
            "a multi-row insert of generated keys with innodb_autoinc_lock_mode = 2",
        ))),
        InsertKeys::Unknown => Ok(Err(Uncapturable(
            "an insert mixing explicit and generated keys on a server without RETURNING",
        ))),
    }
}

#[derive(diesel::QueryableByName)]
struct AutoIncrement {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    auto_increment: i64,
}

/// Whether the table's one key column is AUTO_INCREMENT, so that `LAST_INSERT_ID()`
/// names the rows an insert generated (a key filled by a DEFAULT expression leaves
/// it at an earlier statement's value). Asked once per table and connection.
fn auto_increment(
    conn: &mut EmittingConnection<MysqlConnection>,
    plan: &MysqlPlan,
    key_columns: &[String],
) -> QueryResult<bool> {
    if let Some(known) = conn.capture_state.auto_increment.get(&*plan.table) {
        return Ok(*known);
    }
    let [column] = key_columns else {
        return Ok(false);
    };
    let (schema, table) = match plan.table.rsplit_once('.') {
        Some((schema, table)) => (Some(schema.to_owned()), table.to_owned()),
        None => (None, plan.table.to_string()),
    };
    let rows: Vec<AutoIncrement> = diesel::sql_query(
        "SELECT COUNT(*) AS auto_increment FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ? \
         AND EXTRA LIKE '%auto_increment%'",
    )
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(schema)
    .bind::<diesel::sql_types::Text, _>(table)
    .bind::<diesel::sql_types::Text, _>(column)
    .load(&mut conn.inner)?;
    let known = rows.first().is_some_and(|r| r.auto_increment > 0);
    conn.capture_state
        .auto_increment
        .insert(plan.table.to_string(), known);
    Ok(known)
}

/// Whether the `ON DUPLICATE KEY UPDATE` list assigns only key columns, each to
/// itself (`` `t`.`id` = `t`.`id` ``): how Diesel renders `on_conflict_do_nothing()`.
fn assigns_keys_to_themselves(tokens: &[Token], key_columns: &[String]) -> bool {
    let Some(on) = top_level(tokens, 0, "ON") else {
        return false;
    };
    // ON DUPLICATE KEY UPDATE <assignments>
    let list = &tokens[(on + 4).min(tokens.len())..];
    let mut assignments = list.split(|t| t.kind == Kind::Comma).peekable();
    if assignments.peek().is_none() {
        return false;
    }
    assignments.all(|assignment| {
        let names: Vec<&str> = assignment
            .iter()
            .filter_map(|t| match &t.kind {
                Kind::Ident(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let others = assignment
            .iter()
            .filter(|t| !matches!(t.kind, Kind::Ident(_) | Kind::Dot))
            .count();
        // `t`.`k` = `t`.`k`, or `k` = `k`: one `=` and the same column twice.
        let column = |i: usize| names.get(i).copied();
        others == 1
            && match names.len() {
                2 => column(0) == column(1),
                4 => names[..2] == names[2..],
                _ => false,
            }
            && names
                .last()
                .is_some_and(|k| key_columns.iter().any(|c| c == k))
    })
}
