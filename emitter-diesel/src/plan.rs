//! Capture plans: for one statement, the models to capture, the columns to append
//! and how to read each returned row back into events; and a connection's cache
//! of the plans it made.

use crate::backend::UpsertFlag;
use crate::classify::{OnConflict, Write, WriteKind};
use crate::model::{DecodeArgs, ModelEntry, Registered};
use emitter_core::{Action, Audience};
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

/// How one model is read from the appended columns.
pub(crate) struct PlannedModel<DB: 'static, D: 'static> {
    pub(crate) entry: &'static ModelEntry<DB, D>,
    /// Columns assigned by an insert or delete (all), or by the update.
    pub(crate) changed: Arc<[&'static str]>,
    /// Columns assigned by the `DO UPDATE SET` branch of an upsert.
    pub(crate) changed_on_conflict: Arc<[&'static str]>,
}

/// How to capture one statement.
pub(crate) struct Plan<DB: 'static, D: 'static> {
    pub(crate) kind: WriteKind,
    pub(crate) table: Arc<str>,
    pub(crate) models: Vec<PlannedModel<DB, D>>,
    /// SQL appended to the statement.
    pub(crate) appended: Arc<str>,
    /// Fields appended to each returned row.
    pub(crate) appended_fields: usize,
    /// The last appended field is true for inserted rows (an upsert's flag).
    pub(crate) inserted_flag: bool,
    /// The field before the flag is the row's key (SQLite's rowid), which tells a
    /// row this statement inserted and then updated (see `UpsertFlag::row_key`).
    pub(crate) row_key: bool,
    /// A DO UPDATE upsert without the flag: rows are reported as updates.
    pub(crate) ambiguous_upsert: bool,
}

/// Columns of `model` that appear in `assigned`, as the model's static names.
fn intersect(model: &'static [&'static str], assigned: &[String]) -> Arc<[&'static str]> {
    model
        .iter()
        .copied()
        .filter(|c| assigned.iter().any(|a| a == c))
        .collect()
}

impl<DB, D> Plan<DB, D> {
    /// Plans the capture of the classified `write` on a table with `entries`;
    /// `None` when capture is impossible (then the statement runs as written).
    /// `flag` is the backend's inserted-row flag, when the table supports it.
    pub(crate) fn build(
        write: Write,
        entries: &[Registered<DB, D>],
        flag: Option<UpsertFlag>,
    ) -> Option<Self> {
        let Write {
            kind,
            table,
            set,
            on_conflict,
            returning,
        } = write;
        if entries.is_empty() {
            return None;
        }
        let table = table.join(".");
        let mut appended = String::from(if returning { ", " } else { " RETURNING " });
        let mut models = Vec::with_capacity(entries.len());
        let mut fields = 0;
        for (i, registered) in entries.iter().enumerate() {
            let entry = registered.entry;
            let select = match &registered.returning {
                Ok(select) => select,
                Err(error) => {
                    tracing::error!(table = %table, model = (entry.type_name)(), %error, "cannot render the model's columns; statement runs without capture");
                    return None;
                }
            };
            if i > 0 {
                appended.push_str(", ");
            }
            appended.push_str(select);
            fields += entry.columns.len();
            let all: Arc<[&'static str]> = entry.columns.into();
            let (changed, changed_on_conflict) = match (&kind, &on_conflict) {
                (WriteKind::Update, _) => (intersect(entry.columns, &set), all.clone()),
                (_, OnConflict::DoUpdate(cols)) => (all.clone(), intersect(entry.columns, cols)),
                _ => (all.clone(), all),
            };
            models.push(PlannedModel {
                entry,
                changed,
                changed_on_conflict,
            });
        }
        let do_update = matches!(on_conflict, OnConflict::DoUpdate(_));
        let flag = flag.filter(|_| do_update);
        let inserted_flag = flag.is_some();
        let row_key = flag.is_some_and(|f| f.row_key.is_some());
        if let Some(flag) = flag {
            if let Some(key) = flag.row_key {
                appended.push_str(key);
                fields += 1;
            }
            appended.push_str(flag.inserted);
            fields += 1;
        }
        Some(Plan {
            kind,
            table: table.into(),
            models,
            appended: appended.into(),
            appended_fields: fields,
            inserted_flag,
            row_key,
            ambiguous_upsert: do_update && !inserted_flag,
        })
    }

    /// The action of a returned row; `inserted` is the upsert flag's value.
    pub(crate) fn action(&self, inserted: Option<bool>) -> Action {
        match (self.kind, inserted) {
            (WriteKind::Insert, Some(false)) => Action::Update,
            // An upsert on a table that cannot say which rows it inserted.
            (WriteKind::Insert, None) if self.ambiguous_upsert => Action::Update,
            (WriteKind::Insert, _) => Action::Insert,
            (WriteKind::Update, _) => Action::Update,
            (WriteKind::Delete, _) => Action::Delete,
        }
    }

    /// Decode arguments for each model of a row with `field_count` fields.
    pub(crate) fn decode_args(
        &self,
        field_count: usize,
        action: Action,
        emit: Audience,
    ) -> impl Iterator<Item = (&PlannedModel<DB, D>, DecodeArgs<'_>)> {
        let mut start = field_count.saturating_sub(self.appended_fields);
        let conflict_update = self.kind == WriteKind::Insert && action == Action::Update;
        self.models.iter().map(move |m| {
            let end = start + m.entry.columns.len();
            let args = DecodeArgs {
                range: start..end,
                action,
                changed: if conflict_update {
                    &m.changed_on_conflict
                } else {
                    &m.changed
                },
                emit,
            };
            start = end;
            (m, args)
        })
    }
}

/// A statement to capture: its plan, and, when Diesel is to keep it prepared
/// (see [`worth_preparing`]), its SQL text.
pub(crate) struct Capture<P> {
    pub(crate) plan: Arc<P>,
    pub(crate) prepared: Option<String>,
}

/// What the wrapper does with a statement, decided once per statement type or SQL.
pub(crate) enum Planned<P> {
    /// Capture its rows with this plan.
    Capture(Arc<P>),
    /// Not a write on a model's table: run it as written.
    PassThrough,
    /// A write on a model's table that cannot be captured safely: run it as
    /// written, and count it (`stats().uncaptured_writes`) each time.
    Uncaptured {
        table: Arc<str>,
        reason: &'static str,
    },
}

impl<P> Clone for Planned<P> {
    fn clone(&self) -> Self {
        match self {
            Planned::Capture(plan) => Planned::Capture(plan.clone()),
            Planned::PassThrough => Planned::PassThrough,
            Planned::Uncaptured { table, reason } => Planned::Uncaptured {
                table: table.clone(),
                reason,
            },
        }
    }
}

/// The plans (or "not captured") of statements a connection has run, so that a
/// statement seen before is neither classified nor planned again.
///
/// Statements whose type has a static query id are found by type, without
/// rendering their SQL. Others (inserts of `Insertable` structs among them, as
/// their SQL depends on which fields are `None`) are found by their SQL text; at
/// most [`MAX_BY_SQL`] of those, of [`MAX_SQL_BYTES`] in all, are kept, since SQL
/// with literals in it may never repeat.
///
/// A statement found by its SQL text a second time is one the connection repeats:
/// the cache then says whether to ask Diesel to keep it prepared (see
/// [`worth_preparing`]), once per text.
pub(crate) struct PlanCache<V> {
    by_type: HashMap<TypeId, V>,
    by_sql: HashMap<Box<str>, BySql<V>>,
    /// Bytes of the keys of `by_sql`.
    sql_bytes: usize,
    /// Statements this connection asked Diesel to keep prepared. Diesel's cache
    /// never forgets one, so this only grows, up to [`MAX_PREPARED`].
    prepared: usize,
}

/// A plan kept by SQL text.
struct BySql<V> {
    planned: V,
    /// `None` until the text is seen again; then whether to keep it prepared.
    prepare: Option<bool>,
}

/// The most plans kept by SQL text; the cache starts over when it is full.
pub(crate) const MAX_BY_SQL: usize = 512;
/// The most bytes of SQL text kept as keys, per connection: a multi-row insert
/// renders tens of kilobytes. The cache starts over when they would exceed it.
pub(crate) const MAX_SQL_BYTES: usize = 256 * 1024;
/// The longest SQL text kept as a key.
pub(crate) const MAX_SQL_KEY: usize = MAX_SQL_BYTES / 4;
/// The most statements, per connection, the capture asks Diesel to keep prepared.
pub(crate) const MAX_PREPARED: usize = 128;
/// The longest SQL text the capture asks Diesel to keep prepared.
pub(crate) const MAX_PREPARED_SQL: usize = 4 * 1024;

/// Whether a repeated statement found by its SQL text should run as a prepared
/// statement that Diesel keeps, rather than be parsed and planned by the server
/// each time.
///
/// Diesel keeps no `INSERT` of an `Insertable` struct, no batch insert and no
/// `UPDATE` prepared: their SQL varies at run time and its cache never forgets an
/// entry, so it could grow without end. The capture knows which texts repeat on this
/// connection, and its `RETURNING` makes parsing and planning dearer (on
/// PostgreSQL 15, about 13 µs of server CPU per statement), so on a backend that
/// opts in (PostgreSQL: `EmittingBackend::PREPARE_REPEATED_WRITES`) it keeps a
/// repeated one prepared, within [`MAX_PREPARED`] statements of at most
/// [`MAX_PREPARED_SQL`] bytes. Diesel keys these by their SQL text, so a statement
/// is never run as another, and a connection whose cache is off
/// (`CacheSize::Disabled`, for PgBouncer's transaction mode) prepares nothing.
///
/// Not SQL with a `*` in it: a `RETURNING *` of raw SQL would fail, prepared, once
/// a column is added to its table ("cached plan must not change result type").
pub(crate) fn worth_preparing(sql: &str) -> bool {
    sql.len() <= MAX_PREPARED_SQL && !sql.contains('*')
}

impl<V> Default for PlanCache<V> {
    fn default() -> Self {
        PlanCache {
            by_type: HashMap::new(),
            by_sql: HashMap::new(),
            sql_bytes: 0,
            prepared: 0,
        }
    }
}

impl<V: Clone> PlanCache<V> {
    pub(crate) fn by_type(&self, key: TypeId) -> Option<V> {
        self.by_type.get(&key).cloned()
    }

