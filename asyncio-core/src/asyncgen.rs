//! Async generators: Python's `async def` with `yield`, as a stream with an
//! asynchronous close step that the loop tracks (`loop.shutdown_asyncgens()`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::base_events::EventLoop;
use crate::events::_get_running_loop;
use crate::exception_context::{ContextValue, ExceptionContext};
use crate::exceptions::{Error, ErrorKind, Result};

type Body = Pin<Box<dyn StdFuture<Output = Result<()>>>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GenState {
    /// Not iterated yet.
    Created,
    /// Stopped at a `yield`.
    Suspended,
    /// Being polled.
    Running,
    /// Waiting inside the body (on I/O, a timer …) for an `anext()` in flight.
    Awaiting,
    /// Finished or closed.
    Closed,
}

struct Channel<T> {
    value: RefCell<Option<T>>,
    /// Set by `aclose()`: the pending `yield_` resumes with `GeneratorExit`.
    closing: Cell<bool>,
}

struct GenInner<T: 'static> {
    body: RefCell<Option<Body>>,
    channel: Rc<Channel<T>>,
    state: Cell<GenState>,
    registered_on: RefCell<Option<EventLoop>>,
    name: &'static str,
}

/// The handle a generator body yields through: `co.yield_(v).await?`.
pub struct Yielder<T> {
    channel: Rc<Channel<T>>,
}

impl<T> fmt::Debug for Yielder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<Yielder>")
    }
}

impl<T> Yielder<T> {
    /// Python's `yield value`: hands `value` to the consumer and waits until
    /// it asks for the next one. Resumes with `Err(GeneratorExit)` when the
    /// generator is being closed; let it out with `?` after any cleanup.
    pub fn yield_(&self, value: T) -> YieldNow<'_, T> {
        YieldNow {
            channel: &self.channel,
            value: Some(value),
        }
    }
}

/// The future of [`Yielder::yield_`].
pub struct YieldNow<'a, T> {
    channel: &'a Channel<T>,
    value: Option<T>,
}

impl<T> fmt::Debug for YieldNow<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<yield>")
    }
}

impl<T> Unpin for YieldNow<'_, T> {}

impl<T> StdFuture for YieldNow<'_, T> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if let Some(v) = this.value.take() {
            // Stored even while closing, so that `aclose()` sees a body that
            // ignored GeneratorExit and yielded again.
            *this.channel.value.borrow_mut() = Some(v);
            // Not woken: the consumer takes the value and polls again when
            // it wants the next one.
            return Poll::Pending;
        }
        if this.channel.closing.get() {
            return Poll::Ready(Err(Error::bare(ErrorKind::GeneratorExit)));
        }
        Poll::Ready(Ok(()))
    }
}

/// An async generator yielding `T`s (Python's `async def` with `yield`).
///
/// Build it from a body that receives a [`Yielder`]; consume it with
/// [`anext`](AsyncGenerator::anext) or as a `Stream`; close it with
/// [`aclose`](AsyncGenerator::aclose), which resumes the body with
/// `GeneratorExit` so it can run async cleanup. Once iterated inside a
/// running loop the generator is tracked by that loop, and
/// `loop.shutdown_asyncgens()` (called by `asyncio::run`) closes it if it is
/// still open.
///
/// ```
/// use asyncio_core::AsyncGenerator;
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let gen = AsyncGenerator::new(|co| async move {
///         for i in 0..3 {
///             co.yield_(i).await?;
///         }
///         Ok(())
///     });
///     let mut seen = Vec::new();
///     while let Some(v) = gen.anext().await? {
///         seen.push(v);
///     }
///     assert_eq!(seen, [0, 1, 2]);
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct AsyncGenerator<T: 'static> {
    inner: Rc<GenInner<T>>,
}

impl<T: 'static> Clone for AsyncGenerator<T> {
    fn clone(&self) -> Self {
        AsyncGenerator {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for AsyncGenerator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<async_generator object {} at {:p}>",
            self.inner.name,
            Rc::as_ptr(&self.inner)
        )
    }
}

