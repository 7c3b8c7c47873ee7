//! The socket transport and the accept loop (CPython's `selector_events.py`).
//!
//! A transport is driven by readiness: its loop registration's waker is
//! handed to Tokio's reactor (`poll_read`, `poll_write`), and a wake puts the
//! transport on the loop's ready queue, where `run` reads (one chunk per
//! iteration, as CPython does) and flushes the write buffer. No Tokio task
//! and no channel per connection. Reads go into one buffer per loop, lent to
//! `data_received`; writes try the socket at once and buffer only the rest.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use asyncio_core::exception_context::ExceptionContext;
use asyncio_core::protocols::{ReadOutcome, StreamProtocolRef};
use asyncio_core::transports::{
    Address, BaseTransport, ExtraInfo, ReadTransport, SendfileMode, Transport, TransportSocket,
    WriteTransport,
};
use asyncio_core::{
    Error, ErrorKind, EventLoop, Future, Registration, Result, Schedulable, Server,
};
use tokio::io::AsyncWrite;
use tokio::net::{TcpStream, UnixStream};

use crate::transport_support::{flow_called, report, warn_unclosed, FlowControl};

/// CPython's `max_size`: the most read in one `recv`.
pub(crate) const MAX_READ: usize = 256 * 1024;
/// Writes dropped after the connection is lost start warning at this count.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;
/// Buffers handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// The loop-wide read buffer lent to `data_received`.
pub(crate) type ReadBuffer = Rc<RefCell<LoopReadBuffer>>;

/// Where in a page the read buffer starts.
///
/// Received data sits near the start of the kernel's pages, and a
/// destination at a similar small offset into its own pages makes the
/// kernel's copy to user space stall on 4 KiB aliasing. A `calloc`ed
/// 256 KiB buffer starts 16 bytes into a page: the 64 KiB echo ran at
/// 17,000 round trips/s, and at 39,000 (raw Tokio: 37,000) from half a page
/// in (measured with offsets 0, 16, 64, 256, 1024, 2048, 3072: 2048 best).
const READ_BUFFER_PAGE_OFFSET: usize = 2048;

/// [`MAX_READ`] bytes starting [`READ_BUFFER_PAGE_OFFSET`] into a page.
pub(crate) struct LoopReadBuffer {
    storage: Box<[u8]>,
    start: usize,
}

impl LoopReadBuffer {
    /// The buffer to read into.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + MAX_READ]
    }
}

pub(crate) fn new_read_buffer() -> ReadBuffer {
    let storage = vec![0u8; MAX_READ + 4096].into_boxed_slice();
    let page_offset = storage.as_ptr() as usize % 4096;
    let start = (READ_BUFFER_PAGE_OFFSET + 4096 - page_offset) % 4096;
    Rc::new(RefCell::new(LoopReadBuffer { storage, start }))
}

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// [`try_read_buf`](Stream::try_read_buf) into a plain buffer.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self {
            Stream::Tcp(s) => s.try_read(buf)?,
            Stream::Unix(s) => s.try_read(buf)?,
        };
        if n > 0 && n < buf.len() {
            self.clear_read_ready();
        }
        Ok(n)
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// A read into `buf`'s spare room without Tokio's task bookkeeping
    /// (budget, waker), `WouldBlock` when the socket is not known readable.
    /// A read that leaves room unfilled drained the socket: its readiness is
    /// forgotten (as Tokio's `poll_read` does), so that re-arming waits for
    /// the next edge instead of trying a read that would block.
    #[inline]
    fn try_read_buf(&self, buf: &mut asyncio_core::protocols::ReadRoom) -> io::Result<usize> {
        let room = buf.capacity() - buf.len();
        let n = match self {
            Stream::Tcp(s) => s.try_read_buf(buf)?,
            Stream::Unix(s) => s.try_read_buf(buf)?,
        };
        if n > 0 && n < room {
            self.clear_read_ready();
        }
        Ok(n)
    }

    fn clear_read_ready(&self) {
        let drained = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let _ = match self {
            Stream::Tcp(s) => s.try_io(tokio::io::Interest::READABLE, drained),
            Stream::Unix(s) => s.try_io(tokio::io::Interest::READABLE, drained),
        };
    }

    /// A write without Tokio's task bookkeeping (budget, waker): `WouldBlock`
    /// when the socket is not known writable; then `poll_write_ready`
    /// registers for writability.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    /// Forgets the writable readiness Tokio cached: a write made outside
    /// Tokio (`sendfile(2)`) found the socket full.
    fn clear_write_ready(&self) {
        let full = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let _ = match self {
            Stream::Tcp(s) => s.try_io(tokio::io::Interest::WRITABLE, full),
            Stream::Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, full),
        };
    }

    fn shutdown_write(&self) -> io::Result<()> {
        let sock = match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            Stream::Unix(s) => socket2::SockRef::from(s),
        };
        sock.shutdown(std::net::Shutdown::Write)
    }

    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// What the `socket`, `sockname` and `peername` extra info report.
