//! Callback handles, the event-loop implementation trait, policies, and the
//! running-loop lookup (CPython's `events.py`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::base_events::{EventLoop, LoopInner};
use crate::exceptions::{Error, Result};

// ===== delays =====

/// A delay or timeout: `f64` seconds as in Python, or a [`Duration`].
///
/// Integers are accepted too, so `asyncio::sleep(1)` reads as in Python.
pub trait Delay: Copy {
    /// The delay in seconds (may be negative or NaN; callers validate).
    fn as_secs(self) -> f64;
}

impl Delay for f64 {
    fn as_secs(self) -> f64 {
        self
    }
}

impl Delay for f32 {
    fn as_secs(self) -> f64 {
        self as f64
    }
}

impl Delay for Duration {
    fn as_secs(self) -> f64 {
        self.as_secs_f64()
    }
}

macro_rules! int_delay {
    ($($t:ty),*) => {$(
        impl Delay for $t {
            fn as_secs(self) -> f64 {
                self as f64
            }
        }
    )*};
}
int_delay!(i32, i64, u32, u64, usize);

/// Rejects a NaN delay with CPython's `sleep()` message.
pub(crate) fn check_delay(delay: f64) -> Result<f64> {
    if delay.is_nan() {
        return Err(Error::value("Invalid delay: NaN (not a number)"));
    }
    Ok(delay)
}

/// The zero point of `loop.time()`: the first time any loop asked for the time.
fn clock_epoch() -> Instant {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `loop.time()`: seconds on a monotonic clock shared by every loop in the process.
pub(crate) fn monotonic() -> f64 {
    clock_epoch().elapsed().as_secs_f64()
}

/// The [`Instant`] that `loop.time()` reports as `when` (saturating far in the future).
pub(crate) fn instant_at(when: f64) -> Instant {
    let epoch = clock_epoch();
    if when <= 0.0 {
        return epoch;
    }
    let max = Duration::from_secs(60 * 60 * 24 * 365 * 30);
    let offset = Duration::try_from_secs_f64(when).unwrap_or(max).min(max);
    epoch + offset
}

// ===== handles =====

/// What a callback may return: nothing, or a `Result` whose error is reported
/// to the loop's exception handler like an exception raised by a Python callback.
pub trait CallbackResult {
    /// Converts the return value into a result.
    fn into_result(self) -> Result<()>;
}

impl CallbackResult for () {
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl CallbackResult for Result<()> {
    fn into_result(self) -> Result<()> {
        self
    }
}

pub(crate) trait Callback {
    /// Runs the callback once; later calls do nothing.
    fn call(&self) -> Result<()>;
    /// Drops the callback without running it (`Handle.cancel()`).
    fn clear(&self);
    /// `true` once the callback has been run or dropped.
    fn is_spent(&self) -> bool;
    /// A printable name for the callback, used in reprs and reports.
    fn name(&self) -> &'static str;
}

pub(crate) struct CallbackSlot<F>(Cell<Option<F>>);

impl<F, R> Callback for CallbackSlot<F>
where
    F: FnOnce() -> R,
    R: CallbackResult,
{
    fn call(&self) -> Result<()> {
        match self.0.take() {
            Some(f) => f().into_result(),
            None => Ok(()),
        }
    }

    fn clear(&self) {
        drop(self.0.take());
    }

    fn is_spent(&self) -> bool {
        // SAFETY-free peek: take and put back.
        let f = self.0.take();
        let spent = f.is_none();
        self.0.set(f);
        spent
    }

    fn name(&self) -> &'static str {
        callback_name::<F>()
    }
}

/// The callback of a reader or writer: run every time its descriptor is
/// ready. Cancelling it from inside itself (`remove_reader` in the reader)
/// drops it once the call returns.
pub(crate) struct RepeatingSlot<F> {
    callback: RefCell<Option<F>>,
    cleared: Cell<bool>,
}

impl<F, R> Callback for RepeatingSlot<F>
where
    F: FnMut() -> R,
    R: CallbackResult,
{
    fn call(&self) -> Result<()> {
        if self.cleared.get() {
            return Ok(());
        }
        let outcome = {
            let Ok(mut slot) = self.callback.try_borrow_mut() else {
                return Ok(()); // re-entered: the outer call is running it
            };
            match slot.as_mut() {
                Some(f) => f().into_result(),
                None => Ok(()),
            }
        };
        if self.cleared.get() {
            let f = self.callback.borrow_mut().take();
            drop(f);
        }
        outcome
    }

    fn clear(&self) {
        self.cleared.set(true);
        if let Ok(mut slot) = self.callback.try_borrow_mut() {
            let f = slot.take();
            drop(slot);
            drop(f);
        }
    }

    fn is_spent(&self) -> bool {
        self.cleared.get()
    }

    fn name(&self) -> &'static str {
        callback_name::<F>()
    }
}

