//! [`Subscription`]: the handle of a registered listener, which removes it.

use super::Shared;
use crate::emits::Emits;
use std::any::TypeId;
use std::fmt;
use std::sync::Weak;

/// A registered listener. Dropping it keeps the listener; call
/// [`unsubscribe`](Subscription::unsubscribe) to remove it.
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// let subscription = emitter.on::<User>().listen(|_| {});
/// assert_eq!(emitter.stats().listeners, 1);
/// subscription.unsubscribe();
/// assert_eq!(emitter.stats().listeners, 0);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Subscription keeps the listener; call .unsubscribe() to remove it"]
pub struct Subscription {
    pub(super) shared: Weak<Shared>,
    pub(super) type_id: TypeId,
    pub(super) id: u64,
    pub(super) remove: fn(&Shared, u64) -> bool,
}

impl Subscription {
    /// Removes the listener. Events already in its queue are still delivered;
    /// events committed after this returns are not.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let subscription = emitter.on::<User>().listen(|_| {});
    /// subscription.unsubscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// assert_eq!(emitter.stats().delivered, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unsubscribe(self) {
        if let Some(shared) = self.shared.upgrade() {
            if (self.remove)(&shared, self.id) {
                tracing::debug!(listener = self.id, "listener unsubscribed");
            }
        }
    }

    /// The listener's id, unique within its emitter.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// let a = emitter.on::<User>().listen(|_| {});
    /// let b = emitter.on::<User>().listen(|_| {});
    /// assert_ne!(a.id(), b.id());
    /// # a.unsubscribe(); b.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn forget(self) {}
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("model", &self.type_id)
            .finish()
    }
}

/// Removes listener `id` of model `M`, releasing its broker subscription.
pub(super) fn remove_listener<M: Emits>(shared: &Shared, id: u64) -> bool {
    let Some(slot) = shared.registry.remove::<M>(id) else {
        return false;
    };
    // The delivery turn's snapshot must not keep the listener's sender alive.
    shared
        .commit_lock
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .forget_listeners();
    crate::dispatch::detach::<M>(shared.transport(), &slot.reach);
    true
}
