//! The event loop: ready queue, timer heap, lifecycle, and the callbacks API
//! (CPython's `base_events.py`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

/// Implements [`Awaitable`] for a builder through its `IntoFuture`, so that
/// `wait_for`, `shield`, `gather`… take the builder itself, as Python's take
/// the coroutine.
macro_rules! awaitable_via_into_future {
    (impl<$($g:ident),*> $ty:ty => $out:ty $(where $($bounds:tt)*)?) => {
        impl<$($g),*> Awaitable<$out> for $ty $(where $($bounds)*)? {
            #[track_caller]
            fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<$out>, bool)> {
                self.into_future().into_asyncio_future(loop_)
            }

            fn extract(future: &Future<$out>, owned: bool) -> Result<$out> {
                <<Self as IntoFuture>::IntoFuture as Awaitable<$out>>::extract(future, owned)
            }
        }
    };
}
pub(crate) use awaitable_via_into_future;

mod datagram;
mod network;
mod pipes;
mod selector;
mod sendfile;
mod server;
mod signals;
mod sock;
mod subprocess;
mod threadsafe;
#[cfg(feature = "tls")]
mod tls;

pub use datagram::{
    CreateDatagramEndpoint, DatagramEndpointOptions, DatagramPair, DatagramProtocolFactory,
};
pub(crate) use network::{
    connection_setters, server_setters, tls_timeouts, unix_connection_setters, unix_server_setters,
};
pub use network::{
    AbstractNetwork, AcceptedSocketOptions, AddrInfo, AddrInfoQuery, ConnectAcceptedSocket,
    ConnectionOptions, ConnectionPair, ConnectionProtocolFactory, CreateConnection, CreateServer,
    CreateUnixConnection, CreateUnixServer, GetAddrInfo, HostArg, LocalBoxFuture, PortArg,
    ServerOptions, ServerProtocolFactory, UnixConnectionOptions, UnixServerOptions,
};
pub use sendfile::{sendfile_on, Sendfile, SockSendfile, SENDFILE_FALLBACK_READBUFFER_SIZE};
pub use server::{AbstractServer, Listener, Server, ServerClient};
pub use sock::SocketAddressArg;
pub use subprocess::{
    Id, Stdio, SubprocessExec, SubprocessOptions, SubprocessPair, SubprocessProtocolFactory,
    DEVNULL, PIPE, STDOUT,
};
#[cfg(feature = "tls")]
pub use tls::StartTls;

pub(crate) use threadsafe::ThreadsafeCall;
pub use threadsafe::{ThreadsafeHandle, ThreadsafeLoop};

use crate::coroutines;
use crate::events::{
    self, check_delay, AbstractEventLoop, CallbackResult, Delay, Handle, TimerHandle,
};
use crate::exception_context::{ContextValue, ExceptionContext, ExceptionHandler};
use crate::exceptions::{Error, Result};
use crate::executor::{Executor, ThreadPoolExecutor};
use crate::slots::{LoopTag, SlotKey, Slots};
use crate::tasks::TaskFactory;
use crate::timer_heap::{TimerEntry, TimerHeap};

/// Timers with more entries than this are candidates for a full purge.
const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
/// Purge the heap when more than this fraction of its timers is cancelled.
const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;
/// `time.get_clock_info('monotonic').resolution` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-9;
/// Loop iterations run back to back before the reactor is polled for I/O
/// while callbacks keep arriving. CPython polls on every iteration; polling
/// every few dozen saves a system call per iteration. I/O that is ready
/// while callbacks keep the loop busy is seen up to this many iterations
/// later than in CPython (which no program can rely on: readiness arrives
/// asynchronously anyway).
const ITERATIONS_PER_POLL: u32 = 61;
/// How deeply `call_exception_handler` may nest (a handler reporting from
/// inside itself) before it fails with `RecursionError`. CPython's limit is
/// its recursion limit; this one keeps a thread's stack safe.
pub const MAX_HANDLER_DEPTH: u32 = 32;

/// Restores a nesting counter when a call returns (or unwinds).
struct DepthGuard<'a>(&'a Cell<u32>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1);

/// An entry of the ready queue.
pub(crate) enum Ready {
    /// A `call_soon` callback.
    Handle(Handle),
    /// A task step or other schedulable object, by key.
    Slot(SlotKey),
    /// A `call_soon_threadsafe` callback.
    Threadsafe(Arc<ThreadsafeCall>),
    /// A library done callback (see `futures::Notify`).
    Notify(Rc<dyn crate::futures::Notify>, u32),
}

enum Injected {
    Wake(SlotKey),
    Call(Arc<ThreadsafeCall>),
}

/// The part of a loop other threads can reach.
pub(crate) struct LoopShared {
    id: u64,
    /// The thread the loop belongs to.
    pub(crate) owner: std::thread::ThreadId,
    injected: Mutex<Vec<Injected>>,
    has_injected: AtomicBool,
    waker: AtomicWaker,
    closed: AtomicBool,
}

impl LoopShared {
    fn inject(&self, item: Injected) -> bool {
        {
            let mut q = self.injected.lock().unwrap_or_else(|p| p.into_inner());
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            q.push(item);
            self.has_injected.store(true, Ordering::Release);
        }
        self.waker.wake();
        true
    }

    pub(crate) fn inject_wake(&self, key: SlotKey) {
        self.inject(Injected::Wake(key));
    }
}

