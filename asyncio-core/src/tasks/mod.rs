//! `asyncio.Task` and the functions of CPython's `tasks.py`.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use crate::base_events::{EventLoop, LoopInner};
use crate::exception_context::{ContextValue, ExceptionContext};
use crate::exceptions::{py_str_repr, Error, Result};
use crate::futures::{Awaitable, CellExt, DynCell, FutureAwait, FutureCell, FutureCore, FutureObj};
use crate::slots::{Runnable, SlotKey};
use crate::Future;

mod gather;
mod sleep;
mod threadsafe;
mod wait;

pub use gather::{gather, GatherAwait, GatheringFuture, GatheringFutureAll};
pub use sleep::{sleep, sleep_with, Sleep};
pub use threadsafe::{run_coroutine_threadsafe, wrap_future, ConcurrentFuture};
pub use wait::{as_completed, shield, wait, AsCompleted, ReturnWhen, Wait};

#[doc(hidden)]
pub use gather::{GatherBuilder, GatherChild};

/// `Task-N` names count across all loops, as in CPython.
static TASK_NAME_COUNTER: AtomicU64 = AtomicU64::new(1);

// ===== current task =====

/// The task whose step runs on this thread, as plain pointers (reading
/// them costs no lazy-destructor check: every await reads them): the `Rc`
/// that [`CurrentTaskGuard`] borrows for the step, and that task's state
/// and loop, for the await points' checks without dynamic calls.
#[derive(Clone, Copy)]
struct Current {
    task: *const Rc<dyn FutureObj>,
    state: *const TaskState,
    loop_: *const LoopInner,
}

const NO_TASK: Current = Current {
    task: std::ptr::null::<Rc<dyn FutureObj>>(),
    state: std::ptr::null(),
    loop_: std::ptr::null(),
};

thread_local! {
    static CURRENT_TASK: Cell<Current> = const { Cell::new(NO_TASK) };
}

/// Calls `f` with the task whose step is running on this thread, if any.
pub(crate) fn with_current_task<R>(f: impl FnOnce(Option<&Rc<dyn FutureObj>>) -> R) -> R {
    let current = CURRENT_TASK.with(Cell::get);
    // SAFETY: the pointers are non-null only while a `CurrentTaskGuard`
    // lives, and then point to the `Rc` the guard borrows (and into the task
    // and loop it keeps alive), which cannot move or be dropped before the
    // guard's drop has restored the previous pointers (guards nest: a step
    // that runs an eager task's step inside restores that task's first).
    f(unsafe { current.task.as_ref() })
}

/// Makes a task the current one for the duration of a step.
struct CurrentTaskGuard<'a> {
    task: std::marker::PhantomData<&'a Rc<dyn FutureObj>>,
    previous: Current,
}

impl<'a> CurrentTaskGuard<'a> {
    fn enter(
        task: &'a Rc<dyn FutureObj>,
        state: &'a TaskState,
        loop_: &'a Rc<LoopInner>,
    ) -> CurrentTaskGuard<'a> {
        let now = Current {
            task: task as *const Rc<dyn FutureObj>,
            state: state as *const TaskState,
            loop_: Rc::as_ptr(loop_),
        };
        let previous = CURRENT_TASK.with(|c| c.replace(now));
        CurrentTaskGuard {
            task: std::marker::PhantomData,
            previous,
        }
    }
}

impl Drop for CurrentTaskGuard<'_> {
    fn drop(&mut self) {
        CURRENT_TASK.with(|c| c.set(self.previous));
    }
}

/// The task running now (`asyncio.current_task()`); `None` outside a task.
///
/// Errors with `"no running event loop"` when no loop runs in this thread.
pub fn current_task() -> Result<Option<AnyTask>> {
    let loop_ = crate::events::get_running_loop()?;
    Ok(current_task_of(&loop_))
}

/// The task running now on `loop_` (`asyncio.current_task(loop)`).
pub fn current_task_of(loop_: &EventLoop) -> Option<AnyTask> {
    if !loop_.is_running() {
        return None;
    }
    with_current_task(|t| {
        t.filter(|t| Rc::ptr_eq(t.loop_inner(), &loop_.inner))
            .map(|t| AnyTask { obj: t.clone() })
    })
}

