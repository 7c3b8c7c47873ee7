//! The Tokio implementation of asyncio for Rust's event loop.
//!
//! [`TokioEventLoop`] drives the scheduling of `asyncio-core`'s
//! [`EventLoop`](asyncio_core::EventLoop) with a Tokio current-thread
//! `LocalRuntime`: Tokio's reactor waits for I/O and the earliest timer, and
//! Tokio APIs (`tokio::net`, `tokio::spawn_local`, `tokio::time`, …) keep
//! working inside asyncio callbacks and tasks.

#![warn(missing_docs, missing_debug_implementations)]

mod base_events;
mod datagram;
mod dns;
mod fd_events;
mod selector_events;
mod transport_support;
mod unix_events;
mod unix_pipes;
pub mod unix_signals;
mod unix_spawn;
mod unix_subprocess;

pub use unix_events::{new_event_loop, TokioEventLoop};
pub use unix_subprocess::force_threaded_child_watcher;
