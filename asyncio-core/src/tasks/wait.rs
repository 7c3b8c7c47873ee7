//! `asyncio.shield`, `asyncio.wait` and `asyncio.as_completed`.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::events::{check_delay, get_running_loop, Delay, TimerHandle};
use crate::exceptions::{Error, Result};
use crate::futures::poll_await;
use crate::{Awaitable, Future};

// ===== shield =====

/// `asyncio.shield(aw)`: a future that follows `aw` but whose cancellation
/// leaves `aw` running.
///
/// If `aw` is already done (a task that finished in its eager first step
/// included) it is returned as is. Cancelling the task that awaits the
/// shield cancels only the outer future. Outside a running loop, the loop
/// is the future's own.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let inner = asyncio_core::create_task(async {
///         asyncio_core::sleep(0.01).await?;
///         Ok(5)
///     })?;
///     let outer = asyncio_core::shield(&inner)?;
///     outer.cancel();
///     assert!(outer.cancelled());
///     assert_eq!(inner.clone().await?, 5); // the inner task finished anyway
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[track_caller]
pub fn shield<T: 'static, A: Awaitable<T>>(awaitable: A) -> Result<Future<T>> {
    let (inner, owned) = awaitable.into_asyncio_future(None)?;
    if inner.done() {
        return Ok(inner);
    }
    let outer = Future::<T>::new(&inner.get_loop());
    let extract: fn(&Future<T>, bool) -> Result<T> = A::extract;
    let outer_for_inner = outer.clone();
    let inner_id = inner.add_done_callback(move |inner: &Future<T>| {
        let outer = outer_for_inner;
        if outer.cancelled() {
            if !inner.cancelled() {
                // Mark the inner result retrieved.
                let _ = inner.exception();
            }
            return;
        }
        if inner.cancelled() {
            outer.cancel();
            return;
        }
        match inner.exception() {
            Ok(Some(e)) => {
                let _ = outer.set_exception(e);
            }
            _ => {
                let _ = outer.cell.finish(extract(inner, owned));
            }
        }
    });
    let inner_for_outer = inner.clone();
    outer.add_done_callback(move |_outer: &Future<T>| {
        if !inner_for_outer.done() {
            inner_for_outer.remove_done_callback(inner_id);
        }
    });
    Ok(outer)
}

// ===== wait =====

/// When `asyncio.wait` returns (`return_when=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReturnWhen {
    /// `FIRST_COMPLETED`: as soon as any future is done.
    FirstCompleted,
    /// `FIRST_EXCEPTION`: when any future finishes with an error, or all are done.
    FirstException,
    /// `ALL_COMPLETED`: when all futures are done.
    #[default]
    AllCompleted,
}

/// The builder `asyncio::wait` returns; await it for `(done, pending)`.
pub struct Wait<T: 'static> {
    futures: Vec<Future<T>>,
    timeout: Option<f64>,
    return_when: ReturnWhen,
}

impl<T: 'static> fmt::Debug for Wait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("futures", &self.futures.len())
            .field("timeout", &self.timeout)
            .field("return_when", &self.return_when)
            .finish()
    }
}

/// `asyncio.wait(fs)`: waits for the futures or tasks until
/// [`return_when`](Wait::return_when) is met or the
/// [`timeout`](Wait::timeout) passes, and returns `(done, pending)` in the
/// order given. Nothing is cancelled; errors stay in the futures.
///
/// Errors: `ValueError("Set of Tasks/Futures is empty.")`. (Passing bare
/// coroutines, a `TypeError` in Python, does not type-check here.)
///
/// ```
/// use asyncio_core::{ReturnWhen, sleep_with};
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let fast = asyncio_core::create_task(sleep_with(0.001, "fast"))?;
///     let slow = asyncio_core::create_task(sleep_with(10.0, "slow"))?;
///     let (done, pending) = asyncio_core::wait([fast, slow.clone()])
///         .return_when(ReturnWhen::FirstCompleted)
///         .await?;
///     assert_eq!(done.len(), 1);
///     assert_eq!(done[0].result()?, "fast");
///     assert!(pending[0].ptr_eq(&slow));
///     slow.cancel();
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn wait<T, F, I>(futures: I) -> Wait<T>
where
    T: 'static,
    F: Into<Future<T>>,
    I: IntoIterator<Item = F>,
{
    let mut seen = HashSet::new();
    let futures = futures
        .into_iter()
        .map(Into::into)
        .filter(|f: &Future<T>| seen.insert(Rc::as_ptr(&f.cell) as *const ()))
        .collect();
    Wait {
        futures,
        timeout: None,
        return_when: ReturnWhen::AllCompleted,
    }
}