pub(crate) struct LoopInner {
    pub(crate) id: u64,
    /// The loop's entry in the process-wide table its wakers look it up in.
    pub(crate) tag: LoopTag,
    ready: RefCell<VecDeque<Ready>>,
    scheduled: RefCell<TimerHeap>,
    timer_cancelled_count: Cell<usize>,
    timer_seq: Cell<u64>,
    stopping: Cell<bool>,
    running: Cell<bool>,
    /// `true` while the loop's own driver is being polled, i.e. while the
    /// loop will look at the ready queue again before it sleeps.
    polling: Cell<bool>,
    closed: Cell<bool>,
    debug: Cell<bool>,
    slow_callback_duration: Cell<f64>,
    /// In debug mode, where the callback now running was created.
    current_handle: Cell<Option<&'static Location<'static>>>,
    driver_waker: RefCell<Option<Waker>>,
    pub(crate) exception_handler: RefCell<Option<ExceptionHandler>>,
    pub(crate) task_factory: RefCell<Option<Rc<dyn TaskFactory>>>,
    pub(crate) slots: RefCell<Slots>,
    pub(crate) shared: Arc<LoopShared>,
    pub(crate) next_callback_id: Cell<u64>,
    default_executor: RefCell<Option<Arc<dyn Executor>>>,
    executor_shutdown_called: Cell<bool>,
    pub(crate) asyncgens: RefCell<crate::asyncgen::AsyncGenRegistry>,
    pub(crate) asyncgens_shutdown_called: Cell<bool>,
    backend: Box<dyn AbstractEventLoop>,
    this: std::rc::Weak<LoopInner>,
    /// A `KeyboardInterrupt` or `SystemExit` raised by a callback or task:
    /// it ends the current iteration and leaves `run_forever`, as the
    /// exception propagates out of CPython's `_run_once`.
    escaping: RefCell<Option<Error>>,
    /// `escaping.is_some()`, read after every callback.
    has_escaping: Cell<bool>,
    /// Nesting of `call_exception_handler` (a handler that reports again).
    handler_depth: Cell<u32>,
    /// The last owning handle was dropped while the loop ran.
    close_when_stopped: Cell<bool>,
    /// Virtual time (see [`crate::testing::use_virtual_time`]): the clock's
    /// value, or `None` on the monotonic clock.
    pub(crate) virtual_now: Cell<Option<f64>>,
    /// Under virtual time: how long (real seconds) the loop must have been
    /// idle before the clock jumps to the next timer; `None`: only
    /// `advance()` moves it.
    pub(crate) autojump: Cell<Option<f64>>,
    /// When the loop, under virtual time, last found itself idle.
    idle_since: Cell<Option<std::time::Instant>>,
    /// `run_in_executor` jobs not finished yet (the clock does not jump
    /// while one may still complete).
    executor_jobs: Rc<Cell<usize>>,
}

/// An asyncio event loop (Python's `asyncio.AbstractEventLoop` as users see it).
///
/// `EventLoop` is a cheap, cloneable handle bound to the thread that made it
/// (`!Send`, like Python loops are thread-bound). It schedules callbacks and
/// task steps exactly as CPython's `BaseEventLoop` does — one FIFO ready queue,
/// one timer heap, batches per iteration — and drives an implementation of
/// [`AbstractEventLoop`] (the Tokio one by default) for I/O.
///
/// Other threads reach a loop through [`EventLoop::threadsafe`].
///
/// # Lifetime
///
/// A loop made by [`EventLoop::new`] (`asyncio::new_event_loop()`) lives as
/// long as an *owning* handle to it: that one and its clones, including the
/// ones kept by a policy (`set_event_loop`) or a `Runner`. Dropping the last
/// owning handle of a loop that was not closed closes it, as CPython's
/// `BaseEventLoop.__del__` does once the garbage collector finds the loop
/// unreachable: pending tasks are reported (`"Task was destroyed but it is
/// pending!"`), transports and servers closed, the runtime and its
/// descriptors released, and in debug mode `ResourceWarning: unclosed event
/// loop …` is logged. The handles the loop hands out itself —
/// [`get_running_loop`](crate::get_running_loop), [`Future::get_loop`](crate::Future::get_loop),
/// `Server::get_loop`, and those kept by its tasks, transports and servers —
/// do not own it, so that a task holding its loop does not keep it open
/// forever (a reference cycle that Python's garbage collector would break).
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// for i in 0..3 {
///     let seen = seen.clone();
///     loop_.call_soon(move || seen.borrow_mut().push(i))?;
/// }
/// let l = loop_.clone();
/// loop_.call_soon(move || l.stop())?;
/// loop_.run_forever()?;
/// assert_eq!(*seen.borrow(), [0, 1, 2]);
/// loop_.close()?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct EventLoop {
    pub(crate) inner: Rc<LoopInner>,
    /// Present on owning handles (see "Lifetime" above).
    owner: Option<Rc<LoopOwner>>,
}

/// Shared by the owning handles of a loop: the last one dropped closes it.
struct LoopOwner {
    inner: std::rc::Weak<LoopInner>,
}

impl Drop for LoopOwner {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if inner.closed.get() || std::thread::panicking() {
            return;
        }
        if inner.running.get() {
            // Dropped from inside the loop: close once it stops.
            inner.close_when_stopped.set(true);
            return;
        }
        let loop_ = EventLoop::from_inner(inner);
        // Never unwind out of a destructor.
        let _ = catch_unwind(AssertUnwindSafe(|| loop_.close_unowned()));
    }
}

impl EventLoop {
    /// A new loop driven by `implementation`. Debug mode starts on when the
    /// `ASYNCIO_DEBUG` environment variable is set to a non-empty value other
    /// than `0` (Python's `PYTHONASYNCIODEBUG`).
    pub fn new(implementation: impl AbstractEventLoop) -> EventLoop {
        let id = NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(LoopShared {
            id,
            owner: std::thread::current().id(),
            injected: Mutex::new(Vec::new()),
            has_injected: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
        });
        let tag = crate::slots::register_loop(shared.clone());
        let mut loop_ = EventLoop {
            owner: None,
            inner: Rc::new_cyclic(|this| LoopInner {
                this: this.clone(),
                id,
                tag,
                ready: RefCell::new(VecDeque::with_capacity(64)),
                scheduled: RefCell::new(TimerHeap::default()),
                timer_cancelled_count: Cell::new(0),
                timer_seq: Cell::new(0),
                stopping: Cell::new(false),
                running: Cell::new(false),
                polling: Cell::new(false),
                closed: Cell::new(false),
                debug: Cell::new(coroutines::debug_from_env()),
                slow_callback_duration: Cell::new(0.1),
                current_handle: Cell::new(None),
                driver_waker: RefCell::new(None),
                exception_handler: RefCell::new(None),
                task_factory: RefCell::new(None),
                slots: RefCell::new(Slots::default()),
                shared,
                next_callback_id: Cell::new(1),
                default_executor: RefCell::new(None),
                executor_shutdown_called: Cell::new(false),
                asyncgens: RefCell::new(Default::default()),
                asyncgens_shutdown_called: Cell::new(false),
                backend: Box::new(implementation),
                escaping: RefCell::new(None),
                has_escaping: Cell::new(false),
                handler_depth: Cell::new(0),
                close_when_stopped: Cell::new(false),
                virtual_now: Cell::new(None),
                autojump: Cell::new(None),
                idle_since: Cell::new(None),
                executor_jobs: Rc::new(Cell::new(0)),
            }),
        };
        crate::slots::register_thread_loop(id, tag, Rc::downgrade(&loop_.inner));
        loop_.owner = Some(Rc::new(LoopOwner {
            inner: Rc::downgrade(&loop_.inner),
        }));
        loop_
    }