/// The tasks of the running loop that are not done (`asyncio.all_tasks()`).
pub fn all_tasks() -> Result<Vec<AnyTask>> {
    let loop_ = crate::events::get_running_loop()?;
    Ok(all_tasks_of(&loop_))
}

/// The tasks of `loop_` that are not done (`asyncio.all_tasks(loop)`).
pub fn all_tasks_of(loop_: &EventLoop) -> Vec<AnyTask> {
    let runnables: Vec<Rc<dyn Runnable>> = loop_.inner.slots.borrow().values().cloned().collect();
    runnables
        .iter()
        .filter_map(|r| r.as_task())
        .filter(|t| !t.done())
        .collect()
}

// ===== task state =====

/// The task part of a task's cell.
pub(crate) struct TaskState {
    key: SlotKey,
    number: u64,
    name: RefCell<Option<Cow<'static, str>>>,
    num_cancels_requested: Cell<u32>,
    pub(crate) must_cancel: Cell<bool>,
    /// The asyncio future the task is suspended on.
    pub(crate) fut_waiter: RefCell<Option<Rc<dyn FutureObj>>>,
    /// Identity of the future the current step resumed from.
    pub(crate) resumed_from: Cell<*const ()>,
    started: Cell<bool>,
    /// `true` while a step of the task is on the stack (an eager task it
    /// creates may run meanwhile, and cancel it).
    stepping: Cell<bool>,
    /// Set while `cancel()` cancels the awaited future (see `task_cancel`).
    cancelling_now: Cell<bool>,
    /// A cancellation came back around a ring of tasks awaiting each other:
    /// the next await raises it instead of cancelling the awaited task again.
    pub(crate) cancel_directly: Cell<bool>,
    pub(crate) log_destroy_pending: Cell<bool>,
    /// The context every step runs in.
    context: RefCell<crate::contextvars::TaskContext>,
}

impl TaskState {
    fn name(&self) -> String {
        match &*self.name.borrow() {
            Some(n) => n.to_string(),
            None => format!("Task-{}", self.number),
        }
    }

    pub(crate) fn repr_info<T: 'static>(
        &self,
        core: &FutureCore<T>,
        coro_name: &str,
    ) -> Vec<String> {
        self.repr_info_with(core, coro_name, None)
    }

    /// `_task_repr_info`, with the `result=` entry given.
    pub(crate) fn repr_info_with<T: 'static>(
        &self,
        core: &FutureCore<T>,
        coro_name: &str,
        result: Option<String>,
    ) -> Vec<String> {
        let mut info = core.repr_info_with(result);
        if self.num_cancels_requested.get() > 0 && core.is_pending() {
            info[0] = "cancelling".to_owned();
        }
        info.insert(1, format!("name={}", py_str_repr(&self.name())));
        if let Some(w) = self.fut_waiter.borrow().as_ref() {
            info.insert(2, format!("wait_for={}", w.repr()));
        }
        info.insert(
            2,
            format!(
                "coro=<{}()>",
                crate::format_helpers::coroutine_name(coro_name)
            ),
        );
        info
    }
}

/// The coroutine of a task, stored inline in the task's allocation.
pub(crate) struct TaskBody<F> {
    state: TaskState,
    coro: RefCell<Option<F>>,
}

impl<F: 'static> CellExt for TaskBody<F> {
    fn task(&self) -> Option<&TaskState> {
        Some(&self.state)
    }

    fn coro_name(&self) -> &'static str {
        crate::events::callback_name::<F>()
    }
}

type TaskCell<T, F> = FutureCell<T, TaskBody<F>>;