#[derive(Clone, Debug)]
pub(crate) struct SocketInfo {
    pub(crate) fd: RawFd,
    pub(crate) family: i32,
    pub(crate) kind: i32,
    pub(crate) proto: i32,
    pub(crate) sockname: Option<Address>,
    pub(crate) peername: Option<Address>,
}

impl SocketInfo {
    pub(crate) fn of(fd: impl AsFd) -> SocketInfo {
        let sock = socket2::SockRef::from(&fd);
        let raw = fd.as_fd().as_raw_fd();
        let family = sock.domain().map(i32::from).unwrap_or(0);
        let kind = sock.r#type().map(i32::from).unwrap_or(0);
        let proto = sock.protocol().ok().flatten().map(i32::from).unwrap_or(0);
        let sockname = sock.local_addr().ok().map(|a| Address::from_sockaddr(&a));
        let peername = sock.peer_addr().ok().map(|a| Address::from_sockaddr(&a));
        SocketInfo {
            fd: raw,
            family,
            kind,
            proto,
            sockname,
            peername,
        }
    }

    /// A socket transport's `get_extra_info`: `peername`, `sockname`,
    /// `socket`.
    pub(crate) fn extra_info(&self, name: &str, alive: Option<&Rc<()>>) -> Option<ExtraInfo> {
        match name {
            "peername" => self.peername.clone().map(ExtraInfo::Address),
            "sockname" => self.sockname.clone().map(ExtraInfo::Address),
            "socket" => Some(ExtraInfo::Socket(self.transport_socket(alive))),
            _ => None,
        }
    }

    /// The socket as `TransportSocket`; with `alive` gone it reports `fd=-1`.
    pub(crate) fn transport_socket(&self, alive: Option<&Rc<()>>) -> TransportSocket {
        TransportSocket::new(
            self.fd,
            (self.family, self.kind, self.proto),
            self.sockname.clone(),
            self.peername.clone(),
            alive.map_or_else(Weak::new, Rc::downgrade),
        )
    }
}

struct State {
    stream: Option<Stream>,
    /// The socket's liveness token for `TransportSocket`s handed out.
    alive: Option<Rc<()>>,
    buffer: VecDeque<Vec<u8>>,
    /// Bytes of `buffer[0]` already sent.
    sent_front: usize,
    buffer_size: usize,
    closing: bool,
    /// `write_eof()` was called.
    eof: bool,
    conn_lost: u32,
    /// `pause_reading()` is in effect.
    paused: bool,
    /// The reader was added (after `connection_made`), and not removed by
    /// an EOF the protocol kept the transport open for.
    reader_added: bool,
    protocol_connected: bool,
    server: Option<asyncio_core::base_events::ServerClient>,
    /// `loop.sendfile` owns the socket: writes are refused.
    sendfile_active: bool,
    /// Completes when the buffer is empty (CPython's `_empty_waiter`).
    empty_waiter: Option<Future<()>>,
}

impl State {
    fn is_reading(&self) -> bool {
        !self.closing && !self.paused
    }

    fn reader_active(&self) -> bool {
        self.reader_added && self.is_reading() && self.conn_lost == 0 && self.stream.is_some()
    }
}

