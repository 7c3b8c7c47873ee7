//! `asyncio.gather`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use crate::base_events::EventLoop;
use crate::exceptions::{Error, Result};
use crate::futures::{poll_await, CallbackId, CellExt, DynCell, FutureObj, Notify};
use crate::tasks::TaskState;
use crate::{Awaitable, Future};

/// The shared state of one `gather()` call.
struct Shared {
    /// One entry per argument, in order (a future passed twice is here
    /// twice: `cancel()` cancels it once per occurrence, as CPython does).
    children: RefCell<Vec<Rc<dyn FutureObj>>>,
    /// Distinct children (CPython's `nfuts`).
    nfuts: Cell<usize>,
    /// Addresses of the futures given (not made) to this gather, to spot
    /// one passed twice.
    seen: RefCell<HashSet<usize, BuildHasherDefault<AddrHasher>>>,
    nfinished: Cell<usize>,
    return_exceptions: Cell<bool>,
    cancel_requested: Cell<bool>,
    /// Set while the outer future cancels the children (against rings of
    /// gathers awaiting each other).
    cancelling_now: Cell<bool>,
    /// Weak: the outer future's extension holds this state.
    outer: RefCell<Option<Weak<DynCell<()>>>>,
    /// Children already done when they were added; processed once the
    /// `return_exceptions` choice is final (CPython processes them at the
    /// end of `gather()`, after reading its keyword argument).
    settled: Cell<bool>,
    done_at_start: RefCell<Vec<usize>>,
}

/// The outer future's cancel: cancel the children instead (`_GatheringFuture.cancel`).
struct GatherExt {
    shared: Rc<Shared>,
}

impl CellExt for GatherExt {
    fn task(&self) -> Option<&TaskState> {
        None
    }

    fn cancel_override(&self, msg: Option<&str>) -> Option<bool> {
        self.shared.settle();
        if self.shared.cancelling_now.replace(true) {
            return Some(false);
        }
        let children = self.shared.children.borrow().clone();
        let mut cancelled = false;
        for child in &children {
            if child.cancel_obj(msg) {
                cancelled = true;
            }
        }
        self.shared.cancelling_now.set(false);
        if cancelled {
            // Propagate the cancellation whatever `return_exceptions` says.
            self.shared.cancel_requested.set(true);
        }
        Some(cancelled)
    }
}

impl Shared {
    fn new() -> Rc<Shared> {
        Rc::new(Shared {
            children: RefCell::new(Vec::new()),
            nfuts: Cell::new(0),
            seen: RefCell::new(HashSet::default()),
            nfinished: Cell::new(0),
            return_exceptions: Cell::new(false),
            cancel_requested: Cell::new(false),
            cancelling_now: Cell::new(false),
            outer: RefCell::new(None),
            settled: Cell::new(false),
            done_at_start: RefCell::new(Vec::new()),
        })
    }

    /// Adds the next argument's future: its done callback is registered at
    /// once, before the next argument is converted (whose eager first step
    /// may finish this one), as CPython's loop over the arguments does.
    /// `made` is `true` for a task `gather` made itself (never a repeat).
    fn add_child(self: &Rc<Self>, child: Rc<dyn FutureObj>, made: bool) {
        let repeated = !made && !self.seen.borrow_mut().insert(child.addr() as usize);
        let index = {
            let mut children = self.children.borrow_mut();
            children.push(child.clone());
            children.len() - 1
        };
        if repeated {
            return;
        }
        self.nfuts.set(self.nfuts.get() + 1);
        if child.done() {
            self.done_at_start.borrow_mut().push(index);
        } else {
            child.add_notify(self.clone(), index as u32);
        }
    }

    /// The outer future (`_GatheringFuture`) over the children added so far.
    fn finish(
        self: &Rc<Self>,
        loop_: &EventLoop,
        location: &'static Location<'static>,
    ) -> Future<()> {
        let outer = Future::<()>::with_ext(
            &loop_.inner,
            location,
            GatherExt {
                shared: self.clone(),
            },
        );
        *self.outer.borrow_mut() = Some(Rc::downgrade(&outer.cell));
        outer
    }