    /// The plan kept for `sql`, and whether to run it prepared (see
    /// [`worth_preparing`]), decided when the text is seen a second time, on a
    /// backend that `may_prepare`.
    pub(crate) fn by_sql(&mut self, sql: &str, may_prepare: bool) -> Option<(V, bool)> {
        let kept = self.by_sql.get_mut(sql)?;
        let prepare = *kept.prepare.get_or_insert_with(|| {
            let prepare = may_prepare && self.prepared < MAX_PREPARED && worth_preparing(sql);
            self.prepared += usize::from(prepare);
            prepare
        });
        Some((kept.planned.clone(), prepare))
    }

    /// Runs `sql` unprepared from now on: the server failed it, kept prepared,
    /// with an error of no known kind, such as PostgreSQL's "cached plan must not
    /// change result type" once a column it returns changed type. Diesel's cache
    /// keeps the statement, which would fail the same way each time; running the
    /// text unprepared lets the server plan it afresh.
    pub(crate) fn unprepare(&mut self, sql: &str) {
        if let Some(kept) = self.by_sql.get_mut(sql) {
            kept.prepare = Some(false);
        }
    }

    pub(crate) fn keep_by_type(&mut self, key: TypeId, plan: V) {
        self.by_type.insert(key, plan);
    }

    pub(crate) fn keep_by_sql(&mut self, sql: &str, plan: V) {
        if sql.len() > MAX_SQL_KEY {
            return;
        }
        if self.by_sql.len() >= MAX_BY_SQL || self.sql_bytes + sql.len() > MAX_SQL_BYTES {
            tracing::debug!(
                kept = self.by_sql.len(),
                bytes = self.sql_bytes,
                "capture plans by SQL text: cache full, starting over"
            );
            self.by_sql.clear();
            self.sql_bytes = 0;
        }
        let kept = BySql {
            planned: plan,
            prepare: None,
        };
        if self.by_sql.insert(sql.into(), kept).is_none() {
            self.sql_bytes += sql.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_by_sql_text_are_bounded_and_the_newest_is_kept() {
        let mut cache = PlanCache::<Option<Arc<u32>>>::default();
        for i in 0..MAX_BY_SQL {
            cache.keep_by_sql(&format!("DELETE FROM t WHERE id = {i}"), Some(Arc::new(1)));
        }
        assert!(cache.by_sql("DELETE FROM t WHERE id = 0", true).is_some());
        cache.keep_by_sql("DELETE FROM t WHERE id = -1", None);
        assert_eq!(cache.by_sql.len(), 1, "full: started over");
        assert_eq!(
            cache.by_sql("DELETE FROM t WHERE id = -1", true),
            Some((None, true))
        );
        assert_eq!(cache.by_sql("DELETE FROM t WHERE id = 0", true), None);
    }

    #[test]
    fn plans_by_sql_text_are_bounded_in_bytes() {
        let mut cache = PlanCache::<Option<Arc<u32>>>::default();
        let big = |i: usize| {
            format!(
                "INSERT INTO t VALUES ({i}) {}",
                " ".repeat(MAX_SQL_KEY - 64)
            )
        };
        for i in 0..4 {
            cache.keep_by_sql(&big(i), Some(Arc::new(1)));
        }
        assert_eq!(cache.by_sql.len(), 4);
        assert!(cache.sql_bytes <= MAX_SQL_BYTES);
        cache.keep_by_sql(&big(4), Some(Arc::new(1)));
        assert_eq!(cache.by_sql.len(), 1, "over the byte budget: started over");
        assert!(cache.by_sql(&big(4), true).is_some());
    }

    #[test]
    fn long_sql_is_not_kept() {
        let mut cache = PlanCache::<Option<Arc<u32>>>::default();
        let long = format!("INSERT INTO t VALUES {}", "(?), ".repeat(MAX_SQL_KEY));
        cache.keep_by_sql(&long, Some(Arc::new(1)));
        assert_eq!(cache.by_sql(&long, true), None);
    }

    #[test]
    fn plans_by_type_and_by_sql_are_separate() {
        let mut cache = PlanCache::<Option<Arc<u32>>>::default();
        cache.keep_by_type(TypeId::of::<u8>(), Some(Arc::new(7)));
        assert_eq!(cache.by_type(TypeId::of::<u8>()), Some(Some(Arc::new(7))));
        assert_eq!(cache.by_type(TypeId::of::<u16>()), None);
        assert_eq!(cache.by_sql("SELECT 1", true), None);
    }

    #[test]
    fn a_text_seen_again_is_prepared_and_counted_once() {
        let mut cache = PlanCache::<u32>::default();
        let sql = r#"INSERT INTO "t" ("a") VALUES ($1) RETURNING "t"."a""#;
        cache.keep_by_sql(sql, 1);
        assert_eq!(cache.prepared, 0, "seen once: not yet");
        assert_eq!(cache.by_sql(sql, true), Some((1, true)));
        assert_eq!(cache.by_sql(sql, true), Some((1, true)));
        assert_eq!(cache.prepared, 1);
    }

    #[test]
    fn no_more_than_max_prepared_statements_are_prepared() {
        let mut cache = PlanCache::<u32>::default();
        let sql = |i: usize| format!("DELETE FROM t WHERE id = {i}");
        for i in 0..=MAX_PREPARED {
            cache.keep_by_sql(&sql(i), 1);
            let first = cache.by_sql(&sql(i), true).unwrap().1;
            assert_eq!(first, i < MAX_PREPARED, "statement {i}");
        }
        assert_eq!(cache.prepared, MAX_PREPARED);
        assert_eq!(
            cache.by_sql(&sql(MAX_PREPARED), true),
            Some((1, false)),
            "decided once"
        );
    }

    #[test]
    fn long_sql_and_sql_with_a_star_are_not_prepared() {
        let mut cache = PlanCache::<u32>::default();
        let long = format!(
            "INSERT INTO t VALUES {}",
            "(?), ".repeat(MAX_PREPARED_SQL / 5)
        );
        for sql in [long.as_str(), "UPDATE t SET a = 1 RETURNING *"] {
            cache.keep_by_sql(sql, 1);
            assert_eq!(cache.by_sql(sql, true), Some((1, false)), "{sql}");
        }
        assert_eq!(cache.prepared, 0);
    }

    #[test]
    fn an_unprepared_text_stays_unprepared() {
        let mut cache = PlanCache::<u32>::default();
        let sql = "DELETE FROM t WHERE id = ?";
        cache.keep_by_sql(sql, 1);
        assert_eq!(cache.by_sql(sql, true), Some((1, true)));
        cache.unprepare(sql);
        assert_eq!(cache.by_sql(sql, true), Some((1, false)));
        assert_eq!(cache.prepared, 1, "Diesel's cache still holds it");
    }

    #[test]
    fn nothing_is_prepared_on_a_backend_that_may_not() {
        let mut cache = PlanCache::<u32>::default();
        cache.keep_by_sql("DELETE FROM t WHERE id = ?", 1);
        assert_eq!(
            cache.by_sql("DELETE FROM t WHERE id = ?", false),
            Some((1, false))
        );
        assert_eq!(cache.prepared, 0);
    }
}
