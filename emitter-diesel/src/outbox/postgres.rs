//! The outbox on PostgreSQL: one `unnest` insert per commit, claims with
//! `FOR UPDATE SKIP LOCKED` so that relays never take the same rows.

use super::{only, Attempts, BacklogRow, Claimed, OutboxBackend};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Double, Text};
use diesel::RunQueryDsl;
use emitter_core::outbox::{Backlog, OutboxEntry, OutboxRow};
use std::time::Duration;

impl OutboxBackend for PgConnection {
    fn create_sql(table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
    id BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL,
    origin TEXT NOT NULL,
    seq BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until TIMESTAMPTZ,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS {table}_dead_letter (
    id BIGINT PRIMARY KEY,
    event_id UUID NOT NULL,
    origin TEXT NOT NULL,
    seq BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
"
        )
    }

    fn write_entries(&mut self, table: &str, entries: &[OutboxEntry]) -> QueryResult<()> {
        let ids: Vec<String> = entries.iter().map(|e| e.event_id.to_string()).collect();
        let origins: Vec<&str> = entries.iter().map(|e| &*e.origin).collect();
        let seqs: Vec<i64> = entries
            .iter()
            .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
            .collect();
        let tables: Vec<&str> = entries.iter().map(|e| e.table).collect();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        let payloads: Vec<&str> = entries.iter().map(|e| e.payload.as_str()).collect();
        diesel::sql_query(format!(
            "INSERT INTO {table} (event_id, origin, seq, table_name, action, payload) \
             SELECT u::uuid, o, s, t, a, p \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[]) AS x(u, o, s, t, a, p)"
        ))
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Text>, _>(origins)
        .bind::<Array<BigInt>, _>(seqs)
        .bind::<Array<Text>, _>(tables)
        .bind::<Array<Text>, _>(actions)
        .bind::<Array<Text>, _>(payloads)
        .execute(self)
        .map(drop)
    }

    fn check_tables(&mut self, table: &str) -> QueryResult<()> {
        self.batch_execute(&format!(
            "SELECT id, event_id, origin, seq, table_name, action, payload, created_at, attempts, claimed_until, last_error FROM {table} LIMIT 0; \
             SELECT id, event_id, origin, seq, table_name, action, payload, created_at, attempts, reason, failed_at FROM {table}_dead_letter LIMIT 0;"
        ))
    }

    fn claim_rows(
        &mut self,
        table: &str,
        limit: usize,
        lease: Duration,
    ) -> QueryResult<Vec<OutboxRow>> {
        let rows: Vec<Claimed> = diesel::sql_query(format!(
            "UPDATE {table} SET claimed_until = clock_timestamp() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM {table} \
                 WHERE claimed_until IS NULL OR claimed_until < clock_timestamp() \
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, table_name, action, payload, attempts"
        ))
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind::<Double, _>(lease.as_secs_f64())
        .load(self)?;
        Ok(rows.into_iter().map(OutboxRow::from).collect())
    }

    fn remove_rows(&mut self, table: &str, ids: &[i64]) -> QueryResult<()> {
        diesel::sql_query(format!("DELETE FROM {table} WHERE id = ANY($1)"))
            .bind::<Array<BigInt>, _>(ids)
            .execute(self)
            .map(drop)
    }

    fn count_failure(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<Option<u32>> {
        let rows: Vec<Attempts> = diesel::sql_query(format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = $2, claimed_until = NULL \
             WHERE id = $1 RETURNING attempts"
        ))
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(reason)
        .load(self)?;
        Ok(only(rows).map(|r| u32::try_from(r.attempts).unwrap_or(0)))
    }

    fn dead_letter(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<()> {
        diesel::sql_query(format!(
            "INSERT INTO {table}_dead_letter \
                 (id, event_id, origin, seq, table_name, action, payload, created_at, attempts, reason) \
             SELECT id, event_id, origin, seq, table_name, action, payload, created_at, attempts, $2 \
             FROM {table} WHERE id = $1"
        ))
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(reason)
        .execute(self)?;
        diesel::sql_query(format!("DELETE FROM {table} WHERE id = $1"))
            .bind::<BigInt, _>(id)
            .execute(self)
            .map(drop)
    }

    fn count_backlog(&mut self, table: &str) -> QueryResult<Backlog> {
        let rows: Vec<BacklogRow> = diesel::sql_query(format!(
            "SELECT count(*) AS waiting, \
                 EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8 AS oldest \
             FROM {table}"
        ))
        .load(self)?;
        Ok(only(rows).map(Backlog::from).unwrap_or_default())
    }
}
