//! `asyncio.Semaphore` and `asyncio.BoundedSemaphore`.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use super::state_repr;
use crate::exceptions::{Error, Result};
use crate::mixins::{object_repr, remove_waiter, LoopBound, OnDrop, Waiters};

struct SemInner {
    waiters: Waiters,
    value: Cell<usize>,
    /// The initial value of a `BoundedSemaphore`.
    bound_value: Option<usize>,
    bound: LoopBound,
}

/// A counter of free slots tasks acquire and release (Python's
/// `asyncio.Semaphore`): [`acquire`](Semaphore::acquire) takes one,
/// waiting while there are none; [`release`](Semaphore::release) gives one
/// back and wakes the first waiter.
///
/// Waiters are served in FIFO order: a task arriving while others wait
/// queues behind them even if a slot is free ([`locked`](Semaphore::locked)
/// is then `true`). A waiter cancelled after it was handed a slot gives it
/// back, and the next waiter gets it.
///
/// `async with sem:` is `let _guard = sem.acquire().await?;`; the
/// [`SemaphoreGuard`] releases on drop. (A negative initial value, a
/// `ValueError` in Python, cannot be written: the value is a `usize`.)
///
/// ```
/// use asyncio_core::locks::Semaphore;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await?;
///     let _b = sem.acquire().await?;
///     assert!(sem.locked());
///     assert!(format!("{sem:?}").ends_with(" [locked]>"));
///     drop(a);
///     assert!(format!("{sem:?}").ends_with(" [unlocked, value:1]>"));
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemInner>,
}

impl Default for Semaphore {
    /// `asyncio.Semaphore()`: one slot.
    fn default() -> Self {
        Semaphore::new(1)
    }
}

impl Semaphore {
    /// A semaphore with `value` free slots (`asyncio.Semaphore(value)`).
    pub fn new(value: usize) -> Semaphore {
        Semaphore::with_bound(value, None)
    }

    fn with_bound(value: usize, bound_value: Option<usize>) -> Semaphore {
        Semaphore {
            inner: Rc::new(SemInner {
                waiters: Default::default(),
                value: Cell::new(value),
                bound_value,
                bound: LoopBound::default(),
            }),
        }
    }

    /// `true` if [`acquire`](Semaphore::acquire) would wait: no free slot,
    /// or tasks (not cancelled) are waiting already and go first.
    pub fn locked(&self) -> bool {
        self.inner.value.get() == 0 || self.inner.waiters.borrow().iter().any(|w| !w.cancelled())
    }

    /// Takes a slot, waiting for one if [`locked`](Semaphore::locked)
    /// (`await sem.acquire()`). The guard gives it back when dropped;
    /// [`SemaphoreGuard::forget`] keeps it taken for a later
    /// [`release`](Semaphore::release).
    ///
    /// Errors: `CancelledError` (no slot is taken then);
    /// `RuntimeError("… is bound to a different event loop")`.
    #[track_caller]
    pub fn acquire(&self) -> impl std::future::Future<Output = Result<SemaphoreGuard>> + 'static {
        let sem = self.clone();
        let location = Location::caller();
        async move {
            sem.acquire_raw(location).await?;
            Ok(SemaphoreGuard { sem, armed: true })
        }
    }

    async fn acquire_raw(&self, location: &'static Location<'static>) -> Result<()> {
        let inner = &*self.inner;
        if !self.locked() {
            // Maintain FIFO: others waiting go first even if value > 0.
            inner.value.set(inner.value.get() - 1);
            return Ok(());
        }
        let fut = inner
            .bound
            .create_future(|| format!("{self:?}"), location)?;
        inner.waiters.borrow_mut().push_back(fut.clone());
        let cleanup = OnDrop::new(|| {
            remove_waiter(&inner.waiters, &fut);
            if fut.done() && !fut.cancelled() {
                inner.value.set(inner.value.get() + 1);
            }
            self.wake_up_waiters();
        });
        let waited = (&fut).await;
        cleanup.disarm();
        remove_waiter(&inner.waiters, &fut);
        if let Err(e) = &waited {
            if e.is_cancelled() && fut.done() && !fut.cancelled() {
                // Woken by `_wake_up_next()`, but not acquiring after all:
                // undo its bookkeeping (and wake someone else below).
                inner.value.set(inner.value.get() + 1);
            }
        }
        self.wake_up_waiters();
        waited
    }

    /// The `finally` of `acquire()`: new waiters may have arrived but had to
    /// wait due to FIFO; wake up as many as are allowed.
    fn wake_up_waiters(&self) {
        while self.inner.value.get() > 0 {
            if !self.wake_up_next() {
                break;
            }
        }
    }

    /// Gives a slot back and wakes the first waiter (`sem.release()`).
    pub fn release(&self) {
        self.inner.value.set(self.inner.value.get() + 1);
        self.wake_up_next();
    }

    fn release_checked(&self) -> Result<()> {
        if let Some(bound) = self.inner.bound_value {
            if self.inner.value.get() >= bound {
                return Err(Error::value("BoundedSemaphore released too many times"));
            }
        }
        self.release();
        Ok(())
    }

    /// `_wake_up_next`: wakes the first waiter that isn't done.
    fn wake_up_next(&self) -> bool {
        let waiters = self.inner.waiters.borrow();
        for fut in waiters.iter() {
            if !fut.done() {
                self.inner.value.set(self.inner.value.get() - 1);
                let _ = fut.set_result(());
                return true;
            }
        }
        false
    }

    /// The free slots (`sem._value`), for tests.
    #[doc(hidden)]
    pub fn _value(&self) -> usize {
        self.inner.value.get()
    }

    /// The number of waiters (`len(sem._waiters)`), for tests.
    #[doc(hidden)]
    pub fn _waiters_len(&self) -> usize {
        self.inner.waiters.borrow().len()
    }
}

