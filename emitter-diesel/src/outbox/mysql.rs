//! The outbox on MySQL and MariaDB: one multi-row insert per commit; claims lock
//! their rows with `FOR UPDATE SKIP LOCKED` (MySQL 8.0, MariaDB 10.6) so that relays
//! never take the same rows. MySQL cannot update a table through a subquery on
//! itself, so a claim is a locking read and an update by id in one transaction.

use super::{only, Attempts, BacklogRow, Claimed, OutboxBackend};
use diesel::connection::Connection;
use diesel::mysql::MysqlConnection;
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;
use emitter_core::outbox::{Backlog, ClaimScope, OutboxEntry, OutboxRow};
use std::time::Duration;

/// Binds per outbox insert statement (six per event), under MySQL's 65,535.
const EVENTS_PER_INSERT: usize = 5_000;

impl OutboxBackend for MysqlConnection {
    fn create_sql(table: &str) -> String {
        super::renamed(
            include_str!("../../migrations/mysql/2026-11-27-000000_diesel_emitter_outbox/up.sql"),
            table,
        )
    }

    fn write_entries(&mut self, table: &str, entries: &[OutboxEntry]) -> QueryResult<()> {
        for chunk in entries.chunks(EVENTS_PER_INSERT) {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let mut query = diesel::sql_query(format!(
                "INSERT INTO {table} (event_id, origin, seq, table_name, action, payload) VALUES {rows}"
            ))
            .into_boxed();
            for entry in chunk {
                query = query
                    .bind::<Text, _>(entry.event_id.to_string())
                    .bind::<Text, _>(entry.origin.to_string())
                    .bind::<BigInt, _>(i64::try_from(entry.seq).unwrap_or(i64::MAX))
                    .bind::<Text, _>(entry.table)
                    .bind::<Text, _>(entry.action.as_str())
                    .bind::<Text, _>(entry.payload.clone());
            }
            query.execute(self)?;
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
        self.transaction(|conn| {
            // As on PostgreSQL: this emitter's own rows only below the settled seq.
            let rows: Vec<Claimed> = diesel::sql_query(format!(
                "SELECT id, table_name, action, payload, attempts, seq FROM {table} \
                 WHERE (claimed_until IS NULL OR claimed_until < NOW(6)) \
                   AND (event_id NOT BETWEEN ? AND ? OR seq < ?) \
                 ORDER BY seq, id LIMIT ? FOR UPDATE SKIP LOCKED"
            ))
            .bind::<Text, _>(scope.first_id.to_string())
            .bind::<Text, _>(scope.last_id.to_string())
            .bind::<BigInt, _>(i64::try_from(scope.below_seq).unwrap_or(i64::MAX))
            .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
            .load(conn)?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let ids = rows
                .iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
                .join(",");
            diesel::sql_query(format!(
                "UPDATE {table} SET claimed_until = NOW(6) + INTERVAL ? MICROSECOND WHERE id IN ({ids})"
            ))
            .bind::<BigInt, _>(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
            .execute(conn)?;
            Ok(rows.into_iter().map(OutboxRow::from).collect())
        })
    }

    fn remove_rows(&mut self, table: &str, ids: &[i64]) -> QueryResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Ids are integers the relay read: safe to inline.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        diesel::sql_query(format!("DELETE FROM {table} WHERE id IN ({list})"))
            .execute(self)
            .map(drop)
    }

    fn count_failure(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<Option<u32>> {
        let changed = diesel::sql_query(format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = ?, claimed_until = NULL WHERE id = ?"
        ))
        .bind::<Text, _>(reason)
        .bind::<BigInt, _>(id)
        .execute(self)?;
        if changed == 0 {
            return Ok(None);
        }
        let rows: Vec<Attempts> =
            diesel::sql_query(format!("SELECT attempts FROM {table} WHERE id = ?"))
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
            "SELECT COUNT(*) AS waiting, \
                 CAST(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(6)) / 1000000 AS DOUBLE) AS oldest \
             FROM {table}"
        ))
        .load(self)?;
        Ok(only(rows).map(Backlog::from).unwrap_or_default())
    }
}
