//! `asyncio.TaskGroup` (CPython's `taskgroups.py`, 3.13 semantics).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::rc::Rc;

use crate::base_events::EventLoop;
use crate::events::get_running_loop;
use crate::exception_context::{ContextValue, ExceptionContext};
use crate::exceptions::{Error, Result};
use crate::tasks::{current_task_of, AnyTask, Task};
use crate::Future;

struct Inner {
    entered: Cell<bool>,
    exiting: Cell<bool>,
    aborting: Cell<bool>,
    loop_: RefCell<Option<EventLoop>>,
    parent_task: RefCell<Option<AnyTask>>,
    parent_cancel_requested: Cell<bool>,
    tasks: RefCell<Vec<AnyTask>>,
    errors: RefCell<Vec<Error>>,
    base_error: RefCell<Option<Error>>,
    on_completed_fut: RefCell<Option<Future<()>>>,
}

/// A group of tasks awaited together (Python's `asyncio.TaskGroup`).
///
/// [`run`](TaskGroup::run) plays the `async with` block. When the block
/// ends, the group waits for all its tasks. The first task to fail (with an
/// error other than `CancelledError`) cancels the others and the block; the
/// errors then come out together as an exception group
/// (`"unhandled errors in a TaskGroup"`).
///
/// ```
/// use asyncio_core::{sleep_with, ErrorKind, TaskGroup};
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let tg = TaskGroup::new();
///     let (a, b) = tg
///         .run(async {
///             let a = tg.create_task(sleep_with(0.01, 1))?;
///             let b = tg.create_task(sleep_with(0.02, 2))?;
///             Ok((a, b))
///         })
///         .await?;
///     assert_eq!((a.result()?, b.result()?), (1, 2));
///
///     let tg = TaskGroup::new();
///     let err = tg
///         .run(async {
///             tg.create_task(async { Err::<(), _>(asyncio_core::Error::value("boom")) })?;
///             tg.create_task(asyncio_core::sleep(10))?; // cancelled by the failure
///             Ok(())
///         })
///         .await
///         .unwrap_err();
///     assert_eq!(err.kind(), ErrorKind::ExceptionGroup);
///     assert_eq!(err.exceptions()[0].message(), "boom");
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct TaskGroup {
    inner: Rc<Inner>,
}

impl Default for TaskGroup {
    fn default() -> Self {
        TaskGroup::new()
    }
}

fn is_base_error(e: &Error) -> bool {
    e.kind().is_exit()
}

impl TaskGroup {
    /// A new, not yet entered group.
    pub fn new() -> TaskGroup {
        TaskGroup {
            inner: Rc::new(Inner {
                entered: Cell::new(false),
                exiting: Cell::new(false),
                aborting: Cell::new(false),
                loop_: RefCell::new(None),
                parent_task: RefCell::new(None),
                parent_cancel_requested: Cell::new(false),
                tasks: RefCell::new(Vec::new()),
                errors: RefCell::new(Vec::new()),
                base_error: RefCell::new(None),
                on_completed_fut: RefCell::new(None),
            }),
        }
    }

