//! A listener's queue and thread options: how many events may wait, what happens
//! when that many do, and how long a closure listener's thread polls before it
//! sleeps.

use super::ListenerBuilder;
use crate::emits::Emits;
use crate::listener::WhenFull;
use std::time::Duration;

impl<M: Emits> ListenerBuilder<M> {
    /// The bound of this listener's queue, [`DEFAULT_CAPACITY`](crate::DEFAULT_CAPACITY) unless set.
    ///
    /// What it costs: the queue is allocated in full when the listener registers,
    /// `capacity × (size_of::<Event<M>>() + 8)` bytes. An `Event` holds the row by
    /// value plus some 80 bytes of metadata, so for a model of a few columns about
    /// 150 bytes an event: 1.5 MB for the default 10,000, 150 MB for a million.
    /// A capacity whose queue would take more than
    /// [`MAX_QUEUE_BYTES`](crate::MAX_QUEUE_BYTES) (1 GiB) is refused with
    /// [`Error::CapacityTooLarge`](crate::Error::CapacityTooLarge) by `try_listen`
    /// and `try_subscribe` (and makes `listen` and `subscribe` panic).
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// let rx = emitter.on::<User>().capacity(100).subscribe();
    /// assert_eq!(rx.capacity(), Some(100));
    ///
    /// let refused = emitter.on::<User>().capacity(usize::MAX).try_subscribe();
    /// assert!(matches!(refused, Err(diesel_emitter::Error::CapacityTooLarge { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What to do when the queue is full: [`WhenFull::Block`] (default) or [`WhenFull::Drop`].
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// let metrics = emitter.on::<User>().when_full(WhenFull::Drop).listen(|_| { /* count */ });
    /// # metrics.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// How long a [`listen`](Self::listen) listener's thread keeps polling its queue
    /// after an event before it sleeps (default [`DEFAULT_STAY_AWAKE`](crate::DEFAULT_STAY_AWAKE),
    /// at most [`MAX_STAY_AWAKE`](crate::MAX_STAY_AWAKE)).
    ///
    /// Handing an event to a sleeping listener costs the committing thread the wake-up
    /// (a system call, and on a virtual machine an interrupt to the other core): on a
    /// 2-core VM, single-row PostgreSQL writes cost 1.05-1.10x a plain connection's
    /// with the default, and 0.96-1.01x with a listener that stays awake 500 µs,
    /// longer than the time between writes (`cargo bench --bench postgres`). The price is CPU: the thread spins for up to this
    /// long after every event, so up to a whole core while writes keep coming faster
    /// than this. It spins only while that pays: after a wait longer than this (the
    /// events come further apart), it sleeps at once until a wait is short again. Worth it for a steady, latency-sensitive write stream on a machine
    /// with cores to spare; not for a web server that writes now and then.
    /// `Duration::ZERO` sleeps at once. A [`subscribe`](Self::subscribe) receiver
    /// is read by your own thread, so this does not apply to it.
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// use std::time::Duration;
    ///
    /// let feed = emitter
    ///     .on::<User>()
    ///     .stay_awake(Duration::from_micros(500))
    ///     .listen(|ev| { /* forward ev.row */ });
    ///
    /// let refused = emitter.on::<User>().stay_awake(Duration::from_secs(1)).try_listen(|_| {});
    /// assert!(matches!(refused, Err(diesel_emitter::Error::StayAwakeTooLong { .. })));
    /// # feed.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn stay_awake(mut self, stay_awake: Duration) -> Self {
        self.stay_awake = stay_awake;
        self
    }
}