impl<T: 'static> AsyncGenerator<T> {
    /// A generator running `body(yielder)`.
    pub fn new<B, F>(body: B) -> AsyncGenerator<T>
    where
        B: FnOnce(Yielder<T>) -> F,
        F: StdFuture<Output = Result<()>> + 'static,
    {
        let channel = Rc::new(Channel {
            value: RefCell::new(None),
            closing: Cell::new(false),
        });
        let fut = body(Yielder {
            channel: channel.clone(),
        });
        AsyncGenerator {
            inner: Rc::new(GenInner {
                body: RefCell::new(Some(Box::pin(fut))),
                channel,
                state: Cell::new(GenState::Created),
                registered_on: RefCell::new(None),
                name: std::any::type_name::<B>(),
            }),
        }
    }

    /// The next value (`await anext(agen)`): `Ok(None)` once the body
    /// returned; its error once (then the generator is closed).
    pub async fn anext(&self) -> Result<Option<T>> {
        Next {
            gen: self,
            started: false,
        }
        .await
    }

    /// Closes the generator (`await agen.aclose()`): a suspended body resumes
    /// with `GeneratorExit` and runs to its end.
    ///
    /// Errors: `RuntimeError("async generator ignored GeneratorExit")` if the
    /// body yields again; `"aclose(): asynchronous generator is already
    /// running"`; any other error the body ends with.
    pub async fn aclose(&self) -> Result<()> {
        aclose_inner(self.inner.clone()).await
    }

    fn first_iteration(&self) {
        if self.inner.registered_on.borrow().is_some() {
            return;
        }
        if let Some(loop_) = _get_running_loop() {
            if loop_.inner.asyncgens_shutdown_called.get() {
                crate::log::warning(format_args!("asynchronous generator {:?} was scheduled after loop.shutdown_asyncgens() call",
                    self
                ));
            }
            let weak = Rc::downgrade(&self.inner);
            let weak: Weak<dyn AsyncGenObj> = weak;
            loop_.inner.asyncgens.borrow_mut().add(weak);
            *self.inner.registered_on.borrow_mut() = Some(loop_);
        }
    }

    /// Polls the body for the next value; `continuing` is true for the
    /// `anext()` that left the body waiting.
    fn poll_next_value(&self, cx: &mut Context<'_>, continuing: bool) -> Poll<Result<Option<T>>> {
        let inner = &self.inner;
        match inner.state.get() {
            GenState::Closed => return Poll::Ready(Ok(None)),
            GenState::Awaiting if continuing => {}
            GenState::Running | GenState::Awaiting => {
                return Poll::Ready(Err(Error::runtime(
                    "anext(): asynchronous generator is already running",
                )))
            }
            GenState::Created => self.first_iteration(),
            GenState::Suspended => {}
        }
        inner.state.set(GenState::Running);
        let polled = {
            let mut body = inner.body.borrow_mut();
            match body.as_mut() {
                // A panicking body ends the generator like a raising one.
                Some(b) => {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.as_mut().poll(cx)))
                        .unwrap_or_else(|p| Poll::Ready(Err(Error::panic(&*p))))
                }
                None => Poll::Ready(Ok(())),
            }
        };
        match polled {
            Poll::Ready(outcome) => {
                inner.state.set(GenState::Closed);
                let body = inner.body.borrow_mut().take();
                drop(body);
                Poll::Ready(outcome.map(|()| None))
            }
            Poll::Pending => {
                let value = inner.channel.value.borrow_mut().take();
                match value {
                    Some(v) => {
                        inner.state.set(GenState::Suspended);
                        Poll::Ready(Ok(Some(v)))
                    }
                    None => {
                        // Waiting on real I/O inside the body.
                        inner.state.set(GenState::Awaiting);
                        Poll::Pending
                    }
                }
            }
        }
    }
}

struct Next<'a, T: 'static> {
    gen: &'a AsyncGenerator<T>,
    /// Set once this `anext()` left the body waiting.
    started: bool,
}

impl<T: 'static> StdFuture for Next<'_, T> {
    type Output = Result<Option<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = self.gen.poll_next_value(cx, self.started);
        if polled.is_pending() {
            self.started = true;
        }
        polled
    }
}

impl<T: 'static> Drop for Next<'_, T> {
    fn drop(&mut self) {
        // An abandoned `anext()` leaves the body where it stopped; the next
        // one resumes it.
        if self.started && self.gen.inner.state.get() == GenState::Awaiting {
            self.gen.inner.state.set(GenState::Suspended);
        }
    }
}

impl<T: 'static> Stream for AsyncGenerator<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        match self.poll_next_value(cx, true) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(v))) => Poll::Ready(Some(Ok(v))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }
}

