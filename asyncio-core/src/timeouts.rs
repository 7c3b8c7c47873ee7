//! `asyncio.timeout`, `asyncio.timeout_at` and `asyncio.wait_for`
//! (CPython's `timeouts.py` and `tasks.wait_for`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::rc::Rc;

use crate::events::{check_delay, get_running_loop, monotonic, Delay, Handle};
use crate::exceptions::{Error, Result};
use crate::tasks::{current_task, AnyTask};
use crate::{Awaitable, Future};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Created,
    Entered,
    Expiring,
    Expired,
    Exited,
}

impl State {
    fn value(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Entered => "active",
            State::Expiring => "expiring",
            State::Expired => "expired",
            State::Exited => "finished",
        }
    }
}

struct Inner {
    state: Cell<State>,
    when: Cell<Option<f64>>,
    handle: RefCell<Option<Handle>>,
    task: RefCell<Option<AnyTask>>,
    cancelling: Cell<u32>,
}

/// An asynchronous timeout scope (Python's `asyncio.Timeout`, the object of
/// `async with asyncio.timeout(...)`).
///
/// [`run`](Timeout::run) plays the `async with` block: when the deadline
/// passes, the current task is cancelled, and the `CancelledError` that
/// leaves the block is turned into `TimeoutError`. The deadline can be
/// moved from inside the block with [`reschedule`](Timeout::reschedule)
/// (keep a clone of the `Timeout` there).
///
/// ```
/// use asyncio_core::{sleep, timeout, ErrorKind};
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let cm = timeout(0.01);
///     let err = cm.run(sleep(10)).await.unwrap_err();
///     assert_eq!(err.kind(), ErrorKind::TimeoutError);
///     assert!(cm.expired());
///
///     // Pushing the deadline back from inside the block:
///     let cm = timeout(0.01);
///     let inner = cm.clone();
///     cm.run(async move {
///         inner.reschedule(Some(inner.when().unwrap() + 1.0))?;
///         sleep(0.02).await
///     })
///     .await
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Timeout {
    inner: Rc<Inner>,
}

/// A timeout argument: a [`Delay`], or `None` for no limit (Python's
/// `timeout=None`).
pub trait TimeoutArg {
    /// The limit in seconds, `None` for none.
    fn limit(self) -> Option<f64>;
}

impl<D: Delay> TimeoutArg for D {
    fn limit(self) -> Option<f64> {
        Some(self.as_secs())
    }
}

impl TimeoutArg for Option<f64> {
    fn limit(self) -> Option<f64> {
        self
    }
}

/// `asyncio.timeout(delay)`: a [`Timeout`] expiring `delay` from now
/// (`timeout(None)`: no deadline until rescheduled).
pub fn timeout(delay: impl TimeoutArg) -> Timeout {
    match delay.limit() {
        None => Timeout::new(None),
        Some(d) => {
            let now = crate::events::with_running_inner(|l| l.map_or_else(monotonic, |l| l.now()));
            Timeout::new(Some(now + d))
        }
    }
}

/// `asyncio.timeout_at(when)`: a [`Timeout`] expiring at `when`, in
/// `loop.time()` seconds.
pub fn timeout_at(when: f64) -> Timeout {
    Timeout::new(Some(when))
}

impl Timeout {
    /// A timeout expiring at `when` (`None`: never, until rescheduled).
    pub fn new(when: Option<f64>) -> Timeout {
        Timeout {
            inner: Rc::new(Inner {
                state: Cell::new(State::Created),
                when: Cell::new(when),
                handle: RefCell::new(None),
                task: RefCell::new(None),
                cancelling: Cell::new(0),
            }),
        }
    }

    /// The deadline, in `loop.time()` seconds (`None`: no deadline).
    pub fn when(&self) -> Option<f64> {
        self.inner.when.get()
    }

    /// Moves the deadline (`None` removes it).
    ///
    /// Errors: `"Timeout has not been entered"` before `run`;
    /// `"Cannot change state of expiring Timeout"` (or `expired`, `finished`).
    pub fn reschedule(&self, when: Option<f64>) -> Result<()> {
        let state = self.inner.state.get();
        if state != State::Entered {
            if state == State::Created {
                return Err(Error::runtime("Timeout has not been entered"));
            }
            return Err(Error::runtime(format!(
                "Cannot change state of {} Timeout",
                state.value()
            )));
        }
        if let Some(w) = when {
            if w.is_nan() {
                return Err(Error::value("Invalid when: NaN (not a number)"));
            }
        }
        self.inner.when.set(when);
        if let Some(h) = self.inner.handle.borrow_mut().take() {
            h.cancel();
        }
        if let Some(when) = when {
            let loop_ = get_running_loop()?;
            let me = Rc::downgrade(&self.inner);
            let on_timeout = move || {
                if let Some(inner) = me.upgrade() {
                    Timeout { inner }.on_timeout();
                }
            };
            let handle = if when <= loop_.time() {
                loop_.call_soon(on_timeout)?
            } else {
                loop_.call_at(when, on_timeout)?.as_handle().clone()
            };
            *self.inner.handle.borrow_mut() = Some(handle);
        }
        Ok(())
    }

    /// `true` if the deadline passed while the block ran.
    pub fn expired(&self) -> bool {
        matches!(self.inner.state.get(), State::Expiring | State::Expired)
    }