    fn outer(&self) -> Option<Future<()>> {
        let cell = self.outer.borrow().as_ref()?.upgrade()?;
        Some(Future { cell })
    }

    fn settle(&self) {
        if self.settled.replace(true) {
            return;
        }
        let done = std::mem::take(&mut *self.done_at_start.borrow_mut());
        for index in done {
            self.child_done(index);
        }
    }

    /// `_done_callback` of CPython's `gather`.
    fn child_done(&self, index: usize) {
        let Some(child) = self.children.borrow().get(index).cloned() else {
            return;
        };
        self.nfinished.set(self.nfinished.get() + 1);
        let outer = match self.outer() {
            Some(outer) if !outer.done() => outer,
            // Done already, or dropped unawaited: mark the error retrieved.
            _ => {
                if !child.cancelled() {
                    let _ = child.error();
                }
                return;
            }
        };
        if !self.return_exceptions.get() {
            if let Some(error) = child.error() {
                let _ = outer.cell.finish(Err(error));
                return;
            }
        }
        if self.nfinished.get() == self.nfuts.get() {
            // Errors of the other children are marked retrieved when the
            // results are collected, as CPython's result loop does.
            let outcome = if self.cancel_requested.get() {
                // CPython's `fut._make_cancelled_error()` with `fut` left
                // over from its result loop: the last child in argument
                // order, not the one that finished last.
                let last = self.children.borrow().last().cloned();
                Err(match last {
                    Some(last) if last.cancelled() => {
                        last.error().unwrap_or_else(|| Error::cancelled(None))
                    }
                    Some(last) => Error::cancelled(last.cancel_message().as_deref()),
                    None => Error::cancelled(None),
                })
            } else {
                Ok(())
            };
            let _ = outer.cell.finish(outcome);
        }
    }
}

impl Notify for Shared {
    fn notify(&self, index: u32) {
        self.child_done(index as usize);
    }
}

/// Hashes addresses: they are unique already, so one multiply spreads them.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_right(29);
    }
}

/// Converts one argument of `gather` on `loop_` (or, with none chosen yet,
/// on the loop of the argument itself, as CPython's `ensure_future(arg,
/// loop=None)` and `_get_loop(fut)` do).
#[track_caller]
fn convert<T: 'static, A: Awaitable<T>>(
    aw: A,
    loop_: &mut Option<EventLoop>,
) -> Result<(Future<T>, bool)> {
    let (fut, owned) = aw.into_asyncio_future(loop_.as_ref())?;
    if loop_.is_none() {
        *loop_ = Some(fut.get_loop());
    }
    if owned {
        if let Some(task) = fut.as_task_state() {
            task.log_destroy_pending.set(false);
        }
    }
    Ok((fut, owned))
}

struct Child<T: 'static> {
    fut: Future<T>,
    owned: bool,
}

/// One `gather()` call as its handles see it.
struct State<T: 'static> {
    /// `None` only for a gather made without any loop (no argument, or a
    /// failure, outside a running loop).
    outer: Option<Future<()>>,
    shared: Option<Rc<Shared>>,
    children: Vec<Child<T>>,
    extract: Extract<T>,
    /// The error an argument's conversion raised (CPython raises it from
    /// `gather()` itself).
    failure: Option<Error>,
}

impl<T: 'static> State<T> {
    fn settle(&self) {
        if let Some(shared) = &self.shared {
            shared.settle();
        }
    }

    /// The outcome of the outer future, once done (`None` while pending).
    fn outcome(&self) -> Option<Result<()>> {
        self.settle();
        if let Some(e) = &self.failure {
            return Some(Err(e.clone()));
        }
        match &self.outer {
            None => Some(Ok(())),
            Some(outer) if outer.done() => Some(outer.cell.core.result_clone()),
            Some(_) => None,
        }
    }
}

