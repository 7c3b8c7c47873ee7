//! `TokioEventLoop`: the loop implementation on a Tokio `LocalRuntime`.

use std::cell::RefCell;
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;

use asyncio_core::base_events::{
    AbstractNetwork, AddrInfo, AddrInfoQuery, ConnectionOptions, ConnectionProtocolFactory,
    DatagramEndpointOptions, DatagramProtocolFactory, LocalBoxFuture, ServerOptions,
    ServerProtocolFactory, SubprocessOptions, SubprocessProtocolFactory, UnixConnectionOptions,
    UnixServerOptions,
};
use asyncio_core::transports::{
    DatagramTransport, ReadTransport, SubprocessTransport, Transport, WriteTransport,
};
use asyncio_core::{AbstractEventLoop, Error, EventLoop, Handle, Result, Server};
use std::collections::HashMap;
use std::sync::Arc;

use crate::fd_events::FdTable;
use crate::selector_events::{new_read_buffer, ReadBuffer};
use crate::unix_signals;
use crate::unix_subprocess::UnixSubprocessTransport;
use crate::{base_events, dns};
use tokio::runtime::{Builder, LocalOptions, LocalRuntime};

/// An event-loop implementation on a Tokio current-thread `LocalRuntime`
/// (one runtime per loop).
pub struct TokioEventLoop {
    runtime: RefCell<Option<LocalRuntime>>,
    timer: RefCell<Option<Pin<Box<tokio::time::Sleep>>>>,
    read_buffer: RefCell<Option<ReadBuffer>>,
    fds: FdTable,
    /// This loop's id with the process-wide signal dispatcher.
    signal_id: u64,
    /// `add_signal_handler`'s handlers (CPython's `_signal_handlers`).
    signal_handlers: RefCell<HashMap<i32, Handle>>,
    /// Children watched by a thread (no pidfd), by pid.
    children: RefCell<HashMap<u32, Rc<UnixSubprocessTransport>>>,
    /// Every subprocess transport made, released at `close()`.
    subprocesses: RefCell<Vec<std::rc::Weak<UnixSubprocessTransport>>>,
}

impl fmt::Debug for TokioEventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioEventLoop")
            .field("closed", &self.runtime.borrow().is_none())
            .finish()
    }
}

impl TokioEventLoop {
    /// A new implementation with its own runtime (I/O and time drivers on).
    pub fn new() -> Result<TokioEventLoop> {
        let runtime = Builder::new_current_thread()
            .enable_all()
            .build_local(LocalOptions::default())
            .map_err(Error::from)?;
        Ok(TokioEventLoop {
            runtime: RefCell::new(Some(runtime)),
            timer: RefCell::new(None),
            read_buffer: RefCell::new(None),
            fds: FdTable::default(),
            signal_id: unix_signals::new_id(),
            signal_handlers: RefCell::new(HashMap::new()),
            children: RefCell::new(HashMap::new()),
            subprocesses: RefCell::new(Vec::new()),
        })
    }

    /// The loop's read buffer (256 KiB, made on first use), lent to every
    /// transport's `data_received`.
    /// The descriptors the loop watches and the ones its transports own.
    pub(crate) fn fds(&self) -> &FdTable {
        &self.fds
    }

    pub(crate) fn read_buffer(&self) -> Option<ReadBuffer> {
        self.runtime.borrow().as_ref()?;
        Some(
            self.read_buffer
                .borrow_mut()
                .get_or_insert_with(new_read_buffer)
                .clone(),
        )
    }

    pub(crate) fn watch_child(&self, pid: u32, transport: Rc<UnixSubprocessTransport>) {
        self.children.borrow_mut().insert(pid, transport);
    }

    pub(crate) fn track_subprocess(&self, transport: &Rc<UnixSubprocessTransport>) {
        let mut all = self.subprocesses.borrow_mut();
        if all.len() >= 64 && all.len().is_power_of_two() {
            all.retain(|t| t.strong_count() > 0);
        }
        all.push(Rc::downgrade(transport));
    }

    /// Closes the subprocess transports still alive (see
    /// `UnixSubprocessTransport::release`).
    fn release_subprocesses(&self) {
        let all = std::mem::take(&mut *self.subprocesses.borrow_mut());
        for transport in all.iter().filter_map(std::rc::Weak::upgrade) {
            transport.release();
        }
    }

