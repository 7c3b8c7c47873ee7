//! Watching file descriptors (`add_reader`, `add_writer`, …: the selector
//! part of CPython's `selector_events.py`).

use std::os::fd::RawFd;

use super::EventLoop;
use crate::events::{CallbackResult, Handle};
use crate::exceptions::Result;

impl EventLoop {
    /// `loop.add_reader(fd, callback)`: runs `callback` (like a `call_soon`
    /// callback, in a copy of the current context) in every loop iteration
    /// in which `fd` is readable — level-triggered, as CPython's selector
    /// loop — until [`remove_reader`](EventLoop::remove_reader). A second
    /// reader on the same descriptor replaces the first, whose handle is
    /// cancelled. The descriptor stays the caller's.
    ///
    /// Errors: `"Event loop is closed"`; `RuntimeError("File descriptor N is
    /// used by transport …")` for a transport's socket; an `OSError` if the
    /// descriptor cannot be watched (closed, or a regular file).
    ///
    /// ```no_run
    /// # fn f(loop_: &asyncio_core::EventLoop) -> asyncio_core::Result<()> {
    /// use std::io::Write;
    /// use std::os::fd::AsRawFd;
    /// let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
    /// let fd = b.as_raw_fd();
    /// let l = loop_.clone();
    /// loop_.add_reader(fd, move || {
    ///     l.remove_reader(fd)?;
    ///     l.stop();
    ///     Ok(())
    /// })?;
    /// a.write_all(b"ping")?;
    /// loop_.run_forever()?;
    /// # Ok(()) }
    /// ```
    ///
    /// (The README runs this example.)
    #[track_caller]
    pub fn add_reader<F, R>(&self, fd: RawFd, callback: F) -> Result<Handle>
    where
        F: FnMut() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.add_fd(fd, callback, true)
    }

    /// `loop.add_writer(fd, callback)`: as [`add_reader`](EventLoop::add_reader),
    /// while `fd` is writable.
    #[track_caller]
    pub fn add_writer<F, R>(&self, fd: RawFd, callback: F) -> Result<Handle>
    where
        F: FnMut() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.add_fd(fd, callback, false)
    }

    /// `loop.remove_reader(fd)`: `true` if a reader was removed; `false` on
    /// a closed loop or without one. Errors as [`add_reader`](EventLoop::add_reader)
    /// for a transport's socket.
    pub fn remove_reader(&self, fd: RawFd) -> Result<bool> {
        self.remove_fd(fd, true)
    }

    /// `loop.remove_writer(fd)`: see [`remove_reader`](EventLoop::remove_reader).
    pub fn remove_writer(&self, fd: RawFd) -> Result<bool> {
        self.remove_fd(fd, false)
    }

    #[track_caller]
    fn add_fd<F, R>(&self, fd: RawFd, callback: F, reading: bool) -> Result<Handle>
    where
        F: FnMut() -> R + 'static,
        R: CallbackResult + 'static,
    {
        self.check_closed()?;
        let net = self.network()?;
        net.ensure_fd_no_transport(fd)?;
        let handle = self.repeating_handle(callback);
        net.add_fd_callback(self, fd, handle.clone(), reading)?;
        Ok(handle)
    }

    /// The loop-internal `_add_reader`/`_add_writer` (no transport check),
    /// for the `sock_*` coroutines.
    #[track_caller]
    pub(crate) fn add_fd_internal<F>(&self, fd: RawFd, callback: F, reading: bool) -> Result<Handle>
    where
        F: FnMut() + 'static,
    {
        self.check_closed()?;
        let handle = self.repeating_handle(callback);
        self.network()?
            .add_fd_callback(self, fd, handle.clone(), reading)?;
        Ok(handle)
    }

    /// The loop-internal `_remove_reader`/`_remove_writer`.
    pub(crate) fn remove_fd_internal(&self, fd: RawFd, reading: bool) -> bool {
        if self.is_closed() {
            return false;
        }
        match self.network() {
            Ok(net) => net.remove_fd_callback(fd, reading),
            Err(_) => false,
        }
    }

    fn remove_fd(&self, fd: RawFd, reading: bool) -> Result<bool> {
        if self.is_closed() {
            return Ok(false);
        }
        self.network()?.ensure_fd_no_transport(fd)?;
        Ok(self.remove_fd_internal(fd, reading))
    }

    /// A handle whose callback may run many times (a reader or writer).
    #[track_caller]
    fn repeating_handle<F, R>(&self, callback: F) -> Handle
    where
        F: FnMut() -> R + 'static,
        R: CallbackResult + 'static,
    {
        Handle::new_repeating(callback, self.inner.debug())
    }
}