    /// A handle that does not own the loop (see "Lifetime" above); the
    /// handles the loop gives out, and that its own objects keep, are these.
    pub fn non_owning(&self) -> EventLoop {
        EventLoop::from_inner(self.inner.clone())
    }

    /// `true` for a handle that keeps the loop open (see "Lifetime" above).
    pub fn is_owning(&self) -> bool {
        self.owner.is_some()
    }

    pub(crate) fn from_inner(inner: Rc<LoopInner>) -> EventLoop {
        EventLoop { inner, owner: None }
    }

    /// The last owning handle went without `close()`: CPython's
    /// `BaseEventLoop.__del__` (a `ResourceWarning`, shown in debug mode,
    /// then `close()`).
    fn close_unowned(&self) {
        if self.get_debug() {
            crate::log::warning(format_args!(
                "ResourceWarning: unclosed event loop {self:?}"
            ));
        }
        let _ = self.close();
    }

    /// The implementation under this loop, if it is an `I`.
    pub fn implementation<I: AbstractEventLoop>(&self) -> Option<&I> {
        self.inner.backend.as_any().downcast_ref::<I>()
    }

    /// `true` if both handles refer to the same loop (Python's `is`).
    pub fn ptr_eq(&self, other: &EventLoop) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    // ----- lifecycle -----

    /// Runs the loop until [`stop`](EventLoop::stop) is called.
    ///
    /// Errors: `"Event loop is closed"`, `"This event loop is already running"`,
    /// `"Cannot run the event loop while another loop is running"`.
    pub fn run_forever(&self) -> Result<()> {
        self.check_closed()?;
        self.check_running()?;
        let inner = &self.inner;
        let previous = events::_set_running_loop(Some(self.non_owning()));
        inner.running.set(true);
        let result = inner
            .backend
            .block_on(&mut |cx: &mut Context<'_>| inner.drive(cx));
        inner.running.set(false);
        inner.stopping.set(false);
        inner.polling.set(false);
        *inner.driver_waker.borrow_mut() = None;
        events::_set_running_loop(previous);
        let escaped = inner.escaping.borrow_mut().take();
        inner.has_escaping.set(false);
        if inner.close_when_stopped.get() {
            self.close_unowned();
        }
        result?;
        match escaped {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs the loop until `future` is done and returns its result.
    ///
    /// A Rust future (a coroutine) is wrapped in a task first, as in Python.
    ///
    /// Errors: those of [`run_forever`](EventLoop::run_forever), and
    /// `"Event loop stopped before Future completed."` if the loop was stopped
    /// first.
    #[track_caller]
    pub fn run_until_complete<T: 'static, A>(&self, future: A) -> Result<T>
    where
        A: crate::futures::Awaitable<T>,
    {
        self.check_closed()?;
        self.check_running()?;
        let (future, owned) = future.into_asyncio_future(Some(self))?;
        self.run_future_until_complete(future, owned, A::extract)
    }

    /// `run_until_complete` for a task whose result is moved out (for a
    /// runner's main task, whose output need not be `Clone`).
    #[doc(hidden)]
    pub fn run_task_until_complete<T: 'static>(&self, task: crate::Task<T>) -> Result<T> {
        self.check_closed()?;
        self.check_running()?;
        self.run_future_until_complete(task.into(), true, |f, _| f.take_result())
    }

    fn run_future_until_complete<T: 'static>(
        &self,
        future: crate::futures::Future<T>,
        owned: bool,
        extract: fn(&crate::futures::Future<T>, bool) -> Result<T>,
    ) -> Result<T> {
        if owned {
            if let Some(task) = future.as_task_state() {
                // The caller sees the error if the task does not finish.
                task.log_destroy_pending.set(false);
            }
        }
        let id = future.add_done_callback(|fut: &crate::futures::Future<T>| {
            if !fut.cancelled() {
                if let Ok(Some(e)) = fut.exception() {
                    if e.kind().is_exit() {
                        return;
                    }
                }
            }
            fut.get_loop().stop();
        });
        let run = self.run_forever();
        future.remove_done_callback(id);
        if let Err(e) = run {
            if owned && future.done() && !future.cancelled() {
                let _ = future.exception();
            }
            return Err(e);
        }
        if !future.done() {
            return Err(Error::runtime(
                "Event loop stopped before Future completed.",
            ));
        }
        extract(&future, owned)
    }

    /// Stops the loop after the current iteration; callbacks scheduled during
    /// it run on the next `run_forever`. Called before `run_forever`, it makes
    /// the loop run exactly one iteration without waiting for I/O.
    pub fn stop(&self) {
        self.inner.stopping.set(true);
        self.inner.wake_driver_if_idle();
    }

    /// `true` while the loop runs.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// `true` once [`close`](EventLoop::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Closes the loop: pending callbacks and timers are dropped, tasks still
    /// pending are reported (`"Task was destroyed but it is pending!"`) and
    /// dropped, and the default executor is shut down without waiting.
    /// Idempotent. Errors with `"Cannot close a running event loop"`.
    pub fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.running.get() {
            return Err(Error::runtime("Cannot close a running event loop"));
        }
        if inner.closed.get() {
            return Ok(());
        }
        if inner.debug.get() {
            tracing::debug!(target: "asyncio", "Close {:?}", self);
        }
        inner.closed.set(true);
        {
            // Stop accepting work from other threads, and drop what came in.
            let mut q = inner
                .shared
                .injected
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            inner.shared.closed.store(true, Ordering::Release);
            let dropped = std::mem::take(&mut *q);
            drop(q);
            drop(dropped);
            // The driver's waker keeps the reactor (its epoll and event
            // descriptors) alive for as long as a `ThreadsafeLoop` exists.
            drop(inner.shared.waker.take());
        }
        // Wakes of a closed loop have nowhere to go.
        crate::slots::unregister_loop(inner.tag);
        crate::slots::unregister_thread_loop(inner.id);
        let ready = std::mem::take(&mut *inner.ready.borrow_mut());
        drop(ready);
        let timers = inner.scheduled.borrow_mut().take();
        for t in &timers {
            t.cell.scheduled.set(false);
        }
        drop(timers);
        inner.timer_cancelled_count.set(0);
        let pending = inner.slots.borrow_mut().take_all();
        for runnable in pending {
            runnable.abandon();
        }
        inner.executor_shutdown_called.set(true);
        let executor = inner.default_executor.borrow_mut().take();
        if let Some(executor) = executor {
            executor.shutdown(false);
        }
        inner.backend.close();
        // What the user gave the loop may hold the loop (a handler or
        // factory capturing one of its futures): a cycle that would keep
        // it, its runtime and buffers alive. Reports made after this go to
        // the default handler.
        let handler = inner.exception_handler.borrow_mut().take();
        drop(handler);
        let factory = inner.task_factory.borrow_mut().take();
        drop(factory);
        let asyncgens = std::mem::take(&mut *inner.asyncgens.borrow_mut());
        drop(asyncgens);
        Ok(())
    }