    pub(crate) fn unwatch_child(&self, pid: u32) -> Option<Rc<UnixSubprocessTransport>> {
        self.children.borrow_mut().remove(&pid)
    }

    /// Removes every signal handler (at `close()`, as CPython's).
    fn remove_signal_handlers(&self) {
        let sigs: Vec<i32> = self.signal_handlers.borrow().keys().copied().collect();
        for sig in sigs {
            self.remove_signal_handler(sig);
        }
    }

    /// On the loop's thread: `sig` was received (CPython's `_handle_signal`).
    fn deliver_signal(sig: i32) {
        let Ok(loop_) = asyncio_core::get_running_loop() else {
            return;
        };
        let Some(me) = loop_.implementation::<TokioEventLoop>() else {
            return;
        };
        let handle = me.signal_handlers.borrow().get(&sig).cloned();
        match handle {
            Some(handle) if handle.cancelled() => {
                me.remove_signal_handler(sig);
            }
            Some(handle) => loop_.run_handle(&handle),
            None => {}
        }
    }

    /// A handle to the loop's Tokio runtime, e.g. to spawn Tokio tasks from
    /// outside the loop. `None` once the loop is closed.
    pub fn runtime_handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.borrow().as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for TokioEventLoop {
    fn drop(&mut self) {
        // A loop dropped without `close()`.
        self.remove_signal_handlers();
        self.release_subprocesses();
        self.children.get_mut().clear();
        self.timer.get_mut().take();
        shut_down(self.runtime.get_mut().take());
    }
}

/// Drops the loop's runtime. Dropping a runtime waits for its blocking
/// threads, which Tokio refuses (with a panic) inside another runtime; a
/// loop closed or dropped there shuts its runtime down without waiting.
fn shut_down(runtime: Option<LocalRuntime>) {
    let Some(runtime) = runtime else {
        return;
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        runtime.shutdown_background();
    } else {
        drop(runtime);
    }
}

impl AbstractEventLoop for TokioEventLoop {
    fn block_on(&self, driver: &mut dyn FnMut(&mut Context<'_>) -> Poll<()>) -> Result<()> {
        // Also checked by the loop before it creates anything; kept here
        // for callers of `block_on` itself.
        self.check_can_block()?;
        let runtime = self.runtime.borrow();
        let Some(runtime) = runtime.as_ref() else {
            return Err(Error::runtime("Event loop is closed"));
        };
        // The loop gives Tokio's reactor its turn on its own schedule, so
        // Tokio's cooperative budget must not force extra yields inside it.
        runtime.block_on(tokio::task::unconstrained(std::future::poll_fn(driver)));
        Ok(())
    }

    fn check_can_block(&self) -> Result<()> {
        // Tokio refuses to block on a runtime from inside another one.
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::runtime(
                "Cannot run the event loop while another loop is running",
            ));
        }
        Ok(())
    }

    fn poll_deadline(&self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut timer = self.timer.borrow_mut();
        let deadline = tokio::time::Instant::from_std(deadline);
        let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }

    fn close(&self) {
        self.remove_signal_handlers();
        self.release_subprocesses();
        let children = std::mem::take(&mut *self.children.borrow_mut());
        drop(children);
        self.fds.clear();
        let timer = self.timer.borrow_mut().take();
        drop(timer);
        let runtime = self.runtime.borrow_mut().take();
        shut_down(runtime);
        // The 256 KiB read buffer goes with the loop, even if something
        // still holds the loop itself.
        let buffer = self.read_buffer.borrow_mut().take();
        drop(buffer);
    }

    fn name(&self) -> &'static str {
        "TokioEventLoop"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn network(&self) -> Option<&dyn AbstractNetwork> {
        Some(self)
    }
}