/// How a result leaves its child: the argument's own `extract` (moved out
/// of a task gather made), or cloned (so that the gathering future stays
/// usable).
type Extract<T> = fn(&Future<T>, bool) -> Result<T>;

/// How the results leave the children: moved (the last handle, or
/// `take()`), or cloned with the given function.
enum Collect<T: 'static> {
    Take,
    Clone(fn(&Future<T>) -> Result<T>),
}

/// Collects the results once the outer future is done; the flag says
/// whether the awaiting handle is the last one.
type Collector<T, R> = fn(&Rc<State<T>>, bool) -> Result<Vec<R>>;

/// The future `gather()` returns (Python's `_GatheringFuture`).
///
/// Awaiting it yields the results in argument order; the first error (or a
/// child's cancellation) becomes the outcome unless
/// [`return_exceptions`](GatheringFuture::return_exceptions) was chosen.
/// Cancelling it cancels the children.
///
/// It is a cloneable handle to one future, which stays a future after it
/// was awaited: `(&gathering).await` (or awaiting a clone) leaves the
/// results in place for [`result`](GatheringFuture::result), done callbacks
/// and `cancel()`, as with the Python object. Awaiting the last handle by
/// value moves the results out; [`take`](GatheringFuture::take) moves them
/// out for results that are not `Clone`.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let g = asyncio_core::gather([asyncio_core::sleep_with(0.0, 1), asyncio_core::sleep_with(0.0, 2)]);
///     assert_eq!((&g).await?, [1, 2]);
///     assert!(g.done());
///     assert_eq!(g.result()?, [1, 2]); // still there
///     assert!(!g.cancel()); // done: nothing to cancel
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct GatheringFuture<T: 'static> {
    state: Rc<State<T>>,
}

impl<T: 'static> Clone for GatheringFuture<T> {
    fn clone(&self) -> Self {
        GatheringFuture {
            state: self.state.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for GatheringFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.state.settle();
        match (&self.state.failure, &self.state.outer) {
            (Some(e), _) => write!(f, "<_GatheringFuture finished exception={e:?}>"),
            (None, None) => f.write_str("<_GatheringFuture finished result=[]>"),
            (None, Some(outer)) => {
                let repr = outer.cell.repr_string();
                let info = repr.strip_prefix("<Future ").unwrap_or(&repr);
                write!(f, "<_GatheringFuture {info}")
            }
        }
    }
}

/// `asyncio.gather(*aws)`: runs the awaitables concurrently (coroutines are
/// wrapped in tasks at once) and collects their results in order.
///
/// Outside a running loop, the loop is the one of the first future given
/// (futures of two loops are a `ValueError`, as in CPython). Children of
/// different output types are gathered with the
/// [`gather!`](crate::gather!) macro.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let out = loop_.run_until_complete(async {
///     let double = |x: i32| async move {
///         asyncio_core::sleep(0).await?;
///         Ok(x * 2)
///     };
///     asyncio_core::gather((1..=3).map(double)).await
/// })?;
/// assert_eq!(out, [2, 4, 6]);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[track_caller]
pub fn gather<T, A, I>(awaitables: I) -> GatheringFuture<T>
where
    T: 'static,
    A: Awaitable<T>,
    I: IntoIterator<Item = A>,
{
    let location = Location::caller();
    let mut loop_ = crate::events::_get_running_loop();
    let mut state = State {
        outer: None,
        shared: None,
        children: Vec::new(),
        extract: A::extract,
        failure: None,
    };
    let mut awaitables = awaitables.into_iter().peekable();
    if awaitables.peek().is_none() {
        // CPython: a future on the loop, finished with `[]`.
        if let Some(l) = &loop_ {
            let outer = Future::<()>::with_location(&l.inner, location);
            let _ = outer.set_result(());
            state.outer = Some(outer);
        }
        return GatheringFuture {
            state: Rc::new(state),
        };
    }
    let shared = Shared::new();
    for aw in awaitables {
        match convert(aw, &mut loop_) {
            Ok((fut, owned)) => {
                shared.add_child(fut.obj(), owned);
                state.children.push(Child { fut, owned });
            }
            Err(e) => {
                // CPython raises at once; the tasks made so far would run
                // unawaited there, and are cancelled here.
                for c in &state.children {
                    if c.owned {
                        c.fut.cancel();
                    }
                }
                state.failure = Some(e);
                break;
            }
        }
    }
    if state.failure.is_none() {
        match &loop_ {
            Some(l) => state.outer = Some(shared.finish(l, location)),
            None => state.failure = Some(Error::runtime("no running event loop")),
        }
    }
    state.shared = Some(shared);
    GatheringFuture {
        state: Rc::new(state),
    }
}

