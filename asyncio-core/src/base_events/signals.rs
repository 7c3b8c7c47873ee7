//! `loop.add_signal_handler` and `loop.remove_signal_handler` (CPython's
//! `_UnixSelectorEventLoop`).

use super::EventLoop;
use crate::events::CallbackResult;
use crate::exceptions::{Error, Result};

impl EventLoop {
    /// `loop.add_signal_handler(sig, callback)`: runs `callback` on the loop,
    /// like a `call_soon` callback (never inside the OS signal handler),
    /// once for every `sig` the process receives, until
    /// [`remove_signal_handler`](EventLoop::remove_signal_handler) or
    /// `close()`. Adding again replaces the callback. An error the callback
    /// returns goes to the exception handler ("Exception in callback …") and
    /// the loop goes on.
    ///
    /// Unlike CPython, a loop on any thread may handle signals, and several
    /// loops may handle the same signal: each runs its own callback. Signals
    /// received while the loop is not running are delivered when it runs
    /// (several of them may then coalesce, but never all).
    ///
    /// Errors, in CPython's order: `ValueError("invalid signal number N")`;
    /// `"Event loop is closed"`; `RuntimeError("sig 9 cannot be caught")`
    /// for SIGKILL and SIGSTOP.
    ///
    /// ```no_run
    /// # fn f(loop_: &asyncio_core::EventLoop) -> asyncio_core::Result<()> {
    /// let l = loop_.clone();
    /// loop_.add_signal_handler(libc::SIGTERM, move || l.stop())?;
    /// loop_.run_forever()?;
    /// # Ok(()) }
    /// # mod libc { pub const SIGTERM: i32 = 15; }
    /// ```
    #[track_caller]
    pub fn add_signal_handler<F, R>(&self, sig: i32, callback: F) -> Result<()>
    where
        F: FnMut() -> R + 'static,
        R: CallbackResult + 'static,
    {
        let net = self.unix_backend()?;
        net.check_signal(sig)?;
        self.check_closed()?;
        let handle = crate::events::Handle::new_repeating(callback, self.inner.debug());
        net.add_signal_handler(self, sig, handle)
    }

    /// `loop.remove_signal_handler(sig)`: `true` if a handler was removed,
    /// `false` if there was none. The signal gets back the disposition it
    /// had before the first handler (its default, unless something else had
    /// installed one), once no other loop handles it.
    ///
    /// Errors: `ValueError("invalid signal number N")`.
    pub fn remove_signal_handler(&self, sig: i32) -> Result<bool> {
        let net = self.unix_backend()?;
        net.check_signal(sig)?;
        Ok(net.remove_signal_handler(sig))
    }

    /// The implementation's I/O half, even on a closed loop (the signal
    /// checks come before the closed check, as in CPython).
    fn unix_backend(&self) -> Result<&dyn super::AbstractNetwork> {
        self.inner
            .backend()
            .network()
            .ok_or_else(|| Error::runtime("this event loop has no signal support"))
    }
}
