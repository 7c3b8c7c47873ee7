//! `asyncio.Future`: a result that will be set later (CPython's `futures.py`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::base_events::{EventLoop, LoopInner};
use crate::exception_context::{ContextValue, ExceptionContext};
use crate::exceptions::{Error, Result};
use crate::slots::{Runnable, SlotKey};
use crate::tasks::{self, TaskState};
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FutState {
    Pending,
    Cancelled,
    Finished,
}

impl FutState {
    fn lower(self) -> &'static str {
        match self {
            FutState::Pending => "pending",
            FutState::Cancelled => "cancelled",
            FutState::Finished => "finished",
        }
    }
}

/// Identifies a done callback, for [`Future::remove_done_callback`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CallbackId(u64);

impl CallbackId {
    /// The id of a callback that was never registered (removing it removes nothing).
    pub(crate) const NONE: CallbackId = CallbackId(0);
}

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

struct DoneEntry<T: 'static> {
    id: CallbackId,
    name: &'static str,
    /// The context current when the callback was added, as CPython's
    /// `add_done_callback` copies it.
    context: crate::contextvars::RunContext,
    callback: DoneCallback<T>,
}

/// Who to tell when a future is done, in registration order.
enum Waiter<T: 'static> {
    /// A task (or any `std` awaiter) blocked on the future.
    Wake(Waker),
    /// A library callback that needs no allocation: `notify(index)`.
    Notify(CallbackId, Rc<dyn Notify>, u32),
    /// A user's done callback.
    Done(Box<DoneEntry<T>>),
}

impl<T: 'static> Waiter<T> {
    fn id(&self) -> Option<CallbackId> {
        match self {
            Waiter::Wake(_) => None,
            Waiter::Notify(id, ..) => Some(*id),
            Waiter::Done(d) => Some(d.id),
        }
    }
}

/// The waiter list, with room for one waiter inline (the common case).
enum Waiters<T: 'static> {
    Empty,
    One(Waiter<T>),
    Many(Vec<Waiter<T>>),
}

impl<T: 'static> Waiters<T> {
    const fn new() -> Self {
        Waiters::Empty
    }

    fn push(&mut self, w: Waiter<T>) {
        match std::mem::replace(self, Waiters::Empty) {
            Waiters::Empty => *self = Waiters::One(w),
            Waiters::One(first) => *self = Waiters::Many(vec![first, w]),
            Waiters::Many(mut all) => {
                all.push(w);
                *self = Waiters::Many(all);
            }
        }
    }

    fn as_slice(&self) -> &[Waiter<T>] {
        match self {
            Waiters::Empty => &[],
            Waiters::One(w) => std::slice::from_ref(w),
            Waiters::Many(all) => all,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Waiter<T>> {
        self.as_slice().iter()
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn take(&mut self) -> Waiters<T> {
        std::mem::replace(self, Waiters::Empty)
    }

    fn into_vec(self) -> Vec<Waiter<T>> {
        match self {
            Waiters::Empty => Vec::new(),
            Waiters::One(w) => vec![w],
            Waiters::Many(all) => all,
        }
    }

    /// Removes the entries with `id`, returning them (to be dropped by the
    /// caller outside the borrow).
    fn remove(&mut self, id: CallbackId) -> Vec<Waiter<T>> {
        let (kept, removed): (Vec<_>, Vec<_>) = self
            .take()
            .into_vec()
            .into_iter()
            .partition(|w| w.id() != Some(id));
        for w in kept {
            self.push(w);
        }
        removed
    }
}

/// A library-internal done callback: `notify(index)` runs in the loop
/// (scheduled like `call_soon`) once the future it was added to is done.
pub(crate) trait Notify {
    fn notify(&self, index: u32);
}

/// The state every future and task shares.
pub(crate) struct FutureCore<T: 'static> {
    pub(crate) loop_: Rc<LoopInner>,
    pub(crate) state: Cell<FutState>,
    result: RefCell<Option<Result<T>>>,
    waiters: RefCell<Waiters<T>>,
    log_traceback: Cell<bool>,
    /// `_cancel_message` and `_cancelled_exc`, boxed: most futures never need them.
    cancel_info: RefCell<Option<Box<CancelInfo>>>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) debug: bool,
    pub(crate) this: Weak<dyn FutureObj>,
}

#[derive(Default)]
struct CancelInfo {
    message: Option<String>,
    exc: Option<Error>,
}

/// What a [`FutureCell`] carries beyond the shared state: nothing for a plain
/// future, the coroutine and task state for a task.
pub(crate) trait CellExt: 'static {
    fn task(&self) -> Option<&TaskState>;
    /// The printable name of a task's coroutine.
    fn coro_name(&self) -> &'static str {
        ""
    }
    /// Replaces `Future.cancel()` of a pending future (as `_GatheringFuture`
    /// does); `None` keeps the plain behaviour.
    fn cancel_override(&self, _msg: Option<&str>) -> Option<bool> {
        None
    }
}

