//! The outbox on PostgreSQL: one `unnest` insert per commit, claims with
//! `FOR UPDATE SKIP LOCKED` so that relays never take the same rows.

use super::{only, Attempts, BacklogRow, Claimed, OutboxBackend};
use diesel::pg::Pg;
use diesel::pg::PgConnection;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Double, Text};
use diesel::RunQueryDsl;
use emitter_core::outbox::{Backlog, ClaimScope, OutboxEntry, OutboxRow};
use std::time::Duration;

impl OutboxBackend for PgConnection {
    fn create_sql(table: &str) -> String {
        super::renamed(
            include_str!(
                "../../migrations/postgres/2026-11-27-000000_diesel_emitter_outbox/up.sql"
            ),
            table,
        )
    }

    // The relay's statements need no flush to disk before they return: a claim lost
    // in a crash only means the rows are claimed again, a lost delete that a row is
    // published again (receivers drop the copy by id). The events themselves were
    // made durable by the committing transaction.
    fn prepare_relay(&mut self) -> QueryResult<()> {
        diesel::connection::SimpleConnection::batch_execute(self, "SET synchronous_commit TO off")
    }

    fn write_entries(&mut self, table: &str, entries: &[OutboxEntry]) -> QueryResult<()> {
        OutboxInsert::new(table, entries).execute(self).map(drop)
    }

    fn claim_rows(
        &mut self,
        table: &str,
        limit: usize,
        lease: Duration,
        scope: &ClaimScope,
    ) -> QueryResult<Vec<OutboxRow>> {
        // This emitter's own rows only below the settled seq; any other row at once.
        let rows: Vec<Claimed> = diesel::sql_query(format!(
            "UPDATE {table} SET claimed_until = clock_timestamp() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM {table} \
                 WHERE (claimed_until IS NULL OR claimed_until < clock_timestamp()) \
                   AND (event_id NOT BETWEEN $3::uuid AND $4::uuid OR seq < $5) \
                 ORDER BY seq, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, table_name, action, payload, attempts, seq"
        ))
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind::<Double, _>(lease.as_secs_f64())
        .bind::<Text, _>(scope.first_id.to_string())
        .bind::<Text, _>(scope.last_id.to_string())
        .bind::<BigInt, _>(i64::try_from(scope.below_seq).unwrap_or(i64::MAX))
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

/// The outbox insert of one commit: six arrays, one statement. Unlike `sql_query`
/// it is prepared once per connection (Diesel caches it by its SQL), which matters
/// for a statement every committing transaction runs.
struct OutboxInsert<'a> {
    table: &'a str,
    ids: Vec<String>,
    origins: Vec<&'a str>,
    seqs: Vec<i64>,
    tables: Vec<&'a str>,
    actions: Vec<&'a str>,
    payloads: Vec<&'a str>,
}

impl<'a> OutboxInsert<'a> {
    fn new(table: &'a str, entries: &'a [OutboxEntry]) -> Self {
        OutboxInsert {
            table,
            ids: entries.iter().map(|e| e.event_id.to_string()).collect(),
            origins: entries.iter().map(|e| &*e.origin).collect(),
            seqs: entries
                .iter()
                .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
                .collect(),
            tables: entries.iter().map(|e| e.table).collect(),
            actions: entries.iter().map(|e| e.action.as_str()).collect(),
            payloads: entries.iter().map(|e| e.payload.as_str()).collect(),
        }
    }
}

impl QueryId for OutboxInsert<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl RunQueryDsl<PgConnection> for OutboxInsert<'_> {}

impl QueryFragment<Pg> for OutboxInsert<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        out.push_sql(self.table);
        out.push_sql(
            " (event_id, origin, seq, table_name, action, payload) \
             SELECT u::uuid, o, s, t, a, p FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.origins)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.seqs)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.tables)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.actions)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.payloads)?;
        out.push_sql(") AS x(u, o, s, t, a, p)");
        Ok(())
    }
}