/// The name of a closure type, trimmed for reports: `my_crate::main::{{closure}}`.
pub(crate) fn callback_name<F>() -> &'static str {
    std::any::type_name::<F>()
}

/// A handle's allocation: pointer-sized fields first, the flags together,
/// the callback last (it is unsized behind `Handle`).
#[repr(C)]
pub(crate) struct HandleCell<C: ?Sized> {
    /// For timers: the deadline in `loop.time()` seconds.
    pub(crate) when: Cell<f64>,
    /// For timers: the loop, told when a scheduled timer is cancelled.
    pub(crate) timer_loop: Option<Weak<LoopInner>>,
    pub(crate) location: &'static Location<'static>,
    /// The context the callback runs in.
    pub(crate) context: crate::contextvars::RunContext,
    pub(crate) cancelled: Cell<bool>,
    /// For timers: `true` while in the loop's timer heap.
    pub(crate) scheduled: Cell<bool>,
    pub(crate) debug: bool,
    pub(crate) callback: C,
}

/// A callback scheduled by `call_soon` (Python's `asyncio.Handle`).
///
/// ```
/// # let loop_ = asyncio_core::testing::new_test_loop();
/// let handle = loop_.call_soon(|| println!("never printed: cancelled before it ran"))?;
/// handle.cancel();
/// assert!(handle.cancelled());
/// loop_.call_soon({ let l = loop_.clone(); move || l.stop() })?;
/// loop_.run_forever()?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) cell: Rc<HandleCell<dyn Callback>>,
}

