//! The outbox on SQLite. Times are Unix seconds as REAL, which every SQLite
//! version computes; claims need no row locks, as SQLite runs one writer at a time.

use super::{only, Attempts, BacklogRow, Claimed, OutboxBackend};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Double, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;
use emitter_core::outbox::{Backlog, ClaimScope, OutboxEntry, OutboxRow};
use std::time::Duration;

const NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

impl OutboxBackend for SqliteConnection {
    fn create_sql(table: &str) -> String {
        super::renamed(
            include_str!("../../migrations/sqlite/2026-11-27-000000_diesel_emitter_outbox/up.sql"),
            table,
        )
    }

    // Writers hold the file's lock briefly; the relay waits for it rather than fail.
    fn prepare_relay(&mut self) -> QueryResult<()> {
        diesel::connection::SimpleConnection::batch_execute(self, "PRAGMA busy_timeout = 5000")
    }

    fn write_entries(&mut self, table: &str, entries: &[OutboxEntry]) -> QueryResult<()> {
        let sql = format!(
            "INSERT INTO {table} (event_id, origin, seq, table_name, action, payload) \
             VALUES (?, ?, ?, ?, ?, ?)"
        );
        for entry in entries {
            diesel::sql_query(&sql)
                .bind::<Text, _>(entry.event_id.to_string())
                .bind::<Text, _>(&*entry.origin)
                .bind::<BigInt, _>(i64::try_from(entry.seq).unwrap_or(i64::MAX))
                .bind::<Text, _>(entry.table)
                .bind::<Text, _>(entry.action.as_str())
                .bind::<Text, _>(&entry.payload)
                .execute(self)?;
        }
        Ok(())
    }

    fn claim_rows(
        &mut self,
        table: &str,
        limit: usize,
        lease: Duration,
        scope: &ClaimScope,
    ) -> QueryResult<Vec<OutboxRow>> {
        // As on PostgreSQL; event ids are stored as lower-case text, which compares
        // as the bytes do.
        let rows: Vec<Claimed> = diesel::sql_query(format!(
            "UPDATE {table} SET claimed_until = {NOW} + ?1 \
             WHERE id IN (SELECT id FROM {table} \
                 WHERE (claimed_until IS NULL OR claimed_until < {NOW}) \
                   AND (event_id NOT BETWEEN ?3 AND ?4 OR seq < ?5) \
                 ORDER BY seq, id LIMIT ?2) \
             RETURNING id, table_name, action, payload, attempts, seq"
        ))
        .bind::<Double, _>(lease.as_secs_f64())
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind::<Text, _>(scope.first_id.to_string())
        .bind::<Text, _>(scope.last_id.to_string())
        .bind::<BigInt, _>(i64::try_from(scope.below_seq).unwrap_or(i64::MAX))
        .load(self)?;
        Ok(rows.into_iter().map(OutboxRow::from).collect())
    }

    fn remove_rows(&mut self, table: &str, ids: &[i64]) -> QueryResult<()> {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        diesel::sql_query(format!(
            "DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))"
        ))
        .bind::<Text, _>(format!("[{list}]"))
        .execute(self)
        .map(drop)
    }

    fn count_failure(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<Option<u32>> {
        let rows: Vec<Attempts> = diesel::sql_query(format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = ?, claimed_until = NULL \
             WHERE id = ? RETURNING attempts"
        ))
        .bind::<Text, _>(reason)
        .bind::<BigInt, _>(id)
        .load(self)?;
        Ok(only(rows).map(|r| u32::try_from(r.attempts).unwrap_or(0)))
    }

    fn dead_letter(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<()> {
        diesel::sql_query(format!(
            "INSERT INTO {table}_dead_letter \
                 (id, event_id, origin, seq, table_name, action, payload, created_at, attempts, reason) \
             SELECT id, event_id, origin, seq, table_name, action, payload, created_at, attempts, ? \
             FROM {table} WHERE id = ?"
        ))
        .bind::<Text, _>(reason)
        .bind::<BigInt, _>(id)
        .execute(self)?;
        diesel::sql_query(format!("DELETE FROM {table} WHERE id = ?"))
            .bind::<BigInt, _>(id)
            .execute(self)
            .map(drop)
    }

    fn count_backlog(&mut self, table: &str) -> QueryResult<Backlog> {
        let rows: Vec<BacklogRow> = diesel::sql_query(format!(
            "SELECT count(*) AS waiting, {NOW} - min(created_at) AS oldest FROM {table}"
        ))
        .load(self)?;
        Ok(only(rows).map(Backlog::from).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::{OutboxBackend, SqliteConnection, NOW};

    /// The shipped migration's time defaults are the clock the claims compare with.
    #[test]
    fn the_migration_stamps_rows_with_the_clock_claims_read() {
        let sql = SqliteConnection::create_sql("diesel_emitter_outbox");
        assert_eq!(sql.matches(&format!("DEFAULT {NOW}")).count(), 2, "{sql}");
    }
}
