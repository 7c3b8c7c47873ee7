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
use crate::events::get_running_loop;
use crate::exceptions::{Error, Result};
use crate::futures::{poll_await, CellExt, DynCell, FutureObj, Notify};
use crate::tasks::TaskState;
use crate::{Awaitable, Future};

/// The shared state of one `gather()` call.
struct Shared {
    children: Vec<Rc<dyn FutureObj>>,
    nfinished: Cell<usize>,
    return_exceptions: Cell<bool>,
    cancel_requested: Cell<bool>,
    /// Set while the outer future cancels the children (against rings of
    /// gathers awaiting each other).
    cancelling_now: Cell<bool>,
    /// Weak: the outer future's extension holds this state.
    outer: RefCell<Option<Weak<DynCell<()>>>>,
    /// Children already done when `gather()` was called; processed once the
    /// `return_exceptions` choice is final (CPython processes them at the end
    /// of `gather()`, after reading its keyword argument).
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
        let mut cancelled = false;
        for child in &self.shared.children {
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
        let child = &self.children[index];
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
        if self.nfinished.get() == self.children.len() {
            // Errors of the other children are marked retrieved when the
            // results are collected, as CPython's result loop does.
            let outcome = if self.cancel_requested.get() {
                Err(match child.cancelled() {
                    true => child.error().unwrap_or_else(|| Error::cancelled(None)),
                    false => Error::cancelled(None),
                })
            } else {
                Ok(())
            };
            let _ = outer.cell.finish(outcome);
        }
    }
}

/// Starts gathering `children` on `loop_`: the returned future completes
/// when all are done, or with the first error unless `return_exceptions`.
fn start(
    loop_: &EventLoop,
    children: Vec<Rc<dyn FutureObj>>,
    return_exceptions: bool,
    location: &'static Location<'static>,
) -> (Future<()>, Rc<Shared>) {
    let shared = Rc::new(Shared {
        children,
        nfinished: Cell::new(0),
        return_exceptions: Cell::new(return_exceptions),
        cancel_requested: Cell::new(false),
        cancelling_now: Cell::new(false),
        outer: RefCell::new(None),
        settled: Cell::new(false),
        done_at_start: RefCell::new(Vec::new()),
    });
    let outer = Future::<()>::with_ext(
        &loop_.inner,
        location,
        GatherExt {
            shared: shared.clone(),
        },
    );
    *shared.outer.borrow_mut() = Some(Rc::downgrade(&outer.cell));
    for (index, child) in shared.children.iter().enumerate() {
        if child.done() {
            shared.done_at_start.borrow_mut().push(index);
        } else {
            child.add_notify(shared.clone(), index as u32);
        }
    }
    (outer, shared)
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

/// Deduplicates children (CPython gathers a future passed twice once).
/// Tasks made by `gather` itself are new, so only the others are checked.
fn dedupe(objs: Vec<(Rc<dyn FutureObj>, bool)>) -> Vec<Rc<dyn FutureObj>> {
    let mut seen: HashSet<usize, BuildHasherDefault<AddrHasher>> = HashSet::default();
    let mut unique = Vec::with_capacity(objs.len());
    for (obj, owned) in objs {
        if owned || seen.insert(obj.addr() as usize) {
            unique.push(obj);
        }
    }
    unique
}

struct Child<T: 'static> {
    fut: Future<T>,
    owned: bool,
}

struct Live<T: 'static> {
    outer: Future<()>,
    shared: Rc<Shared>,
    children: Vec<Child<T>>,
    extract: fn(&Future<T>, bool) -> Result<T>,
}

enum State<T: 'static> {
    Empty,
    Failed(Option<Error>),
    Live(Live<T>),
}

/// The future `gather()` returns (Python's `_GatheringFuture`).
///
/// Awaiting it yields the results in argument order; the first error (or a
/// child's cancellation) becomes the outcome unless
/// [`return_exceptions`](GatheringFuture::return_exceptions) was chosen.
/// Cancelling it cancels the children.
pub struct GatheringFuture<T: 'static> {
    state: State<T>,
}