    /// Closes every live [`AsyncGenerator`](crate::AsyncGenerator) of this loop;
    /// failures go to the exception handler (key `asyncgen`).
    pub async fn shutdown_asyncgens(&self) -> Result<()> {
        crate::asyncgen::shutdown_asyncgens(self).await
    }

    /// Shuts the default executor down and waits (up to `timeout`, 300 s in
    /// `asyncio.run`) for its threads to finish, warning if they do not.
    pub async fn shutdown_default_executor(&self, timeout: Option<f64>) -> Result<()> {
        self.inner.executor_shutdown_called.set(true);
        let executor = self.inner.default_executor.borrow_mut().take();
        let Some(executor) = executor else {
            return Ok(());
        };
        let fut = crate::futures::Future::<()>::new(self);
        let completer = fut.remote_completer()?;
        let joiner = std::thread::Builder::new()
            .name("asyncio-executor-shutdown".into())
            .spawn(move || {
                executor.shutdown(true);
                completer.complete(Ok(()));
            })
            .map_err(Error::from)?;
        let waited = match timeout {
            Some(t) => crate::timeouts::wait_for(fut.clone(), t).await,
            None => (&fut).await,
        };
        match waited {
            Ok(()) => {
                let _ = joiner.join();
                Ok(())
            }
            Err(e) if e.is_timeout() => {
                crate::log::warning(format_args!(
                    "{}",
                    executor_join_timeout_warning(timeout.unwrap_or(0.0))
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    // ----- debugging -----

    /// Turns debug mode on or off (slow-callback warnings, creation locations).
    pub fn set_debug(&self, enabled: bool) {
        self.inner.debug.set(enabled);
    }

    /// `true` in debug mode.
    pub fn get_debug(&self) -> bool {
        self.inner.debug.get()
    }

    /// Callbacks running longer than this (seconds, default 0.1) are logged in
    /// debug mode: `Executing <Handle …> took 0.123 seconds`.
    pub fn slow_callback_duration(&self) -> f64 {
        self.inner.slow_callback_duration.get()
    }

    /// Sets [`slow_callback_duration`](EventLoop::slow_callback_duration).
    pub fn set_slow_callback_duration(&self, seconds: impl Delay) {
        self.inner.slow_callback_duration.set(seconds.as_secs());
    }

    // ----- scheduling callbacks -----

    /// Schedules `callback` to run on the next iteration, after the callbacks
    /// already scheduled (FIFO). A callback may return `()` or `Result<()>`;
    /// an error or a panic goes to the exception handler and the loop goes on.
    #[track_caller]
    pub fn call_soon<F, R>(&self, callback: F) -> Result<Handle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.check_closed()?;
        let handle = Handle::new(callback, self.inner.debug.get(), None);
        self.inner.push_ready(Ready::Handle(handle.clone()));
        Ok(handle)
    }

    /// `call_soon(callback, context=ctx)`: like [`call_soon`](EventLoop::call_soon),
    /// running `callback` in `context` itself rather than in a copy of the
    /// current context, so that what it sets stays there.
    #[track_caller]
    pub fn call_soon_in<F, R>(
        &self,
        context: &crate::contextvars::Context,
        callback: F,
    ) -> Result<Handle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.check_closed()?;
        let handle = Handle::new_in(
            callback,
            self.inner.debug.get(),
            None,
            crate::contextvars::RunContext::given(context),
        );
        self.inner.push_ready(Ready::Handle(handle.clone()));
        Ok(handle)
    }

    /// `call_later(delay, callback, context=ctx)`: see [`call_soon_in`](EventLoop::call_soon_in).
    #[track_caller]
    pub fn call_later_in<F, R>(
        &self,
        context: &crate::contextvars::Context,
        delay: impl Delay,
        callback: F,
    ) -> Result<TimerHandle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        let delay = check_delay(delay.as_secs())?;
        self.call_at_in(context, self.time() + delay, callback)
    }

    /// `call_at(when, callback, context=ctx)`: see [`call_soon_in`](EventLoop::call_soon_in).
    #[track_caller]
    pub fn call_at_in<F, R>(
        &self,
        context: &crate::contextvars::Context,
        when: f64,
        callback: F,
    ) -> Result<TimerHandle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.schedule_at(
            when,
            callback,
            crate::contextvars::RunContext::given(context),
        )
    }

    /// Schedules `callback` to run after `delay` (seconds or a `Duration`).
    #[track_caller]
    pub fn call_later<F, R>(&self, delay: impl Delay, callback: F) -> Result<TimerHandle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        let delay = check_delay(delay.as_secs())?;
        self.call_at(self.time() + delay, callback)
    }

