//! Reaching a loop from other threads: `call_soon_threadsafe` and friends.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{EventLoop, Injected, LoopShared};
use crate::events::{self, CallbackResult};
use crate::exceptions::{Error, Result};

type SendCallback = Box<dyn FnOnce() -> Result<()> + Send>;

/// A callback sent from another thread.
pub(crate) struct ThreadsafeCall {
    pub(super) cancelled: AtomicBool,
    pub(super) callback: Mutex<Option<SendCallback>>,
    pub(super) name: &'static str,
}

/// A `Send + Sync` handle to an event loop, for other threads.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let remote = loop_.threadsafe();
/// let worker = std::thread::spawn(move || {
///     remote.call_soon_threadsafe(|| println!("hello from the loop thread")).unwrap();
///     remote.stop();
/// });
/// loop_.run_forever()?;
/// worker.join().unwrap();
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct ThreadsafeLoop {
    pub(crate) shared: Arc<LoopShared>,
}

impl ThreadsafeLoop {
    /// Schedules `callback` on the loop from any thread and wakes the loop.
    /// Errors with `"Event loop is closed"` once the loop is closed.
    pub fn call_soon_threadsafe<F, R>(&self, callback: F) -> Result<ThreadsafeHandle>
    where
        F: FnOnce() -> R + Send + 'static,
        R: CallbackResult + 'static,
    {
        let name = events::callback_name::<F>();
        let call = Arc::new(ThreadsafeCall {
            cancelled: AtomicBool::new(false),
            callback: Mutex::new(Some(Box::new(move || callback().into_result()))),
            name,
        });
        if std::thread::current().id() == self.shared.owner {
            // On the loop's own thread the callback queues behind the
            // `call_soon` callbacks already scheduled, as in CPython.
            if let Some(inner) = crate::slots::thread_loop_by_id(self.shared.id) {
                if inner.is_closed() {
                    return Err(Error::runtime("Event loop is closed"));
                }
                inner.push_ready(super::Ready::Threadsafe(call.clone()));
                return Ok(ThreadsafeHandle { call });
            }
        }
        if !self.shared.inject(Injected::Call(call.clone())) {
            return Err(Error::runtime("Event loop is closed"));
        }
        Ok(ThreadsafeHandle { call })
    }

    /// Stops the loop (like `loop.call_soon_threadsafe(loop.stop)`).
    pub fn stop(&self) {
        let _ = self.call_soon_threadsafe(|| {
            if let Some(l) = events::_get_running_loop() {
                l.stop();
            }
        });
    }

    /// `true` once the loop is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// `true` if `loop_` is the loop behind this handle.
    pub fn is_loop(&self, loop_: &EventLoop) -> bool {
        self.shared.id == loop_.inner.id
    }
}

impl fmt::Debug for ThreadsafeLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadsafeLoop")
            .field("id", &self.shared.id)
            .finish()
    }
}

/// The handle `call_soon_threadsafe` returns; `Send + Sync`.
#[derive(Clone)]
pub struct ThreadsafeHandle {
    pub(super) call: Arc<ThreadsafeCall>,
}

impl ThreadsafeHandle {
    /// Cancels the callback if it has not started.
    pub fn cancel(&self) {
        self.call.cancelled.store(true, Ordering::Release);
        let cb = self
            .call
            .callback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(cb);
    }

    /// `true` if [`cancel`](ThreadsafeHandle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.call.cancelled.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cancelled() {
            write!(f, "<Handle cancelled>")
        } else {
            write!(
                f,
                "<Handle {}>",
                crate::format_helpers::callback_repr(self.call.name, None)
            )
        }
    }
}