pub(crate) struct NoExt;

impl CellExt for NoExt {
    fn task(&self) -> Option<&TaskState> {
        None
    }
}

/// One allocation holds a future's state and, for a task, its coroutine.
pub(crate) struct FutureCell<T: 'static, X: ?Sized + CellExt> {
    pub(crate) core: FutureCore<T>,
    pub(crate) ext: X,
}

pub(crate) type DynCell<T> = FutureCell<T, dyn CellExt>;

/// The type-erased view of a future or task, used where outputs differ
/// (`all_tasks()`, a task's `fut_waiter`, reports).
pub(crate) trait FutureObj: std::any::Any {
    fn done(&self) -> bool;
    fn cancelled(&self) -> bool;
    /// `Future.cancel()`, or `Task.cancel()` for tasks.
    fn cancel_obj(&self, msg: Option<&str>) -> bool;
    fn repr(&self) -> String;
    fn loop_inner(&self) -> &Rc<LoopInner>;
    fn task(&self) -> Option<&TaskState>;
    /// The error of a finished future (marking it retrieved), `CancelledError`
    /// for a cancelled one, `None` otherwise.
    fn error(&self) -> Option<Error>;
    fn add_waker(&self, waker: &Waker);
    fn add_erased_callback(&self, name: &'static str, f: Box<dyn FnOnce()>) -> CallbackId;
    /// Adds a [`Notify`] done callback (scheduled at once if already done).
    fn add_notify(&self, target: Rc<dyn Notify>, index: u32) -> CallbackId;
    /// The message a pending or delivered cancellation carries.
    fn cancel_message(&self) -> Option<String>;
    fn remove_callback(&self, id: CallbackId) -> usize;
    fn addr(&self) -> *const ();
    fn self_rc(&self) -> Option<Rc<dyn FutureObj>>;
    fn coro_name(&self) -> &'static str;
}

impl<T: 'static> FutureCore<T> {
    pub(crate) fn new(
        loop_: Rc<LoopInner>,
        this: Weak<dyn FutureObj>,
        location: &'static Location<'static>,
    ) -> FutureCore<T> {
        let debug = loop_.debug();
        FutureCore {
            loop_,
            state: Cell::new(FutState::Pending),
            result: RefCell::new(None),
            waiters: RefCell::new(Waiters::new()),
            log_traceback: Cell::new(false),
            cancel_info: RefCell::new(None),
            location,
            debug,
            this,
        }
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.state.get() == FutState::Pending
    }

    /// CPython's `_make_cancelled_error`: the `CancelledError` a cancelled
    /// task ended with is handed out once; later calls make a new one from
    /// the cancel message (`CancelledError()` for a task that cancelled
    /// itself by raising).
    pub(crate) fn make_cancelled_error(&self) -> Error {
        let mut info = self.cancel_info.borrow_mut();
        if let Some(e) = info.as_mut().and_then(|i| i.exc.take()) {
            return e;
        }
        Error::cancelled(info.as_ref().and_then(|i| i.message.as_deref()))
    }

    pub(crate) fn set_cancelled_exc(&self, e: Error) {
        self.cancel_info
            .borrow_mut()
            .get_or_insert_with(Default::default)
            .exc = Some(e);
    }

    pub(crate) fn cancel_message(&self) -> Option<String> {
        self.cancel_info
            .borrow()
            .as_ref()
            .and_then(|i| i.message.clone())
    }

    pub(crate) fn set_cancel_message(&self, msg: Option<&str>) {
        let mut info = self.cancel_info.borrow_mut();
        if msg.is_none() && info.is_none() {
            return;
        }
        info.get_or_insert_with(Default::default).message = msg.map(str::to_owned);
    }

    fn result_with(&self, extract: impl FnOnce(&mut Option<Result<T>>) -> Result<T>) -> Result<T> {
        match self.state.get() {
            FutState::Cancelled => Err(self.make_cancelled_error()),
            FutState::Pending => Err(Error::invalid_state("Result is not set.")),
            FutState::Finished => {
                self.log_traceback.set(false);
                extract(&mut self.result.borrow_mut())
            }
        }
    }

    pub(crate) fn result_clone(&self) -> Result<T>
    where
        T: Clone,
    {
        self.result_with(|slot| match slot {
            Some(r) => r.clone(),
            None => Err(Error::invalid_state("Result has been taken.")),
        })
    }

    pub(crate) fn take_result(&self) -> Result<T> {
        self.result_with(|slot| match slot.take() {
            Some(r) => r,
            None => Err(Error::invalid_state("Result has been taken.")),
        })
    }

    pub(crate) fn exception(&self) -> Result<Option<Error>> {
        match self.state.get() {
            FutState::Cancelled => Err(self.make_cancelled_error()),
            FutState::Pending => Err(Error::invalid_state("Exception is not set.")),
            FutState::Finished => {
                self.log_traceback.set(false);
                Ok(match &*self.result.borrow() {
                    Some(Err(e)) => Some(e.clone()),
                    _ => None,
                })
            }
        }
    }