/// The transport of a connected TCP or Unix stream socket (CPython's
/// `_SelectorSocketTransport`).
pub(crate) struct SocketTransport {
    this: Weak<SocketTransport>,
    loop_: EventLoop,
    registration: Registration,
    read_buffer: ReadBuffer,
    state: RefCell<State>,
    protocol: RefCell<Option<StreamProtocolRef>>,
    info: SocketInfo,
    is_buffered: Cell<bool>,
    reads_into_bytes: Cell<bool>,
    flow: FlowControl,
}

impl SocketTransport {
    /// Wraps `stream`; `connection_made` is scheduled, reading starts after
    /// it, then `waiter` (if any) gets its result.
    pub(crate) fn start(
        loop_: &EventLoop,
        stream: Stream,
        protocol: StreamProtocolRef,
        read_buffer: ReadBuffer,
        waiter: Option<Future<()>>,
        server: Option<&Server>,
    ) -> Result<Rc<SocketTransport>> {
        let info = match &stream {
            Stream::Tcp(s) => {
                // CPython's `_set_nodelay`: small writes go out at once.
                let _ = s.set_nodelay(true);
                SocketInfo::of(s)
            }
            Stream::Unix(s) => SocketInfo::of(s),
        };
        let registration = loop_.new_registration()?;
        let is_buffered = protocol.is_buffered();
        let reads_into_bytes = protocol.reads_into_bytes();
        let transport = Rc::new_cyclic(|this| SocketTransport {
            this: this.clone(),
            loop_: loop_.non_owning(),
            registration,
            read_buffer,
            state: RefCell::new(State {
                stream: Some(stream),
                alive: Some(Rc::new(())),
                buffer: VecDeque::new(),
                sent_front: 0,
                buffer_size: 0,
                closing: false,
                eof: false,
                conn_lost: 0,
                paused: false,
                reader_added: false,
                protocol_connected: true,
                server: None,
                sendfile_active: false,
                empty_waiter: None,
            }),
            flow: FlowControl::default(),
            protocol: RefCell::new(Some(protocol)),
            info,
            is_buffered: Cell::new(is_buffered),
            reads_into_bytes: Cell::new(reads_into_bytes),
        });
        transport
            .registration
            .activate(transport.clone() as Rc<dyn Schedulable>);
        if let Some(t) = loop_.implementation::<crate::TokioEventLoop>() {
            let owner: Weak<dyn crate::fd_events::FdOwner> = transport.this.clone();
            t.fds().add_transport(transport.info.fd, owner);
        }
        if let Some(server) = server {
            let weak: Weak<dyn Transport> = transport.this.clone();
            transport.state.borrow_mut().server = Some(server.attach(weak));
        }
        let t = transport.clone();
        loop_.call_soon(move || t.connection_made())?;
        let t = transport.clone();
        loop_.call_soon(move || t.add_reader())?;
        if let Some(waiter) = waiter {
            loop_.call_soon(move || {
                if !waiter.done() {
                    let _ = waiter.set_result(());
                }
            })?;
        }
        Ok(transport)
    }

    fn me(&self) -> Option<Rc<SocketTransport>> {
        self.this.upgrade()
    }

    fn cx_waker(&self) -> &std::task::Waker {
        self.registration.waker()
    }

    fn current_protocol(&self) -> Option<StreamProtocolRef> {
        self.protocol.borrow().clone()
    }

    fn connection_made(&self) -> Result<()> {
        let (Some(protocol), Some(me)) = (self.current_protocol(), self.me()) else {
            return Ok(());
        };
        let me: Rc<dyn Transport> = me;
        protocol.connection_made(me)
    }

    /// CPython's `_add_reader` after `connection_made`: only if reading.
    fn add_reader(&self) {
        {
            let mut st = self.state.borrow_mut();
            if !st.is_reading() {
                return;
            }
            st.reader_added = true;
        }
        self.registration.schedule();
    }

    // ----- errors and closing -----

    fn report(&self, message: &str, exc: Error) {
        let protocol = self.current_protocol();
        let protocol = protocol.as_ref().map(|p| p as &dyn fmt::Debug);
        report(&self.loop_, message, exc, self, protocol);
    }