impl<T: 'static> GatheringFuture<T> {
    /// `return_exceptions=True`: errors and cancellations of children become
    /// entries of the result list instead of the outcome.
    pub fn return_exceptions(self) -> GatheringFutureAll<T> {
        if let Some(shared) = &self.state.shared {
            shared.return_exceptions.set(true);
        }
        GatheringFutureAll { inner: self }
    }

    /// Cancels the children (each occurrence of a child passed twice);
    /// `true` if any was cancelled (`_GatheringFuture.cancel`).
    pub fn cancel(&self) -> bool {
        match &self.state.outer {
            Some(outer) => outer.cancel(),
            None => false,
        }
    }

    /// `cancel(msg)`.
    pub fn cancel_with_message(&self, msg: impl AsRef<str>) -> bool {
        match &self.state.outer {
            Some(outer) => outer.cancel_with_message(msg),
            None => false,
        }
    }

    /// `true` once the outcome is known.
    pub fn done(&self) -> bool {
        self.state.outcome().is_some()
    }

    /// `true` if the gathering future itself was cancelled (it never is
    /// through [`cancel`](GatheringFuture::cancel), which cancels the
    /// children: the gather then fails with their `CancelledError`).
    pub fn cancelled(&self) -> bool {
        self.state.outer.as_ref().is_some_and(|o| o.cancelled())
    }

    /// The error the gather ended with (`Ok(None)` for results).
    /// Errors: `InvalidStateError("Exception is not set.")` while pending.
    pub fn exception(&self) -> Result<Option<Error>> {
        match self.state.outcome() {
            None => Err(Error::invalid_state("Exception is not set.")),
            Some(Ok(())) => Ok(None),
            Some(Err(e)) if e.is_cancelled() && self.cancelled() => Err(e),
            Some(Err(e)) => Ok(Some(e)),
        }
    }

    /// The results, in argument order (cloned: the future keeps them).
    /// Errors: the gather's error; `InvalidStateError("Result is not set.")`
    /// while pending.
    pub fn result(&self) -> Result<Vec<T>>
    where
        T: Clone,
    {
        match self.state.outcome() {
            None => Err(Error::invalid_state("Result is not set.")),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => collect_values(&self.state, Collect::Clone(clone_result::<T>)),
        }
    }

    /// Adds a callback run (via `call_soon`) with this future once it is
    /// done. A gather made without any loop has nowhere to run it, and
    /// drops it.
    #[track_caller]
    pub fn add_done_callback<F>(&self, callback: F) -> CallbackId
    where
        F: FnOnce(&GatheringFuture<T>) + 'static,
    {
        let me = self.clone();
        match &self.state.outer {
            Some(outer) => outer.cell.add_done_callback_named(
                crate::events::callback_name::<F>(),
                Box::new(move |_: &Future<()>| callback(&me)),
            ),
            None => CallbackId::NONE,
        }
    }

    /// Removes a done callback; returns how many were removed.
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        match &self.state.outer {
            Some(outer) => outer.remove_done_callback(id),
            None => 0,
        }
    }

    /// The loop the gather runs on (`None` for one made without a loop).
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.state.outer.as_ref().map(Future::get_loop)
    }

    /// Waits and moves the results out (for results that are not `Clone`);
    /// `result()` afterwards fails with `"Result has been taken."`.
    pub fn take(self) -> GatherAwait<T, T> {
        GatherAwait {
            state: self.state,
            collect: |state, _| collect_values(state, Collect::Take),
        }
    }
}