    fn on_timeout(&self) {
        if self.inner.state.get() != State::Entered {
            return;
        }
        if let Some(task) = self.inner.task.borrow().as_ref() {
            task.cancel();
        }
        self.inner.state.set(State::Expiring);
        self.inner.handle.borrow_mut().take();
    }

    fn enter(&self) -> Result<()> {
        if self.inner.state.get() != State::Created {
            return Err(Error::runtime("Timeout has already been entered"));
        }
        let Some(task) = current_task()? else {
            return Err(Error::runtime("Timeout should be used inside a task"));
        };
        self.inner.state.set(State::Entered);
        self.inner.cancelling.set(task.cancelling());
        *self.inner.task.borrow_mut() = Some(task);
        self.reschedule(self.inner.when.get())
    }

    fn exit<T>(&self, outcome: Result<T>) -> Result<T> {
        if let Some(h) = self.inner.handle.borrow_mut().take() {
            h.cancel();
        }
        match self.inner.state.get() {
            State::Expiring => {
                self.inner.state.set(State::Expired);
                let task = self.inner.task.borrow_mut().take();
                let uncancelled = task.map_or(0, |t| t.uncancel());
                if uncancelled <= self.inner.cancelling.get() {
                    if let Err(e) = &outcome {
                        if e.is_cancelled() {
                            // `raise TimeoutError from exc_val`.
                            return Err(Error::timeout().with_cause(e.clone()));
                        }
                    }
                }
                outcome
            }
            State::Entered => {
                self.inner.state.set(State::Exited);
                self.inner.task.borrow_mut().take();
                outcome
            }
            _ => outcome,
        }
    }

    /// Runs `body` under this timeout (the `async with` block).
    ///
    /// Errors: `TimeoutError` when the deadline passed and the body ended in
    /// the resulting cancellation; `"Timeout should be used inside a task"`;
    /// `"Timeout has already been entered"`.
    pub async fn run<T, B>(&self, body: B) -> Result<T>
    where
        B: IntoFuture<Output = Result<T>>,
    {
        self.enter()?;
        let mut guard = AbandonGuard(Some(self.clone()));
        let outcome = body.into_future().await;
        guard.0 = None;
        self.exit(outcome)
    }

    /// The block was dropped before it finished (e.g. by `select!`): disarm
    /// the timer and take back a cancellation it already requested.
    fn abandon(&self) {
        if let Some(h) = self.inner.handle.borrow_mut().take() {
            h.cancel();
        }
        let task = self.inner.task.borrow_mut().take();
        if self.inner.state.get() == State::Expiring {
            if let Some(task) = task {
                task.uncancel();
            }
            self.inner.state.set(State::Expired);
        } else {
            self.inner.state.set(State::Exited);
        }
    }
}

/// Runs [`Timeout::abandon`] if a `run` future is dropped mid-way.
struct AbandonGuard(Option<Timeout>);

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abandon();
        }
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.get();
        if state == State::Entered {
            let when = match self.inner.when.get() {
                Some(w) => crate::format_helpers::py_float((w * 1000.0).round() / 1000.0),
                None => "None".to_owned(),
            };
            write!(f, "<Timeout [{}] when={when}>", state.value())
        } else {
            write!(f, "<Timeout [{}]>", state.value())
        }
    }
}

/// `asyncio.wait_for(aw, timeout)`: awaits `aw`, cancelling it and failing
/// with `TimeoutError` if it takes longer than `timeout`.
///
/// With `timeout <= 0` the awaitable is cancelled at once unless already
/// done. A value returned despite the cancellation is returned.
///
/// ```
/// use asyncio_core::{sleep, wait_for, ErrorKind};
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let err = wait_for(sleep(10), 0.01).await.unwrap_err();
///     assert_eq!(err.kind(), ErrorKind::TimeoutError);
///     wait_for(sleep(0), 10.0).await
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub async fn wait_for<T, A>(awaitable: A, timeout: impl TimeoutArg) -> Result<T>
where
    T: 'static,
    A: Awaitable<T> + IntoFuture<Output = Result<T>>,
{
    let Some(timeout) = timeout.limit() else {
        return self::timeout(None).run(awaitable).await;
    };
    let timeout = check_delay(timeout)?;
    if timeout <= 0.0 {
        let loop_ = get_running_loop()?;
        let (fut, owned) = awaitable.into_asyncio_future(Some(&loop_))?;
        if fut.done() {
            return A::extract(&fut, owned);
        }
        cancel_and_wait(&fut).await?;
        return match A::extract(&fut, owned) {
            Err(e) if e.is_cancelled() => Err(Error::timeout().with_cause(e)),
            other => other,
        };
    }
    self::timeout(timeout).run(awaitable).await
}

/// Cancels `fut` and waits until it is done (CPython's `_cancel_and_wait`).
pub(crate) async fn cancel_and_wait<T: 'static>(fut: &Future<T>) -> Result<()> {
    let loop_ = get_running_loop()?;
    let waiter = Future::<()>::new(&loop_);
    let w = waiter.clone();
    let id = fut.add_done_callback(move |_: &Future<T>| {
        if !w.done() {
            let _ = w.set_result(());
        }
    });
    fut.cancel();
    let waited = (&waiter).await;
    fut.remove_done_callback(id);
    waited
}