impl<T: 'static> Wait<T> {
    /// Returns after at most `timeout` (seconds or a `Duration`).
    pub fn timeout(mut self, timeout: impl Delay) -> Self {
        self.timeout = Some(timeout.as_secs());
        self
    }

    /// When to return (default [`ReturnWhen::AllCompleted`]).
    pub fn return_when(mut self, return_when: ReturnWhen) -> Self {
        self.return_when = return_when;
        self
    }

    async fn run(self) -> Result<(Vec<Future<T>>, Vec<Future<T>>)> {
        if self.futures.is_empty() {
            return Err(Error::value("Set of Tasks/Futures is empty."));
        }
        if let Some(t) = self.timeout {
            check_delay(t)?;
        }
        let loop_ = get_running_loop()?;
        let waiter = Future::<()>::new(&loop_);
        let timeout_handle: Rc<RefCell<Option<TimerHandle>>> = Rc::new(RefCell::new(None));
        if let Some(t) = self.timeout {
            let w = waiter.clone();
            *timeout_handle.borrow_mut() = Some(loop_.call_later(t, move || {
                if !w.done() {
                    let _ = w.set_result(());
                }
            })?);
        }
        let counter = Rc::new(Cell::new(self.futures.len()));
        let return_when = self.return_when;
        let mut ids = Vec::with_capacity(self.futures.len());
        for f in &self.futures {
            let counter = counter.clone();
            let waiter = waiter.clone();
            let timeout_handle = timeout_handle.clone();
            ids.push(f.add_done_callback(move |f: &Future<T>| {
                counter.set(counter.get().saturating_sub(1));
                let failed = || !f.cancelled() && matches!(f.cell.core.exception(), Ok(Some(_)));
                if counter.get() == 0
                    || return_when == ReturnWhen::FirstCompleted
                    || (return_when == ReturnWhen::FirstException && failed())
                {
                    if let Some(h) = timeout_handle.borrow_mut().take() {
                        h.cancel();
                    }
                    if !waiter.done() {
                        let _ = waiter.set_result(());
                    }
                }
            }));
        }
        let waited = (&waiter).await;
        if let Some(h) = timeout_handle.borrow_mut().take() {
            h.cancel();
        }
        for (f, id) in self.futures.iter().zip(ids) {
            f.remove_done_callback(id);
        }
        waited?;
        let (done, pending) = self.futures.into_iter().partition(|f| f.done());
        Ok((done, pending))
    }
}

impl<T: 'static> IntoFuture for Wait<T> {
    type Output = Result<(Vec<Future<T>>, Vec<Future<T>>)>;
    type IntoFuture = Pin<Box<dyn StdFuture<Output = Self::Output>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

// ===== as_completed =====

/// Converts the awaitables (starting the tasks for coroutines).
type Starter<T> = Box<dyn FnOnce(&crate::EventLoop) -> Result<Vec<Future<T>>>>;

struct AsCompletedState<T: 'static> {
    /// The conversion of the awaitables, until iteration starts.
    starter: Option<Starter<T>>,
    /// `timeout=`, scheduled when iteration starts.
    timeout: Option<f64>,
    done: VecDeque<Option<Future<T>>>,
    todo: Vec<Future<T>>,
    todo_left: usize,
    timeout_handle: Option<TimerHandle>,
    /// Futures of the `anext`s waiting for a completion (asyncio futures,
    /// so that cancelling the waiting task cancels them, as with CPython's
    /// `Queue.get()`).
    waiters: VecDeque<Future<()>>,
    loop_: Option<crate::EventLoop>,
    error: Option<Error>,
}

/// The iterator `asyncio::as_completed` returns.
///
/// Iterate it for awaitables that resolve, in completion order, to the
/// results (`for f in as_completed(fs) { f.await? }`), or call
/// [`next_future`](AsCompleted::next_future) for the original futures
/// (3.13's `async for`).
///
/// The awaitables are converted (coroutines wrapped in tasks) when
/// iteration starts — at once in a `for` loop — so that a bad
/// [`timeout`](AsCompleted::timeout) is refused before any task exists.
pub struct AsCompleted<T: 'static> {
    state: Rc<RefCell<AsCompletedState<T>>>,
}

impl<T: 'static> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<as_completed left={}>", self.state.borrow().todo_left)
    }
}

