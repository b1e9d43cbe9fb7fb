//! The [`Emits`] trait: what the emitter needs to know about a model.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A Diesel model whose table's writes become [`Event`](crate::Event)s.
///
/// Implement it with `#[derive(Emits)]` from the `diesel-emitter` crate rather than by
/// hand: the derive also registers the model with the connection wrapper, so that
/// every write on [`TABLE`](Emits::TABLE) is captured and decoded into `Self`.
///
/// ```
/// use emitter_core::Emits;
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct User { id: i32, name: String }
///
/// impl Emits for User {
///     const TABLE: &'static str = "users";
///     const COLUMNS: &'static [&'static str] = &["id", "name"];
///     const PRIMARY_KEY: &'static [&'static str] = &["id"];
/// }
/// assert_eq!(User::TABLE, "users");
/// ```
pub trait Emits: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The table's name as the database knows it.
    const TABLE: &'static str;
    /// The columns this model reads, in field order, by their database names.
    const COLUMNS: &'static [&'static str];
    /// The primary key's columns.
    const PRIMARY_KEY: &'static [&'static str];

    /// The columns of the fields marked `#[emits(skip)]`: they never leave the
    /// process. Empty unless the derive says otherwise.
    const SKIPPED: &'static [&'static str] = &[];

    /// Resets the `#[emits(skip)]` fields to their type's `Default`.
    ///
    /// Called on a copy of the row before it leaves the process (the MQTT payload),
    /// so remote listeners see `Default` there; local listeners see the row as the
    /// database returned it. The derive implements it; by hand, reset what
    /// [`SKIPPED`](Emits::SKIPPED) names.
    fn redact(&mut self) {}

    /// Looks up `name` among [`COLUMNS`](Emits::COLUMNS), returning the static name.
    fn column(name: &str) -> Option<&'static str> {
        Self::COLUMNS.iter().copied().find(|c| *c == name)
    }
}