    /// CPython's `_fatal_error`: report (unless an `OSError`), then
    /// force-close. A `KeyboardInterrupt`/`SystemExit` from the protocol
    /// leaves the loop instead, the transport untouched, as CPython's
    /// `except (SystemExit, KeyboardInterrupt): raise` does.
    fn fatal_error(&self, exc: Error, message: &str) {
        if exc.kind().is_exit() {
            self.loop_.raise_base_exception(exc);
            // Reading goes on when the loop runs again (CPython's reader
            // stays registered).
            self.registration.schedule();
            return;
        }
        if exc.kind() == ErrorKind::OSError {
            if self.loop_.get_debug() {
                tracing::debug!(target: "asyncio", "{:?}: {}", self, message);
            }
        } else {
            self.report(message, exc.clone());
        }
        self.force_close(Some(exc));
    }

    fn force_close(&self, exc: Option<Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            if !st.buffer.is_empty() {
                st.buffer.clear();
                st.buffer_size = 0;
                st.sent_front = 0;
            }
            if !st.closing {
                st.closing = true;
            }
            st.conn_lost += 1;
        }
        self.fail_empty_waiter();
        self.schedule_connection_lost(exc);
    }

    /// The connection is gone: a `loop.sendfile` waiting for the buffer
    /// to drain hears of it.
    fn fail_empty_waiter(&self) {
        let waiter = self.state.borrow_mut().empty_waiter.take();
        if let Some(w) = waiter {
            let _ = w.set_exception(closed_by_peer());
        }
    }

    /// `_sendfile_native` after the checks: waits for the buffer to drain,
    /// then sends with `sendfile(2)` on a duplicate of the socket.
    async fn sendfile_when_empty(
        &self,
        file: &std::fs::File,
        offset: u64,
        count: Option<u64>,
    ) -> Result<u64> {
        loop {
            let waiter = {
                let mut st = self.state.borrow_mut();
                if st.conn_lost > 0 || st.closing {
                    return Err(closed_by_peer());
                }
                if st.buffer.is_empty() {
                    break;
                }
                let w = Future::<()>::new(&self.loop_);
                st.empty_waiter = Some(w.clone());
                w
            };
            waiter.await?;
        }
        let sock = {
            let st = self.state.borrow();
            let Some(stream) = st.stream.as_ref() else {
                return Err(closed_by_peer());
            };
            let fd = match stream {
                Stream::Tcp(s) => s.as_fd().try_clone_to_owned(),
                Stream::Unix(s) => s.as_fd().try_clone_to_owned(),
            }
            .map_err(Error::from)?;
            socket2::Socket::from(fd)
        };
        asyncio_core::base_events::sendfile_on(&sock, file, offset, count, || {
            if let Some(s) = self.state.borrow().stream.as_ref() {
                s.clear_write_ready();
            }
            std::future::poll_fn(|cx| {
                let st = self.state.borrow();
                match st.stream.as_ref() {
                    Some(s) if st.conn_lost == 0 => s.poll_write_ready(cx).map_err(Error::from),
                    _ => Poll::Ready(Err(closed_by_peer())),
                }
            })
        })
        .await
    }

    fn schedule_connection_lost(&self, exc: Option<Error>) {
        if let Some(me) = self.me() {
            if self
                .loop_
                .call_soon(move || me.call_connection_lost(exc))
                .is_err()
            {
                // The loop is closed: release the socket now.
                self.release();
            }
        }
    }

    /// The buffer drained after `close()`: the connection is lost now, as
    /// CPython calls `connection_lost` right here.
    fn finish_close(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            st.conn_lost += 1;
        }
        if let Err(e) = self.call_connection_lost(None) {
            let mut ctx = ExceptionContext::new("Exception in callback _call_connection_lost()");
            ctx.exception = Some(e);
            self.loop_.call_exception_handler(ctx);
        }
    }

    fn call_connection_lost(&self, exc: Option<Error>) -> Result<()> {
        let connected = self.state.borrow().protocol_connected;
        let outcome = match (connected, self.current_protocol()) {
            (true, Some(p)) => p.connection_lost(exc),
            _ => Ok(()),
        };
        self.release();
        outcome
    }

    /// Closes the socket and forgets the protocol and server.
    fn release(&self) {
        let (stream, server, alive) = {
            let mut st = self.state.borrow_mut();
            st.protocol_connected = false;
            (st.stream.take(), st.server.take(), st.alive.take())
        };
        // The token goes first: a `TransportSocket` must never see it alive
        // with the descriptor closed.
        drop(alive);
        if stream.is_some() {
            if let Some(t) = self.loop_.implementation::<crate::TokioEventLoop>() {
                t.fds().forget_transport(self.info.fd);
            }
        }
        drop(stream);
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        if let Some(server) = server {
            server.detach();
        }
        self.registration.unregister();
    }

    // ----- reading -----

    fn read_ready(&self) {
        if !self.state.borrow().reader_active() {
            return;
        }
        if self.reads_into_bytes.get() {
            self.read_into_protocol_bytes();
        } else if self.is_buffered.get() {
            self.read_into_protocol_buffer();
        } else {
            self.read_data();
        }
    }

    /// Re-arms read interest: a wake comes when more data arrives; if the
    /// socket is still readable (a full read), read again next iteration.
    fn rearm_reader(&self) {
        let st = self.state.borrow();
        if !st.reader_active() {
            return;
        }
        let Some(stream) = st.stream.as_ref() else {
            return;
        };
        let mut cx = Context::from_waker(self.cx_waker());
        if stream.poll_read_ready(&mut cx).is_ready() {
            drop(st);
            self.registration.schedule();
        }
    }

    fn read_data(&self) {
        let mut shared = self.read_buffer.try_borrow_mut().ok();
        let mut fallback = Vec::new();
        let buf: &mut [u8] = match shared.as_mut() {
            Some(b) => b.as_mut_slice(),
            None => {
                fallback.resize(MAX_READ, 0);
                &mut fallback[..]
            }
        };
        let n = {
            let st = self.state.borrow();
            let Some(stream) = st.stream.as_ref() else {
                return;
            };
            match stream.try_read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drop(st);
                    // Not readable after all: wait for the next edge.
                    self.rearm_reader();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    drop(st);
                    self.registration.schedule();
                    return;
                }
                Err(e) => {
                    drop(st);
                    self.fatal_error(Error::from(e), "Fatal read error on socket transport");
                    return;
                }
            }
        };
        if n == 0 {
            drop(shared);
            self.on_eof();
            return;
        }
        // A buffered protocol (switched to mid-read) gets the bytes copied
        // into its buffers.
        let delivered = match self.current_protocol() {
            Some(p) => p.data_received(&buf[..n]),
            None => Ok(()),
        };
        drop(shared);
        if let Err(e) = delivered {
            self.fatal_error(e, "Fatal error: protocol.data_received() call failed.");
            return;
        }
        self.rearm_reader();
    }

    fn read_into_protocol_buffer(&self) {
        let Some(protocol) = self.current_protocol() else {
            return;
        };
        let outcome = protocol.read_into(None, |buf| {
            let st = self.state.borrow();
            let Some(stream) = st.stream.as_ref() else {
                return ReadOutcome::Pending;
            };
            ReadOutcome::from_io(stream.try_read(buf))
        });
        self.finish_read(
            outcome,
            "Fatal error: protocol.get_buffer() call failed.",
            |n| {
                protocol
                    .buffer_updated(n)
                    .map_err(|e| (e, "Fatal error: protocol.buffer_updated() call failed."))
            },
        );
    }

    /// What follows a read into a protocol's buffer: re-arm, retry, EOF,
    /// or a fatal error; `delivered` tells the protocol about `n` bytes.
    #[inline]
    fn finish_read(
        &self,
        outcome: Result<ReadOutcome>,
        call_failed: &'static str,
        delivered: impl FnOnce(usize) -> std::result::Result<(), (Error, &'static str)>,
    ) {
        match outcome {
            Ok(ReadOutcome::Pending) => self.rearm_reader(),
            Ok(ReadOutcome::Retry) => self.registration.schedule(),
            Err(e) => self.fatal_error(e, call_failed),
            Ok(ReadOutcome::Failed(e)) => {
                self.fatal_error(Error::from(e), "Fatal read error on socket transport")
            }
            Ok(ReadOutcome::Read(0)) => self.on_eof(),
            Ok(ReadOutcome::Read(n)) => match delivered(n) {
                Ok(()) => self.rearm_reader(),
                Err((e, message)) => self.fatal_error(e, message),
            },
        }
    }

    /// The streams' protocol: read straight into its reader's buffer.
    fn read_into_protocol_bytes(&self) {
        // Borrowed, not cloned: reading into a stream reader runs no user
        // code (it wakes the reading task and may pause this transport).
        let current = self.protocol.borrow();
        let Some(protocol) = current.as_ref() else {
            return;
        };
        let outcome = protocol.read_into_bytes(|buf| {
            let st = self.state.borrow();
            let Some(stream) = st.stream.as_ref() else {
                return ReadOutcome::Pending;
            };
            ReadOutcome::from_io(stream.try_read_buf(buf))
        });
        drop(current);
        // The reader was told of the bytes as they were read.
        self.finish_read(
            outcome,
            "Fatal error: protocol.data_received() call failed.",
            |_| Ok(()),
        );
    }

    fn on_eof(&self) {
        if self.loop_.get_debug() {
            tracing::debug!(target: "asyncio", "{:?} received EOF", self);
        }
        let keep_open = match self.current_protocol() {
            Some(p) => p.eof_received(),
            None => Ok(false),
        };
        match keep_open {
            Err(e) => self.fatal_error(e, "Fatal error: protocol.eof_received() call failed."),
            Ok(true) => {
                // Keep the connection for writing; stop reading.
                self.state.borrow_mut().reader_added = false;
            }
            Ok(false) => self.close(),
        }
    }

    // ----- writing -----

    /// Registers write interest; `true` if writable already.
    fn arm_writer(&self, st: &State) -> bool {
        match st.stream.as_ref() {
            Some(stream) => {
                let mut cx = Context::from_waker(self.registration.waker());
                stream.poll_write_ready(&mut cx).is_ready()
            }
            None => false,
        }
    }

    fn write_ready(&self) {
        let result = {
            let mut st = self.state.borrow_mut();
            if st.buffer.is_empty() || st.conn_lost > 0 {
                return;
            }
            let State {
                stream,
                buffer,
                sent_front,
                ..
            } = &mut *st;
            let Some(stream) = stream.as_mut() else {
                return;
            };
            let mut slices = Vec::with_capacity(buffer.len().min(MAX_IOVECS));
            for (i, chunk) in buffer.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { *sent_front } else { 0 };
                slices.push(IoSlice::new(&chunk[start..]));
            }
            let mut cx = Context::from_waker(self.registration.waker());
            stream.poll_write_vectored(&mut cx, &slices)
        };
        let n = match result {
            Poll::Pending => return,
            Poll::Ready(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                self.registration.schedule();
                return;
            }
            Poll::Ready(Err(e)) => {
                {
                    let mut st = self.state.borrow_mut();
                    st.buffer.clear();
                    st.buffer_size = 0;
                    st.sent_front = 0;
                }
                self.fatal_error(Error::from(e), "Fatal write error on socket transport");
                return;
            }
            Poll::Ready(Ok(n)) => n,
        };
        self.advance(n);
        self.maybe_resume_protocol();
        let (empty, closing, eof) = {
            let st = self.state.borrow();
            (st.buffer.is_empty(), st.closing, st.eof)
        };
        if empty {
            let waiter = self.state.borrow_mut().empty_waiter.take();
            if let Some(w) = waiter {
                let _ = w.set_result(());
            }
            if closing {
                self.finish_close();
            } else if eof {
                if let Some(stream) = self.state.borrow().stream.as_ref() {
                    let _ = stream.shutdown_write();
                }
            }
        } else {
            let st = self.state.borrow();
            if self.arm_writer(&st) {
                drop(st);
                self.registration.schedule();
            }
        }
    }

    /// Drops `n` sent bytes from the front of the buffer.
    fn advance(&self, mut n: usize) {
        let mut st = self.state.borrow_mut();
        st.buffer_size -= n.min(st.buffer_size);
        while n > 0 {
            let Some(front) = st.buffer.front() else {
                break;
            };
            let left = front.len() - st.sent_front;
            if n >= left {
                n -= left;
                st.buffer.pop_front();
                st.sent_front = 0;
            } else {
                st.sent_front += n;
                n = 0;
            }
        }
    }

    fn maybe_pause_protocol(&self) {
        if self.flow.should_pause(self.get_write_buffer_size()) {
            self.deliver_flow(true);
        }
    }

    fn maybe_resume_protocol(&self) {
        if self.flow.should_resume(self.get_write_buffer_size()) {
            self.deliver_flow(false);
        }
    }

    /// Calls `pause_writing`/`resume_writing` now (from inside `write()`
    /// when that is where the buffer crossed the mark, as CPython does);
    /// an error is reported and the connection goes on.
    fn deliver_flow(&self, pause: bool) {
        if let Some(p) = self.current_protocol() {
            let called = if pause {
                p.pause_writing()
            } else {
                p.resume_writing()
            };
            flow_called(&self.loop_, pause, called, self, &p);
        }
    }
}

