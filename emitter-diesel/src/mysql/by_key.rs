//! UPDATE and DELETE on MySQL and MariaDB: the rows a statement touches, read
//! under the locks that keep them its rows (DELETE on MariaDB uses RETURNING, in
//! `capture_write`).

use super::sql::{top_level, Bind, Kind, RawQuery, Token};
use super::{
    columns, decode_into, each_plan_row, each_row, key_at, key_columns, key_field_indexes, key_of,
    key_sql, load_events, read_back, MysqlPlan, Outcome, Statement, Uncapturable,
    KEYS_PER_STATEMENT,
};
use crate::connection::EmittingConnection;
use crate::frames::Captured as Written;
use diesel::connection::Connection;
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::row::Row;
use emitter_core::Action;

/// UPDATE: lock the keys the WHERE selects, update, read the locked keys back.
pub(super) fn update<T: QueryFragment<Mysql> + QueryId>(
    conn: &mut EmittingConnection<MysqlConnection>,
    source: &T,
    statement: &Statement,
    plan: &MysqlPlan,
) -> QueryResult<Outcome> {
    let tokens = &statement.tokens;
    let Some(set) = top_level(tokens, 0, "SET") else {
        return Ok(Err(Uncapturable("no SET clause")));
    };
    let table = statement.text(1, set);
    let where_at = top_level(tokens, set, "WHERE");
    let set_end = where_at
        .or_else(|| top_level(tokens, set, "ORDER"))
        .or_else(|| top_level(tokens, set, "LIMIT"))
        .unwrap_or(tokens.len());
    let key = key_sql(plan)?;
    let key_columns = key_columns(&key);
    if set_assigns(tokens, set + 1..set_end, &key_columns) {
        return Ok(Err(Uncapturable("the update assigns the primary key")));
    }
    let assigned = set_columns(tokens, set + 1..set_end);
    if plain_where(tokens, set_end..tokens.len(), &assigned) {
        return update_then_read(conn, source, statement, plan, table, set_end);
    }
    let mut lock = RawQuery::default().sql(&format!("SELECT {key} FROM {table} "));
    if statement.push(&mut lock, set_end..tokens.len()).is_none() {
        return Ok(Err(Uncapturable("bind mismatch")));
    }
    lock.push_sql(" FOR UPDATE");
    let mut keys: Vec<Vec<Bind>> = Vec::new();
    each_row(&mut conn.inner, lock, &mut |row| {
        keys.push(key_of(row, row.field_count()))
    })?;
    let count = if top_level(tokens, set_end, "LIMIT").is_some() {
        // Which rows a LIMIT picks may depend on the plan: update exactly the locked ones.
        let mut count = 0;
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let mut query = RawQuery::default().sql(&format!("UPDATE {table} SET "));
            if statement.push(&mut query, set + 1..set_end).is_none() {
                return Ok(Err(Uncapturable("bind mismatch")));
            }
            query.push_sql(" WHERE ");
            query.push_key_list(&key, chunk);
            count += conn.inner.execute_returning_count(&query)?;
        }
        count
    } else {
        // As written: the same plan, and so the same locks in the same order, as
        // the lock just taken (a key list could be planned as a table scan, which
        // would lock rows other writers hold and deadlock with them).
        conn.inner.execute_returning_count(source)?
    };
    if !verified(conn, plan, count, keys.len()) {
        return Ok(Ok((count, Written::default())));
    }
    let (_, events) = read_back(conn, plan, table, &key, &keys, &|_| Action::Update)?;
    Ok(Ok((count, events)))
}

/// UPDATE whose WHERE reads none of the columns it sets and nothing that can
/// change between two statements: run it as written, then read its rows with the
/// same WHERE as a locking read. The update locked every row it scanned (under
/// REPEATABLE READ; under READ COMMITTED the ones it changed), its rows still match
/// the WHERE, so the read returns them all; it returns no other row when the
/// counts agree. One statement fewer than locking the keys first, and no key list.
fn update_then_read<T: QueryFragment<Mysql> + QueryId>(
    conn: &mut EmittingConnection<MysqlConnection>,
    source: &T,
    statement: &Statement,
    plan: &MysqlPlan,
    table: &str,
    where_at: usize,
) -> QueryResult<Outcome> {
    let count = conn.inner.execute_returning_count(source)?;
    if count == 0 {
        return Ok(Ok((0, Written::default())));
    }
    let mut read = RawQuery::default().sql(&format!("SELECT {} FROM {table} ", columns(plan)));
    if statement
        .push(&mut read, where_at..statement.tokens.len())
        .is_none()
    {
        return Ok(Err(Uncapturable("bind mismatch")));
    }
    read.push_sql(" FOR UPDATE");
    let (found, events) = load_events(conn, plan, read, &|_| Action::Update)?;
    if !verified(conn, plan, count, found) {
        return Ok(Ok((count, Written::default())));
    }
    Ok(Ok((count, events)))
}

/// The columns the assignments in `range` set.
pub(super) fn set_columns(tokens: &[Token], range: std::ops::Range<usize>) -> Vec<String> {
    let mut depth = 0usize;
    let mut expect = true;
    let mut last = None;
    let mut columns = Vec::new();
    for token in &tokens[range] {
        match &token.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Comma if depth == 0 => expect = true,
            Kind::Ident(name) if depth == 0 && expect => last = Some(name.clone()),
            Kind::Dot => {}
            Kind::Other if expect => {
                columns.extend(last.take());
                expect = false;
            }
            _ => {}
        }
    }
    columns
}