    /// Drops every waiter (done callbacks, wakers) without running them.
    pub(crate) fn clear_waiters(&self) {
        let waiters = self.waiters.borrow_mut().take();
        drop(waiters);
    }

    fn add_waiter(&self, waiter: Waiter<T>) {
        self.waiters.borrow_mut().push(waiter);
    }

    pub(crate) fn add_waker(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let known = waiters.iter().any(|w| match w {
            Waiter::Wake(w) => w.will_wake(waker),
            _ => false,
        });
        if !known {
            waiters.push(Waiter::Wake(waker.clone()));
        }
    }

    fn next_callback_id(&self) -> CallbackId {
        let id = self.loop_.next_callback_id.get();
        self.loop_.next_callback_id.set(id + 1);
        CallbackId(id)
    }

    fn remove_callback(&self, id: CallbackId) -> usize {
        let removed = self.waiters.borrow_mut().remove(id);
        // Dropped outside the borrow: a callback's captures may touch this future.
        removed.len()
    }

    fn callbacks_repr(&self) -> Option<String> {
        let waiters = self.waiters.borrow();
        if waiters.is_empty() {
            return None;
        }
        let names: Vec<String> = waiters
            .iter()
            .map(|w| match w {
                Waiter::Done(d) => crate::format_helpers::callback_repr(d.name, None),
                Waiter::Notify(..) => "<callback>()".to_owned(),
                Waiter::Wake(_) => "Task.task_wakeup()".to_owned(),
            })
            .collect();
        let shown = if names.len() > 2 {
            format!(
                "{}, <{} more>, {}",
                names[0],
                names.len() - 2,
                names[names.len() - 1]
            )
        } else {
            names.join(", ")
        };
        Some(format!("cb=[{shown}]"))
    }

    /// Python's `_future_repr_info`, without the result value (a Rust
    /// value has a `repr` only when it is `Debug`: see [`Self::result_repr`]).
    pub(crate) fn repr_info(&self) -> Vec<String> {
        self.repr_info_with(None)
    }

    /// `result=…` for a finished future, as `reprlib.repr` shortens it.
    pub(crate) fn result_repr(&self) -> Option<String>
    where
        T: fmt::Debug,
    {
        if self.state.get() != FutState::Finished {
            return None;
        }
        match &*self.result.try_borrow().ok()? {
            Some(Ok(value)) => Some(crate::format_helpers::reprlib_repr(&format!("{value:?}"))),
            _ => None,
        }
    }

    /// `_future_repr_info` with the `result=` entry given.
    pub(crate) fn repr_info_with(&self, result: Option<String>) -> Vec<String> {
        let mut info = vec![self.state.get().lower().to_owned()];
        if self.state.get() == FutState::Finished {
            if let Some(Err(e)) = &*self.result.borrow() {
                info.push(format!("exception={e:?}"));
            }
        }
        if let Some(r) = result {
            info.push(format!("result={r}"));
        }
        if let Some(cb) = self.callbacks_repr() {
            info.push(cb);
        }
        if self.debug {
            info.push(format!(
                "created at {}",
                crate::format_helpers::py_location(self.location)
            ));
        }
        info
    }
}

impl<T: 'static> FutureCell<T, dyn CellExt> {
    fn schedule_callbacks(self: &Rc<Self>) {
        let waiters = self.core.waiters.borrow_mut().take();
        let run = |waiter: Waiter<T>| match waiter {
            Waiter::Wake(w) => w.wake(),
            Waiter::Notify(_, target, index) => {
                self.core.loop_.push_notify(target, index);
            }
            Waiter::Done(entry) => {
                let fut = Future { cell: self.clone() };
                let DoneEntry {
                    callback, context, ..
                } = *entry;
                self.core
                    .loop_
                    .call_soon_internal(context, move || callback(&fut));
            }
        };
        match waiters {
            Waiters::Empty => {}
            Waiters::One(w) => run(w),
            Waiters::Many(all) => all.into_iter().for_each(run),
        }
    }

    /// `Future.set_result` without the task check.
    pub(crate) fn finish(self: &Rc<Self>, result: Result<T>) -> Result<()> {
        if !self.core.is_pending() {
            return Err(Error::invalid_state("invalid state"));
        }
        if result.is_err() {
            self.core.log_traceback.set(true);
        }
        *self.core.result.borrow_mut() = Some(result);
        self.core.state.set(FutState::Finished);
        self.schedule_callbacks();
        Ok(())
    }

    /// `Future.cancel` (not `Task.cancel`).
    pub(crate) fn cancel_future(self: &Rc<Self>, msg: Option<&str>) -> bool {
        self.core.log_traceback.set(false);
        if !self.core.is_pending() {
            return false;
        }
        self.core.state.set(FutState::Cancelled);
        self.core.set_cancel_message(msg);
        self.schedule_callbacks();
        true
    }

    pub(crate) fn repr_string(&self) -> String {
        match self.ext.task() {
            Some(task) => format!(
                "<Task {}>",
                task.repr_info(&self.core, self.ext.coro_name()).join(" ")
            ),
            None => format!("<Future {}>", self.core.repr_info().join(" ")),
        }
    }

    pub(crate) fn add_done_callback_named(
        self: &Rc<Self>,
        name: &'static str,
        callback: DoneCallback<T>,
    ) -> CallbackId {
        let id = self.core.next_callback_id();
        let context = crate::contextvars::RunContext::capture();
        if self.core.is_pending() {
            self.core.add_waiter(Waiter::Done(Box::new(DoneEntry {
                id,
                name,
                context,
                callback,
            })));
        } else {
            let fut = Future { cell: self.clone() };
            self.core
                .loop_
                .call_soon_internal(context, move || callback(&fut));
        }
        id
    }
}