impl Handle {
    /// A handle running `callback` in a copy of the current context.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn new<F, R>(
        callback: F,
        debug: bool,
        timer: Option<(f64, &Rc<LoopInner>)>,
    ) -> Handle
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        Handle::new_in(
            callback,
            debug,
            timer,
            crate::contextvars::RunContext::capture(),
        )
    }

    /// A handle whose callback runs each time the loop runs it (a reader
    /// or writer), in a copy of the current context.
    #[track_caller]
    pub(crate) fn new_repeating<F, R>(callback: F, debug: bool) -> Handle
    where
        F: FnMut() -> R + 'static,
        R: CallbackResult + 'static,
    {
        let cell: Rc<HandleCell<dyn Callback>> = Rc::new(HandleCell {
            when: Cell::new(0.0),
            timer_loop: None,
            location: Location::caller(),
            context: crate::contextvars::RunContext::capture(),
            cancelled: Cell::new(false),
            scheduled: Cell::new(false),
            debug,
            callback: RepeatingSlot {
                callback: RefCell::new(Some(callback)),
                cleared: Cell::new(false),
            },
        });
        Handle { cell }
    }

    /// A handle running `callback` in `context`.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn new_in<F, R>(
        callback: F,
        debug: bool,
        timer: Option<(f64, &Rc<LoopInner>)>,
        context: crate::contextvars::RunContext,
    ) -> Handle
    where
        F: FnOnce() -> R + 'static,
        R: CallbackResult + 'static,
    {
        let (when, timer_loop) = match timer {
            Some((when, l)) => (when, Some(Rc::downgrade(l))),
            None => (0.0, None),
        };
        let location = Location::caller();
        // Each field is written once, straight into the allocation: built as
        // a value and then moved in, the callback was copied through stack
        // temporaries at odd offsets, whose stores the copies read back
        // before they had retired (a stall costing a third of `call_soon`).
        let mut uninit = Rc::<HandleCell<CallbackSlot<F>>>::new_uninit();
        let slot = Rc::get_mut(&mut uninit)
            .unwrap_or_else(|| unreachable!("a new Rc is unique"))
            .as_mut_ptr();
        // SAFETY: `slot` points to the new allocation's uninitialised
        // `HandleCell`, which nothing else can reach yet; every field is
        // written exactly once through `addr_of_mut!` (no reference to
        // uninitialised memory is made) before `assume_init`.
        let cell = unsafe {
            std::ptr::addr_of_mut!((*slot).when).write(Cell::new(when));
            std::ptr::addr_of_mut!((*slot).timer_loop).write(timer_loop);
            std::ptr::addr_of_mut!((*slot).location).write(location);
            std::ptr::addr_of_mut!((*slot).context).write(context);
            std::ptr::addr_of_mut!((*slot).cancelled).write(Cell::new(false));
            std::ptr::addr_of_mut!((*slot).scheduled).write(Cell::new(false));
            std::ptr::addr_of_mut!((*slot).debug).write(debug);
            std::ptr::addr_of_mut!((*slot).callback).write(CallbackSlot(Cell::new(Some(callback))));
            uninit.assume_init()
        };
        let cell: Rc<HandleCell<dyn Callback>> = cell;
        Handle { cell }
    }

    /// Cancels the callback: it will not run, and what it captured is dropped now.
    /// Does nothing if the callback already ran or was cancelled.
    pub fn cancel(&self) {
        let cell = &self.cell;
        if cell.cancelled.get() {
            return;
        }
        cell.cancelled.set(true);
        if cell.scheduled.get() {
            if let Some(inner) = cell.timer_loop.as_ref().and_then(Weak::upgrade) {
                inner.timer_handle_cancelled();
            }
        }
        cell.callback.clear();
    }

    /// `true` if [`cancel`](Handle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.cell.cancelled.get()
    }

    /// Where the handle was created (shown in debug-mode reports).
    pub fn source_location(&self) -> &'static Location<'static> {
        self.cell.location
    }

    /// The callback's name as CPython prints a function's qualified name:
    /// `boom` for a function, `main.<locals>.<closure>` for a closure
    /// written in `main`.
    pub fn callback_name(&self) -> String {
        crate::format_helpers::callable_name(self.cell.callback.name())
    }

    /// How reports and reprs show the callback (CPython's
    /// `_format_callback_source`): `boom()`, or for a closure
    /// `main.<locals>.<closure>() at src/main.rs:12`.
    pub fn callback_repr(&self) -> String {
        crate::format_helpers::callback_repr(self.cell.callback.name(), Some(self.cell.location))
    }

    /// `true` if both refer to the same handle.
    pub fn ptr_eq(&self, other: &Handle) -> bool {
        Rc::ptr_eq(&self.cell, &other.cell)
    }

    fn repr_info(&self, kind: &str) -> Vec<String> {
        let cell = &self.cell;
        let mut info = vec![kind.to_owned()];
        if cell.cancelled.get() {
            info.push("cancelled".to_owned());
        }
        if cell.timer_loop.is_some() {
            info.push(format!(
                "when={}",
                crate::format_helpers::py_float(cell.when.get())
            ));
        }
        if !cell.callback.is_spent() || !cell.cancelled.get() {
            info.push(crate::format_helpers::callback_repr(
                cell.callback.name(),
                Some(cell.location),
            ));
        }
        if cell.debug {
            info.push(format!(
                "created at {}",
                crate::format_helpers::py_location(cell.location)
            ));
        }
        info
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.cell.timer_loop.is_some() {
            "TimerHandle"
        } else {
            "Handle"
        };
        write!(f, "<{}>", self.repr_info(kind).join(" "))
    }
}

/// A callback scheduled by `call_later`/`call_at` (Python's `asyncio.TimerHandle`).
#[derive(Clone)]
pub struct TimerHandle {
    pub(crate) handle: Handle,
}

impl TimerHandle {
    /// The absolute time, in `loop.time()` seconds, at which the callback runs.
    pub fn when(&self) -> f64 {
        self.handle.cell.when.get()
    }

    /// Cancels the callback (see [`Handle::cancel`]).
    pub fn cancel(&self) {
        self.handle.cancel()
    }

    /// `true` if the timer was cancelled.
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// The timer as a plain [`Handle`] (`TimerHandle` subclasses `Handle` in Python).
    pub fn as_handle(&self) -> &Handle {
        &self.handle
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.handle, f)
    }
}