impl<T, F> TaskCell<T, F>
where
    T: 'static,
    F: std::future::Future<Output = Result<T>> + 'static,
{
    /// One `Task.__step`: polls the coroutine once with the task as current.
    fn step(self: &Rc<Self>) {
        let task = &self.ext.state;
        if !self.core.is_pending() {
            return;
        }
        let waiter = task.fut_waiter.borrow_mut().take();
        task.resumed_from
            .set(waiter.as_ref().map_or(std::ptr::null(), |w| w.addr()));
        drop(waiter);
        if task.must_cancel.get() && !task.started.get() {
            // Python throws CancelledError into the coroutine before its first
            // line runs: the body never starts.
            task.must_cancel.set(false);
            let err = Error::cancelled(self.core.cancel_message().as_deref());
            self.complete(Err(err));
            return;
        }
        task.started.set(true);
        task.stepping.set(true);
        let current: Rc<dyn FutureObj> = self.clone();
        let polled = {
            let _current = CurrentTaskGuard::enter(&current, task, &self.core.loop_);
            let Ok(mut slot) = self.ext.coro.try_borrow_mut() else {
                task.stepping.set(false);
                return;
            };
            let Some(coro) = slot.as_mut() else {
                task.stepping.set(false);
                return;
            };
            // SAFETY: the coroutine lives inside the task's `Rc` allocation,
            // which never moves; it is only ever dropped in place (by writing
            // `None` over it), never moved out, so it stays pinned.
            let coro = unsafe { Pin::new_unchecked(coro) };
            let waker = crate::slots::slot_waker(self.core.loop_.tag, task.key);
            let mut cx = Context::from_waker(&waker);
            catch_unwind(AssertUnwindSafe(|| {
                crate::contextvars::TaskContext::run(&task.context, || coro.poll(&mut cx))
            }))
        };
        drop(current);
        task.stepping.set(false);
        task.resumed_from.set(std::ptr::null());
        match polled {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(outcome)) => self.complete(outcome),
            Err(payload) => self.complete(Err(Error::panic(&*payload))),
        }
    }

    fn complete(self: &Rc<Self>, outcome: Result<T>) {
        let task = &self.ext.state;
        let coro = self
            .ext
            .coro
            .try_borrow_mut()
            .ok()
            .and_then(|mut s| s.take());
        // A destructor that panics must not leave the task pending forever.
        let outcome = match catch_unwind(AssertUnwindSafe(move || drop(coro))) {
            Ok(()) => outcome,
            Err(payload) => outcome.and(Err(Error::panic(&*payload))),
        };
        let cell: Rc<DynCell<T>> = self.clone();
        let _ = match outcome {
            Ok(_) if task.must_cancel.get() => {
                // Cancelled right before the coroutine returned.
                task.must_cancel.set(false);
                let msg = self.core.cancel_message();
                cell.cancel_future(msg.as_deref());
                Ok(())
            }
            Ok(value) => cell.finish(Ok(value)),
            Err(e) if e.is_cancelled() => {
                // `super().cancel()`: the task keeps the error it ended with
                // (for `result()`), but no cancel message of its own.
                self.core.set_cancelled_exc(e);
                cell.cancel_future(None);
                Ok(())
            }
            Err(e) if e.kind().is_exit() => {
                // `super().set_exception(exc); raise`: the task ends with
                // it, and it leaves the loop.
                let finished = cell.finish(Err(e.clone()));
                self.core.loop_.escape(e);
                finished
            }
            Err(e) => cell.finish(Err(e)),
        };
        let waiter = task.fut_waiter.borrow_mut().take();
        drop(waiter);
        let removed = self.core.loop_.slots.borrow_mut().remove(task.key);
        drop(removed);
    }
}

impl<T, F> Runnable for TaskCell<T, F>
where
    T: 'static,
    F: std::future::Future<Output = Result<T>> + 'static,
{
    fn run(self: Rc<Self>) {
        self.step();
    }

    fn as_task(&self) -> Option<AnyTask> {
        self.core.this.upgrade().map(|obj| AnyTask { obj })
    }

    fn abandon(self: Rc<Self>) {
        let task = &self.ext.state;
        if self.core.is_pending() && task.log_destroy_pending.get() {
            let mut ctx = ExceptionContext::new("Task was destroyed but it is pending!");
            if let Some(t) = self.as_task() {
                ctx.set("task", ContextValue::Task(t));
            }
            if self.core.debug {
                ctx.set(
                    "source_traceback",
                    ContextValue::Location(self.core.location),
                );
            }
            self.core.loop_.report(ctx);
        }
        let waiter = task.fut_waiter.borrow_mut().take();
        drop(waiter);
        let coro = self
            .ext
            .coro
            .try_borrow_mut()
            .ok()
            .and_then(|mut s| s.take());
        drop(coro);
        // Done callbacks may hold the task itself (a TaskGroup's, shield's):
        // dropping them breaks those cycles, as CPython's GC would.
        self.core.clear_waiters();
    }
}