impl<T: 'static> fmt::Debug for GatheringFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Empty => f.write_str("<_GatheringFuture finished>"),
            State::Failed(e) => write!(f, "<_GatheringFuture failed {e:?}>"),
            State::Live(live) => write!(f, "<_GatheringFuture {:?}>", live.outer),
        }
    }
}

/// `asyncio.gather(*aws)`: runs the awaitables concurrently (coroutines are
/// wrapped in tasks at once) and collects their results in order.
///
/// Children of different output types are gathered with the
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
    let mut awaitables = awaitables.into_iter().peekable();
    if awaitables.peek().is_none() {
        return GatheringFuture {
            state: State::Empty,
        };
    }
    let loop_ = match get_running_loop() {
        Ok(l) => l,
        Err(e) => {
            return GatheringFuture {
                state: State::Failed(Some(e)),
            }
        }
    };
    let mut children = Vec::new();
    for aw in awaitables {
        match aw.into_asyncio_future(Some(&loop_)) {
            Ok((fut, owned)) => {
                if owned {
                    if let Some(task) = fut.as_task_state() {
                        task.log_destroy_pending.set(false);
                    }
                }
                children.push(Child { fut, owned });
            }
            Err(e) => {
                for c in &children {
                    if c.owned {
                        c.fut.cancel();
                    }
                }
                return GatheringFuture {
                    state: State::Failed(Some(e)),
                };
            }
        }
    }
    let objs = children.iter().map(|c| (c.fut.obj(), c.owned)).collect();
    let (outer, shared) = start(&loop_, dedupe(objs), false, location);
    GatheringFuture {
        state: State::Live(Live {
            outer,
            shared,
            children,
            extract: A::extract,
        }),
    }
}

impl<T: 'static> GatheringFuture<T> {
    /// `return_exceptions=True`: errors and cancellations of children become
    /// entries of the result list instead of the outcome.
    pub fn return_exceptions(self) -> GatheringFutureAll<T> {
        if let State::Live(live) = &self.state {
            live.shared.return_exceptions.set(true);
        }
        GatheringFutureAll { inner: self }
    }

    /// Cancels the children; `true` if any was cancelled.
    pub fn cancel(&self) -> bool {
        match &self.state {
            State::Live(live) => live.outer.cancel(),
            _ => false,
        }
    }

    /// `cancel(msg)`.
    pub fn cancel_with_message(&self, msg: impl AsRef<str>) -> bool {
        match &self.state {
            State::Live(live) => live.outer.cancel_with_message(msg),
            _ => false,
        }
    }

    /// `true` once the outcome is known.
    pub fn done(&self) -> bool {
        match &self.state {
            State::Live(live) => {
                live.shared.settle();
                live.outer.done()
            }
            _ => true,
        }
    }

    /// `true` if the gathering future itself was cancelled.
    pub fn cancelled(&self) -> bool {
        match &self.state {
            State::Live(live) => live.outer.cancelled(),
            _ => false,
        }
    }
}

/// `gather(..., return_exceptions=True)`.
pub struct GatheringFutureAll<T: 'static> {
    inner: GatheringFuture<T>,
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

    /// `true` once all children are done.
    pub fn done(&self) -> bool {
        self.inner.done()
    }
}

/// The future awaiting a [`GatheringFuture`].
pub struct GatherAwait<T: 'static, R> {
    state: State<T>,
    collect: fn(&Live<T>) -> Result<Vec<R>>,
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
        match &mut this.state {
            State::Empty => Poll::Ready(Ok(Vec::new())),
            State::Failed(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| Error::runtime("cannot reuse already awaited coroutine")))),
            State::Live(live) => {
                live.shared.settle();
                match poll_await(&live.outer.cell, cx, |core| core.result_clone()) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => Poll::Ready((this.collect)(live)),
                }
            }
        }
    }
}

fn collect_values<T: 'static>(live: &Live<T>) -> Result<Vec<T>> {
    live.children
        .iter()
        .map(|c| (live.extract)(&c.fut, c.owned))
        .collect()
}

