//! `asyncio.run_coroutine_threadsafe` and the `concurrent.futures.Future` it returns.

use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::base_events::ThreadsafeLoop;
use crate::exceptions::{Error, Result};
use crate::futures::RemoteTrigger;
use crate::Future;

enum CfState<T> {
    Pending,
    Cancelled,
    Finished(Result<T>),
}

type CfCallback<T> = Box<dyn FnOnce(&ConcurrentFuture<T>) + Send>;

struct CfInner<T> {
    state: CfState<T>,
    callbacks: Vec<CfCallback<T>>,
    wakers: Vec<Waker>,
    /// Cancels the source task on its loop.
    canceller: Option<RemoteTrigger>,
}

struct Shared<T> {
    inner: Mutex<CfInner<T>>,
    cond: Condvar,
}

/// Python's `concurrent.futures.Future`: a thread-safe result, returned by
/// [`run_coroutine_threadsafe`]. Other threads block on it with
/// [`result`](ConcurrentFuture::result) or await it from any executor.
pub struct ConcurrentFuture<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for ConcurrentFuture<T> {
    fn clone(&self) -> Self {
        ConcurrentFuture {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for ConcurrentFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.lock().state {
            CfState::Pending => "pending",
            CfState::Cancelled => "cancelled",
            CfState::Finished(Ok(_)) => "finished returned",
            CfState::Finished(Err(_)) => "finished raised",
        };
        write!(
            f,
            "<Future at {:p} state={state}>",
            Arc::as_ptr(&self.shared)
        )
    }
}

impl<T: Send + 'static> Default for ConcurrentFuture<T> {
    fn default() -> Self {
        ConcurrentFuture::new()
    }
}

impl<T: Send + 'static> ConcurrentFuture<T> {
    /// A pending future.
    pub fn new() -> ConcurrentFuture<T> {
        ConcurrentFuture {
            shared: Arc::new(Shared {
                inner: Mutex::new(CfInner {
                    state: CfState::Pending,
                    callbacks: Vec::new(),
                    wakers: Vec::new(),
                    canceller: None,
                }),
                cond: Condvar::new(),
            }),
        }
    }
}