/// `Task.cancel(msg)`.
pub(crate) fn task_cancel<T: 'static>(cell: &Rc<DynCell<T>>, msg: Option<&str>) -> bool {
    let Some(task) = cell.ext.task() else {
        return cell.cancel_future(msg);
    };
    if !cell.core.is_pending() {
        return false;
    }
    task.num_cancels_requested
        .set(task.num_cancels_requested.get() + 1);
    // Tasks awaiting each other in a ring would cancel each other forever
    // (CPython's RecursionError); a cancellation that comes back around is
    // left pending instead.
    let mut parked_on_asyncio_future = false;
    if task.cancelling_now.replace(true) {
        task.cancel_directly.set(true);
    } else {
        let waiter = task.fut_waiter.borrow().clone();
        parked_on_asyncio_future = waiter.is_some();
        let cancelled = waiter.is_some_and(|w| w.cancel_obj(msg));
        task.cancelling_now.set(false);
        if cancelled {
            // Keep the waiter: it may be a task that swallows the
            // cancellation and must be cancelled again later.
            return true;
        }
    }
    task.must_cancel.set(true);
    cell.core.set_cancel_message(msg);
    // An asyncio future that refused the cancellation (a gather whose
    // children are done, a finished future whose wake-up is on its way)
    // wakes the task itself, which then gets the cancellation, as in
    // CPython. A Rust task parked in a non-asyncio future needs a step to
    // deliver it — unless a step of it is running (itself, or an eager task
    // it is creating, cancelling it): its next await delivers it.
    if !task.stepping.get() && (!parked_on_asyncio_future || task.cancel_directly.get()) {
        cell.core.loop_.schedule_slot(task.key);
    }
    true
}

// ===== task factory =====

/// What a task factory may change about a task being created.
#[derive(Debug)]
pub struct TaskInit {
    name: Option<String>,
    eager_start: bool,
    coro_name: &'static str,
}

impl TaskInit {
    /// The name given to `create_task`, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Renames the task.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = Some(name.into());
    }

    /// `true` if the task will run its first step inside `create_task`.
    pub fn eager_start(&self) -> bool {
        self.eager_start
    }

    /// Makes the task start eagerly (3.12's `eager_start=True`): its first
    /// step runs inside `create_task` when the loop is running.
    pub fn set_eager_start(&mut self, eager: bool) {
        self.eager_start = eager;
    }

    /// The coroutine's printable name.
    pub fn coro_name(&self) -> &'static str {
        self.coro_name
    }
}

/// A task factory (`loop.set_task_factory`): called for every task the loop
/// creates; it may rename the task, make it start eagerly, or refuse it.
///
/// Any `Fn(&EventLoop, &mut TaskInit) -> Result<()>` is a task factory.
pub trait TaskFactory {
    /// Adjusts `task` before it is created; an error fails `create_task`.
    fn configure(&self, loop_: &EventLoop, task: &mut TaskInit) -> Result<()>;
}

impl<F> TaskFactory for F
where
    F: Fn(&EventLoop, &mut TaskInit) -> Result<()>,
{
    fn configure(&self, loop_: &EventLoop, task: &mut TaskInit) -> Result<()> {
        self(loop_, task)
    }
}

struct EagerTaskFactory;

impl TaskFactory for EagerTaskFactory {
    fn configure(&self, _loop: &EventLoop, task: &mut TaskInit) -> Result<()> {
        task.set_eager_start(true);
        Ok(())
    }
}

/// `asyncio.eager_task_factory`: tasks run their first step synchronously in
/// `create_task`; one that finishes there is never scheduled.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.set_task_factory(Some(asyncio_core::eager_task_factory()));
/// let out = loop_.run_until_complete(async {
///     let task = asyncio_core::create_task(async { Ok(7) })?;
///     assert!(task.done()); // finished inside create_task
///     task.await
/// })?;
/// assert_eq!(out, 7);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn eager_task_factory() -> Rc<dyn TaskFactory> {
    Rc::new(EagerTaskFactory)
}

