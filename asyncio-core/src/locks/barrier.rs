//! `asyncio.Barrier` (3.11+).

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use super::Condition;
use crate::exceptions::{Error, ErrorKind, Result};
use crate::mixins::{object_repr, OnDrop};

/// `_BarrierState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Filling,
    Draining,
    Resetting,
    Broken,
}

impl State {
    fn value(self) -> &'static str {
        match self {
            State::Filling => "filling",
            State::Draining => "draining",
            State::Resetting => "resetting",
            State::Broken => "broken",
        }
    }
}

struct BarrierInner {
    /// Notifies all tasks when the state changes.
    cond: Condition,
    parties: usize,
    state: Cell<State>,
    /// Tasks in the barrier.
    count: Cell<usize>,
}

/// A meeting point for a fixed number of tasks (Python's `asyncio.Barrier`,
/// like `threading.Barrier`): each [`wait`](Barrier::wait) blocks until
/// `parties` tasks are waiting, then all of them go on together, each with
/// its own arrival index `0..parties`.
///
/// The barrier can be used again at once: tasks arriving while the last
/// round drains wait for the next one. [`abort`](Barrier::abort) breaks it
/// (every waiter, and every later `wait`, fails with `BrokenBarrierError`);
/// [`reset`](Barrier::reset) fails the current waiters and makes it usable
/// again. `async with barrier as i:` is `let i = barrier.wait().await?;`.
///
/// ```
/// use asyncio_core::locks::Barrier;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let mut indexes = loop_.run_until_complete(async {
///     let barrier = Barrier::new(3)?;
///     assert!(format!("{barrier:?}").ends_with(" [filling, waiters:0/3]>"));
///     let tasks: Vec<_> = (0..3)
///         .map(|_| asyncio_core::create_task(barrier.wait()))
///         .collect::<Result<_, _>>()?;
///     asyncio_core::gather(tasks).await
/// })?;
/// indexes.sort();
/// assert_eq!(indexes, [0, 1, 2]);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Rc<BarrierInner>,
}

impl Barrier {
    /// A barrier for `parties` tasks (`asyncio.Barrier(parties)`).
    ///
    /// Errors: `ValueError("parties must be > 0")`.
    pub fn new(parties: usize) -> Result<Barrier> {
        if parties < 1 {
            return Err(Error::value("parties must be > 0"));
        }
        Ok(Barrier {
            inner: Rc::new(BarrierInner {
                cond: Condition::new(),
                parties,
                state: Cell::new(State::Filling),
                count: Cell::new(0),
            }),
        })
    }