    /// Creates a task in the group (`TaskGroup.create_task`).
    ///
    /// Errors: `"TaskGroup <…> has not been entered"`, `"… is finished"`,
    /// `"… is shutting down"`.
    #[track_caller]
    pub fn create_task<F, T>(&self, coro: F) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        self.spawn(coro, None)
    }

    /// [`create_task`](TaskGroup::create_task) with a name.
    #[track_caller]
    pub fn create_task_named<F, T>(&self, coro: F, name: impl Into<String>) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        self.spawn(coro, Some(name.into()))
    }

    #[track_caller]
    fn spawn<F, T>(&self, coro: F, name: Option<String>) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        let inner = &self.inner;
        if !inner.entered.get() {
            return Err(Error::runtime(format!(
                "TaskGroup {self:?} has not been entered"
            )));
        }
        if inner.exiting.get() && inner.tasks.borrow().is_empty() {
            return Err(Error::runtime(format!("TaskGroup {self:?} is finished")));
        }
        if inner.aborting.get() {
            return Err(Error::runtime(format!(
                "TaskGroup {self:?} is shutting down"
            )));
        }
        let loop_ = inner
            .loop_
            .borrow()
            .clone()
            .ok_or_else(|| Error::runtime("no running event loop"))?;
        let task = match name {
            Some(n) => loop_.create_task_named(coro, n)?,
            None => loop_.create_task(coro)?,
        };
        let any = task.as_any();
        if task.done() {
            self.on_task_done(&any);
        } else {
            inner.tasks.borrow_mut().push(any.clone());
            let me = self.clone();
            let done_task = any.clone();
            any.add_done_callback(move || me.on_task_done(&done_task));
        }
        Ok(task)
    }

    fn abort(&self) {
        self.inner.aborting.set(true);
        let tasks = self.inner.tasks.borrow().clone();
        for t in tasks {
            if !t.done() {
                t.cancel();
            }
        }
    }

    fn on_task_done(&self, task: &AnyTask) {
        let inner = &self.inner;
        inner.tasks.borrow_mut().retain(|t| !t.ptr_eq(task));
        if inner.tasks.borrow().is_empty() {
            let fut = inner.on_completed_fut.borrow().clone();
            if let Some(fut) = fut {
                if !fut.done() {
                    let _ = fut.set_result(());
                }
            }
        }
        if task.cancelled() {
            return;
        }
        let Some(exc) = task.exception() else {
            return;
        };
        inner.errors.borrow_mut().push(exc.clone());
        if is_base_error(&exc) && inner.base_error.borrow().is_none() {
            *inner.base_error.borrow_mut() = Some(exc.clone());
        }
        let parent = inner.parent_task.borrow().clone();
        let Some(parent) = parent else {
            return;
        };
        if parent.done() {
            let mut ctx = ExceptionContext::new(format!(
                "Task {task:?} has errored out but its parent task {parent:?} is already completed"
            ));
            ctx.exception = Some(exc);
            ctx.set("task", ContextValue::Task(task.clone()));
            parent.get_loop().call_exception_handler(ctx);
            return;
        }
        if !inner.aborting.get() && !inner.parent_cancel_requested.get() {
            self.abort();
            inner.parent_cancel_requested.set(true);
            parent.cancel();
        }
    }

    fn enter(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.entered.get() {
            return Err(Error::runtime(format!(
                "TaskGroup {self:?} has already been entered"
            )));
        }
        let loop_ = get_running_loop()?;
        let parent = current_task_of(&loop_).ok_or_else(|| {
            Error::runtime(format!(
                "TaskGroup {self:?} cannot determine the parent task"
            ))
        })?;
        *inner.loop_.borrow_mut() = Some(loop_);
        *inner.parent_task.borrow_mut() = Some(parent);
        inner.entered.set(true);
        Ok(())
    }

    async fn exit<T>(&self, outcome: Result<T>) -> Result<T> {
        let inner = &self.inner;
        inner.exiting.set(true);
        let exc = outcome.as_ref().err().cloned();
        if let Some(e) = &exc {
            if is_base_error(e) && inner.base_error.borrow().is_none() {
                *inner.base_error.borrow_mut() = Some(e.clone());
            }
        }
        let mut propagate_cancellation_error = exc.clone().filter(Error::is_cancelled);
        if exc.is_some() && !inner.aborting.get() {
            self.abort();
        }
        let loop_ = inner
            .loop_
            .borrow()
            .clone()
            .ok_or_else(|| Error::runtime("no running event loop"))?;
        while !inner.tasks.borrow().is_empty() {
            let fut = inner
                .on_completed_fut
                .borrow_mut()
                .get_or_insert_with(|| Future::new(&loop_))
                .clone();
            if let Err(e) = (&fut).await {
                if e.is_cancelled() && !inner.aborting.get() {
                    propagate_cancellation_error = Some(e);
                    self.abort();
                }
            }
            inner.on_completed_fut.borrow_mut().take();
        }
        if let Some(base) = inner.base_error.borrow().clone() {
            return Err(base);
        }
        let parent = inner.parent_task.borrow().clone();
        if inner.parent_cancel_requested.get() {
            if let Some(p) = &parent {
                if p.uncancel() == 0 {
                    propagate_cancellation_error = None;
                }
            }
        }
        if let Some(cancel) = propagate_cancellation_error {
            if inner.errors.borrow().is_empty() {
                return Err(cancel);
            }
        }
        if let Some(e) = exc {
            if !e.is_cancelled() {
                inner.errors.borrow_mut().push(e);
            }
        }
        let errors = std::mem::take(&mut *inner.errors.borrow_mut());
        if !errors.is_empty() {
            if let Some(p) = &parent {
                if p.cancelling() > 0 {
                    p.uncancel();
                    p.cancel();
                }
            }
            return Err(Error::group("unhandled errors in a TaskGroup", errors));
        }
        outcome
    }

    /// Runs `body` as the group's `async with` block, then waits for every
    /// task of the group (see the type's docs for the error rules).
    ///
    /// Errors: `"TaskGroup <…> has already been entered"`,
    /// `"TaskGroup <…> cannot determine the parent task"` outside a task.
    pub async fn run<T, B>(&self, body: B) -> Result<T>
    where
        B: IntoFuture<Output = Result<T>>,
    {
        self.enter()?;
        // Dropped mid-way (e.g. by `select!`), the block ends like one that
        // raised: the group's tasks are cancelled.
        let mut guard = AbortGuard(Some(self.clone()));
        let outcome = body.into_future().await;
        let exited = self.exit(outcome).await;
        guard.0 = None;
        exited
    }
}

struct AbortGuard(Option<TaskGroup>);

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(tg) = self.0.take() {
            tg.inner.exiting.set(true);
            tg.abort();
        }
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut info = String::new();
        let ntasks = inner.tasks.try_borrow().map(|t| t.len()).unwrap_or(0);
        if ntasks > 0 {
            info.push_str(&format!(" tasks={ntasks}"));
        }
        let nerrors = inner.errors.try_borrow().map(|e| e.len()).unwrap_or(0);
        if nerrors > 0 {
            info.push_str(&format!(" errors={nerrors}"));
        }
        if inner.aborting.get() {
            info.push_str(" cancelling");
        } else if inner.entered.get() {
            info.push_str(" entered");
        }
        write!(f, "<TaskGroup{info}>")
    }
}