impl EventLoop {
    /// Sets the task factory (`None` restores plain tasks).
    pub fn set_task_factory(&self, factory: Option<Rc<dyn TaskFactory>>) {
        let old = std::mem::replace(&mut *self.inner.task_factory.borrow_mut(), factory);
        drop(old);
    }

    /// The task factory, `None` for the default.
    pub fn get_task_factory(&self) -> Option<Rc<dyn TaskFactory>> {
        self.inner.task_factory.borrow().clone()
    }

    /// Wraps a coroutine (any Rust future yielding `Result<T>`) in a task
    /// scheduled on this loop (`loop.create_task(coro)`).
    ///
    /// The task runs even if the returned handle is dropped; the loop keeps
    /// it, as `all_tasks()` shows. Errors with `"Event loop is closed"`.
    #[track_caller]
    pub fn create_task<F, T>(&self, coro: F) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        self.spawn_task(coro, None, None, Location::caller())
    }

    /// `loop.create_task(coro, context=ctx)`: the task runs in `context`
    /// itself (not in a copy of the current context), so what it sets stays
    /// there.
    #[track_caller]
    pub fn create_task_in<F, T>(
        &self,
        context: &crate::contextvars::Context,
        coro: F,
    ) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        self.spawn_task(coro, None, Some(context.clone()), Location::caller())
    }

    /// [`create_task`](EventLoop::create_task) with a name (`name=` in Python).
    #[track_caller]
    pub fn create_task_named<F, T>(&self, coro: F, name: impl Into<String>) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        self.spawn_task(coro, Some(name.into()), None, Location::caller())
    }

    pub(crate) fn spawn_task<F, T>(
        &self,
        coro: F,
        name: Option<String>,
        context: Option<crate::contextvars::Context>,
        location: &'static Location<'static>,
    ) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        self.check_closed()?;
        let mut init = TaskInit {
            name,
            eager_start: false,
            coro_name: crate::events::callback_name::<F>(),
        };
        let factory = self.inner.task_factory.borrow().clone();
        if let Some(factory) = factory {
            // A panicking factory is an error like any other panic.
            match catch_unwind(AssertUnwindSafe(|| factory.configure(self, &mut init))) {
                Ok(configured) => configured?,
                Err(payload) => return Err(Error::panic(&*payload)),
            }
        }
        let inner: &Rc<LoopInner> = &self.inner;
        let key = inner.reserve_slot()?;
        let state = TaskState {
            key,
            // Only unnamed tasks use up a number, as in CPython 3.13.
            number: if init.name.is_none() {
                TASK_NAME_COUNTER.fetch_add(1, Ordering::Relaxed)
            } else {
                0
            },
            name: RefCell::new(init.name.map(Cow::Owned)),
            num_cancels_requested: Cell::new(0),
            must_cancel: Cell::new(false),
            fut_waiter: RefCell::new(None),
            resumed_from: Cell::new(std::ptr::null()),
            started: Cell::new(false),
            stepping: Cell::new(false),
            cancelling_now: Cell::new(false),
            cancel_directly: Cell::new(false),
            log_destroy_pending: Cell::new(true),
            context: RefCell::new(match context {
                Some(ctx) => crate::contextvars::TaskContext::Given(ctx),
                None => crate::contextvars::TaskContext::capture(),
            }),
        };
        let cell: Rc<TaskCell<T, F>> = Rc::new_cyclic(|weak: &Weak<TaskCell<T, F>>| {
            let this: Weak<dyn FutureObj> = weak.clone();
            FutureCell {
                core: FutureCore::new(inner.clone(), this, location),
                ext: TaskBody {
                    state,
                    coro: RefCell::new(Some(coro)),
                },
            }
        });
        let runnable: Rc<dyn Runnable> = cell.clone();
        inner.slots.borrow_mut().fill(key, runnable);
        if init.eager_start && self.is_running() {
            cell.step();
        } else {
            inner.schedule_slot(key);
        }
        let dyn_cell: Rc<DynCell<T>> = cell;
        Ok(Task {
            fut: Future { cell: dyn_cell },
        })
    }
}

/// `asyncio.create_task(coro)`: a task on the running loop.
///
/// Errors with `"no running event loop"` outside a running loop.
#[track_caller]
pub fn create_task<F, T>(coro: F) -> Result<Task<T>>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    let location = Location::caller();
    crate::events::get_running_loop()?.spawn_task(coro, None, None, location)
}

