//! `asyncio.Lock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`
//! and `Barrier` (CPython's `locks.py`), built on the loop's futures with
//! CPython's algorithms: FIFO wake-ups, and the same outcomes when a waiter
//! is cancelled before or after it was woken.
//!
//! Every primitive is a cheap, cloneable handle (a clone is the same lock,
//! as a Python reference is) bound to one thread, like the loop (`!Send`).
//! It binds to the loop that first has to wait on it (CPython's
//! `_LoopBoundMixin`); using it from another loop later fails with
//! `RuntimeError("<asyncio.locks.Lock object at 0x… [locked]> is bound to
//! a different event loop")`.
//!
//! `async with lock:` is a guard: `let _guard = lock.acquire().await?;`
//! holds the lock until the guard is dropped. The guard of a Python-style
//! `await lock.acquire()` … `lock.release()` pair is kept with
//! [`LockGuard::forget`].
//!
//! A Rust future dropped while it waits (rather than its task being
//! cancelled) cleans up as a cancellation does: it leaves the queue of
//! waiters and passes on a wake-up it had already been given.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use crate::exceptions::{Error, Result};
use crate::mixins::{object_repr, remove_waiter, LoopBound, OnDrop, Waiters};

mod barrier;
mod semaphore;

pub use barrier::Barrier;
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

/// The `[…]` part of a primitive's repr: `locked`, then `, waiters:N` when
/// there are waiters (CPython's `__repr__` of `Lock`, `Event`, `Condition`).
fn state_repr(state: &str, waiters: &Waiters) -> String {
    match waiters.try_borrow().map(|w| w.len()) {
        Ok(0) => state.to_owned(),
        Ok(n) => format!("{state}, waiters:{n}"),
        Err(_) => state.to_owned(),
    }
}

// ===== Lock =====

pub(crate) struct LockInner {
    waiters: Waiters,
    locked: Cell<bool>,
    /// The acquisition holding the lock (see [`LockGuard`]).
    owner: Cell<u64>,
    /// The last acquisition's number.
    acquisitions: Cell<u64>,
    bound: LoopBound,
}