impl Schedulable for SocketTransport {
    fn run(self: Rc<Self>) {
        self.read_ready();
        // Most writes go out at once: nothing left to flush.
        if !self.state.borrow().buffer.is_empty() {
            self.write_ready();
        }
    }

    /// The loop closed (or was dropped) with the transport open: CPython's
    /// `_SelectorTransport.__del__` (a `ResourceWarning`, shown in debug
    /// mode, and the socket closed).
    fn abandon(self: Rc<Self>) {
        let open = self
            .state
            .try_borrow()
            .map(|st| st.stream.is_some())
            .unwrap_or(false);
        if open {
            warn_unclosed(&self.loop_, &*self);
        }
        self.release();
    }
}

impl BaseTransport for SocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.info
            .extra_info(name, self.state.borrow().alive.as_ref())
    }

    fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    fn close(&self) {
        let lost = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            if st.buffer.is_empty() {
                st.conn_lost += 1;
                true
            } else {
                false
            }
        };
        if lost {
            self.schedule_connection_lost(None);
        }
    }
}

impl ReadTransport for SocketTransport {
    fn is_reading(&self) -> bool {
        self.state.borrow().is_reading()
    }

    fn pause_reading(&self) {
        let mut st = self.state.borrow_mut();
        if !st.is_reading() {
            return;
        }
        st.paused = true;
        if self.loop_.get_debug() {
            tracing::debug!(target: "asyncio", "{:?} pauses reading", self);
        }
    }