/// Whether the WHERE in `range` compares columns with values only (no function,
/// subquery, ORDER BY or LIMIT, which could select other rows a moment later) and
/// reads none of the `assigned` columns.
pub(super) fn plain_where(
    tokens: &[Token],
    range: std::ops::Range<usize>,
    assigned: &[String],
) -> bool {
    const PLAIN: &[&str] = &[
        "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "TRUE", "FALSE",
        "ESCAPE",
    ];
    !assigned.is_empty()
        && tokens[range].iter().all(|token| match &token.kind {
            Kind::Word(word) => PLAIN.contains(&word.as_str()),
            Kind::Ident(name) => !assigned.contains(name),
            _ => true,
        })
}

/// Whether a statement touched as many rows as were locked for it. The locked rows
/// match its WHERE until the commit, so with equal counts they are its rows. More
/// rows (a row made to match after the lock under READ COMMITTED) or fewer (a
/// WHERE that reads the clock or random numbers) cannot be told apart: counted.
fn verified(
    conn: &EmittingConnection<MysqlConnection>,
    plan: &MysqlPlan,
    count: usize,
    locked: usize,
) -> bool {
    if count == locked {
        return true;
    }
    tracing::debug!(table = %plan.table, count, locked, "row count differs from the locked rows");
    conn.emitter.record_uncaptured_write(
        &plan.table,
        "the statement wrote another number of rows than its WHERE found; its rows are not reported",
    );
    false
}

/// DELETE without RETURNING: read and lock the rows, then delete.
pub(super) fn delete<T: QueryFragment<Mysql> + QueryId>(
    conn: &mut EmittingConnection<MysqlConnection>,
    source: &T,
    statement: &Statement,
    plan: &MysqlPlan,
) -> QueryResult<Outcome> {
    let tokens = &statement.tokens;
    // DELETE FROM <table> [WHERE ...]
    let tail = [
        top_level(tokens, 2, "WHERE"),
        top_level(tokens, 2, "ORDER"),
        top_level(tokens, 2, "LIMIT"),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(tokens.len());
    let table = statement.text(2, tail);
    let key = key_sql(plan)?;
    let Some(indexes) = key_field_indexes(plan, &key_columns(&key)) else {
        return Ok(Err(Uncapturable("the model lacks a primary key column")));
    };
    let mut lock = RawQuery::default().sql(&format!("SELECT {} FROM {table} ", columns(plan)));
    if statement.push(&mut lock, tail..tokens.len()).is_none() {
        return Ok(Err(Uncapturable("bind mismatch")));
    }
    lock.push_sql(" FOR UPDATE");
    let emit = conn.emit;
    let (mut keys, mut events) = (Vec::new(), Written::default());
    each_plan_row(&mut conn.inner, plan, lock, &mut |row| {
        keys.push(key_at(row, plan, &indexes));
        decode_into(emit, plan, row, Action::Delete, &mut events);
    })?;
    let count = if top_level(tokens, tail, "LIMIT").is_some() {
        let mut count = 0;
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let mut query = RawQuery::default().sql(&format!("DELETE FROM {table} WHERE "));
            query.push_key_list(&key, chunk);
            count += conn.inner.execute_returning_count(&query)?;
        }
        count
    } else {
        conn.inner.execute_returning_count(source)?
    };
    if !verified(conn, plan, count, keys.len()) {
        return Ok(Ok((count, Written::default())));
    }
    Ok(Ok((count, events)))
}

/// Whether the assignments in `range` set one of `columns`.
fn set_assigns(tokens: &[Token], range: std::ops::Range<usize>, columns: &[String]) -> bool {
    let mut depth = 0usize;
    let mut expect = true;
    for token in &tokens[range] {
        match &token.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Comma if depth == 0 => expect = true,
            // `t`.`c` = ...: an identifier before `=` names the column.
            Kind::Ident(name) if depth == 0 && expect && columns.contains(name) => return true,
            Kind::Dot => {}
            Kind::Other => expect = false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::sql::scan;

    fn tokens(sql: &str) -> Vec<Token> {
        scan(sql).unwrap()
    }

    #[test]
    fn set_columns_are_the_assigned_ones() {
        let t =
            tokens("UPDATE `t` SET `a` = ?, `t`.`b` = lower(`c`), `d` = `d` + 1 WHERE (`e` = ?)");
        let set = top_level(&t, 0, "SET").unwrap();
        let end = top_level(&t, 0, "WHERE").unwrap();
        assert_eq!(set_columns(&t, set + 1..end), ["a", "b", "d"]);
    }

    #[test]
    fn a_where_that_reads_an_assigned_column_or_calls_a_function_is_not_plain() {
        let plain = |sql: &str| {
            let t = tokens(sql);
            let at = top_level(&t, 0, "WHERE").unwrap();
            plain_where(&t, at..t.len(), &["a".to_owned()])
        };
        assert!(plain(
            "UPDATE `t` SET `a` = ? WHERE ((`t`.`id` = ?) AND (`t`.`b` IN (?, ?)))"
        ));
        assert!(!plain("UPDATE `t` SET `a` = ? WHERE (`t`.`a` = ?)"));
        assert!(!plain("UPDATE `t` SET `a` = ? WHERE (`t`.`at` < NOW())"));
        assert!(!plain(
            "UPDATE `t` SET `a` = ? WHERE `id` IN (SELECT `x` FROM `u`)"
        ));
        assert!(!plain("UPDATE `t` SET `a` = ? WHERE (`id` > ?) LIMIT 2"));
    }
}
