//! Helpers shared by the integration tests: capturing `tracing` output and
//! recording what reaches a loop's exception handler.

#![allow(dead_code)]

mod child;
mod logs;
#[allow(unused_imports)]
pub use child::{in_child, open_fds};
#[allow(unused_imports)]
pub use logs::{capture_logs, LogRecord};

use std::cell::RefCell;
use std::rc::Rc;

use asyncio::{ErrorKind, EventLoop, ExceptionContext};

/// What a test's exception handler saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub message: String,
    pub exception: Option<(ErrorKind, String)>,
    pub keys: Vec<String>,
    pub rendered: String,
    pub context: ExceptionContext,
}

/// Installs an exception handler on `loop_` that records every context.
pub fn record_exceptions(loop_: &EventLoop) -> Rc<RefCell<Vec<Seen>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    loop_.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        sink.borrow_mut().push(Seen {
            message: ctx.message.clone(),
            exception: ctx
                .exception
                .as_ref()
                .map(|e| (e.kind(), e.message().to_owned())),
            keys: ctx.keys().map(str::to_owned).collect(),
            rendered: ctx.render(),
            context: ctx.clone(),
        });
    }));
    seen
}

/// A fresh Tokio-backed loop.
pub fn new_loop() -> EventLoop {
    asyncio::new_event_loop().expect("new_event_loop")
}

/// Schedules `loop_.stop()` with `call_soon`.
pub fn stop_soon(loop_: &EventLoop) {
    let l = loop_.clone();
    loop_.call_soon(move || l.stop()).unwrap();
}

/// Runs `body` on a new loop until it completes, closes the loop, and
/// returns the body's value (failing the test on an error).
pub fn on_loop<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = asyncio::Result<T>> + 'static,
{
    let loop_ = asyncio::new_event_loop().expect("new_event_loop");
    let fut = body(loop_.clone());
    let out = loop_.run_until_complete(fut).expect("run_until_complete");
    loop_.close().expect("close");
    out
}

/// An ordered record of events, shared by callbacks.
pub type Log = Rc<RefCell<Vec<String>>>;

/// A new, empty [`Log`].
pub fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// Appends an event.
pub fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

/// The events so far.
pub fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

/// `{:?}` of a value (Python's `repr()` for the library's types).
pub fn repr<T: std::fmt::Debug>(x: T) -> String {
    format!("{x:?}")
}