/// A mutual-exclusion lock for tasks (Python's `asyncio.Lock`).
///
/// A lock is not owned by the task that acquired it: any code may
/// [`release`](Lock::release) it. Tasks blocked in
/// [`acquire`](Lock::acquire) get it in FIFO order; a task that comes to
/// an unlocked lock takes it at once only if no task is waiting for it
/// (a waiter that was cancelled does not count).
///
/// `async with lock:` is `let _guard = lock.acquire().await?;`: the
/// [`LockGuard`] releases the lock when dropped, also on an early `?`
/// return.
///
/// ```
/// use asyncio_core::locks::Lock;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let lock = Lock::new();
///     {
///         let _guard = lock.acquire().await?; // async with lock:
///         assert!(lock.locked());
///         assert!(format!("{lock:?}").ends_with(" [locked]>"));
///     }
///     assert!(!lock.locked());
///
///     // await lock.acquire() ... lock.release()
///     lock.acquire().await?.forget();
///     lock.release()?;
///     assert_eq!(lock.release().unwrap_err().to_string(), "Lock is not acquired.");
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    pub(crate) inner: Rc<LockInner>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl Lock {
    /// A new, unlocked lock (`asyncio.Lock()`).
    pub fn new() -> Lock {
        Lock {
            inner: Rc::new(LockInner {
                waiters: Default::default(),
                locked: Cell::new(false),
                owner: Cell::new(0),
                acquisitions: Cell::new(0),
                bound: LoopBound::default(),
            }),
        }
    }

    /// `true` if the lock is acquired.
    pub fn locked(&self) -> bool {
        self.inner.locked.get()
    }

    /// Acquires the lock, waiting until it is unlocked and every task that
    /// was waiting before this one had its turn (`await lock.acquire()`).
    ///
    /// The guard releases the lock when dropped; [`LockGuard::forget`]
    /// keeps it locked for a later [`release`](Lock::release).
    ///
    /// Errors: `CancelledError` if the task is cancelled while waiting (the
    /// lock is then not acquired, and if it had just been handed to this
    /// task it goes to the next waiter); `RuntimeError("… is bound to a
    /// different event loop")`.
    #[track_caller]
    pub fn acquire(&self) -> impl std::future::Future<Output = Result<LockGuard>> + 'static {
        let lock = self.clone();
        let location = Location::caller();
        async move { lock.acquire_at(location).await }
    }

    /// [`acquire`](Lock::acquire) with the location futures are made at.
    pub(crate) async fn acquire_at(
        &self,
        location: &'static Location<'static>,
    ) -> Result<LockGuard> {
        self.acquire_raw(location).await?;
        Ok(LockGuard::new(self.clone()))
    }

    /// `Lock.acquire()` without the guard.
    pub(crate) async fn acquire_raw(&self, location: &'static Location<'static>) -> Result<()> {
        let inner = &*self.inner;
        // Fair scheduling: jump the queue only if every waiter is cancelled.
        if !inner.locked.get() && inner.waiters.borrow().iter().all(|w| w.cancelled()) {
            self.take();
            return Ok(());
        }
        let fut = inner
            .bound
            .create_future(|| format!("{self:?}"), location)?;
        inner.waiters.borrow_mut().push_back(fut.clone());
        let cleanup = OnDrop::new(|| {
            remove_waiter(&inner.waiters, &fut);
            if !inner.locked.get() {
                self.wake_up_first();
            }
        });
        let waited = (&fut).await;
        cleanup.disarm();
        remove_waiter(&inner.waiters, &fut);
        if let Err(e) = waited {
            if e.is_cancelled() && !inner.locked.get() {
                // Not claimed by us: make sure the next waiter runs.
                self.wake_up_first();
            }
            return Err(e);
        }
        self.take();
        Ok(())
    }

    fn take(&self) {
        let inner = &*self.inner;
        inner.locked.set(true);
        let n = inner.acquisitions.get() + 1;
        inner.acquisitions.set(n);
        inner.owner.set(n);
    }

    /// Releases the lock and wakes the first task waiting for it
    /// (`lock.release()`).
    ///
    /// Errors: `RuntimeError("Lock is not acquired.")` on an unlocked lock.
    pub fn release(&self) -> Result<()> {
        if self.inner.locked.get() {
            self.inner.locked.set(false);
            self.wake_up_first();
            Ok(())
        } else {
            Err(Error::runtime("Lock is not acquired."))
        }
    }

    /// `_wake_up_first`: ensures the first waiter will wake up.
    fn wake_up_first(&self) {
        let first = self.inner.waiters.borrow().front().cloned();
        if let Some(fut) = first {
            if !fut.done() {
                let _ = fut.set_result(());
            }
        }
    }

    /// The number of waiting acquirers (`len(lock._waiters)`, shown by the
    /// repr), for tests.
    #[doc(hidden)]
    pub fn _waiters_len(&self) -> usize {
        self.inner.waiters.borrow().len()
    }

    /// The waiters' futures (`lock._waiters`), for tests.
    #[doc(hidden)]
    pub fn _waiters(&self) -> Vec<crate::Future<()>> {
        self.inner.waiters.borrow().iter().cloned().collect()
    }

    /// `true` if both handles are the same lock (Python's `is`).
    pub fn ptr_eq(&self, other: &Lock) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// `<asyncio.locks.Lock object at 0x… [unlocked]>`, `[locked, waiters:2]`.
impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.locked() { "locked" } else { "unlocked" };
        f.write_str(&object_repr(
            "Lock",
            Rc::as_ptr(&self.inner).cast(),
            &state_repr(state, &self.inner.waiters),
        ))
    }
}

/// Holds a [`Lock`] (or a [`Condition`]'s lock) acquired: the body of an
/// `async with lock:` block. Dropping the guard releases the lock.
///
/// The guard releases only the acquisition it stands for: if the lock was
/// released some other way meanwhile ([`Lock::release`]), and perhaps
/// acquired again by another task, dropping the guard leaves it alone.
/// [`Condition::wait`] gives the acquisition back when it re-acquires the
/// lock, so a guard stays valid across it.
#[must_use = "the lock is released when the guard is dropped; `forget()` keeps it held"]
pub struct LockGuard {
    lock: Lock,
    acquisition: u64,
    armed: bool,
}