    /// Schedules `callback` to run at `when`, in [`time`](EventLoop::time) seconds.
    #[track_caller]
    pub fn call_at<F, R>(&self, when: f64, callback: F) -> Result<TimerHandle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.schedule_at(when, callback, crate::contextvars::RunContext::capture())
    }

    #[track_caller]
    fn schedule_at<F, R>(
        &self,
        when: f64,
        callback: F,
        context: crate::contextvars::RunContext,
    ) -> Result<TimerHandle>
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        if when.is_nan() {
            return Err(Error::value("Invalid when: NaN (not a number)"));
        }
        self.check_closed()?;
        let handle = Handle::new_in(
            callback,
            self.inner.debug.get(),
            Some((when, &self.inner)),
            context,
        );
        self.inner.push_timer(handle.clone(), when);
        Ok(TimerHandle { handle })
    }

    /// For loop implementations: runs `handle` now, as the loop runs a ready
    /// callback (its error or panic goes to the exception handler; a
    /// `KeyboardInterrupt`/`SystemExit` leaves the loop). A cancelled handle
    /// does nothing.
    pub fn run_handle(&self, handle: &Handle) {
        if !handle.cancelled() {
            self.inner.run_handle(handle);
        }
    }

    /// For loop implementations: a `KeyboardInterrupt` or `SystemExit` that
    /// user code raised (a protocol callback returned it) leaves
    /// `run_forever` at the end of the current callback, as the exception
    /// propagates out of CPython's loop. Other errors are ignored here: they
    /// go to the exception handler.
    pub fn raise_base_exception(&self, error: Error) {
        if error.kind().is_exit() {
            self.inner.escape(error);
        }
    }

    /// The loop's clock: seconds (as `f64`) on a monotonic clock — or on
    /// the loop's virtual clock (see [`crate::testing::use_virtual_time`]).
    pub fn time(&self) -> f64 {
        self.inner.now()
    }

    /// A `Send + Sync` handle through which other threads schedule work on
    /// this loop (`call_soon_threadsafe`, `run_coroutine_threadsafe`).
    pub fn threadsafe(&self) -> ThreadsafeLoop {
        ThreadsafeLoop {
            shared: self.inner.shared.clone(),
        }
    }

    /// Like [`call_soon`](EventLoop::call_soon), for a `Send` callback; the
    /// same as calling it through [`threadsafe`](EventLoop::threadsafe).
    pub fn call_soon_threadsafe<F, R>(&self, callback: F) -> Result<ThreadsafeHandle>
    where
        F: FnOnce() -> R + Send + 'static,
        R: CallbackResult + 'static,
    {
        self.threadsafe().call_soon_threadsafe(callback)
    }

    // ----- executor -----

    /// Sets the executor `run_in_executor(None, …)` uses.
    pub fn set_default_executor(&self, executor: impl Executor) {
        *self.inner.default_executor.borrow_mut() = Some(Arc::new(executor));
    }

    /// Runs `func` in `executor` (the default thread pool when `None`) and
    /// returns a future for its result. A panic in `func` comes back as an
    /// error of kind [`Panic`](crate::ErrorKind::Panic).
    ///
    /// Errors: `"Event loop is closed"`; `"Executor shutdown has been called"`
    /// after `shutdown_default_executor()` or `close()`.
    #[track_caller]
    pub fn run_in_executor<F, T>(
        &self,
        executor: Option<&dyn Executor>,
        func: F,
    ) -> Result<crate::futures::Future<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.check_closed()?;
        let default;
        let executor: &dyn Executor = match executor {
            Some(e) => e,
            None => {
                if self.inner.executor_shutdown_called.get() {
                    return Err(Error::runtime("Executor shutdown has been called"));
                }
                default = self.default_executor();
                &*default
            }
        };
        let fut = crate::futures::Future::<T>::new(self);
        let completer = fut.remote_completer()?;
        executor.submit(Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(func)).map_err(|p| Error::panic(&*p));
            completer.complete(outcome);
        }))?;
        if self.inner.virtual_now.get().is_some() {
            // Virtual time waits for the job before jumping ahead.
            let jobs = self.inner.executor_jobs.clone();
            jobs.set(jobs.get() + 1);
            fut.add_done_callback(move |_| jobs.set(jobs.get().saturating_sub(1)));
        }
        Ok(fut)
    }

    fn default_executor(&self) -> Arc<dyn Executor> {
        let mut slot = self.inner.default_executor.borrow_mut();
        slot.get_or_insert_with(|| {
            Arc::new(ThreadPoolExecutor::with_thread_name_prefix(None, "asyncio"))
        })
        .clone()
    }

    // ----- error handling -----

    /// Sets the handler for errors no one else catches (`None` restores the default).
    pub fn set_exception_handler<F>(&self, handler: Option<F>)
    where
        F: Fn(&EventLoop, &ExceptionContext) + 'static,
    {
        let new = handler.map(|h| Rc::new(h) as ExceptionHandler);
        let old = std::mem::replace(&mut *self.inner.exception_handler.borrow_mut(), new);
        drop(old);
    }

    /// Sets the handler from a shared handler value (as returned by
    /// [`get_exception_handler`](EventLoop::get_exception_handler)).
    pub fn set_exception_handler_rc(&self, handler: Option<ExceptionHandler>) {
        let old = std::mem::replace(&mut *self.inner.exception_handler.borrow_mut(), handler);
        drop(old);
    }

    /// The current exception handler, `None` for the default.
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.inner.exception_handler.borrow().clone()
    }

    /// The default handler: logs the message, then `key: value` for the other
    /// keys in sorted order, then the error, through `tracing` at ERROR level.
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        let mut context = context.clone();
        if context.get("source_traceback").is_none() {
            if let Some(location) = self.inner.current_handle.get() {
                context.set("handle_traceback", ContextValue::Location(location));
            }
        }
        let text = context.render();
        crate::log::error(format_args!("{}", text));
    }

    /// Calls the current exception handler with `context`. A handler that
    /// panics is reported through the default handler with the message
    /// `"Unhandled error in exception handler"`. A handler that keeps
    /// reporting from inside itself is stopped after
    /// [`MAX_HANDLER_DEPTH`] nested calls with a `RecursionError`, reported
    /// once the same way, as CPython reports the `RecursionError` such a
    /// handler ends in.
    pub fn call_exception_handler(&self, context: ExceptionContext) {
        let depth = self.inner.handler_depth.get();
        if depth >= MAX_HANDLER_DEPTH {
            let error = Error::new(
                crate::ErrorKind::RecursionError,
                "maximum recursion depth exceeded while calling the exception handler",
            );
            self.report_handler_failure(error, &context);
            return;
        }
        self.inner.handler_depth.set(depth + 1);
        let _depth = DepthGuard(&self.inner.handler_depth);
        let handler = self.inner.exception_handler.borrow().clone();
        match handler {
            None => {
                if catch_unwind(AssertUnwindSafe(|| {
                    self.default_exception_handler(&context)
                }))
                .is_err()
                {
                    crate::log::error(format_args!("Exception in default exception handler"));
                }
            }
            Some(handler) => {
                let outcome = catch_unwind(AssertUnwindSafe(|| handler(self, &context)));
                if let Err(payload) = outcome {
                    self.report_handler_failure(Error::panic(&*payload), &context);
                }
            }
        }
    }

    /// A custom exception handler failed: the default handler reports it.
    fn report_handler_failure(&self, error: Error, context: &ExceptionContext) {
        let mut report = ExceptionContext::new("Unhandled error in exception handler");
        report.exception = Some(error);
        report.set("context", ContextValue::Text(context.repr()));
        if catch_unwind(AssertUnwindSafe(|| self.default_exception_handler(&report))).is_err() {
            crate::log::error(format_args!(
                "Exception in default exception handler while handling an \
                 unexpected error in custom exception handler"
            ));
        }
    }

    // ----- checks -----

    pub(crate) fn check_closed(&self) -> Result<()> {
        if self.inner.closed.get() {
            return Err(Error::runtime("Event loop is closed"));
        }
        Ok(())
    }

    /// CPython's `_check_running`, plus the implementation's own refusal
    /// (another runtime on this thread): checked before anything is created.
    fn check_running(&self) -> Result<()> {
        if self.is_running() {
            return Err(Error::runtime("This event loop is already running"));
        }
        if events::_get_running_loop().is_some() {
            return Err(Error::runtime(
                "Cannot run the event loop while another loop is running",
            ));
        }
        self.inner.backend.check_can_block()
    }

    /// Fails as [`run_forever`](EventLoop::run_forever) would refuse to
    /// start (`"This event loop is already running"`, `"Cannot run the event
    /// loop while another loop is running"` — another asyncio loop or another
    /// runtime on this thread), without running anything. CPython's
    /// `loop._check_running()`; for runners, which must refuse before they
    /// create their main task.
    #[doc(hidden)]
    pub fn _check_running(&self) -> Result<()> {
        self.check_running()
    }

    /// How many callbacks wait in the ready queue (for tests and diagnostics).
    pub fn ready_len(&self) -> usize {
        self.inner.ready.borrow().len()
    }

    /// How many timers are in the heap, cancelled ones included.
    pub fn scheduled_len(&self) -> usize {
        self.inner.scheduled.borrow().len()
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} running={} closed={} debug={}>",
            self.inner.backend.name(),
            if self.is_running() { "True" } else { "False" },
            if self.is_closed() { "True" } else { "False" },
            if self.get_debug() { "True" } else { "False" },
        )
    }
}