/// `asyncio.create_task(coro, context=ctx)`: see [`EventLoop::create_task_in`].
#[track_caller]
pub fn create_task_in<F, T>(context: &crate::contextvars::Context, coro: F) -> Result<Task<T>>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    let location = Location::caller();
    crate::events::get_running_loop()?.spawn_task(coro, None, Some(context.clone()), location)
}

/// `asyncio.create_task(coro, name=…)`.
#[track_caller]
pub fn create_task_named<F, T>(coro: F, name: impl Into<String>) -> Result<Task<T>>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    let location = Location::caller();
    crate::events::get_running_loop()?.spawn_task(coro, Some(name.into()), None, location)
}

// ===== Task =====

/// An asyncio task: a coroutine (any Rust future yielding `Result<T>`) run by
/// the loop step by step (Python's `asyncio.Task`).
///
/// A task is a [`Future`] (it derefs to one) whose result is the coroutine's.
/// Cancellation follows Python: [`cancel`](Task::cancel) cancels the asyncio
/// future the task is waiting on, so that `.await` returns
/// `Err(CancelledError)` there; a coroutine that lets the error out ends
/// cancelled, one that returns a value ends finished.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let value = loop_.run_until_complete(async {
///     let task = asyncio_core::create_task_named(async { Ok(6 * 7) }, "answer")?;
///     assert_eq!(task.get_name(), "answer");
///     task.await
/// })?;
/// assert_eq!(value, 42);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct Task<T: 'static> {
    fut: Future<T>,
}

impl<T: 'static> Clone for Task<T> {
    fn clone(&self) -> Self {
        Task {
            fut: self.fut.clone(),
        }
    }
}

impl<T: 'static> Deref for Task<T> {
    type Target = Future<T>;

    fn deref(&self) -> &Future<T> {
        &self.fut
    }
}

impl<T: 'static> From<Task<T>> for Future<T> {
    fn from(task: Task<T>) -> Future<T> {
        task.fut
    }
}

impl<T: 'static> Task<T> {
    fn state(&self) -> &TaskState {
        self.fut
            .cell
            .ext
            .task()
            .unwrap_or_else(|| unreachable!("a Task handle always wraps a task cell"))
    }

    /// Requests cancellation (`Task.cancel()`); `false` if the task is done.
    pub fn cancel(&self) -> bool {
        task_cancel(&self.fut.cell, None)
    }

    /// `Task.cancel(msg)`.
    pub fn cancel_with_message(&self, msg: impl AsRef<str>) -> bool {
        task_cancel(&self.fut.cell, Some(msg.as_ref()))
    }

    /// The number of pending cancellation requests (`Task.cancelling()`).
    pub fn cancelling(&self) -> u32 {
        self.state().num_cancels_requested.get()
    }

    /// Decrements the cancellation requests and returns the rest
    /// (`Task.uncancel()`); at zero a pending cancellation is dropped (3.13).
    pub fn uncancel(&self) -> u32 {
        uncancel(self.state())
    }

    /// The task's name (`Task-N` unless given).
    pub fn get_name(&self) -> String {
        self.state().name()
    }

    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        *self.state().name.borrow_mut() = Some(Cow::Owned(name.into()));
    }

    /// The coroutine's printable name (Python's `get_coro()` shows the
    /// coroutine object; a Rust future has only its type name).
    pub fn get_coro(&self) -> &'static str {
        self.fut.cell.ext.coro_name()
    }

    /// The context the task runs in (`Task.get_context()`): the copy made
    /// when it was created, or the one given to `create_task_in`.
    pub fn get_context(&self) -> crate::contextvars::Context {
        crate::contextvars::TaskContext::as_context(&self.state().context)
    }

    /// The task as a [`Future`] handle.
    pub fn as_future(&self) -> &Future<T> {
        &self.fut
    }

    /// The task without its output type.
    pub fn as_any(&self) -> AnyTask {
        AnyTask {
            obj: self.fut.obj(),
        }
    }

    /// Waits for the task and moves its result out (for outputs that are not `Clone`).
    pub fn take(self) -> crate::futures::TakeFuture<T> {
        self.fut.take()
    }
}

