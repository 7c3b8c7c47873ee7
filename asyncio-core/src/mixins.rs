//! CPython's `mixins.py`: binding a synchronization primitive or queue to
//! the loop that first needs it (`_LoopBoundMixin`), and the small helpers
//! the primitives of [`locks`](crate::locks) and [`queues`](crate::queues)
//! share.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::Location;
use std::rc::{Rc, Weak};

use crate::base_events::LoopInner;
use crate::events::with_running_loop;
use crate::exceptions::{Error, Result};
use crate::futures::Future;

/// `_LoopBoundMixin`: the loop an object is bound to, set by the first
/// [`create_future`](LoopBound::create_future) (CPython's `_get_loop()`).
///
/// The loop is held weakly (so that a lock kept by a task of the loop does
/// not keep the loop alive); the weak pointer keeps the loop's allocation,
/// so a later loop can never be mistaken for it.
#[derive(Default)]
pub(crate) struct LoopBound {
    loop_: RefCell<Option<Weak<LoopInner>>>,
}

impl LoopBound {
    /// A future on the running loop, binding `self` to that loop on first
    /// use (`self._get_loop().create_future()`).
    ///
    /// Errors: `RuntimeError("{repr} is bound to a different event loop")`
    /// when the running loop is not the bound one (or no loop runs in this
    /// thread and one is bound); `RuntimeError("no running event loop")` when
    /// no loop runs and none is bound (CPython fails there with an
    /// `AttributeError` on `None`).
    pub(crate) fn create_future(
        &self,
        repr: impl FnOnce() -> String,
        location: &'static Location<'static>,
    ) -> Result<Future<()>> {
        with_running_loop(|running| {
            let mut bound = self.loop_.borrow_mut();
            if bound.is_none() {
                match running {
                    Some(l) => *bound = Some(Rc::downgrade(l)),
                    None => return Err(Error::runtime("no running event loop")),
                }
            }
            match (running, bound.as_ref()) {
                (Some(l), Some(b)) if std::ptr::eq(b.as_ptr(), Rc::as_ptr(l)) => {
                    Ok(Future::with_location(l, location))
                }
                _ => {
                    drop(bound);
                    Err(Error::runtime(format!(
                        "{} is bound to a different event loop",
                        repr()
                    )))
                }
            }
        })
    }
}

/// A deque of waiter futures, as CPython's `collections.deque` of futures.
pub(crate) type Waiters = RefCell<VecDeque<Future<()>>>;

/// `waiters.remove(fut)` (by identity); `false` when it was not there (the
/// `ValueError` CPython's queues ignore). The removed handle is dropped
/// after the borrow ends.
pub(crate) fn remove_waiter(waiters: &Waiters, fut: &Future<()>) -> bool {
    let removed = {
        let mut w = waiters.borrow_mut();
        match w.iter().position(|f| f.ptr_eq(fut)) {
            Some(i) => w.remove(i),
            None => None,
        }
    };
    removed.is_some()
}

/// Runs a clean-up when dropped unless disarmed: what a Python `finally`
/// or `except` block does when a coroutine is closed, done here when a
/// Rust future is dropped before it completes.
pub(crate) struct OnDrop<F: FnOnce()> {
    action: Option<F>,
}

impl<F: FnOnce()> OnDrop<F> {
    pub(crate) fn new(action: F) -> OnDrop<F> {
        OnDrop {
            action: Some(action),
        }
    }

    /// The future went on normally: no clean-up on drop.
    pub(crate) fn disarm(mut self) {
        self.action = None;
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(action) = self.action.take() {
            action();
        }
    }
}

/// `<{module}.{name} object at 0x… [{extra}]>`, the repr of CPython's
/// primitives (`object.__repr__` with the state appended).
pub(crate) fn object_repr(name: &str, addr: *const (), extra: &str) -> String {
    format!("<asyncio.locks.{name} object at {addr:p} [{extra}]>")
}
