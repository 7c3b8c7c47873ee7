//! Obtaining the event loop, and policies (CPython's `events.py`).

use std::fmt;
use std::sync::{Arc, RwLock};

use asyncio_core::{AbstractEventLoopPolicy, BaseDefaultEventLoopPolicy, EventLoop, Result};

/// The default policy: Tokio loops, one current loop per thread
/// (Python's `DefaultEventLoopPolicy`).
pub struct DefaultEventLoopPolicy {
    base: BaseDefaultEventLoopPolicy,
}

impl DefaultEventLoopPolicy {
    /// A new default policy (with its own per-thread current loops).
    pub fn new() -> DefaultEventLoopPolicy {
        DefaultEventLoopPolicy {
            base: BaseDefaultEventLoopPolicy::new(asyncio_tokio::new_event_loop),
        }
    }
}

impl Default for DefaultEventLoopPolicy {
    fn default() -> Self {
        DefaultEventLoopPolicy::new()
    }
}

impl fmt::Debug for DefaultEventLoopPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<DefaultEventLoopPolicy>")
    }
}

impl AbstractEventLoopPolicy for DefaultEventLoopPolicy {
    fn get_event_loop(&self) -> Result<EventLoop> {
        self.base.get_event_loop()
    }

    fn set_event_loop(&self, loop_: Option<EventLoop>) -> Result<()> {
        self.base.set_event_loop(loop_)
    }

    fn new_event_loop(&self) -> Result<EventLoop> {
        self.base.new_event_loop()
    }
}

static POLICY: RwLock<Option<Arc<dyn AbstractEventLoopPolicy>>> = RwLock::new(None);

/// The process-wide policy (`asyncio.get_event_loop_policy()`); a
/// [`DefaultEventLoopPolicy`] unless one was set.
pub fn get_event_loop_policy() -> Arc<dyn AbstractEventLoopPolicy> {
    if let Some(p) = POLICY.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return p.clone();
    }
    let mut slot = POLICY.write().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| Arc::new(DefaultEventLoopPolicy::new()))
        .clone()
}

/// Sets the process-wide policy; `None` restores a new default policy
/// (`asyncio.set_event_loop_policy()`).
pub fn set_event_loop_policy(policy: Option<Arc<dyn AbstractEventLoopPolicy>>) {
    *POLICY.write().unwrap_or_else(|p| p.into_inner()) = policy;
}

/// The running loop, else the policy's current loop of this thread
/// (`asyncio.get_event_loop()`). Never creates a loop: without one it fails
/// with `RuntimeError("There is no current event loop in thread 'NAME'.")`.
pub fn get_event_loop() -> Result<EventLoop> {
    if let Some(l) = asyncio_core::_get_running_loop() {
        return Ok(l);
    }
    get_event_loop_policy().get_event_loop()
}

/// Sets this thread's current loop through the policy (`asyncio.set_event_loop()`).
pub fn set_event_loop(loop_: Option<EventLoop>) -> Result<()> {
    get_event_loop_policy().set_event_loop(loop_)
}

/// A new loop from the policy (`asyncio.new_event_loop()`): a Tokio loop by default.
pub fn new_event_loop() -> Result<EventLoop> {
    get_event_loop_policy().new_event_loop()
}
