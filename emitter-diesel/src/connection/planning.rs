//! Which statements an [`EmittingConnection`] captures, and how: the capture
//! plan of a statement, cached by query id or SQL text; the once-per-connection
//! check that a model's columns are in the table a statement writes; the
//! once-per-table probe of the backend's inserted-row flag; and the count of
//! writes on a model's table that run without capture.
//!
//! The policy for raw SQL (`sql_query`) is the same as for Diesel's statements:
//! a single `INSERT`, `UPDATE` or `DELETE` the scanner can read is captured,
//! whether its names are quoted or not. Anything else (several statements,
//! comments, dollar quoting, a `WITH` that writes) runs untouched; if it looks
//! like a write on a model's table it is counted in `stats().uncaptured_writes`.
//! `batch_execute` is never captured and counted the same way.

use super::{EmittingConnection, PlanOf};
use crate::backend::EmittingBackend;
use crate::classify::{classify, render_table, unreadable_write_words, OnConflict};
use crate::model::Registered;
use crate::plan::{Capture, Plan, Planned};
use diesel::query_builder::{QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use emitter_core::Audience;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a write on a model's table was not captured.
const MODEL_NOT_IN_TABLE: &str =
    "the model's columns are not all in the table the statement writes (another table of the same name, or a migration not applied)";
const UNREADABLE_SQL: &str =
    "raw SQL the wrapper does not read (several statements, comments, dollar quoting or WITH)";
const BATCH_EXECUTE: &str = "raw SQL through batch_execute, which is never captured";

impl<C: EmittingBackend> EmittingConnection<C> {
    /// The capture plan of `source`, from the cache when its query id is static or
    /// its SQL text was seen before.
    pub(super) fn plan<T>(&mut self, source: &T) -> QueryResult<Option<Capture<PlanOf<C>>>>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        if self.emit == Audience::Off {
            return Ok(None);
        }
        let (planned, prepared) = self.planned(source)?;
        Ok(match planned {
            Planned::Capture(plan) => Some(Capture { plan, prepared }),
            Planned::PassThrough => None,
            Planned::Uncaptured { table, reason } => {
                self.emitter.record_uncaptured_write(&table, reason);
                None
            }
        })
    }

    /// What to do with `source`: from the cache by its query id when it has a static
    /// one, else by its SQL text; planned (and kept, once settled) otherwise. With
    /// its SQL text when it is to run prepared (`PlanCache::by_sql`).
    fn planned<T>(&mut self, source: &T) -> QueryResult<(Planned<PlanOf<C>>, Option<String>)>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        let key = T::query_id();
        if let Some(planned) = key.and_then(|key| self.plans.by_type(key)) {
            return Ok((planned, None));
        }
        let mut builder = C::query_builder();
        source.to_sql(&mut builder, &C::backend())?;
        let sql = builder.finish();
        if key.is_none() {
            if let Some((planned, prepare)) = self.plans.by_sql(&sql, C::PREPARE_REPEATED_WRITES) {
                return Ok((planned, prepare.then_some(sql)));
            }
        }
        let (planned, settled) = self.plan_sql(&sql)?;
        if settled {
            match key {
                Some(key) => self.plans.keep_by_type(key, planned.clone()),
                None => self.plans.keep_by_sql(&sql, planned.clone()),
            }
        }
        Ok((planned, None))
    }

    /// Plans `sql`; the flag says whether the answer is settled (may be cached), or
    /// rests on a probe that could not run.
    fn plan_sql(&mut self, sql: &str) -> QueryResult<(Planned<PlanOf<C>>, bool)> {
        let Some(write) = classify(sql) else {
            return Ok((self.unreadable(sql), true));
        };
        let entries = C::registry().models_of(&write.table);
        if entries.is_empty() {
            return Ok((Planned::PassThrough, true));
        }
        let rendered = render_table(&write.table);
        match self.models_fit(&rendered, &write.table, entries) {
            Some(true) => {}
            Some(false) => {
                return Ok((
                    Planned::Uncaptured {
                        table: write.table.join(".").into(),
                        reason: MODEL_NOT_IN_TABLE,
                    },
                    true,
                ))
            }
            // The check could not run (the transaction is aborted, say): the
            // statement fails anyway; decide again next time.
            None => return Ok((Planned::PassThrough, false)),
        }
        let (flag, settled) = match (C::INSERTED_FLAG, &write.on_conflict) {
            (Some(flag), OnConflict::DoUpdate(_)) => match self.flag_supported(&rendered) {
                Some(true) => (Some(flag), true),
                Some(false) => (None, true),
                None => (None, false),
            },
            _ => (None, true),
        };
        let planned = match Plan::build(write, entries, flag) {
            Some(plan) => Planned::Capture(Arc::new(plan)),
            None => Planned::PassThrough,
        };
        Ok((planned, settled))
    }

    /// SQL the scanner cannot read: uncaptured if it seems to write a model's table.
    fn unreadable(&self, sql: &str) -> Planned<PlanOf<C>> {
        match written_model_table::<C>(sql) {
            Some(table) => Planned::Uncaptured {
                table,
                reason: UNREADABLE_SQL,
            },
            None => Planned::PassThrough,
        }
    }

    /// Counts the writes on a model's table in SQL run by `batch_execute`.
    pub(super) fn note_uncaptured_batch(&mut self, sql: &str) {
        if self.emit == Audience::Off {
            return;
        }
        if let Some(table) = written_model_table::<C>(sql) {
            self.emitter.record_uncaptured_write(&table, BATCH_EXECUTE);
        }
    }

    /// Whether every column of every model of `table` is in the table the
    /// connection writes under that name; checked once per table and connection
    /// (connections may see different tables under one name, by search path or
    /// attached database). `None` when the check could not run.
    fn models_fit(
        &mut self,
        rendered: &str,
        parts: &[String],
        entries: &[Registered<C::Backend, C::Decode>],
    ) -> Option<bool> {
        if let Some(&known) = self.checked_tables.get(parts) {
            return Some(known);
        }
        let columns = match self.inner.table_columns(rendered) {
            Ok(columns) => columns,
            Err(error) => {
                tracing::debug!(table = %rendered, %error, "cannot read the table's columns; the statement runs without capture");
                return None;
            }
        };
        // A table the database does not know: the statement fails as it would
        // without the wrapper, and a later one (after a migration) checks again.
        let columns = columns?;
        let fits = entries.iter().all(|registered| {
            registered
                .entry
                .columns
                .iter()
                .all(|c| columns.iter().any(|have| C::same_column(have, c)))
        });
        self.checked_tables.insert(parts.to_vec(), fits);
        Some(fits)
    }

    /// Whether the backend's inserted-row flag works on `table`, probed once per
    /// table and process. `None` when the probe could not run: that is no answer,
    /// and is asked again.
    fn flag_supported(&mut self, rendered: &str) -> Option<bool> {
        static KNOWN: Mutex<Option<HashMap<(TypeId, String), bool>>> = Mutex::new(None);
        let key = (TypeId::of::<C>(), rendered.to_owned());
        if let Some(known) = KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(&key)
        {
            return Some(*known);
        }
        let supported = match self.inner.supports_inserted_flag(rendered) {
            Ok(supported) => supported,
            Err(error) => {
                tracing::debug!(table = %rendered, %error, "cannot probe the table; this upsert reports its rows as updates");
                return None;
            }
        };
        if !supported {
            tracing::warn!(
                table = %rendered,
                "upserts on this table cannot tell inserted rows from updated ones (partitioned, or WITHOUT ROWID); their events are reported as Update"
            );
        }
        KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(key, supported);
        Some(supported)
    }
}

/// The model table raw SQL seems to write, if any.
fn written_model_table<C: EmittingBackend>(sql: &str) -> Option<Arc<str>> {
    let words = unreadable_write_words(sql)?;
    C::registry()
        .tables()
        .find(|parts| {
            parts
                .last()
                .is_some_and(|name| words.iter().any(|w| w.eq_ignore_ascii_case(name)))
        })
        .map(|parts| parts.join(".").into())
}