    fn resume_reading(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.closing || !st.paused {
                return;
            }
            st.paused = false;
            // CPython's `_add_reader`: also when `connection_made` paused
            // reading before the reader was first added.
            st.reader_added = true;
        }
        if self.loop_.get_debug() {
            tracing::debug!(target: "asyncio", "{:?} resumes reading", self);
        }
        self.registration.schedule();
    }
}

impl WriteTransport for SocketTransport {
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        self.flow.set_limits(high, low)?;
        self.maybe_pause_protocol();
        Ok(())
    }

    fn get_write_buffer_size(&self) -> usize {
        self.state.borrow().buffer_size
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.flow.limits()
    }

    fn write(&self, data: &[u8]) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if st.eof {
            return Err(Error::runtime("Cannot call write() after write_eof()"));
        }
        if st.sendfile_active {
            return Err(Error::runtime("unable to write; sendfile is in progress"));
        }
        if data.is_empty() {
            return Ok(());
        }
        if st.conn_lost > 0 {
            if st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                asyncio_core::log::warning(format_args!("socket.send() raised exception."));
            }
            st.conn_lost += 1;
            return Ok(());
        }
        let mut rest = data;
        if st.buffer.is_empty() {
            let Some(stream) = st.stream.as_ref() else {
                return Ok(());
            };
            match stream.try_write(data) {
                Ok(n) => {
                    rest = &data[n..];
                    if rest.is_empty() {
                        return Ok(());
                    }
                    // A partial write: the socket is full; wait for room.
                    if self.arm_writer(&st) {
                        self.registration.schedule();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    if self.arm_writer(&st) {
                        self.registration.schedule();
                    }
                }
                Err(e) => {
                    drop(st);
                    self.fatal_error(Error::from(e), "Fatal write error on socket transport");
                    return Ok(());
                }
            }
        }
        st.buffer.push_back(rest.to_vec());
        st.buffer_size += rest.len();
        drop(st);
        self.maybe_pause_protocol();
        Ok(())
    }

    fn writelines(&self, chunks: &[&[u8]]) -> Result<()> {
        {
            let mut st = self.state.borrow_mut();
            if st.eof {
                return Err(Error::runtime("Cannot call writelines() after write_eof()"));
            }
            if st.sendfile_active {
                return Err(Error::runtime("unable to write; sendfile is in progress"));
            }
            if chunks.iter().all(|c| c.is_empty()) {
                return Ok(());
            }
            if st.conn_lost > 0 {
                if st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                    asyncio_core::log::warning(format_args!("socket.send() raised exception."));
                }
                st.conn_lost += 1;
                return Ok(());
            }
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                st.buffer.push_back(c.to_vec());
                st.buffer_size += c.len();
            }
        }
        // As CPython: try to send the whole buffer now (one vectored write),
        // wait for room if some is left.
        self.write_ready();
        self.maybe_pause_protocol();
        Ok(())
    }

    fn write_eof(&self) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if st.closing || st.eof {
            return Ok(());
        }
        st.eof = true;
        if st.buffer.is_empty() {
            if let Some(stream) = st.stream.as_ref() {
                stream.shutdown_write().map_err(Error::from)?;
            }
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn sendfile_mode(&self) -> SendfileMode {
        SendfileMode::TryNative
    }

    fn is_protocol_paused(&self) -> bool {
        self.flow.is_paused()
    }

    fn sendfile_native<'a>(
        &'a self,
        file: &'a std::fs::File,
        offset: u64,
        count: Option<u64>,
    ) -> asyncio_core::base_events::LocalBoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(Error::new(
                    ErrorKind::SendfileNotAvailableError,
                    "not a regular file",
                ));
            }
            let resume_reading = self.is_reading();
            self.pause_reading();
            self.state.borrow_mut().sendfile_active = true;
            let outcome = self.sendfile_when_empty(file, offset, count).await;
            self.state.borrow_mut().sendfile_active = false;
            if resume_reading {
                self.resume_reading();
            }
            outcome
        })
    }
}