/// A child's entry in a `return_exceptions` result list: its value, its
/// error, or — for a cancelled child — `CancelledError(_cancel_message or '')`
/// as CPython builds it.
fn outcome_of<T: 'static>(
    fut: &Future<T>,
    owned: bool,
    extract: fn(&Future<T>, bool) -> Result<T>,
) -> Result<T> {
    if fut.cancelled() {
        let msg = fut.cell.core.cancel_message().unwrap_or_default();
        return Err(Error::cancelled(Some(&msg)));
    }
    extract(fut, owned)
}

fn collect_outcomes<T: 'static>(live: &Live<T>) -> Result<Vec<Result<T>>> {
    Ok(live
        .children
        .iter()
        .map(|c| outcome_of(&c.fut, c.owned, live.extract))
        .collect())
}

impl<T: 'static> IntoFuture for GatheringFuture<T> {
    type Output = Result<Vec<T>>;
    type IntoFuture = GatherAwait<T, T>;

    fn into_future(self) -> GatherAwait<T, T> {
        GatherAwait {
            state: self.state,
            collect: collect_values::<T>,
        }
    }
}

impl<T: 'static> IntoFuture for GatheringFutureAll<T> {
    type Output = Result<Vec<Result<T>>>;
    type IntoFuture = GatherAwait<T, Result<T>>;

    fn into_future(self) -> GatherAwait<T, Result<T>> {
        GatherAwait {
            state: self.inner.state,
            collect: collect_outcomes::<T>,
        }
    }
}

// ===== heterogeneous gather (the `gather!` macro) =====

/// One argument of [`gather!`](crate::gather!), typed.
#[doc(hidden)]
pub struct GatherChild<T: 'static> {
    fut: Future<T>,
    owned: bool,
    extract: fn(&Future<T>, bool) -> Result<T>,
}

impl<T: 'static> GatherChild<T> {
    #[doc(hidden)]
    #[track_caller]
    pub fn new<A: Awaitable<T>>(awaitable: A, loop_: &EventLoop) -> Result<GatherChild<T>> {
        let (fut, owned) = awaitable.into_asyncio_future(Some(loop_))?;
        if owned {
            if let Some(task) = fut.as_task_state() {
                task.log_destroy_pending.set(false);
            }
        }
        Ok(GatherChild {
            fut,
            owned,
            extract: A::extract,
        })
    }

    #[doc(hidden)]
    pub fn erased(&self) -> ErasedChild {
        ErasedChild(self.fut.obj())
    }

    #[doc(hidden)]
    pub fn value(&self) -> Result<T> {
        (self.extract)(&self.fut, self.owned)
    }

    #[doc(hidden)]
    pub fn outcome(&self) -> Result<T> {
        outcome_of(&self.fut, self.owned, self.extract)
    }
}

/// A child of [`gather!`](crate::gather!) without its type.
#[doc(hidden)]
pub struct ErasedChild(Rc<dyn FutureObj>);

impl fmt::Debug for ErasedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.repr())
    }
}

impl<T: 'static> fmt::Debug for GatherChild<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.fut, f)
    }
}

/// The engine behind [`gather!`](crate::gather!): a future that completes
/// once every child is done (or with the first error).
#[doc(hidden)]
#[track_caller]
pub fn gather_erased(
    loop_: &EventLoop,
    children: Vec<ErasedChild>,
    return_exceptions: bool,
) -> Future<()> {
    let objs = children.into_iter().map(|c| (c.0, false)).collect();
    let (outer, shared) = start(loop_, dedupe(objs), return_exceptions, Location::caller());
    shared.settle();
    outer
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
            let __loop = $crate::get_running_loop()?;
            $( let $name = $crate::tasks::GatherChild::new($aw, &__loop)?; )*
            let __outer = $crate::tasks::gather_erased(&__loop, vec![$($name.erased()),*], false);
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
            let __loop = $crate::get_running_loop()?;
            $( let $name = $crate::tasks::GatherChild::new($aw, &__loop)?; )*
            let __outer = $crate::tasks::gather_erased(&__loop, vec![$($name.erased()),*], true);
            ::core::result::Result::Ok::<_, $crate::Error>((__outer, ($($name,)*)))
        })();
        async move {
            let (__outer, ($($name,)*)) = __started?;
            __outer.await?;
            ::core::result::Result::Ok::<_, $crate::Error>(($($name.outcome(),)*))
        }
    }};
}