impl Drop for LoopInner {
    fn drop(&mut self) {
        // A loop dropped without `close()`: other threads' handles must see
        // it closed rather than queue work nobody will run.
        let queued = {
            let mut q = self
                .shared
                .injected
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut *q)
        };
        drop(queued);
        drop(self.shared.waker.take());
        crate::slots::unregister_loop(self.tag);
        crate::slots::unregister_thread_loop(self.id);
    }
}

impl LoopInner {
    pub(crate) fn push_ready(&self, item: Ready) {
        self.ready.borrow_mut().push_back(item);
        self.wake_driver_if_idle();
    }

    /// Wakes the driver when work arrives while it is not being polled
    /// (from a Tokio task or callback of the same thread).
    pub(crate) fn wake_driver_if_idle(&self) {
        if self.running.get() && !self.polling.get() {
            if let Some(w) = self.driver_waker.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    fn push_timer(&self, handle: Handle, when: f64) {
        handle.cell.scheduled.set(true);
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        self.scheduled
            .borrow_mut()
            .push(TimerEntry::new(when, seq, handle));
        self.wake_driver_if_idle();
    }

    pub(crate) fn backend(&self) -> &dyn AbstractEventLoop {
        &*self.backend
    }

    /// Reserves a slot for a task or another schedulable object.
    pub(crate) fn reserve_slot(&self) -> Result<SlotKey> {
        self.slots.borrow_mut().reserve().ok_or_else(|| {
            Error::runtime(format!(
                "too many tasks and transports on one loop (the limit is {})",
                crate::slots::MAX_SLOTS
            ))
        })
    }

    /// Puts the object at `key` on the ready queue unless it already is.
    pub(crate) fn schedule_slot(&self, key: SlotKey) {
        let fresh = match self.slots.try_borrow_mut() {
            Ok(mut slots) => slots.mark_scheduled(key),
            // Only while the table is being changed; a duplicate run is harmless.
            Err(_) => true,
        };
        if fresh {
            self.push_ready(Ready::Slot(key));
        }
    }

    /// Schedules a [`Notify`](crate::futures::Notify) callback like `call_soon`
    /// (dropped on a closed loop, where it could never run).
    pub(crate) fn push_notify(&self, target: Rc<dyn crate::futures::Notify>, index: u32) {
        if !self.closed.get() {
            self.push_ready(Ready::Notify(target, index));
        }
    }

    pub(crate) fn timer_handle_cancelled(&self) {
        self.timer_cancelled_count
            .set(self.timer_cancelled_count.get() + 1);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn debug(&self) -> bool {
        self.debug.get()
    }

    /// `call_soon` for the library's own callbacks (done callbacks, in the
    /// context current when they were added); a closed loop silently drops
    /// them, since they could never run.
    #[track_caller]
    pub(crate) fn call_soon_internal<F: FnOnce() + 'static>(
        &self,
        context: crate::contextvars::RunContext,
        callback: F,
    ) {
        if self.closed.get() {
            return;
        }
        let handle = Handle::new_in(callback, self.debug.get(), None, context);
        self.push_ready(Ready::Handle(handle));
    }

    fn purge_timers(&self) {
        let mut heap = self.scheduled.borrow_mut();
        let count = heap.len();
        let cancelled = self.timer_cancelled_count.get();
        if count > MIN_SCHEDULED_TIMER_HANDLES
            && cancelled as f64 / count as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION
        {
            heap.retain(|handle| {
                if handle.cancelled() {
                    handle.cell.scheduled.set(false);
                    false
                } else {
                    true
                }
            });
            self.timer_cancelled_count.set(0);
        } else {
            while heap.peek().is_some_and(|top| top.cancelled()) {
                if let Some(handle) = heap.pop() {
                    handle.cell.scheduled.set(false);
                }
                self.timer_cancelled_count
                    .set(self.timer_cancelled_count.get().saturating_sub(1));
            }
        }
    }

    fn drain_injected(&self) {
        if !self.shared.has_injected.swap(false, Ordering::AcqRel) {
            return;
        }
        let batch = {
            let mut q = self
                .shared
                .injected
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *q)
        };
        let mut ready = self.ready.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        for item in batch {
            match item {
                Injected::Wake(key) => {
                    if slots.mark_scheduled(key) {
                        ready.push_back(Ready::Slot(key));
                    }
                }
                Injected::Call(call) => ready.push_back(Ready::Threadsafe(call)),
            }
        }
    }

    /// One poll of the loop's driver: runs iterations of `_run_once` until the
    /// loop must wait (`Pending`) or stops (`Ready`).
    fn drive(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.polling.set(true);
        {
            let mut w = self.driver_waker.borrow_mut();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        // A remote wake consumes the registration, so renew it every time.
        self.shared.waker.register(cx.waker());
        let mut iterations = 0;
        let outcome = loop {
            self.drain_injected();
            self.purge_timers();
            if self.ready.borrow().is_empty() && !self.stopping.get() {
                let next = self.scheduled.borrow().peek().map(|h| h.cell.when.get());
                let wait = match (next, self.virtual_now.get()) {
                    (Some(when), None) => self
                        .backend
                        .poll_deadline(events::instant_at(when), cx)
                        .is_pending(),
                    (Some(when), Some(now)) => {
                        when > now + CLOCK_RESOLUTION && !self.virtual_jump(when, cx)
                    }
                    (None, _) => true,
                };
                if wait {
                    // A wake from another thread may have landed after the
                    // drain above; the registered waker has then fired.
                    if !self.shared.has_injected.load(Ordering::Acquire) {
                        break Poll::Pending;
                    }
                    continue;
                }
            }
            self.run_timers();
            self.run_ready();
            if self.has_escaping.get() {
                break Poll::Ready(());
            }
            if self.stopping.get() {
                self.stopping.set(false);
                break Poll::Ready(());
            }
            iterations += 1;
            if iterations >= ITERATIONS_PER_POLL {
                cx.waker().wake_by_ref();
                break Poll::Pending;
            }
        };
        self.polling.set(false);
        outcome
    }

    /// `true` while timers are scheduled.
    pub(crate) fn has_timers(&self) -> bool {
        !self.scheduled.borrow().is_empty()
    }

    /// `loop.time()`.
    pub(crate) fn now(&self) -> f64 {
        match self.virtual_now.get() {
            Some(now) => now,
            None => events::monotonic(),
        }
    }

    /// Under virtual time, with nothing ready and the next timer at
    /// `when`: `true` once the clock jumped there. The jump waits until the
    /// loop has been idle for the autojump threshold (real time), having
    /// let the runtime poll for I/O at least once, and while no executor
    /// job is running — so an I/O answer that is already on its way wins
    /// over a timeout.
    fn virtual_jump(&self, when: f64, cx: &mut Context<'_>) -> bool {
        let Some(threshold) = self.autojump.get() else {
            return false;
        };
        if self.executor_jobs.get() > 0 {
            self.idle_since.set(None);
            return false;
        }
        let Some(since) = self.idle_since.get() else {
            self.idle_since.set(Some(std::time::Instant::now()));
            // Poll the reactor once (a zero-timeout park) before jumping.
            cx.waker().wake_by_ref();
            return false;
        };
        if threshold > 0.0
            && self
                .backend
                .poll_deadline(since + std::time::Duration::from_secs_f64(threshold), cx)
                .is_pending()
        {
            return false;
        }
        self.idle_since.set(None);
        self.virtual_now.set(Some(when));
        true
    }

    fn run_timers(&self) {
        self.idle_since.set(None);
        let mut heap = self.scheduled.borrow_mut();
        if heap.is_empty() {
            return;
        }
        let end_time = self.now() + CLOCK_RESOLUTION;
        let mut ready = self.ready.borrow_mut();
        heap.drain_due(end_time, |handle| {
            handle.cell.scheduled.set(false);
            ready.push_back(Ready::Handle(handle));
        });
    }

    fn run_ready(&self) {
        let ntodo = self.ready.borrow().len();
        for _ in 0..ntodo {
            let Some(item) = self.ready.borrow_mut().pop_front() else {
                break;
            };
            if self.debug.get() {
                self.run_ready_item_debug(item);
            } else {
                self.run_ready_item(item);
            }
            if self.has_escaping.get() {
                // The rest of the batch waits for the next `run_forever`.
                return;
            }
        }
    }

    /// A `KeyboardInterrupt` or `SystemExit` leaves the loop at the end of
    /// the current callback (the first one wins).
    pub(crate) fn escape(&self, error: Error) {
        let mut slot = self.escaping.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
            self.has_escaping.set(true);
        }
        drop(slot);
        self.wake_driver_if_idle();
    }

    fn run_ready_item(&self, item: Ready) {
        match item {
            Ready::Handle(handle) => {
                if !handle.cancelled() {
                    self.run_handle(&handle);
                }
            }
            Ready::Slot(key) => {
                let runnable = self.slots.borrow_mut().take_for_run(key);
                if let Some(runnable) = runnable {
                    // Tasks and transports catch their own panics; this
                    // keeps the loop going whatever an implementation does.
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| runnable.run())) {
                        let mut ctx = ExceptionContext::new("Exception in callback <Handle>()");
                        ctx.exception = Some(Error::panic(&*payload));
                        self.report(ctx);
                    }
                }
            }
            Ready::Notify(target, index) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| target.notify(index))) {
                    let mut ctx = ExceptionContext::new("Exception in callback <callback>()");
                    ctx.exception = Some(Error::panic(&*payload));
                    self.report(ctx);
                }
            }
            Ready::Threadsafe(call) => {
                if call.cancelled.load(Ordering::Acquire) {
                    return;
                }
                let callback = call
                    .callback
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(callback) = callback {
                    let error = match catch_unwind(AssertUnwindSafe(callback)) {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) if e.kind().is_exit() => return self.escape(e),
                        Ok(Err(e)) => e,
                        Err(payload) => Error::panic(&*payload),
                    };
                    let mut ctx = ExceptionContext::new(format!(
                        "Exception in callback {}",
                        crate::format_helpers::callback_repr(call.name, None)
                    ));
                    ctx.exception = Some(error);
                    let handle = ThreadsafeHandle { call };
                    ctx.set("handle", ContextValue::Text(format!("{handle:?}")));
                    self.report(ctx);
                }
            }
        }
    }

    fn run_ready_item_debug(&self, item: Ready) {
        let (repr, location) = match &item {
            Ready::Handle(h) => (format!("{h:?}"), Some(h.cell.location)),
            Ready::Slot(key) => {
                let runnable = self.slots.borrow().get(*key);
                match runnable.and_then(|r| r.as_task()) {
                    // CPython names the task itself for a slow task step.
                    Some(task) => (format!("{task:?}"), None),
                    None => ("<Handle>".to_owned(), None),
                }
            }
            Ready::Threadsafe(c) => (
                format!(
                    "<Handle {}>",
                    crate::format_helpers::callback_repr(c.name, None)
                ),
                None,
            ),
            Ready::Notify(..) => ("<Handle <callback>()>".to_owned(), None),
        };
        self.current_handle.set(location);
        let t0 = events::monotonic();
        self.run_ready_item(item);
        let dt = events::monotonic() - t0;
        self.current_handle.set(None);
        if dt >= self.slow_callback_duration.get() {
            crate::log::warning(format_args!("Executing {} took {:.3} seconds", repr, dt));
        }
    }

    fn run_handle(&self, handle: &Handle) {
        let cell = &handle.cell;
        let outcome = if cell.context.is_trivial() {
            let outcome = catch_unwind(AssertUnwindSafe(|| cell.callback.call()));
            crate::contextvars::RunContext::after_trivial_run();
            if matches!(outcome, Ok(Ok(()))) {
                return;
            }
            outcome
        } else {
            catch_unwind(AssertUnwindSafe(|| {
                cell.context.run(|| cell.callback.call()).and_then(|r| r)
            }))
        };
        self.handle_failed(handle, outcome);
    }

    /// A callback returned an error or panicked: report it (or leave the
    /// loop for `KeyboardInterrupt`/`SystemExit`).
    #[cold]
    #[inline(never)]
    fn handle_failed(&self, handle: &Handle, outcome: std::thread::Result<Result<()>>) {
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) if e.kind().is_exit() => return self.escape(e),
            Ok(Err(e)) => e,
            Err(payload) => Error::panic(&*payload),
        };
        let mut ctx =
            ExceptionContext::new(format!("Exception in callback {}", handle.callback_repr()));
        ctx.exception = Some(error);
        ctx.set("handle", ContextValue::Handle(handle.clone()));
        if handle.cell.debug {
            ctx.set(
                "source_traceback",
                ContextValue::Location(handle.cell.location),
            );
        }
        self.report(ctx);
    }

    /// Calls the exception handler of this loop (nothing once the loop is
    /// being dropped).
    pub(crate) fn report(&self, ctx: ExceptionContext) {
        if let Some(inner) = self.this.upgrade() {
            EventLoop::from_inner(inner).call_exception_handler(ctx);
        }
    }
}