// ===== the implementation trait =====

/// The interface an event-loop implementation provides (Python's
/// `AbstractEventLoop`, seen from the implementation's side).
///
/// [`EventLoop`] owns the scheduling that every asyncio loop shares — the
/// ready queue, the timer heap, tasks and futures — exactly as CPython's
/// `BaseEventLoop` does. An implementation supplies the reactor under it:
/// how to block until work or a deadline arrives, and (in `asyncio-tokio`) the
/// sockets, pipes, signals and subprocesses. `asyncio-tokio`'s `TokioEventLoop`
/// is the one the default policy uses.
pub trait AbstractEventLoop: 'static {
    /// Runs `driver` until it returns `Ready`, polling it whenever it is woken,
    /// with this implementation's reactor, timers and context entered.
    ///
    /// Fails (without running) when the thread cannot block here, e.g. inside
    /// another runtime.
    fn block_on(&self, driver: &mut dyn FnMut(&mut Context<'_>) -> Poll<()>) -> Result<()>;

    /// Fails, with the error [`block_on`](AbstractEventLoop::block_on) would
    /// give, when this thread cannot block here now (e.g. inside another
    /// runtime). `run_forever` and `run_until_complete` ask this before they
    /// create anything, as CPython's `_check_running` comes first, so a
    /// refused call leaves no task behind. The default accepts.
    fn check_can_block(&self) -> Result<()> {
        Ok(())
    }

    /// Arranges for the current `block_on` driver to be woken at `deadline`;
    /// returns `Ready` if the deadline has passed. Called only from inside
    /// [`block_on`](AbstractEventLoop::block_on).
    fn poll_deadline(&self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()>;

    /// Releases the implementation's resources; called once by `loop.close()`.
    fn close(&self);

    /// A short name for reprs (`"TokioEventLoop"`).
    fn name(&self) -> &'static str;

    /// The implementation as `Any`, so the concrete type can be recovered with
    /// [`EventLoop::implementation`].
    fn as_any(&self) -> &dyn std::any::Any;

    /// The sockets, servers and name resolution of this implementation;
    /// `None` for one without a reactor.
    fn network(&self) -> Option<&dyn crate::base_events::AbstractNetwork> {
        None
    }
}

// ===== the running loop =====

thread_local! {
    static RUNNING_LOOP: RefCell<Option<RunningLoop>> = const { RefCell::new(None) };
    /// The running loop's core, for the wake path: a plain pointer (no
    /// lazy-destructor check on every wake), non-null only while
    /// `RUNNING_LOOP` holds that loop.
    static RUNNING_INNER: Cell<*const LoopInner> = const { Cell::new(std::ptr::null()) };
}

/// The running loop as `RUNNING_LOOP` holds it: when it is dropped (the
/// thread ends) it clears `RUNNING_INNER`; a loop taken out first does not.
struct RunningLoop(Option<EventLoop>);

impl Drop for RunningLoop {
    fn drop(&mut self) {
        if let Some(l) = &self.0 {
            let me = Rc::as_ptr(&l.inner);
            let _ = RUNNING_INNER.try_with(|c| {
                if c.get() == me {
                    c.set(std::ptr::null());
                }
            });
        }
    }
}

/// Returns the event loop running in this thread.
///
/// Errors with `RuntimeError("no running event loop")` outside a running loop,
/// as `asyncio.get_running_loop()` does.
pub fn get_running_loop() -> Result<EventLoop> {
    _get_running_loop().ok_or_else(|| Error::runtime("no running event loop"))
}

/// The running loop of this thread, or `None` (`asyncio._get_running_loop()`).
pub fn _get_running_loop() -> Option<EventLoop> {
    RUNNING_LOOP.with(|r| r.borrow().as_ref().and_then(|w| w.0.clone()))
}

/// Sets the running loop of this thread (`asyncio._set_running_loop()`);
/// returns the previous one. Used by loop implementations.
pub fn _set_running_loop(loop_: Option<EventLoop>) -> Option<EventLoop> {
    RUNNING_LOOP.with(|r| {
        let inner = loop_
            .as_ref()
            .map_or(std::ptr::null(), |l| Rc::as_ptr(&l.inner));
        let old = std::mem::replace(&mut *r.borrow_mut(), loop_.map(|l| RunningLoop(Some(l))));
        RUNNING_INNER.with(|c| c.set(inner));
        old.and_then(|mut w| w.0.take())
    })
}

/// Calls `f` with the loop running in this thread, if any, without cloning it.
pub(crate) fn with_running_loop<R>(f: impl FnOnce(Option<&Rc<LoopInner>>) -> R) -> R {
    RUNNING_LOOP.with(|r| {
        let guard = r.borrow();
        f(guard.as_ref().and_then(|w| w.0.as_ref()).map(|l| &l.inner))
    })
}

/// [`with_running_loop`] for the wake path: the loop's core by reference.
/// `f` must not change the running loop.
pub(crate) fn with_running_inner<R>(f: impl FnOnce(Option<&LoopInner>) -> R) -> R {
    let inner = RUNNING_INNER.with(Cell::get);
    // SAFETY: the pointer is non-null only while `RUNNING_LOOP` holds an
    // `Rc` of that `LoopInner` (it is replaced together with it, and cleared
    // when that value is dropped), so the allocation is alive for this
    // shared borrow, which `f` cannot outlive.
    f(unsafe { inner.as_ref() })
}

// ===== policies =====

/// An event loop policy (Python's `AbstractEventLoopPolicy`): the process-wide
/// object that gives each thread its current loop and makes new loops.
///
/// CPython 3.14 deprecates policies in favour of `Runner(loop_factory=…)`;
/// both are provided.
pub trait AbstractEventLoopPolicy: Send + Sync {
    /// The current loop of this thread. Errors when none was set: no loop is
    /// created implicitly (`"There is no current event loop in thread 'NAME'."`).
    fn get_event_loop(&self) -> Result<EventLoop>;
    /// Sets (or clears) the current loop of this thread.
    fn set_event_loop(&self, loop_: Option<EventLoop>) -> Result<()>;
    /// Creates a new loop.
    fn new_event_loop(&self) -> Result<EventLoop>;
}

thread_local! {
    /// The current loop of each default-policy instance, for this thread.
    static CURRENT_LOOPS: RefCell<Vec<(u64, EventLoop)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_POLICY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The default policy's behaviour for any loop factory (CPython's
/// `BaseDefaultEventLoopPolicy`): one current loop per thread, per policy.
pub struct BaseDefaultEventLoopPolicy {
    id: u64,
    factory: fn() -> Result<EventLoop>,
}

impl BaseDefaultEventLoopPolicy {
    /// A policy whose `new_event_loop` calls `factory`.
    pub fn new(factory: fn() -> Result<EventLoop>) -> Self {
        BaseDefaultEventLoopPolicy {
            id: NEXT_POLICY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            factory,
        }
    }
}

impl fmt::Debug for BaseDefaultEventLoopPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseDefaultEventLoopPolicy")
            .finish_non_exhaustive()
    }
}

/// The name Python prints for the current thread (`MainThread` for the main one).
pub(crate) fn thread_name() -> String {
    let current = std::thread::current();
    match current.name() {
        Some("main") => "MainThread".to_owned(),
        Some(name) => name.to_owned(),
        None => format!("{:?}", current.id()),
    }
}

impl AbstractEventLoopPolicy for BaseDefaultEventLoopPolicy {
    fn get_event_loop(&self) -> Result<EventLoop> {
        CURRENT_LOOPS
            .with(|c| {
                c.borrow()
                    .iter()
                    .find(|(id, _)| *id == self.id)
                    .map(|(_, l)| l.clone())
            })
            .ok_or_else(|| {
                Error::runtime(format!(
                    "There is no current event loop in thread '{}'.",
                    thread_name()
                ))
            })
    }

    fn set_event_loop(&self, loop_: Option<EventLoop>) -> Result<()> {
        let old = CURRENT_LOOPS.with(|c| {
            let mut loops = c.borrow_mut();
            let old = loops
                .iter()
                .position(|(id, _)| *id == self.id)
                .map(|i| loops.remove(i).1);
            if let Some(l) = loop_ {
                loops.push((self.id, l));
            }
            old
        });
        drop(old);
        Ok(())
    }

    fn new_event_loop(&self) -> Result<EventLoop> {
        (self.factory)()
    }
}
