//! # asyncio for Rust
//!
//! Python's `asyncio`, re-created in Rust on top of Tokio: the same event loop,
//! callbacks, futures, tasks and combinators, under the same names, with the
//! same ordering guarantees and error messages — and Rust's speed.
//!
//! ```
//! #[asyncio::main]
//! async fn main() -> asyncio::Result<()> {
//!     let loop_ = asyncio::get_running_loop()?;
//!     loop_.call_soon(|| println!("Hello World"))?;
//!     let (a, b) = asyncio::gather!(
//!         async { asyncio::sleep(0.01).await?; Ok(1) },
//!         async { Ok("two") },
//!     )
//!     .await?;
//!     assert_eq!((a, b), (1, "two"));
//!     Ok(())
//! }
//! ```
//!
//! Naming: functions and methods keep their Python names; keyword arguments
//! are builder methods; Python exceptions are kinds of [`Error`]; delays take
//! `f64` seconds or a `Duration`. A loop is bound to its thread (`!Send`), as
//! in Python; other threads use [`EventLoop::threadsafe`].

#![warn(missing_docs, missing_debug_implementations)]

#[doc(hidden)]
pub mod __private;
pub mod events;
mod per_core;
pub mod runners;

pub use asyncio_core::protocols::{
    BaseProtocol, Buffered, BufferedProtocol, DatagramProtocol, Protocol, StreamProtocolRef,
    SubprocessProtocol,
};
pub use asyncio_core::streams::{
    open_connection, open_unix_connection, start_server, start_unix_server, StreamReader,
    StreamReaderProtocol, StreamWriter,
};
pub use asyncio_core::subprocess::{create_subprocess_exec, create_subprocess_shell, Process};
pub use asyncio_core::transports::{
    BaseTransport, DatagramTransport, ExtraInfo, ReadTransport, SubprocessTransport, Transport,
    TransportSocket, WriteTransport,
};
pub use asyncio_core::{
    _get_running_loop, _set_running_loop, all_tasks, all_tasks_of, as_completed, asyncgen,
    contextvars, create_task, create_task_in, create_task_named, current_task, current_task_of,
    default_max_workers, eager_task_factory, ensure_future, exception_context, exceptions,
    executor, gather, get_running_loop, run_coroutine_threadsafe, shield, sleep, sleep_with,
    taskgroups, tasks, timeout, timeout_at, timeouts, to_thread, wait, wait_for, wrap_future,
    AbstractEventLoop, AbstractEventLoopPolicy, AnyTask, AsCompleted, AsyncGenerator, Awaitable,
    BaseDefaultEventLoopPolicy, Bytes, CallbackId, CallbackResult, ConcurrentFuture, ContextValue,
    Delay, Error, ErrorKind, EventLoop, ExceptionContext, ExceptionHandler, Executor, Future,
    GatheringFuture, GatheringFutureAll, Handle, Job, Result, ReturnWhen, Sleep, Task, TaskFactory,
    TaskGroup, TaskInit, ThreadPoolExecutor, ThreadsafeHandle, ThreadsafeLoop, Timeout,
    TimerHandle, Wait, Yielder,
};
pub use asyncio_core::{
    base_events, cancellable, protocols, socket, transports, AbstractNetwork, AbstractServer,
    AddrInfo, Address, Cancellable, Registration, Schedulable, Server,
};
pub use asyncio_core::{
    locks, queues, Barrier, BoundedSemaphore, Condition, Event, LifoQueue, Lock, LockGuard,
    PriorityQueue, Queue, Semaphore, SemaphoreGuard,
};
#[cfg(feature = "tls")]
pub use asyncio_core::{ssl, sslproto};
pub use asyncio_core::{streams, subprocess};
pub use asyncio_macros::{main, test};

/// Test helpers: a virtual clock for programs full of sleeps and timeouts.
///
/// In tests, `#[asyncio::test(virtual_time)]`; by hand:
///
/// ```
/// use asyncio::RunOptions;
/// use asyncio::testing::new_virtual_time_loop;
///
/// let slept = asyncio::run_with(
///     async {
///         let loop_ = asyncio::get_running_loop()?;
///         let start = loop_.time();
///         asyncio::sleep(3600.0).await?; // an hour, at once
///         Ok(loop_.time() - start)
///     },
///     RunOptions::new().loop_factory(new_virtual_time_loop),
/// )?;
/// assert_eq!(slept, 3600.0);
/// # Ok::<(), asyncio::Error>(())
/// ```
pub mod testing {
    pub use asyncio_core::testing::{use_virtual_time, VirtualClock};

    /// A new loop (the Tokio one) on virtual time that jumps to the next
    /// timer as soon as it is idle: the loop of
    /// `#[asyncio::test(virtual_time)]` and `#[asyncio::main(virtual_time)]`.
    ///
    /// Errors: those of [`new_event_loop`](crate::new_event_loop).
    pub fn new_virtual_time_loop() -> crate::Result<crate::EventLoop> {
        let loop_ = crate::new_event_loop()?;
        use_virtual_time(&loop_, Some(0.0))?;
        Ok(loop_)
    }
}

/// Signal numbers for [`EventLoop::add_signal_handler`] and
/// [`SubprocessTransport::send_signal`], named as in Python's `signal`
/// module (`asyncio::signal::SIGTERM`).
pub mod signal {
    pub use asyncio_tokio::unix_signals::consts::*;
}
pub use asyncio_tokio::TokioEventLoop;
pub use events::{
    get_event_loop, get_event_loop_policy, new_event_loop, set_event_loop, set_event_loop_policy,
    DefaultEventLoopPolicy,
};
pub use per_core::run_per_core;
pub use runners::{run, run_with, RunOptions, Runner};

/// Names every asyncio program uses: `use asyncio::prelude::*;`.
pub mod prelude {
    pub use crate::{
        create_task, gather, get_running_loop, sleep, wait_for, BaseProtocol, BaseTransport, Error,
        EventLoop, Future, Protocol, ReadTransport, Result, Task, Transport, WriteTransport,
    };
}

/// The porting guide's examples, compiled and run as doctests.
#[doc = include_str!("../PORTING.md")]
#[cfg(doctest)]
pub struct PortingDoctests;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