impl AbstractNetwork for TokioEventLoop {
    fn getaddrinfo(
        &self,
        loop_: &EventLoop,
        query: AddrInfoQuery,
    ) -> LocalBoxFuture<'static, Result<Vec<AddrInfo>>> {
        dns::getaddrinfo(loop_, query)
    }

    fn getnameinfo(
        &self,
        loop_: &EventLoop,
        sockaddr: SocketAddr,
        flags: i32,
    ) -> LocalBoxFuture<'static, Result<(String, String)>> {
        dns::getnameinfo(loop_, sockaddr, flags)
    }

    fn create_connection(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        options: ConnectionOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Transport>>> {
        Box::pin(base_events::create_connection(
            loop_.non_owning(),
            factory,
            options,
        ))
    }

    fn create_server(
        &self,
        loop_: &EventLoop,
        factory: ServerProtocolFactory,
        options: ServerOptions,
    ) -> LocalBoxFuture<'static, Result<Server>> {
        Box::pin(base_events::create_server(
            loop_.non_owning(),
            factory,
            options,
        ))
    }

    fn create_unix_connection(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        options: UnixConnectionOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Transport>>> {
        Box::pin(base_events::create_unix_connection(
            loop_.non_owning(),
            factory,
            options,
        ))
    }

    fn create_unix_server(
        &self,
        loop_: &EventLoop,
        factory: ServerProtocolFactory,
        options: UnixServerOptions,
    ) -> LocalBoxFuture<'static, Result<Server>> {
        Box::pin(base_events::create_unix_server(
            loop_.non_owning(),
            factory,
            options,
        ))
    }

    fn connect_accepted_socket(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        sock: OwnedFd,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Transport>>> {
        Box::pin(base_events::connect_accepted_socket(
            loop_.non_owning(),
            factory,
            sock,
        ))
    }

    fn create_datagram_endpoint(
        &self,
        loop_: &EventLoop,
        factory: DatagramProtocolFactory,
        options: DatagramEndpointOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn DatagramTransport>>> {
        Box::pin(crate::datagram::create_datagram_endpoint(
            loop_.non_owning(),
            factory,
            options,
        ))
    }

    fn connect_read_pipe(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        pipe: OwnedFd,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn ReadTransport>>> {
        Box::pin(crate::unix_pipes::connect_read_pipe(
            loop_.non_owning(),
            factory,
            pipe,
        ))
    }

    fn connect_write_pipe(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        pipe: OwnedFd,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn WriteTransport>>> {
        Box::pin(crate::unix_pipes::connect_write_pipe(
            loop_.non_owning(),
            factory,
            pipe,
        ))
    }

    fn poll_sock_ready(
        &self,
        loop_: &EventLoop,
        sock: &asyncio_core::socket::Socket,
        reading: bool,
        stale: &mut bool,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Result<()>>> {
        crate::fd_events::poll_sock_ready(self, loop_, sock, reading, stale, cx)
    }

    fn add_fd_callback(
        &self,
        loop_: &EventLoop,
        fd: RawFd,
        handle: Handle,
        reading: bool,
    ) -> Result<()> {
        self.fds.add(loop_, fd, handle, reading)
    }

    fn remove_fd_callback(&self, fd: RawFd, reading: bool) -> bool {
        self.fds.remove(fd, reading)
    }

    fn ensure_fd_no_transport(&self, fd: RawFd) -> Result<()> {
        self.fds.ensure_no_transport(fd)
    }

    fn check_signal(&self, sig: i32) -> Result<()> {
        unix_signals::check_signal(sig)
    }

    fn add_signal_handler(&self, loop_: &EventLoop, sig: i32, handle: Handle) -> Result<()> {
        let remote = loop_.threadsafe();
        let notify: unix_signals::Notify = Arc::new(move |sig| {
            // Fails only once the loop is closed, when nobody listens.
            let _ = remote.call_soon_threadsafe(move || TokioEventLoop::deliver_signal(sig));
        });
        let old = self.signal_handlers.borrow_mut().insert(sig, handle);
        if let Err(e) = unix_signals::subscribe(sig, self.signal_id, notify, false) {
            let mut handlers = self.signal_handlers.borrow_mut();
            match old {
                Some(old) => handlers.insert(sig, old),
                None => handlers.remove(&sig),
            };
            return Err(e);
        }
        Ok(())
    }

    fn remove_signal_handler(&self, sig: i32) -> bool {
        let removed = self.signal_handlers.borrow_mut().remove(&sig);
        if removed.is_none() {
            return false;
        }
        unix_signals::unsubscribe(sig, self.signal_id, false);
        true
    }

    fn subprocess_exec(
        &self,
        loop_: &EventLoop,
        factory: SubprocessProtocolFactory,
        options: SubprocessOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn SubprocessTransport>>> {
        Box::pin(crate::unix_subprocess::subprocess_exec(
            loop_.non_owning(),
            factory,
            options,
        ))
    }
}

/// A new [`EventLoop`] on a [`TokioEventLoop`].
pub fn new_event_loop() -> Result<EventLoop> {
    Ok(EventLoop::new(TokioEventLoop::new()?))
}
