//! Which statements an [`EmittingConnection`] captures, and how: the capture
//! plan of a statement, cached by query id or SQL text, and the once-per-table
//! probe of the backend's inserted-row flag.

use super::{EmittingConnection, PlanOf};
use crate::backend::EmittingBackend;
use crate::classify::{classify, OnConflict};
use crate::plan::Plan;
use diesel::query_builder::{QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use emitter_core::Emit;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

impl<C: EmittingBackend> EmittingConnection<C> {
    /// The capture plan of `source`, from the cache when its query id is static.
    pub(super) fn plan<T>(&mut self, source: &T) -> QueryResult<Option<Arc<PlanOf<C>>>>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        if self.emit == Emit::Off {
            return Ok(None);
        }
        let key = T::query_id();
        if let Some(plan) = key.and_then(|k| self.plans.by_type(k)) {
            return Ok(plan);
        }
        let mut builder = C::query_builder();
        source.to_sql(&mut builder, &C::backend())?;
        let sql = builder.finish();
        if key.is_none() {
            if let Some(plan) = self.plans.by_sql(&sql) {
                return Ok(plan);
            }
        }
        let plan = self.plan_sql(&sql)?;
        match key {
            Some(key) => self.plans.keep_by_type(key, plan.clone()),
            None => self.plans.keep_by_sql(&sql, plan.clone()),
        }
        Ok(plan)
    }

    fn plan_sql(&mut self, sql: &str) -> QueryResult<Option<Arc<PlanOf<C>>>> {
        let Some(write) = classify(sql) else {
            return Ok(None);
        };
        let entries = C::registry().models_of(&write.table);
        if entries.is_empty() {
            return Ok(None);
        }
        let flag = match (C::INSERTED_FLAG, &write.on_conflict) {
            (Some(flag), OnConflict::DoUpdate(_)) if self.flag_supported(&write.table) => {
                Some(flag)
            }
            _ => None,
        };
        Ok(Plan::build(write, entries, flag).map(Arc::new))
    }

    /// Whether the backend's inserted-row flag works on `table`, probed once per
    /// table and process.
    fn flag_supported(&mut self, table: &[String]) -> bool {
        static KNOWN: Mutex<Option<HashMap<(TypeId, String), bool>>> = Mutex::new(None);
        let rendered = table
            .iter()
            .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".");
        let key = (TypeId::of::<C>(), rendered);
        if let Some(known) = KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(&key)
        {
            return *known;
        }
        let supported = self.inner.supports_inserted_flag(&key.1).unwrap_or_else(|error| {
            tracing::debug!(table = %key.1, %error, "cannot probe the table; assuming upserts can tell inserts from updates");
            true
        });
        if !supported {
            tracing::warn!(
                table = %key.1,
                "upserts on this table cannot tell inserted rows from updated ones (partitioned, or WITHOUT ROWID); their events are reported as Update"
            );
        }
        KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(key, supported);
        supported
    }
}
