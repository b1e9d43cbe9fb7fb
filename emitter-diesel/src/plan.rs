//! Capture plans: for one statement, the models to capture, the columns to append
//! and how to read each returned row back into events.

use crate::classify::{OnConflict, Write, WriteKind};
use crate::model::{DecodeArgs, ModelEntry, Registered};
use emitter_core::{Action, Emit};
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
    /// `flag_sql` is the backend's inserted-row flag, when the table supports it.
    pub(crate) fn build(
        write: Write,
        entries: &[Registered<DB, D>],
        flag_sql: Option<&str>,
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
        let inserted_flag = do_update && flag_sql.is_some();
        if inserted_flag {
            appended.push_str(flag_sql.unwrap_or_default());
            fields += 1;
        }
        Some(Plan {
            kind,
            table: table.into(),
            models,
            appended: appended.into(),
            appended_fields: fields,
            inserted_flag,
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
        emit: Emit,
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