impl<T: 'static, X: CellExt> FutureObj for FutureCell<T, X> {
    fn done(&self) -> bool {
        !self.core.is_pending()
    }

    fn cancelled(&self) -> bool {
        self.core.state.get() == FutState::Cancelled
    }

    fn cancel_obj(&self, msg: Option<&str>) -> bool {
        match self.rc_dyn() {
            Some(cell) => Future { cell }.cancel_impl(msg),
            None => false,
        }
    }

    fn repr(&self) -> String {
        match self.ext.task() {
            Some(task) => format!(
                "<Task {}>",
                task.repr_info(&self.core, self.ext.coro_name()).join(" ")
            ),
            None => format!("<Future {}>", self.core.repr_info().join(" ")),
        }
    }

    fn loop_inner(&self) -> &Rc<LoopInner> {
        &self.core.loop_
    }

    fn task(&self) -> Option<&TaskState> {
        self.ext.task()
    }

    fn error(&self) -> Option<Error> {
        match self.core.exception() {
            Ok(e) => e,
            Err(e) if e.is_cancelled() => Some(e),
            Err(_) => None,
        }
    }

    fn add_waker(&self, waker: &Waker) {
        self.core.add_waker(waker)
    }

    fn add_erased_callback(&self, name: &'static str, f: Box<dyn FnOnce()>) -> CallbackId {
        match self.rc_dyn() {
            Some(cell) => cell.add_done_callback_named(name, Box::new(move |_| f())),
            None => CallbackId(0),
        }
    }

    fn remove_callback(&self, id: CallbackId) -> usize {
        self.core.remove_callback(id)
    }

    fn add_notify(&self, target: Rc<dyn Notify>, index: u32) -> CallbackId {
        let id = self.core.next_callback_id();
        if self.core.is_pending() {
            self.core.add_waiter(Waiter::Notify(id, target, index));
        } else {
            self.core.loop_.push_notify(target, index);
        }
        id
    }

    fn cancel_message(&self) -> Option<String> {
        self.core.cancel_message()
    }

    fn addr(&self) -> *const () {
        self as *const Self as *const ()
    }

    fn self_rc(&self) -> Option<Rc<dyn FutureObj>> {
        self.core.this.upgrade()
    }

    fn coro_name(&self) -> &'static str {
        self.ext.coro_name()
    }
}

impl<T: 'static, X: CellExt> FutureCell<T, X> {
    /// This cell as the `Rc<DynCell<T>>` its handles use.
    fn rc_dyn(&self) -> Option<Rc<DynCell<T>>> {
        let any: Rc<dyn std::any::Any> = self.core.this.upgrade()?;
        let typed: Rc<FutureCell<T, X>> = any.downcast().ok()?;
        Some(typed)
    }
}

impl<T: 'static, X: ?Sized + CellExt> Drop for FutureCell<T, X> {
    fn drop(&mut self) {
        if !self.core.log_traceback.get() {
            return;
        }
        let exception = match &*self.core.result.borrow() {
            Some(Err(e)) => e.clone(),
            _ => return,
        };
        let is_task = self.ext.task().is_some();
        let repr = match self.ext.task() {
            Some(task) => format!(
                "<Task {}>",
                task.repr_info(&self.core, self.ext.coro_name()).join(" ")
            ),
            None => format!("<Future {}>", self.core.repr_info().join(" ")),
        };
        let mut ctx = ExceptionContext::new(if is_task {
            "Task exception was never retrieved"
        } else {
            "Future exception was never retrieved"
        });
        ctx.exception = Some(exception);
        ctx.set("future", ContextValue::Text(repr));
        if self.core.debug {
            ctx.set(
                "source_traceback",
                ContextValue::Location(self.core.location),
            );
        }
        self.core.loop_.report(ctx);
    }
}

