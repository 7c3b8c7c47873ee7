//! `asyncio.run` and `asyncio.Runner` (CPython's `runners.py`).

use std::fmt;
use std::future::Future as StdFuture;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use asyncio_core::{
    all_tasks_of, AnyTask, ContextValue, Error, ErrorKind, EventLoop, ExceptionContext, Result,
    Task,
};
use asyncio_tokio::unix_signals::{self, SigintGuard};

use crate::events;

/// How long `Runner.close()` waits for the default executor's threads
/// (CPython's `constants.THREAD_JOIN_TIMEOUT`).
pub const THREAD_JOIN_TIMEOUT: f64 = 300.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Created,
    Initialized,
    Closed,
}

type LoopFactory = Box<dyn Fn() -> Result<EventLoop>>;

/// Runs coroutines on one loop it owns, then shuts everything down
/// (Python's `asyncio.Runner`). Dropping a runner closes it.
///
/// ```
/// let mut runner = asyncio::Runner::new().debug(false);
/// let a = runner.run(async { Ok(1) })?;
/// let b = runner.run(async { Ok(2) })?; // same loop, second run
/// runner.close()?;
/// assert_eq!(a + b, 3);
/// # Ok::<(), asyncio::Error>(())
/// ```
pub struct Runner {
    state: State,
    options: RunOptions,
    loop_: Option<EventLoop>,
    set_event_loop: bool,
    /// The context every `run` uses unless given another (CPython's
    /// `Runner._context`): a copy of the one current when the runner was
    /// made, shared by its runs.
    context: asyncio_core::contextvars::Context,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("state", &self.state)
            .field("debug", &self.options.debug)
            .field("loop", &self.loop_)
            .finish()
    }
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new()
    }
}

impl Runner {
    /// A runner that will make its loop from the policy (`Runner()`).
    pub fn new() -> Runner {
        Runner {
            state: State::Created,
            options: RunOptions::new(),
            loop_: None,
            set_event_loop: false,
            context: asyncio_core::contextvars::copy_context(),
        }
    }

    /// Sets the loop's debug mode (`debug=`).
    pub fn debug(mut self, debug: bool) -> Self {
        self.options.debug = Some(debug);
        self
    }

    /// Makes the loop with `factory` instead of the policy (`loop_factory=`);
    /// the loop is then not set as the thread's current loop.
    pub fn loop_factory<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Result<EventLoop> + 'static,
    {
        self.options.loop_factory = Some(Box::new(factory));
        self
    }

    /// A runner with `options` (as `Runner(debug=…, loop_factory=…)`).
    pub fn with_options(options: RunOptions) -> Runner {
        let mut runner = Runner::new();
        runner.options = options;
        runner
    }

    fn lazy_init(&mut self) -> Result<EventLoop> {
        match self.state {
            State::Closed => return Err(Error::runtime("Runner is closed")),
            State::Initialized => {
                if let Some(l) = &self.loop_ {
                    return Ok(l.clone());
                }
            }
            State::Created => {}
        }
        let loop_ = match &self.options.loop_factory {
            None => {
                let l = events::new_event_loop()?;
                if !self.set_event_loop {
                    events::set_event_loop(Some(l.clone()))?;
                    self.set_event_loop = true;
                }
                l
            }
            Some(factory) => factory()?,
        };
        if let Some(debug) = self.options.debug {
            loop_.set_debug(debug);
        }
        self.loop_ = Some(loop_.clone());
        self.state = State::Initialized;
        Ok(loop_)
    }

    /// The runner's loop, made on first use.
    pub fn get_loop(&mut self) -> Result<EventLoop> {
        self.lazy_init()
    }