/// `asyncio.as_completed(aws)`: yields the awaitables as they complete.
/// Coroutines are wrapped in tasks when iteration starts (the first
/// `next`, which a `for` loop makes at once).
///
/// ```
/// use asyncio_core::sleep_with;
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let order = loop_.run_until_complete(async {
///     let mut order = Vec::new();
///     for next in asyncio_core::as_completed([sleep_with(0.02, 2), sleep_with(0.01, 1)]) {
///         order.push(next.await?);
///     }
///     Ok(order)
/// })?;
/// assert_eq!(order, [1, 2]);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[track_caller]
pub fn as_completed<T, A, I>(awaitables: I) -> AsCompleted<T>
where
    T: Clone + 'static,
    A: Awaitable<T> + 'static,
    I: IntoIterator<Item = A>,
{
    let awaitables: Vec<A> = awaitables.into_iter().collect();
    let starter: Starter<T> = Box::new(move |loop_| {
        let mut seen = HashSet::new();
        let mut futs = Vec::new();
        for aw in awaitables {
            let (f, _) = aw.into_asyncio_future(Some(loop_))?;
            if seen.insert(Rc::as_ptr(&f.cell) as *const ()) {
                futs.push(f);
            }
        }
        Ok(futs)
    });
    AsCompleted {
        state: Rc::new(RefCell::new(AsCompletedState {
            starter: Some(starter),
            timeout: None,
            done: VecDeque::new(),
            todo: Vec::new(),
            todo_left: 0,
            timeout_handle: None,
            waiters: VecDeque::new(),
            loop_: None,
            error: None,
        })),
    }
}

/// Starts the iteration: converts the awaitables, registers the done
/// callbacks and the timeout (CPython's `_AsCompletedIterator.__init__`).
fn start<T: 'static>(state: &Rc<RefCell<AsCompletedState<T>>>) {
    let Some(starter) = state.borrow_mut().starter.take() else {
        return;
    };
    let converted = get_running_loop().and_then(|loop_| {
        state.borrow_mut().loop_ = Some(loop_.clone());
        starter(&loop_).map(|futs| (loop_, futs))
    });
    let (loop_, futs) = match converted {
        Ok(v) => v,
        Err(e) => {
            let mut s = state.borrow_mut();
            s.error = Some(e);
            s.todo_left = 1;
            return;
        }
    };
    state.borrow_mut().todo_left = futs.len();
    for f in &futs {
        let st = Rc::downgrade(state);
        f.add_done_callback(move |f: &Future<T>| {
            if let Some(st) = st.upgrade() {
                handle_completion(&st, f);
            }
        });
    }
    let timeout = state.borrow().timeout;
    let mut s = state.borrow_mut();
    if let (Some(delay), false) = (timeout, futs.is_empty()) {
        let st = Rc::downgrade(state);
        match loop_.call_later(delay, move || {
            if let Some(st) = st.upgrade() {
                handle_timeout(&st);
            }
        }) {
            Ok(h) => s.timeout_handle = Some(h),
            Err(e) => s.error = Some(e),
        }
    }
    s.todo = futs;
}

/// Wakes the first waiting `anext`, as `Queue.put_nowait` wakes one getter.
fn wake_next(waiters: &mut VecDeque<Future<()>>) -> Option<Future<()>> {
    while let Some(w) = waiters.pop_front() {
        if !w.done() {
            return Some(w);
        }
    }
    None
}

fn release(waiter: Option<Future<()>>) {
    if let Some(w) = waiter {
        let _ = w.set_result(());
    }
}

fn handle_completion<T: 'static>(state: &RefCell<AsCompletedState<T>>, f: &Future<T>) {
    let woken = {
        let mut s = state.borrow_mut();
        let Some(pos) = s.todo.iter().position(|t| t.ptr_eq(f)) else {
            return; // the timeout came first
        };
        s.todo.remove(pos);
        s.done.push_back(Some(f.clone()));
        if s.todo.is_empty() {
            if let Some(h) = s.timeout_handle.take() {
                h.cancel();
            }
        }
        wake_next(&mut s.waiters)
    };
    release(woken);
}

fn handle_timeout<T: 'static>(state: &RefCell<AsCompletedState<T>>) {
    let woken = {
        let mut s = state.borrow_mut();
        let todo = std::mem::take(&mut s.todo);
        for _ in &todo {
            s.done.push_back(None);
        }
        s.timeout_handle = None;
        std::mem::take(&mut s.waiters)
    };
    for w in woken {
        if !w.done() {
            let _ = w.set_result(());
        }
    }
}