    /// Waits until `parties` tasks wait, then returns this task's arrival
    /// index, from 0 to `parties - 1` (`await barrier.wait()`).
    ///
    /// Errors: `BrokenBarrierError("Barrier aborted")` when the barrier is
    /// broken on arrival; `BrokenBarrierError("Abort or reset of barrier")`
    /// when it is aborted or reset while this task waits;
    /// `CancelledError` (the task leaves the barrier, which goes on
    /// waiting for the others).
    #[track_caller]
    pub fn wait(&self) -> impl std::future::Future<Output = Result<usize>> + 'static {
        let barrier = self.clone();
        let location = Location::caller();
        async move { barrier.wait_raw(location).await }
    }

    async fn wait_raw(&self, location: &'static Location<'static>) -> Result<usize> {
        let inner = &*self.inner;
        let _guard = inner.cond.lock().acquire_at(location).await?;
        // Block while the barrier drains or resets.
        self.block(location).await?;
        let index = inner.count.get();
        inner.count.set(index + 1);
        let cleanup = OnDrop::new(|| {
            inner.count.set(inner.count.get() - 1);
            let _ = self.exit(false);
        });
        let passed = if index + 1 == inner.parties {
            // We release the barrier.
            self.release()
        } else {
            self.wait_released(location).await
        };
        cleanup.disarm();
        inner.count.set(inner.count.get() - 1);
        // Wake up any tasks waiting for the barrier to drain.
        self.exit(true)?;
        passed.map(|()| index)
    }

    /// `_block`: waits while the barrier drains or resets; fails if broken.
    async fn block(&self, location: &'static Location<'static>) -> Result<()> {
        let inner = &*self.inner;
        while matches!(inner.state.get(), State::Draining | State::Resetting) {
            inner.cond.wait_raw(location).await?;
        }
        if inner.state.get() == State::Broken {
            return Err(Error::new(ErrorKind::BrokenBarrierError, "Barrier aborted"));
        }
        Ok(())
    }

    /// `_release`: enters the draining state, releasing the waiters; the
    /// next tasks to arrive wait until draining ends.
    fn release(&self) -> Result<()> {
        self.inner.state.set(State::Draining);
        self.inner.cond.notify_all()
    }

    /// `_wait`: waits in the barrier until released; fails if it is reset
    /// or broken meanwhile.
    async fn wait_released(&self, location: &'static Location<'static>) -> Result<()> {
        let inner = &*self.inner;
        while inner.state.get() == State::Filling {
            inner.cond.wait_raw(location).await?;
        }
        if matches!(inner.state.get(), State::Broken | State::Resetting) {
            return Err(Error::new(
                ErrorKind::BrokenBarrierError,
                "Abort or reset of barrier",
            ));
        }
        Ok(())
    }

    /// `_exit`: the last task out signals the tasks waiting for the barrier
    /// to drain. `checked` is false on the clean-up path of a dropped
    /// `wait()`, which may not hold the lock any more.
    fn exit(&self, checked: bool) -> Result<()> {
        let inner = &*self.inner;
        if inner.count.get() == 0 {
            if matches!(inner.state.get(), State::Resetting | State::Draining) {
                inner.state.set(State::Filling);
            }
            if checked {
                inner.cond.notify_all()?;
            } else {
                inner.cond.notify_raw(usize::MAX);
            }
        }
        Ok(())
    }

    /// Resets the barrier to its initial, filling state
    /// (`await barrier.reset()`): tasks waiting in it fail with
    /// `BrokenBarrierError`.
    #[track_caller]
    pub fn reset(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let barrier = self.clone();
        let location = Location::caller();
        async move {
            let inner = &*barrier.inner;
            let _guard = inner.cond.lock().acquire_at(location).await?;
            if inner.count.get() > 0 {
                if inner.state.get() != State::Resetting {
                    // Reset the barrier, waking up tasks.
                    inner.state.set(State::Resetting);
                }
            } else {
                inner.state.set(State::Filling);
            }
            inner.cond.notify_all()
        }
    }

    /// Puts the barrier in the broken state (`await barrier.abort()`):
    /// waiting tasks and later [`wait`](Barrier::wait)s fail with
    /// `BrokenBarrierError`. Useful when a party fails.
    #[track_caller]
    pub fn abort(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let barrier = self.clone();
        let location = Location::caller();
        async move {
            let inner = &*barrier.inner;
            let _guard = inner.cond.lock().acquire_at(location).await?;
            inner.state.set(State::Broken);
            inner.cond.notify_all()
        }
    }

    /// The number of tasks needed to pass the barrier.
    pub fn parties(&self) -> usize {
        self.inner.parties
    }

    /// The number of tasks waiting in the barrier while it fills (0 while
    /// it drains, resets or is broken).
    pub fn n_waiting(&self) -> usize {
        if self.inner.state.get() == State::Filling {
            self.inner.count.get()
        } else {
            0
        }
    }

    /// `true` if the barrier is broken.
    pub fn broken(&self) -> bool {
        self.inner.state.get() == State::Broken
    }

    /// The tasks inside the barrier (`barrier._count`), for tests.
    #[doc(hidden)]
    pub fn _count(&self) -> usize {
        self.inner.count.get()
    }
}

/// `<asyncio.locks.Barrier object at 0x… [filling, waiters:2/3]>`, `[broken]`.
impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut extra = self.inner.state.get().value().to_owned();
        if !self.broken() {
            extra.push_str(&format!(
                ", waiters:{}/{}",
                self.n_waiting(),
                self.parties()
            ));
        }
        f.write_str(&object_repr(
            "Barrier",
            Rc::as_ptr(&self.inner).cast(),
            &extra,
        ))
    }
}