/// The warning of `shutdown_default_executor` when the executor's threads
/// outlive `timeout` (CPython's text, typo included). CPython prints the
/// timeout as passed: `300` under `asyncio.run` (its `THREAD_JOIN_TIMEOUT`
/// is an int), `0.05` for `timeout=0.05`. Taking an `f64`, this prints
/// integral timeouts without `.0` (so `1.0` prints as `1`, as `timeout=1`
/// would in CPython).
fn executor_join_timeout_warning(timeout: f64) -> String {
    format!(
        "The executor did not finishing joining its threads within {} seconds.",
        crate::format_helpers::py_number(timeout)
    )
}

/// Where code was when it created something: shown by debug-mode reports.
pub type SourceLocation = &'static Location<'static>;

impl EventLoop {
    /// A new place on this loop for a [`Schedulable`](crate::Schedulable)
    /// object (for loop implementations: transports, servers …).
    ///
    /// Errors with `"Event loop is closed"`.
    pub fn new_registration(&self) -> Result<crate::slots::Registration> {
        self.check_closed()?;
        crate::slots::Registration::new(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::executor_join_timeout_warning;

    #[test]
    fn executor_join_timeout_warning_prints_timeouts_as_cpython() {
        // asyncio.run / Runner: THREAD_JOIN_TIMEOUT, the int 300.
        assert_eq!(
            executor_join_timeout_warning(300.0),
            "The executor did not finishing joining its threads within 300 seconds."
        );
        assert_eq!(
            executor_join_timeout_warning(0.05),
            "The executor did not finishing joining its threads within 0.05 seconds."
        );
        assert_eq!(
            executor_join_timeout_warning(1.0),
            "The executor did not finishing joining its threads within 1 seconds."
        );
    }
}
