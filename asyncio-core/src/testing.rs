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