fn uncancel(task: &TaskState) -> u32 {
    let n = task.num_cancels_requested.get();
    if n > 0 {
        task.num_cancels_requested.set(n - 1);
        if n == 1 {
            task.must_cancel.set(false);
            task.cancel_directly.set(false);
        }
    }
    task.num_cancels_requested.get()
}

impl<T: fmt::Debug + 'static> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.fut, f)
    }
}

impl<T: Clone + 'static> IntoFuture for Task<T> {
    type Output = Result<T>;
    type IntoFuture = FutureAwait<T>;

    fn into_future(self) -> FutureAwait<T> {
        self.fut.into_future()
    }
}

impl<T: Clone + 'static> IntoFuture for &Task<T> {
    type Output = Result<T>;
    type IntoFuture = FutureAwait<T>;

    fn into_future(self) -> FutureAwait<T> {
        (&self.fut).into_future()
    }
}

impl<T: Clone + 'static> Awaitable<T> for Task<T> {
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<T>, bool)> {
        self.fut.into_asyncio_future(loop_)
    }

    fn extract(future: &Future<T>, _owned: bool) -> Result<T> {
        future.result()
    }
}

impl<T: Clone + 'static> Awaitable<T> for &Task<T> {
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<T>, bool)> {
        self.fut.clone().into_asyncio_future(loop_)
    }

    fn extract(future: &Future<T>, _owned: bool) -> Result<T> {
        future.result()
    }
}

// ===== AnyTask =====

/// A task of any output type, as `all_tasks()` and `current_task()` return it.
#[derive(Clone)]
pub struct AnyTask {
    pub(crate) obj: Rc<dyn FutureObj>,
}

impl AnyTask {
    fn state(&self) -> &TaskState {
        self.obj
            .task()
            .unwrap_or_else(|| unreachable!("an AnyTask always wraps a task cell"))
    }

    /// `Task.cancel()`.
    pub fn cancel(&self) -> bool {
        self.obj.cancel_obj(None)
    }

    /// `Task.cancel(msg)`.
    pub fn cancel_with_message(&self, msg: impl AsRef<str>) -> bool {
        self.obj.cancel_obj(Some(msg.as_ref()))
    }

    /// `Task.cancelling()`.
    pub fn cancelling(&self) -> u32 {
        self.state().num_cancels_requested.get()
    }

    /// `Task.uncancel()`.
    pub fn uncancel(&self) -> u32 {
        uncancel(self.state())
    }

    /// `true` once the task finished or was cancelled.
    pub fn done(&self) -> bool {
        self.obj.done()
    }

    /// `true` if the task was cancelled.
    pub fn cancelled(&self) -> bool {
        self.obj.cancelled()
    }

    /// The task's error, if it finished with one (or its `CancelledError`).
    pub fn exception(&self) -> Option<Error> {
        self.obj.error()
    }

    /// The task's name.
    pub fn get_name(&self) -> String {
        self.state().name()
    }

    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        *self.state().name.borrow_mut() = Some(Cow::Owned(name.into()));
    }

    /// The coroutine's printable name.
    pub fn get_coro(&self) -> &'static str {
        self.obj.coro_name()
    }

    /// `Task.get_context()`.
    pub fn get_context(&self) -> crate::contextvars::Context {
        crate::contextvars::TaskContext::as_context(&self.state().context)
    }

    /// The loop the task runs on.
    pub fn get_loop(&self) -> EventLoop {
        EventLoop::from_inner(self.obj.loop_inner().clone())
    }

    /// Adds a callback run (via `call_soon`) once the task is done.
    pub fn add_done_callback<F: FnOnce() + 'static>(&self, callback: F) -> crate::CallbackId {
        self.obj
            .add_erased_callback(crate::events::callback_name::<F>(), Box::new(callback))
    }

    /// Removes a done callback; returns how many were removed.
    pub fn remove_done_callback(&self, id: crate::CallbackId) -> usize {
        self.obj.remove_callback(id)
    }

    /// `true` if both refer to the same task.
    pub fn ptr_eq(&self, other: &AnyTask) -> bool {
        self.obj.addr() == other.obj.addr()
    }

    /// `true` if this is `task`.
    pub fn is<T: 'static>(&self, task: &Task<T>) -> bool {
        self.obj.addr() == Rc::as_ptr(&task.fut.cell) as *const ()
    }
}