/// `<asyncio.locks.Semaphore object at 0x… [unlocked, value:1]>`,
/// `[locked, waiters:2]`.
impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.inner.bound_value.is_some() {
            "BoundedSemaphore"
        } else {
            "Semaphore"
        };
        let locked = self
            .inner
            .waiters
            .try_borrow()
            .map(|w| self.inner.value.get() == 0 || w.iter().any(|w| !w.cancelled()))
            .unwrap_or(false);
        let state = if locked {
            "locked".to_owned()
        } else {
            format!("unlocked, value:{}", self.inner.value.get())
        };
        f.write_str(&object_repr(
            name,
            Rc::as_ptr(&self.inner).cast(),
            &state_repr(&state, &self.inner.waiters),
        ))
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value
/// (Python's `asyncio.BoundedSemaphore`): a release without a matching
/// acquire is an error instead of a silent extra slot.
///
/// ```
/// use asyncio_core::locks::BoundedSemaphore;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let sem = BoundedSemaphore::new(1);
///     sem.acquire().await?.forget();
///     sem.release()?;
///     let err = sem.release().unwrap_err();
///     assert_eq!(err.to_string(), "BoundedSemaphore released too many times");
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl Default for BoundedSemaphore {
    /// `asyncio.BoundedSemaphore()`: one slot.
    fn default() -> Self {
        BoundedSemaphore::new(1)
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` slots (`asyncio.BoundedSemaphore(value)`).
    pub fn new(value: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::with_bound(value, Some(value)),
        }
    }

    /// `true` if [`acquire`](BoundedSemaphore::acquire) would wait (see
    /// [`Semaphore::locked`]).
    pub fn locked(&self) -> bool {
        self.sem.locked()
    }

    /// Takes a slot, waiting for one (see [`Semaphore::acquire`]).
    #[track_caller]
    pub fn acquire(&self) -> impl std::future::Future<Output = Result<SemaphoreGuard>> + 'static {
        self.sem.acquire()
    }

    /// Gives a slot back and wakes the first waiter.
    ///
    /// Errors: `ValueError("BoundedSemaphore released too many times")`
    /// when every slot is free already.
    pub fn release(&self) -> Result<()> {
        self.sem.release_checked()
    }

    /// The free slots (`sem._value`), for tests.
    #[doc(hidden)]
    pub fn _value(&self) -> usize {
        self.sem._value()
    }

    /// The number of waiters (`len(sem._waiters)`), for tests.
    #[doc(hidden)]
    pub fn _waiters_len(&self) -> usize {
        self.sem._waiters_len()
    }
}

/// `<asyncio.locks.BoundedSemaphore object at 0x… [unlocked, value:1]>`.
impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sem.fmt(f)
    }
}

/// A slot taken from a [`Semaphore`] or [`BoundedSemaphore`]: the body of
/// `async with sem:`. Dropping the guard releases the slot.
#[must_use = "the slot is released when the guard is dropped; `forget()` keeps it taken"]
pub struct SemaphoreGuard {
    sem: Semaphore,
    armed: bool,
}

impl SemaphoreGuard {
    /// Releases the slot now, with the error a Python `__aexit__` would
    /// raise.
    ///
    /// Errors: `ValueError("BoundedSemaphore released too many times")`
    /// for a bounded semaphore whose slots are all free (released
    /// elsewhere meanwhile).
    pub fn release(mut self) -> Result<()> {
        self.armed = false;
        self.sem.release_checked()
    }

    /// Drops the guard and keeps the slot taken: a Python
    /// `await sem.acquire()` whose `sem.release()` comes later.
    pub fn forget(mut self) {
        self.armed = false;
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        if self.armed {
            // A bounded semaphore released too many times elsewhere has
            // nothing to give back.
            let _ = self.sem.release_checked();
        }
    }
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("semaphore", &self.sem)
            .finish()
    }
}