impl EventLoop {
    /// A new pending [`Future`] attached to this loop (Python's
    /// `loop.create_future()`); the same as [`Future::new(&loop_)`](Future::new).
    ///
    /// Like CPython's, it never fails: it works on a loop that is not
    /// running, and on a closed one (where done callbacks can never run).
    /// In debug mode the future remembers where `create_future` was called.
    ///
    /// ```
    /// let loop_ = asyncio_core::testing::new_test_loop();
    /// let fut = loop_.create_future::<&str>();
    /// assert!(fut.get_loop().ptr_eq(&loop_));
    /// let setter = fut.clone();
    /// loop_.call_soon(move || setter.set_result("done"))?;
    /// assert_eq!(loop_.run_until_complete(fut)?, "done");
    /// loop_.close()?;
    /// # Ok::<(), asyncio_core::Error>(())
    /// ```
    #[track_caller]
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::with_location(&self.inner, Location::caller())
    }
}

/// An asyncio future: a result of type `T` (or an error) set later, awaited by
/// any number of tasks (Python's `asyncio.Future`).
///
/// `Future` is a cheap, cloneable handle. Awaiting it (`fut.await` or
/// `(&fut).await`) yields `Result<T>` and needs `T: Clone`, because every
/// awaiter gets the result; use [`Future::take`] for results that are not `Clone`.
/// Done callbacks are scheduled with `call_soon`, never called inline.
///
/// ```
/// use asyncio_core::Future;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let fut = Future::<i32>::new(&loop_);
/// let setter = fut.clone();
/// loop_.call_soon(move || setter.set_result(42))?;
/// assert_eq!(loop_.run_until_complete(fut.clone())?, 42);
/// assert!(fut.done());
/// assert_eq!(fut.set_result(1).unwrap_err().to_string(), "invalid state");
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct Future<T: 'static> {
    pub(crate) cell: Rc<DynCell<T>>,
}

impl<T: 'static> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            cell: self.cell.clone(),
        }
    }
}

impl<T: 'static> Future<T> {
    /// A pending future attached to `loop_` (`loop.create_future()`).
    #[track_caller]
    pub fn new(loop_: &EventLoop) -> Future<T> {
        Future::with_location(&loop_.inner, Location::caller())
    }

    pub(crate) fn with_location(
        loop_: &Rc<LoopInner>,
        location: &'static Location<'static>,
    ) -> Future<T> {
        Future::with_ext(loop_, location, NoExt)
    }

    pub(crate) fn with_ext<X: CellExt>(
        loop_: &Rc<LoopInner>,
        location: &'static Location<'static>,
        ext: X,
    ) -> Future<T> {
        let cell: Rc<FutureCell<T, X>> = Rc::new_cyclic(|weak: &Weak<FutureCell<T, X>>| {
            let this: Weak<dyn FutureObj> = weak.clone();
            FutureCell {
                core: FutureCore::new(loop_.clone(), this, location),
                ext,
            }
        });
        Future { cell }
    }

    /// `true` once the future has a result, an error, or was cancelled.
    pub fn done(&self) -> bool {
        !self.cell.core.is_pending()
    }

    /// `true` if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cell.core.state.get() == FutState::Cancelled
    }

    /// The result. Errors: the future's own error; its `CancelledError` if
    /// cancelled; `InvalidStateError("Result is not set.")` if pending.
    pub fn result(&self) -> Result<T>
    where
        T: Clone,
    {
        self.cell.core.result_clone()
    }

    /// Moves the result out (for results that are not `Clone`); later calls
    /// fail with `InvalidStateError("Result has been taken.")`.
    pub fn take_result(&self) -> Result<T> {
        self.cell.core.take_result()
    }

    /// The error the future finished with (`Ok(None)` for a result).
    /// Errors: its `CancelledError` if cancelled,
    /// `InvalidStateError("Exception is not set.")` if pending.
    pub fn exception(&self) -> Result<Option<Error>> {
        self.cell.core.exception()
    }

    /// Marks the future done with `value` and schedules its callbacks.
    /// Errors: `InvalidStateError("invalid state")` if already done;
    /// `RuntimeError` on a task (`"Task does not support set_result operation"`).
    pub fn set_result(&self, value: T) -> Result<()> {
        if self.cell.ext.task().is_some() {
            return Err(Error::runtime("Task does not support set_result operation"));
        }
        self.cell.finish(Ok(value))
    }

    /// Marks the future done with an error and schedules its callbacks.
    /// An error never retrieved is reported when the future is dropped
    /// (`"Future exception was never retrieved"`).
    pub fn set_exception(&self, error: Error) -> Result<()> {
        if self.cell.ext.task().is_some() {
            return Err(Error::runtime(
                "Task does not support set_exception operation",
            ));
        }
        self.cell.finish(Err(error))
    }

    /// Cancels the future: `false` if it was already done; otherwise it
    /// becomes cancelled and its callbacks are scheduled. On a task, this is
    /// [`Task::cancel`](crate::Task::cancel).
    pub fn cancel(&self) -> bool {
        self.cancel_impl(None)
    }

    /// [`cancel`](Future::cancel) with a message for the `CancelledError`.
    pub fn cancel_with_message(&self, msg: impl AsRef<str>) -> bool {
        self.cancel_impl(Some(msg.as_ref()))
    }

    pub(crate) fn cancel_impl(&self, msg: Option<&str>) -> bool {
        if self.cell.ext.task().is_some() {
            return tasks::task_cancel(&self.cell, msg);
        }
        if self.cell.core.is_pending() {
            if let Some(cancelled) = self.cell.ext.cancel_override(msg) {
                return cancelled;
            }
        }
        self.cell.cancel_future(msg)
    }

    /// Adds a callback run (via `call_soon`) with the future once it is done;
    /// scheduled at once if it already is.
    #[track_caller]
    pub fn add_done_callback<F>(&self, callback: F) -> CallbackId
    where
        F: FnOnce(&Future<T>) + 'static,
    {
        self.cell
            .add_done_callback_named(crate::events::callback_name::<F>(), Box::new(callback))
    }

    /// Removes a done callback; returns how many were removed (0 or 1).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.cell.core.remove_callback(id)
    }

    /// The loop the future is attached to.
    pub fn get_loop(&self) -> EventLoop {
        EventLoop::from_inner(self.cell.core.loop_.clone())
    }

    /// A future that waits for this one and moves its result out
    /// (see [`take_result`](Future::take_result)).
    pub fn take(self) -> TakeFuture<T> {
        TakeFuture { cell: self.cell }
    }

    /// `true` if both handles refer to the same future (Python's `is`).
    pub fn ptr_eq(&self, other: &Future<T>) -> bool {
        Rc::ptr_eq(&self.cell, &other.cell)
    }

    /// The task state, when this future is a task.
    pub(crate) fn as_task_state(&self) -> Option<&TaskState> {
        self.cell.ext.task()
    }

    pub(crate) fn obj(&self) -> Rc<dyn FutureObj> {
        self.cell
            .core
            .this
            .upgrade()
            .unwrap_or_else(|| unreachable!("a live handle keeps its cell alive"))
    }

    /// A `Send` completer that sets this future's outcome from any thread.
    pub(crate) fn remote_completer(&self) -> Result<RemoteCompleter<T>>
    where
        T: Send,
    {
        RemoteCompleter::new(self)
    }
}