async fn aclose_inner<T: 'static>(inner: Rc<GenInner<T>>) -> Result<()> {
    match inner.state.get() {
        GenState::Closed => return Ok(()),
        GenState::Created => {
            inner.state.set(GenState::Closed);
            let body = inner.body.borrow_mut().take();
            drop(body);
            return Ok(());
        }
        GenState::Running | GenState::Awaiting => {
            return Err(Error::runtime(
                "aclose(): asynchronous generator is already running",
            ))
        }
        GenState::Suspended => {}
    }
    inner.channel.closing.set(true);
    inner.state.set(GenState::Running);
    let outcome = std::future::poll_fn(|cx| {
        let mut body = inner.body.borrow_mut();
        let Some(b) = body.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.as_mut().poll(cx)))
            .unwrap_or_else(|p| Poll::Ready(Err(Error::panic(&*p))));
        match polled {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                if inner.channel.value.borrow_mut().take().is_some() {
                    Poll::Ready(Err(Error::runtime("async generator ignored GeneratorExit")))
                } else {
                    Poll::Pending
                }
            }
        }
    })
    .await;
    inner.state.set(GenState::Closed);
    let body = inner.body.borrow_mut().take();
    drop(body);
    match outcome {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::GeneratorExit | ErrorKind::StopAsyncIteration
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A tracked generator, without its item type.
pub(crate) trait AsyncGenObj {
    fn aclose_dyn(self: Rc<Self>) -> Pin<Box<dyn StdFuture<Output = Result<()>>>>;
    fn repr(&self) -> String;
    fn is_open(&self) -> bool;
}

impl<T: 'static> AsyncGenObj for GenInner<T> {
    fn aclose_dyn(self: Rc<Self>) -> Pin<Box<dyn StdFuture<Output = Result<()>>>> {
        Box::pin(aclose_inner(self))
    }

    fn repr(&self) -> String {
        format!(
            "<async_generator object {} at {:p}>",
            self.name, self as *const _
        )
    }

    fn is_open(&self) -> bool {
        self.state.get() != GenState::Closed
    }
}

impl<T: 'static> Drop for GenInner<T> {
    fn drop(&mut self) {
        // Python's asyncgen finalizer hook: an unclosed generator that is
        // collected gets `aclose()` scheduled as a task. Here the body is
        // moved into that task.
        if self.state.get() != GenState::Suspended {
            return;
        }
        let Some(loop_) = self.registered_on.borrow_mut().take() else {
            return;
        };
        let Some(body) = self.body.borrow_mut().take() else {
            return;
        };
        let orphan = Rc::new(GenInner {
            body: RefCell::new(Some(body)),
            channel: self.channel.clone(),
            state: Cell::new(GenState::Suspended),
            registered_on: RefCell::new(None),
            name: self.name,
        });
        let _ = loop_.create_task(aclose_inner(orphan));
    }
}

/// The loop's set of live generators (Python's `loop._asyncgens` WeakSet).
#[derive(Default)]
pub(crate) struct AsyncGenRegistry {
    gens: Vec<Weak<dyn AsyncGenObj>>,
}

impl AsyncGenRegistry {
    fn add(&mut self, gen: Weak<dyn AsyncGenObj>) {
        if self.gens.len() >= 64 && self.gens.len().is_power_of_two() {
            self.gens.retain(|g| g.strong_count() > 0);
        }
        self.gens.push(gen);
    }

    fn take_live(&mut self) -> Vec<Rc<dyn AsyncGenObj>> {
        std::mem::take(&mut self.gens)
            .into_iter()
            .filter_map(|g| g.upgrade())
            .filter(|g| g.is_open())
            .collect()
    }
}

pub(crate) async fn shutdown_asyncgens(loop_: &EventLoop) -> Result<()> {
    loop_.inner.asyncgens_shutdown_called.set(true);
    let closing = loop_.inner.asyncgens.borrow_mut().take_live();
    if closing.is_empty() {
        return Ok(());
    }
    let reprs: Vec<String> = closing.iter().map(|g| g.repr()).collect();
    let closes = closing.into_iter().map(|g| g.aclose_dyn());
    let results = crate::tasks::gather(closes).return_exceptions().await?;
    for (result, repr) in results.into_iter().zip(reprs) {
        if let Err(e) = result {
            let mut ctx = ExceptionContext::new(format!(
                "an error occurred during closing of asynchronous generator {repr}"
            ));
            ctx.exception = Some(e);
            ctx.set("asyncgen", ContextValue::Text(repr));
            loop_.call_exception_handler(ctx);
        }
    }
    Ok(())
}