impl<T> ConcurrentFuture<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, CfInner<T>> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `true` once done.
    pub fn done(&self) -> bool {
        !matches!(self.lock().state, CfState::Pending)
    }

    /// `true` if cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(self.lock().state, CfState::Cancelled)
    }

    /// Cancels the future, and the task behind it on its loop; `false` if
    /// already done.
    pub fn cancel(&self) -> bool {
        self.complete_with(CfState::Cancelled)
    }

    /// Sets the result; `false` if already done.
    pub fn set_result(&self, value: T) -> bool {
        self.complete_with(CfState::Finished(Ok(value)))
    }

    /// Sets an error; `false` if already done.
    pub fn set_exception(&self, error: Error) -> bool {
        self.complete_with(CfState::Finished(Err(error)))
    }

    fn complete_with(&self, state: CfState<T>) -> bool {
        let (callbacks, wakers, canceller) = {
            let mut inner = self.lock();
            if !matches!(inner.state, CfState::Pending) {
                return false;
            }
            let cancelling = matches!(state, CfState::Cancelled);
            inner.state = state;
            let canceller = inner.canceller.take();
            (
                std::mem::take(&mut inner.callbacks),
                std::mem::take(&mut inner.wakers),
                if cancelling { canceller } else { None },
            )
        };
        self.shared.cond.notify_all();
        if let Some(c) = canceller {
            c.fire();
        }
        wakers.into_iter().for_each(Waker::wake);
        for cb in callbacks {
            cb(self);
        }
        true
    }

    /// Adds a callback called with the future once done (at once if it is),
    /// in the thread that completes it.
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(&ConcurrentFuture<T>) + Send + 'static,
    {
        {
            let mut inner = self.lock();
            if matches!(inner.state, CfState::Pending) {
                inner.callbacks.push(Box::new(callback));
                return;
            }
        }
        callback(self);
    }

    fn wait_done(
        &self,
        timeout: Option<Duration>,
    ) -> Result<std::sync::MutexGuard<'_, CfInner<T>>> {
        // An unrepresentable deadline waits without a limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut inner = self.lock();
        while matches!(inner.state, CfState::Pending) {
            match deadline {
                None => {
                    inner = self
                        .shared
                        .cond
                        .wait(inner)
                        .unwrap_or_else(|p| p.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::timeout());
                    }
                    inner = self
                        .shared
                        .cond
                        .wait_timeout(inner, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        Ok(inner)
    }

    /// Blocks until done (or `timeout` passes: `TimeoutError`) and returns
    /// the result; `CancelledError` if cancelled.
    pub fn result(&self, timeout: Option<Duration>) -> Result<T>
    where
        T: Clone,
    {
        let inner = self.wait_done(timeout)?;
        match &inner.state {
            CfState::Finished(r) => r.clone(),
            CfState::Cancelled => Err(Error::cancelled(None)),
            CfState::Pending => unreachable!("waited until done"),
        }
    }

    /// Blocks until done and returns the error, if any.
    pub fn exception(&self, timeout: Option<Duration>) -> Result<Option<Error>> {
        let inner = self.wait_done(timeout)?;
        match &inner.state {
            CfState::Finished(Err(e)) => Ok(Some(e.clone())),
            CfState::Finished(Ok(_)) => Ok(None),
            CfState::Cancelled => Err(Error::cancelled(None)),
            CfState::Pending => unreachable!("waited until done"),
        }
    }
}

impl<T: Clone> StdFuture for ConcurrentFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut inner = self.lock();
        match &inner.state {
            CfState::Pending => {
                if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    inner.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            CfState::Cancelled => Poll::Ready(Err(Error::cancelled(None))),
            CfState::Finished(r) => Poll::Ready(r.clone()),
        }
    }
}

/// Cancels a [`ConcurrentFuture`] that is dropped before it was completed:
/// the callback or done callback holding it was dropped unrun, because
/// the loop closed first.
struct CancelIfDropped<T>(Option<ConcurrentFuture<T>>);

impl<T> CancelIfDropped<T> {
    fn take(mut self) -> ConcurrentFuture<T> {
        self.0
            .take()
            .unwrap_or_else(|| unreachable!("taken once, by its owner"))
    }
}

impl<T> Drop for CancelIfDropped<T> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f.cancel();
        }
    }
}