/// Python's `repr(fut)`: `<Future finished result=4>`, `<Future pending>`,
/// `<Future finished exception=ValueError('x')>`. The result is shown
/// through its `Debug`, shortened as `reprlib.repr` does.
impl<T: fmt::Debug + 'static> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = self.cell.core.result_repr();
        let info = match self.cell.ext.task() {
            Some(task) => format!(
                "<Task {}>",
                task.repr_info_with(&self.cell.core, self.cell.ext.coro_name(), result)
                    .join(" ")
            ),
            None => format!(
                "<Future {}>",
                self.cell.core.repr_info_with(result).join(" ")
            ),
        };
        f.write_str(&info)
    }
}

/// Polls `obj` as an `await` inside the current task: applies the task's
/// pending cancellation and the self/loop checks and registers the waker.
/// `Ready(Ok(()))` means the future is done and its outcome can be read.
pub(crate) fn poll_await_obj<O: ?Sized + FutureObj>(
    obj: &O,
    cx: &mut Context<'_>,
) -> Poll<Result<()>> {
    let intervention = tasks::with_current_task(|current| {
        let task_obj = current?;
        let task = task_obj.task()?;
        if task_obj.addr() == obj.addr() {
            return Some(Err(Error::runtime(format!(
                "Task cannot await on itself: {}",
                task_obj.repr()
            ))));
        }
        if !Rc::ptr_eq(task_obj.loop_inner(), obj.loop_inner()) {
            return Some(Err(Error::runtime(format!(
                "Task {} got Future {} attached to a different loop",
                task_obj.repr(),
                obj.repr()
            ))));
        }
        if !obj.done() {
            if task.must_cancel.get() && task.cancel_directly.replace(false) {
                task.must_cancel.set(false);
                return Some(Err(Error::cancelled(task_obj.cancel_message().as_deref())));
            }
            obj.add_waker(cx.waker());
            let old = task.fut_waiter.borrow_mut().replace(obj.self_rc()?);
            drop(old);
            if task.must_cancel.get() {
                let msg = task_obj.cancel_message();
                if obj.cancel_obj(msg.as_deref()) {
                    task.must_cancel.set(false);
                }
            }
            return Some(Ok(()));
        }
        // Only the await the step resumed from is where the task was
        // suspended; later awaits of done futures in the same step do not
        // suspend (CPython's `await` of a done future returns at once).
        let resumed_here = task.resumed_from.replace(std::ptr::null()) == obj.addr();
        if task.must_cancel.get() && resumed_here {
            // The task was suspended here and cancelled before it resumed:
            // the cancellation wins over the result, as in Python. A waiter
            // that was itself cancelled keeps its own CancelledError.
            task.must_cancel.set(false);
            let own = obj.error().filter(Error::is_cancelled);
            return Some(Err(own.unwrap_or_else(|| {
                Error::cancelled(task_obj.cancel_message().as_deref())
            })));
        }
        None
    });
    match intervention {
        Some(Err(e)) => Poll::Ready(Err(e)),
        Some(Ok(())) => Poll::Pending,
        None if obj.done() => Poll::Ready(Ok(())),
        None => {
            obj.add_waker(cx.waker());
            Poll::Pending
        }
    }
}