impl fmt::Debug for AnyTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.obj.repr())
    }
}

/// Awaiting an [`AnyTask`] waits for it to finish; the value is dropped,
/// errors and cancellation come back as `Err`.
pub struct AnyTaskAwait {
    obj: Rc<dyn FutureObj>,
}

impl fmt::Debug for AnyTaskAwait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.obj.repr())
    }
}

impl std::future::Future for AnyTaskAwait {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match crate::futures::poll_await_obj(&*self.obj, cx) {
            Poll::Ready(Ok(())) => Poll::Ready(match self.obj.error() {
                Some(e) => Err(e),
                None => Ok(()),
            }),
            other => other,
        }
    }
}

impl IntoFuture for AnyTask {
    type Output = Result<()>;
    type IntoFuture = AnyTaskAwait;

    fn into_future(self) -> AnyTaskAwait {
        AnyTaskAwait { obj: self.obj }
    }
}

impl IntoFuture for &AnyTask {
    type Output = Result<()>;
    type IntoFuture = AnyTaskAwait;

    fn into_future(self) -> AnyTaskAwait {
        AnyTaskAwait {
            obj: self.obj.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`cancellable`].
    #[derive(Debug)]
    pub struct Cancellable<F> {
        #[pin]
        inner: F,
    }
}

/// Makes any future an asyncio await point: inside a task, a cancellation
/// requested while the task waits in `fut` (a Tokio socket, a channel …)
/// ends the wait with `Err(CancelledError)`, as awaiting an asyncio future
/// would. Outside a task it only wraps the output in `Ok`.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let never = asyncio_core::create_task(async {
///         asyncio_core::cancellable(std::future::pending::<()>()).await
///     })?;
///     asyncio_core::sleep(0).await?;
///     never.cancel();
///     assert!(never.take().await.unwrap_err().is_cancelled());
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn cancellable<F: std::future::Future>(fut: F) -> Cancellable<F> {
    Cancellable { inner: fut }
}

impl<F: std::future::Future> std::future::Future for Cancellable<F> {
    type Output = Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = take_pending_cancel() {
            return Poll::Ready(Err(e));
        }
        self.project().inner.poll(cx).map(Ok)
    }
}

/// What an await point inside the current task raises before it waits:
/// CPython's `RuntimeError` when the task does not belong to `loop_` (when
/// given), else the task's pending cancellation (clearing the request).
#[inline]
pub(crate) fn await_point_error(loop_: Option<&EventLoop>) -> Option<Error> {
    let current = CURRENT_TASK.with(Cell::get);
    if current.task.is_null() {
        return None;
    }
    // SAFETY: as in `with_current_task`: set together, valid while the
    // current step's guard lives, which outlives this call.
    let (state, inner) = unsafe { (&*current.state, &*current.loop_) };
    let foreign = loop_.is_some_and(|l| !std::ptr::eq(inner, Rc::as_ptr(&l.inner)));
    if !foreign && !state.must_cancel.get() {
        return None;
    }
    await_point_error_slow(foreign)
}

/// The rare outcomes of [`await_point_error`], kept out of line so that
/// the common check stays a few instructions at every await point.
#[cold]
#[inline(never)]
fn await_point_error_slow(foreign: bool) -> Option<Error> {
    with_current_task(|task_obj| {
        let task_obj = task_obj?;
        if foreign {
            return Some(Error::runtime(format!(
                "Task {} got Future <Future pending> attached to a different loop",
                task_obj.repr()
            )));
        }
        take_cancel_of(task_obj)
    })
}

/// The cancellation requested for the current task and not delivered yet,
/// as the `CancelledError` an await point raises (clearing the request);
/// `None` outside a task or when none is pending.
pub(crate) fn take_pending_cancel() -> Option<Error> {
    await_point_error(None)
}

fn take_cancel_of(task_obj: &Rc<dyn FutureObj>) -> Option<Error> {
    let task = task_obj.task()?;
    if task.must_cancel.get() {
        task.must_cancel.set(false);
        return Some(Error::cancelled(task_obj.cancel_message().as_deref()));
    }
    None
}