    /// Runs `coro` as a task until it completes and returns its result
    /// (`Runner.run(coro)`).
    ///
    /// Errors: `"Runner.run() cannot be called from a running event loop"`,
    /// `"Runner is closed"`, `"Cannot run the event loop while another loop
    /// is running"` (inside a Tokio runtime; refused before the coroutine
    /// becomes a task), and whatever the coroutine fails with.
    ///
    /// The coroutine runs in the runner's context, shared by its runs (what
    /// one run sets, the next sees), as in CPython.
    #[track_caller]
    pub fn run<T, F>(&mut self, coro: F) -> Result<T>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        let context = self.context.clone();
        self.run_in(&context, coro)
    }

    /// `Runner.run(coro, context=ctx)`: runs `coro` in `context`.
    #[track_caller]
    pub fn run_in<T, F>(
        &mut self,
        context: &asyncio_core::contextvars::Context,
        coro: F,
    ) -> Result<T>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        if asyncio_core::_get_running_loop().is_some() {
            return Err(Error::runtime(
                "Runner.run() cannot be called from a running event loop",
            ));
        }
        let loop_ = self.lazy_init()?;
        // Refuse (e.g. inside a Tokio runtime) before the main task exists,
        // so that no pending task is left to report at close.
        loop_._check_running()?;
        let task = loop_.create_task_in(context, coro)?;
        let sigint = SigintHandling::install(&loop_, &task);
        let outcome = loop_.run_task_until_complete(task.clone());
        let interrupted = sigint.map_or(0, |s| s.finish());
        match outcome {
            // CPython: a main task that ended cancelled by the first Ctrl-C
            // (and not un-cancelled since) makes the run a KeyboardInterrupt.
            Err(e) if e.kind() == ErrorKind::CancelledError && interrupted > 0 => {
                if task.uncancel() == 0 {
                    Err(Error::new(ErrorKind::KeyboardInterrupt, ""))
                } else {
                    Err(e)
                }
            }
            outcome => outcome,
        }
    }

    /// Cancels the tasks left, closes async generators and the default
    /// executor, and closes the loop (`Runner.close()`). Idempotent.
    pub fn close(&mut self) -> Result<()> {
        if self.state != State::Initialized {
            return Ok(());
        }
        let Some(loop_) = self.loop_.take() else {
            self.state = State::Closed;
            return Ok(());
        };
        let shutdown = (|| -> Result<()> {
            cancel_all_tasks(&loop_)?;
            let l = loop_.clone();
            loop_.run_until_complete(async move { l.shutdown_asyncgens().await })?;
            let l = loop_.clone();
            loop_.run_until_complete(async move {
                l.shutdown_default_executor(Some(THREAD_JOIN_TIMEOUT)).await
            })
        })();
        if self.set_event_loop {
            let _ = events::set_event_loop(None);
        }
        let closed = loop_.close();
        self.state = State::Closed;
        shutdown.and(closed)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if asyncio_core::_get_running_loop().is_none() {
            let _ = self.close();
        }
    }
}

thread_local! {
    /// The main task the runner's Ctrl-C cancels, with its run's number.
    static MAIN_TASK: RefCell<Option<(u64, AnyTask)>> = const { RefCell::new(None) };
}

/// CPython's `Runner._on_sigint` for one `run`: installed only on the main
/// thread, and only while SIGINT has its default disposition. The first
/// Ctrl-C cancels the main task (waking the loop); the next one raises
/// `KeyboardInterrupt` out of the loop at its next iteration (the loop
/// cannot be interrupted inside a callback that blocks).
struct SigintHandling {
    run: u64,
    interrupts: Arc<AtomicUsize>,
    _guard: SigintGuard,
}

impl SigintHandling {
    fn install<T: 'static>(loop_: &EventLoop, task: &Task<T>) -> Option<SigintHandling> {
        if !unix_signals::is_main_thread()
            || !unix_signals::has_default_disposition(unix_signals::consts::SIGINT)
        {
            return None;
        }
        static RUNS: AtomicU64 = AtomicU64::new(1);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        MAIN_TASK.with(|m| *m.borrow_mut() = Some((run, task.as_any())));
        let interrupts = Arc::new(AtomicUsize::new(0));
        let count = interrupts.clone();
        let remote = loop_.threadsafe();
        let guard = SigintGuard::install(move || {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            let _ = remote.call_soon_threadsafe(move || on_sigint(run, first));
        })
        .ok()?;
        Some(SigintHandling {
            run,
            interrupts,
            _guard: guard,
        })
    }

    /// Uninstalls; the number of Ctrl-Cs received.
    fn finish(self) -> usize {
        MAIN_TASK.with(|m| {
            let mut m = m.borrow_mut();
            if matches!(&*m, Some((run, _)) if *run == self.run) {
                *m = None;
            }
        });
        self.interrupts.load(Ordering::SeqCst)
    }
}

