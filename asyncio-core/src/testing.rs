//! A reactor-less loop implementation on std threads, for tests and examples
//! that need callbacks, timers and tasks but no I/O.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::base_events::EventLoop;
use crate::events::AbstractEventLoop;
use crate::exceptions::Result;

/// An [`AbstractEventLoop`] that parks the thread between iterations. It has
/// timers and cross-thread wake-ups, and no sockets.
#[derive(Debug, Default)]
pub struct SimpleEventLoop {
    deadline: Cell<Option<Instant>>,
}

struct Unparker {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notified.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

impl AbstractEventLoop for SimpleEventLoop {
    fn block_on(&self, driver: &mut dyn FnMut(&mut Context<'_>) -> Poll<()>) -> Result<()> {
        let unparker = Arc::new(Unparker {
            thread: thread::current(),
            notified: AtomicBool::new(false),
        });
        let waker = Waker::from(unparker.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            unparker.notified.store(false, Ordering::Release);
            self.deadline.set(None);
            if driver(&mut cx).is_ready() {
                return Ok(());
            }
            while !unparker.notified.load(Ordering::Acquire) {
                match self.deadline.get() {
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        thread::park_timeout(deadline - now);
                    }
                    None => thread::park(),
                }
            }
        }
    }

    fn poll_deadline(&self, deadline: Instant, _cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= deadline {
            Poll::Ready(())
        } else {
            self.deadline.set(Some(deadline));
            Poll::Pending
        }
    }

    fn close(&self) {}

    fn name(&self) -> &'static str {
        "SimpleEventLoop"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A new loop on [`SimpleEventLoop`].
pub fn new_test_loop() -> EventLoop {
    EventLoop::new(SimpleEventLoop::default())
}

// ===== virtual time =====

/// The virtual clock of a loop put on virtual time by [`use_virtual_time`].
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let clock = asyncio_core::testing::use_virtual_time(&loop_, Some(0.0))?;
/// loop_.run_until_complete(async {
///     asyncio_core::sleep(3600.0).await?; // an hour, at once
///     Ok(())
/// })?;
/// assert_eq!(clock.time(), 3600.0);
/// clock.advance(1.5);
/// assert_eq!(loop_.time(), 3601.5);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct VirtualClock {
    loop_: EventLoop,
}

impl VirtualClock {
    /// `loop.time()`: the virtual time, in seconds.
    pub fn time(&self) -> f64 {
        self.loop_.time()
    }

    /// Moves the clock `seconds` ahead at once; the timers that became due
    /// run at the loop's next iteration (Trio's `MockClock.jump`).
    pub fn advance(&self, seconds: f64) {
        let inner = &self.loop_.inner;
        let now = inner.virtual_now.get().unwrap_or(0.0);
        inner.virtual_now.set(Some(now + seconds.max(0.0)));
        inner.wake_driver_if_idle();
    }

    /// The autojump threshold: with `Some(t)`, once the loop has had
    /// nothing to do for `t` real seconds (0: as soon as the reactor found
    /// no I/O ready), the clock jumps to the next timer; with `None`, only
    /// [`advance`](VirtualClock::advance) moves it.
    pub fn set_autojump_threshold(&self, threshold: Option<f64>) {
        self.loop_.inner.autojump.set(threshold.map(|t| t.max(0.0)));
    }

    /// The autojump threshold.
    pub fn autojump_threshold(&self) -> Option<f64> {
        self.loop_.inner.autojump.get()
    }
}

/// Puts `loop_` on a virtual clock that starts at 0.0: `loop.time()`,
/// `call_later`, `call_at`, `sleep`, `timeout`, `wait_for` and the TLS
/// timeouts all follow it, and real I/O still works. With `autojump`
/// (`Some(0.0)` for "as soon as idle"; see
/// [`VirtualClock::set_autojump_threshold`]) a program that sleeps an hour
/// finishes in milliseconds and gives the same trace every run. The jump
/// waits while a `run_in_executor` job (DNS, `to_thread`) is running, and
/// lets the reactor look for ready I/O first. Tokio's own timers
/// (`tokio::time::sleep`) stay on real time.
///
/// Errors: `RuntimeError("virtual time must be set before the loop runs or
/// schedules a timer")` on a running loop or one with timers scheduled.
pub fn use_virtual_time(loop_: &EventLoop, autojump: Option<f64>) -> Result<VirtualClock> {
    let inner = &loop_.inner;
    if inner.virtual_now.get().is_none() && (loop_.is_running() || inner.has_timers()) {
        return Err(crate::Error::runtime(
            "virtual time must be set before the loop runs or schedules a timer",
        ));
    }
    if inner.virtual_now.get().is_none() {
        inner.virtual_now.set(Some(0.0));
    }
    inner.autojump.set(autojump.map(|t| t.max(0.0)));
    Ok(VirtualClock {
        loop_: loop_.non_owning(),
    })
}

impl EventLoop {
    /// The loop's virtual clock, if it is on one ([`use_virtual_time`]).
    pub fn virtual_clock(&self) -> Option<VirtualClock> {
        self.inner.virtual_now.get().map(|_| VirtualClock {
            loop_: self.non_owning(),
        })
    }
}
