//! What `#[asyncio::main]` / `#[asyncio::test]` expand to use; not API.
//!
//! `(&mut &mut slot).into_task_result()` finds [`ErrorOutput`] when the
//! body returns `asyncio::Result` (the receiver type matches as it is), and
//! [`PlainOutput`] for anything else (after one dereference): the autoref
//! way to pick an impl by type without specialization.

use crate::{Error, ErrorKind, Result};

/// Wraps the body's output to pick, by autoref, how the runner's task ends.
#[derive(Debug)]
pub struct Output<T>(pub T);

/// A body returning `asyncio::Result`: a `CancelledError` (or
/// `KeyboardInterrupt`/`SystemExit`) it ends with ends the main task too,
/// so the runner sees the cancellation Ctrl-C caused, as CPython's does.
pub trait ErrorOutput<T> {
    /// The main task's outcome.
    fn into_task_result(self) -> Result<Result<T>>;
}

impl<T> ErrorOutput<T> for &mut &mut Option<Output<Result<T>>> {
    fn into_task_result(self) -> Result<Result<T>> {
        match self.take().map(|o| o.0) {
            Some(Err(e)) if e.is_cancelled() || e.kind().is_exit() => Err(e),
            Some(other) => Ok(other),
            None => Err(Error::runtime("the main body's output was taken twice")),
        }
    }
}

/// Any other output: the task's value as it is.
pub trait PlainOutput<T> {
    /// The main task's outcome.
    fn into_task_result(self) -> Result<T>;
}

impl<T> PlainOutput<T> for &mut Option<Output<T>> {
    fn into_task_result(self) -> Result<T> {
        self.take()
            .map(|o| o.0)
            .ok_or_else(|| Error::runtime("the main body's output was taken twice"))
    }
}

/// `asyncio.run` interrupted by Ctrl-C, at the end of `main`: as Python,
/// print `KeyboardInterrupt` and die of SIGINT (exit status 130 in a shell).
pub fn exit_interrupted() -> ! {
    eprintln!("KeyboardInterrupt");
    // SAFETY: restores SIGINT's default action and sends it to this
    // process; nothing else runs in between that depends on the handler.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::kill(libc::getpid(), libc::SIGINT);
    }
    std::process::exit(130)
}

/// `true` for the error `main` reports by dying of SIGINT.
pub fn is_interrupt(e: &Error) -> bool {
    e.kind() == ErrorKind::KeyboardInterrupt
}