/// `gather(..., return_exceptions=True)`: the same future, whose results
/// are `Result`s.
pub struct GatheringFutureAll<T: 'static> {
    inner: GatheringFuture<T>,
}

impl<T: 'static> Clone for GatheringFutureAll<T> {
    fn clone(&self) -> Self {
        GatheringFutureAll {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for GatheringFutureAll<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: 'static> GatheringFutureAll<T> {
    /// Cancels the children; `true` if any was cancelled.
    pub fn cancel(&self) -> bool {
        self.inner.cancel()
    }

    /// `cancel(msg)`.
    pub fn cancel_with_message(&self, msg: impl AsRef<str>) -> bool {
        self.inner.cancel_with_message(msg)
    }

    /// `true` once all children are done.
    pub fn done(&self) -> bool {
        self.inner.done()
    }

    /// `true` if the gathering future itself was cancelled.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// The error the gather ended with (only a cancellation, with
    /// `return_exceptions`).
    pub fn exception(&self) -> Result<Option<Error>> {
        self.inner.exception()
    }

    /// Each child's outcome, in argument order.
    pub fn result(&self) -> Result<Vec<Result<T>>>
    where
        T: Clone,
    {
        match self.inner.state.outcome() {
            None => Err(Error::invalid_state("Result is not set.")),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => collect_outcomes(&self.inner.state, Collect::Clone(clone_result::<T>)),
        }
    }

    /// Adds a done callback (see [`GatheringFuture::add_done_callback`]).
    #[track_caller]
    pub fn add_done_callback<F>(&self, callback: F) -> CallbackId
    where
        F: FnOnce(&GatheringFutureAll<T>) + 'static,
    {
        let me = self.clone();
        self.inner.add_done_callback(move |_| callback(&me))
    }

    /// Removes a done callback; returns how many were removed.
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.inner.remove_done_callback(id)
    }

    /// The loop the gather runs on.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.get_loop()
    }

    /// Waits and moves the outcomes out (for results that are not `Clone`).
    pub fn take(self) -> GatherAwait<T, Result<T>> {
        GatherAwait {
            state: self.inner.state,
            collect: |state, _| collect_outcomes(state, Collect::Take),
        }
    }
}

/// The future awaiting a [`GatheringFuture`].
pub struct GatherAwait<T: 'static, R> {
    state: Rc<State<T>>,
    collect: Collector<T, R>,
}

impl<T: 'static, R> Unpin for GatherAwait<T, R> {}

impl<T: 'static, R> fmt::Debug for GatherAwait<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<GatherAwait>")
    }
}

impl<T: 'static, R> StdFuture for GatherAwait<T, R> {
    type Output = Result<Vec<R>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<R>>> {
        let this = self.get_mut();
        let state = &this.state;
        if let Some(e) = &state.failure {
            return Poll::Ready(Err(e.clone()));
        }
        let Some(outer) = &state.outer else {
            return Poll::Ready(Ok(Vec::new()));
        };
        state.settle();
        match poll_await(&outer.cell, cx, |core| core.result_clone()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let last = Rc::strong_count(state) == 1;
                Poll::Ready((this.collect)(state, last))
            }
        }
    }
}

/// A child's value, as `how` says.
fn child_value<T: 'static>(child: &Child<T>, how: &Collect<T>, extract: Extract<T>) -> Result<T> {
    match how {
        Collect::Clone(clone) => clone(&child.fut),
        Collect::Take => extract(&child.fut, child.owned),
    }
}

fn collect_values<T: 'static>(state: &State<T>, how: Collect<T>) -> Result<Vec<T>> {
    state
        .children
        .iter()
        .map(|c| child_value(c, &how, state.extract))
        .collect()
}