/// [`poll_await_obj`] for a typed future, extracting its outcome.
pub(crate) fn poll_await<T: 'static>(
    cell: &Rc<DynCell<T>>,
    cx: &mut Context<'_>,
    extract: impl FnOnce(&FutureCore<T>) -> Result<T>,
) -> Poll<Result<T>> {
    let Some(obj) = cell.core.this.upgrade() else {
        return Poll::Ready(Err(Error::invalid_state("future is being destroyed")));
    };
    match poll_await_obj(&*obj, cx) {
        Poll::Ready(Ok(())) => Poll::Ready(extract(&cell.core)),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// The future returned by awaiting a [`Future`].
pub struct FutureAwait<T: 'static> {
    cell: Rc<DynCell<T>>,
}

impl<T: Clone + 'static> std::future::Future for FutureAwait<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        poll_await(&self.cell, cx, |core| core.result_clone())
    }
}

impl<T: 'static> fmt::Debug for FutureAwait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cell.repr_string())
    }
}

/// The future returned by [`Future::take`]: waits, then moves the result out.
pub struct TakeFuture<T: 'static> {
    cell: Rc<DynCell<T>>,
}

impl<T: 'static> std::future::Future for TakeFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        poll_await(&self.cell, cx, |core| core.take_result())
    }
}

impl<T: 'static> fmt::Debug for TakeFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cell.repr_string())
    }
}

impl<T: Clone + 'static> IntoFuture for Future<T> {
    type Output = Result<T>;
    type IntoFuture = FutureAwait<T>;

    fn into_future(self) -> FutureAwait<T> {
        FutureAwait { cell: self.cell }
    }
}

impl<T: Clone + 'static> IntoFuture for &Future<T> {
    type Output = Result<T>;
    type IntoFuture = FutureAwait<T>;

    fn into_future(self) -> FutureAwait<T> {
        FutureAwait {
            cell: self.cell.clone(),
        }
    }
}

/// Anything asyncio can await and schedule: a Rust future yielding
/// `Result<T>` (Python's coroutine, wrapped in a task), a [`Task`](crate::Task)
/// or a [`Future`].
///
/// This is the argument type of `run_until_complete`, `ensure_future`,
/// `gather`, `shield`, `wait_for` and friends.
pub trait Awaitable<T: 'static>: Sized {
    /// Converts into an asyncio future on `loop_` (`None`: a future keeps its
    /// own loop, a coroutine goes to the running loop); the flag is `true`
    /// when a new task was made for it (so its result can be moved out).
    #[doc(hidden)]
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<T>, bool)>;

    /// Extracts the result after completion: moved out of a task made for a
    /// coroutine, cloned from a future others may hold.
    #[doc(hidden)]
    fn extract(future: &Future<T>, owned: bool) -> Result<T>;
}

impl<T: Clone + 'static> Awaitable<T> for Future<T> {
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<T>, bool)> {
        if let Some(loop_) = loop_ {
            if !Rc::ptr_eq(&self.cell.core.loop_, &loop_.inner) {
                return Err(Error::value(
                    "The future belongs to a different loop than the one specified as the loop argument",
                ));
            }
        }
        Ok((self, false))
    }

    fn extract(future: &Future<T>, _owned: bool) -> Result<T> {
        future.result()
    }
}

impl<T: Clone + 'static> Awaitable<T> for &Future<T> {
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<T>, bool)> {
        self.clone().into_asyncio_future(loop_)
    }

    fn extract(future: &Future<T>, _owned: bool) -> Result<T> {
        future.result()
    }
}

impl<T: 'static, F> Awaitable<T> for F
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    #[track_caller]
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<T>, bool)> {
        let task = match loop_ {
            Some(l) => l.create_task(self)?,
            None => crate::events::get_running_loop()?.create_task(self)?,
        };
        Ok((task.into(), true))
    }

    fn extract(future: &Future<T>, owned: bool) -> Result<T> {
        debug_assert!(owned);
        future.take_result()
    }
}

/// `asyncio.ensure_future`: a task for a coroutine, or the future itself.
/// Uses the running loop.
#[track_caller]
pub fn ensure_future<T: 'static, A: Awaitable<T>>(awaitable: A) -> Result<Future<T>> {
    Ok(awaitable.into_asyncio_future(None)?.0)
}