impl Transport for SocketTransport {
    fn set_protocol(&self, protocol: StreamProtocolRef) {
        if self.state.borrow().stream.is_none() {
            // The connection is gone (CPython has dropped its protocol too):
            // keeping this one would only make a transport↔protocol cycle.
            return;
        }
        self.is_buffered.set(protocol.is_buffered());
        self.reads_into_bytes.set(protocol.reads_into_bytes());
        let old = self.protocol.borrow_mut().replace(protocol);
        drop(old);
        self.state.borrow_mut().protocol_connected = true;
    }

    fn get_protocol(&self) -> Option<StreamProtocolRef> {
        self.current_protocol()
    }
}

impl fmt::Debug for SocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(st) = self.state.try_borrow() else {
            return f.write_str("<_SelectorSocketTransport>");
        };
        let mut info = vec!["_SelectorSocketTransport".to_owned()];
        match st.stream.as_ref() {
            None => info.push("closed".to_owned()),
            Some(stream) => {
                if st.closing {
                    info.push("closing".to_owned());
                }
                info.push(format!("fd={}", stream.fd()));
                info.push(format!(
                    "read={}",
                    if st.reader_active() {
                        "polling"
                    } else {
                        "idle"
                    }
                ));
                let state = if st.buffer.is_empty() {
                    "idle"
                } else {
                    "polling"
                };
                info.push(format!("write=<{state}, bufsize={}>", st.buffer_size));
            }
        }
        write!(f, "<{}>", info.join(" "))
    }
}

/// CPython's `ConnectionError("Connection is closed by peer")`.
fn closed_by_peer() -> Error {
    Error::os_subclass("ConnectionError", "Connection is closed by peer")
}