/// `asyncio.run_coroutine_threadsafe(coro, loop)`: from any thread, runs a
/// coroutine as a task on `loop_` and returns a [`ConcurrentFuture`] for its
/// result.
///
/// The coroutine is made on the loop thread by `make_coro` (asyncio futures
/// are tied to their thread, so the coroutine itself need not be `Send`).
/// Cancelling the returned future cancels the task. If the loop closes
/// before the task finishes (or before it starts), the future ends
/// cancelled, so that a thread blocked on it wakes up (CPython leaves it
/// pending forever).
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let remote = loop_.threadsafe();
/// let worker = std::thread::spawn(move || {
///     let fut = asyncio_core::run_coroutine_threadsafe(
///         || async {
///             asyncio_core::sleep(0.001).await?;
///             Ok(21 * 2)
///         },
///         &remote,
///     )
///     .unwrap();
///     let answer = fut.result(None).unwrap();
///     remote.stop();
///     answer
/// });
/// loop_.run_forever()?;
/// assert_eq!(worker.join().unwrap(), 42);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn run_coroutine_threadsafe<M, F, T>(
    make_coro: M,
    loop_: &ThreadsafeLoop,
) -> Result<ConcurrentFuture<T>>
where
    M: FnOnce() -> F + Send + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
    T: Send + 'static,
{
    let future = ConcurrentFuture::new();
    let guard = CancelIfDropped(Some(future.clone()));
    loop_.call_soon_threadsafe(move || {
        let dest = guard.take();
        if dest.done() {
            return Ok(()); // cancelled before it could start
        }
        let started = crate::events::get_running_loop()
            .and_then(|l| l.create_task(make_coro()).map(|t| (l, t)));
        let (loop_, task) = match started {
            Ok(v) => v,
            Err(e) => {
                // Python sets the error and re-raises it in the callback,
                // which reports it to the exception handler.
                dest.set_exception(e.clone());
                return Err(e);
            }
        };
        let to_cancel = task.clone();
        match RemoteTrigger::new(&loop_, move || {
            to_cancel.cancel();
        }) {
            Ok(trigger) => {
                let mut inner = dest.lock();
                if matches!(inner.state, CfState::Pending) {
                    inner.canceller = Some(trigger);
                } else {
                    drop(inner);
                    trigger.fire();
                }
            }
            Err(e) => {
                dest.set_exception(e.clone());
                return Err(e);
            }
        }
        let guard = CancelIfDropped(Some(dest.clone()));
        task.add_done_callback(move |task: &Future<T>| {
            let dest2 = guard.take();
            if task.cancelled() {
                dest2.cancel();
            } else {
                match task.take_result() {
                    Ok(v) => dest2.set_result(v),
                    Err(e) => dest2.set_exception(e),
                };
            }
        });
        Ok(())
    })?;
    Ok(future)
}

impl ThreadsafeLoop {
    /// [`run_coroutine_threadsafe`] as a method.
    pub fn run_coroutine_threadsafe<M, F, T>(&self, make_coro: M) -> Result<ConcurrentFuture<T>>
    where
        M: FnOnce() -> F + Send + 'static,
        F: StdFuture<Output = Result<T>> + 'static,
        T: Send + 'static,
    {
        run_coroutine_threadsafe(make_coro, self)
    }
}

/// `asyncio.wrap_future(future)`: an asyncio [`Future`] on the running loop
/// that follows a [`ConcurrentFuture`] (completed in any thread).
///
/// As in CPython, the outcome always reaches the asyncio future through the
/// loop (`call_soon_threadsafe`), even when the concurrent future is done
/// already, and cancelling the asyncio future cancels the concurrent one.
/// An asyncio future needs no wrapping: it is awaited as it is.
///
/// Errors with `"no running event loop"` outside a running loop; use
/// [`EventLoop::wrap_future`](crate::EventLoop::wrap_future) to pick a loop.
///
/// ```
/// use asyncio_core::{wrap_future, ConcurrentFuture};
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let answer = loop_.run_until_complete(async {
///     let cf = ConcurrentFuture::new();
///     let setter = cf.clone();
///     std::thread::spawn(move || setter.set_result(42));
///     wrap_future(cf)?.await
/// })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn wrap_future<T: Clone + Send + 'static>(future: ConcurrentFuture<T>) -> Result<Future<T>> {
    crate::events::get_running_loop()?.wrap_future(future)
}

impl crate::EventLoop {
    /// `asyncio.wrap_future(future, loop=self)`: see [`wrap_future`].
    ///
    /// Errors with `"Event loop is closed"`.
    pub fn wrap_future<T: Clone + Send + 'static>(
        &self,
        future: ConcurrentFuture<T>,
    ) -> Result<Future<T>> {
        let destination = Future::<T>::new(self);
        // Dropped unused (the concurrent future cancelled, or gone without
        // an outcome), the completer cancels the destination.
        let completer = destination.remote_completer()?;
        let source = future.clone();
        destination.add_done_callback(move |d: &Future<T>| {
            if d.cancelled() {
                source.cancel();
            }
        });
        future.add_done_callback(move |cf: &ConcurrentFuture<T>| {
            if !cf.cancelled() {
                completer.complete(cf.result(Some(Duration::ZERO)));
            }
        });
        Ok(destination)
    }
}