impl LockGuard {
    fn new(lock: Lock) -> LockGuard {
        let acquisition = lock.inner.owner.get();
        LockGuard {
            lock,
            acquisition,
            armed: true,
        }
    }

    /// `true` while this acquisition holds the lock.
    fn holds(&self) -> bool {
        let inner = &self.lock.inner;
        self.armed && inner.locked.get() && inner.owner.get() == self.acquisition
    }

    /// Releases the lock now (the end of the `async with` block), with the
    /// error a Python `__aexit__` would raise.
    ///
    /// Errors: `RuntimeError("Lock is not acquired.")` if this acquisition
    /// no longer holds the lock.
    pub fn release(mut self) -> Result<()> {
        let result = if self.holds() {
            self.lock.release()
        } else {
            Err(Error::runtime("Lock is not acquired."))
        };
        self.armed = false;
        result
    }

    /// Drops the guard and keeps the lock held: a Python
    /// `await lock.acquire()` whose `lock.release()` comes later.
    pub fn forget(mut self) {
        self.armed = false;
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.holds() {
            let _ = self.lock.release();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.lock)
            .field("held", &self.holds())
            .finish()
    }
}

// ===== Event =====

struct EventInner {
    waiters: Waiters,
    value: Cell<bool>,
    bound: LoopBound,
}

/// A flag tasks can wait for (Python's `asyncio.Event`, like
/// `threading.Event`): [`set`](Event::set) wakes every waiting task, and
/// later [`wait`](Event::wait)s return at once until
/// [`clear`](Event::clear).
///
/// ```
/// use asyncio_core::locks::Event;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let ev = Event::new();
///     let waiter = asyncio_core::create_task(ev.wait())?;
///     asyncio_core::sleep(0).await?;
///     assert!(format!("{ev:?}").ends_with(" [unset, waiters:1]>"));
///     ev.set();
///     assert!(waiter.await?);
///     assert!(ev.is_set());
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Rc<EventInner>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A new event, not set (`asyncio.Event()`).
    pub fn new() -> Event {
        Event {
            inner: Rc::new(EventInner {
                waiters: Default::default(),
                value: Cell::new(false),
                bound: LoopBound::default(),
            }),
        }
    }

    /// `true` if the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.value.get()
    }

    /// Sets the flag and wakes every task waiting for it.
    pub fn set(&self) {
        if !self.inner.value.get() {
            self.inner.value.set(true);
            for fut in self.inner.waiters.borrow().iter() {
                if !fut.done() {
                    let _ = fut.set_result(());
                }
            }
        }
    }

    /// Resets the flag: later [`wait`](Event::wait)s block until the next
    /// [`set`](Event::set).
    pub fn clear(&self) {
        self.inner.value.set(false);
    }

    /// Waits until the flag is set; returns `true` (as Python's does), at
    /// once if it is set already.
    ///
    /// Errors: `CancelledError`; `RuntimeError("… is bound to a different
    /// event loop")`.
    #[track_caller]
    pub fn wait(&self) -> impl std::future::Future<Output = Result<bool>> + 'static {
        let event = self.clone();
        let location = Location::caller();
        async move { event.wait_raw(location).await }
    }

    pub(crate) async fn wait_raw(&self, location: &'static Location<'static>) -> Result<bool> {
        let inner = &*self.inner;
        if inner.value.get() {
            return Ok(true);
        }
        let fut = inner
            .bound
            .create_future(|| format!("{self:?}"), location)?;
        inner.waiters.borrow_mut().push_back(fut.clone());
        let cleanup = OnDrop::new(|| {
            remove_waiter(&inner.waiters, &fut);
        });
        let waited = (&fut).await;
        cleanup.disarm();
        remove_waiter(&inner.waiters, &fut);
        waited.map(|()| true)
    }

    /// The number of waiting tasks (`len(event._waiters)`), for tests.
    #[doc(hidden)]
    pub fn _waiters_len(&self) -> usize {
        self.inner.waiters.borrow().len()
    }
}