/// On the loop's thread: a Ctrl-C during run `run`.
fn on_sigint(run: u64, first: bool) -> Result<()> {
    let task = MAIN_TASK.with(|m| match &*m.borrow() {
        Some((r, task)) if *r == run => Some(task.clone()),
        _ => None,
    });
    match task {
        Some(task) if first && !task.done() => {
            task.cancel();
            Ok(())
        }
        _ => Err(Error::new(ErrorKind::KeyboardInterrupt, "")),
    }
}

/// CPython's `runners._cancel_all_tasks`.
fn cancel_all_tasks(loop_: &EventLoop) -> Result<()> {
    let to_cancel = all_tasks_of(loop_);
    if to_cancel.is_empty() {
        return Ok(());
    }
    for task in &to_cancel {
        task.cancel();
    }
    let waiting = to_cancel.clone();
    loop_.run_until_complete(async move {
        for task in &waiting {
            let _ = task.await;
        }
        Ok(())
    })?;
    for task in to_cancel {
        if task.cancelled() {
            continue;
        }
        if let Some(exception) = task.exception() {
            let mut ctx =
                ExceptionContext::new("unhandled exception during asyncio.run() shutdown");
            ctx.exception = Some(exception);
            ctx.set("task", ContextValue::Task(task));
            loop_.call_exception_handler(ctx);
        }
    }
    Ok(())
}

/// `asyncio.run(main)`: runs `main` on a new loop, then cancels what is
/// left, closes async generators and the default executor, and closes the
/// loop. For `debug=` and `loop_factory=`, use [`run_with`].
///
/// Errors: `"asyncio.run() cannot be called from a running event loop"`, and
/// whatever `main` fails with.
///
/// ```
/// let answer = asyncio::run(async {
///     asyncio::sleep(0.001).await?;
///     Ok(42)
/// })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), asyncio::Error>(())
/// ```
#[track_caller]
pub fn run<T, F>(main: F) -> Result<T>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    run_with(main, RunOptions::new())
}

/// The keyword arguments of `asyncio.run(main, *, debug=None,
/// loop_factory=None)`, for [`run_with`]. Each is a builder method of the
/// same name; leaving one out is passing `None`.
///
/// ```
/// use asyncio::RunOptions;
///
/// let options = RunOptions::new()
///     .debug(true) // debug=True
///     .loop_factory(asyncio::new_event_loop); // loop_factory=asyncio.new_event_loop
/// # drop(options);
/// ```
#[derive(Default)]
pub struct RunOptions {
    debug: Option<bool>,
    loop_factory: Option<LoopFactory>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("debug", &self.debug)
            .field("loop_factory", &self.loop_factory.as_ref().map(|_| ".."))
            .finish()
    }
}

impl RunOptions {
    /// No options: what [`run`] uses (`debug=None, loop_factory=None`).
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Sets the loop's debug mode (`debug=`); without it the loop keeps its
    /// own default (off unless `ASYNCIO_DEBUG` is set).
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = Some(debug);
        self
    }

    /// Makes the loop with `factory` instead of the event loop policy
    /// (`loop_factory=`); the loop is then not set as the thread's current
    /// loop, as in CPython.
    pub fn loop_factory<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Result<EventLoop> + 'static,
    {
        self.loop_factory = Some(Box::new(factory));
        self
    }
}

/// `asyncio.run(main, debug=…, loop_factory=…)`: [`run`] with the options
/// CPython takes as keyword arguments. Like CPython's, it is a [`Runner`]
/// made with those options, run once and closed.
///
/// Errors: those of [`run`], and whatever the loop factory fails with.
///
/// ```
/// use asyncio::RunOptions;
///
/// let debug = asyncio::run_with(
///     async { Ok(asyncio::get_running_loop()?.get_debug()) },
///     RunOptions::new().debug(true),
/// )?;
/// assert!(debug);
/// # Ok::<(), asyncio::Error>(())
/// ```
#[track_caller]
pub fn run_with<T, F>(main: F, options: RunOptions) -> Result<T>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    if asyncio_core::_get_running_loop().is_some() {
        return Err(Error::runtime(
            "asyncio.run() cannot be called from a running event loop",
        ));
    }
    let mut runner = Runner::with_options(options);
    let result = runner.run(main);
    let closed = runner.close();
    let value = result?;
    closed?;
    Ok(value)
}
