//! `asyncio.sleep`.

use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::events::{check_delay, get_running_loop, Delay, TimerHandle};
use crate::exceptions::{Error, Result};
use crate::futures::poll_await;
use crate::Future;

/// `asyncio.sleep(delay)`: waits `delay` (seconds or a `Duration`).
///
/// `sleep(0)` (or any delay ≤ 0) yields to the loop for exactly one
/// iteration, letting other callbacks and tasks run, without a timer.
/// A NaN delay fails with `ValueError("Invalid delay: NaN (not a number)")`.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let t0 = loop_.time();
/// loop_.run_until_complete(async {
///     asyncio_core::sleep(0.01).await?;
///     asyncio_core::sleep(std::time::Duration::from_millis(10)).await
/// })?;
/// assert!(loop_.time() - t0 >= 0.02);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn sleep(delay: impl Delay) -> Sleep<()> {
    sleep_with(delay, ())
}

/// `asyncio.sleep(delay, result)`: waits, then returns `result`.
pub fn sleep_with<T: 'static>(delay: impl Delay, result: T) -> Sleep<T> {
    Sleep {
        state: State::Start(delay.as_secs()),
        result: Some(result),
    }
}

enum State {
    Start(f64),
    Yielded,
    Waiting(Future<()>, TimerHandle),
    Done,
}

/// The future [`sleep`] returns.
pub struct Sleep<T> {
    state: State,
    result: Option<T>,
}

impl<T> Unpin for Sleep<T> {}

impl<T> fmt::Debug for Sleep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Start(d) => write!(f, "<sleep delay={d}>"),
            State::Yielded => write!(f, "<sleep yielded>"),
            State::Waiting(_, h) => write!(f, "<sleep until={}>", h.when()),
            State::Done => write!(f, "<sleep done>"),
        }
    }
}

impl<T> Sleep<T> {
    fn finish(&mut self, outcome: Result<()>) -> Poll<Result<T>> {
        if let State::Waiting(_, handle) = std::mem::replace(&mut self.state, State::Done) {
            handle.cancel();
        }
        Poll::Ready(outcome.map(|()| {
            self.result
                .take()
                .unwrap_or_else(|| unreachable!("a sleep completes once"))
        }))
    }
}

/// A bare `yield` resumed: deliver a cancellation requested meanwhile.
fn resume_from_yield() -> Result<()> {
    match crate::tasks::take_pending_cancel() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl<T> StdFuture for Sleep<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        match &this.state {
            State::Start(delay) => {
                let delay = *delay;
                if let Err(e) = check_delay(delay) {
                    return this.finish(Err(e));
                }
                if delay <= 0.0 {
                    this.state = State::Yielded;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                let loop_ = match get_running_loop() {
                    Ok(l) => l,
                    Err(e) => return this.finish(Err(e)),
                };
                let fut = Future::<()>::new(&loop_);
                let setter = fut.clone();
                let handle = match loop_.call_later(delay, move || {
                    if !setter.done() {
                        let _ = setter.set_result(());
                    }
                }) {
                    Ok(h) => h,
                    Err(e) => return this.finish(Err(e)),
                };
                this.state = State::Waiting(fut, handle);
                this.poll_waiting(cx)
            }
            State::Yielded => {
                this.state = State::Done;
                Poll::Ready(resume_from_yield().map(|()| {
                    this.result
                        .take()
                        .unwrap_or_else(|| unreachable!("a sleep completes once"))
                }))
            }
            State::Waiting(..) => this.poll_waiting(cx),
            State::Done => Poll::Ready(Err(Error::runtime(
                "cannot reuse already awaited coroutine",
            ))),
        }
    }
}

impl<T> Sleep<T> {
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let State::Waiting(fut, _) = &self.state else {
            unreachable!("called in the waiting state")
        };
        match poll_await(&fut.cell, cx, |core| core.result_clone()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => self.finish(outcome),
        }
    }
}

impl<T> Drop for Sleep<T> {
    fn drop(&mut self) {
        if let State::Waiting(_, handle) = &self.state {
            handle.cancel();
        }
    }
}