impl<T: Clone + 'static> AsCompleted<T> {
    /// Raises `TimeoutError` from the remaining awaitables once `timeout`
    /// (seconds or a `Duration`) has passed. A NaN timeout is refused
    /// (`ValueError`) before any task is made.
    pub fn timeout(self, timeout: impl Delay) -> Self {
        {
            let mut s = self.state.borrow_mut();
            match check_delay(timeout.as_secs()) {
                Ok(delay) if s.starter.is_some() => s.timeout = Some(delay),
                Ok(_) => {
                    s.error = Some(Error::runtime(
                        "as_completed(): timeout() must come before iteration starts",
                    ))
                }
                Err(e) => {
                    // Refused before anything runs: the awaitables are
                    // dropped unconverted.
                    let starter = s.starter.take();
                    s.error = Some(e);
                    s.todo_left = 1;
                    drop(s);
                    drop(starter);
                }
            }
        }
        self
    }

    /// The next original future to complete, or `None` when all were
    /// returned (3.13's `async for f in as_completed(...)`).
    pub async fn next_future(&mut self) -> Option<Result<Future<T>>> {
        start(&self.state);
        if self.state.borrow().todo_left == 0 {
            return None;
        }
        self.state.borrow_mut().todo_left -= 1;
        Some(
            NextDone {
                state: self.state.clone(),
                waiter: None,
            }
            .await,
        )
    }
}

/// CPython's `_wait_for_one`: `await self._done.get()`.
struct NextDone<T: 'static> {
    state: Rc<RefCell<AsCompletedState<T>>>,
    waiter: Option<Future<()>>,
}

impl<T: 'static> StdFuture for NextDone<T> {
    type Output = Result<Future<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            // The getter first, as `Queue.get()` awaits it: a task cancelled
            // after it was woken, before it ran, gets the cancellation.
            if let Some(waiter) = self.waiter.clone() {
                match poll_await(&waiter.cell, cx, |core| core.result_clone()) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => self.waiter = None,
                    Poll::Ready(Err(e)) => {
                        self.waiter = None;
                        // `Queue.get()`'s clean-up: pass the wake-up on.
                        let woken = {
                            let mut s = self.state.borrow_mut();
                            s.waiters.retain(|w| !w.ptr_eq(&waiter));
                            if s.done.is_empty() {
                                None
                            } else {
                                wake_next(&mut s.waiters)
                            }
                        };
                        release(woken);
                        return Poll::Ready(Err(e));
                    }
                }
            }
            let mut s = self.state.borrow_mut();
            if let Some(e) = s.error.take() {
                return Poll::Ready(Err(e));
            }
            match s.done.pop_front() {
                Some(Some(f)) => return Poll::Ready(Ok(f)),
                Some(None) => return Poll::Ready(Err(Error::timeout())),
                None => {}
            }
            let Some(loop_) = s.loop_.clone() else {
                return Poll::Ready(Err(Error::runtime("no running event loop")));
            };
            let w = Future::<()>::new(&loop_);
            s.waiters.push_back(w.clone());
            drop(s);
            self.waiter = Some(w);
        }
    }
}

impl<T: 'static> Drop for NextDone<T> {
    fn drop(&mut self) {
        // Dropped while waiting (e.g. by `select!`): leave the queue.
        if let Some(w) = self.waiter.take() {
            if let Ok(mut s) = self.state.try_borrow_mut() {
                s.waiters.retain(|x| !x.ptr_eq(&w));
            }
        }
    }
}

/// One awaitable of [`AsCompleted`]: resolves to the next result.
pub struct AsCompletedNext<T: 'static> {
    next: NextDone<T>,
    fut: Option<Future<T>>,
}

impl<T: 'static> fmt::Debug for AsCompletedNext<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<as_completed awaitable>")
    }
}

impl<T: Clone + 'static> StdFuture for AsCompletedNext<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.fut.is_none() {
            match Pin::new(&mut self.next).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(f)) => self.fut = Some(f),
            }
        }
        let fut = self.fut.as_ref().map(|f| f.cell.clone());
        match fut {
            Some(cell) => poll_await(&cell, cx, |core| core.result_clone()),
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> Unpin for NextDone<T> {}
impl<T: 'static> Unpin for AsCompletedNext<T> {}

impl<T: Clone + 'static> Iterator for AsCompleted<T> {
    type Item = AsCompletedNext<T>;

    fn next(&mut self) -> Option<AsCompletedNext<T>> {
        start(&self.state);
        let mut s = self.state.borrow_mut();
        if s.todo_left == 0 {
            return None;
        }
        s.todo_left -= 1;
        Some(AsCompletedNext {
            next: NextDone {
                state: self.state.clone(),
                waiter: None,
            },
            fut: None,
        })
    }
}