/// Each child's entry in a `return_exceptions` result list: its value, its
/// error, or — for a cancelled child — `CancelledError(_cancel_message or '')`
/// as CPython builds it.
fn collect_outcomes<T: 'static>(state: &State<T>, how: Collect<T>) -> Result<Vec<Result<T>>> {
    Ok(state
        .children
        .iter()
        .map(|c| {
            if c.fut.cancelled() {
                let msg = c.fut.cell.core.cancel_message().unwrap_or_default();
                return Err(Error::cancelled(Some(&msg)));
            }
            child_value(c, &how, state.extract)
        })
        .collect())
}

fn clone_result<T: Clone + 'static>(fut: &Future<T>) -> Result<T> {
    fut.result()
}

/// Moves the results out for the last handle, clones them otherwise.
fn take_if_last<T: Clone + 'static>(last: bool) -> Collect<T> {
    if last {
        Collect::Take
    } else {
        Collect::Clone(clone_result::<T>)
    }
}

impl<T: Clone + 'static> IntoFuture for GatheringFuture<T> {
    type Output = Result<Vec<T>>;
    type IntoFuture = GatherAwait<T, T>;

    /// The last handle moves the results out; otherwise they are cloned.
    fn into_future(self) -> GatherAwait<T, T> {
        GatherAwait {
            state: self.state,
            collect: |state, last| collect_values(state, take_if_last(last)),
        }
    }
}

impl<T: Clone + 'static> IntoFuture for &GatheringFuture<T> {
    type Output = Result<Vec<T>>;
    type IntoFuture = GatherAwait<T, T>;

    fn into_future(self) -> GatherAwait<T, T> {
        GatherAwait {
            state: self.state.clone(),
            collect: |state, _| collect_values(state, Collect::Clone(clone_result::<T>)),
        }
    }
}

impl<T: Clone + 'static> IntoFuture for GatheringFutureAll<T> {
    type Output = Result<Vec<Result<T>>>;
    type IntoFuture = GatherAwait<T, Result<T>>;

    fn into_future(self) -> GatherAwait<T, Result<T>> {
        GatherAwait {
            state: self.inner.state,
            collect: |state, last| collect_outcomes(state, take_if_last(last)),
        }
    }
}

impl<T: Clone + 'static> IntoFuture for &GatheringFutureAll<T> {
    type Output = Result<Vec<Result<T>>>;
    type IntoFuture = GatherAwait<T, Result<T>>;

    fn into_future(self) -> GatherAwait<T, Result<T>> {
        GatherAwait {
            state: self.inner.state.clone(),
            collect: |state, _| collect_outcomes(state, Collect::Clone(clone_result::<T>)),
        }
    }
}

// ===== heterogeneous gather (the `gather!` macro) =====

/// One argument of [`gather!`](crate::gather!), typed.
#[doc(hidden)]
pub struct GatherChild<T: 'static> {
    fut: Future<T>,
    owned: bool,
    extract: Extract<T>,
}

impl<T: 'static> GatherChild<T> {
    #[doc(hidden)]
    pub fn value(&self) -> Result<T> {
        (self.extract)(&self.fut, self.owned)
    }

    #[doc(hidden)]
    pub fn outcome(&self) -> Result<T> {
        if self.fut.cancelled() {
            let msg = self.fut.cell.core.cancel_message().unwrap_or_default();
            return Err(Error::cancelled(Some(&msg)));
        }
        self.value()
    }
}

impl<T: 'static> fmt::Debug for GatherChild<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fut.cell.repr_string())
    }
}

/// The engine behind [`gather!`](crate::gather!): converts the arguments
/// one by one, registering each one's done callback before the next is
/// converted (as [`gather`](crate::gather()) does), then makes the outer
/// future. Dropped unfinished (an argument failed), it cancels the tasks
/// it made.
#[doc(hidden)]
pub struct GatherBuilder {
    shared: Rc<Shared>,
    loop_: Option<EventLoop>,
    made: Vec<Rc<dyn FutureObj>>,
}

impl fmt::Debug for GatherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<GatherBuilder>")
    }
}

impl Default for GatherBuilder {
    fn default() -> Self {
        GatherBuilder::new()
    }
}

