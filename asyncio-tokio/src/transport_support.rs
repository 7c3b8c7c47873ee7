//! What the transports share: CPython's `_FlowControlMixin`, their error
//! reports, and one I/O call when the descriptor is ready.

use std::cell::Cell;
use std::fmt::Debug;
use std::io;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use asyncio_core::exception_context::{ContextValue, ExceptionContext};
use asyncio_core::transports::{check_write_buffer_limits, DEFAULT_HIGH_WATER};
use asyncio_core::{Error, EventLoop, Result};
use tokio::io::unix::AsyncFd;

/// The write-buffer marks and whether the protocol is paused (CPython's
/// `_FlowControlMixin`).
pub(crate) struct FlowControl {
    paused: Cell<bool>,
    high: Cell<usize>,
    low: Cell<usize>,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl {
            paused: Cell::new(false),
            high: Cell::new(DEFAULT_HIGH_WATER),
            low: Cell::new(DEFAULT_HIGH_WATER / 4),
        }
    }
}

impl FlowControl {
    /// `set_write_buffer_limits(high, low)`, checked as CPython does.
    pub(crate) fn set_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let (high, low) = check_write_buffer_limits(high, low)?;
        self.high.set(high);
        self.low.set(low);
        Ok(())
    }

    /// `true` while the protocol is paused (CPython's `_protocol_paused`).
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// `get_write_buffer_limits()`: `(low, high)`.
    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.low.get(), self.high.get())
    }

    /// `_maybe_pause_protocol`: `true` when a buffer of `size` bytes must
    /// pause the protocol now.
    pub(crate) fn should_pause(&self, size: usize) -> bool {
        if size <= self.high.get() || self.paused.get() {
            return false;
        }
        self.paused.set(true);
        true
    }

    /// `_maybe_resume_protocol`: `true` when a buffer of `size` bytes must
    /// resume the protocol now.
    pub(crate) fn should_resume(&self, size: usize) -> bool {
        if !(self.paused.get() && size <= self.low.get()) {
            return false;
        }
        self.paused.set(false);
        true
    }
}

/// What came of a `pause_writing()` (`pause`) or `resume_writing()` call:
/// an error is reported and the transport goes on; `KeyboardInterrupt` /
/// `SystemExit` leave the loop.
pub(crate) fn flow_called(
    loop_: &EventLoop,
    pause: bool,
    called: Result<()>,
    transport: &dyn Debug,
    protocol: &dyn Debug,
) {
    match called {
        Err(e) if e.kind().is_exit() => loop_.raise_base_exception(e),
        Err(e) => {
            let message = if pause {
                "protocol.pause_writing() failed"
            } else {
                "protocol.resume_writing() failed"
            };
            report(loop_, message, e, transport, Some(protocol));
        }
        Ok(()) => {}
    }
}

/// A transport's report to the exception handler (`message`, `exception`,
/// `transport`, `protocol`).
pub(crate) fn report(
    loop_: &EventLoop,
    message: &str,
    exc: Error,
    transport: &dyn Debug,
    protocol: Option<&dyn Debug>,
) {
    let mut ctx = ExceptionContext::new(message);
    ctx.exception = Some(exc);
    ctx.set("transport", ContextValue::Text(format!("{transport:?}")));
    if let Some(p) = protocol {
        ctx.set("protocol", ContextValue::Text(format!("{p:?}")));
    }
    loop_.call_exception_handler(ctx);
}

/// An error escaping a protocol callback that a transport's reader (or
/// writer) ran: CPython's `Handle._run` logs it as that callback's
/// (`Exception in callback _SelectorDatagramTransport._read_ready()`), and
/// the transport goes on.
pub(crate) fn callback_failed(loop_: &EventLoop, class: &str, callback: &str, exc: Error) {
    if exc.kind().is_exit() {
        loop_.raise_base_exception(exc);
        return;
    }
    let mut ctx = ExceptionContext::new(format!("Exception in callback {class}.{callback}()"));
    ctx.exception = Some(exc);
    ctx.set(
        "handle",
        ContextValue::Text(format!("<Handle {class}.{callback}()>")),
    );
    loop_.call_exception_handler(ctx);
}

/// CPython's `__del__` of a transport still open: a `ResourceWarning`,
/// shown in debug mode.
pub(crate) fn warn_unclosed(loop_: &EventLoop, transport: &dyn Debug) {
    if loop_.get_debug() {
        asyncio_core::log::warning(format_args!(
            "ResourceWarning: unclosed transport {transport:?}"
        ));
    }
}

/// One `op` on `fd` if it is readable (`reading`) or writable: `None`
/// when it is not, with `cx`'s waker registered for the change.
pub(crate) fn io_when_ready<T: AsRawFd, R>(
    fd: &AsyncFd<T>,
    cx: &mut Context<'_>,
    reading: bool,
    mut op: impl FnMut(&T) -> io::Result<R>,
) -> Option<io::Result<R>> {
    loop {
        let ready = if reading {
            fd.poll_read_ready(cx)
        } else {
            fd.poll_write_ready(cx)
        };
        let mut guard = match ready {
            Poll::Pending => return None,
            Poll::Ready(Err(e)) => return Some(Err(e)),
            Poll::Ready(Ok(guard)) => guard,
        };
        match guard.try_io(|inner| op(inner.get_ref())) {
            // Readiness cleared: poll again to register the waker.
            Err(_would_block) => continue,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(outcome) => return Some(outcome),
        }
    }
}