/// `<asyncio.locks.Event object at 0x… [unset]>`, `[set, waiters:1]`.
impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        f.write_str(&object_repr(
            "Event",
            Rc::as_ptr(&self.inner).cast(),
            &state_repr(state, &self.inner.waiters),
        ))
    }
}

// ===== Condition =====

struct CondInner {
    lock: Lock,
    waiters: Waiters,
    bound: LoopBound,
}

/// A condition variable (Python's `asyncio.Condition`): tasks holding its
/// lock [`wait`](Condition::wait) until another task holding it
/// [`notify`](Condition::notify)s them.
///
/// The Rust shape of `async with cond:` is the lock's guard:
/// `let _guard = cond.acquire().await?;`. While it lives, call
/// `cond.wait().await?`, `cond.wait_for(pred).await?`,
/// `cond.notify(n)?` and `cond.notify_all()?` on the condition, as in
/// Python; `wait` releases the lock, waits, and takes the lock back before
/// it returns — also when it fails (cancelled) — so the guard still holds
/// it afterwards.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use asyncio_core::locks::Condition;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let cond = Condition::new();
///     let items = Rc::new(Cell::new(0));
///     let consumer = {
///         let (cond, items) = (cond.clone(), items.clone());
///         asyncio_core::create_task(async move {
///             let _guard = cond.acquire().await?; // async with cond:
///             cond.wait_for(|| items.get() > 0).await?;
///             items.set(items.get() - 1);
///             Ok(())
///         })?
///     };
///     asyncio_core::sleep(0).await?;
///     {
///         let _guard = cond.acquire().await?;
///         items.set(1);
///         cond.notify(1)?;
///     }
///     consumer.await?;
///     assert_eq!(items.get(), 0);
///     assert_eq!(cond.notify(1).unwrap_err().to_string(), "cannot notify on un-acquired lock");
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    inner: Rc<CondInner>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl Condition {
    /// A condition with a new lock of its own (`asyncio.Condition()`).
    pub fn new() -> Condition {
        Condition::with_lock(Lock::new())
    }

    /// A condition using `lock` (`asyncio.Condition(lock)`), which other
    /// conditions or code may share.
    pub fn with_lock(lock: Lock) -> Condition {
        Condition {
            inner: Rc::new(CondInner {
                lock,
                waiters: Default::default(),
                bound: LoopBound::default(),
            }),
        }
    }

    /// The underlying lock (`cond._lock`).
    pub fn lock(&self) -> &Lock {
        &self.inner.lock
    }

    /// `true` if the underlying lock is acquired.
    pub fn locked(&self) -> bool {
        self.inner.lock.locked()
    }

    /// Acquires the underlying lock ([`Lock::acquire`]): `async with cond:`.
    #[track_caller]
    pub fn acquire(&self) -> impl std::future::Future<Output = Result<LockGuard>> + 'static {
        self.inner.lock.acquire()
    }

    /// Releases the underlying lock ([`Lock::release`]).
    pub fn release(&self) -> Result<()> {
        self.inner.lock.release()
    }

    /// Releases the lock, waits until notified, then re-acquires the lock
    /// and returns `true` (`await cond.wait()`). May return spuriously:
    /// re-check the condition, or use [`wait_for`](Condition::wait_for).
    ///
    /// The lock is re-acquired even when the wait is cancelled; the error
    /// comes after (the latest `CancelledError`, as CPython re-raises it).
    /// A task that fails here after it was notified passes the
    /// notification on to the next waiter.
    ///
    /// Errors: `RuntimeError("cannot wait on un-acquired lock")`;
    /// `CancelledError`; `RuntimeError("… is bound to a different event
    /// loop")`.
    #[track_caller]
    pub fn wait(&self) -> impl std::future::Future<Output = Result<bool>> + 'static {
        let cond = self.clone();
        let location = Location::caller();
        async move { cond.wait_raw(location).await }
    }

    async fn wait_raw(&self, location: &'static Location<'static>) -> Result<bool> {
        let inner = &*self.inner;
        let lock = &inner.lock;
        if !lock.locked() {
            return Err(Error::runtime("cannot wait on un-acquired lock"));
        }
        let fut = inner
            .bound
            .create_future(|| format!("{self:?}"), location)?;
        let acquisition = lock.inner.owner.get();
        lock.release()?;
        // Dropped before the lock is back: the `except BaseException` part.
        let cleanup = OnDrop::new(|| {
            remove_waiter(&inner.waiters, &fut);
            self.notify_raw(1);
        });
        inner.waiters.borrow_mut().push_back(fut.clone());
        let waited = (&fut).await;
        remove_waiter(&inner.waiters, &fut);
        // Must re-acquire the lock even if the wait is cancelled.
        let mut cancelled = None;
        let reacquired = loop {
            match lock.acquire_raw(location).await {
                Ok(()) => break Ok(()),
                Err(e) if e.is_cancelled() => cancelled = Some(e),
                Err(e) => break Err(e),
            }
        };
        cleanup.disarm();
        let result = match reacquired {
            Ok(()) => {
                // The guard of the caller's acquisition stays valid.
                lock.inner.owner.set(acquisition);
                match cancelled {
                    Some(e) => Err(e),
                    None => waited.map(|()| true),
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            // We may have been notified before failing: notify another
            // task instead (a spurious wake-up at worst).
            self.notify_raw(1);
        }
        result
    }

    /// Waits until `predicate()` is true (`await cond.wait_for(predicate)`):
    /// checks it, then [`wait`](Condition::wait)s and checks again until it
    /// holds; returns its final value (`true`). The lock must be held unless
    /// the predicate is true at once.
    ///
    /// Errors: those of [`wait`](Condition::wait).
    #[track_caller]
    pub fn wait_for<P>(&self, mut predicate: P) -> impl std::future::Future<Output = Result<bool>>
    where
        P: FnMut() -> bool,
    {
        let cond = self.clone();
        let location = Location::caller();
        async move {
            let mut result = predicate();
            while !result {
                cond.wait_raw(location).await?;
                result = predicate();
            }
            Ok(result)
        }
    }

    /// Wakes up to `n` of the tasks waiting on the condition, in FIFO order
    /// (`cond.notify(n)`; Python's default is 1). They return from
    /// [`wait`](Condition::wait) once they get the lock back, so the caller
    /// should release it.
    ///
    /// Errors: `RuntimeError("cannot notify on un-acquired lock")`.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.locked() {
            return Err(Error::runtime("cannot notify on un-acquired lock"));
        }
        self.notify_raw(n);
        Ok(())
    }

    /// `_notify(n)`: wakes the first `n` waiters not woken yet.
    pub(crate) fn notify_raw(&self, n: usize) {
        let mut idx = 0;
        for fut in self.inner.waiters.borrow().iter() {
            if idx >= n {
                break;
            }
            if !fut.done() {
                idx += 1;
                let _ = fut.set_result(());
            }
        }
    }

    /// Wakes every task waiting on the condition (`cond.notify_all()`).
    ///
    /// Errors: `RuntimeError("cannot notify on un-acquired lock")`.
    pub fn notify_all(&self) -> Result<()> {
        let n = self.inner.waiters.borrow().len();
        self.notify(n)
    }

    /// The number of waiting tasks (`len(cond._waiters)`), for tests.
    #[doc(hidden)]
    pub fn _waiters_len(&self) -> usize {
        self.inner.waiters.borrow().len()
    }
}

/// `<asyncio.locks.Condition object at 0x… [unlocked]>`, `[locked, waiters:1]`.
impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.locked() { "locked" } else { "unlocked" };
        f.write_str(&object_repr(
            "Condition",
            Rc::as_ptr(&self.inner).cast(),
            &state_repr(state, &self.inner.waiters),
        ))
    }
}
