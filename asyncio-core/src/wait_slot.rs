//! A one-waiter wake-up slot: what a stream's `_waiter` future does, without
//! allocating a future for every wait.
//!
//! CPython's `StreamReader` makes a new future each time a read waits and
//! sets its result when data arrives. Here the reader owns one [`WaitSlot`]
//! instead: waiting registers the task's waker in it and data arriving
//! wakes it, so the task is scheduled exactly as the future's done callback
//! would schedule it (one ready-queue entry), and a cancellation of the task
//! ends the wait with `CancelledError` as cancelling the future would —
//! also when it comes after the wake-up, before the task ran (CPython's
//! `must_cancel` wins over a done waiter).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::base_events::EventLoop;
use crate::exceptions::{Error, Result};

/// A place for at most one waiting task (see the module docs).
///
/// Like CPython's `_waiter`, the slot is free again as soon as the wait is
/// woken (`_wakeup_waiter` sets `_waiter = None` before the task resumes), so
/// each wait carries a number to know whether it is still the pending one.
#[derive(Default)]
pub(crate) struct WaitSlot {
    /// The number of the pending wait, if one is pending.
    pending: Cell<Option<u64>>,
    last: Cell<u64>,
    /// The error a woken wait is to raise, with the wait's number.
    error: RefCell<Option<(u64, Error)>>,
    waker: RefCell<Option<Waker>>,
}

impl WaitSlot {
    /// `True` while a wait is pending (CPython: `self._waiter is not None`).
    #[inline]
    pub(crate) fn is_waiting(&self) -> bool {
        self.pending.get().is_some()
    }

    /// Ends the pending wait with `outcome` (`set_result(None)` or
    /// `set_exception(exc)` on the waiter); does nothing when none is.
    #[inline]
    pub(crate) fn wake(&self, outcome: Result<()>) {
        let Some(number) = self.pending.take() else {
            return;
        };
        if let Err(e) = outcome {
            *self.error.borrow_mut() = Some((number, e));
        }
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Starts a wait for a task of `loop_`. The caller checks
    /// [`is_waiting`](WaitSlot::is_waiting) first: a second wait would take
    /// the first one's place.
    #[inline]
    pub(crate) fn wait<'a>(&'a self, loop_: &'a EventLoop) -> SlotWait<'a> {
        let number = self.last.get() + 1;
        self.last.set(number);
        self.pending.set(Some(number));
        SlotWait {
            slot: self,
            number,
            loop_: Some(loop_),
        }
    }
}

/// One wait on a [`WaitSlot`]; dropping it ends the wait (CPython's
/// `finally: self._waiter = None`).
pub(crate) struct SlotWait<'a> {
    slot: &'a WaitSlot,
    number: u64,
    /// The loop to check the awaiting task against, until the first poll.
    loop_: Option<&'a EventLoop>,
}

impl SlotWait<'_> {
    fn is_pending(&self) -> bool {
        self.slot.pending.get() == Some(self.number)
    }
}

impl std::future::Future for SlotWait<'_> {
    type Output = Result<()>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Awaiting another loop's future fails in CPython; checked once.
        let loop_ = self.loop_.take();
        if let Some(e) = crate::tasks::await_point_error(loop_) {
            return Poll::Ready(Err(e));
        }
        let slot = self.slot;
        if self.is_pending() {
            let mut waker = slot.waker.borrow_mut();
            match waker.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let mut error = slot.error.borrow_mut();
        match error.take() {
            Some((number, e)) if number == self.number => Poll::Ready(Err(e)),
            other => {
                *error = other;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        if self.is_pending() {
            self.slot.pending.set(None);
            let waker = self.slot.waker.borrow_mut().take();
            drop(waker);
        }
        let mut error = self.slot.error.borrow_mut();
        if error.as_ref().is_some_and(|(n, _)| *n == self.number) {
            let mine = error.take();
            drop(error);
            drop(mine);
        }
    }
}