impl GatherBuilder {
    #[doc(hidden)]
    pub fn new() -> GatherBuilder {
        GatherBuilder {
            shared: Shared::new(),
            loop_: crate::events::_get_running_loop(),
            made: Vec::new(),
        }
    }

    #[doc(hidden)]
    #[track_caller]
    pub fn child<T: 'static, A: Awaitable<T>>(&mut self, awaitable: A) -> Result<GatherChild<T>> {
        let (fut, owned) = convert(awaitable, &mut self.loop_)?;
        let obj = fut.obj();
        if owned {
            self.made.push(obj.clone());
        }
        self.shared.add_child(obj, owned);
        Ok(GatherChild {
            fut,
            owned,
            extract: A::extract,
        })
    }

    #[doc(hidden)]
    #[track_caller]
    pub fn finish(mut self, return_exceptions: bool) -> Result<Future<()>> {
        let Some(loop_) = self.loop_.clone() else {
            return Err(Error::runtime("no running event loop"));
        };
        self.made.clear();
        self.shared.return_exceptions.set(return_exceptions);
        let outer = self.shared.finish(&loop_, Location::caller());
        self.shared.settle();
        Ok(outer)
    }
}

impl Drop for GatherBuilder {
    fn drop(&mut self) {
        for task in self.made.drain(..) {
            task.cancel_obj(None);
        }
    }
}

/// `asyncio.gather(a, b, …)` for awaitables of different output types:
/// evaluates to a future of a tuple of their results.
///
/// `gather!(a, b; return_exceptions)` gives a tuple of `Result`s instead.
/// Coroutines are wrapped in tasks at once, as with [`gather`](crate::gather()).
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let (n, s) = loop_.run_until_complete(async {
///     asyncio_core::gather!(async { Ok(1) }, async { Ok("one".to_string()) }).await
/// })?;
/// assert_eq!((n, s.as_str()), (1, "one"));
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[macro_export]
macro_rules! gather {
    ($($aw:expr),+ ; return_exceptions $(,)?) => {
        $crate::__gather_impl!(true; []; [__g0 __g1 __g2 __g3 __g4 __g5 __g6 __g7 __g8 __g9 __g10 __g11 __g12 __g13 __g14 __g15]; $($aw),+)
    };
    ($($aw:expr),+ $(,)?) => {
        $crate::__gather_impl!(false; []; [__g0 __g1 __g2 __g3 __g4 __g5 __g6 __g7 __g8 __g9 __g10 __g11 __g12 __g13 __g14 __g15]; $($aw),+)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __gather_impl {
    ($re:tt; [$(($name:ident, $aw:expr))*]; [$next:ident $($rest:ident)*]; $head:expr $(, $tail:expr)*) => {
        $crate::__gather_impl!($re; [$(($name, $aw))* ($next, $head)]; [$($rest)*]; $($tail),*)
    };
    (false; [$(($name:ident, $aw:expr))*]; [$($rest:ident)*];) => {{
        let __started = (|| {
            let mut __builder = $crate::tasks::GatherBuilder::new();
            $( let $name = __builder.child($aw)?; )*
            let __outer = __builder.finish(false)?;
            ::core::result::Result::Ok::<_, $crate::Error>((__outer, ($($name,)*)))
        })();
        async move {
            let (__outer, ($($name,)*)) = __started?;
            __outer.await?;
            ::core::result::Result::Ok::<_, $crate::Error>(($($name.value()?,)*))
        }
    }};
    (true; [$(($name:ident, $aw:expr))*]; [$($rest:ident)*];) => {{
        let __started = (|| {
            let mut __builder = $crate::tasks::GatherBuilder::new();
            $( let $name = __builder.child($aw)?; )*
            let __outer = __builder.finish(true)?;
            ::core::result::Result::Ok::<_, $crate::Error>((__outer, ($($name,)*)))
        })();
        async move {
            let (__outer, ($($name,)*)) = __started?;
            __outer.await?;
            ::core::result::Result::Ok::<_, $crate::Error>(($($name.outcome(),)*))
        }
    }};
}