enum Outcome<T> {
    Empty,
    Value(Result<T>),
    Dropped,
}

/// Completes a [`Future`] from another thread: the outcome is parked in a
/// shared slot and the loop is woken to apply it on its own thread.
pub(crate) struct RemoteCompleter<T> {
    slot: Arc<Mutex<Outcome<T>>>,
    waker: Waker,
}

struct CompletionSlot<T: 'static> {
    future: Future<T>,
    slot: Arc<Mutex<Outcome<T>>>,
    key: SlotKey,
}

impl<T: Send + 'static> RemoteCompleter<T> {
    fn new(future: &Future<T>) -> Result<RemoteCompleter<T>> {
        let inner = &future.cell.core.loop_;
        if inner.is_closed() {
            return Err(Error::runtime("Event loop is closed"));
        }
        let slot = Arc::new(Mutex::new(Outcome::Empty));
        let key = inner.reserve_slot()?;
        let runnable: Rc<dyn Runnable> = Rc::new(CompletionSlot {
            future: future.clone(),
            slot: slot.clone(),
            key,
        });
        inner.slots.borrow_mut().fill(key, runnable);
        Ok(RemoteCompleter {
            slot,
            waker: crate::slots::slot_waker(inner.tag, key),
        })
    }

    /// Sets the future's result (or error) on the loop thread, soon.
    pub(crate) fn complete(self, outcome: Result<T>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Outcome::Value(outcome);
        // Drop wakes the loop.
    }
}

impl<T> Drop for RemoteCompleter<T> {
    fn drop(&mut self) {
        {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*slot, Outcome::Empty) {
                *slot = Outcome::Dropped;
            }
        }
        self.waker.wake_by_ref();
    }
}

impl<T: 'static> Runnable for CompletionSlot<T> {
    fn run(self: Rc<Self>) {
        let outcome = std::mem::replace(
            &mut *self.slot.lock().unwrap_or_else(|p| p.into_inner()),
            Outcome::Empty,
        );
        let done = match outcome {
            Outcome::Empty => false,
            Outcome::Value(r) => {
                if !self.future.done() {
                    let _ = self.future.cell.finish(r);
                }
                true
            }
            Outcome::Dropped => {
                self.future.cancel();
                true
            }
        };
        if done {
            let removed = self
                .future
                .cell
                .core
                .loop_
                .slots
                .borrow_mut()
                .remove(self.key);
            drop(removed);
        }
    }

    fn abandon(self: Rc<Self>) {}
}

/// Runs a loop-thread action when fired from any thread (and drops it,
/// unrun, on the loop thread when the trigger is dropped unfired).
pub(crate) struct RemoteTrigger {
    fired: Arc<AtomicU8>,
    waker: Waker,
}

const TRIGGER_IDLE: u8 = 0;
const TRIGGER_FIRED: u8 = 1;
const TRIGGER_DROPPED: u8 = 2;

struct ActionSlot {
    action: RefCell<Option<Box<dyn FnOnce()>>>,
    fired: Arc<AtomicU8>,
    key: SlotKey,
    loop_: Weak<LoopInner>,
}

impl RemoteTrigger {
    pub(crate) fn new(loop_: &EventLoop, action: impl FnOnce() + 'static) -> Result<RemoteTrigger> {
        let inner = &loop_.inner;
        loop_.check_closed()?;
        let fired = Arc::new(AtomicU8::new(TRIGGER_IDLE));
        let key = inner.reserve_slot()?;
        let slot: Rc<dyn Runnable> = Rc::new(ActionSlot {
            action: RefCell::new(Some(Box::new(action))),
            fired: fired.clone(),
            key,
            loop_: Rc::downgrade(inner),
        });
        inner.slots.borrow_mut().fill(key, slot);
        Ok(RemoteTrigger {
            fired,
            waker: crate::slots::slot_waker(inner.tag, key),
        })
    }

    /// Schedules the action on the loop thread.
    pub(crate) fn fire(self) {
        self.fired.store(TRIGGER_FIRED, Ordering::Release);
        // Drop wakes the loop.
    }
}

impl Drop for RemoteTrigger {
    fn drop(&mut self) {
        let _ = self.fired.compare_exchange(
            TRIGGER_IDLE,
            TRIGGER_DROPPED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.waker.wake_by_ref();
    }
}

impl Runnable for ActionSlot {
    fn run(self: Rc<Self>) {
        let state = self.fired.load(Ordering::Acquire);
        if state == TRIGGER_IDLE {
            return;
        }
        let action = self.action.borrow_mut().take();
        if let Some(inner) = self.loop_.upgrade() {
            let removed = inner.slots.borrow_mut().remove(self.key);
            drop(removed);
        }
        if state == TRIGGER_FIRED {
            if let Some(action) = action {
                action();
            }
        }
    }

    fn abandon(self: Rc<Self>) {
        let action = self.action.borrow_mut().take();
        drop(action);
    }
}
