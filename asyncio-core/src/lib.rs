//! The backend-independent core of asyncio for Rust: the event loop's
//! scheduling (ready queue, timers), futures, tasks, and the functions
//! written against them (`sleep`, `gather`, `wait_for`, `TaskGroup`, …).
//!
//! Users depend on the `asyncio` crate, which re-exports all of this and
//! wires in the Tokio implementation. This crate's module names mirror
//! CPython's `asyncio` package.

#![warn(missing_docs, missing_debug_implementations)]

pub mod asyncgen;
pub mod base_events;
pub mod contextvars;
pub mod coroutines;
pub mod events;
pub mod exception_context;
pub mod exceptions;
pub mod executor;
pub mod format_helpers;
pub mod futures;
pub mod locks;
pub mod log;
mod mixins;
pub mod protocols;
pub mod queues;
pub mod slots;
pub mod socket;
#[cfg(feature = "tls")]
pub mod ssl;
#[cfg(feature = "tls")]
pub mod sslproto;
pub mod streams;
pub mod subprocess;
pub mod taskgroups;
pub mod tasks;
pub mod testing;
pub mod timeouts;
mod timer_heap;
pub mod transports;
mod wait_slot;

pub use asyncgen::{AsyncGenerator, Yielder};
pub use base_events::{
    AbstractNetwork, AbstractServer, AddrInfo, EventLoop, Listener, Server, SourceLocation,
    ThreadsafeHandle, ThreadsafeLoop,
};
/// Python's `bytes` as the streams give them: an immutable, cheaply cloned
/// and sliced byte string ([`bytes::Bytes`], the type Tokio's ecosystem
/// shares). It derefs to `[u8]`, compares with `&[u8]`, `&str` and
/// `Vec<u8>`, and prints as `b"..."`.
pub use bytes::Bytes;
pub use events::{
    _get_running_loop, _set_running_loop, get_running_loop, AbstractEventLoop,
    AbstractEventLoopPolicy, BaseDefaultEventLoopPolicy, CallbackResult, Delay, Handle,
    TimerHandle,
};
pub use exception_context::{ContextValue, ExceptionContext, ExceptionHandler};
pub use exceptions::{Error, ErrorKind, Result};
pub use executor::{default_max_workers, Executor, Job, ThreadPoolExecutor};
pub use futures::{ensure_future, Awaitable, CallbackId, Future, FutureAwait, TakeFuture};
pub use locks::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, Semaphore, SemaphoreGuard,
};
pub use queues::{LifoQueue, PriorityQueue, Queue};
pub use slots::{Registration, Schedulable};
pub use taskgroups::TaskGroup;
pub use tasks::{
    all_tasks, all_tasks_of, as_completed, cancellable, create_task, create_task_in,
    create_task_named, current_task, current_task_of, eager_task_factory, gather,
    run_coroutine_threadsafe, shield, sleep, sleep_with, wait, wrap_future, AnyTask, AsCompleted,
    Cancellable, ConcurrentFuture, GatheringFuture, GatheringFutureAll, ReturnWhen, Sleep, Task,
    TaskFactory, TaskInit, Wait,
};
pub use timeouts::{timeout, timeout_at, wait_for, Timeout, TimeoutArg};
pub use transports::Address;

/// `asyncio.to_thread(func)`: runs `func` in the running loop's default
/// executor and returns a future for its result.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let n = loop_.run_until_complete(async {
///     asyncio_core::to_thread(|| (1..=10).sum::<i32>())?.await
/// })?;
/// assert_eq!(n, 55);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[track_caller]
pub fn to_thread<F, T>(func: F) -> Result<Future<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    get_running_loop()?.run_in_executor(None, func)
}
